//! The one module that speaks HTTP to registries: the OCI distribution protocol (blob HEAD and
//! upload, manifest HEAD and PUT), authentication (anonymous, Basic, Bearer tokens) and retries.
//! Everything else talks to registries through `Registry`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};
use tokio::sync::RwLock;

use crate::image::layout::DigestMismatch;
use crate::image::oci::Digest;

/// Attempts per request for errors that retrying can fix (5xx, 408, 429, resets).
const ATTEMPTS: u32 = 5;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub struct Registry {
    host: String,
    /// Where requests for `host` go: `host` itself, or the address XTASK_REGISTRY_MAP names for
    /// it (a mirror, a tunnel, or a test registry standing in for ECR). Credentials are still
    /// looked up for `host`.
    address: String,
    /// Whether plain HTTP may be used: loopback addresses and the hosts the user lists.
    allow_plain_http: bool,
    /// For an ECR host, the account and region whose `GetAuthorizationToken` gives credentials
    /// when the Docker configuration has none.
    ecr: Option<crate::aws::ecr::EcrHost>,
    ecr_token: tokio::sync::Mutex<Option<crate::aws::ecr::Token>>,
    /// `https://host` or, for a host that may use plain HTTP and does not speak TLS, `http://host`;
    /// decided on first contact, as Docker does for insecure registries.
    base_url: tokio::sync::OnceCell<String>,
    http: reqwest::Client,
    /// The `Authorization` value that last worked, per repository scope.
    authorization: RwLock<HashMap<String, HeaderValue>>,
    /// Held while answering a challenge, so parallel requests that all met a 401 fetch one
    /// token between them.
    authenticating: tokio::sync::Mutex<()>,
}

/// CA certificates trusted for registries besides the system's.
#[derive(Default)]
pub struct TrustedRoots(Vec<reqwest::Certificate>);

impl TrustedRoots {
    pub fn load(pem_file: Option<&std::path::Path>) -> Result<TrustedRoots> {
        let Some(path) = pem_file else { return Ok(TrustedRoots::default()) };
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}: pass a readable PEM file to --ca-file", path.display()))?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("{} holds no valid PEM certificate", path.display()))?;
        if certificates.is_empty() {
            bail!("{} holds no PEM certificate: pass the CA's certificate to --ca-file", path.display());
        }
        Ok(TrustedRoots(certificates))
    }
}

/// A request that can be sent again: its body is rebuilt for every attempt.
struct Request<'a> {
    method: Method,
    /// A path on the registry (`/v2/...`), or an absolute URL such as an upload location.
    url: String,
    repository: &'a str,
    headers: HeaderMap,
    body: Body,
}

enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// `len` bytes of a blob file from `offset`. The registry verifies the digest of what it
    /// receives before it completes the upload (the distribution spec requires it), so hashing
    /// here too would only slow the push; the length is checked here.
    File {
        blob: BlobFile,
        offset: u64,
        len: u64,
    },
}

/// A blob on disk, ready to upload.
#[derive(Clone)]
pub struct BlobFile {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
    /// Called with the number of bytes each time some are sent.
    pub on_progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Uploaded,
    Mounted,
}

/// The chunk size after a registry refused a whole blob as too large.
const FALLBACK_CHUNK_SIZE: u64 = 16 << 20;

/// How one upload attempt failed.
enum Failure {
    /// A new upload session may succeed.
    Retry(anyhow::Error),
    /// The registry limits request sizes.
    TooLarge,
    Fatal(anyhow::Error),
}

impl Failure {
    /// Connection failures may pass with a new session; refusals and local errors do not.
    fn classify(err: anyhow::Error) -> Failure {
        if err.downcast_ref::<ConnectionFailure>().is_some() {
            Failure::Retry(err)
        } else {
            Failure::Fatal(err)
        }
    }
}

/// The network failed (unreachable, reset, cut short); the message says how.
#[derive(Debug)]
struct ConnectionFailure(String);

