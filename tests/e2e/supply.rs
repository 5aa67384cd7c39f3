//! Supply chain: `release --attest` attaches to every platform image an SPDX bill of materials
//! and a SLSA provenance statement as OCI 1.1 artifacts, found through the referrers tag schema
//! of the registry (distribution 2.8 has no referrers API) and checked with independent tools.

use std::process::Command;

use crate::support::harness::{run, skopeo_raw, stderr, Registry, Scratch};

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
    scratch.xtask_ok(&["release", "worker", "--attest", "--repository", &repository]);

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
                let purls: Vec<&str> = document["packages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
                    .filter(|purl| purl.starts_with("pkg:cargo/"))
                    .collect();
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
    scratch.xtask_ok(&["release", "worker", "--repository", &plain]);
    assert_eq!(skopeo_raw(&format!("docker://{plain}:worker-latest")), index);

    let before = registry.requests().len();
    scratch.xtask_ok(&["release", "worker", "--attest", "--repository", &repository]);
    let writes: Vec<String> =
        registry.requests()[before..].iter().filter(|r| r.starts_with("PUT") || r.starts_with("POST")).cloned().collect();
    assert!(writes.is_empty(), "an unchanged re-release writes nothing: {writes:#?}");
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
