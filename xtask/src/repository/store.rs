//! One interface over the two kinds of repository, a registry's (through `Registry`, one client
//! per registry host for the whole run) and a local OCI image layout: reading manifests and tags,
//! and moving a tag to an image the repository already holds. Commands that only read or retag
//! use this; the push engine builds on the same clients.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::aws::ecr;
use crate::image::layout::Layout;
use crate::image::oci::{self, Digest};
use crate::image::reference::validate_host;
use crate::image::reference::Repository;
use crate::repository::registry::auth::{Minted, TokenSource};
use crate::repository::registry::transport::TrustedRoots;
use crate::repository::registry::Registry;

/// The registry clients of one run, one per host. The CA certificates of `--ca-file` are
/// trusted for one registry only: the one the file was given for.
pub struct Registries {
    clients: Mutex<HashMap<String, Arc<Registry>>>,
    ca: Option<(String, TrustedRoots)>,
}

impl Registries {
    /// `ca_file` is `PEM` (trusted for `registry`, the command's own registry) or `HOST=PEM`.
    pub fn new(ca_file: Option<&std::path::Path>, registry: Option<&str>) -> Result<Registries> {
        let ca = match ca_file {
            None => None,
            Some(argument) => {
                let text = argument.to_string_lossy();
                let (host, pem) = match text.split_once('=') {
                    Some((host, pem)) if validate_host(host).is_ok() => (Some(host.to_string()), PathBuf::from(pem)),
                    _ => (registry.map(str::to_string), argument.to_path_buf()),
                };
                let roots = TrustedRoots::load(Some(&pem))?;
                host.map(|host| (host, roots))
            }
        };
        Ok(Registries { clients: Mutex::new(HashMap::new()), ca })
    }

    /// For commands without transfer flags: the CA file comes from XTASK_CA_FILE.
    pub fn for_reading(registry: Option<&str>) -> Result<Registries> {
        Registries::new(std::env::var_os("XTASK_CA_FILE").map(PathBuf::from).as_deref(), registry)
    }

    pub fn client(&self, host: &str) -> Result<Arc<Registry>> {
        let mut clients = self.clients.lock().expect("not poisoned");
        if let Some(registry) = clients.get(host) {
            return Ok(registry.clone());
        }
        let roots = match &self.ca {
            Some((ca_host, roots)) if ca_host == host => roots.clone(),
            _ => TrustedRoots::default(),
        };
        let registry = Arc::new(Registry::new(host, &roots, ecr_token_source(host))?);
        clients.insert(host.to_string(), registry.clone());
        Ok(registry)
    }

    pub fn open(&self, repository: &Repository) -> Result<Store> {
        Ok(match repository {
            Repository::Layout { dir } => Store::Layout { dir: dir.clone() },
            Repository::Registry { host, path } => Store::Registry { registry: self.client(host)?, path: path.clone() },
        })
    }
}

/// For an ECR host (exactly one), credentials from `GetAuthorizationToken` when the Docker
/// configuration has none.
fn ecr_token_source(host: &str) -> Option<TokenSource> {
    let ecr = ecr::parse_host(host)?;
    Some(Arc::new(move || {
        let ecr = ecr.clone();
        Box::pin(async move {
            let token = ecr::authorization_token(&ecr).await?;
            Ok(Minted { user: token.user, password: token.password, refresh_at: token.refresh_at })
        })
    }))
}

/// A repository opened for reading and retagging.
pub enum Store {
    /// A layout that may not exist yet: it then holds nothing.
    Layout {
        dir: PathBuf,
    },
    Registry {
        registry: Arc<Registry>,
        path: String,
    },
}

/// The referrers tag schema's tag for the artifacts attached to `subject`: `sha256-<hex>`.
pub fn referrers_tag(subject: &Digest) -> String {
    subject.as_str().replacen(':', "-", 1)
}

/// What `Store::referrers` found attached to a subject.
pub struct Referrers {
    pub artifacts: Vec<oci::Descriptor>,
    /// The registry keeps the list (the referrers API); else the tag schema's index does.
    pub kept_by_registry: bool,
    /// That index's digest, when the tag schema lists them.
    pub tag_index: Option<Digest>,
}

/// What `Store::attached` found: the artifacts bound to a subject, each with its manifest.
pub struct Attached {
    pub artifacts: Vec<(oci::Descriptor, Vec<u8>)>,
    /// The tag schema's index that lists them, when one does and lists nothing else.
    pub tag_index: Option<Digest>,
}

/// What `retag` did.
pub enum Retagged {
    Moved(Digest),
    /// The tag already named the image.
    Unchanged,
}

