//! The trust boundaries, attacked: one row per way a registry that lies, a name from outside, a
//! file of someone else's or a link in the build context could make the xtask hand over
//! credentials, write where it should not, run someone else's code or bake a secret into an
//! image. Every row drives the real binary against a real registry on loopback.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::support::harness::{make_layout, push_base_image, run, run_within, skopeo, stderr, stdout, Registry, Scratch};
use crate::support::hostile::{send_to, Answer, Hostile};

type Row = (&'static str, fn() -> Result<(), String>);

const ATTACKS: &[Row] = &[
    ("an upload Location on another origin gets no credentials", location_on_another_origin),
    ("a challenge from where a redirect led gets no credentials", challenge_after_redirect),
    ("HTTP_PROXY never carries a loopback registry's requests or credentials", proxy_skips_plain_http),
    ("verify APP refuses another app's signed image moved under its tag", verify_binds_the_app),
    ("a registry that trickles a byte now and then cannot hold a command", trickling_registry),
    ("endless tag pages and an index listing one manifest 10,000 times are cut, and said so", bounded_listing),
    ("a tag list Link on another origin gets no credentials", link_on_another_origin),
    ("a tag list Link back to a page already read ends", link_loop),
    ("an endless manifest is cut at 4 MiB", endless_manifest),
    ("a blob longer than its descriptor is cut", endless_blob),
    ("an ECR host with a user part is refused before any request", ecr_host_with_userinfo),
    ("a FROM host with a user part is refused with its line", from_host_with_userinfo),
    ("a foreign-blob source with a user part is refused", foreign_source_with_userinfo),
    ("a revision annotation cannot make promote write another tag", promote_revision_traversal),
    ("rollback --to cannot name another app's tag", rollback_traversal),
    ("prune lists only the images the app owns", prune_owns_only_its_app),
    ("a referrers list naming another image cannot make delete remove it", referrers_naming_another_image),
    ("--ca-file is trusted only for its registry", ca_file_is_scoped),
    ("a link out of the build context is refused and nothing is pushed", link_out_of_the_context),
    ("a link inside a copied directory is copied as a link", link_inside_a_directory),
    (".dockerignore with exceptions is honoured", dockerignore_is_honoured),
    ("a FIFO in the build context is copied as one, never read", fifo_is_not_read),
    (".dockerignore character classes and exceptions under an excluded directory are honoured", dockerignore_classes),
    ("--tag-extra cannot write a tag another app's prefix owns", tag_extra_owned_by_another_app),
    ("a registry's error text cannot start a line or a workflow command", registry_text_is_printable),
    ("a layout blob that is a link to /dev/zero or a FIFO is refused, never read", layout_blob_not_a_file),
    ("two processes tagging into one layout lose no tag", concurrent_layout_tags),
    ("a build script sees neither the signing key, its password nor AWS credentials", secrets_kept_from_build_scripts),
    ("the source annotation carries no credentials", source_without_credentials),
    ("a .cargo/config.toml in /tmp or /dev/shm never runs", planted_cargo_config),
    ("a sparse archive member of 8 GiB is refused, never expanded", sparse_archive_member),
    ("an archive's JSON member is read no further than 4 MiB", oversized_archive_member),
    ("a foreign-blob list the xtask did not write cannot mount a private layer", foreign_list_from_elsewhere),
    ("links planted in a destination layout are not followed", links_planted_in_a_destination),
    ("a git dependency's credentials reach no blob of a release", git_dependency_credentials),
];

#[test]
fn every_attack_fails() {
    let mut failures = Vec::new();
    for (name, row) in ATTACKS {
        if let Err(why) = row() {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} attacks succeeded:\n{}", failures.len(), ATTACKS.len(), failures.join("\n\n"));
}

fn ensure(condition: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(why())
    }
}

/// The command was refused with exit code 2 and a paragraph containing `expected`.
fn refused(output: &Output, expected: &str) -> Result<(), String> {
    ensure(output.status.code() == Some(2) && stderr(output).contains(expected), || {
        format!("expected exit 2 and `{expected}`, got {:?}:\n{}{}", output.status.code(), stdout(output), stderr(output))
    })
}

fn succeeded(output: &Output) -> Result<(), String> {
    ensure(output.status.success(), || format!("the command failed:\n{}{}", stdout(output), stderr(output)))
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// A one-image layout whose manifest carries `annotations`, pushed to `reference` by the xtask.
fn push_image(scratch: &Scratch, seed: u64, annotations: serde_json::Value, reference: &str) -> String {
    let dir = scratch.path().join(format!("image-{seed}"));
    make_layout(&dir, &[512], seed);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let old = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(&old)).unwrap()).unwrap();
    manifest["annotations"] = annotations;
    let bytes = manifest.to_string();
    let digest = format!("{:x}", Sha256::digest(bytes.as_bytes()));
    std::fs::write(dir.join("blobs/sha256").join(&digest), &bytes).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{digest}"), "size": bytes.len(), "annotations": {"org.opencontainers.image.ref.name": "test"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    let output = scratch.xtask(&["push", dir.to_str().unwrap(), reference]);
    assert!(output.status.success(), "push {reference}: {}", stderr(&output));
    format!("sha256:{digest}")
}

/// The digest a tag names, read by skopeo; `None` when it names nothing.
fn digest_of(reference: &str) -> Option<String> {
    let output = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{reference}")]);
    output.status.success().then(|| format!("sha256:{:x}", Sha256::digest(&output.stdout)))
}

fn location_on_another_origin() -> Result<(), String> {
    let registry = Registry::start_with_auth("ci", "pa55");
    // The other origin stands for blob storage: it needs no credentials of the xtask's.
    let storage = Hostile::forwarding(&registry.host, Some(basic("ci", "pa55")));
    let storage_host = storage.host.clone();
    let front = Hostile::start(
        &registry.host,
        None,
        Arc::new(|_| Answer::Forward),
        Arc::new(move |line, headers| {
            if line.starts_with("POST ") || line.starts_with("PATCH ") {
                send_to(headers, "Location", &storage_host);
            }
        }),
    );
    let scratch = Scratch::empty();
    scratch.login(&front.host, "ci", "pa55");
    let layout = make_layout(&scratch.path().join("layout"), &[4096, 2048], 7);
    succeeded(&scratch.xtask(&["push", layout.to_str().unwrap(), &format!("{}/acme/prod:t", front.host)]))?;
    ensure(!storage.seen().is_empty(), || "the uploads never went to the other origin".into())?;
    ensure(storage.authorized().is_empty(), || format!("the other origin got credentials with {:?}", storage.authorized()))
}

