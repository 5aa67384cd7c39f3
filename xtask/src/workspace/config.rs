//! Release settings: `[workspace.metadata.xtask]`, overridden by `XTASK_*` environment variables,
//! overridden by flags. Resolution is a pure function so every precedence rule is unit-tested.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::image::libc::GlibcVersion;
use crate::image::platform::Platform;
use crate::image::reference::Repositories;

/// Where `release` writes when no repository is configured: a local OCI image layout, so that a
/// first run works on a machine without any registry.
pub const DEFAULT_REPOSITORY: &str = "oci:target/registry";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    repository: String,
    #[serde(default)]
    platforms: Vec<String>,
    #[serde(default)]
    targets: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<PathRule>,
    #[serde(default)]
    ecr: EcrSettings,
    #[serde(default)]
    environments: BTreeMap<String, String>,
    #[serde(default, rename = "supply-chain")]
    supply_chain: SupplyChain,
    #[serde(default)]
    libc: LibcPolicy,
    #[serde(default)]
    glibc: Option<String>,
    /// Read by `declared_images`, which the workspace needs before the rest.
    #[serde(default, rename = "images")]
    _images: Vec<DeclaredImage>,
}

/// `[[workspace.metadata.xtask.images]]`: an image made from any Dockerfile, as `docker buildx
/// build --file DOCKERFILE --target TARGET --build-arg KEY=VALUE` would build it. One Dockerfile
/// may serve several images, each with its own arguments or target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredImage {
    /// The image's name: its tags are `<name>-<sha>` and `<name>-latest`.
    pub name: String,
    /// The Dockerfile, relative to the workspace root, which is the build context.
    pub dockerfile: String,
    /// The stage the image is (`--target`); the last stage when none.
    #[serde(default)]
    pub target: Option<String>,
    /// Build arguments (`--build-arg`), such as `{ BIN = "capture" }`.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// The workspace crate whose binary the image ships, when its Dockerfile does not say.
    #[serde(default)]
    pub package: Option<String>,
}

/// The images `[[workspace.metadata.xtask.images]]` declares; the rest of the table is checked
/// by `resolve`.
pub fn declared_images(workspace_metadata: &serde_json::Value) -> Result<Vec<DeclaredImage>> {
    let Some(images) = workspace_metadata.get("xtask").and_then(|xtask| xtask.get("images")) else { return Ok(Vec::new()) };
    serde_json::from_value(images.clone()).context(
        "invalid [[workspace.metadata.xtask.images]] in the root Cargo.toml: give each image `name` and `dockerfile`, and optionally `target`, `args` (a table of build arguments) and `package`",
    )
}

/// `libc`: which C library the apps' binaries are built for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LibcPolicy {
    /// An app whose image starts from a glibc base (`debian:*-slim`, `distroless/cc`, Ubuntu)
    /// gets the gnu counterpart of its platform's target, linked against its base's glibc;
    /// other apps (`scratch`, static and musl bases) keep the platform's target.
    #[default]
    Auto,
    /// Every app gets its platform's target as configured: static musl binaries by default,
    /// which run on any base.
    Musl,
}

/// `[workspace.metadata.xtask.supply-chain]`: what `release` attaches to and checks of every
/// image without being asked on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SupplyChain {
    /// Attach a bill of materials and a provenance statement to every platform image (the
    /// default, as peers attach provenance; `false` as `--no-attest`).
    pub attest: bool,
    /// The formats of the bills of materials attested images get, each its own artifact.
    pub sbom: Vec<SbomFormat>,
    /// The key `release` signs with, as `--sign` takes it: a PEM file (relative to the workspace
    /// root) or `env://VAR`.
    pub sign: Option<String>,
    /// The RustSec advisory database the scan gate reads, as `--advisory-db` (relative to the
    /// workspace root).
    pub advisory_db: Option<String>,
    /// Let cargo, build scripts and the Docker engine see the AWS credentials (a compile cache
    /// such as sccache on S3 runs as cargo's wrapper and needs them); by default they do not.
    pub aws_credentials_in_builds: bool,
}

