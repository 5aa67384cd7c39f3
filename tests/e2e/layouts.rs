//! Images of `docker/<name>/` whose Dockerfile compiles a crate of the workspace in a builder
//! stage, the layout of most service monorepos: the xtask compiles that crate itself (the
//! builder stage gives way to the cross-compiled binary), and the image's inputs are the crate's
//! and its Dockerfile, not every file the builder stage's `COPY . .` would read. Also images
//! declared in the configuration, several from one Dockerfile by build argument and target.

use std::process::Command;

use crate::engine::{blob_path, layer_files, read_json};
use crate::support::harness::{run, stderr, stdout, Scratch};

/// A binary crate under `crates/<name>/` that prints its name and architecture, in the lockfile.
fn add_bin_crate(scratch: &Scratch, name: &str) {
    scratch
        .write(&format!("crates/{name}/Cargo.toml"), &format!("[package]\nname = \"{name}\"\nversion = \"0.2.0\"\nedition = \"2021\"\n"));
    scratch.write(
        &format!("crates/{name}/src/main.rs"),
        &format!("fn main() {{\n    println!(\"{name} on {{}}\", std::env::consts::ARCH);\n}}\n"),
    );
    let output = run(Command::new(env!("CARGO")).args(["metadata", "--offline", "--format-version", "1"]).current_dir(scratch.path()));
    assert!(output.status.success(), "{}", stderr(&output));
}

/// Appends `text` to `path`, commits, and returns the apps `changed` selects between `base` and
/// the new commit, which becomes the next `base`.
fn select_after_edit(scratch: &Scratch, base: &mut String, path: &str, text: &str) -> Vec<String> {
    scratch.edit(path, |old| format!("{old}{text}"));
    let head = scratch.commit(&format!("edit {path}"));
    let json: serde_json::Value = serde_json::from_str(&scratch.xtask_ok(&["changed", "--base", base, "--json"])).unwrap();
    *base = head;
    json["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn an_image_of_docker_that_compiles_a_crate_is_built_from_the_cross_compiled_crate_and_selected_by_it() {
    let scratch = Scratch::new();
    add_bin_crate(&scratch, "gateway");
    scratch.write(
        "docker/api-server/Dockerfile",
        "FROM rust:1.85-bookworm AS builder\nWORKDIR /src\nCOPY . .\nCOPY migrations /src/migrations\nRUN cargo build --release --locked -p gateway\n\nFROM scratch\nCOPY --from=builder /src/target/release/gateway /usr/local/bin/gateway\nENTRYPOINT [\"/usr/local/bin/gateway\"]\n",
    );
    scratch.write("migrations/0001_init.sql", "CREATE TABLE routes (id INT);\n");
    // Named after the crate it builds: `docker/relay/` is the relay crate's image.
    add_bin_crate(&scratch, "relay");
    scratch.write(
        "docker/relay/Dockerfile",
        "FROM rust AS build\nWORKDIR /app\nCOPY . .\nRUN [\"cargo\", \"build\", \"--release\", \"--bin\", \"relay\"]\nFROM scratch\nCOPY --from=build /app/target/release/relay /relay\nENTRYPOINT [\"/relay\"]\n",
    );
    let mut base = scratch.commit("two images of docker/ that compile crates");

    let output = scratch.xtask(&["build", "api-server", "relay", "--platform", "linux/amd64,linux/arm64"]);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("api-server: the builder stage `builder` (docker/api-server/Dockerfile:1) runs cargo build, which the xtask cross-compiles instead; the rest is assembled natively"),
        "{log}"
    );
    assert!(log.contains("relay: the builder stage `build` (docker/relay/Dockerfile:1)"), "{log}");
    assert_eq!(stdout(&run(&mut Command::new(scratch.path().join("target/stage/linux/amd64/gateway")))), "gateway on x86_64\n");
    // Each platform's image carries that platform's cross-compiled binary.
    let layout = scratch.path().join("target/xtask/oci/api-server");
    let index = read_json(&blob_path(&layout, &read_json(&layout.join("index.json"))["manifests"][0]["digest"]));
    for entry in index["manifests"].as_array().unwrap() {
        let platform = format!("linux/{}", entry["platform"]["architecture"].as_str().unwrap());
        let manifest = read_json(&blob_path(&layout, &entry["digest"]));
        let files: Vec<(String, String)> =
            manifest["layers"].as_array().unwrap().iter().flat_map(|layer| layer_files(&blob_path(&layout, &layer["digest"]))).collect();
        let staged = std::fs::read(scratch.path().join("target/stage").join(&platform).join("gateway")).unwrap();
        assert_eq!(files, [("usr/local/bin/gateway".to_string(), format!("<{} bytes>", staged.len()))], "{platform}");
    }

    // What selects each image: its crate and its Dockerfile, nothing else.
    let mut select_after = |path: &str, text: &str| select_after_edit(&scratch, &mut base, path, text);
    assert_eq!(select_after("crates/gateway/src/main.rs", "// changed\n"), ["api-server"]);
    assert_eq!(select_after("crates/relay/src/main.rs", "// changed\n"), ["relay"]);
    assert_eq!(select_after("docker/relay/Dockerfile", "LABEL team=edge\n"), ["relay"]);
    assert_eq!(select_after("README.md", "\nA note.\n"), Vec::<String>::new());
    // What the builder stage copies besides the workspace, which cargo's graph does not know.
    assert_eq!(select_after("migrations/0001_init.sql", "-- seeded\n"), ["api-server"]);
}