fn challenge_after_redirect() -> Result<(), String> {
    let registry = Registry::start_with_auth("ci", "pa55");
    // The redirect's target (a CDN, say) answers 401 with a Bearer challenge whose realm is its own.
    let cdn_host = Arc::new(std::sync::Mutex::new(String::new()));
    let realm_host = cdn_host.clone();
    let cdn = Hostile::start(
        &registry.host,
        None,
        Arc::new(move |line| {
            let host = realm_host.lock().unwrap().clone();
            match line.contains("/token") {
                true => Answer::Reply(200, vec![("Content-Type".into(), "application/json".into())], r#"{"token":"t"}"#.into()),
                false => Answer::Reply(
                    401,
                    vec![("WWW-Authenticate".into(), format!("Bearer realm=\"http://{host}/token\",service=\"cdn\""))],
                    String::new(),
                ),
            }
        }),
        Arc::new(|_, _| {}),
    );
    *cdn_host.lock().unwrap() = cdn.host.clone();
    let location_host = cdn.host.clone();
    let front = Hostile::start(
        &registry.host,
        None,
        Arc::new(move |line| match line.starts_with("GET ") && line.contains("/blobs/sha256:") {
            true => {
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                Answer::Reply(307, vec![("Location".into(), format!("http://{location_host}{path}"))], String::new())
            }
            false => Answer::Forward,
        }),
        Arc::new(|_, _| {}),
    );
    let scratch = Scratch::new();
    scratch.login(&front.host, "ci", "pa55");
    let base = format!("{}/acme/base:1", front.host);
    crate::support::harness::push_base_image(&scratch, &base, &["amd64", "arm64"]);
    scratch.edit("crates/worker/Dockerfile", |text| text.replace("FROM scratch", &format!("FROM {base}")));
    scratch.commit("a base behind a redirecting registry");
    let output = scratch.xtask(&["build", "worker", "--platform", "linux/amd64"]);
    ensure(!cdn.seen().is_empty(), || format!("the blob reads never went to the redirect's target: {}", stderr(&output)))?;
    ensure(cdn.authorized().is_empty(), || format!("the redirect's target got credentials with {:?}", cdn.authorized()))?;
    refused(&output, "answered 401 to a request registry")
}

fn proxy_skips_plain_http() -> Result<(), String> {
    let registry = Registry::start_with_auth("ci", "pa55");
    // Stands for a proxy on the way out: it would see every request sent through it.
    let proxy = Hostile::forwarding(&registry.host, None);
    let proxy_url = format!("http://{}", proxy.host);
    let scratch = Scratch::empty();
    scratch.login(&registry.host, "ci", "pa55");
    let layout = make_layout(&scratch.path().join("layout"), &[1024], 13);
    let output = scratch.xtask_with_env(
        &["push", layout.to_str().unwrap(), &format!("{}/acme/prod:t", registry.host)],
        &[("HTTP_PROXY", &proxy_url), ("http_proxy", &proxy_url), ("HTTPS_PROXY", &proxy_url), ("ALL_PROXY", &proxy_url)],
    );
    succeeded(&output)?;
    ensure(proxy.connections() == 0, || format!("the proxy saw {} connections: {:?}", proxy.connections(), proxy.seen()))
}

fn verify_binds_the_app() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let keys = tempfile::tempdir().unwrap();
    let path = |name: &str| keys.path().join(name).display().to_string();
    for args in [
        vec!["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &path("ec.pem")],
        vec!["pkcs8", "-topk8", "-nocrypt", "-in", &path("ec.pem"), "-out", &path("cosign.key")],
        vec!["ec", "-in", &path("ec.pem"), "-pubout", "-out", &path("cosign.pub")],
    ] {
        assert!(run(Command::new("openssl").args(&args)).status.success());
    }
    let repository = format!("{}/acme/prod", registry.host);
    let released = scratch.xtask(&[
        "release",
        "--all",
        "--platform",
        "linux/amd64",
        "--attest",
        "--sign",
        &path("cosign.key"),
        "--repository",
        &repository,
    ]);
    succeeded(&released)?;
    // Whoever can push moves worker's signed image under hello-api's tag.
    let moved = skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{repository}:worker-latest"),
        &format!("docker://{repository}:hello-api-latest"),
    ]);
    assert!(moved.status.success(), "{}", stderr(&moved));
    let output = scratch.xtask(&["verify", "hello-api", "--key", &path("cosign.pub"), "--repository", &repository]);
    refused(&output, "names a signed image of app `worker`, not of app `hello-api`")
}

fn link_on_another_origin() -> Result<(), String> {
    let registry = Registry::start_with_auth("ci", "pa55");
    let elsewhere = Hostile::forwarding(&registry.host, Some(basic("ci", "pa55")));
    let elsewhere_host = elsewhere.host.clone();
    let front = Hostile::start(
        &registry.host,
        None,
        Arc::new(|_| Answer::Forward),
        Arc::new(move |line, headers| {
            if line.contains("/tags/list") && !line.contains("last=") {
                headers.push(("Link".into(), format!("<http://{elsewhere_host}/v2/acme/prod/tags/list?n=1000&last=zzz>; rel=\"next\"")));
            }
        }),
    );
    let scratch = Scratch::new();
    scratch.login(&front.host, "ci", "pa55");
    push_image(&scratch, 1, serde_json::json!({}), &format!("{}/acme/prod:worker-latest", front.host));
    let output = scratch.xtask(&["images", "worker", "--repository", &format!("{}/acme/prod", front.host)]);
    succeeded(&output)?;
    ensure(!elsewhere.seen().is_empty(), || "the next page was never asked for".into())?;
    ensure(elsewhere.authorized().is_empty(), || format!("the other origin got credentials with {:?}", elsewhere.authorized()))
}

