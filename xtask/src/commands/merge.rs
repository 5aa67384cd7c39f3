//! `cargo xtask merge`: the last step of a release split across runners. Reads the records that
//! the `release --by-digest` jobs printed, joins each app's platform images into one index, and
//! writes it and its tags (`<app>-<sha>`, extras, `<app>-latest`, in that order; without `<app>-`
//! in a repository per image) only when every
//! platform of every app is in the repository; otherwise nothing is tagged. With a key (`--sign`
//! or the configuration) each index is signed before its tags move.

use std::io::Read;

use anyhow::{bail, Context as _, Result};

use crate::commands::release::{release_tags, signing_key, TagPlan};
use crate::context::Context;
use crate::image::layout::Layout;
use crate::image::oci::Descriptor;
use crate::image::reference::{Repositories, Repository};
use crate::image::signature::Key;
use crate::progress::Progress;
use crate::repository::by_digest::{self, Pushed};
use crate::repository::push::Pusher;
use crate::repository::signatures;
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
    let repositories = match &args.repository {
        Some(named) if *named != recorded => {
            bail!("the records say the images were pushed to {recorded}, not {named}: merge into the repository the jobs pushed to")
        }
        _ => Repositories::parse(&recorded)?,
    };
    let date = match ctx.git().and_then(|git| git.commit_time(&revision)) {
        Ok(epoch) => crate::image::oci::rfc3339(epoch).chars().take(10).filter(|c| c.is_ascii_digit()).collect(),
        Err(_) if !args.tag_extra.iter().any(|rule| rule == "date") => String::new(),
        Err(err) => return Err(err.context("the `date` tag needs the commit in this clone")),
    };
    let apps: Vec<String> = ctx.workspace.apps().map(|member| member.name.clone()).collect();
    let plan = TagPlan {
        revision: &revision,
        date: &date,
        extra: &args.tag_extra,
        latest: !args.no_latest,
        apps: &apps,
        repositories: &repositories,
    };
    let key = signing_key(args.sign.as_deref(), args.no_sign, &config.supply_chain)?;
    let transfer = crate::flags::Transfer { ca_file: args.ca_file.clone(), ..Default::default() };
    let pusher = Pusher::new(&transfer, repositories.host(), Progress::new(true))?;
    let registries = pusher.registries();
    // Every app's every platform is checked before the first index is written.
    for image in &joined {
        let repository = repositories.of(&image.app)?;
        by_digest::check_present(registries, &repository, &image.index).await.with_context(|| format!("cannot merge {}", image.app))?;
    }
    for image in &joined {
        let repository = repositories.of(&image.app)?;
        let version = ctx.workspace.member(&image.app).map(|member| member.version.as_str()).unwrap_or_default();
        let tags = release_tags(&image.app, version, &plan)?;
        let merged = async {
            let written = by_digest::write_index(registries, &repository, &image.index).await?;
            if let Some(key) = &key {
                sign(ctx, &pusher, &repository, &written, key, &image.app).await?;
            }
            by_digest::write_tags(registries, &repository, &image.index, &tags).await?;
            anyhow::Ok(written)
        };
        let written = merged.await.with_context(|| format!("cannot merge {}; its tags were not moved", image.app))?;
        println!("{}: {} as {}{}", image.app, written.digest, tags.join(", "), if key.is_some() { ", signed" } else { "" });
    }
    Ok(())
}

/// Pushes the signature of `index`, written to `repository`, as a release signs it.
async fn sign(ctx: &Context, pusher: &Pusher, repository: &Repository, index: &Descriptor, key: &Key, app: &str) -> Result<()> {
    let scratch = ctx.workspace.scratch_dir("merge")?;
    let layout = Layout::create(scratch.path())?;
    let signature = signatures::signature_manifest(&layout, repository, index, key)?;
    signatures::push_signature(pusher, &layout, repository, index, &signature, &pusher.progress().app(app)).await
}
