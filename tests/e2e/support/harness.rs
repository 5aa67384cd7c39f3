//! Real components for the tests: scratch git copies of the workspace, a distribution registry
//! on a free loopback port (optionally with htpasswd Basic auth), and skopeo.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Fails with what to install when a tool the tests need is missing.
pub fn require_tool(name: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().is_ok_and(|out| out.status.success());
    assert!(found, "`{name}` is not installed: run `bash tests/ci.sh`, which installs what the tests need");
}

pub fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A copy of this workspace's tracked files in a temporary directory, committed to a new git
/// repository, with its own Docker configuration directory.
pub struct Scratch {
    dir: TempDir,
    docker_config: TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let scratch = Scratch::uncommitted();
        scratch.git(&["init", "-q", "-b", "main"]);
        scratch.commit("initial");
        scratch
    }

    /// A copy of the workspace under `tests/e2e/fixtures/<name>/` (its tracked files), committed
    /// to a new git repository: a monorepo of another shape than this one.
    pub fn fixture(name: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let fixture = format!("tests/e2e/fixtures/{name}/");
        let listing = run(Command::new("git").current_dir(repo_root()).args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            &fixture,
        ]));
        assert!(listing.status.success(), "git ls-files failed: {}", stderr(&listing));
        for path in stdout(&listing).split('\0').filter(|p| !p.is_empty()) {
            let dest = dir.path().join(path.strip_prefix(&fixture).unwrap());
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(repo_root().join(path), &dest).unwrap();
        }
        let scratch = Scratch { dir, docker_config: tempfile::tempdir().unwrap() };
        scratch.git(&["init", "-q", "-b", "main"]);
        scratch.commit("initial");
        scratch
    }

    /// An empty directory, for commands that need no workspace, such as `push`.
    pub fn empty() -> Scratch {
        Scratch { dir: tempfile::tempdir().unwrap(), docker_config: tempfile::tempdir().unwrap() }
    }

    /// The files without any git repository.
    pub fn uncommitted() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let listing =
            run(Command::new("git").current_dir(repo_root()).args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"]));
        assert!(listing.status.success(), "git ls-files failed: {}", stderr(&listing));
        for path in stdout(&listing).split('\0').filter(|p| !p.is_empty()) {
            let source = repo_root().join(path);
            if !source.is_file() {
                continue;
            }
            let dest = dir.path().join(path);
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(&source, &dest).unwrap();
        }
        Scratch { dir, docker_config: tempfile::tempdir().unwrap() }
    }

    /// A clone of `other`'s repository at another path: the same commit, no remote.
    pub fn clone_of(other: &Scratch) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let output = run(Command::new("git").arg("clone").arg("-q").arg(other.path()).arg(dir.path()));
        assert!(output.status.success(), "git clone failed: {}", stderr(&output));
        let scratch = Scratch { dir, docker_config: tempfile::tempdir().unwrap() };
        scratch.git(&["remote", "remove", "origin"]);
        scratch
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let output = run(Command::new("git")
            .current_dir(self.path())
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
            .args(args));
        assert!(output.status.success(), "git {args:?} failed: {}", stderr(&output));
        stdout(&output).trim().to_string()
    }

    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn write(&self, path: &str, contents: &str) {
        let path = self.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// Rewrites the file at `path` with `change` applied to its text.
    pub fn edit(&self, path: &str, change: impl FnOnce(&str) -> String) {
        let text = fs::read_to_string(self.path().join(path)).unwrap();
        self.write(path, &change(&text));
    }

    /// Stores Basic credentials for `host` the way `docker login` does.
    pub fn login(&self, host: &str, user: &str, password: &str) {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.write_docker_config(&serde_json::json!({"auths": {host: {"auth": auth}}}));
    }

    /// The directory the xtask and docker read as `DOCKER_CONFIG`.
    pub fn docker_config(&self) -> &Path {
        self.docker_config.path()
    }

    pub fn write_docker_config(&self, config: &serde_json::Value) {
        fs::write(self.docker_config.path().join("config.json"), config.to_string()).unwrap();
    }

    /// Runs `cargo xtask ARGS` in the scratch workspace.
    pub fn xtask(&self, args: &[&str]) -> Output {
        self.xtask_with_env(args, &[])
    }

    pub fn xtask_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run(self.command(args).envs(env.iter().copied()))
    }

    /// The command `xtask` runs, to run otherwise (within a time limit, say).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .current_dir(self.path())
            .args(args)
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("XTASK_REPOSITORY")
            .env_remove("XTASK_PLATFORMS")
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null());
        command
    }

    /// Runs the xtask and fails the test unless it succeeds; returns standard output.
    pub fn xtask_ok(&self, args: &[&str]) -> String {
        let output = self.xtask(args);
        assert!(output.status.success(), "cargo xtask {args:?} failed:\n{}\n{}", stdout(&output), stderr(&output));
        stdout(&output)
    }
}