/// Writes a manifest straight to a registry without credentials, as anyone with push rights can.
fn put_manifest(host: &str, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let head = format!(
        "PUT /v2/{repository}/manifests/{reference} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(bytes).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
}

fn referrers_naming_another_image() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let repository = format!("{}/acme/prod", registry.host);
    let worker = push_image(&scratch, 12, serde_json::json!({}), &format!("{repository}:worker-latest"));
    let hello = push_image(&scratch, 13, serde_json::json!({}), &format!("{repository}:hello-api-latest"));
    let hello_size = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{repository}@{hello}")]).stdout.len();
    // The tag schema's list of what is attached to worker names hello-api's image as its SBOM.
    let list = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": hello, "size": hello_size, "artifactType": "application/spdx+json"}]});
    put_manifest(
        &registry.host,
        "acme/prod",
        &worker.replace(':', "-"),
        "application/vnd.oci.image.index.v1+json",
        list.to_string().as_bytes(),
    );
    let listed = scratch.xtask(&["images", "worker", "--repository", &repository]);
    succeeded(&listed)?;
    ensure(!stdout(&listed).contains("sbom"), || format!("the listing believed the list:\n{}", stdout(&listed)))?;
    ensure(stderr(&listed).contains("it is left out"), || format!("no note about the list:\n{}", stderr(&listed)))?;
    succeeded(&scratch.xtask(&["delete", "worker", "--tag", "worker-latest", "--repository", &repository]))?;
    ensure(digest_of(&format!("{repository}:worker-latest")).is_none(), || "worker was not deleted".into())?;
    ensure(digest_of(&format!("{repository}:hello-api-latest")).as_deref() == Some(hello.as_str()), || {
        "deleting worker deleted hello-api's image, which the list named".into()
    })
}

/// A proxy that answers or rewrites what `rule` says for each request line.
fn front_of(registry: &Registry, answer: fn(&str) -> Answer, rewrite: fn(&str, &mut Vec<(String, String)>)) -> Hostile {
    Hostile::start(&registry.host, None, Arc::new(answer), Arc::new(rewrite))
}

fn link_loop() -> Result<(), String> {
    let registry = Registry::start();
    let front = front_of(
        &registry,
        |_| Answer::Forward,
        |line, headers| {
            if line.contains("/tags/list") {
                headers.push(("Link".into(), "</v2/acme/prod/tags/list?n=1000>; rel=\"next\"".into()));
            }
        },
    );
    let scratch = Scratch::new();
    push_image(&scratch, 2, serde_json::json!({}), &format!("{}/acme/prod:worker-latest", registry.host));
    let listing = run_within(&mut scratch.command(&["images", "worker", "--repository", &format!("{}/acme/prod", front.host)]), 60);
    let output = listing.ok_or("`images` still followed the loop after 60 s")?;
    refused(&output, "pages it had sent already")
}

fn registry_text_is_printable() -> Result<(), String> {
    let registry = Registry::start();
    let front = front_of(
        &registry,
        |line| match line.starts_with("POST ") {
            // JSON escapes: the message the registry means holds a newline, escapes and a bell.
            true => Answer::Text(
                400,
                "application/json",
                r#"{"errors":[{"code":"DENIED","message":"no\n::error::pwned\r\n\u001b[2J\u001b]0;title\u0007"}]}"#,
            ),
            false => Answer::Forward,
        },
        |_, _| {},
    );
    let scratch = Scratch::new();
    let layout = make_layout(&scratch.path().join("text"), &[1024], 3);
    let output = scratch.xtask(&["push", &layout.display().to_string(), &format!("{}/acme/prod:worker-latest", front.host)]);
    let text = stderr(&output);
    ensure(output.status.code() == Some(2), || format!("the push did not fail: {text}"))?;
    let starts_a_command = text.lines().any(|line| line.trim_start().starts_with("::"));
    ensure(!starts_a_command && !text.contains('\u{1b}') && !text.contains('\u{7}') && text.contains("pwned"), || {
        format!("the registry's text reached the output as it was sent: {text:?}")
    })
}

fn layout_blob_not_a_file() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    for (name, plant) in [("zero", "link"), ("fifo", "fifo")] {
        let layout = make_layout(&scratch.path().join(name), &[2048, 1024], 5);
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&manifest_digest)).unwrap()).unwrap();
        // The manifest (read whole) for /dev/zero, a layer (streamed) for the FIFO.
        let target = match plant {
            "link" => manifest_digest,
            _ => manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string(),
        };
        let blob = layout.join("blobs/sha256").join(target);
        std::fs::remove_file(&blob).unwrap();
        let planted = match plant {
            "link" => std::os::unix::fs::symlink("/dev/zero", &blob).is_ok(),
            _ => run(Command::new("mkfifo").arg(&blob)).status.success(),
        };
        assert!(planted, "cannot plant the {plant}");
        let command = &mut scratch.command(&["push", &layout.display().to_string(), &format!("{}/acme/prod:worker-{name}", registry.host)]);
        let output = run_within(command, 60).ok_or_else(|| format!("push of a layout with a {plant} blob still ran after 60 s"))?;
        refused(&output, "is not a regular file")?;
    }
    Ok(())
}

fn concurrent_layout_tags() -> Result<(), String> {
    let scratch = Scratch::new();
    let source = make_layout(&scratch.path().join("source"), &[512], 9);
    let destination = scratch.path().join("shared-layout");
    const ROUNDS: usize = 100;
    for round in 0..ROUNDS {
        let children: Vec<_> = ["a", "b"]
            .iter()
            .map(|side| {
                let target = format!("oci:{}:{side}{round}", destination.display());
                scratch
                    .command(&["push", &source.display().to_string(), &target])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            ensure(output.status.success(), || format!("a push failed: {}", stderr(&output)))?;
        }
    }
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(destination.join("index.json")).unwrap()).unwrap();
    let tags = index["manifests"].as_array().unwrap().len();
    ensure(tags == 2 * ROUNDS, || format!("{} of {} tags are in the layout", tags, 2 * ROUNDS))
}

