//! The evidence change detection needs, gathered from git and cargo: the commits compared, the
//! changed paths, the lockfile's graphs at both commits, the paths each Dockerfile copies from
//! outside its app, and the apps' current input digests. Everything here runs programs; the
//! decisions are made by the pure core in `detect`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::Shell;

use crate::detect::harvest;
use crate::detect::inputs::{self, AppInputs};
use crate::detect::settings::{self, ResolutionChange};
use crate::detect::{
    every_silent_read, lockfile, select, select_all, selected, silent_reads, silently_read, Evidence, LockfileEvidence, Reason, SelectedApp,
};
use crate::flags;
use crate::image::dockerfile;
use crate::image::oci::Digest;
use crate::workspace::config::{Config, RuleApps};
use crate::workspace::git::{Git, TreeFile};
use crate::workspace::{self, graph, Workspace};

/// An app whose directory lost its Dockerfile or disappeared: reported, never built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedApp {
    pub name: String,
    pub path: String,
}

/// The commits a detection compares.
#[derive(Debug, Clone, Serialize)]
pub struct Range {
    /// `None` when the head commit has no parent.
    pub base: Option<String>,
    pub head: String,
}

/// The branches that changes are compared with when no base is given: the first that exists.
const DEFAULT_BRANCHES: [&str; 3] = ["origin/HEAD", "main", "master"];

