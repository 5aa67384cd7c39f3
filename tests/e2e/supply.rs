//! Supply chain: `release --attest` attaches to every platform image an SPDX bill of materials
//! and a SLSA provenance statement as OCI 1.1 artifacts, found through the referrers tag schema
//! of the registry (distribution 2.8 has no referrers API) or a referrers API in front of it,
//! and checked with independent tools.

use std::process::Command;

use crate::support::harness::{run, skopeo, skopeo_raw, stderr, Registry, Scratch};
use crate::support::referrers_api::ReferrersApi;

/// spdx-tools' validator (PyPI), as tests/ci.sh installs it (XTASK_TEST_PYSPDXTOOLS).
fn pyspdxtools() -> String {
    std::env::var("XTASK_TEST_PYSPDXTOOLS").unwrap_or_else(|_| "pyspdxtools".into())
}

#[test]
fn attested_images_carry_a_valid_sbom_and_provenance_per_platform_and_a_rerun_writes_nothing() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let repository = format!("{}/acme/prod", registry.host);
    let sha = scratch.head();
    // Attestations are the default: no flag asks for them.
    scratch.xtask_ok(&["release", "worker", "--repository", &repository]);

    let index = skopeo_raw(&format!("docker://{repository}:worker-latest"));
    let documents = tempfile::tempdir().unwrap();
    for entry in index["manifests"].as_array().unwrap() {
        let subject = entry["digest"].as_str().unwrap();
        let referrers = skopeo_raw(&format!("docker://{repository}:{}", subject.replace(':', "-")));
        let types: Vec<&str> = referrers["manifests"].as_array().unwrap().iter().map(|m| m["artifactType"].as_str().unwrap()).collect();
        assert_eq!(types, ["application/spdx+json", "application/vnd.in-toto+json"], "{referrers:#}");
        for listed in referrers["manifests"].as_array().unwrap() {
            let artifact = skopeo_raw(&format!("docker://{repository}@{}", listed["digest"].as_str().unwrap()));
            assert_eq!(artifact["subject"]["digest"], subject);
            assert_eq!(artifact["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
            let payload = registry.storage().blob(artifact["layers"][0]["digest"].as_str().unwrap()).expect("the payload is stored");
            let document: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            if listed["artifactType"] == "application/spdx+json" {
                let path = documents.path().join(format!("{}.spdx.json", &subject[7..19]));
                std::fs::write(&path, &payload).unwrap();
                let validated = run(Command::new(pyspdxtools()).arg("--infile").arg(&path));
                assert!(
                    validated.status.success(),
                    "spdx-tools refuses the SBOM: {}{}",
                    stderr(&validated),
                    String::from_utf8_lossy(&validated.stdout)
                );
                let purls = cargo_purls(&document);
                // worker, what it compiles (wordcount, common), and no build-time or other app's crate.
                assert!(purls.iter().any(|purl| purl.starts_with("pkg:cargo/wordcount@")), "{purls:?}");
                assert!(
                    !purls.iter().any(|purl| purl.starts_with("pkg:cargo/percent-encoding@")),
                    "hello-api's crate is not worker's: {purls:?}"
                );
                assert!(!purls.iter().any(|purl| purl.starts_with("pkg:cargo/offline-query@")), "a proc macro runs on the host: {purls:?}");
            } else {
                assert_eq!(document["_type"], "https://in-toto.io/Statement/v1");
                assert_eq!(document["predicateType"], "https://slsa.dev/provenance/v1");
                assert_eq!(document["subject"][0]["digest"]["sha256"], &subject[7..]);
                assert_eq!(document["predicate"]["buildDefinition"]["externalParameters"]["revision"], sha.as_str());
            }
        }
    }

    // Attaching changes no image: a release without attestations writes the same index.
    let plain = format!("{}/acme/plain", registry.host);
    scratch.xtask_ok(&["release", "worker", "--no-attest", "--repository", &plain]);
    assert_eq!(skopeo_raw(&format!("docker://{plain}:worker-latest")), index);

    // The same command again (its provenance records the command line).
    let before = registry.requests().len();
    scratch.xtask_ok(&["release", "worker", "--repository", &repository]);
    let writes: Vec<String> =
        registry.requests()[before..].iter().filter(|r| r.starts_with("PUT") || r.starts_with("POST")).cloned().collect();
    assert!(writes.is_empty(), "an unchanged re-release writes nothing: {writes:#?}");

    // Attested but not signed: verify says so (exit 2).
    let key = documents.path().join("cosign.pub");
    let made = run(Command::new("sh")
        .arg("-c")
        .arg(format!("openssl ecparam -name prime256v1 -genkey -noout | openssl ec -pubout -out {}", key.display())));
    assert!(made.status.success(), "{}", stderr(&made));
    let output = scratch.xtask(&["verify", "worker", "--key", key.to_str().unwrap(), "--repository", &repository]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("is not signed: no sha256-"), "{}", stderr(&output));
}

/// rust-audit-info (crates.io), as tests/ci.sh installs it (XTASK_TEST_RUST_AUDIT_INFO).
fn rust_audit_info() -> String {
    std::env::var("XTASK_TEST_RUST_AUDIT_INFO").unwrap_or_else(|_| "rust-audit-info".into())
}

/// The tags of the OCI layout `dir`, each with the digest it names.
fn layout_tags(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let tag = |m: &serde_json::Value| {
        Some((m["annotations"]["org.opencontainers.image.ref.name"].as_str()?.to_string(), m["digest"].as_str()?.to_string()))
    };
    index["manifests"].as_array().unwrap().iter().filter_map(tag).collect()
}

/// The package URLs of the crates an SPDX document lists.
fn cargo_purls(spdx: &serde_json::Value) -> Vec<&str> {
    spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .filter(|purl| purl.starts_with("pkg:cargo/"))
        .collect()
}

/// A blob of the OCI layout `dir`, parsed as JSON.
fn layout_json(dir: &std::path::Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap()).unwrap()
}

