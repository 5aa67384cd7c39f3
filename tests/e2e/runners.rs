//! A release split across runners: one process per platform pushes by digest
//! (`release --by-digest`), and `merge` assembles the index and moves the tags only when every
//! platform is in the repository.

use crate::support::harness::{skopeo_raw, stderr, Registry, Scratch};

#[test]
fn platform_jobs_push_by_digest_and_merge_tags_only_a_whole_index() {
    let registry = Registry::start();
    let repository = format!("{}/acme/prod", registry.host);
    // Two checkouts of one commit, as two runners have.
    let amd64 = Scratch::new();
    let arm64 = Scratch::clone_of(&amd64);
    let sha = amd64.head();
    let job = |scratch: &Scratch, platform: &str| {
        scratch.xtask_ok(&["release", "worker", "--platform", platform, "--by-digest", "--no-attest", "--repository", &repository])
    };
    let (amd64_record, arm64_record) = std::thread::scope(|threads| {
        let amd64_job = threads.spawn(|| job(&amd64, "linux/amd64"));
        let arm64_job = threads.spawn(|| job(&arm64, "linux/arm64"));
        (amd64_job.join().unwrap(), arm64_job.join().unwrap())
    });
    assert!(registry.storage().tags("acme/prod").is_empty(), "pushing by digest writes no tag");
    let pushed: serde_json::Value = serde_json::from_str(&arm64_record).unwrap();
    assert_eq!(pushed["revision"], sha.as_str());
    let arm64_manifest = pushed["apps"]["worker"]["manifests"][0].clone();
    assert_eq!(arm64_manifest["platform"]["architecture"], "arm64", "{pushed:#}");
    // The records travel as CI artifacts, outside the checkout.
    let artifacts = tempfile::tempdir().unwrap();
    let record = |name: &str, text: &str| {
        let path = artifacts.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (amd64_file, arm64_file) = (record("amd64.json", &amd64_record), record("arm64.json", &arm64_record));

    // A platform missing: an error naming it, and no tag.
    let output = amd64.xtask(&["merge", &amd64_file]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("worker has no linux/arm64 image among the records given (they hold linux/amd64): nothing was tagged"),
        "{}",
        stderr(&output)
    );
    assert!(registry.storage().tags("acme/prod").is_empty());

    let before = registry.requests().len();
    amd64.xtask_ok(&["merge", &amd64_file, &arm64_file]);
    let tags: Vec<String> = registry.storage().tags("acme/prod").into_iter().map(|(tag, _)| tag).collect();
    assert_eq!(tags, [format!("worker-{sha}"), "worker-latest".to_string()]);
    let index = skopeo_raw(&format!("docker://{repository}:worker-latest"));
    let platforms: Vec<&str> =
        index["manifests"].as_array().unwrap().iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    assert_eq!(index["manifests"][1]["digest"], arm64_manifest["digest"], "the index names the image the arm64 job pushed");
    assert_eq!(index["annotations"]["org.opencontainers.image.revision"], sha.as_str());
    let requests = registry.requests()[before..].to_vec();
    let position = |tag: &str| requests.iter().position(|r| r.starts_with("PUT") && r.contains(&format!("/manifests/{tag}"))).unwrap();
    assert!(position(&format!("worker-{sha}")) < position("worker-latest"), "{requests:#?}");
    assert!(!requests.iter().any(|r| r.contains("/blobs/uploads/")), "merge moves no blob: {requests:#?}");

    // The merged index is what a single release of the commit writes: that release changes nothing.
    let before = registry.requests().len();
    amd64.xtask_ok(&["release", "worker", "--no-attest", "--repository", &repository]);
    let writes: Vec<String> =
        registry.requests()[before..].iter().filter(|r| r.starts_with("PUT") || r.starts_with("POST")).cloned().collect();
    assert!(writes.is_empty(), "{writes:#?}");
}
