//! `POST /v2/alerts`: Prometheus Alertmanager's webhook (payload version 4)
//! as a second trigger of halts. Each firing alert labelled `cairn_stream`
//! and `cairn_release` (a version) halts that release of that stream, as
//! `TrippedBy::Alert` with the alert's `alertname`. Resolved alerts do
//! nothing: only the release team clears a halt.

use crate::error::ApiError;
use crate::halts::guard::add_halt;
use crate::state::AppState;
use crate::tokens::Scope;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use cairn_graph::halts::TrippedBy;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The largest payload read: Alertmanager groups alerts, and a group of a
/// few hundred fits well within it.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The most alerts acted on from one payload.
pub const MAX_ALERTS: usize = 100;

/// The payload's parts this handler reads; the rest is ignored.
#[derive(Debug, Deserialize)]
pub struct Payload {
    /// `firing` or `resolved`, for the group.
    #[serde(default)]
    pub status: String,
    /// The alerts.
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

/// One alert of a payload.
#[derive(Debug, Deserialize)]
pub struct Alert {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The handler: the token first, then the body.
pub async fn post(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .shared
        .tokens
        .authorize(request.headers(), Scope::Halt)?;
    let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "body_too_large",
            value: format!("an alert payload is at most {MAX_BODY_BYTES} bytes"),
        })?;
    let payload: Payload = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "malformed",
            format!("expected Alertmanager's webhook JSON (version 4): {e}"),
        )
    })?;
    let mut halted = Vec::new();
    let mut ignored = 0usize;
    for alert in payload.alerts.iter().take(MAX_ALERTS) {
        let (Some(stream), Some(version)) = (
            alert.labels.get("cairn_stream"),
            alert.labels.get("cairn_release"),
        ) else {
            ignored += 1;
            continue;
        };
        if alert.status != "firing" {
            ignored += 1;
            continue;
        }
        if !state.shared.streams.contains_key(stream) {
            return Err(ApiError::bad_request(
                "unknown_stream",
                format!("cairn_stream {stream:?} is not served here"),
            ));
        }
        let name = alert
            .labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| "unnamed".into());
        let digests = crate::halts::guard::release_digests(&state, stream, version, "");
        if digests.is_empty() {
            return Err(ApiError::bad_request(
                "unknown_release",
                format!("stream {stream} has no release {version:?} in its document"),
            ));
        }
        let reason = format!("Alertmanager alert {name}");
        let added = add_halt(
            &state,
            stream,
            version,
            digests,
            &reason,
            TrippedBy::Alert { name },
        )
        .await
        .map_err(|error| {
            tracing::error!(stream, version, kind = error.kind, error = %error.message, "an alert could not halt a release");
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: error.kind,
                value: format!("the halt could not be published ({}); Alertmanager will send it again", error.kind),
            }
        })?;
        halted.push(serde_json::json!({"stream": stream, "version": version, "added": added}));
    }
    Ok(Json(serde_json::json!({
        "status": payload.status,
        "halted": halted,
        "ignored": ignored,
    })))
}
