//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/`). No network here.
//! Every blob write is verified against its digest, and every blob read for parsing is too, so a
//! corrupt layout fails loudly instead of being pushed.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use hmac::Mac as _;
use sha2::{Digest as _, Sha256};

use crate::image::oci::{self, Descriptor, Digest, ImageIndex};

/// The `oci-layout` file of every layout (and of the archives `docker load` reads).
pub const OCI_LAYOUT_FILE: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// One read-modify-write of an index.json at a time in this process: pushes run side by side
/// (an image's attachments and its signature), and a tag written between another's read and
/// write would be lost. Between processes, the layout's directory is locked (`Layout::locked`).
static INDEX_UPDATES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Beside `index.json`: blobs the layout references but does not hold, and where they are, with
/// a MAC under this machine's layout key. `push` mounts or fetches such a blob with the pusher's
/// credentials, so a list the xtask did not write (a layout from elsewhere) could name any blob
/// those credentials reach: a private layer, say, to be mounted into a public repository.
const FOREIGN_BLOBS_FILE: &str = "xtask-foreign-blobs.json";

/// The foreign-blob list as stored.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ForeignBlobsFile {
    blobs: std::collections::BTreeMap<String, String>,
    /// HMAC-SHA256 of `blobs` (serialized as JSON) under the layout key, base64.
    #[serde(rename = "hmac-sha256")]
    mac: String,
}

/// A layout's foreign-blob list, and whether this machine's xtask wrote it.
enum ForeignBlobs {
    Written(std::collections::BTreeMap<String, String>),
    NotWrittenHere(std::collections::BTreeMap<String, String>),
}

/// A blob whose bytes do not hash to the digest that names it.
#[derive(Debug)]
pub struct DigestMismatch {
    pub expected: Digest,
    pub found: Digest,
}

impl std::fmt::Display for DigestMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "digest mismatch: expected {}, found {}", self.expected, self.found)
    }
}

impl std::error::Error for DigestMismatch {}

impl DigestMismatch {
    /// An error unless `found`, the digest bytes hashed to, is `expected`.
    pub fn check(expected: &Digest, found: Digest) -> Result<(), DigestMismatch> {
        match found == *expected {
            true => Ok(()),
            false => Err(DigestMismatch { expected: expected.clone(), found }),
        }
    }
}

