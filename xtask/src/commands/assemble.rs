//! `cargo xtask assemble [CONTEXT] [-f FILE] [--platform P,...] [--build-arg NAME=VALUE]...
//! --output DIR[:TAG]`: one Dockerfile's image, made by the native builder as BuildKit would make
//! it, into an OCI image layout (an index over the platforms). What the native builder cannot
//! make identically is refused with the line and why, to be built with `docker buildx build`.

use std::path::Path;

use anyhow::{anyhow, Context as _, Result};

use crate::builder::native;
use crate::flags;
use crate::image::layout::Layout;
use crate::image::platform::Platform;
use crate::repository::store::Registries;

pub async fn run(args: flags::Assemble) -> Result<()> {
    let platforms = args.platform.iter().map(|text| Platform::parse(text)).collect::<Result<Vec<_>>>()?;
    let given = args
        .build_args
        .iter()
        .map(|arg| {
            arg.split_once('=')
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .ok_or_else(|| anyhow!("--build-arg {arg} has no value: write --build-arg NAME=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    let epoch_text = std::env::var("SOURCE_DATE_EPOCH").ok().filter(|value| !value.is_empty());
    // As buildx does, a SOURCE_DATE_EPOCH in the environment is also a build argument.
    let build_args: Vec<(String, String)> =
        epoch_text.iter().map(|epoch| ("SOURCE_DATE_EPOCH".to_string(), epoch.clone())).chain(given).collect();
    let dockerfile = args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile"));
    let (dir, tag) = match args.output.strip_prefix("oci:").unwrap_or(&args.output).rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => (dir, tag),
        _ => (args.output.strip_prefix("oci:").unwrap_or(&args.output), "latest"),
    };
    let epoch = match &epoch_text {
        Some(text) => text.parse().with_context(|| format!("SOURCE_DATE_EPOCH=`{text}` is not a number of seconds"))?,
        None => 0,
    };
    let registries = Registries::for_reading(None)?;
    let layout = Layout::create(Path::new(dir))?;
    let request =
        native::Request { context: &args.context, dockerfile: &dockerfile, platforms: &platforms, build_args: &build_args, epoch };
    let index = native::build_dockerfile(&registries, &layout, &request).await?;
    layout.tag(tag, &index)?;
    println!("{}", index.digest);
    Ok(())
}
