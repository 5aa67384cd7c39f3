//! Which apps a Cargo.lock change reaches, from the two lockfiles' text and the head's resolved
//! builds alone: the base's graph is never resolved (that needed an export of the old tree and a
//! second `cargo metadata`). A lockfile records what resolution chose, not features: features
//! come from manifests, whose changes select apps by their paths. So an app's build can change
//! through the lockfile only where a package its head build compiles has a new entry (a new
//! version or source), or an entry whose dependencies changed in a way the app's build sees: a
//! dependency added (or moved to another release) that the app compiles, or one removed outright
//! (which the app may have compiled: the base's features are not known, so a removal counts).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

#[derive(Deserialize)]
struct Lockfile {
    #[serde(default)]
    package: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default)]
    checksum: Option<String>,
}

/// The `checksum` of each registry package of a Cargo.lock, by `(name, version)`.
pub fn checksums(text: &str) -> Result<BTreeMap<(String, String), String>, toml::de::Error> {
    let lock: Lockfile = toml::from_str(text)?;
    Ok(lock.package.into_iter().filter_map(|entry| Some(((entry.name, entry.version), entry.checksum?))).collect())
}

/// What changed in a lockfile, by package (`name version`): packages with a new entry, and
/// packages whose dependencies gained (`name version` of each gained one) or lost entries.
#[derive(Debug, Default, PartialEq)]
pub struct LockfileDiff {
    new: BTreeMap<String, Option<String>>,
    gained: BTreeMap<String, Vec<String>>,
    lost: BTreeMap<String, Vec<String>>,
}

/// Compares two Cargo.lock texts. An unreadable one is an error for the caller to report.
pub fn diff(before: &str, after: &str) -> Result<LockfileDiff, toml::de::Error> {
    let before: Lockfile = toml::from_str(before)?;
    let after: Lockfile = toml::from_str(after)?;
    let key = |entry: &Entry| format!("{} {}", entry.name, entry.version);
    let old: BTreeMap<(String, Option<String>), &Entry> =
        before.package.iter().map(|entry| ((key(entry), entry.source.clone()), entry)).collect();
    let mut result = LockfileDiff::default();
    for entry in &after.package {
        let Some(previous) = old.get(&(key(entry), entry.source.clone())) else {
            let replaced = before.package.iter().filter(|old| old.name == entry.name).map(key).collect::<Vec<_>>().join(", ");
            result.new.insert(key(entry), (!replaced.is_empty()).then_some(replaced));
            continue;
        };
        let was: BTreeSet<String> = previous.dependencies.iter().map(|dep| resolve_dependency(&before, dep)).collect();
        let now: BTreeSet<String> = entry.dependencies.iter().map(|dep| resolve_dependency(&after, dep)).collect();
        let gained: Vec<String> = now.difference(&was).cloned().collect();
        // A dependency that moved to another release is judged by the new one: the manifest's
        // declaration (optional, behind which feature) is the same for both.
        let name = |package: &String| package.split(' ').next().unwrap_or_default().to_string();
        let gained_names: BTreeSet<String> = gained.iter().map(name).collect();
        let lost: Vec<String> = was.difference(&now).filter(|lost| !gained_names.contains(&name(lost))).cloned().collect();
        if !gained.is_empty() {
            result.gained.insert(key(entry), gained);
        }
        if !lost.is_empty() {
            result.lost.insert(key(entry), lost);
        }
    }
    Ok(result)
}

/// A dependency as Cargo.lock writes it (`name`, `name version` or `name version (source)`),
/// as `name version`.
fn resolve_dependency(lock: &Lockfile, dependency: &str) -> String {
    let mut parts = dependency.split(' ');
    let name = parts.next().unwrap_or_default();
    match parts.next() {
        Some(version) => format!("{name} {version}"),
        None => lock.package.iter().find(|entry| entry.name == name).map_or(name.to_string(), |entry| format!("{name} {}", entry.version)),
    }
}

impl LockfileDiff {
    /// The packages (`name version`) whose entries changed: only apps that compile one of them
    /// can be reached.
    pub fn packages(&self) -> BTreeSet<String> {
        self.new.keys().chain(self.gained.keys()).chain(self.lost.keys()).cloned().collect()
    }

    /// Per app, how the lockfile change reaches its build, given the packages (`name version`)
    /// each app's head build compiles; apps it does not reach are left out.
    pub fn reaching(&self, compiled: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, Vec<String>> {
        let mut reached = BTreeMap::new();
        for (app, packages) in compiled {
            let mut how = Vec::new();
            for package in packages {
                if let Some(replaced) = self.new.get(package) {
                    how.push(match replaced {
                        Some(old) => format!("{old} → {package}"),
                        None => format!("{package} added"),
                    });
                }
                for gained in self.gained.get(package).into_iter().flatten().filter(|gained| packages.contains(*gained)) {
                    how.push(format!("{package} now depends on {gained}"));
                }
                for lost in self.lost.get(package).into_iter().flatten() {
                    how.push(format!("{package} no longer depends on {lost}"));
                }
            }
            if !how.is_empty() {
                reached.insert(app.clone(), how);
            }
        }
        reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
version = 4

[[package]]
name = "common"
version = "0.1.0"
dependencies = ["base64 0.22.1"]

[[package]]
name = "base64"
version = "0.22.1"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "base64"
version = "0.23.1"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "serde"
version = "1.0.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

    fn check(after: &str, expected: expect_test::Expect) {
        let diff = diff(BASE, after).unwrap();
        // hello-api compiles common with base64 (its feature); worker compiles common alone.
        let compiled = BTreeMap::from([
            ("hello-api".to_string(), ["common 0.1.0", "base64 0.23.1", "base64 0.22.1", "serde 1.0.2"].map(String::from).into()),
            ("worker".to_string(), ["common 0.1.0", "serde 1.0.2"].map(String::from).into()),
        ]);
        let compiled: BTreeMap<String, BTreeSet<String>> = compiled;
        expected.assert_debug_eq(&diff.reaching(&compiled));
    }

    #[test]
    fn a_change_reaches_the_apps_whose_build_compiles_it() {
        // common's base64 moves to the other release: only the app that compiles base64 sees it.
        check(
            &BASE.replace("dependencies = [\"base64 0.22.1\"]", "dependencies = [\"base64 0.23.1\"]"),
            expect_test::expect![[r#"
                {
                    "hello-api": [
                        "common 0.1.0 now depends on base64 0.23.1",
                    ],
                }
            "#]],
        );
        // A new version of a crate both compile.
        check(
            &BASE.replace("version = \"1.0.1\"", "version = \"1.0.2\""),
            expect_test::expect![[r#"
                {
                    "hello-api": [
                        "serde 1.0.1 → serde 1.0.2",
                    ],
                    "worker": [
                        "serde 1.0.1 → serde 1.0.2",
                    ],
                }
            "#]],
        );
        // Nothing an app compiles: nothing selected.
        check(&format!("{BASE}\n[[package]]\nname = \"xtask-only\"\nversion = \"1.0.0\"\n"), expect_test::expect!["{}\n"]);
    }
}
