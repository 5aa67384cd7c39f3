//! Image archives: `docker save`'s, in both formats: Docker 20.10's (a tar of `<id>.json`, one
//! `<id>/layer.tar` per layer and `manifest.json`) and Docker 25's and later (the same
//! `manifest.json` over an OCI image layout: `index.json`, `oci-layout`, `blobs/sha256/<hex>`);
//! and BuildKit's OCI export (`--output type=oci`: the layout alone, its layers gzip). The engine
//! builder reads the image it saved or exported; `push` takes an archive as `crane push` does. No
//! network here, and every blob written to a layout is verified against its digest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::image::layer;
use crate::image::layout::{DigestMismatch, Layout, OCI_LAYOUT_FILE};
use crate::image::oci::{
    self, Descriptor, Digest, ImageConfig, ImageIndex, ANNOTATION_REFERENCE_TYPE, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_DOCKER_LAYER,
    MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_DOCKER_MANIFEST,
};

/// A `docker save` archive: its small JSON members are read into memory, its layers located to
/// be streamed afterwards (Docker 20.10 writes manifest.json last).
pub struct SavedArchive<'a> {
    path: &'a Path,
    json: BTreeMap<String, Vec<u8>>,
    /// Each member's offset and size in the archive.
    members: BTreeMap<String, (u64, u64)>,
}

/// The one image an archive holds, as its manifest.json (or its index.json) lists it.
pub struct SavedEntry {
    pub config: ImageConfig,
    pub config_bytes: Vec<u8>,
    pub layers: Vec<SavedLayer>,
}

/// A layer of an archive: the member holding it, a tar whose digest is its diff ID once
/// decompressed (`docker save` writes them uncompressed, BuildKit's OCI export gzip).
pub struct SavedLayer {
    pub member: String,
    pub gzip: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    layers: Vec<String>,
}

