//! Copying a release image to another repository with every digest kept.

use super::{PromoteStoreError, ReleaseImage, is_index};
use crate::client::Mount;
use crate::error::OciError;
use crate::store::Store;
use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageManifest};

/// The largest blob one copy holds in memory: this version uploads each
/// blob in one request.
pub const MAX_COPY_BLOB_BYTES: u64 = 1024 * 1024 * 1024;

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
}

/// Copy `image` (an index with every child, their configs and layers, or a
/// single manifest) from `from` to `to`, by digest only, with every digest
/// unchanged. What `to` already has is skipped; on one registry host, blobs
/// are mounted rather than sent. No tag is written.
pub async fn copy_image(
    from: &Store,
    to: &Store,
    image: &ReleaseImage,
) -> Result<CopyStats, PromoteStoreError> {
    let mut stats = CopyStats::default();
    if to.resolve(&image.digest).await?.is_some() {
        stats.manifests_present += 1;
        return Ok(stats);
    }
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
    Ok(stats)
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

/// Copy one blob: skipped when present, mounted on one registry host, sent
/// otherwise (or when the mount is declined).
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
    if size > MAX_COPY_BLOB_BYTES {
        return Err(PromoteStoreError::BlobTooLarge {
            what: what.to_string(),
            digest,
            size,
            limit: MAX_COPY_BLOB_BYTES,
        });
    }
    let upload = match to.mount_blob(&digest, from).await? {
        Some(Mount::Mounted) => {
            stats.blobs_mounted += 1;
            return Ok(());
        }
        Some(Mount::Upload(session)) => Some(session),
        None => None,
    };
    // The descriptor's size bounds the read; the digest check catches the rest.
    let limit = usize::try_from(size).unwrap_or(usize::MAX);
    let data: Bytes = from.get_blob(&digest, limit).await?;
    match upload {
        Some(session) => to.finish_upload(&session, data).await?,
        None => to.put_blob(data).await?,
    };
    stats.blobs_uploaded += 1;
    Ok(())
}
