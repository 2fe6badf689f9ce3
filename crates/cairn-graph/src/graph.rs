//! The update graph for one stream, architecture and payload scheme.
//!
//! The edge rule is Fedora CoreOS's: only barriers and rollouts are edge
//! targets. Every node may jump to a rollout published after the barrier
//! before it, must pass through each barrier, and a dead-end has no way out.
//! Keeping Fedora's rule exactly lets `/v1/graph` serve Zincati unchanged and
//! lets Cairn's own agents reach the same decisions without a server.

use crate::derive::{Blocked, crossed_base_barrier};
use crate::digest::TargetId;
use crate::document::{BaseBarrier, GraphDocument, Reason};
use crate::rollout::Rollout;

/// How hosts identify the release they run, and what a Cincinnati payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// An ostree commit checksum.
    Checksum,
    /// An OCI image, by manifest digest; the payload is `repository@digest`.
    Oci,
}

impl Scheme {
    /// The value of Fedora's `org.fedoraproject.coreos.scheme` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Checksum => "checksum",
            Scheme::Oci => "oci",
        }
    }

    /// The scheme a booted identifier belongs to: digests are OCI, bare checksums ostree.
    pub fn of_booted(booted: &str) -> Scheme {
        if booted.contains("sha256:") {
            Scheme::Oci
        } else {
            Scheme::Checksum
        }
    }
}

/// One release in the graph of one architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The release version.
    pub version: String,
    /// Position in the full release list, before any architecture filtering.
    pub age_index: u64,
    /// The Cincinnati payload: the checksum, or `repository@digest`.
    pub payload: String,
    /// What a host booted on this release reports: manifest digest or
    /// checksum. Validated: this is what host tools are asked to stage.
    pub id: TargetId,
    /// Other digests that hosts of this release may be booted on.
    pub aliases: Vec<String>,
    /// The image config digest, when known.
    pub config: Option<String>,
    /// False when the payload can no longer be pulled.
    pub available: bool,
    /// Barrier reason; `Some` makes the node a barrier.
    pub barrier: Option<String>,
    /// Dead-end reason; `Some` makes the node a dead-end.
    pub deadend: Option<String>,
    /// The rollout of this release, if any.
    pub rollout: Option<Rollout>,
    /// For a derived release: its base release's age index in the base
    /// graph; `None` while unknown.
    pub base_age: Option<u64>,
}

impl Node {
    /// A plain available release: no aliases, config, barrier, dead-end or rollout.
    pub fn new(version: impl Into<String>, id: TargetId, payload: impl Into<String>) -> Node {
        Node {
            version: version.into(),
            age_index: 0,
            payload: payload.into(),
            id,
            aliases: Vec::new(),
            config: None,
            available: true,
            barrier: None,
            deadend: None,
            rollout: None,
            base_age: None,
        }
    }

    /// True when a host reporting `booted` (a digest, a checksum, or a pull
    /// spec from any registry, mirrors included) runs this release.
    pub fn matches(&self, booted: &str) -> bool {
        let digest = crate::digest::digest_of_pullspec(booted).unwrap_or(booted);
        self.id == booted || self.id == digest || self.payload == booted
    }

    /// True when `booted` is one of this release's alias digests.
    pub fn matches_alias(&self, booted: &str) -> bool {
        let digest = crate::digest::digest_of_pullspec(booted).unwrap_or(booted);
        self.aliases.iter().any(|alias| alias == digest)
    }
}

/// Nodes in age order plus the edges between them.
///
/// Graphs built from a document or from Fedora metadata do not store their
/// edges: Fedora's rule is evaluated on demand. A stream where every release
/// is a rollout has edges quadratic in the barrier window (millions for
/// 10,000 releases), while a node only ever needs its own out-edges, which
/// the rule yields in time linear in that window.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateGraph {
    /// The payload scheme of every node.
    pub scheme: Scheme,
    /// Private so the edge rule's precomputed positions always fit the nodes.
    nodes: Vec<Node>,
    edges: Edges,
    /// For a graph of derived releases: no edge crosses a base barrier.
    base_guard: Option<BaseGuard>,
}

/// The base graph's barriers as a derived graph applies them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BaseGuard {
    /// The derived repository, for messages.
    pub repository: String,
    /// The base repository.
    pub base_repository: String,
    /// The base's barriers, oldest first.
    pub barriers: Vec<BaseBarrier>,
}

