//! The halt list: a small signed list per stream of releases that must be
//! offered to no host, whatever their rollout says (docs/rollout-guard.md).
//!
//! A halt only withdraws: hosts already on a halted release stay, and may
//! move on to newer ones. Halts are added by the rollout guard, an alert or
//! a person under a halt key; only the release team clears one, under the
//! graph key, by naming its id in the document. So a list signed only by
//! halt keys may add entries but never drop one: every reader refuses such a
//! list when it lacks an entry of the newest list it holds. Pure: the time
//! and the signing roles come in as values.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The format this version reads and writes.
pub const FORMAT: u32 = 1;

/// The most entries a list may hold: a stream halts few releases, and every
/// host reads the list at every check.
pub const MAX_ENTRIES: usize = 1000;

/// The longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// One stream's halt list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltList {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The stream it halts releases of.
    pub stream: String,
    /// Grows with every list published; readers never go back.
    pub sequence: u64,
    /// After this instant the list must not be trusted.
    pub expires: Timestamp,
    /// The trust root version it was signed under (0 before trust roots).
    #[serde(default)]
    pub root_version: u64,
    /// The halts, oldest first.
    #[serde(default)]
    pub entries: Vec<HaltEntry>,
}

/// One halted release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltEntry {
    /// Unique within the stream; what the document names to clear it.
    pub id: String,
    /// The release's version.
    pub version: String,
    /// Its digests (one per architecture) or commit checksums.
    pub digests: Vec<String>,
    /// Why, for people.
    pub reason: String,
    /// When it was halted.
    pub time: Timestamp,
    /// What tripped it.
    pub tripped_by: TrippedBy,
}

/// What tripped a halt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TrippedBy {
    /// The rollout guard, with the counts it saw.
    Guard {
        /// Failure reports of the release.
        failures: u64,
        /// `rebooting` reports of the release.
        rebooting: u64,
    },
    /// An alert (Alertmanager), by name.
    Alert {
        /// The alert's name.
        name: String,
    },
    /// A person, as they named themselves.
    Person {
        /// Who.
        who: String,
    },
}

/// The key role a list was signed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedAs {
    /// The release team's graph key: it may also drop entries.
    Graph,
    /// Only halt keys: the list may only add entries.
    HaltOnly,
}

/// Why a halt list is not accepted; `kind()` is a fixed label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HaltListError {
    /// The text is not a halt list.
    #[error("not a halt list: {0}")]
    Malformed(String),
    /// A field's value is out of bounds.
    #[error("field `{field}`: {message}")]
    Invalid {
        /// The field, as `entries[3].id`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// For another stream.
    #[error("the halt list is for stream {found:?}, not {wanted:?}")]
    WrongStream {
        /// The stream followed.
        wanted: String,
        /// The list's.
        found: String,
    },
    /// Past its expiry.
    #[error("the halt list expired at {expires}")]
    Expired {
        /// When.
        expires: Timestamp,
    },
    /// Older than a list already held, or than the document requires.
    #[error("halt list sequence {found} is below {floor} ({why})")]
    Replayed {
        /// The list's sequence.
        found: u64,
        /// The lowest acceptable.
        floor: u64,
        /// What sets the floor.
        why: &'static str,
    },
    /// Signed only by halt keys, and an entry of the newest list held is gone.
    #[error(
        "the halt list drops halt {id} ({version}), but only the release team's graph key may clear a halt"
    )]
    DroppedEntry {
        /// The dropped entry's id.
        id: String,
        /// Its release.
        version: String,
    },
}

impl HaltListError {
    /// A short fixed label for status and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HaltListError::Malformed(_) => "halts_malformed",
            HaltListError::Invalid { .. } => "halts_invalid",
            HaltListError::WrongStream { .. } => "halts_wrong_stream",
            HaltListError::Expired { .. } => "halts_expired",
            HaltListError::Replayed { .. } => "halts_replayed",
            HaltListError::DroppedEntry { .. } => "halts_dropped_entry",
        }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> HaltListError {
    HaltListError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// An id, version or stream: printable, no spaces, bounded.
fn check_word(field: &str, value: &str) -> Result<(), HaltListError> {
    if value.is_empty() || value.len() > 128 {
        return Err(invalid(field, "must be 1 to 128 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+:~".contains(&b))
    {
        return Err(invalid(
            field,
            format!("{value:?}: only letters, digits and . _ - + : ~"),
        ));
    }
    Ok(())
}

/// `sha256:` and 64 lower-case hex digits, or a 64-digit commit checksum.
fn check_digest(field: &str, value: &str) -> Result<(), HaltListError> {
    let hex = value.strip_prefix("sha256:").unwrap_or(value);
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value:?} is neither sha256:<64 hex> nor a 64-digit checksum"),
        ))
    }
}

impl HaltList {
    /// Parse and validate a list's bytes (its signature is checked by the caller).
    pub fn from_json(bytes: &[u8]) -> Result<HaltList, HaltListError> {
        let list: HaltList =
            serde_json::from_slice(bytes).map_err(|e| HaltListError::Malformed(e.to_string()))?;
        list.validate()?;
        Ok(list)
    }

