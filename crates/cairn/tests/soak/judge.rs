//! The soak's invariants, as pure functions over what the stand-ins logged
//! and what the agents had verified.

use cairn_graph::halts::HaltList;
use cairn_graph::{GraphDocument, Query, Scheme, UpdateGraph};
use std::collections::BTreeSet;

/// The architecture of `document` whose graph lists `digest`.
fn graph_with(document: &GraphDocument, digest: &str) -> Option<UpdateGraph> {
    document.architectures().iter().find_map(|arch| {
        let graph = UpdateGraph::from_document(document, arch, Scheme::Oci);
        graph.find_booted(digest).map(|_| graph)
    })
}

/// What is wrong with rebooting from `booted` into `target`, judged against
/// the document and halt list the agent had verified when it applied.
pub fn judge_apply(
    document: &GraphDocument,
    halts: Option<&HaltList>,
    booted: &str,
    target: &str,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let Some(graph) = graph_with(document, booted) else {
        return vec![format!(
            "applied {target} from {booted}, which the verified document (sequence {}) does not list",
            document.sequence
        )];
    };
    let nodes = graph.nodes();
    let booted_at = graph.find_booted(booted).unwrap_or_default();
    let Some(target_at) = nodes.iter().position(|n| n.matches(target)) else {
        return vec![format!(
            "applied {target}, which the verified document (sequence {}) does not list",
            document.sequence
        )];
    };
    let (from, to) = (&nodes[booted_at], &nodes[target_at]);
    if to.deadend.is_some() && target_at != booted_at {
        wrong.push(format!(
            "{} -> {}: a dead-end in the verified document (sequence {})",
            from.version, to.version, document.sequence
        ));
    }
    if let Some(halts) = halts
        && let Some(entry) = halts.halting(&document.cleared_halts(), target)
    {
        wrong.push(format!(
            "{} -> {}: halted ({}) in the verified halt list (sequence {})",
            from.version, to.version, entry.id, halts.sequence
        ));
    }
    if target_at > booted_at
        && let Some(barrier) = nodes[booted_at + 1..target_at]
            .iter()
            .find(|n| n.barrier.is_some())
    {
        wrong.push(format!(
            "{} -> {}: skips the barrier {} of the verified document (sequence {})",
            from.version, to.version, barrier.version, document.sequence
        ));
    }
    if target_at < booted_at {
        wrong.push(format!("{} -> {}: a downgrade", from.version, to.version));
    }
    wrong
}

/// Where a host's event log was read up to, and what it has shown so far.
#[derive(Debug, Default)]
pub struct EventCursor {
    seen: usize,
    /// The digest staged since the last reboot, if any.
    staged: Option<String>,
    /// Digests whose boot failed on this host (it rolled back from them).
    failed: BTreeSet<String>,
}

/// Judge the events a host logged since the cursor; returns how many
/// events were judged and what broke a rule.
pub fn judge_events(cursor: &mut EventCursor, events: &[String], host: &str) -> (u64, Vec<String>) {
    let mut wrong = Vec::new();
    let mut judged = 0;
    for event in events.iter().skip(cursor.seen) {
        judged += 1;
        let (word, digest) = event.split_once(' ').unwrap_or((event.as_str(), ""));
        match word {
            "staged" => {
                if cursor.staged.as_deref() == Some(digest) {
                    wrong.push(format!(
                        "{host}: staged {digest} twice with no discard, reboot or veto between"
                    ));
                }
                cursor.staged = Some(digest.to_string());
            }
            "booted" => {
                if cursor.failed.contains(digest) {
                    wrong.push(format!(
                        "{host}: booted {digest}, which it had rolled back from"
                    ));
                }
                cursor.staged = None;
            }
            "boot-failed" => {
                cursor.failed.insert(digest.to_string());
                cursor.staged = None;
            }
            "discarded" => cursor.staged = None,
            other => wrong.push(format!("{host}: unknown event {other:?}")),
        }
    }
    cursor.seen = events.len();
    (judged, wrong)
}

/// The release a host on `booted` is offered now, if any: what it has not
/// converged to.
pub fn offered(
    document: &GraphDocument,
    halts: Option<&HaltList>,
    booted: &str,
    wariness: f64,
    deny: &[String],
) -> Option<String> {
    let halted: Vec<String> = halts
        .map(|list| {
            list.effective(&document.cleared_halts())
                .flat_map(|entry| entry.digests.iter().cloned())
                .collect()
        })
        .unwrap_or_default();
    let arch = document.architectures().into_iter().find(|arch| {
        UpdateGraph::from_document(document, arch, Scheme::Oci)
            .find_booted(booted)
            .is_some()
    })?;
    let query = Query {
        booted,
        wariness,
        now: jiff::Timestamp::now(),
        deny,
        halted: &halted,
        allow_downgrade: false,
    };
    document.decide(&arch, &query).target.map(|t| t.version)
}

