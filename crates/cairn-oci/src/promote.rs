//! The registry side of `cairn promote`: the promoter's state artifact, where
//! wave tags point in the document's terms, the image of a release checked
//! against the signed document, conditional tag moves, and copying an image
//! to another repository with its digests unchanged.
//!
//! The planning itself is pure and lives in `cairn_graph::promote`.

use crate::client::{DOCKER_LIST, OCI_INDEX};
use crate::error::OciError;
use crate::store::Store;
use bytes::Bytes;
use cairn_graph::promote::PromoteError;
use std::time::Duration;

mod copy;
mod image;
mod state;

pub use copy::{COPY_CHUNK_BYTES, CopyStats, MAX_COPY_BLOB_BYTES, copy_image, signature_tag};
pub use image::{ReleaseImage, observe, release_image};
pub use state::{MAX_STATE_BYTES, STATE_MEDIA_TYPE, STATE_TAG, read_state, wave_tags, write_state};

/// How long a tag move waits before checking that its write stuck (as
/// publish does): long enough for a racing writer's PUT to land.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Why a promoter's registry step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteStoreError {
    /// The registry or layout failed.
    #[error(transparent)]
    Store(#[from] OciError),
    /// The state artifact's content is not a promote state.
    #[error("promote state {source_name}: {source}")]
    State {
        /// Where it was read.
        source_name: String,
        /// What is wrong with it.
        #[source]
        source: PromoteError,
    },
    /// Something other than a promote state artifact is under the state tag.
    #[error("{source_name} is not a promote state artifact: {why}")]
    NotAState {
        /// Where it was read.
        source_name: String,
        /// What it is instead.
        why: String,
    },
    /// Someone else moved a tag between this run's read and its write.
    #[error(
        "conflict: {tag} in {store} moved since this run read it (now {found}); nothing was lost, re-run"
    )]
    Conflict {
        /// Store.
        store: String,
        /// Tag.
        tag: String,
        /// What the tag points at now (`nothing` when it is gone).
        found: String,
    },
    /// The image under a release's tag is not the one the signed document
    /// names: the tag was re-pushed, or points at another release.
    #[error(
        "release {version}: {tag} holds {tag_digest} for {arch}, but the signed document says {document_digest}; refusing to point a wave at it"
    )]
    Mismatch {
        /// The release.
        version: String,
        /// The tag or reference that was checked.
        tag: String,
        /// The architecture that differs.
        arch: String,
        /// What the tag's image has for it (`nothing` when it lacks the arch).
        tag_digest: String,
        /// What the document has for it (`nothing` when it does not name the arch).
        document_digest: String,
    },
    /// No image of the release could be found in the repository.
    #[error(
        "release {version}: no image matching the signed document was found (tried {tried}); tag the release's index as {version}",
        tried = tried_list(.tried)
    )]
    NoImage {
        /// The release.
        version: String,
        /// The references looked at.
        tried: Vec<String>,
    },
    /// Copying one blob failed.
    #[error("blob {digest} of {what}")]
    Blob {
        /// The blob.
        digest: String,
        /// The manifest that names it.
        what: String,
        /// What failed.
        #[source]
        source: OciError,
    },
    /// A blob too large to copy in memory, as a copy to or from an OCI
    /// layout does (between registries blobs are streamed).
    #[error(
        "blob {digest} of {what} is {size} bytes, more than the {limit} bytes a copy to or from an OCI layout holds in memory"
    )]
    BlobTooLarge {
        /// The manifest that names it.
        what: String,
        /// The blob.
        digest: String,
        /// Its size as its descriptor says.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

fn tried_list(tried: &[String]) -> String {
    if tried.is_empty() {
        "nothing".to_string()
    } else {
        tried.join(", ")
    }
}

impl PromoteStoreError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PromoteStoreError::Store(e) | PromoteStoreError::Blob { source: e, .. } => e.kind(),
            PromoteStoreError::State { .. } => "invalid_state",
            PromoteStoreError::NotAState { .. } => "not_a_state",
            PromoteStoreError::Conflict { .. } => "conflict",
            PromoteStoreError::Mismatch { .. } => "mismatch",
            PromoteStoreError::NoImage { .. } => "no_image",
            PromoteStoreError::BlobTooLarge { .. } => "too_large",
        }
    }

    /// True for [`PromoteStoreError::Conflict`]: a re-run resolves it.
    pub fn is_conflict(&self) -> bool {
        matches!(self, PromoteStoreError::Conflict { .. })
    }
}

/// Point `tag` at `image` (already in `store`) unless the tag no longer holds
/// `before`; after `settle`, check that the write stuck. One write.
pub async fn move_tag(
    store: &Store,
    tag: &str,
    image: &ReleaseImage,
    before: Option<&str>,
    settle: Duration,
) -> Result<(), PromoteStoreError> {
    put_if_unchanged(
        store,
        tag,
        image.bytes.clone(),
        &image.media_type,
        before,
        settle,
    )
    .await
    .map(|_| ())
}

/// PUT `bytes` under `tag` only if the tag still holds `before`, then check
/// `settle` later that it holds what was put. Returns the manifest digest.
async fn put_if_unchanged(
    store: &Store,
    tag: &str,
    bytes: Bytes,
    media_type: &str,
    before: Option<&str>,
    settle: Duration,
) -> Result<String, PromoteStoreError> {
    let conflict = |found: Option<String>| PromoteStoreError::Conflict {
        store: store.describe(),
        tag: tag.to_string(),
        found: found.unwrap_or_else(|| "nothing".into()),
    };
    let current = store.resolve(tag).await?.map(|head| head.digest);
    if current.as_deref() != before {
        return Err(conflict(current));
    }
    let digest = store.put_manifest(bytes, media_type, Some(tag)).await?;
    tokio::time::sleep(settle).await;
    let after = store.resolve(tag).await?.map(|head| head.digest);
    if after.as_deref() != Some(digest.as_str()) {
        return Err(conflict(after));
    }
    Ok(digest)
}

/// An index or manifest list, by its media type (or, when the registry gave
/// none, by what the bytes declare).
fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    let declared = if media_type.is_empty() {
        crate::manifest::declared_media_type(bytes)
    } else {
        media_type.to_string()
    };
    declared == OCI_INDEX || declared == DOCKER_LIST
}