/// Validates a CycloneDX document (argv[1]) against the CycloneDX 1.6 JSON schema with PyPI's
/// cyclonedx-python-lib, offline (its schemas are in the package).
const CYCLONEDX_VALIDATE_PY: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if error is not None:
    sys.exit(getattr(error.data, "message", str(error)))
"#;

#[test]
fn configured_cyclonedx_boms_are_valid_and_list_the_crates_of_the_spdx_ones() {
    let scratch = Scratch::new();
    scratch
        .edit("Cargo.toml", |manifest| format!("{manifest}\n[workspace.metadata.xtask.supply-chain]\nsbom = [\"spdx\", \"cyclonedx\"]\n"));
    scratch.commit("both formats");
    let layout = tempfile::tempdir().unwrap();
    let dir = layout.path();
    scratch.xtask_ok(&["release", "hello-api", "--attest", "--repository", &format!("oci:{}", dir.display())]);
    let tags = layout_tags(dir);
    let index = layout_json(dir, &tags["hello-api-latest"]);
    let script = dir.join("validate.py");
    std::fs::write(&script, CYCLONEDX_VALIDATE_PY).unwrap();
    for platform in index["manifests"].as_array().unwrap() {
        let subject = platform["digest"].as_str().unwrap();
        let listed = layout_json(dir, &tags[&subject.replace(':', "-")]);
        let payload = |artifact_type: &str| -> serde_json::Value {
            let entry = listed["manifests"].as_array().unwrap().iter().find(|m| m["artifactType"] == artifact_type).expect(artifact_type);
            let artifact = layout_json(dir, entry["digest"].as_str().unwrap());
            assert_eq!(artifact["subject"]["digest"], subject);
            layout_json(dir, artifact["layers"][0]["digest"].as_str().unwrap())
        };
        let cyclonedx = payload("application/vnd.cyclonedx+json");
        let path = dir.join(format!("{}.cdx.json", &subject[7..19]));
        std::fs::write(&path, serde_json::to_vec(&cyclonedx).unwrap()).unwrap();
        let validated = run(Command::new(python()).arg(&script).arg(&path));
        assert!(validated.status.success(), "cyclonedx-python-lib refuses the document: {}", stderr(&validated));
        let spdx = payload("application/spdx+json");
        let spdx_purls: std::collections::BTreeSet<&str> = cargo_purls(&spdx).into_iter().collect();
        let cyclonedx_purls: std::collections::BTreeSet<&str> =
            cyclonedx["components"].as_array().unwrap().iter().filter_map(|c| c["purl"].as_str()).collect();
        assert!(spdx_purls.iter().any(|purl| purl.starts_with("pkg:cargo/percent-encoding@")), "{spdx_purls:?}");
        assert_eq!(cyclonedx_purls, spdx_purls);
        assert_eq!(cyclonedx["metadata"]["component"]["hashes"][0]["content"], &subject[7..]);
    }
    let listed = scratch.xtask_ok(&["images", "hello-api", "--repository", &format!("oci:{}", dir.display())]);
    assert!(listed.contains("[provenance, sbom, sbom-cyclonedx]"), "{listed}");
}

