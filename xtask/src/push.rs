//! Pushing an image or index from an OCI image layout to a repository: every blob first (in
//! parallel, skipping what the repository has), then the platform manifests, then the root
//! under each tag in order. A tag is written only after everything it references is present.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::flags;
use crate::layout::Layout;
use crate::oci::{self, Descriptor, Digest, ImageIndex, ImageManifest};
use crate::progress::{AppLine, Progress};
use crate::reference::{ImageReference, Repository};
use crate::registry::{BlobFile, Registry, Transfer, TrustedRoots};

/// State shared by every push of one run: one client per registry, and the digests already
/// uploaded, so an app's or platform's shared blob is sent once.
pub struct Session {
    registries: Mutex<HashMap<String, Arc<Registry>>>,
    /// `(host, repository, digest)` of every blob known to be in a repository during this run.
    present: Mutex<HashSet<(String, String, Digest)>>,
    /// Big transfers (blob uploads) and small requests (existence checks) have separate budgets,
    /// so a check never queues behind a large upload.
    uploads: Arc<tokio::sync::Semaphore>,
    checks: Arc<tokio::sync::Semaphore>,
    chunk_size: Option<u64>,
    mount_from: Vec<String>,
    roots: TrustedRoots,
    progress: Progress,
}

/// How many existence checks run at once.
const PARALLEL_CHECKS: usize = 16;

#[derive(Debug, Default, Clone, Serialize)]
pub struct PushReport {
    pub digest: Option<Digest>,
    pub blobs: usize,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub bytes_uploaded: u64,
    /// Blobs the repository already had (or that this run sent for another image), not sent.
    pub blobs_skipped: usize,
    pub bytes_skipped: u64,
    pub tags_written: Vec<String>,
    pub tags_unchanged: Vec<String>,
}

/// What `retag` did.
pub enum Retagged {
    Moved(Digest),
    /// The tag already named the image.
    Unchanged,
}

/// What an image references, children before parents.
struct ImageGraph {
    blobs: Vec<GraphBlob>,
    manifests: Vec<(Descriptor, Vec<u8>)>,
    root: (Descriptor, Vec<u8>),
}

struct GraphBlob {
    descriptor: Descriptor,
    /// `(host, repository)` holding the blob when the layout does not (a base image's layer).
    foreign: Option<(String, String)>,
}

impl Session {
    pub fn new(transfer: &flags::Transfer, progress: Progress) -> Result<Session> {
        for repository in &transfer.mount_from {
            if !crate::reference::is_valid_repository_path(repository) {
                bail!("--mount-from `{repository}` is not a repository path: name a repository of the same registry, such as acme/staging");
            }
        }
        Ok(Session {
            registries: Mutex::new(HashMap::new()),
            present: Mutex::new(HashSet::new()),
            uploads: Arc::new(tokio::sync::Semaphore::new(usize::from(transfer.jobs))),
            checks: Arc::new(tokio::sync::Semaphore::new(PARALLEL_CHECKS)),
            chunk_size: transfer.chunk_size.map(|mib| mib << 20),
            mount_from: transfer.mount_from.clone(),
            roots: TrustedRoots::load(transfer.ca_file.as_deref())?,
            progress,
        })
    }

    /// A session for commands that only read from repositories (and move tags): default
    /// transfer settings, CA file from XTASK_CA_FILE, nothing drawn.
    pub fn for_reading() -> Result<Session> {
        Session::new(&flags::Transfer::default(), Progress::quiet())
    }

    /// Points `tag` at the image `source` (a tag) names in `repository`, with one manifest
    /// write and no blob moved. `None` when `source` names nothing.
    pub async fn retag(&self, repository: &Repository, source: &str, tag: &str) -> Result<Option<Retagged>> {
        match repository {
            Repository::Registry { host, path } => {
                let registry = self.registry(host)?;
                let Some((media_type, bytes)) = registry.find_manifest(path, source).await? else { return Ok(None) };
                let digest = Digest::of(&bytes);
                if registry.manifest_digest(path, tag).await?.as_ref() == Some(&digest) {
                    return Ok(Some(Retagged::Unchanged));
                }
                registry.put_manifest(path, tag, &media_type, &bytes).await.with_context(|| format!("cannot move {tag}"))?;
                Ok(Some(Retagged::Moved(digest)))
            }
            Repository::Layout { dir } => {
                let layout = Layout::open(dir)?;
                let Some(descriptor) = layout.find(Some(source))? else { return Ok(None) };
                if layout.find(Some(tag))?.is_some_and(|current| current.digest == descriptor.digest) {
                    return Ok(Some(Retagged::Unchanged));
                }
                layout.tag(tag, &descriptor)?;
                Ok(Some(Retagged::Moved(descriptor.digest)))
            }
        }
    }

