//! The identity of an app's inputs: one digest over every file of a commit that selects the app
//! (by the same rules as change detection, so the two cannot disagree), the packages its build
//! resolves to, and the platforms it is built for. A build records it on the app's index as the
//! annotation `dev.xtask.inputs`; a release compares it with the repository to find apps whose
//! image never arrived, even when the git diff no longer shows them (see `heal`).

use std::collections::{BTreeMap, BTreeSet};

use crate::detect::{self, Evidence, LockfileEvidence, Reason};
use crate::image::oci::Digest;
use crate::image::platform::Platform;
use crate::workspace::git::TreeFile;
use crate::workspace::Workspace;

/// The index annotation that holds an image's input digest.
pub const ANNOTATION: &str = "dev.xtask.inputs";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInputs {
    pub digest: Digest,
    /// Paths that cover every input, for finding the commits that changed the app: the
    /// directories of the app and of the workspace crates it depends on, each other input file,
    /// and the lockfile (`.` for a crate at the workspace root).
    pub pathspecs: Vec<String>,
}

/// The inputs of every app of `workspace`, given the files of one commit and, per member, the
/// resolved packages of its build (`Resolver::per_app`). The lockfile's text is
/// not an input: only what it resolves to for the app is, so an unrelated lockfile change keeps
/// the digest.
pub fn app_inputs(
    workspace: &Workspace,
    files: &[TreeFile],
    evidence: &Evidence,
    resolved: &BTreeMap<String, BTreeSet<String>>,
    platforms: &[Platform],
) -> BTreeMap<String, AppInputs> {
    let objects: BTreeMap<&str, &str> = files.iter().map(|file| (file.path.as_str(), file.object.as_str())).collect();
    let paths: Vec<String> = files.iter().filter(|file| file.path != "Cargo.lock").map(|file| file.path.clone()).collect();
    let evidence = Evidence {
        rules: evidence.rules.clone(),
        context_sources: evidence.context_sources.clone(),
        lockfile: LockfileEvidence::Compared(BTreeMap::new()),
        // What a build read is known where it ran, not from the commit: the digest stays a
        // function of the commit, and such files enter it through rules (the build names them).
        read_by_build: BTreeMap::new(),
        // What the macros it compiles read silently follows from what it resolves to.
        read_by_macros: detect::silent_reads(resolved),
        build_effects: None,
        build_settings: evidence.build_settings.clone(),
    };
    let mut selected: BTreeMap<String, Vec<Reason>> =
        detect::select(workspace, &paths, &evidence).into_iter().map(|app| (app.name, app.reasons)).collect();
    let mut inputs = BTreeMap::new();
    for app in workspace.apps() {
        let reasons = selected.remove(&app.name).unwrap_or_default();
        let mut lines = BTreeSet::new();
        let mut pathspecs = BTreeSet::from(["Cargo.lock".to_string()]);
        for reason in &reasons {
            let (path, pathspec) = match reason {
                Reason::File { path } => (path, app.dir.clone()),
                Reason::Dependency { crate_name: owner, path } | Reason::BaseImage { image: owner, path } => {
                    (path, workspace.member(owner).map_or_else(|| path.clone(), |member| member.dir.clone()))
                }
                Reason::Workspace { path }
                | Reason::BuildContext { path }
                | Reason::Rule { path, .. }
                | Reason::ReadByMacro { path, .. } => (path, path.clone()),
                _ => continue,
            };
            // The root manifest and cargo's configuration count by the settings the app's build
            // reads from them (its resolved graph is counted below), not by their text.
            let settings = evidence.build_settings.get(&app.name).filter(|_| path == "Cargo.toml" || path.starts_with(".cargo/"));
            match settings {
                Some(settings) => lines.insert(format!("settings {path} {}", Digest::of(settings.as_bytes()))),
                None => lines.insert(format!("file {path} {}", objects.get(path.as_str()).unwrap_or(&""))),
            };
            pathspecs.insert(if pathspec.is_empty() { ".".to_string() } else { pathspec });
        }
        for package in resolved.get(&app.name).into_iter().flatten() {
            lines.insert(format!("package {package}"));
        }
        for platform in platforms {
            lines.insert(format!("platform {platform}"));
        }
        let text: String = lines.into_iter().map(|line| line + "\n").collect();
        inputs.insert(app.name.clone(), AppInputs { digest: Digest::of(text.as_bytes()), pathspecs: pathspecs.into_iter().collect() });
    }
    inputs
}

