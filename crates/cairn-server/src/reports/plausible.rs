//! Which steps between releases a stream offered lately: a report is
//! plausible only when its from→to is one of them.
//!
//! Each distinct graph set a stream served (every architecture and scheme,
//! unfiltered by wariness) is kept until 72 hours after it stopped being
//! served, so a host that took a step a day ago, and reports it late, is
//! still believed. Steps are checked on the graphs rather than kept as a set
//! of edges: a stream whose releases are all rollouts has edges quadratic in
//! its length (millions for 10,000 releases), while its graphs are linear,
//! and [`UpdateGraph::has_edge`] checks one step in logarithmic time.

use crate::reports::model::Release;
use cairn_graph::UpdateGraph;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

/// How long a graph set is believed after it stopped being served.
pub const RECENT: SignedDuration = SignedDuration::from_hours(72);

/// The most graph sets kept per stream; past it the oldest goes first.
pub const MAX_GENERATIONS: usize = 64;

/// One graph set a stream served.
#[derive(Debug)]
struct Generation {
    graphs: Vec<UpdateGraph>,
    /// Release id → (graph, node position) of each node with that id.
    by_id: HashMap<String, Vec<(usize, usize)>>,
    /// When it stopped being served; `None` while it is.
    replaced: Option<Timestamp>,
}

impl Generation {
    fn new(graphs: Vec<UpdateGraph>) -> Generation {
        let mut by_id: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (g, graph) in graphs.iter().enumerate() {
            for (position, node) in graph.nodes().iter().enumerate() {
                by_id
                    .entry(node.id.to_string())
                    .or_default()
                    .push((g, position));
            }
        }
        Generation {
            graphs,
            by_id,
            replaced: None,
        }
    }

    fn offers(&self, from: &Release, to: &Release) -> bool {
        let (Some(sources), Some(targets)) =
            (self.by_id.get(&from.digest), self.by_id.get(&to.digest))
        else {
            return false;
        };
        targets.iter().any(|&(g, target)| {
            let graph = &self.graphs[g];
            graph.nodes()[target].version == to.version
                && sources.iter().any(|&(source_graph, source)| {
                    source_graph == g
                        && graph.nodes()[source].version == from.version
                        && graph.has_edge(source, target)
                })
        })
    }
}

/// What the recent graphs say of a report's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A recent graph has this edge.
    Plausible,
    /// None has it, or the report names no `from`.
    Implausible,
    /// The stream has served no graph since the server started.
    NoGraphYet,
}

/// Every stream's recent graph sets.
#[derive(Debug, Default)]
pub struct RecentGraphs {
    streams: BTreeMap<String, RwLock<Vec<Generation>>>,
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

    /// `graphs` are served for `stream` from `now` on.
    pub fn serve(&self, stream: &str, graphs: Vec<UpdateGraph>, now: Timestamp) {
        let Some(slot) = self.streams.get(stream) else {
            return;
        };
        let mut generations = slot.write().unwrap_or_else(|e| e.into_inner());
        if let Some(current) = generations.last_mut()
            && current.replaced.is_none()
        {
            // A republished document with the same releases: nothing new.
            if current.graphs == graphs {
                return;
            }
            current.replaced = Some(now);
        }
        generations.push(Generation::new(graphs));
        prune_generations(&mut generations, now);
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
        let generations = slot.read().unwrap_or_else(|e| e.into_inner());
        if generations.is_empty() {
            return Verdict::NoGraphYet;
        }
        let Some(from) = from else {
            return Verdict::Implausible;
        };
        let recent = generations
            .iter()
            .rev()
            .filter(|generation| generation.replaced.is_none_or(|at| at > now - RECENT));
        for generation in recent {
            if generation.offers(from, to) {
                return Verdict::Plausible;
            }
        }
        Verdict::Implausible
    }

    /// Forget the graph sets replaced more than [`RECENT`] before `now`.
    pub fn prune(&self, now: Timestamp) {
        for slot in self.streams.values() {
            let mut generations = slot.write().unwrap_or_else(|e| e.into_inner());
            prune_generations(&mut generations, now);
        }
    }
}

fn prune_generations(generations: &mut Vec<Generation>, now: Timestamp) {
    generations.retain(|generation| generation.replaced.is_none_or(|at| at > now - RECENT));
    if generations.len() > MAX_GENERATIONS {
        let excess = generations.len() - MAX_GENERATIONS;
        generations.drain(..excess);
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

    /// Releases `1..=count` in order; those in `rollouts` are rollouts.
    fn graph(count: u8, rollouts: &[u8]) -> UpdateGraph {
        let nodes = (1..=count)
            .map(|n| {
                let mut node = Node::new(
                    format!("44.{n}"),
                    TargetId::digest(&id(n)).expect("digest"),
                    format!("r@{}", id(n)),
                );
                node.age_index = u64::from(n);
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
        recent.serve("s", vec![graph(2, &[2])], t(0));
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
        recent.serve("s", vec![graph(2, &[2])], t(1));
        recent.serve("s", vec![graph(3, &[3])], t(10));
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
        assert_eq!(recent.streams["s"].read().expect("lock").len(), 1);
    }

    #[test]
    fn generations_are_bounded() {
        let recent = RecentGraphs::new(["s".to_string()]);
        for n in 2..=(MAX_GENERATIONS as u8 + 10) {
            recent.serve("s", vec![graph(n, &[n])], t(0));
        }
        assert_eq!(
            recent.streams["s"].read().expect("lock").len(),
            MAX_GENERATIONS
        );
    }
}
