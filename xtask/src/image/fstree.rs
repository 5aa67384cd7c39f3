//! A file system as BuildKit's file operations change it, kept in memory: continuity's
//! `RootPath` (symbolic links followed without leaving the root), fsutil's `MkdirAll` and `Copy`
//! (destination rules, modes and special bits kept, ownership, hard links within one source,
//! wildcards). The native builder applies each COPY and WORKDIR of a Dockerfile to the base
//! image's tree, and a step's layer is what the step touched plus the directories above it, with
//! the metadata they have afterwards: what BuildKit's differ writes. File contents are referenced
//! (a path in the build context, bytes a Dockerfile holds), never read here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

/// How many symbolic links one path may pass through, as in continuity (`maxSymlinkLimit`).
const MAX_LINKS: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(FileData),
    Symlink(String),
    /// A named pipe: BuildKit copies it as one.
    Fifo,
    /// A device or socket of a base image: there so that paths resolve as in the image.
    Special,
}

/// Where a regular file's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileData {
    /// In a base image's layer; a build never writes them again.
    Base,
    /// A file of the build context.
    Context(PathBuf),
    /// Bytes the Dockerfile itself holds (a heredoc).
    Inline(Vec<u8>),
}

/// One entry's metadata, as `lstat` tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    /// Permission and special bits (setuid, setgid, sticky), as a tar header holds them.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Entries with the same non-zero inode are hard links of one file.
    pub inode: u64,
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// A tree files are copied from: the build context (on disk, `.dockerignore` applied) or a tree
/// in memory. Paths are absolute within the tree, `/`-separated.
pub trait Source {
    /// The entry at `path`, its last component not followed; `None` when there is none.
    fn lstat(&self, path: &str) -> Result<Option<Stat>>;
    /// The names in the directory `path`, sorted.
    fn list(&self, path: &str) -> Result<Vec<String>>;
}

/// `path`'s components, `.` and empty ones left out.
fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|part| !part.is_empty() && *part != ".")
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(end) => &path[..end],
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').find(|part| !part.is_empty()).unwrap_or("/")
}

/// Go's `path.Clean` of an absolute path: `.` and empty components dropped, `..` applied
/// without going above the root.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in components(path) {
        if part == ".." {
            parts.pop();
        } else {
            parts.push(part);
        }
    }
    format!("/{}", parts.join("/"))
}

/// continuity's `RootPath`: `path` with every symbolic link along it followed inside `tree`
/// (an absolute target starts again at the tree's root, `..` stops there), the last component
/// included; components that do not exist are kept as written.
pub fn root_path(tree: &dyn Source, path: &str) -> Result<String> {
    let mut pending: Vec<String> = components(path).rev().map(str::to_string).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = format!("/{}", resolved.iter().chain([&part]).map(String::as_str).collect::<Vec<_>>().join("/"));
        match tree.lstat(&candidate)? {
            Some(Stat { kind: Kind::Symlink(target), .. }) => {
                links += 1;
                if links > MAX_LINKS {
                    bail!("too many links resolving {path}");
                }
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(components(&target).rev().map(str::to_string));
            }
            _ => resolved.push(part),
        }
    }
    Ok(format!("/{}", resolved.join("/")))
}

/// The entry at `path` with its last link followed too (`stat`), inside `tree`.
fn stat(tree: &dyn Source, path: &str) -> Result<Option<Stat>> {
    tree.lstat(&root_path(tree, path)?)
}

/// What one COPY source is copied with.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// `--chown`, numeric: every copied entry and every directory the copy creates.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`: every copied entry but links, directories included.
    pub mode: Option<u32>,
}

/// A file system tree in memory: the image as built so far.
#[derive(Clone, Debug)]
pub struct FsTree {
    entries: BTreeMap<String, Stat>,
    /// Short facts read from base files' bytes while their layers were listed (`layer_entries`),
    /// by path: what a build needs to know of a file it never copies (the C library's version).
    notes: BTreeMap<String, String>,
}

/// The inodes of copied hard link groups: unique across trees, since a `COPY --link` tree is
/// merged into the image's.
static NEXT_INODE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Default for FsTree {
    fn default() -> FsTree {
        FsTree::new()
    }
}

