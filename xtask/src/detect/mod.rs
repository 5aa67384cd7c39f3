//! Change detection: which apps must be rebuilt, and why. The core is pure: `select` is a plain
//! function over the changed paths, the workspace graph and the evidence; `inputs` is an app's
//! input digest computed by the same rules. `evidence` gathers what the core needs from git and
//! cargo (the range, lockfile graph differences, Dockerfile build contexts), and `heal` asks the
//! repository which apps' images of their current inputs are missing; `shards` splits the
//! selected apps into CI jobs; `advisories` finds the RustSec advisories against an app's crates.

pub mod advisories;
pub mod evidence;
pub mod glob;
pub mod harvest;
pub mod heal;
pub mod inputs;
pub mod lockfile;
pub mod settings;
pub mod shards;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::workspace::config::{PathRule, RuleApps};
use crate::workspace::{Found, Member, Workspace};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectedApp {
    pub name: String,
    pub path: String,
    pub dockerfile: String,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// A file of the app itself changed.
    File { path: String },
    /// A file of a monorepo image (`docker/<name>/`) the app is built on, directly or through
    /// another such image, changed.
    BaseImage { image: String, path: String },
    /// A file of a workspace crate the app depends on changed.
    Dependency {
        #[serde(rename = "crate")]
        crate_name: String,
        path: String,
    },
    /// The lockfile changed what the app's build compiles (each change, as `detect::lockfile`
    /// describes it).
    Lockfile { packages: Vec<String> },
    /// A file every app's build reads changed (root manifest, toolchain, .cargo/, or the
    /// lockfile when its graphs could not be compared), and what it did could not be judged.
    Workspace { path: String },
    /// The root manifest or cargo's configuration changed what the app's build reads: its
    /// settings (profile, flags, package defaults, the xtask's settings) or its resolved graph.
    BuildSettings { path: String, what: String },
    /// A file the app's Dockerfile copies from outside the app's directory changed.
    BuildContext { path: String },
    /// A user rule of [workspace.metadata.xtask] matched.
    Rule { paths: String, path: String },
    /// A file the app's last build read (its dep-info says so) changed.
    ReadByBuild { path: String },
    /// A file that a macro the app's build compiles reads without telling the compiler
    /// (`SILENT_READERS`) changed.
    ReadByMacro {
        path: String,
        #[serde(rename = "macro")]
        macro_package: String,
    },
    /// The user named the app or passed --all.
    Requested,
    /// The head commit has no parent, so everything is new.
    FirstCommit,
    /// Changes could not be detected and --fallback all was given.
    Fallback { why: String },
    /// The repository has no `<app>-<sha>` image for any of the app's last changes (`searched`,
    /// newest first): a release failed or the repository is new.
    Unreleased { searched: Vec<String> },
    /// The newest `<app>-<sha>` image of the app's last changes was built from other inputs than
    /// the head's (`recorded`; none when the image predates input digests).
    Stale { tag: String, recorded: Option<crate::image::oci::Digest> },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::File { path } => write!(f, "{path} changed"),
            Reason::Dependency { crate_name, path } => write!(f, "dependency {crate_name} changed ({path})"),
            Reason::BaseImage { image, path } => write!(f, "base image {image} changed ({path})"),
            Reason::Lockfile { packages } => {
                // A dependency update can change hundreds of entries: the line shows the first.
                const SHOWN: usize = 8;
                let shown = packages.iter().take(SHOWN).map(String::as_str).collect::<Vec<_>>().join(", ");
                match packages.len().saturating_sub(SHOWN) {
                    0 => write!(f, "Cargo.lock changed its dependencies ({shown})"),
                    more => write!(f, "Cargo.lock changed its dependencies ({shown}, and {more} more: --json lists them all)"),
                }
            }
            Reason::Workspace { path } => write!(f, "workspace-wide input {path} changed"),
            Reason::BuildSettings { path, what } => write!(f, "{path} changed {what}"),
            Reason::BuildContext { path } => write!(f, "{path}, which its Dockerfile copies, changed"),
            Reason::Rule { paths, path } => write!(f, "{path} changed (rule {paths})"),
            Reason::ReadByBuild { path } => write!(f, "{path}, which its build reads (dep-info), changed"),
            Reason::ReadByMacro { path, macro_package } => {
                write!(f, "{path}, which {macro_package} reads while compiling without telling the compiler, changed")
            }
            Reason::Requested => write!(f, "requested"),
            Reason::FirstCommit => write!(f, "first commit"),
            Reason::Fallback { why } => write!(f, "everything, because {why}"),
            Reason::Unreleased { searched } => match searched.first() {
                Some(newest) => {
                    write!(f, "not in the repository: no image of its last {} changes, the newest being {newest}", searched.len())
                }
                None => write!(f, "not in the repository"),
            },
            Reason::Stale { tag, recorded: Some(_) } => write!(f, "{tag} in the repository was built from other inputs"),
            Reason::Stale { tag, recorded: None } => write!(f, "{tag} in the repository does not record its inputs"),
        }
    }
}

