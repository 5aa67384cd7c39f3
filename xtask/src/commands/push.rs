//! `cargo xtask push LAYOUT REFERENCE`: pushes an image or index from an OCI image layout, or
//! the image of a `docker save` archive, to a registry or another layout, and moves the one tag
//! named.

use std::path::Path;

use anyhow::{Context, Result};

use crate::flags;
use crate::image::archive::SavedArchive;
use crate::image::layout::Layout;
use crate::image::reference::ImageReference;
use crate::progress::Progress;
use crate::repository::push::Pusher;

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
    let pusher = Pusher::new(&args.transfer, reference.repository.host(), Progress::new(false))?;
    // An archive is written into a layout of its own first, verified blob by blob.
    let archive_layout;
    let (layout, root) = if Path::new(&args.layout).is_file() {
        archive_layout = tempfile::tempdir().context("cannot create a temporary directory for the archive's image")?;
        let layout = Layout::create(archive_layout.path())?;
        let root = SavedArchive::read(Path::new(&args.layout)).and_then(|archive| archive.to_layout(&layout)).with_context(|| {
            format!(
                "{} is a file, so push reads it as a `docker save` archive of one image, and it is not one: pass an OCI image layout directory, or an archive that `docker save --output FILE IMAGE` wrote",
                args.layout
            )
        })?;
        (layout, root)
    } else {
        let (dir, name) = parse_layout_argument(&args.layout);
        let layout = Layout::open(Path::new(dir))?;
        let root = layout.resolve(name)?;
        (layout, root)
    };
    let line = pusher.progress().app(&reference.tag);
    let report = pusher
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
