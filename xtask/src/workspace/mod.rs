//! The workspace as `cargo metadata` describes it: members, their path dependencies on each other,
//! and which of them are apps (a member with a `Dockerfile` beside its `Cargo.toml`); its
//! release settings (`config`); its resolved dependency graph (`graph`); and the git repository
//! it lives in (`git`).

pub mod config;
pub mod git;
pub mod graph;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use xshell::{cmd, Shell};

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
    /// False for an image of `docker/<name>/`, which is no crate: nothing is compiled for it,
    /// and its `deps` are the monorepo images its Dockerfile starts FROM.
    pub is_crate: bool,
}

#[derive(Deserialize)]
struct RawMetadata {
    packages: Vec<RawPackage>,
    workspace_members: Vec<String>,
    workspace_root: PathBuf,
    target_directory: PathBuf,
    #[serde(default)]
    metadata: serde_json::Value,
}

#[derive(Deserialize)]
struct RawPackage {
    id: String,
    name: String,
    version: String,
    manifest_path: PathBuf,
    dependencies: Vec<RawDependency>,
    targets: Vec<RawTarget>,
}

#[derive(Deserialize)]
struct RawDependency {
    kind: Option<String>,
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
struct RawTarget {
    name: String,
    kind: Vec<String>,
    #[serde(default)]
    src_path: Option<PathBuf>,
}

impl Workspace {
    /// Runs `cargo metadata` in `dir`. `--no-deps` keeps this fast and offline: path dependencies
    /// between members are all the graph that selection needs. With `resolve_graph` the resolved
    /// graph's run starts beside it, in the background (see `graph::WorkTreeGraph`).
    pub fn load(sh: &Shell, dir: &Path, resolve_graph: bool) -> Result<Workspace> {
        let graph = resolve_graph.then(|| graph::WorkTreeGraph::started(dir));
        let _cwd = sh.push_dir(dir);
        let cargo = cargo();
        let output = cmd!(sh, "{cargo} metadata --format-version 1 --no-deps").quiet().ignore_status().output()?;
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
        let mut workspace = Workspace::from_metadata(&output.stdout, &|app_dir| app_dir.join("Dockerfile").is_file())?;
        let image_dirs: Vec<String> = std::fs::read_dir(workspace.root.join(IMAGES_DIR))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().join("Dockerfile").is_file())
            .map(|entry| format!("{IMAGES_DIR}/{}", entry.file_name().to_string_lossy()))
            .collect();
        let root = workspace.root.clone();
        workspace.add_images(&image_dirs, &|dockerfile| std::fs::read_to_string(root.join(dockerfile)).ok())?;
        if let Some(graph) = graph {
            workspace.graph = graph;
        }
        Ok(workspace)
    }

    pub fn from_metadata(json: &[u8], has_dockerfile: &dyn Fn(&Path) -> bool) -> Result<Workspace> {
        let raw: RawMetadata = serde_json::from_slice(json).context("unexpected cargo metadata output")?;
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
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let graph = graph::WorkTreeGraph::on_demand(&raw.workspace_root);
        Ok(Workspace { root: raw.workspace_root, target_dir: raw.target_directory, members, metadata: raw.metadata, graph })
    }

    /// Adds the images of `image_dirs` (`docker/<name>`, each with a Dockerfile) as members, and
    /// to every image and app the monorepo images its Dockerfile starts FROM (a FROM naming one
    /// of them alone, as buildx's named contexts do). `read` gives a Dockerfile's text by its
    /// path. A name both an image and a crate have, and a cycle, are errors naming the file.
    pub fn add_images(&mut self, image_dirs: &[String], read: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        for dir in image_dirs {
            let name = dir.rsplit('/').next().unwrap_or(dir).to_string();
            let dockerfile = format!("{dir}/Dockerfile");
            let package = read(&dockerfile).and_then(|text| self.builder_package(&text, &dockerfile));
            if let Some(other) = self.member(&name) {
                // `docker/<crate>/Dockerfile` that builds that crate is the crate's image.
                if package.as_deref() == Some(name.as_str()) && other.dockerfile.is_none() {
                    self.members.iter_mut().find(|member| member.name == name).expect("found above").dockerfile = Some(dockerfile);
                    continue;
                }
                bail!(
                    "{dir}/Dockerfile makes an image `{name}`, and the crate in {} has that name too: their tags would collide in the repository; rename the directory",
                    other.dir
                );
            }
            self.members.push(Member {
                name,
                version: IMAGE_VERSION.to_string(),
                dir: dir.clone(),
                // The crate it compiles is an input like a crate app's dependencies.
                deps: package.iter().cloned().collect(),
                bin: None,
                bins: Vec::new(),
                package,
                dockerfile: Some(dockerfile),
                build_source_dirs: Vec::new(),
                is_crate: false,
            });
        }
        let images: BTreeSet<String> = self.members.iter().filter(|member| !member.is_crate).map(|member| member.name.clone()).collect();
        let mut lines: BTreeMap<(String, String), usize> = BTreeMap::new();
        for member in &mut self.members {
            let Some(text) = member.dockerfile.as_deref().and_then(read) else { continue };
            for (image, line) in crate::image::dockerfile::base_images_with_lines(&text, &[]) {
                if images.contains(&image) {
                    lines.insert((member.name.clone(), image.clone()), line);
                    member.deps.push(image);
                }
            }
            member.deps.sort();
            member.deps.dedup();
        }
        self.members.sort_by(|a, b| a.name.cmp(&b.name));
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

    /// The crate a Dockerfile's builder stage compiles, when the xtask replaces that stage
    /// (`dockerfile::cargo_stage`): the package it names, or the crate with the binaries it names.
    fn builder_package(&self, text: &str, dockerfile: &str) -> Option<String> {
        use crate::image::dockerfile::cargo_stage::{self, CargoStages};
        let Ok(CargoStages::Replaced(replaced)) = cargo_stage::replace(text, dockerfile, &[], "linux/amd64") else { return None };
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
                None => bail!("unknown app `{name}`: the workspace's apps are {} (an app is a workspace member with a Dockerfile beside its Cargo.toml, or an image of docker/<name>/Dockerfile)", app_names.join(", ")),
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

/// `CARGO_HOME` as cargo finds it.
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

/// The cargo that runs the xtask (`cargo xtask` sets `CARGO`), so the same toolchain builds the
/// apps; plain `cargo` otherwise.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
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
        let dirs: Vec<String> = dockerfiles
            .iter()
            .filter_map(|(path, _)| path.strip_suffix("/Dockerfile"))
            .filter(|d| d.starts_with("docker/"))
            .map(String::from)
            .collect();
        let read = |path: &str| dockerfiles.iter().find(|(file, _)| *file == path).map(|(_, text)| text.to_string());
        ws.add_images(&dirs, &read)?;
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
            "unknown app `nope`: the workspace's apps are api (an app is a workspace member with a Dockerfile beside its Cargo.toml, or an image of docker/<name>/Dockerfile)"
        );
        let err = ws.select_apps(&["common".into()]).unwrap_err();
        assert_eq!(err.to_string(), "crate `common` is not an app: it has no Dockerfile in crates/common; add one there to make it an app, or pick one of the apps: api");
    }
}
