//! `cargo xtask verify APP[@TAG] --key cosign.pub`: checks an app's released image as `cosign
//! verify --key` and `cosign verify-attestation` would: a signature by the key over a payload
//! naming the image's digest and repository, and a signed provenance for each platform image.
//! What failed is the one-paragraph error.

use anyhow::{Context as _, Result};

use crate::context::Context;
use crate::flags;
use crate::image::signature::PublicKey;
use crate::repository::signatures;
use crate::repository::store::Registries;
use crate::workspace::config::Overrides;

pub async fn run(ctx: &Context, args: flags::Verify) -> Result<()> {
    let config = ctx.config(Overrides { repository: args.repository.as_deref(), platforms: &[] })?;
    let (app, tag) = match args.image.split_once('@') {
        Some((app, tag)) => (app.to_string(), tag.to_string()),
        None => (args.image.clone(), config.repository.tag(&args.image, "latest")),
    };
    ctx.workspace.select_apps(std::slice::from_ref(&app))?;
    let repository = config.repository.of(&app)?;
    let pem = std::fs::read_to_string(&args.key).with_context(|| format!("cannot read the public key {}", args.key.display()))?;
    let key = PublicKey::from_pem(&pem).with_context(|| format!("--key {}", args.key.display()))?;
    let store = Registries::new(args.ca_file.as_deref(), repository.host())?.open(&repository)?;
    let verified = signatures::verify(&store, &repository.to_string(), &app, &tag, &key)
        .await
        .with_context(|| format!("{app}: verification of {tag} in {repository} failed"))?;
    println!("{app}: {tag} ({}) is signed by {}, for {}", verified.digest, args.key.display(), verified.signed_for.join(", "));
    for platform in &verified.attested {
        println!("{app}: {platform}: signed provenance verified");
    }
    Ok(())
}