#[test]
fn both_binaries_embed_the_crates_of_their_sbom_as_rust_audit_info_reads_them() {
    let scratch = Scratch::new();
    let layout = tempfile::tempdir().unwrap();
    let dir = layout.path();
    scratch.xtask_ok(&["release", "hello-api", "--attest", "--repository", &format!("oci:{}", dir.display())]);

    let tags = layout_tags(dir);
    let tagged = |tag: &str| tags.get(tag).unwrap_or_else(|| panic!("{tag} is in the layout: {tags:#?}")).clone();
    let index = layout_json(dir, &tagged("hello-api-latest"));
    let binaries = tempfile::tempdir().unwrap();
    for entry in index["manifests"].as_array().unwrap() {
        let platform = format!("{}/{}", entry["platform"]["os"].as_str().unwrap(), entry["platform"]["architecture"].as_str().unwrap());
        let subject = entry["digest"].as_str().unwrap();
        // The binary as the image carries it: the top layer (the Dockerfile's COPY).
        let manifest = layout_json(dir, subject);
        let layer = manifest["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap().to_string();
        let gzip = std::fs::File::open(dir.join("blobs/sha256").join(&layer[7..])).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gzip));
        let binary = binaries.path().join(platform.replace('/', "-"));
        let found = archive.entries().unwrap().map(Result::unwrap).find(|entry| entry.path().unwrap().ends_with("usr/local/bin/hello-api"));
        found.expect("the top layer holds the binary").unpack(&binary).unwrap();
        let read = run(Command::new(rust_audit_info()).arg(&binary));
        assert!(read.status.success(), "rust-audit-info reads no list from the {platform} binary: {}", stderr(&read));
        let embedded: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
        let mut embedded: Vec<String> = embedded["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("pkg:cargo/{}@{}", p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
            .collect();
        embedded.sort();

        // The SBOM attached to the same platform image, through the layout's referrers tag.
        let referrers = layout_json(dir, &tagged(&subject.replace(':', "-")));
        let sbom_artifact =
            referrers["manifests"].as_array().unwrap().iter().find(|m| m["artifactType"] == "application/spdx+json").unwrap();
        let artifact = layout_json(dir, sbom_artifact["digest"].as_str().unwrap());
        let sbom = layout_json(dir, artifact["layers"][0]["digest"].as_str().unwrap());
        let mut listed: Vec<String> = cargo_purls(&sbom).into_iter().map(|purl| purl.split('?').next().unwrap().to_string()).collect();
        listed.sort();
        assert_eq!(embedded, listed, "{platform}: the binary's list is the SBOM's crates");
        assert!(listed.iter().any(|purl| purl.starts_with("pkg:cargo/percent-encoding@")), "a crates.io crate is listed: {listed:?}");
    }
}

