//! The scan gate of `release` on ECR: an app's image is pushed without tags, ECR scans each
//! platform's manifest, and the tags move only when the findings stay within the thresholds.
//! A refused image stays untagged in the repository, where the lifecycle policy expires it, so
//! no tag ever names an image that failed the gate. The decisions (`violations`, the table) are
//! pure; the waiting goes through `ecr::Scanner`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::aws::ecr::{ScanFindings, ScanState, Scanner};
use crate::image::oci::Digest;
use crate::progress::AppLine;
use crate::workspace::config::EcrSettings;

/// The most findings of each severity an image may have; `None` does not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    pub max_critical: Option<u32>,
    pub max_high: Option<u32>,
}

impl Thresholds {
    pub fn is_set(&self) -> bool {
        self.max_critical.is_some() || self.max_high.is_some()
    }
}

/// How one platform's image fared.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Scanned(ScanFindings),
    /// ECR cannot scan the image (its reason): nothing to hold against it.
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlatformScan {
    pub platform: String,
    pub digest: Digest,
    pub outcome: Outcome,
}

/// What exceeds the thresholds, one phrase per severity, for instance `1 HIGH finding, more than
/// the 0 that max-high allows`.
pub fn violations(counts: &BTreeMap<String, u32>, thresholds: &Thresholds) -> Vec<String> {
    [("CRITICAL", "max-critical", thresholds.max_critical), ("HIGH", "max-high", thresholds.max_high)]
        .into_iter()
        .filter_map(|(severity, setting, limit)| {
            let count = counts.get(severity).copied().unwrap_or(0);
            let limit = limit?;
            let plural = if count == 1 { "" } else { "s" };
            (count > limit).then(|| format!("{count} {severity} finding{plural}, more than the {limit} that {setting} allows"))
        })
        .collect()
}

/// The findings of every platform, most severe first, at most `limit` rows per platform.
pub fn findings_table(app: &str, scans: &[PlatformScan], limit: usize) -> String {
    const ORDER: [&str; 6] = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"];
    let rank = |severity: &str| ORDER.iter().position(|s| *s == severity).unwrap_or(ORDER.len());
    let mut out = String::new();
    for scan in scans {
        match &scan.outcome {
            Outcome::Unsupported(reason) => out.push_str(&format!("{app} {}: ECR cannot scan this image ({reason})\n", scan.platform)),
            Outcome::Scanned(found) => {
                let counts: Vec<String> = ORDER
                    .iter()
                    .filter_map(|severity| Some(format!("{} {severity}", found.counts.get(*severity).filter(|n| **n > 0)?)))
                    .collect();
                let counts = if counts.is_empty() { "no findings".to_string() } else { counts.join(", ") };
                out.push_str(&format!("{app} {} ({}): {counts}\n", scan.platform, &scan.digest.hex()[..12]));
                let mut findings = found.findings.clone();
                findings.sort_by(|a, b| rank(&a.severity).cmp(&rank(&b.severity)).then_with(|| a.name.cmp(&b.name)));
                let width = findings.iter().take(limit).map(|f| f.name.len()).max().unwrap_or(0);
                for finding in findings.iter().take(limit) {
                    out.push_str(format!("  {:<13} {:<width$}  {}", finding.severity, finding.name, finding.package).trim_end());
                    out.push('\n');
                }
                if findings.len() > limit {
                    out.push_str(&format!("  ... and {} more\n", findings.len() - limit));
                }
            }
        }
    }
    out
}

/// Waits for ECR's scans and applies the thresholds.
pub struct ScanGate {
    scanner: Scanner,
    thresholds: Thresholds,
    timeout: Duration,
}

/// How long an image ECR does not know yet is waited for: a manifest just written through the
/// registry API may take a moment to reach the scan API.
const UNKNOWN_IMAGE_GRACE: Duration = Duration::from_secs(30);
const FIRST_POLL: Duration = Duration::from_secs(1);
const LONGEST_POLL: Duration = Duration::from_secs(10);

impl ScanGate {
    pub fn new(scanner: Scanner, flags: Thresholds, timeout: Option<u64>, settings: &EcrSettings) -> ScanGate {
        let thresholds =
            Thresholds { max_critical: flags.max_critical.or(settings.max_critical), max_high: flags.max_high.or(settings.max_high) };
        ScanGate { scanner, thresholds, timeout: Duration::from_secs(timeout.unwrap_or(settings.scan_timeout_seconds)) }
    }

    /// Waits for the scan of each of `manifests` (platform, digest), starting one where none
    /// began, prints the findings, and fails when a platform exceeds the thresholds.
    pub async fn check(&self, app: &str, manifests: &[(String, Digest)], line: &AppLine) -> Result<Vec<PlatformScan>> {
        let mut scans = Vec::new();
        for (platform, digest) in manifests {
            line.step(&format!("waiting for ECR's scan of {platform}"));
            let outcome = self.wait_for(app, platform, digest).await?;
            scans.push(PlatformScan { platform: platform.clone(), digest: digest.clone(), outcome });
        }
        let table = findings_table(app, &scans, 20);
        eprint!("{table}");
        let failed: Vec<String> = scans
            .iter()
            .filter_map(|scan| match &scan.outcome {
                Outcome::Scanned(found) => {
                    let violations = violations(&found.counts, &self.thresholds);
                    (!violations.is_empty()).then(|| format!("{} has {}", scan.platform, violations.join(" and ")))
                }
                Outcome::Unsupported(_) => None,
            })
            .collect();
        if !failed.is_empty() {
            bail!(
                "the scan gate refused the image, so its tags were not moved: {} (the findings are listed above). The image stays untagged in the repository, where the lifecycle policy expires it. Fix the findings, or raise the thresholds (--max-critical and --max-high, or max-critical and max-high in [workspace.metadata.xtask.ecr])",
                failed.join("; ")
            );
        }
        Ok(scans)
    }

