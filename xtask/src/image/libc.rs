//! Which C library a base image's programs are linked against, read off its file tree: glibc
//! with its version, musl, or none (`scratch`, a static base). A binary for a glibc base must
//! need no newer glibc than the base has, or it stops at start with `GLIBC_2.39 not found`; the
//! builder pins the version it links against to this one.
//!
//! glibc's version is the one its `libc.so.6` states in the text it prints when run ("GNU C
//! Library (Debian GLIBC 2.36-9) stable release version 2.36."): the same on every distribution
//! and in distroless images, which have no package database to read it from.

use std::fmt;
use std::io::Read;

use crate::image::fstree::{self, FsTree, Kind, Source};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion {
    pub major: u32,
    pub minor: u32,
}

impl GlibcVersion {
    /// `2.36`; a third component (`2.36.1`) is not glibc's and is refused.
    pub fn parse(text: &str) -> Option<GlibcVersion> {
        let (major, minor) = text.split_once('.')?;
        let number = |part: &str| part.parse::<u32>().ok().filter(|_| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        Some(GlibcVersion { major: number(major)?, minor: number(minor)? })
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A base image's C library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Libc {
    /// glibc, with its version when `libc.so.6` states one.
    Glibc(Option<GlibcVersion>),
    Musl,
    /// No C library: only static programs run.
    Static,
}

impl fmt::Display for Libc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Libc::Glibc(Some(version)) => write!(f, "glibc {version}"),
            Libc::Glibc(None) => write!(f, "glibc of an unknown version"),
            Libc::Musl => write!(f, "musl"),
            Libc::Static => write!(f, "no C library"),
        }
    }
}

/// What `FsTree` notes of a glibc file.
const NOTE_PREFIX: &str = "glibc ";

/// The most of a file read to find the version: glibc's `libc.so.6` is about 2 MiB.
const MOST_READ: u64 = 16 << 20;

/// For `fstree::layer_entries`: the version of a file in a library directory that may be glibc's
/// `libc.so.6` (`libc-2.31.so` in older releases, which link `libc.so.6` to it).
pub fn read_glibc_release(path: &str, bytes: &mut dyn Read) -> Option<String> {
    let (dir, name) = path.rsplit_once('/')?;
    let candidate = name == "libc.so.6" || (name.starts_with("libc-") && name.ends_with(".so"));
    if !candidate || !dir.contains("lib") {
        return None;
    }
    let mut content = Vec::new();
    bytes.take(MOST_READ).read_to_end(&mut content).ok()?;
    release_version(&content).map(|version| format!("{NOTE_PREFIX}{version}"))
}

/// The version after "release version " in glibc's banner.
fn release_version(bytes: &[u8]) -> Option<GlibcVersion> {
    const MARK: &[u8] = b"release version ";
    let start = bytes.windows(MARK.len()).position(|window| window == MARK)? + MARK.len();
    let rest = &bytes[start..bytes.len().min(start + 16)];
    let end = rest.iter().position(|byte| !byte.is_ascii_digit() && *byte != b'.').unwrap_or(rest.len());
    let text = std::str::from_utf8(&rest[..end]).ok()?.trim_end_matches('.');
    // A development snapshot says 2.36.9000: its release is 2.36 too.
    let mut parts = text.splitn(3, '.');
    GlibcVersion::parse(&format!("{}.{}", parts.next()?, parts.next()?))
}