#[derive(Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens the layout at `root`, creating an empty one if the directory holds none.
    pub fn create(root: &Path) -> Result<Layout> {
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).with_context(|| format!("cannot create the image layout {}", root.display()))?;
        let layout = Layout { root: root.to_path_buf() };
        // Asked without following links: a link planted as `oci-layout` pointing elsewhere
        // (dangling, so that `exists` says no) would have the write create its target.
        if fs::symlink_metadata(root.join("oci-layout")).is_err() {
            layout.replace_file("oci-layout", OCI_LAYOUT_FILE.as_bytes())?;
        }
        // Under the lock: a process that found no index.json would otherwise write an empty one
        // over the tag another process creating the same layout had just written.
        layout.locked(|| match fs::symlink_metadata(root.join("index.json")) {
            Ok(_) => Ok(()),
            Err(_) => layout.write_index(&ImageIndex::new(Vec::new(), Default::default())),
        })?;
        Ok(layout)
    }

    pub fn open(root: &Path) -> Result<Layout> {
        if !root.join("oci-layout").is_file() || !root.join("index.json").is_file() {
            bail!(
                "{} is not an OCI image layout (it has no oci-layout and index.json): build one with `cargo xtask build`",
                root.display()
            );
        }
        Ok(Layout { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Stores `bytes` as a blob and describes it.
    pub fn write_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let descriptor = Descriptor::new(media_type, bytes);
        if !self.has_blob(&descriptor.digest) {
            let mut writer = self.blob_writer()?;
            writer.write_all(bytes)?;
            writer.finish(Some(&descriptor.digest))?;
        }
        Ok(descriptor)
    }

    /// A writer that hashes what it is given into a temporary file, which `finish` names by its
    /// digest; so a blob appears under its name only once complete and verified.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let dir = self.root.join("blobs/sha256");
        let temp = dir.join(format!(".partial-{}", unique()));
        let file = new_file(&temp).with_context(|| format!("cannot write in {}", dir.display()))?;
        Ok(BlobWriter { file, temp, dir, hasher: Sha256::new(), size: 0 })
    }

    /// Reads a small blob (a manifest, index or config), checking its size and digest. Only a
    /// regular file is read, and no further than one byte past its descriptor's size: a blob that
    /// is a link to `/dev/zero`, or a FIFO, cannot exhaust memory or block.
    pub fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let path = self.blob_path(&descriptor.digest);
        let missing = || format!("blob {} is missing from {}", descriptor.digest, self.root.display());
        let metadata = fs::symlink_metadata(&path).with_context(missing)?;
        if !metadata.is_file() {
            bail!(
                "blob {} in {} is not a regular file (a link, a FIFO or a device): a layout's blobs are files; rebuild the layout",
                descriptor.digest,
                self.root.display()
            );
        }
        let mut bytes = Vec::new();
        File::open(&path).with_context(missing)?.take(descriptor.size.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != descriptor.size {
            bail!(
                "blob {} in {} has {} bytes where its descriptor says {}",
                descriptor.digest,
                self.root.display(),
                bytes.len(),
                descriptor.size
            );
        }
        DigestMismatch::check(&descriptor.digest, Digest::of(&bytes))
            .with_context(|| format!("blob in {} is corrupt", self.root.display()))?;
        Ok(bytes)
    }

    pub fn index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a valid OCI index", path.display()))
    }

    /// Replaces index.json atomically; callers that read it first hold `INDEX_UPDATES`.
    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        self.replace_file("index.json", &serde_json::to_vec_pretty(index)?)
    }

    /// Writes `name` whole, through a new temporary file renamed over it: a reader sees the old
    /// or the new bytes, and a link planted where the temporary file goes is never followed.
    fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let temp = self.root.join(format!(".{name}.{}", unique()));
        let mut file = new_file(&temp)?;
        file.write_all(bytes)?;
        drop(file);
        fs::rename(&temp, self.root.join(name)).with_context(|| format!("cannot write {}", self.root.join(name).display()))?;
        Ok(())
    }

    /// Runs `update` with the layout to itself: this process's other threads wait on a mutex,
    /// other processes on a lock of the layout's directory (two processes tagging into one layout
    /// would otherwise lose a tag between one's read and the other's write).
    fn locked<T>(&self, update: impl FnOnce() -> Result<T>) -> Result<T> {
        let _one_update_at_a_time = INDEX_UPDATES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let directory = File::open(&self.root).with_context(|| format!("cannot open {}", self.root.display()))?;
        directory.lock().with_context(|| format!("cannot lock {}", self.root.display()))?;
        update()
    }

    /// The entry of `index.json` named `name` (its `org.opencontainers.image.ref.name`), or the
    /// only entry when no name is given.
    pub fn resolve(&self, name: Option<&str>) -> Result<Descriptor> {
        if let Some(found) = self.find(name)? {
            return Ok(found);
        }
        let index = self.index()?;
        let names: Vec<&str> =
            index.manifests.iter().filter_map(|d| d.annotations.get(oci::ANNOTATION_REF_NAME).map(String::as_str)).collect();
        match name {
            None => bail!(
                "{} holds {} images ({}): name one as {}:NAME",
                self.root.display(),
                index.manifests.len(),
                names.join(", "),
                self.root.display()
            ),
            Some(name) => bail!(
                "{} has no image named `{name}`; it has: {}",
                self.root.display(),
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ),
        }
    }

    /// Like `resolve`, but `None` when no entry matches.
    pub fn find(&self, name: Option<&str>) -> Result<Option<Descriptor>> {
        let index = self.index()?;
        let found = match name {
            Some(name) => index.manifests.iter().find(|d| d.annotations.get(oci::ANNOTATION_REF_NAME).map(String::as_str) == Some(name)),
            None if index.manifests.len() == 1 => index.manifests.first(),
            None => None,
        };
        Ok(found.map(|found| {
            let mut descriptor = found.clone();
            descriptor.annotations.remove(oci::ANNOTATION_REF_NAME);
            descriptor
        }))
    }

    /// Points `name` at `descriptor`, replacing what it pointed at. The caller must have stored
    /// everything the descriptor references first.
    pub fn tag(&self, name: &str, descriptor: &Descriptor) -> Result<()> {
        self.locked(|| {
            let mut index = self.index()?;
            index.manifests.retain(|d| d.annotations.get(oci::ANNOTATION_REF_NAME).map(String::as_str) != Some(name));
            let mut entry = descriptor.clone();
            entry.annotations.insert(oci::ANNOTATION_REF_NAME.to_string(), name.to_string());
            index.manifests.push(entry);
            self.write_index(&index)
        })
    }

    /// Removes every name of the image `digest` from the index. Its blobs stay: other images
    /// may share them, and an unnamed blob harms nothing.
    pub fn untag_digest(&self, digest: &Digest) -> Result<()> {
        self.locked(|| {
            let mut index = self.index()?;
            index.manifests.retain(|entry| &entry.digest != digest);
            self.write_index(&index)
        })
    }

    /// Records that `digest` is not stored here but in the repository `source` (`host/path`),
    /// as the layers of a base image are: they are mounted or fetched only when pushed.
    pub fn record_foreign(&self, digest: &Digest, source: &str) -> Result<()> {
        self.locked(|| {
            // Entries this machine did not write are dropped, never signed.
            let mut foreign = match self.foreign_blobs()? {
                ForeignBlobs::Written(blobs) => blobs,
                ForeignBlobs::NotWrittenHere(_) => Default::default(),
            };
            if foreign.get(digest.as_str()).map(String::as_str) != Some(source) {
                foreign.insert(digest.to_string(), source.to_string());
                let mac = base64::engine::general_purpose::STANDARD.encode(foreign_blobs_mac(&foreign)?.finalize().into_bytes());
                self.replace_file(FOREIGN_BLOBS_FILE, &serde_json::to_vec_pretty(&ForeignBlobsFile { blobs: foreign, mac })?)?;
            }
            Ok(())
        })
    }

    /// The repository a blob that is not stored here can be had from, as this machine's xtask
    /// recorded it.
    pub fn foreign_source(&self, digest: &Digest) -> Result<Option<String>> {
        match self.foreign_blobs()? {
            ForeignBlobs::Written(mut blobs) => Ok(blobs.remove(digest.as_str())),
            ForeignBlobs::NotWrittenHere(blobs) if blobs.contains_key(digest.as_str()) => bail!(
                "blob {digest} is not in the image layout {}, and its {FOREIGN_BLOBS_FILE}, which says where the blob lives, was not \
                 written by the xtask on this machine (or by an older one): such a list could name any blob your credentials reach, \
                 so it is not followed. Rebuild the image here, or give a layout that holds all its blobs",
                self.root.display()
            ),
            ForeignBlobs::NotWrittenHere(_) => Ok(None),
        }
    }

    fn foreign_blobs(&self) -> Result<ForeignBlobs> {
        let path = self.root.join(FOREIGN_BLOBS_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(ForeignBlobs::Written(Default::default())),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        let file: ForeignBlobsFile = match serde_json::from_slice(&bytes) {
            Ok(file) => file,
            // The plain map older versions wrote, or anyone's list: read to name it, never followed.
            Err(_) => match serde_json::from_slice(&bytes) {
                Ok(blobs) => return Ok(ForeignBlobs::NotWrittenHere(blobs)),
                Err(_) => bail!("{} is corrupt: rebuild the image", path.display()),
            },
        };
        let mac = base64::engine::general_purpose::STANDARD.decode(&file.mac).unwrap_or_default();
        Ok(match foreign_blobs_mac(&file.blobs)?.verify_slice(&mac) {
            Ok(()) => ForeignBlobs::Written(file.blobs),
            Err(_) => ForeignBlobs::NotWrittenHere(file.blobs),
        })
    }

    /// Copies a blob from another layout, verifying it on the way. Returns whether bytes moved.
    pub fn copy_blob_from(&self, source: &Layout, descriptor: &Descriptor) -> Result<bool> {
        if self.has_blob(&descriptor.digest) {
            return Ok(false);
        }
        let mut input = File::open(source.blob_path(&descriptor.digest))
            .with_context(|| format!("blob {} is missing from {}", descriptor.digest, source.root.display()))?;
        let mut writer = self.blob_writer()?;
        let size = io::copy(&mut input, &mut writer)?;
        if size != descriptor.size {
            bail!("blob {} in {} has {size} bytes where its descriptor says {}", descriptor.digest, source.root.display(), descriptor.size);
        }
        writer.finish(Some(&descriptor.digest))?;
        Ok(true)
    }
}

