//! `cargo xtask`: finds the workspace's apps (crates with a Dockerfile) that changed, builds
//! their multi-arch images and pushes them to one repository. See ARCHITECTURE.md for the map.

mod build;
mod changed;
mod config;
mod dockerfile;
mod ecr;
mod engine;
mod flags;
mod git;
mod glob;
mod heal;
mod images;
mod inputs;
mod layer;
mod layout;
mod oci;
mod platform;
mod progress;
mod promote;
mod prune;
mod pull;
mod push;
mod reference;
mod registry;
mod release;
mod rollback;
mod scan;
mod toolchain;
mod workspace;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    match run(flags) {
        Ok(code) => code,
        Err(err) => {
            // One paragraph: the outermost context says what failed, the causes say why and the
            // innermost usually says what to do.
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(flags: flags::Xtask) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match flags.command {
        flags::Command::Changed(args) => runtime.block_on(changed::run(args)),
        flags::Command::Build(args) => runtime.block_on(build::run(args)).map(|()| ExitCode::SUCCESS),
        flags::Command::Push(args) => runtime.block_on(push::run(args)).map(|()| ExitCode::SUCCESS),
        flags::Command::Release(args) => runtime.block_on(release::run(args)).map(|()| ExitCode::SUCCESS),
        flags::Command::Images(args) => runtime.block_on(images::run(args)).map(|()| ExitCode::SUCCESS),
        flags::Command::Rollback(args) => runtime.block_on(rollback::run(args)).map(|()| ExitCode::SUCCESS),
        flags::Command::Prune(args) => runtime.block_on(prune::run_prune(args)).map(|()| ExitCode::SUCCESS),
        flags::Command::Delete(args) => runtime.block_on(prune::run_delete(args)).map(|()| ExitCode::SUCCESS),
        flags::Command::Promote(args) => runtime.block_on(promote::run(args)).map(|()| ExitCode::SUCCESS),
        flags::Command::Ecr(args) => runtime.block_on(ecr::run(args)).map(|()| ExitCode::SUCCESS),
        flags::Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut <flags::Xtask as clap::CommandFactory>::command(), "xtask", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
