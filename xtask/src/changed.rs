//! Change detection: which apps must be rebuilt, and why. `select` is a plain function over the
//! changed paths, the workspace graph and the evidence gathered from git and cargo (lockfile graph
//! differences, Dockerfile build contexts, the user's rules); `detect` gathers that evidence.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::Shell;

use crate::config::{self, Config, PathRule, RuleApps};
use crate::dockerfile;
use crate::flags;
use crate::git::Git;
use crate::glob;
use crate::workspace::{self, Workspace};

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
    /// A file of a workspace crate the app depends on changed.
    Dependency {
        #[serde(rename = "crate")]
        crate_name: String,
        path: String,
    },
    /// The lockfile changed what the app's build resolves to.
    Lockfile { packages: Vec<String> },
    /// A file every app's build reads changed (root manifest, toolchain, .cargo/, docker/, or the
    /// lockfile when its graphs could not be compared).
    Workspace { path: String },
    /// A file the app's Dockerfile copies from outside the app's directory changed.
    BuildContext { path: String },
    /// A user rule of [workspace.metadata.xtask] matched.
    Rule { paths: String, path: String },
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
    Stale { tag: String, recorded: Option<crate::oci::Digest> },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::File { path } => write!(f, "{path} changed"),
            Reason::Dependency { crate_name, path } => write!(f, "dependency {crate_name} changed ({path})"),
            Reason::Lockfile { packages } => write!(f, "Cargo.lock changed its dependencies ({})", packages.join(", ")),
            Reason::Workspace { path } => write!(f, "workspace-wide input {path} changed"),
            Reason::BuildContext { path } => write!(f, "{path}, which its Dockerfile copies, changed"),
            Reason::Rule { paths, path } => write!(f, "{path} changed (rule {paths})"),
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

/// An app whose directory lost its Dockerfile or disappeared: reported, never built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedApp {
    pub name: String,
    pub path: String,
}

/// What detection learned besides the changed paths.
#[derive(Debug, Default)]
pub struct Evidence {
    pub rules: Vec<PathRule>,
    /// Per app, the paths its Dockerfile copies from outside the app's directory.
    pub context_sources: BTreeMap<String, Vec<String>>,
    pub lockfile: LockfileEvidence,
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
    matches!(path, "Cargo.toml" | "rust-toolchain" | "rust-toolchain.toml") || path.starts_with(".cargo/") || path.starts_with("docker/")
}

/// The apps that `changed_paths` affect, in name order, each with every reason that selects it.
pub fn select(workspace: &Workspace, changed_paths: &[String], evidence: &Evidence) -> Vec<SelectedApp> {
    let mut reasons: BTreeMap<String, Vec<Reason>> = BTreeMap::new();
    let mut add = |app: &str, reason: Reason| reasons.entry(app.to_string()).or_default().push(reason);
    let all_apps: Vec<String> = workspace.apps().map(|app| app.name.clone()).collect();
    // Many paths share an owner; its dependents are computed once.
    let mut dependents: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for path in changed_paths {
        if let Some(rule) = evidence.rules.iter().find(|rule| glob::matches(&rule.paths, path)) {
            let reason = || Reason::Rule { paths: rule.paths.clone(), path: path.clone() };
            match &rule.apps {
                _ if rule.ignore => {}
                Some(RuleApps::Named(names)) => names.iter().for_each(|name| add(name, reason())),
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
                LockfileEvidence::NotCompared => all_apps.iter().for_each(|name| add(name, Reason::Workspace { path: path.clone() })),
            }
            continue;
        }
        if is_workspace_wide(path) {
            all_apps.iter().for_each(|name| add(name, Reason::Workspace { path: path.clone() }));
            continue;
        }
        for (app, sources) in &evidence.context_sources {
            if sources.iter().any(|source| path == source || path.starts_with(&format!("{}/", source.trim_end_matches('/')))) {
                add(app, Reason::BuildContext { path: path.clone() });
            }
        }
        // The innermost member wins: a crate may live inside another crate's directory.
        let owner = workspace
            .members
            .iter()
            .filter(|member| member.dir.is_empty() || path.strip_prefix(&member.dir).is_some_and(|rest| rest.starts_with('/')))
            .max_by_key(|member| member.dir.len());
        let Some(owner) = owner else { continue };
        let dependents = dependents.entry(&owner.name).or_insert_with(|| workspace.dependents_of(&owner.name));
        for dependent in dependents.iter().cloned() {
            if !all_apps.contains(&dependent) {
                continue;
            }
            let reason = if dependent == owner.name {
                Reason::File { path: path.clone() }
            } else {
                Reason::Dependency { crate_name: owner.name.clone(), path: path.clone() }
            };
            add(&dependent, reason);
        }
    }
    reasons.into_iter().map(|(name, reasons)| selected(workspace, &name, reasons)).collect()
}

