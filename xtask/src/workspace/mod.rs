//! The workspace as `cargo metadata` describes it: members, their path dependencies on each other,
//! and which of them are apps (a member with a `Dockerfile` beside its `Cargo.toml`), with the
//! images that are no crate's (found in `docker/`, or declared in the configuration); its
//! release settings (`config`); its resolved dependency graph (`graph`); and the git repository
//! it lives in (`git`).

pub mod config;
pub mod git;
pub mod graph;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::image::dockerfile::cargo_stage::CargoOptions;
use crate::image::platform::Platform;

/// Where the monorepo's images that are not crates live: `docker/<name>/Dockerfile`.
pub const IMAGES_DIR: &str = "docker";

/// The version an image of `docker/` is released with (`semver` tags, the version annotation):
/// it has no package to take one from.
pub const IMAGE_VERSION: &str = "0.0.0";

#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    /// Cargo's target directory, where `cargo build` puts binaries.
    pub target_dir: PathBuf,
    pub members: Vec<Member>,
    /// `[workspace.metadata]` of the root manifest, as JSON.
    pub metadata: serde_json::Value,
    /// The work tree's resolved dependency graph, resolved once.
    pub graph: graph::WorkTreeGraph,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub version: String,
    /// The member's directory relative to the workspace root, with `/` separators.
    pub dir: String,
    /// The workspace members this one depends on for its build (normal and build dependencies;
    /// dev-dependencies do not reach the image).
    pub deps: Vec<String>,
    /// The binary an app's image carries: the package's first `bin` target.
    pub bin: Option<String>,
    /// Every `bin` target of the package (none for an image of `docker/`).
    pub bins: Vec<String>,
    /// The workspace crate whose binaries the image carries: a crate's own name; for an image of
    /// `docker/`, the crate its Dockerfile's builder stage compiles (`cargo build -p`, or `--bin`
    /// of a crate), which the xtask compiles instead, or none.
    pub package: Option<String>,
    /// The app's Dockerfile relative to the workspace root, if the member is an app.
    pub dockerfile: Option<String>,
    /// The directories (relative to the workspace root) of the targets a build compiles: the
    /// library, binaries, build script and proc macro; not tests, benches or examples.
    pub build_source_dirs: Vec<String>,
    /// False for an image that is no crate (of `docker/`, or declared): nothing is compiled for
    /// it but the `package` its builder stage compiles, and its `deps` are that crate and the
    /// monorepo images its Dockerfile starts FROM.
    pub is_crate: bool,
    /// The build arguments its image is built with besides the platform's (`--build-arg`).
    pub build_args: Vec<(String, String)>,
    /// The stage of its Dockerfile its image is (`--target`); the last stage when none.
    pub stage: Option<String>,
    /// How its image was found.
    pub found: Found,
    /// For a crate, the profile and features its binary is built with: those of the builder
    /// stage of the first image (its own first) whose builder stage the xtask replaces.
    pub cargo_options: CargoOptions,
}

/// How an image was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A crate with a `Dockerfile` beside its `Cargo.toml` (or none: a library).
    BesideCrate,
    /// `docker/<name>/Dockerfile`: every file of `docker/<name>/` is the image's.
    ImageDir,
    /// `docker/Dockerfile.<name>` or `docker/<name>.Dockerfile`.
    DockerfileName,
    /// `[[workspace.metadata.xtask.images]]`.
    Declared,
    /// A Dockerfile at a virtual workspace's root (`Dockerfile`, `Dockerfile.<x>`), the image of
    /// the crate its builder stage builds.
    WorkspaceRoot,
}

/// An image that is not a crate's own Dockerfile beside its manifest, before it becomes a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    pub name: String,
    pub dockerfile: String,
    pub found: Found,
    pub build_args: Vec<(String, String)>,
    pub stage: Option<String>,
    /// The crate whose binary it ships, when its Dockerfile does not say.
    pub package: Option<String>,
}

impl ImageEntry {
    /// The image of `docker/<name>/`.
    pub fn of_dir(dir: &str) -> ImageEntry {
        let name = dir.rsplit('/').next().unwrap_or(dir).to_string();
        ImageEntry {
            name,
            dockerfile: format!("{dir}/Dockerfile"),
            found: Found::ImageDir,
            build_args: Vec::new(),
            stage: None,
            package: None,
        }
    }

    /// The image of a Dockerfile of `docker/` named for it: `Dockerfile.<name>` or `<name>.Dockerfile`.
    pub fn of_file(path: &str) -> Option<ImageEntry> {
        let file = path.rsplit('/').next().unwrap_or(path);
        let name = file.strip_prefix("Dockerfile.").or_else(|| file.strip_suffix(".Dockerfile"))?;
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        (valid && name != "dockerignore").then(|| ImageEntry {
            name: name.to_string(),
            dockerfile: path.to_string(),
            found: Found::DockerfileName,
            build_args: Vec::new(),
            stage: None,
            package: None,
        })
    }

    /// The image of the Dockerfile at the workspace root `path`, whose builder stage builds the
    /// crate `package`: named for it.
    pub fn at_root(path: &str, package: &str) -> ImageEntry {
        ImageEntry {
            name: package.to_string(),
            dockerfile: path.to_string(),
            found: Found::WorkspaceRoot,
            build_args: Vec::new(),
            stage: None,
            package: Some(package.to_string()),
        }
    }

    pub fn declared(image: config::DeclaredImage) -> ImageEntry {
        ImageEntry {
            name: image.name,
            dockerfile: image.dockerfile.trim_start_matches("./").to_string(),
            found: Found::Declared,
            build_args: image.args.into_iter().collect(),
            stage: image.target,
            package: image.package,
        }
    }
}

