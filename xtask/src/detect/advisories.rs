//! The RustSec advisories that reach an app's binary: the advisory database (a local checkout of
//! rustsec/advisory-db, read with the `rustsec` crate) matched against exactly the crates the
//! app compiles for its targets, so a scratch image that ECR cannot scan still gets a verdict,
//! on every kind of repository. Informational advisories (unmaintained, unsound) and withdrawn
//! ones are not findings; an advisory without a CVSS vector has no severity.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use crate::image::attestation::CompiledPackage;

/// One advisory that names a crate, at a version, that an app compiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: String,
    pub package: String,
    pub version: String,
    /// CRITICAL, HIGH, MEDIUM, LOW or NONE (CVSS), or UNRATED without a CVSS vector.
    pub severity: String,
    pub title: String,
    /// The version requirements that fix it.
    pub patched: Vec<String>,
}

pub struct Advisories {
    database: rustsec::Database,
}

/// Where the database is when nothing names it: where cargo-audit keeps it.
pub fn default_location() -> Option<PathBuf> {
    Some(crate::workspace::cargo_home()?.join("advisory-db"))
}

impl Advisories {
    /// Opens the database at `path`, first cloning rustsec/advisory-db there with git when the
    /// directory does not exist and the network is allowed (`CARGO_NET_OFFLINE` is not true).
    pub fn open(sh: &Shell, path: &Path) -> Result<Advisories> {
        if !path.exists() {
            if std::env::var("CARGO_NET_OFFLINE").is_ok_and(|value| value == "true") {
                bail!("the RustSec advisory database is not at {} and CARGO_NET_OFFLINE forbids fetching it: clone https://github.com/rustsec/advisory-db there, or name a checkout with XTASK_ADVISORY_DB or `advisory-db` in [workspace.metadata.xtask]", path.display());
            }
            let cloned = cmd!(sh, "git clone --quiet --depth 1 https://github.com/rustsec/advisory-db.git {path}")
                .quiet()
                .ignore_status()
                .output()?;
            if !cloned.status.success() {
                let said = String::from_utf8_lossy(&cloned.stderr);
                bail!(
                    "cannot fetch the RustSec advisory database into {} (git: {}): clone https://github.com/rustsec/advisory-db there by hand, or name a checkout with XTASK_ADVISORY_DB",
                    path.display(),
                    said.lines().next().unwrap_or("no reason given").trim()
                );
            }
        }
        let database = rustsec::Database::open(path)
            .with_context(|| format!("{} is not a RustSec advisory database (a checkout of rustsec/advisory-db)", path.display()))?;
        Ok(Advisories { database })
    }

    /// The advisories against `packages`, by advisory and crate, most severe first.
    pub fn findings(&self, packages: &[CompiledPackage]) -> Vec<Finding> {
        let mut found: BTreeMap<(usize, String, String), Finding> = BTreeMap::new();
        for package in packages.iter().filter(|package| package.source.as_deref().is_some_and(|source| source.starts_with("registry+"))) {
            let (Ok(name), Ok(version)) = (package.name.parse(), package.version.parse()) else { continue };
            let query =
                rustsec::database::Query::crate_scope().package_name(name).package_version(version).withdrawn(false).informational(false);
            for advisory in self.database.query(&query) {
                let severity =
                    advisory.metadata.cvss.as_ref().map_or("UNRATED".to_string(), |cvss| cvss.severity().to_string().to_uppercase());
                let rank = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "NONE", "UNRATED"].iter().position(|s| *s == severity).unwrap_or(6);
                let finding = Finding {
                    id: advisory.metadata.id.to_string(),
                    package: package.name.clone(),
                    version: package.version.clone(),
                    severity,
                    title: advisory.metadata.title.clone(),
                    patched: advisory.versions.patched().iter().map(ToString::to_string).collect(),
                };
                found.insert((rank, finding.id.clone(), finding.package.clone()), finding);
            }
        }
        found.into_values().collect()
    }
}

/// Findings counted by severity, as the scan gate's thresholds count them.
pub fn counts(findings: &[Finding]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for finding in findings {
        *counts.entry(finding.severity.clone()).or_insert(0) += 1;
    }
    counts
}

/// The findings as table rows under the app.
pub fn table(app: &str, findings: &[Finding]) -> String {
    if findings.is_empty() {
        return format!("{app} (RustSec): no advisory against its crates\n");
    }
    let mut out = format!("{app} (RustSec): {} advisories against its crates\n", findings.len());
    for finding in findings {
        let fixed =
            if finding.patched.is_empty() { "no fixed version".to_string() } else { format!("fixed in {}", finding.patched.join(", ")) };
        out.push_str(&format!(
            "  {:<9} {} {} {}: {} ({fixed})\n",
            finding.severity, finding.id, finding.package, finding.version, finding.title
        ));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An advisory database with one advisory, as rustsec/advisory-db lays it out.
    pub(crate) fn write_database(dir: &Path, package: &str, cvss: &str, patched: &str) {
        let crate_dir = dir.join("crates").join(package);
        std::fs::create_dir_all(&crate_dir).unwrap();
        std::fs::write(
            crate_dir.join("RUSTSEC-2099-0001.md"),
            format!(
                "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"{package}\"\ndate = \"2099-01-01\"\nurl = \"https://example.com/RUSTSEC-2099-0001\"\ncvss = \"{cvss}\"\n\n[versions]\npatched = [\"{patched}\"]\n```\n\n# Decoding can overflow\n\nA test advisory.\n"
            ),
        )
        .unwrap();
    }

    fn package(name: &str, version: &str, source: Option<&str>) -> CompiledPackage {
        CompiledPackage { name: name.into(), version: version.into(), source: source.map(String::from), checksum: None, license: None }
    }

    #[test]
    fn advisories_match_the_compiled_registry_crates_at_affected_versions() {
        let dir = tempfile::tempdir().unwrap();
        write_database(dir.path(), "percent-encoding", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", ">= 99.0.0");
        let advisories = Advisories::open(&Shell::new().unwrap(), dir.path()).unwrap();
        let registry = Some("registry+https://github.com/rust-lang/crates.io-index");
        let found = advisories.findings(&[package("percent-encoding", "2.3.1", registry), package("common", "0.1.0", None)]);
        expect_test::expect![[r#"
            hello-api (RustSec): 1 advisories against its crates
              CRITICAL  RUSTSEC-2099-0001 percent-encoding 2.3.1: Decoding can overflow (fixed in >=99.0.0)
        "#]]
        .assert_eq(&table("hello-api", &found));
        assert_eq!(counts(&found), BTreeMap::from([("CRITICAL".to_string(), 1)]));
        assert!(advisories.findings(&[package("percent-encoding", "99.1.0", registry)]).is_empty(), "a patched version");
        assert!(advisories.findings(&[package("percent-encoding", "2.3.1", None)]).is_empty(), "a path crate of that name");
    }
}