impl BaseGuard {
    /// Whether a host on `from` may move to `to`.
    pub fn allows(&self, from: &Node, to: &Node) -> Result<(), Blocked<'_>> {
        crossed_base_barrier(from.base_age, to.base_age, &self.barriers)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Edges {
    /// Fedora's rule over `nodes`, minus edges into `hidden` targets.
    Rule {
        /// Positions of barrier nodes, ascending.
        barriers: Vec<usize>,
        /// Targets whose in-edges are hidden; empty when nothing is hidden.
        hidden: Vec<bool>,
    },
    /// Edges as a server sent them.
    Explicit(Vec<(usize, usize)>),
}

impl UpdateGraph {
    /// Build the graph from nodes with Fedora's edge rule (dead-ends pruned).
    pub fn from_nodes(scheme: Scheme, nodes: Vec<Node>) -> Self {
        let barriers = (0..nodes.len())
            .filter(|&i| nodes[i].barrier.is_some())
            .collect();
        UpdateGraph {
            scheme,
            nodes,
            edges: Edges::Rule {
                barriers,
                hidden: Vec::new(),
            },
            base_guard: None,
        }
    }

    /// A graph with edges given explicitly, as in a Cincinnati response.
    /// Edges must name existing nodes; others are dropped.
    pub fn with_edges(scheme: Scheme, nodes: Vec<Node>, mut edges: Vec<(usize, usize)>) -> Self {
        edges.retain(|&(from, to)| from < nodes.len() && to < nodes.len());
        UpdateGraph {
            scheme,
            nodes,
            edges: Edges::Explicit(edges),
            base_guard: None,
        }
    }

    /// The graph of a document for one architecture, in update order
    /// ([`GraphDocument::update_order`]); a node's age index is its rank in
    /// that order. Releases without a payload of this scheme are left out but
    /// keep their age index.
    pub fn from_document(document: &GraphDocument, arch: &str, scheme: Scheme) -> Self {
        let nodes = document
            .update_order()
            .into_iter()
            .enumerate()
            .filter_map(|(age, position)| {
                let release = &document.releases[position];
                let entry = release.architectures.get(arch)?;
                // A validated document holds only valid ids; one that
                // does not is left out, never passed on.
                let (id, payload) = match scheme {
                    Scheme::Oci => {
                        let digest = TargetId::digest(entry.digest.as_deref()?).ok()?;
                        let payload = format!("{}@{digest}", document.repository);
                        (digest, payload)
                    }
                    Scheme::Checksum => {
                        let commit = TargetId::checksum(entry.ostree.as_deref()?).ok()?;
                        let payload = commit.to_string();
                        (commit, payload)
                    }
                };
                Some(Node {
                    version: release.version.clone(),
                    age_index: age as u64,
                    payload,
                    id,
                    aliases: match scheme {
                        Scheme::Oci => entry.aliases.clone(),
                        Scheme::Checksum => Vec::new(),
                    },
                    config: entry.config.clone(),
                    available: entry.available,
                    barrier: release.barrier.as_ref().map(Reason::describe),
                    deadend: release.deadend.as_ref().map(Reason::describe),
                    rollout: release.rollout,
                    base_age: release.base.as_ref().and_then(|b| b.age_index),
                })
            })
            .collect();
        let mut graph = UpdateGraph::from_nodes(scheme, nodes);
        graph.base_guard = document.base.as_ref().map(|base| BaseGuard {
            repository: document.repository.clone(),
            base_repository: base.repository.clone(),
            barriers: base.barriers.clone(),
        });
        graph
    }

    /// The base guard of a derived graph.
    pub fn base_guard(&self) -> Option<&BaseGuard> {
        self.base_guard.as_ref()
    }

    /// This graph with the base guard's barriers lifted (`update-now
    /// --cross-barrier`); releases with an unknown base stay unreachable.
    pub fn crossing_base_barriers(mut self) -> Self {
        if let Some(guard) = &mut self.base_guard {
            guard.barriers.clear();
        }
        self
    }

    /// True when the base guard lets a host on `from` move to `to`.
    fn guard_allows(&self, from: usize, to: usize) -> bool {
        match (&self.base_guard, self.nodes.get(from), self.nodes.get(to)) {
            (None, _, _) => true,
            (Some(guard), Some(from), Some(to)) => guard.allows(from, to).is_ok(),
            _ => false,
        }
    }

    /// Every edge as `(from, to)` positions, in Fedora's order: rollouts newest
    /// first, then barriers oldest first. Edges out of dead-ends are never listed.
    pub fn edges(&self) -> Box<dyn Iterator<Item = (usize, usize)> + '_> {
        match &self.edges {
            Edges::Explicit(edges) => Box::new(edges.iter().copied()),
            Edges::Rule { barriers, hidden } => {
                let nodes = &self.nodes;
                let visible = move |to: usize| !hidden.get(to).copied().unwrap_or(false);
                let previous_barrier = move |t: usize| match barriers.partition_point(|&b| b < t) {
                    0 => 0,
                    k => barriers[k - 1],
                };
                let rollouts = (0..nodes.len())
                    .rev()
                    .filter(move |&t| nodes[t].rollout.is_some() && visible(t))
                    .flat_map(move |t| (previous_barrier(t)..t).map(move |from| (from, t)));
                let barrier_edges = barriers
                    .iter()
                    .enumerate()
                    .filter(move |&(_, &t)| nodes[t].rollout.is_none() && visible(t))
                    .flat_map(move |(n, &t)| {
                        let start = if n == 0 { 0 } else { barriers[n - 1] };
                        (start..t).map(move |from| (from, t))
                    });
                Box::new(
                    rollouts
                        .chain(barrier_edges)
                        .filter(move |&(from, _)| nodes[from].deadend.is_none())
                        .filter(move |&(from, to)| self.guard_allows(from, to)),
                )
            }
        }
    }

