//! The workspace's resolved dependency graph: `cargo metadata` with its resolve section, and
//! cargo's feature resolution over it simulated per app and per target (guppy). Detection reads it
//! when Cargo.lock changed; input digests record it; a build of several apps checks with it
//! whether they may share a cargo run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};

use super::cargo;
use crate::image::attestation::CompiledPackage;
use crate::image::dockerfile::cargo_stage::CargoOptions;

/// The work tree's `cargo metadata` with its resolve graph, asked for at most once per run. A
/// command that may need it (detection when Cargo.lock changed, a build of several apps) starts
/// it in the background beside the `--no-deps` run that loads the workspace, so its time runs
/// alongside the git calls instead of after them; a command that never asks for it kills it
/// when the workspace is dropped.
pub struct WorkTreeGraph {
    dir: PathBuf,
    /// The profile and features each crate is built with where not the defaults, which its
    /// resolution follows (set by the workspace before anything is resolved).
    pub cargo_options: BTreeMap<String, CargoOptions>,
    state: Mutex<State>,
    /// guppy's graph of it, built once (parsing the metadata costs tens of milliseconds).
    resolver: std::sync::OnceLock<Result<Resolver, String>>,
    /// Its `package_entries`, read once.
    entries: std::sync::OnceLock<Result<BTreeMap<String, String>, String>>,
}

enum State {
    NotStarted,
    Running(MetadataRun),
    /// The metadata, or the error message (shared by every later caller).
    Done(Result<Arc<[u8]>, String>),
}

/// A `cargo metadata` run in the background, its output read by threads of its own so that a
/// full pipe never stalls it; killed when dropped unfinished.
pub struct Background {
    cargo: KilledUnlessWaited,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

/// A process killed when dropped before it exits: a run nobody asked for is not left running.
struct KilledUnlessWaited(Child);

impl WorkTreeGraph {
    /// Resolved when first asked for.
    pub fn on_demand(dir: &Path) -> WorkTreeGraph {
        WorkTreeGraph {
            dir: dir.to_path_buf(),
            cargo_options: BTreeMap::new(),
            state: Mutex::new(State::NotStarted),
            resolver: std::sync::OnceLock::new(),
            entries: std::sync::OnceLock::new(),
        }
    }

    /// Started now, in the background; when the process cannot even start, it is resolved when
    /// asked for (and that reports the error).
    pub fn started(dir: &Path) -> WorkTreeGraph {
        let state = match MetadataRun::start(dir) {
            Ok(run) => State::Running(run),
            Err(_) => State::NotStarted,
        };
        WorkTreeGraph {
            dir: dir.to_path_buf(),
            cargo_options: BTreeMap::new(),
            state: Mutex::new(state),
            resolver: std::sync::OnceLock::new(),
            entries: std::sync::OnceLock::new(),
        }
    }

    /// The metadata, waiting for the background run (or resolving now), offline first as
    /// `full_metadata` describes.
    pub fn metadata(&self) -> Result<Arc<[u8]>> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let resolved = match std::mem::replace(&mut *state, State::NotStarted) {
            State::Done(resolved) => resolved,
            State::NotStarted => full_metadata(&self.dir, true).map(Arc::from).map_err(|err| format!("{err:#}")),
            State::Running(run) => run.finish().map(Arc::from).map_err(|err| format!("{err:#}")),
        };
        *state = State::Done(resolved.clone());
        resolved.map_err(|message| anyhow!(message))
    }
}

impl WorkTreeGraph {
    /// The resolver over `metadata`, built at most once per run.
    pub fn resolver(&self) -> Result<&Resolver> {
        let built = self.resolver.get_or_init(|| {
            let resolver = self.metadata().and_then(|metadata| Resolver::new(&metadata));
            resolver.map(|resolver| resolver.with_cargo_options(self.cargo_options.clone())).map_err(|err| format!("{err:#}"))
        });
        built.as_ref().map_err(|message| anyhow!(message.clone()))
    }
}

impl WorkTreeGraph {
    /// `package_entries` of the metadata, read at most once per run.
    pub fn package_entries(&self) -> Result<&BTreeMap<String, String>> {
        let read =
            self.entries.get_or_init(|| self.metadata().and_then(|metadata| package_entries(&metadata)).map_err(|err| format!("{err:#}")));
        read.as_ref().map_err(|message| anyhow!(message.clone()))
    }
}

