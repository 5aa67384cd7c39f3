//! Self-healing selection: apps whose image of their current inputs is not in the repository
//! although the git diff does not show them (a release that failed half-way, a new or emptied
//! repository). For each app, the commits that last touched its inputs are looked up as
//! `<app>-<sha>` tags, newest first; the first one found must carry the app's current input
//! digest (see `inputs`), else the app is selected.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::detect::inputs::{self, AppInputs};
use crate::detect::{self, Reason, SelectedApp};
use crate::image::oci::Digest;
use crate::image::reference::Repositories;
use crate::repository::store::{Registries, Store};
use crate::workspace::git::Git;
use crate::workspace::Workspace;

/// How many of an app's last changes are looked up before it counts as never released.
const CHANGES_SEARCHED: usize = 10;

/// What self-healing compares against: each app's repository, and the history leading to `head`.
pub struct Released<'a> {
    pub registries: &'a Registries,
    pub repositories: &'a Repositories,
    pub git: &'a Git<'a>,
    pub head: &'a str,
}

/// Why `app` must be released although git shows no change, or `None` when the repository holds
/// an image of its current inputs: under `<app>-latest` (where a release that healed the app put
/// it), or else under the newest `<app>-<sha>` of `last_changes`, the commits that last touched its
/// inputs (which keeps a rollback of `-latest` in place).
async fn unreleased_reason(released: &Released<'_>, app: &str, inputs: &AppInputs, last_changes: &[String]) -> Result<Option<Reason>> {
    let store: Store = released.registries.open(&released.repositories.of(app)?)?;
    let store = &store;
    let recorded_inputs = |tag: String| async move {
        let annotations = store.find_annotations(&tag).await.with_context(|| format!("cannot look {tag} up in {store}"))?;
        anyhow::Ok(annotations.map(|annotations| annotations.get(inputs::ANNOTATION).and_then(|digest| digest.parse::<Digest>().ok())))
    };
    if recorded_inputs(released.repositories.tag(app, "latest")).await? == Some(Some(inputs.digest.clone())) {
        return Ok(None);
    }
    let mut searched = Vec::new();
    for sha in last_changes {
        let tag = released.repositories.tag(app, sha);
        match recorded_inputs(tag.clone()).await? {
            None => searched.push(tag),
            Some(Some(digest)) if digest == inputs.digest => return Ok(None),
            Some(recorded) => return Ok(Some(Reason::Stale { tag, recorded })),
        }
    }
    Ok(Some(Reason::Unreleased { searched }))
}

/// The newest `CHANGES_SEARCHED` commits that touched each app's inputs, collected while the
/// history is walked newest first.
struct LastChanges<'a> {
    apps: &'a [(&'a String, &'a AppInputs)],
    found: BTreeMap<String, Vec<String>>,
}

