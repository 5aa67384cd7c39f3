//! The engine builder, end to end: a Dockerfile with a RUN step is built by a real Docker engine
//! for amd64 and for arm64 (the arm64 step runs under qemu), pushed by the xtask, and read back
//! with skopeo; on the machine's Docker (20.10, the legacy builder) and on Docker 26 (BuildKit,
//! and the OCI-layout `docker save` format).

use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::support::docker::Engine;
use crate::support::harness::{push_base_image, require_tool, run, skopeo, skopeo_raw, stderr, stdout, Registry, Scratch};

/// The platforms the machine can run RUN steps for: arm64 needs qemu's binfmt handler, which
/// tests/ci.sh registers (and then sets `XTASK_TEST_REQUIRE_EMULATION`, so that its absence fails).
fn runnable_platforms() -> &'static str {
    let handler = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    if handler.starts_with("enabled") || std::env::consts::ARCH == "aarch64" {
        return "linux/amd64,linux/arm64";
    }
    assert!(
        std::env::var_os("XTASK_TEST_REQUIRE_EMULATION").is_none(),
        "XTASK_TEST_REQUIRE_EMULATION is set but qemu-aarch64 is not registered"
    );
    eprintln!("no qemu binfmt handler for arm64: building linux/amd64 only");
    "linux/amd64"
}

/// An app whose image build runs its own binary: it writes the architecture it runs on to the
/// file it is given, so the image proves which machine ran the RUN step.
fn add_stamp_app(scratch: &Scratch, from: &str, run_args: &str) {
    scratch.write("crates/stamp/Cargo.toml", "[package]\nname = \"stamp\"\nversion = \"0.3.0\"\nedition = \"2021\"\n");
    scratch.write(
        "crates/stamp/src/main.rs",
        "fn main() {\n    let path = std::env::args().nth(1).expect(\"stamp needs a file to write\");\n    std::fs::write(path, std::env::consts::ARCH).unwrap();\n}\n",
    );
    scratch.write(
        "crates/stamp/Dockerfile",
        &format!(
            "FROM {from}\nARG TARGETPLATFORM\nCOPY target/stage/${{TARGETPLATFORM}}/stamp /usr/local/bin/stamp\nRUN [{run_args}]\nENTRYPOINT [\"/usr/local/bin/stamp\"]\n"
        ),
    );
    let output = run(Command::new(env!("CARGO")).args(["metadata", "--offline", "--format-version", "1"]).current_dir(scratch.path()));
    assert!(output.status.success(), "{}", stderr(&output));
    scratch.commit("add the stamp app");
}

/// A platform image's architecture, with its layers' files (`layer_files`).
type ArchitectureLayers = (String, Vec<Vec<(String, String)>>);

/// The files of a gzip layer, with their contents (or their size, when not text).
pub fn layer_files(blob: &Path) -> Vec<(String, String)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(blob).unwrap()));
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).unwrap();
            let contents = match String::from_utf8(contents) {
                Ok(text) => text,
                Err(binary) => format!("<{} bytes>", binary.as_bytes().len()),
            };
            files.push((entry.path().unwrap().display().to_string(), contents));
        }
    }
    files
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn blob_path(layout: &Path, digest: &serde_json::Value) -> std::path::PathBuf {
    layout.join("blobs/sha256").join(&digest.as_str().unwrap()["sha256:".len()..])
}

fn release_json(scratch: &Scratch, engine: &Engine, args: &[&str]) -> (serde_json::Value, String) {
    let output = scratch.xtask_with_env(args, &engine.env());
    assert!(output.status.success(), "cargo xtask {args:?} failed:\n{}", stderr(&output));
    (serde_json::from_str(&stdout(&output)).unwrap(), stderr(&output))
}

#[test]
fn run_steps_are_built_by_the_default_engine_for_each_platform_and_pushed_reproducibly() {
    if let Some(engine) = Engine::default_engine() {
        check_run_steps_built_and_pushed_reproducibly(&engine);
    }
}

#[test]
fn run_steps_are_built_by_docker_26_with_buildkit_for_each_platform_and_pushed_reproducibly() {
    if let Some(engine) = Engine::docker26() {
        check_run_steps_built_and_pushed_reproducibly(&engine);
    }
}

