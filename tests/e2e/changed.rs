//! `cargo xtask changed` over real git repositories: one `check` driver, one table row per rule.
//! Each row commits a setup on a scratch copy of this workspace, then a change, and compares the
//! apps selected between the two commits, with their reasons' kinds, and the deleted apps.

use crate::support::harness::Scratch;

/// A file operation of a commit.
enum Edit {
    Write(&'static str, &'static str),
    Append(&'static str, &'static str),
    Replace(&'static str, &'static str, &'static str),
    Delete(&'static str),
    Move(&'static str, &'static str),
}

use Edit::*;

fn apply(scratch: &Scratch, edits: &[Edit]) {
    for edit in edits {
        match edit {
            Write(path, text) => scratch.write(path, text),
            Append(path, text) => scratch.edit(path, |old| format!("{old}{text}")),
            Replace(path, from, to) => scratch.edit(path, |old| {
                assert!(old.contains(from), "{path} has no {from}");
                old.replace(from, to)
            }),
            Delete(path) => std::fs::remove_file(scratch.path().join(path)).unwrap(),
            Move(from, to) => {
                std::fs::create_dir_all(scratch.path().join(to).parent().unwrap()).unwrap();
                std::fs::rename(scratch.path().join(from), scratch.path().join(to)).unwrap();
            }
        }
    }
}

/// Commits `setup`, then `change`, and runs `changed --base <setup commit> --json`.
fn changed_after(setup: &[Edit], change: &[Edit]) -> (Scratch, String, serde_json::Value) {
    let scratch = Scratch::new();
    apply(&scratch, setup);
    let base = scratch.commit("setup");
    apply(&scratch, change);
    scratch.commit("change");
    let json = serde_json::from_str(&scratch.xtask_ok(&["changed", "--base", &base, "--json"])).unwrap();
    (scratch, base, json)
}

/// Commits `setup`, then `change`, and expects `changed --base <setup commit>` to print
/// `app: kind, kind` lines for the selected apps and `deleted: app` lines.
fn check(setup: &[Edit], change: &[Edit], expected: &str) {
    let (_scratch, _, json) = changed_after(setup, change);
    let mut lines = Vec::new();
    for app in json["apps"].as_array().unwrap() {
        let kinds: Vec<&str> = app["reasons"].as_array().unwrap().iter().map(|reason| reason["kind"].as_str().unwrap()).collect();
        lines.push(format!("{}: {}", app["name"].as_str().unwrap(), kinds.join(", ")));
    }
    for app in json["deleted"].as_array().unwrap() {
        lines.push(format!("deleted: {}", app["name"].as_str().unwrap()));
    }
    assert_eq!(lines.join("\n"), expected, "setup and change gave:\n{json:#}");
}

/// The sample's `common` with its optional base64 from the workspace's dependencies.
const COMMON_ON_WORKSPACE_BASE64: &str = "[package]\nname = \"common\"\nversion = \"0.1.0\"\nedition.workspace = true\nlicense.workspace = true\npublish.workspace = true\n\n[dependencies]\nbase64 = { workspace = true, optional = true }\n\n[features]\nascii-logs = [\"dep:base64\"]\n";

const RULES: &str = r#"
[[workspace.metadata.xtask.rules]]
paths = "protos/**"
apps = ["hello-api"]

[[workspace.metadata.xtask.rules]]
paths = "crates/worker/notes/**"
ignore = true
"#;

#[test]
fn each_rule_selects_what_it_should_in_a_real_repository() {
    // A file of the app, of a library it uses, of a library both use, and of neither.
    check(&[], &[Write("crates/worker/src/extra.rs", "//\n")], "worker: file");
    check(&[], &[Append("crates/wordcount/src/lib.rs", "//\n")], "worker: dependency");
    check(&[], &[Append("crates/common/src/lib.rs", "//\n")], "hello-api: dependency\nworker: dependency");
    check(&[], &[Write("README.md", "docs\n"), Write("docs/notes.md", "notes\n")], "");
    // The root manifest and cargo's configuration, by what they do to each app's build: a
    // comment, an alias, a profile or a workspace dependency nobody builds with, nothing; the
    // release profile and the apps' target's flags, every app; a feature of a dependency only
    // hello-api compiles, hello-api alone. The toolchain reaches every app.
    check(&[], &[Append("Cargo.toml", "\n# a comment\n")], "");
    check(&[], &[Append(".cargo/config.toml", "\n# a comment\n")], "");
    check(&[], &[Replace(".cargo/config.toml", "[alias]\n", "[alias]\nrel = \"xtask release\"\n")], "");
    check(&[], &[Append("Cargo.toml", "\n[profile.bench]\ndebug = true\n\n[workspace.dependencies]\nserde_json = \"1\"\n")], "");
    check(
        &[],
        &[Replace("Cargo.toml", "[profile.release]\n", "[profile.release]\ncodegen-units = 1\n")],
        "hello-api: build-settings\nworker: build-settings",
    );
    check(
        &[],
        &[Append(".cargo/config.toml", "\n[env]\nSAMPLE_MODE = \"release\"\n")],
        "hello-api: build-settings\nworker: build-settings",
    );
    check(
        &[
            Append("Cargo.toml", "\n[workspace.dependencies]\nbase64 = { version = \">=0.22, <0.24\" }\n"),
            Write("crates/common/Cargo.toml", COMMON_ON_WORKSPACE_BASE64),
        ],
        &[Edit::Replace(
            "Cargo.toml",
            "base64 = { version = \">=0.22, <0.24\" }",
            "base64 = { version = \">=0.22, <0.24\", default-features = false, features = [\"alloc\"] }",
        )],
        "hello-api: build-settings",
    );
    check(&[], &[Write("rust-toolchain.toml", "[toolchain]\nchannel = \"stable\"\n")], "hello-api: workspace\nworker: workspace");
    // A rename counts on both sides.
    check(
        &[Write("crates/hello-api/src/shared.txt", "x\n")],
        &[Move("crates/hello-api/src/shared.txt", "crates/worker/src/shared.txt")],
        "hello-api: file\nworker: file",
    );
    // The Dockerfile's build context outside the app.
    check(
        &[Write("assets/banner.txt", "hi\n"), Append("crates/worker/Dockerfile", "COPY assets/banner.txt /banner.txt\n")],
        &[Write("assets/banner.txt", "hello\n")],
        "worker: build-context",
    );
    // A dev-dependency does not reach the image.
    check(
        &[Append("crates/hello-api/Cargo.toml", "\n[dev-dependencies]\nwordcount = { path = \"../wordcount\" }\n")],
        &[Append("crates/wordcount/src/lib.rs", "//\n")],
        "worker: dependency",
    );
    // The user's rules: a glob naming apps, and an ignored path inside an app.
    check(&[Append("Cargo.toml", RULES)], &[Write("protos/api.proto", "syntax = \"proto3\";\n")], "hello-api: rule");
    check(&[Append("Cargo.toml", RULES)], &[Write("crates/worker/notes/todo.md", "later\n")], "");
    // A deleted app is reported, not built.
    check(&[], &[Delete("crates/hello-api/Dockerfile")], "deleted: hello-api");
}

/// The apps whose `cargo tree -p APP -e normal,build --target T` (the graph their build
/// compiles, features included) differs between `base` and the head of `scratch`.
fn trees_changed(scratch: &Scratch, base: &str) -> Vec<&'static str> {
    let head = scratch.head();
    let tree = |rev: &str, app: &str| {
        scratch.git(&["checkout", "-q", rev]);
        let output = std::process::Command::new(env!("CARGO"))
            .args(["tree", "--offline", "-p", app, "-e", "normal,build", "--target", "x86_64-unknown-linux-musl", "-f", "{p} {f}"])
            .current_dir(scratch.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let changed = ["hello-api", "worker"].into_iter().filter(|app| tree(base, app) != tree(&head, app)).collect();
    scratch.git(&["checkout", "-q", "main"]);
    changed
}

/// Root manifest edits select exactly the apps whose graph `cargo tree` says changed, and, for
/// a setting that is no graph (a profile, a variable), the apps built with it.
#[test]
fn root_manifest_edits_select_what_cargo_tree_says_changed_and_who_reads_the_setting() {
    let workspace_base64 = [
        Append("Cargo.toml", "\n[workspace.dependencies]\nbase64 = { version = \">=0.22, <0.24\" }\n"),
        Write("crates/common/Cargo.toml", COMMON_ON_WORKSPACE_BASE64),
    ];
    /// A setup, a change, the apps `changed` selects, and those whose cargo tree changed.
    type Row<'a> = (&'a [Edit], &'a [Edit], &'a [&'a str], &'a [&'a str]);
    let rows: [Row<'_>; 4] = [
        (&[], &[Append("Cargo.toml", "\n[workspace.dependencies]\nserde_json = \"1\"\n")], &[], &[]),
        (
            &workspace_base64,
            &[Replace(
                "Cargo.toml",
                "base64 = { version = \">=0.22, <0.24\" }",
                "base64 = { version = \">=0.22, <0.24\", default-features = false, features = [\"alloc\"] }",
            )],
            &["hello-api"],
            &["hello-api"],
        ),
        (&[], &[Replace("Cargo.toml", "resolver = \"2\"", "resolver = \"2\"\nexclude = [\"vendor\"]")], &[], &[]),
        (&[], &[Replace("Cargo.toml", "[profile.release]\n", "[profile.release]\nopt-level = \"s\"\n")], &["hello-api", "worker"], &[]),
    ];
    for (setup, change, selected, trees) in rows {
        let (scratch, base, json) = changed_after(setup, change);
        let apps: Vec<&str> = json["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap()).collect();
        assert_eq!(apps, selected, "{json:#}");
        assert_eq!(trees_changed(&scratch, &base), trees, "what cargo tree says for {json:#}");
    }
}

/// Without --base, a branch is compared with where it left the default branch (what a pull
/// request changes, not the default branch's later commits), and the default branch's head with
/// its previous commit; `origin/HEAD` names the default branch where a remote has one.
#[test]
fn without_a_base_a_branch_compares_with_where_it_left_the_default_branch() {
    let scratch = Scratch::new();
    let forked = scratch.head();
    let changed = |scratch: &Scratch| -> (String, Vec<String>) {
        let json: serde_json::Value = serde_json::from_str(&scratch.xtask_ok(&["changed", "--json"])).unwrap();
        let apps = json["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap().to_string()).collect();
        (json["base"].as_str().unwrap().to_string(), apps)
    };
    scratch.git(&["checkout", "-q", "-b", "feature"]);
    scratch.write("crates/worker/src/first.rs", "//\n");
    scratch.commit("feature, first");
    scratch.write("crates/worker/src/second.rs", "//\n");
    scratch.commit("feature, second");
    scratch.git(&["checkout", "-q", "main"]);
    scratch.write("crates/hello-api/src/later.rs", "//\n");
    let main_before = scratch.head();
    scratch.commit("main, later");
    assert_eq!(changed(&scratch), (main_before, vec!["hello-api".to_string()]), "main's head against its previous commit");
    scratch.git(&["checkout", "-q", "feature"]);
    assert_eq!(changed(&scratch), (forked.clone(), vec!["worker".to_string()]), "the branch against where it left main");
    // A clone's origin/HEAD names its default branch, whatever the local branches are called.
    let clone = Scratch::clone_of(&scratch);
    clone.git(&["remote", "add", "origin", scratch.path().to_str().unwrap()]);
    clone.git(&["fetch", "-q", "origin"]);
    clone.git(&["remote", "set-head", "origin", "main"]);
    clone.git(&["branch", "-q", "-m", "feature", "work"]);
    assert_eq!(changed(&clone), (forked, vec!["worker".to_string()]), "the branch against where it left origin/HEAD");
}
