//! Tidy checks kept as tests: the boundaries ARCHITECTURE.md states, checked against the sources
//! so that they stay true when the code moves.

use std::path::{Path, PathBuf};

/// Every source file of the xtask, with its path relative to `src/` (`/`-separated) and its text.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut pending = vec![root.clone()];
    let mut found = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
                found.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

/// The files outside `allowed` (path prefixes) whose code, comments aside, contains any of
/// `needles`.
fn offenders(allowed: &[&str], needles: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(path, _)| path != "tidy.rs" && !allowed.iter().any(|prefix| path.starts_with(prefix)))
        .filter(|(_, text)| {
            text.lines().map(str::trim_start).filter(|line| !line.starts_with("//")).any(|line| needles.iter().any(|n| line.contains(n)))
        })
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn only_the_repository_layer_speaks_http() {
    assert_eq!(offenders(&["repository/"], &["reqwest"]), Vec::<String>::new(), "HTTP to registries goes through repository::registry");
}

#[test]
fn only_the_engine_runs_docker() {
    let needles = ["cmd!(sh, \"docker", "cmd!(self.sh, \"docker", "Command::new(\"docker\")"];
    assert_eq!(offenders(&["builder/engine.rs"], &needles), Vec::<String>::new(), "docker runs only in builder::engine");
}

#[test]
fn only_the_aws_layer_calls_aws() {
    assert_eq!(offenders(&["aws/"], &["aws_sdk_ecr", "aws_config"]), Vec::<String>::new(), "AWS is called only from aws/");
}

#[test]
fn commands_are_leaves() {
    assert_eq!(offenders(&["commands/", "main.rs"], &["crate::commands"]), Vec::<String>::new(), "no module imports a command");
}

#[test]
fn every_module_says_what_it_is() {
    let undocumented: Vec<String> = sources().into_iter().filter(|(_, text)| !text.starts_with("//!")).map(|(path, _)| path).collect();
    assert_eq!(undocumented, Vec::<String>::new(), "each file opens with a //! module doc");
}
