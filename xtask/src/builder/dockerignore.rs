//! `.dockerignore`, read as Docker reads it: one pattern a line, `#` comments, a leading `/` and
//! `./` dropped, `*` and `?` within one path segment, `**` across segments, `!` for an
//! exception. The last pattern that matches a path decides, and a pattern that matches a
//! directory matches everything under it. (Character classes such as `[a-z]` are not read.)

use std::path::Path;

use anyhow::{Context, Result};

use crate::detect::glob;

#[derive(Debug, Default)]
pub struct Dockerignore {
    /// `(exception, pattern)` in file order.
    patterns: Vec<(bool, String)>,
}

impl Dockerignore {
    /// The context's `.dockerignore`, or none.
    pub fn read(context: &Path) -> Result<Dockerignore> {
        let path = context.join(".dockerignore");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Dockerignore::parse(&text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Dockerignore::default()),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> Dockerignore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (exception, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let pattern = pattern.trim_start_matches('/').trim_start_matches("./").trim_end_matches('/');
                (exception, pattern.to_string())
            })
            .filter(|(_, pattern)| !pattern.is_empty())
            .collect();
        Dockerignore { patterns }
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for (exception, pattern) in &self.patterns {
            // The path itself or one of its parent directories.
            let mut prefixes = path.match_indices('/').map(|(end, _)| &path[..end]).chain(std::iter::once(path));
            if prefixes.any(|prefix| glob::matches(pattern, prefix)) {
                excluded = !exception;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dockerignore: &str, paths: &[&str], expected: expect_test::Expect) {
        let ignore = Dockerignore::parse(dockerignore);
        let kept: Vec<String> = paths.iter().map(|path| format!("{path}: {}", if ignore.excludes(path) { "out" } else { "in" })).collect();
        expected.assert_eq(&kept.join("\n"));
    }

    #[test]
    fn patterns_exceptions_and_parents() {
        check(
            "target\n!target/stage\n.git\n# a comment\n/secrets/*.key\n**/*.tmp\n",
            &[
                "target/release/api",
                "target/stage/linux/amd64/api",
                "target",
                ".git/config",
                "secrets/a.key",
                "secrets/a.pub",
                "crates/api/x.tmp",
                "crates/api/src/main.rs",
            ],
            expect_test::expect![[r#"
                target/release/api: out
                target/stage/linux/amd64/api: in
                target: out
                .git/config: out
                secrets/a.key: out
                secrets/a.pub: in
                crates/api/x.tmp: out
                crates/api/src/main.rs: in"#]],
        );
    }
}
