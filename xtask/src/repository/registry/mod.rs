//! The one HTTP client of registries: the OCI distribution protocol calls (blob HEAD, upload and
//! download, mounts, manifest HEAD, GET, PUT and DELETE, tag lists) on top of `transport`, which
//! decides where a request goes and whether credentials may go with it, and `auth`, which answers
//! challenges. Everything else talks to registries through `Registry`. Answers are read with
//! limits (manifests 4 MiB, other bodies 1 MiB, blobs their descriptor's size), names from
//! outside are percent-encoded into URLs, and a tag list's pages are bounded.

pub mod auth;
pub mod transport;

use std::collections::HashSet;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::image::layout::DigestMismatch;
use crate::image::oci::Digest;

use self::auth::{Auth, TokenSource};
pub use self::transport::BlobFile;
use self::transport::{
    backoff, describe_transport_error, is_certificate_error, is_retryable_status, retry_after, Body, ConnectionFailure, Request, Transport,
    TrustedRoots, MANIFEST_LIMIT, SMALL_BODY_LIMIT,
};

/// Attempts per request for errors that retrying can fix (5xx, 408, 429, resets).
const ATTEMPTS: u32 = 5;

/// The most pages of a tag list followed: a million tags at the page size asked for.
const TAG_PAGES: usize = 1000;

/// The tags asked for per page; a page with more is a registry that does not listen, and only
/// this many of it are kept.
const TAGS_PER_PAGE: usize = 1000;

