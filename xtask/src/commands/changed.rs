//! `cargo xtask changed`: which apps changed between two commits (or against the work tree),
//! with every reason, as text, JSON or an explanation chain; with --against-registry also the
//! apps whose image of their current inputs is missing from the repository.

use std::process::ExitCode;

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::context::Context;
use crate::detect::evidence::{self, detect, resolve_range, Detection, EarlyDetection};
use crate::detect::heal::{self, Released};
use crate::detect::shards::{self, Shard};
use crate::detect::{select_all, Reason};
use crate::flags;
use crate::image::dockerfile;
use crate::repository::store::Registries;
use crate::workspace::config::{Config, Overrides};
use crate::workspace::git::Git;
use crate::workspace::Workspace;

/// The range's changes as git tells them before the workspace is loaded, so that the graphs the
/// detection needs start resolving at once (`EarlyDetection`); none with --all.
pub fn read_git_first(args: &flags::Changed) -> Option<EarlyDetection> {
    let sh = xshell::Shell::new().ok()?;
    (!args.all).then(|| EarlyDetection::read(&sh, args.base.as_deref(), args.head.as_deref(), args.include_uncommitted)).flatten()
}

pub async fn run(ctx: &Context, args: flags::Changed, read_first: Option<EarlyDetection>) -> Result<ExitCode> {
    let workspace = &ctx.workspace;
    let git = ctx.git()?;
    let config = ctx.config(Overrides { repository: args.repository.as_deref(), platforms: &[] })?;
    if workspace.apps().next().is_none() {
        // A new user's first run: say what an app is, and which Dockerfiles are there.
        let dockerfiles = crate::workspace::dockerfiles_under(&workspace.root);
        let found = if dockerfiles.is_empty() { "none".to_string() } else { dockerfiles.join(", ") };
        eprintln!(
            "note: the workspace has no app yet: an app is a crate with a Dockerfile beside its Cargo.toml, an image of docker/<name>/Dockerfile or docker/Dockerfile.<name>, a Dockerfile at the workspace root whose builder stage builds a crate (named for it), or an image declared in [[workspace.metadata.xtask.images]] (a Dockerfile anywhere, with its build arguments, such as ARG PACKAGE); Dockerfiles found: {found}"
        );
    }
    let mut detection = match read_first.and_then(|read_first| read_first.detect(&git, workspace, &config)) {
        Some(detection) => detection?,
        None => detection(ctx, &git, &config, &args)?,
    };
    if args.against_registry {
        let registries = Registries::new(args.ca_file.as_deref(), config.repository.host())?;
        let inputs = evidence::current_inputs(&git, workspace, &config, &detection.head)?;
        let released = Released { registries: &registries, repositories: &config.repository, git: &git, head: &detection.head };
        heal::add_unreleased(&released, workspace, &inputs, &[], &mut detection.apps).await?;
    }
    let shards = match args.shards {
        Some(count) => Some(plan_shards(ctx, &config, &detection, usize::from(count))?),
        None => None,
    };
    if let Some(name) = &args.explain {
        workspace.select_apps(std::slice::from_ref(name))?;
        explain(workspace, &detection, name);
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&Printed { detection: &detection, shards })?);
    } else {
        print_detection(&detection);
        for (number, shard) in shards.iter().flatten().enumerate() {
            let how = if shard.by_digest { ", by digest" } else { "" };
            println!("shard {} ({}, {}{how}): {}", number + 1, shard.runner, shard.platforms, shard.apps.join(" "));
        }
    }
    let changed = !detection.apps.is_empty() || !detection.deleted.is_empty();
    Ok(if args.exit_code && changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What `--json` prints: the detection, and the jobs with --shards.
#[derive(Serialize)]
struct Printed<'a> {
    #[serde(flatten)]
    detection: &'a Detection,
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<Vec<Shard>>,
}

/// The selected apps as CI jobs (`detect::shards`), each app's Dockerfile telling whether it
/// runs commands.
fn plan_shards(ctx: &Context, config: &Config, detection: &Detection, count: usize) -> Result<Vec<Shard>> {
    let mut runs_commands = BTreeSet::new();
    for app in &detection.apps {
        let member = ctx.workspace.member(&app.name).context("a selected app is a member of the workspace")?;
        let text = member.dockerfile_text(&ctx.workspace.root)?;
        if dockerfile::runs_commands(&text) {
            runs_commands.insert(app.name.clone());
        }
    }
    let apps: Vec<String> = detection.apps.iter().map(|app| app.name.clone()).collect();
    Ok(shards::plan(&ctx.workspace, &apps, &runs_commands, &config.platforms, count))
}

