//! The images of each app in a repository, newest first: digest, tags, creation time and
//! revision (from the index's annotations), platforms and size. Read through the registry API
//! (tag list, manifests), so it works on any registry, and from a layout alike.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::image::oci::{self, Digest, ImageIndex, ImageManifest};
use crate::image::reference::Repositories;
use crate::repository::store::Store;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    pub digest: Digest,
    pub tags: Vec<String>,
    pub created: Option<String>,
    pub revision: Option<String>,
    pub platforms: Vec<String>,
    /// Bytes of every config and layer of every platform, each blob counted once.
    pub size: u64,
    /// What is attached to it: `signature`, `sbom`, `provenance` (any platform's).
    pub carries: Vec<String>,
    /// The manifests of those attachments (the signature, the referrers lists and artifacts),
    /// which go with the image when it is deleted.
    #[serde(skip)]
    pub attachments: Vec<Digest>,
}

/// Which app a tag belongs to: the longest app name that, followed by `-`, starts the tag (so
/// `hello-api-1` belongs to `hello-api`, not to an app called `hello`).
pub fn app_of<'a>(tag: &str, apps: &'a [String]) -> Option<&'a str> {
    apps.iter()
        .filter(|app| tag.strip_prefix(app.as_str()).is_some_and(|rest| rest.starts_with('-')))
        .max_by_key(|app| app.len())
        .map(String::as_str)
}

/// Whose a repository's tags are.
#[derive(Clone, Copy)]
pub enum Owners<'a> {
    /// A repository the workspace's `apps` share: a tag is the app's whose name starts it
    /// (`app_of`).
    Shared(&'a [String]),
    /// One app's own repository: every tag but those of attached artifacts (`sha256-<hex>...`).
    Own(&'a str),
}

impl<'a> Owners<'a> {
    /// The owners of `app`'s tags in `repositories`' layout, `apps` being the workspace's.
    pub fn of_app(repositories: &Repositories, apps: &'a [String], app: &'a str) -> Owners<'a> {
        match repositories.per_image() {
            true => Owners::Own(app),
            false => Owners::Shared(apps),
        }
    }

    pub fn owner(&self, tag: &str) -> Option<&'a str> {
        match *self {
            Owners::Shared(apps) => app_of(tag, apps),
            Owners::Own(_) if is_attachment_tag(tag) => None,
            Owners::Own(app) => Some(app),
        }
    }
}

/// A tag the tag schema gives an attached artifact (`sha256-<hex>`, cosign's `.sig`, `.att`).
fn is_attachment_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-").is_some_and(|rest| rest.len() >= 64 && rest[..64].bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The images of each of the `wanted` apps in `store`, newest first, found through the tags of
/// the repository. An image belongs to the app its `dev.xtask.app` annotation names; one without
/// it (released before it existed, or by other tools) to the app `owners` gives its tag. So
/// `api`'s images never include those of an `api-gateway` that is not in this workspace.
pub async fn list(store: &Store, owners: Owners<'_>, wanted: &[String]) -> Result<BTreeMap<String, Vec<Image>>> {
    let mut by_app: BTreeMap<String, BTreeMap<Digest, Image>> = BTreeMap::new();
    let tags = store.tags().await.with_context(|| format!("cannot list the tags of {store}"))?;
    let all_tags: std::collections::BTreeSet<&str> = tags.iter().map(String::as_str).collect();
    for tag in tags.iter().cloned() {
        let Some(app) = owners.owner(&tag).filter(|app| wanted.iter().any(|w| w == app)) else { continue };
        let Some(bytes) = store.find_manifest(&tag).await? else { continue };
        let annotations = crate::image::oci::annotations_of(&bytes).unwrap_or_default();
        if annotations.get(oci::APP_ANNOTATION).is_some_and(|owner| owner != app) {
            continue;
        }
        let digest = Digest::of(&bytes);
        let images = by_app.entry(app.to_string()).or_default();
        if let Some(image) = images.get_mut(&digest) {
            image.tags.push(tag);
            continue;
        }
        let mut image = describe(store, digest.clone(), &bytes, &annotations, tag).await?;
        attachments(store, &all_tags, &bytes, &mut image).await?;
        images.insert(digest, image);
    }
    let mut listing: BTreeMap<String, Vec<Image>> = BTreeMap::new();
    for app in wanted {
        let mut images: Vec<Image> = by_app.remove(app).unwrap_or_default().into_values().collect();
        images.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.digest.cmp(&b.digest)));
        for image in &mut images {
            image.tags.sort();
        }
        listing.insert(app.clone(), images);
    }
    Ok(listing)
}

/// The most distinct manifests of one index read for its size (a real index lists a few
/// platforms and their attestations).
const MANIFESTS_READ: usize = 64;