fn secrets_kept_from_build_scripts() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    // A compromised dependency's build script, played by the worker's own: it writes down the
    // environment cargo gives it.
    scratch.write(
        "crates/worker/build.rs",
        "fn main() {\n    let out = std::env::var(\"LEAK_TO\").unwrap();\n    let seen: Vec<String> = std::env::vars().map(|(k, v)| format!(\"{k}={v}\")).collect();\n    std::fs::write(out, seen.join(\"\\n\")).unwrap();\n    println!(\"cargo:rerun-if-env-changed=LEAK_TO\");\n}\n",
    );
    scratch.commit("a build script that reads the environment");
    let keys = tempfile::tempdir().unwrap();
    let ec = keys.path().join("ec.pem");
    let key = keys.path().join("cosign.key");
    for args in [
        vec!["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ec.to_str().unwrap()],
        vec!["pkcs8", "-topk8", "-nocrypt", "-in", ec.to_str().unwrap(), "-out", key.to_str().unwrap()],
    ] {
        assert!(run(Command::new("openssl").args(&args)).status.success());
    }
    let pem = std::fs::read_to_string(&key).unwrap();
    let leak = scratch.path().join("leaked-environment");
    let leak_to = leak.display().to_string();
    let repository = format!("{}/acme/prod", registry.host);
    let output = scratch.xtask_with_env(
        &["release", "worker", "--platform", "linux/amd64", "--sign", "env://RELEASE_SIGNING_KEY", "--repository", &repository],
        &[
            ("RELEASE_SIGNING_KEY", &pem),
            ("COSIGN_PASSWORD", "cosign-s3cret"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "aws-s3cret"),
            ("AWS_SESSION_TOKEN", "aws-session-s3cret"),
            ("LEAK_TO", &leak_to),
        ],
    );
    succeeded(&output)?;
    let seen = std::fs::read_to_string(&leak).map_err(|err| format!("the build script did not run: {err}"))?;
    let leaked: Vec<&str> = ["PRIVATE KEY", "cosign-s3cret", "AKIAEXAMPLE", "aws-s3cret", "aws-session-s3cret"]
        .into_iter()
        .filter(|secret| seen.contains(secret))
        .collect();
    ensure(leaked.is_empty(), || format!("the build script saw {leaked:?}"))
}

fn trickling_registry() -> Result<(), String> {
    let registry = Registry::start();
    let front = front_of(
        &registry,
        |line| match line.contains("/manifests/") && line.starts_with("GET ") {
            true => Answer::Trickle("application/vnd.oci.image.index.v1+json", 4),
            false => Answer::Forward,
        },
        |_, _| {},
    );
    let scratch = Scratch::new();
    push_image(&scratch, 4, serde_json::json!({}), &format!("{}/acme/prod:worker-latest", registry.host));
    let mut command = scratch.command(&["images", "worker", "--repository", &format!("{}/acme/prod", front.host)]);
    command.env("XTASK_READ_TIMEOUT", "2");
    let output = run_within(&mut command, 90).ok_or("`images` still waited on the trickle after 90 s")?;
    refused(&output, "stopped sending: no byte came for 2 s")
}

fn bounded_listing() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    push_image(&scratch, 6, serde_json::json!({}), &format!("{}/acme/prod:worker-1", registry.host));
    let manifest = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{}/acme/prod:worker-1", registry.host)]).stdout;
    let digest = format!("sha256:{:x}", Sha256::digest(&manifest));
    let entry = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest.len(),
        "platform": {"architecture": "amd64", "os": "linux"}});
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": vec![entry; 10_000]})
    .to_string();
    let front = Hostile::start(
        &registry.host,
        None,
        Arc::new(move |line| {
            let json = || vec![("Content-Type".to_string(), "application/json".to_string())];
            if line.contains("/tags/list") {
                // Every page has three times the tags asked for, and names a next page.
                let page: usize = line.split("last=p").nth(1).and_then(|rest| rest.split([' ', '&']).next()?.parse().ok()).unwrap_or(0);
                let tags: Vec<String> =
                    std::iter::once("worker-latest".to_string()).chain((0..3000).map(|i| format!("x{page}-{i}"))).collect();
                let mut headers = json();
                headers.push(("Link".into(), format!("</v2/acme/prod/tags/list?n=1000&last=p{}>; rel=\"next\"", page + 1)));
                return Answer::Reply(200, headers, serde_json::json!({"name": "acme/prod", "tags": tags}).to_string());
            }
            if line.starts_with("GET ") && line.contains("/manifests/worker-latest") {
                let headers = vec![("Content-Type".to_string(), "application/vnd.oci.image.index.v1+json".to_string())];
                return Answer::Reply(200, headers, index.clone());
            }
            Answer::Forward
        }),
        Arc::new(|_, _| {}),
    );
    let before = registry.requests().len();
    let listing = run_within(&mut scratch.command(&["images", "worker", "--repository", &format!("{}/acme/prod", front.host)]), 120);
    let output = listing.ok_or("`images` was still listing after 120 s")?;
    succeeded(&output)?;
    let manifest_path = format!("/manifests/{digest}");
    let reads =
        registry.requests()[before..].iter().filter(|request| request.starts_with("GET") && request.contains(&manifest_path)).count();
    ensure(reads == 1, || format!("the manifest the index lists 10,000 times was read {reads} times"))?;
    let text = stderr(&output);
    ensure(text.contains("was cut: 100000 tags kept") && text.contains("the pages after the last one read not followed"), || {
        format!("the listing does not say what was cut: {text}")
    })
}