/// What detection learned besides the changed paths.
#[derive(Debug, Default)]
pub struct Evidence {
    pub rules: Vec<PathRule>,
    /// Per app, the paths its Dockerfile copies from outside the app's directory.
    pub context_sources: BTreeMap<String, Vec<String>>,
    pub lockfile: LockfileEvidence,
    /// Per app, the files its last build read outside its crates, and those under its crates'
    /// tests/, benches/ and examples/ (see `harvest`).
    pub read_by_build: BTreeMap<String, Vec<String>>,
    /// Per app, what the macros its build compiles read silently (`silent_reads`).
    pub read_by_macros: BTreeMap<String, Vec<MacroRead>>,
    /// Per app whose build a change of the root manifest or cargo's configuration reached, what
    /// changed (`evidence::build_effects`); `None` when nothing was judged.
    pub build_effects: Option<BTreeMap<String, String>>,
    /// Per app, the settings its build reads from those files (`settings::of_apps`), which an
    /// input digest records instead of the files' text.
    pub build_settings: BTreeMap<String, String>,
}

/// A path at the workspace root that a macro reads while it expands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroRead {
    pub path: String,
    pub macro_package: String,
}

/// Macros that read files while they expand without telling the compiler (no dep-info entry on
/// stable Rust, so neither cargo nor `harvest` sees the read), with what they read at the
/// workspace root: sqlx's offline queries (`.sqlx/`, which `query!` reads from the crate and
/// the workspace root), the migrations `migrate!` embeds and the `.env` it loads; diesel's
/// migrations, looked for from the crate up. What they read inside a crate is the crate's own.
pub const SILENT_READERS: [(&str, &[&str]); 2] =
    [("sqlx-macros", &[".sqlx", "migrations", ".env"]), ("diesel_migrations", &["migrations"])];

/// Whether `path` lies under what some silent reader reads at the workspace root: only then
/// does detection need to know which apps compile them.
pub fn silently_read(path: &str) -> bool {
    SILENT_READERS.iter().flat_map(|(_, paths)| paths.iter()).any(|root| within(path, root))
}

/// Per app, what the silent readers its build compiles read, from each app's resolved
/// packages (`Resolver::per_app`: lines starting with `name version`).
pub fn silent_reads(resolved: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, Vec<MacroRead>> {
    let mut reads = BTreeMap::new();
    for (app, packages) in resolved {
        let compiled: BTreeSet<&str> = packages.iter().filter_map(|line| line.split(' ').next()).collect();
        let found: Vec<MacroRead> = SILENT_READERS
            .iter()
            .filter(|(package, _)| compiled.contains(package))
            .flat_map(|(package, paths)| macro_reads(package, paths))
            .collect();
        if !found.is_empty() {
            reads.insert(app.clone(), found);
        }
    }
    reads
}

/// What all the silent readers read: what an app counts as reading when its graph cannot be
/// resolved to tell which of them it compiles.
pub fn every_silent_read() -> Vec<MacroRead> {
    SILENT_READERS.iter().flat_map(|(package, paths)| macro_reads(package, paths)).collect()
}

fn macro_reads<'a>(package: &'a str, paths: &'a [&'a str]) -> impl Iterator<Item = MacroRead> + 'a {
    paths.iter().map(move |path| MacroRead { path: path.to_string(), macro_package: package.to_string() })
}

