//! `cargo xtask prune APP --keep N` and `cargo xtask delete APP --tag T`: the two commands that
//! remove an app's images from the repository. Which images go is decided by pure functions over
//! the listing of `images`; registries delete images, not single tags, so a deletion that would
//! take a tag the user did not name is refused, and `<app>-latest` is never pruned.

use anyhow::{bail, Result};

use crate::context::Context;
use crate::flags;
use crate::image::oci::Digest;
use crate::image::reference::{Repositories, Repository};
use crate::repository::delete::delete_images;
use crate::repository::images::{self, Image, Owners};
use crate::repository::store::Registries;
use crate::workspace::config::Overrides;

/// The images `prune` deletes: all but the newest `keep` (`images` come newest first), and
/// never the one `latest` (the app's `-latest` tag) names, wherever it is in the list.
pub fn prune_plan<'a>(latest: &str, images: &'a [Image], keep: usize) -> Vec<&'a Image> {
    images.iter().skip(keep).filter(|image| !image.tags.iter().any(|tag| tag == latest)).collect()
}

/// The images `delete` removes for `tags`, or why not: a tag that is not the app's or names no
/// image, or an image that another tag, not asked for, also names. `latest` is the app's
/// `-latest` tag.
pub fn delete_plan<'a>(app: &str, owners: Owners<'_>, latest: &str, images: &'a [Image], tags: &[String]) -> Result<Vec<&'a Image>> {
    let mut doomed: Vec<&Image> = Vec::new();
    for tag in tags {
        if owners.owner(tag) != Some(app) {
            match owners {
                Owners::Shared(_) => {
                    bail!("`{tag}` is not a tag of {app}'s images, which start with `{app}-`: `cargo xtask images {app}` lists them")
                }
                Owners::Own(_) => bail!(
                    "`{tag}` names what is attached to an image of {app} (a signature or an attestation), which goes with its image: `cargo xtask images {app}` lists the images and their tags"
                ),
            }
        }
        let Some(image) = images.iter().find(|image| image.tags.contains(tag)) else {
            bail!("{app} has no image tagged `{tag}`: `cargo xtask images {app}` lists its images and tags");
        };
        let others: Vec<&str> = image.tags.iter().filter(|other| !tags.contains(other)).map(String::as_str).collect();
        if !others.is_empty() {
            bail!(
                "`{tag}` names the same image as {}, and a registry deletes an image with all of its tags: add --tag for each of them{}",
                others.join(", "),
                if others.contains(&latest) {
                    format!(", or first point {latest} at another image with `cargo xtask rollback {app} --to SHA`")
                } else {
                    String::new()
                }
            );
        }
        if !doomed.iter().any(|chosen| chosen.digest == image.digest) {
            doomed.push(image);
        }
    }
    Ok(doomed)
}

/// What both commands start from: the repository, the workspace's apps and the listing of one
/// app's images there, newest first.
struct AppImages {
    repositories: Repositories,
    repository: Repository,
    registries: Registries,
    apps: Vec<String>,
    images: Vec<Image>,
    /// The app's `-latest` tag.
    latest: String,
}

impl AppImages {
    async fn list(ctx: &Context, app: &str, repository: Option<&str>) -> Result<AppImages> {
        ctx.workspace.select_apps(&[app.to_string()])?;
        let config = ctx.config(Overrides { repository, platforms: &[] })?;
        let apps = ctx.app_names();
        let registries = Registries::for_reading(config.repository.host())?;
        let repository = config.repository.of(app)?;
        let owners = Owners::of_app(&config.repository, &apps, app);
        let mut listing = images::list(&registries.open(&repository)?, owners, &[app.to_string()]).await?;
        let images = listing.remove(app).unwrap_or_default();
        let latest = config.repository.tag(app, "latest");
        Ok(AppImages { repositories: config.repository, repository, registries, apps, images, latest })
    }

    async fn delete(&self, doomed: &[&Image], dry_run: bool) -> Result<()> {
        if !dry_run {
            // Its signature and attestations go with an image.
            let digests: Vec<Digest> =
                doomed.iter().flat_map(|image| std::iter::once(image.digest.clone()).chain(image.attachments.iter().cloned())).collect();
            delete_images(&self.registries, &self.repository, &digests).await?;
        }
        let verb = if dry_run { "would delete" } else { "deleted" };
        for image in doomed {
            println!("{verb} {} ({})", image.digest, image.tags.join(", "));
        }
        Ok(())
    }
}