impl Default for SupplyChain {
    fn default() -> SupplyChain {
        SupplyChain { attest: true, sbom: vec![SbomFormat::Spdx], sign: None, advisory_db: None, aws_credentials_in_builds: false }
    }
}

/// The variables what the xtask runs must not see: cosign's password, and the AWS credentials
/// unless `aws-credentials-in-builds` lets them through (a compile cache on S3 needs them).
pub fn secrets_kept_from_builds(aws_credentials_in_builds: bool) -> Vec<&'static str> {
    const AWS: [&str; 8] = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    ];
    let aws: &[&'static str] = if aws_credentials_in_builds { &[] } else { &AWS };
    std::iter::once("COSIGN_PASSWORD").chain(aws.iter().copied()).collect()
}

/// A bill of materials format: SPDX 2.3 JSON, CycloneDX 1.6 JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    Spdx,
    Cyclonedx,
}

/// `[workspace.metadata.xtask.ecr]`: how `cargo xtask ecr setup` shapes the repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EcrSettings {
    pub scan_on_push: bool,
    /// MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION.
    pub tag_mutability: String,
    /// The wildcard filters of the `_WITH_EXCLUSION` modes: tags that stay movable (or fixed).
    pub exclusions: Vec<String>,
    /// AES256, or KMS with `kms-key`.
    pub encryption: String,
    pub kms_key: Option<String>,
    /// Images kept per app (`<app>-` tag prefix) by the lifecycle policy.
    pub keep_images: u32,
    /// Days after which untagged images expire.
    pub expire_untagged_days: u32,
    /// The scan gate of `release`: the most CRITICAL and HIGH findings an image may have.
    pub max_critical: Option<u32>,
    pub max_high: Option<u32>,
    /// How long the scan gate waits for a scan.
    pub scan_timeout_seconds: u64,
}

impl Default for EcrSettings {
    /// Immutable `<app>-<sha>` tags with a movable `*-latest`, scanned on push.
    fn default() -> EcrSettings {
        EcrSettings {
            scan_on_push: true,
            tag_mutability: "IMMUTABLE_WITH_EXCLUSION".into(),
            exclusions: vec!["*-latest".into()],
            encryption: "AES256".into(),
            kms_key: None,
            keep_images: 30,
            expire_untagged_days: 7,
            max_critical: None,
            max_high: None,
            scan_timeout_seconds: 600,
        }
    }
}

/// A user's change rule, `[[workspace.metadata.xtask.rules]]`: changed paths matching `paths`
/// select the named apps, every app (`apps = "all"`), or nothing (`ignore = true`). Rules are
/// tried in order before the built-in ones, and the first match decides.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRule {
    pub paths: String,
    #[serde(default)]
    pub apps: Option<RuleApps>,
    #[serde(default)]
    pub ignore: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RuleApps {
    /// Only `"all"` is accepted here; `resolve` checks it.
    All(String),
    Named(Vec<String>),
}
#[derive(Debug)]
pub struct Config {
    pub repository: Repositories,
    pub platforms: Vec<Platform>,
    /// The Rust target triple each platform's binaries are compiled for.
    pub targets: BTreeMap<Platform, String>,
    pub rules: Vec<PathRule>,
    pub ecr: EcrSettings,
    /// `[workspace.metadata.xtask.environments]`: names such as `staging` for repositories.
    pub environments: BTreeMap<String, String>,
    pub supply_chain: SupplyChain,
    pub libc: LibcPolicy,
    /// The glibc version every gnu binary is linked against, instead of its base's.
    pub glibc: Option<GlibcVersion>,
}

impl Config {
    /// Makes a relative layout repository relative to the workspace root, wherever the command
    /// runs.
    pub fn rooted_at(mut self, root: &std::path::Path) -> Config {
        self.repository = self.repository.rooted_at(root);
        // So are the key and the advisory database the configuration names.
        let rooted = |path: &mut Option<String>| {
            if let Some(value) = path.as_mut().filter(|value| !value.starts_with("env://")) {
                *value = root.join(&*value).to_string_lossy().into_owned();
            }
        };
        rooted(&mut self.supply_chain.sign);
        rooted(&mut self.supply_chain.advisory_db);
        self
    }
}

