//! The HTTP side of one registry: where its requests go (its origin, `https://host` or, for a
//! loopback or listed host that does not speak TLS, `http://host`, decided on first contact),
//! one attempt of a request, and bounded reads of answers. This is the one place that decides
//! which requests may carry the registry's credentials: only those to the registry's own origin
//! (scheme, host and port, as go-containerregistry's transport does). An absolute URL the
//! registry answers with (an upload `Location`, a tag list's `Link`) on another origin gets no
//! credentials, an `https` to `http` downgrade is refused, and redirects follow the same rules.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};

use crate::image::oci::Digest;
use crate::image::reference::is_loopback;

pub use crate::image::oci::MANIFEST_LIMIT;
/// The largest error answer, token answer or page of a tag list read.
pub const SMALL_BODY_LIMIT: u64 = 1 << 20;

/// CA certificates trusted for one registry besides the system's.
#[derive(Default, Clone)]
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
pub struct Request<'a> {
    pub method: Method,
    /// A path on the registry (`/v2/...`), or an absolute URL such as an upload location.
    pub url: String,
    pub repository: &'a str,
    pub headers: HeaderMap,
    pub body: Body,
}

pub enum Body {
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

/// Where a request goes, and whether the registry's credentials may go with it.
pub struct Target {
    pub url: Url,
    pub same_origin: bool,
}

pub struct Transport {
    pub host: String,
    /// Where requests for `host` go: `host` itself, or the address XTASK_REGISTRY_MAP names for
    /// it (a mirror, a tunnel, or a test registry standing in for ECR). Credentials are still
    /// looked up for `host`.
    address: String,
    /// Whether plain HTTP may be used: loopback addresses and the hosts the user lists.
    allow_plain_http: bool,
    base_url: tokio::sync::OnceCell<Url>,
    pub http: reqwest::Client,
    /// The same, without the read timeout: for requests that send a blob.
    uploads: reqwest::Client,
}

impl Transport {
    pub fn new(host: &str, roots: &TrustedRoots) -> Result<Transport> {
        let address = match std::env::var("XTASK_REGISTRY_MAP").ok().and_then(|map| mapped_address(host, &map)) {
            Some(address) => {
                crate::image::reference::validate_host(&address).context("in XTASK_REGISTRY_MAP")?;
                address
            }
            // Docker Hub's references say docker.io; its registry API answers elsewhere.
            None if host == crate::image::reference::DOCKER_HUB => crate::image::reference::DOCKER_HUB_API.to_string(),
            None => host.to_string(),
        };
        let allow_plain_http = allows_plain_http(host) || allows_plain_http(&address);
        let client = |read_timeout: Option<Duration>| {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!("cargo-xtask-release/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .tls_certs_merge(roots.0.iter().cloned())
                .redirect(redirect_policy());
            if let Some(timeout) = read_timeout {
                builder = builder.read_timeout(timeout);
            }
            // HTTP_PROXY and HTTPS_PROXY (with NO_PROXY) are honoured, except for a registry
            // spoken to in plain HTTP (loopback, XTASK_INSECURE_REGISTRIES): its Basic credentials
            // would cross the proxy in clear, and loopback is this machine anyway.
            if allow_plain_http {
                builder = builder.no_proxy();
            }
            builder.build().context("cannot set up the HTTP client")
        };
        // Every read, the first byte of an answer included: a registry that trickles a byte now
        // and then cannot hold a command for ever. Not for uploads: while a large body goes out
        // nothing comes back, so they are bounded as a whole instead (`upload_timeout`).
        let http = client(Some(read_timeout()?))?;
        let uploads = client(None)?;
        Ok(Transport { host: host.to_string(), allow_plain_http, address, base_url: tokio::sync::OnceCell::new(), http, uploads })
    }

    /// Whether plain HTTP may carry credentials to `url`'s host: only for loopback hosts and the
    /// hosts in XTASK_INSECURE_REGISTRIES.
    pub fn may_use_plain_http(url: &Url) -> bool {
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => return false,
        };
        allows_plain_http(&host)
    }

    /// `https://host` or, for a host that may use plain HTTP and does not speak TLS,
    /// `http://host`; decided on first contact, as Docker does for insecure registries.
    pub async fn base_url(&self) -> &Url {
        self.base_url
            .get_or_init(|| async {
                let https = Url::parse(&format!("https://{}/", self.address)).expect("a validated host");
                if !self.allow_plain_http {
                    return https;
                }
                // Only a failure to speak TLS at all selects plain HTTP; any HTTP answer over TLS,
                // even an error status, means the registry speaks HTTPS.
                match self.http.get(https.join("/v2/").expect("a path")).timeout(Duration::from_secs(5)).send().await {
                    Ok(_) => https,
                    // An untrusted certificate is TLS all the same; the request that follows
                    // reports it.
                    Err(err) if is_certificate_error(&err) => https,
                    Err(_) => Url::parse(&format!("http://{}/", self.address)).expect("a validated host"),
                }
            })
            .await
    }

