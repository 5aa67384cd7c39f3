//! cosign's signatures on the repository side: a signed index gets a manifest under the tag
//! `sha256-<hex>.sig` whose one layer is the simple signing payload, its signature in the layer
//! annotation (what `cosign verify --key` reads); and `verify` checks those, and the DSSE
//! envelopes of the provenance attached to each platform image, and says what failed.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};

use crate::image::attestation::PROVENANCE_ARTIFACT_TYPE;
use crate::image::layout::Layout;
use crate::image::oci::{self, Descriptor, Digest, ImageIndex, ImageManifest};
use crate::image::reference::Repository;
use crate::image::signature::{self, Key, PublicKey};
use crate::progress::AppLine;
use crate::repository::push::Pusher;
use crate::repository::store::Store;

/// The tag of `digest`'s signature: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}.sig", crate::repository::store::referrers_tag(digest))
}

/// Writes into `layout` the signature of its image `index` for `repository`: cosign's
/// signature manifest (deterministic, so a re-release finds it in the repository as it is).
pub fn signature_manifest(layout: &Layout, repository: &Repository, index: &Descriptor, key: &Key) -> Result<Descriptor> {
    let payload = signature::simple_signing_payload(&repository.to_string(), &index.digest);
    let mut layer = layout.write_blob(signature::SIMPLE_SIGNING_MEDIA_TYPE, &payload)?;
    layer.annotations.insert(signature::SIGNATURE_ANNOTATION.to_string(), key.sign(&payload));
    // The configuration cosign writes for a signature: its one layer as the root file system.
    let config = serde_json::json!({
        "architecture": "", "os": "", "config": {}, "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "rootfs": {"type": "layers", "diff_ids": [layer.digest.as_str()]},
    });
    let config = layout.write_blob(oci::MEDIA_TYPE_CONFIG, &serde_json::to_vec(&config)?)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
        config,
        layers: vec![layer],
        annotations: BTreeMap::new(),
    };
    layout.write_blob(oci::MEDIA_TYPE_MANIFEST, &oci::to_bytes(&manifest))
}

/// Pushes `signature` (a `signature_manifest` of the image `index`) under its tag.
pub async fn push_signature(
    pusher: &Pusher,
    layout: &Layout,
    repository: &Repository,
    index: &Descriptor,
    signature: &Descriptor,
    line: &AppLine,
) -> Result<()> {
    line.step("signing");
    pusher.push(layout, signature, repository, &[signature_tag(&index.digest)], line).await?;
    Ok(())
}

/// What `verify` found for one image.
pub struct Verified {
    pub digest: Digest,
    /// The platforms whose signed provenance verified.
    pub attested: Vec<String>,
    /// The repositories the verified signatures were made for (`docker-reference`).
    pub signed_for: Vec<String>,
}

/// Checks the image `tag` names in `store` (the repository `reference`): a signature by `key`
/// over a payload naming that digest (the repository it names is reported: a promoted image
/// keeps the one it was released to), and a signed provenance naming each platform image. The
/// first failure is the error.
pub async fn verify(store: &Store, reference: &str, app: &str, tag: &str, key: &PublicKey) -> Result<Verified> {
    let bytes = store.find_manifest(tag).await?.with_context(|| format!("{reference} has no image tagged {tag}"))?;
    let digest = Digest::of(&bytes);
    let signatures = store
        .find_manifest(&signature_tag(&digest))
        .await?
        .with_context(|| format!("{tag} ({digest}) is not signed: no {} in {reference}", signature_tag(&digest)))?;
    let signatures: ImageManifest = serde_json::from_slice(&signatures).context("the signature manifest is not an image manifest")?;
    let mut verified = false;
    let mut signed_for = Vec::new();
    for layer in signatures.layers.iter().filter(|layer| layer.media_type == signature::SIMPLE_SIGNING_MEDIA_TYPE) {
        let Some(signed) = layer.annotations.get(signature::SIGNATURE_ANNOTATION) else { continue };
        let payload = store.read_blob(layer).await.with_context(|| format!("the signed payload of {tag}"))?;
        if !key.verifies(&payload, signed) {
            continue;
        }
        let (signed_reference, signed_digest) = signature::read_payload(&payload)?;
        if signed_digest != digest {
            bail!("the signature of {tag} verifies, but signs {signed_digest}, not the image the tag names ({digest})");
        }
        // A promoted image keeps the signature made for the repository it was released to.
        signed_for.push(signed_reference);
        verified = true;
    }
    if !verified {
        bail!("no signature of {tag} ({digest}) verifies with the key: it was signed with another key, or the signature or its payload was changed");
    }
    let index: ImageIndex = serde_json::from_slice(&bytes).context("the image is not an index")?;
    // The signature covers the index's digest, and so its app annotation: a signed image of
    // another app moved under this app's tag verifies as a signature but is not this app's.
    let owner = index.annotations.get(crate::image::oci::APP_ANNOTATION).map(String::as_str);
    if owner != Some(app) {
        bail!(
            "{tag} names a signed image of {}, not of app `{app}` (its signed index says {}={}): another image was moved under this tag; roll back to one of `{app}`'s releases",
            owner.map_or_else(|| "no app".to_string(), |owner| format!("app `{owner}`")),
            crate::image::oci::APP_ANNOTATION,
            owner.unwrap_or("nothing"),
        );
    }
    let mut attested = Vec::new();
    for entry in &index.manifests {
        let platform = entry.platform.as_ref().map_or_else(|| entry.digest.to_string(), ToString::to_string);
        let artifacts = store.referrers(&entry.digest).await?.artifacts;
        let Some(provenance) = artifacts.iter().find(|artifact| artifact.artifact_type.as_deref() == Some(PROVENANCE_ARTIFACT_TYPE)) else {
            bail!("{platform} ({}) has no provenance attached: release with --attest --sign", entry.digest);
        };
        let artifact = store.find_manifest(provenance.digest.as_str()).await?.context("the provenance artifact is missing")?;
        let artifact: ImageManifest = serde_json::from_slice(&artifact).context("the provenance artifact is not a manifest")?;
        let layer = artifact.layers.first().context("the provenance artifact has no layer")?;
        if layer.media_type != signature::DSSE_MEDIA_TYPE {
            bail!("the provenance of {platform} is not signed (a {} layer, not a DSSE envelope): release with --sign", layer.media_type);
        }
        let envelope = store.read_blob(layer).await?;
        let statement = signature::open_envelope(&envelope, key).with_context(|| format!("the provenance of {platform}"))?;
        let statement: serde_json::Value = serde_json::from_slice(&statement).context("the signed provenance is not JSON")?;
        if statement["subject"][0]["digest"]["sha256"] != entry.digest.hex() {
            bail!("the signed provenance of {platform} names another image than {}", entry.digest);
        }
        if statement["subject"][0]["name"] != app {
            bail!("the signed provenance of {platform} is app {}'s, not `{app}`'s", statement["subject"][0]["name"]);
        }
        attested.push(platform);
    }
    Ok(Verified { digest, attested, signed_for })
}
