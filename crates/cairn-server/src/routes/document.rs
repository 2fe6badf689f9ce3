//! `GET /v2/graph/{stream}`: the Cairn document itself, for agents that prefer
//! a server to the registry. It is served byte for byte, so agents verify it
//! exactly as they would verify the registry's copy; the `Cairn-Signature`
//! header says where its signature is.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Header naming the document's manifest digest.
pub const MANIFEST_DIGEST: &str = "cairn-manifest-digest";
/// Header naming where the signature is.
pub const SIGNATURE: &str = "cairn-signature";

/// The stream a `/v2/…/{stream}` path names, when this server serves it.
pub fn served_stream(
    state: &AppState,
    stream: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(stream) =
        stream.map_err(|e| ApiError::bad_request("invalid_params", e.body_text()))?;
    if !state.shared.streams.contains_key(&stream) {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "unknown_stream",
            value: format!("unknown stream {stream:?}"),
        });
    }
    Ok(stream)
}

/// The handler.
pub async fn get(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let stream = served_stream(&state, stream)?;
    let snapshot = state.snapshot(&stream).ok_or(ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "not_ready",
        value: format!("no document for stream {stream} yet"),
    })?;
    let document = snapshot.document.as_ref().ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "no_document",
        value: format!("stream {stream} is built from Fedora metadata and has no Cairn document"),
    })?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(cairn_oci::document::DOCUMENT_MEDIA_TYPE),
        )],
        document.bytes.clone(),
    )
        .into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (MANIFEST_DIGEST, &document.manifest_digest),
        (SIGNATURE, &document.signature),
    ] {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(response)
}
