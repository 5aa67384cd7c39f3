//! Releases split across machines: each job pushes its platforms' images by digest, untagged
//! (`release --by-digest`), and prints them as `Pushed`; `merge` then joins those records into
//! one index per app, written by digest once every platform's image is in the repository, and
//! only then moves the tags, in the order `release` moves them. Docker documents the same
//! recipe for multi-runner builds (push by digest, then `imagetools create`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::image::layout::Layout;
use crate::image::oci::{self, Descriptor, ImageIndex};
use crate::image::platform::Platform;
use crate::image::reference::Repository;
use crate::repository::store::Registries;

/// What one `release --by-digest` job pushed: the commit, the repository and, per app, the
/// index annotations its full release would write and its platform images' descriptors.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Pushed {
    pub revision: String,
    pub repository: String,
    pub apps: BTreeMap<String, PushedApp>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PushedApp {
    pub annotations: BTreeMap<String, String>,
    /// Platform manifests, each with its `platform`.
    pub manifests: Vec<Descriptor>,
}

/// One app's index, joined from every job's record, in `platforms` order.
#[derive(Debug, PartialEq)]
pub struct Joined {
    pub app: String,
    pub index: ImageIndex,
}

/// Joins the jobs' records: one revision and one repository for all, the same annotations for
/// an app in every job, one image per platform, and every platform of `platforms` present for
/// every app. An error names what is missing or disagrees; nothing has been written then.
pub fn join(records: &[(String, Pushed)], platforms: &[Platform]) -> Result<(String, String, Vec<Joined>)> {
    let Some((first_file, first)) = records.first() else { bail!("no record of `release --by-digest` was given") };
    for (file, record) in records {
        if record.revision != first.revision || record.repository != first.repository {
            bail!(
                "{file} records a push of {} to {} and {first_file} one of {} to {}: merge the records of one commit's jobs into one repository",
                record.revision,
                record.repository,
                first.revision,
                first.repository
            );
        }
    }
    // Per app: its annotations, and its images by platform.
    type Gathered<'a> = (&'a BTreeMap<String, String>, BTreeMap<String, &'a Descriptor>);
    let mut apps: BTreeMap<&str, Gathered<'_>> = BTreeMap::new();
    for (file, record) in records {
        for (app, pushed) in &record.apps {
            let (annotations, manifests) = apps.entry(app).or_insert((&pushed.annotations, BTreeMap::new()));
            if *annotations != &pushed.annotations {
                bail!("{file} records {app} with other annotations than an earlier record (other inputs or build time): merge the records of one commit's jobs, built from the same tree");
            }
            for manifest in &pushed.manifests {
                let platform = manifest
                    .platform
                    .as_ref()
                    .map(ToString::to_string)
                    .with_context(|| format!("{file}: an image of {app} names no platform"))?;
                if let Some(other) = manifests.insert(platform.clone(), manifest) {
                    if other.digest != manifest.digest {
                        bail!(
                            "{app} has two {platform} images ({} and {}): each platform is built by one job only",
                            other.digest,
                            manifest.digest
                        );
                    }
                }
            }
        }
    }
    let mut joined = Vec::new();
    for (app, (annotations, manifests)) in apps {
        let wanted: Vec<String> = platforms.iter().map(ToString::to_string).collect();
        let missing: Vec<&String> = wanted.iter().filter(|platform| !manifests.contains_key(*platform)).collect();
        if !missing.is_empty() {
            let have: Vec<&String> = manifests.keys().collect();
            bail!(
                "{app} has no {} image among the records given (they hold {}): nothing was tagged; pass the record of the job that released {} with --by-digest, or merge with --platform {}",
                missing.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
                have.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
                missing.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
                have.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
            );
        }
        let descriptors = wanted.iter().map(|platform| manifests[platform].clone()).collect();
        joined.push(Joined { app: app.to_string(), index: ImageIndex::new(descriptors, annotations.clone()) });
    }
    Ok((first.revision.clone(), first.repository.clone(), joined))
}

/// Fails unless every platform manifest `index` names is in `repository`.
pub async fn check_present(registries: &Registries, repository: &Repository, index: &ImageIndex) -> Result<()> {
    for manifest in &index.manifests {
        let present = match repository {
            Repository::Registry { host, path } => {
                registries.client(host)?.manifest_digest(path, manifest.digest.as_str()).await?.as_ref() == Some(&manifest.digest)
            }
            Repository::Layout { dir } => Layout::open(dir)?.has_blob(&manifest.digest),
        };
        if !present {
            bail!("{repository} has no image {}: the job that pushed it did not finish; run it again before merging", manifest.digest);
        }
    }
    Ok(())
}

