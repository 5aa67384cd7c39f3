//! What an image is and how it is written, with no network and no program run: the OCI model
//! (`oci`, `platform`, `reference`), the Dockerfile reader, reproducible layers, OCI image layouts
//! on disk, `docker save` archives, attestations (SBOM, provenance), and here the last step of
//! either builder: one platform's config and manifest from its `ImageParts`, the index over the
//! platforms, and the artifacts attached to a platform image.

pub mod archive;
pub mod attestation;
pub mod dockerfile;
pub mod fstree;
pub mod layer;
pub mod layout;
pub mod libc;
pub mod oci;
pub mod platform;
pub mod reference;
pub mod signature;

use std::collections::BTreeMap;

use anyhow::Result;

use crate::image::layout::Layout;
use crate::image::oci::{ContainerConfig, Descriptor, Digest, History, ImageConfig, ImageIndex, ImageManifest, RootFs};
use crate::image::platform::Platform;

/// One platform's image before its config and manifest are written, from either builder.
pub struct ImageParts {
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<Digest>,
    pub history: Vec<History>,
    pub config: ContainerConfig,
    /// `MAINTAINER`'s value, the config's `author`.
    pub author: Option<String>,
}

/// Writes one platform's image config and manifest, `annotations` set on the manifest and as
/// labels of the config where the Dockerfile set no label of that name, `epoch` as the config's
/// creation time; returns the manifest's descriptor for the index, with its platform.
pub fn write_image(
    layout: &Layout,
    platform: &Platform,
    parts: ImageParts,
    annotations: &BTreeMap<String, String>,
    epoch: u64,
) -> Result<Descriptor> {
    let mut container_config = parts.config;
    for (key, value) in annotations {
        container_config.labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    // BuildKit leaves `created` out of an image whose history is empty.
    let created = (!parts.history.is_empty()).then(|| oci::rfc3339(epoch));
    let config = ImageConfig {
        created,
        author: parts.author,
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: container_config,
        rootfs: RootFs { kind: "layers".into(), diff_ids: parts.diff_ids },
        history: parts.history,
    };
    let config = layout.write_blob(oci::MEDIA_TYPE_CONFIG, &oci::to_bytes(&config))?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
        config,
        layers: parts.layers,
        annotations: annotations.clone(),
    };
    let mut descriptor = layout.write_blob(oci::MEDIA_TYPE_MANIFEST, &oci::to_bytes(&manifest))?;
    descriptor.platform = Some(platform.to_oci());
    Ok(descriptor)
}

/// Writes `bytes` as an OCI 1.1 artifact of `artifact_type` attached to `subject` (its one layer
/// of `media_type`, its config the empty one); returns the artifact manifest's descriptor with
/// its `artifactType`, as a referrers list names it.
pub fn write_attachment(
    layout: &Layout,
    subject: &Descriptor,
    artifact_type: &str,
    (media_type, bytes): (&str, &[u8]),
    epoch: u64,
) -> Result<Descriptor> {
    let config = layout.write_blob(oci::MEDIA_TYPE_EMPTY, oci::EMPTY_JSON)?;
    let layer = layout.write_blob(media_type, bytes)?;
    let mut subject = subject.clone();
    subject.platform = None;
    let annotations = BTreeMap::from([("org.opencontainers.image.created".to_string(), oci::rfc3339(epoch))]);
    let manifest = oci::ArtifactManifest {
        schema_version: 2,
        media_type: oci::MEDIA_TYPE_MANIFEST.into(),
        artifact_type: artifact_type.into(),
        config,
        layers: vec![layer],
        subject,
        annotations: annotations.clone(),
    };
    let mut descriptor = layout.write_blob(oci::MEDIA_TYPE_MANIFEST, &oci::to_bytes(&manifest))?;
    descriptor.artifact_type = Some(artifact_type.into());
    descriptor.annotations = annotations;
    Ok(descriptor)
}

