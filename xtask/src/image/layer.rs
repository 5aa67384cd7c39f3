//! Reproducible layer writing: a gzip-compressed tar of the entries a step made (in the order
//! `fstree` gives them, parent directories included), every modification time the same, no user
//! or group names, gzip at a fixed level. Same entries in, same bytes out. Files are streamed,
//! never held whole.

use std::fs::File;
use std::io::{self, Read, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest as _, Sha256};

use crate::image::fstree::{FileData, LayerEntry, LayerKind};
use crate::image::oci::Digest;

/// The gzip level: speed matters more than a few percent of size for binaries that are
/// re-compressed on every build, and a fixed level keeps the output reproducible.
const GZIP_LEVEL: u32 = 1;

/// Writes the entries of a layer exactly as given (`fstree::FsTree::layer` orders them and
/// includes the directories above what a step touched), every time `mtime`; returns the diff
/// ID. A file's bytes are streamed from the build context or written from the Dockerfile's own.
pub fn write_entries(entries: &[LayerEntry], mtime: u64, out: impl Write) -> io::Result<Digest> {
    let mut builder = layer_builder(out);
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(mtime);
        header.set_mode(entry.mode);
        header.set_uid(u64::from(entry.uid));
        header.set_gid(u64::from(entry.gid));
        header.set_size(0);
        match &entry.kind {
            LayerKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                builder.append_data(&mut header, &entry.path, io::empty())?;
            }
            LayerKind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                builder.append_link(&mut header, &entry.path, target)?;
            }
            LayerKind::Hardlink(target) => {
                header.set_entry_type(tar::EntryType::Link);
                builder.append_link(&mut header, &entry.path, target)?;
            }
            LayerKind::Fifo => {
                header.set_entry_type(tar::EntryType::Fifo);
                builder.append_data(&mut header, &entry.path, io::empty())?;
            }
            LayerKind::File(FileData::Inline(bytes)) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, &entry.path, &bytes[..])?;
            }
            LayerKind::File(FileData::Context(path)) => {
                let mut source =
                    File::open(path).map_err(|err| io::Error::new(err.kind(), format!("cannot read {}: {err}", path.display())))?;
                let size = source.metadata()?.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                builder.append_data(&mut header, &entry.path, ExactSize { inner: (&mut source).take(size), left: size, file: path })?;
                if source.read(&mut [0u8])? != 0 {
                    return Err(changed_while_read(path));
                }
            }
            LayerKind::File(FileData::Base) => {
                return Err(io::Error::other(format!("{} belongs to the base image and is not written again", entry.path)));
            }
        }
    }
    finish_layer(builder)
}

/// Reads exactly the size a tar header announced, and fails when the file ends sooner (it
/// shrank while it was archived) instead of letting a short entry corrupt the tar.
struct ExactSize<'a, R> {
    inner: R,
    left: u64,
    file: &'a std::path::Path,
}

impl<R: Read> Read for ExactSize<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if read == 0 && self.left > 0 && !buf.is_empty() {
            return Err(changed_while_read(self.file));
        }
        self.left -= read as u64;
        Ok(read)
    }
}

fn changed_while_read(file: &std::path::Path) -> io::Error {
    io::Error::other(format!(
        "{} changed size while it was archived: make sure nothing writes to the build context during a build",
        file.display()
    ))
}

/// Rewrites a layer tar that an engine produced, reproducibly: the same entries in the same order
/// with the same contents, owners, modes, links and extended attributes, compressed with gzip at
/// the fixed level, and with every modification time set to `mtime` when one is given. A file a
/// RUN step writes carries the time of the build (or of an earlier build, when the engine's
/// cache served the step), a copied file the time of the checkout; none of those may reach the
/// image. Returns the diff ID of the rewritten tar. The input is read once, as a stream.
pub fn normalise_layer(input: impl Read, mtime: Option<u64>, out: impl Write) -> io::Result<Digest> {
    let mut builder = layer_builder(out);
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let link = entry.link_name()?.map(|link| link.into_owned());
        let mut attributes: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(extensions) = entry.pax_extensions()? {
            for extension in extensions {
                let extension = extension?;
                let key = extension.key().map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
                if key.starts_with("SCHILY.xattr.") {
                    attributes.push((key.to_string(), extension.value_bytes().to_vec()));
                }
            }
        }
        let mut header = entry.header().clone();
        if let Some(mtime) = mtime {
            header.set_mtime(mtime);
        }
        if !attributes.is_empty() {
            builder.append_pax_extensions(attributes.iter().map(|(key, value)| (key.as_str(), value.as_slice())))?;
        }
        match (kind, link) {
            (tar::EntryType::Symlink | tar::EntryType::Link, Some(link)) => builder.append_link(&mut header, &path, &link)?,
            _ => builder.append_data(&mut header, &path, &mut entry)?,
        }
    }
    finish_layer(builder)
}

