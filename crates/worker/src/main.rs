//! Reads all of standard input, then prints the `TOP` (default 5) most frequent words as
//! `count word` lines and a final logfmt summary line.

use std::io::Read;

fn main() -> std::io::Result<()> {
    let limit = common::setting("TOP", "5").parse().unwrap_or(5);
    // With SHOW_QUERY=1 the worker prints the query a database-backed ranking would run.
    if common::setting("SHOW_QUERY", "") == "1" {
        println!("{}", offline_query::query!("top-words"));
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let top = wordcount::top_words(&text, limit);
    for (word, count) in &top {
        println!("{count} {word}");
    }
    let summary = [("words", top.len().to_string()), ("platform", common::platform())];
    println!("{}", common::log_line("worker", "done", &summary));
    Ok(())
}
