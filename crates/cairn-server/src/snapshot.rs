//! What the server serves for one stream: graphs per architecture and scheme,
//! built once per source change, and rendered responses cached by the set of
//! rollouts a client's wariness hides.
//!
//! Only rollouts decide what a wariness sees, and at any moment few rollouts
//! are in progress, so a handful of distinct bodies exist per graph. Each is
//! rendered once and then served from memory, which is what lets filtered
//! answers go as fast as a static file.

use bytes::Bytes;
use cairn_graph::{GraphDocument, Rollout, Scheme, UpdateGraph};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
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

/// One architecture and scheme of a stream.
#[derive(Debug)]
pub struct GraphEntry {
    graph: UpdateGraph,
    rollouts: Vec<(usize, Rollout)>,
    cache: Mutex<HashMap<Vec<usize>, Variant>>,
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

    /// The answer for a wariness at `now` (Unix seconds). A cached answer is
    /// returned at once; a new one is rendered on the blocking pool, since a
    /// large graph takes milliseconds to serialize and hash.
    pub async fn render(
        self: &Arc<Self>,
        wariness: f64,
        now: i64,
    ) -> Result<Rendered, RenderError> {
        let hidden: Vec<usize> = self
            .rollouts
            .iter()
            .filter(|(_, rollout)| rollout.hides(wariness, now))
            .map(|(i, _)| *i)
            .collect();
        let variant = {
            let mut cache = self.cache.lock().map_err(|_| RenderError)?;
            if let Some(variant) = cache.get(&hidden) {
                variant.clone()
            } else {
                if cache.len() >= MAX_VARIANTS {
                    cache.clear();
                }
                cache.entry(hidden).or_default().clone()
            }
        };
        if let Some(rendered) = variant.get() {
            return Ok(rendered.clone());
        }
        let entry = self.clone();
        variant
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || entry.render_now(wariness, now))
                    .await
                    .map_err(|_| RenderError)
            })
            .await
            .cloned()
    }

    /// Render without the cache.
    pub fn render_now(&self, wariness: f64, now: i64) -> Rendered {
        let body = Bytes::from(
            self.graph
                .throttled(wariness, now)
                .to_cincinnati()
                .to_json_pretty(),
        );
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

/// Everything served for one stream.
#[derive(Debug)]
pub struct Snapshot {
    graphs: HashMap<(String, bool), Arc<GraphEntry>>,
    /// Architectures with a graph.
    pub arches: BTreeSet<String>,
    /// The Cairn document, if the source has one.
    pub document: Option<ServedDocument>,
    /// The sequence of that document, to refuse going backwards.
    pub sequence: Option<u64>,
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
        let mut graphs = HashMap::new();
        for arch in &arches {
            for (oci, scheme) in [(false, Scheme::Checksum), (true, Scheme::Oci)] {
                let graph = cairn_graph::fcos::build_graph(index, updates, arch, scheme);
                graphs.insert((arch.clone(), oci), Arc::new(GraphEntry::new(graph)));
            }
        }
        Snapshot {
            graphs,
            arches,
            document: None,
            sequence: None,
        }
    }

    /// Graphs from a Cairn document.
    pub fn from_document(document: &GraphDocument, served: Option<ServedDocument>) -> Self {
        let arches: BTreeSet<String> = document.architectures().into_iter().collect();
        let mut graphs = HashMap::new();
        for arch in &arches {
            for (oci, scheme) in [(false, Scheme::Checksum), (true, Scheme::Oci)] {
                let graph = UpdateGraph::from_document(document, arch, scheme);
                graphs.insert((arch.clone(), oci), Arc::new(GraphEntry::new(graph)));
            }
        }
        Snapshot {
            graphs,
            arches,
            document: served,
            sequence: Some(document.sequence),
        }
    }

    /// The graph of one architecture and scheme.
    pub fn graph(&self, arch: &str, oci: bool) -> Option<&Arc<GraphEntry>> {
        self.graphs.get(&(arch.to_string(), oci))
    }

    /// Every graph, for metrics.
    pub fn graphs(&self) -> impl Iterator<Item = (&str, bool, &GraphEntry)> {
        self.graphs
            .iter()
            .map(|((arch, oci), entry)| (arch.as_str(), *oci, entry.as_ref()))
    }
}
