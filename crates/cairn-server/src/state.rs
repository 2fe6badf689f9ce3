//! The server's shared state, passed explicitly to every handler.

use crate::fleetlock::FleetLock;
use crate::halts::Halts;
use crate::metrics::Metrics;
use crate::reports::Reports;
use crate::reports::plausible::Served;
use crate::snapshot::Snapshot;
use crate::tokens::Tokens;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// Where handlers get the time: the real clock, or a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Cheap to clone: everything is behind one `Arc`.
#[derive(Clone)]
pub struct AppState {
    /// The shared part.
    pub shared: Arc<Shared>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// What every handler can see.
#[allow(missing_debug_implementations)] // holds a clock closure
pub struct Shared {
    /// Streams by name.
    pub streams: BTreeMap<String, StreamSlot>,
    /// Metrics.
    pub metrics: Metrics,
    /// The time.
    pub clock: Clock,
    /// `Cache-Control: max-age` of graph answers, in seconds.
    pub max_age: u64,
    /// FleetLock, when configured.
    pub fleet_lock: Option<FleetLock>,
    /// The outcome-report collector, when configured.
    pub reports: Option<Reports>,
    /// Bearer tokens.
    pub tokens: Arc<Tokens>,
    /// Halt lists of every stream.
    pub halts: Arc<Halts>,
    /// The `[dashboard]` settings.
    pub dashboard: crate::config::DashboardConfig,
    /// Dashboard sessions.
    pub sessions: crate::dashboard::session::Sessions,
}

/// The services beside the graphs, each present when configured.
#[derive(Debug, Default)]
pub struct Services {
    /// FleetLock.
    pub fleet_lock: Option<FleetLock>,
    /// The outcome-report collector.
    pub reports: Option<Reports>,
    /// Bearer tokens.
    pub tokens: Arc<Tokens>,
    /// Halt lists; `None`: read and kept in memory only, with no halt keys.
    pub halts: Option<Arc<Halts>>,
}

/// One stream: the graph being served and how its source is doing.
#[derive(Debug, Default)]
pub struct StreamSlot {
    /// The last good snapshot; `None` until the first refresh succeeds.
    pub snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Source health.
    pub health: Mutex<Health>,
    /// The version of the trust root the source verifies with; `None`: the
    /// source has no trust root (no key configured, or not a document).
    pub root_version: Mutex<Option<u64>>,
}

/// How a source is doing.
#[derive(Debug, Default, Clone)]
pub struct Health {
    /// Last successful refresh.
    pub last_success: Option<Timestamp>,
    /// The current failure, if the last refresh failed: kind and message.
    pub failing: Option<(&'static str, String)>,
}

impl AppState {
    /// State for these streams, with no graph yet.
    pub fn new(streams: impl IntoIterator<Item = String>, clock: Clock, max_age: u64) -> Self {
        Self::with_services(streams, clock, max_age, None, Arc::default())
    }

    /// State with FleetLock (when given) and tokens as well.
    pub fn with_services(
        streams: impl IntoIterator<Item = String>,
        clock: Clock,
        max_age: u64,
        fleet_lock: Option<FleetLock>,
        tokens: Arc<Tokens>,
    ) -> Self {
        Self::with(
            streams,
            clock,
            max_age,
            Services {
                fleet_lock,
                reports: None,
                tokens,
                halts: None,
            },
        )
    }

    /// State with every service given.
    pub fn with(
        streams: impl IntoIterator<Item = String>,
        clock: Clock,
        max_age: u64,
        services: Services,
    ) -> Self {
        Self::with_dashboard(streams, clock, max_age, services, Default::default())
    }

