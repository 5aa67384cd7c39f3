//! Reading images from registries as far as builds need: a base image's index, its platform
//! manifests and their configs. Its layers are never downloaded here; the push mounts them or
//! checks that the target repository has them.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::oci::{self, Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest};
use crate::platform::Platform;
use crate::push::Session;
use crate::reference::{ImageReference, Repository};

/// A base image, per platform.
#[derive(Debug)]
pub struct BaseImage {
    /// `host/path` of the repository the base image's blobs live in.
    pub source: String,
    pub images: BTreeMap<Platform, (ImageManifest, ImageConfig)>,
}

impl Session {
    /// Resolves `image` (`host/path:tag`) for each of `platforms`.
    pub async fn resolve_base(&self, image: &str, platforms: &[Platform]) -> Result<BaseImage> {
        let reference = ImageReference::parse(image)?;
        let Repository::Registry { host, path } = &reference.repository else {
            bail!("base image `{image}` must name a registry repository such as 127.0.0.1:5000/acme/base:1");
        };
        let registry = self.registry(host)?;
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
        let mut available = Vec::new();
        for (platform_hint, digest) in manifests {
            let (_, manifest_bytes) = registry.get_manifest(path, digest.as_str()).await?;
            let manifest: ImageManifest =
                serde_json::from_slice(&manifest_bytes).with_context(|| format!("base image {image} has an invalid manifest {digest}"))?;
            // An index names each entry's platform; a lone manifest's platform is in its config.
            let config: ImageConfig = self.fetch_config(&registry, path, &manifest.config, image).await?;
            let named = platform_hint.unwrap_or_else(|| oci::Platform {
                architecture: config.architecture.clone(),
                os: config.os.clone(),
                variant: config.variant.clone(),
            });
            available.push(describe(&named));
            if let Some(wanted) = platforms.iter().find(|wanted| matches(wanted, &named)) {
                images.insert(wanted.clone(), (manifest, config));
            }
        }
        for wanted in platforms {
            if !images.contains_key(wanted) {
                bail!("base image {image} has no {wanted} image (it has {}): pick a base that provides every platform you build, or drop {wanted} from --platform", available.join(", "));
            }
        }
        Ok(BaseImage { source: format!("{host}/{path}"), images })
    }

    /// The bytes of the index or manifest `reference` (a tag or digest) names in `repository`,
    /// or `None` when it names nothing.
    pub async fn find_manifest(&self, repository: &Repository, reference: &str) -> Result<Option<Vec<u8>>> {
        match repository {
            Repository::Layout { dir } => {
                if !dir.join("index.json").exists() {
                    return Ok(None);
                }
                let layout = crate::layout::Layout::open(dir)?;
                let digest = match reference.parse::<Digest>() {
                    Ok(digest) => layout.has_blob(&digest).then_some(digest),
                    Err(_) => layout.find(Some(reference))?.map(|descriptor| descriptor.digest),
                };
                match digest {
                    Some(digest) => Ok(Some(std::fs::read(layout.blob_path(&digest))?)),
                    None => Ok(None),
                }
            }
            Repository::Registry { host, path } => Ok(self.registry(host)?.find_manifest(path, reference).await?.map(|(_, bytes)| bytes)),
        }
    }

    /// The annotations of the index or manifest tagged `tag` in `repository`, or `None` when
    /// the tag is missing.
    pub async fn find_annotations(&self, repository: &Repository, tag: &str) -> Result<Option<BTreeMap<String, String>>> {
        let Some(bytes) = self.find_manifest(repository, tag).await? else { return Ok(None) };
        let annotations = oci::annotations_of(&bytes).with_context(|| format!("{repository}:{tag} is not an OCI index or manifest"))?;
        Ok(Some(annotations))
    }

    /// Deletes the images `digests` from `repository` with every tag naming them: on ECR with
    /// `BatchDeleteImage`, elsewhere through the registry API, in a layout by dropping their names.
    pub async fn delete_images(&self, repository: &Repository, digests: &[Digest]) -> Result<()> {
        match repository {
            Repository::Layout { dir } => {
                let layout = crate::layout::Layout::open(dir)?;
                digests.iter().try_for_each(|digest| layout.untag_digest(digest))
            }
            Repository::Registry { host, .. } if crate::ecr::parse_host(host).is_some() => {
                crate::ecr::delete_images(repository, digests).await
            }
            Repository::Registry { host, path } => {
                let registry = self.registry(host)?;
                for digest in digests {
                    registry.delete_manifest(path, digest).await?;
                }
                Ok(())
            }
        }
    }

    /// Every tag of `repository` (of a layout: its named entries).
    pub async fn tags(&self, repository: &Repository) -> Result<Vec<String>> {
        match repository {
            Repository::Layout { dir } if !dir.join("index.json").exists() => Ok(Vec::new()),
            Repository::Layout { dir } => Ok(crate::layout::Layout::open(dir)?
                .index()?
                .manifests
                .iter()
                .filter_map(|entry| entry.annotations.get(oci::ANNOTATION_REF_NAME).cloned())
                .collect()),
            Repository::Registry { host, path } => self.registry(host)?.tags(path).await,
        }
    }

    async fn fetch_config(
        &self,
        registry: &crate::registry::Registry,
        path: &str,
        descriptor: &Descriptor,
        image: &str,
    ) -> Result<ImageConfig> {
        let mut bytes = Vec::new();
        registry.get_blob(path, &descriptor.digest, &mut bytes).await?;
        let found = Digest::of(&bytes);
        if found != descriptor.digest {
            return Err(crate::layout::DigestMismatch { expected: descriptor.digest.clone(), found })
                .with_context(|| format!("the config of base image {image} is corrupt"));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("base image {image} has an invalid config"))
    }
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