    async fn wait_for(&self, app: &str, platform: &str, digest: &Digest) -> Result<Outcome> {
        let started = Instant::now();
        let mut poll = FIRST_POLL;
        let mut scan_started = false;
        loop {
            match self.scanner.state(app, digest).await? {
                ScanState::Complete(found) => return Ok(Outcome::Scanned(found)),
                ScanState::Unsupported(reason) => return Ok(Outcome::Unsupported(reason)),
                ScanState::Failed(status) => bail!(
                    "ECR's scan of the {platform} image ({digest}) ended with {status}, so the scan gate cannot pass it and its tags were not moved: release again to rescan, or release without --max-critical and --max-high"
                ),
                ScanState::ImageUnknown if started.elapsed() > UNKNOWN_IMAGE_GRACE => bail!(
                    "ECR does not know the {platform} image {digest} {} s after it was pushed, so it cannot be scanned and its tags were not moved: check that the repository's host is the registry the image was pushed to",
                    UNKNOWN_IMAGE_GRACE.as_secs()
                ),
                // Scan on push usually starts on its own; when it has not (or the repository
                // does not scan on push), the gate starts a basic scan itself.
                ScanState::NotStarted if !scan_started => {
                    self.scanner.start(app, digest).await?;
                    scan_started = true;
                    continue;
                }
                ScanState::ImageUnknown | ScanState::NotStarted | ScanState::InProgress => {}
            }
            if started.elapsed() + poll > self.timeout {
                bail!(
                    "ECR's scan of the {platform} image ({digest}) did not finish within {} s, so its tags were not moved: raise --scan-timeout (or scan-timeout-seconds in [workspace.metadata.xtask.ecr]) and release again",
                    self.timeout.as_secs()
                );
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(LONGEST_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::aws::ecr::Finding;

    fn check(counts: &[(&str, u32)], thresholds: Thresholds, expected: &[&str]) {
        let counts = counts.iter().map(|(severity, count)| (severity.to_string(), *count)).collect();
        assert_eq!(violations(&counts, &thresholds), expected);
    }

    #[test]
    fn thresholds_count_critical_and_high_findings() {
        let strict = Thresholds { max_critical: Some(0), max_high: Some(2) };
        check(&[("HIGH", 2), ("MEDIUM", 40)], strict, &[]);
        check(&[("HIGH", 3)], strict, &["3 HIGH findings, more than the 2 that max-high allows"]);
        check(
            &[("CRITICAL", 1), ("HIGH", 5)],
            strict,
            &["1 CRITICAL finding, more than the 0 that max-critical allows", "5 HIGH findings, more than the 2 that max-high allows"],
        );
        check(&[("CRITICAL", 9)], Thresholds { max_critical: None, max_high: Some(0) }, &[]);
    }

    #[test]
    fn findings_are_listed_most_severe_first() {
        let finding =
            |severity: &str, name: &str, package: &str| Finding { severity: severity.into(), name: name.into(), package: package.into() };
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let scans = [
            PlatformScan {
                platform: "linux/amd64".into(),
                digest: digest.clone(),
                outcome: Outcome::Scanned(ScanFindings {
                    counts: [("HIGH".to_string(), 1), ("CRITICAL".to_string(), 1), ("LOW".to_string(), 2)].into(),
                    findings: vec![
                        finding("LOW", "CVE-2024-0002", "zlib 1.2.13"),
                        finding("HIGH", "CVE-2023-1234", "openssl 3.0.11"),
                        finding("CRITICAL", "CVE-2024-9999", "glibc 2.36"),
                        finding("LOW", "CVE-2024-0001", ""),
                    ],
                }),
            },
            PlatformScan { platform: "linux/arm64".into(), digest: digest.clone(), outcome: Outcome::Scanned(ScanFindings::default()) },
            PlatformScan {
                platform: "linux/riscv64".into(),
                digest,
                outcome: Outcome::Unsupported(
                    "UnsupportedImageError: The operating system and/or package manager are not supported.".into(),
                ),
            },
        ];
        expect![[r#"
            api linux/amd64 (abababababab): 1 CRITICAL, 1 HIGH, 2 LOW
              CRITICAL      CVE-2024-9999  glibc 2.36
              HIGH          CVE-2023-1234  openssl 3.0.11
              LOW           CVE-2024-0001
              ... and 1 more
            api linux/arm64 (abababababab): no findings
            api linux/riscv64: ECR cannot scan this image (UnsupportedImageError: The operating system and/or package manager are not supported.)
        "#]]
        .assert_eq(&findings_table("api", &scans, 3));
    }
}
