//! Dashboard sessions: the login form, the session cookie, CSRF tokens and
//! the actions a session may take (halt a release, acknowledge a halted lock
//! group).

use super::model::Viewer;
use crate::AppState;
use axum::Router;
use axum::http::HeaderMap;

/// Every live session of this server (in memory: a restart logs everyone out).
#[derive(Debug, Default)]
pub struct Sessions {}

/// `POST /login`, `POST /logout`, `POST /ui/halt`, `POST /ui/locks/{group}/ack`.
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// Who is looking, from the request's session cookie: read-only without one.
pub fn viewer(_state: &AppState, _headers: &HeaderMap) -> Viewer {
    Viewer::default()
}

/// The CSRF token for the login form, and the cookie to set with it (the
/// form is checked against the cookie: there is no session yet).
pub fn login_form_token(
    _state: &AppState,
    _headers: &HeaderMap,
) -> (String, Option<axum::http::HeaderValue>) {
    (String::new(), None)
}
