//! Which steps between releases a stream offered lately: a report is
//! plausible only when its from→to is one of them.
//!
//! Each distinct graph set a stream served (every architecture and scheme,
//! unfiltered by wariness) is kept until 72 hours after it stopped being
//! served, so a host that took a step a day ago, and reports it late, is
//! still believed, also when the release has since been dead-ended or its
//! rollout stopped. Graph sets are kept in a compact form that the reports
//! store also keeps ([`Served`]), so a restart forgets none of them.
//!
//! The compact form keeps, per graph, each node in update order as a
//! 64-bit key of its version and release id and three flags (rollout,
//! barrier, dead-end): 9 bytes a node on disk, 13 in memory. Steps are
//! checked on it by Fedora's rule rather than kept as a set of edges: a
//! stream whose releases are all rollouts has edges quadratic in its length
//! (millions for 10,000 releases), while its graphs are linear. The base
//! guard of derived graphs is left out on purpose: `update-now
//! --cross-barrier` takes steps across a base barrier (or to a release of
//! unknown base), and a host that did must still be believed.

use crate::reports::model::Release;
use cairn_graph::UpdateGraph;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// How long a graph set is believed after it stopped being served.
pub const RECENT: SignedDuration = SignedDuration::from_hours(72);

/// The most graph sets kept per stream; past it the oldest goes first.
pub const MAX_GENERATIONS: usize = 1024;

/// The most nodes (summed over every graph of every graph set) kept per
/// stream: 52 MB of memory and 36 MB in the store at most. Past it the
/// oldest graph sets go first; the one served now is always kept.
pub const MAX_NODES: usize = 4_000_000;

const ROLLOUT: u8 = 1;
const BARRIER: u8 = 2;
const DEADEND: u8 = 4;

/// The first byte of the compact form, so a later one can be told apart.
const FORMAT: u8 = 1;

/// The key a node and a report's release are matched by: a node matches
/// when both its version and its release id are the report's.
fn release_key(version: &str, id: &str) -> u64 {
    let mut hash = Sha256::new();
    for part in [version, id] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(key)
}

/// One graph, compact.
#[derive(Debug, PartialEq)]
struct CompactGraph {
    /// Per node, in update order.
    keys: Vec<u64>,
    flags: Vec<u8>,
    /// Node positions, sorted by key.
    by_key: Vec<u32>,
    /// Positions of barrier nodes, ascending.
    barriers: Vec<u32>,
}

impl CompactGraph {
    fn new(keys: Vec<u64>, flags: Vec<u8>) -> CompactGraph {
        let mut by_key: Vec<u32> = (0..keys.len() as u32).collect();
        by_key.sort_by_key(|&position| keys[position as usize]);
        let barriers = (0..flags.len() as u32)
            .filter(|&position| flags[position as usize] & BARRIER != 0)
            .collect();
        CompactGraph {
            keys,
            flags,
            by_key,
            barriers,
        }
    }

    fn of(graph: &UpdateGraph) -> CompactGraph {
        let nodes = graph.nodes();
        let keys = nodes
            .iter()
            .map(|node| release_key(&node.version, node.id.as_ref()))
            .collect();
        let flags = nodes
            .iter()
            .map(|node| {
                let flag = |set: bool, flag: u8| if set { flag } else { 0 };
                flag(node.rollout.is_some(), ROLLOUT)
                    | flag(node.barrier.is_some(), BARRIER)
                    | flag(node.deadend.is_some(), DEADEND)
            })
            .collect();
        CompactGraph::new(keys, flags)
    }

    /// Positions of the nodes with this key.
    fn positions(&self, key: u64) -> &[u32] {
        let start = self
            .by_key
            .partition_point(|&p| self.keys[p as usize] < key);
        let end = self
            .by_key
            .partition_point(|&p| self.keys[p as usize] <= key);
        &self.by_key[start..end]
    }

