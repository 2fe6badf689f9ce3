//! Properties that must hold for any document, time and wariness.

use cairn_graph::cincinnati::CincinnatiGraph;
use cairn_graph::fcos::{ReleaseIndex, Updates};
use cairn_graph::{
    ArchEntry, GraphDocument, Node, Query, Reason, Release, Rollout, Scheme, UpdateGraph,
};
use jiff::Timestamp;
use proptest::prelude::*;

const ARCH: &str = "x86_64";
const T0: i64 = 1_700_000_000;

#[derive(Debug, Clone)]
struct Flags {
    barrier: bool,
    deadend: bool,
    rollout: Option<Rollout>,
    payload: bool,
}

fn rollout() -> impl Strategy<Value = Rollout> {
    (
        proptest::option::of(T0..T0 + 1_000_000),
        proptest::option::of(0.0f64..=1.0),
        proptest::option::of(0u64..5_000),
    )
        .prop_map(
            |(start_epoch, start_percentage, duration_minutes)| Rollout {
                start_epoch,
                start_percentage,
                duration_minutes,
            },
        )
}

fn flags() -> impl Strategy<Value = Flags> {
    (
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
        proptest::option::weighted(0.3, rollout()),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(barrier, deadend, rollout, payload)| Flags {
            barrier,
            deadend,
            rollout,
            payload,
        })
}

fn document(releases: &[Flags]) -> GraphDocument {
    GraphDocument {
        stream: "prop".into(),
        repository: "registry.example/os".into(),
        sequence: 1,
        issued: Timestamp::from_second(T0).expect("time"),
        expires: Timestamp::from_second(T0 + 10_000_000).expect("time"),
        releases: releases
            .iter()
            .enumerate()
            .map(|(i, f)| Release {
                version: format!("v{i}"),
                architectures: if f.payload {
                    [(
                        ARCH.to_string(),
                        ArchEntry::image(format!("sha256:{i:064x}")),
                    )]
                    .into()
                } else {
                    Default::default()
                },
                barrier: f.barrier.then(|| Reason::new("b")),
                deadend: f.deadend.then(|| Reason::new("d")),
                rollout: f.rollout,
                ..Release::default()
            })
            .collect(),
        ..GraphDocument::default()
    }
}