impl std::fmt::Debug for WorkTreeGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkTreeGraph").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// `xtask_metadata::package_entries`: each package of a `cargo metadata` as `name version`, with
/// what its entry says; two of these tell which packages a manifest change touched.
pub fn package_entries(metadata: &[u8]) -> Result<BTreeMap<String, String>> {
    xtask_metadata::package_entries(metadata).context("unexpected cargo metadata output")
}

/// A tree's `cargo metadata` with its resolve graph (`full_metadata`), running in the background
/// from `start` on; killed when dropped unfinished, so that a run found unneeded on the way
/// costs no more waiting.
pub struct MetadataRun {
    dir: PathBuf,
    /// The target directory cargo is told, when not the workspace's own.
    target_dir: Option<PathBuf>,
    background: Background,
}

impl MetadataRun {
    /// An offline `cargo metadata --locked` of the workspace in `dir` (`metadata_command`).
    pub fn start(dir: &Path) -> Result<MetadataRun> {
        MetadataRun::start_with(dir, None)
    }

    /// `start` in a tree the xtask exported from a commit: cargo keeps what it asked rustc about
    /// the host in the tree's own target directory, whatever CARGO_TARGET_DIR says; one that does
    /// not exist yet (a fresh CI runner's) would have it ask rustc again on every run, which takes
    /// a quarter of a large workspace's resolution.
    pub fn start_exported(tree: &Path) -> Result<MetadataRun> {
        MetadataRun::start_with(tree, Some(tree.join("target")))
    }

    fn start_with(dir: &Path, target_dir: Option<PathBuf>) -> Result<MetadataRun> {
        let background = Background::spawn(&mut metadata_command(dir, true, target_dir.as_deref())).context("cannot run cargo metadata")?;
        Ok(MetadataRun { dir: dir.to_path_buf(), target_dir, background })
    }

    /// Its output, waiting for it; online after all as `full_metadata` describes.
    pub fn finish(self) -> Result<Vec<u8>> {
        self.background.finish().and_then(|output| settle(&self.dir, self.target_dir.as_deref(), true, output))
    }
}

impl Background {
    pub fn spawn(command: &mut Command) -> std::io::Result<Background> {
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("piped")));
        let stderr = drain(Box::new(child.stderr.take().expect("piped")));
        Ok(Background { cargo: KilledUnlessWaited(child), stdout, stderr })
    }

    pub fn finish(self) -> Result<Output> {
        let Background { mut cargo, stdout, stderr } = self;
        let status = cargo.0.wait().context("cannot wait for cargo metadata")?;
        // The pipes close when cargo exits, so the readers end.
        let read = |reader: JoinHandle<Vec<u8>>| reader.join().map_err(|_| anyhow!("reading cargo metadata's output failed"));
        Ok(Output { status, stdout: read(stdout)?, stderr: read(stderr)? })
    }
}

impl Drop for KilledUnlessWaited {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Resolver {
    /// The targets of `triples` for which building `apps` together in one cargo run compiles
    /// every package each of them compiles with the features it has when the app is built alone:
    /// there one run gives each app the binary it would get alone, and shares every artifact.
    pub fn targets_where_builds_agree(&self, apps: &[String], triples: &[&str]) -> Result<BTreeSet<String>> {
        let mut agreeing = BTreeSet::new();
        for triple in triples {
            let together = self.compiled(apps, triple)?;
            let mut agree = true;
            for app in apps {
                agree &= self.compiled(std::slice::from_ref(app), triple)?.is_subset(&together);
            }
            if agree {
                agreeing.insert(triple.to_string());
            }
        }
        Ok(agreeing)
    }
}

/// Cargo's feature resolution (resolver 2), simulated by guppy over one `cargo metadata`.
pub struct Resolver {
    graph: guppy::graph::PackageGraph,
    host: guppy::platform::PlatformSpec,
    /// The members built with other features than their defaults (`--features`,
    /// `--no-default-features`, `--all-features`), as their builds are.
    cargo_options: BTreeMap<String, CargoOptions>,
    /// Each app's build per target, resolved once: the binaries' dependency lists, the
    /// attestations and the RustSec gate all ask for it.
    compiled: Mutex<BTreeMap<(String, String), Arc<CompiledGraph>>>,
}

impl Resolver {
    pub fn new(metadata: &[u8]) -> Result<Resolver> {
        use guppy::platform::{Platform, PlatformSpec};
        let text = std::str::from_utf8(metadata).context("cargo metadata printed something that is not UTF-8")?;
        let graph = guppy::graph::PackageGraph::from_json(text).context("unexpected cargo metadata output (no resolve graph)")?;
        let host = PlatformSpec::from(Platform::build_target().context("the host platform is unknown to the resolver")?);
        Ok(Resolver { graph, host, cargo_options: BTreeMap::new(), compiled: Mutex::default() })
    }

