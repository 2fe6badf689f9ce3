//! `/healthz` (the process answers) and `/readyz` (every stream has a graph,
//! and the FleetLock and reports stores, when configured, take writes).

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

/// Always 200 while the process serves.
pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// 200 when every stream has a graph; the body tells each stream's source health.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut ready = true;
    let mut streams = serde_json::Map::new();
    for name in state.shared.streams.keys() {
        let serving = state.snapshot(name).is_some();
        ready &= serving;
        let health = state.health(name);
        streams.insert(
            name.clone(),
            json!({
                "serving": serving,
                "last_success": health.last_success.map(|t| t.to_string()),
                "root_version": state.root_version(name),
                "source_error": health.failing.as_ref().map(|(kind, message)| json!({"kind": kind, "message": message})),
            }),
        );
    }
    let mut body = json!({"ready": ready, "streams": streams});
    if let Some(lock) = &state.shared.fleet_lock {
        let store = lock.ready().await;
        ready &= store.is_ok();
        body["ready"] = json!(ready);
        body["fleet_lock"] = json!({"store_ok": store.is_ok(), "store_error": store.err()});
    }
    if let Some(reports) = &state.shared.reports {
        let store = reports.ready().await;
        ready &= store.is_ok();
        body["ready"] = json!(ready);
        body["reports"] = json!({"store_ok": store.is_ok(), "store_error": store.err()});
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