impl Member {
    /// The build arguments of its `platform` image: the platform's automatic ones, then its own.
    pub fn build_args(&self, platform: &Platform) -> Vec<(String, String)> {
        let mut args = platform.build_args();
        args.extend(self.build_args.iter().cloned());
        args
    }

    /// `build_args`, with the build platform's arguments of a build on `host`.
    pub fn build_args_on(&self, platform: &Platform, host: &Platform) -> Vec<(String, String)> {
        let mut args = platform.build_args_on(host);
        args.extend(self.build_args.iter().cloned());
        args
    }

    /// Its Dockerfile's text as its image's build reads it: up to the end of its stage.
    pub fn dockerfile_text(&self, root: &Path) -> Result<String> {
        let dockerfile = self.dockerfile.as_deref().context("only an app has a Dockerfile")?;
        let text = std::fs::read_to_string(root.join(dockerfile)).with_context(|| format!("cannot read {dockerfile}"))?;
        self.up_to_stage(text)
    }

    fn up_to_stage(&self, text: String) -> Result<String> {
        match (&self.stage, &self.dockerfile) {
            (Some(stage), Some(dockerfile)) => crate::image::dockerfile::up_to_stage(&text, dockerfile, stage),
            _ => Ok(text),
        }
    }

    /// How its image was found, for `changed --explain`.
    pub fn found_how(&self) -> String {
        let dockerfile = self.dockerfile.as_deref().unwrap_or_default();
        let mut how = match self.found {
            Found::BesideCrate => format!("{dockerfile}, beside the crate's Cargo.toml"),
            Found::ImageDir => format!("{dockerfile}, an image of {IMAGES_DIR}/ with a directory of its own"),
            Found::DockerfileName => format!("{dockerfile}, an image of {IMAGES_DIR}/ named by its Dockerfile"),
            Found::Declared => format!("{dockerfile}, declared in [[workspace.metadata.xtask.images]]"),
            Found::WorkspaceRoot => format!("{dockerfile}, at the workspace root, named for the crate its builder stage builds"),
        };
        if let Some(stage) = &self.stage {
            how.push_str(&format!(", target {stage}"));
        }
        for (key, value) in &self.build_args {
            how.push_str(&format!(", {key}={value}"));
        }
        if let (false, Some(package)) = (self.is_crate, &self.package) {
            how.push_str(&format!(", shipping crate {package}'s binary"));
        }
        how
    }
}

impl Workspace {
    /// Loads the workspace `dir` belongs to (`start_loading`, then `Loading::finish`).
    pub fn load(dir: &Path, graph: graph::WorkTreeGraph, read_from_graph: bool) -> Result<Workspace> {
        Workspace::start_loading(dir, graph)?.finish(read_from_graph)
    }

    /// Starts `cargo metadata --no-deps` in `dir`, in the background: fast and offline, since
    /// path dependencies between members are all the graph that selection needs. `graph` is the
    /// work tree's resolved graph, as the command started it.
    pub fn start_loading(dir: &Path, graph: graph::WorkTreeGraph) -> Result<Loading> {
        Ok(Loading { dir: dir.to_path_buf(), graph, members: Loading::start_members(dir)? })
    }
}

/// A workspace being loaded (`Workspace::start_loading`): its `cargo metadata --no-deps` running
/// beside the work tree's resolved graph until the command knows which of the two to read it
/// from.
pub struct Loading {
    dir: PathBuf,
    graph: graph::WorkTreeGraph,
    members: graph::Background,
}

impl Loading {
    /// The workspace, read from the `--no-deps` run, or with `read_from_graph` (for a command that
    /// certainly needs the resolved graph) from that graph, the other run being stopped at once:
    /// two cargo runs side by side slow each other down. When the graph fails, `--no-deps` runs
    /// again, and its error is the one reported.
    pub fn finish(self, read_from_graph: bool) -> Result<Workspace> {
        let Loading { dir, graph, members } = self;
        let has_dockerfile = |app_dir: &Path| app_dir.join("Dockerfile").is_file();
        let resolved: std::sync::Arc<[u8]> = if read_from_graph {
            drop(members);
            match graph.metadata() {
                Ok(metadata) => metadata,
                Err(_) => Loading::members_metadata(&dir, Loading::start_members(&dir)?)?.into(),
            }
        } else {
            Loading::members_metadata(&dir, members)?.into()
        };
        let mut workspace = Workspace::from_metadata(&resolved, &has_dockerfile)?;
        workspace.graph = graph;
        let declared: Vec<ImageEntry> = config::declared_images(&workspace.metadata)?.into_iter().map(ImageEntry::declared).collect();
        let mut images: Vec<ImageEntry> = Vec::new();
        for entry in std::fs::read_dir(workspace.root.join(IMAGES_DIR)).into_iter().flatten().flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{IMAGES_DIR}/{file_name}");
            if entry.path().join("Dockerfile").is_file() {
                images.push(ImageEntry::of_dir(&path));
            } else if entry.path().is_file() {
                images.extend(ImageEntry::of_file(&path));
            }
        }
        // A virtual workspace's own Dockerfiles (a repository's `Dockerfile` at its root, building
        // `-p rumqttd`) are the images of the crates their builder stages build, named for them,
        // where no other image or Dockerfile of the crate's own has that name.
        if !workspace.members.iter().any(|member| member.is_crate && member.dir.is_empty()) {
            for path in root_dockerfiles(&workspace.root) {
                let Ok(text) = std::fs::read_to_string(workspace.root.join(&path)) else { continue };
                let Some(package) = workspace.builder_package(&text, &path, &[]) else { continue };
                let claimed = images.iter().chain(&declared).any(|image| image.name == package || image.dockerfile == path)
                    || workspace.member(&package).is_some_and(|member| member.dockerfile.is_some());
                if !claimed {
                    images.push(ImageEntry::at_root(&path, &package));
                }
            }
        }
        // A Dockerfile the configuration names makes the images it declares, and no other.
        images.retain(|image| !declared.iter().any(|declared| declared.dockerfile == image.dockerfile));
        images.sort_by(|a, b| a.dockerfile.cmp(&b.dockerfile));
        images.extend(declared);
        let root = workspace.root.clone();
        workspace.add_images(&images, &|dockerfile| std::fs::read_to_string(root.join(dockerfile)).ok())?;
        Ok(workspace)
    }

    fn start_members(dir: &Path) -> Result<graph::Background> {
        let mut command = std::process::Command::new(cargo());
        command.args(["metadata", "--format-version", "1", "--no-deps"]).current_dir(dir);
        graph::Background::spawn(&mut command).context("cannot run cargo metadata")
    }

    /// The output of the `--no-deps` run `members` of the workspace in `dir`, or cargo's error.
    fn members_metadata(dir: &Path, members: graph::Background) -> Result<Vec<u8>> {
        let output = members.finish()?;
        if !output.status.success() {
            // cargo's own message becomes part of the one error paragraph.
            let reported = String::from_utf8_lossy(&output.stderr);
            let reported: Vec<&str> =
                reported.lines().map(|line| line.trim_start_matches("error: ").trim()).filter(|line| !line.is_empty()).collect();
            bail!(
                "cannot read the Cargo workspace in {}: cargo says: {}; run the xtask inside the workspace and fix that",
                dir.display(),
                reported.join(" ")
            );
        }
        Ok(output.stdout)
    }
}

