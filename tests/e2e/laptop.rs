//! Builds on a developer's machine: the same commit gives the same images whatever the checkout's
//! path and `CARGO_HOME`, so a laptop's images are CI's.

use std::path::Path;
use std::process::Command;

use crate::support::harness::{run, stderr, Scratch};

/// The digest of the index `build` wrote for `app`.
fn built_digest(scratch: &Scratch, app: &str) -> String {
    let index = std::fs::read(scratch.path().join("target/xtask/oci").join(app).join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_string()
}

/// A `CARGO_HOME` of its own, holding a copy of the machine's registry index and downloaded
/// crates (the tests never reach crates.io).
fn copied_cargo_home(into: &Path) {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cargo"));
    std::fs::create_dir_all(into.join("registry")).unwrap();
    for part in ["index", "cache"] {
        let copied = run(Command::new("cp").arg("-a").arg(home.join("registry").join(part)).arg(into.join("registry")));
        assert!(copied.status.success(), "{}", stderr(&copied));
    }
}

#[test]
fn the_same_commit_gives_the_same_images_from_any_checkout_path_and_cargo_home() {
    let first = Scratch::new();
    let second = Scratch::clone_of(&first);
    assert_ne!(first.path(), second.path());
    let cargo_home = tempfile::tempdir().unwrap();
    copied_cargo_home(cargo_home.path());

    // hello-api has a crates.io dependency whose panic locations name its path under CARGO_HOME.
    let build = ["build", "hello-api", "worker", "--platform", "linux/amd64,linux/arm64"];
    first.xtask_ok(&build);
    let output = second.xtask_with_env(&build, &[("CARGO_HOME", cargo_home.path().to_str().unwrap()), ("CARGO_NET_OFFLINE", "true")]);
    assert!(output.status.success(), "{}", stderr(&output));
    for app in ["hello-api", "worker"] {
        assert_eq!(built_digest(&first, app), built_digest(&second, app), "{app} differs between the two checkouts");
    }
    // No host path is left in a binary.
    for scratch in [&first, &second] {
        for platform in ["linux/amd64", "linux/arm64"] {
            let binary = std::fs::read(scratch.path().join("target/stage").join(platform).join("hello-api")).unwrap();
            for host_path in [scratch.path().to_str().unwrap(), cargo_home.path().to_str().unwrap(), "/.cargo/registry"] {
                assert!(
                    !binary.windows(host_path.len()).any(|window| window == host_path.as_bytes()),
                    "{platform} hello-api holds {host_path}"
                );
            }
        }
    }
}