impl AppInputs {
    /// Whether a change to `path` touches one of the inputs' pathspecs.
    pub fn touched_by(&self, path: &str) -> bool {
        self.pathspecs
            .iter()
            .any(|spec| spec == "." || path == spec || path.strip_prefix(spec.as_str()).is_some_and(|rest| rest.starts_with('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::tests::workspace as workspace_of;

    fn tree(files: &[(&str, &str)]) -> Vec<TreeFile> {
        files.iter().map(|(path, object)| TreeFile { path: path.to_string(), object: object.to_string() }).collect()
    }

    fn platforms() -> Vec<Platform> {
        vec![Platform::parse("linux/amd64").unwrap(), Platform::parse("linux/arm64").unwrap()]
    }

    /// Computes the inputs of `app` before and after a change and says whether its digest moved.
    fn check(before: &[(&str, &str)], after: &[(&str, &str)], resolved_after: &[(&str, &str)], expected: &[(&str, bool)]) {
        let workspace = workspace_of(&[
            ("api", "crates/api", &["common"], true),
            ("worker", "crates/worker", &[], true),
            ("common", "crates/common", &[], false),
        ]);
        let evidence = Evidence::default();
        let resolved_before: BTreeMap<String, BTreeSet<String>> =
            ["api", "worker"].iter().map(|app| (app.to_string(), BTreeSet::from([format!("{app} 0.1.0")]))).collect();
        let mut resolved = resolved_before.clone();
        for (app, package) in resolved_after {
            resolved.get_mut(*app).unwrap().insert(package.to_string());
        }
        let then = app_inputs(&workspace, &tree(before), &evidence, &resolved_before, &platforms());
        let now = app_inputs(&workspace, &tree(after), &evidence, &resolved, &platforms());
        for (app, moved) in expected {
            assert_eq!(then[*app].digest != now[*app].digest, *moved, "{app}");
        }
    }

    const TREE: &[(&str, &str)] = &[
        ("Cargo.toml", "r1"),
        ("Cargo.lock", "l1"),
        ("README.md", "m1"),
        ("crates/api/Dockerfile", "a1"),
        ("crates/api/src/main.rs", "a2"),
        ("crates/worker/Dockerfile", "w1"),
        ("crates/worker/src/main.rs", "w2"),
        ("crates/common/src/lib.rs", "c1"),
    ];

    fn with(changes: &[(&str, &str)]) -> Vec<(&'static str, &'static str)> {
        let mut files: Vec<(&str, &str)> = TREE.to_vec();
        for (path, object) in changes {
            let path: &'static str = Box::leak(path.to_string().into_boxed_str());
            let object: &'static str = Box::leak(object.to_string().into_boxed_str());
            files.retain(|(p, _)| *p != path);
            if !object.is_empty() {
                files.push((path, object));
            }
        }
        files
    }

    #[test]
    fn digest_moves_exactly_when_detection_would_select_the_app() {
        check(TREE, TREE, &[], &[("api", false), ("worker", false)]);
        check(TREE, &with(&[("README.md", "m2")]), &[], &[("api", false), ("worker", false)]);
        check(TREE, &with(&[("crates/common/src/lib.rs", "c2")]), &[], &[("api", true), ("worker", false)]);
        check(TREE, &with(&[("crates/worker/src/extra.rs", "x1")]), &[], &[("api", false), ("worker", true)]);
        check(TREE, &with(&[("crates/worker/src/main.rs", "")]), &[], &[("api", false), ("worker", true)]);
        check(TREE, &with(&[("Cargo.toml", "r2")]), &[], &[("api", true), ("worker", true)]);
        // The lockfile's text changed, but only the worker resolves to something new.
        check(TREE, &with(&[("Cargo.lock", "l2")]), &[("worker", "serde 1.0.1")], &[("api", false), ("worker", true)]);
        check(TREE, &with(&[("Cargo.lock", "l2")]), &[], &[("api", false), ("worker", false)]);
    }

    #[test]
    fn what_a_silent_macro_reads_at_the_root_is_an_input_of_the_apps_that_compile_it() {
        let workspace = workspace_of(&[("api", "crates/api", &[], true), ("worker", "crates/worker", &[], true)]);
        let packages = |lines: &[&str]| lines.iter().map(|line| line.to_string()).collect::<BTreeSet<String>>();
        let resolved = BTreeMap::from([
            ("api".to_string(), packages(&["api 0.1.0", "sqlx-macros 0.8.6 registry+https://github.com/rust-lang/crates.io-index"])),
            ("worker".to_string(), packages(&["worker 0.1.0"])),
        ]);
        let dockerfiles = [("crates/api/Dockerfile", "a"), ("crates/worker/Dockerfile", "w")];
        let digests = |extra: &[(&str, &str)]| {
            let files: Vec<(&str, &str)> = dockerfiles.iter().chain(extra).copied().collect();
            let inputs = app_inputs(&workspace, &tree(&files), &Evidence::default(), &resolved, &platforms());
            (inputs["api"].digest.clone(), inputs["worker"].digest.clone())
        };
        let before = digests(&[(".sqlx/query-1.json", "q1")]);
        for after in [
            &[(".sqlx/query-1.json", "q2")][..],
            &[(".sqlx/query-1.json", "q1"), ("migrations/0002_users.sql", "m")],
            &[(".sqlx/query-1.json", "q1"), (".env", "e")],
        ] {
            let after = digests(after);
            assert_ne!(before.0, after.0, "api compiles sqlx-macros");
            assert_eq!(before.1, after.1, "worker does not");
        }
    }

    #[test]
    fn the_root_manifest_counts_by_the_settings_each_build_reads() {
        let workspace = workspace_of(&[("api", "crates/api", &[], true), ("worker", "crates/worker", &[], true)]);
        let digests = |manifest: &str, api_settings: &str| {
            let evidence = Evidence {
                build_settings: BTreeMap::from([("api".to_string(), api_settings.to_string()), ("worker".to_string(), "w".to_string())]),
                ..Evidence::default()
            };
            let files = tree(&[("Cargo.toml", manifest), ("crates/api/Dockerfile", "a"), ("crates/worker/Dockerfile", "w")]);
            let inputs = app_inputs(&workspace, &files, &evidence, &BTreeMap::new(), &platforms());
            (inputs["api"].digest.clone(), inputs["worker"].digest.clone())
        };
        let before = digests("r1", "a1");
        assert_eq!(digests("r2", "a1"), before, "a comment, an alias: the same settings");
        let after = digests("r3", "a2");
        assert_ne!(after.0, before.0, "api's profile changed");
        assert_eq!(after.1, before.1, "worker's settings did not");
    }

    #[test]
    fn platforms_are_inputs() {
        let workspace = workspace_of(&[("worker", "crates/worker", &[], true)]);
        let files = tree(&[("crates/worker/Dockerfile", "w1")]);
        let both = app_inputs(&workspace, &files, &Evidence::default(), &BTreeMap::new(), &platforms());
        let one = app_inputs(&workspace, &files, &Evidence::default(), &BTreeMap::new(), &platforms()[..1]);
        assert_ne!(both["worker"].digest, one["worker"].digest);
    }

    #[test]
    fn pathspecs_cover_the_app_its_crates_and_outside_inputs() {
        let workspace = workspace_of(&[("api", "crates/api", &["common"], true), ("common", "crates/common", &[], false)]);
        let evidence =
            Evidence { context_sources: BTreeMap::from([("api".to_string(), vec!["docs/api.txt".to_string()])]), ..Evidence::default() };
        let files = tree(&[
            ("Cargo.toml", "r"),
            ("Cargo.lock", "l"),
            ("README.md", "m"),
            ("docs/api.txt", "d"),
            ("crates/api/Dockerfile", "a"),
            ("crates/api/src/main.rs", "b"),
            ("crates/common/src/lib.rs", "c"),
        ]);
        let inputs = app_inputs(&workspace, &files, &evidence, &BTreeMap::new(), &platforms());
        expect_test::expect![[r#"
            Cargo.lock
            Cargo.toml
            crates/api
            crates/common
            docs/api.txt"#]]
        .assert_eq(&inputs["api"].pathspecs.join("\n"));
        let touched: Vec<&str> = ["crates/api/src/main.rs", "crates/api2/x", "crates/common", "Cargo.lock", "README.md"]
            .into_iter()
            .filter(|path| inputs["api"].touched_by(path))
            .collect();
        assert_eq!(touched, ["crates/api/src/main.rs", "crates/common", "Cargo.lock"]);
    }
}