impl<'a> LastChanges<'a> {
    fn new(apps: &'a [(&'a String, &'a AppInputs)]) -> LastChanges<'a> {
        LastChanges { apps, found: apps.iter().map(|(name, _)| ((*name).clone(), Vec::new())).collect() }
    }

    /// Takes the next older commit and the paths it changed; `false` once every app has its
    /// share, so the walk can stop.
    fn visit(&mut self, sha: &str, paths: &[String]) -> bool {
        for (name, inputs) in self.apps {
            let commits = self.found.get_mut(*name).expect("every app has an entry");
            if commits.len() < CHANGES_SEARCHED && paths.iter().any(|path| inputs.touched_by(path)) {
                commits.push(sha.to_string());
            }
        }
        self.found.values().any(|commits| commits.len() < CHANGES_SEARCHED)
    }
}

/// Adds to `apps` every app of `workspace` that is not in `apps` nor in `excluded` and whose
/// image of its current inputs is missing from the repository. The history is walked once, in
/// first-parent order, for all apps; the lookups run concurrently.
pub async fn add_unreleased(
    released: &Released<'_>,
    workspace: &Workspace,
    inputs: &BTreeMap<String, AppInputs>,
    excluded: &[String],
    apps: &mut Vec<SelectedApp>,
) -> Result<()> {
    let candidates: Vec<(&String, &AppInputs)> =
        inputs.iter().filter(|(name, _)| !excluded.contains(name) && !apps.iter().any(|app| &app.name == *name)).collect();
    let mut changes = LastChanges::new(&candidates);
    released.git.walk_history(released.head, |sha, paths| changes.visit(sha, paths))?;
    let lookups = candidates.iter().map(|(name, inputs)| unreleased_reason(released, name, inputs, &changes.found[*name]));
    let reasons = futures_util::future::join_all(lookups).await;
    for ((name, _), reason) in candidates.iter().zip(reasons) {
        if let Some(reason) = reason? {
            apps.push(detect::selected(workspace, name, vec![reason]));
        }
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks `history` (newest first: a commit and the paths it changed) for apps with the given
    /// pathspecs, and compares each app's last changes, and how many commits were read, with
    /// `expected`.
    fn check(apps: &[(&str, &[&str])], history: &[(&str, &[&str])], expected: expect_test::Expect) {
        let inputs: Vec<(String, AppInputs)> = apps
            .iter()
            .map(|(name, specs)| {
                let pathspecs = specs.iter().map(|spec| spec.to_string()).collect();
                (name.to_string(), AppInputs { digest: Digest::of(name.as_bytes()), pathspecs })
            })
            .collect();
        let candidates: Vec<(&String, &AppInputs)> = inputs.iter().map(|(name, inputs)| (name, inputs)).collect();
        let mut changes = LastChanges::new(&candidates);
        let mut read = 0;
        for (sha, paths) in history {
            read += 1;
            let paths: Vec<String> = paths.iter().map(|path| path.to_string()).collect();
            if !changes.visit(sha, &paths) {
                break;
            }
        }
        let mut actual: Vec<String> = changes
            .found
            .iter()
            .map(|(app, commits)| format!("{app}: {}", if commits.is_empty() { "-".to_string() } else { commits.join(" ") }))
            .collect();
        actual.push(format!("read {read} of {}", history.len()));
        expected.assert_eq(&actual.join("\n"));
    }

    #[test]
    fn each_app_gets_the_commits_that_touched_its_inputs() {
        check(
            &[("api", &["Cargo.lock", "crates/api", "crates/common"]), ("worker", &["Cargo.lock", "crates/worker"])],
            &[
                ("c5", &["README.md"]),
                ("c4", &["crates/common/src/lib.rs"]),
                ("c3", &["crates/worker/src/main.rs", "crates/api2/x"]),
                ("c2", &["Cargo.lock"]),
                ("c1", &["crates/api/Dockerfile"]),
            ],
            expect_test::expect![[r#"
                api: c4 c2 c1
                worker: c3 c2
                read 5 of 5"#]],
        );
    }

    #[test]
    fn the_walk_stops_once_every_app_has_its_share() {
        let history: Vec<(String, Vec<&str>)> = (0..25).rev().map(|n| (format!("c{n}"), vec!["crates/api/src/main.rs"])).collect();
        let history: Vec<(&str, &[&str])> = history.iter().map(|(sha, paths)| (sha.as_str(), paths.as_slice())).collect();
        check(
            &[("api", &["crates/api"])],
            &history,
            expect_test::expect![[r#"
                api: c24 c23 c22 c21 c20 c19 c18 c17 c16 c15
                read 10 of 25"#]],
        );
        // An app that nothing touched keeps the walk going to the root.
        check(
            &[("api", &["crates/api"]), ("worker", &["crates/worker"])],
            &history[..12],
            expect_test::expect![[r#"
                api: c24 c23 c22 c21 c20 c19 c18 c17 c16 c15
                worker: -
                read 12 of 12"#]],
        );
    }
}