fn endless_manifest() -> Result<(), String> {
    let registry = Registry::start();
    let front = front_of(
        &registry,
        |line| match line.contains("/manifests/") && line.starts_with("GET ") {
            true => Answer::Endless(200, "application/vnd.oci.image.index.v1+json"),
            false => Answer::Forward,
        },
        |_, _| {},
    );
    let scratch = Scratch::new();
    push_image(&scratch, 3, serde_json::json!({}), &format!("{}/acme/prod:worker-latest", registry.host));
    refused(&scratch.xtask(&["images", "worker", "--repository", &format!("{}/acme/prod", front.host)]), "larger than 4096 KiB")
}

/// A layout whose first layer is not stored but recorded as living in `source`, by a list
/// someone else wrote.
fn layout_with_foreign_layer(scratch: &Scratch, source: &str) -> String {
    let layout = make_layout(&scratch.path().join("foreign"), &[4096, 2048], 11);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&manifest_digest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    std::fs::remove_file(layout.join("blobs/sha256").join(layer.trim_start_matches("sha256:"))).unwrap();
    std::fs::write(layout.join("xtask-foreign-blobs.json"), serde_json::json!({ layer: source }).to_string()).unwrap();
    layout.to_str().unwrap().to_string()
}

fn endless_blob() -> Result<(), String> {
    let registry = Registry::start();
    let hostile = Arc::new(AtomicBool::new(false));
    let turned = hostile.clone();
    let front = Hostile::start(
        &registry.host,
        None,
        Arc::new(move |line: &str| match turned.load(Ordering::SeqCst) && line.contains("/blobs/sha256:") && line.starts_with("GET ") {
            true => Answer::Endless(200, "application/octet-stream"),
            false => Answer::Forward,
        }),
        Arc::new(|_: &str, _: &mut Vec<(String, String)>| {}),
    );
    let scratch = Scratch::empty();
    push_base_image(&scratch, &format!("{}/acme/base:1", front.host), &["amd64"]);
    // The xtask's own layout over that base, whose layer it records as living in the base's
    // repository; the registry turns hostile only once the layout is made.
    std::fs::write(scratch.path().join("Dockerfile"), format!("FROM {}/acme/base:1\nLABEL built=here\n", front.host)).unwrap();
    let layout = scratch.path().join("built");
    let context = scratch.path().to_str().unwrap();
    succeeded(&scratch.xtask(&["assemble", context, "--platform", "linux/amd64", "--output", layout.to_str().unwrap()]))?;
    hostile.store(true, Ordering::SeqCst);
    let destination = format!("oci:{}:t", scratch.path().join("copy").display());
    refused(&scratch.xtask(&["push", layout.to_str().unwrap(), &destination]), "bytes of blob")?;
    refused(&scratch.xtask(&["push", layout.to_str().unwrap(), &destination]), "its descriptor gives")
}

fn ecr_host_with_userinfo() -> Result<(), String> {
    let evil = Hostile::forwarding("127.0.0.1:9", None);
    let scratch = Scratch::empty();
    let layout = make_layout(&scratch.path().join("layout"), &[512], 5);
    let reference = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com:x@{}/acme/prod:t", evil.host);
    refused(&scratch.xtask(&["push", layout.to_str().unwrap(), &reference]), "is not a registry host")?;
    ensure(evil.connections() == 0, || format!("{} connections reached the host after the `@`", evil.connections()))
}

fn from_host_with_userinfo() -> Result<(), String> {
    let evil = Hostile::forwarding("127.0.0.1:9", None);
    let scratch = Scratch::new();
    let base = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com:x@{}/acme/base:1", evil.host);
    scratch.edit("crates/worker/Dockerfile", |text| text.replace("FROM scratch", &format!("FROM {base}")));
    scratch.commit("a base image with a user part");
    let output = scratch.xtask(&["build", "worker", "--builder", "native"]);
    refused(&output, "crates/worker/Dockerfile:2: FROM")?;
    refused(&output, "is not a registry host")?;
    ensure(evil.connections() == 0, || format!("{} connections reached the host after the `@`", evil.connections()))
}

fn foreign_source_with_userinfo() -> Result<(), String> {
    let evil = Hostile::forwarding("127.0.0.1:9", None);
    let registry = Registry::start();
    let scratch = Scratch::empty();
    let layout = layout_with_foreign_layer(&scratch, &format!("x@{}/acme/base", evil.host));
    refused(&scratch.xtask(&["push", &layout, &format!("{}/acme/prod:t", registry.host)]), "was not written by the xtask on this machine")?;
    ensure(evil.connections() == 0, || format!("{} connections reached the host after the `@`", evil.connections()))
}

fn promote_revision_traversal() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let revision = serde_json::json!({"org.opencontainers.image.revision": "x/../../manifests/hello-api-latest"});
    push_image(&scratch, 21, revision, &format!("{}/acme/staging:worker-latest", registry.host));
    let production = format!("{}/acme/production", registry.host);
    let before = push_image(&scratch, 22, serde_json::json!({}), &format!("{production}:hello-api-latest"));
    let output = scratch.xtask(&["promote", "worker", "--from", &format!("{}/acme/staging", registry.host), "--to", &production]);
    refused(&output, "records a revision that makes no valid tag")?;
    let after = digest_of(&format!("{production}:hello-api-latest"));
    ensure(after.as_deref() == Some(before.as_str()), || format!("hello-api-latest moved from {before} to {after:?}"))
}

fn rollback_traversal() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let repository = format!("{}/acme/prod", registry.host);
    push_image(&scratch, 31, serde_json::json!({}), &format!("{repository}:hello-api-latest"));
    // Forty characters, so it is taken as a full sha when git does not know it.
    let to = "xxxxxxx/../../manifests/hello-api-latest";
    refused(&scratch.xtask(&["rollback", "worker", "--to", to, "--repository", &repository]), "does not name a release of worker")?;
    let moved = digest_of(&format!("{repository}:worker-latest"));
    ensure(moved.is_none(), || format!("worker-latest now names {moved:?}"))
}