/// Writes the index over `manifests`, in the order given (the order of the platforms built).
pub fn write_index(layout: &Layout, manifests: Vec<Descriptor>, annotations: BTreeMap<String, String>) -> Result<Descriptor> {
    let index = ImageIndex::new(manifests, annotations);
    layout.write_blob(oci::MEDIA_TYPE_INDEX, &oci::to_bytes(&index))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an image per platform from the same parts and an index over them, and prints the
    /// index, the first manifest and its config as the layout holds them.
    fn check(platforms: &[&str], annotations: &[(&str, &str)], expected: expect_test::Expect) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let annotations: BTreeMap<String, String> = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let layer = layout.write_blob(oci::MEDIA_TYPE_LAYER_GZIP, b"layer").unwrap();
        let mut manifests = Vec::new();
        for platform in platforms {
            let parts = ImageParts {
                layers: vec![layer.clone()],
                diff_ids: vec![Digest::of(b"diff")],
                history: vec![History { created_by: Some("COPY app /app".into()), ..History::default() }],
                config: ContainerConfig { entrypoint: Some(vec!["/app".into()]), ..ContainerConfig::default() },
                author: None,
            };
            manifests.push(write_image(&layout, &Platform::parse(platform).unwrap(), parts, &annotations, 86_400).unwrap());
        }
        let index = write_index(&layout, manifests, annotations.clone()).unwrap();
        let pretty = |bytes: &[u8]| serde_json::to_string_pretty(&serde_json::from_slice::<serde_json::Value>(bytes).unwrap()).unwrap();
        let index_bytes = layout.read_blob(&index).unwrap();
        let first = serde_json::from_slice::<ImageIndex>(&index_bytes).unwrap().manifests.remove(0);
        let manifest_bytes = layout.read_blob(&first).unwrap();
        let config = serde_json::from_slice::<ImageManifest>(&manifest_bytes).unwrap().config;
        let shown = [index_bytes, manifest_bytes, layout.read_blob(&config).unwrap()].map(|bytes| pretty(&bytes));
        expected.assert_eq(&shown.join("\n"));
    }

    #[test]
    fn platform_images_and_their_index() {
        check(
            &["linux/arm64", "linux/amd64", "linux/arm/v7"],
            &[("org.opencontainers.image.title", "api"), ("org.opencontainers.image.revision", "abc")],
            expect_test::expect![[r#"
                {
                  "annotations": {
                    "org.opencontainers.image.revision": "abc",
                    "org.opencontainers.image.title": "api"
                  },
                  "manifests": [
                    {
                      "digest": "sha256:1443d83f9c6eb29f7c4026f6a566b76cd82b6e4c5125bcbdb5904fb416b91c1e",
                      "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "platform": {
                        "architecture": "arm64",
                        "os": "linux"
                      },
                      "size": 496
                    },
                    {
                      "digest": "sha256:a7e724729b35383136698a5305952cb07424970534e2d3530064fb730269f581",
                      "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "platform": {
                        "architecture": "amd64",
                        "os": "linux"
                      },
                      "size": 496
                    },
                    {
                      "digest": "sha256:a64578187137121b8668e0384269d358a7f76886eae3a776fe476e29974e2282",
                      "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "platform": {
                        "architecture": "arm",
                        "os": "linux",
                        "variant": "v7"
                      },
                      "size": 496
                    }
                  ],
                  "mediaType": "application/vnd.oci.image.index.v1+json",
                  "schemaVersion": 2
                }
                {
                  "annotations": {
                    "org.opencontainers.image.revision": "abc",
                    "org.opencontainers.image.title": "api"
                  },
                  "config": {
                    "digest": "sha256:efd36e4843c1332c26cdf994fd3d433cd2302866cdc117e8fbb5dd0c24a5fadf",
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "size": 352
                  },
                  "layers": [
                    {
                      "digest": "sha256:dac1d7cfa95021764849fd102524e141488c5e3a90f861dbb5a12d9ac8584f85",
                      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "size": 5
                    }
                  ],
                  "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "schemaVersion": 2
                }
                {
                  "architecture": "arm64",
                  "config": {
                    "Entrypoint": [
                      "/app"
                    ],
                    "Labels": {
                      "org.opencontainers.image.revision": "abc",
                      "org.opencontainers.image.title": "api"
                    }
                  },
                  "created": "1970-01-02T00:00:00Z",
                  "history": [
                    {
                      "created_by": "COPY app /app"
                    }
                  ],
                  "os": "linux",
                  "rootfs": {
                    "diff_ids": [
                      "sha256:df087996d45b03e7eb8c133c0298fd98d35113fca26aaba58612fef3cc212cad"
                    ],
                    "type": "layers"
                  }
                }"#]],
        );
    }
}
