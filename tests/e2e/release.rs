//! `cargo xtask release` and `changed`, end to end.

use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::support::harness::{run, skopeo, skopeo_raw, stderr, stdout, Registry, Scratch};

const APPS: [&str; 2] = ["hello-api", "worker"];

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn platforms(index: &serde_json::Value) -> Vec<String> {
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap()))
        .collect();
    platforms.sort();
    platforms
}

#[test]
fn release_pushes_multi_arch_indexes_then_uploads_nothing_the_second_time() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let repository = format!("{}/acme/prod", registry.host);
    let sha = scratch.head();

    scratch.xtask_ok(&["release", "--all", "--repository", &repository]);

    let copies = tempfile::tempdir().unwrap();
    for app in APPS {
        let sha_tag = format!("docker://{repository}:{app}-{sha}");
        let latest_tag = format!("docker://{repository}:{app}-latest");
        let index = skopeo_raw(&sha_tag);
        assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json", "{app}");
        assert_eq!(platforms(&index), ["linux/amd64", "linux/arm64"], "{app}");
        assert_eq!(index["annotations"]["org.opencontainers.image.revision"], sha.as_str());
        assert_eq!(index["annotations"]["org.opencontainers.image.title"], app);
        let sha_bytes = skopeo(&["inspect", "--tls-verify=false", "--raw", &sha_tag]).stdout;
        let latest_bytes = skopeo(&["inspect", "--tls-verify=false", "--raw", &latest_tag]).stdout;
        assert_eq!(sha256(&sha_bytes), sha256(&latest_bytes), "{app}-latest names another digest than {app}-{sha}");

        for arch in ["amd64", "arm64"] {
            let dest = format!("oci:{}:{app}-{arch}", copies.path().display());
            let copied = skopeo(&["copy", "--src-tls-verify=false", "--override-arch", arch, &sha_tag, &dest]);
            assert!(copied.status.success(), "skopeo could not copy {app} {arch}: {}", stderr(&copied));
            let config = skopeo(&["inspect", "--config", &dest]);
            let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
            assert_eq!(config["architecture"], arch);
        }
    }

    // The sha tag is written before the moving tag.
    let requests = registry.requests();
    let position = |needle: &str| {
        requests.iter().position(|r| r.starts_with("PUT") && r.contains(needle)).unwrap_or_else(|| panic!("no PUT of {needle}"))
    };
    for app in APPS {
        assert!(position(&format!("/manifests/{app}-{sha}")) < position(&format!("/manifests/{app}-latest")));
    }

    let before = registry.requests().len();
    scratch.xtask_ok(&["release", "--all", "--repository", &repository]);
    let second: Vec<String> = registry.requests()[before..].to_vec();
    let uploads: Vec<&String> =
        second.iter().filter(|r| r.contains("/blobs/uploads/") || (r.starts_with("PUT") && r.contains("/manifests/"))).collect();
    assert!(uploads.is_empty(), "the second release of the same commit wrote {uploads:#?}");
}

#[test]
fn default_release_writes_a_local_layout_whose_amd64_image_runs() {
    let scratch = Scratch::new();
    let sha = scratch.head();
    let output = scratch.xtask_ok(&["release", "--all"]);
    assert!(output.contains("oci:"), "{output}");

    let layout = scratch.path().join("target/registry");
    for app in APPS {
        let sha_index = skopeo_raw(&format!("oci:{}:{app}-{sha}", layout.display()));
        let latest_index = skopeo_raw(&format!("oci:{}:{app}-latest", layout.display()));
        assert_eq!(sha_index, latest_index);
        assert_eq!(platforms(&sha_index), ["linux/amd64", "linux/arm64"]);
    }

    // Run the worker's amd64 image in a real engine, when the machine has one.
    let engine = Command::new("docker").arg("info").output().is_ok_and(|out| out.status.success());
    if !engine {
        assert!(
            std::env::var_os("XTASK_TEST_REQUIRE_DOCKER").is_none(),
            "XTASK_TEST_REQUIRE_DOCKER is set but `docker info` fails: start dockerd"
        );
        eprintln!("no Docker engine: skipping the run of the image");
        return;
    }
    let image = format!("xtask-e2e-worker:{}", &sha[..12]);
    let source = format!("oci:{}:worker-latest", layout.display());
    let copied = skopeo(&["copy", "--override-arch", "amd64", &source, &format!("docker-daemon:{image}")]);
    assert!(copied.status.success(), "skopeo could not load the image into the engine: {}", stderr(&copied));
    let mut child = Command::new("docker")
        .args(["run", "--rm", "-i", &image])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"to be or not to be").unwrap();
    let output = child.wait_with_output().unwrap();
    let _ = run(Command::new("docker").args(["rmi", "-f", &image]));
    assert!(output.status.success(), "the worker failed in the engine: {}", stderr(&output));
    assert_eq!(stdout(&output), "2 be\n2 to\n1 not\n1 or\napp=worker event=done words=4 platform=linux/amd64\n");
}

