//! Reading base images from registries as far as builds need: a base image's index, its platform
//! manifests and their configs. Its layers are never downloaded here; the push mounts them or
//! checks that the target repository has them.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::image::oci::{self, Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest};
use crate::image::platform::Platform;
use crate::image::reference::{ImageReference, Repository};
use crate::repository::registry::transport::MANIFEST_LIMIT;
use crate::repository::registry::Registry;
use crate::repository::store::Registries;

/// A base image, per platform.
#[derive(Debug)]
pub struct BaseImage {
    /// `host/path` of the repository the base image's blobs live in.
    pub source: String,
    pub images: BTreeMap<Platform, (ImageManifest, ImageConfig)>,
    /// Each platform manifest's digest, which a bill of materials names.
    pub digests: BTreeMap<Platform, Digest>,
}

/// Resolves `image` (`host/path:tag`) for each of `platforms`.
pub async fn resolve_base(registries: &Registries, image: &str, platforms: &[Platform]) -> Result<BaseImage> {
    let reference = ImageReference::parse(image)?;
    let Repository::Registry { host, path } = &reference.repository else {
        bail!("base image `{image}` must name a registry repository such as 127.0.0.1:5000/acme/base:1");
    };
    let registry = registries.client(host)?;
    let (media_type, bytes) = registry.get_manifest(path, &reference.tag).await?;
    let root = Descriptor::new(&media_type, &bytes);
    let mut manifests: Vec<(Option<oci::Platform>, Digest)> = Vec::new();
    if root.is_index() {
        let index: ImageIndex = serde_json::from_slice(&bytes).with_context(|| format!("base image {image} has an invalid index"))?;
        for entry in index.manifests {
            manifests.push((entry.platform, entry.digest));
        }
    } else {
        manifests.push((None, root.digest.clone()));
    }

    let mut images = BTreeMap::new();
    let mut digests = BTreeMap::new();
    let mut available = Vec::new();
    for (platform_hint, digest) in manifests {
        // Entries for other platforms (and BuildKit's attestations, `unknown/unknown`) are named,
        // not read.
        if let Some(named) = &platform_hint {
            if named.os != "unknown" {
                available.push(describe(named));
            }
            if !platforms.iter().any(|wanted| matches(wanted, named)) {
                continue;
            }
        }
        let (_, manifest_bytes) = registry.get_manifest(path, digest.as_str()).await?;
        let manifest: ImageManifest =
            serde_json::from_slice(&manifest_bytes).with_context(|| format!("base image {image} has an invalid manifest {digest}"))?;
        // An artifact (a signature, an SBOM) is no platform's image.
        if ![oci::MEDIA_TYPE_CONFIG, oci::MEDIA_TYPE_DOCKER_CONFIG].contains(&manifest.config.media_type.as_str()) {
            continue;
        }
        // An index names each entry's platform; a lone manifest's platform is in its config.
        let config: ImageConfig = fetch_config(&registry, path, &manifest.config, image).await?;
        let named = platform_hint.unwrap_or_else(|| {
            let named = oci::Platform { architecture: config.architecture.clone(), os: config.os.clone(), variant: config.variant.clone() };
            available.push(describe(&named));
            named
        });
        if let Some(wanted) = platforms.iter().find(|wanted| matches(wanted, &named)) {
            images.insert(wanted.clone(), (manifest, config));
            digests.insert(wanted.clone(), digest);
        }
    }
    for wanted in platforms {
        if !images.contains_key(wanted) {
            bail!("base image {image} has no {wanted} image (it has {}): pick a base that provides every platform you build, or drop {wanted} from --platform", available.join(", "));
        }
    }
    Ok(BaseImage { source: format!("{host}/{path}"), images, digests })
}

async fn fetch_config(registry: &Registry, path: &str, descriptor: &Descriptor, image: &str) -> Result<ImageConfig> {
    let mut bytes = Vec::new();
    if descriptor.size > MANIFEST_LIMIT {
        bail!("the config of base image {image} is {} bytes, more than a config can be: check the image", descriptor.size);
    }
    registry.get_blob(path, &descriptor.digest, descriptor.size, &mut bytes).await?;
    crate::image::layout::DigestMismatch::check(&descriptor.digest, Digest::of(&bytes))
        .with_context(|| format!("the config of base image {image} is corrupt"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("base image {image} has an invalid config"))
}

/// Whether an index entry serves a platform; arm64's variant `v8` is the default one.
fn matches(wanted: &Platform, platform: &oci::Platform) -> bool {
    let normalise = |arch: &str, variant: Option<&str>| match (arch, variant) {
        ("arm64", Some("v8")) => None,
        (_, variant) => variant.map(str::to_string),
    };
    wanted.os == platform.os
        && wanted.architecture == platform.architecture
        && normalise(&wanted.architecture, wanted.variant.as_deref()) == normalise(&platform.architecture, platform.variant.as_deref())
}

fn describe(platform: &oci::Platform) -> String {
    match &platform.variant {
        Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
        None => format!("{}/{}", platform.os, platform.architecture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_matching() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let entry = |arch: &str, variant: Option<&str>| oci::Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
        };
        assert!(matches(&arm64, &entry("arm64", None)));
        assert!(matches(&arm64, &entry("arm64", Some("v8"))));
        assert!(!matches(&arm64, &entry("amd64", None)));
        assert!(!matches(&Platform::parse("linux/arm/v7").unwrap(), &entry("arm", Some("v6"))));
    }
}
