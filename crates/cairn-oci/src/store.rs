//! One interface over a registry repository and an OCI layout directory.

use crate::client::{FetchedManifest, ManifestHead, Mount, RegistryClient};
use crate::error::{OciError, Result};
use crate::layout::Layout;
use crate::reference::Repository;
use bytes::Bytes;

/// Where manifests and blobs are read and written.
#[derive(Debug, Clone)]
pub enum Store {
    /// A repository in a registry.
    Registry {
        /// The client.
        client: RegistryClient,
        /// The repository.
        repository: Repository,
    },
    /// An OCI image layout directory.
    Layout(Layout),
    /// A repository read through skopeo's image proxy, with the host's
    /// containers settings. Read-only.
    #[cfg(feature = "image-proxy")]
    Proxy {
        /// The reader (one skopeo process, shared by the stores of a pass).
        reader: std::sync::Arc<crate::proxy::ProxyReader>,
        /// The repository.
        repository: Repository,
        /// How manifests are read.
        view: ProxyView,
    },
}

/// How a [`Store::Proxy`] reads manifests.
#[cfg(feature = "image-proxy")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyView {
    /// Exactly the manifest asked for, its bytes checked against its
    /// digest: for documents, signatures, halt lists and roots.
    Exact,
    /// The image the host would pull
    /// ([`ProxyReader::get_manifest_as_host_pulls`](crate::proxy::ProxyReader::get_manifest_as_host_pulls)):
    /// for the tag and barrier scans, which read labels and layers.
    AsHostPulls,
}

/// The error of a write to a store that only reads.
#[cfg(feature = "image-proxy")]
fn read_only(repository: &Repository, operation: &str) -> crate::error::OciError {
    crate::error::OciError::invalid(
        format!("{operation} to {repository}"),
        "this store reads through skopeo's image proxy and cannot write",
    )
}

impl Store {
    /// A registry repository.
    pub fn registry(client: RegistryClient, repository: Repository) -> Self {
        Store::Registry { client, repository }
    }

    /// A repository read through skopeo's image proxy.
    #[cfg(feature = "image-proxy")]
    pub fn proxy(
        reader: std::sync::Arc<crate::proxy::ProxyReader>,
        repository: Repository,
    ) -> Self {
        Store::Proxy {
            reader,
            repository,
            view: ProxyView::Exact,
        }
    }

    /// A repository read through skopeo's image proxy as the host's pulls
    /// see it: one platform of an index, Docker manifests converted.
    #[cfg(feature = "image-proxy")]
    pub fn proxy_as_host_pulls(
        reader: std::sync::Arc<crate::proxy::ProxyReader>,
        repository: Repository,
    ) -> Self {
        Store::Proxy {
            reader,
            repository,
            view: ProxyView::AsHostPulls,
        }
    }

    /// Whether reads resolve an index to this host's platform, as skopeo
    /// does for a scan: a tag with no image for this host is then unusable
    /// here, not a broken registry.
    pub fn reads_as_host_pulls(&self) -> bool {
        match self {
            #[cfg(feature = "image-proxy")]
            Store::Proxy {
                view: ProxyView::AsHostPulls,
                ..
            } => true,
            _ => false,
        }
    }

    /// How to name this store to people (`registry/repo` or `oci:DIR`).
    pub fn describe(&self) -> String {
        match self {
            Store::Registry { repository, .. } => repository.to_string(),
            Store::Layout(layout) => format!("oci:{}", layout.path().display()),
            #[cfg(feature = "image-proxy")]
            Store::Proxy { repository, .. } => repository.to_string(),
        }
    }

    /// Every tag (for a layout: every `ref.name`).
    pub async fn list_tags(&self) -> Result<Vec<String>> {
        match self {
            Store::Registry { client, repository } => client.list_tags(repository).await,
            Store::Layout(layout) => layout.list_tags(),
            #[cfg(feature = "image-proxy")]
            Store::Proxy {
                reader, repository, ..
            } => reader.list_tags(repository).await,
        }
    }

    /// The manifest a tag or digest points at, if any.
    pub async fn resolve(&self, reference: &str) -> Result<Option<ManifestHead>> {
        match self {
            Store::Registry { client, repository } => {
                client.head_manifest(repository, reference).await
            }
            Store::Layout(layout) => layout.resolve(reference),
            #[cfg(feature = "image-proxy")]
            Store::Proxy {
                reader, repository, ..
            } => reader.resolve(repository, reference).await,
        }
    }

    /// A manifest by tag or digest.
    pub async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest> {
        match self {
            Store::Registry { client, repository } => {
                client.get_manifest(repository, reference).await
            }
            Store::Layout(layout) => layout.get_manifest(reference),
            #[cfg(feature = "image-proxy")]
            Store::Proxy {
                reader,
                repository,
                view: ProxyView::Exact,
            } => reader.get_manifest(repository, reference).await,
            #[cfg(feature = "image-proxy")]
            Store::Proxy {
                reader,
                repository,
                view: ProxyView::AsHostPulls,
            } => {
                reader
                    .get_manifest_as_host_pulls(repository, reference)
                    .await
            }
        }
    }

