//! Artifacts attached to images (OCI 1.1 referrers): a bill of materials or a provenance
//! statement whose `subject` is a platform manifest. Where the registry has the referrers API
//! (ECR has it), pushing the artifact manifest is all it takes; elsewhere (distribution 2.8, a
//! local layout) the distribution spec's fallback applies: an index tagged `sha256-<hex>` of the
//! subject lists its artifacts, and is rewritten with each new one. An artifact type the subject
//! already has is not pushed again, so an unchanged re-release writes nothing.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use crate::image::layout::Layout;
use crate::image::oci::{self, ArtifactManifest, Descriptor, Digest, ImageIndex};
use crate::image::reference::Repository;
use crate::progress::AppLine;
use crate::repository::push::Pusher;
use crate::repository::store::referrers_tag;

/// Pushes `attachments` (artifact manifests in `layout`) to `repository`, each unless its
/// subject already has an artifact of its type, and lists them for their subjects. Returns how
/// many were pushed.
pub async fn attach(
    pusher: &Pusher,
    layout: &Layout,
    repository: &Repository,
    attachments: &[Descriptor],
    line: &AppLine,
) -> Result<usize> {
    let mut by_subject: BTreeMap<Digest, Vec<&Descriptor>> = BTreeMap::new();
    for attachment in attachments {
        let manifest: ArtifactManifest =
            serde_json::from_slice(&layout.read_blob(attachment)?).context("an attachment is not an artifact manifest")?;
        by_subject.entry(manifest.subject.digest).or_default().push(attachment);
    }
    // Side by side: the push engine sends the blob the artifacts share (the empty config) once,
    // and each subject's list is a tag of its own.
    let pushed = futures_util::future::try_join_all(
        by_subject.into_iter().map(|(subject, attachments)| attach_to(pusher, layout, repository, subject, attachments, line)),
    )
    .await?;
    Ok(pushed.into_iter().sum())
}

/// Pushes `attachments` of `subject` that it lacks, and lists them for it; returns how many.
async fn attach_to(
    pusher: &Pusher,
    layout: &Layout,
    repository: &Repository,
    subject: Digest,
    attachments: Vec<&Descriptor>,
    line: &AppLine,
) -> Result<usize> {
    let tag = referrers_tag(&subject);
    let crate::repository::store::Referrers { artifacts: existing, kept_by_registry, .. } =
        pusher.registries().open(repository)?.referrers(&subject).await?;
    let missing: Vec<&Descriptor> = attachments
        .into_iter()
        .filter(|attachment| !existing.iter().any(|known| known.artifact_type == attachment.artifact_type))
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    // The lookup found no artifact of their types: their manifests are not asked for again.
    futures_util::future::try_join_all(missing.iter().map(|attachment| pusher.push_absent(layout, attachment, repository, line))).await?;
    let pushed = missing.len();
    if kept_by_registry {
        return Ok(pushed);
    }
    let mut manifests = existing;
    manifests.extend(missing.into_iter().cloned());
    let index = ImageIndex::new(manifests, BTreeMap::new());
    let bytes = oci::to_bytes(&index);
    match repository {
        Repository::Registry { host, path } => {
            pusher.registries().client(host)?.put_manifest(path, &tag, oci::MEDIA_TYPE_INDEX, &bytes).await?;
        }
        Repository::Layout { dir } => {
            let target = Layout::open(dir)?;
            let written = target.write_blob(oci::MEDIA_TYPE_INDEX, &bytes)?;
            target.tag(&tag, &written)?;
        }
    }
    Ok(pushed)
}
