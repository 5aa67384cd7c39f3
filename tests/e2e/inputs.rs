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

/// sqlx's `query!` reads its offline data in `.sqlx/` at the workspace root while it expands,
/// without telling the compiler, so neither cargo nor dep-info knows the file. An app whose build
/// compiles `sqlx-macros` (a stand-in here, reading as sqlx does) is selected by edits there, in
/// `migrations/` and `.env`, with the macro named; the other apps are not.
#[test]
fn what_sqlx_reads_without_telling_the_compiler_selects_the_apps_that_compile_its_macros() {
    let scratch = Scratch::new();
    // Without the sample's rule for .sqlx/, only the resolved graph tells.
    scratch.edit("Cargo.toml", |text| {
        let rule = "[[workspace.metadata.xtask.rules]]\npaths = \".sqlx/**\"";
        let start = text.find(rule).expect("the sample's rule for .sqlx/");
        let end = start + text[start..].find("\n\n").unwrap() + 2;
        format!("{}{}", &text[..start], &text[end..])
    });
    scratch.write(
        "crates/sqlx-macros/Cargo.toml",
        "[package]\nname = \"sqlx-macros\"\nversion = \"0.8.6\"\nedition = \"2021\"\n\n[lib]\nproc-macro = true\n",
    );
    scratch.write(
        "crates/sqlx-macros/src/lib.rs",
        "use proc_macro::TokenStream;\n\n#[proc_macro]\npub fn query(input: TokenStream) -> TokenStream {\n    let name = input.to_string().trim_matches('\"').to_string();\n    let root = std::path::Path::new(env!(\"CARGO_MANIFEST_DIR\")).join(\"../..\");\n    let text = std::fs::read_to_string(root.join(format!(\".sqlx/query-{name}.json\"))).unwrap();\n    format!(\"{text:?}\").parse().unwrap()\n}\n",
    );
    scratch.write(
        "crates/ledger/Cargo.toml",
        "[package]\nname = \"ledger\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nsqlx-macros = { path = \"../sqlx-macros\" }\n",
    );
    scratch.write("crates/ledger/src/main.rs", "fn main() {\n    println!(\"{}\", sqlx_macros::query!(\"balance\"));\n}\n");
    scratch.write("crates/ledger/Dockerfile", "FROM scratch\nARG TARGETPLATFORM\nCOPY target/stage/${TARGETPLATFORM}/ledger /ledger\n");
    scratch.write(".sqlx/query-balance.json", "{\"query\": \"SELECT balance FROM accounts\"}\n");
    let metadata = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--offline", "--format-version", "1"])
        .current_dir(scratch.path())
        .output()
        .unwrap();
    assert!(metadata.status.success(), "{}", String::from_utf8_lossy(&metadata.stderr));
    let mut base = scratch.commit("ledger, whose queries sqlx-macros reads");
    for (path, text) in [
        (".sqlx/query-balance.json", "\n"),
        (".sqlx/query-transfers.json", "{\"query\": \"SELECT 2\"}\n"),
        ("migrations/0001_accounts.sql", "CREATE TABLE accounts (id INT);\n"),
        (".env", "DATABASE_URL=postgres://localhost/ledger\n"),
    ] {
        let old = std::fs::read_to_string(scratch.path().join(path)).unwrap_or_default();
        scratch.write(path, &format!("{old}{text}"));
        let head = scratch.commit(&format!("edit {path}"));
        let json: serde_json::Value = serde_json::from_str(&scratch.xtask_ok(&["changed", "--base", &base, "--json"])).unwrap();
        let apps: Vec<&str> = json["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap()).collect();
        assert_eq!(apps, ["ledger"], "{path}: {json:#}");
        assert_eq!(json["apps"][0]["reasons"][0]["macro"], "sqlx-macros", "{path}: {json:#}");
        let explained = scratch.xtask_ok(&["changed", "--base", &base, "--explain", "ledger"]);
        assert!(
            explained.contains(&format!("{path}, which sqlx-macros reads while compiling without telling the compiler, changed → ledger")),
            "{explained}"
        );
        base = head;
    }
}