impl<'a> SavedArchive<'a> {
    pub fn read(path: &'a Path) -> Result<SavedArchive<'a>> {
        let mut archive = SavedArchive { path, json: BTreeMap::new(), members: BTreeMap::new() };
        let unreadable = || unreadable(path);
        let mut tar = tar::Archive::new(File::open(path).with_context(unreadable)?);
        for entry in tar.entries().with_context(unreadable)? {
            let mut entry = entry.with_context(unreadable)?;
            if entry.header().entry_type().is_dir() {
                continue;
            }
            let name = entry.path().with_context(unreadable)?.to_string_lossy().trim_start_matches("./").to_string();
            // A sparse member reads as its holes filled with zeros: a few KiB of archive could
            // stand for gigabytes. `docker save` writes none.
            if entry.header().entry_type() == tar::EntryType::GNUSparse {
                bail!(
                    "{}: its member {name} is a sparse file, which `docker save` never writes: push an archive `docker save` made",
                    archive.unreadable()
                );
            }
            archive.members.insert(name.clone(), (entry.raw_file_position(), entry.size()));
            if name.ends_with(".json") || name.ends_with("/json") || name == "oci-layout" {
                archive.json.insert(name, read_document(&mut entry, &archive.unreadable())?);
            }
        }
        Ok(archive)
    }

    pub fn unreadable(&self) -> String {
        unreadable(self.path)
    }

    /// The archive's one image: its configuration and its layers, as `docker save`'s
    /// manifest.json lists them or, in an OCI export without one, as its index.json leads to them.
    pub fn entry(&self) -> Result<SavedEntry> {
        let (config_member, layers) = match self.json.get("manifest.json") {
            Some(list) => {
                let entries: Vec<ManifestEntry> = serde_json::from_slice(list).with_context(|| self.unreadable())?;
                let [entry] = entries.as_slice() else {
                    bail!("{}: expected one image in the archive, found {}: save one image per archive", self.unreadable(), entries.len());
                };
                // An engine with the containerd image store saves the layers as it stores them,
                // compressed; the others save tars.
                let layers = entry
                    .layers
                    .iter()
                    .map(|member| Ok(SavedLayer { member: member.clone(), gzip: self.starts_gzip(member)? }))
                    .collect::<Result<_>>()?;
                (entry.config.clone(), layers)
            }
            None if self.json.contains_key("index.json") => self.exported_image()?,
            None => bail!("{}: it has neither manifest.json nor index.json, so it is not an image archive", self.unreadable()),
        };
        let config_bytes = self.member(&config_member)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .with_context(|| format!("{}: its configuration {config_member} is not an image configuration", self.unreadable()))?;
        if config.rootfs.diff_ids.len() != layers.len() {
            bail!(
                "{}: its configuration lists {} layers and its manifest {}",
                self.unreadable(),
                config.rootfs.diff_ids.len(),
                layers.len()
            );
        }
        Ok(SavedEntry { config, config_bytes, layers })
    }

    /// The member of the configuration and the layers of an OCI export's one image: its
    /// index.json names the image's manifest, or an index of it (BuildKit's multi-platform
    /// export), whose attestation manifests are not images.
    fn exported_image(&self) -> Result<(String, Vec<SavedLayer>)> {
        let blob = |digest: &Digest| format!("blobs/sha256/{}", digest.hex());
        let mut pending: Vec<Descriptor> = serde_json::from_slice::<ImageIndex>(&self.json["index.json"])
            .with_context(|| format!("{}: its index.json", self.unreadable()))?
            .manifests;
        let mut images = Vec::new();
        while let Some(descriptor) = pending.pop() {
            if descriptor.annotations.get(ANNOTATION_REFERENCE_TYPE).is_some_and(|kind| kind == "attestation-manifest") {
                continue;
            }
            let bytes = self.member(&blob(&descriptor.digest))?;
            DigestMismatch::check(&descriptor.digest, Digest::of(&bytes)).with_context(|| self.unreadable())?;
            match descriptor.is_index() {
                true => pending.extend(
                    serde_json::from_slice::<ImageIndex>(&bytes)
                        .with_context(|| format!("{}: its index {} is not an image index", self.unreadable(), descriptor.digest))?
                        .manifests,
                ),
                false => images.push(
                    serde_json::from_slice::<oci::ImageManifest>(&bytes)
                        .with_context(|| format!("{}: its manifest {} is not an image manifest", self.unreadable(), descriptor.digest))?,
                ),
            }
        }
        let [image] = images.as_slice() else {
            bail!("{}: expected one image in the archive, found {}: export one platform per archive", self.unreadable(), images.len());
        };
        let mut layers = Vec::new();
        for layer in &image.layers {
            let gzip = match layer.media_type.as_str() {
                oci::MEDIA_TYPE_LAYER_GZIP | MEDIA_TYPE_DOCKER_LAYER_GZIP => true,
                oci::MEDIA_TYPE_LAYER | MEDIA_TYPE_DOCKER_LAYER => false,
                other => bail!(
                    "{}: its layer {} is `{other}`, which the xtask does not read: export the image with gzip compression (buildx's default)",
                    self.unreadable(),
                    layer.digest
                ),
            };
            layers.push(SavedLayer { member: blob(&layer.digest), gzip });
        }
        Ok((blob(&image.config.digest), layers))
    }

    /// A small member's bytes: Docker 20.10 names the configuration `<id>.json`, Docker 25 and
    /// later `blobs/sha256/<hex>`, read here by its offset.
    pub fn member(&self, name: &str) -> Result<Vec<u8>> {
        if let Some(bytes) = self.json.get(name) {
            return Ok(bytes.clone());
        }
        read_document(&mut self.open(name)?, &self.unreadable())
    }

    /// Whether the member `name` is gzip data (by its magic number): a tar starts with a name.
    fn starts_gzip(&self, name: &str) -> Result<bool> {
        let mut magic = Vec::new();
        self.open(name)?.take(2).read_to_end(&mut magic).with_context(|| self.unreadable())?;
        Ok(magic == [0x1f, 0x8b])
    }

    /// Streams the uncompressed tar of `layer`.
    pub fn open_layer(&self, layer: &SavedLayer) -> Result<Box<dyn Read>> {
        let member = self.open(&layer.member)?;
        Ok(match layer.gzip {
            true => Box::new(flate2::read::GzDecoder::new(member)),
            false => Box::new(member),
        })
    }

    /// Streams the member `name`.
    pub fn open(&self, name: &str) -> Result<io::Take<File>> {
        let &(offset, size) = self.members.get(name).with_context(|| format!("{}: {name} is missing", self.unreadable()))?;
        let mut file = File::open(self.path).with_context(|| self.unreadable())?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(file.take(size))
    }

    /// Writes the archive's image into `layout` and returns its root descriptor. An archive that
    /// is an OCI layout (Docker 25 and later) is copied blob for blob, its manifests unchanged;
    /// an older one becomes a Docker v2 manifest over its configuration, unchanged, and its
    /// layers, each the archive's tar byte for byte, compressed with gzip at the fixed level (as
    /// `crane push` makes one of a tarball).
    pub fn to_layout(&self, layout: &Layout) -> Result<Descriptor> {
        if self.json.contains_key("oci-layout") && self.json.contains_key("index.json") {
            return self.copy_layout(layout);
        }
        let entry = self.entry()?;
        let config = layout.write_blob(MEDIA_TYPE_DOCKER_CONFIG, &entry.config_bytes)?;
        let mut layers = Vec::new();
        for (layer, expected) in entry.layers.iter().zip(&entry.config.rootfs.diff_ids) {
            let path = &layer.member;
            let mut original = layer::Hashing::new(self.open_layer(layer)?);
            let mut writer = layout.blob_writer()?;
            layer::compress(&mut original, &mut writer).with_context(|| format!("{}: layer {path}", self.unreadable()))?;
            DigestMismatch::check(expected, original.digest()).with_context(|| format!("{}: layer {path}", self.unreadable()))?;
            let (digest, size) = writer.finish(None)?;
            layers.push(Descriptor::of_blob(MEDIA_TYPE_DOCKER_LAYER_GZIP, digest, size));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
            "config": config,
            "layers": layers,
        });
        layout.write_blob(MEDIA_TYPE_DOCKER_MANIFEST, &oci::to_bytes(&manifest))
    }

