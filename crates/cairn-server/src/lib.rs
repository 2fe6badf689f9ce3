//! Cairn's optional graph server.
//!
//! It serves the Cincinnati `/v1/graph` API so that stock Zincati hosts keep
//! working, and Cairn documents on `/v2/graph/<stream>` for agents that would
//! rather ask a server than a registry. It keeps no state of its own beyond a
//! cache: each stream's source (Fedora metadata, a Cairn document, or a live
//! registry scan) is refreshed in the background, the last good graph is
//! served through any fault, and answers are rendered once per distinct set
//! of visible rollouts, then served from memory.

#![forbid(unsafe_code)]

pub mod config;
pub mod dashboard;
pub mod error;
pub mod fleetlock;
pub mod halts;
pub mod metrics;
pub mod refresh;
pub mod reports;
pub mod routes;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod store;
pub mod tokens;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
pub use config::Config;
pub use state::AppState;

/// Every route of the server. FleetLock and report routes exist only when
/// configured; they need the peer address, so serve this router with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    if state.shared.fleet_lock.is_some() {
        use routes::fleetlock;
        router = router
            .route("/v1/pre-reboot", post(fleetlock::pre_reboot))
            .route("/v1/steady-state", post(fleetlock::steady_state))
            .route("/v1/x-cairn/boot-failed", post(fleetlock::boot_failed))
            .route("/v1/x-cairn/locks", get(fleetlock::status))
            .route(
                "/v1/x-cairn/locks/{group}/release",
                post(fleetlock::release),
            )
            .route("/v1/x-cairn/locks/{group}/ack", post(fleetlock::ack));
    }
    if state.shared.reports.is_some() {
        router = router.route(
            "/v2/reports/{stream}",
            get(routes::reports::get).post(routes::reports::post),
        );
    }
    if state.shared.halts.guard.is_some() {
        router = router.route("/v2/alerts", post(routes::alerts::post));
    }
    if state.shared.dashboard.enabled {
        router = router.merge(dashboard::routes());
    }
    router
        .route("/v1/graph", get(routes::graph::get))
        .route("/v2/graph/{stream}", get(routes::document::get))
        .route("/v2/halts/{stream}", get(routes::halts::get))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::metrics::get))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found() -> error::ApiError {
    error::ApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        kind: "not_found",
        value: "no such resource; see /v1/graph, /v2/graph/<stream>, /v2/halts/<stream>, /healthz, /readyz, /metrics"
            .into(),
    }
}

async fn method_not_allowed() -> error::ApiError {
    error::ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        kind: "method_not_allowed",
        value: "this method is not served here: graph routes take GET, FleetLock calls POST, reports GET or POST".into(),
    }
}

/// A fixed label for each route, so metrics never carry request paths.
fn route_label(path: Option<&str>) -> &'static str {
    match path {
        Some("/v1/graph") => "/v1/graph",
        Some("/v2/graph/{stream}") => "/v2/graph",
        Some("/v2/halts/{stream}") => "/v2/halts",
        Some("/v2/alerts") => "/v2/alerts",
        Some("/v2/reports/{stream}") => "/v2/reports",
        Some("/healthz") => "/healthz",
        Some("/readyz") => "/readyz",
        Some("/metrics") => "/metrics",
        Some("/v1/pre-reboot") => "/v1/pre-reboot",
        Some("/v1/steady-state") => "/v1/steady-state",
        Some("/v1/x-cairn/boot-failed") => "/v1/x-cairn/boot-failed",
        Some("/v1/x-cairn/locks") => "/v1/x-cairn/locks",
        Some("/v1/x-cairn/locks/{group}/release") => "/v1/x-cairn/locks/release",
        Some("/v1/x-cairn/locks/{group}/ack") => "/v1/x-cairn/locks/ack",
        // The dashboard's routes, by kind: templates, never request paths.
        Some(path) if path.starts_with("/api/") => "/api",
        Some(path) if path.starts_with("/static/") => "/static",
        Some(_) => "dashboard",
        None => "other",
    }
}