    /// State with every service and the `[dashboard]` settings given.
    pub fn with_dashboard(
        streams: impl IntoIterator<Item = String>,
        clock: Clock,
        max_age: u64,
        services: Services,
        dashboard: crate::config::DashboardConfig,
    ) -> Self {
        let streams: BTreeMap<String, StreamSlot> = streams
            .into_iter()
            .map(|s| (s, StreamSlot::default()))
            .collect();
        let halts = services.halts.unwrap_or_else(|| {
            Arc::new(Halts::new(streams.keys().cloned(), Vec::new(), None, None))
        });
        let metrics = Metrics::default();
        // Every stream has its health series from the start, so a source that
        // never comes up is visible (and alertable) too.
        for stream in streams.keys() {
            let labels = crate::metrics::StreamLabels {
                stream: stream.clone(),
            };
            metrics.last_success.get_or_create(&labels).set(0.0);
            metrics.source_up.get_or_create(&labels).set(0);
        }
        AppState {
            shared: Arc::new(Shared {
                streams,
                metrics,
                clock,
                max_age,
                fleet_lock: services.fleet_lock,
                reports: services.reports,
                tokens: services.tokens,
                halts,
                sessions: crate::dashboard::session::Sessions::new(dashboard.session_lifetime),
                dashboard,
            }),
        }
    }

    /// The real clock.
    pub fn system_clock() -> Clock {
        Arc::new(Timestamp::now)
    }

    /// The snapshot being served for a stream.
    pub fn snapshot(&self, stream: &str) -> Option<Arc<Snapshot>> {
        let slot = self.shared.streams.get(stream)?;
        slot.snapshot.read().ok()?.clone()
    }

    /// Serve a new snapshot for a stream. With the collector, its graphs
    /// become the steps reports are checked against (building those not
    /// built yet: called on the refresh runtime, off the request workers);
    /// the graph set for the reports store to keep, when it is new
    /// ([`AppState::keep_steps`]).
    pub fn install(&self, stream: &str, snapshot: Snapshot) -> Option<Served> {
        let served = self.shared.reports.as_ref().and_then(|reports| {
            let now = (self.shared.clock)();
            reports.graphs.serve(stream, &snapshot.full_graphs(), now)
        });
        if let Some(slot) = self.shared.streams.get(stream)
            && let Ok(mut current) = slot.snapshot.write()
        {
            *current = Some(Arc::new(snapshot));
        }
        served
    }

    /// Keep a graph set [`AppState::install`] gave in the reports store, so
    /// a restart judges reports on it too. A failure is logged and counted.
    pub async fn keep_steps(&self, stream: &str, served: &Served) {
        if let Some(reports) = &self.shared.reports {
            let now = (self.shared.clock)();
            reports
                .keep_steps(&self.shared.metrics, stream, served, now)
                .await;
        }
    }

    /// Stop serving a stream's graph (its document is no longer trusted):
    /// its requests get 503 and `/readyz` fails until a trusted one is read.
    /// Returns whether a graph was served.
    pub fn withdraw(&self, stream: &str) -> bool {
        self.shared
            .streams
            .get(stream)
            .and_then(|slot| slot.snapshot.write().ok())
            .is_some_and(|mut current| current.take().is_some())
    }

    /// The trust root version a stream's source verifies with.
    pub fn root_version(&self, stream: &str) -> Option<u64> {
        let slot = self.shared.streams.get(stream)?;
        *slot.root_version.lock().ok()?
    }

    /// Record the trust root version a stream's source verifies with.
    pub fn set_root_version(&self, stream: &str, version: Option<u64>) {
        if let Some(slot) = self.shared.streams.get(stream)
            && let Ok(mut current) = slot.root_version.lock()
        {
            *current = version;
        }
    }

    /// Source health of a stream.
    pub fn health(&self, stream: &str) -> Health {
        self.shared
            .streams
            .get(stream)
            .and_then(|slot| slot.health.lock().ok().map(|h| h.clone()))
            .unwrap_or_default()
    }

    /// Replace the health record; returns the previous one.
    pub fn set_health(&self, stream: &str, health: Health) -> Health {
        match self
            .shared
            .streams
            .get(stream)
            .and_then(|slot| slot.health.lock().ok())
        {
            Some(mut current) => std::mem::replace(&mut current, health),
            None => Health::default(),
        }
    }
}
