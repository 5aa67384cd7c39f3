//! `build --load`: one platform of a built image, put into the machine's engine under the tags a
//! developer runs (`<app>:latest`, `<app>:<sha>`). The platform's image is copied out of the app's
//! layout with every blob it references (a registry base's layers are fetched, since the engine
//! has no registry to mount them from), written as an archive every `docker load` reads, and
//! loaded.

use std::fs::File;
use std::io::BufWriter;

use anyhow::{Context as _, Result};

use crate::builder::{engine, BuiltImage};
use crate::context::Context;
use crate::image::archive;
use crate::image::layout::Layout;
use crate::image::oci::ImageIndex;
use crate::image::platform::Platform;
use crate::image::reference::Repository;
use crate::repository::push::Pusher;

/// Loads `image`'s `platform` image as `tags`; returns the program that loaded it.
pub async fn load(ctx: &Context, pusher: &Pusher, image: &BuiltImage, platform: &Platform, tags: &[String]) -> Result<&'static str> {
    let layout = Layout::open(&image.layout)?;
    let index: ImageIndex = serde_json::from_slice(&layout.read_blob(&image.index)?).context("the built index is not an index")?;
    let entry = index
        .manifests
        .iter()
        .find(|entry| entry.platform.as_ref().is_some_and(|named| named.to_string() == platform.to_string()))
        .with_context(|| format!("{} was not built for {platform}", image.app))?;
    let work = ctx.workspace.scratch_dir("load")?;
    let copy = work.path().join("layout");
    let line = pusher.progress().app(&image.app);
    pusher.push(&layout, entry, &Repository::Layout { dir: copy.clone() }, &[], &line).await?;
    let copy = Layout::open(&copy)?;
    let archive_path = work.path().join("image.tar");
    let mut out = BufWriter::new(File::create(&archive_path)?);
    archive::write_archive(&copy, entry, tags, &mut out)?;
    out.into_inner().map_err(|err| err.into_error())?;
    line.step("loading");
    let program = engine::load_archive(&ctx.sh, &archive_path, tags)?;
    line.finish(&format!("loaded {} ({platform}) into {program}", tags.join(", ")));
    Ok(program)
}
