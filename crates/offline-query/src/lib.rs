//! `query!("name")` expands to the SQL text of `.sqlx/query-<name>.json` at the workspace root,
//! read when the macro expands, as sqlx's offline mode reads its prepared queries. The expansion
//! also `include_bytes!`s the file, so that the compiler lists it among what it read (dep-info)
//! and cargo rebuilds the caller when it changes.

use proc_macro::{TokenStream, TokenTree};

#[proc_macro]
pub fn query(input: TokenStream) -> TokenStream {
    let name = match input.into_iter().next() {
        Some(TokenTree::Literal(literal)) => literal.to_string().trim_matches('"').to_string(),
        _ => return error("query! takes the query's name as a string literal"),
    };
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let path = std::path::Path::new(&manifest_dir).join("../../.sqlx").join(format!("query-{name}.json"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return error(&format!("no prepared query {name}: {} is missing", path.display()));
    };
    let Some(sql) = text.split("\"query\":").nth(1).and_then(|rest| rest.split('"').nth(1)) else {
        return error(&format!("{} has no \"query\" string", path.display()));
    };
    format!("{{ const _: &[u8] = include_bytes!({:?}); {:?} }}", path.display().to_string(), sql).parse().expect("valid tokens")
}

fn error(message: &str) -> TokenStream {
    format!("compile_error!({message:?})").parse().expect("valid tokens")
}