/// Compresses a layer tar with gzip at the fixed level, its bytes unchanged: for layers whose
/// diff ID is already recorded (a `docker save` archive's).
pub fn compress(mut input: impl Read, out: impl Write) -> io::Result<()> {
    let mut gzip = GzEncoder::new(out, Compression::new(GZIP_LEVEL));
    io::copy(&mut input, &mut gzip)?;
    gzip.finish()?.flush()
}

/// A tar written through a hash (for the diff ID) into gzip at the fixed level.
type LayerBuilder<W> = tar::Builder<Hashing<GzEncoder<W>>>;

fn layer_builder<W: Write>(out: W) -> LayerBuilder<W> {
    tar::Builder::new(Hashing::new(GzEncoder::new(out, Compression::new(GZIP_LEVEL))))
}

/// Ends the tar and the gzip stream; returns the diff ID.
fn finish_layer<W: Write>(builder: LayerBuilder<W>) -> io::Result<Digest> {
    let hashing = builder.into_inner()?;
    let diff_id = hashing.digest();
    hashing.inner.finish()?.flush()?;
    Ok(diff_id)
}

/// A stream that hashes what passes through it, read or written.
pub struct Hashing<T> {
    inner: T,
    hasher: Sha256,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Hashing<T> {
        Hashing { inner, hasher: Sha256::new() }
    }

    /// The digest of everything read or written so far.
    pub fn digest(&self) -> Digest {
        Digest::from_sha256(self.hasher.clone().finalize().into())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(layer: &[u8]) -> String {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
        let mut lines = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            lines.push(format!(
                "{} {:o} {}:{} mtime={} size={} user={:?}",
                entry.path().unwrap().display(),
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap(),
                header.mtime().unwrap(),
                header.size().unwrap(),
                header.username().unwrap().unwrap_or(""),
            ));
        }
        lines.join("\n")
    }