/// Writes `index` by digest to `repository`, untagged. Returns its descriptor.
pub async fn write_index(registries: &Registries, repository: &Repository, index: &ImageIndex) -> Result<Descriptor> {
    let bytes = oci::to_bytes(index);
    let descriptor = Descriptor::new(oci::MEDIA_TYPE_INDEX, &bytes);
    match repository {
        Repository::Registry { host, path } => {
            registries.client(host)?.put_manifest(path, descriptor.digest.as_str(), oci::MEDIA_TYPE_INDEX, &bytes).await?;
        }
        Repository::Layout { dir } => {
            Layout::open(dir)?.write_blob(oci::MEDIA_TYPE_INDEX, &bytes)?;
        }
    }
    Ok(descriptor)
}

/// Points `tags` at `index` (written by `write_index`), in order.
pub async fn write_tags(registries: &Registries, repository: &Repository, index: &ImageIndex, tags: &[String]) -> Result<()> {
    let bytes = oci::to_bytes(index);
    match repository {
        Repository::Registry { host, path } => {
            let registry = registries.client(host)?;
            for tag in tags {
                registry.put_manifest(path, tag, oci::MEDIA_TYPE_INDEX, &bytes).await?;
            }
        }
        Repository::Layout { dir } => {
            let layout = Layout::open(dir)?;
            let written = Descriptor::new(oci::MEDIA_TYPE_INDEX, &bytes);
            for tag in tags {
                layout.tag(tag, &written)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revision: &str, app: &str, platforms: &[(&str, &str)]) -> Pushed {
        let manifests = platforms
            .iter()
            .map(|(platform, bytes)| {
                let mut descriptor = Descriptor::new(oci::MEDIA_TYPE_MANIFEST, bytes.as_bytes());
                let platform = Platform::parse(platform).unwrap();
                descriptor.platform = Some(oci::Platform { os: platform.os, architecture: platform.architecture, variant: None });
                descriptor
            })
            .collect();
        let annotations = BTreeMap::from([("org.opencontainers.image.revision".to_string(), revision.to_string())]);
        Pushed {
            revision: revision.into(),
            repository: "r/acme".into(),
            apps: BTreeMap::from([(app.to_string(), PushedApp { annotations, manifests })]),
        }
    }

    fn check(records: Vec<Pushed>, expected: expect_test::Expect) {
        let records: Vec<(String, Pushed)> = records.into_iter().enumerate().map(|(n, r)| (format!("job{n}.json"), r)).collect();
        let platforms = [Platform::parse("linux/amd64").unwrap(), Platform::parse("linux/arm64").unwrap()];
        let actual = match join(&records, &platforms) {
            Ok((revision, _, joined)) => joined
                .iter()
                .map(|j| {
                    let platforms: Vec<String> = j.index.manifests.iter().map(|m| m.platform.as_ref().unwrap().to_string()).collect();
                    format!("{revision} {}: {}", j.app, platforms.join(" "))
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(err) => format!("error: {err}"),
        };
        expected.assert_eq(&actual);
    }

    #[test]
    fn records_of_every_platform_join_and_anything_else_is_refused() {
        let amd = || record("abc", "worker", &[("linux/amd64", "a")]);
        let arm = || record("abc", "worker", &[("linux/arm64", "b")]);
        check(vec![arm(), amd()], expect_test::expect!["abc worker: linux/amd64 linux/arm64"]);
        check(vec![amd()], expect_test::expect!["error: worker has no linux/arm64 image among the records given (they hold linux/amd64): nothing was tagged; pass the record of the job that released linux/arm64 with --by-digest, or merge with --platform linux/amd64"]);
        check(vec![amd(), record("def", "worker", &[("linux/arm64", "b")])], expect_test::expect!["error: job1.json records a push of def to r/acme and job0.json one of abc to r/acme: merge the records of one commit's jobs into one repository"]);
        check(vec![amd(), arm(), record("abc", "worker", &[("linux/arm64", "c")])], expect_test::expect!["error: worker has two linux/arm64 images (sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d and sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6): each platform is built by one job only"]);
        check(vec![], expect_test::expect!["error: no record of `release --by-digest` was given"]);
    }
}