    /// Nodes, oldest first; edges refer to positions in this slice.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// All edges, collected.
    pub fn edge_list(&self) -> Vec<(usize, usize)> {
        self.edges().collect()
    }

    /// Targets reachable in one step from the node at `from`, as positions.
    pub fn successors(&self, from: usize) -> Vec<usize> {
        let mut targets = self.rule_successors(from);
        targets.retain(|&to| self.guard_allows(from, to));
        targets
    }

    /// Whether `to` is one of [`UpdateGraph::successors`] of `from`, found
    /// without listing them: under Fedora's rule in time logarithmic in the
    /// barriers, where the list is linear in the barrier window. For checking
    /// many single steps, such as a collector judging hosts' reports.
    pub fn has_edge(&self, from: usize, to: usize) -> bool {
        let (Some(source), Some(target)) = (self.nodes.get(from), self.nodes.get(to)) else {
            return false;
        };
        let by_rule = match &self.edges {
            Edges::Explicit(edges) => edges.contains(&(from, to)),
            Edges::Rule { barriers, hidden } => {
                // A target is a rollout or a barrier after `from`, with no
                // barrier in between (no edge passes one).
                let last_barrier_before = match barriers.partition_point(|&b| b < to) {
                    0 => None,
                    k => Some(barriers[k - 1]),
                };
                from < to
                    && source.deadend.is_none()
                    && (target.rollout.is_some() || target.barrier.is_some())
                    && !hidden.get(to).copied().unwrap_or(false)
                    && last_barrier_before.is_none_or(|barrier| barrier <= from)
            }
        };
        by_rule && self.guard_allows(from, to)
    }

    /// [`UpdateGraph::successors`] before the base guard, so that a node
    /// held by it can say which base barrier holds it.
    pub(crate) fn rule_successors(&self, from: usize) -> Vec<usize> {
        match &self.edges {
            Edges::Explicit(edges) => edges
                .iter()
                .filter(|&&(source, _)| source == from)
                .map(|&(_, to)| to)
                .collect(),
            Edges::Rule { barriers, hidden } => {
                if self
                    .nodes
                    .get(from)
                    .is_none_or(|node| node.deadend.is_some())
                {
                    return Vec::new();
                }
                // Targets lie after `from` up to the next barrier, which no edge passes.
                let next_barrier = barriers
                    .get(barriers.partition_point(|&b| b <= from))
                    .copied();
                let last = next_barrier.unwrap_or(self.nodes.len().saturating_sub(1));
                (from + 1..=last)
                    .filter(|&t| self.nodes[t].rollout.is_some() || Some(t) == next_barrier)
                    .filter(|&t| !hidden.get(t).copied().unwrap_or(false))
                    .collect()
            }
        }
    }

    /// Per node position: true when it is a rollout hidden from this
    /// wariness at `now` (Unix seconds).
    pub fn hidden(&self, wariness: f64, now: i64) -> Vec<bool> {
        self.nodes
            .iter()
            .map(|node| {
                node.rollout
                    .is_some_and(|rollout| rollout.hides(wariness, now))
            })
            .collect()
    }

    /// The graph a node of this wariness sees at `now`: edges into hidden
    /// rollouts removed, dead-ends pruned. This is Fedora's policy engine.
    pub fn throttled(&self, wariness: f64, now: i64) -> UpdateGraph {
        let hidden_now = self.hidden(wariness, now);
        let edges = match &self.edges {
            Edges::Rule { barriers, hidden } => Edges::Rule {
                barriers: barriers.clone(),
                hidden: (0..self.nodes.len())
                    .map(|i| hidden_now[i] || hidden.get(i).copied().unwrap_or(false))
                    .collect(),
            },
            Edges::Explicit(edges) => Edges::Explicit(
                edges
                    .iter()
                    .copied()
                    .filter(|&(from, to)| {
                        !hidden_now.get(to).copied().unwrap_or(true)
                            && self.nodes.get(from).is_some_and(|n| n.deadend.is_none())
                    })
                    .collect(),
            ),
        };
        UpdateGraph {
            scheme: self.scheme,
            nodes: self.nodes.clone(),
            edges,
            base_guard: self.base_guard.clone(),
        }
    }

