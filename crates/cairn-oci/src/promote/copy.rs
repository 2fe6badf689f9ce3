//! Copying a release image to another repository with every digest kept.

use super::{PromoteStoreError, ReleaseImage, is_index};
use crate::client::{Mount, RegistryClient};
use crate::error::OciError;
use crate::reference::Repository;
use crate::store::Store;
use bytes::BytesMut;
use oci_spec::image::{Descriptor, ImageManifest};
use sha2::{Digest, Sha256};

/// The largest blob a copy holds in memory, which it does only when one end
/// is an OCI layout; between registries blobs are streamed.
pub const MAX_COPY_BLOB_BYTES: u64 = 1024 * 1024 * 1024;

/// How much of a streamed blob is held before it is sent on, as one PATCH.
pub const COPY_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyStats {
    /// Blobs linked in by a cross-repository mount.
    pub blobs_mounted: u64,
    /// Blobs sent.
    pub blobs_uploaded: u64,
    /// Blobs the target already had.
    pub blobs_present: u64,
    /// Manifests (children and index) put by digest.
    pub manifests_put: u64,
    /// Manifests the target already had.
    pub manifests_present: u64,
    /// Cosign signatures (`sha256-<hex>.sig` tags) copied.
    pub signatures_copied: u64,
    /// Cosign signatures the target already had under the same digest.
    pub signatures_present: u64,
}

impl std::ops::AddAssign for CopyStats {
    fn add_assign(&mut self, other: CopyStats) {
        self.blobs_mounted += other.blobs_mounted;
        self.blobs_uploaded += other.blobs_uploaded;
        self.blobs_present += other.blobs_present;
        self.manifests_put += other.manifests_put;
        self.manifests_present += other.manifests_present;
        self.signatures_copied += other.signatures_copied;
        self.signatures_present += other.signatures_present;
    }
}

/// The tag cosign stores the signatures of manifest `digest` under, in the
/// manifest's own repository; `None` for a digest that is not sha256.
pub fn signature_tag(digest: &str) -> Option<String> {
    if !cairn_graph::digest::is_sha256_digest(digest) {
        return None;
    }
    digest
        .strip_prefix("sha256:")
        .map(|hex| format!("sha256-{hex}.sig"))
}

/// Copy `image` (an index with every child, their configs and layers, or a
/// single manifest) from `from` to `to`, by digest only, with every digest
/// unchanged. What `to` already has is skipped; on one registry host, blobs
/// are mounted rather than sent. No tag is written.
///
/// The cosign signatures of the index and of each child go with it, when
/// the source has them: a host whose policy requires sigstore signatures
/// for the target verifies the copy as it would the source. They are
/// checked even when the image is already there, since a release may be
/// signed after its first copy; a signature tag the target holds at another
/// digest is replaced by the source's. An image without signatures is fine.
pub async fn copy_image(
    from: &Store,
    to: &Store,
    image: &ReleaseImage,
) -> Result<CopyStats, PromoteStoreError> {
    let mut stats = CopyStats::default();
    if to.resolve(&image.digest).await?.is_some() {
        stats.manifests_present += 1;
    } else {
        if is_index(&image.media_type, &image.bytes) {
            // Every child, attestations too: a registry refuses an index whose
            // children are missing, and dropping one would change its digest.
            for child in &image.children {
                copy_manifest(from, to, child, &mut stats).await?;
            }
        } else {
            copy_blobs(from, to, &image.digest, &image.bytes, &mut stats).await?;
        }
        to.put_manifest(image.bytes.clone(), &image.media_type, None)
            .await?;
        stats.manifests_put += 1;
    }
    for digest in std::iter::once(&image.digest).chain(&image.children) {
        copy_signature(from, to, digest, &mut stats).await?;
    }
    Ok(stats)
}