impl Workspace {
    pub fn from_metadata(json: &[u8], has_dockerfile: &dyn Fn(&Path) -> bool) -> Result<Workspace> {
        let raw = xtask_metadata::read(json).context("unexpected cargo metadata output")?;
        let member_ids: HashSet<&str> = raw.workspace_members.iter().map(String::as_str).collect();
        let member_dirs: HashMap<&Path, &str> = raw
            .packages
            .iter()
            .filter(|package| member_ids.contains(package.id.as_str()))
            .map(|package| (package.manifest_path.parent().unwrap_or(Path::new("")), package.name.as_str()))
            .collect();
        let mut members = Vec::new();
        for package in raw.packages.iter().filter(|package| member_ids.contains(package.id.as_str())) {
            let abs_dir = package.manifest_path.parent().unwrap_or(Path::new(""));
            let dir = relative(&raw.workspace_root, abs_dir);
            let mut deps: Vec<String> = package
                .dependencies
                .iter()
                .filter(|dep| dep.kind.as_deref() != Some("dev"))
                .filter_map(|dep| {
                    let path = dep.path.as_ref()?;
                    member_dirs.get(path.as_path()).map(|name| name.to_string())
                })
                .collect();
            deps.sort();
            deps.dedup();
            let bins: Vec<String> = package
                .targets
                .iter()
                .filter(|target| target.kind.iter().any(|kind| kind == "bin"))
                .map(|target| target.name.clone())
                .collect();
            let bin = bins.first().cloned();
            let dockerfile =
                has_dockerfile(abs_dir).then(|| if dir.is_empty() { "Dockerfile".to_string() } else { format!("{dir}/Dockerfile") });
            let mut build_source_dirs: Vec<String> = package
                .targets
                .iter()
                .filter(|target| {
                    target.kind.iter().any(|kind| matches!(kind.as_str(), "bin" | "lib" | "rlib" | "proc-macro" | "custom-build"))
                })
                .filter_map(|target| {
                    let target_dir = target.src_path.as_ref()?.parent()?;
                    // A build script at the crate's root makes the root no directory of targets:
                    // what it reads is what it declares (dep-info), not every file beside it.
                    let build_script = target.kind.iter().any(|kind| kind == "custom-build");
                    (!build_script || target_dir != abs_dir).then(|| relative(&raw.workspace_root, target_dir))
                })
                .collect();
            build_source_dirs.sort();
            build_source_dirs.dedup();
            members.push(Member {
                name: package.name.clone(),
                version: package.version.clone(),
                dir,
                deps,
                bin,
                bins,
                package: Some(package.name.clone()),
                dockerfile,
                build_source_dirs,
                is_crate: true,
                build_args: Vec::new(),
                stage: None,
                found: Found::BesideCrate,
                cargo_options: CargoOptions::default(),
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let graph = graph::WorkTreeGraph::on_demand(&raw.workspace_root);
        Ok(Workspace { root: raw.workspace_root, target_dir: raw.target_directory, members, metadata: raw.metadata, graph })
    }

    /// Adds `images` as members, and to every image and app the monorepo images its Dockerfile
    /// starts FROM (a FROM naming one of them alone, as buildx's named contexts do). `read` gives
    /// a Dockerfile's text by its path. A name two images, or an image and a crate, have; a
    /// missing Dockerfile or stage of a declared image; and a cycle are errors naming the file.
    pub fn add_images(&mut self, images: &[ImageEntry], read: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        for image in images {
            let ImageEntry { name, dockerfile, .. } = image;
            let declared = || format!("the image `{name}` of [[workspace.metadata.xtask.images]]");
            let text = match read(dockerfile) {
                Some(text) => text,
                None if image.found == Found::Declared => {
                    bail!(
                        "{}: its dockerfile {dockerfile} cannot be read: give the Dockerfile's path relative to the workspace root",
                        declared()
                    )
                }
                None => continue,
            };
            let text = match &image.stage {
                Some(stage) => crate::image::dockerfile::up_to_stage(&text, dockerfile, stage).with_context(declared)?,
                None => text,
            };
            let package = match &image.package {
                Some(package) if self.member(package).is_some_and(|member| member.is_crate) => Some(package.clone()),
                Some(package) => bail!(
                    "{}: package = \"{package}\" is no crate of the workspace: name the crate whose binary the image ships",
                    declared()
                ),
                None => self.builder_package(&text, dockerfile, &image.build_args),
            };
            if let Some(other) = self.members.iter().find(|member| member.name == *name) {
                // An image that builds the crate of its name, which has no Dockerfile of its
                // own, is the crate's image.
                if package.as_deref() == Some(name.as_str()) && other.is_crate && other.dockerfile.is_none() {
                    let member = self.members.iter_mut().find(|member| member.name == *name).expect("found above");
                    member.dockerfile = Some(dockerfile.clone());
                    member.build_args = image.build_args.clone();
                    member.stage = image.stage.clone();
                    member.found = image.found;
                    continue;
                }
                let what = match image.found {
                    Found::Declared => declared(),
                    _ => format!("{dockerfile} makes an image `{name}`"),
                };
                let (other, rename) = match (other.is_crate, image.found) {
                    (true, found) => (
                        format!("the crate in {}", other.dir),
                        match found {
                            Found::Declared => "rename the image",
                            Found::ImageDir => "rename the directory",
                            _ => "rename the file",
                        },
                    ),
                    (false, _) => (format!("the image of {}", other.dockerfile.as_deref().unwrap_or_default()), "rename one of them"),
                };
                bail!("{what}, and {other} has that name too: their tags would collide in the repository; {rename}");
            }
            let bin = package.as_deref().and_then(|package| self.member(package)).and_then(|member| member.bin.clone());
            self.members.push(Member {
                name: name.clone(),
                version: IMAGE_VERSION.to_string(),
                // An image of docker/<name>/ owns that directory; any other, its Dockerfile alone.
                dir: match image.found {
                    Found::ImageDir => dockerfile.trim_end_matches("/Dockerfile").to_string(),
                    _ => dockerfile.clone(),
                },
                // The crate it compiles is an input like a crate app's dependencies.
                deps: package.iter().cloned().collect(),
                bin,
                bins: Vec::new(),
                package,
                dockerfile: Some(dockerfile.clone()),
                build_source_dirs: Vec::new(),
                is_crate: false,
                build_args: image.build_args.clone(),
                stage: image.stage.clone(),
                found: image.found,
                cargo_options: CargoOptions::default(),
            });
        }
        let images: BTreeSet<String> = self.members.iter().filter(|member| !member.is_crate).map(|member| member.name.clone()).collect();
        let mut lines: BTreeMap<(String, String), usize> = BTreeMap::new();
        for member in &mut self.members {
            let Some(text) = member.dockerfile.as_deref().and_then(read) else { continue };
            let Ok(text) = member.up_to_stage(text) else { continue };
            for (image, line) in crate::image::dockerfile::base_images_with_lines(&text, &member.build_args) {
                if images.contains(&image) {
                    lines.insert((member.name.clone(), image.clone()), line);
                    member.deps.push(image);
                }
            }
            member.deps.sort();
            member.deps.dedup();
        }
        self.members.sort_by(|a, b| a.name.cmp(&b.name));
        self.assign_cargo_options(read);
        for image in &images {
            let chain = self.image_cycle(image);
            if let [first, second, ..] = chain.as_slice() {
                let dockerfile = self.member(first).and_then(|member| member.dockerfile.clone()).unwrap_or_default();
                bail!(
                    "{dockerfile}:{}: FROM {second} makes a cycle of images ({}): an image cannot be built on itself; start one of them FROM another base",
                    lines[&(first.clone(), second.clone())],
                    chain.join(" → ")
                );
            }
        }
        Ok(())
    }

    /// Gives each crate the profile and features of the builder stage that compiles it: its own
    /// image's first, then the other images' in name order. An image whose builder stage asks
    /// for others keeps its Dockerfile whole (`builder::recipe` says why).
    fn assign_cargo_options(&mut self, read: &dyn Fn(&str) -> Option<String>) {
        use crate::image::dockerfile::cargo_stage::{self, CargoStages};
        let mut found: BTreeMap<String, CargoOptions> = BTreeMap::new();
        let mut apps: Vec<&Member> = self.apps().filter(|app| app.package.is_some()).collect();
        apps.sort_by_key(|app| !app.is_crate);
        for app in apps {
            let (Some(package), Some(dockerfile)) = (&app.package, &app.dockerfile) else { continue };
            let Some(text) = read(dockerfile).and_then(|text| app.up_to_stage(text).ok()) else { continue };
            let platform = Platform::parse("linux/amd64").expect("a platform");
            match cargo_stage::replace(&text, dockerfile, &app.build_args(&platform), "linux/amd64") {
                Ok(CargoStages::Replaced(replaced)) if replaced.package.as_ref().is_none_or(|named| named == package) => {
                    found.entry(package.clone()).or_insert(replaced.options);
                }
                _ => {}
            }
        }
        for member in &mut self.members {
            if let Some(options) = found.remove(&member.name) {
                member.cargo_options = options;
            }
        }
        let other_than_default = self.members.iter().filter(|member| member.cargo_options != CargoOptions::default());
        self.graph.cargo_options = other_than_default.map(|member| (member.name.clone(), member.cargo_options.clone())).collect();
    }

    /// The crate a Dockerfile's builder stage compiles, when the xtask replaces that stage
    /// (`dockerfile::cargo_stage`): the package it names, or the crate with the binaries it names.
    fn builder_package(&self, text: &str, dockerfile: &str, build_args: &[(String, String)]) -> Option<String> {
        use crate::image::dockerfile::cargo_stage::{self, CargoStages};
        let Ok(CargoStages::Replaced(replaced)) = cargo_stage::replace(text, dockerfile, build_args, "linux/amd64") else { return None };
        let mut crates = self.members.iter().filter(|member| member.is_crate);
        let found = match &replaced.package {
            Some(package) => crates.find(|member| member.name == *package),
            None => crates.find(|member| replaced.bins.iter().all(|bin| member.bins.contains(bin))),
        };
        found.map(|member| member.name.clone())
    }

    /// The monorepo images `name` starts FROM directly.
    pub fn image_bases(&self, name: &str) -> Vec<&str> {
        let is_image = |dep: &&String| self.member(dep).is_some_and(|member| !member.is_crate);
        self.member(name).map(|member| member.deps.iter().filter(is_image).map(String::as_str).collect()).unwrap_or_default()
    }

    /// A path of FROM edges from `image` back to itself, or nothing.
    fn image_cycle(&self, image: &str) -> Vec<String> {
        let mut path = vec![image.to_string()];
        let mut seen = BTreeSet::new();
        fn walk(ws: &Workspace, target: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
            let current = path.last().expect("not empty").clone();
            for base in ws.image_bases(&current) {
                if base == target {
                    path.push(base.to_string());
                    return true;
                }
                if seen.insert(base.to_string()) {
                    path.push(base.to_string());
                    if walk(ws, target, path, seen) {
                        return true;
                    }
                    path.pop();
                }
            }
            false
        }
        if walk(self, image, &mut path, &mut seen) {
            path
        } else {
            Vec::new()
        }
    }

    /// `names` and the monorepo images they are built on (`bases`, not named themselves), in an
    /// order where every image comes after the images it starts FROM, by name otherwise.
    pub fn build_order(&self, names: &[String]) -> (Vec<String>, BTreeSet<String>) {
        let mut order = Vec::new();
        let mut bases = BTreeSet::new();
        fn visit(ws: &Workspace, name: &str, order: &mut Vec<String>, bases: &mut BTreeSet<String>, named: &[String]) {
            if order.iter().any(|done| done == name) {
                return;
            }
            for base in ws.image_bases(name) {
                if !named.iter().any(|n| n == base) {
                    bases.insert(base.to_string());
                }
                visit(ws, base, order, bases, named);
            }
            order.push(name.to_string());
        }
        let mut sorted = names.to_vec();
        sorted.sort();
        for name in &sorted {
            visit(self, name, &mut order, &mut bases, names);
        }
        (order, bases)
    }

    /// A new, empty directory for scratch files, removed when dropped: under the workspace's
    /// `target/xtask/tmp/`, with an unpredictable name, created atomically. Never in a shared
    /// temporary directory: cargo reads `.cargo/config.toml` in every ancestor of the directory
    /// it runs in, and anyone can write one into `/tmp` or `/dev/shm`.
    pub fn scratch_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        let parent = self.target_dir.join("xtask/tmp");
        std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
        tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(&parent)
            .with_context(|| format!("cannot create a directory in {}", parent.display()))
    }

    pub fn apps(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|member| member.dockerfile.is_some())
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.name == name)
    }