#[test]
fn basic_auth_credentials_come_from_the_docker_configuration() {
    let scratch = Scratch::new();
    let registry = Registry::start_with_auth("ci", "s3cret-pa55");
    scratch.login(&registry.host, "ci", "s3cret-pa55");
    let repository = format!("{}/acme/prod", registry.host);
    let output = scratch.xtask(&["release", "worker", "--repository", &repository, "--platform", "linux/amd64"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stdout(&output).contains("s3cret") && !stderr(&output).contains("s3cret"), "the password leaked into the output");
    let listed =
        skopeo(&["inspect", "--tls-verify=false", "--creds", "ci:s3cret-pa55", "--raw", &format!("docker://{repository}:worker-latest")]);
    assert!(listed.status.success(), "{}", stderr(&listed));
}

#[test]
fn changed_follows_dependencies_to_apps() {
    let scratch = Scratch::new();
    let base = scratch.head();
    scratch.write("crates/wordcount/src/extra.rs", "// a new file in a library only the worker uses\n");
    scratch.commit("touch wordcount");
    let json: serde_json::Value = serde_json::from_str(&scratch.xtask_ok(&["changed", "--base", &base, "--json"])).unwrap();
    let apps: Vec<&str> = json["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap()).collect();
    assert_eq!(apps, ["worker"]);
    let worker = &json["apps"][0];
    assert_eq!(worker["path"], "crates/worker");
    assert_eq!(worker["dockerfile"], "crates/worker/Dockerfile");
    assert_eq!(
        worker["reasons"][0],
        serde_json::json!({"kind": "dependency", "crate": "wordcount", "path": "crates/wordcount/src/extra.rs"})
    );

    scratch.write("README.md", "docs only\n");
    scratch.commit("docs");
    assert_eq!(
        scratch.xtask_ok(&["changed"]).trim(),
        format!("no app changed between {} and {}", scratch.git(&["rev-parse", "HEAD^"]), scratch.head())
    );
}

#[test]
fn base_image_layers_are_listed_once_and_mounted_at_push() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let base = format!("{}/acme/base:1", registry.host);
    crate::support::harness::push_base_image(&scratch, &base, &["amd64", "arm64"]);
    scratch.edit("crates/worker/Dockerfile", |dockerfile| dockerfile.replace("FROM scratch", &format!("FROM {base}")));
    let sha = scratch.commit("worker on a base image");

    let before = registry.requests().len();
    let repository = format!("{}/acme/prod", registry.host);
    scratch.xtask_ok(&["release", "worker", "--repository", &repository]);
    let requests = registry.requests()[before..].to_vec();
    // The two configs, and each platform's layer once, for its listing (the paths a COPY meets):
    // kept in target/xtask/cache/, so a later build reads none of them again.
    let base_reads = requests.iter().filter(|r| r.starts_with("GET") && r.contains("/acme/base/blobs/")).count();
    assert_eq!(base_reads, 4, "the base image's configs and layers are read once: {requests:#?}");
    let mounts = requests.iter().filter(|r| r.starts_with("POST") && r.contains("mount=") && r.contains("from=acme/base")).count();
    assert_eq!(mounts, 2, "each platform's base layer is mounted: {requests:#?}");

    let image = format!("docker://{repository}:worker-{sha}");
    let copies = tempfile::tempdir().unwrap();
    for arch in ["amd64", "arm64"] {
        let dest = format!("oci:{}:{arch}", copies.path().display());
        let copied = skopeo(&["copy", "--src-tls-verify=false", "--override-arch", arch, &image, &dest]);
        assert!(copied.status.success(), "{}", stderr(&copied));
        let config: serde_json::Value = serde_json::from_slice(&skopeo(&["inspect", "--config", &dest]).stdout).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2, "base layer and worker layer");
        assert_eq!(config["config"]["Env"], serde_json::json!(["PATH=/bin", "BASE=yes", "TOP=5"]));
        assert_eq!(config["config"]["WorkingDir"], "/srv");
        assert!(config["config"].get("Cmd").is_none(), "the Dockerfile's ENTRYPOINT clears the base CMD");
    }

    // The local layout has no registry to mount from, so there the layers are fetched.
    scratch.xtask_ok(&["release", "worker"]);
    let copied = skopeo(&[
        "copy",
        "--override-arch",
        "arm64",
        &format!("oci:{}:worker-{sha}", scratch.path().join("target/registry").display()),
        &format!("oci:{}:local", copies.path().display()),
    ]);
    assert!(copied.status.success(), "{}", stderr(&copied));
}

