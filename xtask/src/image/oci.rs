//! Typed OCI structures (image-spec 1.1): digests, descriptors, manifests, indexes and configs.
//! Field order follows the spec so that serialised bytes, and so digests, are stable.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The largest manifest or config read, from a registry or an archive: distribution's own limit.
pub const MANIFEST_LIMIT: u64 = 4 << 20;
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MEDIA_TYPE_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// The annotation BuildKit marks the manifests of an image's attestations with, in an index
/// beside the image (`attestation-manifest`).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The index annotation naming the app an image belongs to.
pub const APP_ANNOTATION: &str = "dev.xtask.app";

/// A `sha256:<64 lower-case hex>` content digest, validated on construction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(bytes).into())
    }

    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        let mut text = String::with_capacity(71);
        text.push_str("sha256:");
        for byte in hash {
            text.push_str(&format!("{byte:02x}"));
        }
        Digest(text)
    }

    /// The hex part, which names the blob's file in an image layout.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Digest {
    type Error = String;
    fn try_from(text: String) -> Result<Digest, String> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| format!("unsupported digest `{text}`: only sha256 is supported"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("malformed digest `{text}`"));
        }
        Ok(Digest(text))
    }
}

impl std::str::FromStr for Digest {
    type Err = String;
    fn from_str(text: &str) -> Result<Digest, String> {
        Digest::try_from(text.to_string())
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// `os/architecture[/variant]`, as `--platform` spells it.
impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// An artifact manifest's type, on its descriptor in a referrers list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::of_blob(media_type, Digest::of(bytes), bytes.len() as u64)
    }

    /// The descriptor of a blob already stored under `digest`.
    pub fn of_blob(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor { media_type: media_type.to_string(), digest, size, platform: None, artifact_type: None, annotations: BTreeMap::new() }
    }

    pub fn is_index(&self) -> bool {
        self.media_type == MEDIA_TYPE_INDEX || self.media_type == MEDIA_TYPE_DOCKER_LIST
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    /// Optional in the image spec (SHOULD): umoci and `podman import` leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI 1.1 artifact: an image manifest whose `artifactType` says what its one layer holds,
/// over the empty config, attached to `subject` (the image it describes) without changing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactManifest {
    pub schema_version: u32,
    pub media_type: String,
    pub artifact_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub subject: Descriptor,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The empty config of artifacts, and its content.
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_JSON: &[u8] = b"{}";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    pub fn new(manifests: Vec<Descriptor>, annotations: BTreeMap<String, String>) -> ImageIndex {
        ImageIndex { schema_version: 2, media_type: Some(MEDIA_TYPE_INDEX.to_string()), manifests, annotations }
    }
}

/// The image configuration (image-spec `config.json`), with the fields the builder sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Written as `null` when unknown, as BuildKit writes an image with no history.
    #[serde(default)]
    pub created: Option<String>,
    /// `MAINTAINER`'s value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    /// Written as `null` when empty, as BuildKit does.
    #[serde(default, deserialize_with = "null_as_empty", serialize_with = "empty_as_null")]
    pub history: Vec<History>,
}

fn empty_as_null<S: serde::Serializer>(history: &[History], serializer: S) -> Result<S::Ok, S::Error> {
    if history.is_empty() {
        serializer.serialize_none()
    } else {
        serializer.collect_seq(history)
    }
}

/// The container configuration of an image. Docker writes `null` for empty lists and maps, so
/// those read as empty. Fields the builder does not set (`Shell`, `OnBuild`, and whatever an
/// engine or a newer spec adds) are kept as they are, after the named ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// `HEALTHCHECK` as Docker records it: durations in nanoseconds, zero meaning the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", program, args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    /// `author`, `comment` (BuildKit names itself there) and whatever else an entry has.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The `annotations` of an index or manifest (empty when it has none); an error when the bytes
/// are not a JSON object.
pub fn annotations_of(bytes: &[u8]) -> serde_json::Result<BTreeMap<String, String>> {
    #[derive(Deserialize)]
    struct Annotated {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    serde_json::from_slice::<Annotated>(bytes).map(|image| image.annotations)
}

/// Canonical JSON bytes of a structure: compact, in declaration order.
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("OCI structures always serialise")
}