/// An advisory database (rustsec/advisory-db's layout) with one critical advisory against
/// percent-encoding, which hello-api compiles and worker does not.
fn advisory_database(dir: &std::path::Path) {
    let crate_dir = dir.join("crates/percent-encoding");
    std::fs::create_dir_all(&crate_dir).unwrap();
    std::fs::write(
        crate_dir.join("RUSTSEC-2099-0001.md"),
        "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"percent-encoding\"\ndate = \"2099-01-01\"\n\
         url = \"https://example.com/RUSTSEC-2099-0001\"\ncvss = \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\"\n\n\
         [versions]\npatched = [\">= 99.0.0\"]\n```\n\n# Decoding can overflow\n\nA test advisory.\n",
    )
    .unwrap();
}

#[test]
fn an_advisory_against_one_apps_crate_refuses_that_app_on_a_local_layout_and_releases_the_other() {
    let scratch = Scratch::new();
    let database = tempfile::tempdir().unwrap();
    advisory_database(database.path());
    let layout = tempfile::tempdir().unwrap();
    let repository = format!("oci:{}", layout.path().display());
    let step_summary = tempfile::NamedTempFile::new().unwrap();
    let summary_path = step_summary.path().to_str().unwrap().to_string();
    let output = scratch.xtask_with_env(
        &[
            "release",
            "hello-api",
            "worker",
            "--no-attest",
            "--max-critical",
            "0",
            "--advisory-db",
            database.path().to_str().unwrap(),
            "--repository",
            &repository,
            "--json",
        ],
        &[("GITHUB_STEP_SUMMARY", summary_path.as_str())],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains("CRITICAL  RUSTSEC-2099-0001 percent-encoding 2.3.2: Decoding can overflow (fixed in >=99.0.0)"), "{log}");
    assert!(log.contains("hello-api: the RustSec advisories against its crates exceed the gate (1 CRITICAL finding, more than the 0 that max-critical allows): RUSTSEC-2099-0001 (CRITICAL percent-encoding 2.3.2)"), "{log}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let app = |name: &str| summary["apps"].as_array().unwrap().iter().find(|app| app["name"] == name).unwrap().clone();
    assert_eq!(app("hello-api")["advisories"][0]["id"], "RUSTSEC-2099-0001");
    assert_eq!(app("worker")["advisories"], serde_json::json!([]));
    let markdown = std::fs::read_to_string(step_summary.path()).unwrap();
    assert!(markdown.contains("| hello-api | RUSTSEC-2099-0001 | CRITICAL | percent-encoding 2.3.2 | >=99.0.0 |"), "{markdown}");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.path().join("index.json")).unwrap()).unwrap();
    let mut tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    tags.sort();
    assert_eq!(tags, [format!("worker-{}", scratch.head()).as_str(), "worker-latest"], "hello-api is not tagged, worker is");
}