/// What an app's own files select, by what the build does with them: an app's Dockerfile is an
/// input of its image only, not of the apps that depend on its crate's library; and a build
/// script at a crate's root (hello-api's) does not make its `tests/` an input.
#[test]
fn an_apps_dockerfile_selects_only_its_image_and_tests_beside_a_root_build_script_select_none() {
    let scratch = Scratch::new();
    // edge is an app with a library, and relay an app built on that library.
    scratch.write("crates/edge/Cargo.toml", "[package]\nname = \"edge\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
    scratch.write("crates/edge/src/lib.rs", "pub fn name() -> &'static str {\n    \"edge\"\n}\n");
    scratch.write("crates/edge/src/main.rs", "fn main() {\n    println!(\"{}\", edge::name());\n}\n");
    scratch.write("crates/edge/Dockerfile", "FROM scratch\nARG TARGETPLATFORM\nCOPY target/stage/${TARGETPLATFORM}/edge /edge\n");
    scratch.write(
        "crates/relay/Cargo.toml",
        "[package]\nname = \"relay\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nedge = { path = \"../edge\" }\n",
    );
    scratch.write("crates/relay/src/main.rs", "fn main() {\n    println!(\"relay of {}\", edge::name());\n}\n");
    scratch.write("crates/relay/Dockerfile", "FROM scratch\nARG TARGETPLATFORM\nCOPY target/stage/${TARGETPLATFORM}/relay /relay\n");
    scratch.write("crates/hello-api/tests/greeting.rs", "#[test]\nfn greets() {}\n");
    let output = run(Command::new(env!("CARGO")).args(["metadata", "--offline", "--format-version", "1"]).current_dir(scratch.path()));
    assert!(output.status.success(), "{}", stderr(&output));
    let mut base = scratch.commit("edge and relay");
    let mut select_after = |path: &str, text: &str| select_after_edit(&scratch, &mut base, path, text);
    assert_eq!(select_after("crates/edge/Dockerfile", "ENTRYPOINT [\"/edge\"]\n"), ["edge"]);
    assert_eq!(select_after("crates/edge/src/lib.rs", "// changed\n"), ["edge", "relay"]);
    assert_eq!(select_after("crates/hello-api/tests/greeting.rs", "// changed\n"), Vec::<String>::new());
    assert_eq!(select_after("crates/hello-api/build.rs", "// changed\n"), ["hello-api"]);
}

/// A repository's own Dockerfile at the root of a virtual workspace, building one crate (`RUN
/// cargo build --release -p rumqttd`, rumqtt's shape): the image of that crate, named for it,
/// found without configuration; a second root Dockerfile building the same crate
/// (`Dockerfile.cross`) is left for a declaration. The crate's edits and the Dockerfile's select
/// it; a README edit does not.
#[test]
fn a_root_dockerfile_is_the_image_of_the_crate_its_builder_stage_builds() {
    let scratch = Scratch::new();
    add_bin_crate(&scratch, "broker");
    let dockerfile = "FROM rust:alpine AS builder\nWORKDIR /usr/src/app\nCOPY . .\nRUN cargo build --release -p broker\n\nFROM scratch\nCOPY --from=builder /usr/src/app/target/release/broker /usr/local/bin/broker\nENTRYPOINT [\"broker\"]\n";
    scratch.write("Dockerfile", dockerfile);
    scratch.write("Dockerfile.cross", dockerfile);
    let mut base = scratch.commit("a root Dockerfile");

    let explained = scratch.xtask_ok(&["changed", "--all", "--explain", "broker"]);
    assert!(
        explained.contains("broker: built from Dockerfile, at the workspace root, named for the crate its builder stage builds"),
        "{explained}"
    );
    let output = scratch.xtask(&["build", "broker", "--platform", "linux/amd64"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output)
            .contains("broker: the builder stage `builder` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead"),
        "{}",
        stderr(&output)
    );
    let mut select_after = |path: &str, text: &str| select_after_edit(&scratch, &mut base, path, text);
    assert_eq!(select_after("crates/broker/src/main.rs", "// changed\n"), ["broker"]);
    assert_eq!(select_after("Dockerfile", "ENV RUST_LOG=info\n"), ["broker"]);
    assert_eq!(select_after("README.md", "more\n"), Vec::<String>::new());
}

/// One Dockerfile for several images, as PostHog and chroma write it: `ARG BIN` names the binary
/// the builder stage compiles and the runtime stage copies, and a later stage is another target.
const BY_ARG: &str = r#"FROM rust:1.85-bookworm AS builder
ARG BIN
WORKDIR /app
COPY . .
RUN cargo build --release --locked --bin $BIN

FROM scratch AS runtime
ARG BIN
COPY --from=builder /app/target/release/$BIN /usr/local/bin/$BIN
ENV SERVICE=$BIN

FROM runtime AS debug
ENV RUST_LOG=debug
"#;

/// Images declared in `[[workspace.metadata.xtask.images]]` with their build arguments and
/// target: each compiles the crate its argument names, is selected by that crate and by the
/// shared Dockerfile, and `--explain` says where it was declared.
#[test]
fn declared_images_share_one_dockerfile_by_build_argument_and_target() {
    let scratch = Scratch::new();
    add_bin_crate(&scratch, "gateway");
    add_bin_crate(&scratch, "relay");
    scratch.write("docker/rust.Dockerfile", BY_ARG);
    scratch.edit("Cargo.toml", |text| {
        format!(
            "{text}\n[[workspace.metadata.xtask.images]]\nname = \"gateway\"\ndockerfile = \"docker/rust.Dockerfile\"\ntarget = \"runtime\"\nargs = {{ BIN = \"gateway\" }}\n\n[[workspace.metadata.xtask.images]]\nname = \"relay-debug\"\ndockerfile = \"docker/rust.Dockerfile\"\nargs = {{ BIN = \"relay\" }}\n"
        )
    });
    let mut base = scratch.commit("two images of one Dockerfile");

    let output = scratch.xtask(&["build", "gateway", "relay-debug", "--platform", "linux/amd64,linux/arm64"]);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("gateway: the builder stage `builder` (docker/rust.Dockerfile:1) runs cargo build, which the xtask cross-compiles instead; the rest is assembled natively"),
        "{log}"
    );
    for (image, bin, debug) in [("gateway", "gateway", false), ("relay-debug", "relay", true)] {
        let layout = scratch.path().join("target/xtask/oci").join(image);
        let index = read_json(&blob_path(&layout, &read_json(&layout.join("index.json"))["manifests"][0]["digest"]));
        for entry in index["manifests"].as_array().unwrap() {
            let platform = format!("linux/{}", entry["platform"]["architecture"].as_str().unwrap());
            let manifest = read_json(&blob_path(&layout, &entry["digest"]));
            let files: Vec<(String, String)> = manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|layer| layer_files(&blob_path(&layout, &layer["digest"])))
                .collect();
            let staged = std::fs::read(scratch.path().join("target/stage").join(&platform).join(bin)).unwrap();
            assert_eq!(files, [(format!("usr/local/bin/{bin}"), format!("<{} bytes>", staged.len()))], "{image} {platform}");
            let config = read_json(&blob_path(&layout, &manifest["config"]["digest"]));
            let env: Vec<&str> = config["config"]["Env"].as_array().unwrap().iter().map(|value| value.as_str().unwrap()).collect();
            assert!(env.contains(&format!("SERVICE={bin}").as_str()), "{image}: {env:?}");
            assert_eq!(env.contains(&"RUST_LOG=debug"), debug, "{image}: the target stage, or the last: {env:?}");
        }
    }
    assert_eq!(stdout(&run(&mut Command::new(scratch.path().join("target/stage/linux/amd64/relay")))), "relay on x86_64\n");
    let explained = scratch.xtask_ok(&["changed", "--all", "--explain", "relay-debug"]);
    assert_eq!(
        explained.lines().next(),
        Some("relay-debug: built from docker/rust.Dockerfile, declared in [[workspace.metadata.xtask.images]], BIN=relay, shipping crate relay's binary")
    );

    // Each image is selected by the crate it compiles and by the Dockerfile they share.
    let mut select_after = |path: &str, text: &str| select_after_edit(&scratch, &mut base, path, text);
    assert_eq!(select_after("crates/relay/src/main.rs", "// changed\n"), ["relay-debug"]);
    assert_eq!(select_after("crates/gateway/src/main.rs", "// changed\n"), ["gateway"]);
    assert_eq!(select_after("docker/rust.Dockerfile", "LABEL team=edge\n"), ["gateway", "relay-debug"]);
    assert_eq!(select_after("README.md", "\nA note.\n"), Vec::<String>::new());
}

