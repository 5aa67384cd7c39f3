//! What the root manifest and cargo's configuration say about each app's build besides its
//! dependency graph (which `graph::Resolver` resolves, `[patch]` and workspace dependencies
//! included): the profile it is built with and the profiles that profile inherits, the package
//! defaults its crates inherit (`[workspace.package]`), cargo's flags, linker and environment for
//! its targets, and the xtask's own settings for it. A change to those files selects an app only
//! when its part changed, so an alias, a member renamed, or a profile no app is built with
//! selects nothing. Pure: the files' texts come in, one canonical text per app comes out.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

/// One app, as far as its settings go.
#[derive(Debug, Clone)]
pub struct AppBuild {
    pub name: String,
    /// The cargo profile its binary is built with (`release`, `dist`...).
    pub profile: String,
    /// The Rust targets it may be built for: each platform's configured one and its gnu
    /// counterpart, which a glibc base gets.
    pub triples: Vec<String>,
    /// Whether cargo builds anything for it (a crate, or an image whose builder stage the xtask
    /// replaces): cargo's settings reach only those.
    pub compiled: bool,
}

/// The root manifest's and cargo's configuration's texts (`None`: no such file).
pub struct Files<'a> {
    pub manifest: Option<&'a str>,
    pub config: Option<&'a str>,
}

/// Per app, a canonical text of the settings its build reads from the two files. An error when
/// one of them is not TOML: then nothing can be judged.
pub fn of_apps(files: &Files<'_>, apps: &[AppBuild]) -> Result<BTreeMap<String, String>> {
    let parse = |text: Option<&str>, name: &str| -> Result<Value> {
        match text {
            None => Ok(Value::Null),
            Some(text) => {
                let value: toml::Value = toml::from_str(text).with_context(|| format!("{name} is not TOML cargo can read"))?;
                Ok(serde_json::to_value(value)?)
            }
        }
    };
    let manifest = parse(files.manifest, "Cargo.toml")?;
    let config = parse(files.config, ".cargo/config.toml")?;
    let xtask = &manifest["workspace"]["metadata"]["xtask"];
    // A root manifest that is also a package: its every section is that crate's build.
    let root_package = manifest.get("package").map(|_| {
        let mut package = manifest.as_object().cloned().unwrap_or_default();
        package.remove("workspace");
        Value::Object(package)
    });
    let mut settings = BTreeMap::new();
    for app in apps {
        let declared = xtask["images"].as_array().and_then(|images| images.iter().find(|image| image["name"] == app.name.as_str()));
        let mut of_app = json!({
            "xtask": {
                "platforms": xtask["platforms"],
                "targets": xtask["targets"],
                "libc": xtask["libc"],
                "glibc": xtask["glibc"],
                "declared": declared,
            },
        });
        if app.compiled {
            of_app["profiles"] = profiles(&manifest, &config, &app.profile);
            of_app["workspace-package"] = manifest["workspace"]["package"].clone();
            of_app["root-package"] = root_package.clone().unwrap_or(Value::Null);
            of_app["cargo"] = cargo_settings(&config, &app.triples);
        }
        settings.insert(app.name.clone(), canonical(&of_app));
    }
    Ok(settings)
}

/// How a change to the two files can change what cargo resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolutionChange {
    /// Nothing cargo resolves from changed: the graphs need not be resolved.
    Unchanged,
    /// Only what the members inherit or which crates are members (`[workspace.dependencies]`,
    /// `[workspace.package]`, `[workspace.lints]`, `members`, `exclude`, `default-members`):
    /// cargo writes all of that into the members' own entries of `cargo metadata --no-deps`, so
    /// with the same Cargo.lock (and no other manifest changed) the resolved graph can differ
    /// only if one of those entries does.
    MembersOnly,
    /// Anything else cargo resolves from: `[patch]`, `[replace]`, `resolver`, a root package,
    /// cargo's configuration's `[patch]` and `[resolver]`.
    Graph,
}

