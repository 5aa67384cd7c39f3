//! Reading base images from registries as far as builds need: a base image's index, its platform
//! manifests and their configs, and, for a native build that copies into the base's file system,
//! the listing of its layers (paths and metadata, no contents), kept once per machine. The push
//! never uploads a base's layers: it mounts them or checks that the target repository has them.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::image::fstree::{BaseEntry, FileData, FsTree, Kind, Stat};

use crate::image::layout::Layout;
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
    let reference = ImageReference::parse_image_name(image)?;
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

/// Makes the layout of an image of the monorepo built in this run hold every layer of its
/// platform image `manifest`: those it took from its base stay in the base's registry (the
/// layout records where), and are fetched into it, each verified, for an engine that reads the
/// image whole (`docker load`, or a buildx builder's `oci-layout://` context).
pub async fn complete_layout(registries: &Registries, layout: &Layout, manifest: &ImageManifest) -> Result<()> {
    for layer in manifest.layers.iter().filter(|layer| !layout.has_blob(&layer.digest)) {
        let source = layout.foreign_source(&layer.digest)?.with_context(|| {
            format!("layer {} is neither in the image layout {} nor recorded as a registry's", layer.digest, layout.root().display())
        })?;
        let (host, path) = source.split_once('/').with_context(|| format!("`{source}` names no repository"))?;
        fetch_blob(&*registries.client(host)?, path, &layer.digest, layer.size, layout)
            .await
            .with_context(|| format!("cannot fetch layer {} from {source}", layer.digest))?;
    }
    Ok(())
}

/// Downloads a blob of `size` bytes from a registry into a layout, which verifies its digest.
pub async fn fetch_blob(registry: &Registry, repository: &str, digest: &Digest, size: u64, into: &Layout) -> Result<()> {
    let mut writer = into.blob_writer()?;
    registry.get_blob(repository, digest, size, &mut writer).await?;
    writer.finish(Some(digest)).with_context(|| format!("blob {digest} from {}/{repository} is corrupt", registry.host()))?;
    Ok(())
}

/// The file tree of a base image's platform image: its layers' entries applied in order. A
/// native build needs it where a COPY or WORKDIR meets what the base has (Debian's `/bin` is a
/// link to `usr/bin`, `/tmp` is sticky, a directory may belong to a user), so its layers are
/// downloaded once, verified, and only their listings kept, in `cache` by digest when given.
/// `local` is the layout of an image of the monorepo built in this run: its own layers are read
/// from there, and the layers it took from its base from the registry the layout records.
pub async fn base_tree(
    registries: &Registries,
    source: &str,
    manifest: &ImageManifest,
    cache: Option<&Path>,
    local: Option<&Layout>,
) -> Result<FsTree> {
    let mut tree = FsTree::new();
    for layer in &manifest.layers {
        if let Some(layout) = local.filter(|layout| layout.has_blob(&layer.digest)) {
            let bytes = std::fs::File::open(layout.blob_path(&layer.digest))?;
            let entries = crate::image::fstree::layer_entries(
                flate2::read::GzDecoder::new(std::io::BufReader::new(bytes)),
                &crate::image::libc::read_glibc_release,
            )
            .with_context(|| format!("layer {} of {} is not a gzip-compressed tar", layer.digest, layout.root().display()))?;
            tree.apply_base_layer(&entries);
            continue;
        }
        let recorded = match local {
            Some(layout) => layout.foreign_source(&layer.digest)?,
            None => None,
        };
        let source = recorded.as_deref().unwrap_or(source);
        let (host, path) = source.split_once('/').with_context(|| format!("`{source}` names no repository"))?;
        let registry = registries.client(host)?;
        let cached = cache.map(|dir| dir.join(layer.digest.to_string().replace(':', "-")));
        if let Some(entries) = cached.as_deref().and_then(|file| std::fs::read(file).ok()).and_then(|bytes| decode_listing(&bytes)) {
            tree.apply_base_layer(&entries);
            continue;
        }
        let mut file = tempfile::tempfile().context("cannot create a temporary file for a base layer")?;
        let mut hashing = crate::image::layer::Hashing::new(&mut file);
        registry
            .get_blob(path, &layer.digest, layer.size, &mut hashing)
            .await
            .with_context(|| format!("cannot read layer {} of base image {source}", layer.digest))?;
        crate::image::layout::DigestMismatch::check(&layer.digest, hashing.digest())
            .with_context(|| format!("layer {} of base image {source} is corrupt", layer.digest))?;
        file.rewind()?;
        let media_type = layer.media_type.as_str();
        let stream: Box<dyn Read> = if media_type.ends_with("gzip") {
            Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
        } else if media_type.ends_with(".tar") {
            Box::new(std::io::BufReader::new(file))
        } else {
            bail!(
                "layer {} of base image {source} is {media_type}, which the native builder does not read: build with `--builder engine`",
                layer.digest
            );
        };
        let entries = crate::image::fstree::layer_entries(stream, &crate::image::libc::read_glibc_release)
            .with_context(|| format!("layer {} of base image {source} is not a tar", layer.digest))?;
        if let Some(file) = &cached {
            // A listing that cannot be kept is read again next time; that costs time, not correctness.
            let _ = std::fs::create_dir_all(file.parent().expect("a cache file has a directory"))
                .and_then(|()| std::fs::File::create(file))
                .and_then(|mut out| out.write_all(&encode_listing(&entries)));
        }
        tree.apply_base_layer(&entries);
    }
    Ok(tree)
}

