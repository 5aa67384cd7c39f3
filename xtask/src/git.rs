//! The git facts a release needs, each one `git` call through xshell.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::inputs::TreeFile;

pub struct Git<'a> {
    sh: &'a Shell,
}

impl<'a> Git<'a> {
    /// Fails unless `dir` is inside a git work tree, because tags name commits.
    pub fn open(sh: &'a Shell, dir: &Path) -> Result<Git<'a>> {
        let inside = cmd!(sh, "git -C {dir} rev-parse --is-inside-work-tree").quiet().ignore_stderr().read();
        if !inside.is_ok_and(|out| out.trim() == "true") {
            bail!(
                "{} is not a git repository: images are tagged with the commit they were built from, so run the xtask in a git checkout (for a new workspace: git init && git add -A && git commit -m initial)",
                dir.display()
            );
        }
        Ok(Git { sh })
    }

    /// The full 40-character sha of `rev`.
    pub fn rev_parse(&self, rev: &str) -> Result<String> {
        let sh = self.sh;
        let spec = format!("{rev}^{{commit}}");
        cmd!(sh, "git rev-parse --verify --quiet {spec}")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .filter(|sha| !sha.is_empty())
            .with_context(|| {
                if self.is_shallow() {
                    format!("commit `{rev}` is not in this clone, which is shallow: fetch the history (`git fetch --unshallow`, or `fetch-depth: 0` in actions/checkout) or pass --all")
                } else if rev == "HEAD" {
                    "this repository has no commit yet: commit the workspace first (git add -A && git commit)".to_string()
                } else {
                    format!("unknown git revision `{rev}`: name a branch, tag or commit that exists in this clone")
                }
            })
    }

    pub fn is_shallow(&self) -> bool {
        let sh = self.sh;
        cmd!(sh, "git rev-parse --is-shallow-repository").quiet().ignore_stderr().read().is_ok_and(|out| out.trim() == "true")
    }

    /// The first parent of `sha`, or `None` for a root commit.
    pub fn parent(&self, sha: &str) -> Option<String> {
        let sh = self.sh;
        let spec = format!("{sha}^1");
        cmd!(sh, "git rev-parse --verify --quiet {spec}").quiet().ignore_stderr().read().ok().filter(|s| !s.is_empty())
    }

    /// The branch changes are compared with when no base is given: `origin/HEAD` or `main`.
    pub fn default_branch(&self) -> Option<String> {
        ["origin/HEAD", "main", "master"].into_iter().find(|rev| self.rev_parse(rev).is_ok()).map(str::to_string)
    }

    pub fn merge_base(&self, a: &str, b: &str) -> Result<String> {
        let sh = self.sh;
        cmd!(sh, "git merge-base {a} {b}").quiet().read().with_context(|| format!("{a} and {b} share no history: pass --base"))
    }

    /// Paths changed between two commits. With `--no-renames` a rename counts as a deletion of
    /// the old path and an addition of the new one, so both sides select their apps.
    pub fn changed_paths(&self, base: &str, head: &str) -> Result<Vec<String>> {
        let sh = self.sh;
        let output = cmd!(sh, "git diff --no-renames --name-only -z {base} {head}").quiet().read()?;
        Ok(output.split('\0').filter(|path| !path.is_empty()).map(str::to_string).collect())
    }

    /// Paths deleted between two commits.
    pub fn deleted_paths(&self, base: &str, head: &str) -> Result<Vec<String>> {
        let sh = self.sh;
        let output = cmd!(sh, "git diff --no-renames --name-only --diff-filter=D -z {base} {head}").quiet().read()?;
        Ok(output.split('\0').filter(|path| !path.is_empty()).map(str::to_string).collect())
    }

    /// Paths of the work tree that differ from `base`: tracked changes and untracked files.
    pub fn uncommitted_paths(&self, base: &str) -> Result<Vec<String>> {
        let sh = self.sh;
        let tracked = cmd!(sh, "git diff --no-renames --name-only -z {base}").quiet().read()?;
        let untracked = cmd!(sh, "git ls-files --others --exclude-standard -z").quiet().read()?;
        let mut paths: Vec<String> =
            tracked.split('\0').chain(untracked.split('\0')).filter(|p| !p.is_empty()).map(str::to_string).collect();
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// The contents of `path` at `rev`, or `None` if it did not exist there.
    pub fn show(&self, rev: &str, path: &str) -> Option<String> {
        let sh = self.sh;
        let spec = format!("{rev}:{path}");
        cmd!(sh, "git show {spec}").quiet().ignore_stderr().read().ok()
    }

    /// Checks `rev` out into `dir` as a detached worktree, for reading an old tree with cargo.
    pub fn add_worktree(&self, dir: &Path, rev: &str) -> Result<Worktree<'_>> {
        let sh = self.sh;
        cmd!(sh, "git worktree add --detach --force -q {dir} {rev}")
            .quiet()
            .ignore_stderr()
            .run()
            .with_context(|| format!("cannot check {rev} out into {}", dir.display()))?;
        Ok(Worktree { git: self, dir: dir.to_path_buf() })
    }

    /// Whether tracked or untracked, not ignored, files differ from HEAD.
    pub fn is_dirty(&self) -> Result<bool> {
        let sh = self.sh;
        Ok(!cmd!(sh, "git status --porcelain").quiet().read()?.trim().is_empty())
    }

    /// The committer time of `sha` in seconds since the epoch: the default `SOURCE_DATE_EPOCH`.
    pub fn commit_time(&self, sha: &str) -> Result<u64> {
        let sh = self.sh;
        let text = cmd!(sh, "git show -s --format=%ct {sha}").quiet().read()?;
        text.trim().parse().with_context(|| format!("git printed an unexpected commit time `{text}`"))
    }

    /// Every file of `rev`'s tree with its object id.
    pub fn tree_files(&self, rev: &str) -> Result<Vec<TreeFile>> {
        let sh = self.sh;
        let output = cmd!(sh, "git ls-tree -r -z --full-tree {rev}").quiet().read()?;
        let mut files = Vec::new();
        for entry in output.split('\0').filter(|entry| !entry.is_empty()) {
            // `<mode> <type> <object>\t<path>`
            let (meta, path) = entry.split_once('\t').with_context(|| format!("git ls-tree printed an unexpected line `{entry}`"))?;
            let object = meta.rsplit(' ').next().unwrap_or_default();
            files.push(TreeFile { path: path.to_string(), object: object.to_string() });
        }
        Ok(files)
    }

    /// The newest `count` commits reachable from `rev` that touched any of `pathspecs`, newest
    /// first. Pathspecs are literal paths: a file name with `*` is not a pattern.
    pub fn last_changes(&self, rev: &str, pathspecs: &[String], count: usize) -> Result<Vec<String>> {
        let sh = self.sh;
        let count = count.to_string();
        let output = cmd!(sh, "git --literal-pathspecs log --format=%H -n {count} {rev} -- {pathspecs...}").quiet().read()?;
        Ok(output.lines().map(str::to_string).collect())
    }

    /// The `origin` remote's URL, for the `org.opencontainers.image.source` annotation.
    pub fn origin_url(&self) -> Option<String> {
        let sh = self.sh;
        cmd!(sh, "git remote get-url origin").quiet().ignore_stderr().read().ok().filter(|url| !url.is_empty())
    }
}

/// A temporary checkout, removed when dropped.
pub struct Worktree<'a> {
    git: &'a Git<'a>,
    pub dir: std::path::PathBuf,
}

impl Drop for Worktree<'_> {
    fn drop(&mut self) {
        let sh = self.git.sh;
        let dir = &self.dir;
        let _ = cmd!(sh, "git worktree remove --force {dir}").quiet().ignore_stderr().run();
    }
}
