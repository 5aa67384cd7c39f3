//! Pushing an image or index from an OCI image layout to a repository: every blob first (in
//! parallel, skipping what the repository has), then the platform manifests, then the root
//! under each tag in order. A tag is written only after everything it references is present.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinSet;

use crate::flags;
use crate::image::layout::Layout;
use crate::image::oci::{self, Descriptor, Digest, ImageIndex, ImageManifest};
use crate::image::reference::Repository;
use crate::progress::{AppLine, Progress};
use crate::repository::read::fetch_blob;
use crate::repository::registry::{BlobFile, Registry, Transfer};
use crate::repository::store::Registries;

/// The push engine, shared by every push of one run: the registry clients, and the blobs this
/// run put (or is putting) into each repository, so a blob that apps, platforms or attachments
/// share is sent once, and a push that needs a blob another push is sending waits for it.
pub struct Pusher {
    registries: Registries,
    /// `(host, repository, digest)` of every blob this run has asked for in a repository; set
    /// once the blob is known to be there. Pushes running side by side share the cell, so one
    /// of them sends the blob and the others wait: a manifest never goes out before its blobs.
    blobs: Mutex<HashMap<BlobKey, Arc<OnceCell<()>>>>,
    /// Big transfers (blob uploads) and small requests (existence checks) have separate budgets,
    /// so a check never queues behind a large upload.
    uploads: Arc<Semaphore>,
    checks: Arc<Semaphore>,
    chunk_size: Option<u64>,
    mount_from: Vec<String>,
    progress: Progress,
}

type BlobKey = (String, String, Digest);

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

/// What a push knows of the destination's manifests before it writes them.
#[derive(Clone, Copy)]
enum Manifests {
    /// Each is asked for, and written only when missing.
    Unknown,
    /// A lookup found them missing: each is written without asking.
    Absent,
}

impl Manifests {
    /// Whether `repository` lacks the manifest `descriptor`.
    async fn lacks(self, registry: &Registry, repository: &str, descriptor: &Descriptor) -> Result<bool> {
        Ok(match self {
            Manifests::Absent => true,
            Manifests::Unknown => {
                registry.manifest_digest(repository, descriptor.digest.as_str()).await?.as_ref() != Some(&descriptor.digest)
            }
        })
    }
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

impl Pusher {
    /// `registry` is the host the push goes to, for which `--ca-file` is trusted.
    pub fn new(transfer: &flags::Transfer, registry: Option<&str>, progress: Progress) -> Result<Pusher> {
        for repository in &transfer.mount_from {
            if !crate::image::reference::is_valid_repository_path(repository) {
                bail!("--mount-from `{repository}` is not a repository path: name a repository of the same registry, such as acme/staging");
            }
        }
        Ok(Pusher {
            registries: Registries::new(transfer.ca_file.as_deref(), registry)?,
            blobs: Mutex::new(HashMap::new()),
            uploads: Arc::new(Semaphore::new(usize::from(transfer.jobs))),
            checks: Arc::new(Semaphore::new(PARALLEL_CHECKS)),
            chunk_size: transfer.chunk_size.map(|mib| mib << 20),
            mount_from: transfer.mount_from.clone(),
            progress,
        })
    }

    /// A repository of the same registry that holds `digest`, to mount it from: one this run
    /// pushed it to, else the first one the user named.
    fn mount_source(&self, host: &str, repository: &str, digest: &Digest) -> Option<String> {
        let blobs = self.blobs.lock().expect("not poisoned");
        blobs
            .iter()
            .find(|((h, r, d), there)| h == host && r != repository && d == digest && there.initialized())
            .map(|((_, r, _), _)| r.clone())
            .or_else(|| self.mount_from.iter().find(|r| *r != repository).cloned())
    }