fn encode_listing(entries: &[BaseEntry]) -> Vec<u8> {
    let values: Vec<serde_json::Value> = entries
        .iter()
        .map(|entry| match entry {
            BaseEntry::Put(path, stat) => {
                let (kind, target) = match &stat.kind {
                    Kind::Dir => ("d", ""),
                    Kind::File(_) => ("f", ""),
                    Kind::Symlink(target) => ("l", target.as_str()),
                    Kind::Fifo => ("p", ""),
                    Kind::Special => ("s", ""),
                };
                serde_json::json!(["put", path, kind, stat.mode, stat.uid, stat.gid, target])
            }
            BaseEntry::Remove(path) => serde_json::json!(["remove", path]),
            BaseEntry::Empty(path) => serde_json::json!(["empty", path]),
            BaseEntry::Note(path, note) => serde_json::json!(["note", path, note]),
        })
        .collect();
    serde_json::to_vec(&values).expect("a listing serialises")
}

/// A cached listing; `None` when it cannot be read, and the layer is then read again.
fn decode_listing(bytes: &[u8]) -> Option<Vec<BaseEntry>> {
    let values: Vec<Vec<serde_json::Value>> = serde_json::from_slice(bytes).ok()?;
    values
        .into_iter()
        .map(|value| {
            let text = |i: usize| value.get(i).and_then(|v| v.as_str()).map(str::to_string);
            let number = |i: usize| value.get(i).and_then(|v| v.as_u64()).and_then(|n| u32::try_from(n).ok());
            Some(match text(0)?.as_str() {
                "put" => {
                    let kind = match text(2)?.as_str() {
                        "d" => Kind::Dir,
                        "f" => Kind::File(FileData::Base),
                        "l" => Kind::Symlink(text(6)?),
                        "p" => Kind::Fifo,
                        "s" => Kind::Special,
                        _ => return None,
                    };
                    BaseEntry::Put(text(1)?, Stat { kind, mode: number(3)?, uid: number(4)?, gid: number(5)?, inode: 0 })
                }
                "remove" => BaseEntry::Remove(text(1)?),
                "empty" => BaseEntry::Empty(text(1)?),
                "note" => BaseEntry::Note(text(1)?, text(2)?),
                _ => return None,
            })
        })
        .collect()
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