impl Source for FsTree {
    fn lstat(&self, path: &str) -> Result<Option<Stat>> {
        Ok(self.entries.get(&clean(path)).cloned())
    }

    fn list(&self, path: &str) -> Result<Vec<String>> {
        let dir = clean(path);
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        Ok(self
            .entries
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter(|(key, _)| key.len() > prefix.len() && !key[prefix.len()..].contains('/'))
            .map(|(key, _)| key[prefix.len()..].to_string())
            .collect())
    }
}

/// One entry of a layer, in the order BuildKit's differ writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerEntry {
    /// Relative to the root; a directory's ends with `/`.
    pub path: String,
    pub kind: LayerKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerKind {
    Dir,
    File(FileData),
    Symlink(String),
    /// A hard link to the entry at that path, written earlier in the same layer.
    Hardlink(String),
    Fifo,
}

impl FsTree {
    /// An empty tree: the root directory, 0755, owned by root (what `FROM scratch` starts with).
    pub fn new() -> FsTree {
        let root = Stat { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, inode: 0 };
        FsTree { entries: BTreeMap::from([("/".to_string(), root)]), notes: BTreeMap::new() }
    }

    /// The note a base layer's listing took of the file at `path` (not followed), if the file is
    /// still there.
    pub fn note(&self, path: &str) -> Option<&str> {
        let path = clean(path);
        self.entries.contains_key(&path).then(|| self.notes.get(&path)).flatten().map(String::as_str)
    }

    /// Puts an entry of a base image's layer in place (`path` absolute); a whiteout removes.
    pub fn apply_base_entry(&mut self, path: &str, stat: Option<Stat>) {
        let path = clean(path);
        // A later layer's file replaces the earlier one and what was noted of its bytes.
        self.notes.remove(&path);
        match stat {
            Some(stat) => {
                self.entries.insert(path, stat);
            }
            None => self.remove_subtree(&path),
        }
    }

    fn remove_subtree(&mut self, path: &str) {
        let prefix = format!("{path}/");
        self.entries.retain(|key, _| key != path && !key.starts_with(&prefix));
    }

    fn create(&mut self, path: &str, stat: Stat, touched: &mut BTreeSet<String>) {
        self.entries.insert(path.to_string(), stat);
        touched.insert(path.to_string());
    }

    /// fsutil's `MkdirAll`: the directories of `path` (already resolved) that are missing are
    /// made with `mode` and `owner` (root when none); an existing file on the way is an error.
    pub fn mkdir_all(&mut self, path: &str, mode: u32, owner: Option<(u32, u32)>, touched: &mut BTreeSet<String>) -> Result<()> {
        let mut current = String::from("/");
        for part in components(path) {
            current = join(&current, part);
            match stat(self, &current)? {
                Some(found) if found.is_dir() => {
                    current = root_path(self, &current)?;
                }
                Some(_) => bail!("mkdir {current}: not a directory"),
                None => {
                    let (uid, gid) = owner.unwrap_or((0, 0));
                    self.create(&current, Stat { kind: Kind::Dir, mode, uid, gid, inode: 0 }, touched);
                }
            }
        }
        Ok(())
    }

    /// BuildKit's copy of one source path of `from` (resolved there, links followed) to `dest`
    /// as a COPY gives it (absolute, a trailing `/` or `/.` kept: they make it a directory):
    /// fsutil's `Copy` with the contents of a directory copied, and the destination's missing
    /// directories made.
    pub fn copy(&mut self, from: &dyn Source, src: &str, dest: &str, options: &CopyOptions, touched: &mut BTreeSet<String>) -> Result<()> {
        // The directory to make first: the destination itself when it ends with `/` or `/.`.
        let ensure = match dest.rsplit_once('/') {
            Some((dir, name)) if !name.is_empty() && name != "." => {
                if dir.is_empty() {
                    "/"
                } else {
                    dir
                }
            }
            _ => dest,
        };
        let ensure = root_path(self, ensure)?;
        self.mkdir_all(&ensure, 0o755, options.owner, touched)?;
        let mut dest = root_path(self, &clean(dest))?;
        let src_followed = root_path(from, src)?;
        let Some(source) = from.lstat(&src_followed)? else { bail!("{src}: not found") };
        let existing = stat(self, &dest)?;
        // prepareTargetDir: a file into an existing directory goes inside it.
        if !source.is_dir() && existing.as_ref().is_some_and(Stat::is_dir) {
            dest = join(&dest, base_name(src));
        }
        let target = if source.is_dir() && existing.is_none() { dest.clone() } else { parent(&dest).to_string() };
        self.mkdir_all(&target, 0o755, options.owner, touched)?;
        let mut copier = Copier { options, inodes: BTreeMap::new() };
        copier.copy(self, from, &src_followed, &dest, false, touched)
    }

