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

/// Labels of FleetLock metrics per group: a listed group's name, or
/// `unlisted` for all the others (their names come from requests).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// The group.
    pub group: String,
}

/// Labels of lease expiries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiryLabels {
    /// The group, as in [`GroupLabels`].
    pub group: String,
    /// `halt` or `release`.
    pub on_expiry: &'static str,
}

/// Labels with only an error kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// A fixed error kind.
    pub kind: &'static str,
}

/// Labels of counted reports.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportLabels {
    /// Configured stream.
    pub stream: String,
    /// An outcome word of the fixed vocabulary.
    pub outcome: &'static str,
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
    /// FleetLock slots held, per group.
    pub lock_slots_held: Family<GroupLabels, Gauge>,
    /// FleetLock slots granted (new grants, not repeats), per group.
    pub lock_grants: Family<GroupLabels, Counter>,
    /// FleetLock calls refused, by error kind.
    pub lock_denials: Family<KindLabels, Counter>,
    /// Leases that ran out unreleased.
    pub lock_lease_expiries: Family<ExpiryLabels, Counter>,
    /// Groups halted now.
    pub lock_halted_groups: Gauge,
    /// Failed calls to the lock store, by error kind.
    pub lock_backend_errors: Family<KindLabels, Counter>,
    /// Reports counted, by stream and outcome.
    pub reports_counted: Family<ReportLabels, Counter>,
    /// Reports whose id was already counted (retries), by stream.
    pub report_duplicates: Family<StreamLabels, Counter>,
    /// Reports refused, by error kind.
    pub reports_refused: Family<KindLabels, Counter>,
    /// Failed calls to the reports store, by error kind.
    pub report_backend_errors: Family<KindLabels, Counter>,
    /// Keys the per-address limit holds for the current hour.
    pub report_limit_keys: Gauge,
    /// Evaluations of a stream's counts by the guard's leader.
    pub guard_evaluations: Family<StreamLabels, Counter>,
    /// Halts added by this server, by what tripped them (`guard`, `alert`).
    pub halts_added: Family<TriggerLabels, Counter>,
    /// Failed guard steps (store, publish, webhook), by error kind.
    pub guard_errors: Family<KindLabels, Counter>,
    /// 1 while this server leads the guard.
    pub guard_leader: Gauge,
}

/// What tripped a halt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// Stream name (from the configuration).
    pub stream: String,
    /// `guard` or `alert`.
    pub trigger: &'static str,
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
        let lock_slots_held = Family::<GroupLabels, Gauge>::default();
        let lock_grants = Family::<GroupLabels, Counter>::default();
        let lock_denials = Family::<KindLabels, Counter>::default();
        let lock_lease_expiries = Family::<ExpiryLabels, Counter>::default();
        let lock_halted_groups = Gauge::default();
        let lock_backend_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "cairn_fleet_lock_slots_held",
            "FleetLock slots held, per group (unlisted groups together)",
            lock_slots_held.clone(),
        );
        registry.register(
            "cairn_fleet_lock_grants",
            "FleetLock slots granted, per group",
            lock_grants.clone(),
        );
        registry.register(
            "cairn_fleet_lock_denials",
            "FleetLock calls refused, by error kind",
            lock_denials.clone(),
        );
        registry.register(
            "cairn_fleet_lock_lease_expiries",
            "FleetLock leases that ran out unreleased",
            lock_lease_expiries.clone(),
        );
        registry.register(
            "cairn_fleet_lock_halted_groups",
            "FleetLock groups halted until an operator acks",
            lock_halted_groups.clone(),
        );
        registry.register(
            "cairn_fleet_lock_backend_errors",
            "Failed calls to the FleetLock store, by error kind",
            lock_backend_errors.clone(),
        );
        let reports_counted = Family::<ReportLabels, Counter>::default();
        let report_duplicates = Family::<StreamLabels, Counter>::default();
        let reports_refused = Family::<KindLabels, Counter>::default();
        let report_backend_errors = Family::<KindLabels, Counter>::default();
        let report_limit_keys = Gauge::default();
        registry.register(
            "cairn_reports_counted",
            "Outcome reports counted, by stream and outcome",
            reports_counted.clone(),
        );
        registry.register(
            "cairn_reports_duplicates",
            "Outcome reports whose id was already counted (retries), by stream",
            report_duplicates.clone(),
        );
        registry.register(
            "cairn_reports_refused",
            "Outcome reports refused, by error kind",
            reports_refused.clone(),
        );
        registry.register(
            "cairn_reports_backend_errors",
            "Failed calls to the reports store, by error kind",
            report_backend_errors.clone(),
        );
        registry.register(
            "cairn_reports_address_limit_keys",
            "Keys the per-address report limit holds for the current hour",
            report_limit_keys.clone(),
        );
        let guard_evaluations = Family::<StreamLabels, Counter>::default();
        let halts_added = Family::<TriggerLabels, Counter>::default();
        let guard_errors = Family::<KindLabels, Counter>::default();
        let guard_leader = Gauge::default();
        registry.register(
            "cairn_guard_evaluations",
            "Evaluations of a stream's outcome counts by the rollout guard's leader",
            guard_evaluations.clone(),
        );
        registry.register(
            "cairn_halts_added",
            "Halts this server added to a stream's halt list, by trigger",
            halts_added.clone(),
        );
        registry.register(
            "cairn_guard_errors",
            "Failed steps of the rollout guard and the alert trigger, by error kind",
            guard_errors.clone(),
        );
        registry.register(
            "cairn_guard_leader",
            "1 while this server leads the rollout guard",
            guard_leader.clone(),
        );
        Metrics {
            guard_evaluations,
            halts_added,
            guard_errors,
            guard_leader,
            reports_counted,
            report_duplicates,
            reports_refused,
            report_backend_errors,
            report_limit_keys,
            lock_slots_held,
            lock_grants,
            lock_denials,
            lock_lease_expiries,
            lock_halted_groups,
            lock_backend_errors,
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
