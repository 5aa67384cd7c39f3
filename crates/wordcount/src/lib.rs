//! Counts words in text: lower-cased, split on anything that is not a letter, digit or apostrophe,
//! leaving out the words of the monorepo's shared list (`shared/ignored-words.txt`, compiled in).

use std::collections::HashMap;

/// One word per line; `#` starts a comment line.
const IGNORED: &str = include_str!("../../../shared/ignored-words.txt");

fn ignored(word: &str) -> bool {
    IGNORED.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).any(|line| line == word)
}

/// The `limit` most frequent words with their counts, most frequent first and ties in
/// alphabetical order, so that the output is stable.
pub fn top_words(text: &str, limit: usize) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|word| !word.is_empty()) {
        let word = word.to_lowercase();
        if !ignored(&word) {
            *counts.entry(word).or_default() += 1;
        }
    }
    let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(limit);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_count_then_alphabet() {
        let top = top_words("The cat and the hat. A cat!", 3);
        assert_eq!(top, vec![("cat".into(), 2), ("the".into(), 2), ("a".into(), 1)]);
    }

    #[test]
    fn empty_text_has_no_words() {
        assert!(top_words(" ,. ", 5).is_empty());
    }
}
