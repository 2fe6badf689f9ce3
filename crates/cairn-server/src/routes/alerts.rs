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

/// The most characters of an `alertname` kept in a halt's `tripped_by` and
/// reason; a longer name is cut, so the list stays within its bounds.
pub const MAX_ALERT_NAME_CHARS: usize = 200;

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
    // Alert by alert: a bad one is skipped and counted, never a reason to
    // refuse the rest (Alertmanager does not send a 4xx payload again).
    let mut halted = Vec::new();
    let mut skipped = Vec::new();
    let mut ignored = 0usize;
    let mut unpublished: Option<&'static str> = None;
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
        let mut skip = |kind: &'static str, why: String| {
            crate::halts::guard::failed(&state, kind);
            tracing::warn!(stream, version, kind, "an alert was skipped: {why}");
            skipped.push(serde_json::json!({"stream": stream, "version": version, "kind": kind}));
        };
        if !state.shared.streams.contains_key(stream) {
            skip(
                "alert_unknown_stream",
                format!("cairn_stream {stream:?} is not served here"),
            );
            continue;
        }
        let digests = crate::halts::guard::release_digests(&state, stream, version, "");
        if digests.is_empty() {
            skip(
                "alert_unknown_release",
                format!("stream {stream} has no release {version:?} in its document"),
            );
            continue;
        }
        let name: String = alert
            .labels
            .get("alertname")
            .map_or("unnamed", String::as_str)
            .chars()
            .take(MAX_ALERT_NAME_CHARS)
            .collect();
        let reason = format!("Alertmanager alert {name}");
        match add_halt(
            &state,
            stream,
            version,
            digests,
            &reason,
            TrippedBy::Alert { name },
        )
        .await
        {
            Ok(added) => halted
                .push(serde_json::json!({"stream": stream, "version": version, "added": added})),
            Err(error) => {
                tracing::error!(stream, version, kind = error.kind, error = %error.message, "an alert could not halt a release");
                unpublished.get_or_insert(error.kind);
            }
        }
    }
    if let Some(kind) = unpublished {
        // The halts published stand; a second delivery finds them in effect.
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind,
            value: format!(
                "a halt could not be published ({kind}); Alertmanager will send the payload again"
            ),
        });
    }
    Ok(Json(serde_json::json!({
        "status": payload.status,
        "halted": halted,
        "skipped": skipped,
        "ignored": ignored,
    })))
}
