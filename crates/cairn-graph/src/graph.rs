//! The update graph for one stream, architecture and payload scheme.
//!
//! The edge rule is Fedora CoreOS's: only barriers and rollouts are edge
//! targets. Every node may jump to a rollout published after the barrier
//! before it, must pass through each barrier, and a dead-end has no way out.
//! Keeping Fedora's rule exactly lets `/v1/graph` serve Zincati unchanged and
//! lets Cairn's own agents reach the same decisions without a server.

use crate::document::GraphDocument;
use crate::rollout::Rollout;
use std::collections::BTreeSet;

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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    /// The release version.
    pub version: String,
    /// Position in the full release list, before any architecture filtering.
    pub age_index: u64,
    /// The Cincinnati payload: the checksum, or `repository@digest`.
    pub payload: String,
    /// What a host booted on this release reports: manifest digest or checksum.
    pub id: String,
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
}

impl Node {
    /// True when a host reporting `booted` runs this release.
    pub fn matches(&self, booted: &str) -> bool {
        self.id == booted || self.payload == booted
    }

    /// True when `booted` is one of this release's alias digests.
    pub fn matches_alias(&self, booted: &str) -> bool {
        let digest = crate::digest::digest_of_pullspec(booted).unwrap_or(booted);
        self.aliases.iter().any(|alias| alias == digest)
    }
}

/// Nodes in age order plus `(from, to)` edges between node positions.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateGraph {
    /// The payload scheme of every node.
    pub scheme: Scheme,
    /// Nodes, oldest first.
    pub nodes: Vec<Node>,
    /// Edges as positions into `nodes`.
    pub edges: Vec<(usize, usize)>,
}

impl UpdateGraph {
    /// Build the graph from nodes: compute the edges and prune dead-ends.
    pub fn from_nodes(scheme: Scheme, nodes: Vec<Node>) -> Self {
        let edges = compute_edges(&nodes);
        let mut graph = UpdateGraph {
            scheme,
            nodes,
            edges,
        };
        graph.prune_deadends();
        graph
    }

    /// The graph of a document for one architecture. Releases without a
    /// payload of this scheme are left out but keep their age index.
    pub fn from_document(document: &GraphDocument, arch: &str, scheme: Scheme) -> Self {
        let nodes = document
            .releases
            .iter()
            .enumerate()
            .filter_map(|(age, release)| {
                let entry = release.architectures.get(arch)?;
                let (id, payload) = match scheme {
                    Scheme::Oci => {
                        let digest = entry.digest.clone()?;
                        let payload = format!("{}@{digest}", document.repository);
                        (digest, payload)
                    }
                    Scheme::Checksum => {
                        let commit = entry.ostree.clone()?;
                        (commit.clone(), commit)
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
                    barrier: release.barrier.as_ref().map(|b| b.reason.clone()),
                    deadend: release.deadend.as_ref().map(|d| d.reason.clone()),
                    rollout: release.rollout,
                })
            })
            .collect();
        UpdateGraph::from_nodes(scheme, nodes)
    }

    /// Remove every edge leaving a dead-end.
    pub fn prune_deadends(&mut self) {
        let nodes = &self.nodes;
        self.edges
            .retain(|&(from, _)| nodes.get(from).is_some_and(|node| node.deadend.is_none()));
    }

    /// Positions of rollout nodes hidden from this wariness at `now` (Unix seconds).
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
        let hidden = self.hidden(wariness, now);
        let mut graph = self.clone();
        graph
            .edges
            .retain(|&(_, to)| !hidden.get(to).copied().unwrap_or(false));
        graph.prune_deadends();
        graph
    }

    /// Targets reachable in one step from the node at `from`, as positions.
    pub fn successors(&self, from: usize) -> impl Iterator<Item = usize> + '_ {
        self.edges
            .iter()
            .filter(move |&&(source, _)| source == from)
            .map(|&(_, to)| to)
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

/// Fedora's edge rule over node positions.
fn compute_edges(nodes: &[Node]) -> Vec<(usize, usize)> {
    let barriers: BTreeSet<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].barrier.is_some())
        .collect();
    let is_rollout = |i: usize| nodes[i].rollout.is_some();
    let mut edges = Vec::new();
    // Rollouts, newest first: from the previous barrier (inclusive) onwards.
    for target in (0..nodes.len()).rev().filter(|&i| is_rollout(i)) {
        let previous_barrier = barriers.range(..target).next_back().copied().unwrap_or(0);
        edges.extend((previous_barrier..target).map(|source| (source, target)));
    }
    // Barriers that are not rollouts: from the previous barrier onwards.
    let mut start = 0;
    for &target in &barriers {
        if !is_rollout(target) {
            edges.extend((start..target).map(|source| (source, target)));
        }
        start = target;
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(version: &str) -> Node {
        Node {
            version: version.into(),
            id: version.into(),
            payload: version.into(),
            available: true,
            ..Node::default()
        }
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

    fn sorted(mut edges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
        edges.sort();
        edges
    }

    #[test]
    fn plain_releases_are_never_targets() {
        assert!(graph("....").edges.is_empty());
    }

    #[test]
    fn rollout_edges_start_at_the_previous_barrier() {
        let g = graph("..B.R");
        assert_eq!(
            sorted(g.edges),
            vec![(0, 2), (1, 2), (2, 4), (3, 4)],
            "the barrier itself is a source, older nodes must go through it"
        );
    }

    #[test]
    fn barrier_that_is_a_rollout_gets_rollout_edges_only() {
        let g = graph(".X.R");
        assert_eq!(sorted(g.edges), vec![(0, 1), (1, 3), (2, 3)]);
    }

    #[test]
    fn deadends_lose_out_edges_but_keep_in_edges() {
        let g = graph(".D.R");
        assert_eq!(sorted(g.edges), vec![(0, 3), (2, 3)]);
        let g = graph(".R");
        assert_eq!(g.edges, vec![(0, 1)]);
        let g = graph("..D");
        assert!(g.edges.is_empty());
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
        assert!(g.throttled(0.5, 50).edges.is_empty());
        assert_eq!(g.throttled(0.0, 50).edges.len(), 2);
        assert_eq!(g.throttled(0.5, 100 + 300).edges.len(), 2);
        assert!(g.throttled(0.51, 100 + 300).edges.is_empty());
    }

    #[test]
    fn booted_is_found_by_digest_then_alias() {
        let mut g = graph("..");
        g.nodes[0].aliases = vec!["v1".into()];
        assert_eq!(g.find_booted("v1"), Some(1), "a digest beats an alias");
        g.nodes[1].id = "other".into();
        g.nodes[1].payload = "other".into();
        assert_eq!(g.find_booted("v1"), Some(0));
        assert_eq!(g.find_booted("nope"), None);
    }
}