#[test]
fn a_base_image_without_a_requested_platform_is_named_with_its_line() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let base = format!("{}/acme/base:amd64-only", registry.host);
    crate::support::harness::push_base_image(&scratch, &base, &["amd64"]);
    scratch.write("crates/worker/Dockerfile", &format!("# a comment\nFROM {base}\nCOPY target/stage/linux/amd64/worker /worker\n"));
    scratch.commit("amd64-only base");
    let output = scratch.xtask(&["build", "worker"]);
    assert_eq!(output.status.code(), Some(2));
    let expected = format!("crates/worker/Dockerfile:2: FROM {base}: base image {base} has no linux/arm64 image (it has linux/amd64)");
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
}

fn changed_json(scratch: &Scratch, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["changed", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&scratch.xtask_ok(&all)).unwrap()
}

fn app_names(json: &serde_json::Value) -> Vec<String> {
    json["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn lockfile_changes_select_only_the_apps_whose_dependencies_they_change() {
    let scratch = Scratch::new();
    let refresh_lockfile = || {
        let output = run(Command::new(env!("CARGO")).args(["metadata", "--offline", "--format-version", "1"]).current_dir(scratch.path()));
        assert!(output.status.success(), "{}", stderr(&output));
    };

    // Text that changes no dependency graph.
    let base = scratch.head();
    scratch.edit("Cargo.lock", |lock| lock.replacen("# This file", "# This generated file", 1));
    scratch.commit("reword the lockfile header");
    assert!(app_names(&changed_json(&scratch, &["--base", &base])).is_empty());

    // A dependency only the xtask gains.
    let base = scratch.head();
    scratch.edit("xtask/Cargo.toml", |manifest| manifest.replacen("[dependencies]\n", "[dependencies]\nitoa = \"1\"\n", 1));
    refresh_lockfile();
    scratch.commit("xtask uses itoa");
    let json = changed_json(&scratch, &["--base", &base]);
    assert!(app_names(&json).is_empty(), "{json:#}");

    // A dependency of the worker's library.
    let base = scratch.head();
    scratch.edit("crates/wordcount/Cargo.toml", |manifest| format!("{manifest}\n[dependencies]\nitoa = \"1\"\n"));
    refresh_lockfile();
    scratch.commit("wordcount uses itoa");
    let json = changed_json(&scratch, &["--base", &base]);
    assert_eq!(app_names(&json), ["worker"]);
    let kinds: Vec<&str> = json["apps"][0]["reasons"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"lockfile") && kinds.contains(&"dependency"), "{json:#}");
}

