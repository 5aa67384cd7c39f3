//! `cargo xtask build`: cross-compiles each app for every platform's Rust target, stages the
//! binaries where the apps' Dockerfiles `COPY` them from, and assembles one OCI index per app in
//! an image layout under `target/xtask/oci/<app>`, without a Docker daemon.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::changed::{self, SelectedApp};
use crate::config::{self, Config};
use crate::dockerfile::{self, Base};
use crate::engine::{self, Engine};
use crate::flags;
use crate::git::Git;
use crate::layer::{self, LayerFile};
use crate::layout::Layout;
use crate::oci::{self, ContainerConfig, Descriptor, Digest, History, ImageConfig, ImageIndex, ImageManifest, RootFs};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::pull::BaseImage;
use crate::push::Session;
use crate::workspace::{Member, Workspace};

/// One platform's image before its config and manifest are written, from either builder.
pub struct ImageParts {
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<Digest>,
    pub history: Vec<History>,
    pub config: ContainerConfig,
}

/// One app's built image: an index in its own layout.
#[derive(Debug)]
pub struct BuiltImage {
    pub app: String,
    pub layout: PathBuf,
    pub index: Descriptor,
}

/// Facts about the source that every image records.
#[derive(Debug, Default)]
pub struct Provenance {
    /// The commit, for `org.opencontainers.image.revision`.
    pub revision: Option<String>,
    /// The repository URL, for `org.opencontainers.image.source`.
    pub source: Option<String>,
    /// Seconds since the epoch for every timestamp in the image: `SOURCE_DATE_EPOCH`, else the
    /// commit time, else 0; so rebuilding a commit gives the same bytes.
    pub epoch: u64,
    /// Per app, the digest of its inputs (see `inputs`), recorded on its index; empty when the
    /// work tree does not match the commit.
    pub inputs: BTreeMap<String, oci::Digest>,
}

impl Provenance {
    pub fn from_git(git: Option<&Git<'_>>, revision: Option<&str>) -> Result<Provenance> {
        let from_env = std::env::var("SOURCE_DATE_EPOCH").ok().filter(|value| !value.is_empty());
        let epoch = match (from_env, git, revision) {
            (Some(text), _, _) => text.parse().with_context(|| format!("SOURCE_DATE_EPOCH=`{text}` is not a number of seconds"))?,
            (None, Some(git), Some(revision)) => git.commit_time(revision)?,
            _ => 0,
        };
        Ok(Provenance { revision: revision.map(str::to_string), source: git.and_then(Git::origin_url), epoch, inputs: BTreeMap::new() })
    }

    /// Records each app's input digest, for a build from a work tree that matches the commit.
    pub fn record_inputs(&mut self, inputs: BTreeMap<String, crate::inputs::AppInputs>) {
        self.inputs = inputs.into_iter().map(|(app, inputs)| (app, inputs.digest)).collect();
    }
}

pub async fn run(args: flags::Build) -> Result<()> {
    let sh = Shell::new()?;
    let workspace = Workspace::load(&sh, &std::env::current_dir()?)?;
    sh.change_dir(&workspace.root);
    let config = config::resolve(
        &workspace.metadata,
        &|key| std::env::var(key).ok(),
        config::Overrides { repository: None, platforms: &args.selection.platform },
    )?;
    let selection = &args.selection;
    let git = if selection.apps.is_empty() && !selection.all {
        Some(Git::open(&sh, &workspace.root)?)
    } else {
        Git::open(&sh, &workspace.root).ok()
    };
    let head = git.as_ref().and_then(|git| git.rev_parse("HEAD").ok());
    let apps = changed::selection(&sh, git.as_ref(), &workspace, &config, selection)?;
    if apps.is_empty() {
        println!("no app to build");
        return Ok(());
    }
    let provenance = Provenance::from_git(git.as_ref(), head.as_deref())?;
    let inputs: Option<DeferredInputs<'_>> = match (&git, &head) {
        (Some(git), Some(head)) if !git.is_dirty()? => {
            let (workspace, config) = (&workspace, &config);
            Some(Box::new(move || crate::heal::current_inputs_in_new_shell(workspace, config, head)))
        }
        _ => None,
    };
    let session = Session::new(&args.transfer, Progress::new(false))?;
    let images = build_apps(&sh, &workspace, &config, &apps, selection.builder, provenance, inputs, &session).await?;
    for image in &images {
        println!("{} {} {}", image.app, image.index.digest, image.layout.display());
    }
    Ok(())
}

