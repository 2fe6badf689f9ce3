//! Helpers shared by the fuzz targets: splitting one input into several
//! files, choices drawn from the input, and the decision invariants every
//! graph must keep whatever document or server it came from.

#![forbid(unsafe_code)]

use cairn_graph::select::Hold;
use cairn_graph::{Decision, GraphDocument, Query, UpdateGraph};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

/// Between the files of one input (seeds join files with it).
pub const SEPARATOR: &[u8] = b"\n--8<--\n";

/// The input cut at each [`SEPARATOR`], at most `max` pieces (the last keeps the rest).
pub fn split(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = data;
    while pieces.len() + 1 < max {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                pieces.push(&rest[..at]);
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    pieces.push(rest);
    pieces
}

/// Choices drawn from a hash of the input: the same input always makes the
/// same choices, and any change of it makes others.
#[derive(Debug)]
pub struct Choices {
    pool: Vec<u8>,
    at: usize,
}

impl Choices {
    /// Choices for `data`.
    pub fn new(data: &[u8]) -> Self {
        Choices {
            pool: Sha256::digest(data).to_vec(),
            at: 0,
        }
    }

    /// The next byte (the pool is rehashed when used up).
    pub fn byte(&mut self) -> u8 {
        if self.at >= self.pool.len() {
            self.pool = Sha256::digest(&self.pool).to_vec();
            self.at = 0;
        }
        self.at += 1;
        self.pool[self.at - 1]
    }

    /// True one time in two.
    pub fn flip(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// An index below `len` (0 when `len` is 0).
    pub fn below(&mut self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let value = u16::from_le_bytes([self.byte(), self.byte()]);
        usize::from(value) % len
    }

    /// A wariness in [0, 1], the ends included often.
    pub fn wariness(&mut self) -> f64 {
        match self.byte() % 8 {
            0 => 0.0,
            1 => 1.0,
            _ => f64::from(self.byte()) / 255.0,
        }
    }
}

/// Times worth deciding at for a graph: around each rollout's start and end,
/// and `extra` (a document's issue and expiry).
pub fn interesting_times(graph: &UpdateGraph, extra: &[Timestamp]) -> Vec<Timestamp> {
    let mut seconds: Vec<i64> = extra.iter().map(|t| t.as_second()).collect();
    for node in graph.nodes() {
        if let Some(rollout) = node.rollout {
            let start = rollout.start();
            seconds.extend([start - 1, start, start + 1]);
            if let Some(end) = rollout.end() {
                seconds.extend([(start / 2).saturating_add(end / 2), end, end + 1]);
            }
        }
    }
    let mut times: Vec<Timestamp> = seconds
        .into_iter()
        .filter_map(|s| Timestamp::from_second(s).ok())
        .collect();
    times.sort();
    times.dedup();
    if times.is_empty() {
        times.push(Timestamp::UNIX_EPOCH);
    }
    times
}

/// What a host may report: each node's id, alias and payload, and a stranger.
pub fn booted_candidates(graph: &UpdateGraph) -> Vec<String> {
    let mut booted = Vec::new();
    for node in graph.nodes().iter().take(24) {
        booted.push(node.id.to_string());
        booted.push(node.payload.clone());
        booted.extend(node.aliases.iter().take(1).cloned());
    }
    booted.push(
        "sha256:0000000000000000000000000000000000000000000000000000000000000000".to_string(),
    );
    booted
}

/// A random query for `graph`: `deny` and `halted` are filled from its nodes.
pub fn random_query<'a>(
    choices: &mut Choices,
    booted: &'a [String],
    times: &[Timestamp],
    deny: &'a mut Vec<String>,
    halted: &'a mut Vec<String>,
    graph: &UpdateGraph,
) -> Query<'a> {
    for node in graph.nodes() {
        match choices.byte() % 8 {
            0 => deny.push(node.id.to_string()),
            1 => halted.push(node.id.to_string()),
            _ => {}
        }
    }
    let now = times[choices.below(times.len())];
    Query {
        booted: &booted[choices.below(booted.len())],
        wariness: choices.wariness(),
        now,
        deny,
        halted,
        allow_downgrade: choices.flip(),
    }
}

/// How the graph's edges came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edges {
    /// Fedora's rule (documents, Fedora metadata): every edge goes forwards
    /// and none passes a barrier.
    Rule,
    /// A server's list (Cincinnati): whatever it sent.
    Explicit,
}

