//! The dashboard's JSON routes (`/api/...`): the [`super::model`] values the
//! pages are rendered from.

use crate::AppState;
use axum::Router;

/// `/api/overview`, `/api/streams/{stream}`, `/api/streams/{stream}/decide`,
/// `/api/locks`.
pub fn routes() -> Router<AppState> {
    Router::new()
}
