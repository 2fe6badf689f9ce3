//! The dashboard's HTML pages, rendered on the server from the view model.

use crate::AppState;
use axum::Router;

/// `/`, `/streams/{stream}`, `/locks`, `/login`, `/static/...`.
pub fn routes() -> Router<AppState> {
    Router::new()
}