/// Whether `path` is `root` or lies under it.
fn within(path: &str, root: &str) -> bool {
    path == root || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

#[derive(Debug, Default)]
pub enum LockfileEvidence {
    /// Cargo.lock did not change, or its graphs were not compared.
    #[default]
    NotCompared,
    /// Per app, the resolved packages that differ between the two commits.
    Compared(BTreeMap<String, Vec<String>>),
}

/// Files that every app's build reads. A change to the root manifest selects every app: it
/// holds profiles, patches and workspace dependencies, and any of them can change any build.
fn is_workspace_wide(path: &str) -> bool {
    matches!(path, "Cargo.toml" | "rust-toolchain" | "rust-toolchain.toml") || path.starts_with(".cargo/")
}

/// The apps that `changed_paths` affect, in name order, each with every reason that selects it.
pub fn select(workspace: &Workspace, changed_paths: &[String], evidence: &Evidence) -> Vec<SelectedApp> {
    let mut reasons: BTreeMap<String, Vec<Reason>> = BTreeMap::new();
    let mut add = |app: &str, reason: Reason| reasons.entry(app.to_string()).or_default().push(reason);
    let all_apps: Vec<String> = workspace.apps().map(|app| app.name.clone()).collect();
    // Cargo's workspace-wide inputs reach what cargo compiles: the crate apps, and the images of
    // docker/ whose builder stage the xtask compiles; not the other images of docker/.
    let crate_apps: Vec<String> = workspace.apps().filter(|app| app.package.is_some()).map(|app| app.name.clone()).collect();
    // The root manifest declares the images of [[workspace.metadata.xtask.images]]: their
    // build arguments and targets are inputs too.
    let declared: Vec<String> =
        workspace.apps().filter(|app| app.found == Found::Declared && app.package.is_none()).map(|app| app.name.clone()).collect();
    // Many paths share an owner; its dependents are computed once.
    let mut dependents: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for path in changed_paths {
        if let Some(rule) = evidence.rules.iter().find(|rule| glob::matches(&rule.paths, path)) {
            let reason = || Reason::Rule { paths: rule.paths.clone(), path: path.clone() };
            match &rule.apps {
                _ if rule.ignore => {}
                Some(RuleApps::Named(names)) => names.iter().filter(|name| all_apps.contains(name)).for_each(|name| add(name, reason())),
                Some(RuleApps::All(_)) | None => all_apps.iter().for_each(|name| add(name, reason())),
            }
            continue;
        }
        if path == "Cargo.lock" {
            match &evidence.lockfile {
                LockfileEvidence::Compared(changes) => {
                    for (app, packages) in changes.iter().filter(|(app, _)| all_apps.contains(app)) {
                        add(app, Reason::Lockfile { packages: packages.clone() });
                    }
                }
                LockfileEvidence::NotCompared => crate_apps.iter().for_each(|name| add(name, Reason::Workspace { path: path.clone() })),
            }
            continue;
        }
        if is_workspace_wide(path) {
            match &evidence.build_effects {
                Some(effects) if path == "Cargo.toml" || path.starts_with(".cargo/") => {
                    for (app, what) in effects.iter().filter(|(app, _)| all_apps.contains(app)) {
                        add(app, Reason::BuildSettings { path: path.clone(), what: what.clone() });
                    }
                }
                _ => {
                    let manifest_declared = declared.iter().filter(|_| path == "Cargo.toml");
                    crate_apps.iter().chain(manifest_declared).for_each(|name| add(name, Reason::Workspace { path: path.clone() }));
                }
            }
            continue;
        }
        for (app, reason) in reads_outside_crates(path, evidence) {
            add(app, reason);
        }
        // A crate app's Dockerfile (which may live outside its directory, in
        // `docker/<crate>/`) and its .dockerignore are inputs of its own image only, not of
        // the apps that depend on its crate. A Dockerfile of images without a directory of
        // their own (`docker/Dockerfile.<name>`, a declared one, maybe shared) is an input of
        // those images and of the images built on them.
        let image_files: Vec<&Member> =
            workspace.apps().filter(|app| (app.is_crate || app.found != Found::ImageDir) && is_image_file(app, path)).collect();
        if !image_files.is_empty() {
            for app in image_files {
                add(&app.name, Reason::File { path: path.clone() });
                let built_on = workspace.dependents_of(&app.name).into_iter().filter(|dependent| !app.is_crate && *dependent != app.name);
                for dependent in built_on.filter(|dependent| all_apps.contains(dependent)) {
                    add(&dependent, Reason::BaseImage { image: app.name.clone(), path: path.clone() });
                }
            }
            continue;
        }
        // The innermost member wins: a crate may live inside another crate's directory.
        let owner = workspace
            .members
            .iter()
            .filter(|member| member.dir.is_empty() || path.strip_prefix(&member.dir).is_some_and(|rest| rest.starts_with('/')))
            .max_by_key(|member| member.dir.len());
        let Some(owner) = owner else { continue };
        // Tests, benches and examples are targets of their own: a file there reaches no image,
        // unless a library or binary target lives there, or a build read it (above).
        if is_auxiliary(owner, path) {
            continue;
        }
        let dependents = dependents.entry(&owner.name).or_insert_with(|| workspace.dependents_of(&owner.name));
        for dependent in dependents.iter().cloned() {
            if !all_apps.contains(&dependent) {
                continue;
            }
            let reason = if dependent == owner.name {
                Reason::File { path: path.clone() }
            } else if owner.is_crate {
                Reason::Dependency { crate_name: owner.name.clone(), path: path.clone() }
            } else {
                Reason::BaseImage { image: owner.name.clone(), path: path.clone() }
            };
            add(&dependent, reason);
        }
    }
    // An image rebuilt because cargo's workspace-wide inputs changed what it compiles changes
    // the images built on it too.
    let rebuilt: Vec<(String, String)> = reasons
        .iter()
        .filter(|(name, _)| workspace.member(name).is_some_and(|member| !member.is_crate))
        .flat_map(|(name, reasons)| {
            reasons.iter().filter_map(move |reason| match reason {
                Reason::Workspace { path } | Reason::BuildSettings { path, .. } => Some((name.clone(), path.clone())),
                Reason::Lockfile { .. } => Some((name.clone(), "Cargo.lock".to_string())),
                _ => None,
            })
        })
        .collect();
    for (image, path) in rebuilt {
        for dependent in workspace.dependents_of(&image).into_iter().filter(|dependent| *dependent != image && all_apps.contains(dependent))
        {
            reasons.entry(dependent).or_default().push(Reason::BaseImage { image: image.clone(), path: path.clone() });
        }
    }
    reasons.into_iter().map(|(name, reasons)| selected(workspace, &name, reasons)).collect()
}

/// The apps whose Dockerfile copies `path`, or whose build read it (as dep-info or a silent
/// macro says), from outside their crates.
fn reads_outside_crates<'e>(path: &str, evidence: &'e Evidence) -> Vec<(&'e str, Reason)> {
    let under = |source: &String| within(path, source.trim_end_matches('/'));
    let copied = evidence.context_sources.iter().filter(|(_, sources)| sources.iter().any(under));
    let read = evidence.read_by_build.iter().filter(|(_, read)| read.iter().any(under));
    let by_macros = evidence.read_by_macros.iter().flat_map(|(app, reads)| {
        let first = reads.iter().find(|read| within(path, &read.path));
        first.map(|read| (app.as_str(), Reason::ReadByMacro { path: path.to_string(), macro_package: read.macro_package.clone() }))
    });
    copied
        .map(|(app, _)| (app.as_str(), Reason::BuildContext { path: path.to_string() }))
        .chain(read.map(|(app, _)| (app.as_str(), Reason::ReadByBuild { path: path.to_string() })))
        .chain(by_macros)
        .collect()
}