/// How the files' change can change what cargo resolves: anything in the root manifest but its
/// profiles and the xtask's settings, and cargo's configuration's `[patch]` and `[resolver]`.
/// An error when one is not TOML.
pub fn resolution_change(before: &Files<'_>, after: &Files<'_>) -> Result<ResolutionChange> {
    const INHERITED_OR_MEMBERSHIP: [&str; 6] = ["dependencies", "package", "lints", "members", "exclude", "default-members"];
    let inputs = |files: &Files<'_>, without_members: bool| -> Result<Value> {
        let parse = |text: Option<&str>| -> Result<Value> {
            Ok(match text {
                None => Value::Null,
                Some(text) => serde_json::to_value(toml::from_str::<toml::Value>(text).context("a file that is not TOML")?)?,
            })
        };
        let mut manifest = parse(files.manifest)?;
        if let Some(table) = manifest.as_object_mut() {
            table.remove("profile");
        }
        if let Some(workspace) = manifest.get_mut("workspace").and_then(Value::as_object_mut) {
            workspace.remove("metadata");
            if without_members {
                workspace.retain(|key, _| !INHERITED_OR_MEMBERSHIP.contains(&key.as_str()));
            }
        }
        let config = parse(files.config)?;
        Ok(json!({ "manifest": manifest, "patch": config["patch"], "resolver": config["resolver"] }))
    };
    Ok(if inputs(before, false)? == inputs(after, false)? {
        ResolutionChange::Unchanged
    } else if inputs(before, true)? == inputs(after, true)? {
        ResolutionChange::MembersOnly
    } else {
        ResolutionChange::Graph
    })
}

