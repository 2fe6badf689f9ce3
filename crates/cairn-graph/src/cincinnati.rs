//! The Cincinnati `/v1/graph` JSON format with Fedora CoreOS metadata keys.
//!
//! Rendering turns an [`UpdateGraph`] into what Fedora's graph builder and
//! policy engine serve; parsing reads such a response back into a graph, so
//! the agent can follow a Cincinnati server the same way it follows a document.

use crate::digest::TargetId;
use crate::graph::{Node, Scheme, UpdateGraph};
use crate::rollout::Rollout;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Prefix of every Fedora CoreOS metadata key.
pub const PREFIX: &str = "org.fedoraproject.coreos.";
/// `org.fedoraproject.coreos.scheme`
pub const SCHEME: &str = "org.fedoraproject.coreos.scheme";
/// `org.fedoraproject.coreos.releases.age_index`
pub const AGE_INDEX: &str = "org.fedoraproject.coreos.releases.age_index";
/// `org.fedoraproject.coreos.updates.barrier`
pub const BARRIER: &str = "org.fedoraproject.coreos.updates.barrier";
/// `org.fedoraproject.coreos.updates.barrier_reason`
pub const BARRIER_REASON: &str = "org.fedoraproject.coreos.updates.barrier_reason";
/// `org.fedoraproject.coreos.updates.deadend`
pub const DEADEND: &str = "org.fedoraproject.coreos.updates.deadend";
/// `org.fedoraproject.coreos.updates.deadend_reason`
pub const DEADEND_REASON: &str = "org.fedoraproject.coreos.updates.deadend_reason";
/// `org.fedoraproject.coreos.updates.rollout`
pub const ROLLOUT: &str = "org.fedoraproject.coreos.updates.rollout";
/// `org.fedoraproject.coreos.updates.start_epoch`
pub const START_EPOCH: &str = "org.fedoraproject.coreos.updates.start_epoch";
/// `org.fedoraproject.coreos.updates.start_value`
pub const START_VALUE: &str = "org.fedoraproject.coreos.updates.start_value";
/// `org.fedoraproject.coreos.updates.duration_minutes`
pub const DURATION: &str = "org.fedoraproject.coreos.updates.duration_minutes";

/// Cairn's own key, on derived streams only: the age index of the base
/// release a node is built on. Zincati ignores it; Cairn's agent uses it to
/// know a move to a newer base, where rpm-ostree's build-date check must stay
/// out of the way (see `docs/derived-images.md`).
pub const BASE_AGE_INDEX: &str = "dev.cairn.base.age_index";

/// The reason Fedora writes when a barrier or dead-end has none.
const GENERIC_REASON: &str = "generic";

/// A Cincinnati graph as served on `/v1/graph`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CincinnatiGraph {
    /// Releases.
    pub nodes: Vec<CincinnatiNode>,
    /// `[from, to]` positions into `nodes`.
    pub edges: Vec<(u64, u64)>,
}

/// One Cincinnati node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CincinnatiNode {
    /// Release version.
    pub version: String,
    /// String metadata; keys are sorted so output is stable.
    pub metadata: BTreeMap<String, String>,
    /// Checksum or pull spec.
    pub payload: String,
}