fn prune_owns_only_its_app() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let repository = format!("{}/acme/prod", registry.host);
    let image = |app: &str, created: &str| serde_json::json!({"dev.xtask.app": app, "org.opencontainers.image.created": created});
    push_image(&scratch, 41, image("hello-api", "2026-01-01T00:00:00Z"), &format!("{repository}:hello-api-1"));
    push_image(&scratch, 42, image("hello-api", "2026-01-02T00:00:00Z"), &format!("{repository}:hello-api-2"));
    // An app of another workspace whose name starts like this one's.
    push_image(&scratch, 43, image("hello-api-gateway", "2025-06-01T00:00:00Z"), &format!("{repository}:hello-api-gateway-latest"));
    let output = scratch.xtask(&["prune", "hello-api", "--keep", "1", "--dry-run", "--repository", &repository]);
    succeeded(&output)?;
    ensure(stdout(&output).contains("hello-api-1") && !stdout(&output).contains("gateway"), || {
        format!("prune hello-api would delete:\n{}", stdout(&output))
    })
}

fn ca_file_is_scoped() -> Result<(), String> {
    let (tls, ca) = Registry::start_tls();
    let plain = Registry::start();
    let scratch = Scratch::new();
    let ca = ca.to_str().unwrap();
    let staging = format!("{}/acme/staging", tls.host);
    let layout = make_layout(&scratch.path().join("layout"), &[512], 51);
    succeeded(&scratch.xtask(&["push", layout.to_str().unwrap(), &format!("{staging}:worker-latest"), "--ca-file", ca]))?;
    let production = format!("{}/acme/production", plain.host);
    let promote = |ca_file: &str| scratch.xtask(&["promote", "worker", "--from", &staging, "--to", &production, "--ca-file", ca_file]);
    refused(&promote(ca), "is not trusted")?;
    succeeded(&promote(&format!("{}={ca}", tls.host)))
}

/// A workspace whose worker image also copies `crates/worker/assets/` (a file, a key that
/// .dockerignore excludes, one it excepts, a link to a file outside the workspace) and whose git
/// remote carries a CI token; built natively for linux/amd64, once for the rows that read it.
fn built_with_assets() -> &'static (Scratch, Output) {
    static BUILT: std::sync::OnceLock<(Scratch, Output)> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_with_assets)
}

fn build_with_assets() -> (Scratch, Output) {
    let scratch = Scratch::new();
    scratch.write("crates/worker/assets/a.txt", "kept\n");
    scratch.write("crates/worker/assets/secret.key", "-----BEGIN PRIVATE KEY-----\n");
    scratch.write("crates/worker/assets/public.key", "-----BEGIN PUBLIC KEY-----\n");
    scratch.write("crates/worker/assets/tls/server.pem", "-----BEGIN PRIVATE KEY-----\n");
    scratch.write("crates/worker/assets/tls/session.kem", "-----BEGIN PRIVATE KEY-----\n");
    scratch.write("crates/worker/assets/tls/notes.xem", "kept\n");
    scratch.write("crates/worker/assets/private/token", "s3cret\n");
    scratch.write("crates/worker/assets/private/allowed.txt", "kept\n");
    std::os::unix::fs::symlink("/etc/hostname", scratch.path().join("crates/worker/assets/link")).unwrap();
    scratch.edit(".dockerignore", |text| {
        format!("{text}**/*.key\n!crates/worker/assets/public.key\n**/*.[pk]em\ncrates/worker/assets/private\n!crates/worker/assets/private/allowed.txt\n")
    });
    scratch.edit("crates/worker/Dockerfile", |text| format!("{text}COPY crates/worker/assets /assets/\n"));
    scratch.git(&["remote", "add", "origin", "https://gitlab-ci-token:glpat-s3cret@gitlab.example.com/acme/mono.git"]);
    scratch.commit("assets");
    let output = scratch.xtask(&["build", "worker", "--platform", "linux/amd64", "--builder", "native"]);
    (scratch, output)
}