async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = route_label(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let metrics = &state.shared.metrics;
    metrics
        .requests
        .get_or_create(&metrics::RouteLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&metrics::RouteOnly { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Registry settings are unusable.
    #[error(transparent)]
    Registry(#[from] cairn_oci::OciError),
    /// The refresh threads could not start.
    #[error("starting the refresh threads: {0}")]
    Refresh(std::io::Error),
    /// The FleetLock store could not be opened.
    #[error("[fleet_lock]: {0}")]
    Store(#[from] store::StoreError),
    /// The reports store could not be opened.
    #[error("[reports]: {0}")]
    ReportsStore(store::StoreError),
    /// The halts store could not be opened.
    #[error("[halts]: {0}")]
    HaltsStore(store::StoreError),
    /// No random salt could be drawn for the per-address limit.
    #[error("[reports]: drawing the per-address limit's salt: {0}")]
    Salt(std::io::Error),
    /// The listen address is unusable.
    #[error("listening on {address}: {source}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Start the refreshers and serve until the process ends.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let credentials = match &config.authfile {
        Some(path) => cairn_oci::auth::Credentials::from_file(path)?,
        None => cairn_oci::auth::Credentials::from_default_files()?,
    };
    let client = cairn_oci::RegistryClient::new(cairn_oci::ClientOptions {
        credentials,
        insecure_registries: config.insecure_registries.clone(),
        registries_conf: Ok(config.registries_conf.clone()),
        timeout: config.timeout,
        ..cairn_oci::ClientOptions::default()
    })?;
    let clock = AppState::system_clock();
    let fleet_lock = match &config.fleet_lock {
        Some(section) => Some(open_fleet_lock(section, clock()).await?),
        None => None,
    };
    let stream_names = || config.streams.iter().map(|s| s.name.clone());
    let reports = match &config.reports {
        Some(section) => {
            let reports = open_reports(section, stream_names()).await?;
            // Before the first refresh: reports are judged on the graphs
            // served before the restart at once. A store that is down now
            // does not stop the start (etcd connects lazily).
            if let Err(error) = reports.restore_steps(clock()).await {
                tracing::error!(%error, "the graphs served before this start could not be read; until 72 hours have passed, reports of steps only they offered are refused");
            }
            Some(reports)
        }
        None => None,
    };
    let halts = open_halts(&config, stream_names()).await?;
    // Before the first refresh: a restarted copy accepts no list older than
    // what it held.
    if let Err(error) = halts.restore().await {
        tracing::error!(%error, "the halt lists kept before this start could not be read; the documents' halts.min_sequence is the only floor until a list is read");
    }
    let state = AppState::with_dashboard(
        stream_names(),
        clock,
        config.refresh_interval.as_secs(),
        state::Services {
            fleet_lock,
            reports,
            tokens: config.tokens.clone(),
            halts: Some(std::sync::Arc::new(halts)),
        },
        config.dashboard.clone(),
    );
    if state.shared.reports.is_some() {
        let ticking = state.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(reports::TICK);
            loop {
                interval.tick().await;
                if let Some(reports) = &ticking.shared.reports {
                    reports
                        .tick(&ticking.shared.metrics, (ticking.shared.clock)())
                        .await;
                }
            }
        });
    }
    if state.shared.halts.guard.is_some() {
        tokio::spawn(halts::guard::run(state.clone()));
    }
    if let Some(lock) = &state.shared.fleet_lock {
        if let Err(error) = lock.load_metrics(&state.shared.metrics).await {
            tracing::error!(value = %error.value, "reading the FleetLock groups for metrics failed");
        }
        let ticking = state.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(fleetlock::TICK);
            loop {
                interval.tick().await;
                if let Some(lock) = &ticking.shared.fleet_lock {
                    lock.tick(&ticking.shared.metrics, (ticking.shared.clock)())
                        .await;
                }
            }
        });
    }
    let sources = config
        .streams
        .iter()
        .map(|stream| refresh::StreamSource::new(stream, client.clone(), config.timeout))
        .collect();
    // Held until serving ends: dropping it stops the refreshes.
    let _refreshers = refresh::Refreshers::start(sources, &state, config.refresh_interval)
        .map_err(ServeError::Refresh)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            address: config.listen,
            source,
        })?;
    // With port 0 the kernel picks the port: log the one actually bound.
    let bound = listener.local_addr().map_err(|source| ServeError::Listen {
        address: config.listen,
        source,
    })?;
    tracing::info!(address = %bound, "serving");
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .await
        .map_err(|source| ServeError::Listen {
            address: config.listen,
            source,
        })
}