    fn copy_layout(&self, layout: &Layout) -> Result<Descriptor> {
        let index: ImageIndex =
            serde_json::from_slice(&self.json["index.json"]).with_context(|| format!("{}: its index.json", self.unreadable()))?;
        let [root] = index.manifests.as_slice() else {
            bail!("{}: expected one image in the archive, found {}: save one image per archive", self.unreadable(), index.manifests.len());
        };
        for (name, &(_, size)) in &self.members {
            let Some(hex) = name.strip_prefix("blobs/sha256/") else { continue };
            let expected: Digest = format!("sha256:{hex}")
                .parse()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{}: member {name}", self.unreadable()))?;
            if layout.has_blob(&expected) {
                continue;
            }
            let mut writer = layout.blob_writer()?;
            let copied = io::copy(&mut self.open(name)?, &mut writer)?;
            if copied != size {
                bail!("{}: member {name} is truncated", self.unreadable());
            }
            writer.finish(Some(&expected)).with_context(|| format!("{}: member {name}", self.unreadable()))?;
        }
        let mut root = root.clone();
        // The engine's own names for the image are not the layout's business.
        root.annotations.clear();
        if !layout.has_blob(&root.digest) {
            bail!("{}: its index names {}, which it does not hold", self.unreadable(), root.digest);
        }
        Ok(root)
    }
}

