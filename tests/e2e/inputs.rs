//! An app's image depends on its own inputs only: its binary is what `cargo build -p APP` makes
//! alone, whatever else is built in the same run (the sample's `common` has a feature only
//! hello-api turns on, which cargo would otherwise unify into the worker's build).

use crate::support::harness::Scratch;

/// The digest of the index `build` wrote for `app`.
fn built_digest(scratch: &Scratch, app: &str) -> String {
    let index = std::fs::read(scratch.path().join("target/xtask/oci").join(app).join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn an_apps_image_is_the_same_whatever_is_built_with_it() {
    let scratch = Scratch::new();
    let platforms = ["--platform", "linux/amd64,linux/arm64"];
    scratch.xtask_ok(&[&["build", "worker"][..], &platforms].concat());
    let alone = built_digest(&scratch, "worker");
    scratch.xtask_ok(&[&["build", "--all"][..], &platforms].concat());
    assert_eq!(built_digest(&scratch, "worker"), alone, "worker built with every app");
    scratch.xtask_ok(&[&["build", "hello-api", "worker"][..], &platforms].concat());
    assert_eq!(built_digest(&scratch, "worker"), alone, "worker built with hello-api");
}