/// Runs `command`, killed after `seconds`: `None` when it had to be (it hung).
pub fn run_within(command: &mut Command, seconds: u64) -> Option<Output> {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("cannot start the command");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

/// The CNCF distribution registry, serving from a temporary directory on a free loopback port.
pub struct Registry {
    child: Child,
    dir: TempDir,
    pub host: String,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that demands Basic auth for `user` and `password`.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    /// A registry serving TLS with a certificate for 127.0.0.1 signed by a CA made for it;
    /// returns the CA certificate's path too.
    pub fn start_tls() -> (Registry, PathBuf) {
        require_tool("openssl");
        let certs = tempfile::tempdir().unwrap().keep();
        let sh = |script: &str| {
            let output = run(Command::new("sh").arg("-c").arg(script).current_dir(&certs));
            assert!(output.status.success(), "{script}: {}", stderr(&output));
        };
        sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null");
        sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null");
        fs::write(certs.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
        sh("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null");
        let tls =
            format!("  tls:\n    certificate: {}\n    key: {}\n", certs.join("server.pem").display(), certs.join("server.key").display());
        (Registry::start_configured(None, &tls), certs.join("ca.pem"))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Registry {
        Registry::start_configured(auth, "")
    }

    /// A registry that delegates authentication to a token server (`auth: token`).
    pub fn start_with_token_auth(auth_section: &str) -> Registry {
        Registry::start_configured_full(None, "", auth_section)
    }

    /// `http_extra` is appended to the `http:` section of the configuration.
    fn start_configured(auth: Option<(&str, &str)>, http_extra: &str) -> Registry {
        Registry::start_configured_full(auth, http_extra, "")
    }

    /// `auth_section` is appended to the configuration as is.
    fn start_configured_full(auth: Option<(&str, &str)>, http_extra: &str, auth_section: &str) -> Registry {
        require_tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            require_tool("htpasswd");
            let output = run(Command::new("htpasswd").args(["-Bbn", user, password]));
            assert!(output.status.success(), "htpasswd failed: {}", stderr(&output));
            fs::write(dir.path().join("htpasswd"), &output.stdout).unwrap();
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", dir.path().join("htpasswd").display()));
        }
        config.push_str(auth_section);
        fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start docker-registry");
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&host).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start:\n{}",
                fs::read_to_string(dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, dir, host }
    }

    /// The access log: one line per request, `"METHOD PATH HTTP/1.1" STATUS ...`.
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("log"))
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once(" \"").map(|(_, request)| request.to_string()))
            .filter(|request| request.starts_with(|c: char| c.is_ascii_uppercase()))
            .collect()
    }
}

/// moto's server: the ECR control plane (CreateRepository, GetAuthorizationToken, ...) on a
/// loopback port, for the AWS SDK through AWS_ENDPOINT_URL.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        require_tool("moto_server");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, url: format!("http://127.0.0.1:{port}") }
    }

    /// The environment that points the AWS SDK at this server with test credentials, and keeps
    /// it off the network (no instance metadata lookups).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ]
    }
}

/// Calls an ECR action of the moto server at `moto_url` (moto does not check signatures, and
/// reads the region from the credential scope); returns whether it succeeded, and its answer.
pub fn moto_call(moto_url: &str, action: &str, body: &serde_json::Value) -> (bool, serde_json::Value) {
    use std::io::{Read, Write};
    let host = moto_url.trim_start_matches("http://");
    let body = body.to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: AmazonEC2ContainerRegistry_V20150921.{action}\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(host).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let answer = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    (response.starts_with("HTTP/1.1 200"), serde_json::from_str(answer).unwrap_or(serde_json::Value::Null))
}