    /// Looks up apps named on the command line, failing on the first name that is not an app.
    pub fn select_apps(&self, names: &[String]) -> Result<Vec<&Member>> {
        let mut selected = Vec::new();
        for name in names {
            let app_names: Vec<&str> = self.apps().map(|app| app.name.as_str()).collect();
            match self.member(name) {
                Some(member) if member.dockerfile.is_some() => selected.push(member),
                Some(member) => bail!(
                    "crate `{name}` is not an app: it has no Dockerfile in {}; add one there to make it an app, or pick one of the apps: {}",
                    if member.dir.is_empty() { "." } else { &member.dir },
                    app_names.join(", ")
                ),
                None => bail!("unknown app `{name}`: the workspace's apps are {} (an app is a workspace member with a Dockerfile beside its Cargo.toml, an image of docker/<name>/Dockerfile or docker/Dockerfile.<name>, or an image of [[workspace.metadata.xtask.images]])", app_names.join(", ")),
            }
        }
        Ok(selected)
    }

    /// How `app` depends on `crate_name`: the members from `crate_name` up to `app`, each
    /// depended on by the next; empty if it does not.
    pub fn dependency_chain(&self, app: &str, crate_name: &str) -> Vec<String> {
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([crate_name]);
        while let Some(current) = queue.pop_front() {
            if current == app {
                let mut chain = vec![app.to_string()];
                let mut at = app;
                while let Some(before) = previous.get(at) {
                    chain.push(before.to_string());
                    at = before;
                }
                chain.reverse();
                return chain;
            }
            for member in self.members.iter().filter(|m| m.deps.iter().any(|d| d == current)) {
                if member.name != crate_name && !previous.contains_key(member.name.as_str()) {
                    previous.insert(&member.name, current);
                    queue.push_back(&member.name);
                }
            }
        }
        Vec::new()
    }

