//! What the server serves for one stream: graphs per architecture and scheme,
//! built once per source change, and rendered responses cached by the set of
//! rollouts a client's wariness hides.
//!
//! Only rollouts decide what a wariness sees, and at any moment few rollouts
//! are in progress, so a handful of distinct bodies exist per graph. Each is
//! rendered once and then served from memory, which is what lets filtered
//! answers go as fast as a static file.

use crate::halts::Withheld;
use bytes::Bytes;
use cairn_graph::{GraphDocument, Rollout, Scheme, UpdateGraph};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Rendered variants kept per graph before the cache is cleared.
const MAX_VARIANTS: usize = 64;

/// A rendered `/v1/graph` body.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Pretty JSON, as Fedora's server sends.
    pub body: Bytes,
    /// A strong ETag of the body.
    pub etag: String,
}

/// A variant being rendered or rendered: concurrent misses of one variant
/// wait for a single render instead of each starting their own.
type Variant = Arc<OnceCell<Rendered>>;

/// What tells variants apart: the rollouts hidden, and the nodes whose
/// incoming edges halts withhold (`None`: every edge).
type VariantKey = (Vec<usize>, Option<Vec<usize>>);

/// One architecture and scheme of a stream.
#[derive(Debug)]
pub struct GraphEntry {
    graph: UpdateGraph,
    rollouts: Vec<(usize, Rollout)>,
    cache: Mutex<HashMap<VariantKey, Variant>>,
    /// Node count, for metrics.
    pub nodes: usize,
    /// Edge count before filtering, for metrics.
    pub edges: usize,
}

impl GraphEntry {
    /// Wrap a graph.
    pub fn new(graph: UpdateGraph) -> Self {
        let rollouts = graph
            .nodes()
            .iter()
            .enumerate()
            .filter_map(|(i, node)| node.rollout.map(|r| (i, r)))
            .collect();
        let nodes = graph.nodes().len();
        let edges = graph.edges().count();
        GraphEntry {
            graph,
            rollouts,
            cache: Mutex::new(HashMap::new()),
            nodes,
            edges,
        }
    }

    /// The graph, unfiltered.
    pub fn graph(&self) -> &UpdateGraph {
        &self.graph
    }

    /// The positions of the nodes whose incoming edges `withheld` drops;
    /// `None`: every edge.
    pub fn blocked(&self, withheld: &Withheld) -> Option<Vec<usize>> {
        match withheld {
            Withheld::Nothing => Some(Vec::new()),
            Withheld::Everything => None,
            Withheld::Halted(digests) => Some(
                self.graph
                    .nodes()
                    .iter()
                    .enumerate()
                    .filter(|(_, node)| {
                        digests.contains(node.id.as_str())
                            || node.aliases.iter().any(|alias| digests.contains(alias))
                    })
                    .map(|(i, _)| i)
                    .collect(),
            ),
        }
    }

    /// The answer for a wariness at `now` (Unix seconds), less what the
    /// halts withhold. A cached answer is returned at once; a new one is
    /// rendered on the blocking pool, since a large graph takes
    /// milliseconds to serialize and hash.
    pub async fn render(
        self: &Arc<Self>,
        wariness: f64,
        now: i64,
        withheld: &Withheld,
    ) -> Result<Rendered, RenderError> {
        let blocked = self.blocked(withheld);
        let hidden: Vec<usize> = self
            .rollouts
            .iter()
            .filter(|(_, rollout)| rollout.hides(wariness, now))
            .map(|(i, _)| *i)
            .collect();
        let variant = {
            let key = (hidden, blocked.clone());
            let mut cache = self.cache.lock().map_err(|_| RenderError)?;
            if let Some(variant) = cache.get(&key) {
                variant.clone()
            } else {
                if cache.len() >= MAX_VARIANTS {
                    cache.clear();
                }
                cache.entry(key).or_default().clone()
            }
        };
        if let Some(rendered) = variant.get() {
            return Ok(rendered.clone());
        }
        let entry = self.clone();
        variant
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    entry.render_now(wariness, now, blocked.as_deref())
                })
                .await
                .map_err(|_| RenderError)
            })
            .await
            .cloned()
    }

    /// Render without the cache, leaving out edges into `blocked` (`None`: every edge).
    pub fn render_now(&self, wariness: f64, now: i64, blocked: Option<&[usize]>) -> Rendered {
        let mut graph = self.graph.throttled(wariness, now).to_cincinnati();
        match blocked {
            None => graph.edges.clear(),
            Some(blocked) => graph
                .edges
                .retain(|(_, to)| usize::try_from(*to).is_ok_and(|to| !blocked.contains(&to))),
        }
        let body = Bytes::from(graph.to_json_pretty());
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
        Rendered { body, etag }
    }
}

/// A render failed: it panicked, or a panic poisoned the cache.
#[derive(Debug, thiserror::Error)]
#[error("rendering the graph failed")]
pub struct RenderError;

