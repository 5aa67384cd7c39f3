//! `cargo xtask`: finds the workspace's apps (crates with a Dockerfile) that changed, builds
//! their multi-arch images and pushes them to one repository. See ARCHITECTURE.md for the map.
//!
//! This file only parses the flags, builds the shared `Context` once and hands both to the
//! command's module; errors are printed as one paragraph with exit code 2.

mod aws;
mod builder;
mod commands;
mod context;
mod detect;
mod flags;
mod image;
mod progress;
mod repository;
#[cfg(test)]
mod tidy;
mod workspace;

use std::process::ExitCode;

use clap::Parser;

use crate::context::Context;
use crate::detect::evidence::EarlyDetection;
use crate::flags::Command;
use crate::workspace::graph::WorkTreeGraph;
use crate::workspace::Workspace;

fn main() -> ExitCode {
    // cargo runs this executable as its rustc wrapper while the builder compiles the apps.
    if let Some(code) = builder::auditable::run_as_rustc_wrapper() {
        return code;
    }
    // Build scripts and cargo run it as zig's wrapper, the C compiler and linker of a target.
    if let Some(code) = builder::zig::run_as_compiler() {
        return code;
    }
    let flags = flags::Xtask::parse();
    match run(flags) {
        Ok(code) => code,
        Err(err) => {
            // One paragraph: the outermost context says what failed, the causes say why and the
            // innermost usually says what to do. Text from outside (a registry's error body) may
            // hold newlines, terminal escapes or `::` workflow commands: control characters are
            // shown escaped, so the paragraph stays one line that starts with `error:`.
            eprintln!("error: {}", progress::printable(&format!("{err:#}")));
            ExitCode::from(2)
        }
    }
}

fn run(flags: flags::Xtask) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    // The commands that need no workspace: pushing a layout, assembling one Dockerfile, and the
    // completion script.
    let command = match flags.command {
        Command::Push(args) => return done(runtime.block_on(commands::push::run(args))),
        Command::Assemble(args) => return done(runtime.block_on(commands::assemble::run(args))),
        Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut <flags::Xtask as clap::CommandFactory>::command(), "xtask", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        command => command,
    };
    // Detection may compare dependency graphs, and a build of several apps checks them: the work
    // tree's graph starts resolving now, in the background.
    let dir = std::env::current_dir()?;
    let graph = match &command {
        Command::Changed(_) | Command::Build(_) | Command::Release(_) | Command::Hook(_) => WorkTreeGraph::started(&dir),
        _ => WorkTreeGraph::on_demand(&dir),
    };
    let loading = Workspace::start_loading(&dir, graph)?;
    // Meanwhile `changed` asks git what the range changed: to start the base's graph too when a
    // root manifest change needs it, and to read the workspace from the work tree's graph when
    // the detection certainly needs that.
    let read_first = match &command {
        Command::Changed(args) => commands::changed::read_git_first(args),
        _ => None,
    };
    let ctx = Context::new(loading.finish(read_first.as_ref().is_some_and(EarlyDetection::needs_work_tree_graph))?)?;
    runtime.block_on(async {
        match command {
            Command::Changed(args) => commands::changed::run(&ctx, args, read_first).await,
            Command::Build(args) => done(commands::build::run(&ctx, args).await),
            Command::Release(args) => done(commands::release::run(&ctx, args).await),
            Command::Images(args) => done(commands::images::run(&ctx, args).await),
            Command::Rollback(args) => done(commands::rollback::run(&ctx, args).await),
            Command::Promote(args) => done(commands::promote::run(&ctx, args).await),
            Command::Prune(args) => done(commands::prune::run_prune(&ctx, args).await),
            Command::Delete(args) => done(commands::prune::run_delete(&ctx, args).await),
            Command::Merge(args) => done(commands::merge::run(&ctx, args).await),
            Command::Verify(args) => done(commands::verify::run(&ctx, args).await),
            Command::Ecr(args) => done(commands::ecr::run(&ctx, args).await),
            Command::Hook(args) => done(commands::hook::run(&ctx, args).await),
            Command::Adopt(args) => commands::adopt::run(&ctx, args),
            Command::Push(_) | Command::Assemble(_) | Command::Completions(_) => unreachable!("handled without a workspace"),
        }
    })
}
