//! `cargo xtask adopt PATH`, run from this repository: brings the xtask into the Cargo workspace
//! at PATH. The crate is vendored into `PATH/xtask/` as a workspace of its own (its edition,
//! formatting, profile settings and Cargo.lock; the host's root manifest excludes it), so that
//! the host's `Cargo.lock`, its `cargo build/test/clippy --workspace` and its `cargo fmt --all`
//! never see it, and `cargo xtask` is an alias running it with `--manifest-path`. It prints the
//! images it finds there and how each will be built. Running it again upgrades the copy and
//! keeps the host's settings; `--check` says whether the copy is current; `--dry-run` writes
//! nothing. The text changes are pure functions below; reading and writing happen in `run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::builder;
use crate::context::Context;
use crate::flags;
use crate::image::dockerfile;
use crate::image::platform::Platform;
use crate::workspace::graph::WorkTreeGraph;
use crate::workspace::Workspace;

/// The alias the host's `.cargo/config.toml` gets: the vendored crate, run from the root.
const ALIAS: &str = "xtask = \"run --manifest-path xtask/Cargo.toml --quiet --\"";

/// The crates vendored, by directory: the xtask and the crate that reads cargo metadata, a path
/// dependency under it (and so a member of its workspace).
const VENDORED_CRATES: [&str; 2] = ["xtask", "xtask/metadata"];