    /// The resolver, each member named in `options` resolved with its features.
    pub fn with_cargo_options(mut self, options: BTreeMap<String, CargoOptions>) -> Resolver {
        self.cargo_options = options;
        self
    }

    /// For every app among `apps` that is a member, the packages its own build compiles for each
    /// of `triples`, as cargo would resolve `cargo build -p APP --target T` alone (no feature
    /// unified in from another member): `name version source [features] for T` lines, and
    /// `... for the host` for build scripts and proc macros. guppy simulates cargo's resolver
    /// in-process from the full `cargo metadata` output; comparing two of these tells which apps
    /// a lockfile change reaches.
    pub fn per_app(&self, apps: &[String], triples: &[&str]) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let mut result = BTreeMap::new();
        for app in apps {
            if self.graph.workspace().member_by_name(app).is_err() {
                continue;
            }
            let mut lines = BTreeSet::new();
            for triple in triples {
                lines.extend(self.compiled(std::slice::from_ref(app), triple)?);
            }
            result.insert(app.clone(), lines);
        }
        Ok(result)
    }

    /// What native code `cargo build -p APP --target triple` compiles or links for the target.
    pub fn native_code(&self, app: &str, triple: &str) -> Result<NativeCode> {
        use guppy::graph::DependencyDirection;

        let member = self.graph.workspace().member_by_name(app)?;
        let built = self.cargo_build(&[member.id()], triple)?;
        let host = built.host_features().to_package_set();
        let target = built.target_features().to_package_set();
        let on_host = |name: &str| host.packages(DependencyDirection::Forward).any(|package| package.name() == name);
        let mut code = NativeCode { c_packages: Vec::new(), system_libraries: Vec::new() };
        for list in built.target_features().packages_with_features(DependencyDirection::Forward) {
            let package = list.package();
            let builds_c = package.direct_links().any(|link| {
                link.build().is_present() && matches!(link.to().name(), "cc" | "cmake") && host.contains(link.to().id()).unwrap_or(false)
            });
            if builds_c || package.links().is_some() {
                code.c_packages.push(dependency_path(&self.graph, &target, member.id(), package.id()));
            }
            let Some((_, library, vendored, how)) = SYSTEM_LIBRARIES.iter().find(|(name, ..)| *name == package.name()) else { continue };
            let from_source = match vendored {
                Vendoring::Package(source) => on_host(source),
                Vendoring::Feature(prefix) => list.named_features().any(|feature| feature.starts_with(prefix)),
            };
            if !from_source {
                let path = dependency_path(&self.graph, &target, member.id(), package.id());
                code.system_libraries.push(SystemLibrary { package: package.name().to_string(), library, how, path });
            }
        }
        Ok(code)
    }

