//! Self-healing selection: apps whose image of their current inputs is not in the repository
//! although the git diff does not show them (a release that failed half-way, a new or emptied
//! repository). For each app, the commits that last touched its inputs are looked up as
//! `<app>-<sha>` tags, newest first; the first one found must carry the app's current input
//! digest (see `inputs`), else the app is selected.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use xshell::Shell;

use crate::changed::{self, Evidence, Reason};
use crate::config::Config;
use crate::git::Git;
use crate::inputs::{self, AppInputs, TreeFile};
use crate::oci::Digest;
use crate::push::Session;
use crate::reference::Repository;
use crate::workspace::{self, Workspace};

/// How many of an app's last changes are looked up before it counts as never released.
const CHANGES_SEARCHED: usize = 10;

/// The inputs of every app at `rev`, whose tree the work tree must hold (the lockfile is
/// resolved there).
pub fn current_inputs(sh: &Shell, git: &Git<'_>, workspace: &Workspace, config: &Config, rev: &str) -> Result<BTreeMap<String, AppInputs>> {
    let files = git.tree_files(rev)?;
    let resolved = resolved_with_cache(sh, workspace, &files)?;
    let evidence = Evidence {
        rules: config.rules.clone(),
        context_sources: changed::context_sources(workspace, &config.platforms)?,
        ..Evidence::default()
    };
    Ok(inputs::app_inputs(workspace, &files, &evidence, &resolved, &config.platforms))
}

/// The workspace's resolved dependencies (`workspace::resolve_graph`), remembered under
/// `target/xtask/resolved/` by a digest of what resolution reads: the object ids of the files of
/// `changed::is_graph_input` in the commit the work tree holds, and which cargo resolves. A
/// workspace with the AWS SDK takes cargo 0.2 s to resolve, as long as a rebuild of an app's image.
fn resolved_with_cache(sh: &Shell, workspace: &Workspace, files: &[TreeFile]) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let cargo = workspace::cargo();
    // A toolchain update replaces the cargo binary; with a rustup proxy (`cargo` on PATH) the
    // toolchain file, part of the graph inputs, or RUSTUP_TOOLCHAIN picks it.
    let stamp = std::fs::metadata(&cargo).ok().map(|meta| (meta.len(), meta.modified().ok()));
    let mut key = format!("resolved dependencies v1\n{cargo} {stamp:?} {:?}\n", std::env::var("RUSTUP_TOOLCHAIN").ok());
    for file in files.iter().filter(|file| changed::is_graph_input(&file.path)) {
        key.push_str(&format!("{} {}\n", file.object, file.path));
    }
    let cache = workspace.target_dir.join("xtask/resolved").join(format!("{}.json", Digest::of(key.as_bytes()).hex()));
    if let Some(resolved) = std::fs::read(&cache).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()) {
        return Ok(resolved);
    }
    let resolved = workspace::resolve_graph(sh, &workspace.root, false)?;
    // The cache is only an optimisation: a failure to write it is not the user's problem, and a
    // rename makes a concurrent reader see the whole file or none.
    let partial = cache.with_extension(format!("{}.tmp", std::process::id()));
    let written = std::fs::create_dir_all(cache.parent().expect("has a parent"))
        .and_then(|()| std::fs::write(&partial, serde_json::to_vec(&resolved).expect("serialisable")))
        .and_then(|()| std::fs::rename(&partial, &cache));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    Ok(resolved)
}

/// `current_inputs` from another thread, which needs a shell of its own.
pub fn current_inputs_in_new_shell(workspace: &Workspace, config: &Config, rev: &str) -> Result<BTreeMap<String, AppInputs>> {
    let sh = Shell::new()?;
    sh.change_dir(&workspace.root);
    current_inputs(&sh, &Git::open(&sh, &workspace.root)?, workspace, config, rev)
}

/// Why `app` must be released although git shows no change, or `None` when the repository holds
/// an image of its current inputs: under `<app>-latest` (where a release that healed the app put
/// it), or else under the newest `<app>-<sha>` of `last_changes`, the commits that last touched its
/// inputs (which keeps a rollback of `-latest` in place).
async fn unreleased_reason(
    session: &Session,
    repository: &Repository,
    app: &str,
    inputs: &AppInputs,
    last_changes: &[String],
) -> Result<Option<Reason>> {
    let recorded_inputs = |tag: String| async move {
        let annotations =
            session.find_annotations(repository, &tag).await.with_context(|| format!("cannot look {tag} up in {repository}"))?;
        anyhow::Ok(annotations.map(|annotations| annotations.get(inputs::ANNOTATION).and_then(|digest| digest.parse::<Digest>().ok())))
    };
    if recorded_inputs(format!("{app}-latest")).await? == Some(Some(inputs.digest.clone())) {
        return Ok(None);
    }
    let mut searched = Vec::new();
    for sha in last_changes {
        let tag = format!("{app}-{sha}");
        match recorded_inputs(tag.clone()).await? {
            None => searched.push(tag),
            Some(Some(digest)) if digest == inputs.digest => return Ok(None),
            Some(recorded) => return Ok(Some(Reason::Stale { tag, recorded })),
        }
    }
    Ok(Some(Reason::Unreleased { searched }))
}

/// The newest `CHANGES_SEARCHED` commits of `head`'s first-parent history that touched each
/// app's inputs, from one walk of the history that stops when every app has its share.
fn last_changes(git: &Git<'_>, head: &str, apps: &[(&String, &AppInputs)]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut found: BTreeMap<String, Vec<String>> = apps.iter().map(|(name, _)| ((*name).clone(), Vec::new())).collect();
    git.walk_history(head, |sha, paths| {
        for (name, inputs) in apps {
            let commits = found.get_mut(*name).expect("every app has an entry");
            if commits.len() < CHANGES_SEARCHED && paths.iter().any(|path| inputs.touched_by(path)) {
                commits.push(sha.to_string());
            }
        }
        found.values().any(|commits| commits.len() < CHANGES_SEARCHED)
    })?;
    Ok(found)
}

/// Adds to `apps` every app of `workspace` that is not in `apps` nor in `excluded` and whose
/// image of its current inputs is missing from `repository`. The lookups run concurrently.
#[allow(clippy::too_many_arguments)]
pub async fn add_unreleased(
    git: &Git<'_>,
    session: &Session,
    repository: &Repository,
    head: &str,
    workspace: &Workspace,
    inputs: &BTreeMap<String, AppInputs>,
    excluded: &[String],
    apps: &mut Vec<changed::SelectedApp>,
) -> Result<()> {
    let candidates: Vec<(&String, &AppInputs)> =
        inputs.iter().filter(|(name, _)| !excluded.contains(name) && !apps.iter().any(|app| &app.name == *name)).collect();
    let changes = last_changes(git, head, &candidates)?;
    let lookups = candidates.iter().map(|(name, inputs)| unreleased_reason(session, repository, name, inputs, &changes[*name]));
    let reasons = futures_util::future::join_all(lookups).await;
    for ((name, _), reason) in candidates.into_iter().zip(reasons) {
        if let Some(reason) = reason? {
            apps.push(changed::selected(workspace, name, vec![reason]));
        }
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}
