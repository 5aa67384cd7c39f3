//! `cargo xtask build`: builds the selected apps' multi-arch images into OCI image layouts under
//! `target/xtask/oci/<app>`, and prints each app's index digest and layout; with `--load`, one
//! platform's images also go into the local engine.

use anyhow::{bail, Result};

use crate::builder::{self, load, BuildWith};
use crate::context::Context;
use crate::detect::evidence;
use crate::flags;
use crate::image::platform::Platform;
use crate::progress::Progress;
use crate::repository::push::Pusher;
use crate::repository::store::Registries;
use crate::workspace::config::Overrides;

pub async fn run(ctx: &Context, args: flags::Build) -> Result<()> {
    // An engine holds one platform per tag: --load builds the host's unless told another.
    let load_platform = match (args.load, args.selection.platform.as_slice()) {
        (false, _) => None,
        (true, []) => Some(Platform::host()),
        (true, [one]) => Some(Platform::parse(one)?),
        (true, _) => {
            bail!("--load puts one platform's image into the engine, and --platform names several: name one (or none, for this machine's)")
        }
    };
    let platforms: Vec<String> = load_platform.iter().map(ToString::to_string).collect();
    let platforms = if load_platform.is_some() { &platforms } else { &args.selection.platform };
    let config = ctx.config(Overrides { repository: None, platforms })?;
    let selection = &args.selection;
    let git = if selection.apps.is_empty() && !selection.all { Some(ctx.git()?) } else { ctx.git().ok() };
    let head = git.as_ref().and_then(|git| git.rev_parse("HEAD").ok());
    let apps = evidence::selection(git.as_ref(), &ctx.workspace, &config, selection)?;
    if apps.is_empty() {
        println!("no app to build");
        return Ok(());
    }
    let registries = Registries::new(args.transfer.ca_file.as_deref(), config.repository.host())?;
    let progress = Progress::new(false);
    let images = builder::build_work_tree(ctx, &config, git.as_ref(), &apps, BuildWith::of(selection), &registries, &progress).await?;
    let dirty = match &git {
        Some(git) => git.is_dirty()?,
        None => true,
    };
    for image in &images {
        println!("{} {} {}", image.app, image.index.digest, image.layout.display());
    }
    if let Some(platform) = load_platform {
        let pusher = Pusher::new(&args.transfer, None, progress)?;
        for image in &images {
            let mut tags = vec![format!("{}:latest", image.app)];
            // A dirty tree's image is not the commit's: it gets `latest` only.
            if let (Some(head), false) = (&head, dirty) {
                tags.push(format!("{}:{head}", image.app));
            }
            load::load(ctx, &pusher, image, &platform, &tags).await?;
        }
    }
    Ok(())
}
