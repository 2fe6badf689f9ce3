//! Release images as the signed document names them: finding the image of a
//! release to point a wave at, and reading which release a wave points at.

use super::PromoteStoreError;
use crate::error::OciError;
use crate::store::Store;
use bytes::Bytes;
use cairn_graph::GraphDocument;
use cairn_graph::promote::Observed;
use std::collections::BTreeMap;

/// The image a wave tag is pointed at for one release, checked against the
/// signed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseImage {
    /// The release.
    pub version: String,
    /// The manifest or index digest the tag will hold.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its exact bytes.
    pub bytes: Bytes,
    /// For an index, every child's digest (attestations included); empty
    /// for a single manifest.
    pub children: Vec<String>,
    /// Where it was found: the version tag, a `cairn-keep-` tag, or the
    /// per-architecture digest.
    pub found_at: String,
}

/// Where `tag` points, in the document's terms, and the digest it holds
/// (`None` when absent). `cache` maps digests already read to what they are,
/// so that waves on one release cost one read.
pub async fn observe(
    store: &Store,
    tag: &str,
    document: &GraphDocument,
    cache: &mut BTreeMap<String, Observed>,
) -> Result<(Observed, Option<String>), OciError> {
    let _ = (store, tag, document, cache);
    unimplemented!("WP1 step 2")
}

/// The image to point a wave at for release `version`: the index (or
/// manifest) under the version tag, else under a `cairn-keep-` tag, whose
/// per-architecture digests are exactly the document's; else, for a release
/// of one architecture, that manifest by digest. A version tag holding
/// other digests is refused ([`PromoteStoreError::Mismatch`]) when nothing
/// else matches; nothing at all is [`PromoteStoreError::NoImage`].
pub async fn release_image(
    store: &Store,
    document: &GraphDocument,
    version: &str,
) -> Result<ReleaseImage, PromoteStoreError> {
    let _ = (store, document, version);
    unimplemented!("WP1 step 2")
}
