//! The build context on disk as BuildKit receives it: what `.dockerignore` leaves out is not
//! there, a directory left out but holding an exception's files is there with those files only,
//! every entry is owned by root (Docker's client resets owners) and keeps its mode. A file's
//! bytes stay on disk; the layer writer streams them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::builder::dockerignore::Dockerignore;
use crate::image::fstree::{FileData, Kind, Source, Stat};

pub struct BuildContext {
    root: PathBuf,
    ignore: Dockerignore,
    /// Whether an excluded directory still holds something the context keeps, once asked.
    kept_dirs: RefCell<BTreeMap<String, bool>>,
}

impl BuildContext {
    /// The context at `root` with the ignore file BuildKit would use for `dockerfile`.
    pub fn open(root: &Path, dockerfile: &Path) -> Result<BuildContext> {
        let ignore = Dockerignore::read(root, dockerfile)?;
        Ok(BuildContext { root: root.to_path_buf(), ignore, kept_dirs: RefCell::new(BTreeMap::new()) })
    }

    /// `path` (absolute in the context) relative to the context root.
    fn relative(path: &str) -> &str {
        path.trim_start_matches('/')
    }

    fn on_disk(&self, path: &str) -> PathBuf {
        self.root.join(Self::relative(path))
    }

    /// Whether the context has `relative` (its parents being there): not excluded, or an
    /// excluded directory under which an exception keeps something.
    fn keeps(&self, relative: &str, is_dir: bool) -> Result<bool> {
        if relative.is_empty() || !self.ignore.excludes(relative) {
            return Ok(true);
        }
        if !is_dir || !self.ignore.may_include_under(relative) {
            return Ok(false);
        }
        if let Some(known) = self.kept_dirs.borrow().get(relative) {
            return Ok(*known);
        }
        let mut kept = false;
        for name in self.names_on_disk(relative)? {
            let child = format!("{relative}/{name}");
            let is_dir = fs::symlink_metadata(self.root.join(&child)).is_ok_and(|metadata| metadata.is_dir());
            if self.keeps(&child, is_dir)? {
                kept = true;
                break;
            }
        }
        self.kept_dirs.borrow_mut().insert(relative.to_string(), kept);
        Ok(kept)
    }

    fn names_on_disk(&self, relative: &str) -> Result<Vec<String>> {
        let dir = self.root.join(relative);
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else {
                anyhow::bail!("{} holds a file name that is not UTF-8: rename it or add it to .dockerignore", dir.display())
            };
            names.push(name.to_string());
        }
        names.sort();
        Ok(names)
    }
}

impl Source for BuildContext {
    fn lstat(&self, path: &str) -> Result<Option<Stat>> {
        let relative = Self::relative(path);
        // Every directory above must be in the context too.
        let mut above = String::new();
        for part in relative.split('/').filter(|part| !part.is_empty()).collect::<Vec<_>>().split_last().map_or(&[][..], |(_, rest)| rest) {
            above = if above.is_empty() { part.to_string() } else { format!("{above}/{part}") };
            if !self.keeps(&above, true)? {
                return Ok(None);
            }
        }
        let on_disk = self.on_disk(path);
        let metadata = match fs::symlink_metadata(&on_disk) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound || err.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", on_disk.display())),
        };
        if !self.keeps(relative, metadata.is_dir())? {
            return Ok(None);
        }
        let file_type = metadata.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            Kind::File(FileData::Context(on_disk.clone()))
        } else if file_type.is_symlink() {
            let target = fs::read_link(&on_disk).with_context(|| format!("cannot read the link {}", on_disk.display()))?;
            Kind::Symlink(target.to_string_lossy().into_owned())
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&file_type) {
            Kind::Fifo
        } else {
            Kind::Special
        };
        // Hard links matter only between names of one file.
        let inode = if file_type.is_file() && metadata.nlink() > 1 { metadata.ino() } else { 0 };
        Ok(Some(Stat { kind, mode: metadata.permissions().mode() & 0o7777, uid: 0, gid: 0, inode }))
    }

    fn list(&self, path: &str) -> Result<Vec<String>> {
        let relative = Self::relative(path).trim_end_matches('/');
        let mut kept = Vec::new();
        for name in self.names_on_disk(relative)? {
            let child = if relative.is_empty() { name.clone() } else { format!("{relative}/{name}") };
            let is_dir = fs::symlink_metadata(self.root.join(&child)).is_ok_and(|metadata| metadata.is_dir());
            if self.keeps(&child, is_dir)? {
                kept.push(name);
            }
        }
        Ok(kept)
    }
}