pub struct BlobWriter {
    file: File,
    temp: PathBuf,
    dir: PathBuf,
    hasher: Sha256,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Names the blob by its digest, after checking it against `expected` when one is known.
    pub fn finish(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        self.file.flush()?;
        let found = Digest::from_sha256(self.hasher.finalize_reset().into());
        if let Some(mismatch) = expected.and_then(|expected| DigestMismatch::check(expected, found.clone()).err()) {
            let _ = fs::remove_file(&self.temp);
            return Err(mismatch.into());
        }
        fs::rename(&self.temp, self.dir.join(found.hex()))?;
        Ok((found, self.size))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful finish the temporary file is gone and this does nothing.
        let _ = fs::remove_file(&self.temp);
    }
}

/// The MAC of a foreign-blob list under this machine's layout key, before finalising.
fn foreign_blobs_mac(blobs: &std::collections::BTreeMap<String, String>) -> Result<hmac::Hmac<Sha256>> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(layout_key()?).expect("HMAC takes a key of any length");
    mac.update(&serde_json::to_vec(blobs)?);
    Ok(mac)
}

/// This machine's layout key, made on first use: 32 random bytes in
/// `$XDG_CACHE_HOME/xtask/layout.key` (else `~/.cache/xtask/`), readable by the user alone. Only
/// what can read it can write a foreign-blob list `push` follows.
fn layout_key() -> Result<&'static [u8]> {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    if let Some(key) = KEY.get() {
        return Ok(key);
    }
    let cache = match (std::env::var_os("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()), std::env::var_os("HOME")) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".cache"),
        _ => bail!("neither XDG_CACHE_HOME nor HOME is set, so there is nowhere to keep the layout key: set HOME"),
    };
    let dir = cache.join("xtask");
    let path = dir.join("layout.key");
    let key = match fs::read(&path) {
        Ok(key) if key.len() == 32 => key,
        Ok(_) => bail!("{} is not a layout key (32 bytes): remove it, and rebuild the images it served", path.display()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let mut key = vec![0; 32];
            File::open("/dev/urandom").and_then(|mut random| random.read_exact(&mut key)).context("cannot read /dev/urandom")?;
            let temp = dir.join(format!(".layout.key.{}", unique()));
            let mut file = {
                use std::os::unix::fs::OpenOptionsExt as _;
                fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)
            }
            .with_context(|| format!("cannot write in {}", dir.display()))?;
            file.write_all(&key)?;
            drop(file);
            // A link, not a rename: of two processes making the key at once, the first one's stays.
            let linked = fs::hard_link(&temp, &path);
            fs::remove_file(&temp)?;
            match linked {
                Ok(()) => key,
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => fs::read(&path)?,
                Err(err) => return Err(err).with_context(|| format!("cannot write {}", path.display())),
            }
        }
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(KEY.get_or_init(|| key))
}