/// Writes the platform image `manifest` of `layout` (which must hold every blob it references)
/// as an archive that `docker load` reads on every version, named `repo_tags`: what Docker 25
/// and later save, an OCI image layout (read by engines with the containerd image store) with a
/// manifest.json beside it (read by the others, Docker 20.10 among them, which decompress the
/// gzip layers themselves), and which podman loads too. Same layout, same bytes.
pub fn write_archive(layout: &Layout, manifest: &Descriptor, repo_tags: &[String], out: impl io::Write) -> Result<()> {
    let manifest_bytes = layout.read_blob(manifest)?;
    let image: oci::ImageManifest = serde_json::from_slice(&manifest_bytes).context("the image's manifest is not an image manifest")?;
    let blob_name = |digest: &Digest| format!("blobs/sha256/{}", digest.hex());
    let mut tar = tar::Builder::new(out);
    let mut add = |name: &str, size: u64, data: &mut dyn Read| -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        tar.append_data(&mut header, name, data)
    };
    add("oci-layout", OCI_LAYOUT_FILE.len() as u64, &mut OCI_LAYOUT_FILE.as_bytes())?;
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let mut file = File::open(layout.blob_path(&blob.digest))
            .with_context(|| format!("blob {} is not in {}", blob.digest, layout.root().display()))?;
        add(&blob_name(&blob.digest), blob.size, &mut file)?;
    }
    add(&blob_name(&manifest.digest), manifest_bytes.len() as u64, &mut manifest_bytes.as_slice())?;
    let mut root = Descriptor::of_blob(&manifest.media_type, manifest.digest.clone(), manifest.size);
    if let Some(first) = repo_tags.first() {
        let qualified = if first.contains('/') { first.clone() } else { format!("docker.io/library/{first}") };
        root.annotations.insert("io.containerd.image.name".into(), qualified);
        root.annotations.insert(oci::ANNOTATION_REF_NAME.into(), first.rsplit_once(':').map_or("latest", |(_, tag)| tag).into());
    }
    let index = oci::to_bytes(&ImageIndex::new(vec![root], BTreeMap::new()));
    add("index.json", index.len() as u64, &mut index.as_slice())?;
    let entries = serde_json::json!([{
        "Config": blob_name(&image.config.digest),
        "RepoTags": repo_tags,
        "Layers": image.layers.iter().map(|layer| blob_name(&layer.digest)).collect::<Vec<_>>(),
    }]);
    let entries = oci::to_bytes(&entries);
    add("manifest.json", entries.len() as u64, &mut entries.as_slice())?;
    tar.into_inner()?.flush()?;
    Ok(())
}

/// A JSON member (manifest.json, a configuration, an index), read whole but no further than a
/// registry's manifest would be.
fn read_document(member: &mut impl Read, unreadable: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    member.take(oci::MANIFEST_LIMIT + 1).read_to_end(&mut bytes).with_context(|| unreadable.to_string())?;
    if bytes.len() as u64 > oci::MANIFEST_LIMIT {
        bail!("{unreadable}: a JSON member is larger than {} MiB, which no image's needs", oci::MANIFEST_LIMIT >> 20);
    }
    Ok(bytes)
}

fn unreadable(path: &Path) -> String {
    format!("cannot read the image archive {}", path.display())
}

/// Archives as Docker writes them, for the tests of this module and of the engine builder.
#[cfg(test)]
pub mod fixtures {
    use super::*;

    #[derive(Clone, Copy, PartialEq)]
    pub enum Docker {
        /// `<id>/layer.tar` and `<id>.json`.
        V20,
        /// Docker 25 and later: an OCI layout, every member under `blobs/sha256/<hex>`.
        V25,
        /// Docker 25 and later with the containerd image store: the same, its layers gzip.
        V25Containerd,
        /// BuildKit's `--output type=oci`: the layout alone, its index.json naming an index of
        /// the image and its attestation manifest, the layers gzip.
        BuildKitOci,
    }

