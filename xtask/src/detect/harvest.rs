//! What an app's build read, as the build itself reports it: cargo writes a dep-info file beside
//! each binary (`<bin>.d`) listing every local source file the compiler read (`include_str!`
//! and `include_bytes!` targets among them) and every path a build script watches with
//! `cargo:rerun-if-changed`. The files of that list outside the crates the app is built from are
//! inputs no crate directory covers: after each build they are kept under
//! `target/xtask/inputs/<app>.json`, where detection finds them. Parsing and the comparison are
//! pure; reading and writing the files is at the edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;

use crate::detect::{select, Evidence, AUXILIARY_DIRS};
use crate::workspace::config::PathRule;
use crate::workspace::Workspace;

/// The paths a Makefile-style dep-info file lists as the prerequisites of its first target
/// (`target: a b\ c`), unescaped.
pub fn parse_dep_info(text: &str) -> Vec<String> {
    let Some(line) = text.lines().find(|line| !line.trim().is_empty()) else { return Vec::new() };
    // The target ends at the first `: ` that is not escaped.
    let mut prerequisites = String::new();
    let mut chars = line.chars().peekable();
    let mut in_target = true;
    while let Some(c) = chars.next() {
        match (in_target, c) {
            (_, '\\') => {
                if let Some(next) = chars.next() {
                    if !in_target {
                        prerequisites.push(if next == ' ' { '\u{0}' } else { next });
                    }
                }
            }
            (true, ':') if chars.peek().is_none_or(|next| *next == ' ') => in_target = false,
            (true, _) => {}
            (false, c) => prerequisites.push(c),
        }
    }
    prerequisites.split(' ').filter(|path| !path.is_empty()).map(|path| path.replace('\u{0}', " ")).collect()
}

/// The workspace-relative paths of `read` (absolute paths) that crate directories do not make
/// inputs: in the workspace but outside `crate_dirs` (the directories of the crates the app is
/// built from) and outside `target/` (where build scripts write), or in a crate's `tests/`,
/// `benches/` or `examples/`, which detection otherwise leaves out. Sorted.
pub fn outside_crates(read: &[String], root: &Path, crate_dirs: &[&str]) -> Vec<String> {
    let mut found = BTreeSet::new();
    for path in read {
        let path = normalised(Path::new(path));
        let Ok(relative) = path.strip_prefix(root) else { continue };
        let relative = relative.to_string_lossy().replace('\\', "/");
        let in_crate = crate_dirs.iter().find_map(|dir| match dir.is_empty() {
            true => Some(relative.as_str()),
            false => relative.strip_prefix(&format!("{dir}/")),
        });
        let kept = match in_crate {
            Some(rest) => AUXILIARY_DIRS.iter().any(|aux| rest.starts_with(aux)),
            None => !relative.starts_with("target/") && !relative.is_empty(),
        };
        if kept {
            found.insert(relative);
        }
    }
    found.into_iter().collect()
}

/// `path` with its `.` and `..` components resolved by name: cargo writes a build script's
/// `rerun-if-changed=../../api` as `<crate dir>/../../api`.
fn normalised(path: &Path) -> std::path::PathBuf {
    let mut result = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                result.pop();
            }
            std::path::Component::CurDir => {}
            other => result.push(other),
        }
    }
    result
}

/// The paths of `read` whose change a fresh clone's detection would not tie to `app`: the same
/// `select` over the committed rules, without this machine's record of what builds read.
pub fn unknown_to_a_fresh_clone<'a>(workspace: &Workspace, app: &str, read: &'a [String], rules: &[PathRule]) -> Vec<&'a String> {
    let evidence = Evidence { rules: rules.to_vec(), ..Evidence::default() };
    read.iter()
        .filter(|path| !select(workspace, std::slice::from_ref(*path), &evidence).iter().any(|selected| selected.name == app))
        .collect()
}

/// The directories of the crates `app` is built from: its own and its workspace dependencies'.
fn crate_dirs<'a>(workspace: &'a Workspace, app: &str) -> Vec<&'a str> {
    workspace.dependencies_of(app).iter().filter_map(|name| workspace.member(name)).map(|member| member.dir.as_str()).collect()
}

fn cache_file(workspace: &Workspace, app: &str) -> std::path::PathBuf {
    workspace.target_dir.join("xtask/inputs").join(format!("{app}.json"))
}

/// What the last build of each app read outside its crates, where a build recorded it.
pub fn recorded(workspace: &Workspace) -> BTreeMap<String, Vec<String>> {
    workspace.apps().filter_map(|app| Some((app.name.clone(), recorded_for(workspace, &app.name)?))).collect()
}

fn recorded_for(workspace: &Workspace, app: &str) -> Option<Vec<String>> {
    serde_json::from_slice(&std::fs::read(cache_file(workspace, app)).ok()?).ok()
}

/// Reads the dep-info of `app`'s binary for each of `triples` after its build and records what
/// it read outside its crates. Returns the paths that are new since the last record.
pub fn record(workspace: &Workspace, app: &str, bin: &str, triples: &[&String]) -> Result<Vec<String>> {
    let dirs = crate_dirs(workspace, app);
    let mut read = BTreeSet::new();
    for triple in triples {
        let profile_dir = workspace.member(app).map_or("release", |member| member.cargo_options.profile_dir());
        let dep_info = workspace.target_dir.join(triple).join(profile_dir).join(format!("{bin}.d"));
        let Ok(text) = std::fs::read_to_string(&dep_info) else { continue };
        read.extend(outside_crates(&parse_dep_info(&text), &workspace.root, &dirs));
    }
    let read: Vec<String> = read.into_iter().collect();
    let before = recorded_for(workspace, app).unwrap_or_default();
    let file = cache_file(workspace, app);
    std::fs::create_dir_all(file.parent().expect("has a parent"))?;
    std::fs::write(&file, serde_json::to_vec(&read)?)?;
    Ok(read.into_iter().filter(|path| !before.contains(path)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_is_read_as_make_does() {
        let text = "/ws/target/x/release/worker: /ws/crates/worker/src/main.rs /ws/shared/schema\\ v1.json /ws/proto\n\n/ws/crates/worker/src/main.rs:\n";
        assert_eq!(parse_dep_info(text), ["/ws/crates/worker/src/main.rs", "/ws/shared/schema v1.json", "/ws/proto"]);
        assert!(parse_dep_info("").is_empty());
    }

    #[test]
    fn only_files_outside_the_apps_crates_count() {
        let read = [
            "/ws/crates/worker/src/main.rs",
            "/ws/crates/common/src/lib.rs",
            "/ws/crates/worker/tests/fixture.txt",
            "/ws/crates/worker/src/../../../shared/schema.json",
            "/ws/crates/worker/../../proto",
            "/ws/target/release/build/worker-1/out/gen.rs",
            "/home/u/.cargo/registry/src/x/lib.rs",
        ]
        .map(String::from);
        assert_eq!(
            outside_crates(&read, Path::new("/ws"), &["crates/worker", "crates/common"]),
            ["crates/worker/tests/fixture.txt", "proto", "shared/schema.json"]
        );
    }
}
