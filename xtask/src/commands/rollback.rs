//! `cargo xtask rollback APP --to SHA`: points `<app>-latest` at the image already released as
//! `<app>-<sha>` (`latest` and `<sha>` in a repository per image), with one manifest PUT and no blob moved. The target must exist: a rollback never
//! invents an image.

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::flags;
use crate::image::reference::validate_tag;
use crate::repository::store::{Registries, Retagged};
use crate::workspace::config::Overrides;

pub async fn run(ctx: &Context, args: flags::Rollback) -> Result<()> {
    ctx.workspace.select_apps(std::slice::from_ref(&args.app))?;
    let config = ctx.config(Overrides { repository: args.repository.as_deref(), platforms: &[] })?;
    // A short sha is expanded by git when it names a commit here; tags carry the full sha.
    let sha = match ctx.git().and_then(|git| git.rev_parse(&args.to)) {
        Ok(full) => full,
        Err(_) if args.to.len() == 40 => args.to.clone(),
        Err(err) => return Err(err.context(format!("--to {} is not a commit of this clone: pass the full 40-character sha", args.to))),
    };
    let app = &args.app;
    let (target, latest) = (config.repository.tag(app, &sha), config.repository.tag(app, "latest"));
    validate_tag(&target).with_context(|| format!("--to {} does not name a release of {app}: pass a commit sha", args.to))?;
    let repository = &config.repository.of(app)?;
    match Registries::for_reading(repository.host())?.open(repository)?.retag(&target, &latest).await? {
        Some(Retagged::Moved(digest)) => println!("{latest} now names {digest} ({target}) in {repository}"),
        Some(Retagged::Unchanged) => println!("{latest} already names {target} in {repository}"),
        None => bail!("{repository} has no image {target}, so {app} cannot roll back to it: release that commit first, or pick a sha that was released"),
    }
    Ok(())
}