/// A builder stage that builds with features (its own, and a dependency's as `dep/feat`) and a
/// profile of the workspace's own: the xtask builds the crate the same way, and the binary it
/// stages has the features' behaviour.
#[test]
fn the_profile_and_features_of_a_builder_stage_are_the_xtasks_build() {
    let scratch = Scratch::new();
    scratch.write(
        "crates/gateway/Cargo.toml",
        "[package]\nname = \"gateway\"\nversion = \"0.2.0\"\nedition = \"2021\"\n\n[features]\ntls = []\n\n[dependencies]\ncommon = { path = \"../common\" }\n",
    );
    scratch.write(
        "crates/gateway/src/main.rs",
        "fn main() {\n    println!(\"gateway{}\", if cfg!(feature = \"tls\") { \" with tls\" } else { \"\" });\n    println!(\"{}\", common::log_line(\"gateway\", \"start\", &[(\"name\", \"é\".to_string())]));\n}\n",
    );
    scratch.edit("Cargo.toml", |text| format!("{text}\n[profile.dist]\ninherits = \"release\"\nlto = \"thin\"\n"));
    scratch.write(
        "docker/api-server/Dockerfile",
        "FROM rust:1.85-bookworm AS builder\nWORKDIR /src\nCOPY . .\nRUN cargo build --locked --profile dist -p gateway --features tls,common/ascii-logs\n\nFROM scratch\nCOPY --from=builder /src/target/dist/gateway /gateway\nENTRYPOINT [\"/gateway\"]\n",
    );
    let output = run(Command::new(env!("CARGO")).args(["metadata", "--offline", "--format-version", "1"]).current_dir(scratch.path()));
    assert!(output.status.success(), "{}", stderr(&output));
    scratch.commit("gateway with tls, built with the dist profile");

    let output = scratch.xtask(&["build", "api-server", "--platform", "linux/amd64,linux/arm64"]);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("--profile dist --features common/ascii-logs,tls --locked --target x86_64-unknown-linux-musl"), "{log}");
    assert!(log.contains("api-server: the builder stage `builder` (docker/api-server/Dockerfile:1) runs cargo build"), "{log}");
    let printed = stdout(&run(&mut Command::new(scratch.path().join("target/stage/linux/amd64/gateway"))));
    assert!(printed.starts_with("gateway with tls\n") && !printed.contains('é'), "common's ascii-logs escapes the value: {printed}");
    assert!(scratch.path().join("target/x86_64-unknown-linux-musl/dist/gateway").is_file(), "built with the dist profile");
}