    /// An archive of one image with one layer holding `layer_files`, as `docker` writes it; its
    /// configuration records `diff_id_override` instead of the layer's diff ID when given.
    pub fn saved_archive(docker: Docker, layer_files: &[(&str, &[u8])], diff_id_override: Option<&str>) -> Vec<u8> {
        let mut layer = tar::Builder::new(Vec::new());
        for (path, contents) in layer_files {
            let mut header = tar::Header::new_ustar();
            header.set_size(contents.len() as u64);
            header.set_mode(0o755);
            header.set_mtime(2_000_000_000);
            layer.append_data(&mut header, path, *contents).unwrap();
        }
        let layer = layer.into_inner().unwrap();
        let diff_id = diff_id_override.map(str::to_string).unwrap_or_else(|| Digest::of(&layer).to_string());
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2026-11-22T15:41:11.654849736Z",
            "container": "9f22664475f0", "docker_version": "20.10.24",
            "config": {"Env": ["PATH=/bin"], "Cmd": null, "Labels": null, "Volumes": {"/data": {}}, "Image": "sha256:abc",
                       "Shell": ["/bin/bash", "-c"], "OnBuild": ["RUN make"],
                       "Entrypoint": ["/worker"], "Healthcheck": {"Test": ["CMD", "/worker", "--check"], "Retries": 2}},
            "history": [{"created": "2026-11-22T15:41:11Z", "created_by": "/bin/sh -c #(nop) COPY file:ca15 in /worker "},
                        {"created": "2026-11-22T15:41:12Z", "created_by": "/worker", "empty_layer": true}],
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let mut archive = tar::Builder::new(Vec::new());
        let layout = docker != Docker::V20;
        let (layer, layer_type) = match docker {
            Docker::V20 | Docker::V25 => (layer, oci::MEDIA_TYPE_LAYER),
            Docker::V25Containerd | Docker::BuildKitOci => {
                let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                io::Write::write_all(&mut gzip, &layer).unwrap();
                (gzip.finish().unwrap(), oci::MEDIA_TYPE_LAYER_GZIP)
            }
        };
        if layout {
            for directory in ["blobs/", "blobs/sha256/"] {
                let mut header = tar::Header::new_ustar();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(0o755);
                archive.append_data(&mut header, directory, io::empty()).unwrap();
            }
        }
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            archive.append_data(&mut header, name, bytes).unwrap();
        };
        let config = config.to_string();
        let blob_name = |bytes: &[u8]| format!("blobs/sha256/{}", Digest::of(bytes).hex());
        let (layer_name, config_name) = match layout {
            false => ("3333/layer.tar".to_string(), "6025.json".to_string()),
            true => (blob_name(&layer), blob_name(config.as_bytes())),
        };
        add(&layer_name, &layer);
        add(&config_name, config.as_bytes());
        if layout {
            let manifest = |config: Descriptor, layers: &[Descriptor]| {
                serde_json::json!({"schemaVersion": 2, "mediaType": oci::MEDIA_TYPE_MANIFEST, "config": config, "layers": layers})
                    .to_string()
            };
            let image = manifest(Descriptor::new(oci::MEDIA_TYPE_CONFIG, config.as_bytes()), &[Descriptor::new(layer_type, &layer)]);
            add(&blob_name(image.as_bytes()), image.as_bytes());
            let mut root = Descriptor::new(oci::MEDIA_TYPE_MANIFEST, image.as_bytes());
            if docker == Docker::BuildKitOci {
                let attestation = manifest(Descriptor::new("application/vnd.in-toto+json", b"{}"), &[]);
                add(&blob_name(attestation.as_bytes()), attestation.as_bytes());
                let mut attestation = Descriptor::new(oci::MEDIA_TYPE_MANIFEST, attestation.as_bytes());
                attestation.annotations.insert(ANNOTATION_REFERENCE_TYPE.into(), "attestation-manifest".into());
                let index = oci::to_bytes(&ImageIndex::new(vec![root, attestation], BTreeMap::new()));
                add(&blob_name(&index), &index);
                root = Descriptor::new(oci::MEDIA_TYPE_INDEX, &index);
            } else {
                root.annotations.insert("io.containerd.image.name".into(), "docker.io/library/worker:1".into());
            }
            add("index.json", &oci::to_bytes(&ImageIndex::new(vec![root], BTreeMap::new())));
            add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        }
        if docker != Docker::BuildKitOci {
            add("manifest.json", format!(r#"[{{"Config":"{config_name}","RepoTags":null,"Layers":["{layer_name}"]}}]"#).as_bytes());
        }
        archive.into_inner().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{saved_archive, Docker};
    use super::*;

    /// Writes `archive` into a new layout; returns the root and the layout's directory.
    fn to_layout(archive: &[u8]) -> Result<(Descriptor, Layout, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        std::fs::write(&path, archive).unwrap();
        let layout = Layout::create(&dir.path().join("layout")).unwrap();
        let root = SavedArchive::read(&path)?.to_layout(&layout)?;
        Ok((root, layout, dir))
    }

    #[test]
    fn docker_25_archives_are_copied_blob_for_blob() {
        let archive = saved_archive(Docker::V25, &[("worker", b"\x7fELF binary")], None);
        let (root, layout, _dir) = to_layout(&archive).unwrap();
        assert_eq!(root.media_type, oci::MEDIA_TYPE_MANIFEST);
        assert!(root.annotations.is_empty());
        let manifest: serde_json::Value = serde_json::from_slice(&layout.read_blob(&root).unwrap()).unwrap();
        assert_eq!(manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar", "the manifest is unchanged");
        assert_eq!(std::fs::read_dir(layout.root().join("blobs/sha256")).unwrap().count(), 3);
    }

    #[test]
    fn docker_20_archives_become_docker_manifests_over_their_own_layers() {
        let archive = saved_archive(Docker::V20, &[("worker", b"\x7fELF binary")], None);
        let (root, layout, _dir) = to_layout(&archive).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&layout.read_blob(&root).unwrap()).unwrap();
        assert_eq!(root.media_type, MEDIA_TYPE_DOCKER_MANIFEST);
        assert_eq!(manifest["mediaType"], MEDIA_TYPE_DOCKER_MANIFEST);
        let config: Descriptor = serde_json::from_value(manifest["config"].clone()).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&layout.read_blob(&config).unwrap()).unwrap();
        assert_eq!(config["docker_version"], "20.10.24", "the configuration is kept as it is");
        // The layer is the archive's tar, byte for byte, only compressed.
        let layer: Descriptor = serde_json::from_value(manifest["layers"][0].clone()).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&layout.read_blob(&layer).unwrap()[..]).read_to_end(&mut tar).unwrap();
        assert_eq!(Digest::of(&tar).to_string(), config["rootfs"]["diff_ids"][0]);
        assert_eq!(to_layout(&archive).unwrap().0, root, "the same archive gives the same manifest");
    }

