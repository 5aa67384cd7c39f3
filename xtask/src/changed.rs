//! Change detection: which apps must be rebuilt, and why. `select` is a plain function over the
//! changed paths and the workspace graph; git is only asked for the paths.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;
use xshell::Shell;

use crate::flags;
use crate::git::Git;
use crate::workspace::Workspace;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectedApp {
    pub name: String,
    pub path: String,
    pub dockerfile: String,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// A file of the app itself changed.
    File { path: String },
    /// A file of a workspace crate the app depends on changed.
    Dependency {
        #[serde(rename = "crate")]
        crate_name: String,
        path: String,
    },
    /// A file every app's build reads changed (lockfile, root manifest, toolchain, docker/).
    Workspace { path: String },
    /// The user named the app or passed --all.
    Requested,
    /// The head commit has no parent, so everything is new.
    FirstCommit,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::File { path } => write!(f, "{path} changed"),
            Reason::Dependency { crate_name, path } => write!(f, "dependency {crate_name} changed ({path})"),
            Reason::Workspace { path } => write!(f, "workspace-wide input {path} changed"),
            Reason::Requested => write!(f, "requested"),
            Reason::FirstCommit => write!(f, "first commit"),
        }
    }
}

/// Files that every app's build reads.
fn is_workspace_wide(path: &str) -> bool {
    matches!(path, "Cargo.lock" | "Cargo.toml" | "rust-toolchain" | "rust-toolchain.toml")
        || path.starts_with(".cargo/")
        || path.starts_with("docker/")
}

/// The apps that `changed_paths` affect, in name order, each with every reason that selects it.
pub fn select(workspace: &Workspace, changed_paths: &[String]) -> Vec<SelectedApp> {
    let mut reasons: BTreeMap<String, Vec<Reason>> = BTreeMap::new();
    for path in changed_paths {
        if is_workspace_wide(path) {
            for app in workspace.apps() {
                reasons.entry(app.name.clone()).or_default().push(Reason::Workspace { path: path.clone() });
            }
            continue;
        }
        // The innermost member wins: a crate may live inside another crate's directory.
        let owner = workspace
            .members
            .iter()
            .filter(|member| member.dir.is_empty() || path.starts_with(&format!("{}/", member.dir)))
            .max_by_key(|member| member.dir.len());
        let Some(owner) = owner else { continue };
        for dependent in workspace.dependents_of(&owner.name) {
            let Some(app) = workspace.member(&dependent).filter(|member| member.dockerfile.is_some()) else { continue };
            let reason = if app.name == owner.name {
                Reason::File { path: path.clone() }
            } else {
                Reason::Dependency { crate_name: owner.name.clone(), path: path.clone() }
            };
            reasons.entry(app.name.clone()).or_default().push(reason);
        }
    }
    reasons.into_iter().map(|(name, reasons)| selected(workspace, &name, reasons)).collect()
}

/// Every app, for the same reason.
pub fn select_all(workspace: &Workspace, reason: Reason) -> Vec<SelectedApp> {
    workspace.apps().map(|app| selected(workspace, &app.name, vec![reason.clone()])).collect()
}

fn selected(workspace: &Workspace, name: &str, reasons: Vec<Reason>) -> SelectedApp {
    let app = workspace.member(name).expect("selected apps are workspace members");
    SelectedApp { name: app.name.clone(), path: app.dir.clone(), dockerfile: app.dockerfile.clone().unwrap_or_default(), reasons }
}

/// The commits a detection compares.
#[derive(Debug, Serialize)]
pub struct Range {
    /// `None` when the head commit has no parent.
    pub base: Option<String>,
    pub head: String,
}