/// Resolves `--base` and `--head`. Without a base, the merge-base with the default branch is
/// used, or the head's parent when the head is on that branch (a push to main compares with the
/// previous commit).
pub fn resolve_range(git: &Git<'_>, base: Option<&str>, head: Option<&str>) -> Result<Range> {
    let head_rev = head.unwrap_or("HEAD");
    // The revisions the range may need, asked together: without a base, the branches that
    // changes are compared with, and the head's first parent.
    let parent = format!("{head_rev}^1");
    let mut probes = vec![head_rev];
    match base {
        Some(base) => probes.push(base),
        None => probes.extend(DEFAULT_BRANCHES.into_iter().chain([parent.as_str()])),
    }
    let mut found = git.commits(&probes)?.into_iter();
    // A revision not found is asked again alone, for the error that explains it.
    let head = match found.next().flatten() {
        Some(sha) => sha,
        None => git.rev_parse(head_rev)?,
    };
    let base = match base {
        Some(base) => Some(match found.next().flatten() {
            Some(sha) => sha,
            None => git.rev_parse(base)?,
        }),
        None => {
            let branches: Vec<Option<String>> = found.by_ref().take(DEFAULT_BRANCHES.len()).collect();
            let merge_base = match DEFAULT_BRANCHES.into_iter().zip(branches).find_map(|(name, sha)| Some((name, sha?))) {
                Some((_, branch)) if branch == head => Some(head.clone()),
                Some((branch, _)) => Some(git.merge_base(branch, &head)?),
                None => None,
            };
            match merge_base {
                Some(merge_base) if merge_base != head => Some(merge_base),
                _ => match found.next().flatten() {
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
pub fn detect(git: &Git<'_>, workspace: &Workspace, config: &Config, range: &Range, uncommitted: bool) -> Result<Detection> {
    let changes = RangeChanges::read(git, &workspace.root, range.clone(), uncommitted)?;
    detect_changes(git, workspace, config, &changes, Started::default())
}

/// What git alone says about a detection's range: the paths it changed and, when the root
/// settings are among them, their texts at both ends and what their change does to what cargo
/// resolves. Read before the workspace is loaded (`EarlyDetection`), it tells which cargo
/// resolutions the detection will ask for.
pub struct RangeChanges {
    range: Range,
    uncommitted: bool,
    /// The work tree whose root the paths are relative to.
    root: PathBuf,
    /// Empty without a base.
    changed: Vec<String>,
    /// The paths the range's commits deleted.
    deleted: Vec<String>,
    /// Present when the root manifest or cargo's configuration changed.
    settings: Option<RootSettings>,
}

/// The root settings at both ends of a range (each read once), and what their change does to
/// resolution: an error when a file is not TOML, and nothing can be judged.
struct RootSettings {
    before: SettingsFiles,
    after: SettingsFiles,
    change: Result<ResolutionChange>,
}

impl RangeChanges {
    /// Reads the changes of `range` in the work tree at `root`, the work tree's own with
    /// `uncommitted`.
    pub fn read(git: &Git<'_>, root: &Path, range: Range, uncommitted: bool) -> Result<RangeChanges> {
        Ok(RangeChanges::changed_paths(git, root, range, uncommitted)?.with_root_settings(git))
    }

    /// The changed paths alone (`with_root_settings` adds the rest).
    fn changed_paths(git: &Git<'_>, root: &Path, range: Range, uncommitted: bool) -> Result<RangeChanges> {
        let (changed, deleted) = match &range.base {
            None => (Vec::new(), Vec::new()),
            Some(base) if uncommitted => (git.uncommitted_paths(base)?, git.changed_paths(base, &range.head)?.deleted),
            Some(base) => {
                let committed = git.changed_paths(base, &range.head)?;
                (committed.paths, committed.deleted)
            }
        };
        Ok(RangeChanges { range, uncommitted, root: root.to_path_buf(), changed, deleted, settings: None })
    }

    /// Whether the root manifest or cargo's configuration changed.
    fn root_settings_changed(&self) -> bool {
        self.changed.iter().any(|path| is_root_setting(path))
    }

    /// With the root settings at both ends, when they changed, read with one git call.
    fn with_root_settings(mut self, git: &Git<'_>) -> RangeChanges {
        let Some(base) = self.range.base.as_deref().filter(|_| self.root_settings_changed()) else { return self };
        let head = (!self.uncommitted).then_some(self.range.head.as_str());
        let mut wanted = vec![base];
        wanted.extend(head);
        let specs: Vec<(&str, &str)> = wanted.iter().flat_map(|rev| SETTINGS_FILES.map(|path| (*rev, path))).collect();
        let mut read = git.show_each(&specs).unwrap_or_else(|_| vec![None; specs.len()]).into_iter();
        let before = SettingsFiles::from_texts(&mut read);
        let after = match head {
            Some(_) => SettingsFiles::from_texts(&mut read),
            None => settings_files(git, &self.root, None),
        };
        let change = settings::resolution_change(&before.as_files(), &after.as_files());
        self.settings = Some(RootSettings { before, after, change });
        self
    }

    /// Whether the root settings' change may change what cargo resolves, so that the base's graph
    /// is resolved too.
    fn may_change_resolution(&self) -> bool {
        self.settings
            .as_ref()
            .is_some_and(|settings| matches!(settings.change, Ok(ResolutionChange::MembersOnly | ResolutionChange::Graph)))
    }

    /// Whether the detection asks for the work tree's resolved graph: when the lockfile, what
    /// cargo resolves from, or what silent macros read changed.
    fn needs_work_tree_graph(&self) -> bool {
        let changed = |wanted: &dyn Fn(&str) -> bool| self.changed.iter().any(|path| wanted(path));
        self.may_change_resolution() || changed(&|path| path == "Cargo.lock") || changed(&silently_read)
    }
}

/// A detection's git facts (`RangeChanges`), read before the workspace is loaded, with the
/// base's graph resolving from then on when the root settings' change may need it: the two
/// resolutions a root manifest change compares then run side by side, the work tree's loading
/// the workspace, instead of one after the other.
pub struct EarlyDetection {
    changes: RangeChanges,
    started: Started,
}

/// What an early detection started: the base's graph resolving, and git asked whether the work
/// tree holds the head's graph inputs (`work_tree_holds`).
#[derive(Default)]
struct Started {
    resolving_base: Option<ResolvingCommit>,
    work_tree_is_head: Option<std::thread::JoinHandle<Result<bool>>>,
}

impl EarlyDetection {
    /// Reads the changes of the range `base`..`head` (as `resolve_range` takes them) in the git
    /// work tree that `sh`'s directory belongs to; `None` when git cannot tell, and the detection
    /// made once the workspace is loaded reports why.
    pub fn read(sh: &Shell, base: Option<&str>, head: Option<&str>, uncommitted: bool) -> Option<EarlyDetection> {
        let (git, root) = Git::open_at_root(sh).ok()?;
        let range = resolve_range(&git, base, head).ok()?;
        let changes = RangeChanges::changed_paths(&git, &root, range, uncommitted).ok()?;
        // The base's graph starts resolving as soon as the root settings are seen to have
        // changed, and is stopped when their change turns out not to reach what cargo resolves
        // (a profile). One that cannot start now is started again by the detection, which
        // reports what fails.
        let resolving_base = changes
            .root_settings_changed()
            .then(|| changes.range.base.as_deref().and_then(|base| start_metadata_at(&git, base).ok()))
            .flatten();
        let changes = changes.with_root_settings(&git);
        let resolving_base = resolving_base.filter(|_| changes.may_change_resolution());
        let work_tree_is_head = changes.needs_work_tree_graph().then(|| {
            let (head, uncommitted) = (changes.range.head.clone(), changes.uncommitted);
            std::thread::spawn(move || work_tree_holds(&root, &head, uncommitted))
        });
        Some(EarlyDetection { changes, started: Started { resolving_base, work_tree_is_head } })
    }

    /// Whether the detection will ask for the work tree's resolved graph.
    pub fn needs_work_tree_graph(&self) -> bool {
        self.changes.needs_work_tree_graph()
    }

    /// The detection, in `workspace` when it is the work tree the changes were read in; `None`
    /// otherwise (a workspace below the repository's root), when the paths do not fit it.
    pub fn detect(self, git: &Git<'_>, workspace: &Workspace, config: &Config) -> Option<Result<Detection>> {
        (self.changes.root == workspace.root).then(|| detect_changes(git, workspace, config, &self.changes, self.started))
    }
}

/// `detect` once the range's changes are known, with what was `started` before the workspace was
/// loaded.
fn detect_changes(git: &Git<'_>, workspace: &Workspace, config: &Config, changes: &RangeChanges, started: Started) -> Result<Detection> {
    let RangeChanges { range, uncommitted, changed, deleted, settings, .. } = changes;
    let Some(base) = &range.base else {
        let apps = select_all(workspace, Reason::FirstCommit);
        return Ok(Detection { base: None, head: range.head.clone(), uncommitted: *uncommitted, apps, deleted: Vec::new() });
    };
    // Whether the work tree holds the head's graph inputs (the clean HEAD: nearly always), so
    // that its graph, resolved with the workspace, stands for the head's: asked once, by
    // whichever comparison needs it first.
    let asking = std::sync::Mutex::new(started.work_tree_is_head);
    let work_tree_is_head = std::sync::OnceLock::new();
    let work_tree_is_head = || -> Result<bool> {
        let answer = work_tree_is_head.get_or_init(|| {
            let answer = match asking.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
                Some(asking) => {
                    asking.join().map_err(|_| anyhow::anyhow!("asking git about the work tree failed")).and_then(|answer| answer)
                }
                None => work_tree_holds(&workspace.root, &range.head, *uncommitted),
            };
            answer.map_err(|err| format!("{err:#}"))
        });
        answer.clone().map_err(anyhow::Error::msg)
    };
    std::thread::scope(|scope| {
        // The root manifest and cargo's configuration are judged by what they do to each build,
        // in a thread of their own while the rest of the evidence is gathered.
        let root_effects = settings.as_ref().map(|settings| {
            let work_tree_is_head = &work_tree_is_head;
            scope.spawn(move || root_effects(workspace, config, changes, settings, started.resolving_base, work_tree_is_head))
        });
        for rule in &config.rules {
            let Some(RuleApps::Named(names)) = &rule.apps else { continue };
            // A crate that stopped being an app (its Dockerfile deleted) leaves the rule stale, not
            // wrong: it selects nothing for it. A name that is no crate at all is a mistake.
            let (apps, former): (Vec<&String>, Vec<&String>) =
                names.iter().partition(|name| workspace.member(name).is_none_or(|member| member.dockerfile.is_some()));
            let apps: Vec<String> = apps.into_iter().cloned().collect();
            workspace
                .select_apps(&apps)
                .with_context(|| format!("in the rule for `{}` of [[workspace.metadata.xtask.rules]]", rule.paths))?;
            for name in former {
                eprintln!(
                    "note: the rule for `{}` of [[workspace.metadata.xtask.rules]] names {name}, which has no Dockerfile any more: it selects nothing for it; take {name} out of the rule",
                    rule.paths
                );
            }
        }
        let mut evidence = Evidence {
            rules: config.rules.clone(),
            context_sources: context_sources(workspace, &config.platforms)?,
            read_by_build: harvest::recorded(workspace),
            ..Evidence::default()
        };
        // What silent macros read matters only when something they read changed: the resolution
        // that says which apps compile them is the slow part. When the graph cannot be resolved,
        // every app that compiles crates counts as reading it.
        if changed.iter().any(|path| silently_read(path)) {
            evidence.read_by_macros = match workspace
                .graph
                .resolver()
                .and_then(|resolver| resolver.per_app(&compiled_packages(workspace), &release_triples(config)))
            {
                Ok(resolved) => silent_reads(&per_app(workspace, resolved)),
                Err(err) => {
                    eprintln!("note: the dependency graph cannot be resolved ({err:#}), so every app that compiles crates counts as reading .sqlx/, migrations/ and .env");
                    workspace.apps().filter(|app| app.package.is_some()).map(|app| (app.name.clone(), every_silent_read())).collect()
                }
            };
        }
        // The dependency graphs are resolved only when the lockfile changed: it is the slow part.
        if changed.iter().any(|path| path == "Cargo.lock") {
            evidence.lockfile = std::thread::scope(|scope| -> Result<LockfileEvidence> {
                // The work tree's graph is read while git tells whether the work tree holds the
                // head's graph inputs; then no export is needed.
                let work_tree = scope.spawn(|| workspace.graph.resolver());
                let head = if work_tree_is_head()? { Head::WorkTree(work_tree) } else { Head::Commit(&range.head) };
                Ok(compare_lockfiles(git, workspace, config, base, head))
            })?;
        }
        // What cannot be judged (a file that is not TOML, a graph that does not resolve)
        // reaches every app that compiles.
        if let Some(root_effects) = root_effects {
            let effects = root_effects.join().map_err(|_| anyhow::anyhow!("judging the root settings' change failed"))?;
            evidence.build_effects = match effects {
                Ok(effects) => Some(effects),
                Err(err) => {
                    eprintln!("note: cannot judge what Cargo.toml or .cargo/ changed in the builds ({err:#}); every app that compiles counts as changed");
                    None
                }
            };
        }
        let apps = select(workspace, changed, &evidence);
        let deleted = deleted_apps(git, workspace, base, deleted);
        Ok(Detection { base: Some(base.to_string()), head: range.head.clone(), uncommitted: *uncommitted, apps, deleted })
    })
}

/// What the root settings' change does to each app's build (`build_effects`). When what cargo
/// resolves from may have changed, the base's graph resolves in the background (since before the
/// workspace was loaded, or from now on) while the members' manifests tell whether the change
/// reaches any of them (`graph_may_change`), and is stopped when it does not.
fn root_effects(
    workspace: &Workspace,
    config: &Config,
    changes: &RangeChanges,
    settings: &RootSettings,
    resolving_base: Option<ResolvingCommit>,
    work_tree_is_head: &dyn Fn() -> Result<bool>,
) -> Result<BTreeMap<String, String>> {
    let change = *settings.change.as_ref().map_err(|err| anyhow::anyhow!("{err:#}"))?;
    let base = changes.range.base.as_deref().expect("a range with changes has a base");
    let committed_head = (!changes.uncommitted).then_some(changes.range.head.as_str());
    with_new_git(&workspace.root, |git| {
        std::thread::scope(|scope| {
            let resolving_base = changes.may_change_resolution().then(|| {
                // The work tree's graph stands for the head's nearly always: its packages are
                // read, and its graph built, meanwhile too.
                scope.spawn(|| workspace.graph.package_entries().and_then(|_| workspace.graph.resolver()).map(|_| ()));
                scope.spawn(move || match resolving_base {
                    Some(resolving) => Ok(resolving),
                    None => start_metadata_at_in_new_shell(workspace, base),
                })
            });
            // The head's files are read from the work tree when it holds them.
            let head = match change {
                ResolutionChange::Unchanged => committed_head,
                _ => (!work_tree_is_head()?).then_some(committed_head).flatten(),
            };
            let resolves_anew = graph_may_change(git, workspace, change, (&settings.before, &settings.after), head, &changes.changed)?;
            let resolving_base = match resolving_base {
                Some(resolving) => Some(resolving.join().map_err(|_| anyhow::anyhow!("resolving the base's dependency graph failed"))?),
                None => None,
            };
            // Stopped when not needed: cargo is killed with the run.
            let base_metadata = resolves_anew.then_some(|| match resolving_base {
                Some(resolving) => resolving?.finish(git, workspace),
                None => metadata_at(git, workspace, base),
            });
            build_effects(git, workspace, config, (&settings.before, &settings.after), head, base_metadata)
        })
    })
}

/// `f` with a git of its own in `root`, a work tree's root that git was asked about already, for
/// another thread: a shell cannot be shared between threads.
fn with_new_git<T>(root: &Path, f: impl FnOnce(&Git<'_>) -> Result<T>) -> Result<T> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    f(&Git::opened(&sh))
}

/// Whether the work tree at `root` holds the graph inputs of commit `head` (the clean HEAD:
/// nearly always), so that its graph, resolved with the workspace, stands for the head's.
fn work_tree_holds(root: &Path, head: &str, uncommitted: bool) -> Result<bool> {
    with_new_git(root, |git| {
        Ok(uncommitted || (git.rev_parse("HEAD")? == head && !git.dirty_paths()?.iter().any(|path| is_graph_input(path))))
    })
}

/// The paths each app's Dockerfile copies from outside the app's directory (and outside
/// `target/`, where staged binaries live), for every platform.
pub fn context_sources(workspace: &Workspace, platforms: &[crate::image::platform::Platform]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut sources = BTreeMap::new();
    for app in workspace.apps() {
        let dockerfile = app.dockerfile.as_deref().expect("apps have a Dockerfile");
        let Ok(text) = app.dockerfile_text(&workspace.root) else { continue };
        let mut found = BTreeSet::new();
        for platform in platforms {
            // Builder stages the xtask replaces read the context for cargo, whose inputs the
            // crate graph tracks: only what the stages left copy counts, and nothing when they
            // read no context but the staged binaries.
            let text = match dockerfile::cargo_stage::replace(&text, dockerfile, &app.build_args(platform), &platform.to_string()) {
                Ok(dockerfile::cargo_stage::CargoStages::Replaced(replaced)) => {
                    // What the replaced stages copied for cargo counts where the crate graph does
                    // not know it (`COPY migrations ./migrations`): not the crates, manifests
                    // and whole context, which it tracks.
                    let sources = replaced.builder_sources.iter().map(|source| literal_prefix(source));
                    found.extend(sources.filter(|source| !tracked_by_the_graph(workspace, source)));
                    if !replaced.reads_context {
                        continue;
                    }
                    replaced.text
                }
                _ => text.clone(),
            };
            // A Dockerfile the builder cannot read is reported by the build, not here.
            let Ok(plan) = dockerfile::plan(&text, dockerfile, &app.build_args(platform)) else { continue };
            for source in plan.copy_sources() {
                {
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

/// A COPY source as a path every file it may copy lies under: itself, or for a pattern
/// (`proto/*.proto`) the directories before its first wildcard; without a trailing `/`.
fn literal_prefix(source: &str) -> String {
    let source = source.trim_start_matches("./");
    let literal = match source.find(['*', '?', '[']) {
        Some(at) => source[..at].rsplit_once('/').map_or("", |(dir, _)| dir),
        None => source,
    };
    literal.trim_end_matches('/').to_string()
}

/// Whether a path a replaced builder stage copied is one the crate graph already tracks for the
/// build the xtask makes instead: the whole context, cargo's own files, a crate's directory, a
/// file in one, or a directory holding crates.
fn tracked_by_the_graph(workspace: &Workspace, source: &str) -> bool {
    const CARGO_FILES: [&str; 6] = ["Cargo.toml", "Cargo.lock", ".cargo", "rust-toolchain", "rust-toolchain.toml", "target"];
    let within = |dir: &str, path: &str| dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"));
    source.is_empty()
        || source == "."
        || CARGO_FILES.contains(&source)
        || workspace
            .members
            .iter()
            .filter(|member| member.is_crate)
            .any(|member| within(&member.dir, source) || within(source, &member.dir))
}

/// The tree whose dependency graph a lockfile comparison resolves.
enum Head<'a, 'scope> {
    /// The work tree's, being resolved by this thread.
    WorkTree(std::thread::ScopedJoinHandle<'scope, Result<&'scope graph::Resolver>>),
    /// A commit's.
    Commit(&'a String),
}

/// Says which apps a Cargo.lock change reaches (`detect::lockfile`): the two lockfiles' entries
/// are compared, and each app's head build (resolved per target) tells what it compiles. A
/// commit's graph is resolved from the files cargo reads to resolve (see `is_graph_input`),
/// exported from git, and from the whole tree when that is not enough. When the graph cannot be
/// resolved offline, or a lockfile not read, the lockfile counts as a workspace-wide input: a
/// miss would ship a stale image.
fn compare_lockfiles(git: &Git<'_>, workspace: &Workspace, config: &Config, base: &str, head: Head<'_, '_>) -> LockfileEvidence {
    let (packages, triples) = (compiled_packages(workspace), release_triples(config));
    let compared = || -> Result<BTreeMap<String, Vec<String>>> {
        let before = git.show(base, "Cargo.lock").unwrap_or_default();
        let after = match head {
            Head::Commit(rev) => git.show(rev, "Cargo.lock").unwrap_or_default(),
            Head::WorkTree(_) => std::fs::read_to_string(workspace.root.join("Cargo.lock")).unwrap_or_default(),
        };
        let diff = lockfile::diff(&before, &after).context("a Cargo.lock is not a lockfile cargo wrote")?;
        let commit_resolver;
        let resolver = match head {
            Head::WorkTree(resolving) => resolving.join().map_err(|_| anyhow::anyhow!("resolving the dependency graph failed"))??,
            Head::Commit(rev) => {
                commit_resolver = resolve_at(git, workspace, rev)?;
                &commit_resolver
            }
        };
        let resolved = resolver.per_app(&resolver.apps_that_may_compile(&packages, &diff.packages())?, &triples)?;
        // Each resolved line starts with the package's `name version`.
        let compiled: BTreeMap<String, BTreeSet<String>> = resolved
            .into_iter()
            .map(|(app, lines)| (app, lines.iter().map(|line| line.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect()))
            .collect();
        Ok(per_app(workspace, diff.reaching(&compiled)))
    };
    match compared() {
        Ok(reached) => LockfileEvidence::Compared(reached),
        Err(err) => {
            eprintln!("note: cannot compare the dependency graphs ({err:#}); every app counts as changed by Cargo.lock");
            LockfileEvidence::NotCompared
        }
    }
}

/// The dependency graph of commit `rev`, resolved from the files cargo reads to resolve (see
/// `is_graph_input`) exported from git, and from the whole tree when that is not enough.
fn resolve_at(git: &Git<'_>, workspace: &Workspace, rev: &str) -> Result<graph::Resolver> {
    let metadata = metadata_at(git, workspace, rev)?;
    Ok(graph::Resolver::new(&metadata)?.with_cargo_options(workspace.graph.cargo_options.clone()))
}

/// `cargo metadata` with its resolve graph for commit `rev` (see `resolve_at`).
/// The files cargo resolves from are kept exported in `.git/xtask/graph-tree/` between runs,
/// with what they are, and only those that differ are written for the next commit asked for
/// (none for the same commit): on a slow disk, writing a large workspace's manifests takes
/// longer than resolving it. They live in git's directory, not the target directory, because
/// that is known before cargo is asked anything (`EarlyDetection` starts from it).
fn metadata_at(git: &Git<'_>, workspace: &Workspace, rev: &str) -> Result<Vec<u8>> {
    start_metadata_at(git, rev)?.finish(git, workspace)
}

/// `cargo metadata` of a commit running in the background (`start_metadata_at`), with the lock
/// on the tree it resolves.
struct ResolvingCommit {
    rev: String,
    run: graph::MetadataRun,
    _tree: std::fs::File,
}

impl ResolvingCommit {
    /// The metadata, waiting for it; from the whole tree when the files cargo resolves from were
    /// not enough.
    fn finish(self, git: &Git<'_>, workspace: &Workspace) -> Result<Vec<u8>> {
        let ResolvingCommit { rev, run, _tree } = self;
        match run.finish() {
            Ok(metadata) => Ok(metadata),
            Err(_) => {
                drop(_tree);
                let whole = workspace.scratch_dir("tree")?;
                git.export(&rev, whole.path(), |_| true)?;
                graph::full_metadata(whole.path(), true)
            }
        }
    }
}

/// Exports the files commit `rev`'s graph is resolved from and starts `cargo metadata` over
/// them (see `metadata_at`).
fn start_metadata_at(git: &Git<'_>, rev: &str) -> Result<ResolvingCommit> {
    let cache = git.own_dir()?.join("xtask/graph-tree");
    let state = cache.with_extension("json");
    std::fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    // One process at a time rewrites the tree and resolves it.
    let lock = std::fs::File::create(cache.with_extension("lock"))?;
    lock.lock()?;
    /// What the tree holds: the files of commit `rev`, each with its object.
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct Exported {
        rev: String,
        files: BTreeMap<String, String>,
    }
    let held: Exported = std::fs::read(&state).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
    // A commit's files never change: a tree that holds them is neither listed nor written again.
    if held.rev != rev || held.files.is_empty() {
        // A tree whose state is not known (a run that stopped half-way) is written whole again.
        let _ = std::fs::remove_file(&state);
        if held.files.is_empty() {
            let _ = std::fs::remove_dir_all(&cache);
            std::fs::create_dir_all(&cache)?;
        }
        let files = git.export_changes(rev, &cache, is_graph_input, &held.files)?;
        std::fs::write(&state, serde_json::to_vec(&Exported { rev: rev.to_string(), files })?)?;
    }
    // cargo keeps what it asked rustc about the target in the tree's target directory
    // (`MetadataRun::start_exported`), which must exist for that: otherwise each run asks rustc
    // again (twice, tens of milliseconds).
    std::fs::create_dir_all(cache.join("target"))?;
    Ok(ResolvingCommit { rev: rev.to_string(), run: graph::MetadataRun::start_exported(&cache)?, _tree: lock })
}

/// Says which apps a change to the root manifest or cargo's configuration reaches, by what it
/// does to their builds: each app's settings (`settings::of_apps`) and its resolved graph per
/// target, at both commits (the settings files of both given, and the base's graph when what
/// cargo resolves from changed (`resolution_changed`); `head` `None`: the work tree, which holds
/// the head's graph inputs). Per app reached, what changed.
fn build_effects(
    git: &Git<'_>,
    workspace: &Workspace,
    config: &Config,
    (files_before, files_after): (&SettingsFiles, &SettingsFiles),
    head: Option<&str>,
    base_metadata: Option<impl FnOnce() -> Result<Vec<u8>>>,
) -> Result<BTreeMap<String, String>> {
    let builds = app_builds(workspace, config);
    let before = settings::of_apps(&files_before.as_files(), &builds)?;
    let after = settings::of_apps(&files_after.as_files(), &builds)?;
    let (mut resolved_before, mut resolved_after) = (BTreeMap::new(), BTreeMap::new());
    if let Some(base_metadata) = base_metadata {
        let (packages, triples) = (compiled_packages(workspace), release_triples(config));
        let metadata_after = head.map(|rev| metadata_at(git, workspace, rev)).transpose()?;
        let resolver = |metadata: &[u8]| -> Result<graph::Resolver> {
            Ok(graph::Resolver::new(metadata)?.with_cargo_options(workspace.graph.cargo_options.clone()))
        };
        // Each commit's packages are read, and its graph built, as soon as its metadata is there
        // (the work tree's may be already): the head's while the base's graph may still be
        // resolving, the base's two side by side. The graphs are built before the entries tell
        // whether they are needed, which they are unless no package changed.
        let metadata_before = std::sync::OnceLock::new();
        let ((entries_after, commit_resolver), (entries_before, before_resolver)) = std::thread::scope(|scope| -> Result<_> {
            let reading_after = scope.spawn(|| -> Result<_> {
                Ok(match &metadata_after {
                    None => (std::borrow::Cow::Borrowed(workspace.graph.package_entries()?), workspace.graph.resolver().map(|_| None)?),
                    Some(metadata) => (std::borrow::Cow::Owned(graph::package_entries(metadata)?), Some(resolver(metadata)?)),
                })
            });
            let fetched = base_metadata()?;
            let metadata_before: &Vec<u8> = metadata_before.get_or_init(|| fetched);
            let building_before = scope.spawn(|| resolver(metadata_before));
            let entries_before = graph::package_entries(metadata_before)?;
            let before_resolver = building_before.join().map_err(|_| anyhow::anyhow!("reading the base's dependency graph failed"))??;
            let after = reading_after.join().map_err(|_| anyhow::anyhow!("reading the head's dependency graph failed"))??;
            Ok((after, (entries_before, before_resolver)))
        })?;
        let after_resolver = match &commit_resolver {
            Some(resolver) => resolver,
            None => workspace.graph.resolver()?,
        };
        // Only the apps that can reach a package whose entry changed are simulated.
        let touched: BTreeSet<String> = entries_before
            .keys()
            .chain(entries_after.keys())
            .filter(|key| entries_before.get(*key) != entries_after.get(*key))
            .cloned()
            .collect();
        if !touched.is_empty() {
            let mut reaching: Vec<String> = before_resolver.apps_that_may_compile(&packages, &touched)?;
            reaching.extend(after_resolver.apps_that_may_compile(&packages, &touched)?);
            reaching.sort();
            reaching.dedup();
            // The two commits' builds are simulated side by side.
            let (before, after) = std::thread::scope(|scope| {
                let after = scope.spawn(|| after_resolver.per_app(&reaching, &triples));
                (before_resolver.per_app(&reaching, &triples), after.join())
            });
            resolved_before = per_app(workspace, before?);
            resolved_after = per_app(workspace, after.map_err(|_| anyhow::anyhow!("simulating the head's builds failed"))??);
        }
    }
    let mut effects = BTreeMap::new();
    for app in workspace.apps() {
        let mut what = Vec::new();
        if before.get(&app.name) != after.get(&app.name) {
            what.push("the settings its build reads".to_string());
        }
        let (then, now) =
            (resolved_before.get(&app.name).cloned().unwrap_or_default(), resolved_after.get(&app.name).cloned().unwrap_or_default());
        if then != now {
            what.push(format!("{} of the packages it compiles", then.symmetric_difference(&now).count()));
        }
        if !what.is_empty() {
            effects.insert(app.name.clone(), what.join(" and "));
        }
    }
    Ok(effects)
}

/// The root manifest's and cargo's configuration's texts at commit `rev`, or in the work tree.
struct SettingsFiles {
    manifest: Option<String>,
    config: Option<String>,
}

impl SettingsFiles {
    fn as_files(&self) -> settings::Files<'_> {
        settings::Files { manifest: self.manifest.as_deref(), config: self.config.as_deref() }
    }
}

/// The files `SettingsFiles` holds: the root manifest, and cargo's configuration under its two
/// names.
const SETTINGS_FILES: [&str; 3] = ["Cargo.toml", ".cargo/config.toml", ".cargo/config"];

impl SettingsFiles {
    /// From the texts of `SETTINGS_FILES`, in that order.
    fn from_texts(texts: &mut impl Iterator<Item = Option<String>>) -> SettingsFiles {
        let (manifest, config, legacy_config) = (texts.next().flatten(), texts.next().flatten(), texts.next().flatten());
        SettingsFiles { manifest, config: config.or(legacy_config) }
    }
}

fn settings_files(git: &Git<'_>, root: &Path, rev: Option<&str>) -> SettingsFiles {
    SettingsFiles::from_texts(&mut read_files(git, root, rev, &SETTINGS_FILES.map(String::from)).into_iter())
}

/// The texts of files (paths relative to the root) at commit `rev`, or in the work tree; `None`
/// for one that is not there, or when git cannot tell.
fn read_files(git: &Git<'_>, root: &Path, rev: Option<&str>, paths: &[String]) -> Vec<Option<String>> {
    match rev {
        Some(rev) => git.show_files(rev, paths).unwrap_or_else(|_| vec![None; paths.len()]),
        None => paths.iter().map(|path| std::fs::read_to_string(root.join(path)).ok()).collect(),
    }
}

/// Whether a change of the root settings (`change`, between the files `before` and `after`, those
/// of `head`, `None`: the work tree) can change what cargo resolves. A change of only what the
/// members inherit, in a range where no other file cargo resolves from changed, does so only when
/// it reaches a member (`settings::members_reached`, which reads the members' manifests).
fn graph_may_change(
    git: &Git<'_>,
    workspace: &Workspace,
    change: ResolutionChange,
    (before, after): (&SettingsFiles, &SettingsFiles),
    head: Option<&str>,
    changed: &[String],
) -> Result<bool> {
    Ok(match change {
        ResolutionChange::Unchanged => false,
        // With Cargo.lock and every other manifest as they were, the graph follows from the
        // members' entries.
        ResolutionChange::MembersOnly if changed.iter().filter(|path| is_graph_input(path)).all(|path| is_root_setting(path)) => {
            let manifests: Vec<String> = workspace
                .members
                .iter()
                .filter(|member| member.is_crate)
                .map(|member| if member.dir.is_empty() { "Cargo.toml".to_string() } else { format!("{}/Cargo.toml", member.dir) })
                .collect();
            settings::members_reached(&before.as_files(), &after.as_files(), &read_files(git, &workspace.root, head, &manifests))?
        }
        ResolutionChange::MembersOnly | ResolutionChange::Graph => true,
    })
}

/// Each app's build settings (`settings::of_apps`) in the work tree.
fn work_tree_settings(git: &Git<'_>, workspace: &Workspace, config: &Config) -> Result<BTreeMap<String, String>> {
    settings::of_apps(&settings_files(git, &workspace.root, None).as_files(), &app_builds(workspace, config))
}

/// The apps as their settings see them: the profile of the crate each compiles, and every Rust
/// target a platform may build for (the configured one and its gnu counterpart).
fn app_builds(workspace: &Workspace, config: &Config) -> Vec<settings::AppBuild> {
    let mut triples: Vec<String> = Vec::new();
    for triple in config.targets.values() {
        triples.extend(std::iter::once(triple.clone()).chain(crate::image::platform::gnu_counterpart(triple)));
    }
    workspace
        .apps()
        .map(|app| {
            let crate_member = app.package.as_deref().and_then(|package| workspace.member(package));
            settings::AppBuild {
                name: app.name.clone(),
                profile: crate_member.map_or_else(|| "release".to_string(), |member| member.cargo_options.profile.clone()),
                triples: triples.clone(),
                compiled: crate_member.is_some(),
            }
        })
        .collect()
}

/// The crates the apps compile, for the graph's questions: an app's own, or the one an image's
/// builder stage builds.
fn compiled_packages(workspace: &Workspace) -> Vec<String> {
    let mut packages: Vec<String> = workspace.apps().filter_map(|app| app.package.clone()).collect();
    packages.sort();
    packages.dedup();
    packages
}

/// What the graph says of each package, said of each app that compiles it.
fn per_app<T: Clone>(workspace: &Workspace, by_package: BTreeMap<String, T>) -> BTreeMap<String, T> {
    workspace.apps().filter_map(|app| Some((app.name.clone(), by_package.get(app.package.as_ref()?)?.clone()))).collect()
}

/// The Rust targets of the release's platforms, whose builds the graphs resolve.
fn release_triples(config: &Config) -> Vec<&str> {
    config.platforms.iter().map(|platform| config.targets[platform].as_str()).collect()
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

/// The root manifest and cargo's configuration: judged by what they do to each build.
fn is_root_setting(path: &str) -> bool {
    path == "Cargo.toml" || path.starts_with(".cargo/")
}

/// Apps whose Dockerfile was deleted and whose directory is no app any more.
fn deleted_apps(git: &Git<'_>, workspace: &Workspace, base: &str, deleted_paths: &[String]) -> Vec<DeletedApp> {
    let mut deleted = Vec::new();
    for path in deleted_paths {
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
    deleted
}

/// Apps for `build` and `release`: named ones, all of them, or the changed ones.
pub fn selection(git: Option<&Git<'_>>, workspace: &Workspace, config: &Config, selection: &flags::Selection) -> Result<Vec<SelectedApp>> {
    let mut apps = if !selection.apps.is_empty() {
        workspace.select_apps(&selection.apps)?.into_iter().map(|app| selected(workspace, &app.name, vec![Reason::Requested])).collect()
    } else if selection.all {
        select_all(workspace, Reason::Requested)
    } else {
        let git = git.context("detecting changed apps needs git")?;
        let range = resolve_range(git, selection.base.as_deref(), None)?;
        detect(git, workspace, config, &range, false)?.apps
    };
    if !selection.exclude.is_empty() {
        workspace.select_apps(&selection.exclude).context("in --exclude")?;
        apps.retain(|app| !selection.exclude.contains(&app.name));
    }
    Ok(apps)
}

/// The inputs of every app at `rev`, whose tree the work tree must hold (the lockfile is
/// resolved there).
pub fn current_inputs(git: &Git<'_>, workspace: &Workspace, config: &Config, rev: &str) -> Result<BTreeMap<String, AppInputs>> {
    let files = git.tree_files(rev)?;
    let resolved = resolved_with_cache(workspace, &release_triples(config), &files)?;
    let evidence = Evidence {
        rules: config.rules.clone(),
        context_sources: context_sources(workspace, &config.platforms)?,
        // The work tree holds the commit: its settings are the commit's.
        build_settings: work_tree_settings(git, workspace, config).unwrap_or_default(),
        ..Evidence::default()
    };
    Ok(inputs::app_inputs(workspace, &files, &evidence, &resolved, &config.platforms))
}

/// The workspace's resolved dependencies (`graph::Resolver::per_app`), remembered under
/// `target/xtask/resolved/` by a digest of what resolution reads: the object ids of the files of
/// `is_graph_input` in the commit the work tree holds, and which cargo resolves. A
/// workspace with the AWS SDK takes cargo 0.2 s to resolve, as long as a rebuild of an app's image.
fn resolved_with_cache(workspace: &Workspace, triples: &[&str], files: &[TreeFile]) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let cargo = workspace::cargo();
    // A toolchain update replaces the cargo binary; with a rustup proxy (`cargo` on PATH) the
    // toolchain file, part of the graph inputs, or RUSTUP_TOOLCHAIN picks it.
    let stamp = std::fs::metadata(&cargo).ok().map(|meta| (meta.len(), meta.modified().ok()));
    // Resolved and kept per package; said of each app that compiles it.
    let packages = compiled_packages(workspace);
    let options = &workspace.graph.cargo_options;
    let mut key = format!(
        "resolved dependencies v4\n{cargo} {stamp:?} {:?}\n{triples:?} {packages:?}\n{options:?}\n",
        std::env::var("RUSTUP_TOOLCHAIN").ok()
    );
    for file in files.iter().filter(|file| is_graph_input(&file.path)) {
        key.push_str(&format!("{} {}\n", file.object, file.path));
    }
    let cache = workspace.target_dir.join("xtask/resolved").join(format!("{}.json", Digest::of(key.as_bytes()).hex()));
    if let Some(resolved) = std::fs::read(&cache).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()) {
        return Ok(per_app(workspace, resolved));
    }
    let resolved = workspace.graph.resolver()?.per_app(&packages, triples)?;
    // The cache is only an optimisation: a failure to write it is not the user's problem, and a
    // rename makes a concurrent reader see the whole file or none.
    let partial = cache.with_extension(format!("{}.tmp", std::process::id()));
    let written = std::fs::create_dir_all(cache.parent().expect("has a parent"))
        .and_then(|()| std::fs::write(&partial, serde_json::to_vec(&resolved).expect("serialisable")))
        .and_then(|()| std::fs::rename(&partial, &cache));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    Ok(per_app(workspace, resolved))
}

/// `start_metadata_at` from another thread, which needs a shell of its own.
fn start_metadata_at_in_new_shell(workspace: &Workspace, rev: &str) -> Result<ResolvingCommit> {
    with_new_git(&workspace.root, |git| start_metadata_at(git, rev))
}

/// `current_inputs` from another thread, which needs a shell of its own.
pub fn current_inputs_in_new_shell(workspace: &Workspace, config: &Config, rev: &str) -> Result<BTreeMap<String, AppInputs>> {
    let sh = Shell::new()?;
    sh.change_dir(&workspace.root);
    current_inputs(&Git::open(&sh, &workspace.root)?, workspace, config, rev)
}

#[cfg(test)]
mod tests {

    #[test]
    fn what_a_replaced_builder_stage_copies_counts_where_the_graph_does_not_know_it() {
        let ws = crate::workspace::tests::workspace(&[("api", "crates/api", &[], true), ("common", "crates/common", &[], false)]);
        let counted: Vec<String> =
            [".", "./", "Cargo.toml", "crates", "crates/api/src", "crates/", "migrations/", "./proto/*.proto", "*.toml", "config/app.toml"]
                .into_iter()
                .map(literal_prefix)
                .filter(|source| !tracked_by_the_graph(&ws, source))
                .collect();
        assert_eq!(counted, ["migrations", "proto", "config/app.toml"]);
    }

    use super::*;

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
}
