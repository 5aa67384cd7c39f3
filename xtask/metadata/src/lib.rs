//! `cargo metadata`'s JSON as the xtask reads it, in a crate of its own so that the dev profile
//! optimises it (`[profile.dev.package.xtask-metadata]` in the root manifest). serde's readers
//! are generic: they are compiled, optimised or not, in the crate that reads, and the xtask runs
//! unoptimised. A detection reads a large workspace's metadata up to three times (the workspace,
//! and each commit's package entries), several times slower unoptimised.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// What the xtask reads of a `cargo metadata`.
#[derive(Deserialize)]
pub struct Metadata {
    pub packages: Vec<Package>,
    pub workspace_members: Vec<String>,
    pub workspace_root: PathBuf,
    pub target_directory: PathBuf,
    /// `[workspace.metadata]`.
    #[serde(default)]
    pub metadata: serde_json::Value,
}

#[derive(Deserialize)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub version: String,
    pub manifest_path: PathBuf,
    pub dependencies: Vec<Dependency>,
    pub targets: Vec<Target>,
}

#[derive(Deserialize)]
pub struct Dependency {
    /// `dev`, `build`, or none for a normal dependency.
    pub kind: Option<String>,
    /// A path dependency's directory.
    pub path: Option<PathBuf>,
}

#[derive(Deserialize)]
pub struct Target {
    pub name: String,
    pub kind: Vec<String>,
    #[serde(default)]
    pub src_path: Option<PathBuf>,
}

/// Reads a `cargo metadata --format-version 1` output.
pub fn read(json: &[u8]) -> serde_json::Result<Metadata> {
    serde_json::from_slice(json)
}

/// Each package of a `cargo metadata` as `name version`, with what its entry says (its source,
/// dependencies and features; paths relative to the workspace root, wherever it was resolved):
/// two of these tell which packages a manifest change touched. Each field is kept as cargo wrote
/// it: building JSON values of a large workspace's metadata took most of a root manifest check.
pub fn package_entries(json: &[u8]) -> serde_json::Result<BTreeMap<String, String>> {
    #[derive(Deserialize)]
    struct Metadata<'a> {
        #[serde(borrow)]
        packages: Vec<BTreeMap<&'a str, &'a serde_json::value::RawValue>>,
        workspace_root: String,
    }
    let metadata: Metadata = serde_json::from_slice(json)?;
    // The root as it is written inside JSON strings.
    let root = serde_json::to_string(&metadata.workspace_root)?;
    let root = root.trim_matches('"');
    let text = |package: &BTreeMap<&str, &serde_json::value::RawValue>, field: &str| {
        package.get(field).map_or_else(String::new, |value| value.get().trim_matches('"').to_string())
    };
    let mut entries = BTreeMap::new();
    for package in &metadata.packages {
        let mut entry = String::new();
        for (field, value) in package.iter().filter(|(field, _)| !matches!(**field, "id" | "manifest_path" | "targets")) {
            entry.push_str(field);
            entry.push('=');
            entry.push_str(value.get());
            entry.push('\n');
        }
        entries.insert(format!("{} {}", text(package, "name"), text(package, "version")), entry.replace(root, ""));
    }
    Ok(entries)
}
