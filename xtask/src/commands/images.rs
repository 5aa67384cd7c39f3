//! `cargo xtask images [APP] [--json]`: the images of each app in the shared repository, newest
//! first.

use anyhow::Result;

use crate::context::Context;
use crate::flags;
use crate::repository::images;
use crate::repository::store::Registries;
use crate::workspace::config::Overrides;

pub async fn run(ctx: &Context, args: flags::Images) -> Result<()> {
    let config = ctx.config(Overrides { repository: args.repository.as_deref(), platforms: &[] })?;
    let apps = ctx.app_names();
    let wanted = match &args.app {
        Some(app) => ctx.workspace.select_apps(std::slice::from_ref(app))?.into_iter().map(|member| member.name.clone()).collect(),
        None => apps.clone(),
    };
    let repository = &config.repository;
    let listing = images::list(&Registries::for_reading(repository.host())?.open(repository)?, &apps, &wanted).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    for (app, images) in &listing {
        println!("{app}: {} images in {repository}", images.len());
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