/// Why a Cincinnati response could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CincinnatiError {
    /// Not JSON of the Cincinnati shape.
    #[error("not a Cincinnati graph: field `{path}`: {message}")]
    Shape {
        /// JSON path of the bad field.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A node without a metadata key Zincati requires.
    #[error("node {index} ({version}): metadata key `{key}` is missing or invalid")]
    Metadata {
        /// Node position.
        index: usize,
        /// Node version.
        version: String,
        /// The key.
        key: &'static str,
    },
    /// A payload that is not a valid release id (or `repository@digest`).
    #[error("node {index} ({version}): payload: {error}")]
    InvalidPayload {
        /// Node position.
        index: usize,
        /// Node version.
        version: String,
        /// What is wrong with it.
        error: crate::digest::InvalidId,
    },
    /// Two nodes with one payload: a host booted on it could not tell
    /// which release it runs, and would be offered the other as an update.
    #[error("node {index} ({version}): payload is also node {first}'s ({first_version})")]
    DuplicatePayload {
        /// Node position.
        index: usize,
        /// Node version.
        version: String,
        /// The earlier node with the same payload.
        first: usize,
        /// Its version.
        first_version: String,
    },
    /// An edge that names a node that does not exist.
    #[error("edge [{from}, {to}] names a node beyond the {nodes} nodes")]
    EdgeOutOfRange {
        /// Source.
        from: u64,
        /// Target.
        to: u64,
        /// Number of nodes.
        nodes: usize,
    },
}

impl CincinnatiError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CincinnatiError::Shape { .. } => "shape",
            CincinnatiError::Metadata { .. } => "metadata",
            CincinnatiError::EdgeOutOfRange { .. } => "edge_out_of_range",
            CincinnatiError::InvalidPayload { .. } => "invalid_payload",
            CincinnatiError::DuplicatePayload { .. } => "duplicate_payload",
        }
    }
}

impl UpdateGraph {
    /// The Cincinnati form of this graph.
    pub fn to_cincinnati(&self) -> CincinnatiGraph {
        CincinnatiGraph {
            nodes: self
                .nodes()
                .iter()
                .map(|node| render_node(node, self.scheme))
                .collect(),
            edges: self
                .edges()
                .map(|(from, to)| (from as u64, to as u64))
                .collect(),
        }
    }

    /// Read a graph from a Cincinnati response. Edges are taken as given.
    pub fn from_cincinnati(graph: &CincinnatiGraph) -> Result<UpdateGraph, CincinnatiError> {
        let mut scheme = Scheme::Checksum;
        let mut nodes: Vec<Node> = Vec::with_capacity(graph.nodes.len());
        let mut seen: std::collections::HashMap<TargetId, usize> = std::collections::HashMap::new();
        for (index, raw) in graph.nodes.iter().enumerate() {
            let missing = |key| CincinnatiError::Metadata {
                index,
                version: raw.version.clone(),
                key,
            };
            scheme = match raw.metadata.get(SCHEME).map(String::as_str) {
                Some("oci") => Scheme::Oci,
                Some("checksum") => Scheme::Checksum,
                _ => return Err(missing(SCHEME)),
            };
            let age_index = raw
                .metadata
                .get(AGE_INDEX)
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| missing(AGE_INDEX))?;
            // The payload becomes a host tool's argument: the whole answer
            // is refused if any node's is not a valid id.
            let id = match scheme {
                Scheme::Oci => TargetId::of_pullspec(&raw.payload),
                Scheme::Checksum => TargetId::checksum(&raw.payload),
            }
            .map_err(|error| CincinnatiError::InvalidPayload {
                index,
                version: raw.version.clone(),
                error,
            })?;
            if let Some(&first) = seen.get(&id) {
                return Err(CincinnatiError::DuplicatePayload {
                    index,
                    version: raw.version.clone(),
                    first,
                    first_version: nodes[first].version.clone(),
                });
            }
            seen.insert(id.clone(), index);
            nodes.push(parse_node(raw, id, age_index));
        }
        let mut edges = Vec::with_capacity(graph.edges.len());
        for &(from, to) in &graph.edges {
            let in_range = |i: u64| usize::try_from(i).ok().filter(|&i| i < nodes.len());
            match (in_range(from), in_range(to)) {
                (Some(from), Some(to)) => edges.push((from, to)),
                _ => {
                    return Err(CincinnatiError::EdgeOutOfRange {
                        from,
                        to,
                        nodes: nodes.len(),
                    });
                }
            }
        }
        Ok(UpdateGraph::with_edges(scheme, nodes, edges))
    }
}