fn check_run_steps_built_and_pushed_reproducibly(engine: &Engine) {
    let scratch = Scratch::new();
    let registry = Registry::start();
    engine.prepare(&scratch, &registry);
    let base = format!("{}/base/os:1", registry.host);
    push_base_image(&scratch, &base, &["amd64", "arm64"]);
    add_stamp_app(&scratch, &base, "\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"");
    let repository = format!("{}/acme/prod", registry.host);

    let platforms = runnable_platforms();
    let release = ["release", "stamp", "--repository", &repository, "--json", "--platform", platforms];
    let (json, log) = release_json(&scratch, engine, &release);
    assert!(
        log.contains(
            "stamp: built by the Docker engine, because crates/stamp/Dockerfile:4 has RUN, which the native builder does not assemble"
        ),
        "auto explains its choice:\n{log}"
    );
    let digest = json["apps"][0]["digest"].as_str().unwrap().to_string();
    // The base image's layer keeps its bytes: mounted from its repository, once per platform.
    let platform_count = platforms.split(',').count();
    assert_eq!(json["apps"][0]["push"]["blobs_mounted"], platform_count, "{json:#}");

    // Read what was pushed with skopeo, an independent client.
    let copy = tempfile::tempdir().unwrap();
    let copied = skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{repository}:stamp-latest"),
        &format!("oci:{}:x", copy.path().display()),
    ]);
    assert!(copied.status.success(), "{}", stderr(&copied));
    let index_entry = &read_json(&copy.path().join("index.json"))["manifests"][0];
    assert_eq!(index_entry["digest"], digest.as_str(), "skopeo reads the index the release reported");
    let index = read_json(&blob_path(copy.path(), &index_entry["digest"]));
    assert_eq!(index["annotations"]["org.opencontainers.image.title"], "stamp");
    let mut seen = Vec::new();
    for entry in index["manifests"].as_array().unwrap() {
        let architecture = entry["platform"]["architecture"].as_str().unwrap();
        let manifest = read_json(&blob_path(copy.path(), &entry["digest"]));
        let config = read_json(&blob_path(copy.path(), &manifest["config"]["digest"]));
        assert_eq!(config["architecture"], architecture);
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/stamp"]));
        assert_eq!(config["config"]["Labels"]["org.opencontainers.image.version"], "0.3.0");
        let layers: Vec<Vec<(String, String)>> =
            manifest["layers"].as_array().unwrap().iter().map(|layer| layer_files(&blob_path(copy.path(), &layer["digest"]))).collect();
        // The base image's layer, then what the steps wrote (the legacy builder adds a layer for
        // the base image's WORKDIR), the RUN step's file last.
        assert_eq!(layers[0], [("etc/base-release".to_string(), format!("base for linux/{architecture}\n"))]);
        assert!(layers.iter().flatten().any(|(path, _)| path == "usr/local/bin/stamp"), "{layers:?}");
        let machine = if architecture == "arm64" { "aarch64" } else { "x86_64" };
        assert_eq!(layers.last().unwrap(), &[("etc/stamp-arch".to_string(), machine.to_string())], "the RUN step ran on {machine}");
        seen.push(architecture.to_string());
    }
    assert_eq!(seen.join(","), platforms.replace("linux/", ""));

    // Without the engine's cache every step runs again, at other times: the digest stays, and
    // the re-release uploads nothing.
    let tags: Vec<String> = platforms.split(',').map(|platform| format!("xtask/stamp:{}", platform.replace('/', "-"))).collect();
    let removed = run(engine.docker().arg("rmi").args(&tags));
    assert!(removed.status.success(), "{}", stderr(&removed));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (again, _) = release_json(&scratch, engine, &release);
    assert_eq!(again["apps"][0]["digest"], digest.as_str());
    assert_eq!(again["apps"][0]["push"]["blobs_uploaded"], 0, "{again:#}");

    // A FROM scratch stage records the platform built (the legacy builder needs a stand-in).
    let built = scratch.xtask_with_env(&["build", "worker", "--builder", "engine", "--platform", platforms], &engine.env());
    assert!(built.status.success(), "{}", stderr(&built));
    let layout = scratch.path().join("target/xtask/oci/worker");
    let index = read_json(&blob_path(&layout, &read_json(&layout.join("index.json"))["manifests"][0]["digest"]));
    for entry in index["manifests"].as_array().unwrap() {
        let manifest = read_json(&blob_path(&layout, &entry["digest"]));
        let config = read_json(&blob_path(&layout, &manifest["config"]["digest"]));
        assert_eq!(config["architecture"], entry["platform"]["architecture"]);
    }
}

