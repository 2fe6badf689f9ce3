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