pub fn run(ctx: &Context, args: flags::Adopt) -> Result<ExitCode> {
    let source = &ctx.workspace.root;
    if !source.join("xtask/src/main.rs").is_file() {
        bail!("adopt copies the xtask from the repository it runs in, and {} has no xtask/src/main.rs: run it from the xtask's own repository", source.display());
    }
    let host = args
        .path
        .canonicalize()
        .with_context(|| format!("{} does not exist: give the root of the Cargo workspace to adopt the xtask", args.path.display()))?;
    if host == *source {
        bail!("{} is the xtask's own repository: give the root of another Cargo workspace", host.display());
    }
    let manifest_path = host.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("{} has no Cargo.toml: give the root of the Cargo workspace to adopt the xtask", host.display()))?;
    let config_path = host.join(".cargo/config.toml");
    let config = std::fs::read_to_string(&config_path).ok();

    let mut wanted = vendored_files(ctx, source)?;
    let host_manifest = host_manifest(&manifest)?;
    let survey = survey_images(&host)?;
    wanted.insert(manifest_path.clone(), with_settings(&host_manifest, &settings_table(&survey))?.into_bytes());
    wanted.insert(config_path.clone(), cargo_config(config.as_deref())?.into_bytes());
    let stale = stale_files(&host, &wanted);
    let changed: Vec<&PathBuf> = wanted
        .iter()
        .filter(|(path, bytes)| std::fs::read(host.join(path)).ok().as_deref() != Some(bytes.as_slice()))
        .map(|(path, _)| path)
        .collect();

    if args.check {
        if changed.is_empty() && stale.is_empty() {
            println!("the xtask in {} is current", host.display());
            return Ok(ExitCode::SUCCESS);
        }
        for path in changed.iter().copied().chain(&stale) {
            println!("not current: {}", shown(&host, path));
        }
        println!("run `cargo xtask adopt {}` to bring it up to date", args.path.display());
        return Ok(ExitCode::from(1));
    }
    let (vendored, host_files): (Vec<&PathBuf>, Vec<&PathBuf>) = changed.iter().partition(|path| path.starts_with("xtask/"));
    let verb = if args.dry_run { "would write" } else { "writes" };
    for path in host_files {
        println!("{verb} {}", shown(&host, path));
    }
    if !vendored.is_empty() {
        let files = if vendored.len() == 1 { "file" } else { "files" };
        println!("{verb} {} {files} of the xtask into xtask/ (a workspace of its own)", vendored.len());
    }
    for path in &stale {
        println!("{} {}", if args.dry_run { "would remove" } else { "removes" }, shown(&host, path));
    }
    if !args.dry_run {
        for path in &changed {
            let target = host.join(path);
            std::fs::create_dir_all(target.parent().expect("a file has a directory"))?;
            std::fs::write(&target, &wanted[*path]).with_context(|| format!("cannot write {}", target.display()))?;
        }
        for path in &stale {
            std::fs::remove_file(host.join(path)).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    for (name, how) in &survey.images {
        println!("image {name}: {how}");
    }
    for (path, offers) in &survey.undeclared {
        let what = match offers {
            Ok(offers) if !offers.required_args.is_empty() => format!("; it needs {}", offers.required_args.join(", ")),
            _ => String::new(),
        };
        println!("not an image: {path} (declare it in [[workspace.metadata.xtask.images]], README \"Other Dockerfiles\"{what})");
    }
    if changed.is_empty() && stale.is_empty() {
        println!("the xtask in {} was current: nothing changed", host.display());
    } else if !args.dry_run {
        println!(
            "next: in {}, `cargo xtask changed --all` (the first run compiles the xtask, a few minutes), then `cargo xtask build --all`; settings go to [workspace.metadata.xtask] in Cargo.toml (README, \"Configuration\")",
            host.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A path of the host for messages: relative to its root.
fn shown(host: &Path, path: &Path) -> String {
    path.strip_prefix(host).unwrap_or(path).display().to_string()
}

/// What the vendored copy holds, by path relative to the host's root: the crates' sources as
/// they are, the xtask's manifest made a workspace of its own (`vendored_manifest`) and the other
/// crate's with what it inherits written out (`inherited_written_out`), this repository's
/// Cargo.lock less the entries the crates do not use (`crate_lockfile`), its rustfmt settings,
/// and an ignore file for its target directory.
fn vendored_files(ctx: &Context, source: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut pending: Vec<PathBuf> = VENDORED_CRATES.iter().map(|dir| source.join(dir).join("src")).collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(source).expect("under the source").to_path_buf();
                files.insert(relative, std::fs::read(&path)?);
            }
        }
    }
    let root_manifest = std::fs::read_to_string(source.join("Cargo.toml"))?;
    for dir in VENDORED_CRATES {
        let path = PathBuf::from(dir).join("Cargo.toml");
        let crate_manifest = std::fs::read_to_string(source.join(&path))?;
        let manifest = match dir {
            "xtask" => vendored_manifest(&crate_manifest, &root_manifest)?,
            _ => inherited_written_out(&crate_manifest, &root_manifest)?,
        };
        files.insert(path, manifest.into_bytes());
    }
    let lockfile = crate_lockfile(ctx, &files, &std::fs::read(source.join("Cargo.lock"))?)?;
    files.insert("xtask/Cargo.lock".into(), lockfile);
    if let Ok(rustfmt) = std::fs::read(source.join("rustfmt.toml")) {
        files.insert("xtask/rustfmt.toml".into(), rustfmt);
    }
    files.insert("xtask/.gitignore".into(), b"/target\n".to_vec());
    for name in ["release", "deploy"] {
        let workflow = std::fs::read_to_string(source.join(format!(".github/workflows/{name}.yml")))?;
        files.insert(format!(".github/workflows/xtask-{name}.yml").into(), host_workflow(&workflow).into_bytes());
    }
    Ok(files)
}

/// One of this repository's workflows as the host runs it: the xtask built from its own
/// manifest into `xtask/target/`, cached by its own files.
fn host_workflow(workflow: &str) -> String {
    let adopted = workflow
        .replace("cargo build --package xtask", "cargo build --manifest-path xtask/Cargo.toml")
        .replace("target/debug/xtask", "xtask/target/debug/xtask")
        .replace("hashFiles('Cargo.lock', 'xtask/**', '.cargo/config.toml')", "hashFiles('xtask/**', '.cargo/config.toml')");
    format!(
        "# Written by `cargo xtask adopt` from the xtask's repository: run it again to upgrade (`--check` tells a stale copy).\n{adopted}"
    )
}

/// The lockfile cargo makes of this repository's for the vendored manifests alone (among
/// `vendored`, the files by path): the same versions, the entries of the other crates dropped
/// (offline, in a scratch copy of the manifests, with empty sources).
fn crate_lockfile(ctx: &Context, vendored: &BTreeMap<PathBuf, Vec<u8>>, lockfile: &[u8]) -> Result<Vec<u8>> {
    let scratch = ctx.workspace.scratch_dir("adopt")?;
    for dir in VENDORED_CRATES {
        let in_scratch = scratch.path().join(Path::new(dir).strip_prefix("xtask").expect("vendored under xtask/"));
        std::fs::create_dir_all(in_scratch.join("src"))?;
        std::fs::write(in_scratch.join(if dir == "xtask" { "src/main.rs" } else { "src/lib.rs" }), "")?;
        std::fs::write(in_scratch.join("Cargo.toml"), &vendored[&Path::new(dir).join("Cargo.toml")])?;
    }
    std::fs::write(scratch.path().join("Cargo.lock"), lockfile)?;
    let cargo = crate::workspace::cargo();
    let manifest_path = scratch.path().join("Cargo.toml");
    xshell::cmd!(ctx.sh, "{cargo} metadata --format-version 1 --offline --manifest-path {manifest_path}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("cargo cannot resolve the vendored xtask from this repository's Cargo.lock offline: run `cargo fetch` here first")?;
    Ok(std::fs::read(scratch.path().join("Cargo.lock"))?)
}

/// The vendored copy's files no longer in `wanted` (a source file removed upstream).
fn stale_files(host: &Path, wanted: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<PathBuf> {
    let mut stale = Vec::new();
    let mut pending: Vec<PathBuf> = VENDORED_CRATES.iter().map(|dir| host.join(dir).join("src")).collect();
    while let Some(dir) = pending.pop() {
        for path in std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|entry| entry.path()) {
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(host) {
                if !wanted.contains_key(relative) {
                    stale.push(relative.to_path_buf());
                }
            }
        }
    }
    stale.sort();
    stale
}

/// The crate's manifest as a workspace of its own: `inherited_written_out`, an empty
/// `[workspace]` table, and the dev profile's settings the xtask needs to be fast.
fn vendored_manifest(crate_manifest: &str, root_manifest: &str) -> Result<String> {
    let mut out = inherited_written_out(crate_manifest, root_manifest)?;
    out.push_str("\n# A workspace of its own: the host's Cargo.lock, lints and `--workspace` commands do not reach it.\n[workspace]\n");
    // The dev profile's settings for the xtask's hot crates, as this repository has them.
    let mut in_dev_profile = false;
    for line in root_manifest.lines() {
        if line.starts_with('[') {
            in_dev_profile = line.starts_with("[profile.dev");
            if in_dev_profile {
                out.push('\n');
            }
        }
        if in_dev_profile && !line.trim_start().starts_with('#') && !line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// A vendored crate's manifest: the fields it inherits from this repository's
/// `[workspace.package]` written out, and its end-to-end tests (this repository's) left out.
fn inherited_written_out(crate_manifest: &str, root_manifest: &str) -> Result<String> {
    let root: toml::Table = toml::from_str(root_manifest).context("this repository's Cargo.toml is not TOML")?;
    let package =
        root.get("workspace").and_then(|workspace| workspace.get("package")).cloned().unwrap_or(toml::Value::Table(Default::default()));
    let mut out = String::from("# Vendored by `cargo xtask adopt`: run it again to upgrade; `--check` says whether this is current.\n");
    let mut in_tests = false;
    for line in crate_manifest.lines() {
        let header = line.trim_start().starts_with('[');
        if header {
            in_tests = line.trim() == "[[test]]";
        }
        if in_tests || line.contains("end-to-end tests") || line.contains("so that they can run the xtask binary") {
            continue;
        }
        match line.split_once(".workspace = true") {
            Some((key, _)) => {
                let value = package.get(key.trim()).with_context(|| format!("[workspace.package] has no `{}`", key.trim()))?;
                out.push_str(&format!("{} = {}\n", key.trim(), toml_value(value)));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// A TOML value as a manifest writes it (the strings and booleans of `[workspace.package]`).
fn toml_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("{text:?}"),
        toml::Value::Array(items) => format!("[{}]", items.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// The host's root manifest with `xtask` in its workspace's `exclude`, so that a `members`
/// glob never takes the vendored copy for a member; unchanged when it is there already.
fn host_manifest(text: &str) -> Result<String> {
    let parsed: toml::Table = toml::from_str(text).context("the Cargo.toml to adopt the xtask into is not TOML: fix it first")?;
    let Some(workspace) = parsed.get("workspace") else {
        bail!("the Cargo.toml to adopt the xtask into has no [workspace]: the xtask builds the apps of a Cargo workspace");
    };
    let excluded = workspace.get("exclude").and_then(|exclude| exclude.as_array());
    if excluded.is_some_and(|exclude| exclude.iter().any(|path| path.as_str() == Some("xtask"))) {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len() + 24);
    let mut in_workspace = false;
    let mut done = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_workspace = trimmed == "[workspace]";
        }
        if in_workspace && !done && excluded.is_some() && trimmed.starts_with("exclude") {
            if let Some((before, after)) = line.split_once('[') {
                out.push_str(&format!("{before}[\"xtask\", {}", after.trim_start()));
                done = true;
                continue;
            }
        }
        out.push_str(line);
        if trimmed == "[workspace]" && excluded.is_none() && !done {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("exclude = [\"xtask\"]\n");
            done = true;
        }
    }
    if !done {
        bail!("cannot add \"xtask\" to the [workspace] exclude list of the Cargo.toml to adopt into: add `exclude = [\"xtask\"]` to its [workspace] and run adopt again");
    }
    Ok(out)
}

/// The host's `.cargo/config.toml` with the `cargo xtask` alias; unchanged when it has one.
fn cargo_config(text: Option<&str>) -> Result<String> {
    let text = text.unwrap_or_default();
    let parsed: toml::Table = toml::from_str(text).context("the .cargo/config.toml to adopt the xtask into is not TOML: fix it first")?;
    if parsed.get("alias").and_then(|alias| alias.get("xtask")).is_some() {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len() + ALIAS.len() + 10);
    let mut added = false;
    for line in text.split_inclusive('\n') {
        out.push_str(line);
        if line.trim() == "[alias]" && !added {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(ALIAS);
            out.push('\n');
            added = true;
        }
    }
    if !added {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
        }
        out.push_str(&format!("[alias]\n{ALIAS}\n"));
    }
    Ok(out)
}

/// The host's images and its Dockerfiles that are no image.
struct Survey {
    /// Each image: its name, how it was found, and how it will be built (as the build's first line
    /// says it: its builder stage replaced or kept, the rest assembled natively or by the engine).
    images: Vec<(String, String)>,
    /// Each Dockerfile no image is built from, with what it offers a declaration.
    undeclared: Vec<(String, Result<dockerfile::Offers>)>,
}

/// Reads the host's images (how each was found, and whether its builder stage gives way to the
/// xtask's cross-compilation), and its Dockerfiles that are no image.
fn survey_images(host: &Path) -> Result<Survey> {
    let workspace = Workspace::load(host, WorkTreeGraph::on_demand(host), false).context("reading the adopted workspace")?;
    let mut survey = Survey { images: Vec::new(), undeclared: Vec::new() };
    let mut dockerfiles = BTreeMap::new();
    for app in workspace.apps() {
        let dockerfile = app.dockerfile.clone().unwrap_or_default();
        let how = match app.dockerfile_text(host) {
            Ok(text) => builder::how_built(&text, &dockerfile, &[Platform::parse("linux/amd64")?], app, &workspace)
                .unwrap_or_else(|err| format!("not readable: {err:#}")),
            Err(err) => format!("its Dockerfile cannot be read: {err:#}"),
        };
        survey.images.push((app.name.clone(), format!("{}; {how}", app.found_how())));
        dockerfiles.insert(dockerfile, ());
    }
    for path in crate::workspace::dockerfiles_under(host) {
        if !dockerfiles.contains_key(&path) {
            let offers =
                std::fs::read_to_string(host.join(&path)).map_err(anyhow::Error::from).and_then(|text| dockerfile::offers(&text, &path));
            survey.undeclared.push((path, offers));
        }
    }
    Ok(survey)
}

/// The `[workspace.metadata.xtask]` adopt writes for a host without one: the repository and
/// platforms, the images found as comments, and a declaration to fill in for each Dockerfile that
/// is no image yet.
fn settings_table(survey: &Survey) -> String {
    let mut table = String::from(concat!(
        "# Written by `cargo xtask adopt` (README, \"Configuration\"); yours to edit: adopt leaves this\n",
        "# table as it is once it is here.\n",
        "[workspace.metadata.xtask]\n",
        "# Empty: the local layout target/registry. One repository all images share, tagged\n",
        "# <app>-<sha> and <app>-latest (\"ghcr.io/ORG/images\"), or one per image (\"ghcr.io/ORG/{image}\").\n",
        "repository = \"\"\n",
        "platforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    ));
    if !survey.images.is_empty() {
        table.push_str("# The images found (`cargo xtask changed --all` lists them):\n");
        for (name, how) in &survey.images {
            table.push_str(&format!("# - {name}: {how}\n"));
        }
    }
    for (path, offers) in &survey.undeclared {
        table.push_str(&format!("\n# {path} is no image yet: declare each image it makes (README, \"Other Dockerfiles\").\n"));
        table.push_str(&format!("# [[workspace.metadata.xtask.images]]\n# name = \"NAME\"\n# dockerfile = \"{path}\"\n"));
        match offers {
            Ok(offers) => {
                if !offers.stages.is_empty() {
                    table.push_str(&format!("# target = \"STAGE\"  # one of its stages: {}\n", offers.stages.join(", ")));
                }
                if !offers.required_args.is_empty() {
                    let args: Vec<String> = offers.required_args.iter().map(|arg| format!("{arg} = \"...\"")).collect();
                    table.push_str(&format!("# args = {{ {} }}  # what it needs\n", args.join(", ")));
                }
            }
            Err(err) => table.push_str(&format!("# (it cannot be read: {err:#})\n")),
        }
    }
    table
}

/// The host's manifest with `table` added at its end, unless it has a `[workspace.metadata.xtask]`
/// already: the user's settings are kept as they are.
fn with_settings(manifest: &str, table: &str) -> Result<String> {
    let parsed: toml::Table = toml::from_str(manifest).context("the Cargo.toml to adopt the xtask into is not TOML: fix it first")?;
    let configured = parsed.get("workspace").and_then(|workspace| workspace.get("metadata")).and_then(|metadata| metadata.get("xtask"));
    if configured.is_some() {
        return Ok(manifest.to_string());
    }
    let separator = if manifest.ends_with("\n\n") || manifest.is_empty() {
        ""
    } else if manifest.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    Ok(format!("{manifest}{separator}{table}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_manifest_is_a_workspace_of_its_own() {
        let root = "[workspace]\nmembers = [\"xtask\"]\n\n[workspace.package]\nedition = \"2021\"\nlicense = \"MIT OR Apache-2.0\"\npublish = false\n\n[profile.dev.package.\"*\"]\ndebug = false\n# sha2 is hot\n[profile.dev.package.sha2]\nopt-level = 3\n\n[profile.release]\nstrip = true\n";
        let krate = "[package]\nname = \"xtask\"\nedition.workspace = true\nlicense.workspace = true\npublish.workspace = true\n\n[dependencies]\nanyhow = \"1\"\n\n# The end-to-end tests live in the workspace's top-level tests/ directory; they are declared here\n# so that they can run the xtask binary that cargo builds for them.\n[[test]]\nname = \"e2e\"\npath = \"../tests/e2e/main.rs\"\n";
        expect_test::expect![[r#"
            # Vendored by `cargo xtask adopt`: run it again to upgrade; `--check` says whether this is current.
            [package]
            name = "xtask"
            edition = "2021"
            license = "MIT OR Apache-2.0"
            publish = false

            [dependencies]
            anyhow = "1"


            # A workspace of its own: the host's Cargo.lock, lints and `--workspace` commands do not reach it.
            [workspace]

            [profile.dev.package."*"]
            debug = false

            [profile.dev.package.sha2]
            opt-level = 3
        "#]]
        .assert_eq(&vendored_manifest(krate, root).unwrap());
    }

    #[test]
    fn a_workflow_builds_the_vendored_xtask() {
        let workflow = "      - id: xtask\n        uses: actions/cache@v4\n        with:\n          path: target/debug/xtask\n          key: xtask-${{ runner.arch }}-${{ hashFiles('Cargo.lock', 'xtask/**', '.cargo/config.toml') }}\n      - if: steps.xtask.outputs.cache-hit != 'true'\n        run: cargo build --package xtask\n      - run: target/debug/xtask changed --json\n";
        expect_test::expect![[r#"
            # Written by `cargo xtask adopt` from the xtask's repository: run it again to upgrade (`--check` tells a stale copy).
                  - id: xtask
                    uses: actions/cache@v4
                    with:
                      path: xtask/target/debug/xtask
                      key: xtask-${{ runner.arch }}-${{ hashFiles('xtask/**', '.cargo/config.toml') }}
                  - if: steps.xtask.outputs.cache-hit != 'true'
                    run: cargo build --manifest-path xtask/Cargo.toml
                  - run: xtask/target/debug/xtask changed --json
        "#]]
        .assert_eq(&host_workflow(workflow));
    }

    #[test]
    fn the_settings_are_written_once_with_what_was_found() {
        let offers = |text: &str| dockerfile::offers(text, "Dockerfile");
        let survey = Survey {
            images: vec![("api".into(), "crates/api/Dockerfile, beside the crate's Cargo.toml; assembled natively".into())],
            undeclared: vec![
                ("Dockerfile".into(), offers("ARG PACKAGE\nARG RUST=1.85\nFROM rust:$RUST AS build\nARG BIN\nARG TARGETARCH\nRUN cargo build -p $PACKAGE\nFROM scratch AS app\n")),
                ("docker/broken.Dockerfile".into(), offers("RUN true\n")),
            ],
        };
        let table = settings_table(&survey);
        expect_test::expect![[r##"
            # Written by `cargo xtask adopt` (README, "Configuration"); yours to edit: adopt leaves this
            # table as it is once it is here.
            [workspace.metadata.xtask]
            # Empty: the local layout target/registry. One repository all images share, tagged
            # <app>-<sha> and <app>-latest ("ghcr.io/ORG/images"), or one per image ("ghcr.io/ORG/{image}").
            repository = ""
            platforms = ["linux/amd64", "linux/arm64"]
            # The images found (`cargo xtask changed --all` lists them):
            # - api: crates/api/Dockerfile, beside the crate's Cargo.toml; assembled natively

            # Dockerfile is no image yet: declare each image it makes (README, "Other Dockerfiles").
            # [[workspace.metadata.xtask.images]]
            # name = "NAME"
            # dockerfile = "Dockerfile"
            # target = "STAGE"  # one of its stages: build, app
            # args = { PACKAGE = "...", BIN = "..." }  # what it needs

            # docker/broken.Dockerfile is no image yet: declare each image it makes (README, "Other Dockerfiles").
            # [[workspace.metadata.xtask.images]]
            # name = "NAME"
            # dockerfile = "docker/broken.Dockerfile"
            # (it cannot be read: Dockerfile:1: no build stage in current context; docker build refuses this Dockerfile too: fix that line)
        "##]]
        .assert_eq(&table);
        let manifest = "[workspace]\nmembers = [\"*\"]\n";
        let written = with_settings(manifest, &table).unwrap();
        assert_eq!(written, format!("{manifest}\n{table}"));
        assert!(toml::from_str::<toml::Table>(&written).is_ok(), "{written}");
        assert_eq!(with_settings(&written, "[other]\n").unwrap(), written, "the user's table is kept");
        let theirs = "[workspace]\n[workspace.metadata.xtask]\nrepository = \"ghcr.io/acme/{image}\"\n";
        assert_eq!(with_settings(theirs, &table).unwrap(), theirs);
    }

    #[test]
    fn the_host_excludes_the_vendored_copy_and_gets_the_alias() {
        let check = |text: &str, expected: expect_test::Expect| {
            expected.assert_eq(&host_manifest(text).unwrap_or_else(|err| format!("error: {err}")))
        };
        check(
            "[workspace]\nmembers = [\"*\"]\nresolver = \"3\"\n",
            expect_test::expect![[r#"
                [workspace]
                exclude = ["xtask"]
                members = ["*"]
                resolver = "3"
            "#]],
        );
        check(
            "[workspace]\nmembers = [\"crates/*\"]\nexclude = [\"vendor\"]\n",
            expect_test::expect![[r#"
                [workspace]
                members = ["crates/*"]
                exclude = ["xtask", "vendor"]
            "#]],
        );
        check(
            "[workspace]\nexclude = [\"xtask\"]\n",
            expect_test::expect![[r#"
            [workspace]
            exclude = ["xtask"]
        "#]],
        );
        check(
            "[package]\nname = \"x\"\n",
            expect_test::expect![
                "error: the Cargo.toml to adopt the xtask into has no [workspace]: the xtask builds the apps of a Cargo workspace"
            ],
        );
        let config = |text: Option<&str>| cargo_config(text).unwrap();
        assert_eq!(config(None), format!("[alias]\n{ALIAS}\n"));
        assert_eq!(config(Some("[alias]\nb = \"build\"\n")), format!("[alias]\n{ALIAS}\nb = \"build\"\n"));
        assert_eq!(config(Some("[build]\njobs = 2\n")), format!("[build]\njobs = 2\n\n[alias]\n{ALIAS}\n"));
        let own = "[alias]\nxtask = \"run -p xtask --\"\n";
        assert_eq!(config(Some(own)), own, "an alias of the user's stays");
    }
}
