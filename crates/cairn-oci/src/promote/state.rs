//! The promoter's state, stored as a small unsigned artifact under
//! [`STATE_TAG`] in the repository whose tags it moves.

use super::PromoteStoreError;
use crate::client::OCI_MANIFEST;
use crate::document::{
    ArtifactShape, DocumentStoreError, EMPTY_JSON, artifact_layer_sized, artifact_manifest_json,
};
use crate::error::OciError;
use crate::store::Store;
use bytes::Bytes;
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
    let Some((bytes, digest)) = read_state_bytes(store).await? else {
        return Ok((PromoteState::default(), None));
    };
    let state = PromoteState::from_json(&bytes).map_err(|source| PromoteStoreError::State {
        source_name: format!("{}:{STATE_TAG}", store.describe()),
        source,
    })?;
    Ok((state, Some(digest)))
}

/// The raw state under [`STATE_TAG`] and its manifest digest; `None` when
/// the tag is absent.
async fn read_state_bytes(store: &Store) -> Result<Option<(Bytes, String)>, PromoteStoreError> {
    let source_name = format!("{}:{STATE_TAG}", store.describe());
    let manifest = match store.get_manifest(STATE_TAG).await {
        Ok(manifest) => manifest,
        Err(OciError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (layer, size) =
        artifact_layer_sized(&manifest, &source_name, STATE_MEDIA_TYPE, MAX_STATE_BYTES).map_err(
            |e| match e {
                DocumentStoreError::Store(e) => PromoteStoreError::Store(e),
                other => PromoteStoreError::NotAState {
                    source_name: source_name.clone(),
                    why: other.to_string(),
                },
            },
        )?;
    // Sized: a barrier scan through skopeo reads the state too (`wave_tags`).
    let bytes = store.get_blob_sized(&layer, size, MAX_STATE_BYTES).await?;
    Ok(Some((bytes, manifest.digest)))
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
    let body = Bytes::from(state.to_json_pretty());
    let size = body.len();
    let config_digest = store.put_blob(Bytes::from_static(EMPTY_JSON)).await?;
    let layer_digest = store.put_blob(body).await?;
    let manifest = artifact_manifest_json(
        &ArtifactShape {
            media_type: STATE_MEDIA_TYPE,
            title: format!("{STATE_TAG}.json"),
            created: now,
            annotations: vec![(
                "dev.cairn.promote.sequence",
                state.last_sequence.to_string(),
            )],
        },
        &config_digest,
        &layer_digest,
        size,
    )?;
    // Unsigned, so never stored by digest alone: the tag is its only name.
    super::put_if_unchanged(store, STATE_TAG, manifest, OCI_MANIFEST, before, settle).await
}

/// The wave tags the repository's promote state names, when `all_tags`
/// holds [`STATE_TAG`]; nothing otherwise (for the scan to ignore them).
pub async fn wave_tags(store: &Store, all_tags: &[String]) -> Result<Vec<String>, OciError> {
    if !all_tags.iter().any(|tag| tag == STATE_TAG) {
        return Ok(Vec::new());
    }
    let unreadable = |why: String| {
        OciError::invalid(
            format!("{}:{STATE_TAG}", store.describe()),
            format!(
                "{why}; the scan cannot tell wave tags from release tags (restore the promote state, or delete the tag if promote is no longer used)"
            ),
        )
    };
    let bytes = match read_state_bytes(store).await {
        Ok(Some((bytes, _))) => bytes,
        Ok(None) => return Ok(Vec::new()),
        Err(PromoteStoreError::Store(e)) => return Err(e),
        Err(other) => return Err(unreadable(other.to_string())),
    };
    wave_names(&bytes).map_err(|e| unreadable(format!("not a promote state: {e}")))
}

/// The wave names of a state. Only those: a state written by a newer
/// promoter, with fields or a schema this one does not know, still names
/// its waves.
fn wave_names(bytes: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Waves {
        #[serde(default)]
        waves: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
    }
    let waves: Waves = serde_json::from_slice(bytes)?;
    Ok(waves.waves.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::wave_names;

    #[test]
    fn wave_names_read_a_newer_state_and_refuse_what_is_not_one() {
        let newer = br#"{"schema": 2, "waves": {"stable-early": {"version": "44.1", "later": true}}, "more": 1}"#;
        assert_eq!(
            wave_names(newer).expect("names"),
            vec!["stable-early".to_string()]
        );
        assert!(wave_names(b"not json").is_err());
        assert!(wave_names(br#"{"waves": []}"#).is_err());
    }
}