    /// Every field within bounds, and ids unique.
    pub fn validate(&self) -> Result<(), HaltListError> {
        if self.format != FORMAT {
            return Err(invalid(
                "format",
                format!(
                    "{} is not a format this version reads ({FORMAT})",
                    self.format
                ),
            ));
        }
        check_word("stream", &self.stream)?;
        if self.entries.len() > MAX_ENTRIES {
            return Err(invalid(
                "entries",
                format!("{} entries, more than {MAX_ENTRIES}", self.entries.len()),
            ));
        }
        let mut ids = BTreeSet::new();
        for (n, entry) in self.entries.iter().enumerate() {
            let at = |field: &str| format!("entries[{n}].{field}");
            check_word(&at("id"), &entry.id)?;
            check_word(&at("version"), &entry.version)?;
            if entry.digests.is_empty() {
                return Err(invalid(at("digests"), "names no digest"));
            }
            for (d, digest) in entry.digests.iter().enumerate() {
                check_digest(&format!("entries[{n}].digests[{d}]"), digest)?;
            }
            if entry.reason.chars().count() > MAX_REASON_CHARS {
                return Err(invalid(
                    at("reason"),
                    format!("longer than {MAX_REASON_CHARS} characters"),
                ));
            }
            if !ids.insert(entry.id.as_str()) {
                return Err(invalid(at("id"), format!("{:?} appears twice", entry.id)));
            }
        }
        Ok(())
    }

    /// Whether a reader holding `newest` (the newest list it accepted, if
    /// any) may accept this one for `stream` at `now`. `min_sequence` is the
    /// floor the trusted document names (`halts.min_sequence`), so that a
    /// stale mirror cannot pair a new document with an old list.
    pub fn accept(
        &self,
        stream: &str,
        signed_as: SignedAs,
        newest: Option<&HaltList>,
        min_sequence: u64,
        now: Timestamp,
    ) -> Result<(), HaltListError> {
        if self.stream != stream {
            return Err(HaltListError::WrongStream {
                wanted: stream.to_string(),
                found: self.stream.clone(),
            });
        }
        if now > self.expires {
            return Err(HaltListError::Expired {
                expires: self.expires,
            });
        }
        if self.sequence < min_sequence {
            return Err(HaltListError::Replayed {
                found: self.sequence,
                floor: min_sequence,
                why: "the document's halts.min_sequence",
            });
        }
        let Some(newest) = newest else {
            return Ok(());
        };
        if self.sequence < newest.sequence {
            return Err(HaltListError::Replayed {
                found: self.sequence,
                floor: newest.sequence,
                why: "the newest list this reader holds",
            });
        }
        if signed_as == SignedAs::HaltOnly {
            let kept: BTreeSet<&str> = self.entries.iter().map(|e| e.id.as_str()).collect();
            if let Some(gone) = newest
                .entries
                .iter()
                .find(|e| !kept.contains(e.id.as_str()))
            {
                return Err(HaltListError::DroppedEntry {
                    id: gone.id.clone(),
                    version: gone.version.clone(),
                });
            }
        }
        Ok(())
    }

    /// The list that follows `previous` at `now`: every entry kept, `added`
    /// appended, a higher sequence (`max(previous + 1, now in ms)`) and a
    /// new expiry `lifetime` from now. A first list starts from nothing.
    pub fn successor(
        previous: Option<&HaltList>,
        stream: &str,
        added: Option<HaltEntry>,
        now: Timestamp,
        lifetime: jiff::SignedDuration,
    ) -> Result<HaltList, HaltListError> {
        let now_ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
        let sequence = previous.map_or(now_ms, |p| now_ms.max(p.sequence.saturating_add(1)));
        let expires = now
            .checked_add(lifetime)
            .map_err(|e| invalid("expires", e.to_string()))?;
        let mut entries = previous.map(|p| p.entries.clone()).unwrap_or_default();
        entries.extend(added);
        let list = HaltList {
            format: FORMAT,
            stream: stream.to_string(),
            sequence,
            expires,
            root_version: previous.map_or(0, |p| p.root_version),
            entries,
        };
        list.validate()?;
        Ok(list)
    }

