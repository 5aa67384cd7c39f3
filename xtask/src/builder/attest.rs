//! The attestations a release attaches to each platform image when asked (`release --attest`):
//! a bill of materials of the crates the app's binary compiles for that platform's target (the
//! resolved graph, with Cargo.lock's checksums and the manifests' licenses) and a SLSA
//! provenance statement, each written into the app's layout as an OCI 1.1 artifact whose
//! subject is the platform manifest (`image::attestation` makes the documents).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use crate::builder::Provenance;
use crate::image::attestation::{self, Build, Subject};
use crate::image::layout::Layout;
use crate::image::oci::{Descriptor, Digest};
use crate::image::platform::Platform;
use crate::image::signature::{self, Key};
use crate::workspace::config::SbomFormat;
use crate::workspace::graph::Resolver;
use crate::workspace::{Member, Workspace};

pub struct Attester<'a> {
    resolver: &'a Resolver,
    /// Cargo.lock's checksums by `(name, version)`.
    checksums: BTreeMap<(String, String), String>,
    /// The `GITHUB_*` variables of the run.
    github: BTreeMap<String, String>,
    /// The command line, as the provenance records it.
    command: String,
    sbom_formats: Vec<SbomFormat>,
}

/// The key that signs the provenance (a DSSE envelope), if any.
pub type SigningKey<'a> = Option<&'a Key>;

impl<'a> Attester<'a> {
    pub fn new(workspace: &'a Workspace, sbom_formats: &[SbomFormat]) -> Result<Attester<'a>> {
        let resolver = workspace.graph.resolver()?;
        let lockfile = std::fs::read_to_string(workspace.root.join("Cargo.lock")).context("the bill of materials needs Cargo.lock")?;
        let checksums = crate::detect::lockfile::checksums(&lockfile).context("Cargo.lock is not a lockfile cargo wrote")?;
        let github = std::env::vars().filter(|(key, _)| key.starts_with("GITHUB_")).collect();
        let arguments: Vec<String> = std::env::args().skip(1).collect();
        let command = format!("cargo xtask {}", arguments.join(" "));
        Ok(Attester { resolver, checksums, github, command, sbom_formats: sbom_formats.to_vec() })
    }

    /// Writes the SBOMs and the provenance of `member`'s `platform` image (`manifest`, compiled
    /// for `target`, on `base`) into `layout`; returns their artifact manifests.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        &self,
        layout: &Layout,
        member: &Member,
        platform: &Platform,
        target: &str,
        manifest: &Descriptor,
        base: Option<(&str, &Digest)>,
        provenance: &Provenance,
        key: SigningKey<'_>,
    ) -> Result<Vec<Descriptor>> {
        let mut packages = match &member.package {
            Some(package) => self.resolver.compiled_into(package, target)?,
            None => Vec::new(),
        };
        for package in &mut packages {
            package.checksum = self.checksums.get(&(package.name.clone(), package.version.clone())).cloned();
        }
        let subject = Subject { app: &member.name, version: &member.version, platform, manifest };
        let source = provenance.source.as_deref().map(attestation::without_credentials);
        let build = Build {
            source: source.as_deref(),
            revision: provenance.revision.as_deref(),
            inputs: provenance.inputs.get(&member.name),
            target,
            command: &self.command,
            github: &self.github,
        };
        let statement = attestation::provenance(&subject, &build);
        // Signed, the provenance travels as a DSSE envelope, as `cosign attest` writes it.
        let provenance_layer = match key {
            Some(key) => (signature::DSSE_MEDIA_TYPE, signature::dsse_envelope(&statement, key)),
            None => (attestation::PROVENANCE_ARTIFACT_TYPE, statement),
        };
        let mut attachments = Vec::new();
        for format in &self.sbom_formats {
            let (kind, sbom) = match format {
                SbomFormat::Spdx => (attestation::SPDX_ARTIFACT_TYPE, attestation::spdx(&subject, &packages, base, provenance.epoch)),
                SbomFormat::Cyclonedx => {
                    (attestation::CYCLONEDX_ARTIFACT_TYPE, attestation::cyclonedx(&subject, &packages, base, provenance.epoch))
                }
            };
            attachments.push(crate::image::write_attachment(layout, manifest, kind, (kind, &sbom), provenance.epoch)?);
        }
        attachments.push(crate::image::write_attachment(
            layout,
            manifest,
            attestation::PROVENANCE_ARTIFACT_TYPE,
            (provenance_layer.0, &provenance_layer.1),
            provenance.epoch,
        )?);
        Ok(attachments)
    }
}