    /// The apps among `apps` whose build could compile one of `packages` (`name version`): their
    /// normal and build dependencies, optional ones included, for every platform. That is more
    /// than any feature set compiles, so the other apps need no simulated build to be ruled out.
    pub fn apps_that_may_compile(&self, apps: &[String], packages: &BTreeSet<String>) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for app in apps {
            let Ok(member) = self.graph.workspace().member_by_name(app) else { continue };
            let reachable = self.graph.query_forward([member.id()])?.resolve_with_fn(|_, link| !link.dev_only());
            let mut names = reachable.packages(guppy::graph::DependencyDirection::Forward);
            if names.any(|package| packages.contains(&format!("{} {}", package.name(), package.version()))) {
                found.push(app.clone());
            }
        }
        Ok(found)
    }

    /// The packages `cargo build -p APP --target triple` compiles into the binary (not build
    /// scripts and proc macros, which run on the host), each with its source (`None` for a path
    /// crate) and its manifest's license.
    pub fn compiled_into(&self, app: &str, triple: &str) -> Result<Vec<CompiledPackage>> {
        Ok(self.compiled_graph(app, triple)?.packages[1..].to_vec())
    }

    /// What `compiled_into` lists, as a graph: the app's own crate first, then those packages in
    /// their sorted order, each with the packages among them it depends on (normal dependencies:
    /// what is linked into the binary).
    pub fn compiled_graph(&self, app: &str, triple: &str) -> Result<Arc<CompiledGraph>> {
        let key = (app.to_string(), triple.to_string());
        if let Some(graph) = self.compiled.lock().expect("not poisoned").get(&key) {
            return Ok(graph.clone());
        }
        let graph = Arc::new(self.resolve_compiled_graph(app, triple)?);
        self.compiled.lock().expect("not poisoned").insert(key, graph.clone());
        Ok(graph)
    }

    fn resolve_compiled_graph(&self, app: &str, triple: &str) -> Result<CompiledGraph> {
        use guppy::graph::DependencyDirection;

        let app = self.graph.workspace().member_by_name(app)?;
        let built = self.cargo_build(&[app.id()], triple)?;
        let describe = |package: &guppy::graph::PackageMetadata<'_>| CompiledPackage {
            name: package.name().to_string(),
            version: package.version().to_string(),
            source: (!package.source().is_workspace() && !package.source().is_path()).then(|| package.source().to_string()),
            checksum: None,
            license: package.license().map(str::to_string),
        };
        let mut compiled: Vec<(CompiledPackage, guppy::graph::PackageMetadata<'_>)> = built
            .target_features()
            .to_package_set()
            .packages(DependencyDirection::Forward)
            .filter(|package| package.id() != app.id())
            .map(|package| (describe(&package), package))
            .collect();
        compiled.sort_by(|(a, a_meta), (b, b_meta)| a.cmp(b).then_with(|| a_meta.id().cmp(b_meta.id())));
        compiled.insert(0, (describe(&app), app));
        let index: std::collections::HashMap<&guppy::PackageId, usize> =
            compiled.iter().enumerate().map(|(index, (_, package))| (package.id(), index)).collect();
        let dependencies = compiled
            .iter()
            .map(|(_, package)| {
                package
                    .direct_links()
                    .filter(|link| !link.dev_only() && link.normal().is_present())
                    .filter_map(|link| index.get(link.to().id()).copied())
                    .collect()
            })
            .collect();
        Ok(CompiledGraph { packages: compiled.into_iter().map(|(package, _)| package).collect(), dependencies })
    }

    /// cargo's resolution of `cargo build -p ... --target triple` for the members `ids`, each
    /// with the features its build turns on (its defaults unless `cargo_options` says
    /// otherwise), resolver 2, on this host.
    fn cargo_build<'g>(&'g self, ids: &[&'g guppy::PackageId], triple: &str) -> Result<guppy::graph::cargo::CargoSet<'g>> {
        use guppy::graph::cargo::{CargoOptions, CargoResolverVersion};
        use guppy::graph::feature::{named_feature_filter, FeatureId, StandardFeatures};
        use guppy::platform::{Platform, TargetFeatures};

        let mut initials = self.graph.resolve_ids(std::iter::empty())?.to_feature_set(StandardFeatures::None);
        for id in ids {
            let member = self.graph.metadata(id)?;
            let options = self.cargo_options.get(member.name()).cloned().unwrap_or_default();
            let base = match (options.all_features, options.no_default_features) {
                (true, _) => StandardFeatures::All,
                (false, true) => StandardFeatures::None,
                (false, false) => StandardFeatures::Default,
            };
            // `--features dep/feat` turns on a feature of a dependency, and the dependency itself
            // when it is optional; the others are the package's own.
            let (of_dependencies, own): (Vec<&String>, Vec<&String>) = options.features.iter().partition(|feature| feature.contains('/'));
            let filter = named_feature_filter(base, own.into_iter().map(String::as_str));
            initials = initials.union(&self.graph.resolve_ids([*id])?.to_feature_set(filter));
            for feature in of_dependencies {
                let (dependency, name) = feature.split_once('/').expect("partitioned on `/`");
                let weak = dependency.ends_with('?');
                let dependency = dependency.trim_end_matches('?');
                let link = member.direct_links().find(|link| link.dep_name() == dependency).with_context(|| {
                    format!("`--features {feature}` names a feature of `{dependency}`, which is no dependency of {}", member.name())
                })?;
                let features = self.graph.feature_graph();
                let mut turned_on = vec![FeatureId::named(link.to().id(), name)];
                // `dep?/feat` leaves an optional dependency off; `dep/feat` turns it on.
                let optional = FeatureId::optional_dependency(member.id(), link.dep_name());
                if !weak && features.contains(optional) {
                    turned_on.push(optional);
                }
                initials = initials.union(&features.resolve_ids(turned_on)?);
            }
        }
        let platform = Platform::new(triple.to_string(), TargetFeatures::Unknown)
            .with_context(|| format!("the Rust target `{triple}` is unknown to the dependency resolver"))?;
        let mut options = CargoOptions::new();
        options.set_resolver(CargoResolverVersion::V2).set_target_platform(platform).set_host_platform(self.host.clone());
        Ok(initials.into_cargo_set(&options)?)
    }

    /// What `cargo build -p A -p B ... --target triple` compiles besides the named members, as
    /// `name version source [features] for <triple | the host>` lines.
    fn compiled(&self, members: &[String], triple: &str) -> Result<BTreeSet<String>> {
        use guppy::graph::DependencyDirection;

        let ids: Vec<&guppy::PackageId> =
            members.iter().map(|name| Ok(self.graph.workspace().member_by_name(name)?.id())).collect::<Result<_>>()?;
        let built = self.cargo_build(&ids, triple)?;
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

/// What native code one app's build for one target has (`Resolver::native_code`).
#[derive(Debug)]
pub struct NativeCode {
    /// The packages compiled for the target whose build script compiles C or C++ (a build
    /// dependency on `cc` or `cmake`), or that link a native library (`links`), each as the
    /// path of dependencies from the app to it.
    pub c_packages: Vec<Vec<String>>,
    /// Packages that link a library of the system they are built on, since the feature that
    /// builds it from source is off.
    pub system_libraries: Vec<SystemLibrary>,
}

#[derive(Debug)]
pub struct SystemLibrary {
    pub package: String,
    pub library: &'static str,
    /// What builds it from source instead.
    pub how: &'static str,
    /// The dependencies from the app to the package.
    pub path: Vec<String>,
}

impl NativeCode {
    pub fn compiles_c(&self) -> bool {
        !self.c_packages.is_empty()
    }
}

/// The names of a shortest path of dependencies of `graph` within `set` from `from` to `to`
/// (both included).
fn dependency_path(
    graph: &guppy::graph::PackageGraph,
    set: &guppy::graph::PackageSet<'_>,
    from: &guppy::PackageId,
    to: &guppy::PackageId,
) -> Vec<String> {
    let mut previous: std::collections::HashMap<&guppy::PackageId, &guppy::PackageId> = std::collections::HashMap::new();
    let mut queue = std::collections::VecDeque::from([from]);
    while let Some(current) = queue.pop_front() {
        if current == to {
            break;
        }
        let Ok(metadata) = graph.metadata(current) else { continue };
        for link in metadata.direct_links().filter(|link| !link.dev_only()) {
            let next = link.to().id();
            if next != from && set.contains(next).unwrap_or(false) && !previous.contains_key(next) {
                previous.insert(next, current);
                queue.push_back(next);
            }
        }
    }
    let name = |id: &guppy::PackageId| graph.metadata(id).map(|package| package.name().to_string()).unwrap_or_default();
    let mut path = vec![name(to)];
    let mut at = to;
    while let Some(before) = previous.get(at) {
        path.push(name(before));
        at = before;
    }
    if at != from {
        return vec![name(from), name(to)];
    }
    path.reverse();
    path
}

/// How a -sys crate builds its library from source: a source crate among its build
/// dependencies, or one of its features.
enum Vendoring {
    Package(&'static str),
    Feature(&'static str),
}

/// The -sys crates that link the system's library unless told to build it (those that fall
/// back to building it themselves, such as libz-sys and curl-sys, are not here).
const SYSTEM_LIBRARIES: [(&str, &str, Vendoring, &str); 4] = [
    ("openssl-sys", "OpenSSL (libssl)", Vendoring::Package("openssl-src"), "the `vendored` feature of `openssl` (or `openssl-sys`)"),
    ("pq-sys", "libpq", Vendoring::Package("pq-src"), "the `bundled` feature of `pq-sys`"),
    (
        "libsqlite3-sys",
        "SQLite",
        Vendoring::Feature("bundled"),
        "the `bundled` feature of `libsqlite3-sys` (`rusqlite`'s and `sqlx`'s `bundled`)",
    ),
    ("mysqlclient-sys", "libmysqlclient", Vendoring::Feature("bundled"), "the `bundled` feature of `mysqlclient-sys`"),
];

/// One app's build for one target (`Resolver::compiled_graph`).
pub struct CompiledGraph {
    /// The app's crate, then every package its binary compiles, sorted.
    pub packages: Vec<CompiledPackage>,
    /// For each of `packages`, the indices of those it depends on.
    pub dependencies: Vec<BTreeSet<usize>>,
}

/// `cargo metadata` of the workspace in `dir` with its resolve graph, from its Cargo.lock (never
/// changing it: `--locked`). With `prefer_offline` cargo first tries without the network (fast,
/// and enough when the crates are cached); when that fails, as on a fresh CI runner whose crates
/// are not downloaded yet, it resolves online (downloading them), unless `CARGO_NET_OFFLINE`
/// forbids it. An error names what cargo said.
pub fn full_metadata(dir: &Path, prefer_offline: bool) -> Result<Vec<u8>> {
    let output = metadata_command(dir, prefer_offline, None).output().context("cannot run cargo metadata")?;
    settle(dir, None, prefer_offline, output)
}

fn metadata_command(dir: &Path, offline: bool, target_dir: Option<&Path>) -> Command {
    let mut command = Command::new(cargo());
    if let Some(target_dir) = target_dir {
        command.env("CARGO_TARGET_DIR", target_dir);
    }
    // Every feature's edges are in the graph (cargo resolves its metadata with the default
    // features only), so that a build with `--features` is resolved as cargo would.
    command.args(["metadata", "--format-version", "1", "--locked", "--all-features"]).current_dir(dir);
    if offline {
        command.arg("--offline");
    }
    command
}

/// The metadata of a finished run, or of an online one when an offline run failed for want of
/// downloads and the network is allowed.
fn settle(dir: &Path, target_dir: Option<&Path>, tried_offline: bool, mut output: Output) -> Result<Vec<u8>> {
    let network_allowed = !std::env::var("CARGO_NET_OFFLINE").is_ok_and(|value| value == "true");
    // Only a refusal that offline mode caused (cargo's message says so) is worth the network.
    let for_want_of_downloads = String::from_utf8_lossy(&output.stderr).contains("offline");
    if !output.status.success() && tried_offline && network_allowed && for_want_of_downloads {
        output = metadata_command(dir, false, target_dir).output().context("cannot run cargo metadata")?;
    }
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("cannot resolve the dependency graph of {} from its Cargo.lock: {}", dir.display(), stderr.trim());
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace of path crates only (resolved offline): `lib` has an optional dependency
    /// behind its `fancy` feature, a dependency for arm64 only and a build dependency; `api`
    /// turns `fancy` on, `worker` does not and has a dev-dependency.
    fn resolved(lib_version: &str) -> BTreeMap<String, BTreeSet<String>> {
        let apps = ["api".to_string(), "worker".to_string()];
        Resolver::new(&metadata(lib_version, "fancy")).unwrap().per_app(&apps, &TRIPLES).unwrap()
    }

    const TRIPLES: [&str; 2] = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];

    /// The full `cargo metadata` (offline) of a workspace of the members `files` writes with the
    /// function it is given (a path and its text).
    fn workspace_metadata(files: impl FnOnce(&dyn Fn(&str, &str))) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("Cargo.toml", "[workspace]\nmembers = [\"*\"]\nresolver = \"2\"\n");
        files(&write);
        let output = std::process::Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--offline", "--all-features"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    }

    /// The workspace's full `cargo metadata`, `api` turning on `lib`'s features `api_features`.
    fn metadata(lib_version: &str, api_features: &str) -> Vec<u8> {
        workspace_metadata(|write| {
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
        })
    }

    #[test]
    fn only_apps_that_reach_a_package_through_some_feature_or_target_may_compile_it() {
        let resolver = Resolver::new(&metadata("0.1.0", "fancy")).unwrap();
        let apps = ["api".to_string(), "worker".to_string()];
        let check = |package: &str, expected: &[&str]| {
            let packages = BTreeSet::from([package.to_string()]);
            assert_eq!(resolver.apps_that_may_compile(&apps, &packages).unwrap(), expected, "{package}");
        };
        // Optional (worker's build leaves `fancy` off), for arm64 only, a build dependency: all count.
        check("extra 0.1.0", &["api", "worker"]);
        check("armonly 0.1.0", &["api", "worker"]);
        check("codegen 0.1.0", &["api", "worker"]);
        check("testutil 0.1.0", &[]);
        check("lib 0.2.0", &[]);
    }

    #[test]
    fn apps_share_a_cargo_run_only_where_their_features_agree() {
        let apps = ["api".to_string(), "worker".to_string()];
        let agreeing = |api_features: &str| {
            Resolver::new(&metadata("0.1.0", api_features)).unwrap().targets_where_builds_agree(&apps, &TRIPLES).unwrap()
        };
        assert!(agreeing("fancy").is_empty());
        assert_eq!(agreeing("").len(), 2);
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

    /// Path crates named as the -sys crates of crates.io: `openssl-sys` links OpenSSL unless its
    /// `vendored` feature brings `openssl-src`, `libsqlite3-sys` unless `bundled`; `zstd-sys`
    /// builds its C with `cc`.
    #[test]
    fn native_code_and_the_system_libraries_an_apps_build_links() {
        let metadata = workspace_metadata(|write| {
            let crate_with = |name: &str, rest: &str| {
                write(
                    &format!("{name}/Cargo.toml"),
                    &format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n{rest}"),
                );
                write(&format!("{name}/src/lib.rs"), "");
                write(&format!("{name}/build.rs"), "fn main() {}");
            };
            crate_with("cc", "");
            crate_with("openssl-src", "");
            crate_with(
            "openssl-sys",
            "links = \"openssl\"\n[features]\nvendored = [\"dep:openssl-src\"]\n[build-dependencies]\ncc = { path = \"../cc\" }\nopenssl-src = { path = \"../openssl-src\", optional = true }\n",
        );
            crate_with("libsqlite3-sys", "links = \"sqlite3\"\n[features]\nbundled = [\"dep:cc\"]\n[build-dependencies]\ncc = { path = \"../cc\", optional = true }\n");
            crate_with("zstd-sys", "links = \"zstd\"\n[build-dependencies]\ncc = { path = \"../cc\" }\n");
            crate_with("pure", "");
            let app = |name: &str, dependencies: &str| {
                crate_with(name, &format!("[dependencies]\n{dependencies}\n"));
                write(&format!("{name}/src/main.rs"), "fn main() {}");
            };
            app("plain", "pure = { path = \"../pure\" }");
            app("zstd", "zstd-sys = { path = \"../zstd-sys\" }");
            app("tls", "openssl-sys = { path = \"../openssl-sys\" }");
            app("tls-vendored", "openssl-sys = { path = \"../openssl-sys\", features = [\"vendored\"] }");
            app("db", "libsqlite3-sys = { path = \"../libsqlite3-sys\" }");
            app("db-bundled", "libsqlite3-sys = { path = \"../libsqlite3-sys\", features = [\"bundled\"] }");
        });
        let resolver = Resolver::new(&metadata).unwrap();
        let show = |app: &str| {
            let code = resolver.native_code(app, "aarch64-unknown-linux-gnu").unwrap();
            let libraries: String = code
                .system_libraries
                .iter()
                .map(|library| {
                    format!("; links {} via {} ({}): {}", library.library, library.package, library.path.join(" → "), library.how)
                })
                .collect();
            let c: Vec<String> = code.c_packages.iter().map(|path| path.join(" → ")).collect();
            format!("{app}: compiles C {}{libraries}\n", if c.is_empty() { "nowhere".to_string() } else { format!("in {}", c.join(", ")) })
        };
        let shown: String = ["plain", "zstd", "tls", "tls-vendored", "db", "db-bundled"].map(show).concat();
        expect_test::expect![[r#"
            plain: compiles C nowhere
            zstd: compiles C in zstd → zstd-sys
            tls: compiles C in tls → openssl-sys; links OpenSSL (libssl) via openssl-sys (tls → openssl-sys): the `vendored` feature of `openssl` (or `openssl-sys`)
            tls-vendored: compiles C in tls-vendored → openssl-sys
            db: compiles C in db → libsqlite3-sys; links SQLite via libsqlite3-sys (db → libsqlite3-sys): the `bundled` feature of `libsqlite3-sys` (`rusqlite`'s and `sqlx`'s `bundled`)
            db-bundled: compiles C in db-bundled → libsqlite3-sys
        "#]]
        .assert_eq(&shown);
    }

    /// An app built with `--features tls` (its builder stage says so) compiles what the
    /// feature turns on; `--no-default-features` leaves out what its defaults do.
    #[test]
    fn an_apps_resolution_follows_the_features_its_build_turns_on() {
        let metadata = workspace_metadata(|write| {
            write("extra/Cargo.toml", "[package]\nname = \"extra\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
            write("extra/src/lib.rs", "");
            write("logging/Cargo.toml", "[package]\nname = \"logging\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
            write("logging/src/lib.rs", "");
            write(
                "svc/Cargo.toml",
                "[package]\nname = \"svc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[features]\ndefault = [\"logs\"]\nlogs = [\"dep:logging\"]\ntls = [\"dep:extra\"]\n[dependencies]\nextra = { path = \"../extra\", optional = true }\nlogging = { path = \"../logging\", optional = true }\n",
            );
            write("svc/src/main.rs", "fn main() {}");
        });
        let compiled = |options: Option<CargoOptions>| {
            let resolver = Resolver::new(&metadata)
                .unwrap()
                .with_cargo_options(options.map(|options| ("svc".to_string(), options)).into_iter().collect());
            let packages: Vec<String> =
                resolver.compiled_into("svc", TRIPLES[0]).unwrap().into_iter().map(|package| package.name).collect();
            packages.join(" ")
        };
        assert_eq!(compiled(None), "logging");
        assert_eq!(compiled(Some(CargoOptions { features: vec!["tls".into()], ..CargoOptions::default() })), "extra logging");
        assert_eq!(
            compiled(Some(CargoOptions { features: vec!["tls".into()], no_default_features: true, ..CargoOptions::default() })),
            "extra"
        );
        assert_eq!(compiled(Some(CargoOptions { all_features: true, ..CargoOptions::default() })), "extra logging");
    }

    /// `--features lib/fancy` turns on a feature of a dependency, `fancy`, which turns on `extra`.
    #[test]
    fn a_feature_of_a_dependency_is_turned_on_as_cargo_does() {
        let metadata = metadata("0.1.0", "");
        let compiled = |features: &[&str]| {
            let options =
                CargoOptions { features: features.iter().map(|feature| feature.to_string()).collect(), ..CargoOptions::default() };
            let resolver = Resolver::new(&metadata).unwrap().with_cargo_options(BTreeMap::from([("api".to_string(), options)]));
            let names = resolver
                .compiled_into("api", TRIPLES[0])
                .map(|packages| packages.into_iter().map(|package| package.name).collect::<Vec<_>>());
            names.map(|names| names.join(" ")).unwrap_or_else(|err| format!("error: {err:#}"))
        };
        assert_eq!(compiled(&[]), "lib");
        assert_eq!(compiled(&["lib/fancy"]), "extra lib");
        assert_eq!(
            compiled(&["nothere/fancy"]),
            "error: `--features nothere/fancy` names a feature of `nothere`, which is no dependency of api"
        );
    }
}
