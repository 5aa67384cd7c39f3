//! `cargo xtask rollback APP --to SHA`: points `<app>-latest` at the image already released as
//! `<app>-<sha>`, with one manifest PUT and no blob moved. The target must exist: a rollback never
//! invents an image.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::config;
use crate::flags;
use crate::git::Git;
use crate::push::{Retagged, Session};
use crate::workspace::Workspace;

pub async fn run(args: flags::Rollback) -> Result<()> {
    let sh = Shell::new()?;
    let workspace = Workspace::load(&sh, &std::env::current_dir()?)?;
    sh.change_dir(&workspace.root);
    workspace.select_apps(std::slice::from_ref(&args.app))?;
    let overrides = config::Overrides { repository: args.repository.as_deref(), platforms: &[] };
    let config = config::resolve(&workspace.metadata, &|key| std::env::var(key).ok(), overrides)?.rooted_at(&workspace.root);
    // A short sha is expanded by git when it names a commit here; tags carry the full sha.
    let sha = match Git::open(&sh, &workspace.root).and_then(|git| git.rev_parse(&args.to)) {
        Ok(full) => full,
        Err(_) if args.to.len() == 40 => args.to.clone(),
        Err(err) => return Err(err.context(format!("--to {} is not a commit of this clone: pass the full 40-character sha", args.to))),
    };
    let (app, target, latest) = (&args.app, format!("{}-{sha}", args.app), format!("{}-latest", args.app));
    let session = Session::for_reading()?;
    let repository = &config.repository;
    match session.retag(repository, &target, &latest).await? {
        Some(Retagged::Moved(digest)) => println!("{latest} now names {digest} ({target}) in {repository}"),
        Some(Retagged::Unchanged) => println!("{latest} already names {target} in {repository}"),
        None => bail!("{repository} has no image {target}, so {app} cannot roll back to it: release that commit first, or pick a sha that was released"),
    }
    Ok(())
}
