//! Target selection and "when does the decision next change", on the example document.

use cairn_graph::cincinnati::CincinnatiGraph;
use cairn_graph::select::{Hold, NoUpdate};
use cairn_graph::{GraphDocument, Query, UpdateGraph};
use jiff::Timestamp;
use serde_json::json;
use std::path::PathBuf;

/// The example's rollout of 43.20251110.0: from 0.1, over 2880 minutes.
const START: i64 = 1_762_790_400;
const END: i64 = START + 2880 * 60;

fn example() -> GraphDocument {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/stable.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    GraphDocument::from_json(&bytes)
        .expect("example parses")
        .document
}

fn digest(document: &GraphDocument, version: &str, arch: &str) -> String {
    let (_, release) = document.release(version).expect("version exists");
    release.architectures[arch]
        .digest
        .clone()
        .expect("has a digest")
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("valid time")
}

fn query<'a>(booted: &'a str, wariness: f64, now: i64, deny: &'a [String]) -> Query<'a> {
    Query {
        booted,
        wariness,
        now: at(now),
        deny,
        halted: &[],
        allow_downgrade: false,
    }
}

fn target_version(document: &GraphDocument, arch: &str, q: &Query<'_>) -> Option<String> {
    document.decide(arch, q).target.map(|t| t.version)
}

#[test]
fn older_nodes_must_pass_the_barrier() {
    let doc = example();
    let booted = digest(&doc, "42.20250915.0", "x86_64");
    let decision = doc.decide("x86_64", &query(&booted, 0.0, END + 1, &[]));
    let target = decision.target.expect("an update");
    assert_eq!(target.version, "42.20250929.0");
    assert_eq!(target.digest, digest(&doc, "42.20250929.0", "x86_64"));
    assert_eq!(decision.booted_version.as_deref(), Some("42.20250915.0"));
}

#[test]
fn booted_is_found_by_alias() {
    let doc = example();
    let (_, release) = doc.release("42.20250915.0").expect("release");
    let alias = release.architectures["x86_64"].aliases[0].clone();
    assert_eq!(
        target_version(&doc, "x86_64", &query(&alias, 0.5, END + 1, &[])).as_deref(),
        Some("42.20250929.0")
    );
}

#[test]
fn highest_visible_age_wins() {
    let doc = example();
    let booted = digest(&doc, "42.20250929.0", "x86_64");
    let mid = START + 1440 * 60; // progress 0.55
    assert_eq!(
        target_version(&doc, "x86_64", &query(&booted, 0.5, mid, &[])).as_deref(),
        Some("43.20251110.0")
    );
    let decision = doc.decide("x86_64", &query(&booted, 0.6, mid, &[]));
    assert_eq!(
        decision.target.map(|t| t.version).as_deref(),
        Some("43.20251027.0")
    );
    assert_eq!(decision.held[0].version, "43.20251110.0");
    assert!(matches!(decision.held[0].hold, Hold::Rollout { .. }));
}

#[test]
fn a_held_rollout_explains_itself() {
    let doc = example();
    // From 43.20251027.0 the only way on is the rollout.
    let booted = digest(&doc, "43.20251027.0", "x86_64");
    let now = START + (2880 * 60) * 3 / 10; // progress 0.1 + 0.9 * 0.3 = 0.37
    let decision = doc.decide("x86_64", &query(&booted, 0.61, now, &[]));
    assert!(decision.target.is_none());
    assert_eq!(
        decision.reason(),
        "rollout of 43.20251110.0 at 37%, this node's wariness is 0.61"
    );
}

#[test]
fn up_to_date_on_the_newest_release() {
    let doc = example();
    let booted = digest(&doc, "43.20251110.0", "x86_64");
    let decision = doc.decide("x86_64", &query(&booted, 0.0, END + 1, &[]));
    assert_eq!(decision.no_update, Some(NoUpdate::UpToDate));
    assert_eq!(decision.reason(), "up to date");
}

