//! Where images go: a repository on a registry (`host[:port]/path`) or a local OCI image layout
//! (`oci:DIR`), and a tag within it. Parsing validates names as the distribution spec does, so a
//! bad name fails before any build.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repository {
    Registry { host: String, path: String },
    Layout { dir: PathBuf },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    pub repository: Repository,
    pub tag: String,
}

impl Repository {
    pub fn parse(text: &str) -> Result<Repository> {
        if let Some(dir) = text.strip_prefix("oci:") {
            if dir.is_empty() {
                bail!("`{text}` names no directory: write oci:DIR, for instance oci:target/registry");
            }
            return Ok(Repository::Layout { dir: PathBuf::from(dir) });
        }
        let Some((host, path)) = text.split_once('/') else {
            bail!("`{text}` is not a repository: write it as host/path, for instance 127.0.0.1:5000/acme/prod or 123456789012.dkr.ecr.us-east-1.amazonaws.com/acme/prod");
        };
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            bail!("`{text}` names no registry host (`{host}` is not one): write it as host/path, for instance 127.0.0.1:5000/{text}; images are never pushed to a default registry");
        }
        validate_host(host).with_context(|| format!("in `{text}`"))?;
        if !is_valid_repository_path(path) {
            bail!("`{path}` is not a valid repository name: use lower-case letters, digits and the separators `.`, `_`, `-` between them, and `/` between components");
        }
        Ok(Repository::Registry { host: host.to_string(), path: path.to_string() })
    }
}

impl Repository {
    /// The registry host, for a registry repository.
    pub fn host(&self) -> Option<&str> {
        match self {
            Repository::Registry { host, .. } => Some(host),
            Repository::Layout { .. } => None,
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repository::Registry { host, path } => write!(f, "{host}/{path}"),
            Repository::Layout { dir } => write!(f, "oci:{}", dir.display()),
        }
    }
}

/// Where each app's images go (`repository` in the configuration, `XTASK_REPOSITORY`,
/// `--repository`): one repository every app shares, its images tagged `<app>-<sha>` and
/// `<app>-latest`, or one repository per image, `{image}` in the path standing for the app's name
/// (`ghcr.io/acme/{image}`, as teams that publish each service on its own write it), tagged
/// `<sha>` and `latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repositories {
    Shared(Repository),
    /// The text with `{image}`, checked to make a valid repository of a valid name.
    PerImage(String),
}

/// What stands for the app's name in a per-image repository.
pub const IMAGE_PLACEHOLDER: &str = "{image}";

impl Repositories {
    pub fn parse(text: &str) -> Result<Repositories> {
        if !text.contains(IMAGE_PLACEHOLDER) {
            return Ok(Repositories::Shared(Repository::parse(text)?));
        }
        let (host, _) = text.split_once('/').unwrap_or((text, ""));
        if host.contains(IMAGE_PLACEHOLDER) && !host.starts_with("oci:") {
            bail!("`{text}` has {IMAGE_PLACEHOLDER} in its host: it stands for the image's name in the repository's path, as in ghcr.io/acme/{IMAGE_PLACEHOLDER}");
        }
        Repository::parse(&text.replace(IMAGE_PLACEHOLDER, "image"))
            .with_context(|| format!("in `{text}`, with {IMAGE_PLACEHOLDER} standing for an image's name"))?;
        Ok(Repositories::PerImage(text.to_string()))
    }

    /// The repository of `app`'s images.
    pub fn of(&self, app: &str) -> Result<Repository> {
        match self {
            Repositories::Shared(repository) => Ok(repository.clone()),
            Repositories::PerImage(text) => Repository::parse(&text.replace(IMAGE_PLACEHOLDER, app)).with_context(|| {
                format!("the image `{app}` makes no repository name of `{text}`: rename the image, or write its repository out")
            }),
        }
    }

    /// `app`'s tag for `what` (a commit, `latest`, an extra rule's suffix): `<app>-<what>` in a
    /// shared repository, `<what>` in the app's own.
    pub fn tag(&self, app: &str, what: &str) -> String {
        match self {
            Repositories::Shared(_) => format!("{app}-{what}"),
            Repositories::PerImage(_) => what.to_string(),
        }
    }

    /// Whether every app has a repository of its own.
    pub fn per_image(&self) -> bool {
        matches!(self, Repositories::PerImage(_))
    }