    /// Resolves a request's URL: a path against the registry's origin, an absolute URL as it
    /// is. A URL on another origin gets no credentials; one that would downgrade the registry's
    /// `https` to `http` is refused.
    pub async fn target(&self, url: &str) -> Result<Target> {
        let base = self.base_url().await;
        let url = base.join(url).with_context(|| format!("registry {} answered with an invalid URL `{url}`", self.host))?;
        if base.scheme() == "https" && url.scheme() != "https" {
            bail!(
                "registry {} sent the client to {} over plain HTTP, which would expose the upload; refused: check the registry's configuration (its advertised URL) or the proxy in front of it",
                self.host,
                url.origin().ascii_serialization()
            );
        }
        Ok(Target { same_origin: origin(&url) == origin(base), url })
    }

    /// Sends one attempt of `request` to `target`, with `authorization` when the target is the
    /// registry's own origin.
    pub async fn send(
        &self,
        request: &Request<'_>,
        target: &Target,
        authorization: Option<&HeaderValue>,
    ) -> Result<reqwest::Result<reqwest::Response>> {
        let client = if matches!(request.body, Body::File { .. }) { &self.uploads } else { &self.http };
        let mut builder = client.request(request.method.clone(), target.url.clone()).headers(request.headers.clone());
        if let (true, Some(authorization)) = (target.same_origin, authorization) {
            builder = builder.header(header::AUTHORIZATION, authorization.clone());
        }
        builder = match &request.body {
            Body::Empty => builder,
            Body::Bytes(bytes) => builder.body(bytes.clone()),
            Body::File { blob, offset, len } => {
                let mut file =
                    tokio::fs::File::open(&blob.path).await.with_context(|| format!("cannot read blob {}", blob.path.display()))?;
                file.seek(std::io::SeekFrom::Start(*offset)).await.with_context(|| format!("cannot read blob {}", blob.path.display()))?;
                let reader = BlobReader { inner: file.take(*len), expected_len: *len, read: 0, on_progress: blob.on_progress.clone() };
                builder
                    .timeout(upload_timeout(*len))
                    .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)))
            }
        };
        Ok(builder.send().await)
    }

    pub fn unreachable(&self, err: reqwest::Error) -> anyhow::Error {
        if err.is_timeout() {
            return stalled(&self.host);
        }
        if is_certificate_error(&err) {
            return anyhow!(
                "the TLS certificate of registry {} is not trusted ({}): pass the CA certificate that signed it with --ca-file (or XTASK_CA_FILE), as {}=PEM when the registry is not the command's own, or install it in the system's trust store",
                self.host,
                root_cause(&err),
                self.host
            );
        }
        anyhow::Error::new(ConnectionFailure(format!(
            "cannot reach registry {} ({}): check that it is running and that the address is right (plain HTTP is used only for loopback hosts and those in XTASK_INSECURE_REGISTRIES)",
            self.host,
            root_cause(&err)
        )))
    }

    /// The whole body of `response`, refused once it passes `limit` bytes (before it is read
    /// when its Content-Length says so), so that a registry cannot exhaust memory.
    pub async fn read_capped(&self, mut response: reqwest::Response, limit: u64, what: &str) -> Result<Vec<u8>> {
        let too_large = || {
            anyhow!(
                "registry {} answered with {what} larger than {} KiB, more than any registry sends: check the registry or the proxy in front of it",
                self.host,
                limit >> 10
            )
        };
        if response.content_length().is_some_and(|length| length > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| describe_transport_error(err, &self.host))? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// `scheme://host:port`, with the scheme's default port made explicit.
pub fn origin(url: &Url) -> (String, String, Option<u16>) {
    (url.scheme().to_string(), url.host_str().unwrap_or("").to_ascii_lowercase(), url.port_or_known_default())
}

/// Redirects keep the origin rules: at most 10, never from `https` to `http`. reqwest itself
/// drops `Authorization` when a redirect leaves the origin, so a redirect to blob storage (S3, a
/// CDN) works without the registry's credentials.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.previous().iter().any(|url| url.scheme() == "https") && attempt.url().scheme() != "https";
        if downgrade {
            let to = attempt.url().to_string();
            attempt.error(format!("refused a redirect from https to {to}"))
        } else if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
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
    let listed = std::env::var("XTASK_INSECURE_REGISTRIES").is_ok_and(|list| list.split(',').any(|entry| entry.trim() == host));
    is_loopback(host) || listed
}