#[test]
fn a_deadend_never_updates_and_says_why() {
    let doc = example();
    let booted = digest(&doc, "42.20251013.0", "x86_64");
    let decision = doc.decide("x86_64", &query(&booted, 0.0, END + 1, &[]));
    assert!(decision.target.is_none());
    assert_eq!(
        decision.reason(),
        "dead-end: 42.20251013.0: https://example.org/issues/17: breaks NFS mounts"
    );
}

#[test]
fn a_deadend_is_never_a_target() {
    let mut doc = example();
    // A dead-end that also has a rollout is an edge target in Fedora's graph.
    doc.releases[5].deadend = Some(cairn_graph::Reason::new("bad"));
    let booted = digest(&doc, "42.20250929.0", "x86_64");
    let decision = doc.decide("x86_64", &query(&booted, 0.0, END + 1, &[]));
    assert_eq!(
        decision.target.map(|t| t.version).as_deref(),
        Some("43.20251027.0")
    );
    assert!(matches!(decision.held[0].hold, Hold::DeadEnd { .. }));
    let graph = doc.graph_for("x86_64", &booted);
    assert!(
        graph
            .edges()
            .any(|(_, to)| graph.nodes()[to].version == "43.20251110.0"),
        "the Fedora-compatible graph keeps the edge"
    );
}

#[test]
fn rolled_back_releases_are_not_offered_again() {
    let doc = example();
    let booted = digest(&doc, "42.20250929.0", "x86_64");
    let deny = vec![digest(&doc, "43.20251110.0", "x86_64")];
    let decision = doc.decide("x86_64", &query(&booted, 0.0, END + 1, &deny));
    assert_eq!(
        decision.target.map(|t| t.version).as_deref(),
        Some("43.20251027.0")
    );
    assert_eq!(decision.held[0].hold, Hold::RolledBack);
    let deny = vec![
        digest(&doc, "43.20251110.0", "x86_64"),
        digest(&doc, "43.20251027.0", "x86_64"),
    ];
    let decision = doc.decide("x86_64", &query(&booted, 0.0, END + 1, &deny));
    assert!(decision.target.is_none());
    assert!(
        decision.reason().contains("rolled back"),
        "{}",
        decision.reason()
    );
}

#[test]
fn images_gone_from_the_registry_are_not_targets() {
    let doc = example();
    let booted = digest(&doc, "42.20250929.0", "aarch64");
    let decision = doc.decide("aarch64", &query(&booted, 1.0, START - 10, &[]));
    assert!(decision.target.is_none(), "{decision:?}");
    assert!(decision.held.iter().any(|h| h.hold == Hold::Unavailable));
    // But hosts booted on it still find themselves.
    let gone = digest(&doc, "43.20251027.0", "aarch64");
    let decision = doc.decide("aarch64", &query(&gone, 0.0, END + 1, &[]));
    assert_eq!(decision.booted_version.as_deref(), Some("43.20251027.0"));
    assert_eq!(
        decision.target.map(|t| t.version).as_deref(),
        Some("43.20251110.0")
    );
}

#[test]
fn same_config_is_not_an_update() {
    let mut doc = example();
    let config = doc.releases[2].architectures["x86_64"].config.clone();
    for release in &mut doc.releases[4..] {
        if let Some(entry) = release.architectures.get_mut("x86_64") {
            entry.config = config.clone();
        }
    }
    let booted = digest(&doc, "42.20250929.0", "x86_64");
    let decision = doc.decide("x86_64", &query(&booted, 0.0, END + 1, &[]));
    assert!(decision.target.is_none());
    assert_eq!(
        decision.reason(),
        "up to date: 43.20251110.0 only changes metadata (same config digest)"
    );
}