#[test]
fn deleted_apps_exit_codes_explanations_and_shallow_clones() {
    let scratch = Scratch::new();
    let first = scratch.head();
    scratch.write("crates/wordcount/src/extra.rs", "// touched\n");
    scratch.commit("touch wordcount");
    let explained = scratch.xtask_ok(&["changed", "--base", &first, "--explain", "worker"]);
    assert_eq!(
        explained.trim(),
        "worker: built from crates/worker/Dockerfile, beside the crate's Cargo.toml\ncrates/wordcount/src/extra.rs → wordcount → worker"
    );
    assert_eq!(scratch.xtask(&["changed", "--base", &first, "--exit-code"]).status.code(), Some(1));
    assert_eq!(scratch.xtask(&["changed", "--base", "HEAD", "--exit-code"]).status.code(), Some(0));

    let before_delete = scratch.head();
    std::fs::remove_file(scratch.path().join("crates/hello-api/Dockerfile")).unwrap();
    scratch.commit("hello-api is a library now");
    let json = changed_json(&scratch, &["--base", &before_delete]);
    assert!(app_names(&json).is_empty());
    assert_eq!(json["deleted"], serde_json::json!([{"name": "hello-api", "path": "crates/hello-api"}]));

    let shallow = tempfile::tempdir().unwrap();
    let url = format!("file://{}", scratch.path().display());
    let cloned = run(Command::new("git").args(["clone", "-q", "--depth", "1", &url]).arg(shallow.path().join("ws")));
    assert!(cloned.status.success(), "{}", stderr(&cloned));
    let output = run(Command::new(env!("CARGO_BIN_EXE_xtask")).arg("changed").current_dir(shallow.path().join("ws")));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("this clone is shallow") && stderr(&output).contains("fetch-depth: 0"), "{}", stderr(&output));
    let output =
        run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(["changed", "--fallback", "all"]).current_dir(shallow.path().join("ws")));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("worker: everything, because this clone is shallow"), "{}", stdout(&output));
}

#[test]
fn extra_tags_no_latest_and_github_outputs() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let repository = format!("{}/acme/prod", registry.host);
    let sha = scratch.head();
    let outputs = tempfile::tempdir().unwrap();
    let (output_file, summary_file) = (outputs.path().join("output"), outputs.path().join("summary"));
    let output = scratch.xtask_with_env(
        &[
            "release",
            "worker",
            "--repository",
            &repository,
            "--platform",
            "linux/amd64",
            "--tag-extra",
            "semver",
            "--tag-extra",
            "staging",
            "--no-latest",
        ],
        &[("GITHUB_OUTPUT", output_file.to_str().unwrap()), ("GITHUB_STEP_SUMMARY", summary_file.to_str().unwrap())],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let digest = |tag: &str| {
        let out = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{repository}:{tag}")]);
        out.status.success().then(|| sha256(&out.stdout))
    };
    let released = digest(&format!("worker-{sha}")).expect("the sha tag exists");
    assert_eq!(digest("worker-v0.2.0"), Some(released.clone()));
    assert_eq!(digest("worker-staging"), Some(released.clone()));
    assert_eq!(digest("worker-latest"), None, "--no-latest leaves -latest alone");

    let outputs = std::fs::read_to_string(&output_file).unwrap();
    assert!(outputs.contains(&format!("digests={{\"worker\":\"{released}\"}}")), "{outputs}");
    assert!(outputs.contains("matrix={\"app\":[\"worker\"]}"), "{outputs}");
    let summary = std::fs::read_to_string(&summary_file).unwrap();
    assert!(summary.contains("| worker | `") && summary.contains("released |"), "{summary}");
}