impl std::fmt::Display for ConnectionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectionFailure {}

fn with_digest(location: &str, digest: &Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// Why a registry said no, parsed from the distribution spec's error body.
struct Refusal {
    status: StatusCode,
    codes: Vec<(String, String)>,
}

impl Refusal {
    /// Reads the error body of a refused request (`{"errors": [{"code", "message"}]}`).
    async fn read(response: reqwest::Response) -> Refusal {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let codes = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| json.get("errors").and_then(|errors| errors.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .map(|error| {
                (
                    error.get("code").and_then(|c| c.as_str()).unwrap_or("").to_string(),
                    error.get("message").and_then(|m| m.as_str()).unwrap_or("").to_string(),
                )
            })
            .collect();
        Refusal { status, codes }
    }

    fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|(c, _)| c == code)
    }

    fn describe(&self) -> String {
        if self.codes.is_empty() {
            return self.status.to_string();
        }
        let codes: Vec<String> = self.codes.iter().map(|(code, message)| format!("{code}: {message}")).collect();
        format!("{} ({})", self.status, codes.join("; "))
    }
}

impl Registry {
    pub fn new(host: &str, roots: &TrustedRoots) -> Result<Registry> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("cargo-xtask-release/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .tls_certs_merge(roots.0.iter().cloned())
            .build()
            .context("cannot set up the HTTP client")?;
        let address =
            std::env::var("XTASK_REGISTRY_MAP").ok().and_then(|map| mapped_address(host, &map)).unwrap_or_else(|| host.to_string());
        Ok(Registry {
            host: host.to_string(),
            allow_plain_http: allows_plain_http(host) || allows_plain_http(&address),
            address,
            ecr: crate::aws::ecr::parse_host(host),
            ecr_token: tokio::sync::Mutex::new(None),
            base_url: tokio::sync::OnceCell::new(),
            http,
            authorization: RwLock::new(HashMap::new()),
            authenticating: tokio::sync::Mutex::new(()),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let url = format!("/v2/{repository}/blobs/{digest}");
        let response = self.execute(self.request(Method::HEAD, url, repository), ATTEMPTS).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused("check blob", repository, response).await),
        }
    }

