//! The fleet dashboard served by `cairn serve` at `/`: every stream, rollout,
//! outcome, halt and reboot lock, as server-rendered HTML with inline SVG and
//! as JSON under `/api/`. Pages are rendered from the same [`model`] values
//! the JSON carries, work without JavaScript, and load nothing from other
//! hosts. Without a session the dashboard is read-only; see
//! `docs/dashboard.md`.
//!
//! - [`model`]: the view model.
//! - [`build`]: the model from the server's state; [`api`]: its JSON routes.
//! - [`pages`] and [`svg`]: the HTML pages and their drawings.
//! - [`session`]: login, sessions, CSRF and the actions (halt, ack).

pub mod api;
pub mod build;
pub mod model;
pub mod pages;
pub mod session;
pub mod svg;

use crate::AppState;
use axum::Router;

/// Every dashboard route: pages, JSON and actions, each answer (errors and
/// redirects too) with the dashboard's security headers.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(api::routes())
        .merge(pages::routes())
        .merge(session::routes())
        .layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                pages::security_headers(response.headers_mut());
                response
            },
        ))
}