#[test]
fn downgrades_only_when_allowed() {
    // A Cincinnati server may serve an edge to an older release.
    let graph: CincinnatiGraph = serde_json::from_value(json!({
        "nodes": [
            {"version": "1", "payload": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "metadata": {
                "org.fedoraproject.coreos.scheme": "checksum",
                "org.fedoraproject.coreos.releases.age_index": "0"}},
            {"version": "2", "payload": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "metadata": {
                "org.fedoraproject.coreos.scheme": "checksum",
                "org.fedoraproject.coreos.releases.age_index": "1"}}
        ],
        "edges": [[1, 0]]
    }))
    .expect("graph");
    let graph = UpdateGraph::from_cincinnati(&graph).expect("valid");
    let booted = "b".repeat(64);
    let mut q = query(&booted, 0.5, 0, &[]);
    let decision = graph.decide(&q);
    assert!(decision.target.is_none());
    assert_eq!(decision.held[0].hold, Hold::Downgrade);
    q.allow_downgrade = true;
    assert_eq!(
        graph.decide(&q).target.map(|t| t.version).as_deref(),
        Some("1")
    );
}

#[test]
fn hosts_booted_from_a_mirror_find_their_release() {
    let doc = example();
    let digest = digest(&doc, "42.20250915.0", "x86_64");
    let mirrored = format!("mirror.internal:5000/acme/os@{digest}");
    let decision = doc.decide("x86_64", &query(&mirrored, 0.0, END + 1, &[]));
    assert_eq!(decision.booted_version.as_deref(), Some("42.20250915.0"));
    assert_eq!(
        decision.target.map(|t| t.version).as_deref(),
        Some("42.20250929.0")
    );
}

#[test]
fn a_server_edge_back_to_the_same_release_is_not_an_update() {
    let graph: CincinnatiGraph = serde_json::from_value(json!({
        "nodes": [
            {"version": "1", "payload": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "metadata": {
                "org.fedoraproject.coreos.scheme": "checksum",
                "org.fedoraproject.coreos.releases.age_index": "0"}},
            {"version": "1-again", "payload": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "metadata": {
                "org.fedoraproject.coreos.scheme": "checksum",
                "org.fedoraproject.coreos.releases.age_index": "0"}}
        ],
        "edges": [[0, 0], [0, 1], [0, 0]]
    }))
    .expect("graph");
    let graph = UpdateGraph::from_cincinnati(&graph).expect("valid");
    let decision = graph.decide(&query(&"a".repeat(64), 0.0, 0, &[]));
    assert_eq!(decision.target, None);
    assert_eq!(decision.no_update, Some(NoUpdate::UpToDate));
    assert_eq!(graph.next_change_after(&query("a", 0.0, 0, &[])), None);
}

#[test]
fn expiry_is_checked_in_whole_seconds() {
    let doc = example();
    let booted = digest(&doc, "42.20250915.0", "x86_64");
    let expires = doc.expires.as_second();
    let at_expiry = doc.decide("x86_64", &query(&booted, 0.0, expires, &[]));
    assert!(
        at_expiry.target.is_some(),
        "still valid during its last second"
    );
    let change = doc.next_change_after("x86_64", &query(&booted, 0.0, expires, &[]));
    assert_eq!(change, Some(at(expires + 1)));
    let after = doc.decide("x86_64", &query(&booted, 0.0, expires + 1, &[]));
    assert!(matches!(
        after.no_update,
        Some(NoUpdate::DocumentExpired { .. })
    ));
}

#[test]
fn an_unknown_booted_digest_is_an_error_state() {
    let doc = example();
    let unknown = format!("sha256:{}", "0".repeat(64));
    let decision = doc.decide("x86_64", &query(&unknown, 0.0, END, &[]));
    assert!(decision.target.is_none());
    assert!(
        decision
            .reason()
            .starts_with("booted digest not in the graph"),
        "{}",
        decision.reason()
    );
    // The right digest on the wrong architecture is not found either.
    let arm = digest(&doc, "42.20250915.0", "aarch64");
    let decision = doc.decide("x86_64", &query(&arm, 0.0, END, &[]));
    assert!(matches!(
        decision.no_update,
        Some(NoUpdate::BootedNotInGraph { .. })
    ));
}

#[test]
fn an_expired_document_offers_nothing() {
    let doc = example();
    let booted = digest(&doc, "42.20250915.0", "x86_64");
    let after = doc.expires.as_second() + 1;
    let decision = doc.decide("x86_64", &query(&booted, 0.0, after, &[]));
    assert!(decision.target.is_none());
    assert!(
        decision.reason().contains("expired"),
        "{}",
        decision.reason()
    );
}

