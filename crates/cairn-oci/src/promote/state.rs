//! The promoter's state, stored as a small unsigned artifact under
//! [`STATE_TAG`] in the repository whose tags it moves.

use super::PromoteStoreError;
use crate::error::OciError;
use crate::store::Store;
use cairn_graph::promote::PromoteState;
use jiff::Timestamp;
use std::time::Duration;

/// The tag the state lives under.
pub const STATE_TAG: &str = "cairn-promote-state";
/// `artifactType` and layer media type of the state artifact.
pub const STATE_MEDIA_TYPE: &str = "application/vnd.cairn.promote-state.v1+json";
/// The largest state read: 1000 audit entries fit many times over.
pub const MAX_STATE_BYTES: usize = 1024 * 1024;

/// The state under [`STATE_TAG`] and the manifest digest it was read at (the
/// `before` of [`write_state`]); the empty state and `None` when the tag is
/// absent. Two requests (manifest and layer), no signature lookup.
pub async fn read_state(
    store: &Store,
) -> Result<(PromoteState, Option<String>), PromoteStoreError> {
    let _ = store;
    unimplemented!("WP1 step 2")
}

/// Store `state` as an artifact (the empty config and one layer) and move
/// [`STATE_TAG`] to it only if the tag still holds `before`;
/// [`PromoteStoreError::Conflict`] otherwise. Returns the manifest digest.
pub async fn write_state(
    store: &Store,
    state: &PromoteState,
    before: Option<&str>,
    now: Timestamp,
    settle: Duration,
) -> Result<String, PromoteStoreError> {
    let _ = (store, state, before, now, settle);
    unimplemented!("WP1 step 2")
}

/// The wave tags the repository's promote state names, when `all_tags`
/// holds [`STATE_TAG`]; nothing otherwise (for the scan to ignore them).
pub async fn wave_tags(store: &Store, all_tags: &[String]) -> Result<Vec<String>, OciError> {
    let _ = (store, all_tags);
    unimplemented!("WP1 step 2")
}
