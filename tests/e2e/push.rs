//! `cargo xtask push`: the protocol engine against a real registry, read back with skopeo.

use crate::support::harness::{make_layout, skopeo, stderr, Registry, Scratch};
use crate::support::proxy::{Fault, FaultProxy};

fn push(scratch: &Scratch, layout: &std::path::Path, reference: &str, extra: &[&str]) -> std::process::Output {
    let layout = layout.display().to_string();
    let mut args = vec!["push", layout.as_str(), reference];
    args.extend_from_slice(extra);
    scratch.xtask(&args)
}

fn assert_copyable(reference: &str, extra: &[&str]) {
    let dest = tempfile::tempdir().unwrap();
    let mut args = vec!["copy", "--src-tls-verify=false"];
    args.extend_from_slice(extra);
    let target = format!("oci:{}:copy", dest.path().display());
    args.extend([reference, target.as_str()]);
    let output = skopeo(&args);
    assert!(output.status.success(), "skopeo could not copy {reference}: {}", stderr(&output));
}

#[test]
fn chunked_uploads_and_a_repeated_push_that_sends_nothing() {
    let scratch = Scratch::empty();
    let registry = Registry::start();
    let layout = make_layout(&scratch.path().join("layout"), &[12 << 20, 1000], 1);
    let reference = format!("{}/acme/prod:big", registry.host);
    let output = push(&scratch, &layout, &reference, &["--chunk-size", "5"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let patches = registry.requests().iter().filter(|r| r.starts_with("PATCH")).count();
    assert_eq!(patches, 5, "a 12 MiB layer in 5 MiB chunks is 3 PATCHes, the 1000-byte layer and the config 1 each");
    assert_copyable(&format!("docker://{reference}"), &[]);

    let before = registry.requests().len();
    let output = push(&scratch, &layout, &reference, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let second = &registry.requests()[before..];
    let heads = second.iter().filter(|r| r.starts_with("HEAD")).count();
    let writes: Vec<&String> = second.iter().filter(|r| r.starts_with("POST") || r.starts_with("PUT") || r.starts_with("PATCH")).collect();
    assert!(writes.is_empty(), "a repeated push wrote {writes:?}");
    assert_eq!(heads, 4, "expected one HEAD per blob (3) and per tag (1): {second:#?}");
}

#[test]
fn blobs_are_mounted_from_another_repository_with_upload_as_fallback() {
    let scratch = Scratch::empty();
    let registry = Registry::start();
    let layout = make_layout(&scratch.path().join("layout"), &[3 << 20], 2);
    let staging = format!("{}/acme/staging:app-1", registry.host);
    assert!(push(&scratch, &layout, &staging, &[]).status.success());

    let before = registry.requests().len();
    let production = format!("{}/acme/production:app-1", registry.host);
    let output = push(&scratch, &layout, &production, &["--mount-from", "acme/staging"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("0 of 2 blobs uploaded (0 bytes), 2 mounted"), "{}", stderr(&output));
    let mounts = registry.requests()[before..].iter().filter(|r| r.starts_with("POST") && r.contains("mount=")).count();
    assert_eq!(mounts, 2);
    assert_copyable(&format!("docker://{production}"), &[]);

    // Blobs the source repository lacks are declined (202) and uploaded in the same session.
    let other = make_layout(&scratch.path().join("other"), &[1 << 20], 3);
    let output = push(&scratch, &other, &format!("{}/acme/production:app-2", registry.host), &["--mount-from", "acme/staging"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("2 of 2 blobs uploaded"), "{}", stderr(&output));
}

#[test]
fn tls_registries_need_their_ca() {
    let scratch = Scratch::empty();
    let (registry, ca) = Registry::start_tls();
    let layout = make_layout(&scratch.path().join("layout"), &[1000], 4);
    let reference = format!("{}/acme/prod:tls", registry.host);

    let output = push(&scratch, &layout, &reference, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(&format!("the TLS certificate of registry {} is not trusted", registry.host)), "{}", stderr(&output));

    let output = push(&scratch, &layout, &reference, &["--ca-file", ca.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    // skopeo reads CA certificates from the *.crt files of a directory.
    let cert_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&ca, cert_dir.path().join("ca.crt")).unwrap();
    let cert_dir = cert_dir.path().display().to_string();
    assert_copyable(&format!("docker://{reference}"), &["--src-cert-dir", &cert_dir]);
}

#[test]
fn pushes_survive_server_errors_throttling_and_resets() {
    let scratch = Scratch::empty();
    let registry = Registry::start();
    // Every fault is followed by passes, so each retried request can get through.
    let schedule = vec![
        Fault::Pass,
        Fault::Status(503),
        Fault::Pass,
        Fault::Pass,
        Fault::ResetMidBody,
        Fault::Pass,
        Fault::Pass,
        Fault::TooManyRequests,
        Fault::Pass,
        Fault::Pass,
        Fault::Status(500),
        Fault::Pass,
        Fault::Pass,
        Fault::Status(502),
        Fault::Pass,
        Fault::Pass,
    ];
    let proxy = FaultProxy::start(&registry.host, schedule);
    let layout = make_layout(&scratch.path().join("layout"), &[2 << 20, 1 << 20, 4096], 5);
    let reference = format!("{}/acme/prod:flaky", proxy.host);
    let output = push(&scratch, &layout, &reference, &["--jobs", "1"]);
    assert!(output.status.success(), "push through the faulty proxy failed: {}", stderr(&output));
    assert!(proxy.faults_injected() >= 5, "the proxy injected only {} faults", proxy.faults_injected());
    assert_copyable(&format!("docker://{}/acme/prod:flaky", registry.host), &[]);
    let clean = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}", &format!("docker://{}/acme/prod:flaky", registry.host)])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&clean.stdout).trim(),
        String::from_utf8_lossy(&output.stdout).trim(),
        "the digest printed is the one stored"
    );
}

#[test]
fn a_corrupt_layout_is_refused_and_the_tag_is_not_written() {
    let scratch = Scratch::empty();
    let registry = Registry::start();
    let layout = make_layout(&scratch.path().join("layout"), &[1 << 20], 6);
    // Flip bytes of the layer in place: same size, other digest.
    let blobs = layout.join("blobs/sha256");
    let layer = std::fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().path()).find(|p| p.metadata().unwrap().len() == 1 << 20).unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();

    let reference = format!("{}/acme/prod:corrupt", registry.host);
    let output = push(&scratch, &layout, &reference, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("do not match their digest, so the layout is corrupt: rebuild the image"), "{}", stderr(&output));
    let tag = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{reference}")]);
    assert!(!tag.status.success(), "the tag was written for a corrupt image");
}

#[test]
fn bearer_tokens_are_fetched_with_basic_credentials_and_reused() {
    let tokens = crate::support::token::TokenServer::start("ci", "token-pa55");
    let registry = Registry::start_with_token_auth(&tokens.registry_config());
    let scratch = Scratch::empty();
    let layout = make_layout(&scratch.path().join("layout"), &[1 << 20, 2 << 20], 7);
    let reference = format!("{}/acme/prod:bearer", registry.host);

    let output = push(&scratch, &layout, &reference, &[]);
    assert_eq!(output.status.code(), Some(2), "a push without credentials must fail");
    assert!(
        stderr(&output)
            .contains(&format!("the token service {} of registry {} refused a token for acme/prod", tokens.realm, registry.host)),
        "{}",
        stderr(&output)
    );

    scratch.login(&registry.host, "ci", "token-pa55");
    tokens.requests.lock().unwrap().clear();
    let output = push(&scratch, &layout, &reference, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("token-pa55"));
    let requests = tokens.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "one token for the whole push: {requests:?}");
    assert!(
        requests[0].contains("scope=repository%3Aacme%2Fprod%3Apull%2Cpush") && requests[0].contains("service=test-registry"),
        "{requests:?}"
    );
}

#[test]
fn credential_helpers_named_in_the_docker_configuration_are_used() {
    let registry = Registry::start_with_auth("helper-user", "helper-pa55");
    let scratch = Scratch::empty();
    let bin = tempfile::tempdir().unwrap();
    // A credential helper speaks the docker-credential-helpers protocol: the server on standard
    // input, a JSON credential on standard output.
    let helper = bin.path().join("docker-credential-e2e");
    std::fs::write(&helper, "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"helper-user\\\",\\\"Secret\\\":\\\"helper-pa55\\\"}\"\n").unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    scratch.write_docker_config(&serde_json::json!({"credHelpers": {registry.host.clone(): "e2e"}}));
    let layout = make_layout(&scratch.path().join("layout"), &[1000], 8);
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap());
    let layout_arg = layout.display().to_string();
    let reference = format!("{}/acme/prod:helper", registry.host);
    let output = scratch.xtask_with_env(&["push", &layout_arg, &reference], &[("PATH", &path)]);
    assert!(output.status.success(), "{}", stderr(&output));
}