    /// The registry clients, for the reads a release makes besides pushing (base images, the
    /// images already released).
    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    /// Pushes the image `root` of `source` to `destination` and points each of `tags` at it, in
    /// order: a later tag moves only once the earlier ones are written. Without tags the root is
    /// written under its digest (a push by digest).
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
            Repository::Registry { host, path } => {
                self.push_to_registry(source, &graph, (&self.registries.client(host)?, path), tags, Manifests::Unknown, line).await
            }
        }
    }

    /// Pushes the image `root` of `source` by digest, untagged, to `destination`, which is known
    /// to lack it (its manifests are written without asking first); its blobs are checked as
    /// by `push`.
    pub async fn push_absent(&self, source: &Layout, root: &Descriptor, destination: &Repository, line: &AppLine) -> Result<PushReport> {
        let Repository::Registry { host, path } = destination else { return self.push(source, root, destination, &[], line).await };
        let graph = read_graph(source, root)?;
        self.push_to_registry(source, &graph, (&self.registries.client(host)?, path), &[], Manifests::Absent, line).await
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    async fn push_to_registry(
        &self,
        source: &Layout,
        graph: &ImageGraph,
        (registry, repository): (&Arc<Registry>, &str),
        tags: &[String],
        manifests: Manifests,
        line: &AppLine,
    ) -> Result<PushReport> {
        let mut report = PushReport { digest: Some(graph.root.0.digest.clone()), blobs: graph.blobs.len(), ..PushReport::default() };
        self.upload_blobs(source, &graph.blobs, registry, repository, &mut report).await?;
        line.step("writing manifests");
        for (descriptor, bytes) in &graph.manifests {
            if manifests.lacks(registry, repository, descriptor).await? {
                registry.put_manifest(repository, descriptor.digest.as_str(), &descriptor.media_type, bytes).await?;
            }
        }
        let (root, bytes) = &graph.root;
        // Untagged, the image is pushed by digest: its root is written under its digest.
        if tags.is_empty() && manifests.lacks(registry, repository, root).await? {
            registry.put_manifest(repository, root.digest.as_str(), &root.media_type, bytes).await?;
        }
        write_registry_tags(registry, repository, &graph.root, tags, line, &mut report).await?;
        Ok(report)
    }

    /// Points `tags` at the image `root` of `source`, which a push of this run (untagged) has
    /// already put into `destination` whole: only the tags are written.
    pub async fn tag_pushed(
        &self,
        source: &Layout,
        root: &Descriptor,
        destination: &Repository,
        tags: &[String],
        line: &AppLine,
    ) -> Result<PushReport> {
        let root = (root.clone(), source.read_blob(root)?);
        let mut report = PushReport { digest: Some(root.0.digest.clone()), ..PushReport::default() };
        match destination {
            Repository::Layout { dir } => write_layout_tags(&Layout::open(dir)?, &root.0, tags, &mut report)?,
            Repository::Registry { host, path } => {
                write_registry_tags(&*self.registries.client(host)?, path, &root, tags, line, &mut report).await?
            }
        }
        Ok(report)
    }

    /// Puts the blobs of the images `roots` of `source` into `destination`, ahead of their
    /// pushes, which then find them there (a registry only: a layout's copies cost nothing).
    pub async fn upload_blobs_of(&self, source: &Layout, roots: &[Descriptor], destination: &Repository) -> Result<()> {
        let Repository::Registry { host, path } = destination else { return Ok(()) };
        let mut blobs = Vec::new();
        for root in roots {
            blobs.extend(read_graph(source, root)?.blobs);
        }
        self.upload_blobs(source, &blobs, &self.registries.client(host)?, path, &mut PushReport::default()).await
    }

    /// Puts `blobs` into `repository` in parallel (existence checks and uploads with their own
    /// budgets), skipping what this run already put there, and counts each in `report`.
    async fn upload_blobs(
        &self,
        source: &Layout,
        blobs: &[GraphBlob],
        registry: &Arc<Registry>,
        repository: &str,
        report: &mut PushReport,
    ) -> Result<()> {
        let total = self.progress.total(blobs.iter().map(|blob| blob.descriptor.size).sum());
        let host = registry.host().to_string();
        let mut transfers = JoinSet::new();
        for GraphBlob { descriptor: blob, foreign } in blobs {
            let key = (host.clone(), repository.to_string(), blob.digest.clone());
            let there = self.blobs.lock().expect("not poisoned").entry(key).or_default().clone();
            if there.initialized() {
                report.count(blob.size, None);
                continue;
            }
            let (bar, on_progress) = self.progress.blob(&blob.digest.hex()[..12], blob.size, &total);
            let job = BlobJob {
                registry: registry.clone(),
                repository: repository.to_string(),
                file: BlobFile {
                    path: source.blob_path(&blob.digest),
                    digest: blob.digest.clone(),
                    size: blob.size,
                    on_progress: Some(on_progress),
                },
                foreign: match foreign {
                    Some((source_host, source_repository)) => Some((self.registries.client(source_host)?, source_repository.clone())),
                    None => None,
                },
                mount_from: self.mount_source(&host, repository, &blob.digest),
                chunk_size: self.chunk_size,
                layout: source.clone(),
            };
            let (checks, uploads) = (self.checks.clone(), self.uploads.clone());
            transfers.spawn(async move {
                // Another push of this run may be sending the same blob: then this waits for it
                // (and, should that one fail, sends it itself).
                let mut transfer = None;
                there
                    .get_or_try_init(|| async {
                        transfer = job.run(&checks, &uploads).await?;
                        anyhow::Ok(())
                    })
                    .await?;
                bar.finish_and_clear();
                anyhow::Ok((job.file.size, transfer))
            });
        }
        while let Some(joined) = transfers.join_next().await {
            let (size, transfer) = joined??;
            report.count(size, transfer);
        }
        total.finish_and_clear();
        Ok(())
    }

    async fn push_to_layout(&self, source: &Layout, graph: &ImageGraph, dir: &Path, tags: &[String], line: &AppLine) -> Result<PushReport> {
        let destination = Layout::create(dir)?;
        let mut report = PushReport { digest: Some(graph.root.0.digest.clone()), blobs: graph.blobs.len(), ..PushReport::default() };
        for GraphBlob { descriptor, foreign } in &graph.blobs {
            let copied = match foreign {
                Some(_) if destination.has_blob(&descriptor.digest) => false,
                Some((host, repository)) => {
                    fetch_blob(&*self.registries.client(host)?, repository, &descriptor.digest, descriptor.size, &destination).await?;
                    true
                }
                None => destination.copy_blob_from(source, descriptor)?,
            };
            report.count(descriptor.size, copied.then_some(Transfer::Uploaded));
        }
        line.step("writing manifests and tags");
        for (descriptor, bytes) in graph.manifests.iter().chain(std::iter::once(&graph.root)) {
            destination.write_blob(&descriptor.media_type, bytes)?;
        }
        write_layout_tags(&destination, &graph.root.0, tags, &mut report)?;
        Ok(report)
    }
}

