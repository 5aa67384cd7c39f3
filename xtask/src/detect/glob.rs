//! Path globs for the user's change rules: `*` and `?` stay within one path segment, `**`
//! spans any number of segments (also none).

pub fn matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    match_segments(&pattern, &path)
}

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(segment, path_rest)| match_segment(first.as_bytes(), segment.as_bytes()) && match_segments(rest, path_rest)),
    }
}

fn match_segment(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| match_segment(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && match_segment(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && match_segment(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("docs/**", "docs/a/b.md"));
        assert!(matches("**/*.md", "README.md"));
        assert!(matches("**/*.md", "crates/api/README.md"));
        assert!(matches("proto/*.proto", "proto/api.proto"));
        assert!(!matches("proto/*.proto", "proto/v1/api.proto"));
        assert!(matches("crates/*/README.md", "crates/worker/README.md"));
        assert!(matches("config/?.toml", "config/a.toml"));
        assert!(!matches("config/?.toml", "config/ab.toml"));
        assert!(!matches("docs/**", "documentation/x"));
    }
}