    #[test]
    fn archives_for_docker_load_are_both_formats_and_read_back() {
        // A Docker 20.10 archive, as a layout: then written for `docker load` and read again.
        let (root, layout, dir) = to_layout(&saved_archive(Docker::V20, &[("worker", b"\x7fELF binary")], None)).unwrap();
        let path = dir.path().join("load.tar");
        let tags = ["worker:latest".to_string(), "worker:0123abc".to_string()];
        write_archive(&layout, &root, &tags, File::create(&path).unwrap()).unwrap();
        let archive = SavedArchive::read(&path).unwrap();
        let entry = archive.entry().unwrap();
        assert_eq!(entry.config.architecture, "amd64");
        assert_eq!(entry.layers.len(), 1);
        expect_test::expect![[r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:8a798a24622380dfaea09d6e6f03b00bcebff134b9fd798b8768fd329ad8c977","size":423,"annotations":{"io.containerd.image.name":"docker.io/library/worker:latest","org.opencontainers.image.ref.name":"latest"}}]}"#]]
            .assert_eq(std::str::from_utf8(&archive.member("index.json").unwrap()).unwrap());
        let copied = Layout::create(&dir.path().join("copied")).unwrap();
        assert_eq!(archive.to_layout(&copied).unwrap().digest, root.digest, "the OCI layout inside names the same manifest");
        let again = dir.path().join("again.tar");
        write_archive(&layout, &root, &tags, File::create(&again).unwrap()).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&path).unwrap());
    }

    #[test]
    fn a_layer_that_does_not_match_its_diff_id_is_refused() {
        let wrong = format!("sha256:{}", "0".repeat(64));
        let Err(err) = to_layout(&saved_archive(Docker::V20, &[("worker", b"binary")], Some(&wrong))) else {
            panic!("a corrupt layer was accepted");
        };
        assert!(err.downcast_ref::<DigestMismatch>().is_some(), "{err:#}");
        assert!(format!("{err:#}").contains("layer 3333/layer.tar"), "{err:#}");
    }
}