/// A document to serve on `/v2/graph/<stream>`.
#[derive(Debug, Clone)]
pub struct ServedDocument {
    /// The exact bytes.
    pub bytes: Bytes,
    /// Its manifest digest, when it came from a registry or layout.
    pub manifest_digest: Option<String>,
    /// Where its signature is: `repository:sha256-….sig`, or `<url>.sig`.
    pub signature: Option<String>,
}

/// What the graphs of a snapshot are built from.
#[derive(Debug)]
enum Inputs {
    Document(Arc<GraphDocument>),
    Fcos(Arc<(cairn_graph::fcos::ReleaseIndex, cairn_graph::fcos::Updates)>),
}

/// One architecture and scheme: its graph once built, and whether a client
/// of the graph (not only a person's view) asked for it.
#[derive(Debug, Default)]
struct Slot {
    entry: std::sync::OnceLock<Arc<GraphEntry>>,
    served: AtomicBool,
}

/// Everything served for one stream.
///
/// A graph is built the first time it is asked for, not at every refresh:
/// a source lists every architecture in both schemes, and most fleets ask
/// for one or two of them. A refresh builds again only the graphs clients
/// asked the last snapshot for (see [`Snapshot::build_like`]), on the
/// refresh runtime.
#[derive(Debug)]
pub struct Snapshot {
    graphs: HashMap<(String, bool), Slot>,
    inputs: Inputs,
    /// Architectures with a graph.
    pub arches: BTreeSet<String>,
    /// The Cairn document, if the source has one.
    pub document: Option<ServedDocument>,
    /// The sequence of that document, to refuse going backwards.
    pub sequence: Option<u64>,
}

impl Snapshot {
    /// The document's halt settings, when it turns halts on.
    pub fn halt_settings(&self) -> Option<&cairn_graph::document::HaltSettings> {
        self.source_document()?.halts.as_ref()
    }

    /// The Cairn document the graphs were built from, if any.
    pub fn source_document(&self) -> Option<&GraphDocument> {
        match &self.inputs {
            Inputs::Document(document) => Some(document),
            Inputs::Fcos(_) => None,
        }
    }
}

impl Snapshot {
    /// Graphs from Fedora's inputs, for every architecture they mention.
    pub fn from_fcos(
        index: &cairn_graph::fcos::ReleaseIndex,
        updates: &cairn_graph::fcos::Updates,
    ) -> Self {
        let arches: BTreeSet<String> = index
            .releases
            .iter()
            .flat_map(|r| {
                r.commits
                    .iter()
                    .flatten()
                    .map(|c| c.architecture.clone())
                    .chain(
                        r.oci_images
                            .iter()
                            .flatten()
                            .map(|i| i.architecture.clone()),
                    )
            })
            .collect();
        Snapshot::lazy(
            arches,
            Inputs::Fcos(Arc::new((index.clone(), updates.clone()))),
            None,
            None,
        )
    }

    /// Graphs from a Cairn document.
    pub fn from_document(document: &GraphDocument, served: Option<ServedDocument>) -> Self {
        let arches: BTreeSet<String> = document.architectures().into_iter().collect();
        Snapshot::lazy(
            arches,
            Inputs::Document(Arc::new(document.clone())),
            served,
            Some(document.sequence),
        )
    }

    fn lazy(
        arches: BTreeSet<String>,
        inputs: Inputs,
        document: Option<ServedDocument>,
        sequence: Option<u64>,
    ) -> Self {
        let graphs = arches
            .iter()
            .flat_map(|arch| [(arch.clone(), false), (arch.clone(), true)])
            .map(|key| (key, Slot::default()))
            .collect();
        Snapshot {
            graphs,
            inputs,
            arches,
            document,
            sequence,
        }
    }

    /// The graph of one architecture and scheme, built now if it has not
    /// been: CPU work, so a request handler calls this off its worker
    /// unless [`Snapshot::built_graph`] has it.
    pub fn graph(&self, arch: &str, oci: bool) -> Option<&Arc<GraphEntry>> {
        let slot = self.graphs.get(&(arch.to_string(), oci))?;
        slot.served.store(true, Ordering::Relaxed);
        Some(self.entry(slot, arch, oci))
    }

    /// [`Snapshot::graph`] for a person's view (the dashboard): kept for
    /// this snapshot, but not built again at the next refresh, which
    /// builds only what clients of the graph ask for.
    pub fn view_graph(&self, arch: &str, oci: bool) -> Option<&Arc<GraphEntry>> {
        let slot = self.graphs.get(&(arch.to_string(), oci))?;
        Some(self.entry(slot, arch, oci))
    }

    fn entry<'a>(&'a self, slot: &'a Slot, arch: &str, oci: bool) -> &'a Arc<GraphEntry> {
        slot.entry
            .get_or_init(|| Arc::new(GraphEntry::new(self.build(arch, oci))))
    }