    #[test]
    fn layers_hold_the_entries_given_and_are_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api"), b"binary").unwrap();
        let entry =
            |path: &str, kind: LayerKind, mode: u32, owner: u32| LayerEntry { path: path.into(), kind, mode, uid: owner, gid: owner };
        let entries = vec![
            entry("etc/", LayerKind::Dir, 0o755, 0),
            entry("etc/api.conf", LayerKind::File(FileData::Inline(b"key=value\n".to_vec())), 0o600, 10),
            entry("usr/", LayerKind::Dir, 0o755, 0),
            entry("usr/bin/", LayerKind::Dir, 0o755, 0),
            entry("usr/bin/api", LayerKind::File(FileData::Context(dir.path().join("api"))), 0o4755, 0),
            entry("usr/bin/api-link", LayerKind::Hardlink("usr/bin/api".into()), 0o4755, 0),
            entry("usr/bin/run", LayerKind::Symlink("api".into()), 0o777, 0),
            entry("usr/bin/pipe", LayerKind::Fifo, 0o644, 0),
        ];
        let mut first = Vec::new();
        let diff_id = write_entries(&entries, 1_700_000_000, &mut first).unwrap();
        expect_test::expect![[r#"
            etc/ 755 0:0 mtime=1700000000 size=0 user=""
            etc/api.conf 600 10:10 mtime=1700000000 size=10 user=""
            usr/ 755 0:0 mtime=1700000000 size=0 user=""
            usr/bin/ 755 0:0 mtime=1700000000 size=0 user=""
            usr/bin/api 4755 0:0 mtime=1700000000 size=6 user=""
            usr/bin/api-link 4755 0:0 mtime=1700000000 size=0 user=""
            usr/bin/run 777 0:0 mtime=1700000000 size=0 user=""
            usr/bin/pipe 644 0:0 mtime=1700000000 size=0 user="""#]]
        .assert_eq(&listing(&first));

        // Rewriting the sources with new modification times changes nothing.
        std::fs::write(dir.path().join("api"), b"binary").unwrap();
        let mut second = Vec::new();
        assert_eq!(write_entries(&entries, 1_700_000_000, &mut second).unwrap(), diff_id);
        assert_eq!(first, second);

        let mut uncompressed = Vec::new();
        io::copy(&mut flate2::read::GzDecoder::new(&first[..]), &mut uncompressed).unwrap();
        assert_eq!(Digest::of(&uncompressed), diff_id);
    }

    #[test]
    fn engine_layers_keep_their_entries_with_the_given_time() {
        // An engine's layer: a directory and a file written "now", a symlink, a hard link, an
        // extended attribute and a whiteout, in the engine's order.
        let mut tar = tar::Builder::new(Vec::new());
        let entry = |kind: tar::EntryType, mode: u32, mtime: u64, uid: u64| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_mtime(mtime);
            header.set_uid(uid);
            header.set_gid(uid);
            header.set_size(0);
            header
        };
        tar.append_data(&mut entry(tar::EntryType::Directory, 0o755, 2_000_000_000, 0), "var/lib/app/", io::empty()).unwrap();
        let mut file = entry(tar::EntryType::Regular, 0o600, 2_000_000_000, 1000);
        file.set_size(5);
        tar.append_pax_extensions([("SCHILY.xattr.user.origin", b"run".as_slice())]).unwrap();
        tar.append_data(&mut file, "var/lib/app/state", &b"ready"[..]).unwrap();
        tar.append_link(&mut entry(tar::EntryType::Symlink, 0o777, 1_000, 0), "var/lib/app/current", "state").unwrap();
        tar.append_link(&mut entry(tar::EntryType::Link, 0o600, 1_000, 1000), "var/lib/app/hard", "var/lib/app/state").unwrap();
        tar.append_data(&mut entry(tar::EntryType::Regular, 0o644, 1_000, 0), "etc/.wh.motd", io::empty()).unwrap();
        let long = format!("srv/{}/file", "d".repeat(120));
        tar.append_data(&mut entry(tar::EntryType::Regular, 0o644, 1_000, 0), &long, io::empty()).unwrap();
        let original = tar.into_inner().unwrap();

        let mut first = Vec::new();
        let diff_id = normalise_layer(&original[..], Some(1_700_000_000), &mut first).unwrap();
        expect_test::expect![[r#"
            var/lib/app/ 755 0:0 mtime=1700000000 size=0 user=""
            var/lib/app/state 600 1000:1000 mtime=1700000000 size=5 user=""
            var/lib/app/current 777 0:0 mtime=1700000000 size=0 user=""
            var/lib/app/hard 600 1000:1000 mtime=1700000000 size=0 user=""
            etc/.wh.motd 644 0:0 mtime=1700000000 size=0 user=""
            srv/dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd/file 644 0:0 mtime=1700000000 size=0 user="""#]]
        .assert_eq(&listing(&first));

        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&first[..]));
        let mut entries = archive.entries().unwrap();
        let _ = entries.next();
        let mut state = entries.next().unwrap().unwrap();
        let attribute = state.pax_extensions().unwrap().unwrap().next().unwrap().unwrap();
        assert_eq!((attribute.key().unwrap(), attribute.value_bytes()), ("SCHILY.xattr.user.origin", &b"run"[..]));
        let mut contents = String::new();
        state.read_to_string(&mut contents).unwrap();
        assert_eq!(contents, "ready");
        let links: Vec<_> = entries.map(|e| e.unwrap().link_name().unwrap().map(|l| l.display().to_string())).collect();
        assert_eq!(links[..2], [Some("state".to_string()), Some("var/lib/app/state".to_string())]);

        // Without a time, a base image's layer keeps its times and so its diff ID.
        let mut kept = Vec::new();
        let mut uncompressed = Vec::new();
        normalise_layer(&original[..], None, &mut kept).unwrap();
        io::copy(&mut flate2::read::GzDecoder::new(&kept[..]), &mut uncompressed).unwrap();
        assert_eq!(uncompressed, original);

        // The same input gives the same bytes, and the diff ID is that of the rewritten tar.
        let mut second = Vec::new();
        assert_eq!(normalise_layer(&original[..], Some(1_700_000_000), &mut second).unwrap(), diff_id);
        assert_eq!(first, second);
        uncompressed.clear();
        io::copy(&mut flate2::read::GzDecoder::new(&first[..]), &mut uncompressed).unwrap();
        assert_eq!(Digest::of(&uncompressed), diff_id);
    }
}