/// Formats seconds since the Unix epoch as RFC 3339 in UTC, the form OCI's `created` uses.
pub fn rfc3339(epoch_seconds: u64) -> String {
    let days = (epoch_seconds / 86_400) as i64;
    let seconds_of_day = epoch_seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", seconds_of_day / 3600, seconds_of_day / 60 % 60, seconds_of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_validation() {
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("md5:00".parse::<Digest>().is_err());
        let digest = Digest::of(b"");
        assert_eq!(digest.as_str(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(digest.as_str().parse::<Digest>(), Ok(digest));
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_359_599), "2026-11-22T14:59:59Z");
    }

    /// Reads `json` as what `kind` names, the way every reader of the xtask does, and shows what
    /// was understood (or the error).
    fn check_read(kind: &str, json: &str, expected: expect_test::Expect) {
        let read = match kind {
            "manifest" => serde_json::from_str::<ImageManifest>(json)
                .map(|m| format!("{} config {} layers {}", m.media_type.as_deref().unwrap_or("-"), m.config.media_type, m.layers.len())),
            "index" => serde_json::from_str::<ImageIndex>(json).map(|index| {
                let platforms = index
                    .manifests
                    .iter()
                    .map(|entry| entry.platform.as_ref().map_or("-".into(), |p| format!("{}/{}", p.os, p.architecture)));
                platforms.collect::<Vec<_>>().join(", ")
            }),
            "config" => serde_json::from_str::<ImageConfig>(json).map(|config| String::from_utf8(to_bytes(&config)).unwrap()),
            _ => unreachable!(),
        };
        expected.assert_eq(&read.unwrap_or_else(|err| format!("error: {err}")));
    }

    /// What the OCI image spec and Docker's v2 schema allow is read: optional fields absent,
    /// `null`s, unknown fields, attestation entries, artifacts, Docker's formats.
    #[test]
    fn documents_other_tools_write_are_read() {
        let descriptor = r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}"#;
        let config = descriptor.replace("image.layer.v1.tar+gzip", "image.config.v1+json");
        // umoci and `podman import`: no mediaType.
        check_read(
            "manifest",
            &format!(r#"{{"schemaVersion":2,"config":{config},"layers":[{descriptor}]}}"#),
            expect_test::expect!["- config application/vnd.oci.image.config.v1+json layers 1"],
        );
        // An OCI 1.1 artifact (a signature, an SBOM): artifactType, the empty config, a subject.
        let empty = descriptor.replace("image.layer.v1.tar+gzip", "empty.v1+json");
        check_read(
            "manifest",
            &format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/spdx+json","config":{empty},"layers":[],"subject":{descriptor},"annotations":{{"a":"b"}}}}"#
            ),
            expect_test::expect!["application/vnd.oci.image.manifest.v1+json config application/vnd.oci.empty.v1+json layers 0"],
        );
        // Docker's v2 schema 2, with Docker's media types.
        check_read(
            "manifest",
            &format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":[]}}"#,
                config.replace("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
            ),
            expect_test::expect![
                "application/vnd.docker.distribution.manifest.v2+json config application/vnd.docker.container.image.v1+json layers 0"
            ],
        );
        // BuildKit's index: an attestation manifest for `unknown/unknown` beside the image.
        let entry = |platform: &str| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{platform}}}"#
            )
        };
        check_read(
            "index",
            &format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
                entry(r#"{"architecture":"amd64","os":"linux"}"#),
                entry(r#"{"architecture":"unknown","os":"unknown"}"#)
                    .replace(r#""size":2,"#, r#""size":2,"annotations":{"vnd.docker.reference.type":"attestation-manifest"},"#)
            ),
            expect_test::expect!["linux/amd64, unknown/unknown"],
        );
        // A Docker manifest list, with a variant and os.version; an entry without a platform.
        check_read(
            "index",
            &format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{},{descriptor}]}}"#,
                entry(r#"{"architecture":"arm","os":"linux","variant":"v7","os.version":"1"}"#)
            ),
            expect_test::expect!["linux/arm, -"],
        );
        // Docker's nulls, and fields the model does not name: kept in the container
        // configuration and the history, the legacy builder's top-level extras dropped.
        check_read(
            "config",
            r#"{"architecture":"amd64","os":"linux","config":{"Env":null,"Cmd":null,"Labels":null,"ExposedPorts":null,"Volumes":null,"ArgsEscaped":true},"container_config":{"Cmd":["x"]},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"RUN x","comment":"buildkit.dockerfile.v0"}]}"#,
            expect_test::expect![[
                r#"{"created":null,"architecture":"amd64","os":"linux","config":{"ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"RUN x","comment":"buildkit.dockerfile.v0"}]}"#
            ]],
        );
        check_read(
            "config",
            r#"{"architecture":"amd64","os":"linux","config":null,"rootfs":{"type":"layers","diff_ids":[]},"history":null}"#,
            expect_test::expect![[
                r#"{"created":null,"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]},"history":null}"#
            ]],
        );
    }

    #[test]
    fn manifest_serialises_in_spec_order() {
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.into()),
            config: Descriptor::new(MEDIA_TYPE_CONFIG, b"{}"),
            layers: vec![],
            annotations: BTreeMap::new(),
        };
        expect_test::expect![[r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#]]
        .assert_eq(&String::from_utf8(to_bytes(&manifest)).unwrap());
    }

    #[test]
    fn manifests_without_the_optional_media_type_are_read() {
        // As umoci and `podman import` write them.
        let umoci = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
        let manifest: ImageManifest = serde_json::from_str(umoci).unwrap();
        assert_eq!(manifest.media_type, None);
        assert_eq!(String::from_utf8(to_bytes(&manifest)).unwrap(), umoci);
    }
}