/// How one app's image is made.
enum Recipe {
    /// Assembled by the xtask: the Dockerfile's plan for each platform.
    Native(BTreeMap<Platform, dockerfile::ImagePlan>),
    /// Built by the Docker engine from the Dockerfile's text.
    Engine(String),
}

/// Chooses the builder for one Dockerfile and says why. `auto` sends a Dockerfile the native
/// builder declines (`dockerfile::Declined`) to the engine; a malformed one is an error either way.
fn recipe(builder: flags::Builder, text: &str, dockerfile: &str, platforms: &[Platform]) -> Result<(Recipe, String)> {
    if builder == flags::Builder::Engine {
        return Ok((Recipe::Engine(text.to_string()), "built by the Docker engine (--builder engine)".into()));
    }
    let mut plans = BTreeMap::new();
    for platform in platforms {
        match dockerfile::plan(text, dockerfile, &platform.build_args()) {
            Ok(plan) => plans.insert(platform.clone(), plan),
            Err(err) => match err.downcast_ref::<dockerfile::Declined>() {
                Some(declined) if builder == flags::Builder::Auto => {
                    let why = format!(
                        "built by the Docker engine, because {} has {}, which the native builder does not assemble",
                        declined.at, declined.what
                    );
                    return Ok((Recipe::Engine(text.to_string()), why));
                }
                _ => return Err(err),
            },
        };
    }
    Ok((Recipe::Native(plans), "assembled natively (its Dockerfile needs no engine)".into()))
}

/// The apps' input digests, for `build_apps` to compute while cargo compiles: they cost a full
/// `cargo metadata`, which mostly waits for cargo, and would otherwise double a rebuild's time.
pub type DeferredInputs<'a> = Box<dyn FnOnce() -> Result<BTreeMap<String, crate::inputs::AppInputs>> + Send + 'a>;

/// Builds every app for every platform. Base images are resolved (manifests and configs only)
/// through `session` before anything compiles; `inputs`, when given, are computed meanwhile and
/// recorded in `provenance`.
#[allow(clippy::too_many_arguments)]
pub async fn build_apps(
    sh: &Shell,
    workspace: &Workspace,
    config: &Config,
    apps: &[SelectedApp],
    builder: flags::Builder,
    mut provenance: Provenance,
    inputs: Option<DeferredInputs<'_>>,
    session: &Session,
) -> Result<Vec<BuiltImage>> {
    let members: Vec<&Member> = apps.iter().map(|app| workspace.member(&app.name).expect("selected apps are members")).collect();
    // Read every Dockerfile and base image, and reach the engine if one is needed, before
    // compiling anything, so that a malformed Dockerfile fails in a second.
    let mut recipes = BTreeMap::new();
    let mut bases: BTreeMap<String, BaseImage> = BTreeMap::new();
    for member in &members {
        let dockerfile = member.dockerfile.as_deref().expect("apps have a Dockerfile");
        let text = fs::read_to_string(workspace.root.join(dockerfile)).with_context(|| format!("cannot read {dockerfile}"))?;
        let (recipe, why) = recipe(builder, &text, dockerfile, &config.platforms)?;
        if builder == flags::Builder::Auto {
            eprintln!("{}: {why}", member.name);
        }
        if let Recipe::Native(plans) = &recipe {
            for plan in plans.values() {
                if let Base::Image { image, line } = &plan.base {
                    if !bases.contains_key(image) {
                        let base = session
                            .resolve_base(image, &config.platforms)
                            .await
                            .with_context(|| format!("{dockerfile}:{line}: FROM {image}"))?;
                        bases.insert(image.clone(), base);
                    }
                }
            }
        }
        recipes.insert(member.name.clone(), recipe);
        if member.bin.is_none() {
            bail!(
                "app `{}` has no binary target: an app's image carries its crate's binary, so give {}/Cargo.toml a [[bin]] or src/main.rs",
                member.name,
                member.dir
            );
        }
    }
    let engine = match recipes.values().any(|recipe| matches!(recipe, Recipe::Engine(_))) {
        true => Some(Engine::connect(sh)?),
        false => None,
    };

    let inputs = std::thread::scope(|scope| {
        let inputs = inputs.map(|compute| scope.spawn(compute));
        session.progress().section("cargo build", || compile(sh, workspace, config, &members))?;
        inputs.map(|thread| thread.join().expect("computing input digests does not panic")).transpose()
    })?;
    if let Some(inputs) = inputs {
        provenance.record_inputs(inputs);
    }
    let provenance = &provenance;

    let mut images = Vec::new();
    for member in &members {
        let layout_dir = workspace.target_dir.join("xtask/oci").join(&member.name);
        let layout = Layout::create(&layout_dir)?;
        let dockerfile = member.dockerfile.as_deref().expect("apps have a Dockerfile");
        let mut manifests = Vec::new();
        for platform in &config.platforms {
            let parts = match &recipes[&member.name] {
                Recipe::Native(plans) => {
                    let plan = &plans[platform];
                    let base = match &plan.base {
                        Base::Scratch => None,
                        Base::Image { image, .. } => {
                            let base = &bases[image];
                            Some((base.source.as_str(), &base.images[platform]))
                        }
                    };
                    assemble_native(&layout, workspace, dockerfile, plan, base, provenance)?
                }
                Recipe::Engine(text) => {
                    let engine = engine.as_ref().expect("connected when a recipe needs it");
                    let work = workspace.target_dir.join("xtask/engine").join(&member.name);
                    let saved = session.progress().section(&format!("docker build {} {platform}", member.name), || {
                        engine.build(&member.name, dockerfile, text, platform, &workspace.root, &work)
                    })?;
                    let image = engine::import(&saved, &layout, provenance.epoch)?;
                    fs::remove_file(&saved.archive)?;
                    image
                }
            };
            manifests.push(write_image(&layout, member, platform, parts, provenance)?);
        }
        let mut index_annotations = annotations(member, provenance);
        if let Some(inputs) = provenance.inputs.get(&member.name) {
            index_annotations.insert(crate::inputs::ANNOTATION.to_string(), inputs.to_string());
        }
        let index = ImageIndex::new(manifests, index_annotations);
        let index = layout.write_blob(oci::MEDIA_TYPE_INDEX, &oci::to_bytes(&index))?;
        layout.tag("latest", &index)?;
        images.push(BuiltImage { app: member.name.clone(), layout: layout_dir, index });
    }
    Ok(images)
}

