//! The build pipeline of `build` and `release`: reads every app's Dockerfile and base image,
//! cross-compiles the apps for every platform's Rust target in one cargo run, stages the binaries
//! where the Dockerfiles `COPY` them from, and makes one OCI index per app in an image layout under
//! `target/xtask/oci/<app>`. Each platform's image comes from one of two builders that produce the
//! same `ImageParts`: `native` (assembled here, without a daemon) or `engine` (the Docker engine).

pub mod attest;
pub mod auditable;
pub mod context;
pub mod dockerignore;
pub mod engine;
pub mod load;
pub mod native;
pub mod target;
pub mod toolchain;
pub mod zig;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use xshell::{cmd, Shell};

use crate::builder::context::BuildContext;
use crate::builder::engine::Engine;
use crate::builder::native::BaseParts;
use crate::builder::target::CompileTarget;
use crate::context::Context;
use crate::detect::harvest;
use crate::detect::inputs::AppInputs;
use crate::detect::SelectedApp;
use crate::flags;
use crate::image::dockerfile::cargo_stage::CargoOptions;
use crate::image::dockerfile::{self, Base};
use crate::image::fstree::FsTree;
use crate::image::layout::Layout;
use crate::image::libc::{self, GlibcVersion, Libc};
use crate::image::oci::{self, Descriptor};
use crate::image::platform::Platform;
use crate::image::{self as assembly, ImageParts};
use crate::progress::Progress;
use crate::repository::read::{self, BaseImage};
use crate::repository::store::Registries;
use crate::workspace::config::{Config, LibcPolicy};
use crate::workspace::git::Git;
use crate::workspace::{Member, Workspace};

/// One app's built image: an index in its own layout.
#[derive(Debug)]
pub struct BuiltImage {
    pub app: String,
    pub layout: PathBuf,
    pub index: Descriptor,
    /// The artifacts attached to its platform images (with --attest), in its layout.
    pub attachments: Vec<Descriptor>,
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
    pub fn record_inputs(&mut self, inputs: BTreeMap<String, AppInputs>) {
        self.inputs = inputs.into_iter().map(|(app, inputs)| (app, inputs.digest)).collect();
    }
}

/// The apps' input digests, for `Builder::build` to compute while cargo compiles: they cost a
/// full `cargo metadata`, which mostly waits for cargo, and would otherwise double a rebuild's time.
pub type DeferredInputs<'a> = Box<dyn FnOnce() -> Result<BTreeMap<String, AppInputs>> + Send + 'a>;

/// Builds `apps` from the work tree for `config`'s platforms into their layouts, as `build` and
/// the pre-push hook do: the commit's provenance, and its input digests when the tree is clean.
pub async fn build_work_tree(
    ctx: &Context,
    config: &Config,
    git: Option<&Git<'_>>,
    apps: &[SelectedApp],
    with: BuildWith<'_>,
    registries: &Registries,
    progress: &Progress,
) -> Result<Vec<BuiltImage>> {
    let head = git.and_then(|git| git.rev_parse("HEAD").ok());
    let provenance = Provenance::from_git(git, head.as_deref())?;
    let inputs: Option<DeferredInputs<'_>> = match (git, &head) {
        (Some(git), Some(head)) if !git.is_dirty()? => {
            let workspace = &ctx.workspace;
            Some(Box::new(move || crate::detect::evidence::current_inputs_in_new_shell(workspace, config, head)))
        }
        _ => None,
    };
    Builder { ctx, config, with, registries, progress, attest: false, signing_key: None }.build(apps, provenance, inputs).await
}

/// What the user chose to build with: native or engine (`--builder`), and the buildx builder
/// (`--engine-builder`).
#[derive(Clone, Copy)]
pub struct BuildWith<'a> {
    pub builder: flags::Builder,
    pub engine_builder: Option<&'a str>,
}

impl<'a> BuildWith<'a> {
    pub fn of(selection: &'a flags::Selection) -> BuildWith<'a> {
        BuildWith { builder: selection.builder, engine_builder: selection.engine_builder.as_deref() }
    }
}

/// How `build` and `release` build: the workspace, its settings, the builder the user asked for,
/// the registries base images are read from, and where progress goes.
pub struct Builder<'a> {
    pub ctx: &'a Context,
    pub config: &'a Config,
    pub with: BuildWith<'a>,
    pub registries: &'a Registries,
    pub progress: &'a Progress,
    /// Whether each platform image gets its SBOM and provenance attached (`attest`).
    pub attest: bool,
    /// The key that signs the provenance, when the release signs.
    pub signing_key: attest::SigningKey<'a>,
}

/// What is read before anything compiles: each app's recipe, and the base images of the recipes
/// (manifests and configs only). An engine recipe's base that cannot be read from a registry (an
/// image only the engine has) is `None`: its layers are then taken from what the engine saved.
struct Plans {
    recipes: BTreeMap<String, AppRecipe>,
    bases: BTreeMap<String, BaseImage>,
    /// The file trees of the native recipes' bases, per platform: what a COPY or WORKDIR meets.
    trees: BTreeMap<(String, Platform), FsTree>,
    engine_bases: BTreeMap<String, Option<BaseImage>>,
    /// The images of `docker/` built so far in this run, which later images start FROM.
    local_bases: BTreeMap<String, LocalBase>,
    /// The C library each member's platform image starts from (an image of `docker/` has its
    /// own base's).
    libcs: BTreeMap<(String, Platform), Libc>,
    /// What each app's binary for each platform is compiled for.
    targets: BTreeMap<(String, Platform), CompileTarget>,
}

