//! `GET /v2/halts/{stream}`: the newest halt list this server accepted for a
//! stream, byte for byte as it was signed, so a client verifies it as it
//! would the registry's copy; the `Cairn-Signature` header says where its
//! signature is, `Cairn-Manifest-Digest` which manifest it came in.

use crate::error::ApiError;
use crate::routes::document::{MANIFEST_DIGEST, SIGNATURE, served_stream};
use crate::state::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Header with the stream's halt error kind, when the last read failed.
pub const HALTS_ERROR: &str = "cairn-halts-error";

/// The handler.
pub async fn get(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let stream = served_stream(&state, stream)?;
    let view = state.shared.halts.view(&stream);
    let held = view.held.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        kind: if view.on {
            "no_halt_list_yet"
        } else {
            "halts_off"
        },
        value: match &view.failing {
            Some((kind, message)) => {
                format!("no halt list accepted for {stream} ({kind}: {message})")
            }
            None if view.on => format!("no halt list accepted for {stream} yet"),
            None => format!("the document of {stream} names no halt list"),
        },
    })?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(cairn_oci::halts::HALTS_MEDIA_TYPE),
        )],
        held.record.body.clone(),
    )
        .into_response();
    let headers = response.headers_mut();
    let failing = view.failing.as_ref().map(|(kind, _)| kind.to_string());
    for (name, value) in [
        (MANIFEST_DIGEST, &held.record.manifest_digest),
        (SIGNATURE, &held.record.signature),
        (HALTS_ERROR, &failing),
    ] {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(response)
}