#[test]
fn next_change_is_when_the_rollout_reaches_the_node() {
    let doc = example();
    let booted = digest(&doc, "42.20250929.0", "x86_64");
    let w = 0.6;
    let change = doc
        .next_change_after("x86_64", &query(&booted, w, START, &[]))
        .expect("a change is coming")
        .as_second();
    assert!(change > START && change < END);
    let before = target_version(&doc, "x86_64", &query(&booted, w, change - 1, &[]));
    let after = target_version(&doc, "x86_64", &query(&booted, w, change, &[]));
    assert_eq!(before.as_deref(), Some("43.20251027.0"));
    assert_eq!(after.as_deref(), Some("43.20251110.0"));
}

#[test]
fn next_change_before_a_start_is_the_start() {
    let doc = example();
    let booted = digest(&doc, "43.20251027.0", "x86_64");
    // Wariness within the start value: offered the moment the rollout starts.
    let change = doc.next_change_after("x86_64", &query(&booted, 0.05, START - 3600, &[]));
    assert_eq!(change, Some(at(START)));
}

#[test]
fn with_nothing_pending_the_next_change_is_expiry() {
    let doc = example();
    let booted = digest(&doc, "43.20251110.0", "x86_64");
    let change = doc.next_change_after("x86_64", &query(&booted, 0.5, START, &[]));
    assert_eq!(change, Some(at(doc.expires.as_second() + 1)));
    // Once the rollout has been offered, only expiry is left too.
    let booted = digest(&doc, "42.20250929.0", "x86_64");
    let change = doc.next_change_after("x86_64", &query(&booted, 0.0, START, &[]));
    assert_eq!(change, Some(at(doc.expires.as_second() + 1)));
}

/// What a Cincinnati server that throttles for `wariness` sends, read back.
fn served(doc: &GraphDocument, booted: &str, wariness: f64, now: i64) -> UpdateGraph {
    let throttled = doc.graph_for("x86_64", booted).throttled(wariness, now);
    UpdateGraph::from_cincinnati(&throttled.to_cincinnati()).expect("round trip")
}

#[test]
fn a_server_throttled_graph_still_says_which_rollout_it_waits_for() {
    let doc = example();
    let booted = digest(&doc, "43.20251027.0", "x86_64");
    let now = START + (2880 * 60) * 3 / 10; // progress 0.37
    let q = query(&booted, 0.61, now, &[]);
    let graph = served(&doc, &booted, 0.61, now);
    // Without the rollout metadata the server dropped the edge: "up to date".
    assert_eq!(graph.decide(&q).no_update, Some(NoUpdate::UpToDate));
    let decision = graph.decide_served(&q);
    assert!(decision.target.is_none());
    assert_eq!(decision.reason(), doc.decide("x86_64", &q).reason());
    assert_eq!(
        graph.next_change_after_served(&q),
        doc.graph_for("x86_64", &booted).next_change_after(&q)
    );
    assert!(graph.next_change_after_served(&q).is_some());
    // Once the rollout reaches the node, the server sends the edge and it is taken.
    let later = query(&booted, 0.61, END, &[]);
    let decision = served(&doc, &booted, 0.61, END).decide_served(&later);
    assert_eq!(
        decision.target.map(|t| t.version).as_deref(),
        Some("43.20251110.0")
    );
}

#[test]
fn a_server_throttled_graph_names_a_withheld_rollout_beside_an_older_target() {
    let doc = example();
    // From the barrier, 43.20251027.0 is offered while 43.20251110.0 waits.
    let booted = digest(&doc, "42.20250929.0", "x86_64");
    let now = START + (2880 * 60) * 3 / 10;
    let q = query(&booted, 0.61, now, &[]);
    let decision = served(&doc, &booted, 0.61, now).decide_served(&q);
    let expected = doc.decide("x86_64", &q);
    assert_eq!(decision.target, expected.target);
    assert_eq!(decision.reason(), expected.reason());
    assert!(
        decision.reason().contains("newer 43.20251110.0 held"),
        "{}",
        decision.reason()
    );
}

