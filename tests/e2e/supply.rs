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