    /// The members that depend on `name`, directly or through other members, and `name` itself.
    /// The workspace members `name`'s build compiles (through normal and build dependencies),
    /// `name` included.
    pub fn dependencies_of(&self, name: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut pending = vec![name.to_string()];
        while let Some(current) = pending.pop() {
            if let (Some(member), true) = (self.member(&current), !found.contains(&current)) {
                pending.extend(member.deps.iter().cloned());
                found.insert(current);
            }
        }
        found
    }

    pub fn dependents_of(&self, name: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::from([name.to_string()]);
        loop {
            let before = found.len();
            for member in &self.members {
                if member.deps.iter().any(|dep| found.contains(dep)) {
                    found.insert(member.name.clone());
                }
            }
            if found.len() == before {
                return found;
            }
        }
    }
}

/// Every Dockerfile under `root` (`Dockerfile`, `Dockerfile.<name>`, `<name>.Dockerfile`),
/// outside target directories, `.git`, `node_modules` and a vendored `xtask/`, relative to it,
/// with `/` separators, sorted: what a user may expect to be an image.
pub fn dockerfiles_under(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for path in std::fs::read_dir(dir).into_iter().flatten().flatten().map(|entry| entry.path()) {
            let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | "node_modules") && path != root.join("xtask") {
                    walk(root, &path, found);
                }
            } else if name == "Dockerfile" || name.starts_with("Dockerfile.") || name.ends_with(".Dockerfile") {
                found.push(relative(root, &path));
            }
        }
    }
    let mut found = Vec::new();
    walk(root, root, &mut found);
    found.sort();
    found
}