impl Store {
    /// The bytes of the index or manifest `reference` (a tag or digest) names, or `None` when it
    /// names nothing.
    pub async fn find_manifest(&self, reference: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Store::Layout { dir } => {
                if !dir.join("index.json").exists() {
                    return Ok(None);
                }
                let layout = Layout::open(dir)?;
                let digest = match reference.parse::<Digest>() {
                    Ok(digest) => layout.has_blob(&digest).then_some(digest),
                    Err(_) => layout.find(Some(reference))?.map(|descriptor| descriptor.digest),
                };
                match digest {
                    Some(digest) => Ok(Some(std::fs::read(layout.blob_path(&digest))?)),
                    None => Ok(None),
                }
            }
            Store::Registry { registry, path } => Ok(registry.find_manifest(path, reference).await?.map(|(_, bytes)| bytes)),
        }
    }

    /// A small blob (a signed payload, an attestation), checked against its digest.
    pub async fn read_blob(&self, descriptor: &oci::Descriptor) -> Result<Vec<u8>> {
        let bytes = match self {
            Store::Layout { dir } => Layout::open(dir)?.read_blob(descriptor)?,
            Store::Registry { registry, path } => {
                let mut bytes = Vec::new();
                registry.get_blob(path, &descriptor.digest, descriptor.size, &mut bytes).await?;
                bytes
            }
        };
        crate::image::layout::DigestMismatch::check(&descriptor.digest, Digest::of(&bytes))
            .with_context(|| format!("{self} served a corrupt blob {}", descriptor.digest))?;
        Ok(bytes)
    }

    /// The artifacts attached to `subject` (OCI 1.1 referrers): the registry's referrers API list
    /// where it has one, else the index of the tag schema's `sha256-<hex>` tag (none when that is
    /// missing).
    pub async fn referrers(&self, subject: &Digest) -> Result<Referrers> {
        let listed = |bytes: &[u8]| -> Result<Vec<oci::Descriptor>> {
            Ok(serde_json::from_slice::<oci::ImageIndex>(bytes).context("a referrers list is not an image index")?.manifests)
        };
        if let Store::Registry { registry, path } = self {
            if let Some(bytes) = registry.referrers(path, subject).await? {
                return Ok(Referrers { artifacts: listed(&bytes)?, kept_by_registry: true, tag_index: None });
            }
        }
        Ok(match self.find_manifest(&referrers_tag(subject)).await? {
            Some(bytes) => Referrers { artifacts: listed(&bytes)?, kept_by_registry: false, tag_index: Some(Digest::of(&bytes)) },
            None => Referrers { artifacts: Vec::new(), kept_by_registry: false, tag_index: None },
        })
    }

    /// The artifacts attached to `subject`, as `referrers` lists them, each with its manifest,
    /// keeping only those whose manifest names `subject` as its subject. A list is the word of
    /// the registry (or of whoever wrote the tag schema's index): an entry naming another image
    /// is left out with a note, so deleting or promoting an image never takes another along.
    pub async fn attached(&self, subject: &Digest) -> Result<Attached> {
        let referrers = self.referrers(subject).await?;
        let listed = referrers.artifacts.len();
        let mut artifacts = Vec::new();
        for artifact in referrers.artifacts {
            let Some(manifest) = self.find_manifest(artifact.digest.as_str()).await? else {
                eprintln!("note: {self} lists {} as attached to {subject} but does not have it; it is left out", artifact.digest);
                continue;
            };
            let named = serde_json::from_slice::<serde_json::Value>(&manifest).ok().and_then(|manifest| {
                manifest.get("subject").and_then(|subject| subject.get("digest")).and_then(|digest| digest.as_str().map(str::to_string))
            });
            if named.as_deref() != Some(subject.as_str()) {
                eprintln!(
                    "note: {self} lists {} as attached to {subject}, but that manifest names {} as its subject; it is left out",
                    artifact.digest,
                    named.as_deref().unwrap_or("no subject")
                );
                continue;
            }
            artifacts.push((artifact, manifest));
        }
        // An index that lists another image's manifests is not this image's to delete.
        let tag_index = referrers.tag_index.filter(|_| artifacts.len() == listed);
        Ok(Attached { artifacts, tag_index })
    }

    /// Whether the artifacts attached to an image are known to be listed only under the tag
    /// schema's tags (a layout; a registry that answered that it has no referrers API), so a
    /// missing tag means none are attached.
    pub fn lists_referrers_by_tag(&self) -> bool {
        match self {
            Store::Layout { .. } => true,
            Store::Registry { registry, .. } => registry.known_without_referrers_api(),
        }
    }

    /// The annotations of the index or manifest tagged `tag`, or `None` when the tag is missing.
    pub async fn find_annotations(&self, tag: &str) -> Result<Option<BTreeMap<String, String>>> {
        let Some(bytes) = self.find_manifest(tag).await? else { return Ok(None) };
        let annotations = oci::annotations_of(&bytes).with_context(|| format!("{self}:{tag} is not an OCI index or manifest"))?;
        Ok(Some(annotations))
    }

    /// Every tag (of a layout: its named entries).
    pub async fn tags(&self) -> Result<Vec<String>> {
        match self {
            Store::Layout { dir } if !dir.join("index.json").exists() => Ok(Vec::new()),
            Store::Layout { dir } => Ok(Layout::open(dir)?
                .index()?
                .manifests
                .iter()
                .filter_map(|entry| entry.annotations.get(oci::ANNOTATION_REF_NAME).cloned())
                .collect()),
            Store::Registry { registry, path } => registry.tags(path).await,
        }
    }

    /// Points `tag` at the image `source` (a tag) names, with one manifest write and no blob
    /// moved. `None` when `source` names nothing.
    pub async fn retag(&self, source: &str, tag: &str) -> Result<Option<Retagged>> {
        match self {
            Store::Registry { registry, path } => {
                let Some((media_type, bytes)) = registry.find_manifest(path, source).await? else { return Ok(None) };
                let digest = Digest::of(&bytes);
                if registry.manifest_digest(path, tag).await?.as_ref() == Some(&digest) {
                    return Ok(Some(Retagged::Unchanged));
                }
                registry.put_manifest(path, tag, &media_type, &bytes).await.with_context(|| format!("cannot move {tag}"))?;
                Ok(Some(Retagged::Moved(digest)))
            }
            Store::Layout { dir } => {
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
}

impl std::fmt::Display for Store {
    /// As the repository it was opened from is written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Layout { dir } => write!(f, "oci:{}", dir.display()),
            Store::Registry { registry, path } => write!(f, "{}/{path}", registry.host()),
        }
    }
}
