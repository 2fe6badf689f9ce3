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
pub mod error;
pub mod fleetlock;
pub mod metrics;
pub mod refresh;
pub mod routes;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod store;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
pub use config::Config;
pub use state::AppState;

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/graph", get(routes::graph::get))
        .route("/v2/graph/{stream}", get(routes::document::get))
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
        value: "no such resource; see /v1/graph, /v2/graph/<stream>, /healthz, /readyz, /metrics"
            .into(),
    }
}

async fn method_not_allowed() -> error::ApiError {
    error::ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        kind: "method_not_allowed",
        value: "only GET is served; the server has no write endpoint".into(),
    }
}

/// A fixed label for each route, so metrics never carry request paths.
fn route_label(path: Option<&str>) -> &'static str {
    match path {
        Some("/v1/graph") => "/v1/graph",
        Some("/v2/graph/{stream}") => "/v2/graph",
        Some("/healthz") => "/healthz",
        Some("/readyz") => "/readyz",
        Some("/metrics") => "/metrics",
        _ => "other",
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
    let state = AppState::new(
        config.streams.iter().map(|s| s.name.clone()),
        AppState::system_clock(),
        config.refresh_interval.as_secs(),
    );
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
    axum::serve(listener, router(state))
        .await
        .map_err(|source| ServeError::Listen {
            address: config.listen,
            source,
        })
}