impl Builder<'_> {
    /// Builds every app for every platform. Every Dockerfile and base image is read, and the
    /// engine reached if one is needed, before compiling anything, so that a malformed
    /// Dockerfile fails in a second; `inputs`, when given, are computed while cargo compiles and
    /// recorded in `provenance`.
    pub async fn build(
        &self,
        apps: &[SelectedApp],
        mut provenance: Provenance,
        inputs: Option<DeferredInputs<'_>>,
    ) -> Result<Vec<BuiltImage>> {
        let workspace = &self.ctx.workspace;
        // The monorepo images the apps start FROM are built first, in this run, whether or not
        // they are released with them.
        let names: Vec<String> = apps.iter().map(|app| app.name.clone()).collect();
        let (order, _) = workspace.build_order(&names);
        let members: Vec<&Member> = order.iter().map(|name| workspace.member(name).expect("selected apps are members")).collect();
        let mut plans = self.plan(&members).await?;
        let engine = match plans.recipes.values().any(|recipe| matches!(recipe.recipe, Recipe::Engine(_))) {
            true => Some(Engine::connect(&self.ctx.sh, self.with.engine_builder)?),
            false => None,
        };
        let inputs = std::thread::scope(|scope| {
            let inputs = inputs.map(|compute| scope.spawn(compute));
            // Only the crates whose binaries the images copy are compiled, each once.
            let mut staged: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
            for member in &members {
                let recipe = &plans.recipes[&member.name];
                if let Some(package) = member.package.as_deref().filter(|_| !recipe.staged.is_empty()) {
                    staged.entry(package).or_default().extend(recipe.staged.iter().cloned());
                }
            }
            let crates: Vec<(&Member, &BTreeSet<String>)> =
                staged.iter().map(|(package, bins)| (workspace.member(package).expect("a package is a workspace crate"), bins)).collect();
            self.progress.section("cargo build", || compile(&self.ctx.sh, workspace, self.config, &crates, &plans.targets))?;
            inputs.map(|thread| thread.join().expect("computing input digests does not panic")).transpose()
        })?;
        if let Some(inputs) = inputs {
            provenance.record_inputs(inputs);
        }
        let attester = if self.attest { Some(attest::Attester::new(workspace, &self.config.supply_chain.sbom)?) } else { None };
        let mut built: BTreeMap<String, BuiltImage> = BTreeMap::new();
        for member in &members {
            let image = self.assemble(member, &plans, engine.as_ref(), &provenance, attester.as_ref())?;
            if !member.is_crate {
                let local = LocalBase::read(&image, &self.config.platforms)?;
                let layout = Layout::open(&local.layout)?;
                // Its file tree is read (from its layers) only when a native build on it writes files.
                let needed = plans.recipes.values().any(|recipe| match &recipe.recipe {
                    Recipe::Native(native) => native
                        .values()
                        .any(|plan| plan.changes_files() && matches!(&plan.base, Base::Image { image, .. } if *image == member.name)),
                    Recipe::Engine(_) => false,
                });
                for (platform, (manifest, _)) in local.image.images.iter().filter(|_| needed) {
                    let tree =
                        read::base_tree(self.registries, &local.image.source, manifest, Some(&self.tree_cache()), Some(&layout)).await?;
                    plans.trees.insert((member.name.clone(), platform.clone()), tree);
                }
                // An engine reads it whole: the layers it took from a registry base come too.
                let for_engine = members.iter().any(|app| {
                    matches!(plans.recipes.get(&app.name).map(|recipe| &recipe.recipe), Some(Recipe::Engine(_)))
                        && workspace.image_bases(&app.name).contains(&member.name.as_str())
                });
                for (manifest, _) in local.image.images.values().filter(|_| for_engine) {
                    read::complete_layout(self.registries, &layout, manifest).await?;
                }
                plans.local_bases.insert(member.name.clone(), local);
            }
            built.insert(member.name.clone(), image);
        }
        Ok(names.iter().map(|name| built.remove(name).expect("every selected app was built")).collect())
    }

    async fn plan(&self, members: &[&Member]) -> Result<Plans> {
        let mut plans = Plans {
            recipes: BTreeMap::new(),
            bases: BTreeMap::new(),
            trees: BTreeMap::new(),
            engine_bases: BTreeMap::new(),
            local_bases: BTreeMap::new(),
            libcs: BTreeMap::new(),
            targets: BTreeMap::new(),
        };
        for member in members {
            let dockerfile = member.dockerfile.as_deref().expect("apps have a Dockerfile");
            let text = member.dockerfile_text(&self.ctx.workspace.root)?;
            let (recipe, why) = recipe(self.with.builder, &text, dockerfile, &self.config.platforms, member, &self.ctx.workspace)?;
            if self.with.builder == flags::Builder::Auto {
                eprintln!("{}: {why}", member.name);
            }
            let monorepo_bases = self.ctx.workspace.image_bases(&member.name);
            if let Recipe::Native(native) = &recipe.recipe {
                for (platform, plan) in native {
                    if let Base::Image { image, line } = &plan.base {
                        if !plans.bases.contains_key(image) && !monorepo_bases.contains(&image.as_str()) {
                            let base = read::resolve_base(self.registries, image, &self.config.platforms)
                                .await
                                .with_context(|| format!("{dockerfile}:{line}: FROM {image}"))?;
                            plans.bases.insert(image.clone(), base);
                        }
                        let key = (image.clone(), platform.clone());
                        if plan.changes_files() && !plans.trees.contains_key(&key) && !monorepo_bases.contains(&image.as_str()) {
                            let (manifest, _) = &plans.bases[image].images[&key.1];
                            let tree =
                                read::base_tree(self.registries, &plans.bases[image].source, manifest, Some(&self.tree_cache()), None)
                                    .await
                                    .with_context(|| format!("{dockerfile}:{line}: FROM {image}"))?;
                            plans.trees.insert(key, tree);
                        }
                    }
                }
            }
            if let Recipe::Engine(texts) = &recipe.recipe {
                self.read_engine_bases(member, texts, &monorepo_bases, &mut plans.engine_bases).await;
            }
            // The base's C library decides what the app's binary is compiled for, and an image
            // of docker/ passes its own on to the images built on it; nobody else needs it, and
            // finding it may read the base's layers.
            let is_a_base = members.iter().any(|other| self.ctx.workspace.image_bases(&other.name).contains(&member.name.as_str()));
            let platforms = if recipe.staged.is_empty() && !is_a_base { &[][..] } else { &self.config.platforms[..] };
            for platform in platforms {
                let base = match &recipe.recipe {
                    Recipe::Native(native) => Some(native[platform].base.clone()),
                    Recipe::Engine(texts) => dockerfile::final_base(&texts[platform], &member.build_args(platform)),
                };
                let libc =
                    self.base_libc(base, platform, &monorepo_bases, &mut plans).await.with_context(|| format!("{dockerfile}: FROM"))?;
                plans.libcs.insert((member.name.clone(), platform.clone()), libc);
                if let Some(package) = member.package.as_ref().filter(|_| !recipe.staged.is_empty()) {
                    // A builder stage that built for musl keeps its binary static.
                    let policy = if recipe.musl { LibcPolicy::Musl } else { self.config.libc };
                    let target = target::choose(&self.config.targets[platform], policy, self.config.glibc, libc);
                    plans.targets.insert((package.clone(), platform.clone()), target);
                }
            }
            plans.recipes.insert(member.name.clone(), recipe);
            if member.is_crate && member.bin.is_none() {
                bail!(
                    "app `{}` has no binary target: an app's image carries its crate's binary, so give {}/Cargo.toml a [[bin]] or src/main.rs",
                    member.name,
                    member.dir
                );
            }
        }
        Ok(plans)
    }

    /// The C library of the image a member's platform image starts from: none for scratch, an
    /// image of `docker/`'s own base's, a registry image's from its file tree (read here when the
    /// native builder did not need it; an engine's base that no registry has counts as static).
    async fn base_libc(&self, base: Option<Base>, platform: &Platform, monorepo_bases: &[&str], plans: &mut Plans) -> Result<Libc> {
        let Some(Base::Image { image, .. }) = base else { return Ok(Libc::Static) };
        let key = (image.clone(), platform.clone());
        if monorepo_bases.contains(&image.as_str()) {
            return Ok(plans.libcs.get(&key).copied().unwrap_or(Libc::Static));
        }
        if let Some(tree) = plans.trees.get(&key) {
            return Ok(libc::of_tree(tree));
        }
        let Some(base) = plans.bases.get(&image).or_else(|| plans.engine_bases.get(&image)?.as_ref()) else { return Ok(Libc::Static) };
        let Some((manifest, _)) = base.images.get(platform) else { return Ok(Libc::Static) };
        let tree = read::base_tree(self.registries, &base.source, manifest, Some(&self.tree_cache()), None).await?;
        let found = libc::of_tree(&tree);
        plans.trees.insert(key, tree);
        Ok(found)
    }

    /// Where the listings of base images' layers are kept between runs; `-2` since they carry
    /// what was read of glibc's files, which earlier listings lack.
    fn tree_cache(&self) -> PathBuf {
        self.ctx.workspace.target_dir.join("xtask/cache/base-layers-2")
    }

    /// The base images of an engine recipe, from their registries, so that the layers an image
    /// shares with its base keep the base's bytes and are mounted rather than re-encoded.
    async fn read_engine_bases(
        &self,
        member: &Member,
        texts: &BTreeMap<Platform, String>,
        monorepo_bases: &[&str],
        bases: &mut BTreeMap<String, Option<BaseImage>>,
    ) {
        for (platform, text) in texts {
            for image in dockerfile::base_images(text, &member.build_args(platform)) {
                if bases.contains_key(&image) || monorepo_bases.contains(&image.as_str()) {
                    continue;
                }
                let base = match read::resolve_base(self.registries, &image, &self.config.platforms).await {
                    Ok(base) => Some(base),
                    Err(err) => {
                        eprintln!("note: base image {image} cannot be read from a registry ({err:#}), so the layers it gives the image are re-encoded and uploaded");
                        None
                    }
                };
                bases.insert(image, base);
            }
        }
    }

    /// Writes one app's image for every platform, and its index tagged `latest`, into its layout.
    fn assemble(
        &self,
        member: &Member,
        plans: &Plans,
        engine: Option<&Engine<'_>>,
        provenance: &Provenance,
        attester: Option<&attest::Attester<'_>>,
    ) -> Result<BuiltImage> {
        let layout_dir = self.ctx.workspace.target_dir.join("xtask/oci").join(&member.name);
        let layout = Layout::create(&layout_dir)?;
        // A monorepo base's layers are copied from its layout: the image is whole without a
        // registry, and a push finds them in the repository the base was pushed to first.
        for base in self.ctx.workspace.image_bases(&member.name) {
            plans.local_bases[base].copy_layers_into(&layout)?;
        }
        let annotations = annotations(member, provenance);
        let mut manifests = Vec::new();
        let mut attachments = Vec::new();
        for platform in &self.config.platforms {
            let mut parts = self.platform_parts(&layout, member, platform, plans, engine, provenance.epoch)?;
            // A rewritten COPY of a staged binary is recorded as the Dockerfile wrote it.
            for (rewritten, original) in plans.recipes[&member.name].history.get(platform).into_iter().flatten() {
                for entry in parts.history.iter_mut().filter(|entry| entry.created_by.as_ref() == Some(rewritten)) {
                    entry.created_by = Some(original.clone());
                }
            }
            let manifest = assembly::write_image(&layout, platform, parts, &annotations, provenance.epoch)?;
            if let Some(attester) = attester {
                let base = base_of(member, platform, plans);
                let base = base.as_ref().map(|(image, digest)| (image.as_str(), digest));
                let compiled = member.package.as_ref().and_then(|package| plans.targets.get(&(package.clone(), platform.clone())));
                let target = compiled.map_or(&self.config.targets[platform], |target| &target.triple);
                attachments.extend(attester.attach(&layout, member, platform, target, &manifest, base, provenance, self.signing_key)?);
            }
            manifests.push(manifest);
        }
        let mut index_annotations = annotations;
        index_annotations.insert(oci::APP_ANNOTATION.to_string(), member.name.clone());
        if let Some(inputs) = provenance.inputs.get(&member.name) {
            index_annotations.insert(crate::detect::inputs::ANNOTATION.to_string(), inputs.to_string());
        }
        let index = assembly::write_index(&layout, manifests, index_annotations)?;
        layout.tag("latest", &index)?;
        Ok(BuiltImage { app: member.name.clone(), layout: layout_dir, index, attachments })
    }

    /// One platform's layers and configuration, from the app's recipe.
    fn platform_parts(
        &self,
        layout: &Layout,
        member: &Member,
        platform: &Platform,
        plans: &Plans,
        engine: Option<&Engine<'_>>,
        epoch: u64,
    ) -> Result<ImageParts> {
        let workspace = &self.ctx.workspace;
        let dockerfile = member.dockerfile.as_deref().expect("apps have a Dockerfile");
        let recipe = &plans.recipes[&member.name];
        match &recipe.recipe {
            Recipe::Native(native) => {
                let plan = &native[platform];
                let (base, tree) = match &plan.base {
                    Base::Scratch => (None, FsTree::new()),
                    Base::Image { image, .. } => {
                        let base = plans.local_bases.get(image).map_or_else(|| &plans.bases[image], |local| &local.image);
                        let tree = plans.trees.get(&(image.clone(), platform.clone())).cloned().unwrap_or_default();
                        (Some((base.source.as_str(), &base.images[platform])), tree)
                    }
                };
                // A context of the staged binaries alone has no .dockerignore of the Dockerfile's.
                let ignore_file =
                    if recipe.context == workspace.root { workspace.root.join(dockerfile) } else { recipe.context.join("Dockerfile") };
                let context = BuildContext::open(&recipe.context, &ignore_file)?;
                Ok(native::assemble(layout, &context, plan, base, tree, epoch)?.0)
            }
            Recipe::Engine(texts) => {
                let engine = engine.expect("connected when a recipe needs it");
                let work = workspace.target_dir.join("xtask/engine").join(&member.name);
                // The monorepo images it starts FROM go into the engine under their names, for
                // this platform, from their layouts: the engine finds them there and pulls nothing.
                let monorepo_bases = workspace.image_bases(&member.name);
                let local_images: Vec<engine::LocalImage<'_>> =
                    monorepo_bases.iter().map(|base| plans.local_bases[*base].local_image(base, platform)).collect();
                if !engine.reads_layouts() {
                    for base in &monorepo_bases {
                        plans.local_bases[*base].load_into(engine, base, platform, &work)?;
                    }
                }
                let saved = self.progress.section(&format!("docker build {} {platform}", member.name), || {
                    let build_args = member.build_args(platform);
                    let build = engine::Build {
                        dockerfile,
                        text: &texts[platform],
                        build_args: &build_args,
                        stage_context: recipe.stage_context.as_deref(),
                        local_images: &local_images,
                    };
                    engine.build(&member.name, &build, platform, &recipe.context, &work, &monorepo_bases)
                })?;
                let local = monorepo_bases.iter().map(|base| &plans.local_bases[*base].image);
                let bases: Vec<BaseParts<'_>> = plans
                    .engine_bases
                    .values()
                    .flatten()
                    .chain(local)
                    .filter_map(|base| Some((base.source.as_str(), base.images.get(platform)?)))
                    .collect();
                let image = engine::import(&saved, &bases, layout, epoch)?;
                fs::remove_file(&saved.archive)?;
                Ok(image)
            }
        }
    }
}