/// Whether `path` is a file only `app`'s image reads: its Dockerfile, the Dockerfile's own
/// `<Dockerfile>.dockerignore`, or the .dockerignore beside it.
fn is_image_file(app: &Member, path: &str) -> bool {
    let Some(dockerfile) = app.dockerfile.as_deref() else { return false };
    let dir = dockerfile.rsplit_once('/').map_or("", |(dir, _)| dir);
    let beside = if dir.is_empty() { ".dockerignore".to_string() } else { format!("{dir}/.dockerignore") };
    path == dockerfile || path == format!("{dockerfile}.dockerignore") || path == beside
}

/// A crate's directories of targets no image carries (tests, benches, examples).
pub const AUXILIARY_DIRS: [&str; 3] = ["tests/", "benches/", "examples/"];

/// Whether `path`, a file of `owner`, lies under its `tests/`, `benches/` or `examples/` and
/// outside every directory of a target its build compiles.
fn is_auxiliary(owner: &Member, path: &str) -> bool {
    if !owner.is_crate {
        return false;
    }
    let rest = if owner.dir.is_empty() { path } else { &path[owner.dir.len() + 1..] };
    let auxiliary = AUXILIARY_DIRS.iter().any(|dir| rest.starts_with(dir));
    auxiliary && !owner.build_source_dirs.iter().any(|dir| path.starts_with(&format!("{dir}/")))
}

