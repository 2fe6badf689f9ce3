//! The dashboard's JSON routes (`/api/...`): the [`super::model`] values the
//! pages are rendered from. Answers are never cached (`Cache-Control:
//! no-store`): they hold the server's time and live state.

use super::build::{self, StreamQuery};
use super::model::Viewer;
use crate::AppState;
use crate::error::ApiError;
use crate::tokens::Scope;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// `/api/overview`, `/api/streams/{stream}`, `/api/streams/{stream}/decide`,
/// `/api/locks`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/streams/{stream}", get(stream_page))
        .route("/api/streams/{stream}/decide", get(decide))
        .route("/api/locks", get(locks))
}

fn no_store(value: &impl Serialize) -> Response {
    let mut response = Json(value).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn stream_name(stream: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    stream.map(|Path(s)| s).map_err(|e| ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "unknown_stream",
        value: e.body_text(),
    })
}

async fn overview(State(state): State<AppState>) -> Response {
    let now = (state.shared.clock)();
    no_store(&build::overview(&state, now).await)
}

async fn stream_page(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let stream = stream_name(stream)?;
    let query = StreamQuery::parse(raw.as_deref())?;
    let now = (state.shared.clock)();
    let page = build::stream_page(&state, &stream, &query, now).await?;
    Ok(no_store(&page))
}

async fn decide(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let stream = stream_name(stream)?;
    let query = StreamQuery::parse(raw.as_deref())?;
    let now = (state.shared.clock)();
    let decision = build::decide_off_worker(
        &state,
        &stream,
        query.arch,
        query.booted,
        query.wariness,
        now,
    )
    .await?;
    Ok(no_store(&decision))
}

/// The viewer of `/api/locks`: a bearer token with `lock-admin` makes an
/// admin (for scripts); a token that is not accepted is refused, never
/// taken as a read-only viewer. Without one, the session decides.
pub fn lock_viewer(state: &AppState, headers: &HeaderMap) -> Result<Viewer, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        state.shared.tokens.authorize(headers, Scope::LockAdmin)?;
        return Ok(Viewer {
            can_admin_locks: true,
            ..Viewer::default()
        });
    }
    Ok(super::session::viewer(state, headers))
}

async fn locks(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let viewer = lock_viewer(&state, &headers)?;
    let now = (state.shared.clock)();
    Ok(no_store(&build::locks(&state, now, &viewer).await?))
}
