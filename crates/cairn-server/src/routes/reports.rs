//! `POST /v2/reports/{stream}`: a host's outcome report, counted once;
//! `GET /v2/reports/{stream}`: the counts per release.
//!
//! Posting needs a bearer token with the `report` scope. Reading needs none:
//! the answer holds only aggregate counts per release, nothing about any
//! host, and a rollout guard or a dashboard should be able to read it as it
//! reads the graph.

use crate::error::ApiError;
use crate::metrics::{KindLabels, ReportLabels, StreamLabels};
use crate::reports::Reports;
use crate::reports::limit::Taken;
use crate::reports::model::{self, ReportError};
use crate::reports::plausible::Verdict;
use crate::state::AppState;
use crate::store::reports::{Recorded, ReportRecord};
use crate::tokens::Scope;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};

/// The largest report body read.
pub const MAX_BODY_BYTES: usize = 4096;

fn collector(state: &AppState) -> Result<&Reports, ApiError> {
    state.shared.reports.as_ref().ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "not_found",
        value: "the report collector is not configured on this server".into(),
    })
}

fn stream_name(
    state: &AppState,
    stream: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let unknown = |value: String| ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "unknown_stream",
        value,
    };
    let Path(stream) = stream.map_err(|e| unknown(e.body_text()))?;
    if !state.shared.streams.contains_key(&stream) {
        return Err(unknown(format!("unknown stream {stream:?}")));
    }
    Ok(stream)
}

/// `Content-Type: application/json`, parameters (a charset) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// A refused report: the error, and when to send it again, if said.
struct Refusal {
    error: ApiError,
    retry_after: Option<u64>,
}

fn refusal(error: ApiError) -> Refusal {
    Refusal {
        error,
        retry_after: None,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// A refused report: counted by kind, logged (with the client's address
/// only when the configuration asks for it).
fn refused(state: &AppState, client: Option<IpAddr>, refusal: Refusal) -> Response {
    let kind = refusal.error.kind;
    state
        .shared
        .metrics
        .reports_refused
        .get_or_create(&KindLabels { kind })
        .inc();
    let log_address = state
        .shared
        .reports
        .as_ref()
        .is_some_and(|reports| reports.config.log_client_addresses);
    match client.filter(|_| log_address) {
        Some(client) => tracing::info!(kind, %client, "report refused"),
        None => tracing::debug!(kind, "report refused"),
    }
    refusal.into_response()
}

/// The handler of `POST`.
pub async fn post(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    match accept(&state, stream, client, request).await {
        Ok(response) => response,
        Err(refusal) => refused(&state, client, refusal),
    }
}

async fn accept(
    state: &AppState,
    stream: Result<Path<String>, PathRejection>,
    client: Option<IpAddr>,
    request: Request,
) -> Result<Response, Refusal> {
    let reports = collector(state).map_err(refusal)?;
    let (stream, report) = read_report(state, stream, request).await?;
    let now = (state.shared.clock)();
    check_step(state, reports, &stream, &report, now)?;
    // The limit before the id is recorded: a report over it is not counted
    // and its id not kept, so the same report sent later can count.
    let taken = take_allowance(reports, client, &stream, &report, now)?;
    let outcome = report.outcome;
    let record = ReportRecord {
        stream: stream.clone(),
        release: report.to,
        outcome,
        id: report.id,
    };
    let metrics = &state.shared.metrics;
    let recorded = reports.record(metrics, record, now).await;
    if !matches!(recorded, Ok(Recorded::Counted))
        && let Some(taken) = taken
    {
        reports.limit.give_back(taken);
    }
    match recorded.map_err(refusal)? {
        Recorded::Counted => {
            let labels = ReportLabels {
                stream,
                outcome: outcome.as_str(),
            };
            metrics.reports_counted.get_or_create(&labels).inc();
            Ok(Json(json!({"counted": true})).into_response())
        }
        Recorded::Duplicate => {
            let labels = StreamLabels { stream };
            metrics.report_duplicates.get_or_create(&labels).inc();
            Ok(Json(json!({"counted": false, "duplicate": true})).into_response())
        }
    }
}

/// The token, the stream, the media type, the size and the body, checked
/// in that order: the token first, so nobody else gets a body read.
async fn read_report(
    state: &AppState,
    stream: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<(String, model::Report), Refusal> {
    state
        .shared
        .tokens
        .authorize(request.headers(), Scope::Report)
        .map_err(refusal)?;
    let stream = stream_name(state, stream).map_err(refusal)?;
    if !is_json(request.headers()) {
        return Err(refusal(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            kind: "unsupported_media_type",
            value: "a report is sent as `Content-Type: application/json`".into(),
        }));
    }
    let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            refusal(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                kind: "body_too_large",
                value: format!("a report is at most {MAX_BODY_BYTES} bytes"),
            })
        })?;
    let report = model::parse_report(&bytes).map_err(|error| {
        let kind = match error {
            ReportError::UnknownOutcome(_) => "unknown_outcome",
            _ => "malformed",
        };
        refusal(ApiError::bad_request(kind, error.to_string()))
    })?;
    Ok((stream, report))
}

/// Whether the stream offered the report's step lately.
fn check_step(
    state: &AppState,
    reports: &Reports,
    stream: &str,
    report: &model::Report,
    now: jiff::Timestamp,
) -> Result<(), Refusal> {
    match reports
        .graphs
        .judge(stream, report.from.as_ref(), &report.to, now)
    {
        Verdict::Plausible => Ok(()),
        Verdict::Implausible => Err(refusal(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "implausible",
            value: format!(
                "no graph stream {stream} served in the last 72 hours has this step from one release to the other (version and digest must both match)"
            ),
        })),
        // Not a 4xx: the agent would drop a good report. It tries again.
        Verdict::NoGraphYet => {
            let error = ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "not_ready",
                value: format!(
                    "stream {stream} has no graph yet to check reports against; send the report again later"
                ),
            };
            Err(Refusal {
                error,
                retry_after: Some(state.shared.max_age),
            })
        }
    }
}

/// Take the report from its source address's allowance for the hour.
fn take_allowance(
    reports: &Reports,
    client: Option<IpAddr>,
    stream: &str,
    report: &model::Report,
    now: jiff::Timestamp,
) -> Result<Option<Taken>, Refusal> {
    // Without a peer address (a router served without connection info, in
    // tests) there is nothing to limit by.
    let Some(address) = client.filter(|address| !reports.config.exempt(*address)) else {
        return Ok(None);
    };
    reports
        .limit
        .take(address, stream, &report.to.digest, report.outcome, now)
        .map_err(|over| {
            let error = ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "address_limit",
                value: if over.full {
                    "the per-address limit holds as many sources as it can this hour; not counted, send it again next hour".into()
                } else {
                    format!(
                        "this address already had {} report(s) of this outcome for this release this hour; not counted",
                        reports.config.per_address_per_hour
                    )
                },
            };
            Refusal {
                error,
                retry_after: Some(over.retry_after),
            }
        })
}

/// The handler of `GET`.
pub async fn get(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let reports = collector(&state)?;
    let stream = stream_name(&state, stream)?;
    let now = (state.shared.clock)();
    let tally = reports.tally(&state.shared.metrics, &stream, now).await?;
    Ok(Json(json!({
        "stream": stream,
        "now": now.to_string(),
        "missing_after_seconds": reports.config.missing_after.as_secs(),
        "releases": model::summarize(&tally),
    }))
    .into_response())
}
