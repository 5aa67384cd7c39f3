//! The native builder: a Dockerfile the reader could plan (one stage: `FROM` scratch or an image,
//! `COPY` from the build context, `WORKDIR`, and what only sets the configuration) is assembled
//! without a daemon into the image BuildKit would make of it. The base image's layers are
//! referenced, never copied (the layout records the repository they live in); their listing is
//! read once where a step meets the base's file system. Each COPY and WORKDIR becomes the layer
//! BuildKit's differ would write: what the step touched and the directories above it.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::builder::context::BuildContext;
use crate::image::dockerfile::{self, Base, ImagePlan};
use crate::image::fstree::FsTree;
use crate::image::layer;
use crate::image::layout::Layout;
use crate::image::oci::{self, Descriptor, ImageConfig, ImageManifest};
use crate::image::platform::Platform;
use crate::image::ImageParts;
use crate::repository::read;
use crate::repository::store::Registries;

/// A base image's repository (`host/path`), manifest and config for one platform.
pub type BaseParts<'a> = (&'a str, &'a (ImageManifest, ImageConfig));

/// The layers, history and configuration of a native image: the base image's (its layers
/// referenced, not copied: the layout records where they are), then the Dockerfile's. Returns the
/// image's file tree too, for images built on this one in the same run.
pub fn assemble(
    layout: &Layout,
    context: &BuildContext,
    plan: &ImagePlan,
    base: Option<BaseParts<'_>>,
    mut tree: FsTree,
    epoch: u64,
) -> Result<(ImageParts, FsTree)> {
    let (mut layers, mut diff_ids, mut history, base_config, base_author) = match base {
        None => (Vec::new(), Vec::new(), Vec::new(), Default::default(), None),
        Some((source, (manifest, config))) => {
            for layer in &manifest.layers {
                if !layout.has_blob(&layer.digest) {
                    layout.record_foreign(&layer.digest, source)?;
                }
            }
            (manifest.layers.clone(), config.rootfs.diff_ids.clone(), config.history.clone(), config.config.clone(), config.author.clone())
        }
    };
    let evaluated = plan.evaluate(&base_config, &mut tree, context, epoch)?;
    for entries in &evaluated.layers {
        let mut writer = layout.blob_writer()?;
        let diff_id =
            layer::write_entries(entries, epoch, &mut writer).with_context(|| format!("{}: cannot assemble a layer", plan.file))?;
        let (digest, size) = writer.finish(None)?;
        layers.push(Descriptor::of_blob(oci::MEDIA_TYPE_LAYER_GZIP, digest, size));
        diff_ids.push(diff_id);
    }
    history.extend(evaluated.history);
    let author = evaluated.author.or(base_author);
    Ok((ImageParts { layers, diff_ids, history, config: evaluated.config, author }, tree))
}

/// What `assemble` (the command) builds: one Dockerfile with its context, for some platforms.
pub struct Request<'a> {
    pub context: &'a Path,
    pub dockerfile: &'a Path,
    pub platforms: &'a [Platform],
    pub build_args: &'a [(String, String)],
    pub epoch: u64,
}

/// Builds one Dockerfile for every platform of `request` into `layout`; returns the index.
/// The image has nothing the Dockerfile does not say: no labels or annotations of the xtask's.
pub async fn build_dockerfile(registries: &Registries, layout: &Layout, request: &Request<'_>) -> Result<Descriptor> {
    let shown = request.dockerfile.display().to_string();
    let text = fs::read_to_string(request.dockerfile).with_context(|| format!("cannot read {shown}"))?;
    let context = BuildContext::open(request.context, request.dockerfile)?;
    let mut manifests = Vec::new();
    for platform in request.platforms {
        let mut args = platform.build_args_on(&Platform::host());
        args.extend(request.build_args.iter().cloned());
        let plan = dockerfile::plan(&text, &shown, &args)?;
        let (image, tree) = match &plan.base {
            Base::Scratch => (None, FsTree::new()),
            Base::Image { image, line } => {
                let base = read::resolve_base(registries, image, std::slice::from_ref(platform))
                    .await
                    .with_context(|| format!("{shown}:{line}: FROM {image}"))?;
                let tree = match plan.changes_files() {
                    true => read::base_tree(registries, &base.source, &base.images[platform].0, None, None).await?,
                    false => FsTree::new(),
                };
                (Some(base), tree)
            }
        };
        let base = image.as_ref().map(|base| (base.source.as_str(), &base.images[platform]));
        let (parts, _) = assemble(layout, &context, &plan, base, tree, request.epoch)?;
        manifests.push(crate::image::write_image(layout, platform, parts, &BTreeMap::new(), request.epoch)?);
    }
    crate::image::write_index(layout, manifests, BTreeMap::new())
}
