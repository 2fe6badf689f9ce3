//! `GET /v1/graph`: the Cincinnati graph API, as Fedora CoreOS's servers serve
//! it, with rollouts filtered for the caller's wariness.
//!
//! Stricter than Fedora's server in three documented ways: an unknown stream or
//! architecture and a wariness that is not a number in [0, 1] are 400 errors
//! with a JSON body (Fedora answers 404/500 with empty or plain-text bodies, or
//! clamps the wariness), and query strings longer than 4 KiB are refused.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Longest query string accepted.
pub const MAX_QUERY: usize = 4096;

/// What the client asked for.
#[derive(Debug, PartialEq)]
pub struct GraphQuery {
    /// Architecture.
    pub basearch: String,
    /// Stream.
    pub stream: String,
    /// OCI graph.
    pub oci: bool,
    /// The wariness to filter with.
    pub wariness: f64,
}

/// Parse the query string. Unknown parameters (Zincati's `os_version`,
/// `os_checksum`, `group`, `platform`, and whatever newer clients send) are ignored.
pub fn parse_query(raw: Option<&str>) -> Result<GraphQuery, ApiError> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY {
        return Err(ApiError::bad_request(
            "invalid_params",
            format!("query string longer than {MAX_QUERY} bytes"),
        ));
    }
    let mut basearch = None;
    let mut stream = None;
    let mut oci = false;
    let mut rollout_wariness = None;
    let mut node_uuid = None;
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        match key.as_ref() {
            "basearch" => basearch = Some(value.into_owned()),
            "stream" => stream = Some(value.into_owned()),
            "oci" => {
                oci = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid_params",
                            "oci must be true or false",
                        ));
                    }
                }
            }
            "rollout_wariness" => rollout_wariness = Some(value.into_owned()),
            "node_uuid" => node_uuid = Some(value.into_owned()),
            _ => {}
        }
    }
    let required = |value: Option<String>, name: &str| {
        value.filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "missing_params",
                format!("mandatory client parameters missing: {name}"),
            )
        })
    };
    let basearch = required(basearch, "basearch")?;
    let stream = required(stream, "stream")?;
    let wariness = match rollout_wariness {
        Some(text) => match text.trim().parse::<f64>() {
            Ok(w) if (0.0..=1.0).contains(&w) => w,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_params",
                    "rollout_wariness must be a number between 0 and 1",
                ));
            }
        },
        // The same hash Fedora uses; the id is used for nothing else.
        None => cairn_graph::wariness::from_app_id(node_uuid.as_deref().unwrap_or("")),
    };
    Ok(GraphQuery {
        basearch,
        stream,
        oci,
        wariness,
    })
}

/// Build a graph no client had asked for yet, on the blocking pool.
async fn build(
    state: &AppState,
    query: &GraphQuery,
    snapshot: std::sync::Arc<crate::snapshot::Snapshot>,
) -> Result<std::sync::Arc<crate::snapshot::GraphEntry>, ApiError> {
    let (arch, oci) = (query.basearch.clone(), query.oci);
    let built = tokio::task::spawn_blocking(move || snapshot.graph(&arch, oci).cloned()).await;
    match built {
        Ok(Some(entry)) => {
            crate::metrics::record_graph(
                &state.shared.metrics,
                &query.stream,
                &query.basearch,
                oci,
                entry.nodes,
                entry.edges,
            );
            Ok(entry)
        }
        Ok(None) => Err(ApiError::bad_request(
            "unknown_basearch",
            format!("unknown basearch {:?}", query.basearch),
        )),
        Err(e) => {
            tracing::error!(stream = %query.stream, error = %e, "building a graph failed");
            Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "render_failed",
                value: "the answer could not be rendered".into(),
            })
        }
    }
}

/// The handler.
pub async fn get(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = parse_query(raw.as_deref())?;
    if !state.shared.streams.contains_key(&query.stream) {
        return Err(ApiError::bad_request(
            "unknown_stream",
            format!("unknown stream {:?}", query.stream),
        ));
    }
    let snapshot = state.snapshot(&query.stream).ok_or(ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "not_ready",
        value: format!("no graph for stream {} yet", query.stream),
    })?;
    let entry = match snapshot.built_graph(&query.basearch, query.oci) {
        None => {
            return Err(ApiError::bad_request(
                "unknown_basearch",
                format!("unknown basearch {:?}", query.basearch),
            ));
        }
        Some(Some(entry)) => entry.clone(),
        // First asked for: built off the worker, like a render.
        Some(None) => build(&state, &query, snapshot.clone()).await?,
    };
    if !query.oci && entry.nodes == 0 {
        state
            .shared
            .metrics
            .empty_checksum_answers
            .get_or_create(&crate::metrics::StreamLabels {
                stream: query.stream.clone(),
            })
            .inc();
    }
    let now = (state.shared.clock)();
    let withheld = state.shared.halts.view(&query.stream).withheld(now);
    let rendered = entry
        .render(query.wariness, now.as_second(), &withheld)
        .await
        .map_err(|e| {
            tracing::error!(stream = %query.stream, error = %e, "rendering a graph answer failed");
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "render_failed",
                value: "the answer could not be rendered".into(),
            }
        })?;
    let etag = HeaderValue::from_str(&rendered.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let cache_control = HeaderValue::from_str(&format!("public, max-age={}", state.shared.max_age))
        .unwrap_or(HeaderValue::from_static("no-cache"));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| etag_matches(value, &rendered.etag))
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache_control)],
        )
            .into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control),
        ],
        rendered.body,
    )
        .into_response())
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): `W/` prefixes
/// are ignored (a gzip proxy weakens ETags), lists and `*` are allowed.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strip = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let ours = strip(etag);
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .any(|candidate| strip(candidate) == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn parses_what_zincati_sends() {
        let q = parse_query(Some(
            "basearch=x86_64&stream=stable&os_version=44.20260621.3.1&os_checksum=quay.io%2Ffedora%2Ffedora-coreos%40sha256%3Aabc&group=default&node_uuid=e0f3745b108f471cbd4883c6fbed8cdd&platform=metal&oci=true",
        ))
        .expect("valid");
        assert_eq!(q.basearch, "x86_64");
        assert!(q.oci);
        assert!((q.wariness - 0.65332).abs() < 1e-5);
        let q = parse_query(Some(
            "basearch=x86_64&stream=stable&rollout_wariness=0.250000&future=1",
        ))
        .expect("valid");
        assert_eq!(q.wariness, 0.25);
        assert!(!q.oci);
    }

    #[test]
    fn refuses_bad_parameters() {
        for bad in [
            "stream=stable",
            "basearch=&stream=stable",
            "basearch=x86_64",
            "basearch=x86_64&stream=stable&oci=yes",
            "basearch=x86_64&stream=stable&rollout_wariness=NaN",
            "basearch=x86_64&stream=stable&rollout_wariness=-1",
            "basearch=x86_64&stream=stable&rollout_wariness=2",
            "basearch=x86_64&stream=stable&rollout_wariness=abc",
        ] {
            let err = parse_query(Some(bad)).expect_err(bad);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let long = format!("basearch=x86_64&stream=stable&x={}", "a".repeat(MAX_QUERY));
        assert_eq!(
            parse_query(Some(&long)).expect_err("long").kind,
            "invalid_params"
        );
    }
}