/// The network failed (unreachable, reset, cut short); the message says how.
#[derive(Debug)]
pub struct ConnectionFailure(String);

impl std::fmt::Display for ConnectionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectionFailure {}

pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(60)))
}

/// Exponential backoff from 100 ms, capped at 10 s, with jitter so parallel uploads do not
/// retry in lockstep; a registry's Retry-After wins.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait;
    }
    let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    let jitter =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos())) % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

pub fn is_certificate_error(err: &reqwest::Error) -> bool {
    root_cause(err).contains("certificate")
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

pub fn describe_transport_error(err: reqwest::Error, host: &str) -> anyhow::Error {
    if err.is_timeout() {
        return stalled(host);
    }
    anyhow::Error::new(ConnectionFailure(format!("the connection to {host} failed: {}", root_cause(&err))))
}

/// How long a read may wait for the next byte: XTASK_READ_TIMEOUT seconds, 30 by default.
fn read_timeout() -> Result<Duration> {
    match std::env::var("XTASK_READ_TIMEOUT").ok().filter(|text| !text.is_empty()) {
        None => Ok(Duration::from_secs(30)),
        Some(text) => match text.parse::<u64>() {
            Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
            _ => anyhow::bail!("XTASK_READ_TIMEOUT=`{text}` is not a number of seconds above 0: set it to how long a registry may go without sending a byte"),
        },
    }
}

/// How long an upload of `len` bytes may take, answer included: the read timeout, plus the time
/// the bytes take at 64 KiB/s, a floor no working link falls under.
fn upload_timeout(len: u64) -> Duration {
    read_timeout().unwrap_or(Duration::from_secs(30)) + Duration::from_secs(len / (64 * 1024))
}

fn stalled(host: &str) -> anyhow::Error {
    let seconds = read_timeout().map_or(30, |timeout| timeout.as_secs());
    anyhow::Error::new(ConnectionFailure(format!(
        "registry {host} stopped sending: no byte came for {seconds} s, also when asked again: check the registry and the network, or raise XTASK_READ_TIMEOUT (seconds) for a slow one"
    )))
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

    #[test]
    fn plain_http_only_for_loopback_and_listed_hosts() {
        assert!(allows_plain_http("127.0.0.1:5000"));
        assert!(allows_plain_http("localhost:5000"));
        assert!(allows_plain_http("[::1]:5000"));
        assert!(!allows_plain_http("127.evil.example:5000"));
        assert!(!allows_plain_http("registry.example:5000"));
        assert!(!allows_plain_http("123.dkr.ecr.us-east-1.amazonaws.com"));
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        assert!(backoff(1, None) <= Duration::from_millis(200));
        assert!(backoff(10, None) <= Duration::from_secs(10));
        assert_eq!(backoff(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
    }

    /// Resolves `url` against a registry whose origin is `base` and says whether credentials
    /// may go with it, or why it is refused.
    fn check(base: &str, url: &str, expected: &str) {
        let transport = Transport::new("registry.example", &TrustedRoots::default()).unwrap();
        transport.base_url.set(Url::parse(base).unwrap()).ok().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let actual = match runtime.block_on(transport.target(url)) {
            Ok(target) => format!("{} {}", target.url, if target.same_origin { "with credentials" } else { "without credentials" }),
            Err(err) => format!("refused: {err}").chars().take(60).collect(),
        };
        assert_eq!(actual, expected, "{base} + {url}");
    }

    #[test]
    fn credentials_stay_with_the_registry_origin() {
        check("https://registry.example/", "/v2/a/blobs/uploads/", "https://registry.example/v2/a/blobs/uploads/ with credentials");
        check("https://registry.example/", "https://REGISTRY.example:443/v2/x", "https://registry.example/v2/x with credentials");
        check("https://registry.example/", "https://registry.example:8443/v2/x", "https://registry.example:8443/v2/x without credentials");
        check(
            "https://registry.example/",
            "https://bucket.s3.example/upload?sig=1",
            "https://bucket.s3.example/upload?sig=1 without credentials",
        );
        check("https://registry.example/", "http://registry.example/v2/x", "refused: registry registry.example sent the client to http:/");
        check("http://127.0.0.1:5000/", "http://127.0.0.1:5001/v2/x", "http://127.0.0.1:5001/v2/x without credentials");
        check("http://127.0.0.1:5000/", "/v2/a/tags/list?last=x", "http://127.0.0.1:5000/v2/a/tags/list?last=x with credentials");
    }
}
