//! Image platforms (`linux/amd64`, `linux/arm64/v8`) and the Docker build arguments they imply.

use std::fmt;

use anyhow::{bail, Result};

use crate::image::oci;

/// The architectures an OCI image index may name for Linux, as Go spells them.
const KNOWN_ARCHITECTURES: &[&str] = &["amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(text: &str) -> Result<Platform> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let (os, architecture, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] if !variant.is_empty() => (*os, *arch, Some(variant.to_string())),
            _ => bail!("unknown platform `{text}`: write it as os/architecture[/variant], for instance linux/amd64 or linux/arm64"),
        };
        // A variant reaches file paths (`target/stage/<platform>`): letters and digits only.
        if variant.as_deref().is_some_and(|v| v.len() > 16 || !v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())) {
            bail!("unknown platform `{text}`: a variant is a few lower-case letters and digits, such as v7 or v8");
        }
        if os != "linux" {
            bail!("unknown platform `{text}`: only linux images are built; use linux/amd64 or linux/arm64");
        }
        if !KNOWN_ARCHITECTURES.contains(&architecture) {
            bail!("unknown platform `{text}`: the architecture must be one of {}", KNOWN_ARCHITECTURES.join(", "));
        }
        Ok(Platform { os: os.to_string(), architecture: architecture.to_string(), variant })
    }

    /// This machine's platform, as Docker names it: the one a build here runs on.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform { os: "linux".into(), architecture: architecture.into(), variant: None }
    }

    /// The value of the automatic build arguments `TARGETPLATFORM`, `TARGETOS`, `TARGETARCH` and
    /// `TARGETVARIANT` that Docker defines for a platform.
    pub fn build_args(&self) -> Vec<(String, String)> {
        vec![
            ("TARGETPLATFORM".into(), self.to_string()),
            ("TARGETOS".into(), self.os.clone()),
            ("TARGETARCH".into(), self.architecture.clone()),
            ("TARGETVARIANT".into(), self.variant.clone().unwrap_or_default()),
        ]
    }

    /// The automatic build arguments of a build on `host` for this platform: the `TARGET*` ones
    /// and `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH` and `BUILDVARIANT`.
    pub fn build_args_on(&self, host: &Platform) -> Vec<(String, String)> {
        let mut args = self.build_args();
        args.extend([
            ("BUILDPLATFORM".into(), host.to_string()),
            ("BUILDOS".into(), host.os.clone()),
            ("BUILDARCH".into(), host.architecture.clone()),
            ("BUILDVARIANT".into(), host.variant.clone().unwrap_or_default()),
        ]);
        args
    }

    pub fn to_oci(&self) -> oci::Platform {
        oci::Platform { architecture: self.architecture.clone(), os: self.os.clone(), variant: self.variant.clone() }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The gnu counterpart of a musl Rust target, which an app on a glibc base is compiled for:
/// `-musl` becomes `-gnu`, `-musleabihf` `-gnueabihf`; `None` for a target that is not musl.
pub fn gnu_counterpart(triple: &str) -> Option<String> {
    triple.rsplit_once('-').and_then(|(rest, abi)| Some(format!("{rest}-gnu{}", abi.strip_prefix("musl")?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn musl_targets_have_gnu_counterparts() {
        let counterparts: Vec<Option<String>> =
            ["aarch64-unknown-linux-musl", "armv7-unknown-linux-musleabihf", "x86_64-unknown-linux-gnu"]
                .iter()
                .map(|t| gnu_counterpart(t))
                .collect();
        assert_eq!(counterparts, [Some("aarch64-unknown-linux-gnu".to_string()), Some("armv7-unknown-linux-gnueabihf".to_string()), None]);
    }

    fn check(input: &str, expected: &str) {
        let actual = match Platform::parse(input) {
            Ok(platform) => platform.to_string(),
            Err(err) => format!("error: {err}"),
        };
        assert_eq!(actual, expected);
    }

    #[test]
    fn parsing() {
        check("linux/amd64", "linux/amd64");
        check(" linux/arm64/v8", "linux/arm64/v8");
        check(
            "linux/x86_64",
            "error: unknown platform `linux/x86_64`: the architecture must be one of amd64, arm64, arm, 386, ppc64le, s390x, riscv64",
        );
        check("windows/amd64", "error: unknown platform `windows/amd64`: only linux images are built; use linux/amd64 or linux/arm64");
        check("amd64", "error: unknown platform `amd64`: write it as os/architecture[/variant], for instance linux/amd64 or linux/arm64");
    }
}
