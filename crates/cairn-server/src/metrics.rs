//! Prometheus metrics, owned by the server state (no globals). Labels come
//! only from constants, configured stream names and error kinds, never from
//! request data.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// A route template, never the raw path.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    /// A route template.
    pub route: &'static str,
}

/// Labels of per-graph gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GraphLabels {
    /// Configured stream.
    pub stream: String,
    /// Architecture, folded to a known name.
    pub arch: &'static str,
    /// OCI graph or checksum graph.
    pub oci: &'static str,
}

/// Labels of refresh outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// Configured stream.
    pub stream: String,
    /// `updated`, `unchanged`, or an error kind.
    pub result: &'static str,
}

/// Labels with only the stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// Configured stream.
    pub stream: String,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RouteLabels, Counter>,
    /// Latency by route.
    pub latency: Family<RouteOnly, Histogram>,
    /// Nodes per graph.
    pub nodes: Family<GraphLabels, Gauge>,
    /// Edges per graph (unfiltered).
    pub edges: Family<GraphLabels, Gauge>,
    /// Refreshes by outcome.
    pub refreshes: Family<RefreshLabels, Counter>,
    /// Last successful refresh, Unix seconds.
    pub last_success: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    /// 1 while the last refresh of the stream succeeded.
    pub source_up: Family<StreamLabels, Gauge>,
    /// Checksum-graph requests (no `oci=true`) answered with an empty graph:
    /// an image-only stream has no commit checksums to offer.
    pub empty_checksum_answers: Family<StreamLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteOnly, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let nodes = Family::<GraphLabels, Gauge>::default();
        let edges = Family::<GraphLabels, Gauge>::default();
        let refreshes = Family::<RefreshLabels, Counter>::default();
        let last_success = Family::<StreamLabels, Gauge<f64, AtomicU64>>::default();
        let source_up = Family::<StreamLabels, Gauge>::default();
        let empty_checksum_answers = Family::<StreamLabels, Counter>::default();
        registry.register(
            "cairn_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "cairn_http_request_duration_seconds",
            "Request latency by route",
            latency.clone(),
        );
        registry.register("cairn_graph_nodes", "Nodes per served graph", nodes.clone());
        registry.register(
            "cairn_graph_edges",
            "Edges per served graph, before rollout filtering",
            edges.clone(),
        );
        registry.register(
            "cairn_source_refreshes",
            "Source refreshes by outcome or error kind",
            refreshes.clone(),
        );
        registry.register(
            "cairn_source_last_success_timestamp_seconds",
            "Unix time of the last successful refresh",
            last_success.clone(),
        );
        registry.register(
            "cairn_source_up",
            "1 while the last refresh succeeded",
            source_up.clone(),
        );
        registry.register(
            "cairn_graph_empty_checksum_answers",
            "Requests without oci=true answered with an empty graph, as the stream has no commit checksums",
            empty_checksum_answers.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            nodes,
            edges,
            refreshes,
            last_success,
            source_up,
            empty_checksum_answers,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// A fixed label for an architecture name from data.
/// Record a built graph's node and edge counts.
pub fn record_graph(
    metrics: &Metrics,
    stream: &str,
    arch: &str,
    oci: bool,
    nodes: usize,
    edges: usize,
) {
    let labels = GraphLabels {
        stream: stream.to_string(),
        arch: arch_label(arch),
        oci: if oci { "true" } else { "false" },
    };
    metrics.nodes.get_or_create(&labels).set(nodes as i64);
    metrics.edges.get_or_create(&labels).set(edges as i64);
}

pub fn arch_label(arch: &str) -> &'static str {
    match arch {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        "s390x" => "s390x",
        "ppc64le" => "ppc64le",
        "riscv64" => "riscv64",
        _ => "other",
    }
}
