//! Deleting images by digest, with every tag naming them: on ECR with `BatchDeleteImage` (ECR's
//! support for the registry API's manifest DELETE is disputed), elsewhere through the registry
//! API, and in a layout by dropping their names.

use anyhow::Result;

use crate::aws::ecr;
use crate::image::layout::Layout;
use crate::image::oci::Digest;
use crate::image::reference::Repository;
use crate::repository::store::{Registries, Store};

pub async fn delete_images(registries: &Registries, repository: &Repository, digests: &[Digest]) -> Result<()> {
    if let Repository::Registry { host, .. } = repository {
        if ecr::parse_host(host).is_some() {
            return ecr::delete_images(repository, digests).await;
        }
    }
    match registries.open(repository)? {
        Store::Layout { dir } => {
            let layout = Layout::open(&dir)?;
            digests.iter().try_for_each(|digest| layout.untag_digest(digest))
        }
        Store::Registry { registry, path } => {
            for digest in digests {
                registry.delete_manifest(&path, digest).await?;
            }
            Ok(())
        }
    }
}