/// Check a decision against the rules selection promises: never a dead-end
/// or halted or rolled-back target, never out of a dead-end, never a
/// downgrade unless allowed, never past a barrier, only along an edge, and
/// the same answer twice.
pub fn check_decision(graph: &UpdateGraph, query: &Query<'_>, decision: &Decision, edges: Edges) {
    assert_eq!(
        &graph.decide(query),
        decision,
        "deciding twice gave two answers"
    );
    let nodes = graph.nodes();
    let Some(booted_at) = graph.find_booted(query.booted) else {
        assert!(decision.target.is_none(), "a target for a stranger");
        return;
    };
    let booted = &nodes[booted_at];
    if let Some(at) = graph.next_change_after(query) {
        assert!(at > query.now, "the next change {at} is not after now");
    }
    let Some(target) = &decision.target else {
        return;
    };
    assert!(
        decision.no_update.is_none(),
        "a target with a reason for none"
    );
    assert!(booted.deadend.is_none(), "a target out of a dead-end");
    let target_at = nodes
        .iter()
        .position(|n| n.id == target.digest && n.version == target.version)
        .unwrap_or_else(|| panic!("target {} is no node", target.version));
    let node = &nodes[target_at];
    assert_eq!(node.payload, target.payload);
    assert_eq!(node.age_index, target.age_index);
    assert!(node.deadend.is_none(), "dead-end target {}", node.version);
    assert!(node.available, "unavailable target {}", node.version);
    let named = |list: &[String]| {
        list.iter()
            .any(|d| node.matches(d) || node.matches_alias(d))
    };
    assert!(!named(query.deny), "rolled-back target {}", node.version);
    assert!(!named(query.halted), "halted target {}", node.version);
    assert_ne!(
        node.age_index, booted.age_index,
        "a target of the booted age"
    );
    assert!(
        !booted.matches(target.digest.as_str()),
        "an update to the booted release {}",
        booted.version
    );
    if !query.allow_downgrade {
        assert!(
            node.age_index > booted.age_index,
            "downgrade from {} to {} not allowed",
            booted.version,
            node.version
        );
    }
    if let Some(rollout) = node.rollout {
        assert!(
            !rollout.hides(query.wariness, query.now.as_second()),
            "target {} is hidden by its rollout",
            node.version
        );
    }
    if node.config.is_some() {
        assert_ne!(node.config, booted.config, "a metadata-only target");
    }
    assert!(
        graph.has_edge(booted_at, target_at) || edges == Edges::Explicit,
        "no edge {booted_at} -> {target_at}"
    );
    if let Some(guard) = graph.base_guard() {
        let allowed = match guard.allows(booted, node) {
            Ok(()) => true,
            Err(cairn_graph::derive::Blocked::OlderBase) => query.allow_downgrade,
            Err(_) => false,
        };
        assert!(allowed, "target {} crosses a base barrier", node.version);
    }
    if edges == Edges::Rule {
        // Positions are age order in a rule graph: no barrier before the target.
        let (low, high) = (booted_at.min(target_at), booted_at.max(target_at));
        if let Some(barrier) = nodes[low + 1..high].iter().find(|n| n.barrier.is_some()) {
            panic!(
                "{} -> {} crosses the barrier {}",
                booted.version, node.version, barrier.version
            );
        }
        assert_eq!(
            graph.offers(query, target.digest.as_str()),
            Ok(()),
            "the target is not offered"
        );
        for held in &decision.held {
            let Some(held_node) = nodes.iter().find(|n| n.version == held.version) else {
                panic!("held {} is no node", held.version);
            };
            if matches!(held.hold, Hold::Rollout { .. } | Hold::SameConfig)
                || held_node.id == node.id
            {
                continue;
            }
            assert!(
                graph.offers(query, held_node.id.as_str()).is_err(),
                "held {} ({:?}) is offered",
                held.version,
                held.hold
            );
        }
    }
}

/// Decide for several queries drawn from the input on every architecture
/// of a document, and check each decision.
pub fn decide_document(document: &GraphDocument, choices: &mut Choices) {
    for arch in document.architectures().iter().take(3) {
        for scheme in [cairn_graph::Scheme::Oci, cairn_graph::Scheme::Checksum] {
            let graph = UpdateGraph::from_document(document, arch, scheme);
            let booted = booted_candidates(&graph);
            let times = interesting_times(&graph, &[document.issued, document.expires]);
            for _ in 0..4 {
                let (mut deny, mut halted) = (Vec::new(), Vec::new());
                let query = random_query(choices, &booted, &times, &mut deny, &mut halted, &graph);
                if cairn_graph::Scheme::of_booted(query.booted) != scheme {
                    continue;
                }
                let decision = document.decide(arch, &query);
                note(format_args!(
                    "{arch} {scheme:?} {}: {}",
                    query.booted,
                    decision.reason()
                ));
                if document.is_expired(query.now) {
                    assert!(
                        decision.target.is_none(),
                        "a target from an expired document"
                    );
                    continue;
                }
                check_decision(&graph, &query, &decision, Edges::Rule);
            }
        }
    }
}

/// Say what an input reached, when `CAIRN_FUZZ_VERBOSE` is set: for
/// checking that seeds get past the parsers (run a target's binary on them).
pub fn note(what: std::fmt::Arguments<'_>) {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *VERBOSE.get_or_init(|| std::env::var_os("CAIRN_FUZZ_VERBOSE").is_some()) {
        eprintln!("{what}");
    }
}

/// A scratch directory for targets that read files (kept for the process).
pub fn scratch() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("cairn-fuzz-")
            .tempdir()
            .unwrap_or_else(|e| panic!("no scratch directory: {e}"))
    })
    .path()
}

/// Write `bytes` to `path`, creating its parents; a failure is the machine's, not the input's.
pub fn write(path: &std::path::Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A current-thread runtime for the async readers.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("no runtime: {e}"))
    })
}

/// `rounds` random queries of `graph` (booted among its releases, times
/// from `times`), each decided and checked against `edges`, then handed to
/// `more` for the target's own checks.
pub fn decide_random_queries(
    choices: &mut Choices,
    graph: &UpdateGraph,
    times: &[Timestamp],
    rounds: usize,
    edges: Edges,
    mut more: impl FnMut(&Query<'_>, &Decision),
) {
    let booted = booted_candidates(graph);
    for _ in 0..rounds {
        let (mut deny, mut halted) = (Vec::new(), Vec::new());
        let query = random_query(choices, &booted, times, &mut deny, &mut halted, graph);
        let decision = graph.decide(&query);
        check_decision(graph, &query, &decision, edges);
        more(&query, &decision);
    }
}

/// One signing key per fuzzing process: nothing in the input is signed by it.
pub fn process_key() -> &'static cairn_oci::signing::SigningKey {
    static KEY: std::sync::OnceLock<cairn_oci::signing::SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(cairn_oci::signing::SigningKey::generate)
}