/// The apps between the range the flags give, every app with --all, or every app with the
/// reason when the range cannot be found and --fallback all was given.
fn detection(ctx: &Context, git: &Git<'_>, config: &Config, args: &flags::Changed) -> Result<Detection> {
    let workspace = &ctx.workspace;
    Ok(if args.all {
        let head = git.rev_parse(args.head.as_deref().unwrap_or("HEAD"))?;
        Detection { base: None, head, uncommitted: false, apps: select_all(workspace, Reason::Requested), deleted: Vec::new() }
    } else {
        match resolve_range(git, args.base.as_deref(), args.head.as_deref()) {
            Ok(range) => detect(git, workspace, config, &range, args.include_uncommitted)?,
            Err(err) if args.fallback.as_deref() == Some("all") => {
                let why = format!("{err:#}");
                let head = git.rev_parse(args.head.as_deref().unwrap_or("HEAD"))?;
                Detection {
                    base: None,
                    head,
                    uncommitted: false,
                    apps: select_all(workspace, Reason::Fallback { why }),
                    deleted: Vec::new(),
                }
            }
            Err(err) => return Err(err.context("cannot tell what changed; pass --fallback all to select every app instead")),
        }
    })
}

fn print_detection(detection: &Detection) {
    let head = if detection.uncommitted { "the work tree".to_string() } else { detection.head.clone() };
    if detection.apps.is_empty() {
        println!("no app changed between {} and {head}", detection.base.as_deref().unwrap_or("(root)"));
    }
    for app in &detection.apps {
        println!("{}: {}", app.name, summary(&app.name, &app.reasons));
    }
    for app in &detection.deleted {
        println!("{} (deleted from {}): not built", app.name, app.path);
    }
}

/// An app's reasons on one readable line: the first few, a lockfile change by its count and a
/// few of its packages, and how many more there are; `--explain` and `--json` give them all.
fn summary(app: &str, reasons: &[Reason]) -> String {
    const SHOWN: usize = 3;
    let mut shown: Vec<String> = reasons
        .iter()
        .take(SHOWN)
        .map(|reason| match reason {
            Reason::Lockfile { packages } if packages.len() > SHOWN => {
                format!("Cargo.lock changed {} of the packages it compiles, e.g. {}", packages.len(), packages[..SHOWN].join(", "))
            }
            reason => reason.to_string(),
        })
        .collect();
    let lockfile_cut = reasons.iter().take(SHOWN).any(|reason| matches!(reason, Reason::Lockfile { packages } if packages.len() > SHOWN));
    if reasons.len() > SHOWN {
        shown.push(format!("and {} more (--explain {app} for all)", reasons.len() - SHOWN));
    } else if lockfile_cut {
        shown.push(format!("--explain {app} for all"));
    }
    shown.join("; ")
}

/// Prints how `name` was found, then why it is selected, each reason as a chain from the changed
/// file to the app.
fn explain(workspace: &Workspace, detection: &Detection, name: &str) {
    if let Some(member) = workspace.member(name) {
        println!("{name}: built from {}", member.found_how());
    }
    let Some(app) = detection.apps.iter().find(|app| app.name == name) else {
        println!(
            "{name} is not selected: nothing it is built from changed between {} and {}",
            detection.base.as_deref().unwrap_or("(root)"),
            detection.head
        );
        return;
    };
    for reason in &app.reasons {
        match reason {
            Reason::Dependency { crate_name: owner, path } | Reason::BaseImage { image: owner, path } => {
                let chain = workspace.dependency_chain(name, owner);
                println!("{path} → {}", chain.join(" → "));
            }
            Reason::File { path } => println!("{path} → {name}"),
            other => println!("{other} → {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_line_stays_readable() {
        let file = |n: usize| Reason::File { path: format!("crates/api/src/m{n}.rs") };
        assert_eq!(summary("api", &[file(1)]), "crates/api/src/m1.rs changed");
        let many: Vec<Reason> = (1..=40).map(file).collect();
        assert_eq!(
            summary("api", &many),
            "crates/api/src/m1.rs changed; crates/api/src/m2.rs changed; crates/api/src/m3.rs changed; and 37 more (--explain api for all)"
        );
        let packages: Vec<String> = (1..=37).map(|n| format!("crate{n} 1.0.{n} now depends on x")).collect();
        assert_eq!(
            summary("api", &[Reason::Lockfile { packages }]),
            "Cargo.lock changed 37 of the packages it compiles, e.g. crate1 1.0.1 now depends on x, crate2 1.0.2 now depends on x, crate3 1.0.3 now depends on x; --explain api for all"
        );
    }
}