/// Whether a `ResolutionChange::MembersOnly` change reaches some member's own entry: a member
/// inherits (`x.workspace = true`) a workspace dependency, package field or the lints that
/// changed, or which crates are members changed. `members` holds each member's manifest text
/// (`None`: not read), and a manifest not read or not TOML counts as reached. When none is
/// reached, and Cargo.lock and the other manifests are unchanged, cargo resolves the same graph.
pub fn members_reached(before: &Files<'_>, after: &Files<'_>, members: &[Option<String>]) -> Result<bool> {
    let workspace = |files: &Files<'_>| -> Result<Value> {
        let manifest: toml::Value = toml::from_str(files.manifest.unwrap_or_default()).context("Cargo.toml is not TOML cargo can read")?;
        Ok(serde_json::to_value(manifest)?["workspace"].clone())
    };
    let (then, now) = (workspace(before)?, workspace(after)?);
    if then["members"] != now["members"] || then["exclude"] != now["exclude"] {
        return Ok(true);
    }
    let changed_keys = |table: &str| -> BTreeSet<String> {
        let keys = |value: &Value| value[table].as_object().map(|table| table.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        keys(&then).into_iter().chain(keys(&now)).filter(|key| then[table][key] != now[table][key]).collect()
    };
    let (dependencies, package, lints) = (changed_keys("dependencies"), changed_keys("package"), then["lints"] != now["lints"]);
    let inherits = |value: &Value| value["workspace"] == Value::Bool(true);
    let inherits_changed = |table: &Value, changed: &BTreeSet<String>| {
        table.as_object().is_some_and(|table| table.iter().any(|(key, value)| changed.contains(key) && inherits(value)))
    };
    const DEPENDENCY_TABLES: [&str; 5] =
        ["dependencies", "dev-dependencies", "build-dependencies", "dev_dependencies", "build_dependencies"];
    for manifest in members {
        // Inheriting takes a `workspace` key: a manifest without the word (nor an escape that
        // could spell it in a quoted key) inherits nothing, and parsing every member's manifest
        // is most of this check's time.
        if manifest.as_deref().is_some_and(|text| !text.contains("workspace") && !text.contains('\\')) {
            continue;
        }
        let Some(manifest) = manifest.as_deref().and_then(|text| toml::from_str::<toml::Value>(text).ok()) else { return Ok(true) };
        let manifest = serde_json::to_value(manifest)?;
        let platform_tables = manifest["target"].as_object().into_iter().flat_map(|targets| targets.values());
        let dependency_tables =
            std::iter::once(&manifest).chain(platform_tables).flat_map(|tables| DEPENDENCY_TABLES.map(|name| &tables[name]));
        if inherits_changed(&manifest["package"], &package)
            || (lints && inherits(&manifest["lints"]))
            || dependency_tables.into_iter().any(|table| inherits_changed(table, &dependencies))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The profile `name` and those it inherits, from the manifest and from cargo's configuration
/// (`[profile.*]` in either; the built-in `release` and `dev` end every chain).
fn profiles(manifest: &Value, config: &Value, name: &str) -> Value {
    let mut chain = Map::new();
    let mut next = Some(name.to_string());
    while let Some(profile) = next.take() {
        if chain.contains_key(&profile) {
            break;
        }
        let declared = [&manifest["profile"][&profile], &config["profile"][&profile]];
        next = declared.iter().find_map(|table| table["inherits"].as_str()).map(str::to_string);
        chain.insert(profile, json!(declared));
    }
    Value::Object(chain)
}

/// What cargo's configuration gives a build for `triples`: `[build]`'s flags, compiler and
/// target, each `[target.<triple>]` of them and every `[target.'cfg(...)']` (whose conditions
/// are not evaluated here), `[env]` and `[unstable]`. Not aliases, the network, registries,
/// the terminal or the target directory, which change no binary.
fn cargo_settings(config: &Value, triples: &[String]) -> Value {
    let build: Map<String, Value> = config["build"]
        .as_object()
        .map(|build| {
            build
                .iter()
                .filter(|(key, _)| !matches!(key.as_str(), "jobs" | "target-dir" | "incremental"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let targets: Map<String, Value> = config["target"]
        .as_object()
        .map(|targets| {
            targets
                .iter()
                .filter(|(key, _)| key.starts_with("cfg(") || triples.contains(key))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    json!({ "build": build, "target": targets, "env": config["env"], "unstable": config["unstable"] })
}

/// JSON with every object's keys sorted (serde_json's map is sorted), as one line.
fn canonical(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of `api` (release), `batch` (profile dist) and the `sidecar` image (no cargo build)
    /// a change from `before` to `after` reaches, the manifest's and the configuration's texts
    /// as `(manifest, config)`.
    fn check(before: (&str, &str), after: (&str, &str), expected: &[&str]) {
        let apps = [
            AppBuild { name: "api".into(), profile: "release".into(), triples: vec!["x86_64-unknown-linux-musl".into()], compiled: true },
            AppBuild { name: "batch".into(), profile: "dist".into(), triples: vec!["x86_64-unknown-linux-musl".into()], compiled: true },
            AppBuild { name: "sidecar".into(), profile: "release".into(), triples: vec![], compiled: false },
        ];
        let settings = |(manifest, config): (&str, &str)| {
            of_apps(&Files { manifest: Some(manifest), config: (!config.is_empty()).then_some(config) }, &apps).unwrap()
        };
        let (then, now) = (settings(before), settings(after));
        let reached: Vec<&str> = apps.iter().map(|app| app.name.as_str()).filter(|name| then[*name] != now[*name]).collect();
        assert_eq!(reached, expected, "{before:?} → {after:?}");
    }

    const MANIFEST: &str = "[workspace]\nmembers = [\"crates/*\"]\n\n[workspace.package]\nedition = \"2021\"\n\n[profile.release]\nlto = true\n\n[profile.dist]\ninherits = \"release\"\nstrip = true\n\n[profile.bench-local]\ninherits = \"release\"\n";

    #[test]
    fn a_settings_change_reaches_the_apps_whose_build_reads_it() {
        let with = |from: &str, to: &str| MANIFEST.replace(from, to);
        // Members, aliases, profiles nobody is built with: nothing.
        check((MANIFEST, ""), (&with("crates/*", "apps/*"), ""), &[]);
        check((MANIFEST, ""), (MANIFEST, "[alias]\nx = \"run -p xtask --\"\n"), &[]);
        check((MANIFEST, ""), (&with("[profile.bench-local]\n", "[profile.bench-local]\ndebug = true\n"), ""), &[]);
        // A profile reaches what is built with it and with the profiles inheriting from it.
        check((MANIFEST, ""), (&with("strip = true", "strip = false"), ""), &["batch"]);
        check((MANIFEST, ""), (&with("lto = true", "lto = \"thin\""), ""), &["api", "batch"]);
        check((MANIFEST, ""), (MANIFEST, "[profile.release]\ncodegen-units = 1\n"), &["api", "batch"]);
        // Package defaults, flags and variables reach every compiled app.
        check((MANIFEST, ""), (&with("2021", "2024"), ""), &["api", "batch"]);
        check(
            (MANIFEST, ""),
            (MANIFEST, "[target.x86_64-unknown-linux-musl]\nrustflags = [\"-Ctarget-cpu=x86-64-v2\"]\n"),
            &["api", "batch"],
        );
        check((MANIFEST, ""), (MANIFEST, "[target.aarch64-apple-darwin]\nrustflags = [\"-Ctarget-cpu=native\"]\n"), &[]);
        check((MANIFEST, "[build]\njobs = 2\n"), (MANIFEST, "[build]\njobs = 4\n"), &[]);
        check((MANIFEST, ""), (MANIFEST, "[env]\nAPP_MODE = \"prod\"\n"), &["api", "batch"]);
        // The xtask's settings: its platforms reach every app, an image's declaration that image.
        check(
            (MANIFEST, ""),
            (&format!("{MANIFEST}\n[workspace.metadata.xtask]\nplatforms = [\"linux/amd64\"]\n"), ""),
            &["api", "batch", "sidecar"],
        );
        check(
            (MANIFEST, ""),
            (
                &format!(
                    "{MANIFEST}\n[[workspace.metadata.xtask.images]]\nname = \"sidecar\"\ndockerfile = \"docker/sidecar.Dockerfile\"\n"
                ),
                "",
            ),
            &["sidecar"],
        );
        check((MANIFEST, ""), (&format!("{MANIFEST}\n[workspace.metadata.xtask]\nrepository = \"oci:out\"\n"), ""), &[]);
    }

    #[test]
    fn text_that_is_not_toml_judges_nothing() {
        let apps = [AppBuild { name: "api".into(), profile: "release".into(), triples: vec![], compiled: true }];
        let err = of_apps(&Files { manifest: Some("[workspace"), config: None }, &apps).unwrap_err();
        assert!(err.to_string().starts_with("Cargo.toml is not TOML cargo can read"), "{err}");
    }

    fn files<'a>(manifest: &'a str, config: Option<&'a str>) -> Files<'a> {
        Files { manifest: Some(manifest), config }
    }

    /// Whether a change of the root manifest from `before` to `after` reaches a member whose
    /// manifest is `member` (beside one that inherits nothing).
    fn check_members(before: &str, after: &str, member: &str, expected: bool) {
        let members = [Some("[package]\nname = \"other\"\nversion = \"0.1.0\"\n".to_string()), Some(member.to_string())];
        let reached = members_reached(&files(before, None), &files(after, None), &members).unwrap();
        assert_eq!(reached, expected, "{before:?} → {after:?} for {member:?}");
    }

    #[test]
    fn what_the_members_inherit_reaches_them() {
        let with = |text: &str| format!("{MANIFEST}{text}");
        let deps = &with("\n[workspace.dependencies]\nserde = \"1\"\nlog = \"0.4\"\n");
        let serde_derive = &with("\n[workspace.dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\nlog = \"0.4\"\n");
        let uses = |table: &str| format!("[package]\nname = \"api\"\nversion = \"0.1.0\"\n\n{table}\n");
        // A workspace dependency reaches the members that inherit it, in any dependency table.
        check_members(deps, serde_derive, &uses("[dependencies]\nserde = { workspace = true }"), true);
        check_members(deps, serde_derive, &uses("[dependencies]\nserde.workspace = true"), true);
        check_members(deps, serde_derive, &uses("[dev-dependencies]\nserde = { workspace = true, features = [\"rc\"] }"), true);
        check_members(deps, serde_derive, &uses("[target.'cfg(unix)'.build-dependencies]\nserde = { workspace = true }"), true);
        check_members(deps, serde_derive, &uses("[dependencies]\nlog = { workspace = true }"), false);
        check_members(deps, serde_derive, &uses("[dependencies]\nserde = \"1\""), false);
        // Added or removed: only those that name it (which cargo would refuse when removed).
        check_members(MANIFEST, deps, &uses("[dependencies]\nlog = { workspace = true }"), true);
        check_members(deps, MANIFEST, &uses("[dependencies]\nanyhow = \"1\""), false);
        // Package fields and lints.
        let licensed = &MANIFEST.replace("edition = \"2021\"", "edition = \"2021\"\nlicense = \"MIT\"");
        check_members(MANIFEST, licensed, &uses("[dependencies]"), false);
        check_members(MANIFEST, licensed, "[package]\nname = \"api\"\nversion = \"0.1.0\"\nlicense.workspace = true\n", true);
        check_members(MANIFEST, &MANIFEST.replace("2021", "2024"), "[package]\nname = \"api\"\nedition.workspace = true\n", true);
        let linted = &with("\n[workspace.lints.rust]\nunsafe_code = \"forbid\"\n");
        check_members(MANIFEST, linted, &uses("[lints]\nworkspace = true"), true);
        check_members(MANIFEST, linted, &uses("[dependencies]"), false);
        // Which crates are members, or a member that cannot be read: every member may be reached.
        let moved = MANIFEST.replace("crates/*", "apps/*");
        assert!(members_reached(&files(MANIFEST, None), &files(&moved, None), &[]).unwrap());
        assert!(members_reached(&files(MANIFEST, None), &files(deps, None), &[None]).unwrap());
        assert!(members_reached(&files(MANIFEST, None), &files(deps, None), &[Some("[package\nlog.workspace = true".to_string())]).unwrap());
        // One that names no `workspace` inherits nothing, whatever else it says.
        assert!(!members_reached(&files(MANIFEST, None), &files(deps, None), &[Some("[package".to_string())]).unwrap());
        let escaped = "[package]\nname = \"api\"\n\n[dependencies]\nlog = { \"\\u0077orkspace\" = true }\n";
        assert!(members_reached(&files(MANIFEST, None), &files(deps, None), &[Some(escaped.to_string())]).unwrap());
    }

    #[test]
    fn only_what_cargo_resolves_from_needs_the_graphs() {
        use ResolutionChange::{Graph, MembersOnly, Unchanged};
        let check = |before: (&str, Option<&str>), after: (&str, Option<&str>), expected: ResolutionChange| {
            let change = |(manifest, config), (manifest_after, config_after)| {
                resolution_change(&files(manifest, config), &files(manifest_after, config_after)).unwrap()
            };
            assert_eq!(change(before, after), expected, "{before:?} → {after:?}");
            assert_eq!(change(after, before), expected, "{after:?} → {before:?}");
        };
        let with = |from: &str, to: &str| MANIFEST.replace(from, to);
        let appended = |text: &str| format!("{MANIFEST}{text}");
        check((MANIFEST, None), (&with("lto = true", "lto = false"), None), Unchanged);
        check((MANIFEST, None), (MANIFEST, Some("[alias]\nx = \"build\"\n")), Unchanged);
        check((MANIFEST, None), (&appended("\n[workspace.metadata.xtask]\nplatforms = [\"linux/amd64\"]\n"), None), Unchanged);
        // What the members inherit, and which crates are members, shows in their own entries.
        check((MANIFEST, None), (&appended("\n[workspace.dependencies]\nserde = \"1\"\n"), None), MembersOnly);
        check((MANIFEST, None), (&with("2021", "2024"), None), MembersOnly);
        check((MANIFEST, None), (&with("crates/*", "apps/*"), None), MembersOnly);
        check((MANIFEST, None), (&with("members", "exclude = [\"crates/old\"]\nmembers"), None), MembersOnly);
        check((MANIFEST, None), (&appended("\n[workspace.lints.rust]\nunsafe_code = \"forbid\"\n"), None), MembersOnly);
        // What resolves packages that are no members' own entries.
        check((MANIFEST, None), (MANIFEST, Some("[patch.crates-io]\nserde = { path = \"../serde\" }\n")), Graph);
        check((MANIFEST, None), (&appended("\n[patch.crates-io]\nserde = { path = \"../serde\" }\n"), None), Graph);
        check((MANIFEST, None), (&with("[workspace]\n", "[workspace]\nresolver = \"3\"\n"), None), Graph);
        check((MANIFEST, None), (MANIFEST, Some("[resolver]\nincompatible-rust-versions = \"fallback\"\n")), Graph);
        check((MANIFEST, None), (&format!("[package]\nname = \"root\"\nversion = \"0.1.0\"\n\n{MANIFEST}"), None), Graph);
        // Both at once: the graph.
        check((MANIFEST, None), (&with("2021", "2024"), Some("[patch.crates-io]\nserde = { path = \"../serde\" }\n")), Graph);
    }
}