    /// The position of the node a host booted on `booted` runs: by digest
    /// first, then by alias.
    pub fn find_booted(&self, booted: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.matches(booted))
            .or_else(|| {
                self.nodes
                    .iter()
                    .position(|node| node.matches_alias(booted))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checksum that spells the version in hex, so tests can name it.
    fn id(version: &str) -> TargetId {
        let hex: String = version.bytes().map(|b| format!("{b:02x}")).collect();
        TargetId::checksum(&format!("{hex:0<64}")).expect("a test id")
    }

    fn node(version: &str) -> Node {
        Node::new(version, id(version), id(version).to_string())
    }

    fn graph(spec: &str) -> UpdateGraph {
        // One character a node: '.' plain, 'B' barrier, 'R' rollout, 'D' dead-end, 'X' barrier+rollout.
        let nodes = spec
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let mut n = node(&format!("v{i}"));
                n.age_index = i as u64;
                match c {
                    'B' => n.barrier = Some(String::new()),
                    'R' => n.rollout = Some(Rollout::immediate()),
                    'D' => n.deadend = Some("bad".into()),
                    'X' => {
                        n.barrier = Some(String::new());
                        n.rollout = Some(Rollout::immediate());
                    }
                    _ => {}
                }
                n
            })
            .collect();
        UpdateGraph::from_nodes(Scheme::Checksum, nodes)
    }

    fn sorted(graph: &UpdateGraph) -> Vec<(usize, usize)> {
        let mut edges = graph.edge_list();
        edges.sort();
        // The on-demand successors agree with the full edge list.
        for from in 0..graph.nodes.len() {
            let mut expected: Vec<usize> =
                edges.iter().filter(|e| e.0 == from).map(|e| e.1).collect();
            expected.sort();
            assert_eq!(graph.successors(from), expected, "successors of {from}");
            for to in 0..=graph.nodes.len() {
                assert_eq!(
                    graph.has_edge(from, to),
                    expected.contains(&to),
                    "has_edge({from}, {to})"
                );
            }
        }
        edges
    }

    #[test]
    fn plain_releases_are_never_targets() {
        assert!(sorted(&graph("....")).is_empty());
    }

    #[test]
    fn rollout_edges_start_at_the_previous_barrier() {
        let g = graph("..B.R");
        assert_eq!(
            sorted(&g),
            vec![(0, 2), (1, 2), (2, 4), (3, 4)],
            "the barrier itself is a source, older nodes must go through it"
        );
    }

    #[test]
    fn barrier_that_is_a_rollout_gets_rollout_edges_only() {
        let g = graph(".X.R");
        assert_eq!(sorted(&g), vec![(0, 1), (1, 3), (2, 3)]);
    }

    #[test]
    fn deadends_lose_out_edges_but_keep_in_edges() {
        let g = graph(".D.R");
        assert_eq!(sorted(&g), vec![(0, 3), (2, 3)]);
        let g = graph(".R");
        assert_eq!(sorted(&g), vec![(0, 1)]);
        let g = graph("..D");
        assert!(sorted(&g).is_empty());
        let g = graph("D.BR.B");
        assert_eq!(sorted(&g), vec![(1, 2), (2, 3), (2, 5), (3, 5), (4, 5)]);
    }

    #[test]
    fn throttling_hides_edges_into_unstarted_rollouts() {
        let mut g = graph("..R");
        g.nodes[2].rollout = Some(Rollout {
            start_epoch: Some(100),
            start_percentage: Some(0.0),
            duration_minutes: Some(10),
        });
        g = UpdateGraph::from_nodes(Scheme::Checksum, g.nodes);
        assert!(sorted(&g.throttled(0.5, 50)).is_empty());
        assert_eq!(sorted(&g.throttled(0.0, 50)).len(), 2);
        assert_eq!(sorted(&g.throttled(0.5, 100 + 300)).len(), 2);
        assert!(sorted(&g.throttled(0.51, 100 + 300)).is_empty());
        // Throttling twice keeps what the first throttle hid.
        assert!(sorted(&g.throttled(0.51, 100 + 300).throttled(0.0, 100)).is_empty());
    }

    #[test]
    fn booted_is_found_by_digest_then_alias() {
        let mut g = graph("..");
        let v1 = id("v1").to_string();
        g.nodes[0].aliases = vec![v1.clone()];
        assert_eq!(g.find_booted(&v1), Some(1), "a digest beats an alias");
        g.nodes[1].id = id("other");
        g.nodes[1].payload = "other".into();
        assert_eq!(g.find_booted(&v1), Some(0));
        assert_eq!(g.find_booted("nope"), None);
    }
}