    /// An id for a new halt of `version` at `now`, unique in `list`.
    pub fn new_id(list: Option<&HaltList>, version: &str, now: Timestamp) -> String {
        let base = format!("{version}-{}", now.as_second());
        let mut id = base.clone();
        let mut n = 1;
        let taken = |id: &str| list.is_some_and(|l| l.entries.iter().any(|e| e.id == id));
        while taken(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }

    /// The entry halting `version`, if one is in effect.
    pub fn halting_version<'a>(
        &'a self,
        cleared: &'a [String],
        version: &str,
    ) -> Option<&'a HaltEntry> {
        self.effective(cleared)
            .find(|entry| entry.version == version)
    }

    /// The halts in effect: the entries whose ids the document does not clear.
    pub fn effective<'a>(&'a self, cleared: &'a [String]) -> impl Iterator<Item = &'a HaltEntry> {
        self.entries
            .iter()
            .filter(move |entry| !cleared.contains(&entry.id))
    }

    /// The entry halting the release with `digest`, if one is in effect.
    pub fn halting<'a>(&'a self, cleared: &'a [String], digest: &str) -> Option<&'a HaltEntry> {
        self.effective(cleared)
            .find(|entry| entry.digests.iter().any(|d| d == digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).expect("time")
    }

    fn entry(id: &str, version: &str, hex: char) -> HaltEntry {
        HaltEntry {
            id: id.into(),
            version: version.into(),
            digests: vec![format!("sha256:{}", hex.to_string().repeat(64))],
            reason: "3 of 20 boots failed".into(),
            time: at(0),
            tripped_by: TrippedBy::Guard {
                failures: 3,
                rebooting: 20,
            },
        }
    }

    fn list(sequence: u64, entries: Vec<HaltEntry>) -> HaltList {
        HaltList {
            format: FORMAT,
            stream: "stable".into(),
            sequence,
            expires: at(48 * 3600),
            root_version: 0,
            entries,
        }
    }

    #[test]
    fn a_list_round_trips_and_bad_fields_are_named() {
        let good = list(3, vec![entry("h1", "44.3", 'a')]);
        let text = serde_json::to_vec(&good).expect("JSON");
        assert_eq!(HaltList::from_json(&text).expect("parses"), good);
        let text = String::from_utf8(text).expect("UTF-8");
        assert!(
            text.contains(r#""tripped_by":{"kind":"guard","failures":3,"rebooting":20}"#),
            "{text}"
        );
        let cases = [
            (text.replace("\"h1\"", "\"h 1\""), "entries[0].id"),
            (
                text.replace("sha256:aaaa", "sha256:AAAA"),
                "entries[0].digests[0]",
            ),
            (text.replace("\"format\":1", "\"format\":2"), "format"),
            (
                text.replace("\"stream\":\"stable\"", "\"stream\":\"\""),
                "stream",
            ),
        ];
        for (bad, field) in cases {
            let err = HaltList::from_json(bad.as_bytes()).expect_err(field);
            assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
            assert_eq!(err.kind(), "halts_invalid");
        }
        let unknown = text.replacen('{', "{\"extra\":1,", 1);
        assert_eq!(
            HaltList::from_json(unknown.as_bytes())
                .expect_err("unknown")
                .kind(),
            "halts_malformed"
        );
        let twice = list(3, vec![entry("h1", "44.3", 'a'), entry("h1", "44.4", 'b')]);
        assert!(twice.validate().is_err());
    }

    #[test]
    fn halt_keys_may_only_add_and_the_graph_key_may_clear() {
        let held = list(3, vec![entry("h1", "44.3", 'a')]);
        let added = list(4, vec![entry("h1", "44.3", 'a'), entry("h2", "44.4", 'b')]);
        assert_eq!(
            added.accept("stable", SignedAs::HaltOnly, Some(&held), 0, at(10)),
            Ok(())
        );
        let dropped = list(5, vec![entry("h2", "44.4", 'b')]);
        assert_eq!(
            dropped.accept("stable", SignedAs::HaltOnly, Some(&added), 0, at(10)),
            Err(HaltListError::DroppedEntry {
                id: "h1".into(),
                version: "44.3".into()
            })
        );
        assert_eq!(
            dropped.accept("stable", SignedAs::Graph, Some(&added), 0, at(10)),
            Ok(())
        );
    }

    #[test]
    fn old_expired_and_foreign_lists_are_refused() {
        let held = list(4, vec![entry("h1", "44.3", 'a')]);
        let older = list(3, vec![entry("h1", "44.3", 'a')]);
        let replayed = older
            .accept("stable", SignedAs::Graph, Some(&held), 0, at(10))
            .expect_err("older");
        assert_eq!(replayed.kind(), "halts_replayed");
        // A stale mirror: below the document's floor, though nothing is held.
        let below = older
            .accept("stable", SignedAs::Graph, None, 4, at(10))
            .expect_err("below the floor");
        assert!(below.to_string().contains("halts.min_sequence"), "{below}");
        let expired = held
            .accept("stable", SignedAs::Graph, None, 0, at(48 * 3600 + 1))
            .expect_err("expired");
        assert_eq!(expired.kind(), "halts_expired");
        let foreign = held
            .accept("testing", SignedAs::Graph, None, 0, at(10))
            .expect_err("another stream");
        assert_eq!(foreign.kind(), "halts_wrong_stream");
        // The same list again is fine (a reader refreshes it).
        assert_eq!(
            held.accept("stable", SignedAs::HaltOnly, Some(&held), 4, at(10)),
            Ok(())
        );
    }

    #[test]
    fn a_cleared_halt_is_no_longer_in_effect() {
        let halts = list(4, vec![entry("h1", "44.3", 'a'), entry("h2", "44.4", 'b')]);
        let a = format!("sha256:{}", "a".repeat(64));
        assert_eq!(halts.halting(&[], &a).map(|e| e.id.as_str()), Some("h1"));
        let cleared = vec!["h1".to_string()];
        assert!(halts.halting(&cleared, &a).is_none());
        let ids: Vec<&str> = halts.effective(&cleared).map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["h2"]);
    }
}