/// Every app, for the same reason.
pub fn select_all(workspace: &Workspace, reason: Reason) -> Vec<SelectedApp> {
    workspace.apps().map(|app| selected(workspace, &app.name, vec![reason.clone()])).collect()
}

pub fn selected(workspace: &Workspace, name: &str, reasons: Vec<Reason>) -> SelectedApp {
    let app = workspace.member(name).expect("selected apps are workspace members");
    SelectedApp { name: app.name.clone(), path: app.dir.clone(), dockerfile: app.dockerfile.clone().unwrap_or_default(), reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::tests::workspace;
    use crate::workspace::ImageEntry;

    fn check(changed: &[&str], expected: expect_test::Expect) {
        check_with(changed, &Evidence::default(), expected)
    }

    fn check_with(changed: &[&str], evidence: &Evidence, expected: expect_test::Expect) {
        check_in(&sample(), changed, evidence, expected)
    }

    fn sample() -> Workspace {
        workspace(&[
            ("common", "crates/common", &[], false),
            ("words", "crates/words", &["common"], false),
            ("api", "crates/api", &["common"], true),
            ("worker", "crates/worker", &["words"], true),
            ("xtask", "xtask", &[], false),
        ])
    }

    fn check_in(ws: &Workspace, changed: &[&str], evidence: &Evidence, expected: expect_test::Expect) {
        let paths: Vec<String> = changed.iter().map(|p| p.to_string()).collect();
        let actual: Vec<String> = select(ws, &paths, evidence)
            .iter()
            .map(|app| {
                let reasons: Vec<String> = app.reasons.iter().map(ToString::to_string).collect();
                format!("{}: {}", app.name, reasons.join("; "))
            })
            .collect();
        expected.assert_eq(&actual.join("\n"));
    }

    #[test]
    fn app_file_selects_only_that_app() {
        check(&["crates/api/src/main.rs"], expect_test::expect!["api: crates/api/src/main.rs changed"]);
    }

    #[test]
    fn shared_library_selects_every_dependent_app() {
        check(
            &["crates/common/src/lib.rs"],
            expect_test::expect![[r#"
                api: dependency common changed (crates/common/src/lib.rs)
                worker: dependency common changed (crates/common/src/lib.rs)"#]],
        );
        check(&["crates/words/src/lib.rs"], expect_test::expect!["worker: dependency words changed (crates/words/src/lib.rs)"]);
    }

    #[test]
    fn workspace_wide_inputs_select_every_app() {
        check(
            &["Cargo.toml", ".cargo/config.toml"],
            expect_test::expect![[r#"
                api: workspace-wide input Cargo.toml changed; workspace-wide input .cargo/config.toml changed
                worker: workspace-wide input Cargo.toml changed; workspace-wide input .cargo/config.toml changed"#]],
        );
    }

    #[test]
    fn a_dockerfile_shared_by_images_selects_each_of_them_and_the_images_built_on_them() {
        let mut ws = sample();
        let declared = |name: &str, bin: &str| {
            ImageEntry::declared(crate::workspace::config::DeclaredImage {
                name: name.into(),
                dockerfile: "docker/rust.Dockerfile".into(),
                target: None,
                args: [("BIN".to_string(), bin.to_string())].into(),
                package: None,
            })
        };
        let dockerfiles = |path: &str| {
            match path {
            "docker/rust.Dockerfile" => Some("FROM rust AS build\nARG BIN\nRUN cargo build --release --bin $BIN\nFROM scratch\nARG BIN\nCOPY --from=build /target/release/$BIN /\n".to_string()),
            "docker/Dockerfile.sidecar" => Some("FROM api-image\n".to_string()),
            "docker/Dockerfile.static" => Some("FROM scratch\n".to_string()),
            _ => None,
        }
        };
        let images = [
            declared("api-image", "api"),
            declared("worker-image", "worker"),
            ImageEntry::of_file("docker/Dockerfile.sidecar").unwrap(),
            ImageEntry::of_file("docker/Dockerfile.static").unwrap(),
        ];
        ws.add_images(&images, &dockerfiles).unwrap();
        let check = |changed: &[&str], expected| check_in(&ws, changed, &Evidence::default(), expected);
        check(
            &["docker/rust.Dockerfile"],
            expect_test::expect![[r#"
                api-image: docker/rust.Dockerfile changed
                sidecar: base image api-image changed (docker/rust.Dockerfile)
                worker-image: docker/rust.Dockerfile changed"#]],
        );
        check(&["docker/Dockerfile.sidecar"], expect_test::expect!["sidecar: docker/Dockerfile.sidecar changed"]);
        check(&["docker/README.md"], expect_test::expect![""]);
        // Each image compiles its own crate: a change to one selects its image alone.
        check(
            &["crates/worker/src/main.rs"],
            expect_test::expect![[r#"
                worker: crates/worker/src/main.rs changed
                worker-image: dependency worker changed (crates/worker/src/main.rs)"#]],
        );
        // The root manifest declares them; the image that compiles nothing is not a crate app.
        check(
            &["Cargo.toml"],
            expect_test::expect![[r#"
                api: workspace-wide input Cargo.toml changed
                api-image: workspace-wide input Cargo.toml changed
                sidecar: base image api-image changed (Cargo.toml)
                worker: workspace-wide input Cargo.toml changed
                worker-image: workspace-wide input Cargo.toml changed"#]],
        );
    }

    #[test]
    fn what_silent_macros_read_at_the_root_selects_the_apps_that_compile_them() {
        let resolved = BTreeMap::from([
            ("api".to_string(), BTreeSet::from(["api 0.1.0".to_string(), "sqlx-macros 0.8.6 registry".to_string()])),
            ("worker".to_string(), BTreeSet::from(["worker 0.1.0".to_string(), "diesel_migrations 2.2.0 registry".to_string()])),
        ]);
        let evidence = Evidence { read_by_macros: silent_reads(&resolved), ..Evidence::default() };
        check_with(
            &[".sqlx/query-4f1c.json", ".env"],
            &evidence,
            expect_test::expect![[r#"
                api: .sqlx/query-4f1c.json, which sqlx-macros reads while compiling without telling the compiler, changed; .env, which sqlx-macros reads while compiling without telling the compiler, changed"#]],
        );
        check_with(
            &["migrations/0002_users/up.sql"],
            &evidence,
            expect_test::expect![[r#"
                api: migrations/0002_users/up.sql, which sqlx-macros reads while compiling without telling the compiler, changed
                worker: migrations/0002_users/up.sql, which diesel_migrations reads while compiling without telling the compiler, changed"#]],
        );
        check_with(&[".sqlx-old/x", "docs/migrations/x", ".envrc"], &evidence, expect_test::expect![""]);
        assert!(silently_read(".sqlx/query-1.json") && silently_read("migrations") && !silently_read(".envrc"));
        // A graph that cannot be resolved: the app counts as reading what every reader reads.
        let unresolved = Evidence { read_by_macros: BTreeMap::from([("worker".to_string(), every_silent_read())]), ..Evidence::default() };
        check_with(
            &[".sqlx/query-4f1c.json"],
            &unresolved,
            expect_test::expect![[r#"
                worker: .sqlx/query-4f1c.json, which sqlx-macros reads while compiling without telling the compiler, changed"#]],
        );
    }

    #[test]
    fn an_image_of_docker_selects_itself_and_every_image_built_on_it() {
        // docker/base is a runtime base, docker/tools an image on it; api starts FROM base too.
        let mut ws = sample();
        let dockerfiles = |path: &str| match path {
            "crates/api/Dockerfile" | "docker/tools/Dockerfile" => Some("FROM base\n".to_string()),
            _ => Some("FROM scratch\n".to_string()),
        };
        ws.add_images(&[ImageEntry::of_dir("docker/base"), ImageEntry::of_dir("docker/tools")], &dockerfiles).unwrap();
        let check = |changed: &[&str], expected| check_in(&ws, changed, &Evidence::default(), expected);
        check(
            &["docker/base/rootfs/etc/passwd"],
            expect_test::expect![[r#"
                api: base image base changed (docker/base/rootfs/etc/passwd)
                base: docker/base/rootfs/etc/passwd changed
                tools: base image base changed (docker/base/rootfs/etc/passwd)"#]],
        );
        check(&["docker/tools/tests/fixture"], expect_test::expect!["tools: docker/tools/tests/fixture changed"]);
        check(
            &["Cargo.toml"],
            expect_test::expect![[r#"
                api: workspace-wide input Cargo.toml changed
                worker: workspace-wide input Cargo.toml changed"#]],
        );
        check(&["docker/README.md"], expect_test::expect![""]);
    }

    #[test]
    fn tests_benches_and_examples_reach_no_image_unless_a_build_read_them() {
        check(&["crates/worker/tests/it.rs", "crates/common/benches/b.rs", "crates/api/examples/demo.rs"], expect_test::expect![""]);
        let read = ["crates/worker/tests/fixture.txt", "shared/schema.json", "proto"].map(String::from).to_vec();
        let evidence = Evidence { read_by_build: BTreeMap::from([("worker".to_string(), read)]), ..Evidence::default() };
        check_with(
            &["crates/worker/tests/fixture.txt", "shared/schema.json", "proto/jobs.proto", "shared/other.json"],
            &evidence,
            expect_test::expect!["worker: crates/worker/tests/fixture.txt, which its build reads (dep-info), changed; shared/schema.json, which its build reads (dep-info), changed; proto/jobs.proto, which its build reads (dep-info), changed"],
        );
    }

    #[test]
    fn lockfile_selects_only_apps_whose_graph_changed() {
        let compared = Evidence {
            lockfile: LockfileEvidence::Compared(BTreeMap::from([
                ("worker".to_string(), vec!["memchr 2.7.1".to_string(), "memchr 2.7.2".to_string()]),
                ("xtask".to_string(), vec!["tokio 1.0.0".to_string()]),
            ])),
            ..Evidence::default()
        };
        check_with(
            &["Cargo.lock"],
            &compared,
            expect_test::expect!["worker: Cargo.lock changed its dependencies (memchr 2.7.1, memchr 2.7.2)"],
        );
        check_with(
            &["Cargo.lock"],
            &Evidence { lockfile: LockfileEvidence::Compared(BTreeMap::new()), ..Evidence::default() },
            expect_test::expect![""],
        );
        let update = (1..=10).map(|minor| format!("dep{minor} 1.{minor}.0")).collect();
        check_with(
            &["Cargo.lock"],
            &Evidence { lockfile: LockfileEvidence::Compared(BTreeMap::from([("worker".to_string(), update)])), ..Evidence::default() },
            expect_test::expect!["worker: Cargo.lock changed its dependencies (dep1 1.1.0, dep2 1.2.0, dep3 1.3.0, dep4 1.4.0, dep5 1.5.0, dep6 1.6.0, dep7 1.7.0, dep8 1.8.0, and 2 more: --json lists them all)"],
        );
        check(
            &["Cargo.lock"],
            expect_test::expect![[r#"
                api: workspace-wide input Cargo.lock changed
                worker: workspace-wide input Cargo.lock changed"#]],
        );
    }

    #[test]
    fn build_context_outside_the_app_selects_it() {
        let evidence =
            Evidence { context_sources: BTreeMap::from([("api".to_string(), vec!["config/api".to_string()])]), ..Evidence::default() };
        check_with(
            &["config/api/prod.toml", "config/apiary.toml"],
            &evidence,
            expect_test::expect!["api: config/api/prod.toml, which its Dockerfile copies, changed"],
        );
    }

    #[test]
    fn user_rules_come_first() {
        let rule = |paths: &str, apps: Option<RuleApps>, ignore: bool| PathRule { paths: paths.into(), apps, ignore };
        let evidence = Evidence {
            rules: vec![
                rule("crates/*/README.md", None, true),
                rule("proto/**", Some(RuleApps::All("all".into())), false),
                rule("config/worker.toml", Some(RuleApps::Named(vec!["worker".into()])), false),
            ],
            ..Evidence::default()
        };
        check_with(
            &["crates/api/README.md", "proto/v1/a.proto", "config/worker.toml"],
            &evidence,
            expect_test::expect![[r#"
                api: proto/v1/a.proto changed (rule proto/**)
                worker: proto/v1/a.proto changed (rule proto/**); config/worker.toml changed (rule config/worker.toml)"#]],
        );
    }

    #[test]
    fn an_apps_dockerfile_selects_that_app_only() {
        // worker depends on api's crate; api's Dockerfile is no input of worker's image.
        let ws = crate::workspace::tests::workspace(&[
            ("common", "crates/common", &[], false),
            ("api", "crates/api", &["common"], true),
            ("worker", "crates/worker", &["api"], true),
        ]);
        let check = |changed: &[&str], expected| check_in(&ws, changed, &Evidence::default(), expected);
        check(
            &["crates/api/Dockerfile", "crates/api/.dockerignore"],
            expect_test::expect!["api: crates/api/Dockerfile changed; crates/api/.dockerignore changed"],
        );
        check(
            &["crates/api/src/main.rs"],
            expect_test::expect![[r#"
                api: crates/api/src/main.rs changed
                worker: dependency api changed (crates/api/src/main.rs)"#]],
        );
    }

    #[test]
    fn unrelated_files_select_nothing() {
        check(&["README.md", "xtask/src/main.rs", "crates/apiary/x.rs"], expect_test::expect![""]);
    }
}