    /// A repository of the same registry that holds `digest`, to mount it from: one this run
    /// pushed it to, else the first one the user named.
    fn mount_source(&self, host: &str, repository: &str, digest: &Digest) -> Option<String> {
        let present = self.present.lock().expect("not poisoned");
        present
            .iter()
            .find(|(h, r, d)| h == host && r != repository && d == digest)
            .map(|(_, r, _)| r.clone())
            .or_else(|| self.mount_from.iter().find(|r| *r != repository).cloned())
    }

    pub(crate) fn registry(&self, host: &str) -> Result<Arc<Registry>> {
        let mut registries = self.registries.lock().expect("not poisoned");
        if let Some(registry) = registries.get(host) {
            return Ok(registry.clone());
        }
        let registry = Arc::new(Registry::new(host, &self.roots)?);
        registries.insert(host.to_string(), registry.clone());
        Ok(registry)
    }

    /// Pushes the image `root` of `source` to `destination` and points each of `tags` at it, in
    /// order: a later tag moves only once the earlier ones are written.
    pub async fn push(
        &self,
        source: &Layout,
        root: &Descriptor,
        destination: &Repository,
        tags: &[String],
        line: &AppLine,
    ) -> Result<PushReport> {
        let graph = read_graph(source, root)?;
        let size: u64 = graph.blobs.iter().map(|blob| blob.descriptor.size).sum();
        line.step(&format!("pushing {} blobs ({}) to {destination}", graph.blobs.len(), indicatif::HumanBytes(size)));
        match destination {
            Repository::Layout { dir } => self.push_to_layout(source, &graph, dir, tags, line).await,
            Repository::Registry { host, path } => self.push_to_registry(source, &graph, &self.registry(host)?, path, tags, line).await,
        }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    async fn push_to_registry(
        &self,
        source: &Layout,
        graph: &ImageGraph,
        registry: &Arc<Registry>,
        repository: &str,
        tags: &[String],
        line: &AppLine,
    ) -> Result<PushReport> {
        let mut report = PushReport { digest: Some(graph.root.0.digest.clone()), blobs: graph.blobs.len(), ..PushReport::default() };
        let total = self.progress.total(graph.blobs.iter().map(|blob| blob.descriptor.size).sum());
        let host = registry.host().to_string();
        let mut transfers = JoinSet::new();
        for GraphBlob { descriptor: blob, foreign } in &graph.blobs {
            let key = (host.clone(), repository.to_string(), blob.digest.clone());
            if self.present.lock().expect("not poisoned").contains(&key) {
                report.blobs_skipped += 1;
                report.bytes_skipped += blob.size;
                continue;
            }
            let (bar, on_progress) = self.progress.blob(&blob.digest.hex()[..12], blob.size, &total);
            let file = BlobFile {
                path: source.blob_path(&blob.digest),
                digest: blob.digest.clone(),
                size: blob.size,
                on_progress: Some(on_progress),
            };
            let mount_from = self.mount_source(&host, repository, &blob.digest);
            let foreign = match foreign {
                Some((source_host, source_repository)) => Some((self.registry(source_host)?, source_repository.clone())),
                None => None,
            };
            let (registry, repository, checks, uploads, chunk_size, layout) =
                (registry.clone(), repository.to_string(), self.checks.clone(), self.uploads.clone(), self.chunk_size, source.clone());
            transfers.spawn(async move {
                let exists = {
                    let _permit = checks.acquire_owned().await.expect("never closed");
                    registry.blob_exists(&repository, &file.digest).await?
                };
                let transfer = if exists {
                    None
                } else {
                    let _permit = uploads.acquire_owned().await.expect("never closed");
                    match foreign {
                        // A base image's layer in the same registry is mounted, never moved.
                        Some((source, from))
                            if source.host() == registry.host() && registry.mount_blob(&repository, &file.digest, &from).await? =>
                        {
                            Some(Transfer::Mounted)
                        }
                        Some((source, from)) => {
                            fetch_blob(&source, &from, &file.digest, &layout).await?;
                            Some(registry.put_blob(&repository, &file, None, chunk_size).await?)
                        }
                        None => Some(registry.put_blob(&repository, &file, mount_from.as_deref(), chunk_size).await?),
                    }
                };
                bar.finish_and_clear();
                anyhow::Ok((key, file.size, transfer))
            });
        }
        while let Some(joined) = transfers.join_next().await {
            let (key, size, transfer) = joined??;
            self.present.lock().expect("not poisoned").insert(key);
            match transfer {
                Some(Transfer::Uploaded) => {
                    report.blobs_uploaded += 1;
                    report.bytes_uploaded += size;
                }
                Some(Transfer::Mounted) => report.blobs_mounted += 1,
                None => {
                    report.blobs_skipped += 1;
                    report.bytes_skipped += size;
                }
            }
        }
        total.finish_and_clear();

        line.step("writing manifests");
        for (descriptor, bytes) in &graph.manifests {
            if registry.manifest_digest(repository, descriptor.digest.as_str()).await?.as_ref() != Some(&descriptor.digest) {
                registry.put_manifest(repository, descriptor.digest.as_str(), &descriptor.media_type, bytes).await?;
            }
        }
        let (root, bytes) = &graph.root;
        for tag in tags {
            line.step(&format!("tagging {tag}"));
            if registry.manifest_digest(repository, tag).await?.as_ref() == Some(&root.digest) {
                report.tags_unchanged.push(tag.clone());
            } else {
                registry.put_manifest(repository, tag, &root.media_type, bytes).await?;
                report.tags_written.push(tag.clone());
            }
        }
        Ok(report)
    }

    async fn push_to_layout(&self, source: &Layout, graph: &ImageGraph, dir: &Path, tags: &[String], line: &AppLine) -> Result<PushReport> {
        let destination = Layout::create(dir)?;
        let mut report = PushReport { digest: Some(graph.root.0.digest.clone()), blobs: graph.blobs.len(), ..PushReport::default() };
        for GraphBlob { descriptor, foreign } in &graph.blobs {
            let copied = match foreign {
                Some(_) if destination.has_blob(&descriptor.digest) => false,
                Some((host, repository)) => {
                    fetch_blob(&*self.registry(host)?, repository, &descriptor.digest, &destination).await?;
                    true
                }
                None => destination.copy_blob_from(source, descriptor)?,
            };
            if copied {
                report.blobs_uploaded += 1;
                report.bytes_uploaded += descriptor.size;
            } else {
                report.blobs_skipped += 1;
                report.bytes_skipped += descriptor.size;
            }
        }
        line.step("writing manifests and tags");
        for (descriptor, bytes) in graph.manifests.iter().chain(std::iter::once(&graph.root)) {
            destination.write_blob(&descriptor.media_type, bytes)?;
        }
        let root = &graph.root.0;
        let current = destination.index()?;
        for tag in tags {
            let unchanged =
                current.manifests.iter().any(|d| d.digest == root.digest && d.annotations.get(oci::ANNOTATION_REF_NAME) == Some(tag));
            if unchanged {
                report.tags_unchanged.push(tag.clone());
            } else {
                destination.tag(tag, root)?;
                report.tags_written.push(tag.clone());
            }
        }
        Ok(report)
    }
}

/// Downloads a blob from a registry into a layout, which verifies its digest.
async fn fetch_blob(registry: &Registry, repository: &str, digest: &Digest, into: &Layout) -> Result<()> {
    let mut writer = into.blob_writer()?;
    registry.get_blob(repository, digest, &mut writer).await?;
    writer.finish(Some(digest)).with_context(|| format!("blob {digest} from {}/{repository} is corrupt", registry.host()))?;
    Ok(())
}

/// Reads and verifies the manifests under `root`, collecting the blobs they reference.
fn read_graph(layout: &Layout, root: &Descriptor) -> Result<ImageGraph> {
    let root_bytes = layout.read_blob(root)?;
    let mut blobs: BTreeMap<Digest, GraphBlob> = BTreeMap::new();
    let mut manifests = Vec::new();
    let image_manifests: Vec<(Descriptor, Vec<u8>)> = if root.is_index() {
        let index: ImageIndex =
            serde_json::from_slice(&root_bytes).with_context(|| format!("{} is not a valid image index", root.digest))?;
        let mut children = Vec::new();
        for child in index.manifests {
            if child.is_index() {
                bail!("index {} nests another index ({}); push the inner index instead", root.digest, child.digest);
            }
            let bytes = layout.read_blob(&child)?;
            children.push((child, bytes));
        }
        manifests = children.clone();
        children
    } else {
        vec![(root.clone(), root_bytes.clone())]
    };
    for (descriptor, bytes) in &image_manifests {
        let manifest: ImageManifest =
            serde_json::from_slice(bytes).with_context(|| format!("{} is not a valid image manifest", descriptor.digest))?;
        for blob in std::iter::once(manifest.config).chain(manifest.layers) {
            let foreign = match std::fs::metadata(layout.blob_path(&blob.digest)) {
                Ok(metadata) if metadata.len() != blob.size => bail!(
                    "blob {} in {} has {} bytes where its descriptor says {}: rebuild the image",
                    blob.digest,
                    layout.root().display(),
                    metadata.len(),
                    blob.size
                ),
                Ok(_) => None,
                Err(_) => {
                    let source = layout.foreign_source(&blob.digest)?.with_context(|| {
                        format!("blob {} is missing from the image layout {}: rebuild the image", blob.digest, layout.root().display())
                    })?;
                    match Repository::parse(&source)? {
                        Repository::Registry { host, path } => Some((host, path)),
                        Repository::Layout { .. } => {
                            bail!("{} names a layout as the source of blob {}", layout.root().display(), blob.digest)
                        }
                    }
                }
            };
            blobs.insert(blob.digest.clone(), GraphBlob { descriptor: blob, foreign });
        }
    }
    // The largest blobs start first so the slowest upload is not left for last.
    let mut blobs: Vec<GraphBlob> = blobs.into_values().collect();
    blobs.sort_by_key(|blob| std::cmp::Reverse(blob.descriptor.size));
    Ok(ImageGraph { blobs, manifests, root: (root.clone(), root_bytes) })
}

/// Splits `DIR[:REF]` (with an optional `oci:` prefix) into the layout and the entry name.
fn parse_layout_argument(text: &str) -> (&str, Option<&str>) {
    let text = text.strip_prefix("oci:").unwrap_or(text);
    match text.rsplit_once(':') {
        Some((dir, name)) if !name.contains('/') && !dir.is_empty() => (dir, Some(name)),
        _ => (text, None),
    }
}

pub async fn run(args: flags::Push) -> Result<()> {
    let reference = ImageReference::parse(&args.reference)?;
    // Options are checked before the layout is read, so that a bad flag is named first.
    let session = Session::new(&args.transfer, Progress::new(false))?;
    let (dir, name) = parse_layout_argument(&args.layout);
    let layout = Layout::open(Path::new(dir))?;
    let root = layout.resolve(name)?;
    let line = session.progress().app(&reference.tag);
    let report = session
        .push(&layout, &root, &reference.repository, std::slice::from_ref(&reference.tag), &line)
        .await
        .with_context(|| format!("push to {reference} failed, and the tag was not moved"))?;
    line.finish(&format!(
        "pushed {reference}: {} of {} blobs uploaded ({} bytes), {} mounted",
        report.blobs_uploaded, report.blobs, report.bytes_uploaded, report.blobs_mounted
    ));
    println!("{}", root.digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_arguments() {
        assert_eq!(parse_layout_argument("target/xtask/oci/api"), ("target/xtask/oci/api", None));
        assert_eq!(parse_layout_argument("oci:target/registry:api-latest"), ("target/registry", Some("api-latest")));
    }
}