/// The Dockerfiles at `root` itself, `Dockerfile` first, then the others by name.
fn root_dockerfiles(root: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            (name == "Dockerfile" || name.starts_with("Dockerfile.") || name.ends_with(".Dockerfile")) && !name.ends_with(".dockerignore")
        })
        .collect();
    found.sort_by_key(|name| (name != "Dockerfile", name.clone()));
    found
}

/// `CARGO_HOME` as cargo finds it (an empty one counts as unset).
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

/// The cargo that runs the xtask (`cargo xtask` sets `CARGO`), so the same toolchain builds the
/// apps; plain `cargo` otherwise (an empty `CARGO`, as `CARGO=$(rustup which cargo)` leaves when
/// that fails, counts as unset).
pub fn cargo() -> String {
    std::env::var("CARGO").ok().filter(|cargo| !cargo.is_empty()).unwrap_or_else(|| "cargo".into())
}

fn relative(root: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A workspace of `(name, dir, deps, is_app)` members, shaped as cargo metadata prints it.
    pub(crate) fn workspace(members: &[(&str, &str, &[&str], bool)]) -> Workspace {
        let packages: Vec<serde_json::Value> = members
            .iter()
            .map(|(name, dir, deps, is_app)| {
                let deps: Vec<serde_json::Value> = deps
                    .iter()
                    .map(|dep| {
                        let dep_dir = members.iter().find(|m| m.0 == *dep).map(|m| m.1).unwrap_or(dep);
                        serde_json::json!({"name": dep, "kind": null, "path": format!("/ws/{dep_dir}")})
                    })
                    .collect();
                let kind = if *is_app { "bin" } else { "lib" };
                serde_json::json!({
                    "id": format!("path+file:///ws/{dir}#{name}@0.1.0"), "name": name, "version": "0.1.0",
                    "manifest_path": format!("/ws/{dir}/Cargo.toml"), "dependencies": deps,
                    "targets": [{"name": name, "kind": [kind]}],
                })
            })
            .collect();
        let ids: Vec<serde_json::Value> = packages.iter().map(|p| p["id"].clone()).collect();
        let apps: Vec<PathBuf> = members.iter().filter(|m| m.3).map(|m| PathBuf::from(format!("/ws/{}", m.1))).collect();
        let json = serde_json::json!({"packages": packages, "workspace_members": ids, "workspace_root": "/ws", "target_directory": "/ws/target", "metadata": null});
        Workspace::from_metadata(json.to_string().as_bytes(), &|dir| apps.iter().any(|app| app == dir)).unwrap()
    }

    #[test]
    fn apps_and_dependents() {
        let ws = workspace(&[
            ("common", "crates/common", &[], false),
            ("words", "crates/words", &["common"], false),
            ("api", "crates/api", &["common"], true),
            ("worker", "crates/worker", &["words"], true),
        ]);
        let apps: Vec<&str> = ws.apps().map(|app| app.name.as_str()).collect();
        assert_eq!(apps, ["api", "worker"]);
        assert_eq!(ws.member("worker").unwrap().dockerfile.as_deref(), Some("crates/worker/Dockerfile"));
        assert_eq!(ws.dependents_of("common").into_iter().collect::<Vec<_>>(), ["api", "common", "words", "worker"]);
        assert_eq!(ws.dependents_of("words").into_iter().collect::<Vec<_>>(), ["words", "worker"]);
        assert_eq!(ws.dependencies_of("worker").into_iter().collect::<Vec<_>>(), ["common", "words", "worker"]);
        assert_eq!(ws.dependency_chain("worker", "common"), ["common", "words", "worker"]);
        assert!(ws.dependency_chain("api", "words").is_empty());
    }

    /// The images of `docker/` beside the crates, with their Dockerfiles' texts.
    fn with_images(dockerfiles: &[(&str, &str)]) -> Result<Workspace> {
        let mut ws = workspace(&[("common", "crates/common", &[], false), ("api", "crates/api", &["common"], true)]);
        let images: Vec<ImageEntry> = dockerfiles
            .iter()
            .filter_map(|(path, _)| path.strip_suffix("/Dockerfile"))
            .filter(|d| d.starts_with("docker/"))
            .map(ImageEntry::of_dir)
            .collect();
        let read = |path: &str| dockerfiles.iter().find(|(file, _)| *file == path).map(|(_, text)| text.to_string());
        ws.add_images(&images, &read)?;
        Ok(ws)
    }

    #[test]
    fn images_of_docker_are_built_after_the_images_they_start_from() {
        let ws = with_images(&[
            ("docker/base/Dockerfile", "FROM scratch\n"),
            ("docker/tools/Dockerfile", "ARG V=1\nFROM base AS build\nFROM build\n"),
            ("docker/sidecar/Dockerfile", "FROM 127.0.0.1:5000/other/base:1\n"),
            ("crates/api/Dockerfile", "FROM tools\n"),
        ])
        .unwrap();
        assert_eq!(ws.image_bases("api"), ["tools"]);
        assert_eq!(ws.image_bases("tools"), ["base"], "a stage named build is no image");
        assert!(ws.image_bases("sidecar").is_empty());
        assert_eq!(ws.dependency_chain("api", "base"), ["base", "tools", "api"]);
        let (order, bases) = ws.build_order(&["api".to_string(), "sidecar".to_string()]);
        assert_eq!(order, ["base", "tools", "api", "sidecar"]);
        assert_eq!(bases.into_iter().collect::<Vec<_>>(), ["base", "tools"]);
        let apps: Vec<&str> = ws.apps().map(|app| app.name.as_str()).collect();
        assert_eq!(apps, ["api", "base", "sidecar", "tools"]);
    }

    #[test]
    fn image_cycles_and_name_clashes_are_errors_naming_the_file() {
        let err = with_images(&[
            ("docker/a/Dockerfile", "FROM scratch AS x\nFROM b\n"),
            ("docker/b/Dockerfile", "FROM c\n"),
            ("docker/c/Dockerfile", "FROM a\n"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "docker/a/Dockerfile:2: FROM b makes a cycle of images (a → b → c → a): an image cannot be built on itself; start one of them FROM another base"
        );
        let err = with_images(&[("docker/common/Dockerfile", "FROM scratch\n")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "docker/common/Dockerfile makes an image `common`, and the crate in crates/common has that name too: their tags would collide in the repository; rename the directory"
        );
    }

    #[test]
    fn an_image_whose_builder_stage_compiles_a_crate_depends_on_that_crate() {
        let builder = |args: &str| {
            format!("FROM rust AS build\nRUN cargo build --release {args}\nFROM scratch\nCOPY --from=build /target/release/api /api\n")
        };
        let ws = with_images(&[
            ("docker/edge/Dockerfile", &builder("--bin api")),
            ("docker/by-package/Dockerfile", &builder("-p api")),
            ("docker/unknown/Dockerfile", &builder("-p nope")),
            ("docker/common/Dockerfile", &builder("-p common").replace("/api", "/common")),
        ])
        .unwrap();
        let show = |name: &str| ws.member(name).map(|member| (member.package.clone(), member.deps.clone(), member.dockerfile.clone()));
        assert_eq!(show("edge"), Some((Some("api".into()), vec!["api".into()], Some("docker/edge/Dockerfile".into()))));
        assert_eq!(show("by-package"), Some((Some("api".into()), vec!["api".into()], Some("docker/by-package/Dockerfile".into()))));
        assert_eq!(show("unknown"), Some((None, vec![], Some("docker/unknown/Dockerfile".into()))));
        // docker/<crate>/ building that crate, which has no Dockerfile of its own, is its image.
        assert_eq!(show("common"), Some((Some("common".into()), vec![], Some("docker/common/Dockerfile".into()))));
        assert!(ws.member("common").unwrap().is_crate);
        assert_eq!(ws.dependents_of("api").into_iter().collect::<Vec<_>>(), ["api", "by-package", "edge"]);
        let err = with_images(&[("docker/api/Dockerfile", &builder("-p api"))]).unwrap_err();
        assert!(
            err.to_string().starts_with("docker/api/Dockerfile makes an image `api`, and the crate in crates/api has that name too"),
            "{err}"
        );
    }

    #[test]
    fn a_build_script_at_the_crates_root_makes_no_directory_of_targets() {
        let target = |name: &str, kind: &str, src: &str| serde_json::json!({"name": name, "kind": [kind], "src_path": format!("/ws/crates/api/{src}")});
        let package = serde_json::json!({
            "id": "path+file:///ws/crates/api#api@0.1.0", "name": "api", "version": "0.1.0",
            "manifest_path": "/ws/crates/api/Cargo.toml", "dependencies": [],
            "targets": [target("api", "bin", "src/main.rs"), target("build-script-build", "custom-build", "build.rs"), target("gen", "custom-build", "build/main.rs")],
        });
        let json = serde_json::json!({"packages": [package], "workspace_members": [package["id"]], "workspace_root": "/ws", "target_directory": "/ws/target", "metadata": null});
        let ws = Workspace::from_metadata(json.to_string().as_bytes(), &|_| true).unwrap();
        assert_eq!(ws.member("api").unwrap().build_source_dirs, ["crates/api/build", "crates/api/src"]);
    }

    #[test]
    fn selecting_apps_by_name() {
        let ws = workspace(&[("common", "crates/common", &[], false), ("api", "crates/api", &["common"], true)]);
        let err = ws.select_apps(&["nope".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown app `nope`: the workspace's apps are api (an app is a workspace member with a Dockerfile beside its Cargo.toml, an image of docker/<name>/Dockerfile or docker/Dockerfile.<name>, or an image of [[workspace.metadata.xtask.images]])"
        );
        let err = ws.select_apps(&["common".into()]).unwrap_err();
        assert_eq!(err.to_string(), "crate `common` is not an app: it has no Dockerfile in crates/common; add one there to make it an app, or pick one of the apps: api");
    }

    /// PostHog's shape: one Dockerfile whose `ARG BIN` picks the binary, for several images.
    const BY_ARG: &str = "FROM rust AS builder\nARG BIN\nWORKDIR /app\nCOPY . .\nRUN cargo build --release --bin $BIN\nFROM debian:bookworm-slim AS runtime\nARG BIN\nCOPY --from=builder /app/target/release/$BIN /usr/local/bin/$BIN\nFROM runtime AS debug\nRUN apt-get install -y gdb\n";

    fn declared(name: &str, dockerfile: &str, args: &[(&str, &str)], target: Option<&str>, package: Option<&str>) -> ImageEntry {
        ImageEntry::declared(config::DeclaredImage {
            name: name.into(),
            dockerfile: dockerfile.into(),
            target: target.map(String::from),
            args: args.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
            package: package.map(String::from),
        })
    }

    fn with_entries(images: &[ImageEntry], dockerfiles: &[(&str, &str)]) -> Result<Workspace> {
        let mut ws = workspace(&[
            ("common", "crates/common", &[], false),
            ("api", "crates/api", &["common"], true),
            ("capture", "crates/capture", &["common"], true),
        ]);
        // `capture` is a crate without a Dockerfile of its own.
        ws.members.iter_mut().find(|member| member.name == "capture").unwrap().dockerfile = None;
        let read = |path: &str| dockerfiles.iter().find(|(file, _)| *file == path).map(|(_, text)| text.to_string());
        ws.add_images(images, &read)?;
        Ok(ws)
    }

    #[test]
    fn declared_images_share_a_dockerfile_with_their_own_arguments_and_targets() {
        let ws = with_entries(
            &[
                declared("api-server", "docker/rust.Dockerfile", &[("BIN", "api")], Some("runtime"), None),
                declared("capture", "docker/rust.Dockerfile", &[("BIN", "capture")], None, None),
                declared("tools", "docker/tools.Dockerfile", &[], None, Some("api")),
                ImageEntry::of_file("docker/Dockerfile.unified").unwrap(),
            ],
            &[
                ("docker/rust.Dockerfile", BY_ARG),
                ("docker/tools.Dockerfile", "FROM api-server\nCOPY target/stage/x /x\n"),
                ("docker/Dockerfile.unified", "FROM scratch\n"),
            ],
        )
        .unwrap();
        let show = |name: &str| {
            let member = ws.member(name).unwrap();
            format!(
                "{} {:?} {:?} {:?} crate:{} | {}",
                member.dir,
                member.package,
                member.bin,
                member.deps,
                member.is_crate,
                member.found_how()
            )
        };
        expect_test::expect![[r#"
            docker/rust.Dockerfile Some("api") Some("api") ["api"] crate:false | docker/rust.Dockerfile, declared in [[workspace.metadata.xtask.images]], target runtime, BIN=api, shipping crate api's binary
            crates/capture Some("capture") Some("capture") ["common"] crate:true | docker/rust.Dockerfile, declared in [[workspace.metadata.xtask.images]], BIN=capture
            docker/tools.Dockerfile Some("api") Some("api") ["api", "api-server"] crate:false | docker/tools.Dockerfile, declared in [[workspace.metadata.xtask.images]], shipping crate api's binary
            docker/Dockerfile.unified None None [] crate:false | docker/Dockerfile.unified, an image of docker/ named by its Dockerfile"#]]
        .assert_eq(&["api-server", "capture", "tools", "unified"].map(show).join("\n"));
        // The target leaves out the debug stage, and with it its RUN.
        let text = ws.member("api-server").unwrap().up_to_stage(BY_ARG.to_string()).unwrap();
        assert!(!text.contains("gdb") && text.split('\n').count() == BY_ARG.split('\n').count(), "{text}");
    }

    #[test]
    fn what_a_declaration_gets_wrong_is_an_error_naming_it() {
        let error = |images: &[ImageEntry]| with_entries(images, &[("docker/rust.Dockerfile", BY_ARG)]).unwrap_err();
        expect_test::expect![[r#"
            the image `x` of [[workspace.metadata.xtask.images]]: its dockerfile docker/nope cannot be read: give the Dockerfile's path relative to the workspace root
            the image `x` of [[workspace.metadata.xtask.images]]: docker/rust.Dockerfile has no stage named `release` (its named stages: builder, runtime, debug): give the name of a `FROM ... AS <name>` line as the image's target
            the image `x` of [[workspace.metadata.xtask.images]]: package = "nope" is no crate of the workspace: name the crate whose binary the image ships
            the image `api` of [[workspace.metadata.xtask.images]], and the crate in crates/api has that name too: their tags would collide in the repository; rename the image
            the image `x` of [[workspace.metadata.xtask.images]], and the image of docker/rust.Dockerfile has that name too: their tags would collide in the repository; rename one of them"#]]
        .assert_eq(
            &[
                error(&[declared("x", "docker/nope", &[], None, None)]),
                error(&[declared("x", "docker/rust.Dockerfile", &[], Some("release"), None)]),
                error(&[declared("x", "docker/rust.Dockerfile", &[], None, Some("nope"))]),
                error(&[declared("api", "docker/rust.Dockerfile", &[("BIN", "capture")], None, None)]),
                error(&[declared("x", "docker/rust.Dockerfile", &[], None, None), declared("x", "docker/rust.Dockerfile", &[], None, None)]),
            ]
            .map(|err| format!("{err:#}"))
            .join("\n"),
        );
    }

    #[test]
    fn dockerfiles_of_docker_named_for_their_image() {
        let name = |path: &str| ImageEntry::of_file(path).map(|entry| entry.name);
        assert_eq!(name("docker/Dockerfile.gateway"), Some("gateway".into()));
        assert_eq!(name("docker/worker.Dockerfile"), Some("worker".into()));
        assert_eq!(name("docker/Dockerfile"), None);
        assert_eq!(name("docker/Dockerfile.dockerignore"), None);
        assert_eq!(name("docker/README.md"), None);
    }

    #[test]
    fn a_crate_is_built_with_the_profile_and_features_of_its_builder_stage() {
        let builder = |args: &str, out: &str| {
            format!("FROM rust AS build\nRUN cargo build {args}\nFROM scratch\nCOPY --from=build /target/{out}/api /api\n")
        };
        let ws = with_images(&[
            ("crates/api/Dockerfile", &builder("--profile dist -p api --features tls", "dist")),
            ("docker/edge/Dockerfile", &builder("--release --bin api", "release")),
        ])
        .unwrap();
        let api = &ws.member("api").unwrap().cargo_options;
        assert_eq!(api.to_string(), "profile dist, features tls", "the crate's own image first");
        assert_eq!(ws.graph.cargo_options.keys().collect::<Vec<_>>(), ["api"]);
        assert_eq!(ws.member("common").unwrap().cargo_options, CargoOptions::default());
    }
}