    /// Puts a blob into `repository`: mounted from `mount_from` when the registry agrees,
    /// else uploaded from `path` with one streamed PUT (or PATCH chunks of `chunk_size` bytes).
    /// A failed attempt starts again in a new upload session, as no registry resumes reliably;
    /// a 413 answer to a whole-blob PUT switches to chunks.
    pub async fn put_blob(&self, repository: &str, blob: &BlobFile, mount_from: Option<&str>, chunk_size: Option<u64>) -> Result<Transfer> {
        let digest = &blob.digest;
        let mut chunk_size = chunk_size;
        let mut last_error = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt, None)).await;
            }
            let mut url = format!("/v2/{repository}/blobs/uploads/");
            if let (0, Some(from)) = (attempt, mount_from) {
                url.push_str(&format!("?mount={digest}&from={from}"));
            }
            let mut start = self.request(Method::POST, url, repository);
            start.headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            let response = self.execute(start, ATTEMPTS).await?;
            match response.status() {
                StatusCode::CREATED if attempt == 0 && mount_from.is_some() => return Ok(Transfer::Mounted),
                // Also the answer to a declined mount: the session it opens takes the upload.
                StatusCode::ACCEPTED => {}
                _ => return Err(self.refused(&format!("start the upload of blob {digest}"), repository, response).await),
            }
            let location = self.location(&response)?;
            let attempt_result = match chunk_size {
                None => self.put_whole(repository, blob, &location).await,
                Some(chunk_size) => self.put_chunks(repository, blob, location, chunk_size).await,
            };
            match attempt_result {
                Ok(()) => return Ok(Transfer::Uploaded),
                Err(Failure::TooLarge) if chunk_size.is_none() => {
                    chunk_size = Some(FALLBACK_CHUNK_SIZE);
                    last_error = Some(anyhow!("413 Payload Too Large for a whole-blob PUT"));
                }
                Err(Failure::TooLarge) => {
                    return Err(anyhow!(
                        "registry {} refused a {}-byte chunk as too large: lower --chunk-size",
                        self.host,
                        chunk_size.unwrap_or(0)
                    ))
                }
                Err(Failure::Retry(err)) => last_error = Some(err),
                Err(Failure::Fatal(err)) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no attempt made")))
            .with_context(|| format!("uploading blob {digest} to {}/{repository} failed {ATTEMPTS} times", self.host))
    }

    async fn put_whole(&self, repository: &str, blob: &BlobFile, location: &str) -> Result<(), Failure> {
        let mut put = self.request(Method::PUT, with_digest(location, &blob.digest), repository);
        put.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        put.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.size));
        put.body = Body::File { blob: blob.clone(), offset: 0, len: blob.size };
        let response = self.execute(put, 1).await.map_err(Failure::classify)?;
        self.expect(response, StatusCode::CREATED, repository, &blob.digest).await
    }

    /// Chunked upload. Registries differ on the answer to PATCH (202 in the spec, 201 on ECR) and
    /// on the Range they report, so the offset is tracked here.
    async fn put_chunks(&self, repository: &str, blob: &BlobFile, mut location: String, chunk_size: u64) -> Result<(), Failure> {
        let mut offset = 0;
        while offset < blob.size {
            let len = chunk_size.min(blob.size - offset);
            let mut patch = self.request(Method::PATCH, location.clone(), repository);
            patch.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            patch.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            patch.headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("{offset}-{}", offset + len - 1)).expect("ascii"));
            patch.body = Body::File { blob: blob.clone(), offset, len };
            let response = self.execute(patch, 1).await.map_err(Failure::classify)?;
            let status = response.status();
            if status != StatusCode::ACCEPTED && status != StatusCode::CREATED {
                return Err(self.classify_refusal(response, repository, &blob.digest).await);
            }
            if let Ok(next) = self.location(&response) {
                location = next;
            }
            offset += len;
        }
        let mut put = self.request(Method::PUT, with_digest(&location, &blob.digest), repository);
        put.headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self.execute(put, 1).await.map_err(Failure::classify)?;
        self.expect(response, StatusCode::CREATED, repository, &blob.digest).await
    }

    async fn expect(&self, response: reqwest::Response, status: StatusCode, repository: &str, digest: &Digest) -> Result<(), Failure> {
        if response.status() == status {
            return Ok(());
        }
        Err(self.classify_refusal(response, repository, digest).await)
    }

    async fn classify_refusal(&self, response: reqwest::Response, repository: &str, digest: &Digest) -> Failure {
        let status = response.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Failure::TooLarge
        } else if is_retryable_status(status) || status == StatusCode::RANGE_NOT_SATISFIABLE || status == StatusCode::NOT_FOUND {
            // 416 and a vanished session (404 BLOB_UPLOAD_UNKNOWN) are cured by a new session.
            Failure::Retry(anyhow!("{status}"))
        } else {
            Failure::Fatal(self.refused(&format!("upload blob {digest}"), repository, response).await)
        }
    }

    /// The digest `reference` (a tag or digest) currently names, or `None` if it names nothing.
    pub async fn manifest_digest(&self, repository: &str, reference: &str) -> Result<Option<Digest>> {
        let url = format!("/v2/{repository}/manifests/{reference}");
        let mut request = self.request(Method::HEAD, url, repository);
        request.headers.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let response = self.execute(request, ATTEMPTS).await?;
        match response.status() {
            StatusCode::OK => {
                let digest = response
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse().ok());
                // A registry that omits the digest forces an upload, which is correct if slower.
                Ok(digest)
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.refused(&format!("look up {reference}"), repository, response).await),
        }
    }

    /// Fetches a manifest or index and its media type. A manifest fetched by digest is verified.
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<(String, Vec<u8>)> {
        self.fetch_manifest(repository, reference, false).await?.context("the registry answered 404 without a body")
    }

    /// Like `get_manifest`, but `None` when the repository has no such tag or digest.
    pub async fn find_manifest(&self, repository: &str, reference: &str) -> Result<Option<(String, Vec<u8>)>> {
        self.fetch_manifest(repository, reference, true).await
    }

    async fn fetch_manifest(&self, repository: &str, reference: &str, missing_is_none: bool) -> Result<Option<(String, Vec<u8>)>> {
        let mut request = self.request(Method::GET, format!("/v2/{repository}/manifests/{reference}"), repository);
        request.headers.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let response = self.execute(request, ATTEMPTS).await?;
        // A repository that does not exist holds no tag either; registries that create
        // repositories on push answer NAME_UNKNOWN until the first push.
        if missing_is_none && response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if response.status() != StatusCode::OK {
            return Err(self.refused(&format!("read manifest {reference}"), repository, response).await);
        }
        let media_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bytes = response.bytes().await.map_err(|err| describe_transport_error(err, &self.host))?.to_vec();
        if let Ok(expected) = reference.parse::<Digest>() {
            let found = Digest::of(&bytes);
            if found != expected {
                return Err(DigestMismatch { expected, found })
                    .with_context(|| format!("registry {} served a corrupt manifest", self.host));
            }
        }
        Ok(Some((media_type, bytes)))
    }

    /// Every tag of the repository (`/tags/list`, following `Link` pages); none when the
    /// repository does not exist yet.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>> {
        let mut tags = Vec::new();
        let mut url = format!("/v2/{repository}/tags/list?n=1000");
        loop {
            let response = self.execute(self.request(Method::GET, url.clone(), repository), ATTEMPTS).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            if response.status() != StatusCode::OK {
                return Err(self.refused("list tags", repository, response).await);
            }
            // `Link: </v2/...?last=x&n=1000>; rel="next"` names the next page.
            let next = response
                .headers()
                .get(header::LINK)
                .and_then(|value| value.to_str().ok())
                .and_then(|link| link.split(';').next())
                .map(|target| target.trim().trim_start_matches('<').trim_end_matches('>').to_string());
            let body = response.bytes().await.map_err(|err| describe_transport_error(err, &self.host))?;
            #[derive(serde::Deserialize)]
            struct TagList {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let page: TagList = serde_json::from_slice(&body)
                .with_context(|| format!("registry {} answered the tag list of {repository} with invalid JSON", self.host))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) if !next.is_empty() => url = next,
                _ => return Ok(tags),
            }
        }
    }

    /// Downloads a blob into `out`, streaming; the caller checks the digest of what arrived.
    pub async fn get_blob(&self, repository: &str, digest: &Digest, out: &mut impl std::io::Write) -> Result<u64> {
        let request = self.request(Method::GET, format!("/v2/{repository}/blobs/{digest}"), repository);
        let mut response = self.execute(request, ATTEMPTS).await?;
        if response.status() != StatusCode::OK {
            return Err(self.refused(&format!("read blob {digest}"), repository, response).await);
        }
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|err| describe_transport_error(err, &self.host))? {
            out.write_all(&chunk)?;
            size += chunk.len() as u64;
        }
        Ok(size)
    }

    /// Asks the registry to mount a blob from another repository; `false` when it declines, in
    /// which case the upload session it opened is abandoned and the caller uploads.
    pub async fn mount_blob(&self, repository: &str, digest: &Digest, from: &str) -> Result<bool> {
        let mut request = self.request(Method::POST, format!("/v2/{repository}/blobs/uploads/?mount={digest}&from={from}"), repository);
        request.headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self.execute(request, ATTEMPTS).await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Ok(location) = self.location(&response) {
                    // Best effort: a registry expires abandoned sessions anyway.
                    let _ = self.execute(self.request(Method::DELETE, location, repository), 1).await;
                }
                Ok(false)
            }
            _ => Err(self.refused(&format!("mount blob {digest} from {from}"), repository, response).await),
        }
    }

    /// Deletes the manifest or index `digest` and, with it, every tag that names it. One that is
    /// already gone counts as deleted.
    pub async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<()> {
        let response =
            self.execute(self.request(Method::DELETE, format!("/v2/{repository}/manifests/{digest}"), repository), ATTEMPTS).await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            StatusCode::NOT_FOUND => {
                let refusal = Refusal::read(response).await;
                match refusal.has_code("MANIFEST_UNKNOWN") {
                    true => Ok(()),
                    false => Err(self.explain(&format!("delete manifest {digest}"), repository, &refusal)),
                }
            }
            StatusCode::METHOD_NOT_ALLOWED => bail!(
                "registry {} does not allow deleting images in {repository}: enable deletes (a distribution registry needs `storage: delete: enabled: true`) or delete them with the registry's own tools",
                self.host
            ),
            _ => Err(self.refused(&format!("delete manifest {digest}"), repository, response).await),
        }
    }

    /// PUTs manifest bytes under `reference` and checks the digest the registry computed.
    pub async fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let expected = Digest::of(bytes);
        let url = format!("/v2/{repository}/manifests/{reference}");
        let mut request = self.request(Method::PUT, url, repository);
        request.headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(media_type)?);
        request.body = Body::Bytes(bytes.to_vec());
        let response = self.execute(request, ATTEMPTS).await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused(&format!("write manifest {reference}"), repository, response).await);
        }
        if let Some(found) = response.headers().get("docker-content-digest").and_then(|value| value.to_str().ok()) {
            let found: Digest = found.parse().map_err(|err| anyhow!("registry {} answered with {err}", self.host))?;
            if found != expected {
                return Err(DigestMismatch { expected, found })
                    .with_context(|| format!("registry {} stored manifest {reference} of {repository} under another digest", self.host));
            }
        }
        Ok(expected)
    }

    fn request<'a>(&self, method: Method, url: String, repository: &'a str) -> Request<'a> {
        Request { method, url, repository, headers: HeaderMap::new(), body: Body::Empty }
    }

    fn location(&self, response: &reqwest::Response) -> Result<String> {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| anyhow!("registry {} opened an upload without a Location header", self.host))?;
        // A relative Location is resolved when the request is sent, against the same base.
        Ok(location.to_string())
    }

    async fn base_url(&self) -> &str {
        self.base_url
            .get_or_init(|| async {
                let https = format!("https://{}", self.address);
                if !self.allow_plain_http {
                    return https;
                }
                // Only a failure to speak TLS at all selects plain HTTP; any HTTP answer over TLS,
                // even an error status, means the registry speaks HTTPS.
                match self.http.get(format!("{https}/v2/")).timeout(Duration::from_secs(5)).send().await {
                    Ok(_) => https,
                    // An untrusted certificate is TLS all the same; the request that follows
                    // reports it.
                    Err(err) if is_certificate_error(&err) => https,
                    Err(_) => format!("http://{}", self.address),
                }
            })
            .await
    }

    /// Sends a request, authenticating on a 401 challenge and retrying what can be retried.
    async fn execute(&self, request: Request<'_>, attempts: u32) -> Result<reqwest::Response> {
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = self.authorization.read().await.get(request.repository).cloned();
            let url = if request.url.starts_with('/') { format!("{}{}", self.base_url().await, request.url) } else { request.url.clone() };
            let mut builder = self.http.request(request.method.clone(), url).headers(request.headers.clone());
            if let Some(authorization) = &authorization {
                builder = builder.header(header::AUTHORIZATION, authorization.clone());
            }
            builder = match &request.body {
                Body::Empty => builder,
                Body::Bytes(bytes) => builder.body(bytes.clone()),
                Body::File { blob, offset, len } => {
                    let mut file =
                        tokio::fs::File::open(&blob.path).await.with_context(|| format!("cannot read blob {}", blob.path.display()))?;
                    file.seek(std::io::SeekFrom::Start(*offset))
                        .await
                        .with_context(|| format!("cannot read blob {}", blob.path.display()))?;
                    let reader = BlobReader { inner: file.take(*len), expected_len: *len, read: 0, on_progress: blob.on_progress.clone() };
                    builder.body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)))
                }
            };
            let result = builder.send().await;
            let retry_after = match result {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    self.authenticate(&response, request.repository, authorization.as_ref()).await?;
                    attempt -= 1;
                    continue;
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    return Err(anyhow!(
                        "registry {} rejected the credentials for {} (401 Unauthorized): check the user and password that `docker login {}` stored in $DOCKER_CONFIG/config.json (default ~/.docker/config.json)",
                        self.host, request.repository, self.host
                    ));
                }
                Ok(response) if is_retryable_status(response.status()) && attempt < attempts => retry_after(&response),
                Ok(response) => return Ok(response),
                Err(err) if is_certificate_error(&err) => return Err(self.unreachable(err)),
                Err(err) if attempt < attempts && !err.is_builder() => {
                    if err.is_connect() && attempt >= 2 {
                        return Err(self.unreachable(err));
                    }
                    None
                }
                Err(err) if err.is_connect() || err.is_timeout() => return Err(self.unreachable(err)),
                Err(err) => return Err(describe_transport_error(err, &self.host)),
            };
            tokio::time::sleep(backoff(attempt, retry_after)).await;
        }
    }

    fn unreachable(&self, err: reqwest::Error) -> anyhow::Error {
        if is_certificate_error(&err) {
            return anyhow!(
                "the TLS certificate of registry {} is not trusted ({}): pass the CA certificate that signed it with --ca-file (or XTASK_CA_FILE), or install it in the system's trust store",
                self.host,
                root_cause(&err)
            );
        }
        anyhow::Error::new(ConnectionFailure(format!(
            "cannot reach registry {} ({}): check that it is running and that the address is right (plain HTTP is used only for loopback hosts and those in XTASK_INSECURE_REGISTRIES)",
            self.host,
            root_cause(&err)
        )))
    }

    /// Answers a 401 challenge: Basic credentials from the Docker configuration, or a Bearer
    /// token from the realm the registry names, fetched with those credentials if any.
    async fn authenticate(&self, response: &reqwest::Response, repository: &str, rejected: Option<&HeaderValue>) -> Result<()> {
        let _one_at_a_time = self.authenticating.lock().await;
        if self.authorization.read().await.get(repository) != rejected {
            // Another request answered the challenge while this one waited.
            return Ok(());
        }
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
        let credential = self.credential(rejected.is_some()).await?;
        let value = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let params = challenge_params(&challenge["bearer".len()..]);
            let realm = params.get("realm").ok_or_else(|| anyhow!("registry {} sent a Bearer challenge without a realm", self.host))?;
            let mut url = reqwest::Url::parse(realm)
                .with_context(|| format!("registry {} sent a Bearer challenge with an invalid realm", self.host))?;
            url.query_pairs_mut().append_pair("scope", &format!("repository:{repository}:pull,push"));
            if let Some(service) = params.get("service") {
                url.query_pairs_mut().append_pair("service", service);
            }
            let mut token_request = self.http.get(url);
            if let Some((user, password)) = &credential {
                token_request = token_request.basic_auth(user, Some(password));
            }
            let token_response = token_request.send().await.map_err(|err| describe_transport_error(err, realm))?;
            if !token_response.status().is_success() {
                bail!("the token service {realm} of registry {} refused a token for {repository} ({}): check the credentials for {} in $DOCKER_CONFIG/config.json", self.host, token_response.status(), self.host);
            }
            let body = token_response.bytes().await.map_err(|err| describe_transport_error(err, realm))?;
            let body: serde_json::Value =
                serde_json::from_slice(&body).with_context(|| format!("the token service {realm} answered with invalid JSON"))?;
            let token = body
                .get("token")
                .or_else(|| body.get("access_token"))
                .and_then(|t| t.as_str())
                .ok_or_else(|| anyhow!("the token service {realm} answered without a token"))?;
            HeaderValue::from_str(&format!("Bearer {token}"))?
        } else {
            let Some((user, password)) = credential else {
                bail!(
                    "registry {} requires authentication for {repository} and no credentials for it were found: run `docker login {}` or add an `auths` entry for {} to $DOCKER_CONFIG/config.json (default ~/.docker/config.json)",
                    self.host, self.host, self.host
                );
            };
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            HeaderValue::from_str(&format!("Basic {encoded}"))?
        };
        let mut value = value;
        value.set_sensitive(true);
        self.authorization.write().await.insert(repository.to_string(), value);
        Ok(())
    }

    /// The user and password for this host: what the Docker configuration holds (a credential
    /// helper the user configured wins), else for an ECR host a token from
    /// `GetAuthorizationToken`, cached until shortly before it expires. `renew` replaces a cached
    /// token the registry has just refused.
    async fn credential(&self, renew: bool) -> Result<Option<(String, String)>> {
        if let Some(found) = self.docker_credential().await? {
            return Ok(Some(found));
        }
        let Some(ecr) = &self.ecr else { return Ok(None) };
        let mut cached = self.ecr_token.lock().await;
        let fresh = cached.as_ref().is_some_and(|token| !renew && std::time::SystemTime::now() < token.refresh_at);
        if !fresh {
            *cached = Some(crate::aws::ecr::authorization_token(ecr).await?);
        }
        Ok(cached.as_ref().map(|token| (token.user.clone(), token.password.clone())))
    }

    async fn docker_credential(&self) -> Result<Option<(String, String)>> {
        let host = self.host.clone();
        let lookup = tokio::task::spawn_blocking(move || docker_credential::get_credential(&host)).await?;
        use docker_credential::{CredentialRetrievalError as E, DockerCredential};
        match lookup {
            Ok(DockerCredential::UsernamePassword(user, password)) => Ok(Some((user, password))),
            Ok(DockerCredential::IdentityToken(token)) => Ok(Some(("<token>".to_string(), token))),
            Err(E::ConfigNotFound | E::ConfigReadError | E::NoCredentialConfigured) => Ok(None),
            Err(E::HelperFailure { helper, .. }) => bail!("the Docker credential helper `{helper}` failed for {}: run it by hand (`echo {} | docker-credential-{helper} get`) to see why", self.host, self.host),
            // The other errors' texts carry no secret, only what went wrong.
            Err(err) => bail!("cannot read the credentials for {} from the Docker configuration: {err}", self.host),
        }
    }

    async fn refused(&self, action: &str, repository: &str, response: reqwest::Response) -> anyhow::Error {
        let refusal = Refusal::read(response).await;
        self.explain(action, repository, &refusal)
    }

    fn explain(&self, action: &str, repository: &str, refusal: &Refusal) -> anyhow::Error {
        let status = refusal.status;
        let host = &self.host;
        let what_to_do = if refusal.has_code("NAME_UNKNOWN") || (status == StatusCode::NOT_FOUND && refusal.codes.is_empty()) {
            format!("the repository {repository} does not exist on {host}: create it (on ECR: `cargo xtask ecr setup`) or fix --repository")
        } else if status == StatusCode::FORBIDDEN || refusal.has_code("DENIED") {
            format!("the credentials for {host} may not push to {repository}: grant push access or use other credentials")
        } else if refusal.has_code("DIGEST_INVALID") {
            "the bytes read from the image layout do not match their digest, so the layout is corrupt: rebuild the image".to_string()
        } else if refusal.has_code("TAG_INVALID") {
            format!("the tag cannot be written, probably because the repository {repository} has immutable tags: exclude the tag from immutability or release a new tag")
        } else if refusal.has_code("MANIFEST_INVALID") || refusal.has_code("MANIFEST_BLOB_UNKNOWN") {
            "the registry rejected the manifest: check that it accepts OCI image indexes and that every blob was uploaded".to_string()
        } else {
            "retry later, or check the registry's logs".to_string()
        };
        anyhow!("registry {host} refused to {action} in {repository}: {}; {what_to_do}", refusal.describe())
    }
}

