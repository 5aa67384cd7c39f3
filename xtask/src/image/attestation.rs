//! What travels with each platform image as an OCI 1.1 artifact (its `subject` is the platform
//! manifest, so the image's digest does not change): an SPDX 2.3 bill of materials of exactly the
//! crates its binary compiles, and an in-toto statement with a SLSA provenance v1 predicate. Pure:
//! the same inputs give the same bytes.

use std::collections::BTreeMap;

use serde_json::json;

use crate::image::oci::{self, Descriptor, Digest};
use crate::image::platform::Platform;

pub const SPDX_ARTIFACT_TYPE: &str = "application/spdx+json";
pub const CYCLONEDX_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";
pub const PROVENANCE_ARTIFACT_TYPE: &str = "application/vnd.in-toto+json";

/// A package the app's binary compiles for one target, as the resolved graph and Cargo.lock say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CompiledPackage {
    pub name: String,
    pub version: String,
    /// `registry+https://...` or `git+https://...`; `None` for a path (workspace) crate.
    pub source: Option<String>,
    /// Cargo.lock's sha256 of the `.crate` file, for registry crates.
    pub checksum: Option<String>,
    /// The manifest's `license`, as written there.
    pub license: Option<String>,
}

/// The platform image an attestation describes.
pub struct Subject<'a> {
    pub app: &'a str,
    pub version: &'a str,
    pub platform: &'a Platform,
    pub manifest: &'a Descriptor,
}

/// The SPDX 2.3 document of one platform image: the image, the app's crate it carries, every
/// package that crate's build compiles for the target (with purl, checksum, license and where
/// it comes from), and the base image when there is one.
pub fn spdx(subject: &Subject<'_>, packages: &[CompiledPackage], base: Option<(&str, &Digest)>, epoch: u64) -> Vec<u8> {
    let image_id = "SPDXRef-image";
    let app_id = spdx_id("crate", subject.app, subject.version);
    let architecture = &subject.platform.architecture;
    let mut spdx_packages = vec![
        json!({
            "SPDXID": image_id,
            "name": subject.app,
            "versionInfo": subject.manifest.digest.as_str(),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": subject.manifest.digest.hex()}],
            "externalRefs": [purl(&format!("pkg:oci/{}@{}?arch={architecture}", subject.app, subject.manifest.digest.as_str().replace(':', "%3A")))],
        }),
        json!({
            "SPDXID": app_id,
            "name": subject.app,
            "versionInfo": subject.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "APPLICATION",
            "externalRefs": [purl(&format!("pkg:cargo/{}@{}", subject.app, subject.version))],
        }),
    ];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", image_id), relationship(image_id, "CONTAINS", &app_id)];
    for package in packages {
        let id = spdx_id("crate", &package.name, &package.version);
        let mut entry = json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": download_location(package),
            "filesAnalyzed": false,
            "licenseDeclared": package.license.as_deref().map_or_else(|| "NOASSERTION".to_string(), spdx_license),
            "licenseConcluded": "NOASSERTION",
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [purl(&format!("pkg:cargo/{}@{}", package.name, package.version))],
        });
        if let Some(checksum) = &package.checksum {
            entry["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": checksum}]);
        }
        spdx_packages.push(entry);
        relationships.push(relationship(&app_id, "DEPENDS_ON", &id));
    }
    if let Some((reference, digest)) = base {
        let base_id = "SPDXRef-base-image";
        spdx_packages.push(json!({
            "SPDXID": base_id,
            "name": reference,
            "versionInfo": digest.as_str(),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": digest.hex()}],
        }));
        relationships.push(relationship(image_id, "DESCENDANT_OF", base_id));
    }
    // The namespace must be unique per document: the digest of what it lists makes it so, and
    // keeps it the same for the same image.
    let listed = Digest::of(format!("{} {packages:?} {base:?}", subject.manifest.digest).as_bytes());
    let document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{} {}", subject.app, subject.platform),
        "documentNamespace": format!("https://spdx.org/spdxdocs/{}-{}-{}", subject.app, subject.platform.to_string().replace('/', "-"), listed.hex()),
        "creationInfo": {"created": oci::rfc3339(epoch), "creators": [format!("Tool: cargo-xtask-{}", env!("CARGO_PKG_VERSION"))]},
        "packages": spdx_packages,
        "relationships": relationships,
    });
    serde_json::to_vec_pretty(&document).expect("JSON values serialise")
}