#[test]
fn releases_heal_what_an_earlier_release_left_out_and_keep_rollbacks() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let repository = format!("{}/acme/prod", registry.host);
    let against = |scratch: &Scratch| changed_json(scratch, &["--against-registry", "--repository", &repository]);
    let first = scratch.head();
    scratch.xtask_ok(&["release", "--all", "--repository", &repository]);
    scratch.write("CONTRIBUTING.md", "docs only\n");
    scratch.commit("docs");
    let json = against(&scratch);
    assert!(app_names(&json).is_empty(), "{json:#}");

    // The worker changes, but its release never happens; then a commit changes only docs.
    scratch.write("crates/worker/src/extra.rs", "// not released\n");
    scratch.commit("worker change whose release failed");
    scratch.write("README.md", "docs only\n");
    scratch.commit("docs");
    assert!(app_names(&changed_json(&scratch, &[])).is_empty(), "the git diff alone shows nothing");
    let json = against(&scratch);
    assert_eq!(app_names(&json), ["worker"], "{json:#}");
    assert_eq!(json["apps"][0]["reasons"][0]["kind"], "stale");
    assert_eq!(json["apps"][0]["reasons"][0]["tag"], format!("worker-{first}"));

    let released = scratch.xtask_ok(&["release", "--repository", &repository]);
    assert!(released.contains(&format!("worker-{}", scratch.head())) && !released.contains("hello-api"), "{released}");
    assert!(app_names(&against(&scratch)).is_empty());
    assert_eq!(scratch.xtask_ok(&["release", "--repository", &repository]).trim(), "no app changed; nothing to release");

    // A new repository gets every app, the ones git shows and the ones it does not.
    let fresh = format!("{}/acme/fresh", registry.host);
    let json = changed_json(&scratch, &["--against-registry", "--repository", &fresh]);
    assert_eq!(app_names(&json), ["base", "hello-api", "worker"]);
    assert_eq!(json["apps"][1]["reasons"][0]["kind"], "unreleased");
    assert_eq!(json["apps"][1]["reasons"][0]["searched"][0], format!("hello-api-{first}"));
    assert!(scratch.xtask_ok(&["release", "--git-only", "--repository", &fresh]).contains("nothing to release"));

    // Rolling `-latest` back to an older image is not undone by the next release.
    scratch.write("crates/hello-api/src/extra.rs", "// a second hello-api\n");
    scratch.commit("hello-api change");
    scratch.xtask_ok(&["release", "--repository", &repository]);
    let rollback = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--all",
        &format!("docker://{repository}:hello-api-{first}"),
        &format!("docker://{repository}:hello-api-latest"),
    ]);
    assert!(rollback.status.success(), "{}", stderr(&rollback));
    scratch.write("README.md", "more docs\n");
    scratch.commit("more docs");
    assert!(app_names(&against(&scratch)).is_empty());
}

