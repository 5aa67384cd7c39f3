//! An app's image depends on its own inputs only: its binary is what `cargo build -p APP` makes
//! alone, whatever else is built in the same run (the sample's `common` has a feature only
//! hello-api turns on, which cargo would otherwise unify into the worker's build); and a Cargo.lock
//! change reaches the apps whose own build compiles what changed, per target.

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

/// Moves `common`'s base64 to the other release Cargo.lock holds (both are there, for other
/// crates): a change to Cargo.lock alone.
fn switch_commons_base64(lockfile: &str) -> String {
    let versions: Vec<&str> = lockfile
        .split("[[package]]")
        .filter(|block| block.contains("\nname = \"base64\"\n"))
        .map(|block| block.split("version = \"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    assert_eq!(versions.len(), 2, "Cargo.lock holds two releases of base64: {versions:?}");
    let blocks: Vec<String> = lockfile
        .split("[[package]]")
        .map(|block| {
            if !block.contains("\nname = \"common\"\n") {
                return block.to_string();
            }
            let used = versions.iter().find(|version| block.contains(&format!("\"base64 {version}\""))).expect("common uses base64");
            let other = versions.iter().find(|version| version != &used).unwrap();
            block.replace(&format!("\"base64 {used}\""), &format!("\"base64 {other}\""))
        })
        .collect();
    blocks.join("[[package]]")
}

#[test]
fn a_lockfile_change_reaching_one_apps_features_selects_that_app_only() {
    let scratch = Scratch::new();
    let base = scratch.head();
    scratch.edit("Cargo.lock", switch_commons_base64);
    scratch.commit("common's base64, which only hello-api's features compile");
    let json: serde_json::Value = serde_json::from_str(&scratch.xtask_ok(&["changed", "--base", &base, "--json"])).unwrap();
    let apps: Vec<&str> = json["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap()).collect();
    assert_eq!(apps, ["hello-api"], "{json:#}");
    let explained = scratch.xtask_ok(&["changed", "--base", &base, "--explain", "hello-api"]);
    assert!(explained.contains("Cargo.lock changed its dependencies (common 0.1.0 now depends on base64 0."), "{explained}");
}

#[test]
fn files_a_build_reads_outside_its_crates_select_the_apps_that_read_them() {
    let scratch = Scratch::new();
    // Without the sample's rules for them, only what the builds read tells.
    scratch.edit("Cargo.toml", |text| {
        let rules = text.find("\n# Files outside the crates").expect("the sample has rules");
        let end = text[rules..].find("\n# Dependencies carry").map_or(text.len(), |end| rules + end);
        format!("{}{}", &text[..rules], &text[end..])
    });
    scratch.commit("no rules");
    let output = scratch.xtask(&["build", "--all", "--platform", "linux/amd64"]);
    let log = crate::support::harness::stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("note: worker's build reads .sqlx/query-top-words.json, shared/ignored-words.txt, outside its crates")
            && log.contains("[[workspace.metadata.xtask.rules]]\npaths = \"shared/ignored-words.txt\"\napps = [\"worker\"]"),
        "{log}"
    );
    assert!(log.contains("note: hello-api's build reads api, outside its crates"), "{log}");
    let again = scratch.xtask(&["build", "--all", "--platform", "linux/amd64"]);
    assert!(!crate::support::harness::stderr(&again).contains("note:"), "said once");

    for (path, app) in [("shared/ignored-words.txt", "worker"), ("api/greeting.txt", "hello-api"), (".sqlx/query-top-words.json", "worker")]
    {
        let base = scratch.head();
        scratch.edit(path, |text| format!("{text}\n"));
        scratch.commit(&format!("edit {path}"));
        let json: serde_json::Value = serde_json::from_str(&scratch.xtask_ok(&["changed", "--base", &base, "--json"])).unwrap();
        let apps: Vec<&str> = json["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap()).collect();
        assert_eq!(apps, [app], "{path}: {json:#}");
        let explained = scratch.xtask_ok(&["changed", "--base", &base, "--explain", app]);
        assert_eq!(
            explained.trim(),
            format!("{app}: built from crates/{app}/Dockerfile, beside the crate's Cargo.toml\n{path}, which its build reads (dep-info), changed → {app}")
        );
    }

    // A test the binary does not compile selects nothing.
    let base = scratch.head();
    scratch.write("crates/worker/tests/cli.rs", "#[test]\nfn runs() {}\n");
    scratch.commit("a test");
    let json: serde_json::Value = serde_json::from_str(&scratch.xtask_ok(&["changed", "--base", &base, "--json"])).unwrap();
    assert_eq!(json["apps"], serde_json::json!([]), "{json:#}");
}