/// The CycloneDX 1.6 document of one platform image: the same image, crates and base image as
/// `spdx`, as components with purls, SHA-256 hashes and license expressions, and the image's and
/// the app's dependencies.
pub fn cyclonedx(subject: &Subject<'_>, packages: &[CompiledPackage], base: Option<(&str, &Digest)>, epoch: u64) -> Vec<u8> {
    let image_ref = "image";
    let app_purl = format!("pkg:cargo/{}@{}", subject.app, subject.version);
    let architecture = &subject.platform.architecture;
    let mut components = vec![json!({
        "type": "application",
        "bom-ref": app_purl,
        "name": subject.app,
        "version": subject.version,
        "purl": app_purl,
    })];
    let mut crate_refs = Vec::new();
    for package in packages {
        let purl = format!("pkg:cargo/{}@{}", package.name, package.version);
        // Two crates of one name and version (from two sources) keep refs of their own.
        let bom_ref = match crate_refs.contains(&purl) {
            true => format!("{purl}#{}", crate_refs.len()),
            false => purl.clone(),
        };
        let mut component = json!({"type": "library", "bom-ref": bom_ref, "name": package.name, "version": package.version, "purl": purl});
        if let Some(checksum) = &package.checksum {
            component["hashes"] = json!([{"alg": "SHA-256", "content": checksum}]);
        }
        if let Some(license) = &package.license {
            component["licenses"] = json!([{"expression": spdx_license(license)}]);
        }
        if let Some(url) = package.source.as_ref().map(|_| download_location(package)) {
            component["externalReferences"] = json!([{"type": "distribution", "url": url}]);
        }
        components.push(component);
        crate_refs.push(bom_ref);
    }
    let mut image_depends = vec![app_purl.clone()];
    if let Some((reference, digest)) = base {
        components.push(json!({
            "type": "container",
            "bom-ref": "base-image",
            "name": reference,
            "version": digest.as_str(),
            "hashes": [{"alg": "SHA-256", "content": digest.hex()}],
        }));
        image_depends.push("base-image".to_string());
    }
    // The serial number is the digest of what the document lists: the same for the same image.
    let listed = Digest::of(format!("cyclonedx {} {packages:?} {base:?}", subject.manifest.digest).as_bytes());
    let hex = listed.hex();
    let document = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]),
        "version": 1,
        "metadata": {
            "timestamp": oci::rfc3339(epoch),
            "tools": {"components": [{"type": "application", "name": "cargo-xtask", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": subject.app,
                "version": subject.manifest.digest.as_str(),
                "purl": format!("pkg:oci/{}@{}?arch={architecture}", subject.app, subject.manifest.digest.as_str().replace(':', "%3A")),
                "hashes": [{"alg": "SHA-256", "content": subject.manifest.digest.hex()}],
            },
        },
        "components": components,
        "dependencies": [
            {"ref": image_ref, "dependsOn": image_depends},
            {"ref": app_purl, "dependsOn": crate_refs},
        ],
    });
    serde_json::to_vec_pretty(&document).expect("JSON values serialise")
}

/// What the provenance says about a build, besides its subject.
pub struct Build<'a> {
    /// The repository URL, credentials removed.
    pub source: Option<&'a str>,
    pub revision: Option<&'a str>,
    /// The app's input digest (`dev.xtask.inputs`).
    pub inputs: Option<&'a Digest>,
    pub target: &'a str,
    pub command: &'a str,
    /// `GITHUB_*` variables of the run, when in GitHub Actions.
    pub github: &'a BTreeMap<String, String>,
}

/// An in-toto statement (v1) about one platform image with a SLSA provenance v1 predicate.
pub fn provenance(subject: &Subject<'_>, build: &Build<'_>) -> Vec<u8> {
    let github = |key: &str| build.github.get(key).map(String::as_str);
    let mut resolved = Vec::new();
    if let (Some(source), Some(revision)) = (build.source, build.revision) {
        resolved.push(json!({"uri": format!("git+{source}@{revision}"), "digest": {"gitCommit": revision}}));
    }
    let run = match (github("GITHUB_SERVER_URL"), github("GITHUB_REPOSITORY"), github("GITHUB_RUN_ID")) {
        (Some(server), Some(repository), Some(run)) => {
            let attempt = github("GITHUB_RUN_ATTEMPT").unwrap_or("1");
            Some(format!("{server}/{repository}/actions/runs/{run}/attempts/{attempt}"))
        }
        _ => None,
    };
    let builder_id = match (github("GITHUB_SERVER_URL"), github("GITHUB_WORKFLOW_REF")) {
        (Some(server), Some(workflow)) => format!("{server}/{workflow}"),
        _ => format!("https://crates.io/crates/cargo-xtask@{}", env!("CARGO_PKG_VERSION")),
    };
    let mut metadata = json!({});
    if let Some(run) = run {
        metadata["invocationId"] = json!(run);
    }
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": subject.app, "digest": {"sha256": subject.manifest.digest.hex()}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://github.com/acme/xtask/release/v1",
                "externalParameters": {
                    "app": subject.app,
                    "platform": subject.platform.to_string(),
                    "command": build.command,
                    "repository": build.source,
                    "revision": build.revision,
                },
                "internalParameters": {"target": build.target, "inputs": build.inputs.map(Digest::as_str)},
                "resolvedDependencies": resolved,
            },
            "runDetails": {"builder": {"id": builder_id}, "metadata": metadata},
        },
    });
    serde_json::to_vec_pretty(&statement).expect("JSON values serialise")
}

