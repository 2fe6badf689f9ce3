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