/// Copy the cosign signature of manifest `digest`, if `from` has one: the
/// signature manifest under its tag, with its config and layers, digest
/// unchanged.
async fn copy_signature(
    from: &Store,
    to: &Store,
    digest: &str,
    stats: &mut CopyStats,
) -> Result<(), PromoteStoreError> {
    let Some(tag) = signature_tag(digest) else {
        return Ok(());
    };
    let Some(source) = from.resolve(&tag).await? else {
        return Ok(());
    };
    let present = to.resolve(&tag).await?;
    if present.is_some_and(|head| head.digest == source.digest) {
        stats.signatures_present += 1;
        return Ok(());
    }
    // By digest: a signature tag moved since the HEAD is not mixed up.
    let fetched = from.get_manifest(&source.digest).await?;
    if is_index(&fetched.media_type, &fetched.bytes) {
        return Err(OciError::invalid(
            format!("signature {}:{tag}", from.describe()),
            "is an image index, not a cosign signature manifest",
        )
        .into());
    }
    copy_blobs(from, to, &source.digest, &fetched.bytes, stats).await?;
    let media_type = if fetched.media_type.is_empty() {
        crate::manifest::declared_media_type(&fetched.bytes)
    } else {
        fetched.media_type
    };
    to.put_manifest(fetched.bytes, &media_type, Some(&tag))
        .await?;
    stats.signatures_copied += 1;
    Ok(())
}

/// Copy one image manifest, by digest, with its config and layers.
async fn copy_manifest(
    from: &Store,
    to: &Store,
    digest: &str,
    stats: &mut CopyStats,
) -> Result<(), PromoteStoreError> {
    if to.resolve(digest).await?.is_some() {
        stats.manifests_present += 1;
        return Ok(());
    }
    let fetched = from.get_manifest(digest).await?;
    if is_index(&fetched.media_type, &fetched.bytes) {
        return Err(OciError::invalid(
            format!("child {digest} of an image index in {}", from.describe()),
            "is an index itself; nested indexes are not copied",
        )
        .into());
    }
    copy_blobs(from, to, digest, &fetched.bytes, stats).await?;
    let media_type = if fetched.media_type.is_empty() {
        crate::manifest::declared_media_type(&fetched.bytes)
    } else {
        fetched.media_type
    };
    to.put_manifest(fetched.bytes, &media_type, None).await?;
    stats.manifests_put += 1;
    Ok(())
}

/// Copy the config and layers of image manifest `digest` (its `bytes`).
async fn copy_blobs(
    from: &Store,
    to: &Store,
    digest: &str,
    bytes: &[u8],
    stats: &mut CopyStats,
) -> Result<(), PromoteStoreError> {
    let what = format!("manifest {}@{digest}", from.describe());
    let manifest: ImageManifest = crate::manifest::parse(bytes, &what)?;
    let blobs = std::iter::once(manifest.config()).chain(manifest.layers());
    for blob in blobs {
        // Non-distributable layers live elsewhere, as containers/image leaves them.
        if blob.urls().as_ref().is_some_and(|urls| !urls.is_empty()) {
            continue;
        }
        copy_blob(from, to, &what, blob, stats).await?;
    }
    Ok(())
}

/// Copy one blob: skipped when present, mounted on one registry host,
/// streamed between registries (one PUT for a blob of one chunk, ordered
/// PATCHes for a larger one), held in memory when one end is a layout (up
/// to [`MAX_COPY_BLOB_BYTES`]).
async fn copy_blob(
    from: &Store,
    to: &Store,
    what: &str,
    blob: &Descriptor,
    stats: &mut CopyStats,
) -> Result<(), PromoteStoreError> {
    let digest = blob.digest().to_string();
    if to.blob_exists(&digest).await? {
        stats.blobs_present += 1;
        return Ok(());
    }
    let size = blob.size();
    if let (
        Store::Registry {
            client: source_client,
            repository: source,
        },
        Store::Registry { client, repository },
    ) = (from, to)
    {
        // A declined mount opens a session; otherwise one is opened only
        // once there is something to send.
        let mut upload = match to.mount_blob(&digest, from).await? {
            Some(Mount::Mounted) => {
                stats.blobs_mounted += 1;
                return Ok(());
            }
            Some(Mount::Upload(session)) => Some(session),
            None => None,
        };
        let reading = Reading {
            client: source_client,
            repository: source,
            digest: &digest,
            size,
        };
        let target = Writing { client, repository };
        if let Err(error) = stream_blob(&reading, &target, &mut upload).await {
            if let Some(upload) = &upload {
                // Best effort: the registry expires a forgotten session anyway.
                if let Err(cancel) = client.cancel_upload(repository, upload).await {
                    tracing::debug!(%cancel, "cancelling the upload of a failed blob copy");
                }
            }
            return Err(PromoteStoreError::Blob {
                digest,
                what: what.to_string(),
                source: error,
            });
        }
        stats.blobs_uploaded += 1;
        return Ok(());
    }
    if size > MAX_COPY_BLOB_BYTES {
        return Err(PromoteStoreError::BlobTooLarge {
            what: what.to_string(),
            digest,
            size,
            limit: MAX_COPY_BLOB_BYTES,
        });
    }
    // The descriptor's size bounds the read; the digest check catches the rest.
    let limit = usize::try_from(size).unwrap_or(usize::MAX);
    let copied = match from.get_blob(&digest, limit).await {
        Ok(data) => to.put_blob(data).await,
        Err(error) => Err(error),
    };
    match copied {
        Ok(_) => {
            stats.blobs_uploaded += 1;
            Ok(())
        }
        Err(source) => Err(PromoteStoreError::Blob {
            digest,
            what: what.to_string(),
            source,
        }),
    }
}