/// The built worker image's config and its last layer's entries (`tar -tvz`), from its layout.
fn built_image(scratch: &Scratch) -> (serde_json::Value, String) {
    let layout = scratch.path().join("target/xtask/oci/worker");
    let blob = |digest: &str| std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap();
    let json = |digest: &str| -> serde_json::Value { serde_json::from_slice(&blob(digest)).unwrap() };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let root = json(index["manifests"][0]["digest"].as_str().unwrap());
    let manifest = json(root["manifests"][0]["digest"].as_str().unwrap());
    let config = json(manifest["config"]["digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array().unwrap();
    let last = layers.last().unwrap()["digest"].as_str().unwrap();
    let listing = run(Command::new("tar").arg("-tvzf").arg(layout.join("blobs/sha256").join(last.trim_start_matches("sha256:"))));
    (serde_json::json!({"config": config, "index": root}), stdout(&listing))
}

fn link_inside_a_directory() -> Result<(), String> {
    let (scratch, output) = built_with_assets();
    succeeded(output)?;
    let (_, listing) = built_image(scratch);
    ensure(listing.lines().any(|line| line.starts_with('l') && line.contains("assets/link -> /etc/hostname")), || {
        format!("the layer does not hold the link as a link:\n{listing}")
    })
}

fn dockerignore_is_honoured() -> Result<(), String> {
    let (scratch, output) = built_with_assets();
    succeeded(output)?;
    let (_, listing) = built_image(scratch);
    let kept = listing.contains("assets/a.txt") && listing.contains("assets/public.key");
    ensure(kept && !listing.contains("secret.key"), || format!("the layer holds:\n{listing}"))
}

fn dockerignore_classes() -> Result<(), String> {
    let (scratch, output) = built_with_assets();
    succeeded(output)?;
    let (_, listing) = built_image(scratch);
    let kept = ["assets/tls/notes.xem", "assets/private/allowed.txt"].iter().all(|path| listing.contains(path));
    let left_out = ["server.pem", "session.kem", "private/token"].iter().all(|path| !listing.contains(path));
    ensure(kept && left_out, || format!("the layer holds:\n{listing}"))
}

fn tag_extra_owned_by_another_app() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let manifest =
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition.workspace = true\nlicense.workspace = true\npublish.workspace = true\n";
    scratch.write("crates/hello/Cargo.toml", manifest);
    scratch.write("crates/hello/src/main.rs", "fn main() {}\n");
    scratch.write("crates/hello/Dockerfile", "FROM scratch\nARG TARGETPLATFORM\nCOPY target/stage/${TARGETPLATFORM}/hello /hello\n");
    // The new member enters Cargo.lock (it has no dependencies: nothing is downloaded).
    let locked = run(Command::new("cargo").args(["metadata", "--offline", "--format-version", "1"]).current_dir(scratch.path()));
    assert!(locked.status.success(), "{}", stderr(&locked));
    scratch.commit("an app named hello, a prefix of hello-api");
    let repository = format!("{}/acme/prod", registry.host);
    let output =
        scratch.xtask(&["release", "hello", "--platform", "linux/amd64", "--tag-extra", "api-latest", "--repository", &repository]);
    refused(&output, "the tag `hello-api-latest`, which belongs to app `hello-api`")?;
    let writes: Vec<String> = registry.requests().into_iter().filter(|r| r.starts_with("PUT") || r.starts_with("POST")).collect();
    ensure(writes.is_empty(), || format!("the registry received {writes:?}"))
}

fn source_without_credentials() -> Result<(), String> {
    let (scratch, output) = built_with_assets();
    succeeded(output)?;
    let (image, _) = built_image(scratch);
    let text = image.to_string();
    ensure(!text.contains("s3cret") && text.contains("\"https://gitlab.example.com/acme/mono.git\""), || {
        format!("the image records the remote as:\n{:#}", image["index"]["annotations"])
    })
}

fn link_out_of_the_context() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::new();
    std::os::unix::fs::symlink("/proc/self/environ", scratch.path().join("crates/worker/leak")).unwrap();
    scratch.edit("crates/worker/Dockerfile", |text| format!("{text}COPY crates/worker/leak /leak\n"));
    scratch.commit("leak the environment");
    let output = scratch.xtask_with_env(
        &["release", "worker", "--platform", "linux/amd64", "--builder", "native", "--repository", &format!("{}/acme/prod", registry.host)],
        &[("XTASK_TEST_SECRET", "hunter2")],
    );
    refused(&output, "COPY source `crates/worker/leak` is not in the build context (it is a link to `/proc/self/environ`, which BuildKit resolves inside the context")?;
    let writes: Vec<String> = registry.requests().into_iter().filter(|r| r.starts_with("PUT") || r.starts_with("POST")).collect();
    ensure(writes.is_empty(), || format!("the registry received {writes:?}"))
}

fn fifo_is_not_read() -> Result<(), String> {
    let scratch = Scratch::new();
    scratch.write("crates/worker/assets/a.txt", "kept\n");
    scratch.edit("crates/worker/Dockerfile", |text| format!("{text}COPY crates/worker/assets /assets/\n"));
    scratch.commit("assets");
    let fifo = scratch.path().join("crates/worker/assets/pipe");
    let made = run(Command::new("mkfifo").arg(&fifo));
    assert!(made.status.success(), "mkfifo: {}", stderr(&made));
    let command = &mut scratch.command(&["build", "worker", "--platform", "linux/amd64", "--builder", "native"]);
    let output = run_within(command, 180).ok_or("the build hung on the FIFO")?;
    succeeded(&output)?;
    // As BuildKit does, the image holds the pipe itself: a FIFO entry, no bytes.
    let blobs = scratch.path().join("target/xtask/oci/worker/blobs/sha256");
    let fifo_entries = std::fs::read_dir(&blobs)
        .unwrap()
        .filter_map(|blob| {
            let bytes = std::fs::read(blob.unwrap().path()).ok()?;
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
            let entries = archive.entries().ok()?.filter_map(Result::ok);
            Some(entries.filter(|entry| entry.header().entry_type() == tar::EntryType::Fifo).count())
        })
        .sum::<usize>();
    ensure(fifo_entries == 1, || format!("the image has {fifo_entries} FIFO entries"))
}

/// Plants `.cargo/config.toml` with a `rustc` that leaves a mark in `dir`; removed when dropped
/// (never over a file that was there).
struct Planted(Option<std::path::PathBuf>);

impl Planted {
    fn new(dir: &Path, wrapper: &Path) -> Planted {
        let config = dir.join(".cargo/config.toml");
        if config.exists() || std::fs::create_dir_all(dir.join(".cargo")).is_err() {
            return Planted(None);
        }
        match std::fs::write(&config, format!("[build]\nrustc = \"{}\"\n", wrapper.display())) {
            Ok(()) => Planted(Some(config)),
            Err(_) => Planted(None),
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        if let Some(config) = &self.0 {
            let _ = std::fs::remove_file(config);
        }
    }
}

fn planted_cargo_config() -> Result<(), String> {
    let scratch = Scratch::new();
    let temp = tempfile::tempdir().unwrap();
    let mark = temp.path().join("ran");
    let wrapper = temp.path().join("rustc-wrapper");
    std::fs::write(&wrapper, format!("#!/bin/sh\ntouch {}\nexec rustc \"$@\"\n", mark.display())).unwrap();
    run(Command::new("chmod").arg("+x").arg(&wrapper));
    let _in_temp = Planted::new(temp.path(), &wrapper);
    let _in_shm = Planted::new(Path::new("/dev/shm"), &wrapper);
    // A lockfile change makes detection resolve the base commit's graph from an exported tree.
    let base = scratch.head();
    scratch.edit("Cargo.lock", |lock| lock.replacen("# This file", "# This generated file", 1));
    scratch.commit("reword the lockfile header");
    let output = scratch.xtask_with_env(&["changed", "--base", &base], &[("TMPDIR", temp.path().to_str().unwrap())]);
    succeeded(&output)?;
    ensure(!mark.exists(), || "a rustc named by a planted .cargo/config.toml ran".into())
}

fn sparse_archive_member() -> Result<(), String> {
    let scratch = Scratch::empty();
    let members = scratch.path().join("members");
    std::fs::create_dir(&members).unwrap();
    // 8 GiB of holes in a few KiB of archive, where `docker save` puts its manifest.
    std::fs::File::create(members.join("manifest.json")).unwrap().set_len(8 << 30).unwrap();
    let archive = scratch.path().join("image.tar");
    let made =
        run(Command::new("tar").args(["--format=gnu", "--sparse", "-cf"]).arg(&archive).arg("-C").arg(&members).arg("manifest.json"));
    assert!(made.status.success(), "tar: {}", stderr(&made));
    let size = std::fs::metadata(&archive).unwrap().len();
    assert!(size < 64 << 10, "the archive has {size} bytes");
    let destination = format!("oci:{}:t", scratch.path().join("copy").display());
    let output = run_within(&mut scratch.command(&["push", archive.to_str().unwrap(), &destination]), 60)
        .ok_or("push of a sparse archive still ran after 60 s")?;
    refused(&output, "member manifest.json is a sparse file")
}

fn oversized_archive_member() -> Result<(), String> {
    let scratch = Scratch::empty();
    // Valid JSON (an empty list after 16 MiB of blanks), so that only a bounded read refuses it.
    let manifest = format!("{}[]", " ".repeat(16 << 20));
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "manifest.json", manifest.as_bytes()).unwrap();
    let archive = scratch.path().join("image.tar");
    std::fs::write(&archive, tar.into_inner().unwrap()).unwrap();
    let destination = format!("oci:{}:t", scratch.path().join("copy").display());
    refused(&scratch.xtask(&["push", archive.to_str().unwrap(), &destination]), "a JSON member is larger than 4 MiB")
}