#[test]
fn the_configuration_attests_signs_and_names_the_advisory_database_and_sharded_releases_are_attested_and_signed_too() {
    let scratch = Scratch::new();
    // The database and the key live outside the commit (target/ is ignored), as in CI.
    advisory_database(&scratch.path().join("target/advisory-db"));
    scratch.edit("Cargo.toml", |manifest| {
        format!("{manifest}\n[workspace.metadata.xtask.supply-chain]\nattest = true\nsign = \"env://RELEASE_KEY\"\nadvisory-db = \"target/advisory-db\"\n")
    });
    scratch.commit("supply chain settings");
    let keys = openssl_keys();
    let key = std::fs::read_to_string(keys.path().join("cosign.key")).unwrap();
    let public = keys.path().join("cosign.pub").to_str().unwrap().to_string();
    let layout = tempfile::tempdir().unwrap();
    let repository = format!("oci:{}", layout.path().display());

    // No key in the environment: the configured signing says what to do (exit 2).
    let output = scratch.xtask(&["release", "worker", "--repository", &repository]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`sign` in [workspace.metadata.xtask.supply-chain] names the variable RELEASE_KEY, which is not set: set it to the PEM key, or release with --no-sign"),
        "{}",
        stderr(&output)
    );

    // With it: hello-api is refused by the configured database, worker is attested and signed.
    let output = scratch.xtask_with_env(
        &["release", "hello-api", "worker", "--max-critical", "0", "--repository", &repository],
        &[("RELEASE_KEY", key.as_str())],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("hello-api: the RustSec advisories against its crates exceed the gate"), "{}", stderr(&output));
    let tags = layout_tags(layout.path());
    let names: Vec<&str> = tags.keys().map(String::as_str).collect();
    let worker_index = tags.get("worker-latest").expect("worker is released").replace(':', "-");
    assert!(names.contains(&format!("{worker_index}.sig").as_str()), "the index is signed: {names:?}");
    assert_eq!(
        names.iter().filter(|name| name.starts_with("sha256-") && !name.ends_with(".sig")).count(),
        2,
        "one list of attestations per platform: {names:?}"
    );
    assert!(!names.iter().any(|name| name.starts_with("hello-api")), "{names:?}");

    // A job of a sharded release attests the platform image it pushes and signs its provenance;
    // the merge signs the index before tagging it, and the whole verifies.
    let sharded = scratch.path().join("target/sharded");
    let mut records = Vec::new();
    for platform in ["linux/arm64", "linux/amd64"] {
        let output = scratch.xtask_with_env(
            &["release", "worker", "--platform", platform, "--by-digest", "--repository", "oci:target/sharded"],
            &[("RELEASE_KEY", key.as_str())],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let manifest = record["apps"]["worker"]["manifests"][0]["digest"].as_str().unwrap().replace(':', "-");
        if records.is_empty() {
            let tags: Vec<String> = layout_tags(&sharded).into_keys().collect();
            assert_eq!(tags, [manifest], "the platform image's attestations, listed by the tag schema");
        }
        let path = scratch.path().join(format!("target/{}.json", platform.replace('/', "-")));
        std::fs::write(&path, &output.stdout).unwrap();
        records.push(path.to_str().unwrap().to_string());
    }
    let output = scratch.xtask(&["merge", &records[0], &records[1]]);
    assert_eq!(output.status.code(), Some(2), "the configured key is needed to merge too: {}", stderr(&output));
    assert!(stderr(&output).contains("names the variable RELEASE_KEY, which is not set"), "{}", stderr(&output));
    assert!(!layout_tags(&sharded).contains_key("worker-latest"), "nothing is tagged without the signature");
    let output = scratch.xtask_with_env(&["merge", &records[0], &records[1]], &[("RELEASE_KEY", key.as_str())]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("worker-latest, signed"), "{}", String::from_utf8_lossy(&output.stdout));
    let verified = scratch.xtask_ok(&["verify", "worker", "--key", &public, "--repository", "oci:target/sharded"]);
    assert!(
        verified.contains("linux/amd64: signed provenance verified") && verified.contains("linux/arm64: signed provenance verified"),
        "{verified}"
    );
}

/// Python with PyPI's `cryptography`, as tests/ci.sh installs it (XTASK_TEST_PYTHON).
fn python() -> String {
    std::env::var("XTASK_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Checks with `cryptography` that `signature` (base64 DER) signs `message` with the PEM key.
const VERIFY_PY: &str = r#"
import base64, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = serialization.load_pem_public_key(open(sys.argv[1], "rb").read())
message = open(sys.argv[2], "rb").read()
key.verify(base64.b64decode(open(sys.argv[3]).read()), message, ec.ECDSA(hashes.SHA256()))
print("verified")
"#;

/// A directory with an ECDSA P-256 key pair made by openssl: `cosign.key` (PKCS#8 PEM) and
/// `cosign.pub`, and the SEC1 key it came from, `ec.pem`.
fn openssl_keys() -> tempfile::TempDir {
    let keys = tempfile::tempdir().unwrap();
    let path = |name: &str| keys.path().join(name).to_str().unwrap().to_string();
    for args in [
        vec!["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &path("ec.pem")],
        vec!["pkcs8", "-topk8", "-nocrypt", "-in", &path("ec.pem"), "-out", &path("cosign.key")],
        vec!["ec", "-in", &path("ec.pem"), "-pubout", "-out", &path("cosign.pub")],
    ] {
        let output = run(Command::new("openssl").args(&args));
        assert!(output.status.success(), "openssl {args:?}: {}", stderr(&output));
    }
    keys
}

#[test]
fn signed_releases_verify_with_their_key_independently_too_and_a_tampered_payload_fails() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let repository = format!("{}/acme/prod", registry.host);
    let keys = openssl_keys();
    let path = |name: &str| keys.path().join(name).to_str().unwrap().to_string();
    let released = scratch.head();
    let release = scratch.xtask(&["release", "worker", "--attest", "--sign", &path("cosign.key"), "--repository", &repository]);
    assert!(release.status.success(), "{}", stderr(&release));
    let secret = std::fs::read_to_string(path("cosign.key")).unwrap();
    let secret_line = secret.lines().nth(1).unwrap();
    assert!(
        !stderr(&release).contains(secret_line) && !String::from_utf8_lossy(&release.stdout).contains(secret_line),
        "the key never appears"
    );

    let verified = scratch.xtask_ok(&["verify", "worker", "--key", &path("cosign.pub"), "--repository", &repository]);
    assert!(
        verified.contains("worker: worker-latest (sha256:") && verified.contains(&format!("is signed by {}", path("cosign.pub"))),
        "{verified}"
    );
    assert!(
        verified.contains("linux/amd64: signed provenance verified") && verified.contains("linux/arm64: signed provenance verified"),
        "{verified}"
    );

    // The signature, read as cosign stores it, verifies with `cryptography` too.
    let index = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{repository}:worker-latest")]).stdout;
    let index_digest = format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(&index));
    let signatures = skopeo_raw(&format!("docker://{repository}:{}.sig", index_digest.replace(':', "-")));
    let layer = &signatures["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json");
    let payload_digest = layer["digest"].as_str().unwrap();
    let payload = registry.storage().blob(payload_digest).unwrap();
    let payload_json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload_json["critical"]["image"]["docker-manifest-digest"], index_digest.as_str());
    std::fs::write(path("payload"), &payload).unwrap();
    std::fs::write(path("signature"), layer["annotations"]["dev.cosignproject.cosign/signature"].as_str().unwrap()).unwrap();
    std::fs::write(path("verify.py"), VERIFY_PY).unwrap();
    let checked = run(Command::new(python()).args([&path("verify.py"), &path("cosign.pub"), &path("payload"), &path("signature")]));
    assert!(checked.status.success(), "cryptography refuses the signature: {}", stderr(&checked));

    // A signed re-release of the same commit writes nothing.
    let before = registry.requests().len();
    scratch.xtask_ok(&["release", "worker", "--attest", "--sign", &path("cosign.key"), "--repository", &repository]);
    let writes: Vec<String> =
        registry.requests()[before..].iter().filter(|r| r.starts_with("PUT") || r.starts_with("POST")).cloned().collect();
    assert!(writes.is_empty(), "{writes:#?}");

    // The listing says what the image carries; a promotion takes it along and it verifies there.
    let listed = scratch.xtask_ok(&["images", "worker", "--repository", &repository]);
    assert!(listed.contains("[provenance, sbom, signature]"), "{listed}");
    scratch.edit("Cargo.toml", |manifest| {
        format!(
            "{manifest}\n[workspace.metadata.xtask.environments]\nstaging = \"{repository}\"\nproduction = \"{}/acme/live\"\n",
            registry.host
        )
    });
    scratch.commit("environments");
    scratch.xtask_ok(&["promote", "worker", "--from", "staging", "--to", "production", "--tag", "worker-latest"]);
    let live = format!("{}/acme/live", registry.host);
    let there = scratch.xtask_ok(&["verify", "worker", "--key", &path("cosign.pub"), "--repository", &live]);
    assert!(there.contains(&format!("for {repository}")) && there.contains("linux/arm64: signed provenance verified"), "{there}");
    // Deleting the image deletes what it carries.
    let sha_tag = format!("worker-{released}");
    scratch.xtask_ok(&["delete", "worker", "--tag", &sha_tag, "--tag", "worker-latest", "--repository", &live]);
    let left: Vec<String> = registry.storage().tags("acme/live").into_iter().map(|(tag, _)| tag).collect();
    assert!(left.is_empty(), "the signature and attestation tags go with the image: {left:?}");

    // A payload changed behind the registry's back fails verification, with what failed.
    let tampered = String::from_utf8(payload.clone()).unwrap().replace(&index_digest[7..15], "00000000");
    registry.storage().replace_blob(payload_digest, tampered.as_bytes());
    let output = scratch.xtask(&["verify", "worker", "--key", &path("cosign.pub"), "--repository", &repository]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("worker: verification of worker-latest in"), "{}", stderr(&output));
    assert!(stderr(&output).contains("corrupt blob"), "{}", stderr(&output));
}

#[test]
fn on_a_registry_with_the_referrers_api_attachments_are_untagged_and_listing_promotion_and_deletion_find_them() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let api = ReferrersApi::start(&registry.host);
    let repository = format!("{}/acme/prod", api.host);
    let keys = openssl_keys();
    let key = keys.path().join("cosign.key").to_str().unwrap().to_string();
    let public = keys.path().join("cosign.pub").to_str().unwrap().to_string();
    let released = scratch.head();
    scratch.xtask_ok(&["release", "worker", "--attest", "--sign", &key, "--repository", &repository]);

    // Each platform image's SBOM and provenance are listed by the API; no tag schema index.
    let index = skopeo_raw(&format!("docker://{repository}:worker-latest"));
    let subjects: Vec<String> = index["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(subjects.len(), 2);
    for subject in &subjects {
        let artifacts = api.referrers("acme/prod", subject);
        let types: std::collections::BTreeSet<String> = artifacts
            .iter()
            .map(|digest| skopeo_raw(&format!("docker://{repository}@{digest}"))["artifactType"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(types, ["application/spdx+json".to_string(), "application/vnd.in-toto+json".to_string()].into());
    }
    let tags: Vec<String> = registry.storage().tags("acme/prod").into_iter().map(|(tag, _)| tag).collect();
    assert_eq!(tags.iter().filter(|tag| tag.starts_with("sha256-") && !tag.ends_with(".sig")).count(), 0, "{tags:?}");
    assert!(api.lists_answered() >= 2);

    let before = registry.requests().len();
    scratch.xtask_ok(&["release", "worker", "--attest", "--sign", &key, "--repository", &repository]);
    let writes: Vec<String> =
        registry.requests()[before..].iter().filter(|r| r.starts_with("PUT") || r.starts_with("POST")).cloned().collect();
    assert!(writes.is_empty(), "an unchanged re-release writes nothing: {writes:#?}");
    let verified = scratch.xtask_ok(&["verify", "worker", "--key", &public, "--repository", &repository]);
    assert!(verified.contains("linux/amd64: signed provenance verified"), "{verified}");
    let listed = scratch.xtask_ok(&["images", "worker", "--repository", &repository]);
    assert!(listed.contains("[provenance, sbom, signature]"), "{listed}");

    // Promotion copies the artifacts into the other repository, where the API lists them too.
    let live = format!("{}/acme/live", api.host);
    scratch.edit("Cargo.toml", |manifest| {
        format!("{manifest}\n[workspace.metadata.xtask.environments]\nstaging = \"{repository}\"\nproduction = \"{live}\"\n")
    });
    scratch.commit("environments");
    scratch.xtask_ok(&["promote", "worker", "--from", "staging", "--to", "production", "--tag", "worker-latest"]);
    for subject in &subjects {
        assert_eq!(api.referrers("acme/live", subject), api.referrers("acme/prod", subject));
    }
    let there = scratch.xtask_ok(&["verify", "worker", "--key", &public, "--repository", &live]);
    assert!(there.contains("linux/arm64: signed provenance verified"), "{there}");

    // Deleting the image deletes its artifacts, which the API then no longer lists.
    let attached = api.referrers("acme/live", &subjects[0]);
    scratch.xtask_ok(&["delete", "worker", "--tag", &format!("worker-{released}"), "--tag", "worker-latest", "--repository", &live]);
    for subject in &subjects {
        assert_eq!(api.referrers("acme/live", subject), Vec::<String>::new());
    }
    let left: Vec<String> = registry.storage().tags("acme/live").into_iter().map(|(tag, _)| tag).collect();
    assert!(left.is_empty(), "{left:?}");
    let gone = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{live}@{}", attached[0])]);
    assert!(!gone.status.success(), "the deleted SBOM manifest is still served");
}

/// Seals a PKCS#8 PEM key as `cosign generate-key-pair` does (scrypt N=32768 r=8 p=1, NaCl
/// secretbox), with PyPI's PyNaCl: argv = key.pem, password, output.
const COSIGN_KEY_PY: &str = r#"
import base64, hashlib, json, os, sys
from cryptography.hazmat.primitives import serialization
import nacl.secret
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
salt, nonce = os.urandom(32), os.urandom(24)
secret = hashlib.scrypt(sys.argv[2].encode(), salt=salt, n=32768, r=8, p=1, dklen=32, maxmem=64 * 1024 * 1024)
sealed = nacl.secret.SecretBox(secret).encrypt(der, nonce).ciphertext
document = {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": base64.b64encode(salt).decode()},
            "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
            "ciphertext": base64.b64encode(sealed).decode()}
body = base64.b64encode(json.dumps(document).encode()).decode()
lines = [body[i:i + 64] for i in range(0, len(body), 64)]
open(sys.argv[3], "w").write("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
"#;

#[test]
fn cosigns_encrypted_key_signs_with_cosign_password_and_a_wrong_one_is_refused() {
    let scratch = Scratch::new();
    let layout = tempfile::tempdir().unwrap();
    let repository = format!("oci:{}", layout.path().display());
    let keys = tempfile::tempdir().unwrap();
    let path = |name: &str| keys.path().join(name).to_str().unwrap().to_string();
    let openssl = run(Command::new("sh").arg("-c").arg(format!(
        "openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out {} && openssl pkey -in {} -pubout -out {}",
        path("plain.key"),
        path("plain.key"),
        path("cosign.pub")
    )));
    assert!(openssl.status.success(), "{}", stderr(&openssl));
    std::fs::write(path("seal.py"), COSIGN_KEY_PY).unwrap();
    let sealed = run(Command::new(python()).args([&path("seal.py"), &path("plain.key"), "correct horse", &path("cosign.key")]));
    assert!(sealed.status.success(), "{}", stderr(&sealed));

    let wrong = scratch.xtask_with_env(
        &["release", "worker", "--sign", &path("cosign.key"), "--repository", &repository],
        &[("COSIGN_PASSWORD", "battery staple")],
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(stderr(&wrong).contains("COSIGN_PASSWORD does not open cosign.key: check the password"), "{}", stderr(&wrong));
    let unset = scratch.xtask(&["release", "worker", "--sign", &path("cosign.key"), "--repository", &repository]);
    assert!(stderr(&unset).contains("set COSIGN_PASSWORD"), "{}", stderr(&unset));

    let release = ["release", "worker", "--attest", "--sign", &path("cosign.key"), "--repository", &repository];
    let output = scratch.xtask_with_env(&release, &[("COSIGN_PASSWORD", "correct horse")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let tags = layout_tags(layout.path());
    assert!(tags.keys().any(|tag| tag.ends_with(".sig")), "the signature is in the layout: {tags:?}");
    let verified = scratch.xtask_ok(&["verify", "worker", "--key", &path("cosign.pub"), "--repository", &repository]);
    assert!(verified.contains("is signed by"), "{verified}");
}