#[test]
fn rollback_moves_latest_with_one_manifest_put_and_refuses_unreleased_commits() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let repository = format!("{}/acme/prod", registry.host);
    let first = scratch.head();
    // Without attestations, whose deletion with the image is supply.rs's business.
    scratch.xtask_ok(&["release", "worker", "--no-attest", "--repository", &repository]);
    // Images are ordered by their creation time, the commit time in seconds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    scratch.write("crates/worker/src/extra.rs", "// a second worker\n");
    let second = scratch.commit("worker change");
    scratch.xtask_ok(&["release", "--no-attest", "--repository", &repository]);
    let tag = |name: &str| registry.storage().tags("acme/prod").into_iter().find(|(tag, _)| tag == name).map(|(_, digest)| digest);
    assert_eq!(tag("worker-latest"), tag(&format!("worker-{second}")));

    let images = |scratch: &Scratch| -> Vec<Vec<String>> {
        let json: serde_json::Value =
            serde_json::from_str(&scratch.xtask_ok(&["images", "worker", "--json", "--repository", &repository])).unwrap();
        json["worker"]
            .as_array()
            .unwrap()
            .iter()
            .map(|image| image["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .collect()
    };
    assert_eq!(
        images(&scratch),
        [vec![format!("worker-{second}"), "worker-latest".into()], vec![format!("worker-{first}")]],
        "newest first"
    );

    let before = registry.requests().len();
    let output = scratch.xtask_ok(&["rollback", "worker", "--to", &first[..10], "--repository", &repository]);
    assert!(output.contains("worker-latest now names"), "{output}");
    assert_eq!(tag("worker-latest"), tag(&format!("worker-{first}")));
    let writes: Vec<String> = registry.requests()[before..]
        .iter()
        .filter(|r| r.starts_with("PUT") || r.starts_with("POST") || r.starts_with("PATCH"))
        .cloned()
        .collect();
    assert_eq!(writes.len(), 1, "one manifest PUT: {writes:#?}");
    assert!(scratch.xtask_ok(&["rollback", "worker", "--to", &first, "--repository", &repository]).contains("already names"));
    assert_eq!(images(&scratch), [vec![format!("worker-{second}")], vec![format!("worker-{first}"), "worker-latest".into()]]);

    scratch.write("NOTES.md", "not released\n");
    let unreleased = scratch.commit("docs");
    let output = scratch.xtask(&["rollback", "worker", "--to", &unreleased, "--repository", &repository]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(&format!("has no image worker-{unreleased}")), "{}", stderr(&output));

    // Pruning keeps the newest images and whatever -latest names (here the older one).
    let tags = || {
        registry.storage().tags("acme/prod").into_iter().map(|(tag, _)| tag).filter(|tag| tag.starts_with("worker-")).collect::<Vec<_>>()
    };
    let before = tags();
    let kept = scratch.xtask_ok(&["prune", "worker", "--keep", "1", "--repository", &repository]);
    assert!(kept.contains("none beyond the newest 1 to delete"), "{kept}");
    let planned = scratch.xtask_ok(&["prune", "worker", "--keep", "0", "--repository", &repository, "--dry-run"]);
    assert_eq!(planned.lines().count(), 1, "{planned}");
    assert!(planned.starts_with("would delete sha256:") && planned.contains(&format!("(worker-{second})")), "{planned}");
    assert_eq!(tags(), before, "a dry run deletes nothing");
    let refused = scratch.xtask(&["delete", "worker", "--tag", &format!("worker-{first}"), "--repository", &repository]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("names the same image as worker-latest"), "{}", stderr(&refused));

    let before = registry.requests().len();
    scratch.xtask_ok(&["prune", "worker", "--keep", "0", "--repository", &repository]);
    let deletes = registry.requests()[before..].iter().filter(|r| r.starts_with("DELETE")).count();
    assert_eq!(deletes, 1, "one manifest DELETE");
    assert_eq!(tags(), [format!("worker-{first}"), "worker-latest".into()]);
    let latest = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{repository}:worker-latest")]);
    assert!(latest.status.success(), "{}", stderr(&latest));

    let deleted =
        scratch.xtask_ok(&["delete", "worker", "--tag", "worker-latest", "--tag", &format!("worker-{first}"), "--repository", &repository]);
    assert!(deleted.starts_with("deleted sha256:"), "{deleted}");
    assert!(tags().is_empty(), "{:?}", tags());
}

#[test]
fn promote_copies_an_index_across_repositories_by_mounting_its_blobs() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let host = &registry.host;
    // Without attestations, whose copying is supply.rs's business.
    scratch.xtask_ok(&["release", "worker", "--no-attest", "--repository", &format!("{host}/acme/staging")]);
    scratch.edit("Cargo.toml", |manifest| {
        format!(
            "{manifest}\n[workspace.metadata.xtask.environments]\nstaging = \"{host}/acme/staging\"\nproduction = \"{host}/acme/prod\"\n"
        )
    });

    let before = registry.requests().len();
    scratch.xtask_ok(&["promote", "worker", "--from", "staging", "--to", "production"]);
    let requests = registry.requests()[before..].to_vec();
    let mounts = requests.iter().filter(|r| r.starts_with("POST") && r.contains("mount=") && r.contains("from=acme/staging")).count();
    let uploads = requests.iter().filter(|r| r.starts_with("PUT") && r.contains("/blobs/uploads/")).count();
    assert_eq!((mounts, uploads), (4, 0), "two configs and two layers are mounted, none uploaded: {requests:#?}");
    let tags = |repository: &str| registry.storage().tags(repository);
    let staging = tags("acme/staging");
    assert_eq!(tags("acme/prod"), staging, "the same tags name the same digests");
    assert!(staging.iter().any(|(tag, _)| tag == "worker-latest") && staging.len() == 2, "{staging:?}");

    let before = registry.requests().len();
    scratch.xtask_ok(&["promote", "worker", "--from", "staging", "--to", "production"]);
    let writes = registry.requests()[before..].iter().filter(|r| r.starts_with("PUT") || r.starts_with("POST")).count();
    assert_eq!(writes, 0, "a second promotion writes nothing");

    let output = scratch.xtask(&["promote", "hello-api", "--from", "staging", "--to", "production"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(&format!("{host}/acme/staging has no image hello-api-latest to promote")), "{}", stderr(&output));

    let output = scratch.xtask(&["promote", "worker", "--from", "qa", "--to", "production"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown environment `qa`: name one of [workspace.metadata.xtask.environments] (production, staging)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_repository_per_image_holds_each_apps_images_tagged_by_commit_and_latest() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let host = &registry.host;
    let staging = format!("{host}/acme/{{image}}");
    let tags = |repository: &str| -> Vec<String> { registry.storage().tags(repository).into_iter().map(|(tag, _)| tag).collect() };
    let digest =
        |repository: &str, tag: &str| registry.storage().tags(repository).into_iter().find(|(name, _)| name == tag).map(|(_, d)| d);
    let release = |apps: &[&str]| {
        let mut args = vec!["release", "--platform", "linux/amd64", "--no-attest", "--repository", &staging];
        args.extend(apps);
        scratch.xtask_ok(&args)
    };
    let first = scratch.head();
    release(&["worker", "hello-api"]);
    assert_eq!(tags("acme/worker"), [first.clone(), "latest".to_string()]);
    assert_eq!(tags("acme/hello-api"), [first.clone(), "latest".to_string()]);
    assert!(tags("acme/prod").is_empty() && registry.storage().dangling_tags("acme/worker").is_empty());

    // A plan names each app's own repository.
    let planned: serde_json::Value =
        serde_json::from_str(&scratch.xtask_ok(&["release", "worker", "--dry-run", "--json", "--repository", &staging])).unwrap();
    assert_eq!(planned["apps"][0]["repository"], format!("{host}/acme/worker"));

    // images lists each app's own repository.
    let listing: serde_json::Value = serde_json::from_str(&scratch.xtask_ok(&["images", "--json", "--repository", &staging])).unwrap();
    assert_eq!(listing["worker"][0]["tags"], serde_json::json!([first, "latest"]));
    assert_eq!(listing["hello-api"][0]["tags"], serde_json::json!([first, "latest"]));

    // A second release of worker, then a rollback to the first: `latest` moves, in worker's own repository.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    scratch.write("crates/worker/src/extra.rs", "// a second worker\n");
    let second = scratch.commit("worker change");
    release(&["worker"]);
    assert_eq!(digest("acme/worker", "latest"), digest("acme/worker", &second));
    let output = scratch.xtask_ok(&["rollback", "worker", "--to", &first, "--repository", &staging]);
    assert!(output.contains("latest now names"), "{output}");
    assert_eq!(digest("acme/worker", "latest"), digest("acme/worker", &first));
    assert_eq!(digest("acme/hello-api", "latest"), digest("acme/hello-api", &first), "hello-api's repository is untouched");

    // Promoted into per-image production, and into a shared repository, where the tags carry the app.
    scratch.edit("Cargo.toml", |manifest| {
        format!("{manifest}\n[workspace.metadata.xtask.environments]\nstaging = \"{staging}\"\nproduction = \"{host}/prod/{{image}}\"\n")
    });
    scratch.commit("environments");
    scratch.xtask_ok(&["promote", "worker", "--from", "staging", "--to", "production"]);
    assert_eq!(tags("prod/worker"), [first.clone(), "latest".to_string()]);
    assert_eq!(digest("prod/worker", "latest"), digest("acme/worker", &first));
    scratch.xtask_ok(&["promote", "worker", "--from", "production", "--to", &format!("{host}/shared/all")]);
    assert_eq!(tags("shared/all"), [format!("worker-{first}"), "worker-latest".to_string()]);
}

#[test]
fn docker_hub_short_names_and_untagged_references_resolve_as_docker_does() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    // The registry stands in for Docker Hub and gcr.io.
    crate::support::harness::push_base_image(&scratch, &format!("{}/library/debian:bookworm-slim", registry.host), &["amd64", "arm64"]);
    crate::support::harness::push_base_image(&scratch, &format!("{}/distroless/cc-debian12:latest", registry.host), &["amd64", "arm64"]);
    let map = format!("docker.io={0},gcr.io={0}", registry.host);
    for (base, source) in
        [("debian:bookworm-slim", "docker.io/library/debian"), ("gcr.io/distroless/cc-debian12", "gcr.io/distroless/cc-debian12")]
    {
        scratch.write(
            "crates/worker/Dockerfile",
            &format!("FROM {base}\nARG TARGETPLATFORM\nCOPY target/stage/${{TARGETPLATFORM}}/worker /worker\n"),
        );
        scratch.commit(base);
        let output = scratch.xtask_with_env(&["build", "worker"], &[("XTASK_REGISTRY_MAP", &map)]);
        assert!(output.status.success(), "FROM {base}: {}", stderr(&output));
        let foreign = std::fs::read_to_string(scratch.path().join("target/xtask/oci/worker/xtask-foreign-blobs.json")).unwrap();
        assert!(foreign.contains(&format!("\"{source}\"")), "FROM {base}: the base's layers are recorded as {foreign}");
    }
}
