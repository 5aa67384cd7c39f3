//! How the selected apps split into CI jobs (`changed --shards N`), a plain function over the
//! workspace graph. Apps that cross-compile (no RUN step) go into at most N balanced jobs, each
//! building every platform; an app with RUN steps, which under emulation runs about 20 times
//! slower, gets one job per platform on a runner of that architecture, pushing by digest for
//! `merge`. An image of `docker/` stays in one job with everything built on it, so that its tags
//! move before theirs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::image::platform::Platform;
use crate::workspace::Workspace;

/// One CI job: the apps it releases, for which platforms, on which runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub apps: Vec<String>,
    /// Comma-separated, as `--platform` takes them.
    pub platforms: String,
    /// The GitHub-hosted runner label for the job.
    pub runner: String,
    /// Whether the job pushes by digest (a platform of a fanned-out app), to be merged.
    pub by_digest: bool,
}

/// The runner of a cross-compiling job, and of a job of each architecture.
const DEFAULT_RUNNER: &str = "ubuntu-latest";
const ARM64_RUNNER: &str = "ubuntu-24.04-arm";

fn runner_for(platform: &Platform) -> &'static str {
    if platform.architecture == "arm64" {
        ARM64_RUNNER
    } else {
        DEFAULT_RUNNER
    }
}

/// Splits `apps` into jobs: those in `runs_commands` (and what is built with them) one job per
/// platform, the others into at most `count` jobs balanced by the number of workspace crates each
/// compiles (longest first onto the lightest job). Deterministic: equal inputs, equal jobs.
pub fn plan(workspace: &Workspace, apps: &[String], runs_commands: &BTreeSet<String>, platforms: &[Platform], count: usize) -> Vec<Shard> {
    let groups = connected_by_images(workspace, apps);
    let (fanned, spread): (Vec<Vec<String>>, Vec<Vec<String>>) =
        groups.into_iter().partition(|group| group.iter().any(|app| runs_commands.contains(app)));
    let all_platforms = platforms.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let weight = |group: &Vec<String>| group.iter().map(|app| workspace.dependencies_of(app).len().max(1)).sum::<usize>();
    let mut spread: Vec<(usize, Vec<String>)> = spread.into_iter().map(|group| (weight(&group), group)).collect();
    spread.sort_by(|(a_weight, a), (b_weight, b)| b_weight.cmp(a_weight).then_with(|| a.cmp(b)));
    let mut jobs: Vec<(usize, Vec<String>)> = vec![(0, Vec::new()); count.max(1).min(spread.len())];
    for (group_weight, group) in spread {
        let lightest = jobs.iter_mut().min_by_key(|(load, _)| *load).expect("at least one job when there is a group");
        lightest.0 += group_weight;
        lightest.1.extend(group);
    }
    let mut shards: Vec<Shard> = jobs
        .into_iter()
        .map(|(_, mut apps)| {
            apps.sort();
            Shard { apps, platforms: all_platforms.clone(), runner: DEFAULT_RUNNER.to_string(), by_digest: false }
        })
        .collect();
    let mut fanned: Vec<String> = fanned.into_iter().flatten().collect();
    fanned.sort();
    if !fanned.is_empty() {
        for platform in platforms {
            shards.push(Shard {
                apps: fanned.clone(),
                platforms: platform.to_string(),
                runner: runner_for(platform).to_string(),
                by_digest: true,
            });
        }
    }
    shards
}

/// `apps` in groups that share an image of `docker/` they are built on (or are), each sorted.
fn connected_by_images(workspace: &Workspace, apps: &[String]) -> Vec<Vec<String>> {
    // Each app's root: the first image at the bottom of its FROM chain, or itself.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for app in apps {
        let mut root = app.as_str();
        while let Some(base) = workspace.image_bases(root).first().copied() {
            root = base;
        }
        groups.entry(root.to_string()).or_default().push(app.clone());
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::tests::workspace;

    fn check(apps: &[&str], runs_commands: &[&str], count: usize, expected: expect_test::Expect) {
        // c depends on a and b: the heaviest app; api starts FROM base.
        let mut ws = workspace(&[
            ("a", "crates/a", &[], true),
            ("b", "crates/b", &[], true),
            ("c", "crates/c", &["a", "b"], true),
            ("d", "crates/d", &[], true),
            ("api", "crates/api", &[], true),
            ("stamp", "crates/stamp", &[], true),
        ]);
        let read = |path: &str| Some(if path == "crates/api/Dockerfile" { "FROM base\n" } else { "FROM scratch\n" }.to_string());
        ws.add_images(&[crate::workspace::ImageEntry::of_dir("docker/base")], &read).unwrap();
        let platforms = [Platform::parse("linux/amd64").unwrap(), Platform::parse("linux/arm64").unwrap()];
        let apps: Vec<String> = apps.iter().map(|app| app.to_string()).collect();
        let runs: BTreeSet<String> = runs_commands.iter().map(|app| app.to_string()).collect();
        let shards = plan(&ws, &apps, &runs, &platforms, count);
        let lines: Vec<String> = shards
            .iter()
            .map(|shard| {
                format!("{} {}{}: {}", shard.runner, shard.platforms, if shard.by_digest { " by digest" } else { "" }, shard.apps.join(" "))
            })
            .collect();
        expected.assert_eq(&lines.join("\n"));
    }

    #[test]
    fn apps_spread_over_balanced_jobs_and_run_steps_fan_out_per_platform() {
        check(
            &["a", "b", "c", "d", "api", "base", "stamp"],
            &["stamp"],
            2,
            expect_test::expect![[r#"
                ubuntu-latest linux/amd64,linux/arm64: a api base d
                ubuntu-latest linux/amd64,linux/arm64: b c
                ubuntu-latest linux/amd64 by digest: stamp
                ubuntu-24.04-arm linux/arm64 by digest: stamp"#]],
        );
        // More jobs than apps: one app each, never an empty job.
        check(
            &["a", "d"],
            &[],
            4,
            expect_test::expect![[r#"
                ubuntu-latest linux/amd64,linux/arm64: a
                ubuntu-latest linux/amd64,linux/arm64: d"#]],
        );
        check(&[], &[], 3, expect_test::expect![""]);
    }
}
