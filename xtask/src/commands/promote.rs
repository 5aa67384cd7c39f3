//! `cargo xtask promote APP --from ENV --to ENV`: copies an app's released index from one
//! repository to another with the same digest, then tags it there as in the source
//! (`<app>-<sha>`, then the promoted tag; `<sha>` and the tag without `<app>-` in a repository
//! of its own), with its signature and the artifacts attached to its
//! platform images. Only manifests are read; configs and layers are recorded as living in the
//! source repository, so the push mounts them across repositories of one registry and fetches and
//! uploads them otherwise.

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::flags;
use crate::image::layout::Layout;
use crate::image::oci::{Descriptor, ImageIndex, ImageManifest};
use crate::image::reference::{validate_tag, Repositories, Repository};
use crate::progress::Progress;
use crate::repository::push::Pusher;
use crate::repository::registry::Registry;
use crate::repository::store::Store;
use crate::workspace::config::{self, Overrides};

/// The repositories an environment name stands for, or the argument itself when it names them.
fn environment(config: &config::Config, name: &str) -> Result<Repositories> {
    match config.environments.get(name) {
        Some(repository) => {
            Repositories::parse(repository).with_context(|| format!("environment `{name}` in [workspace.metadata.xtask.environments]"))
        }
        None if name.contains('/') => Repositories::parse(name),
        None => {
            let known: Vec<&str> = config.environments.keys().map(String::as_str).collect();
            bail!(
                "unknown environment `{name}`: name one of [workspace.metadata.xtask.environments] ({}) or a repository such as registry.example.com/acme/staging",
                if known.is_empty() { "none configured".to_string() } else { known.join(", ") }
            )
        }
    }
}

pub async fn run(ctx: &Context, args: flags::Promote) -> Result<()> {
    ctx.workspace.select_apps(std::slice::from_ref(&args.app))?;
    let config = ctx.config(Overrides::default())?;
    let (from_layout, to_layout) = (environment(&config, &args.from)?, environment(&config, &args.to)?);
    let (from, to) = (from_layout.of(&args.app)?, to_layout.of(&args.app)?);
    let Repository::Registry { host: from_host, path: from_path } = &from else {
        bail!("promote copies between registry repositories, and {from} is a local layout: push it with `cargo xtask push` instead");
    };
    let tag = args.tag.clone().unwrap_or_else(|| from_layout.tag(&args.app, "latest"));
    validate_tag(&tag).context("in --tag")?;
    // Between a shared repository and the app's own, `<app>-X` and `X` are one tag.
    let to_tag = |tag: &str| match (from_layout.per_image(), to_layout.per_image()) {
        (false, true) => to_layout.tag(&args.app, tag.strip_prefix(&format!("{}-", args.app)).unwrap_or(tag)),
        (true, false) => to_layout.tag(&args.app, tag),
        _ => tag.to_string(),
    };
    let pusher = Pusher::new(&args.transfer, to.host(), Progress::new(false))?;
    let source = pusher.registries().client(from_host)?;
    let Some((media_type, root_bytes)) = source.find_manifest(from_path, &tag).await? else {
        bail!("{from} has no image {tag} to promote: release {} there first", args.app);
    };

    // The index and manifests go into a scratch layout; the blobs stay where they are.
    let scratch = ctx.workspace.scratch_dir("promote")?;
    let layout = Layout::create(scratch.path())?;
    let promoted = async {
        let root = layout.write_blob(&media_type, &root_bytes)?;
        copy_manifests(&source, (&from, from_path, &tag), &root, &root_bytes, &layout).await?;
        let annotations = crate::image::oci::annotations_of(&root_bytes).unwrap_or_default();
        let mut tags: Vec<String> =
            annotations.get("org.opencontainers.image.revision").map(|sha| to_layout.tag(&args.app, sha)).into_iter().collect();
        // The revision comes from the image, so from whoever wrote it: it must make a tag.
        for revision_tag in &tags {
            validate_tag(revision_tag).with_context(|| {
                format!("{from}:{tag} records a revision that makes no valid tag ({revision_tag}); promote images released by `cargo xtask release`")
            })?;
        }
        let promoted_tag = to_tag(&tag);
        if !tags.contains(&promoted_tag) {
            tags.push(promoted_tag);
        }
        let line = pusher.progress().app(&args.app);
        // Untagged first, then what is attached to it (signature, attestations), then the tags.
        pusher.push(&layout, &root, &to, &[], &line).await?;
        let attached = copy_attachments(&source, (&from, from_path), &root, &root_bytes, &layout).await?;
        if let Some((signature, tag)) = &attached.signature {
            pusher.push(&layout, signature, &to, std::slice::from_ref(tag), &line).await?;
        }
        crate::repository::referrers::attach(&pusher, &layout, &to, &attached.artifacts, &line).await?;
        let report = pusher.push(&layout, &root, &to, &tags, &line).await?;
        line.finish(&format!("promoted {} from {from} to {to} as {}", root.digest, tags.join(", ")));
        println!(
            "{} {}: {} blobs mounted, {} uploaded ({} bytes), {} already there",
            args.app, root.digest, report.blobs_mounted, report.blobs_uploaded, report.bytes_uploaded, report.blobs_skipped
        );
        anyhow::Ok(())
    };
    promoted.await.with_context(|| format!("cannot promote {} from {from} to {to}; no tag moved there", args.app))
}

