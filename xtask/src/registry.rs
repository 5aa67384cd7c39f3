//! The one module that speaks HTTP to registries: the OCI distribution protocol (blob HEAD and
//! upload, manifest HEAD and PUT), authentication (anonymous, Basic, Bearer tokens) and retries.
//! Everything else talks to registries through `Registry`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::RwLock;

use crate::layout::DigestMismatch;
use crate::oci::Digest;

/// Attempts per request for errors that retrying can fix (5xx, 408, 429, resets).
const ATTEMPTS: u32 = 5;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub struct Registry {
    host: String,
    base_url: String,
    http: reqwest::Client,
    /// The `Authorization` value that last worked, per repository scope.
    authorization: RwLock<HashMap<String, HeaderValue>>,
}

/// A request that can be sent again: its body is rebuilt for every attempt.
struct Request<'a> {
    method: Method,
    url: String,
    repository: &'a str,
    headers: HeaderMap,
    body: Body,
}

enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// A blob streamed from disk and verified against its digest on the way.
    File { path: PathBuf, digest: Digest, size: u64, on_progress: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>> },
}

/// Why a registry said no, parsed from the distribution spec's error body.
struct Refusal {
    status: StatusCode,
    codes: Vec<(String, String)>,
}

impl Refusal {
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
    pub fn new(host: &str) -> Result<Registry> {
        let scheme = if is_plain_http(host) { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .user_agent(concat!("cargo-xtask-release/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Registry { host: host.to_string(), base_url: format!("{scheme}://{host}"), http, authorization: RwLock::new(HashMap::new()) })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base_url);
        let response = self.execute(self.request(Method::HEAD, url, repository), ATTEMPTS).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused("check blob", repository, response).await),
        }
    }

    /// Uploads a blob from a file: POST to open an upload session, then one streamed PUT. A
    /// failed attempt starts again in a new session, as no registry resumes reliably.
    pub async fn upload_blob(&self, repository: &str, digest: &Digest, size: u64, path: PathBuf, on_progress: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>>) -> Result<()> {
        let mut last_error = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt, None)).await;
            }
            let url = format!("{}/v2/{repository}/blobs/uploads/", self.base_url);
            let mut start = self.request(Method::POST, url, repository);
            start.headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            let response = self.execute(start, ATTEMPTS).await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(self.refused(&format!("start the upload of blob {digest}"), repository, response).await);
            }
            let location = self.location(&response)?;
            let separator = if location.contains('?') { '&' } else { '?' };
            let mut put = self.request(Method::PUT, format!("{location}{separator}digest={digest}"), repository);
            put.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            put.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            put.body = Body::File { path: path.clone(), digest: digest.clone(), size, on_progress: on_progress.clone() };
            match self.execute(put, 1).await {
                Ok(response) if response.status() == StatusCode::CREATED => return Ok(()),
                Ok(response) if is_retryable_status(response.status()) => last_error = Some(anyhow!("{}", response.status())),
                Ok(response) => return Err(self.refused(&format!("upload blob {digest}"), repository, response).await),
                Err(err) if is_local_failure(&err) => return Err(err),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no attempt made"))).with_context(|| format!("uploading blob {digest} to {}/{repository} failed {ATTEMPTS} times", self.host))
    }

    /// The digest `reference` (a tag or digest) currently names, or `None` if it names nothing.
    pub async fn manifest_digest(&self, repository: &str, reference: &str) -> Result<Option<Digest>> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_url);
        let mut request = self.request(Method::HEAD, url, repository);
        request.headers.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let response = self.execute(request, ATTEMPTS).await?;
        match response.status() {
            StatusCode::OK => {
                let digest = response.headers().get("docker-content-digest").and_then(|value| value.to_str().ok()).and_then(|value| value.parse().ok());
                // A registry that omits the digest forces an upload, which is correct if slower.
                Ok(digest)
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.refused(&format!("look up {reference}"), repository, response).await),
        }
    }

    /// PUTs manifest bytes under `reference` and checks the digest the registry computed.
    pub async fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let expected = Digest::of(bytes);
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_url);
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
                return Err(DigestMismatch { expected, found }).with_context(|| format!("registry {} stored manifest {reference} of {repository} under another digest", self.host));
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
        Ok(if location.starts_with("http://") || location.starts_with("https://") { location.to_string() } else { format!("{}{location}", self.base_url) })
    }

    /// Sends a request, authenticating on a 401 challenge and retrying what can be retried.
    async fn execute(&self, request: Request<'_>, attempts: u32) -> Result<reqwest::Response> {
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = self.authorization.read().await.get(request.repository).cloned();
            let mut builder = self.http.request(request.method.clone(), &request.url).headers(request.headers.clone());
            if let Some(authorization) = authorization {
                builder = builder.header(header::AUTHORIZATION, authorization);
            }
            builder = match &request.body {
                Body::Empty => builder,
                Body::Bytes(bytes) => builder.body(bytes.clone()),
                Body::File { path, digest, size, on_progress } => {
                    let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot read blob {}", path.display()))?;
                    let reader = VerifyingReader { inner: file, hasher: Sha256::new(), expected: digest.clone(), expected_size: *size, read: 0, on_progress: on_progress.clone() };
                    builder.body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)))
                }
            };
            let result = builder.send().await;
            let retry_after = match result {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    self.authenticate(&response, request.repository).await?;
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
        anyhow!(
            "cannot reach registry {} ({}): check that it is running and that the address is right (plain HTTP is used only for loopback hosts and those in XTASK_INSECURE_REGISTRIES)",
            self.host,
            root_cause(&err)
        )
    }

    /// Answers a 401 challenge: Basic credentials from the Docker configuration, or a Bearer
    /// token from the realm the registry names, fetched with those credentials if any.
    async fn authenticate(&self, response: &reqwest::Response, repository: &str) -> Result<()> {
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
        let credential = self.credential().await?;
        let value = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let params = challenge_params(&challenge["bearer".len()..]);
            let realm = params.get("realm").ok_or_else(|| anyhow!("registry {} sent a Bearer challenge without a realm", self.host))?;
            let mut url = reqwest::Url::parse(realm).with_context(|| format!("registry {} sent a Bearer challenge with an invalid realm", self.host))?;
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
            let body: serde_json::Value = serde_json::from_slice(&body).with_context(|| format!("the token service {realm} answered with invalid JSON"))?;
            let token = body.get("token").or_else(|| body.get("access_token")).and_then(|t| t.as_str()).ok_or_else(|| anyhow!("the token service {realm} answered without a token"))?;
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

    /// The user and password the Docker configuration holds for this host, if any.
    async fn credential(&self) -> Result<Option<(String, String)>> {
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
        let refusal = Refusal { status, codes };
        let host = &self.host;
        let what_to_do = if refusal.has_code("NAME_UNKNOWN") || (status == StatusCode::NOT_FOUND && refusal.codes.is_empty()) {
            format!("the repository {repository} does not exist on {host}: create it (on ECR: `cargo xtask ecr setup`) or fix --repository")
        } else if status == StatusCode::FORBIDDEN || refusal.has_code("DENIED") {
            format!("the credentials for {host} may not push to {repository}: grant push access or use other credentials")
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

/// Plain HTTP is for loopback registries and the hosts the user lists; everything else is TLS.
fn is_plain_http(host: &str) -> bool {
    let name = host.rsplit_once(':').filter(|(name, port)| !name.is_empty() && port.chars().all(|c| c.is_ascii_digit())).map_or(host, |(name, _)| name);
    let loopback = name == "localhost" || name.starts_with("127.") || name == "[::1]";
    let listed = std::env::var("XTASK_INSECURE_REGISTRIES").is_ok_and(|list| list.split(',').any(|entry| entry.trim() == host));
    loopback || listed
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Errors from reading our own blob files, which no retry fixes.
fn is_local_failure(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.downcast_ref::<DigestMismatch>().is_some() || cause.to_string().starts_with("cannot read blob"))
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
    let jitter = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos())) % (base / 2 + 1);
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

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn describe_transport_error(err: reqwest::Error, host: &str) -> anyhow::Error {
    // A failure of our own body stream (a corrupt blob) is reported as what it is.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if let Some(mismatch) = io.get_ref().and_then(|inner| inner.downcast_ref::<DigestMismatch>()) {
                return anyhow!("blob is corrupt in the image layout ({mismatch}): rebuild the image");
            }
        }
        cause = current.source();
    }
    anyhow!("the connection to {host} failed: {}", root_cause(&err))
}