    /// Fedora's rule, as [`UpdateGraph::has_edge`] applies it to an
    /// unthrottled graph, without the base guard: the target is a rollout
    /// or a barrier after the source, the source no dead-end, and no
    /// barrier lies strictly between them.
    fn has_step(&self, from: u32, to: u32) -> bool {
        let (Some(&source), Some(&target)) =
            (self.flags.get(from as usize), self.flags.get(to as usize))
        else {
            return false;
        };
        let last_barrier_before = match self.barriers.partition_point(|&b| b < to) {
            0 => None,
            k => Some(self.barriers[k - 1]),
        };
        from < to
            && source & DEADEND == 0
            && target & (ROLLOUT | BARRIER) != 0
            && last_barrier_before.is_none_or(|barrier| barrier <= from)
    }

    fn offers(&self, from: u64, to: u64) -> bool {
        let sources = self.positions(from);
        !sources.is_empty()
            && self
                .positions(to)
                .iter()
                .any(|&target| sources.iter().any(|&source| self.has_step(source, target)))
    }
}

/// One graph set a stream served.
#[derive(Debug)]
struct Generation {
    hash: [u8; 32],
    graphs: Vec<CompactGraph>,
    nodes: usize,
    /// When it stopped being served; `None` while it is.
    replaced: Option<Timestamp>,
}

impl Generation {
    fn offers(&self, from: u64, to: u64) -> bool {
        self.graphs.iter().any(|graph| graph.offers(from, to))
    }
}

/// A graph set in its stored form: format byte, then per graph its node
/// count (u32, little-endian) and per node its key (u64) and flags (u8).
fn encode(graphs: &[CompactGraph]) -> Vec<u8> {
    let nodes: usize = graphs.iter().map(|graph| graph.keys.len()).sum();
    let mut bytes = Vec::with_capacity(1 + 4 * graphs.len() + 9 * nodes);
    bytes.push(FORMAT);
    for graph in graphs {
        bytes.extend_from_slice(&(graph.keys.len() as u32).to_le_bytes());
        for (key, flags) in graph.keys.iter().zip(&graph.flags) {
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.push(*flags);
        }
    }
    bytes
}

/// Why a stored graph set could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored steps: {0}")]
pub struct DecodeError(&'static str);

fn decode(bytes: &[u8]) -> Result<Vec<CompactGraph>, DecodeError> {
    let Some((&FORMAT, mut rest)) = bytes.split_first() else {
        return Err(DecodeError("unknown format"));
    };
    let mut graphs = Vec::new();
    while !rest.is_empty() {
        let (count, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(DecodeError("truncated node count"))?;
        let count = u32::from_le_bytes(*count) as usize;
        let size = count.checked_mul(9).ok_or(DecodeError("too many nodes"))?;
        if tail.len() < size {
            return Err(DecodeError("truncated nodes"));
        }
        let (nodes, tail) = tail.split_at(size);
        let mut keys = Vec::with_capacity(count);
        let mut flags = Vec::with_capacity(count);
        for node in nodes.chunks_exact(9) {
            let mut key = [0u8; 8];
            key.copy_from_slice(&node[..8]);
            keys.push(u64::from_le_bytes(key));
            flags.push(node[8]);
        }
        graphs.push(CompactGraph::new(keys, flags));
        rest = tail;
    }
    Ok(graphs)
}

/// A graph set a stream serves from now on, for the store to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// SHA-256 of `steps`: the graph set's identity.
    pub hash: [u8; 32],
    /// Its compact form.
    pub steps: Vec<u8>,
    /// Graph sets dropped for the bounds, to drop from the store too.
    pub evicted: Vec<[u8; 32]>,
}

/// A graph set as the store gives it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptSteps {
    /// The stream.
    pub stream: String,
    /// Its compact form.
    pub steps: Vec<u8>,
    /// When it stopped being served; `None` while it was when last stored.
    pub replaced: Option<Timestamp>,
}