fn foreign_list_from_elsewhere() -> Result<(), String> {
    let registry = Registry::start();
    let scratch = Scratch::empty();
    // A private image the pusher's credentials reach, and someone else's layout over the same
    // layers, whose list says the first one lives in the private repository.
    let private = make_layout(&scratch.path().join("private"), &[4096, 2048], 11);
    succeeded(&scratch.xtask(&["push", private.to_str().unwrap(), &format!("{}/acme/private:secret", registry.host)]))?;
    let layout = layout_with_foreign_layer(&scratch, &format!("{}/acme/private", registry.host));
    let output = scratch.xtask(&["push", &layout, &format!("{}/acme/public:latest", registry.host)]);
    refused(&output, "was not written by the xtask on this machine")?;
    let mounts: Vec<String> = registry.requests().into_iter().filter(|request| request.contains("mount=")).collect();
    ensure(mounts.is_empty(), || format!("the registry was asked to mount: {mounts:?}"))?;
    let public = registry.storage().tags("acme/public");
    ensure(public.is_empty(), || format!("the public repository has tags: {public:?}"))
}

fn links_planted_in_a_destination() -> Result<(), String> {
    let scratch = Scratch::empty();
    let source = make_layout(&scratch.path().join("source"), &[512], 3);
    let destination = scratch.path().join("destination");
    std::fs::create_dir(&destination).unwrap();
    // Links where a new layout's files go, to files that do not exist yet: following one would
    // create its target.
    let victims = scratch.path().join("victims");
    std::fs::create_dir(&victims).unwrap();
    for name in ["oci-layout", "index.json"] {
        std::os::unix::fs::symlink(victims.join(name), destination.join(name)).unwrap();
    }
    let _ = scratch.xtask(&["push", source.to_str().unwrap(), &format!("oci:{}:t", destination.display())]);
    let written: Vec<String> =
        std::fs::read_dir(&victims).unwrap().flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect();
    ensure(written.is_empty(), || format!("writes followed planted links and made {written:?}"))
}

fn git_dependency_credentials() -> Result<(), String> {
    let scratch = Scratch::new();
    // A git dependency whose URL carries a token, vendored as cargo vendor does (this machine
    // cannot reach the host), so that Cargo.lock and cargo metadata carry the URL.
    let url = "https://oauth2:glpat-s3cr3t@git.example.com/acme/helper.git";
    scratch.write("vendor/helper/Cargo.toml", "[package]\nname = \"helper\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
    scratch.write("vendor/helper/src/lib.rs", "pub fn seven() -> u32 { 7 }\n");
    scratch.write("vendor/helper/.cargo-checksum.json", r#"{"files":{},"package":null}"#);
    scratch.write(
        ".cargo/config.toml",
        &format!(
            "{}\n[source.\"git+{url}\"]\ngit = \"{url}\"\nreplace-with = \"vendored\"\n[source.vendored]\ndirectory = \"vendor\"\n",
            std::fs::read_to_string(scratch.path().join(".cargo/config.toml")).unwrap_or_default()
        ),
    );
    scratch.edit("crates/worker/Cargo.toml", |text| format!("{text}helper = {{ git = \"{url}\" }}\n"));
    scratch.edit("Cargo.lock", |text| {
        let text = text.replacen("name = \"worker\"\nversion = \"0.2.0\"\ndependencies = [\n", "name = \"worker\"\nversion = \"0.2.0\"\ndependencies = [\n \"helper\",\n", 1);
        format!("{text}\n[[package]]\nname = \"helper\"\nversion = \"0.1.0\"\nsource = \"git+{url}#0123456789abcdef0123456789abcdef01234567\"\n")
    });
    scratch.commit("a private git dependency");
    let output = scratch.xtask(&["release", "worker", "--platform", "linux/amd64", "--builder", "native"]);
    succeeded(&output)?;
    let blobs = scratch.path().join("target/registry/blobs/sha256");
    let mut documents = 0;
    for blob in std::fs::read_dir(&blobs).unwrap().flatten() {
        let bytes = std::fs::read(blob.path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        documents += usize::from(text.contains("git.example.com/acme/helper"));
        ensure(!text.contains("s3cr3t") && !text.contains("oauth2"), || {
            format!("blob {} carries the token", blob.file_name().to_string_lossy())
        })?;
    }
    // The dependency is named (by the SBOM, at least), only without its credentials.
    ensure(documents > 0, || "no blob of the release names the git dependency: was the SBOM attached?".to_string())
}