/// Streams a blob file, reporting progress and failing the stream at its end when the bytes do
/// not hash to the expected digest, so that a corrupt layout cannot be pushed.
struct VerifyingReader {
    inner: tokio::fs::File,
    hasher: Sha256,
    expected: Digest,
    expected_size: u64,
    read: u64,
    on_progress: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>>,
}

impl AsyncRead for VerifyingReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let chunk = &buf.filled()[before..];
                if chunk.is_empty() {
                    let found = Digest::from_sha256(this.hasher.finalize_reset().into());
                    if found != this.expected || this.read != this.expected_size {
                        let mismatch = DigestMismatch { expected: this.expected.clone(), found };
                        return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, mismatch)));
                    }
                } else {
                    this.hasher.update(chunk);
                    this.read += chunk.len() as u64;
                    if let Some(on_progress) = &this.on_progress {
                        on_progress(chunk.len() as u64);
                    }
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
    use crate::oci;

    #[test]
    fn bearer_challenge_parameters() {
        let params = challenge_params(r#" realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#);
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull");
    }

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(is_plain_http("127.0.0.1:5000"));
        assert!(is_plain_http("localhost:5000"));
        assert!(is_plain_http("[::1]:5000"));
        assert!(!is_plain_http("registry.example:5000"));
        assert!(!is_plain_http("123.dkr.ecr.us-east-1.amazonaws.com"));
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        assert!(backoff(1, None) <= Duration::from_millis(200));
        assert!(backoff(10, None) <= Duration::from_secs(10));
        assert_eq!(backoff(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
    }

    #[test]
    fn manifest_media_types_are_accepted() {
        for media_type in [oci::MEDIA_TYPE_INDEX, oci::MEDIA_TYPE_MANIFEST, oci::MEDIA_TYPE_DOCKER_LIST, "application/vnd.docker.distribution.manifest.v2+json"] {
            assert!(MANIFEST_ACCEPT.contains(media_type));
        }
    }
}