    /// The registry host of every app's repository (the placeholder is never in the host).
    pub fn host(&self) -> Option<&str> {
        match self {
            Repositories::Shared(repository) => repository.host(),
            Repositories::PerImage(text) if text.starts_with("oci:") => None,
            Repositories::PerImage(text) => text.split_once('/').map(|(host, _)| host),
        }
    }

    /// Relative layout directories made relative to `root`.
    pub fn rooted_at(self, root: &std::path::Path) -> Repositories {
        match self {
            Repositories::Shared(Repository::Layout { dir }) => Repositories::Shared(Repository::Layout { dir: root.join(dir) }),
            Repositories::PerImage(text) => match text.strip_prefix("oci:") {
                Some(dir) => Repositories::PerImage(format!("oci:{}", root.join(dir).display())),
                None => Repositories::PerImage(text),
            },
            shared => shared,
        }
    }
}

impl fmt::Display for Repositories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repositories::Shared(repository) => write!(f, "{repository}"),
            Repositories::PerImage(text) => f.write_str(text),
        }
    }
}

impl ImageReference {
    pub fn parse(text: &str) -> Result<ImageReference> {
        let (repository, tag) = match text.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') && repository != "oci" => (repository, tag),
            _ => bail!("`{text}` has no tag: write REPOSITORY:TAG, for instance 127.0.0.1:5000/acme/prod:hello-api-latest or oci:target/registry:hello-api-latest"),
        };
        validate_tag(tag)?;
        Ok(ImageReference { repository: Repository::parse(repository)?, tag: tag.to_string() })
    }
}

/// Docker Hub's name in references, and where its registry API answers.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

impl ImageReference {
    /// An image name as Docker reads it in `FROM` and `docker pull` (the distribution
    /// reference's normalisation): a first component without `.` or `:` that is not `localhost`
    /// is a Docker Hub name (`debian` is `docker.io/library/debian`, `index.docker.io` is
    /// `docker.io`), a missing tag is `latest`, and `@sha256:...` names a digest (kept in `tag`,
    /// which then holds the digest the registry is asked for).
    pub fn parse_image_name(text: &str) -> Result<ImageReference> {
        let invalid = |why: &str| {
            anyhow::anyhow!("`{text}` is not an image reference: {why}; write [HOST/]NAME[:TAG][@DIGEST], for instance debian:bookworm-slim or 127.0.0.1:5000/acme/base:1")
        };
        // An `@` not followed by a digest is left to the host check (a user part is refused there).
        let (name, digest) = match text.rsplit_once('@').filter(|(_, digest)| digest.starts_with("sha256:")) {
            Some((name, digest)) => {
                let hex = digest.trim_start_matches("sha256:");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err(invalid("a sha256 digest is 64 lower-case hexadecimal digits"));
                }
                (name, Some(digest))
            }
            None => (text, None),
        };
        // A tag follows the last `:` after the last `/` (a port's `:` comes before a `/`).
        let (name, tag) = match name.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (name, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let (host, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), if name.contains('/') { name.to_string() } else { format!("library/{name}") }),
        };
        let host = if host == "index.docker.io" { DOCKER_HUB.to_string() } else { host };
        validate_host(&host).with_context(|| format!("in `{text}`"))?;
        if !is_valid_repository_path(&path) {
            return Err(invalid(
                "a repository name is lower-case letters, digits and the separators `.`, `_`, `-` between them, and `/` between components",
            ));
        }
        let reference = digest.or(tag).unwrap_or("latest");
        Ok(ImageReference { repository: Repository::Registry { host, path }, tag: reference.to_string() })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// A registry host is a host name or IP address with an optional port, and nothing else: no
/// user, password, path, query or odd port, as the URL parser requests go through reads it. So
/// every part of the xtask (credentials, ECR, plain-HTTP rules) sees the one host a request
/// reaches.
pub fn validate_host(host: &str) -> Result<()> {
    let invalid = || {
        anyhow::anyhow!(
            "`{host}` is not a registry host: write a host name or IP address with an optional port, such as registry.example.com or 127.0.0.1:5000, without a user, password or path"
        )
    };
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']');
    if host.is_empty() || host.ends_with(':') || !host.bytes().all(allowed) {
        return Err(invalid());
    }
    let url = url::Url::parse(&format!("https://{host}/")).map_err(|_| invalid())?;
    let name = url.host_str().ok_or_else(invalid)?;
    let port = url.port().map(|port| format!(":{port}")).unwrap_or_default();
    // `https://h:443/` loses its default port; anything else must read back as written.
    let canonical = host.strip_suffix(":443").unwrap_or(host);
    if !canonical.eq_ignore_ascii_case(&format!("{name}{port}")) {
        return Err(invalid());
    }
    Ok(())
}