pub async fn run_prune(ctx: &Context, args: flags::Prune) -> Result<()> {
    let listed = AppImages::list(ctx, &args.app, args.repository.as_deref()).await?;
    let doomed = prune_plan(&listed.latest, &listed.images, args.keep);
    if doomed.is_empty() {
        println!("{}: {} images in {}, none beyond the newest {} to delete", args.app, listed.images.len(), listed.repository, args.keep);
        return Ok(());
    }
    listed.delete(&doomed, args.dry_run).await
}

pub async fn run_delete(ctx: &Context, args: flags::Delete) -> Result<()> {
    let listed = AppImages::list(ctx, &args.app, args.repository.as_deref()).await?;
    let owners = Owners::of_app(&listed.repositories, &listed.apps, &args.app);
    let doomed = delete_plan(&args.app, owners, &listed.latest, &listed.images, &args.tags)?;
    listed.delete(&doomed, args.dry_run).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(n: u8, tags: &[&str]) -> Image {
        Image {
            digest: Digest::of(&[n]),
            tags: tags.iter().map(|tag| tag.to_string()).collect(),
            created: Some(format!("2026-11-{:02}T00:00:00Z", 20 - n)),
            revision: None,
            platforms: vec!["linux/amd64".into()],
            size: 1,
            carries: Vec::new(),
            attachments: Vec::new(),
        }
    }

    /// Newest first: a release, the rolled-back-to `-latest`, two older releases.
    fn images() -> Vec<Image> {
        vec![image(0, &["api-c3"]), image(1, &["api-b2", "api-latest"]), image(2, &["api-a1", "api-v1.0.0"]), image(3, &["api-91"])]
    }

    fn check_prune(keep: usize, expected: &[&str]) {
        let images = images();
        let pruned: Vec<&str> = prune_plan("api-latest", &images, keep).iter().map(|image| image.tags[0].as_str()).collect();
        assert_eq!(pruned, expected, "keep {keep}");
    }

    #[test]
    fn prune_keeps_the_newest_and_whatever_latest_names() {
        check_prune(3, &["api-91"]);
        check_prune(1, &["api-a1", "api-91"]);
        check_prune(0, &["api-c3", "api-a1", "api-91"]);
        check_prune(10, &[]);
    }

    fn check_delete(tags: &[&str], expected: Result<&[&str], &str>) {
        let images = images();
        let apps = vec!["api".to_string(), "api-gateway".to_string()];
        let tags: Vec<String> = tags.iter().map(|tag| tag.to_string()).collect();
        let found = delete_plan("api", Owners::Shared(&apps), "api-latest", &images, &tags)
            .map(|doomed| doomed.iter().map(|image| image.tags[0].clone()).collect::<Vec<_>>());
        match (found, expected) {
            (Ok(found), Ok(expected)) => assert_eq!(found, expected),
            (Err(err), Err(expected)) => assert_eq!(err.to_string(), expected),
            (found, expected) => panic!("{tags:?}: expected {expected:?}, found {found:?}"),
        }
    }

    #[test]
    fn delete_takes_whole_images_only() {
        check_delete(&["api-91"], Ok(&["api-91"]));
        check_delete(&["api-a1", "api-v1.0.0"], Ok(&["api-a1"]));
        check_delete(
            &["api-a1"],
            Err("`api-a1` names the same image as api-v1.0.0, and a registry deletes an image with all of its tags: add --tag for each of them"),
        );
        check_delete(
            &["api-b2"],
            Err("`api-b2` names the same image as api-latest, and a registry deletes an image with all of its tags: add --tag for each of them, or first point api-latest at another image with `cargo xtask rollback api --to SHA`"),
        );
        check_delete(&["api-77"], Err("api has no image tagged `api-77`: `cargo xtask images api` lists its images and tags"));
        check_delete(
            &["api-gateway-latest"],
            Err("`api-gateway-latest` is not a tag of api's images, which start with `api-`: `cargo xtask images api` lists them"),
        );
        // In the app's own repository, every tag is its but those of attached artifacts.
        let images = vec![image(0, &["c3", "latest"]), image(1, &["b2"])];
        let attachment = format!("sha256-{}.sig", "0".repeat(64));
        let err = delete_plan("api", Owners::Own("api"), "latest", &images, &[attachment]).unwrap_err();
        assert!(err.to_string().contains("names what is attached to an image of api"), "{err}");
        let doomed = delete_plan("api", Owners::Own("api"), "latest", &images, &["b2".to_string()]).unwrap();
        assert_eq!(doomed[0].tags, ["b2"]);
    }
}