/// The address XTASK_REGISTRY_MAP (`host=address,...`) gives `host`, if any.
fn mapped_address(host: &str, map: &str) -> Option<String> {
    map.split(',')
        .filter_map(|entry| entry.trim().split_once('='))
        .find(|(from, _)| from.trim() == host)
        .map(|(_, to)| to.trim().to_string())
}

/// Plain HTTP is for loopback registries and the hosts the user lists; everything else is TLS.
fn allows_plain_http(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(name, port)| !name.is_empty() && port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    let loopback = name == "localhost" || name.starts_with("127.") || name == "[::1]";
    let listed = std::env::var("XTASK_INSECURE_REGISTRIES").is_ok_and(|list| list.split(',').any(|entry| entry.trim() == host));
    loopback || listed
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(60)))
}

/// Exponential backoff from 100 ms, capped at 10 s, with jitter so parallel uploads do not
/// retry in lockstep; a registry's Retry-After wins.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait;
    }
    let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    let jitter =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos())) % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

fn challenge_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start_matches(',').trim();
    }
    params
}

fn is_certificate_error(err: &reqwest::Error) -> bool {
    root_cause(err).contains("certificate")
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn describe_transport_error(err: reqwest::Error, host: &str) -> anyhow::Error {
    anyhow::Error::new(ConnectionFailure(format!("the connection to {host} failed: {}", root_cause(&err))))
}

/// Streams (part of) a blob file, reporting progress and failing the stream when the file is
/// shorter than its descriptor says, so that a truncated layout cannot be pushed.
struct BlobReader {
    inner: tokio::io::Take<tokio::fs::File>,
    expected_len: u64,
    read: u64,
    on_progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl AsyncRead for BlobReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = (buf.filled().len() - before) as u64;
                if read == 0 && this.read != this.expected_len {
                    let message = format!("blob file ended after {} of {} bytes", this.read, this.expected_len);
                    return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message)));
                }
                this.read += read;
                if let (Some(on_progress), true) = (&this.on_progress, read > 0) {
                    on_progress(read);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::oci;

    #[test]
    fn bearer_challenge_parameters() {
        let params = challenge_params(r#" realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#);
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull");
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_hosts() {
        assert!(allows_plain_http("127.0.0.1:5000"));
        assert!(allows_plain_http("localhost:5000"));
        assert!(allows_plain_http("[::1]:5000"));
        assert!(!allows_plain_http("registry.example:5000"));
        assert!(!allows_plain_http("123.dkr.ecr.us-east-1.amazonaws.com"));
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        assert!(backoff(1, None) <= Duration::from_millis(200));
        assert!(backoff(10, None) <= Duration::from_secs(10));
        assert_eq!(backoff(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
    }

    #[test]
    fn manifest_media_types_are_accepted() {
        for media_type in [
            oci::MEDIA_TYPE_INDEX,
            oci::MEDIA_TYPE_MANIFEST,
            oci::MEDIA_TYPE_DOCKER_LIST,
            "application/vnd.docker.distribution.manifest.v2+json",
        ] {
            assert!(MANIFEST_ACCEPT.contains(media_type));
        }
    }
}