#[test]
fn engine_failures_say_what_to_do() {
    if Engine::default_engine().is_none() {
        return;
    }
    let scratch = Scratch::new();
    // A RUN step that fails: the stamp binary without its argument.
    add_stamp_app(&scratch, "scratch", "\"/usr/local/bin/stamp\"");
    let check = |args: &[&str], env: &[(&str, &str)], expected: &str| {
        let output = scratch.xtask_with_env(args, env);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}:\n{message}");
        assert!(message.contains(expected), "{args:?}:\nexpected: {expected}\nfound: {message}");
    };
    check(
        &["build", "stamp", "--builder", "native"],
        &[],
        "crates/stamp/Dockerfile:4: RUN is not assembled by the native builder, which makes exactly the image BuildKit makes of one stage of FROM, COPY from the build context, WORKDIR and instructions that set the configuration; build this app with `--builder engine`",
    );
    check(
        &["build", "stamp"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        "cannot reach the Docker engine that the engine builder needs",
    );
    check(
        &["build", "stamp", "--platform", "linux/amd64"],
        &[],
        "the Docker engine could not build crates/stamp/Dockerfile for linux/amd64: fix what it printed above",
    );
}

/// A base image as Go tooling writes it: a Debian root file system made by debootstrap (tests/ci.sh
/// makes it and names its tar `XTASK_TEST_ROOTFS`), imported and pushed by podman. A release of an
/// app on it, on every engine, mounts the base's layer unchanged and uploads the app's own layers
/// and configuration, exactly the bytes they weigh.
#[test]
fn a_release_on_a_debian_base_podman_pushed_uploads_only_the_apps_own_layers() {
    let Some(rootfs) = std::env::var_os("XTASK_TEST_ROOTFS") else {
        eprintln!("XTASK_TEST_ROOTFS is not set (tests/ci.sh sets it): skipping the Debian base test");
        return;
    };
    require_tool("podman");
    let registry = Registry::start();
    let base = format!("{}/base/debian:bookworm", registry.host);
    let storage = tempfile::tempdir().unwrap();
    let podman = |args: &[&str]| {
        let output = run(Command::new("podman")
            .arg("--root")
            .arg(storage.path().join("root"))
            .arg("--runroot")
            .arg(storage.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args));
        assert!(output.status.success(), "podman {args:?}: {}", stderr(&output));
    };
    podman(&["import", "--quiet", rootfs.to_str().unwrap(), "localhost/debian:bookworm"]);
    podman(&["push", "--quiet", "--tls-verify=false", "localhost/debian:bookworm", &format!("docker://{base}")]);
    let base_manifest = skopeo_raw(&format!("docker://{base}"));
    let base_layer = &base_manifest["layers"][0];

    let engines: Vec<Engine> = [Engine::default_engine(), Engine::docker26()].into_iter().flatten().collect();
    for (number, engine) in engines.iter().enumerate() {
        let scratch = Scratch::new();
        engine.prepare(&scratch, &registry);
        // The RUN step needs the base: Debian's shell, and its package manager checked for.
        add_stamp_app(&scratch, &base, "\"/bin/sh\", \"-c\", \"/usr/local/bin/stamp /etc/stamp-arch && test -x /usr/bin/apt-get\"");
        let repository = format!("{}/acme/prod{number}", registry.host);
        let release = ["release", "stamp", "--repository", &repository, "--json", "--platform", "linux/amd64"];
        let (json, _) = release_json(&scratch, engine, &release);
        let index = skopeo_raw(&format!("docker://{repository}:stamp-latest"));
        let manifest = skopeo_raw(&format!("docker://{repository}@{}", index["manifests"][0]["digest"].as_str().unwrap()));
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers[0]["digest"], base_layer["digest"], "{}: the base's layer keeps its bytes", engine.name);
        let own_bytes: u64 = layers[1..].iter().chain([&manifest["config"]]).map(|blob| blob["size"].as_u64().unwrap()).sum();
        let push = &json["apps"][0]["push"];
        assert_eq!(push["blobs_mounted"], 1, "{}: {json:#}", engine.name);
        assert_eq!(push["blobs_uploaded"], layers.len(), "{}: the app's layers and its configuration: {json:#}", engine.name);
        assert_eq!(push["bytes_uploaded"], own_bytes, "{}: {json:#}", engine.name);
        assert!(own_bytes < base_layer["size"].as_u64().unwrap() / 10, "{}: the app's layers are small beside the base's", engine.name);
    }
}

