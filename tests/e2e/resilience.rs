//! Releases over a bad network and releases killed half-way: they complete (or complete on the
//! rerun) with the digests of a clean run, and at no moment does a tag name an image whose blobs
//! are missing. The invariant is checked on the registry's storage after every request.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::harness::{stderr, Registry, Scratch};
use crate::support::proxy::{Fault, FaultProxy};

const REPOSITORY: &str = "acme/prod";

/// `app → index digest` from `release --json`.
fn released_digests(output: &str) -> BTreeMap<String, String> {
    let json: serde_json::Value = serde_json::from_str(output).unwrap();
    json["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|app| (app["name"].as_str().unwrap().into(), app["digest"].as_str().unwrap().into()))
        .collect()
}

fn checked_proxy(registry: &Registry, schedule: Vec<Fault>) -> FaultProxy {
    let storage = registry.storage();
    FaultProxy::start_checked(&registry.host, schedule, Arc::new(move || storage.dangling_tags(REPOSITORY)))
}

#[test]
fn a_release_through_a_faulty_network_ends_with_the_clean_digests_and_never_a_dangling_tag() {
    let scratch = Scratch::new();
    let clean = Registry::start();
    let expected =
        released_digests(&scratch.xtask_ok(&["release", "--all", "--json", "--repository", &format!("{}/{REPOSITORY}", clean.host)]));

    let registry = Registry::start();
    // One request in four meets a fault.
    let faults =
        [Fault::Status(503), Fault::ResetMidBody, Fault::TooManyRequests, Fault::Stall(700), Fault::Status(500), Fault::Status(502)];
    let schedule: Vec<Fault> = faults.into_iter().flat_map(|fault| [Fault::Pass, Fault::Pass, Fault::Pass, fault]).collect();
    let proxy = checked_proxy(&registry, schedule);
    let output = scratch.xtask_ok(&["release", "--all", "--json", "--repository", &format!("{}/{REPOSITORY}", proxy.host)]);
    assert_eq!(released_digests(&output), expected, "a release through faults must give the clean run's digests");
    assert!(proxy.faults_injected() >= 6, "only {} faults were injected", proxy.faults_injected());
    assert_eq!(proxy.violations(), Vec::<String>::new());
    let tags = registry.storage().tags(REPOSITORY);
    for (app, digest) in &expected {
        let latest = tags.iter().find(|(tag, _)| *tag == format!("{app}-latest")).map(|(_, digest)| digest);
        assert_eq!(latest, Some(digest), "{app}-latest");
    }

    // The check itself sees a tag whose layer is gone.
    let layer = registry.storage().blobs().into_iter().find(|digest| !expected.values().any(|index| index == digest)).unwrap();
    registry.storage().remove_blob(&layer);
    assert!(!registry.storage().dangling_tags(REPOSITORY).is_empty(), "removing {layer} left no dangling tag");
}

#[test]
fn killed_releases_leave_no_dangling_tag_and_the_rerun_sends_only_what_is_missing() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    // Every request waits, so that the kills land during the push and not after it.
    let proxy = checked_proxy(&registry, vec![Fault::Stall(120)]);
    let repository = format!("{}/{REPOSITORY}", proxy.host);
    scratch.xtask_ok(&["build", "--all"]);

    let mut interrupted = 0;
    for delay in [300, 800, 1300, 1900, 2600] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["release", "--all", "--repository", &repository])
            .current_dir(scratch.path())
            .env_remove("XTASK_REPOSITORY")
            .env_remove("XTASK_PLATFORMS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(registry.storage().dangling_tags(REPOSITORY), Vec::<String>::new(), "after a kill at {delay} ms");
    }
    assert!(interrupted >= 3, "only {interrupted} of the releases were still running when killed");

    // A stalled request of a killed release may still complete at the registry: what is stored
    // is read once those have ended.
    proxy.wait_idle();
    let stored = registry.storage().blobs();
    let before = registry.requests().len();
    let output = scratch.xtask(&["release", "--all", "--repository", &repository]);
    assert!(output.status.success(), "the rerun failed: {}", stderr(&output));
    let uploaded: Vec<String> = registry.requests()[before..]
        .iter()
        .filter(|request| request.starts_with("PUT") && request.contains("/blobs/uploads/"))
        .filter_map(|request| request.split("digest=").nth(1).map(|rest| rest.split([' ', '&']).next().unwrap().replace("%3A", ":")))
        .collect();
    let again: Vec<&String> = uploaded.iter().filter(|digest| stored.contains(*digest)).collect();
    assert!(again.is_empty(), "the rerun uploaded blobs that had arrived before: {again:?}");
    assert_eq!(proxy.violations(), Vec::<String>::new());
    assert_eq!(registry.storage().dangling_tags(REPOSITORY), Vec::<String>::new());
    let tags: Vec<String> = registry.storage().tags(REPOSITORY).into_iter().map(|(tag, _)| tag).collect();
    assert!(tags.contains(&"hello-api-latest".to_string()) && tags.contains(&"worker-latest".to_string()), "{tags:?}");
}