/// One `cargo build` for every app and target, then each binary is copied to
/// `target/stage/<platform>/<bin>`, where the Dockerfiles expect it.
fn compile(sh: &Shell, workspace: &Workspace, config: &Config, members: &[&Member]) -> Result<()> {
    let triples: Vec<&String> = config.platforms.iter().map(|platform| &config.targets[platform]).collect();
    crate::toolchain::prepare_targets(sh, &workspace.root, &triples)?;
    let mut args: Vec<String> = vec!["build".into(), "--release".into(), "--locked".into()];
    for member in members {
        args.extend(["--package".into(), member.name.clone()]);
    }
    for triple in &triples {
        args.extend(["--target".into(), triple.to_string()]);
    }
    let cargo = crate::workspace::cargo();
    cmd!(sh, "{cargo} {args...}").run().with_context(|| {
        format!(
            "cargo could not build {} for {}: fix what cargo printed above and run the command again",
            members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
            triples.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
        )
    })?;
    for platform in &config.platforms {
        let triple = &config.targets[platform];
        let stage = workspace.root.join("target/stage").join(platform.to_string());
        fs::create_dir_all(&stage)?;
        for member in members {
            let bin = member.bin.as_deref().expect("checked before compiling");
            let built = workspace.target_dir.join(triple).join("release").join(bin);
            fs::copy(&built, stage.join(bin)).with_context(|| format!("cannot stage {}", built.display()))?;
        }
    }
    Ok(())
}

/// A base image's repository (`host/path`), manifest and config for one platform.
type BaseParts<'a> = (&'a str, &'a (ImageManifest, ImageConfig));

/// The layers, history and configuration of a native image: the base image's (its layers
/// referenced, not copied: the layout records where they are), then one layer per COPY.
fn assemble_native(
    layout: &Layout,
    workspace: &Workspace,
    dockerfile: &str,
    plan: &dockerfile::ImagePlan,
    base: Option<BaseParts<'_>>,
    provenance: &Provenance,
) -> Result<ImageParts> {
    let created = oci::rfc3339(provenance.epoch);
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
    for step in &plan.copies {
        let files = copy_files(&workspace.root, dockerfile, step)?;
        let mut writer = layout.blob_writer()?;
        let diff_id = layer::write_layer(&files, provenance.epoch, &mut writer)
            .with_context(|| format!("{dockerfile}:{}: cannot assemble the layer", step.line))?;
        let (digest, size) = writer.finish(None)?;
        layers.push(Descriptor::of_blob(oci::MEDIA_TYPE_LAYER_GZIP, digest, size));
        diff_ids.push(diff_id);
        history.push(History {
            created: Some(created.clone()),
            created_by: Some(format!("COPY {} {}", step.sources.join(" "), step.dest)),
            empty_layer: false,
        });
    }
    Ok(ImageParts { layers, diff_ids, history, config: plan.config_over(&base_config) })
}

