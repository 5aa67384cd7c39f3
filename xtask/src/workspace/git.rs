//! The git facts a release needs, each one `git` call through xshell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// An object `git cat-file` printed: its type (`blob`, `tree`...) and contents.
struct GitObject {
    kind: String,
    contents: Vec<u8>,
}

/// The paths a range of commits changed, in git's order, and those of them it deleted.
#[derive(Default)]
pub struct ChangedPaths {
    pub paths: Vec<String>,
    pub deleted: Vec<String>,
}

pub struct Git<'a> {
    sh: &'a Shell,
    /// `own_dir`, asked at most once.
    own_dir: std::sync::OnceLock<PathBuf>,
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
        Ok(Git { sh, own_dir: std::sync::OnceLock::new() })
    }

    /// The git of `sh`'s directory, a work tree's root that another `Git` has opened already
    /// (from another thread, which needs a shell of its own): no call.
    pub fn opened(sh: &'a Shell) -> Git<'a> {
        Git { sh, own_dir: std::sync::OnceLock::new() }
    }

    /// The git of the work tree `sh`'s directory lies in, with `sh` moved to its root, which is
    /// returned; one git call.
    pub fn open_at_root(sh: &'a Shell) -> Result<(Git<'a>, PathBuf)> {
        let output = cmd!(sh, "git rev-parse --show-toplevel --absolute-git-dir").quiet().ignore_stderr().read();
        let (root, own_dir) = output
            .ok()
            .and_then(|out| out.split_once('\n').map(|(root, dir)| (PathBuf::from(root), PathBuf::from(dir))))
            .with_context(|| format!("{} is not in a git work tree", sh.current_dir().display()))?;
        sh.change_dir(&root);
        Ok((Git { sh, own_dir: own_dir.into() }, root))
    }

    /// The repository's own directory (`.git`, or a linked work tree's), where the xtask keeps
    /// the files it exports from commits: unlike the target directory, it is known before cargo
    /// has been asked anything.
    pub fn own_dir(&self) -> Result<&Path> {
        if let Some(dir) = self.own_dir.get() {
            return Ok(dir);
        }
        let sh = self.sh;
        let dir = cmd!(sh, "git rev-parse --absolute-git-dir").quiet().read().context("cannot find this repository's .git directory")?;
        Ok(self.own_dir.get_or_init(|| dir.into()))
    }

    /// The full 40-character sha of `rev`.
    pub fn rev_parse(&self, rev: &str) -> Result<String> {
        self.commit(rev).with_context(|| {
            if self.is_shallow() {
                format!("commit `{rev}` is not in this clone, which is shallow: fetch the history (`git fetch --unshallow`, or `fetch-depth: 0` in actions/checkout) or pass --all")
            } else if rev == "HEAD" {
                "this repository has no commit yet: commit the workspace first (git add -A && git commit)".to_string()
            } else {
                format!("unknown git revision `{rev}`: name a branch, tag or commit that exists in this clone")
            }
        })
    }

    /// Where git looks for hooks (`core.hooksPath` or `.git/hooks`), as an absolute path.
    pub fn hooks_dir(&self) -> Result<PathBuf> {
        let sh = self.sh;
        let dir = cmd!(sh, "git rev-parse --git-path hooks").quiet().read().context("cannot find this repository's hooks directory")?;
        Ok(sh.current_dir().join(dir))
    }

    pub fn is_shallow(&self) -> bool {
        let sh = self.sh;
        cmd!(sh, "git rev-parse --is-shallow-repository").quiet().ignore_stderr().read().is_ok_and(|out| out.trim() == "true")
    }

    /// The sha of `rev` when it names a commit (a probe: a missing one is no error to explain).
    fn commit(&self, rev: &str) -> Option<String> {
        self.commits(&[rev]).ok()?.pop().flatten()
    }

    /// The sha of each of `revs` that names a commit, from one `git cat-file --batch-check`:
    /// probes, so a missing one is `None`, no error to explain. A range's ends, the default
    /// branches and the head's parent are asked together: each git call is milliseconds before
    /// the base's graph can start resolving.
    pub fn commits(&self, revs: &[&str]) -> Result<Vec<Option<String>>> {
        if let Some(rev) = revs.iter().find(|rev| rev.contains(['\n', '\r'])) {
            bail!("`{}` is not a git revision: a revision is one line", rev.escape_debug());
        }
        let sh = self.sh;
        let request: String = revs.iter().map(|rev| format!("{rev}^{{commit}}\n")).collect();
        let output = cmd!(sh, "git cat-file --batch-check=%(objectname)").quiet().ignore_stderr().stdin(request).read()?;
        // A commit's answer is its sha alone; a miss is `<name> missing` (or `ambiguous`).
        let answers: Vec<Option<String>> = output.lines().map(|line| (!line.contains(' ')).then(|| line.to_string())).collect();
        if answers.len() != revs.len() {
            bail!("git cat-file answered {} of {} revisions", answers.len(), revs.len());
        }
        Ok(answers)
    }

    pub fn merge_base(&self, a: &str, b: &str) -> Result<String> {
        let sh = self.sh;
        cmd!(sh, "git merge-base {a} {b}").quiet().read().with_context(|| format!("{a} and {b} share no history: pass --base"))
    }

    /// Paths changed between two commits, and which of them were deleted, from one call. With
    /// `--no-renames` a rename counts as a deletion of the old path and an addition of the new
    /// one, so both sides select their apps.
    pub fn changed_paths(&self, base: &str, head: &str) -> Result<ChangedPaths> {
        let sh = self.sh;
        let output = cmd!(sh, "git diff --no-renames --name-status -z {base} {head}").quiet().read()?;
        // Each change is `<status>\0<path>\0`.
        let mut changed = ChangedPaths::default();
        let mut fields = output.split('\0');
        while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
            if status == "D" {
                changed.deleted.push(path.to_string());
            }
            changed.paths.push(path.to_string());
        }
        Ok(changed)
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

    /// The contents of each of `paths` at `rev` (`None`: it did not exist there, or is no text).
    /// Two git calls whatever the count: `git cat-file` would walk the trees again for each
    /// `rev:path`, which for a large workspace's manifests takes longer than listing them.
    pub fn show_files(&self, rev: &str, paths: &[String]) -> Result<Vec<Option<String>>> {
        let sh = self.sh;
        let output = cmd!(sh, "git ls-tree -r -z --full-tree {rev} -- {paths...}").quiet().read()?;
        let objects: BTreeMap<String, String> = parse_tree(&output)?.into_iter().map(|file| (file.path, file.object)).collect();
        let found: Vec<&String> = paths.iter().filter_map(|path| objects.get(path)).collect();
        let mut blobs = self.blobs(&found)?.into_iter();
        Ok(paths.iter().map(|path| objects.get(path).and_then(|_| blobs.next()).and_then(|blob| String::from_utf8(blob).ok())).collect())
    }

    /// Writes the files of `rev` that `keep` accepts into `dir`, an empty directory the caller
    /// made, without touching the work tree or the index: a partial checkout for reading an old
    /// tree with cargo. The blobs come from one `git cat-file --batch`; git trees hold no `..`
    /// components, so every path lands inside `dir`.
    pub fn export(&self, rev: &str, dir: &Path, keep: impl Fn(&str) -> bool) -> Result<()> {
        let files: Vec<TreeFile> = self.tree_files(rev)?.into_iter().filter(|file| keep(&file.path)).collect();
        self.write_blobs(&files, dir)
    }

    /// Makes `dir` hold exactly the files of `rev` that `keep` accepts, given what it holds now
    /// (`held`: path to object, as the last call returned): only the files that differ are
    /// written and those no longer wanted removed, which on a slow disk is most of the time an
    /// export takes. Returns what `dir` holds.
    pub fn export_changes(
        &self,
        rev: &str,
        dir: &Path,
        keep: impl Fn(&str) -> bool,
        held: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let files: Vec<TreeFile> = self.tree_files(rev)?.into_iter().filter(|file| keep(&file.path)).collect();
        let wanted: BTreeMap<String, String> = files.iter().map(|file| (file.path.clone(), file.object.clone())).collect();
        for path in held.keys().filter(|path| !wanted.contains_key(*path)) {
            let _ = std::fs::remove_file(dir.join(path));
        }
        let changed: Vec<TreeFile> = files.into_iter().filter(|file| held.get(&file.path) != Some(&file.object)).collect();
        self.write_blobs(&changed, dir)?;
        Ok(wanted)
    }

    /// Writes each of `files` (their blobs from one `git cat-file --batch`) under `dir`.
    fn write_blobs(&self, files: &[TreeFile], dir: &Path) -> Result<()> {
        let blobs = self.blobs(&files.iter().map(|file| &file.object).collect::<Vec<_>>())?;
        for (file, contents) in files.iter().zip(blobs) {
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// The text of each file `(rev, path)` (`None`: not there, or no text), from one
    /// `git cat-file --batch`: for a few files, fewer git calls than `show_files`.
    pub fn show_each(&self, files: &[(&str, &str)]) -> Result<Vec<Option<String>>> {
        let names: Vec<String> = files.iter().map(|(rev, path)| format!("{rev}:{path}")).collect();
        let answers = self.cat_file(&names)?;
        Ok(answers
            .into_iter()
            .map(|answer| answer.filter(|object| object.kind == "blob").and_then(|object| String::from_utf8(object.contents).ok()))
            .collect())
    }

    /// The contents of the blobs `objects` names, from one `git cat-file --batch`.
    fn blobs(&self, objects: &[&String]) -> Result<Vec<Vec<u8>>> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let answers = self.cat_file(objects)?;
        answers
            .into_iter()
            .zip(objects)
            .map(|(answer, object)| answer.map(|object| object.contents).with_context(|| format!("git has no object {object}")))
            .collect()
    }

    /// What one `git cat-file --batch` answers for each of `names` (an object, or `rev:path`): its
    /// type and contents, or `None` when git has no such object.
    fn cat_file(&self, names: &[impl AsRef<str>]) -> Result<Vec<Option<GitObject>>> {
        let sh = self.sh;
        let request: String = names.iter().map(|name| format!("{}\n", name.as_ref())).collect();
        let output = cmd!(sh, "git cat-file --batch").quiet().stdin(request).output()?;
        let mut rest = output.stdout.as_slice();
        let mut answers = Vec::with_capacity(names.len());
        for _ in names {
            // Each answer is `<object> <type> <size>\n<contents>\n`, or `<name> missing\n`.
            let header_end = rest.iter().position(|&b| b == b'\n').context("git cat-file printed a truncated answer")?;
            let header: Vec<&str> = std::str::from_utf8(&rest[..header_end])?.split(' ').collect();
            let [_, kind, size] = header[..] else {
                answers.push(None);
                rest = &rest[header_end + 1..];
                continue;
            };
            let size: usize = size.parse().with_context(|| format!("git cat-file printed `{}`", header.join(" ")))?;
            let contents = rest.get(header_end + 1..header_end + 1 + size).context("git cat-file printed a truncated blob")?;
            answers.push(Some(GitObject { kind: kind.to_string(), contents: contents.to_vec() }));
            rest = &rest[(header_end + 2 + size).min(rest.len())..];
        }
        Ok(answers)
    }

    /// The paths `git status` reports: changed, staged and untracked files of the work tree.
    pub fn dirty_paths(&self) -> Result<Vec<String>> {
        let sh = self.sh;
        let output = cmd!(sh, "git status --porcelain -z --no-renames").quiet().read()?;
        // Each entry is `XY <path>`.
        Ok(output.split('\0').filter(|entry| entry.len() > 3).map(|entry| entry[3..].to_string()).collect())
    }

    /// Whether tracked or untracked, not ignored, files differ from HEAD.
    pub fn is_dirty(&self) -> Result<bool> {
        Ok(!self.dirty_paths()?.is_empty())
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
        parse_tree(&output)
    }

    /// Walks the first-parent history of `rev`, newest first (the commits a release on the
    /// main branch tags), calling `visit` with each commit and the paths it changed against its
    /// first parent, until `visit` returns false or the history ends. git's output is streamed
    /// (std::process here, as xshell would read it whole), so a walk that stops early costs only
    /// the commits it saw.
    pub fn walk_history(&self, rev: &str, mut visit: impl FnMut(&str, &[String]) -> bool) -> Result<()> {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new("git")
            .args(["log", "--first-parent", "--diff-merges=first-parent", "--no-renames", "--name-only", "-z", "--format=%x01%H", rev])
            .current_dir(self.sh.current_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot run git log")?;
        let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
        // Entries are NUL-terminated: `\x01<sha>` starts a commit, then its paths (the first one
        // after a newline).
        let mut commit: Option<(String, Vec<String>)> = None;
        let mut entry = Vec::new();
        let mut stopped = false;
        while reader.read_until(0, &mut entry)? > 0 {
            let text = String::from_utf8_lossy(entry.strip_suffix(&[0]).unwrap_or(&entry)).into_owned();
            entry.clear();
            let text = text.strip_prefix('\n').unwrap_or(&text);
            if let Some(sha) = text.strip_prefix('\u{1}') {
                if let Some((sha, paths)) = commit.replace((sha.to_string(), Vec::new())) {
                    if !visit(&sha, &paths) {
                        stopped = true;
                        break;
                    }
                }
            } else if let Some((_, paths)) = &mut commit {
                if !text.is_empty() {
                    paths.push(text.to_string());
                }
            }
        }
        if stopped {
            let _ = child.kill();
        } else if let Some((sha, paths)) = commit {
            visit(&sha, &paths);
        }
        let status = child.wait()?;
        if !stopped && !status.success() {
            bail!("git log {rev} failed");
        }
        Ok(())
    }

    /// The `origin` remote's URL, for the `org.opencontainers.image.source` annotation, without
    /// credentials (see `public_url`).
    pub fn origin_url(&self) -> Option<String> {
        let sh = self.sh;
        cmd!(sh, "git remote get-url origin").quiet().ignore_stderr().read().ok().and_then(|url| public_url(&url))
    }
}

/// A remote URL as it may be published in an image: without a user or password (CI clones
/// carry tokens there, such as `https://gitlab-ci-token:<token>@host/...`), without a query or
/// fragment, and an scp-like `git@host:org/repo.git` in its https form. `None` for what is not a
/// URL of a host (a local path).
pub fn public_url(remote: &str) -> Option<String> {
    let remote = remote.trim();
    let parsed = match url::Url::parse(remote) {
        Ok(url) => url,
        // scp-like syntax: `[user@]host:path`, with no scheme.
        Err(_) => {
            let (login, path) = remote.split_once(':')?;
            let host = login.rsplit_once('@').map_or(login, |(_, host)| host);
            if host.is_empty() || host.contains('/') || path.starts_with("//") {
                return None;
            }
            url::Url::parse(&format!("https://{host}/{}", path.trim_start_matches('/'))).ok()?
        }
    };
    let mut url = parsed;
    if url.host_str().is_none() || !matches!(url.scheme(), "https" | "http" | "ssh" | "git") {
        return None;
    }
    if url.scheme() != "https" && url.scheme() != "http" {
        url = url::Url::parse(&format!("https://{}{}", url.host_str()?, url.path())).ok()?;
    }
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    Some(url.to_string())
}

/// A file of a commit's tree: its path and git object id.
#[derive(Debug, Clone)]
pub struct TreeFile {
    pub path: String,
    pub object: String,
}

/// `git ls-tree -r -z` output as files with their objects.
fn parse_tree(output: &str) -> Result<Vec<TreeFile>> {
    let mut files = Vec::new();
    for entry in output.split('\0').filter(|entry| !entry.is_empty()) {
        // `<mode> <type> <object>\t<path>`
        let (meta, path) = entry.split_once('\t').with_context(|| format!("git ls-tree printed an unexpected line `{entry}`"))?;
        let object = meta.rsplit(' ').next().unwrap_or_default();
        files.push(TreeFile { path: path.to_string(), object: object.to_string() });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::public_url;

    #[test]
    fn published_urls_carry_no_credentials() {
        let published: Vec<String> = [
            "https://gitlab-ci-token:glpat-secret@gitlab.example.com/acme/mono.git",
            "https://x-access-token:ghs_secret@github.com/acme/mono.git?token=1#frag",
            "git@github.com:acme/mono.git",
            "ssh://git@github.com:22/acme/mono.git",
            "https://github.com/acme/mono",
            "/srv/git/mono.git",
        ]
        .iter()
        .map(|remote| format!("{remote} -> {}", public_url(remote).unwrap_or_else(|| "none".into())))
        .collect();
        expect_test::expect![[r#"
            https://gitlab-ci-token:glpat-secret@gitlab.example.com/acme/mono.git -> https://gitlab.example.com/acme/mono.git
            https://x-access-token:ghs_secret@github.com/acme/mono.git?token=1#frag -> https://github.com/acme/mono.git
            git@github.com:acme/mono.git -> https://github.com/acme/mono.git
            ssh://git@github.com:22/acme/mono.git -> https://github.com/acme/mono.git
            https://github.com/acme/mono -> https://github.com/acme/mono
            /srv/git/mono.git -> none"#]]
        .assert_eq(&published.join("\n"));
    }
}