/// The image `member`'s `platform` image is built on, with its platform manifest's digest, as
/// far as the build read it (a registry base, or an image of `docker/`); `None` for scratch.
fn base_of(member: &Member, platform: &Platform, plans: &Plans) -> Option<(String, oci::Digest)> {
    let image = match &plans.recipes[&member.name].recipe {
        Recipe::Native(native) => match &native[platform].base {
            Base::Image { image, .. } => image.clone(),
            Base::Scratch => return None,
        },
        Recipe::Engine(texts) => dockerfile::base_images(&texts[platform], &member.build_args(platform)).pop()?,
    };
    let base = plans
        .local_bases
        .get(&image)
        .map(|local| &local.image)
        .or_else(|| plans.bases.get(&image))
        .or_else(|| plans.engine_bases.get(&image)?.as_ref())?;
    Some((image, base.digests.get(platform)?.clone()))
}

/// An image of `docker/` built earlier in the run, read back from its layout as a base.
struct LocalBase {
    layout: PathBuf,
    image: BaseImage,
    /// Its platform manifests.
    manifests: BTreeMap<Platform, Descriptor>,
}

impl LocalBase {
    fn read(built: &BuiltImage, platforms: &[Platform]) -> Result<LocalBase> {
        let layout = Layout::open(&built.layout)?;
        let index: oci::ImageIndex = serde_json::from_slice(&layout.read_blob(&built.index)?).context("a built index is unreadable")?;
        let mut images = BTreeMap::new();
        let mut manifests = BTreeMap::new();
        for (platform, entry) in platforms.iter().zip(&index.manifests) {
            manifests.insert(platform.clone(), entry.clone());
            let manifest: oci::ImageManifest =
                serde_json::from_slice(&layout.read_blob(entry)?).context("a built manifest is unreadable")?;
            let config: oci::ImageConfig =
                serde_json::from_slice(&layout.read_blob(&manifest.config)?).context("a built configuration is unreadable")?;
            images.insert(platform.clone(), (manifest, config));
        }
        let digests = manifests.iter().map(|(platform, descriptor)| (platform.clone(), descriptor.digest.clone())).collect();
        let image = BaseImage { source: format!("the layout {}", built.layout.display()), images, digests };
        Ok(LocalBase { layout: built.layout.clone(), image, manifests })
    }