// The checks themselves, on documents made to break each rule: these run in
// the normal suite, so a judge that could never find a violation fails here.
#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    /// 1.0 .. 1.4 with `marks` ("barrier"/"deadend" by index) and a halt list halting 1.4.
    fn document(marks: &[(usize, &str)]) -> (GraphDocument, HaltList) {
        let releases: Vec<serde_json::Value> = (0..5u8)
            .map(|i| {
                let mut release = serde_json::json!({
                    "version": format!("1.{i}"),
                    "architectures": {"x86_64": {"digest": digest(i + 1)}},
                });
                for (at, mark) in marks {
                    if *at == usize::from(i) {
                        release[*mark] = serde_json::json!({"reason": "https://example.org/soak"});
                    }
                }
                release
            })
            .collect();
        let now = jiff::Timestamp::now();
        let document = serde_json::json!({
            "schema": 1, "stream": "stable", "repository": "example.org/os", "sequence": 7,
            "issued": (now - jiff::SignedDuration::from_hours(1)).to_string(),
            "expires": (now + jiff::SignedDuration::from_hours(1)).to_string(),
            "releases": releases,
        });
        let document = GraphDocument::from_json(document.to_string().as_bytes())
            .expect("a valid document")
            .document;
        let halts = serde_json::json!({
            "format": 1, "stream": "stable", "sequence": 3,
            "expires": (now + jiff::SignedDuration::from_hours(1)).to_string(),
            "entries": [{"id": "h1", "version": "1.4", "digests": [digest(5)],
                         "reason": "soak", "time": now.to_string(),
                         "tripped_by": {"kind": "person", "who": "soak"}}],
        });
        let halts = HaltList::from_json(halts.to_string().as_bytes()).expect("a valid list");
        (document, halts)
    }

    #[test]
    fn an_apply_within_the_rules_is_judged_right() {
        let (document, halts) = document(&[(2, "barrier")]);
        assert!(judge_apply(&document, Some(&halts), &digest(1), &digest(3)).is_empty());
        assert!(judge_apply(&document, Some(&halts), &digest(3), &digest(4)).is_empty());
    }

    #[test]
    fn a_skipped_barrier_a_dead_end_a_halt_and_a_downgrade_are_each_found() {
        let (document, halts) = document(&[(1, "barrier"), (3, "deadend")]);
        let wrong = judge_apply(&document, Some(&halts), &digest(1), &digest(3));
        assert!(wrong[0].contains("skips the barrier 1.1"), "{wrong:?}");
        let wrong = judge_apply(&document, Some(&halts), &digest(3), &digest(4));
        assert!(wrong[0].contains("a dead-end"), "{wrong:?}");
        let wrong = judge_apply(&document, Some(&halts), &digest(4), &digest(5));
        assert!(wrong[0].contains("halted (h1)"), "{wrong:?}");
        let wrong = judge_apply(&document, Some(&halts), &digest(3), &digest(2));
        assert!(wrong[0].contains("a downgrade"), "{wrong:?}");
        let wrong = judge_apply(&document, Some(&halts), &digest(2), &digest(9));
        assert!(wrong[0].contains("does not list"), "{wrong:?}");
    }

    #[test]
    fn a_second_stage_and_a_boot_into_a_rolled_back_release_are_found() {
        let events =
            |words: &[&str]| -> Vec<String> { words.iter().map(|w| w.to_string()).collect() };
        let mut cursor = EventCursor::default();
        let (judged, wrong) = judge_events(
            &mut cursor,
            &events(&[
                "staged a",
                "booted a",
                "staged b",
                "boot-failed b",
                "staged c",
            ]),
            "h",
        );
        assert_eq!((judged, wrong.len()), (5, 0), "{wrong:?}");
        // Read on from where it stopped: the same digest staged again, and
        // a boot into the release it rolled back from.
        let more = events(&[
            "staged a",
            "booted a",
            "staged b",
            "boot-failed b",
            "staged c",
            "staged c",
            "booted b",
        ]);
        let (judged, wrong) = judge_events(&mut cursor, &more, "h");
        assert_eq!(judged, 2);
        assert!(wrong[0].contains("staged c twice"), "{wrong:?}");
        assert!(
            wrong[1].contains("booted b, which it had rolled back from"),
            "{wrong:?}"
        );
    }

    #[test]
    fn a_host_with_an_update_offered_has_not_converged() {
        let (document, halts) = document(&[(2, "barrier")]);
        // From 1.0 the barrier 1.2 is offered; from 1.3, 1.4 is halted.
        assert_eq!(
            offered(&document, Some(&halts), &digest(1), 0.5, &[]).as_deref(),
            Some("1.2")
        );
        assert_eq!(offered(&document, Some(&halts), &digest(4), 0.5, &[]), None);
        // Rolled back from 1.2: nothing else passes the barrier.
        assert_eq!(
            offered(&document, Some(&halts), &digest(1), 0.5, &[digest(3)]),
            None
        );
    }
}
