//! The stream's halt list on a host (docs/rollout-guard.md): which list is in
//! force after a check, what `cairn status` shows of it, and the rule for a
//! list that could not be read or was refused. Pure: the fetched list (or
//! why there is none), the held one and the time come in as values.

use cairn_graph::halts::{HaltList, SignedAs};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every kind a refused or unreadable list is counted under in the metrics:
/// labels come from this list only, never from a registry's answer.
pub const REFUSAL_KINDS: [&str; 11] = [
    "halts_bad_signature",
    "halts_unsigned",
    "halts_dropped_entry",
    "halts_replayed",
    "halts_expired",
    "halts_wrong_stream",
    "halts_malformed",
    "halts_invalid",
    "halts_not_a_list",
    "halts_unreachable",
    "halts_other",
];

/// The metric label for an error kind: itself when listed, else `halts_other`.
pub fn refusal_label(kind: &str) -> &'static str {
    REFUSAL_KINDS
        .iter()
        .find(|listed| **listed == kind)
        .copied()
        .unwrap_or("halts_other")
}

/// What `cairn status` shows of the halt list, for a stream whose document
/// turns halt lists on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HaltListStatus {
    /// Where it is read from (the document's `halts.location`).
    pub location: String,
    /// The sequence of the list in force; none when no list may be used.
    #[serde(default)]
    pub sequence: Option<u64>,
    /// When the list in force expires.
    #[serde(default)]
    pub expires: Option<Timestamp>,
    /// The versions halted now (entries minus the ids the document clears).
    #[serde(default)]
    pub halted: Vec<String>,
    /// Why the list read at this check was not taken, if it was not: a
    /// refusal, or a registry that could not be reached.
    #[serde(default)]
    pub refused: Option<HaltRefusal>,
    /// What to do about it, when the fix is known (a missing halt key).
    #[serde(default)]
    pub hint: Option<String>,
    /// Lists refused or unreadable since the state began, by kind.
    #[serde(default)]
    pub refusals: BTreeMap<String, u64>,
}

/// Why a halt list was not taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HaltRefusal {
    /// The error's kind (`halts_dropped_entry`, `halts_bad_signature`, …).
    pub kind: String,
    /// The error, naming the list.
    pub message: String,
    /// True when the registry could not be reached (not a refusal of content).
    pub unreachable: bool,
}

/// What reading the list gave: a verified list, or why none was taken.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// Verified against the document's floor and the held list.
    Accepted(HaltList, SignedAs),
    /// Not taken.
    Refused(HaltRefusal),
}

/// The hint for a list refused for its signature on a host with no
/// `updates.halt_keys`: the fleet's halt key is most likely what is missing.
pub const MISSING_HALT_KEY: &str = "configure the fleet's halt key in updates.halt_keys";

/// The outcome of one check: the list in force (if any) and the status.
#[derive(Debug, Clone)]
pub struct InForce {
    /// The list to apply, or `None` when no list may be used.
    pub list: Option<HaltList>,
    /// The list to hold from now on (the accepted one, or the held one).
    pub hold: Option<HaltList>,
    /// What status shows.
    pub status: HaltListStatus,
}

/// What the host should hold and apply after a check. A newly accepted list
/// replaces the held one. Otherwise the held list stays in force while it
/// is still valid for this document (unexpired, at or above
/// `halts.min_sequence`): its halts keep applying, and a list that is
/// refused (say, one that drops an entry) never lifts them. With neither,
/// no list is in force, and the caller neither stages nor finalizes.
#[allow(clippy::too_many_arguments)]
pub fn in_force(
    location: &str,
    fetched: Fetched,
    held: Option<&HaltList>,
    stream: &str,
    min_sequence: u64,
    cleared: &[String],
    have_halt_keys: bool,
    now: Timestamp,
) -> InForce {
    let (list, hold, refused) = match fetched {
        Fetched::Accepted(list, _) => (Some(list.clone()), Some(list), None),
        Fetched::Refused(refusal) => {
            let usable = held
                .filter(|h| {
                    h.accept(stream, SignedAs::Graph, None, min_sequence, now)
                        .is_ok()
                })
                .cloned();
            (usable, held.cloned(), Some(refusal))
        }
    };
    let hint = refused
        .as_ref()
        .filter(|r| {
            !have_halt_keys && matches!(r.kind.as_str(), "halts_bad_signature" | "halts_unsigned")
        })
        .map(|_| MISSING_HALT_KEY.to_string());
    let status = HaltListStatus {
        location: location.to_string(),
        sequence: list.as_ref().map(|l| l.sequence),
        expires: list.as_ref().map(|l| l.expires),
        halted: list
            .as_ref()
            .map(|l| l.effective(cleared).map(|e| e.version.clone()).collect())
            .unwrap_or_default(),
        refused,
        hint,
        refusals: BTreeMap::new(),
    };
    InForce { list, hold, status }
}

