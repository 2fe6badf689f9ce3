//! `/metrics`: Prometheus text.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

/// The handler.
pub async fn get(State(state): State<AppState>) -> impl IntoResponse {
    // The lock gauges as stored now; on a store failure, the last values.
    if let Some(lock) = &state.shared.fleet_lock
        && let Err(error) = lock.load_metrics(&state.shared.metrics).await
    {
        tracing::warn!(value = %error.value, "the FleetLock gauges could not be read from the store");
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.shared.metrics.encode(),
    )
}