/// What the recent graphs say of a report's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A recent graph has this edge.
    Plausible,
    /// None has it, or the report names no `from`.
    Implausible,
    /// The stream has served no graph since the server started, and no
    /// kept one has this step: the graph about to be served may have it.
    NoGraphYet,
}

#[derive(Debug, Default)]
struct StreamGraphs {
    generations: Vec<Generation>,
    /// Whether a graph was served since the server started.
    served: bool,
}

impl StreamGraphs {
    /// Drop what aged out and what is past the bounds; the hashes dropped.
    fn prune(&mut self, now: Timestamp) -> Vec<[u8; 32]> {
        let mut dropped = Vec::new();
        self.generations.retain(|generation| {
            let keep = generation.replaced.is_none_or(|at| at > now - RECENT);
            if !keep {
                dropped.push(generation.hash);
            }
            keep
        });
        let mut nodes: usize = self.generations.iter().map(|g| g.nodes).sum();
        // Oldest first; the last one (served now) always stays.
        while self.generations.len() > 1
            && (self.generations.len() > MAX_GENERATIONS || nodes > MAX_NODES)
        {
            let oldest = self.generations.remove(0);
            nodes -= oldest.nodes;
            dropped.push(oldest.hash);
        }
        dropped
    }
}

/// Every stream's recent graph sets.
#[derive(Debug, Default)]
pub struct RecentGraphs {
    streams: BTreeMap<String, RwLock<StreamGraphs>>,
}

impl RecentGraphs {
    /// For these streams, with no graph yet.
    pub fn new(streams: impl IntoIterator<Item = String>) -> RecentGraphs {
        RecentGraphs {
            streams: streams
                .into_iter()
                .map(|stream| (stream, RwLock::default()))
                .collect(),
        }
    }

    /// `graphs` are served for `stream` from `now` on. What the store
    /// should keep, unless nothing changed.
    pub fn serve(&self, stream: &str, graphs: &[UpdateGraph], now: Timestamp) -> Option<Served> {
        let slot = self.streams.get(stream)?;
        let compact: Vec<CompactGraph> = graphs.iter().map(CompactGraph::of).collect();
        let steps = encode(&compact);
        let hash: [u8; 32] = Sha256::digest(&steps).into();
        let mut state = slot.write().unwrap_or_else(|e| e.into_inner());
        state.served = true;
        let current = state
            .generations
            .last()
            .filter(|generation| generation.replaced.is_none());
        // A republished document with the same releases: nothing new.
        if current.is_some_and(|generation| generation.hash == hash) {
            return None;
        }
        // Every other one still marked as served (the last one served, or
        // those kept by a run before a restart) stopped being served now.
        for generation in &mut state.generations {
            if generation.replaced.is_none() {
                generation.replaced = Some(now);
            }
        }
        // Served before: it moves to the end, as the one served now.
        let generation = match state.generations.iter().position(|g| g.hash == hash) {
            Some(position) => state.generations.remove(position),
            None => Generation {
                hash,
                nodes: compact.iter().map(|graph| graph.keys.len()).sum(),
                graphs: compact,
                replaced: None,
            },
        };
        state.generations.push(Generation {
            replaced: None,
            ..generation
        });
        let evicted = state.prune(now);
        Some(Served {
            hash,
            steps,
            evicted,
        })
    }

    /// Take back graph sets the store kept, oldest first; those that do
    /// not decode are skipped. Called before anything is served.
    pub fn restore(&self, kept: Vec<KeptSteps>, now: Timestamp) {
        let mut kept = kept;
        // Replaced ones by time, then those still marked as served.
        kept.sort_by_key(|steps| steps.replaced.map_or(i64::MAX, |at| at.as_millisecond()));
        for steps in kept {
            let Some(slot) = self.streams.get(&steps.stream) else {
                continue;
            };
            let graphs = match decode(&steps.steps) {
                Ok(graphs) => graphs,
                Err(error) => {
                    tracing::warn!(stream = %steps.stream, %error, "a kept graph set is unreadable; left out");
                    continue;
                }
            };
            let hash: [u8; 32] = Sha256::digest(&steps.steps).into();
            let mut state = slot.write().unwrap_or_else(|e| e.into_inner());
            if state.generations.iter().any(|g| g.hash == hash) {
                continue;
            }
            state.generations.push(Generation {
                hash,
                nodes: graphs.iter().map(|graph| graph.keys.len()).sum(),
                graphs,
                replaced: steps.replaced,
            });
            state.prune(now);
        }
    }