fn graph(releases: &[Flags]) -> UpdateGraph {
    let doc = document(releases);
    doc.validate().expect("generated documents are valid");
    UpdateGraph::from_document(&doc, ARCH, Scheme::Oci)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn visibility_is_monotonic_in_wariness(
        releases in prop::collection::vec(flags(), 1..40),
        a in 0.0f64..=1.0,
        b in 0.0f64..=1.0,
        now in T0 - 1000..T0 + 1_500_000,
    ) {
        let g = graph(&releases);
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let seen_low = g.throttled(low, now).edge_list();
        for edge in g.throttled(high, now).edges() {
            prop_assert!(seen_low.contains(&edge), "{edge:?} seen at {high} but not at {low}");
        }
    }

    #[test]
    fn no_edge_leaves_a_deadend(
        releases in prop::collection::vec(flags(), 1..40),
        w in 0.0f64..=1.0,
        now in T0 - 1000..T0 + 1_500_000,
    ) {
        let g = graph(&releases);
        for view in [g.clone(), g.throttled(w, now)] {
            for (from, _) in view.edges() {
                prop_assert!(view.nodes()[from].deadend.is_none());
            }
        }
    }

    #[test]
    fn successors_agree_with_the_edge_list(
        releases in prop::collection::vec(flags(), 1..40),
        w in 0.0f64..=1.0,
        now in T0 - 1000..T0 + 1_500_000,
    ) {
        let g = graph(&releases);
        for view in [g.clone(), g.throttled(w, now)] {
            let edges = view.edge_list();
            // Fedora's builder never emits an edge twice.
            let unique: std::collections::BTreeSet<_> = edges.iter().collect();
            prop_assert_eq!(unique.len(), edges.len());
            for from in 0..view.nodes().len() {
                let mut expected: Vec<usize> = edges.iter().filter(|e| e.0 == from).map(|e| e.1).collect();
                expected.sort_unstable();
                for to in 0..view.nodes().len() {
                    prop_assert_eq!(view.has_edge(from, to), expected.contains(&to));
                }
                prop_assert_eq!(view.successors(from), expected);
            }
        }
    }

    #[test]
    fn no_edge_skips_a_barrier(releases in prop::collection::vec(flags(), 1..40)) {
        let g = graph(&releases);
        for (from, to) in g.edges() {
            prop_assert!(from < to);
            for between in from + 1..to {
                prop_assert!(
                    g.nodes()[between].barrier.is_none(),
                    "edge {from}->{to} skips barrier {between}"
                );
            }
        }
    }

    #[test]
    fn following_updates_visits_every_barrier(
        releases in prop::collection::vec(flags(), 1..40),
        w in 0.0f64..=1.0,
        now in T0 - 1000..T0 + 1_500_000,
    ) {
        let g = graph(&releases);
        prop_assume!(!g.nodes().is_empty());
        let mut at = 0usize;
        let mut steps = 0;
        loop {
            let q = Query { booted: &g.nodes()[at].id, wariness: w, now: Timestamp::from_second(now).expect("time"), deny: &[], halted: &[], allow_downgrade: false };
            let Some(target) = g.decide(&q).target else { break };
            let next = g.find_booted(&target.digest).expect("target is a node");
            prop_assert!(next > at, "updates move forward");
            prop_assert!(g.nodes()[next].deadend.is_none(), "never a dead-end target");
            for between in at + 1..next {
                prop_assert!(g.nodes()[between].barrier.is_none(), "skipped barrier {between}");
            }
            at = next;
            steps += 1;
            prop_assert!(steps <= g.nodes().len());
        }
    }

    #[test]
    fn denied_targets_are_never_chosen(
        releases in prop::collection::vec(flags(), 1..30),
        deny_every in 1usize..4,
    ) {
        let g = graph(&releases);
        let deny: Vec<String> = g.nodes().iter().step_by(deny_every).map(|n| n.id.to_string()).collect();
        for node in g.nodes() {
            let q = Query { booted: &node.id, wariness: 0.0, now: Timestamp::from_second(T0 + 2_000_000).expect("time"), deny: &deny, halted: &[], allow_downgrade: false };
            if let Some(target) = g.decide(&q).target {
                prop_assert!(!deny.iter().any(|d| *d == target.digest));
            }
        }
    }

    #[test]
    fn next_change_is_exact(
        releases in prop::collection::vec(flags(), 1..30),
        w in 0.0f64..=1.0,
        now in T0 - 1000..T0 + 1_500_000,
    ) {
        let doc = document(&releases);
        let g = UpdateGraph::from_document(&doc, ARCH, Scheme::Oci);
        for node in g.nodes() {
            let q = Query { booted: &node.id, wariness: w, now: Timestamp::from_second(now).expect("time"), deny: &[], halted: &[], allow_downgrade: false };
            let Some(change) = g.next_change_after(&q) else { continue };
            prop_assert!(change > q.now);
            let before = Query { now: Timestamp::from_second(change.as_second() - 1).expect("time"), ..q };
            let after = Query { now: change, ..q };
            prop_assert_eq!(g.decide(&q).target, g.decide(&before).target, "nothing changes before");
            prop_assert_ne!(g.decide(&q).target, g.decide(&after).target, "something changes at the time");
        }
    }

    #[test]
    fn decisions_on_server_graphs_are_safe_and_exact(
        releases in prop::collection::vec((flags(), prop::bool::weighted(0.2)), 1..16),
        raw_edges in prop::collection::vec((0usize..16, 0usize..16), 0..60),
        w in 0.0f64..=1.0,
        now in T0 - 1000..T0 + 1_500_000,
    ) {
        // A server may send anything: self loops, duplicates, edges backwards
        // or between two nodes of the same age.
        let mut age = 0u64;
        let nodes: Vec<Node> = releases.iter().enumerate().map(|(i, (f, same_age))| {
            if i > 0 && !same_age { age += 1; }
            let id = cairn_graph::digest::TargetId::checksum(&format!("{i:064x}")).expect("an id");
            Node {
                age_index: age,
                barrier: f.barrier.then(String::new),
                deadend: f.deadend.then(String::new),
                rollout: f.rollout,
                ..Node::new(format!("v{i}"), id, format!("p{i}"))
            }
        }).collect();
        let g = UpdateGraph::with_edges(Scheme::Checksum, nodes, raw_edges);
        for booted in g.nodes() {
            let q = Query { booted: &booted.id, wariness: w, now: Timestamp::from_second(now).expect("time"), deny: &[], halted: &[], allow_downgrade: false };
            let decision = g.decide(&q);
            if let Some(target) = &decision.target {
                prop_assert!(target.age_index > booted.age_index, "only newer releases are updates");
                let node = &g.nodes()[g.find_booted(&target.digest).expect("a node")];
                prop_assert!(node.deadend.is_none());
                prop_assert!(node.rollout.is_none_or(|r| !r.hides(w, now)));
            }
            if let Some(change) = g.next_change_after(&q) {
                let before = Query { now: Timestamp::from_second(change.as_second() - 1).expect("time"), ..q };
                let after = Query { now: change, ..q };
                prop_assert_eq!(&decision.target, &g.decide(&before).target);
                prop_assert_ne!(&decision.target, &g.decide(&after).target);
            }
        }
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = GraphDocument::from_json(&bytes);
        let _ = CincinnatiGraph::from_json(&bytes);
        let _ = ReleaseIndex::from_json(&bytes);
        let _ = Updates::from_json(&bytes);
    }

    #[test]
    fn parsing_mutated_documents_never_panics(
        releases in prop::collection::vec(flags(), 1..10),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = document(&releases).to_json_pretty().into_bytes();
        for (index, byte) in edits {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok(parsed) = GraphDocument::from_json(&bytes) {
            // Whatever parses is valid and usable.
            prop_assert!(parsed.document.validate().is_ok());
            let _ = UpdateGraph::from_document(&parsed.document, ARCH, Scheme::Oci).throttled(0.5, T0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Derived releases on random bases (some unknown), random base barriers:
    /// no edge (and so no decision) crosses a base barrier strictly between
    /// the two releases' bases, or touches a release whose base is unknown.
    #[test]
    fn no_edge_crosses_a_base_barrier(
        releases in prop::collection::vec((flags(), proptest::option::weighted(0.9, 0u64..12)), 1..30),
        barriers in prop::collection::btree_set(0u64..12, 0..4),
        w in 0.0f64..=1.0,
        now in T0 - 1000..T0 + 1_500_000,
    ) {
        let flags: Vec<Flags> = releases.iter().map(|(f, _)| f.clone()).collect();
        let mut doc = document(&flags);
        for (release, (_, base)) in doc.releases.iter_mut().zip(&releases) {
            release.base = Some(cairn_graph::BaseImage {
                age_index: *base,
                ..cairn_graph::BaseImage::new("registry.example/base", format!("sha256:{:064x}", 9))
            });
        }
        let barriers: Vec<cairn_graph::BaseBarrier> = barriers
            .iter()
            .map(|&age| cairn_graph::BaseBarrier { version: format!("b{age}"), age_index: age, reason: String::new() })
            .collect();
        doc.base = Some(cairn_graph::BaseGraphSummary {
            source: "prop".into(),
            repository: "registry.example/base".into(),
            barriers: barriers.clone(),
        });
        let g = UpdateGraph::from_document(&doc, ARCH, Scheme::Oci).throttled(w, now);
        for (from, to) in g.edges() {
            let (a, b) = (g.nodes()[from].base_age, g.nodes()[to].base_age);
            prop_assert!(a.is_some() && b.is_some(), "edge {from}->{to} touches an unknown base");
            let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
            prop_assert!(
                !barriers.iter().any(|x| a < x.age_index && x.age_index < b),
                "edge {from}->{to} crosses a base barrier between {a} and {b}"
            );
        }
        for booted in g.nodes() {
            let query = Query { booted: &booted.id, wariness: w, now: Timestamp::from_second(now).expect("time"), deny: &[], halted: &[], allow_downgrade: false };
            if let Some(target) = g.decide(&query).target {
                prop_assert!(g.successors(g.find_booted(&booted.id).unwrap_or(0)).iter().any(|&t| g.nodes()[t].id == target.digest));
            }
        }
    }
}

/// A base chain of `bases` releases with barriers at `barriers`, and one
/// derived release per entry of `built_on` (its base), published in that order.
fn derived_document(bases: u64, barriers: &[u64], built_on: &[u64]) -> GraphDocument {
    use cairn_graph::derive::{BaseGraph, BaseRelease, inherit};
    let base_digest = |age: u64| format!("sha256:{:064x}", 10_000 + age);
    let base = BaseGraph {
        source: "prop".into(),
        repository: "registry.example/base".into(),
        releases: (0..bases)
            .map(|age| BaseRelease {
                version: format!("b{age}"),
                age_index: age,
                digests: [base_digest(age)].into(),
                barrier: barriers.contains(&age).then(|| "migrate".to_string()),
                deadend: None,
            })
            .collect(),
        uneven: Vec::new(),
    };
    let mut doc = GraphDocument {
        stream: "prop".into(),
        repository: "registry.example/derived".into(),
        sequence: 1,
        issued: Timestamp::from_second(T0).expect("time"),
        expires: Timestamp::from_second(T0 + 10_000_000).expect("time"),
        releases: built_on
            .iter()
            .enumerate()
            .map(|(i, &age)| Release {
                version: format!("d{i}-on-b{age}"),
                architectures: [(
                    ARCH.to_string(),
                    ArchEntry::image(format!("sha256:{i:064x}")),
                )]
                .into(),
                base: Some(cairn_graph::BaseImage::new("", base_digest(age))),
                rollout: Some(Rollout::immediate()),
                ..Release::default()
            })
            .collect(),
        ..GraphDocument::default()
    };
    inherit(&mut doc, &base, &Default::default());
    doc
}

/// Base ages for derived releases, with at least one release on every base
/// barrier below the newest base used (the publisher's advice followed), in
/// a random publication order.
fn derived_fleet() -> impl Strategy<Value = (u64, Vec<u64>, Vec<u64>)> {
    (2u64..10)
        .prop_flat_map(|bases| {
            (
                Just(bases),
                prop::collection::btree_set(0..bases, 0..4),
                prop::collection::vec(0..bases, 1..10),
            )
        })
        .prop_flat_map(|(bases, barriers, mut built_on)| {
            let newest = built_on.iter().copied().max().unwrap_or(0);
            for &barrier in barriers.iter().filter(|&&b| b < newest) {
                if !built_on.contains(&barrier) {
                    built_on.push(barrier);
                }
            }
            let barriers: Vec<u64> = barriers.into_iter().collect();
            (Just(bases), Just(barriers), Just(built_on).prop_shuffle())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Whatever order derived images were published in (barrier images built
    /// late included), a host on any release follows decisions to the newest
    /// release in update order, booting a release on every base barrier
    /// between its base and the newest one on the way.
    #[test]
    fn every_host_reaches_the_newest_derived_release_through_every_base_barrier(
        (bases, barriers, built_on) in derived_fleet(),
    ) {
        let doc = derived_document(bases, &barriers, &built_on);
        doc.validate().map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let g = UpdateGraph::from_document(&doc, ARCH, Scheme::Oci);
        let newest = g.nodes().last().map(|n| n.id.to_string()).unwrap_or_default();
        let newest_base = built_on.iter().copied().max().unwrap_or(0);
        let newest_age = g.nodes().iter().map(|n| n.age_index).max();
        prop_assert_eq!(g.nodes().last().map(|n| n.age_index), newest_age, "nodes are in update order");
        prop_assert_eq!(g.nodes().last().and_then(|n| n.base_age), Some(newest_base));
        let now = Timestamp::from_second(T0 + 100).expect("time");
        for start in g.nodes() {
            let mut booted = start.id.clone();
            let mut visited_bases = vec![start.base_age];
            for _ in 0..=g.nodes().len() {
                let query = Query { booted: &booted, wariness: 1.0, now, deny: &[], halted: &[], allow_downgrade: false };
                let Some(target) = g.decide(&query).target else { break };
                let at = g.find_booted(&target.digest).unwrap_or(0);
                let from = g.find_booted(&booted).unwrap_or(0);
                prop_assert!(g.nodes()[at].age_index > g.nodes()[from].age_index, "never backwards");
                visited_bases.push(g.nodes()[at].base_age);
                booted = target.digest;
            }
            prop_assert_eq!(&booted, &newest, "from {} (published order {:?}, barriers {:?})", start.version, built_on, barriers);
            let start_base = start.base_age.unwrap_or(0);
            for &barrier in barriers.iter().filter(|&&b| start_base < b && b <= newest_base) {
                prop_assert!(visited_bases.contains(&Some(barrier)), "from {} skipped base barrier b{}", start.version, barrier);
            }
        }
    }
}