/// What the user said outside the manifest.
#[derive(Default)]
pub struct Overrides<'a> {
    pub repository: Option<&'a str>,
    pub platforms: &'a [String],
}

pub fn resolve(workspace_metadata: &serde_json::Value, env: &dyn Fn(&str) -> Option<String>, overrides: Overrides<'_>) -> Result<Config> {
    let metadata: Metadata = match workspace_metadata.get("xtask") {
        Some(value) => serde_json::from_value(value.clone()).context(
            "invalid [workspace.metadata.xtask] in the root Cargo.toml: fix the table (keys: repository, platforms, targets, rules, ecr, environments, supply-chain, libc, glibc, images)",
        )?,
        None => Metadata::default(),
    };
    let env_repository = env("XTASK_REPOSITORY").filter(|value| !value.is_empty());
    let repository = overrides
        .repository
        .map(str::to_string)
        .or(env_repository)
        .or(Some(metadata.repository).filter(|value| !value.is_empty()))
        .unwrap_or_else(|| DEFAULT_REPOSITORY.to_string());
    let repository = Repositories::parse(&repository)?;

    let platform_texts: Vec<String> = if !overrides.platforms.is_empty() {
        overrides.platforms.to_vec()
    } else if let Some(value) = env("XTASK_PLATFORMS").filter(|value| !value.is_empty()) {
        value.split(',').map(str::to_string).collect()
    } else if !metadata.platforms.is_empty() {
        metadata.platforms
    } else {
        vec!["linux/amd64".into(), "linux/arm64".into()]
    };
    let mut platforms = Vec::new();
    for text in &platform_texts {
        let platform = Platform::parse(text)?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }

    let mut targets = BTreeMap::new();
    for (platform, triple) in metadata.targets {
        targets.insert(Platform::parse(&platform).context("in [workspace.metadata.xtask.targets]")?, triple);
    }
    for platform in &platforms {
        if !targets.contains_key(platform) {
            match default_target(platform) {
                Some(triple) => targets.insert(platform.clone(), triple.to_string()),
                None => bail!(
                    "no Rust target is known for platform {platform}: add `\"{platform}\" = \"<target triple>\"` to [workspace.metadata.xtask.targets] in the root Cargo.toml"
                ),
            };
        }
    }
    for rule in &metadata.rules {
        match (&rule.apps, rule.ignore) {
            (Some(RuleApps::All(all)), false) if all == "all" => {}
            (Some(RuleApps::Named(_)), false) | (None, true) => {}
            _ => bail!(
                "invalid rule for `{}` in [[workspace.metadata.xtask.rules]]: give either apps = [\"app\", ...], apps = \"all\" or ignore = true",
                rule.paths
            ),
        }
    }
    let glibc = match metadata.glibc.as_deref() {
        None => None,
        Some(text) => Some(GlibcVersion::parse(text).with_context(|| {
            format!("glibc = \"{text}\" in [workspace.metadata.xtask] is no glibc version: write it as glibc numbers its releases, such as \"2.36\"")
        })?),
    };
    Ok(Config {
        libc: metadata.libc,
        glibc,
        repository,
        platforms,
        targets,
        rules: metadata.rules,
        ecr: metadata.ecr,
        environments: metadata.environments,
        supply_chain: metadata.supply_chain,
    })
}

