//! The native builder: a Dockerfile the reader could plan (`FROM` scratch or an image, `COPY`,
//! and metadata) is assembled without a daemon. The base image's layers are referenced, never
//! downloaded (the layout records the repository they live in); each `COPY` becomes one
//! reproducible layer of the files Docker would copy from the build context.

use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::builder::dockerignore::Dockerignore;
use crate::image::dockerfile;
use crate::image::layer::{self, LayerFile};
use crate::image::layout::Layout;
use crate::image::oci::{self, Descriptor, History, ImageConfig, ImageManifest};
use crate::image::ImageParts;

/// A base image's repository (`host/path`), manifest and config for one platform.
pub type BaseParts<'a> = (&'a str, &'a (ImageManifest, ImageConfig));

/// The layers, history and configuration of a native image: the base image's (its layers
/// referenced, not copied: the layout records where they are), then one layer per COPY.
pub fn assemble(
    layout: &Layout,
    context: &Path,
    dockerfile: &str,
    plan: &dockerfile::ImagePlan,
    base: Option<BaseParts<'_>>,
    epoch: u64,
) -> Result<ImageParts> {
    let created = oci::rfc3339(epoch);
    let (mut layers, mut diff_ids, mut history, base_config) = match base {
        None => (Vec::new(), Vec::new(), Vec::new(), Default::default()),
        Some((source, (manifest, config))) => {
            for layer in &manifest.layers {
                if !layout.has_blob(&layer.digest) {
                    layout.record_foreign(&layer.digest, source)?;
                }
            }
            (manifest.layers.clone(), config.rootfs.diff_ids.clone(), config.history.clone(), config.config.clone())
        }
    };
    // Read once per image: every COPY resolves its sources against the same context.
    let ignore = Dockerignore::read(context)?;
    let context = context.canonicalize().with_context(|| format!("cannot read the build context {}", context.display()))?;
    for step in &plan.copies {
        let files = copy_files(&context, &ignore, dockerfile, step)?;
        let mut writer = layout.blob_writer()?;
        let diff_id = layer::write_layer(&files, epoch, &mut writer)
            .with_context(|| format!("{dockerfile}:{}: cannot assemble the layer", step.line))?;
        let (digest, size) = writer.finish(None)?;
        layers.push(Descriptor::of_blob(oci::MEDIA_TYPE_LAYER_GZIP, digest, size));
        diff_ids.push(diff_id);
        history.push(History {
            created: Some(created.clone()),
            created_by: Some(format!("COPY {} {}", step.sources.join(" "), step.dest)),
            ..History::default()
        });
    }
    Ok(ImageParts { layers, diff_ids, history, config: plan.config_over(&base_config) })
}

/// The files one COPY puts in the image, as Docker would copy them: sources resolved in the
/// build context (the workspace root), which a source may not leave, not even through a
/// symbolic link; directories walked in sorted order, their links copied as links; what
/// `.dockerignore` excludes left out; destinations placed as Docker places them.
/// `context` is canonical, so that a resolved source can be checked against it.
fn copy_files(context: &Path, ignore: &Dockerignore, dockerfile: &str, step: &dockerfile::CopyStep) -> Result<Vec<LayerFile>> {
    let at = format!("{dockerfile}:{}", step.line);
    let into_dir = step.dest.ends_with('/') || step.sources.len() > 1;
    let mut files = Vec::new();
    for source in &step.sources {
        let relative = Path::new(source);
        let normal = relative.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !normal {
            bail!("{at}: COPY source `{source}` is outside the build context (the workspace root): copy files from inside it");
        }
        let missing = || {
            format!("{at}: COPY source `{source}` does not exist in the build context (the workspace root); if it is a staged binary, the app's [[bin]] name must match")
        };
        let path = context.join(relative);
        fs::symlink_metadata(&path).with_context(missing)?;
        // Like Docker, a source that is a link is followed, but only to a file of the context.
        let resolved = path.canonicalize().with_context(missing)?;
        let Ok(inside) = resolved.strip_prefix(context) else {
            bail!(
                "{at}: COPY source `{source}` leads out of the build context, to {} (through a symbolic link): copy the file into the workspace instead of linking to it",
                resolved.display()
            );
        };
        if ignore.excludes(&inside.to_string_lossy()) {
            bail!("{at}: COPY source `{source}` is excluded by .dockerignore, so Docker would not find it either: remove the pattern or the COPY");
        }
        if resolved.is_dir() {
            for (relative_file, file_path) in walk(context, &resolved, ignore, &at)? {
                files.push(layer_file(&format!("{}/{relative_file}", step.dest.trim_end_matches('/')), file_path, step, &at)?);
            }
        } else {
            let dest = if into_dir {
                format!("{}/{}", step.dest.trim_end_matches('/'), relative.file_name().unwrap_or_default().to_string_lossy())
            } else {
                step.dest.clone()
            };
            files.push(layer_file(&dest, resolved, step, &at)?);
        }
    }
    Ok(files)
}

/// A regular file or a symbolic link of the context as a layer entry; anything else (a FIFO, a
/// socket, a device) has no place in an image and is refused.
fn layer_file(dest: &str, source: PathBuf, step: &dockerfile::CopyStep, at: &str) -> Result<LayerFile> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = fs::symlink_metadata(&source).with_context(|| format!("{at}: cannot read {}", source.display()))?;
    let (uid, gid) = step.chown.unwrap_or((0, 0));
    if metadata.file_type().is_symlink() {
        let target = fs::read_link(&source).with_context(|| format!("{at}: cannot read the link {}", source.display()))?;
        return Ok(LayerFile { path: dest.to_string(), source, link: Some(target), mode: 0o777, uid, gid });
    }
    if !metadata.is_file() {
        bail!(
            "{at}: {} is neither a file, a directory nor a link (a FIFO, socket or device), and cannot be copied into an image: remove it from the build context or add it to .dockerignore",
            source.display()
        );
    }
    // Modes are normalised to 755 or 644 so that a checkout's umask does not change digests.
    let executable = metadata.permissions().mode() & 0o111 != 0;
    let mode = step.chmod.unwrap_or(if executable { 0o755 } else { 0o644 });
    Ok(LayerFile { path: dest.to_string(), source, link: None, mode, uid, gid })
}

/// The entries under `dir`, in sorted order, with their paths relative to it; links are not
/// followed, and what `.dockerignore` excludes (by its path in `context`) is left out.
fn walk(context: &Path, dir: &Path, ignore: &Dockerignore, at: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, dir)) = pending.pop() {
        let mut entries: Vec<_> =
            fs::read_dir(&dir).with_context(|| format!("{at}: cannot read {}", dir.display()))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let in_context = entry.path().strip_prefix(context).map(|path| path.to_string_lossy().into_owned()).unwrap_or_default();
            if ignore.excludes(&in_context) {
                continue;
            }
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type()?.is_dir() {
                pending.push((format!("{name}/"), entry.path()));
            } else {
                found.push((name, entry.path()));
            }
        }
    }
    Ok(found)
}