/// Every app, for the same reason.
pub fn select_all(workspace: &Workspace, reason: Reason) -> Vec<SelectedApp> {
    workspace.apps().map(|app| selected(workspace, &app.name, vec![reason.clone()])).collect()
}

pub fn selected(workspace: &Workspace, name: &str, reasons: Vec<Reason>) -> SelectedApp {
    let app = workspace.member(name).expect("selected apps are workspace members");
    SelectedApp { name: app.name.clone(), path: app.dir.clone(), dockerfile: app.dockerfile.clone().unwrap_or_default(), reasons }
}

/// The packages whose resolved entries differ, per member, between two dependency graphs.
pub fn lockfile_changes(
    before: &BTreeMap<String, BTreeSet<String>>,
    after: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, Vec<String>> {
    let empty = BTreeSet::new();
    let mut changes = BTreeMap::new();
    for (member, now) in after {
        let then = before.get(member).unwrap_or(&empty);
        let mut packages: Vec<String> = now
            .symmetric_difference(then)
            .map(|line| line.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !packages.is_empty() {
            packages.dedup();
            changes.insert(member.clone(), packages);
        }
    }
    changes
}

/// The commits a detection compares.
#[derive(Debug, Serialize)]
pub struct Range {
    /// `None` when the head commit has no parent.
    pub base: Option<String>,
    pub head: String,
}

/// Resolves `--base` and `--head`. Without a base, the merge-base with the default branch is
/// used, or the head's parent when the head is on that branch (a push to main compares with the
/// previous commit).
pub fn resolve_range(git: &Git<'_>, base: Option<&str>, head: Option<&str>) -> Result<Range> {
    let head = git.rev_parse(head.unwrap_or("HEAD"))?;
    let base = match base {
        Some(base) => Some(git.rev_parse(base)?),
        None => {
            let merge_base = match git.default_branch() {
                Some(branch) => Some(git.merge_base(&branch, &head)?),
                None => None,
            };
            match merge_base {
                Some(merge_base) if merge_base != head => Some(merge_base),
                _ => match git.parent(&head) {
                    None if git.is_shallow() => bail!(
                        "this clone is shallow, so the commit before {head} is missing: fetch the history (`git fetch --unshallow`, or `fetch-depth: 0` in actions/checkout) or pass --base"
                    ),
                    parent => parent,
                },
            }
        }
    };
    Ok(Range { base, head })
}

/// The outcome of a detection.
#[derive(Debug, Serialize)]
pub struct Detection {
    pub base: Option<String>,
    pub head: String,
    /// Whether uncommitted changes of the work tree were included.
    pub uncommitted: bool,
    pub apps: Vec<SelectedApp>,
    pub deleted: Vec<DeletedApp>,
}

/// Selects apps between two commits (or the base and the work tree), or every app for a root
/// commit.
pub fn detect(sh: &Shell, git: &Git<'_>, workspace: &Workspace, config: &Config, range: &Range, uncommitted: bool) -> Result<Detection> {
    let Some(base) = &range.base else {
        let apps = select_all(workspace, Reason::FirstCommit);
        return Ok(Detection { base: None, head: range.head.clone(), uncommitted, apps, deleted: Vec::new() });
    };
    let changed = if uncommitted { git.uncommitted_paths(base)? } else { git.changed_paths(base, &range.head)? };
    for rule in &config.rules {
        if let Some(RuleApps::Named(names)) = &rule.apps {
            workspace
                .select_apps(names)
                .with_context(|| format!("in the rule for `{}` of [[workspace.metadata.xtask.rules]]", rule.paths))?;
        }
    }
    let mut evidence =
        Evidence { rules: config.rules.clone(), context_sources: context_sources(workspace, &config.platforms)?, ..Evidence::default() };
    // The dependency graphs are resolved only when the lockfile changed: it is the slow part.
    if changed.iter().any(|path| path == "Cargo.lock") {
        // The work tree is the head's tree when it is the clean HEAD: no export needed.
        let head_is_work_tree =
            uncommitted || (git.rev_parse("HEAD")? == range.head && !git.dirty_paths()?.iter().any(|path| is_graph_input(path)));
        evidence.lockfile = compare_lockfiles(sh, git, workspace, base, if head_is_work_tree { None } else { Some(&range.head) });
    }
    let apps = select(workspace, &changed, &evidence);
    let deleted = deleted_apps(git, workspace, base, &range.head)?;
    Ok(Detection { base: Some(base.clone()), head: range.head.clone(), uncommitted, apps, deleted })
}

/// The paths each app's Dockerfile copies from outside the app's directory (and outside
/// `target/`, where staged binaries live), for every platform.
pub fn context_sources(workspace: &Workspace, platforms: &[crate::platform::Platform]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut sources = BTreeMap::new();
    for app in workspace.apps() {
        let dockerfile = app.dockerfile.as_deref().expect("apps have a Dockerfile");
        let Ok(text) = std::fs::read_to_string(workspace.root.join(dockerfile)) else { continue };
        let mut found = BTreeSet::new();
        for platform in platforms {
            // A Dockerfile the builder cannot read is reported by the build, not here.
            let Ok(plan) = dockerfile::plan(&text, dockerfile, &platform.build_args()) else { continue };
            for step in plan.copies {
                for source in step.sources {
                    let source = source.trim_start_matches("./").trim_end_matches('/').to_string();
                    if !source.starts_with("target/") && !source.starts_with(&format!("{}/", app.dir)) {
                        found.insert(source);
                    }
                }
            }
        }
        sources.insert(app.name.clone(), found.into_iter().collect());
    }
    Ok(sources)
}

/// Resolves the dependency graph at `base` and at `head` (the work tree when `None`) and says
/// which apps' resolved packages differ. An old commit's graph is resolved from the files cargo
/// reads to resolve (see `is_graph_input`), exported from git, and from the whole tree when that
/// is not enough (a target with a custom path). When a graph cannot be resolved offline, the
/// lockfile counts as a workspace-wide input: a miss would ship a stale image.
fn compare_lockfiles(sh: &Shell, git: &Git<'_>, workspace: &Workspace, base: &str, head: Option<&String>) -> LockfileEvidence {
    let graph_of_commit = |rev: &str| -> Result<BTreeMap<String, BTreeSet<String>>> {
        let dir = scratch_dir().join(format!("xtask-tree-{}-{}", std::process::id(), &rev[..rev.len().min(12)]));
        let partial = git.export(rev, &dir, is_graph_input)?;
        match workspace::resolve_graph(sh, &partial.dir, true) {
            Ok(resolved) => Ok(resolved),
            Err(_) => workspace::resolve_graph(sh, &git.export(rev, &dir, |_| true)?.dir, true),
        }
    };
    let (before, after) = match head {
        Some(head) => (graph_of_commit(base), graph_of_commit(head)),
        // The work tree's graph resolves on another thread while the base's tree is exported and
        // resolved: both mostly wait for cargo.
        None => std::thread::scope(|scope| {
            let work_tree = scope.spawn(|| -> Result<BTreeMap<String, BTreeSet<String>>> {
                workspace::resolve_graph(&Shell::new()?, &workspace.root, true)
            });
            let before = graph_of_commit(base);
            (before, work_tree.join().unwrap_or_else(|_| Err(anyhow::anyhow!("resolving the work tree's graph panicked"))))
        }),
    };
    match (before, after) {
        (Ok(before), Ok(after)) => LockfileEvidence::Compared(lockfile_changes(&before, &after)),
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("note: cannot compare the dependency graphs ({err:#}); every app counts as changed by Cargo.lock");
            LockfileEvidence::NotCompared
        }
    }
}

/// Where an old tree is exported: memory (`/dev/shm`) where there is such a place, because the
/// tree is thousands of small files read once, and creating them on a disk can cost more than
/// resolving the graph; the system's temporary directory otherwise.
fn scratch_dir() -> std::path::PathBuf {
    let memory = std::path::Path::new("/dev/shm");
    if memory.is_dir() {
        memory.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// The files `cargo metadata` needs to resolve a workspace: manifests, the lockfile, cargo's
/// configuration and toolchain file, and the files whose presence makes targets (a crate
/// without a target is an error).
pub fn is_graph_input(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(name, "Cargo.toml" | "Cargo.lock" | "rust-toolchain" | "rust-toolchain.toml" | "build.rs")
        || path.starts_with(".cargo/")
        || path.ends_with("src/lib.rs")
        || path.ends_with("src/main.rs")
        || path.contains("src/bin/")
}

/// Apps whose Dockerfile was deleted and whose directory is no app any more.
fn deleted_apps(git: &Git<'_>, workspace: &Workspace, base: &str, head: &str) -> Result<Vec<DeletedApp>> {
    let mut deleted = Vec::new();
    for path in git.deleted_paths(base, head)? {
        let Some(dir) = path.strip_suffix("/Dockerfile") else { continue };
        if workspace.apps().any(|app| app.dir == dir) {
            continue;
        }
        let manifest = git.show(base, &format!("{dir}/Cargo.toml")).unwrap_or_default();
        let name = manifest
            .lines()
            .find_map(|line| line.trim().strip_prefix("name").and_then(|rest| rest.trim().strip_prefix('=')))
            .map(|value| value.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| dir.rsplit('/').next().unwrap_or(dir).to_string());
        deleted.push(DeletedApp { name, path: dir.to_string() });
    }
    Ok(deleted)
}

/// Apps for `build` and `release`: named ones, all of them, or the changed ones.
pub fn selection(
    sh: &Shell,
    git: Option<&Git<'_>>,
    workspace: &Workspace,
    config: &Config,
    selection: &flags::Selection,
) -> Result<Vec<SelectedApp>> {
    let mut apps = if !selection.apps.is_empty() {
        workspace.select_apps(&selection.apps)?.into_iter().map(|app| selected(workspace, &app.name, vec![Reason::Requested])).collect()
    } else if selection.all {
        select_all(workspace, Reason::Requested)
    } else {
        let git = git.context("detecting changed apps needs git")?;
        let range = resolve_range(git, selection.base.as_deref(), None)?;
        detect(sh, git, workspace, config, &range, false)?.apps
    };
    if !selection.exclude.is_empty() {
        workspace.select_apps(&selection.exclude).context("in --exclude")?;
        apps.retain(|app| !selection.exclude.contains(&app.name));
    }
    Ok(apps)
}

pub async fn run(args: flags::Changed) -> Result<std::process::ExitCode> {
    let sh = Shell::new()?;
    let workspace = Workspace::load(&sh, &std::env::current_dir()?)?;
    sh.change_dir(&workspace.root);
    let git = Git::open(&sh, &workspace.root)?;
    let overrides = config::Overrides { repository: args.repository.as_deref(), platforms: &[] };
    let config = config::resolve(&workspace.metadata, &|key| std::env::var(key).ok(), overrides)?.rooted_at(&workspace.root);
    let mut detection = if args.all {
        let head = git.rev_parse(args.head.as_deref().unwrap_or("HEAD"))?;
        Detection { base: None, head, uncommitted: false, apps: select_all(&workspace, Reason::Requested), deleted: Vec::new() }
    } else {
        match resolve_range(&git, args.base.as_deref(), args.head.as_deref()) {
            Ok(range) => detect(&sh, &git, &workspace, &config, &range, args.include_uncommitted)?,
            Err(err) if args.fallback.as_deref() == Some("all") => {
                let why = format!("{err:#}");
                let head = git.rev_parse(args.head.as_deref().unwrap_or("HEAD"))?;
                Detection {
                    base: None,
                    head,
                    uncommitted: false,
                    apps: select_all(&workspace, Reason::Fallback { why }),
                    deleted: Vec::new(),
                }
            }
            Err(err) => return Err(err.context("cannot tell what changed; pass --fallback all to select every app instead")),
        }
    };
    if args.against_registry {
        let transfer = flags::Transfer { ca_file: args.ca_file.clone(), ..flags::Transfer::default() };
        let session = crate::push::Session::new(&transfer, crate::progress::Progress::quiet())?;
        let inputs = crate::heal::current_inputs(&sh, &git, &workspace, &config, &detection.head)?;
        crate::heal::add_unreleased(&git, &session, &config.repository, &detection.head, &workspace, &inputs, &[], &mut detection.apps)
            .await?;
    }
    if let Some(name) = &args.explain {
        workspace.select_apps(std::slice::from_ref(name))?;
        explain(&workspace, &detection, name);
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&detection)?);
    } else {
        let head = if detection.uncommitted { "the work tree".to_string() } else { detection.head.clone() };
        if detection.apps.is_empty() {
            println!("no app changed between {} and {head}", detection.base.as_deref().unwrap_or("(root)"));
        }
        for app in &detection.apps {
            let reasons: Vec<String> = app.reasons.iter().map(ToString::to_string).collect();
            println!("{}: {}", app.name, reasons.join("; "));
        }
        for app in &detection.deleted {
            println!("{} (deleted from {}): not built", app.name, app.path);
        }
    }
    let changed = !detection.apps.is_empty() || !detection.deleted.is_empty();
    Ok(if args.exit_code && changed { std::process::ExitCode::from(1) } else { std::process::ExitCode::SUCCESS })
}

/// Prints why `name` is selected, each reason as a chain from the changed file to the app.
fn explain(workspace: &Workspace, detection: &Detection, name: &str) {
    let Some(app) = detection.apps.iter().find(|app| app.name == name) else {
        println!(
            "{name} is not selected: nothing it is built from changed between {} and {}",
            detection.base.as_deref().unwrap_or("(root)"),
            detection.head
        );
        return;
    };
    for reason in &app.reasons {
        match reason {
            Reason::Dependency { crate_name, path } => {
                let chain = workspace.dependency_chain(name, crate_name);
                println!("{path} → {}", chain.join(" → "));
            }
            Reason::File { path } => println!("{path} → {name}"),
            other => println!("{other} → {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::tests::workspace;

    fn check(changed: &[&str], expected: expect_test::Expect) {
        check_with(changed, &Evidence::default(), expected)
    }

    fn check_with(changed: &[&str], evidence: &Evidence, expected: expect_test::Expect) {
        let ws = workspace(&[
            ("common", "crates/common", &[], false),
            ("words", "crates/words", &["common"], false),
            ("api", "crates/api", &["common"], true),
            ("worker", "crates/worker", &["words"], true),
            ("xtask", "xtask", &[], false),
        ]);
        let paths: Vec<String> = changed.iter().map(|p| p.to_string()).collect();
        let actual: Vec<String> = select(&ws, &paths, evidence)
            .iter()
            .map(|app| {
                let reasons: Vec<String> = app.reasons.iter().map(ToString::to_string).collect();
                format!("{}: {}", app.name, reasons.join("; "))
            })
            .collect();
        expected.assert_eq(&actual.join("\n"));
    }

    #[test]
    fn graph_inputs_are_what_cargo_metadata_reads() {
        let paths = [
            "Cargo.toml",
            "Cargo.lock",
            "crates/api/Cargo.toml",
            "crates/api/src/main.rs",
            "crates/api/src/bin/tool.rs",
            "crates/common/src/lib.rs",
            "crates/common/build.rs",
            ".cargo/config.toml",
            "crates/api/src/routes.rs",
            "README.md",
            "crates/api/Dockerfile",
        ];
        let kept: Vec<&str> = paths.into_iter().filter(|path| is_graph_input(path)).collect();
        assert_eq!(kept, &paths[..8]);
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
    fn lockfile_changes_name_the_packages() {
        let graph = |lines: &[&str]| BTreeMap::from([("api".to_string(), lines.iter().map(|l| l.to_string()).collect::<BTreeSet<_>>())]);
        let before = graph(&["serde 1.0.1 registry [std]", "itoa 1.0.0 registry []"]);
        let after = graph(&["serde 1.0.2 registry [std]", "itoa 1.0.0 registry []"]);
        assert_eq!(
            lockfile_changes(&before, &after),
            BTreeMap::from([("api".to_string(), vec!["serde 1.0.1".to_string(), "serde 1.0.2".to_string()])])
        );
        assert!(lockfile_changes(&before, &before).is_empty());
    }

    #[test]
    fn unrelated_files_select_nothing() {
        check(&["README.md", "xtask/src/main.rs", "crates/apiary/x.rs"], expect_test::expect![""]);
    }
}