    /// The layer of a step that touched `touched`: those entries and every directory above them,
    /// as they are now, in the order of a walk that visits each directory's names sorted.
    /// Files that are hard links of each other are written once, then as links to the first.
    pub fn layer(&self, touched: &BTreeSet<String>) -> Vec<LayerEntry> {
        let mut paths: BTreeSet<String> = BTreeSet::new();
        for path in touched {
            let mut current = path.as_str();
            while current != "/" {
                if !paths.insert(current.to_string()) {
                    break;
                }
                current = parent(current);
            }
        }
        let mut ordered: Vec<&String> = paths.iter().filter(|path| self.entries.contains_key(*path)).collect();
        ordered.sort_by(|a, b| components(a).cmp(components(b)));
        let mut first_of_inode: BTreeMap<u64, String> = BTreeMap::new();
        ordered
            .into_iter()
            .map(|path| {
                let stat = &self.entries[path];
                let relative = path.trim_start_matches('/').to_string();
                let (path, kind) = match &stat.kind {
                    Kind::Dir => (format!("{relative}/"), LayerKind::Dir),
                    Kind::File(data) => match (stat.inode, first_of_inode.get(&stat.inode)) {
                        (inode, Some(first)) if inode != 0 => (relative, LayerKind::Hardlink(first.clone())),
                        (inode, _) => {
                            if inode != 0 {
                                first_of_inode.insert(inode, relative.clone());
                            }
                            (relative, LayerKind::File(data.clone()))
                        }
                    },
                    Kind::Symlink(target) => (relative, LayerKind::Symlink(target.clone())),
                    Kind::Fifo => (relative, LayerKind::Fifo),
                    Kind::Special => (relative, LayerKind::File(FileData::Base)),
                };
                LayerEntry { path, kind, mode: stat.mode, uid: stat.uid, gid: stat.gid }
            })
            .collect()
    }
}

/// One entry of a base image's layer as far as a build needs it; file contents are not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseEntry {
    Put(String, Stat),
    /// A whiteout: the layer removes the path.
    Remove(String),
    /// An opaque whiteout: the layer empties the directory.
    Empty(String),
    /// What `layer_entries`'s reader noted of the bytes of the regular file just put at the path.
    Note(String, String),
}

/// Reads a short fact out of a regular file's bytes while its layer is listed, for the paths it
/// wants: `None` for the rest, whose bytes are skipped.
pub type FileReader<'a> = &'a dyn Fn(&str, &mut dyn std::io::Read) -> Option<String>;

/// The entries of an uncompressed layer tar, in order: OCI whiteouts (`.wh.NAME` removes NAME,
/// `.wh..wh..opq` empties its directory), hard links as files; after a regular file, what `read`
/// noted of its bytes.
pub fn layer_entries(tar_stream: impl std::io::Read, read: FileReader<'_>) -> Result<Vec<BaseEntry>> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut listed = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header();
        let path = clean(&format!("/{}", entry.path()?.to_string_lossy()));
        let name = base_name(&path);
        if name == ".wh..wh..opq" {
            listed.push(BaseEntry::Empty(parent(&path).to_string()));
            continue;
        }
        if let Some(removed) = name.strip_prefix(".wh.") {
            listed.push(BaseEntry::Remove(join(parent(&path), removed)));
            continue;
        }
        let kind = match header.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Link => Kind::File(FileData::Base),
            tar::EntryType::Symlink => {
                Kind::Symlink(entry.link_name()?.map(|link| link.to_string_lossy().into_owned()).unwrap_or_default())
            }
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::Char | tar::EntryType::Block => Kind::Special,
            // PAX and GNU extension headers are read by the tar crate itself.
            _ => continue,
        };
        // Go's archive/tar reads an empty owner field as 0; some writers leave it empty.
        let owner = |id: std::io::Result<u64>| id.map_or(0, |id| u32::try_from(id).unwrap_or(u32::MAX));
        let stat = Stat { kind, mode: header.mode()? & 0o7777, uid: owner(header.uid()), gid: owner(header.gid()), inode: 0 };
        let regular = matches!(header.entry_type(), tar::EntryType::Regular | tar::EntryType::Continuous);
        listed.push(BaseEntry::Put(path.clone(), stat));
        if let Some(note) = regular.then(|| read(&path, &mut entry)).flatten() {
            listed.push(BaseEntry::Note(path, note));
        }
    }
    Ok(listed)
}