    /// Whether `from` → `to` is a step of a graph `stream` served within
    /// the last [`RECENT`].
    pub fn judge(
        &self,
        stream: &str,
        from: Option<&Release>,
        to: &Release,
        now: Timestamp,
    ) -> Verdict {
        let Some(slot) = self.streams.get(stream) else {
            return Verdict::NoGraphYet;
        };
        let state = slot.read().unwrap_or_else(|e| e.into_inner());
        let not_found = if state.served {
            Verdict::Implausible
        } else {
            Verdict::NoGraphYet
        };
        if state.generations.is_empty() {
            return Verdict::NoGraphYet;
        }
        let Some(from) = from else {
            return Verdict::Implausible;
        };
        let (from, to) = (
            release_key(&from.version, &from.digest),
            release_key(&to.version, &to.digest),
        );
        let recent = state
            .generations
            .iter()
            .rev()
            .filter(|generation| generation.replaced.is_none_or(|at| at > now - RECENT));
        for generation in recent {
            if generation.offers(from, to) {
                return Verdict::Plausible;
            }
        }
        not_found
    }

    /// Forget the graph sets replaced more than [`RECENT`] before `now`.
    pub fn prune(&self, now: Timestamp) {
        for slot in self.streams.values() {
            slot.write().unwrap_or_else(|e| e.into_inner()).prune(now);
        }
    }