/// Open the configured FleetLock store. The embedded one gives every lease
/// the grace of the time the server was down, judged at `now`; etcd's leases
/// run on etcd's clock and need none.
pub async fn open_fleet_lock(
    section: &config::FleetLockConfig,
    now: jiff::Timestamp,
) -> Result<fleetlock::FleetLock, store::StoreError> {
    let backend = match &section.store {
        config::StoreConfig::Embedded { database } => {
            let (store, opened) = store::embedded::EmbeddedStore::open(database, now)?;
            if opened.grace.is_positive() {
                tracing::info!(
                    seconds = opened.grace.as_secs(),
                    "every FleetLock lease was extended by the time the server was down"
                );
            }
            store::locks::LockBackend::Embedded(store)
        }
        #[cfg(feature = "etcd")]
        config::StoreConfig::Etcd {
            endpoints,
            key_prefix,
        } => store::locks::LockBackend::Etcd(Box::new(
            store::etcd::EtcdStore::connect(endpoints, key_prefix).await?,
        )),
        #[cfg(not(feature = "etcd"))]
        config::StoreConfig::Etcd { .. } => return Err(store::StoreError::NotBuilt),
    };
    Ok(fleetlock::FleetLock::new(section.clone(), backend))
}

/// Open the configured reports store and the collector for these streams.
pub async fn open_reports(
    section: &config::ReportsConfig,
    streams: impl IntoIterator<Item = String>,
) -> Result<reports::Reports, ServeError> {
    let windows = store::reports::Windows::of(section);
    let backend = match &section.store {
        config::StoreConfig::Embedded { database } => store::reports::ReportBackend::Embedded(
            store::reports_embedded::EmbeddedReports::open(database, windows)
                .map_err(ServeError::ReportsStore)?,
        ),
        #[cfg(feature = "etcd")]
        config::StoreConfig::Etcd {
            endpoints,
            key_prefix,
        } => store::reports::ReportBackend::Etcd(Box::new(
            store::reports_etcd::EtcdReports::connect(endpoints, key_prefix, windows)
                .await
                .map_err(ServeError::ReportsStore)?,
        )),
        #[cfg(not(feature = "etcd"))]
        config::StoreConfig::Etcd { .. } => {
            return Err(ServeError::ReportsStore(store::StoreError::NotBuilt));
        }
    };
    reports::Reports::new(section.clone(), backend, streams).map_err(ServeError::Salt)
}

/// Open the `[halts]` store (if configured) and the guard for these streams.
pub async fn open_halts(
    config: &Config,
    streams: impl IntoIterator<Item = String>,
) -> Result<halts::Halts, ServeError> {
    let Some(section) = &config.halts else {
        return Ok(halts::Halts::new(streams, Vec::new(), None, None));
    };
    let backend = match &section.store {
        config::StoreConfig::Embedded { database } => store::halts::HaltBackend::Embedded(
            store::halts_embedded::EmbeddedHalts::open(database).map_err(ServeError::HaltsStore)?,
        ),
        #[cfg(feature = "etcd")]
        config::StoreConfig::Etcd {
            endpoints,
            key_prefix,
        } => store::halts::HaltBackend::Etcd(Box::new(
            store::halts_etcd::EtcdHalts::connect(endpoints, key_prefix)
                .await
                .map_err(ServeError::HaltsStore)?,
        )),
        #[cfg(not(feature = "etcd"))]
        config::StoreConfig::Etcd { .. } => {
            return Err(ServeError::HaltsStore(store::StoreError::NotBuilt));
        }
    };
    let guard = config
        .guard
        .as_ref()
        .map(|guard| halts::guard::Guard::new(guard.clone(), config))
        .transpose()?;
    Ok(halts::Halts::new(
        streams,
        section.halt_keys.clone(),
        Some(backend),
        guard,
    ))
}