    /// Its `platform` image, as a build FROM `name` reads it from the layout (which holds all its
    /// layers once `read::complete_layout` fetched those of its registry base).
    fn local_image<'a>(&'a self, name: &'a str, platform: &Platform) -> engine::LocalImage<'a> {
        engine::LocalImage { name, layout: &self.layout, manifest: &self.manifests[platform].digest }
    }

    /// Puts its `platform` image into the engine as `<name>:latest`, the name a FROM gives it.
    fn load_into(&self, engine: &Engine<'_>, name: &str, platform: &Platform, work: &Path) -> Result<()> {
        fs::create_dir_all(work)?;
        let archive = work.join(format!("{name}-{}.tar", platform.to_string().replace('/', "-")));
        let mut out = std::io::BufWriter::new(fs::File::create(&archive)?);
        crate::image::archive::write_archive(
            &Layout::open(&self.layout)?,
            &self.manifests[platform],
            &[format!("{name}:latest")],
            &mut out,
        )
        .with_context(|| format!("cannot write the image {name} for the engine"))?;
        out.into_inner().map_err(|err| err.into_error())?;
        engine.load(&archive)?;
        fs::remove_file(&archive)?;
        Ok(())
    }

    fn copy_layers_into(&self, layout: &Layout) -> Result<()> {
        let source = Layout::open(&self.layout)?;
        for (manifest, _) in self.image.images.values() {
            for layer in &manifest.layers {
                // The base's own base layers may live in a registry: they stay recorded there.
                match source.foreign_source(&layer.digest)? {
                    Some(repository) if !source.has_blob(&layer.digest) => layout.record_foreign(&layer.digest, &repository)?,
                    _ => {
                        layout.copy_blob_from(&source, layer)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// How one app's image is made, and from what.
struct AppRecipe {
    recipe: Recipe,
    /// The build context: the workspace root, or `target/stage` when the Dockerfile's builder
    /// stages were replaced and the stages left read nothing else.
    context: PathBuf,
    /// The binaries of the app's crate its image copies from `target/stage/<platform>/`; none
    /// when the Dockerfile uses no binary of the xtask's, and the crate is then not compiled.
    staged: BTreeSet<String>,
    /// Whether the replaced builder stage built for a musl target, which the binary then keeps.
    musl: bool,
    /// Per platform, the history entries of the rewritten COPYs and those of the COPYs as written
    /// (`cargo_stage::Replacement::history`).
    history: BTreeMap<Platform, Vec<(String, String)>>,
    /// `target/stage/`, when the engine gets it as the named build context
    /// `cargo_stage::STAGE_CONTEXT` (the context's .dockerignore leaves it out).
    stage_context: Option<PathBuf>,
}

/// How one app's image is built.
enum Recipe {
    /// Assembled by the xtask: the Dockerfile's plan for each platform.
    Native(BTreeMap<Platform, dockerfile::ImagePlan>),
    /// Built by the Docker engine from the Dockerfile's text for each platform.
    Engine(BTreeMap<Platform, String>),
}

/// Chooses the builder for one Dockerfile and says why. Builder stages that run cargo are
/// replaced by the xtask's build where the image gets the same files (`cargo_stage`), for every
/// platform or none. Then `auto` sends a Dockerfile the native builder declines
/// (`dockerfile::Declined`) to the engine; a malformed one is an error either way.
/// How a build with the automatic builder makes `member`'s image of `text` for `platforms`, as
/// its first line says it: the builder stage replaced or kept, the rest assembled natively or
/// built by the engine, and why (what `adopt` reports of each image it finds).
pub fn how_built(text: &str, dockerfile: &str, platforms: &[Platform], member: &Member, workspace: &Workspace) -> Result<String> {
    recipe(flags::Builder::Auto, text, dockerfile, platforms, member, workspace).map(|(_, why)| why)
}

fn recipe(
    builder: flags::Builder,
    text: &str,
    dockerfile: &str,
    platforms: &[Platform],
    member: &Member,
    workspace: &Workspace,
) -> Result<(AppRecipe, String)> {
    use dockerfile::cargo_stage::{self, CargoStages};
    let root = &workspace.root;
    // The profile and features the crate is built with, for every image of it.
    let crate_options =
        member.package.as_deref().and_then(|package| workspace.member(package)).map(|crate_member| &crate_member.cargo_options);

    let mut texts = BTreeMap::new();
    let mut staged = BTreeSet::new();
    let mut reads_context = true;
    let mut musl = false;
    let mut history = BTreeMap::new();
    let mut replaced: Option<String> = None;
    let mut kept: Option<String> = None;
    let mut in_stage_context = false;
    for platform in platforms {
        let found = cargo_stage::replace(text, dockerfile, &member.build_args_on(platform, &Platform::host()), &platform.to_string())?;
        let found = match found {
            CargoStages::Replaced(replacement)
                if member.package.is_none() || replacement.package.as_ref().is_some_and(|package| Some(package) != member.package.as_ref()) =>
            {
                CargoStages::Kept(format!("{dockerfile}: its builder stage builds no crate of the workspace, or another than {}'s", member.name))
            }
            CargoStages::Replaced(replacement) if Some(&replacement.options) != crate_options => CargoStages::Kept(format!(
                "{dockerfile}: its builder stage builds {} with {}, and another image of the crate builds it with {}: the xtask builds one binary per crate",
                member.package.as_deref().unwrap_or_default(),
                replacement.options,
                crate_options.map(ToString::to_string).unwrap_or_default()
            )),
            // The binaries come from a named build context instead, which only an engine reads.
            CargoStages::Replaced(mut replacement)
                if replacement.reads_context && replacement.bins.iter().any(|bin| ignored(root, dockerfile, platform, bin)) =>
            {
                let (text, history) = replacement.in_stage_context.take().expect("made when the stages read the context");
                (replacement.text, replacement.history) = (text, history);
                in_stage_context = true;
                CargoStages::Replaced(replacement)
            }
            found => found,
        };
        match found {
            CargoStages::None => {}
            CargoStages::Kept(why) => kept = Some(why),
            CargoStages::Replaced(replacement) => {
                staged.extend(replacement.bins);
                reads_context = replacement.reads_context;
                musl |= replacement.musl;
                history.insert(platform.clone(), replacement.history);
                replaced = Some(replacement.why);
                texts.insert(platform.clone(), replacement.text);
            }
        }
    }
    if kept.is_some() || replaced.is_none() {
        texts = platforms.iter().map(|platform| (platform.clone(), text.to_string())).collect();
        replaced = None;
        staged.clear();
        reads_context = true;
        musl = false;
        history.clear();
        in_stage_context = false;
        // The convention of the workspace's own Dockerfiles: they copy the crate's binary.
        if text.contains("target/stage/") {
            staged.extend(member.bin.clone());
        }
    }
    let context = if reads_context { root.to_path_buf() } else { root.join("target/stage") };
    let replaced = replaced.map_or(String::new(), |why| format!("{why}; the rest is "));
    let kept =
        kept.map_or(String::new(), |why| format!(", its cargo build included (under emulation for another architecture), because {why}"));
    let engine = |why: String| {
        let recipe = Recipe::Engine(texts.clone());
        let stage_context = in_stage_context.then(|| root.join("target/stage"));
        Ok((AppRecipe { recipe, context: context.clone(), staged: staged.clone(), musl, history: history.clone(), stage_context }, why))
    };
    if builder == flags::Builder::Engine {
        return engine(format!("{replaced}built by the Docker engine (--builder engine){kept}"));
    }
    if in_stage_context {
        if builder == flags::Builder::Native {
            bail!(
                "{dockerfile}: its stages read the build context, whose .dockerignore leaves out target/stage/, where the xtask stages the binaries, so only an engine can read them (from a named build context): add `!target/stage` to the .dockerignore to assemble it natively, or build with --builder auto"
            );
        }
        return engine(format!(
            "{replaced}built by the Docker engine, because its stages read the build context, whose .dockerignore leaves out target/stage/: the engine reads the staged binaries from the named build context {}",
            cargo_stage::STAGE_CONTEXT
        ));
    }
    let mut plans = BTreeMap::new();
    for platform in platforms {
        match dockerfile::plan(&texts[platform], dockerfile, &member.build_args_on(platform, &Platform::host())) {
            Ok(plan) => plans.insert(platform.clone(), plan),
            Err(err) => match err.downcast_ref::<dockerfile::Declined>() {
                Some(declined) if builder == flags::Builder::Auto => {
                    return engine(format!(
                        "{replaced}built by the Docker engine, because {} has {}, which the native builder does not assemble{kept}",
                        declined.at, declined.what
                    ));
                }
                _ => return Err(err),
            },
        };
    }
    let recipe = AppRecipe { recipe: Recipe::Native(plans), context, staged, musl, history, stage_context: None };
    Ok((recipe, format!("{replaced}assembled natively (its Dockerfile needs no engine)")))
}

/// Whether the Dockerfile's `.dockerignore` leaves the staged `bin` of `platform` out of the
/// workspace as a build context.
fn ignored(root: &Path, dockerfile: &str, platform: &Platform, bin: &str) -> bool {
    crate::builder::dockerignore::Dockerignore::read(root, &root.join(dockerfile))
        .map(|ignore| ignore.excludes(&format!("target/stage/{platform}/{bin}")))
        .unwrap_or(false)
}

/// Compiles every app for every platform's target (`targets`), then copies each binary to
/// `target/stage/<platform>/<bin>`, where the Dockerfiles expect it. Each binary must be what
/// `cargo build -p APP --target T` makes alone: one cargo run for several apps unifies a shared
/// dependency's features across them, and one run for several targets across those. So each
/// target gets a run of its own, and the apps share it only where the simulated resolution
/// (`Resolver::targets_where_builds_agree`) shows that no app's build would change by it, and
/// where they are linked by the same linker; elsewhere each app gets a run of its own. Artifacts
/// whose features agree are shared through the target directory either way.
///
/// A target whose apps compile C code, and every gnu target, gets zig as its C toolchain
/// (`zig`): one glibc version per target, the oldest its apps' bases have, so that one set of
/// artifacts serves them all. Pure-Rust apps for musl are linked by rust-lld as configured.
fn compile(
    sh: &Shell,
    workspace: &Workspace,
    config: &Config,
    apps: &[(&Member, &BTreeSet<String>)],
    targets: &BTreeMap<(String, Platform), CompileTarget>,
) -> Result<()> {
    let members: Vec<&Member> = apps.iter().map(|(member, _)| *member).collect();
    // One glibc version per gnu target: the oldest its apps' bases have.
    let mut glibc: BTreeMap<&str, Option<GlibcVersion>> = BTreeMap::new();
    let mut triples: Vec<&String> = Vec::new();
    for target in targets.values() {
        let pinned = glibc.entry(target.triple.as_str()).or_insert(target.glibc);
        *pinned = match (*pinned, target.glibc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if !triples.contains(&&target.triple) {
            triples.push(&target.triple);
        }
    }
    let names: Vec<String> = members.iter().map(|member| member.name.clone()).collect();
    // The apps that build for `triple` (for one of their platforms).
    let apps_for = |triple: &str| -> Vec<&String> {
        names.iter().filter(|name| targets.iter().any(|((app, _), target)| app == *name && target.triple == triple)).collect()
    };
    // Every binary carries its dependency list (cargo-auditable's format), and which apps
    // compile C comes from the same resolution; the build needs the resolved graph anyway.
    let resolver = workspace.graph.resolver().context("the binaries' dependency lists need the workspace's resolved graph")?;
    let mut compiles_c: BTreeSet<(String, String)> = BTreeSet::new();
    let sysroot = std::env::var_os("PKG_CONFIG_SYSROOT_DIR").is_some();
    for triple in &triples {
        for app in apps_for(triple) {
            let native = resolver.native_code(app, triple)?;
            let sysroot = sysroot || std::env::var_os(format!("PKG_CONFIG_SYSROOT_DIR_{}", triple.replace('-', "_"))).is_some();
            if let Some(library) = native.system_libraries.first().filter(|_| !sysroot) {
                bail!(
                    "{app} links the system's {} for {triple} (through `{}`: {}), which no cross toolchain has: build it from source with {}, or give the build a sysroot that has it for {triple} (PKG_CONFIG_SYSROOT_DIR_{} and PKG_CONFIG_PATH_{}; README, \"C code and glibc\")",
                    library.library,
                    library.package,
                    library.path.join(" → "),
                    library.how,
                    triple.replace('-', "_"),
                    triple.replace('-', "_"),
                );
            }
            if native.compiles_c() {
                // Said before minutes of compiling: which crates compile C, and through what.
                if !compiles_c.iter().any(|(known, _)| known == app) {
                    let crates: Vec<String> = native
                        .c_packages
                        .iter()
                        .map(|path| format!("{} ({})", path.last().cloned().unwrap_or_default(), path.join(" → ")))
                        .collect();
                    eprintln!("{app} compiles C code, with zig as its C toolchain: {}", crates.join(", "));
                }
                compiles_c.insert((app.clone(), triple.to_string()));
            }
        }
    }
    let links_with_zig = |app: &str, triple: &str| target::is_gnu(triple) || compiles_c.contains(&(app.to_string(), triple.to_string()));
    let zig_triples: Vec<&String> =
        triples.iter().copied().filter(|triple| apps_for(triple).iter().any(|app| links_with_zig(app, triple))).collect();
    let prepared = toolchain::prepare_targets(sh, &workspace.root, &triples, &zig_triples)?;
    let cargo = crate::workspace::cargo();
    let cargo_home = crate::workspace::cargo_home().unwrap_or_default();
    let env = |key: &str| std::env::var(key).ok();
    let remap = toolchain::remap_flags(&workspace.root, &cargo_home, &triples, &env);
    let mut toolchains = BTreeMap::new();
    if !zig_triples.is_empty() {
        let why = match zig_triples.iter().find(|triple| target::is_gnu(triple)) {
            Some(triple) => format!("the build links apps for {triple} against their bases' glibc"),
            None => {
                format!("the apps' builds compile C code for {}", zig_triples.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" and "))
            }
        };
        let zig = zig::Zig::locate(sh, &why)?;
        let exe = std::env::current_exe().context("cannot find the xtask's own executable, which wraps zig")?;
        for triple in &zig_triples {
            let zig_target = zig::zig_target(triple, glibc[triple.as_str()])?;
            let linked: Vec<&str> = apps_for(triple).into_iter().filter(|app| links_with_zig(app, triple)).map(String::as_str).collect();
            match glibc[triple.as_str()] {
                Some(version) => eprintln!(
                    "{triple}: {} linked against glibc {version} by zig {} (the oldest glibc of their bases)",
                    linked.join(", "),
                    zig.version
                ),
                None => eprintln!("{triple}: {} compiled and linked with zig {} (C code in their builds)", linked.join(", "), zig.version),
            }
            toolchains.insert(triple.as_str(), zig::Toolchain::write(&workspace.target_dir.join("xtask/zig"), &exe, &zig, &zig_target)?);
        }
    }
    let prefixes = toolchain::remap_prefixes(&workspace.root, &cargo_home);
    let embedding = auditable::Embedding::prepare(workspace, resolver, &members, &triples)?.environment()?;
    let options_of = |app: &str| workspace.member(app).map(|member| member.cargo_options.clone()).unwrap_or_default();
    for triple in &triples {
        // The apps linked by zig and those linked as configured never share a run: an app's
        // binary does not depend on which other apps were built beside it.
        let mut by_linker: BTreeMap<bool, Vec<String>> = BTreeMap::new();
        for app in apps_for(triple) {
            by_linker.entry(links_with_zig(app, triple)).or_default().push(app.clone());
        }
        for (link, group) in by_linker {
            // Without a resolvable graph (offline, crates not downloaded) every app builds alone,
            // and so does an app built with other features or another profile than the defaults.
            let agree = group.len() > 1
                && group.iter().all(|app| options_of(app) == CargoOptions::default())
                && resolver
                    .targets_where_builds_agree(&group, &[triple.as_str()])
                    .map(|agreeing| agreeing.contains(triple.as_str()))
                    .unwrap_or(false);
            let runs: Vec<Vec<&String>> = if agree { vec![group.iter().collect()] } else { group.iter().map(|app| vec![app]).collect() };
            for apps in runs {
                let options = &options_of(apps[0]);
                let mut args: Vec<String> = vec!["build".into()];
                args.extend(options.cargo_args());
                args.extend(["--locked", "--target", triple].map(String::from));
                for app in &apps {
                    args.extend(["--package".to_string(), app.to_string()]);
                }
                let mut command = cmd!(sh, "{cargo}");
                // A musl target's default linker; zig's, set below, takes its place where zig links.
                for (key, value) in &prepared.default_linkers {
                    command = command.env(key, value);
                }
                for (key, value) in &embedding {
                    command = command.env(key, value);
                }
                // Profile settings a builder stage gave as variables, and what its build scripts
                // and macros read.
                for (key, value) in options.profile_env.iter().chain(&options.env) {
                    command = command.env(key, value);
                }
                // The C toolchain is the same for every run of the target, so that the build
                // scripts that compile C do not run again between them.
                if let Some(toolchain) = toolchains.get(triple.as_str()) {
                    for (key, value) in toolchain.environment(triple, link, &prefixes, &env) {
                        command = command.env(key, value);
                    }
                }
                // A builder stage's RUSTFLAGS take the place of configured ones, as in its build.
                // Where the xtask chooses the linker, configured flags that choose another give
                // way: the rest of the configured flags are given in the environment, where
                // they take the place of the configured ones.
                let rust_lld = prepared.links_with_rust_lld(triple);
                let user_flags = match options.rustflags.is_empty() {
                    false => Some(options.rustflags.clone()),
                    true if (link || rust_lld) && env("RUSTFLAGS").is_none() && env("CARGO_ENCODED_RUSTFLAGS").is_none() => {
                        prepared.rustflags_without_linker.get(triple.as_str()).cloned()
                    }
                    true => None,
                };
                let stage_flags = user_flags.map(|flags| {
                    let encoded = flags.join("\x1f");
                    let env = |key: &str| if key == "CARGO_ENCODED_RUSTFLAGS" { Some(encoded.clone()) } else { env(key) };
                    toolchain::remap_flags(&workspace.root, &cargo_home, &triples, &env)
                });
                match stage_flags.as_ref().unwrap_or(&remap) {
                    toolchain::RemapFlags::Environment(flags) => {
                        command = command.env("CARGO_ENCODED_RUSTFLAGS", flags).env_remove("RUSTFLAGS")
                    }
                    toolchain::RemapFlags::Config(config) => args.extend(config.iter().cloned()),
                }
                let linker = match toolchains.get(triple.as_str()) {
                    Some(toolchain) if link => format!("zig cc -target {}", toolchain.zig_target),
                    _ if rust_lld => "rust-lld, as no configuration names a linker for it".to_string(),
                    _ => "the configured linker".to_string(),
                };
                command.args(args).run().with_context(|| {
                    format!(
                        "cargo could not build {} for {triple} (linked by {linker}): fix what cargo printed above and run the command again",
                        apps.iter().map(|app| app.as_str()).collect::<Vec<_>>().join(", ")
                    )
                })?;
            }
        }
    }
    for member in &members {
        let own: Vec<&String> =
            config.platforms.iter().filter_map(|platform| Some(&targets.get(&(member.name.clone(), platform.clone()))?.triple)).collect();
        report_reads_outside_crates(workspace, config, member, &own)?;
    }
    for platform in &config.platforms {
        let stage = workspace.root.join("target/stage").join(platform.to_string());
        fs::create_dir_all(&stage)?;
        for (member, bins) in apps {
            let triple = &targets[&(member.name.clone(), platform.clone())].triple;
            for bin in bins.iter() {
                let built = workspace.target_dir.join(triple).join(member.cargo_options.profile_dir()).join(bin);
                fs::copy(&built, stage.join(bin))
                    .with_context(|| format!("cannot stage {}: is `{bin}` a binary of {}'s crate?", built.display(), member.name))?;
            }
        }
    }
    Ok(())
}

/// Records what `member`'s build read outside its crates (`detect::harvest`) and, for files no
/// rule covers that this build read for the first time, says once which rule to add: the record
/// lives in this machine's target directory, and only a rule tells a fresh clone (CI) and the
/// input digest about them.
fn report_reads_outside_crates(workspace: &Workspace, config: &Config, member: &Member, triples: &[&String]) -> Result<()> {
    let bin = member.bin.as_deref().expect("checked before compiling");
    let new = harvest::record(workspace, &member.name, bin, triples)?;
    let uncovered = harvest::unknown_to_a_fresh_clone(workspace, &member.name, &new, &config.rules);
    if !uncovered.is_empty() {
        let rules: String = uncovered
            .iter()
            .map(|path| format!("\n[[workspace.metadata.xtask.rules]]\npaths = \"{path}\"\napps = [\"{}\"]", member.name))
            .collect();
        eprintln!(
            "note: {}'s build reads {}, outside its crates: this machine selects {} when that changes, but a fresh clone (CI) and the input digest know it only from a rule; add to Cargo.toml:{rules}",
            member.name,
            uncovered.iter().map(|path| path.as_str()).collect::<Vec<_>>().join(", "),
            member.name,
        );
    }
    Ok(())
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
