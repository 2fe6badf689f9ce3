//! API errors: `{"kind", "value"}` JSON with a 4xx or 5xx status, as the
//! Cincinnati protocol describes and Zincati decodes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short machine-readable kind.
    pub kind: &'static str,
    /// Human-readable detail; never contains request identifiers.
    pub value: String,
}

impl ApiError {
    /// 400 with a kind.
    pub fn bad_request(kind: &'static str, value: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind,
            value: value.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"kind": self.kind, "value": self.value});
        (self.status, axum::Json(body)).into_response()
    }
}
