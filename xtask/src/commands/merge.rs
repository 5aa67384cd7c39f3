//! `cargo xtask merge`: the last step of a release split across runners. Reads the records that
//! the `release --by-digest` jobs printed, joins each app's platform images into one index, and
//! writes it and its tags (`<app>-<sha>`, extras, `<app>-latest`, in that order) only when every
//! platform of every app is in the repository; otherwise nothing is tagged.

use std::io::Read;

use anyhow::{bail, Context as _, Result};

use crate::commands::release::{release_tags, TagPlan};
use crate::context::Context;
use crate::image::reference::Repository;
use crate::repository::by_digest::{self, Pushed};
use crate::repository::store::Registries;
use crate::workspace::config::Overrides;

pub async fn run(ctx: &Context, args: crate::flags::Merge) -> Result<()> {
    let config = ctx.config(Overrides { repository: args.repository.as_deref(), platforms: &args.platform })?;
    let mut records = Vec::new();
    for file in &args.records {
        let name = file.display().to_string();
        let text = if name == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        } else {
            std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?
        };
        let record: Pushed = serde_json::from_str(&text).with_context(|| {
            format!("{name} is not what `release --by-digest` prints: save that command's standard output and pass the file")
        })?;
        records.push((name, record));
    }
    let (revision, recorded, joined) = by_digest::join(&records, &config.platforms)?;
    let repository = match &args.repository {
        Some(named) if *named != recorded => {
            bail!("the records say the images were pushed to {recorded}, not {named}: merge into the repository the jobs pushed to")
        }
        _ => Repository::parse(&recorded)?,
    };
    let date = match ctx.git().and_then(|git| git.commit_time(&revision)) {
        Ok(epoch) => crate::image::oci::rfc3339(epoch).chars().take(10).filter(|c| c.is_ascii_digit()).collect(),
        Err(_) if !args.tag_extra.iter().any(|rule| rule == "date") => String::new(),
        Err(err) => return Err(err.context("the `date` tag needs the commit in this clone")),
    };
    let plan = TagPlan { revision: &revision, date: &date, extra: &args.tag_extra, latest: !args.no_latest };
    if config.supply_chain.sign.is_some() {
        eprintln!(
            "note: `sign` in [workspace.metadata.xtask.supply-chain] is not applied by merge: the merged indexes are not signed (sign them with `cosign sign --key`, or release in one job)"
        );
    }
    let registries = Registries::new(args.ca_file.as_deref(), repository.host())?;
    // Every app's every platform is checked before the first index is written.
    for image in &joined {
        by_digest::check_present(&registries, &repository, &image.index).await.with_context(|| format!("cannot merge {}", image.app))?;
    }
    for image in &joined {
        let version = ctx.workspace.member(&image.app).map(|member| member.version.as_str()).unwrap_or_default();
        let tags = release_tags(&image.app, version, &plan)?;
        let written = by_digest::write(&registries, &repository, &image.index, &tags)
            .await
            .with_context(|| format!("cannot merge {}; its tags were not moved", image.app))?;
        println!("{}: {} as {}", image.app, written.digest, tags.join(", "));
    }
    Ok(())
}