/// Reads an index (or a single manifest) and its platform manifests for the listing.
async fn describe(store: &Store, digest: Digest, bytes: &[u8], annotations: &BTreeMap<String, String>, tag: String) -> Result<Image> {
    let mut image = Image {
        digest,
        tags: vec![tag],
        created: annotations.get("org.opencontainers.image.created").cloned(),
        revision: annotations.get("org.opencontainers.image.revision").cloned(),
        platforms: Vec::new(),
        size: 0,
        carries: Vec::new(),
        attachments: Vec::new(),
    };
    // Each manifest is read once however often the index lists it, and only its blobs' sizes are
    // kept: an index that lists one large manifest ten thousand times costs one read.
    let mut blobs = BTreeMap::new();
    let mut add_blobs = |manifest: &[u8]| {
        if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(manifest) {
            for blob in std::iter::once(manifest.config).chain(manifest.layers) {
                blobs.insert(blob.digest, blob.size);
            }
        }
    };
    match serde_json::from_slice::<ImageIndex>(bytes) {
        Ok(index) => {
            let listed = index.manifests.len();
            let mut read = std::collections::BTreeSet::new();
            for entry in index.manifests {
                if let Some(platform) = &entry.platform {
                    let platform = format!("{}/{}", platform.os, platform.architecture);
                    if !image.platforms.contains(&platform) {
                        image.platforms.push(platform);
                    }
                }
                if read.len() >= MANIFESTS_READ {
                    eprintln!(
                        "note: {} lists {listed} manifests; the first {MANIFESTS_READ} distinct ones were read for its size",
                        image.digest
                    );
                    break;
                }
                if read.insert(entry.digest.clone()) {
                    if let Some(manifest) = store.find_manifest(entry.digest.as_str()).await? {
                        add_blobs(&manifest);
                    }
                }
            }
        }
        Err(_) => add_blobs(bytes),
    }
    image.size = blobs.values().sum();
    Ok(image)
}

/// The signature and the attestations attached to the image: cosign's `sha256-<hex>.sig` tag,
/// and the artifacts whose subject is one of its manifests, as the registry's referrers API or
/// the tag schema's `sha256-<hex>` indexes list them.
async fn attachments(store: &Store, tags: &std::collections::BTreeSet<&str>, bytes: &[u8], image: &mut Image) -> Result<()> {
    let mut carries = std::collections::BTreeSet::new();
    let signature_tag = crate::repository::signatures::signature_tag(&image.digest);
    if tags.contains(signature_tag.as_str()) {
        if let Some(signature) = store.find_manifest(&signature_tag).await? {
            image.attachments.push(Digest::of(&signature));
            carries.insert("signature".to_string());
        }
    }
    let subjects: Vec<Digest> = match serde_json::from_slice::<ImageIndex>(bytes) {
        Ok(index) => index.manifests.into_iter().map(|entry| entry.digest).collect(),
        Err(_) => vec![image.digest.clone()],
    };
    for subject in subjects {
        // Without the referrers API, an untagged subject has nothing attached: no request.
        if store.lists_referrers_by_tag() && !tags.contains(crate::repository::store::referrers_tag(&subject).as_str()) {
            continue;
        }
        let attached = store.attached(&subject).await?;
        image.attachments.extend(attached.tag_index);
        for (artifact, _) in attached.artifacts {
            image.attachments.push(artifact.digest);
            carries.insert(match artifact.artifact_type.as_deref() {
                Some(crate::image::attestation::SPDX_ARTIFACT_TYPE) => "sbom".to_string(),
                Some(crate::image::attestation::CYCLONEDX_ARTIFACT_TYPE) => "sbom-cyclonedx".to_string(),
                Some(crate::image::attestation::PROVENANCE_ARTIFACT_TYPE) => "provenance".to_string(),
                other => other.unwrap_or("artifact").to_string(),
            });
        }
    }
    image.carries = carries.into_iter().collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_belong_to_the_longest_matching_app() {
        let apps = vec!["hello".to_string(), "hello-api".to_string(), "worker".to_string()];
        let owners: Vec<Option<&str>> =
            ["hello-api-latest", "hello-1234", "hello-api-v1.0.0", "worker-latest", "workers-latest", "other-latest", "hello"]
                .iter()
                .map(|tag| app_of(tag, &apps))
                .collect();
        assert_eq!(owners, [Some("hello-api"), Some("hello"), Some("hello-api"), Some("worker"), None, None, None]);
    }

    #[test]
    fn every_tag_of_an_apps_own_repository_is_its_own_but_the_attachments() {
        let digest = "0123456789abcdef".repeat(4);
        let owners: Vec<Option<&str>> = ["latest", "0123abc", "v1.0.0", &format!("sha256-{digest}"), &format!("sha256-{digest}.sig")]
            .iter()
            .map(|tag| Owners::Own("api").owner(tag))
            .collect();
        assert_eq!(owners, [Some("api"), Some("api"), Some("api"), None, None]);
    }
}