/// Registers an image with moto's ECR by `PutImage`, as ECR's registry API does for every
/// manifest pushed to it (moto has no registry of its own). Without a tag: the xtask pushes
/// manifests by digest.
pub fn moto_put_image(moto_url: &str, repository: &str, digest: &str, manifest: &[u8]) {
    let text = String::from_utf8(manifest.to_vec()).unwrap();
    let media_type = serde_json::from_str::<serde_json::Value>(&text).unwrap()["mediaType"].as_str().unwrap_or_default().to_string();
    let body = serde_json::json!({
        "repositoryName": repository,
        "imageManifest": text,
        "imageManifestMediaType": media_type,
        "imageDigest": digest,
    });
    let (ok, answer) = moto_call(moto_url, "PutImage", &body);
    assert!(ok, "moto refused PutImage of {digest}: {answer}");
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry's storage, read straight from its filesystem driver's files, so that checks do
/// not go through (or wait for) HTTP.
#[derive(Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    fn repository(&self, repository: &str) -> PathBuf {
        self.root.join("repositories").join(repository)
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let hex = digest.strip_prefix("sha256:")?;
        fs::read(self.root.join("blobs/sha256").join(&hex[..2]).join(hex).join("data")).ok()
    }

    fn linked(&self, repository: &str, kind: &str, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        self.repository(repository).join(kind).join("sha256").join(hex).join("link").exists() && self.blob(digest).is_some()
    }

    /// Replaces a blob's bytes behind the registry's back (a tampered store).
    pub fn replace_blob(&self, digest: &str, bytes: &[u8]) {
        let hex = digest.trim_start_matches("sha256:");
        fs::write(self.root.join("blobs/sha256").join(&hex[..2]).join(hex).join("data"), bytes).unwrap();
    }

    /// Deletes a blob's bytes behind the registry's back.
    pub fn remove_blob(&self, digest: &str) {
        let hex = digest.trim_start_matches("sha256:");
        fs::remove_file(self.root.join("blobs/sha256").join(&hex[..2]).join(hex).join("data")).unwrap();
    }

    /// Every tag of `repository` with the digest it names.
    pub fn tags(&self, repository: &str) -> Vec<(String, String)> {
        let Ok(entries) = fs::read_dir(self.repository(repository).join("_manifests/tags")) else { return Vec::new() };
        let mut tags: Vec<(String, String)> = entries
            .flatten()
            .filter_map(|entry| {
                let link = fs::read_to_string(entry.path().join("current/link")).ok()?;
                // distribution rewrites a tag's link in place: an empty one is being written, and
                // names nothing yet (a client reading it then finds no tag).
                let link = link.trim().to_string();
                (!link.is_empty()).then(|| (entry.file_name().to_string_lossy().into_owned(), link))
            })
            .collect();
        tags.sort();
        tags
    }

    /// Every manifest (image or index) written to `repository`, tagged or not, with its bytes.
    pub fn manifests(&self, repository: &str) -> Vec<(String, Vec<u8>)> {
        let Ok(entries) = fs::read_dir(self.repository(repository).join("_manifests/revisions/sha256")) else { return Vec::new() };
        let mut manifests: Vec<(String, Vec<u8>)> = entries
            .flatten()
            .filter_map(|entry| {
                let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
                Some((digest.clone(), self.blob(&digest)?))
            })
            .collect();
        manifests.sort();
        manifests
    }

    /// The digests of every blob stored, in any repository.
    pub fn blobs(&self) -> std::collections::BTreeSet<String> {
        let mut digests = std::collections::BTreeSet::new();
        for prefix in fs::read_dir(self.root.join("blobs/sha256")).into_iter().flatten().flatten() {
            for blob in fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
                if blob.path().join("data").exists() {
                    digests.insert(format!("sha256:{}", blob.file_name().to_string_lossy()));
                }
            }
        }
        digests
    }

    /// What is wrong with the tags of `repository`: a tag whose index, manifests, config or
    /// layers are not all in the repository.
    pub fn dangling_tags(&self, repository: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for (tag, digest) in self.tags(repository) {
            let mut missing = Vec::new();
            let Some(root) = self.blob(&digest) else {
                problems.push(format!("{tag} names {digest}, which is not stored"));
                continue;
            };
            let root: serde_json::Value = serde_json::from_slice(&root).unwrap();
            let manifests: Vec<String> = match root["manifests"].as_array() {
                Some(children) => children.iter().map(|child| child["digest"].as_str().unwrap().to_string()).collect(),
                None => vec![digest.clone()],
            };
            for manifest_digest in manifests {
                if !self.linked(repository, "_manifests/revisions", &manifest_digest) {
                    missing.push(format!("manifest {manifest_digest}"));
                    continue;
                }
                let manifest: serde_json::Value = serde_json::from_slice(&self.blob(&manifest_digest).unwrap()).unwrap();
                let blobs = std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().into_iter().flatten());
                for blob in blobs {
                    let blob = blob["digest"].as_str().unwrap();
                    if !self.linked(repository, "_layers", blob) {
                        missing.push(format!("blob {blob}"));
                    }
                }
            }
            if !missing.is_empty() {
                problems.push(format!("{tag} names {digest}, whose {} are missing", missing.join(", ")));
            }
        }
        problems
    }
}

