//! `cargo xtask build`: builds the selected apps' multi-arch images into OCI image layouts under
//! `target/xtask/oci/<app>`, and prints each app's index digest and layout.

use anyhow::Result;

use crate::builder::{Builder, DeferredInputs, Provenance};
use crate::context::Context;
use crate::detect::evidence;
use crate::flags;
use crate::progress::Progress;
use crate::repository::store::Registries;
use crate::workspace::config::Overrides;

pub async fn run(ctx: &Context, args: flags::Build) -> Result<()> {
    let config = ctx.config(Overrides { repository: None, platforms: &args.selection.platform })?;
    let selection = &args.selection;
    let git = if selection.apps.is_empty() && !selection.all { Some(ctx.git()?) } else { ctx.git().ok() };
    let head = git.as_ref().and_then(|git| git.rev_parse("HEAD").ok());
    let apps = evidence::selection(&ctx.sh, git.as_ref(), &ctx.workspace, &config, selection)?;
    if apps.is_empty() {
        println!("no app to build");
        return Ok(());
    }
    let provenance = Provenance::from_git(git.as_ref(), head.as_deref())?;
    let inputs: Option<DeferredInputs<'_>> = match (&git, &head) {
        (Some(git), Some(head)) if !git.is_dirty()? => {
            let (workspace, config) = (&ctx.workspace, &config);
            Some(Box::new(move || evidence::current_inputs_in_new_shell(workspace, config, head)))
        }
        _ => None,
    };
    let registries = Registries::new(args.transfer.ca_file.as_deref(), config.repository.host())?;
    let progress = Progress::new(false);
    let builder = Builder { ctx, config: &config, builder: selection.builder, registries: &registries, progress: &progress };
    for image in builder.build(&apps, provenance, inputs).await? {
        println!("{} {} {}", image.app, image.index.digest, image.layout.display());
    }
    Ok(())
}