impl CincinnatiGraph {
    /// Parse a `/v1/graph` response body.
    pub fn from_json(bytes: &[u8]) -> Result<CincinnatiGraph, CincinnatiError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let graph = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            CincinnatiError::Shape {
                path: e.path().to_string(),
                message: e.into_inner().to_string(),
            }
        })?;
        // Nothing but whitespace may follow the JSON.
        deserializer.end().map_err(|e| CincinnatiError::Shape {
            path: ".".to_string(),
            message: e.to_string(),
        })?;
        Ok(graph)
    }

    /// Pretty JSON, as Fedora's servers send it.
    pub fn to_json_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn render_node(node: &Node, scheme: Scheme) -> CincinnatiNode {
    let mut metadata = BTreeMap::new();
    metadata.insert(SCHEME.to_string(), scheme.as_str().to_string());
    metadata.insert(AGE_INDEX.to_string(), node.age_index.to_string());
    if let Some(base_age) = node.base_age {
        metadata.insert(BASE_AGE_INDEX.to_string(), base_age.to_string());
    }
    let or_generic = |reason: &str| {
        if reason.is_empty() {
            GENERIC_REASON.to_string()
        } else {
            reason.to_string()
        }
    };
    if let Some(reason) = &node.barrier {
        metadata.insert(BARRIER.to_string(), "true".to_string());
        metadata.insert(BARRIER_REASON.to_string(), or_generic(reason));
    }
    if let Some(reason) = &node.deadend {
        metadata.insert(DEADEND.to_string(), "true".to_string());
        metadata.insert(DEADEND_REASON.to_string(), or_generic(reason));
    }
    if let Some(rollout) = &node.rollout {
        metadata.insert(ROLLOUT.to_string(), "true".to_string());
        if let Some(epoch) = rollout.start_epoch {
            metadata.insert(START_EPOCH.to_string(), epoch.to_string());
        }
        // Rust's float Display is what Fedora writes: 1.0 -> "1", 0.3 -> "0.3".
        if let Some(value) = rollout.start_percentage {
            metadata.insert(START_VALUE.to_string(), value.to_string());
        }
        if let Some(minutes) = rollout.duration_minutes {
            metadata.insert(DURATION.to_string(), minutes.to_string());
        }
    }
    CincinnatiNode {
        version: node.version.clone(),
        metadata,
        payload: node.payload.clone(),
    }
}

fn parse_node(raw: &CincinnatiNode, id: TargetId, age_index: u64) -> Node {
    // Fedora's builder tests barriers by key presence and dead-ends by the value "true".
    let is_barrier = raw.metadata.contains_key(BARRIER);
    let is_deadend = raw.metadata.get(DEADEND).is_some_and(|v| v == "true");
    let reason = |key: &str| raw.metadata.get(key).cloned().unwrap_or_default();
    // Unparsable rollout values fall back to the defaults, as in Fedora's policy engine.
    let rollout = raw.metadata.contains_key(ROLLOUT).then(|| Rollout {
        start_epoch: raw
            .metadata
            .get(START_EPOCH)
            .map(|v| v.parse().unwrap_or(0)),
        start_percentage: raw
            .metadata
            .get(START_VALUE)
            .map(|v| v.parse().unwrap_or(0.0)),
        duration_minutes: raw.metadata.get(DURATION).and_then(|v| v.parse().ok()),
    });
    Node {
        version: raw.version.clone(),
        age_index,
        payload: raw.payload.clone(),
        id,
        aliases: Vec::new(),
        config: None,
        available: true,
        barrier: is_barrier.then(|| reason(BARRIER_REASON)),
        deadend: is_deadend.then(|| reason(DEADEND_REASON)),
        rollout,
        base_age: raw
            .metadata
            .get(BASE_AGE_INDEX)
            .and_then(|v| v.parse().ok()),
    }
}
