//! The workspace as `cargo metadata` describes it: members, their path dependencies on each other,
//! and which of them are apps (a member with a `Dockerfile` beside its `Cargo.toml`); its
//! release settings (`config`); and the git repository it lives in (`git`).

pub mod config;
pub mod git;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use xshell::{cmd, Shell};

#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    /// Cargo's target directory, where `cargo build` puts binaries.
    pub target_dir: PathBuf,
    pub members: Vec<Member>,
    /// `[workspace.metadata]` of the root manifest, as JSON.
    pub metadata: serde_json::Value,
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
    /// The app's Dockerfile relative to the workspace root, if the member is an app.
    pub dockerfile: Option<String>,
    /// The directories (relative to the workspace root) of the targets a build compiles: the
    /// library, binaries, build script and proc macro; not tests, benches or examples.
    pub build_source_dirs: Vec<String>,
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
    /// between members are all the graph that selection needs.
    pub fn load(sh: &Shell, dir: &Path) -> Result<Workspace> {
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
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).context("cargo metadata printed invalid JSON")?;
        Workspace::from_metadata(json, &|app_dir| app_dir.join("Dockerfile").is_file())
    }

    pub fn from_metadata(json: serde_json::Value, has_dockerfile: &dyn Fn(&Path) -> bool) -> Result<Workspace> {
        let raw: RawMetadata = serde_json::from_value(json).context("unexpected cargo metadata output")?;
        let member_dirs: Vec<(String, PathBuf)> = raw
            .packages
            .iter()
            .filter(|package| raw.workspace_members.contains(&package.id))
            .map(|package| (package.name.clone(), package.manifest_path.parent().unwrap_or(Path::new("")).to_path_buf()))
            .collect();
        let mut members = Vec::new();
        for package in raw.packages.iter().filter(|package| raw.workspace_members.contains(&package.id)) {
            let abs_dir = package.manifest_path.parent().unwrap_or(Path::new(""));
            let dir = relative(&raw.workspace_root, abs_dir);
            let mut deps: Vec<String> = package
                .dependencies
                .iter()
                .filter(|dep| dep.kind.as_deref() != Some("dev"))
                .filter_map(|dep| {
                    let path = dep.path.as_ref()?;
                    member_dirs.iter().find(|(_, dir)| dir == path).map(|(name, _)| name.clone())
                })
                .collect();
            deps.sort();
            deps.dedup();
            let bin = package.targets.iter().find(|target| target.kind.iter().any(|kind| kind == "bin")).map(|target| target.name.clone());
            let dockerfile =
                has_dockerfile(abs_dir).then(|| if dir.is_empty() { "Dockerfile".to_string() } else { format!("{dir}/Dockerfile") });
            let mut build_source_dirs: Vec<String> = package
                .targets
                .iter()
                .filter(|target| {
                    target.kind.iter().any(|kind| matches!(kind.as_str(), "bin" | "lib" | "rlib" | "proc-macro" | "custom-build"))
                })
                .filter_map(|target| Some(relative(&raw.workspace_root, target.src_path.as_ref()?.parent()?)))
                .collect();
            build_source_dirs.sort();
            build_source_dirs.dedup();
            members.push(Member {
                name: package.name.clone(),
                version: package.version.clone(),
                dir,
                deps,
                bin,
                dockerfile,
                build_source_dirs,
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Workspace { root: raw.workspace_root, target_dir: raw.target_directory, members, metadata: raw.metadata })
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
                None => bail!("unknown app `{name}`: the workspace's apps are {} (an app is a workspace member with a Dockerfile beside its Cargo.toml)", app_names.join(", ")),
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

/// For every app, the packages its own build compiles for each of `triples`, as cargo would
/// resolve `cargo build -p APP --target T` alone (no feature unified in from another member):
/// `name version source [features] for T` lines, and `... for the host` for build scripts and
/// proc macros. guppy simulates cargo's resolver in-process from the full `cargo metadata`
/// output; comparing two of these tells which apps a lockfile change reaches.
pub fn resolved_dependencies(metadata: &[u8], apps: &[String], triples: &[&str]) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let resolver = Resolver::new(metadata)?;
    let mut result = BTreeMap::new();
    for app in apps {
        if resolver.graph.workspace().member_by_name(app).is_err() {
            continue;
        }
        let mut lines = BTreeSet::new();
        for triple in triples {
            lines.extend(resolver.compiled(std::slice::from_ref(app), triple)?);
        }
        result.insert(app.clone(), lines);
    }
    Ok(result)
}

/// The targets of `triples` for which building `apps` together in one cargo run compiles every
/// package each of them compiles with the features it has when the app is built alone: there
/// one run gives each app the binary it would get alone, and shares every artifact.
pub fn targets_where_builds_agree(metadata: &[u8], apps: &[String], triples: &[&str]) -> Result<BTreeSet<String>> {
    let resolver = Resolver::new(metadata)?;
    let mut agreeing = BTreeSet::new();
    for triple in triples {
        let together = resolver.compiled(apps, triple)?;
        let mut agree = true;
        for app in apps {
            agree &= resolver.compiled(std::slice::from_ref(app), triple)?.is_subset(&together);
        }
        if agree {
            agreeing.insert(triple.to_string());
        }
    }
    Ok(agreeing)
}

/// Cargo's feature resolution (resolver 2), simulated by guppy over one `cargo metadata`.
struct Resolver {
    graph: guppy::graph::PackageGraph,
    host: guppy::platform::PlatformSpec,
}

impl Resolver {
    fn new(metadata: &[u8]) -> Result<Resolver> {
        use guppy::platform::{Platform, PlatformSpec};
        let text = std::str::from_utf8(metadata).context("cargo metadata printed something that is not UTF-8")?;
        let graph = guppy::graph::PackageGraph::from_json(text).context("unexpected cargo metadata output (no resolve graph)")?;
        let host = PlatformSpec::from(Platform::build_target().context("the host platform is unknown to the resolver")?);
        Ok(Resolver { graph, host })
    }

    /// What `cargo build -p A -p B ... --target triple` compiles besides the named members, as
    /// `name version source [features] for <triple | the host>` lines.
    fn compiled(&self, members: &[String], triple: &str) -> Result<BTreeSet<String>> {
        use guppy::graph::cargo::{CargoOptions, CargoResolverVersion};
        use guppy::graph::feature::StandardFeatures;
        use guppy::graph::DependencyDirection;
        use guppy::platform::{Platform, TargetFeatures};

        let ids: Vec<&guppy::PackageId> =
            members.iter().map(|name| Ok(self.graph.workspace().member_by_name(name)?.id())).collect::<Result<_>>()?;
        // The members with their default features are what cargo starts from.
        let initials = self.graph.resolve_ids(ids.iter().copied())?.to_feature_set(StandardFeatures::Default);
        let platform = Platform::new(triple.to_string(), TargetFeatures::Unknown)
            .with_context(|| format!("the Rust target `{triple}` is unknown to the dependency resolver"))?;
        let mut options = CargoOptions::new();
        options.set_resolver(CargoResolverVersion::V2).set_target_platform(platform).set_host_platform(self.host.clone());
        let built = initials.into_cargo_set(&options)?;
        let mut lines = BTreeSet::new();
        for (features, on) in [(built.target_features(), format!("for {triple}")), (built.host_features(), "for the host".to_string())] {
            for list in features.packages_with_features(DependencyDirection::Forward) {
                let package = list.package();
                if ids.contains(&package.id()) {
                    continue;
                }
                let named: Vec<&str> = list.named_features().collect();
                let source = if package.source().is_workspace() || package.source().is_path() {
                    "path".to_string()
                } else {
                    package.source().to_string()
                };
                lines.insert(format!("{} {} {source} [{}] {on}", package.name(), package.version(), named.join(",")));
            }
        }
        Ok(lines)
    }
}

/// Resolves the workspace in `dir` from its Cargo.lock, never changing it (`--locked`), into each
/// member's resolved packages. With `prefer_offline` cargo first tries without the network (fast,
/// and enough when the crates are cached); when that fails, as on a fresh CI runner whose crates
/// are not downloaded yet, it resolves online (downloading them), unless `CARGO_NET_OFFLINE`
/// forbids it. An error names what cargo said.
pub fn resolve_graph(
    sh: &Shell,
    dir: &Path,
    prefer_offline: bool,
    apps: &[String],
    triples: &[&str],
) -> Result<BTreeMap<String, BTreeSet<String>>> {
    resolved_dependencies(&full_metadata(sh, dir, prefer_offline)?, apps, triples)
}

/// `cargo metadata` of the workspace in `dir` with its resolve graph, from its Cargo.lock as
/// `resolve_graph` describes.
pub fn full_metadata(sh: &Shell, dir: &Path, prefer_offline: bool) -> Result<Vec<u8>> {
    let _cwd = sh.push_dir(dir);
    let cargo = cargo();
    let metadata =
        |offline: Option<&str>| cmd!(sh, "{cargo} metadata --format-version 1 --locked {offline...}").quiet().ignore_status().output();
    let mut output = metadata(prefer_offline.then_some("--offline"))?;
    let network_allowed = !std::env::var("CARGO_NET_OFFLINE").is_ok_and(|value| value == "true");
    // Only a refusal that offline mode caused (cargo's message says so) is worth the network.
    let for_want_of_downloads = String::from_utf8_lossy(&output.stderr).contains("offline");
    if !output.status.success() && prefer_offline && network_allowed && for_want_of_downloads {
        output = metadata(None)?;
    }
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("cannot resolve the dependency graph of {} from its Cargo.lock: {}", dir.display(), stderr.trim());
    }
    Ok(output.stdout)
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
        Workspace::from_metadata(json, &|dir| apps.iter().any(|app| app == dir)).unwrap()
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

    #[test]
    fn selecting_apps_by_name() {
        let ws = workspace(&[("common", "crates/common", &[], false), ("api", "crates/api", &["common"], true)]);
        let err = ws.select_apps(&["nope".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown app `nope`: the workspace's apps are api (an app is a workspace member with a Dockerfile beside its Cargo.toml)"
        );
        let err = ws.select_apps(&["common".into()]).unwrap_err();
        assert_eq!(err.to_string(), "crate `common` is not an app: it has no Dockerfile in crates/common; add one there to make it an app, or pick one of the apps: api");
    }
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    /// A workspace of path crates only (resolved offline): `lib` has an optional dependency
    /// behind its `fancy` feature, a dependency for arm64 only and a build dependency; `api`
    /// turns `fancy` on, `worker` does not and has a dev-dependency.
    fn resolved(lib_version: &str) -> BTreeMap<String, BTreeSet<String>> {
        let apps = ["api".to_string(), "worker".to_string()];
        resolved_dependencies(&metadata(lib_version, "fancy"), &apps, &TRIPLES).unwrap()
    }

    const TRIPLES: [&str; 2] = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];

    /// The workspace's full `cargo metadata`, `api` turning on `lib`'s features `api_features`.
    fn metadata(lib_version: &str, api_features: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("Cargo.toml", "[workspace]\nmembers = [\"*\"]\nresolver = \"2\"\n");
        let package = |name: &str, version: &str, rest: &str| {
            format!("[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\n{rest}")
        };
        for (name, kind) in
            [("extra", "lib"), ("armonly", "lib"), ("codegen", "lib"), ("testutil", "lib"), ("api", "main"), ("worker", "main")]
        {
            write(&format!("{name}/src/{kind}.rs"), "");
        }
        for name in ["extra", "armonly", "codegen", "testutil"] {
            write(&format!("{name}/Cargo.toml"), &package(name, "0.1.0", ""));
        }
        write(
            "lib/Cargo.toml",
            &package(
                "lib",
                lib_version,
                "[features]\nfancy = [\"dep:extra\"]\n[dependencies]\nextra = { path = \"../extra\", optional = true }\n\
                 [target.'cfg(target_arch = \"aarch64\")'.dependencies]\narmonly = { path = \"../armonly\" }\n\
                 [build-dependencies]\ncodegen = { path = \"../codegen\" }\n",
            ),
        );
        write("lib/src/lib.rs", "");
        write("lib/build.rs", "fn main() {}");
        let features = if api_features.is_empty() { String::new() } else { format!(", features = [\"{api_features}\"]") };
        write("api/Cargo.toml", &package("api", "0.1.0", &format!("[dependencies]\nlib = {{ path = \"../lib\"{features} }}\n")));
        write(
            "worker/Cargo.toml",
            &package(
                "worker",
                "0.1.0",
                "[dependencies]\nlib = { path = \"../lib\" }\n[dev-dependencies]\ntestutil = { path = \"../testutil\" }\n",
            ),
        );
        let output = std::process::Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--offline"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    }

    #[test]
    fn apps_share_a_cargo_run_only_where_their_features_agree() {
        let apps = ["api".to_string(), "worker".to_string()];
        assert!(targets_where_builds_agree(&metadata("0.1.0", "fancy"), &apps, &TRIPLES).unwrap().is_empty());
        assert_eq!(targets_where_builds_agree(&metadata("0.1.0", ""), &apps, &TRIPLES).unwrap().len(), 2);
    }

    #[test]
    fn each_app_resolves_its_own_features_per_target() {
        let old = resolved("0.1.0");
        let show = |app: &str| old[app].iter().map(|line| format!("{line}\n")).collect::<String>();
        expect_test::expect![[r#"
            armonly 0.1.0 path [] for aarch64-unknown-linux-musl
            codegen 0.1.0 path [] for the host
            extra 0.1.0 path [] for aarch64-unknown-linux-musl
            extra 0.1.0 path [] for x86_64-unknown-linux-musl
            lib 0.1.0 path [fancy] for aarch64-unknown-linux-musl
            lib 0.1.0 path [fancy] for x86_64-unknown-linux-musl
        "#]]
        .assert_eq(&show("api"));
        expect_test::expect![[r#"
            armonly 0.1.0 path [] for aarch64-unknown-linux-musl
            codegen 0.1.0 path [] for the host
            lib 0.1.0 path [] for aarch64-unknown-linux-musl
            lib 0.1.0 path [] for x86_64-unknown-linux-musl
        "#]]
        .assert_eq(&show("worker"));
        let new = resolved("0.2.0");
        assert_ne!(old["worker"], new["worker"], "a version the app compiles counts");
    }
}