    /// Graph sets held for `stream`.
    pub fn generations(&self, stream: &str) -> usize {
        self.streams.get(stream).map_or(0, |slot| {
            slot.read()
                .unwrap_or_else(|e| e.into_inner())
                .generations
                .len()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_graph::digest::TargetId;
    use cairn_graph::{Node, Rollout, Scheme};

    fn id(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn node(n: u8) -> Node {
        let mut node = Node::new(
            format!("44.{n}"),
            TargetId::digest(&id(n)).expect("digest"),
            format!("r@{}", id(n)),
        );
        node.age_index = u64::from(n);
        node
    }

    /// Releases `1..=count` in order; those in `rollouts` are rollouts.
    fn graph(count: u8, rollouts: &[u8]) -> UpdateGraph {
        let nodes = (1..=count)
            .map(|n| {
                let mut node = node(n);
                if rollouts.contains(&n) {
                    node.rollout = Some(Rollout::immediate());
                }
                node
            })
            .collect();
        UpdateGraph::from_nodes(Scheme::Oci, nodes)
    }

    fn release(n: u8) -> Release {
        Release {
            version: format!("44.{n}"),
            digest: id(n),
        }
    }

    fn t(hours: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + hours * 3600).expect("time")
    }

    #[test]
    fn a_step_is_believed_while_a_recent_graph_offers_it() {
        let recent = RecentGraphs::new(["s".to_string()]);
        assert_eq!(
            recent.judge("s", Some(&release(1)), &release(2), t(0)),
            Verdict::NoGraphYet
        );
        assert!(recent.serve("s", &[graph(2, &[2])], t(0)).is_some());
        let judge =
            |from: Option<Release>, to, hours| recent.judge("s", from.as_ref(), &to, t(hours));
        assert_eq!(judge(Some(release(1)), release(2), 0), Verdict::Plausible);
        assert_eq!(judge(None, release(2), 0), Verdict::Implausible);
        assert_eq!(judge(Some(release(2)), release(1), 0), Verdict::Implausible);
        // The version must match the node too.
        let renamed = Release {
            version: "44.9".into(),
            digest: id(2),
        };
        assert_eq!(judge(Some(release(1)), renamed, 0), Verdict::Implausible);
        // The same graphs again change nothing; a new release replaces them.
        assert_eq!(recent.serve("s", &[graph(2, &[2])], t(1)), None);
        recent.serve("s", &[graph(3, &[3])], t(10));
        assert_eq!(judge(Some(release(1)), release(3), 10), Verdict::Plausible);
        // 1 → 2 is no longer offered, but was within 72 hours.
        assert_eq!(
            judge(Some(release(1)), release(2), 10 + 71),
            Verdict::Plausible
        );
        assert_eq!(
            judge(Some(release(1)), release(2), 10 + 72),
            Verdict::Implausible
        );
        recent.prune(t(10 + 72));
        assert_eq!(recent.generations("s"), 1);
    }

    #[test]
    fn a_stopped_rollout_or_a_dead_end_keeps_earlier_steps_for_72_hours() {
        let recent = RecentGraphs::new(["s".to_string()]);
        recent.serve("s", &[graph(3, &[2, 3])], t(0));
        // 44.3's rollout stopped, and it is dead-ended: 44.2 → 44.3 is gone.
        let mut stopped = graph(3, &[2]);
        let mut nodes = stopped.nodes().to_vec();
        nodes[2].deadend = Some("bad".into());
        stopped = UpdateGraph::from_nodes(Scheme::Oci, nodes);
        recent.serve("s", &[stopped], t(1));
        let judge = |hours| recent.judge("s", Some(&release(2)), &release(3), t(hours));
        assert_eq!(judge(1 + 71), Verdict::Plausible);
        assert_eq!(judge(1 + 72), Verdict::Implausible);
    }

    #[test]
    fn kept_graph_sets_come_back_after_a_restart() {
        let first = RecentGraphs::new(["s".to_string()]);
        let a = first.serve("s", &[graph(3, &[2, 3])], t(0)).expect("new");
        let b = first.serve("s", &[graph(3, &[2])], t(1)).expect("new");
        // What a store gives back: A replaced at t(1), B still served.
        let kept = vec![
            KeptSteps {
                stream: "s".into(),
                steps: b.steps.clone(),
                replaced: None,
            },
            KeptSteps {
                stream: "s".into(),
                steps: a.steps.clone(),
                replaced: Some(t(1)),
            },
        ];
        let restarted = RecentGraphs::new(["s".to_string()]);
        restarted.restore(kept, t(2));
        // Before the first refresh: a kept step is believed, any other
        // waits for the graph about to be served.
        let judge =
            |from, to, hours| restarted.judge("s", Some(&release(from)), &release(to), t(hours));
        assert_eq!(judge(2, 3, 2), Verdict::Plausible);
        assert_eq!(judge(3, 4, 2), Verdict::NoGraphYet);
        // B served again: nothing new to keep, and A still counts.
        assert_eq!(restarted.serve("s", &[graph(3, &[2])], t(3)), None);
        assert_eq!(judge(2, 3, 1 + 71), Verdict::Plausible);
        assert_eq!(judge(2, 3, 1 + 72), Verdict::Implausible);
        assert_eq!(judge(3, 4, 3), Verdict::Implausible);
        // Garbage is left out, not trusted.
        let broken = RecentGraphs::new(["s".to_string()]);
        let mut steps = a.steps;
        steps.pop();
        broken.restore(
            vec![KeptSteps {
                stream: "s".into(),
                steps,
                replaced: None,
            }],
            t(2),
        );
        assert_eq!(broken.generations("s"), 0);
    }

    #[test]
    fn steps_across_a_base_barrier_or_to_an_unknown_base_are_believed() {
        use cairn_graph::{ArchEntry, BaseBarrier, BaseGraphSummary, BaseImage, GraphDocument};
        // Derived releases on base ages 1, 5 and none; the base has a
        // barrier at 3: the graph's base guard holds 44.1 → 44.2 and every
        // step from 44.3 (unknown base, first in update order), but a host
        // may have taken them with `update-now --cross-barrier`.
        let derived = |n: u8, base_age: Option<u64>| cairn_graph::Release {
            version: format!("44.{n}"),
            architectures: [("x86_64".to_string(), ArchEntry::image(id(n)))].into(),
            base: Some(BaseImage {
                age_index: base_age,
                ..BaseImage::new("quay.io/base/os", id(100 + n))
            }),
            rollout: Some(Rollout::immediate()),
            ..cairn_graph::Release::default()
        };
        let document = GraphDocument {
            stream: "s".into(),
            repository: "registry.example.org/derived".into(),
            releases: vec![derived(1, Some(1)), derived(2, Some(5)), derived(3, None)],
            base: Some(BaseGraphSummary {
                source: "fcos:stable".into(),
                repository: "quay.io/base/os".into(),
                barriers: vec![BaseBarrier {
                    version: "40.0".into(),
                    age_index: 3,
                    reason: String::new(),
                }],
            }),
            ..GraphDocument::default()
        };
        let graph = UpdateGraph::from_document(&document, "x86_64", Scheme::Oci);
        let at = |n: u8| {
            graph
                .nodes()
                .iter()
                .position(|node| node.version == format!("44.{n}"))
                .expect("node")
        };
        assert!(!graph.has_edge(at(1), at(2)), "the base guard holds it");
        assert!(!graph.has_edge(at(3), at(1)), "the base guard holds it");
        let recent = RecentGraphs::new(["s".to_string()]);
        recent.serve("s", std::slice::from_ref(&graph), t(0));
        let judge = |from, to| recent.judge("s", Some(&release(from)), &release(to), t(0));
        assert_eq!(judge(1, 2), Verdict::Plausible, "across a base barrier");
        assert_eq!(judge(3, 1), Verdict::Plausible, "from an unknown base");
        assert_eq!(judge(2, 1), Verdict::Implausible, "never backwards");
    }

    #[test]
    fn the_compact_rule_agrees_with_the_graph() {
        // Barriers, dead-ends and rollouts mixed: every pair judged alike.
        let nodes: Vec<Node> = (1..=12)
            .map(|n| {
                let mut node = node(n);
                if n % 3 == 0 {
                    node.rollout = Some(Rollout::immediate());
                }
                if n == 5 || n == 10 {
                    node.barrier = Some("b".into());
                }
                if n == 4 || n == 7 {
                    node.deadend = Some("d".into());
                }
                node
            })
            .collect();
        let graph = UpdateGraph::from_nodes(Scheme::Oci, nodes);
        let compact = CompactGraph::of(&graph);
        let decoded = decode(&encode(std::slice::from_ref(&compact))).expect("decode");
        assert_eq!(decoded, vec![CompactGraph::of(&graph)]);
        let mut edges = 0;
        for from in 0..12 {
            for to in 0..12 {
                let expected = graph.has_edge(from, to);
                edges += usize::from(expected);
                assert_eq!(
                    compact.has_step(from as u32, to as u32),
                    expected,
                    "{from} → {to}"
                );
            }
        }
        assert!(edges > 10, "{edges} edges");
    }

    #[test]
    fn generations_are_bounded() {
        let recent = RecentGraphs::new(["s".to_string()]);
        let mut evicted = 0;
        for n in 0..(MAX_GENERATIONS + 10) {
            // Distinct graph sets: the same graph listed n + 1 times... too
            // big; vary the rollouts instead.
            let rollouts: Vec<u8> = (0..11)
                .filter(|bit| n & (1 << bit) != 0)
                .map(|bit| bit + 1)
                .collect();
            let served = recent
                .serve("s", &[graph(12, &rollouts)], t(0))
                .expect("new");
            evicted += served.evicted.len();
        }
        assert_eq!(recent.generations("s"), MAX_GENERATIONS);
        assert_eq!(evicted, 10);
    }
}