/// The most distinct tags a command keeps of one repository (a hundred thousand tags of at most
/// 128 bytes are a few MiB; a registry that lies cannot make it more).
const TAGS_KEPT: usize = 100_000;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub struct Registry {
    transport: Transport,
    auth: Auth,
    /// Whether the registry has the referrers API, once a request said so (a 404 says it has
    /// not, and it is not asked again in this run).
    referrers_api: std::sync::Mutex<Option<bool>>,
    /// Held by the request that finds that out, so that requests side by side ask once.
    referrers_probe: tokio::sync::Mutex<()>,
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
    async fn read(mut response: reqwest::Response) -> Refusal {
        let status = response.status();
        // An error body is read up to a limit: its start says why, and a huge one is hostile.
        let mut bytes = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > SMALL_BODY_LIMIT {
                break;
            }
        }
        let body = String::from_utf8_lossy(&bytes);
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

/// `text` as one path segment of a URL: a name from outside (a tag a registry listed, a
/// reference) can never add a segment or a query.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Registry {
    /// A client for `host`: `roots` are the CA certificates trusted for it besides the
    /// system's, `token_source` mints credentials when the Docker configuration has none.
    pub fn new(host: &str, roots: &TrustedRoots, token_source: Option<TokenSource>) -> Result<Registry> {
        Ok(Registry {
            transport: Transport::new(host, roots)?,
            auth: Auth::new(host, token_source),
            referrers_api: std::sync::Mutex::new(None),
            referrers_probe: tokio::sync::Mutex::new(()),
        })
    }

    pub fn host(&self) -> &str {
        &self.transport.host
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
                        self.transport.host,
                        chunk_size.unwrap_or(0)
                    ))
                }
                Err(Failure::Retry(err)) => last_error = Some(err),
                Err(Failure::Fatal(err)) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no attempt made")))
            .with_context(|| format!("uploading blob {digest} to {}/{repository} failed {ATTEMPTS} times", self.transport.host))
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
        let url = format!("/v2/{repository}/manifests/{}", segment(reference));
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
        let mut request = self.request(Method::GET, format!("/v2/{repository}/manifests/{}", segment(reference)), repository);
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
        let bytes = self.transport.read_capped(response, MANIFEST_LIMIT, "a manifest").await?;
        if let Ok(expected) = reference.parse::<Digest>() {
            let found = Digest::of(&bytes);
            if found != expected {
                return Err(DigestMismatch { expected, found })
                    .with_context(|| format!("registry {} served a corrupt manifest", self.transport.host));
            }
        }
        Ok(Some((media_type, bytes)))
    }

    /// Whether the registry is known to lack the referrers API (a request of this run said so).
    pub fn known_without_referrers_api(&self) -> bool {
        *self.referrers_api.lock().expect("not poisoned") == Some(false)
    }

    /// The OCI 1.1 referrers API's list of the artifacts whose subject is `digest`, or `None`
    /// when the registry has no such API (distribution 2.8 answers 404), in which case the
    /// `sha256-<hex>` tag schema stands in for it.
    pub async fn referrers(&self, repository: &str, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let known = || *self.referrers_api.lock().expect("not poisoned");
        let _probe = match known() {
            Some(false) => return Ok(None),
            Some(true) => None,
            None => {
                let probe = self.referrers_probe.lock().await;
                match known() {
                    Some(false) => return Ok(None),
                    Some(true) => None,
                    None => Some(probe),
                }
            }
        };
        let mut request = self.request(Method::GET, format!("/v2/{repository}/referrers/{}", digest.as_str()), repository);
        request.headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.oci.image.index.v1+json"));
        let response = self.execute(request, ATTEMPTS).await?;
        let has_api = match response.status() {
            StatusCode::OK => true,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST => false,
            _ => return Err(self.refused(&format!("list the referrers of {digest}"), repository, response).await),
        };
        *self.referrers_api.lock().expect("not poisoned") = Some(has_api);
        match has_api {
            true => Ok(Some(self.transport.read_capped(response, MANIFEST_LIMIT, "a referrers list").await?)),
            false => Ok(None),
        }
    }

    /// Every tag of the repository (`/tags/list`, following `Link` pages); none when the
    /// repository does not exist yet. A `Link` back to a page already read, or more than
    /// `TAG_PAGES` pages, ends with an error.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>> {
        let mut tags = Vec::new();
        let mut kept = HashSet::new();
        // What a lying registry sent that was left out: too many on a page, invalid, repeated.
        let (mut beyond_page, mut invalid) = (0usize, 0usize);
        let mut url = format!("/v2/{repository}/tags/list?n={TAGS_PER_PAGE}");
        let mut seen = HashSet::new();
        loop {
            if !seen.insert(url.clone()) || seen.len() > TAG_PAGES {
                bail!(
                    "registry {} kept sending the tag list of {repository} to pages it had sent already (or more than {TAG_PAGES} pages): check the registry or the proxy in front of it",
                    self.host()
                );
            }
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
            let body = self.transport.read_capped(response, MANIFEST_LIMIT, "a page of tags").await?;
            #[derive(serde::Deserialize)]
            struct TagList {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let page: TagList = serde_json::from_slice(&body)
                .with_context(|| format!("registry {} answered the tag list of {repository} with invalid JSON", self.transport.host))?;
            let page = page.tags.unwrap_or_default();
            beyond_page += page.len().saturating_sub(TAGS_PER_PAGE);
            for tag in page.into_iter().take(TAGS_PER_PAGE) {
                if crate::image::reference::validate_tag(&tag).is_err() {
                    invalid += 1;
                } else if kept.len() < TAGS_KEPT && kept.insert(tag.clone()) {
                    tags.push(tag);
                }
            }
            let full = kept.len() >= TAGS_KEPT;
            match next {
                Some(next) if !next.is_empty() && !full => url = next,
                _ => {
                    if beyond_page > 0 || invalid > 0 || full {
                        eprintln!(
                            "note: registry {} sent a tag list of {repository} that was cut: {} tags kept (at most {TAGS_KEPT}), {beyond_page} beyond the {TAGS_PER_PAGE} a page was asked for and {invalid} that are no valid tag left out{}",
                            self.host(),
                            tags.len(),
                            if full && next.is_some_and(|next| !next.is_empty()) { ", and the pages after the last one read not followed" } else { "" }
                        );
                    }
                    return Ok(tags);
                }
            }
        }
    }

    /// Downloads a blob of `size` bytes (its descriptor's) into `out`, streaming, and stops at
    /// the first byte beyond them; the caller checks the digest of what arrived.
    pub async fn get_blob(&self, repository: &str, digest: &Digest, size: u64, out: &mut impl std::io::Write) -> Result<u64> {
        let request = self.request(Method::GET, format!("/v2/{repository}/blobs/{digest}"), repository);
        let mut response = self.execute(request, ATTEMPTS).await?;
        if response.status() != StatusCode::OK {
            return Err(self.refused(&format!("read blob {digest}"), repository, response).await);
        }
        let mut read = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|err| describe_transport_error(err, self.host()))? {
            read += chunk.len() as u64;
            if read > size {
                bail!(
                    "registry {} sent more than the {size} bytes of blob {digest} its descriptor gives: check the registry or the proxy in front of it",
                    self.host()
                );
            }
            out.write_all(&chunk)?;
        }
        Ok(read)
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
                self.host()
            ),
            _ => Err(self.refused(&format!("delete manifest {digest}"), repository, response).await),
        }
    }

    /// PUTs manifest bytes under `reference` and checks the digest the registry computed.
    pub async fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let expected = Digest::of(bytes);
        let url = format!("/v2/{repository}/manifests/{}", segment(reference));
        let mut request = self.request(Method::PUT, url, repository);
        request.headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(media_type)?);
        request.body = Body::Bytes(bytes.to_vec());
        let response = self.execute(request, ATTEMPTS).await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused(&format!("write manifest {reference}"), repository, response).await);
        }
        if let Some(found) = response.headers().get("docker-content-digest").and_then(|value| value.to_str().ok()) {
            let found: Digest = found.parse().map_err(|err| anyhow!("registry {} answered with {err}", self.transport.host))?;
            if found != expected {
                return Err(DigestMismatch { expected, found }).with_context(|| {
                    format!("registry {} stored manifest {reference} of {repository} under another digest", self.transport.host)
                });
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
            .ok_or_else(|| anyhow!("registry {} opened an upload without a Location header", self.host()))?;
        // A relative Location is resolved when the request is sent, against the registry's origin.
        Ok(location.to_string())
    }

    /// Sends a request, authenticating on a 401 challenge from the registry's own origin and
    /// retrying what can be retried.
    async fn execute(&self, request: Request<'_>, attempts: u32) -> Result<reqwest::Response> {
        let target = self.transport.target(&request.url).await?;
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = self.auth.current(request.repository).await;
            let result = self.transport.send(&request, &target, authorization.as_ref()).await?;
            let retry_after = match result {
                // A challenge is judged by the origin that answered it: a redirect (a blob read sent
                // to a CDN) may end somewhere else, which gets none of the registry's credentials.
                Ok(response)
                    if response.status() == StatusCode::UNAUTHORIZED
                        && (!target.same_origin || response.url().origin() != target.url.origin()) =>
                {
                    bail!(
                        "{} answered 401 to a request registry {} sent the client to; the registry's credentials go to its own origin only: check the registry's configuration",
                        response.url().origin().ascii_serialization(),
                        self.host()
                    );
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    let challenge =
                        response.headers().get(header::WWW_AUTHENTICATE).and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
                    self.auth.answer(&self.transport, &challenge, request.repository, authorization.as_ref()).await?;
                    attempt -= 1;
                    continue;
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    return Err(anyhow!(
                        "registry {} rejected the credentials for {} (401 Unauthorized): check the user and password that `docker login {}` stored in $DOCKER_CONFIG/config.json (default ~/.docker/config.json)",
                        self.host(), request.repository, self.host()
                    ));
                }
                Ok(response) if is_retryable_status(response.status()) && attempt < attempts => retry_after(&response),
                Ok(response) => return Ok(response),
                Err(err) if is_certificate_error(&err) => return Err(self.transport.unreachable(err)),
                Err(err) if attempt < attempts && !err.is_builder() => {
                    if err.is_connect() && attempt >= 2 {
                        return Err(self.transport.unreachable(err));
                    }
                    None
                }
                Err(err) if err.is_connect() || err.is_timeout() => return Err(self.transport.unreachable(err)),
                Err(err) => return Err(describe_transport_error(err, self.host())),
            };
            tokio::time::sleep(backoff(attempt, retry_after)).await;
        }
    }

    async fn refused(&self, action: &str, repository: &str, response: reqwest::Response) -> anyhow::Error {
        let refusal = Refusal::read(response).await;
        self.explain(action, repository, &refusal)
    }

    fn explain(&self, action: &str, repository: &str, refusal: &Refusal) -> anyhow::Error {
        let status = refusal.status;
        let host = &self.transport.host;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::oci;

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
    #[test]
    fn names_from_outside_stay_one_segment() {
        assert_eq!(segment("api-latest"), "api-latest");
        assert_eq!(segment("sha256:abc"), "sha256:abc");
        assert_eq!(segment("x/../../manifests/other"), "x%2F..%2F..%2Fmanifests%2Fother");
        assert_eq!(segment("a?b#c"), "a%3Fb%23c");
    }
}