/// An app with a RUN step on the monorepo's own base (`FROM base`, docker/base): each engine gets
/// the base built in the same run from its layout, for each platform, and pulls nothing (there
/// is no Docker Hub here); the app's image starts with the base's layer unchanged, and the
/// release pushes and tags the base first.
#[test]
fn run_steps_on_an_image_of_docker_get_it_from_the_run_on_every_engine() {
    let engines: Vec<Engine> = [Engine::default_engine(), Engine::docker26()].into_iter().flatten().collect();
    let registry = Registry::start();
    for (number, engine) in engines.iter().enumerate() {
        let scratch = Scratch::new();
        engine.prepare(&scratch, &registry);
        add_stamp_app(&scratch, "base", "\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"");
        // The base runs as an unprivileged user; the step writes under /etc as root.
        scratch.edit("crates/stamp/Dockerfile", |text| {
            text.replace("RUN [", "USER 0:0\nRUN [").replace("ENTRYPOINT", "USER 65532:65532\nENTRYPOINT")
        });
        scratch.commit("stamp writes as root");
        let repository = format!("{}/acme/base{number}", registry.host);
        let platforms = runnable_platforms();
        let release = ["release", "base", "stamp", "--repository", &repository, "--json", "--platform", platforms];
        let (json, log) = release_json(&scratch, engine, &release);
        assert!(log.contains("stamp: built by the Docker engine"), "{}: {log}", engine.name);
        let released: Vec<&str> = json["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap()).collect();
        assert_eq!(released, ["base", "stamp"], "{}", engine.name);
        let base_index = skopeo_raw(&format!("docker://{repository}:base-latest"));
        let app_index = skopeo_raw(&format!("docker://{repository}:stamp-latest"));
        for (base_entry, app_entry) in base_index["manifests"].as_array().unwrap().iter().zip(app_index["manifests"].as_array().unwrap()) {
            let base = skopeo_raw(&format!("docker://{repository}@{}", base_entry["digest"].as_str().unwrap()));
            let app = skopeo_raw(&format!("docker://{repository}@{}", app_entry["digest"].as_str().unwrap()));
            assert_eq!(app["layers"][0]["digest"], base["layers"][0]["digest"], "{}: the base's layer keeps its bytes", engine.name);
            let copy = tempfile::tempdir().unwrap();
            let reference = format!("docker://{repository}@{}", app_entry["digest"].as_str().unwrap());
            let copied = skopeo(&["copy", "--src-tls-verify=false", &reference, &format!("oci:{}:x", copy.path().display())]);
            assert!(copied.status.success(), "{}", stderr(&copied));
            let last = app["layers"].as_array().unwrap().last().unwrap()["digest"].clone();
            let architecture = app_entry["platform"]["architecture"].as_str().unwrap();
            let machine = if architecture == "arm64" { "aarch64" } else { "x86_64" };
            assert_eq!(
                layer_files(&blob_path(copy.path(), &last)),
                [("etc/stamp-arch".to_string(), machine.to_string())],
                "{}",
                engine.name
            );
        }
    }
}

/// The stamp app's Dockerfile as real Rust repositories write it: a builder stage runs `cargo
/// build` in a `rust` image (which no registry here has), and the runtime stage copies the
/// binary out of it and runs it.
const BUILDER_STAGE_DOCKERFILE: &str = r#"FROM rust:1.85-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p stamp

FROM scratch
COPY --from=builder /src/target/release/stamp /usr/local/bin/stamp
RUN ["/usr/local/bin/stamp", "/etc/stamp-arch"]
ENTRYPOINT ["/usr/local/bin/stamp"]
"#;

/// The builder stage is replaced by the xtask's cross-compiled binary: neither engine pulls
/// `rust` or runs cargo under qemu, and each builds only the runtime stage, whose RUN step runs
/// the binary the xtask compiled for the platform.
#[test]
fn a_builder_stage_that_runs_cargo_gives_way_to_the_cross_compiled_binary_on_every_engine() {
    let engines: Vec<Engine> = [Engine::default_engine(), Engine::docker26()].into_iter().flatten().collect();
    let registry = Registry::start();
    for (number, engine) in engines.iter().enumerate() {
        let scratch = Scratch::new();
        engine.prepare(&scratch, &registry);
        add_stamp_app(&scratch, "scratch", "\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"");
        scratch.write("crates/stamp/Dockerfile", BUILDER_STAGE_DOCKERFILE);
        scratch.commit("stamp compiles in a builder stage");
        let repository = format!("{}/acme/stages{number}", registry.host);
        let platforms = runnable_platforms();
        let release = ["release", "stamp", "--repository", &repository, "--json", "--platform", platforms];
        let (_, log) = release_json(&scratch, engine, &release);
        assert!(
            log.contains("stamp: the builder stage `builder` (crates/stamp/Dockerfile:1) runs cargo build, which the xtask cross-compiles instead; the rest is built by the Docker engine, because crates/stamp/Dockerfile:8 has RUN"),
            "{}: {log}",
            engine.name
        );
        let index = skopeo_raw(&format!("docker://{repository}:stamp-latest"));
        for entry in index["manifests"].as_array().unwrap() {
            let architecture = entry["platform"]["architecture"].as_str().unwrap();
            let copy = tempfile::tempdir().unwrap();
            let reference = format!("docker://{repository}@{}", entry["digest"].as_str().unwrap());
            let copied = skopeo(&["copy", "--src-tls-verify=false", &reference, &format!("oci:{}:x", copy.path().display())]);
            assert!(copied.status.success(), "{}", stderr(&copied));
            let manifest = read_json(&blob_path(copy.path(), &read_json(&copy.path().join("index.json"))["manifests"][0]["digest"]));
            let layers: Vec<Vec<(String, String)>> =
                manifest["layers"].as_array().unwrap().iter().map(|layer| layer_files(&blob_path(copy.path(), &layer["digest"]))).collect();
            let machine = if architecture == "arm64" { "aarch64" } else { "x86_64" };
            assert_eq!(layers.last().unwrap(), &[("etc/stamp-arch".to_string(), machine.to_string())], "{}", engine.name);
            assert!(layers.iter().flatten().any(|(path, _)| path == "usr/local/bin/stamp"), "{}: {layers:?}", engine.name);
        }
    }
}

/// When what is left of the Dockerfile needs no engine, it is assembled natively, and its
/// layers are those of the workspace's own shape (a one-stage Dockerfile copying the staged
/// binary).
#[test]
fn a_builder_stage_before_a_runtime_stage_without_run_is_assembled_natively() {
    let scratch = Scratch::new();
    let layers_of = |scratch: &Scratch| -> Vec<serde_json::Value> {
        let layout = scratch.path().join("target/xtask/oci/worker");
        let index = read_json(&blob_path(&layout, &read_json(&layout.join("index.json"))["manifests"][0]["digest"]));
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| read_json(&blob_path(&layout, &entry["digest"]))["layers"].clone())
            .collect()
    };
    let build = ["build", "worker", "--platform", "linux/amd64,linux/arm64"];
    // One epoch for both commits: a layer's times are the build's.
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let output = scratch.xtask_with_env(&build, &epoch);
    assert!(output.status.success(), "{}", stderr(&output));
    let staged_shape = layers_of(&scratch);
    scratch.write(
        "crates/worker/Dockerfile",
        "FROM rust AS build\nWORKDIR /usr/src/app\nCOPY . .\nRUN cargo build --release -p worker\n\nFROM scratch\nCOPY --from=build /usr/src/app/target/release/worker /worker\nENV TOP=5\nLABEL org.opencontainers.image.description=\"word frequency batch job\"\nENTRYPOINT [\"/worker\"]\n",
    );
    scratch.commit("worker compiles in a builder stage");
    let output = scratch.xtask_with_env(&build, &epoch);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("worker: the builder stage `build` (crates/worker/Dockerfile:1) runs cargo build, which the xtask cross-compiles instead; the rest is assembled natively"),
        "{log}"
    );
    assert_eq!(layers_of(&scratch), staged_shape, "the same layers as the staged-binary Dockerfile's");
}

/// zero2prod's shape: the runtime stage copies a file of the build context too, and the
/// .dockerignore leaves out `target/`, where the xtask stages the binaries. The builder stage is
/// still replaced: BuildKit reads the staged binaries from a named build context, and the image
/// has both platforms' binaries, the context's file and the RUN step's output.
#[test]
fn staged_binaries_reach_an_engine_through_a_named_context_where_the_dockerignore_leaves_them_out() {
    let Some(engine) = Engine::docker26() else { return };
    let registry = Registry::start();
    let scratch = Scratch::new();
    engine.prepare(&scratch, &registry);
    add_stamp_app(&scratch, "scratch", "\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"");
    let dockerfile = BUILDER_STAGE_DOCKERFILE.replace("RUN [", "COPY configuration/base.yaml /etc/stamp.yaml\nRUN [");
    scratch.write("crates/stamp/Dockerfile", &dockerfile);
    scratch.write("configuration/base.yaml", "port: 8000\n");
    scratch.write(".dockerignore", "target/\n.git\n");
    scratch.commit("the runtime stage reads the context, which leaves out target/");
    let platforms = runnable_platforms();
    let output = scratch.xtask_with_env(&["build", "stamp", "--platform", platforms], &engine.env());
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("stamp: the builder stage `builder` (crates/stamp/Dockerfile:1) runs cargo build, which the xtask cross-compiles instead; the rest is built by the Docker engine, because its stages read the build context, whose .dockerignore leaves out target/stage/: the engine reads the staged binaries from the named build context xtask-stage"),
        "{log}"
    );
    let layout = scratch.path().join("target/xtask/oci/stamp");
    let index = read_json(&blob_path(&layout, &read_json(&layout.join("index.json"))["manifests"][0]["digest"]));
    for entry in index["manifests"].as_array().unwrap() {
        let manifest = read_json(&blob_path(&layout, &entry["digest"]));
        let config = read_json(&blob_path(&layout, &manifest["config"]["digest"]));
        let created_by: Vec<&str> =
            config["history"].as_array().unwrap().iter().map(|entry| entry["created_by"].as_str().unwrap()).collect();
        assert!(
            created_by.iter().any(|line| line.starts_with("COPY /src/target/release/stamp /usr/local/bin/stamp")),
            "the history says the COPY as written: {created_by:?}"
        );
        let files: Vec<(String, String)> =
            manifest["layers"].as_array().unwrap().iter().flat_map(|layer| layer_files(&blob_path(&layout, &layer["digest"]))).collect();
        let machine = if entry["platform"]["architecture"] == "arm64" { "aarch64" } else { "x86_64" };
        assert!(files.contains(&("etc/stamp.yaml".to_string(), "port: 8000\n".to_string())), "{files:?}");
        assert!(
            files.contains(&("etc/stamp-arch".to_string(), machine.to_string())),
            "the RUN step ran the staged binary on {machine}: {files:?}"
        );
    }
}

/// An image declared with a build argument, from a Dockerfile the engine builds: the engine gets
/// the argument (the label says so), and the builder stage it names still gives way.
#[test]
fn a_declared_images_build_arguments_reach_the_engine() {
    let Some(engine) = Engine::docker26() else { return };
    let registry = Registry::start();
    let scratch = Scratch::new();
    engine.prepare(&scratch, &registry);
    add_stamp_app(&scratch, "scratch", "\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"");
    std::fs::remove_file(scratch.path().join("crates/stamp/Dockerfile")).unwrap();
    let by_argument = BUILDER_STAGE_DOCKERFILE
        .replace("WORKDIR /src", "ARG BIN\nWORKDIR /src")
        .replace("-p stamp", "--bin $BIN")
        .replace("FROM scratch\n", "FROM scratch\nARG BIN\nLABEL service=$BIN\n");
    scratch.write("docker/service.Dockerfile", &by_argument);
    scratch.edit("Cargo.toml", |text| {
        format!("{text}\n[[workspace.metadata.xtask.images]]\nname = \"stamp-service\"\ndockerfile = \"docker/service.Dockerfile\"\nargs = {{ BIN = \"stamp\" }}\n")
    });
    scratch.commit("stamp as a declared image");
    let output = scratch.xtask_with_env(&["build", "stamp-service", "--platform", runnable_platforms()], &engine.env());
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("stamp-service: the builder stage `builder` (docker/service.Dockerfile:1) runs cargo build"), "{log}");
    let layout = scratch.path().join("target/xtask/oci/stamp-service");
    let index = read_json(&blob_path(&layout, &read_json(&layout.join("index.json"))["manifests"][0]["digest"]));
    for entry in index["manifests"].as_array().unwrap() {
        let manifest = read_json(&blob_path(&layout, &entry["digest"]));
        let config = read_json(&blob_path(&layout, &manifest["config"]["digest"]));
        assert_eq!(config["config"]["Labels"]["service"], "stamp", "{config:#}");
        let last = layer_files(&blob_path(&layout, &manifest["layers"].as_array().unwrap().last().unwrap()["digest"]));
        assert_eq!(last.first().map(|(path, _)| path.as_str()), Some("etc/stamp-arch"), "the RUN step ran");
    }
}

/// A buildx builder of another driver than `docker` (here `remote`: an engine's own BuildKit,
/// reached over its gRPC API as a docker-container, Kubernetes or cloud builder is) has no engine
/// image store to save from: each platform's image is exported as an OCI archive, nothing is put
/// into the engine, and the release is the one the `docker` driver's build and save gives, digest
/// for digest, its base layers mounted from their repository.
#[test]
fn a_buildx_builder_outside_the_engine_exports_its_images_directly() {
    let Some(engine) = Engine::docker26_containerd_store() else { return };
    let scratch = Scratch::new();
    let registry = Registry::start();
    engine.prepare(&scratch, &registry);
    engine.remote_builder(&scratch, "xtask-remote");
    let base = format!("{}/base/os:1", registry.host);
    push_base_image(&scratch, &base, &["amd64", "arm64"]);
    add_stamp_app(&scratch, &base, "\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"");
    let platforms = runnable_platforms();
    let release = |repository: &str, builder: &[&str]| {
        let repository = format!("{}/{repository}", registry.host);
        let args = [&["release", "stamp", "--repository", &repository, "--json", "--platform", platforms][..], builder].concat();
        release_json(&scratch, &engine, &args).0
    };

    let unknown = scratch.xtask_with_env(&["build", "stamp", "--engine-builder", "nosuch"], &engine.env());
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("the buildx builder `nosuch` does not answer"), "{}", stderr(&unknown));
    // Only this test builds with this engine: what an earlier run left is removed first.
    let in_store = || stdout(&run(engine.docker().args(["image", "ls", "--quiet", "xtask/stamp"]))).trim().to_string();
    let empty_store = || {
        for image in in_store().lines() {
            run(engine.docker().args(["image", "rm", "--force", image]));
        }
    };
    // Each platform's architecture and its layers' files, as skopeo reads `stamp-latest` back.
    let read_back = |repository: &str| -> Vec<ArchitectureLayers> {
        let copy = tempfile::tempdir().unwrap();
        let copied = skopeo(&[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{}/{repository}:stamp-latest", registry.host),
            &format!("oci:{}:x", copy.path().display()),
        ]);
        assert!(copied.status.success(), "{}", stderr(&copied));
        let index = read_json(&blob_path(copy.path(), &read_json(&copy.path().join("index.json"))["manifests"][0]["digest"]));
        let platforms = index["manifests"].as_array().unwrap().iter().map(|entry| {
            let manifest = read_json(&blob_path(copy.path(), &entry["digest"]));
            let layers = manifest["layers"].as_array().unwrap().iter().map(|layer| layer_files(&blob_path(copy.path(), &layer["digest"])));
            (entry["platform"]["architecture"].as_str().unwrap().to_string(), layers.collect())
        });
        platforms.collect()
    };
    empty_store();
    let exported = release("remote/prod", &["--engine-builder", "xtask-remote"]);
    assert_eq!(in_store(), "", "the remote builder put nothing into the engine");
    assert_eq!(exported["apps"][0]["push"]["blobs_mounted"], platforms.split(',').count(), "{exported:#}");
    for (architecture, layers) in read_back("remote/prod") {
        let machine = if architecture == "arm64" { "aarch64" } else { "x86_64" };
        assert_eq!(layers.last().unwrap(), &[("etc/stamp-arch".to_string(), machine.to_string())], "the RUN step ran on {machine}");
    }

    let saved = release("docker/prod", &[]);
    assert_eq!(exported["apps"][0]["digest"], saved["apps"][0]["digest"], "the same image as build and save:\n{exported:#}\n{saved:#}");

    // An image built FROM another image of this run (docker/base): the builder outside the engine
    // reads it from its layout as the named context `base`, and makes the image the `docker`
    // driver makes FROM the image the xtask loaded into the engine.
    // The base runs as an unprivileged user; the stamp writes into /etc.
    scratch.edit("crates/stamp/Dockerfile", |text| text.replacen(&format!("FROM {base}"), "FROM base\nUSER 0", 1));
    scratch.commit("stamp on the monorepo's base");
    let stamp = |released: &serde_json::Value| {
        let apps = released["apps"].as_array().unwrap();
        apps.iter().find(|app| app["name"] == "stamp").cloned().unwrap_or_else(|| panic!("{released:#}"))
    };
    empty_store();
    let on_base = release("remote/on-base", &["--engine-builder", "xtask-remote"]);
    assert_eq!(in_store(), "", "the remote builder put nothing into the engine");
    let on_base_saved = release("docker/on-base", &[]);
    assert_eq!(
        stamp(&on_base)["digest"],
        stamp(&on_base_saved)["digest"],
        "the same image as build and save:\n{on_base:#}\n{on_base_saved:#}"
    );
    for (architecture, layers) in read_back("remote/on-base") {
        let files: Vec<&String> = layers.iter().flatten().map(|(path, _)| path).collect();
        assert!(files.iter().any(|path| path.starts_with("etc/ssl/certs/")), "the base's layers are in {architecture}'s: {files:?}");
    }
}

/// A monorepo base the native builder assembles on a registry image (`FROM <registry>/base/os`,
/// then a COPY), and an app with a RUN step built FROM it by the engine: the base's layout is
/// made to hold the registry image's layers too, fetched and verified, so that the engine reads
/// the base whole (before, `docker load` found them missing).
#[test]
fn an_app_the_engine_builds_on_a_monorepo_base_of_a_registry_image_gets_the_whole_base() {
    for engine in [Engine::default_engine(), Engine::docker26()].into_iter().flatten() {
        let scratch = Scratch::new();
        let registry = Registry::start();
        engine.prepare(&scratch, &registry);
        let os = format!("{}/base/os:1", registry.host);
        push_base_image(&scratch, &os, &["amd64", "arm64"]);
        scratch.edit("docker/base/Dockerfile", |old| old.replace("FROM scratch", &format!("FROM {os}")));
        scratch.commit("the monorepo's base on a registry image");
        // The base runs as an unprivileged user; the stamp writes into /etc.
        add_stamp_app(&scratch, "base\nUSER 0", "\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"");
        let built = scratch.xtask_with_env(&["build", "stamp", "--platform", "linux/amd64"], &engine.env());
        assert!(built.status.success(), "{}", stderr(&built));
        assert!(stderr(&built).contains("base: assembled natively"), "{}", stderr(&built));
        // The base's layers, the registry image's among them, then the app's own.
        let layers = |image: &str| {
            let output = run(engine.docker().args(["image", "inspect", "--format", "{{json .RootFS.Layers}}", image]));
            assert!(output.status.success(), "{}", stderr(&output));
            serde_json::from_str::<Vec<String>>(&stdout(&output)).unwrap()
        };
        let (base, stamp) = (layers("base:latest"), layers("xtask/stamp:linux-amd64"));
        assert!(base.len() == 2 && stamp.len() > 2 && stamp.starts_with(&base), "base {base:?}, stamp {stamp:?}");
        let ran = run(engine.docker().args(["run", "--rm", "xtask/stamp:linux-amd64", "/dev/stdout"]));
        assert_eq!((ran.status.success(), stdout(&ran)), (true, "x86_64".to_string()), "{}", stderr(&ran));
    }
}

/// The same base, with a registry that answers the registry image's layer with other bytes when
/// it is fetched for the engine: the build stops with exit 2 and says which layer, from where,
/// and the layout keeps no blob of the wrong bytes.
#[test]
fn a_registry_layer_fetched_for_the_engine_is_verified() {
    let Some(engine) = Engine::default_engine().or_else(Engine::docker26) else { return };
    let scratch = Scratch::new();
    let registry = Registry::start();
    push_base_image(&scratch, &format!("{}/base/os:1", registry.host), &["amd64"]);
    let index = skopeo_raw(&format!("docker://{}/base/os:1", registry.host));
    let manifest = skopeo_raw(&format!("docker://{}/base/os@{}", registry.host, index["manifests"][0]["digest"].as_str().unwrap()));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    // The native build reads the layer first, and gets it; the fetch for the engine does not.
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let blob = format!("GET /v2/base/os/blobs/{layer} ");
    let rule: crate::support::proxy::Rule = std::sync::Arc::new(move |_, request: &str| match request.starts_with(&blob) {
        true if asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 => crate::support::proxy::Fault::Body("{}"),
        _ => crate::support::proxy::Fault::Pass,
    });
    let proxy = crate::support::proxy::FaultProxy::start_with_rule(&registry.host, rule, std::sync::Arc::new(Vec::new));
    engine.prepare(&scratch, &registry);
    scratch.edit("docker/base/Dockerfile", |old| old.replace("FROM scratch", &format!("FROM {}/base/os:1", proxy.host)));
    scratch.commit("the monorepo's base on a registry image");
    add_stamp_app(&scratch, "base\nUSER 0", "\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"");
    let built = scratch.xtask_with_env(&["build", "stamp", "--platform", "linux/amd64"], &engine.env());
    let message = stderr(&built);
    assert_eq!(built.status.code(), Some(2), "{message}");
    assert!(message.contains(&format!("cannot fetch layer {layer} from {}/base/os", proxy.host)), "{message}");
    assert!(message.contains("is corrupt"), "{message}");
    let blobs = scratch.path().join("target/xtask/oci/base/blobs/sha256");
    assert!(!blobs.join(layer.trim_start_matches("sha256:")).exists(), "no blob of the wrong bytes is kept");
}