impl FsTree {
    /// Applies a base layer's entries (`layer_entries`) on top of the tree.
    pub fn apply_base_layer(&mut self, entries: &[BaseEntry]) {
        for entry in entries {
            match entry {
                BaseEntry::Put(path, stat) => self.apply_base_entry(path, Some(stat.clone())),
                BaseEntry::Remove(path) => self.apply_base_entry(path, None),
                BaseEntry::Note(path, note) => {
                    self.notes.insert(clean(path), note.clone());
                }
                BaseEntry::Empty(dir) => {
                    let prefix = format!("{}/", clean(dir).trim_end_matches('/'));
                    self.entries.retain(|key, _| !key.starts_with(&prefix) || key == "/");
                }
            }
        }
    }
}

/// One source's copy (fsutil's `copier`): the hard links it has seen, by the source's inode.
struct Copier<'a> {
    options: &'a CopyOptions,
    inodes: BTreeMap<u64, u64>,
}

impl Copier<'_> {
    /// fsutil's `copier.copy`: `src` of `from` to `target`; metadata of an existing directory is
    /// overwritten below the top of the copy, not at it.
    fn copy(
        &mut self,
        tree: &mut FsTree,
        from: &dyn Source,
        src: &str,
        target: &str,
        overwrite_metadata: bool,
        touched: &mut BTreeSet<String>,
    ) -> Result<()> {
        let source = from.lstat(src)?.ok_or_else(|| anyhow!("{src}: not found"))?;
        let existing = tree.lstat(target)?;
        if !source.is_dir() {
            match &existing {
                Some(found) if found.is_dir() => bail!("cannot replace to directory {target} with file"),
                Some(_) => tree.remove_subtree(target),
                None => {}
            }
        }
        let copy_metadata = match &source.kind {
            Kind::Dir => {
                let created = match &existing {
                    None => {
                        tree.create(target, Stat { inode: 0, ..source.clone() }, touched);
                        true
                    }
                    Some(found) if !found.is_dir() => bail!("cannot copy to non-directory: {target}"),
                    Some(_) => {
                        if overwrite_metadata {
                            let entry = tree.entries.get_mut(target).expect("exists");
                            entry.mode = source.mode;
                            touched.insert(target.to_string());
                        }
                        false
                    }
                };
                for name in from.list(src)? {
                    self.copy(tree, from, &join(src, &name), &join(target, &name), true, touched)?;
                }
                created || overwrite_metadata
            }
            Kind::File(data) => {
                let inode = match source.inode {
                    0 => 0,
                    inode => *self.inodes.entry(inode).or_insert_with(|| NEXT_INODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
                };
                tree.create(target, Stat { kind: Kind::File(data.clone()), inode, ..source.clone() }, touched);
                true
            }
            Kind::Symlink(link) => {
                tree.create(target, Stat { kind: Kind::Symlink(link.clone()), inode: 0, ..source.clone() }, touched);
                true
            }
            Kind::Fifo => {
                tree.create(target, Stat { kind: Kind::Fifo, inode: 0, ..source.clone() }, touched);
                true
            }
            Kind::Special => bail!("{src} is a device or socket, which the native builder does not copy"),
        };
        if copy_metadata {
            let entry = tree.entries.get_mut(target).expect("just copied");
            let (uid, gid) = self.options.owner.unwrap_or((source.uid, source.gid));
            entry.uid = uid;
            entry.gid = gid;
            if !matches!(entry.kind, Kind::Symlink(_)) {
                entry.mode = self.options.mode.unwrap_or(source.mode);
            }
            // A hard link shares its metadata with the other names of its file.
            if entry.inode != 0 {
                let shared = entry.clone();
                for other in tree.entries.values_mut().filter(|other| other.inode == shared.inode) {
                    (other.mode, other.uid, other.gid) = (shared.mode, shared.uid, shared.gid);
                }
            }
            touched.insert(target.to_string());
        }
        Ok(())
    }
}