/// Points each of `tags` at `root` in order, writing only those that name something else.
async fn write_registry_tags(
    registry: &Registry,
    repository: &str,
    (root, bytes): &(Descriptor, Vec<u8>),
    tags: &[String],
    line: &AppLine,
    report: &mut PushReport,
) -> Result<()> {
    for tag in tags {
        line.step(&format!("tagging {tag}"));
        if registry.manifest_digest(repository, tag).await?.as_ref() == Some(&root.digest) {
            report.tags_unchanged.push(tag.clone());
        } else {
            registry.put_manifest(repository, tag, &root.media_type, bytes).await?;
            report.tags_written.push(tag.clone());
        }
    }
    Ok(())
}

fn write_layout_tags(destination: &Layout, root: &Descriptor, tags: &[String], report: &mut PushReport) -> Result<()> {
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
    Ok(())
}

impl PushReport {
    /// Counts one blob of `size` bytes: uploaded, mounted, or, without a transfer, skipped.
    fn count(&mut self, size: u64, transfer: Option<Transfer>) {
        match transfer {
            Some(Transfer::Uploaded) => {
                self.blobs_uploaded += 1;
                self.bytes_uploaded += size;
            }
            Some(Transfer::Mounted) => self.blobs_mounted += 1,
            None => {
                self.blobs_skipped += 1;
                self.bytes_skipped += size;
            }
        }
    }
}

/// One blob to put into a registry repository, run as a task of its own.
struct BlobJob {
    registry: Arc<Registry>,
    repository: String,
    file: BlobFile,
    /// The registry and repository holding the blob when the layout does not.
    foreign: Option<(Arc<Registry>, String)>,
    /// A repository of the same registry to offer a mount from.
    mount_from: Option<String>,
    chunk_size: Option<u64>,
    layout: Layout,
}

impl BlobJob {
    /// `None` when the repository has the blob already; else how it got there.
    async fn run(&self, checks: &Semaphore, uploads: &Semaphore) -> Result<Option<Transfer>> {
        let (registry, repository, digest) = (&self.registry, self.repository.as_str(), &self.file.digest);
        let exists = {
            let _permit = checks.acquire().await.expect("never closed");
            registry.blob_exists(repository, digest).await?
        };
        if exists {
            return Ok(None);
        }
        let _permit = uploads.acquire().await.expect("never closed");
        let transfer = match &self.foreign {
            // A base image's layer in the same registry is mounted, never moved.
            Some((source, from)) if source.host() == registry.host() && registry.mount_blob(repository, digest, from).await? => {
                Transfer::Mounted
            }
            Some((source, from)) => {
                fetch_blob(source, from, digest, self.file.size, &self.layout).await?;
                registry.put_blob(repository, &self.file, None, self.chunk_size).await?
            }
            None => registry.put_blob(repository, &self.file, self.mount_from.as_deref(), self.chunk_size).await?,
        };
        Ok(Some(transfer))
    }
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
            // Not followed: a blob that is a link (to /dev/zero, say), a FIFO or a device is refused
            // before anything reads it.
            let foreign = match std::fs::symlink_metadata(layout.blob_path(&blob.digest)) {
                Ok(metadata) if !metadata.is_file() => bail!(
                    "blob {} in {} is not a regular file (a link, a FIFO or a device): a layout's blobs are files; rebuild the image",
                    blob.digest,
                    layout.root().display()
                ),
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