/// Creates `path`, which must not exist: a file or a link planted there makes this fail
/// instead of being written through.
fn new_file(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// A name no other process can guess: std's randomly keyed hasher over a counter and the time.
fn unique() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |time| time.as_nanos()));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_verified_on_write_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let descriptor = layout.write_blob(oci::MEDIA_TYPE_CONFIG, b"{}").unwrap();
        assert_eq!(layout.read_blob(&descriptor).unwrap(), b"{}");

        let mut writer = layout.blob_writer().unwrap();
        writer.write_all(b"abc").unwrap();
        let err = writer.finish(Some(&Digest::of(b"abd"))).unwrap_err();
        assert!(err.downcast_ref::<DigestMismatch>().is_some(), "{err}");
        assert!(!layout.has_blob(&Digest::of(b"abc")));

        fs::write(layout.blob_path(&descriptor.digest), b"[]").unwrap();
        let err = layout.read_blob(&descriptor).unwrap_err();
        assert!(err.downcast_ref::<DigestMismatch>().is_some(), "{err:#}");
    }

    #[test]
    fn tags_replace_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let first = layout.write_blob(oci::MEDIA_TYPE_MANIFEST, b"1").unwrap();
        let second = layout.write_blob(oci::MEDIA_TYPE_MANIFEST, b"2").unwrap();
        layout.tag("app-latest", &first).unwrap();
        assert_eq!(layout.resolve(None).unwrap(), first);
        layout.tag("app-abc", &second).unwrap();
        layout.tag("app-latest", &second).unwrap();
        assert_eq!(layout.resolve(Some("app-latest")).unwrap(), second);
        assert_eq!(layout.index().unwrap().manifests.len(), 2);
        let err = layout.resolve(Some("nope")).unwrap_err().to_string();
        assert!(err.ends_with("has no image named `nope`; it has: app-abc, app-latest"), "{err}");
        let err = layout.resolve(None).unwrap_err().to_string();
        assert!(err.contains("holds 2 images (app-abc, app-latest): name one as"), "{err}");
    }

    #[test]
    fn only_a_foreign_blob_list_this_machine_wrote_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let (base, other) = (Digest::of(b"base layer"), Digest::of(b"another"));
        layout.record_foreign(&base, "registry.example/base").unwrap();
        assert_eq!(layout.foreign_source(&base).unwrap().as_deref(), Some("registry.example/base"));
        assert_eq!(layout.foreign_source(&other).unwrap(), None);

        let path = dir.path().join(FOREIGN_BLOBS_FILE);
        let written = fs::read_to_string(&path).unwrap();
        let edits = [
            written.replace("registry.example/base", "registry.example/private"),
            serde_json::json!({ base.to_string(): "registry.example/base" }).to_string(),
        ];
        for edited in edits {
            fs::write(&path, &edited).unwrap();
            let err = layout.foreign_source(&base).unwrap_err().to_string();
            assert!(err.contains("was not written by the xtask on this machine"), "{edited}: {err}");
            assert_eq!(layout.foreign_source(&other).unwrap(), None);
            // Recording anew signs only the new entry.
            layout.record_foreign(&other, "registry.example/other").unwrap();
            assert_eq!(layout.foreign_source(&other).unwrap().as_deref(), Some("registry.example/other"));
            assert_eq!(layout.foreign_source(&base).unwrap(), None);
            layout.record_foreign(&base, "registry.example/base").unwrap();
        }
    }

    #[test]
    fn a_link_planted_in_a_new_layout_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        let root = dir.path().join("layout");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("oci-layout")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("index.json")).unwrap();
        let layout = Layout::create(&root).unwrap();
        let blob = layout.write_blob(oci::MEDIA_TYPE_MANIFEST, b"1").unwrap();
        // Reading index.json through the dangling link fails; what matters is that nothing is
        // written where the links point.
        let _ = layout.tag("t", &blob);
        assert!(!victim.exists(), "a write went through a planted link");
    }
}