/// A repository URL without user, password and query parameters that carry secrets
/// (`https://token@host/x?private_token=t&branch=main` → `https://host/x?branch=main`): what
/// reaches an image, an annotation or an attestation is public.
pub fn without_credentials(url: &str) -> String {
    let (url, fragment) = url.split_once('#').map_or((url, None), |(url, fragment)| (url, Some(fragment)));
    let (url, query) = url.split_once('?').map_or((url, None), |(url, query)| (url, Some(query)));
    let mut public = match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(authority, path)| (authority, path));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            if path.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.rsplit_once('@').map_or(url, |(_, host)| host).to_string(),
    };
    const SECRET_NAMES: [&str; 9] = ["token", "access_token", "private_token", "auth", "key", "password", "secret", "sig", "signature"];
    let kept: Vec<&str> = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter(|pair| !SECRET_NAMES.contains(&pair.split('=').next().unwrap_or("").to_ascii_lowercase().as_str()))
        .collect();
    if !kept.is_empty() {
        public = format!("{public}?{}", kept.join("&"));
    }
    if let Some(fragment) = fragment {
        public = format!("{public}#{fragment}");
    }
    public
}

fn spdx_id(kind: &str, name: &str, version: &str) -> String {
    let clean = |text: &str| text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect::<String>();
    format!("SPDXRef-{kind}-{}-{}", clean(name), clean(version))
}

fn purl(locator: &str) -> serde_json::Value {
    json!({"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": locator})
}

fn relationship(from: &str, kind: &str, to: &str) -> serde_json::Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

fn download_location(package: &CompiledPackage) -> String {
    match package.source.as_deref() {
        Some(source) if source.starts_with("registry+") => {
            format!("https://crates.io/api/v1/crates/{}/{}/download", package.name, package.version)
        }
        // A git source may carry a token (`git+https://oauth2:TOKEN@host/repo`): never into an SBOM.
        Some(source) => without_credentials(source.trim_start_matches("git+")),
        None => "NOASSERTION".to_string(),
    }
}