/// Whether a path component has a wildcard (`*`, `?`, `[`) not escaped by `\` (fsutil's
/// `containsWildcards`).
pub fn has_wildcard(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// fsutil's `ResolveWildcards`: the paths of `tree` that a source with wildcards names. The
/// components before the first one with a wildcard are resolved (links followed); below them,
/// a walk that does not follow links matches the rest of the pattern against each path and does
/// not descend into a directory that matched.
pub fn resolve_wildcards(tree: &dyn Source, src: &str) -> Result<Vec<String>> {
    let parts: Vec<&str> = components(src).collect();
    let Some(first) = parts.iter().position(|part| has_wildcard(part)) else { return Ok(vec![clean(src)]) };
    let base = root_path(tree, &format!("/{}", parts[..first].join("/")))?;
    let pattern = parts[first..].join("/");
    if tree.lstat(&base)?.is_none() {
        bail!("lstat {base}: no such file or directory");
    }
    let mut found = Vec::new();
    let mut pending = vec![(base.clone(), String::new())];
    while let Some((dir, relative)) = pending.pop() {
        let mut below = Vec::new();
        for name in tree.list(&dir)? {
            let path = join(&dir, &name);
            let relative = if relative.is_empty() { name.clone() } else { format!("{relative}/{name}") };
            let is_dir = tree.lstat(&path)?.is_some_and(|stat| stat.is_dir());
            if go_match(&pattern, &relative)? {
                found.push(path);
            } else if is_dir {
                below.push((path, relative));
            }
        }
        // A walk in sorted order: the first name's subtree before the next name.
        pending.extend(below.into_iter().rev());
    }
    found.sort_by(|a, b| components(a).cmp(components(b)));
    Ok(found)
}

/// Go's `filepath.Match` on `/`-separated names: `*` and `?` never match `/`, `[...]` classes
/// with ranges and `^` negation, `\` escapes. A malformed pattern is an error, as in Go.
pub fn go_match(pattern: &str, name: &str) -> Result<bool> {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_from(&pattern, &name).ok_or_else(|| anyhow!("syntax error in pattern"))
}

/// `None` for a malformed pattern.
fn match_from(pattern: &[char], name: &[char]) -> Option<bool> {
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: its pattern position, and the name position it covers to.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' if n < name.len() && name[n] != '/' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' if n < name.len() => {
                    let (matched, next) = match_class(pattern, p, name[n])?;
                    if matched && name[n] != '/' {
                        p = next;
                        n += 1;
                        continue;
                    }
                }
                '\\' => {
                    let escaped = *pattern.get(p + 1)?;
                    if n < name.len() && name[n] == escaped {
                        p += 2;
                        n += 1;
                        continue;
                    }
                }
                '[' => {
                    match_class(pattern, p, 'x')?;
                }
                c if c != '?' && n < name.len() && name[n] == c => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        } else if n == name.len() {
            return Some(true);
        }
        // Backtrack: let the last `*` cover one more character, never a `/`.
        match star {
            Some((star_p, star_n)) if star_n < name.len() && name[star_n] != '/' => {
                star = Some((star_p, star_n + 1));
                p = star_p + 1;
                n = star_n + 1;
            }
            _ => {
                // The rest of the pattern must still be well formed, as Go checks.
                check_pattern(&pattern[p.min(pattern.len())..])?;
                return Some(false);
            }
        }
    }
}