/// The status lines for people: the list in force, and a refusal with its fix.
pub fn render(halts: &HaltListStatus) -> String {
    let mut text = match (halts.sequence, halts.expires) {
        (Some(sequence), Some(expires)) => format!(
            "Halts:      list {sequence} from {}, valid until {}; {}\n",
            halts.location,
            expires.strftime("%a %Y-%m-%d %H:%M UTC"),
            if halts.halted.is_empty() {
                "nothing halted".to_string()
            } else {
                format!("halted: {}", halts.halted.join(", "))
            }
        ),
        _ => format!(
            "Halts:      no verified, unexpired list from {}: nothing is staged or finalized\n",
            halts.location
        ),
    };
    if let Some(refused) = &halts.refused {
        let what = if refused.unreachable {
            "unreachable"
        } else {
            "refused"
        };
        text.push_str(&format!(
            "            the list read now was {what} ({}): {}\n",
            refused.kind, refused.message
        ));
    }
    if let Some(hint) = &halts.hint {
        text.push_str(&format!("            {hint}\n"));
    }
    text
}

/// The digests a list halts, minus the ids the document clears.
pub fn halted_digests(list: &HaltList, cleared: &[String]) -> Vec<String> {
    list.effective(cleared)
        .flat_map(|entry| entry.digests.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_graph::halts::{HaltEntry, TrippedBy};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("time")
    }

    fn list(sequence: u64, expires: i64, ids: &[&str]) -> HaltList {
        HaltList {
            format: 1,
            stream: "stable".into(),
            sequence,
            expires: at(expires),
            root_version: 0,
            entries: ids
                .iter()
                .map(|id| HaltEntry {
                    id: (*id).into(),
                    version: format!("v{id}"),
                    digests: vec![format!("sha256:{}", id.repeat(64))],
                    reason: "bad".into(),
                    time: at(1),
                    tripped_by: TrippedBy::Person { who: "ops".into() },
                })
                .collect(),
        }
    }

    fn refusal(kind: &str, unreachable: bool) -> Fetched {
        Fetched::Refused(HaltRefusal {
            kind: kind.into(),
            message: "no".into(),
            unreachable,
        })
    }

    #[test]
    fn an_accepted_list_is_in_force_and_held_minus_what_the_document_clears() {
        let fetched = Fetched::Accepted(list(5, 100, &["a", "b"]), SignedAs::HaltOnly);
        let result = in_force(
            "r/h:t",
            fetched,
            None,
            "stable",
            0,
            &["a".into()],
            false,
            at(50),
        );
        assert_eq!(result.status.sequence, Some(5));
        assert_eq!(result.status.halted, vec!["vb".to_string()]);
        assert_eq!(result.hold.map(|l| l.sequence), Some(5));
        let digests = halted_digests(&result.list.expect("in force"), &["a".into()]);
        assert_eq!(digests, vec![format!("sha256:{}", "b".repeat(64))]);
    }

    #[test]
    fn a_refused_list_leaves_the_held_one_in_force_only_while_it_is_valid() {
        let held = list(5, 100, &["a"]);
        let kept = in_force(
            "r/h:t",
            refusal("halts_dropped_entry", false),
            Some(&held),
            "stable",
            5,
            &[],
            true,
            at(50),
        );
        assert_eq!(kept.list.as_ref().map(|l| l.sequence), Some(5));
        assert_eq!(kept.status.halted, vec!["va".to_string()]);
        assert_eq!(
            kept.status.refused.as_ref().map(|r| r.kind.as_str()),
            Some("halts_dropped_entry")
        );
        assert_eq!(kept.status.hint, None, "halt keys are configured");
        // Expired, or below the document's floor: nothing is in force, but
        // the held list is still remembered for the add-only rule.
        for (min_sequence, now) in [(5, 101), (6, 50)] {
            let gone = in_force(
                "r/h:t",
                refusal("halts_unreachable", true),
                Some(&held),
                "stable",
                min_sequence,
                &[],
                true,
                at(now),
            );
            assert!(gone.list.is_none(), "{min_sequence} {now}");
            assert_eq!(gone.hold.map(|l| l.sequence), Some(5));
        }
    }

    #[test]
    fn a_bad_signature_without_halt_keys_names_the_missing_key() {
        for kind in ["halts_bad_signature", "halts_unsigned"] {
            let result = in_force(
                "r/h:t",
                refusal(kind, false),
                None,
                "stable",
                0,
                &[],
                false,
                at(1),
            );
            assert_eq!(result.status.hint.as_deref(), Some(MISSING_HALT_KEY));
        }
        let replay = in_force(
            "r/h:t",
            refusal("halts_replayed", false),
            None,
            "stable",
            0,
            &[],
            false,
            at(1),
        );
        assert_eq!(replay.status.hint, None);
        assert_eq!(refusal_label("halts_replayed"), "halts_replayed");
        assert_eq!(refusal_label("transport"), "halts_other");
    }
}