/// Cargo's license field as an SPDX expression: the old `MIT/Apache-2.0` form means OR.
fn spdx_license(license: &str) -> String {
    license.split('/').map(str::trim).collect::<Vec<_>>().join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject_manifest() -> Descriptor {
        Descriptor::new(oci::MEDIA_TYPE_MANIFEST, b"{}")
    }

    #[test]
    fn the_bill_of_materials_lists_the_compiled_crates_with_purls_checksums_and_licenses() {
        let platform = Platform::parse("linux/arm64").unwrap();
        let manifest = subject_manifest();
        let subject = Subject { app: "hello-api", version: "0.1.0", platform: &platform, manifest: &manifest };
        let packages = [
            CompiledPackage {
                name: "percent-encoding".into(),
                version: "2.3.1".into(),
                source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
                checksum: Some("e3148f5046208a5d56bcfc03053e3ca6334e51da8dfb19b6cdc8b306fae3283e".into()),
                license: Some("MIT/Apache-2.0".into()),
            },
            CompiledPackage { name: "common".into(), version: "0.1.0".into(), source: None, checksum: None, license: None },
        ];
        let bytes = spdx(&subject, &packages, None, 0);
        assert_eq!(bytes, spdx(&subject, &packages, None, 0), "the same inputs give the same bytes");
        let document: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let crates: Vec<String> = document["packages"]
            .as_array()
            .unwrap()
            .iter()
            .skip(2)
            .map(|p| {
                format!(
                    "{} {} {} {}",
                    p["externalRefs"][0]["referenceLocator"],
                    p["licenseDeclared"],
                    p["downloadLocation"],
                    p["checksums"][0]["checksumValue"]
                )
            })
            .collect();
        expect_test::expect![[r#"
            "pkg:cargo/percent-encoding@2.3.1" "MIT OR Apache-2.0" "https://crates.io/api/v1/crates/percent-encoding/2.3.1/download" "e3148f5046208a5d56bcfc03053e3ca6334e51da8dfb19b6cdc8b306fae3283e"
            "pkg:cargo/common@0.1.0" "NOASSERTION" "NOASSERTION" null"#]]
        .assert_eq(&crates.join("\n"));
        assert_eq!(document["relationships"][0]["relationshipType"], "DESCRIBES");
        assert_eq!(document["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn the_cyclonedx_document_lists_the_same_crates_with_hashes_licenses_and_dependencies() {
        let platform = Platform::parse("linux/amd64").unwrap();
        let manifest = subject_manifest();
        let subject = Subject { app: "worker", version: "0.2.0", platform: &platform, manifest: &manifest };
        let packages = [
            CompiledPackage {
                name: "itoa".into(),
                version: "1.0.15".into(),
                source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
                checksum: Some("4a5f13b858c8d314ee3e8f639011f7ccefe71f97f96e50151fb991f267928e2c".into()),
                license: Some("MIT OR Apache-2.0".into()),
            },
            CompiledPackage { name: "common".into(), version: "0.1.0".into(), source: None, checksum: None, license: None },
        ];
        let base = Digest::of(b"base");
        let bytes = cyclonedx(&subject, &packages, Some(("base", &base)), 0);
        assert_eq!(bytes, cyclonedx(&subject, &packages, Some(("base", &base)), 0), "the same inputs give the same bytes");
        let document: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let components: Vec<String> = document["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {} {} {} {}",
                    c["type"], c["bom-ref"], c["hashes"][0]["content"], c["licenses"][0]["expression"], c["externalReferences"][0]["url"]
                )
            })
            .collect();
        expect_test::expect![[r#"
            "application" "pkg:cargo/worker@0.2.0" null null null
            "library" "pkg:cargo/itoa@1.0.15" "4a5f13b858c8d314ee3e8f639011f7ccefe71f97f96e50151fb991f267928e2c" "MIT OR Apache-2.0" "https://crates.io/api/v1/crates/itoa/1.0.15/download"
            "library" "pkg:cargo/common@0.1.0" null null null
            "container" "base-image" "cae662172fd450bb0cd710a769079c05bfc5d8e35efa6576edc7d0377afdd4a2" null null"#]]
        .assert_eq(&components.join("\n"));
        assert_eq!(document["dependencies"][1]["dependsOn"], json!(["pkg:cargo/itoa@1.0.15", "pkg:cargo/common@0.1.0"]));
        assert_eq!(document["metadata"]["component"]["hashes"][0]["content"], manifest.digest.hex());
    }

    #[test]
    fn provenance_names_the_commit_and_the_run_and_no_credentials() {
        let platform = Platform::parse("linux/amd64").unwrap();
        let manifest = subject_manifest();
        let subject = Subject { app: "worker", version: "0.2.0", platform: &platform, manifest: &manifest };
        let source = without_credentials("https://x-access-token:secret@github.com/acme/mono.git");
        let github = BTreeMap::from(
            [("GITHUB_SERVER_URL", "https://github.com"), ("GITHUB_REPOSITORY", "acme/mono"), ("GITHUB_RUN_ID", "42")]
                .map(|(key, value)| (key.to_string(), value.to_string())),
        );
        let build = Build {
            source: Some(&source),
            revision: Some("abc"),
            inputs: None,
            target: "x86_64-unknown-linux-musl",
            command: "cargo xtask release",
            github: &github,
        };
        let statement: serde_json::Value = serde_json::from_slice(&provenance(&subject, &build)).unwrap();
        assert_eq!(statement["subject"][0]["digest"]["sha256"], manifest.digest.hex());
        assert_eq!(statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]["uri"], "git+https://github.com/acme/mono.git@abc");
        assert_eq!(
            statement["predicate"]["runDetails"]["metadata"]["invocationId"],
            "https://github.com/acme/mono/actions/runs/42/attempts/1"
        );
        assert!(!String::from_utf8(provenance(&subject, &build)).unwrap().contains("secret"));
    }

    #[test]
    fn urls_that_reach_an_image_carry_no_credentials() {
        let package = |source: &str| CompiledPackage {
            name: "internal".into(),
            version: "0.1.0".into(),
            source: Some(source.into()),
            checksum: None,
            license: None,
        };
        let git = package("git+https://oauth2:glpat-s3cret@gitlab.example.com/acme/internal.git?branch=main&private_token=s3cret#0123abcd");
        assert_eq!(download_location(&git), "https://gitlab.example.com/acme/internal.git?branch=main#0123abcd");
        assert_eq!(without_credentials("ssh://git@github.com/acme/mono.git"), "ssh://github.com/acme/mono.git");
        assert_eq!(without_credentials("https://github.com/acme/mono.git?rev=abc"), "https://github.com/acme/mono.git?rev=abc");
    }
}