/// The class starting at `pattern[start]` (`[`): whether `c` is in it, and the position after it.
fn match_class(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = matches!(pattern.get(i), Some('^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let current = *pattern.get(i)?;
        if current == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let low = class_char(pattern, &mut i)?;
        let high = if pattern.get(i) == Some(&'-') && pattern.get(i + 1) != Some(&']') {
            i += 1;
            class_char(pattern, &mut i)?
        } else {
            low
        };
        if low <= c && c <= high {
            matched = true;
        }
    }
    Some((matched != negated, i))
}

fn class_char(pattern: &[char], i: &mut usize) -> Option<char> {
    let c = *pattern.get(*i)?;
    match c {
        '-' | ']' => None,
        '\\' => {
            let escaped = *pattern.get(*i + 1)?;
            *i += 2;
            Some(escaped)
        }
        c => {
            *i += 1;
            Some(c)
        }
    }
}

/// `None` when the pattern has a malformed class or a trailing `\`.
fn check_pattern(pattern: &[char]) -> Option<()> {
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '\\' => {
                pattern.get(i + 1)?;
                i += 2;
            }
            '[' => i = match_class(pattern, i, 'x')?.1,
            _ => i += 1,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(mode: u32, inode: u64, name: &str) -> Stat {
        Stat { kind: Kind::File(FileData::Context(PathBuf::from(name))), mode, uid: 0, gid: 0, inode }
    }

    fn dir(mode: u32) -> Stat {
        Stat { kind: Kind::Dir, mode, uid: 0, gid: 0, inode: 0 }
    }

    /// A context: `conf` 600, `helper` setuid, `d/` with a 700 `sub/`, two hard links of one
    /// file, an empty directory and a link.
    fn context() -> FsTree {
        let mut tree = FsTree::new();
        for (path, stat) in [
            ("/conf", file(0o600, 0, "conf")),
            ("/helper", file(0o4755, 0, "helper")),
            ("/d", dir(0o755)),
            ("/d/a0", file(0o644, 7, "d/a0")),
            ("/d/h1", file(0o644, 7, "d/h1")),
            ("/d/sub", dir(0o700)),
            ("/d/sub/f", file(0o644, 7, "d/sub/f")),
            ("/d/empty", dir(0o755)),
            ("/d/l", Stat { kind: Kind::Symlink("sub/f".into()), mode: 0o777, uid: 0, gid: 0, inode: 0 }),
        ] {
            tree.apply_base_entry(path, Some(stat));
        }
        tree
    }

    /// Runs COPY steps (`src dest`, `--chown`/`--chmod` as options) on `image` and prints each layer.
    fn check(image: &mut FsTree, steps: &[(&str, &str, CopyOptions)], expected: expect_test::Expect) {
        let from = context();
        let mut out = String::new();
        for (src, dest, options) in steps {
            let mut touched = BTreeSet::new();
            let result = resolve_wildcards(&from, src)
                .and_then(|sources| sources.iter().try_for_each(|source| image.copy(&from, source, dest, options, &mut touched)));
            out.push_str(&format!("COPY {src} {dest}\n"));
            if let Err(err) = result {
                out.push_str(&format!("  error: {err}\n"));
            }
            for entry in image.layer(&touched) {
                let kind = match &entry.kind {
                    LayerKind::Dir => String::new(),
                    LayerKind::File(_) => String::new(),
                    LayerKind::Symlink(target) => format!(" -> {target}"),
                    LayerKind::Hardlink(target) => format!(" link to {target}"),
                    LayerKind::Fifo => " fifo".to_string(),
                };
                out.push_str(&format!("  {} {:o} {}:{}{kind}\n", entry.path, entry.mode, entry.uid, entry.gid));
            }
        }
        expected.assert_eq(&out);
    }

    #[test]
    fn copies_as_buildkit_does() {
        let mut image = FsTree::new();
        let owned = CopyOptions { owner: Some((10, 20)), mode: None };
        let chmod = CopyOptions { owner: None, mode: Some(0o640) };
        check(
            &mut image,
            &[
                ("conf", "/app/", CopyOptions::default()),
                ("helper", "/app", CopyOptions::default()),
                ("d", "/d", CopyOptions::default()),
                ("d", "/srv", owned),
                ("d", "/e/", chmod),
                ("d/*", "/w/", CopyOptions::default()),
                ("nothing*", "/n/", CopyOptions::default()),
                ("d/sub/f", "/d/sub", CopyOptions::default()),
                ("d/sub/f", "/x/.", CopyOptions::default()),
            ],
            expect_test::expect![[r#"
                COPY conf /app/
                  app/ 755 0:0
                  app/conf 600 0:0
                COPY helper /app
                  app/ 755 0:0
                  app/helper 4755 0:0
                COPY d /d
                  d/ 755 0:0
                  d/a0 644 0:0
                  d/empty/ 755 0:0
                  d/h1 644 0:0 link to d/a0
                  d/l 777 0:0 -> sub/f
                  d/sub/ 700 0:0
                  d/sub/f 644 0:0 link to d/a0
                COPY d /srv
                  srv/ 755 10:20
                  srv/a0 644 10:20
                  srv/empty/ 755 10:20
                  srv/h1 644 10:20 link to srv/a0
                  srv/l 777 10:20 -> sub/f
                  srv/sub/ 700 10:20
                  srv/sub/f 644 10:20 link to srv/a0
                COPY d /e/
                  e/ 755 0:0
                  e/a0 640 0:0
                  e/empty/ 640 0:0
                  e/h1 640 0:0 link to e/a0
                  e/l 777 0:0 -> sub/f
                  e/sub/ 640 0:0
                  e/sub/f 640 0:0 link to e/a0
                COPY d/* /w/
                  w/ 755 0:0
                  w/a0 644 0:0
                  w/f 644 0:0
                  w/h1 644 0:0
                  w/l 644 0:0
                COPY nothing* /n/
                COPY d/sub/f /d/sub
                  d/ 755 0:0
                  d/sub/ 700 0:0
                  d/sub/f 644 0:0
                COPY d/sub/f /x/.
                  x/ 755 0:0
                  x/f 644 0:0
            "#]],
        );
    }

    #[test]
    fn links_in_the_image_are_followed_and_existing_directories_kept() {
        // A merged-/usr base: /bin is a link to usr/bin; /tmp is sticky.
        let mut image = FsTree::new();
        image.apply_base_entry("/usr", Some(dir(0o755)));
        image.apply_base_entry("/usr/bin", Some(dir(0o755)));
        image.apply_base_entry("/bin", Some(Stat { kind: Kind::Symlink("usr/bin".into()), mode: 0o777, uid: 0, gid: 0, inode: 0 }));
        image.apply_base_entry("/tmp", Some(dir(0o1777)));
        check(
            &mut image,
            &[("conf", "/bin/y", CopyOptions::default()), ("conf", "/tmp", CopyOptions::default()), ("d", "/bin/", CopyOptions::default())],
            expect_test::expect![[r#"
                COPY conf /bin/y
                  usr/ 755 0:0
                  usr/bin/ 755 0:0
                  usr/bin/y 600 0:0
                COPY conf /tmp
                  tmp/ 1777 0:0
                  tmp/conf 600 0:0
                COPY d /bin/
                  usr/ 755 0:0
                  usr/bin/ 755 0:0
                  usr/bin/a0 644 0:0
                  usr/bin/empty/ 755 0:0
                  usr/bin/h1 644 0:0 link to usr/bin/a0
                  usr/bin/l 777 0:0 -> sub/f
                  usr/bin/sub/ 700 0:0
                  usr/bin/sub/f 644 0:0 link to usr/bin/a0
            "#]],
        );
    }

    #[test]
    fn go_filepath_match() {
        let cases = [
            ("abc", "abc", Some(true)),
            ("*", "abc", Some(true)),
            ("*c", "abc", Some(true)),
            ("a*", "a", Some(true)),
            ("a*/b", "abc/b", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
            ("ab[c]", "abc", Some(true)),
            ("ab[b-d]", "abc", Some(true)),
            ("ab[e-g]", "abc", Some(false)),
            ("ab[^c]", "abc", Some(false)),
            ("ab[^e-g]", "abc", Some(true)),
            ("a\\*b", "a*b", Some(true)),
            ("a\\*b", "ab", Some(false)),
            ("a?b", "a☺b", Some(true)),
            ("a?b", "a/b", Some(false)),
            ("a*b", "a/b", Some(false)),
            ("[\\]a]", "]", Some(true)),
            ("[x\\-]", "-", Some(true)),
            ("[", "a", None),
            ("[^", "a", None),
            ("[-]", "-", None),
            ("[a-]", "b", None),
            ("a[", "a", None),
            ("*x", "xxx", Some(true)),
            ("[a-b-c]", "a", None),
            ("*.[pk]em", "key.pem", Some(true)),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(go_match(pattern, name).ok(), expected, "{pattern} {name}");
        }
    }
}
