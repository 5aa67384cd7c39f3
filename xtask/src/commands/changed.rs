//! `cargo xtask changed`: which apps changed between two commits (or against the work tree),
//! with every reason, as text, JSON or an explanation chain; with --against-registry also the
//! apps whose image of their current inputs is missing from the repository.

use std::process::ExitCode;

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::context::Context;
use crate::detect::evidence::{self, detect, resolve_range, Detection};
use crate::detect::heal::{self, Released};
use crate::detect::shards::{self, Shard};
use crate::detect::{select_all, Reason};
use crate::flags;
use crate::image::dockerfile;
use crate::repository::store::Registries;
use crate::workspace::config::{Config, Overrides};
use crate::workspace::git::Git;
use crate::workspace::Workspace;

pub async fn run(ctx: &Context, args: flags::Changed) -> Result<ExitCode> {
    let workspace = &ctx.workspace;
    let git = ctx.git()?;
    let config = ctx.config(Overrides { repository: args.repository.as_deref(), platforms: &[] })?;
    let mut detection = detection(ctx, &git, &config, &args)?;
    if args.against_registry {
        let store = Registries::new(args.ca_file.as_deref(), config.repository.host())?.open(&config.repository)?;
        let inputs = evidence::current_inputs(&git, workspace, &config, &detection.head)?;
        let released = Released { store: &store, git: &git, head: &detection.head };
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
        let reasons: Vec<String> = app.reasons.iter().map(ToString::to_string).collect();
        println!("{}: {}", app.name, reasons.join("; "));
    }
    for app in &detection.deleted {
        println!("{} (deleted from {}): not built", app.name, app.path);
    }
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
