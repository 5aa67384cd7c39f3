//! Reproducible layer assembly: a gzip-compressed tar of files, with entries sorted by path,
//! parent directories included, a fixed modification time, owner 0:0 unless asked otherwise and
//! no user or group names. Same files in, same bytes out. Files are streamed, never held whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;

/// The gzip level: speed matters more than a few percent of size for binaries that are
/// re-compressed on every build, and a fixed level keeps the output reproducible.
const GZIP_LEVEL: u32 = 1;

#[derive(Debug, Clone)]
pub struct LayerFile {
    /// Absolute path inside the image, for instance `/usr/local/bin/api`.
    pub path: String,
    pub source: PathBuf,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Writes the layer to `out` and returns its diff ID (the digest of the uncompressed tar),
/// which the image config lists.
pub fn write_layer(files: &[LayerFile], mtime: u64, out: impl Write) -> io::Result<Digest> {
    let encoder = GzEncoder::new(out, Compression::new(GZIP_LEVEL));
    let mut builder = tar::Builder::new(HashingWriter { inner: encoder, hasher: Sha256::new() });

    let mut entries: BTreeMap<String, Option<&LayerFile>> = BTreeMap::new();
    for file in files {
        let relative = file.path.trim_start_matches('/').to_string();
        let mut parent = std::path::Path::new(&relative).parent();
        while let Some(dir) = parent.filter(|dir| !dir.as_os_str().is_empty()) {
            entries.entry(format!("{}/", dir.to_string_lossy())).or_insert(None);
            parent = dir.parent();
        }
        entries.insert(relative, Some(file));
    }

    for (path, file) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(mtime);
        match file {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_uid(0);
                header.set_gid(0);
                header.set_size(0);
                builder.append_data(&mut header, &path, io::empty())?;
            }
            Some(file) => {
                let source = File::open(&file.source)
                    .map_err(|err| io::Error::new(err.kind(), format!("cannot read {}: {err}", file.source.display())))?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(file.mode);
                header.set_uid(u64::from(file.uid));
                header.set_gid(u64::from(file.gid));
                header.set_size(source.metadata()?.len());
                builder.append_data(&mut header, &path, source)?;
            }
        }
    }
    let hashing = builder.into_inner()?;
    let diff_id = Digest::from_sha256(hashing.hasher.finalize().into());
    hashing.inner.finish()?.flush()?;
    Ok(diff_id)
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
    fn layers_are_sorted_owned_by_root_and_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api"), b"binary").unwrap();
        std::fs::write(dir.path().join("conf"), b"key=value\n").unwrap();
        let files = vec![
            LayerFile { path: "/usr/local/bin/api".into(), source: dir.path().join("api"), mode: 0o755, uid: 0, gid: 0 },
            LayerFile { path: "/etc/api.conf".into(), source: dir.path().join("conf"), mode: 0o644, uid: 10, gid: 20 },
        ];
        let mut first = Vec::new();
        let diff_id = write_layer(&files, 1_700_000_000, &mut first).unwrap();
        expect_test::expect![[r#"
            etc/ 755 0:0 mtime=1700000000 size=0 user=""
            etc/api.conf 644 10:20 mtime=1700000000 size=10 user=""
            usr/ 755 0:0 mtime=1700000000 size=0 user=""
            usr/local/ 755 0:0 mtime=1700000000 size=0 user=""
            usr/local/bin/ 755 0:0 mtime=1700000000 size=0 user=""
            usr/local/bin/api 755 0:0 mtime=1700000000 size=6 user="""#]]
        .assert_eq(&listing(&first));

        // Rewriting the sources with new modification times changes nothing.
        std::fs::write(dir.path().join("api"), b"binary").unwrap();
        let mut second = Vec::new();
        let mut reversed = files.clone();
        reversed.reverse();
        assert_eq!(write_layer(&reversed, 1_700_000_000, &mut second).unwrap(), diff_id);
        assert_eq!(first, second);

        let mut uncompressed = Vec::new();
        io::copy(&mut flate2::read::GzDecoder::new(&first[..]), &mut uncompressed).unwrap();
        assert_eq!(Digest::of(&uncompressed), diff_id);
    }
}