/// Whether `host` (validated) is this machine: a loopback IP address or `localhost`, with any
/// port. A name that merely starts with `127.` is not.
pub fn is_loopback(host: &str) -> bool {
    let Ok(url) = url::Url::parse(&format!("http://{host}/")) else { return false };
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Tags follow the distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let mut bytes = tag.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || tag.len() > 128 || !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        bail!("`{tag}` is not a valid tag: a tag is 1 to 128 letters, digits, `_`, `.` or `-`, and does not start with `.` or `-`");
    }
    Ok(())
}

pub fn is_valid_repository_path(path: &str) -> bool {
    path.split('/').all(|component| {
        let bytes = component.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        !bytes.is_empty()
            && bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes.iter().all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
            && !component.contains("..")
            && !component.contains("___")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_per_image_makes_each_apps_repository_and_tags() {
        let show =
            |text: &str, app: &str| match Repositories::parse(text).and_then(|layout| Ok((layout.of(app)?, layout.tag(app, "latest")))) {
                Ok((repository, tag)) => format!("{repository} {tag}"),
                Err(err) => format!("error: {err:#}"),
            };
        let shown: Vec<String> = [
            ("registry.example/acme/prod", "api"),
            ("ghcr.io/acme/{image}", "api"),
            ("ghcr.io/{image}/images", "api"),
            ("oci:target/{image}", "api"),
            ("ghcr.io/acme/{image}", "Api"),
            ("{image}.example/acme", "api"),
            ("ghcr.io/Acme/{image}", "api"),
        ]
        .iter()
        .map(|(text, app)| show(text, app))
        .collect();
        expect_test::expect![[r#"
            [
                "registry.example/acme/prod api-latest",
                "ghcr.io/acme/api latest",
                "ghcr.io/api/images latest",
                "oci:target/api latest",
                "error: the image `Api` makes no repository name of `ghcr.io/acme/{image}`: rename the image, or write its repository out: `acme/Api` is not a valid repository name: use lower-case letters, digits and the separators `.`, `_`, `-` between them, and `/` between components",
                "error: `{image}.example/acme` has {image} in its host: it stands for the image's name in the repository's path, as in ghcr.io/acme/{image}",
                "error: in `ghcr.io/Acme/{image}`, with {image} standing for an image's name: `Acme/image` is not a valid repository name: use lower-case letters, digits and the separators `.`, `_`, `-` between them, and `/` between components",
            ]
        "#]]
        .assert_debug_eq(&shown);
    }

    fn check(input: &str, expected: &str) {
        let actual = match ImageReference::parse(input) {
            Ok(reference) => format!("{:?}", reference),
            Err(err) => format!("error: {err}"),
        };
        assert_eq!(actual, expected, "for {input}");
    }

    #[test]
    fn hosts_are_exactly_one_host() {
        let verdicts: Vec<String> = [
            "127.0.0.1:5000",
            "registry.example.com",
            "REGISTRY.example.com:443",
            "[::1]:5000",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:x@evil",
            "evil@registry.example.com",
            "registry.example.com:5000:6000",
            "registry.example.com:99999",
            "registry.example.com:",
            "registry.example.com/path",
            "registry.example.com%2F",
        ]
        .iter()
        .map(|host| format!("{host}: {}", if validate_host(host).is_ok() { "ok" } else { "refused" }))
        .collect();
        expect_test::expect![[r#"
            127.0.0.1:5000: ok
            registry.example.com: ok
            REGISTRY.example.com:443: ok
            [::1]:5000: ok
            123456789012.dkr.ecr.us-east-1.amazonaws.com:x@evil: refused
            evil@registry.example.com: refused
            registry.example.com:5000:6000: refused
            registry.example.com:99999: refused
            registry.example.com:: refused
            registry.example.com/path: refused
            registry.example.com%2F: refused"#]]
        .assert_eq(&verdicts.join("\n"));
        let loopback: Vec<&str> = ["127.0.0.1:5000", "127.1.2.3", "localhost:5000", "[::1]:5000", "127.evil.example:5000", "10.0.0.1"]
            .into_iter()
            .filter(|host| is_loopback(host))
            .collect();
        assert_eq!(loopback, ["127.0.0.1:5000", "127.1.2.3", "localhost:5000", "[::1]:5000"]);
    }

    #[test]
    fn image_references() {
        check(
            "127.0.0.1:5000/acme/prod:api-1",
            r#"ImageReference { repository: Registry { host: "127.0.0.1:5000", path: "acme/prod" }, tag: "api-1" }"#,
        );
        check("oci:target/registry:api-latest", r#"ImageReference { repository: Layout { dir: "target/registry" }, tag: "api-latest" }"#);
        check(
            "1234.dkr.ecr.us-east-1.amazonaws.com/hoopstat-haus/prod:x",
            r#"ImageReference { repository: Registry { host: "1234.dkr.ecr.us-east-1.amazonaws.com", path: "hoopstat-haus/prod" }, tag: "x" }"#,
        );
        check(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:x@evil/acme/prod:x",
            "error: in `123456789012.dkr.ecr.us-east-1.amazonaws.com:x@evil/acme/prod`",
        );
        check("127.0.0.1:5000/acme/prod", "error: `127.0.0.1:5000/acme/prod` has no tag: write REPOSITORY:TAG, for instance 127.0.0.1:5000/acme/prod:hello-api-latest or oci:target/registry:hello-api-latest");
        check("acme/prod:x", "error: `acme/prod` names no registry host (`acme` is not one): write it as host/path, for instance 127.0.0.1:5000/acme/prod; images are never pushed to a default registry");
        check("localhost/Acme:x", "error: `Acme` is not a valid repository name: use lower-case letters, digits and the separators `.`, `_`, `-` between them, and `/` between components");
        check(
            "localhost/acme:-x",
            "error: `-x` is not a valid tag: a tag is 1 to 128 letters, digits, `_`, `.` or `-`, and does not start with `.` or `-`",
        );
        check(
            &format!("localhost/acme:{}", "a".repeat(129)),
            &format!(
                "error: `{}` is not a valid tag: a tag is 1 to 128 letters, digits, `_`, `.` or `-`, and does not start with `.` or `-`",
                "a".repeat(129)
            ),
        );
    }

    #[test]
    fn image_names_are_normalised_as_docker_does() {
        let check = |text: &str| match ImageReference::parse_image_name(text) {
            Ok(reference) => reference.to_string(),
            Err(err) => format!("error: {err:#}"),
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(check("debian:bookworm-slim"), "docker.io/library/debian:bookworm-slim");
        assert_eq!(check("debian"), "docker.io/library/debian:latest");
        assert_eq!(check("gcr.io/distroless/cc-debian12"), "gcr.io/distroless/cc-debian12:latest");
        assert_eq!(check("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(check("index.docker.io/library/rust:1.85"), "docker.io/library/rust:1.85");
        assert_eq!(check("localhost/base"), "localhost/base:latest");
        assert_eq!(check("127.0.0.1:5000/acme/base"), "127.0.0.1:5000/acme/base:latest");
        assert_eq!(check(&format!("debian@{digest}")), format!("docker.io/library/debian:{digest}"));
        assert_eq!(check(&format!("debian:12@{digest}")), format!("docker.io/library/debian:{digest}"));
        expect_test::expect!["error: `Debian` is not an image reference: a repository name is lower-case letters, digits and the separators `.`, `_`, `-` between them, and `/` between components; write [HOST/]NAME[:TAG][@DIGEST], for instance debian:bookworm-slim or 127.0.0.1:5000/acme/base:1"].assert_eq(&check("Debian"));
        expect_test::expect!["error: `debian@sha256:12` is not an image reference: a sha256 digest is 64 lower-case hexadecimal digits; write [HOST/]NAME[:TAG][@DIGEST], for instance debian:bookworm-slim or 127.0.0.1:5000/acme/base:1"].assert_eq(&check("debian@sha256:12"));
    }
}