    /// A blob, checked against its digest, at most `limit` bytes. A proxy
    /// store needs the blob's size: use [`Store::get_blob_sized`].
    pub async fn get_blob(&self, digest: &str, limit: usize) -> Result<Bytes> {
        match self {
            Store::Registry { client, repository } => {
                client.get_blob(repository, digest, limit).await
            }
            Store::Layout(layout) => layout.get_blob(digest, limit),
            #[cfg(feature = "image-proxy")]
            Store::Proxy { repository, .. } => Err(crate::error::OciError::invalid(
                format!("blob {digest} in {repository}"),
                "read through skopeo without its size (a caller bug: use get_blob_sized)",
            )),
        }
    }

    /// A blob of `size` bytes (its descriptor's), checked against its
    /// digest, at most `limit` bytes. skopeo needs the exact size; a
    /// registry or layout reads as [`Store::get_blob`] does.
    pub async fn get_blob_sized(&self, digest: &str, size: u64, limit: usize) -> Result<Bytes> {
        match self {
            #[cfg(feature = "image-proxy")]
            Store::Proxy {
                reader, repository, ..
            } => reader.get_blob(repository, digest, size, limit).await,
            _ => {
                let data = self.get_blob(digest, limit).await?;
                // Every backend holds the descriptor to its size alike.
                if data.len() as u64 != size {
                    return Err(OciError::invalid(
                        format!("blob {digest} in {}", self.describe()),
                        format!("{} bytes, its descriptor says {size}", data.len()),
                    ));
                }
                Ok(data)
            }
        }
    }

    /// Store a blob; returns its digest.
    pub async fn put_blob(&self, data: Bytes) -> Result<String> {
        match self {
            Store::Registry { client, repository } => client.push_blob(repository, data).await,
            Store::Layout(layout) => layout.put_blob(&data),
            #[cfg(feature = "image-proxy")]
            Store::Proxy { repository, .. } => Err(read_only(repository, "blob upload")),
        }
    }

    /// Store a manifest by digest only (`tag: None`) or under a tag.
    pub async fn put_manifest(
        &self,
        bytes: Bytes,
        media_type: &str,
        tag: Option<&str>,
    ) -> Result<String> {
        match self {
            Store::Registry { client, repository } => {
                let digest = crate::digest::sha256_digest(&bytes);
                let reference = tag.unwrap_or(&digest).to_string();
                client
                    .put_manifest(repository, &reference, bytes, media_type)
                    .await
            }
            Store::Layout(layout) => layout.put_manifest(&bytes, media_type, tag),
            #[cfg(feature = "image-proxy")]
            Store::Proxy { repository, .. } => Err(read_only(repository, "manifest upload")),
        }
    }

    /// HTTP requests sent so far (0 for a layout); for a proxy store, the
    /// calls to skopeo, whose own requests are not seen.
    pub fn request_count(&self) -> u64 {
        match self {
            Store::Registry { client, .. } => client.request_count(),
            Store::Layout(_) => 0,
            #[cfg(feature = "image-proxy")]
            Store::Proxy { reader, .. } => reader.call_count(),
        }
    }

    /// Requests sent so far other than GET and HEAD (0 for a layout).
    pub fn write_count(&self) -> u64 {
        match self {
            Store::Registry { client, .. } => client.write_count(),
            Store::Layout(_) => 0,
            #[cfg(feature = "image-proxy")]
            Store::Proxy { .. } => 0,
        }
    }

    /// True when the store holds blob `digest`.
    pub async fn blob_exists(&self, digest: &str) -> Result<bool> {
        match self {
            Store::Registry { client, repository } => client.blob_exists(repository, digest).await,
            Store::Layout(layout) => {
                if !cairn_graph::digest::is_sha256_digest(digest) {
                    return Err(crate::error::OciError::invalid(
                        format!("digest {digest:?}"),
                        "not a sha256 digest",
                    ));
                }
                let hex = &digest["sha256:".len()..];
                Ok(layout.path().join("blobs/sha256").join(hex).is_file())
            }
            // Only copies ask, and a proxy store is never copied into.
            #[cfg(feature = "image-proxy")]
            Store::Proxy { repository, .. } => Err(read_only(repository, "blob check")),
        }
    }

    /// Link blob `digest` of `from` into this store without sending it,
    /// when both are repositories on one registry host; `None` when they
    /// are not (then only an upload copies it).
    pub async fn mount_blob(&self, digest: &str, from: &Store) -> Result<Option<Mount>> {
        match (self, from) {
            (
                Store::Registry { client, repository },
                Store::Registry {
                    repository: source, ..
                },
            ) if repository.api_host() == source.api_host() => client
                .mount_blob(repository, digest, source)
                .await
                .map(Some),
            _ => Ok(None),
        }
    }

    /// Send a whole blob into an upload session a declined mount opened.
    pub async fn finish_upload(&self, upload: &str, data: Bytes) -> Result<String> {
        match self {
            Store::Registry { client, repository } => {
                client.finish_upload(repository, upload, data).await
            }
            Store::Layout(layout) => layout.put_blob(&data),
            #[cfg(feature = "image-proxy")]
            Store::Proxy { repository, .. } => Err(read_only(repository, "blob upload")),
        }
    }
}
