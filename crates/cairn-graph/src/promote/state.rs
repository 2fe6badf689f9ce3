//! What `cairn promote` remembers between runs: where each wave is, since
//! when, where it came from, and an audit list of every move.

use super::PromoteError;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most audit entries kept; older ones are dropped first.
pub const MAX_AUDIT: usize = 1000;

/// The state format this version writes. Schema 2 added `stream`,
/// `document_digest`, `halt_sequence` and the audit's `sequence`; a
/// promoter that reads only schema 1 refuses it by its number rather than
/// drop those fields when it writes the state back.
pub const STATE_SCHEMA: u32 = 2;

/// The schemas this version reads: 1 (written by the first promoter) and 2.
const READABLE_SCHEMAS: [u32; 2] = [1, STATE_SCHEMA];

/// What the promoter remembers between runs (stored as a small artifact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteState {
    /// [`STATE_SCHEMA`] once written by this version.
    pub schema: u32,
    /// The document sequence last acted on; older documents are refused.
    #[serde(default)]
    pub last_sequence: u64,
    /// The stream the waves follow; a document of another stream is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The manifest digest of the document last acted on, when it came from
    /// a registry or layout: which signed document the waves stand on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_digest: Option<String>,
    /// The highest halt list sequence acted on; an older list is refused,
    /// so a replayed list cannot lift a halt. Kept here because a cron
    /// runner has no other memory between runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt_sequence: Option<u64>,
    /// Where each wave was put, by tag.
    #[serde(default)]
    pub waves: BTreeMap<String, WaveState>,
    /// Every move, oldest first; at most [`MAX_AUDIT`].
    #[serde(default)]
    pub audit: Vec<AuditEntry>,
}

/// Where one wave is, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveState {
    /// The release version its tag points at.
    pub version: String,
    /// When it arrived there (or was first found there): dwells count from here.
    pub arrived: Timestamp,
    /// The release it moved from, when the promoter moved it forward.
    #[serde(default)]
    pub came_from: Option<String>,
}

/// One recorded change of a wave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// When.
    pub time: Timestamp,
    /// The wave's tag.
    pub tag: String,
    /// Where it was (absent for a new wave).
    pub from: Option<String>,
    /// Where it went.
    pub to: String,
    /// Why, for people.
    pub why: String,
    /// The sequence of the document that decided it (absent in entries
    /// written by schema 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

impl Default for PromoteState {
    fn default() -> Self {
        PromoteState {
            schema: STATE_SCHEMA,
            last_sequence: 0,
            stream: None,
            document_digest: None,
            halt_sequence: None,
            waves: BTreeMap::new(),
            audit: Vec::new(),
        }
    }
}

impl PromoteState {
    /// Parse stored state.
    pub fn from_json(bytes: &[u8]) -> Result<PromoteState, PromoteError> {
        let state: PromoteState = serde_json::from_slice(bytes)
            .map_err(|e| PromoteError::BadState(format!("not valid state JSON: {e}")))?;
        if !READABLE_SCHEMAS.contains(&state.schema) {
            return Err(PromoteError::BadState(format!(
                "field `schema`: {} is not a schema this version reads (1 or {STATE_SCHEMA}); a newer cairn wrote it",
                state.schema
            )));
        }
        Ok(state)
    }

    /// The stored form.
    pub fn to_json_pretty(&self) -> String {
        // Only strings, numbers and timestamps: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub(super) fn record(&mut self, entry: AuditEntry) {
        self.audit.push(entry);
        let excess = self.audit.len().saturating_sub(MAX_AUDIT);
        self.audit.drain(..excess);
    }
}