/// The C library of the image whose file tree is `tree`: glibc when a `libc.so.6` is where the
/// dynamic loader looks (the library directories and their multiarch `*-linux-gnu*`
/// subdirectories, links followed), musl when its loader `/lib/ld-musl-*.so.1` is there.
pub fn of_tree(tree: &FsTree) -> Libc {
    let mut dirs: Vec<String> = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"].map(String::from).to_vec();
    for top in ["/lib", "/usr/lib"] {
        let Ok(resolved) = fstree::root_path(tree, top) else { continue };
        let names = tree.list(&resolved).unwrap_or_default();
        dirs.extend(names.iter().filter(|name| name.contains("-linux-gnu")).map(|name| format!("{top}/{name}")));
    }
    for dir in &dirs {
        let Ok(path) = fstree::root_path(tree, &format!("{dir}/libc.so.6")) else { continue };
        if let Ok(Some(stat)) = tree.lstat(&path) {
            if matches!(stat.kind, Kind::File(_)) {
                let version = tree.note(&path).and_then(|note| note.strip_prefix(NOTE_PREFIX)).and_then(GlibcVersion::parse);
                return Libc::Glibc(version);
            }
        }
    }
    let loaders = fstree::root_path(tree, "/lib").ok().and_then(|lib| tree.list(&lib).ok()).unwrap_or_default();
    match loaders.iter().any(|name| name.starts_with("ld-musl-") && name.ends_with(".so.1")) {
        true => Libc::Musl,
        false => Libc::Static,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::fstree::{BaseEntry, FileData, Stat};

    /// A tree from `path kind` lines: `d` a directory, `f` a file, `l target` a link, and
    /// `f <banner>` a file whose bytes are that text.
    fn check(listing: &str, expected: expect_test::Expect) {
        let mut entries = Vec::new();
        for line in listing.lines().map(str::trim).filter(|line| !line.is_empty()) {
            let mut parts = line.splitn(3, ' ');
            let (path, kind, rest) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
            let kind = match kind {
                "d" => Kind::Dir,
                "f" => Kind::File(FileData::Base),
                "l" => Kind::Symlink(rest.to_string()),
                other => panic!("unknown kind {other}"),
            };
            let is_file = matches!(kind, Kind::File(_));
            entries.push(BaseEntry::Put(path.to_string(), Stat { kind, mode: 0o755, uid: 0, gid: 0, inode: 0 }));
            if is_file {
                if let Some(note) = read_glibc_release(path, &mut rest.as_bytes()) {
                    entries.push(BaseEntry::Note(path.to_string(), note));
                }
            }
        }
        let mut tree = FsTree::new();
        tree.apply_base_layer(&entries);
        expected.assert_eq(&of_tree(&tree).to_string());
    }

    const BOOKWORM: &str = "GNU C Library (Debian GLIBC 2.36-9+deb12u4) stable release version 2.36.";

    #[test]
    fn the_c_library_of_a_base() {
        // Debian 12: /lib links to usr/lib, libc.so.6 is the library itself.
        check(
            &format!(
                "/usr d\n/usr/lib d\n/lib l usr/lib\n/usr/lib/x86_64-linux-gnu d\n/usr/lib/x86_64-linux-gnu/libc.so.6 f \0\x7fELF{BOOKWORM}\0"
            ),
            expect_test::expect!["glibc 2.36"],
        );
        // Debian 11 and Ubuntu 20.04: libc.so.6 links to libc-2.31.so.
        check(
            "/lib d\n/lib/aarch64-linux-gnu d\n/lib/aarch64-linux-gnu/libc-2.31.so f GNU C Library (Ubuntu GLIBC 2.31-0ubuntu9) stable release version 2.31.\n/lib/aarch64-linux-gnu/libc.so.6 l libc-2.31.so",
            expect_test::expect!["glibc 2.31"],
        );
        // Red Hat's layout, and a development snapshot.
        check(
            "/usr d\n/usr/lib64 d\n/lib64 l usr/lib64\n/usr/lib64/libc.so.6 f GNU C Library (GNU libc) development release version 2.39.9000.",
            expect_test::expect!["glibc 2.39"],
        );
        check("/lib d\n/lib/libc.so.6 f stripped of its banner", expect_test::expect!["glibc of an unknown version"]);
        check("/lib d\n/lib/ld-musl-aarch64.so.1 f\n/etc d", expect_test::expect!["musl"]);
        // scratch, distroless/static, a libc.so.6 outside the loader's directories.
        check("", expect_test::expect!["no C library"]);
        check("/opt d\n/opt/libc.so.6 f release version 2.40.", expect_test::expect!["no C library"]);
    }

    #[test]
    fn a_later_layer_replaces_what_was_noted() {
        let stat = |kind| Stat { kind, mode: 0o755, uid: 0, gid: 0, inode: 0 };
        let mut tree = FsTree::new();
        tree.apply_base_layer(&[
            BaseEntry::Put("/lib".into(), stat(Kind::Dir)),
            BaseEntry::Put("/lib/libc.so.6".into(), stat(Kind::File(FileData::Base))),
            BaseEntry::Note("/lib/libc.so.6".into(), "glibc 2.28".into()),
        ]);
        assert_eq!(of_tree(&tree), Libc::Glibc(GlibcVersion::parse("2.28")));
        tree.apply_base_layer(&[BaseEntry::Put("/lib/libc.so.6".into(), stat(Kind::File(FileData::Base)))]);
        assert_eq!(of_tree(&tree), Libc::Glibc(None));
        tree.apply_base_layer(&[BaseEntry::Remove("/lib/libc.so.6".into())]);
        assert_eq!(of_tree(&tree), Libc::Static);
    }

    #[test]
    fn versions_parse_as_glibc_writes_them() {
        assert_eq!(GlibcVersion::parse("2.17"), Some(GlibcVersion { major: 2, minor: 17 }));
        assert!(GlibcVersion::parse("2.9") < GlibcVersion::parse("2.17"), "compared as numbers");
        for bad in ["2", "2.", ".36", "2.36.1", "two.36", "2.-1", "+2.3"] {
            assert_eq!(GlibcVersion::parse(bad), None, "{bad}");
        }
    }
}