fn default_target(platform: &Platform) -> Option<&'static str> {
    Some(match (platform.architecture.as_str(), platform.variant.as_deref()) {
        ("amd64", None) => "x86_64-unknown-linux-musl",
        ("arm64", None | Some("v8")) => "aarch64-unknown-linux-musl",
        ("arm", Some("v7")) => "armv7-unknown-linux-musleabihf",
        ("riscv64", None) => "riscv64gc-unknown-linux-musl",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(metadata: serde_json::Value, env: &[(&str, &str)], overrides: Overrides<'_>, expected: expect_test::Expect) {
        let env_lookup = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
        let actual = match resolve(&metadata, &env_lookup, overrides) {
            Ok(config) => {
                let platforms: Vec<String> = config.platforms.iter().map(|p| p.to_string()).collect();
                let targets: Vec<String> = config.targets.iter().map(|(p, t)| format!("{p}={t}")).collect();
                format!("repository: {}\nplatforms: {}\ntargets: {}", config.repository, platforms.join(","), targets.join(","))
            }
            Err(err) => format!("error: {err:#}"),
        };
        expected.assert_eq(&actual);
    }

    #[test]
    fn defaults_without_metadata() {
        check(
            serde_json::json!(null),
            &[],
            Overrides::default(),
            expect_test::expect![[r#"
                repository: oci:target/registry
                platforms: linux/amd64,linux/arm64
                targets: linux/amd64=x86_64-unknown-linux-musl,linux/arm64=aarch64-unknown-linux-musl"#]],
        );
    }

    #[test]
    fn flags_beat_environment_beats_manifest() {
        let metadata = serde_json::json!({"xtask": {"repository": "registry.example/acme/prod", "platforms": ["linux/amd64"]}});
        check(
            metadata.clone(),
            &[],
            Overrides::default(),
            expect_test::expect![[r#"
                repository: registry.example/acme/prod
                platforms: linux/amd64
                targets: linux/amd64=x86_64-unknown-linux-musl"#]],
        );
        check(
            metadata.clone(),
            &[("XTASK_REPOSITORY", "127.0.0.1:5000/acme/dev"), ("XTASK_PLATFORMS", "linux/arm64")],
            Overrides::default(),
            expect_test::expect![[r#"
                repository: 127.0.0.1:5000/acme/dev
                platforms: linux/arm64
                targets: linux/arm64=aarch64-unknown-linux-musl"#]],
        );
        check(
            metadata,
            &[("XTASK_REPOSITORY", "127.0.0.1:5000/acme/dev")],
            Overrides { repository: Some("oci:out"), platforms: &["linux/arm64".into(), "linux/amd64".into()] },
            expect_test::expect![[r#"
                repository: oci:out
                platforms: linux/arm64,linux/amd64
                targets: linux/amd64=x86_64-unknown-linux-musl,linux/arm64=aarch64-unknown-linux-musl"#]],
        );
    }

    #[test]
    fn bad_settings() {
        check(
            serde_json::json!({"xtask": {"repo": "x"}}),
            &[],
            Overrides::default(),
            expect_test::expect!["error: invalid [workspace.metadata.xtask] in the root Cargo.toml: fix the table (keys: repository, platforms, targets, rules, ecr, environments, supply-chain, libc, glibc, images): unknown field `repo`, expected one of `repository`, `platforms`, `targets`, `rules`, `ecr`, `environments`, `supply-chain`, `libc`, `glibc`, `images`"],
        );
        check(
            serde_json::json!({"xtask": {"platforms": ["linux/s390x"]}}),
            &[],
            Overrides::default(),
            expect_test::expect![[
                r#"error: no Rust target is known for platform linux/s390x: add `"linux/s390x" = "<target triple>"` to [workspace.metadata.xtask.targets] in the root Cargo.toml"#
            ]],
        );
        check(
            serde_json::json!({"xtask": {"glibc": "2.36.1"}}),
            &[],
            Overrides::default(),
            expect_test::expect![[
                r#"error: glibc = "2.36.1" in [workspace.metadata.xtask] is no glibc version: write it as glibc numbers its releases, such as "2.36""#
            ]],
        );
        check(
            serde_json::json!({"xtask": {"libc": "static"}}),
            &[],
            Overrides::default(),
            expect_test::expect!["error: invalid [workspace.metadata.xtask] in the root Cargo.toml: fix the table (keys: repository, platforms, targets, rules, ecr, environments, supply-chain, libc, glibc, images): unknown variant `static`, expected `auto` or `musl`"],
        );
    }
}