/// Resolves `--base` and `--head`. Without a base, the merge-base with the default branch is
/// used, or the head's parent when the head is on that branch (a push to main compares with the
/// previous commit).
pub fn resolve_range(git: &Git<'_>, base: Option<&str>, head: Option<&str>) -> Result<Range> {
    let head = git.rev_parse(head.unwrap_or("HEAD"))?;
    let base = match base {
        Some(base) => Some(git.rev_parse(base)?),
        None => {
            let merge_base = match git.default_branch() {
                Some(branch) => Some(git.merge_base(&branch, &head)?),
                None => None,
            };
            match merge_base {
                Some(merge_base) if merge_base != head => Some(merge_base),
                _ => git.parent(&head),
            }
        }
    };
    Ok(Range { base, head })
}

/// Selects apps between two commits, or every app for a root commit.
pub fn detect(git: &Git<'_>, workspace: &Workspace, range: &Range) -> Result<Vec<SelectedApp>> {
    match &range.base {
        Some(base) => Ok(select(workspace, &git.changed_paths(base, &range.head)?)),
        None => Ok(select_all(workspace, Reason::FirstCommit)),
    }
}

#[derive(Serialize)]
struct ChangedReport<'a> {
    base: Option<&'a str>,
    head: &'a str,
    apps: &'a [SelectedApp],
}

pub fn run(args: flags::Changed) -> Result<()> {
    let sh = Shell::new()?;
    let workspace = Workspace::load(&sh, &std::env::current_dir()?)?;
    sh.change_dir(&workspace.root);
    let git = Git::open(&sh, &workspace.root)?;
    let range = resolve_range(&git, args.base.as_deref(), args.head.as_deref())?;
    let apps = if args.all { select_all(&workspace, Reason::Requested) } else { detect(&git, &workspace, &range)? };
    if args.json {
        let report = ChangedReport { base: range.base.as_deref(), head: &range.head, apps: &apps };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if apps.is_empty() {
        println!("no app changed between {} and {}", range.base.as_deref().unwrap_or("(root)"), range.head);
    } else {
        for app in &apps {
            let reasons: Vec<String> = app.reasons.iter().map(ToString::to_string).collect();
            println!("{}: {}", app.name, reasons.join("; "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::tests::workspace;

    fn check(changed: &[&str], expected: expect_test::Expect) {
        let ws = workspace(&[
            ("common", "crates/common", &[], false),
            ("words", "crates/words", &["common"], false),
            ("api", "crates/api", &["common"], true),
            ("worker", "crates/worker", &["words"], true),
            ("xtask", "xtask", &[], false),
        ]);
        let paths: Vec<String> = changed.iter().map(|p| p.to_string()).collect();
        let actual: Vec<String> = select(&ws, &paths)
            .iter()
            .map(|app| {
                let reasons: Vec<String> = app.reasons.iter().map(ToString::to_string).collect();
                format!("{}: {}", app.name, reasons.join("; "))
            })
            .collect();
        expected.assert_eq(&actual.join("\n"));
    }

    #[test]
    fn app_file_selects_only_that_app() {
        check(&["crates/api/src/main.rs"], expect_test::expect!["api: crates/api/src/main.rs changed"]);
    }

    #[test]
    fn shared_library_selects_every_dependent_app() {
        check(
            &["crates/common/src/lib.rs"],
            expect_test::expect![[r#"
                api: dependency common changed (crates/common/src/lib.rs)
                worker: dependency common changed (crates/common/src/lib.rs)"#]],
        );
        check(&["crates/words/src/lib.rs"], expect_test::expect!["worker: dependency words changed (crates/words/src/lib.rs)"]);
    }

    #[test]
    fn workspace_wide_inputs_select_every_app() {
        check(
            &["Cargo.lock"],
            expect_test::expect![[r#"
                api: workspace-wide input Cargo.lock changed
                worker: workspace-wide input Cargo.lock changed"#]],
        );
    }

    #[test]
    fn unrelated_files_select_nothing() {
        check(&["README.md", "xtask/src/main.rs", "crates/apiary/x.rs"], expect_test::expect![""]);
    }
}