/// The blob a stream reads, as its manifest describes it.
struct Reading<'a> {
    client: &'a RegistryClient,
    repository: &'a Repository,
    digest: &'a str,
    size: u64,
}

/// Where a stream writes.
struct Writing<'a> {
    client: &'a RegistryClient,
    repository: &'a Repository,
}

impl Writing<'_> {
    /// The session `upload` holds, opened now if it holds none.
    async fn session(&self, upload: &mut Option<String>) -> Result<String, OciError> {
        match upload {
            Some(session) => Ok(session.clone()),
            None => {
                let session = self.client.start_upload(self.repository).await?;
                *upload = Some(session.clone());
                Ok(session)
            }
        }
    }
}

/// Stream blob `reading` into `target`, at most [`COPY_CHUNK_BYTES`] held at
/// a time. A blob of one chunk goes in one PUT, which every registry takes;
/// a larger one in ordered PATCHes, then a closing PUT. `upload` holds the
/// session's latest `Location` (opened when first needed), for the caller
/// to cancel on failure. The descriptor's size bounds the read, the digest
/// is checked before the upload is closed, and the registry checks it again
/// when it is. The GET's timeout allows for both legs, since the body is
/// read between the PATCHes.
async fn stream_blob(
    reading: &Reading<'_>,
    target: &Writing<'_>,
    upload: &mut Option<String>,
) -> Result<(), OciError> {
    let source = format!("{}@{}", reading.repository, reading.digest);
    let timeout = reading
        .client
        .transfer_timeout(reading.size.saturating_mul(2));
    let mut body = reading
        .client
        .open_blob(reading.repository, reading.digest, timeout)
        .await?;
    let mut hasher = Sha256::new();
    let mut pending = BytesMut::with_capacity(COPY_CHUNK_BYTES.min(chunk_hint(reading.size)));
    let mut received: u64 = 0;
    let mut sent: u64 = 0;
    while let Some(chunk) = body.chunk().await? {
        received += chunk.len() as u64;
        if received > reading.size {
            return Err(OciError::invalid(
                source,
                format!(
                    "the registry sent more than the {} bytes its descriptor says",
                    reading.size
                ),
            ));
        }
        hasher.update(&chunk);
        pending.extend_from_slice(&chunk);
        // Sent on only while more is due: a blob of one chunk goes whole.
        if pending.len() >= COPY_CHUNK_BYTES && received < reading.size {
            let data = pending.split().freeze();
            pending.reserve(COPY_CHUNK_BYTES);
            let length = data.len() as u64;
            let session = target.session(upload).await?;
            let next = target
                .client
                .append_upload(target.repository, &session, sent, data)
                .await?;
            *upload = Some(next);
            sent += length;
        }
    }
    if received != reading.size {
        return Err(OciError::invalid(
            source,
            format!(
                "the registry sent {received} bytes, but its descriptor says {}",
                reading.size
            ),
        ));
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != reading.digest {
        return Err(OciError::DigestMismatch {
            what: format!("blob {source}"),
            expected: reading.digest.to_string(),
            actual,
        });
    }
    let session = target.session(upload).await?;
    if sent == 0 {
        target
            .client
            .finish_upload(target.repository, &session, pending.freeze())
            .await?;
        return Ok(());
    }
    let mut session = session;
    if !pending.is_empty() {
        session = target
            .client
            .append_upload(target.repository, &session, sent, pending.freeze())
            .await?;
        *upload = Some(session.clone());
    }
    target
        .client
        .commit_upload(target.repository, &session, reading.digest, reading.size)
        .await
}

/// The buffer a blob of `size` bytes starts with.
fn chunk_hint(size: u64) -> usize {
    usize::try_from(size).unwrap_or(usize::MAX)
}