/// What is attached to an image: cosign's signature with its tag, and the artifacts whose
/// subject is one of its manifests.
struct Attached {
    signature: Option<(Descriptor, String)>,
    artifacts: Vec<Descriptor>,
}

/// Writes what is attached to `root` and its platform manifests in the source repository (the
/// cosign signature `sha256-<hex>.sig`, the artifacts the referrers API or the tag schema lists)
/// into `layout`, their blobs recorded as living in the source.
async fn copy_attachments(
    source: &std::sync::Arc<Registry>,
    (from, from_path): (&Repository, &str),
    root: &Descriptor,
    root_bytes: &[u8],
    layout: &Layout,
) -> Result<Attached> {
    let mut manifests = Vec::new();
    let signature_tag = crate::repository::signatures::signature_tag(&root.digest);
    let signature = match source.find_manifest(from_path, &signature_tag).await? {
        Some((media_type, bytes)) => {
            let descriptor = layout.write_blob(&media_type, &bytes)?;
            manifests.push(bytes);
            Some((descriptor, signature_tag))
        }
        None => None,
    };
    let source = Store::Registry { registry: source.clone(), path: from_path.to_string() };
    let subjects = match root.is_index() {
        true => serde_json::from_slice::<ImageIndex>(root_bytes)?.manifests.into_iter().map(|child| child.digest).collect(),
        false => vec![root.digest.clone()],
    };
    let mut artifacts = Vec::new();
    for subject in subjects {
        for (artifact, bytes) in source.attached(&subject).await?.artifacts {
            layout.write_blob(&artifact.media_type, &bytes)?;
            manifests.push(bytes);
            artifacts.push(artifact);
        }
    }
    for manifest in manifests {
        let manifest: ImageManifest = serde_json::from_slice(&manifest).with_context(|| format!("{from} holds an invalid attachment"))?;
        for blob in std::iter::once(manifest.config).chain(manifest.layers) {
            layout.record_foreign(&blob.digest, &from.to_string())?;
        }
    }
    Ok(Attached { signature, artifacts })
}

/// Writes the platform manifests under `root` (the root itself when it is a manifest) into
/// `layout`, and records their configs and layers as living in the source repository.
async fn copy_manifests(
    source: &Registry,
    (from, from_path, tag): (&Repository, &str, &str),
    root: &Descriptor,
    root_bytes: &[u8],
    layout: &Layout,
) -> Result<()> {
    let children: Vec<Descriptor> = if root.is_index() {
        serde_json::from_slice::<ImageIndex>(root_bytes).with_context(|| format!("{from}:{tag} is not a valid index"))?.manifests
    } else {
        vec![root.clone()]
    };
    for child in &children {
        let bytes =
            if child.digest == root.digest { root_bytes.to_vec() } else { source.get_manifest(from_path, child.digest.as_str()).await?.1 };
        layout.write_blob(&child.media_type, &bytes)?;
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not a valid manifest", child.digest))?;
        for blob in std::iter::once(manifest.config).chain(manifest.layers) {
            layout.record_foreign(&blob.digest, &from.to_string())?;
        }
    }
    Ok(())
}