impl Registry {
    pub fn storage(&self) -> Storage {
        Storage { root: self.dir.path().join("data/docker/registry/v2") }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs skopeo with TLS verification off (the test registries speak plain HTTP on loopback).
pub fn skopeo(args: &[&str]) -> Output {
    require_tool("skopeo");
    run(Command::new("skopeo").args(args))
}

pub fn skopeo_raw(image: &str) -> serde_json::Value {
    let output = skopeo(&["inspect", "--tls-verify=false", "--raw", image]);
    assert!(output.status.success(), "skopeo inspect {image} failed: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Writes an OCI image layout holding one linux/amd64 image whose layers are `layer_sizes` bytes
/// of pseudo-random (incompressible) data derived from `seed`, and returns the layout's path.
pub fn make_layout(dir: &Path, layer_sizes: &[usize], seed: u64) -> PathBuf {
    use sha2::{Digest as _, Sha256};
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let write_blob = |bytes: &[u8]| {
        let digest = format!("{:x}", Sha256::digest(bytes));
        fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut layers = Vec::new();
    for &size in layer_sizes {
        let mut bytes = Vec::with_capacity(size + 8);
        while bytes.len() < size {
            // xorshift64*: fast, and random enough that compression gains nothing.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        bytes.truncate(size);
        layers.push(write_blob(&bytes));
    }
    let diff_ids: Vec<&String> = layers.iter().map(|(digest, _)| digest).collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (config_digest, config_size) = write_blob(config.to_string().as_bytes());
    let layer_descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|(digest, size)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layer_descriptors,
    });
    let (manifest_digest, manifest_size) = write_blob(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": "test"}}],
    });
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir.to_path_buf()
}

/// Writes an OCI layout holding a base image index with one image per `platforms` entry
/// (`amd64`, `arm64`), each with one gzip layer holding `/etc/base-release`, and pushes it to
/// `reference` with the xtask.
pub fn push_base_image(scratch: &Scratch, reference: &str, platforms: &[&str]) {
    push_base_image_with(scratch, reference, platforms, &|arch| vec![("etc/base-release".to_string(), format!("base for linux/{arch}\n"))]);
}

/// `push_base_image` with the layer's files given per architecture (a path ending in `/` is a
/// directory).
pub fn push_base_image_with(scratch: &Scratch, reference: &str, platforms: &[&str], files: &dyn Fn(&str) -> Vec<(String, String)>) {
    use sha2::{Digest as _, Sha256};
    let dir = scratch.path().join(format!("base-layout-{}", platforms.join("-")));
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let write_blob = |bytes: &[u8]| {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        serde_json::json!({"digest": digest, "size": bytes.len()})
    };
    let mut entries = Vec::new();
    for arch in platforms {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, content) in files(arch) {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(if path.ends_with('/') { 0o755 } else { 0o644 });
            header.set_entry_type(if path.ends_with('/') { tar::EntryType::Directory } else { tar::EntryType::Regular });
            header.set_mtime(0);
            tar.append_data(&mut header, &path, content.as_bytes()).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let diff_id = format!("sha256:{:x}", Sha256::digest(&tar));
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gzip, &tar).unwrap();
        let mut layer = write_blob(&gzip.finish().unwrap());
        layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/bin", "BASE=yes"], "Cmd": ["/bin/sh"], "WorkingDir": "/srv"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "base layer"}],
        });
        let mut config_descriptor = write_blob(config.to_string().as_bytes());
        config_descriptor["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_descriptor, "layers": [layer],
        });
        let mut entry = write_blob(manifest.to_string().as_bytes());
        entry["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        entry["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        entries.push(entry);
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let mut root = write_blob(index.to_string().as_bytes());
    root["mediaType"] = "application/vnd.oci.image.index.v1+json".into();
    root["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "base"});
    fs::write(dir.join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": [root]}).to_string()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    scratch.xtask_ok(&["push", dir.to_str().unwrap(), reference]);
}