/// Writes one platform's image config and manifest, with the app's labels and annotations, and
/// returns the manifest's descriptor for the index.
fn write_image(layout: &Layout, member: &Member, platform: &Platform, parts: ImageParts, provenance: &Provenance) -> Result<Descriptor> {
    let mut container_config = parts.config;
    container_config.labels.extend(annotations(member, provenance));
    let config = ImageConfig {
        created: Some(oci::rfc3339(provenance.epoch)),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: container_config,
        rootfs: RootFs { kind: "layers".into(), diff_ids: parts.diff_ids },
        history: parts.history,
    };
    let config = layout.write_blob(oci::MEDIA_TYPE_CONFIG, &oci::to_bytes(&config))?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: oci::MEDIA_TYPE_MANIFEST.into(),
        config,
        layers: parts.layers,
        annotations: annotations(member, provenance),
    };
    let mut descriptor = layout.write_blob(oci::MEDIA_TYPE_MANIFEST, &oci::to_bytes(&manifest))?;
    descriptor.platform = Some(platform.to_oci());
    Ok(descriptor)
}

/// The OCI annotations every image and index of an app carries (also set as config labels).
fn annotations(member: &Member, provenance: &Provenance) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        ("org.opencontainers.image.created".to_string(), oci::rfc3339(provenance.epoch)),
        ("org.opencontainers.image.title".to_string(), member.name.clone()),
        ("org.opencontainers.image.version".to_string(), member.version.clone()),
    ]);
    if let Some(revision) = &provenance.revision {
        annotations.insert("org.opencontainers.image.revision".into(), revision.clone());
    }
    if let Some(source) = &provenance.source {
        annotations.insert("org.opencontainers.image.source".into(), source.clone());
    }
    annotations
}

/// The files one COPY puts in the image: sources resolved in the build context (the workspace
/// root), directories walked in sorted order, and destinations placed as Docker places them.
fn copy_files(context: &Path, dockerfile: &str, step: &dockerfile::CopyStep) -> Result<Vec<LayerFile>> {
    let into_dir = step.dest.ends_with('/') || step.sources.len() > 1;
    let mut files = Vec::new();
    for source in &step.sources {
        let relative = Path::new(source);
        if relative.is_absolute() || relative.components().any(|c| c == Component::ParentDir) {
            bail!(
                "{dockerfile}:{}: COPY source `{source}` is outside the build context (the workspace root): copy files from inside it",
                step.line
            );
        }
        let path = context.join(relative);
        let metadata = fs::metadata(&path).with_context(|| {
            format!("{dockerfile}:{}: COPY source `{source}` does not exist in the build context (the workspace root); if it is a staged binary, the app's [[bin]] name must match", step.line)
        })?;
        if metadata.is_dir() {
            for (relative_file, file_path) in walk(&path)? {
                files.push(layer_file(&format!("{}/{relative_file}", step.dest.trim_end_matches('/')), file_path, step)?);
            }
        } else {
            let dest = if into_dir {
                format!("{}/{}", step.dest.trim_end_matches('/'), relative.file_name().unwrap_or_default().to_string_lossy())
            } else {
                step.dest.clone()
            };
            files.push(layer_file(&dest, path, step)?);
        }
    }
    Ok(files)
}

fn layer_file(dest: &str, source: PathBuf, step: &dockerfile::CopyStep) -> Result<LayerFile> {
    use std::os::unix::fs::PermissionsExt;
    // Modes are normalised to 755 or 644 so that a checkout's umask does not change digests.
    let executable = fs::metadata(&source)?.permissions().mode() & 0o111 != 0;
    let mode = step.chmod.unwrap_or(if executable { 0o755 } else { 0o644 });
    let (uid, gid) = step.chown.unwrap_or((0, 0));
    Ok(LayerFile { path: dest.to_string(), source, mode, uid, gid })
}

fn walk(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, dir)) = pending.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
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