#[test]
fn a_staged_release_is_offered_only_while_every_rule_still_allows_it() {
    use cairn_graph::NotOffered;
    let doc = example();
    let booted = digest(&doc, "42.20250929.0", "x86_64");
    let older = digest(&doc, "43.20251027.0", "x86_64");
    let newest = digest(&doc, "43.20251110.0", "x86_64");
    let now = START + (2880 * 60) * 3 / 10; // progress 0.37
    // Not the chosen target, still offered: an older release on an edge.
    assert_eq!(
        doc.offers("x86_64", &query(&booted, 0.2, now, &[]), &older),
        Ok(())
    );
    assert_eq!(
        doc.offers("x86_64", &query(&booted, 0.2, now, &[]), &newest),
        Ok(())
    );
    // The rollout no longer reaches this wariness.
    assert!(matches!(
        doc.offers("x86_64", &query(&booted, 0.61, now, &[]), &newest),
        Err(NotOffered::Held(Hold::Rollout { .. }))
    ));
    assert!(
        doc.offers("x86_64", &query(&booted, 0.61, now, &[]), &newest)
            .expect_err("held")
            .waived_for_operator()
    );
    // Deny-listed: never waived.
    let deny = [newest.clone()];
    let denied = doc
        .offers("x86_64", &query(&booted, 0.2, now, &deny), &newest)
        .expect_err("denied");
    assert_eq!(denied, NotOffered::Held(Hold::RolledBack));
    assert!(!denied.waived_for_operator());
    // No edge back, and an unknown release.
    assert_eq!(
        doc.offers("x86_64", &query(&newest, 0.2, END, &[]), &older),
        Err(NotOffered::NotAnEdge)
    );
    assert_eq!(
        doc.offers(
            "x86_64",
            &query(&booted, 0.2, now, &[]),
            &format!("sha256:{}", "0".repeat(64))
        ),
        Err(NotOffered::NotInGraph)
    );
    // Expired.
    assert!(matches!(
        doc.offers(
            "x86_64",
            &query(&booted, 0.2, doc.expires.as_second() + 2, &[]),
            &older
        ),
        Err(NotOffered::DocumentExpired { .. })
    ));
    // A server-throttled graph dropped the edge into the rollout: still
    // named as held by that rollout, so an operator's pick survives it.
    let q = query(&booted, 0.61, now, &[]);
    let graph = served(&doc, &booted, 0.61, now);
    assert_eq!(graph.offers(&q, &newest), Err(NotOffered::NotAnEdge));
    assert!(matches!(
        graph.offers_served(&q, &newest),
        Err(NotOffered::Held(Hold::Rollout { .. }))
    ));
    assert_eq!(graph.offers_served(&q, &older), Ok(()));
}

#[test]
fn a_halted_release_is_offered_to_no_host_and_hosts_on_it_move_on() {
    use cairn_graph::NotOffered;
    let doc = example();
    let booted = digest(&doc, "42.20250929.0", "x86_64");
    let older = digest(&doc, "43.20251027.0", "x86_64");
    let newest = digest(&doc, "43.20251110.0", "x86_64");
    let halted = [newest.clone()];
    let q = Query {
        halted: &halted,
        ..query(&booted, 0.0, END, &[])
    };
    // Fully rolled out, and still not offered: the next one down is taken.
    assert_eq!(
        target_version(&doc, "x86_64", &q).as_deref(),
        Some("43.20251027.0")
    );
    let held = doc.offers("x86_64", &q, &newest).expect_err("halted");
    assert_eq!(held, NotOffered::Held(Hold::Halted));
    assert!(!held.waived_for_operator(), "not even the operator's pick");
    assert_eq!(doc.offers("x86_64", &q, &older), Ok(()));
    // Hosts already on a halted release are not stuck (unlike a dead-end).
    let on_halted = [older.clone()];
    let q = Query {
        halted: &on_halted,
        ..query(&older, 0.0, END, &[])
    };
    assert_eq!(
        target_version(&doc, "x86_64", &q).as_deref(),
        Some("43.20251110.0")
    );
}
