//! `cargo xtask images [APP] [--json]`: the images of each app in its repository (the shared one,
//! or its own), newest first.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::context::Context;
use crate::flags;
use crate::image::reference::Repositories;
use crate::repository::images::{self, Owners};
use crate::repository::store::Registries;
use crate::workspace::config::Overrides;

pub async fn run(ctx: &Context, args: flags::Images) -> Result<()> {
    let config = ctx.config(Overrides { repository: args.repository.as_deref(), platforms: &[] })?;
    let apps = ctx.app_names();
    let wanted = match &args.app {
        Some(app) => ctx.workspace.select_apps(std::slice::from_ref(app))?.into_iter().map(|member| member.name.clone()).collect(),
        None => apps.clone(),
    };
    let registries = Registries::for_reading(config.repository.host())?;
    // A shared repository is listed once for every app; each app's own, once for it.
    let mut listing = BTreeMap::new();
    match &config.repository {
        Repositories::Shared(repository) => listing = images::list(&registries.open(repository)?, Owners::Shared(&apps), &wanted).await?,
        Repositories::PerImage(_) => {
            for app in &wanted {
                let store = registries.open(&config.repository.of(app)?)?;
                listing.extend(images::list(&store, Owners::Own(app), std::slice::from_ref(app)).await?);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    for (app, images) in &listing {
        println!("{app}: {} images in {}", images.len(), config.repository.of(app)?);
        for image in images {
            let carries = if image.carries.is_empty() { String::new() } else { format!("  [{}]", image.carries.join(", ")) };
            println!(
                "  {}  {}  {}  {}  {}{carries}",
                &image.digest.as_str()[..19],
                image.created.as_deref().unwrap_or("-"),
                image.platforms.join(","),
                indicatif::HumanBytes(image.size),
                image.tags.join(", ")
            );
        }
    }
    Ok(())
}