    /// Every graph of every architecture and scheme, unfiltered: those
    /// built for serving are copied, the others built here and not kept
    /// (clients may never ask for them). For judging reports.
    pub fn full_graphs(&self) -> Vec<UpdateGraph> {
        let mut keys: Vec<&(String, bool)> = self.graphs.keys().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|(arch, oci)| {
                let slot = self.graphs.get(&(arch.clone(), *oci))?;
                Some(match slot.entry.get() {
                    Some(entry) => entry.graph.clone(),
                    None => self.build(arch, *oci),
                })
            })
            .collect()
    }

    fn build(&self, arch: &str, oci: bool) -> UpdateGraph {
        let scheme = if oci { Scheme::Oci } else { Scheme::Checksum };
        match &self.inputs {
            Inputs::Document(document) => UpdateGraph::from_document(document, arch, scheme),
            Inputs::Fcos(inputs) => {
                cairn_graph::fcos::build_graph(&inputs.0, &inputs.1, arch, scheme)
            }
        }
    }

    /// `None`: no such graph; `Some(None)`: not built yet. For serving:
    /// a graph found built is marked as one clients ask for.
    pub fn built_graph(&self, arch: &str, oci: bool) -> Option<Option<&Arc<GraphEntry>>> {
        let slot = self.graphs.get(&(arch.to_string(), oci))?;
        let entry = slot.entry.get();
        if entry.is_some() {
            slot.served.store(true, Ordering::Relaxed);
        }
        Some(entry)
    }

    /// [`Snapshot::built_graph`] for a person's view: marks nothing.
    pub fn view_built(&self, arch: &str, oci: bool) -> Option<Option<&Arc<GraphEntry>>> {
        self.graphs
            .get(&(arch.to_string(), oci))
            .map(|slot| slot.entry.get())
    }

    /// Build the graphs clients asked `previous` for. Graphs built only
    /// for a view are left out: one look at the dashboard must not keep
    /// every architecture's graphs rebuilt at every refresh from then on.
    pub fn build_like(&self, previous: &Snapshot) {
        for ((arch, oci), slot) in &previous.graphs {
            if slot.served.load(Ordering::Relaxed) && slot.entry.get().is_some() {
                self.graph(arch, *oci);
            }
        }
    }

    /// Every graph built so far, for metrics.
    pub fn graphs(&self) -> impl Iterator<Item = (&str, bool, &GraphEntry)> {
        self.graphs.iter().filter_map(|((arch, oci), slot)| {
            slot.entry
                .get()
                .map(|entry| (arch.as_str(), *oci, entry.as_ref()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> GraphDocument {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/examples/stable.json");
        let bytes = std::fs::read(path).expect("example document");
        GraphDocument::from_json(&bytes)
            .expect("valid example")
            .document
    }

    #[test]
    fn graphs_are_built_when_first_asked_for_and_again_at_each_refresh() {
        let document = example();
        let first = Snapshot::from_document(&document, None);
        assert_eq!(first.graphs().count(), 0, "nothing is built up front");
        assert!(matches!(first.built_graph("x86_64", true), Some(None)));
        assert!(first.built_graph("mips", true).is_none());
        let entry = first.graph("x86_64", true).expect("a graph").clone();
        assert!(entry.nodes > 0);
        let built: Vec<_> = first.graphs().map(|(a, o, _)| (a.to_string(), o)).collect();
        assert_eq!(built, [("x86_64".to_string(), true)]);
        // The next snapshot builds what clients asked of this one, and only that.
        let next = Snapshot::from_document(&document, None);
        next.build_like(&first);
        let built: Vec<_> = next.graphs().map(|(a, o, _)| (a.to_string(), o)).collect();
        assert_eq!(built, [("x86_64".to_string(), true)]);
        assert_eq!(
            next.built_graph("x86_64", true).flatten().map(|e| e.nodes),
            Some(entry.nodes)
        );
    }

    #[test]
    fn graphs_built_only_for_a_view_are_not_rebuilt_at_the_next_refresh() {
        let document = example();
        let first = Snapshot::from_document(&document, None);
        first.view_graph("x86_64", false).expect("a graph");
        first.view_graph("aarch64", true).expect("a graph");
        first.graph("x86_64", true).expect("a graph");
        assert_eq!(
            first.graphs().count(),
            3,
            "a view keeps its graphs for this snapshot"
        );
        assert!(matches!(first.view_built("aarch64", true), Some(Some(_))));
        let next = Snapshot::from_document(&document, None);
        next.build_like(&first);
        let built: Vec<_> = next.graphs().map(|(a, o, _)| (a.to_string(), o)).collect();
        assert_eq!(built, [("x86_64".to_string(), true)]);
        // A client that finds a view's graph built marks it as served.
        let third = Snapshot::from_document(&document, None);
        next.view_graph("aarch64", true);
        assert!(matches!(next.built_graph("aarch64", true), Some(Some(_))));
        third.build_like(&next);
        let mut built: Vec<_> = third.graphs().map(|(a, o, _)| (a.to_string(), o)).collect();
        built.sort();
        assert_eq!(
            built,
            [("aarch64".to_string(), true), ("x86_64".to_string(), true)]
        );
    }
}
