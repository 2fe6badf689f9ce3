//! Helpers shared by the server's test binaries.

#![allow(dead_code)] // each test binary uses its own subset

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cairn_server::{AppState, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A file of the shipped Fedora data.
pub fn data(path: &str) -> Vec<u8> {
    let full = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fcos")
        .join(path);
    std::fs::read(full).expect("testdata")
}

/// GET through the router, with no socket: status and body text.
pub async fn get(state: &AppState, uri: &str) -> (StatusCode, String) {
    let response = router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Where the server under test keeps its state (locks, report counts).
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Embedded,
    #[cfg(feature = "etcd")]
    Etcd,
}

/// Run each named `async fn NAME(backend: Backend)` of the calling test file
/// once per backend, as `embedded::NAME` and, with the `etcd` feature,
/// `etcd::NAME` (the caller starts a one-member etcd per test).
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Embedded).await
                }
            )*
        }
        #[cfg(feature = "etcd")]
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Etcd).await
                }
            )*
        }
    };
}

/// What a dashboard form POST answered: its status, `Location` and every
/// `Set-Cookie`.
#[derive(Debug)]
pub struct Posted {
    pub status: StatusCode,
    pub location: String,
    pub cookies: Vec<String>,
}

impl Posted {
    /// The `?notice=` kind of the redirect.
    pub fn notice(&self) -> &str {
        self.location
            .split_once("?notice=")
            .map_or("", |(_, notice)| notice)
    }
}

/// POST `fields` form-encoded to `uri` through the router, from `peer` (as
/// a server with connect info sees it; `None`: no peer known), with these
/// extra headers.
pub async fn post_form(
    state: &AppState,
    uri: &str,
    peer: Option<&str>,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> Posted {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request =
        Request::post(uri).header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::from(body)).expect("request");
    if let Some(peer) = peer {
        let peer: std::net::SocketAddr = peer.parse().expect("peer address");
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
    }
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("response");
    let text = |value: &axum::http::HeaderValue| value.to_str().expect("ASCII").to_string();
    Posted {
        status: response.status(),
        location: response
            .headers()
            .get("location")
            .map(text)
            .unwrap_or_default(),
        cookies: response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(text)
            .collect(),
    }
}

/// Log in to the dashboard with `token` from loopback, as the login form
/// does: the `Cookie` header of the session and the session's CSRF token.
pub async fn dashboard_login(state: &AppState, token: &str) -> (String, String) {
    use cairn_server::dashboard::session;
    let (csrf, _) = session::login_form_token(state, &axum::http::HeaderMap::new());
    let cookie = format!("{}={csrf}", session::LOGIN_CSRF_COOKIE);
    let posted = post_form(
        state,
        "/login",
        Some("127.0.0.1:40000"),
        &[("cookie", &cookie)],
        &[("csrf", &csrf), ("token", token)],
    )
    .await;
    assert_eq!(posted.location, "/?notice=logged_in", "{posted:?}");
    let session = posted
        .cookies
        .iter()
        .find_map(|c| c.strip_prefix("__Host-cairn_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let cookie = format!("__Host-cairn_session={session}");
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("cookie", cookie.parse().expect("cookie"));
    let csrf = session::viewer(state, &headers)
        .csrf
        .expect("a session CSRF token");
    (cookie, csrf)
}
