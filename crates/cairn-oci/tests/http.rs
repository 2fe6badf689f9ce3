//! Client behaviour no local registry exhibits: `Link` pagination (Debian's
//! registry ignores `n`), retries on 429 and 5xx, and timeouts. A small axum
//! server plays the registry for just those replies.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use cairn_oci::{ClientOptions, RegistryClient, Repository};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    address.to_string()
}

fn client(host: &str, timeout: Duration) -> (RegistryClient, Repository) {
    let options = ClientOptions {
        insecure_registries: vec![host.to_string()],
        timeout,
        retries: 3,
        backoff: Duration::from_millis(10),
        ..ClientOptions::default()
    };
    let client = RegistryClient::new(options).expect("client");
    (
        client,
        Repository::parse(&format!("{host}/acme/os")).expect("repo"),
    )
}

async fn paged(Query(query): Query<HashMap<String, String>>) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    let body = match query.get("last").map(String::as_str) {
        None => {
            headers.insert(
                "link",
                HeaderValue::from_static("</v2/acme/os/tags/list?n=2&last=b>; rel=\"next\""),
            );
            r#"{"name":"acme/os","tags":["a","b"]}"#
        }
        Some("b") => {
            headers.insert(
                "link",
                HeaderValue::from_static("</v2/acme/os/tags/list?n=2&last=d>; rel=\"next\""),
            );
            r#"{"name":"acme/os","tags":["c","d"]}"#
        }
        _ => r#"{"name":"acme/os","tags":["e"]}"#,
    };
    (headers, body)
}

#[tokio::test]
async fn tag_lists_follow_link_headers() {
    let host =
        serve(axum::Router::new().route("/v2/acme/os/tags/list", axum::routing::get(paged))).await;
    let (client, repo) = client(&host, Duration::from_secs(5));
    let tags = client.list_tags(&repo).await.expect("tags");
    assert_eq!(tags, vec!["a", "b", "c", "d", "e"]);
    assert_eq!(client.request_count(), 3);
}

async fn flaky(State(calls): State<Arc<AtomicU32>>) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    match calls.fetch_add(1, Ordering::SeqCst) {
        0 => {
            headers.insert("retry-after", HeaderValue::from_static("1"));
            (StatusCode::TOO_MANY_REQUESTS, headers, "slow down")
        }
        1 => (StatusCode::SERVICE_UNAVAILABLE, headers, "busy"),
        _ => (StatusCode::OK, headers, r#"{"tags":["ok"]}"#),
    }
}

#[tokio::test]
async fn retries_429_and_5xx_honouring_retry_after() {
    let calls = Arc::new(AtomicU32::new(0));
    let app = axum::Router::new()
        .route("/v2/acme/os/tags/list", axum::routing::get(flaky))
        .with_state(Arc::clone(&calls));
    let host = serve(app).await;
    let (client, repo) = client(&host, Duration::from_secs(5));
    let started = std::time::Instant::now();
    assert_eq!(
        client.list_tags(&repo).await.expect("third time lucky"),
        vec!["ok"]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
}

async fn always_500() -> impl IntoResponse {
    (StatusCode::INTERNAL_SERVER_ERROR, "storage backend down")
}

#[tokio::test]
async fn persistent_errors_are_reported_with_status_and_body() {
    let host =
        serve(axum::Router::new().route("/v2/acme/os/tags/list", axum::routing::get(always_500)))
            .await;
    let (client, repo) = client(&host, Duration::from_secs(5));
    let err = client.list_tags(&repo).await.expect_err("500");
    assert_eq!(err.kind(), "status");
    let text = err.to_string();
    assert!(
        text.contains("HTTP 500") && text.contains("storage backend down") && text.contains(&host),
        "{text}"
    );
    assert_eq!(client.request_count(), 4, "one try and three retries");
}

async fn hang() -> impl IntoResponse {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "too late"
}

#[tokio::test]
async fn requests_time_out() {
    let host =
        serve(axum::Router::new().route("/v2/acme/os/tags/list", axum::routing::get(hang))).await;
    let (client, repo) = client(&host, Duration::from_millis(200));
    let err = client.list_tags(&repo).await.expect_err("timeout");
    assert_eq!(err.kind(), "transport", "{err}");
}

async fn garbage() -> impl IntoResponse {
    "this is not JSON"
}

#[tokio::test]
async fn malformed_replies_name_what_was_read() {
    let host =
        serve(axum::Router::new().route("/v2/acme/os/tags/list", axum::routing::get(garbage)))
            .await;
    let (client, repo) = client(&host, Duration::from_secs(5));
    let err = client.list_tags(&repo).await.expect_err("garbage");
    assert_eq!(err.kind(), "invalid");
    assert!(err.to_string().contains("tag list of"), "{err}");
}

#[tokio::test]
async fn https_is_required_unless_the_registry_is_listed_as_insecure() {
    let host =
        serve(axum::Router::new().route("/v2/acme/os/tags/list", axum::routing::get(paged))).await;
    let client = RegistryClient::new(ClientOptions {
        retries: 0,
        timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    })
    .expect("client");
    let repo = Repository::parse(&format!("{host}/acme/os")).expect("repo");
    // Plain HTTP is never tried: the TLS handshake with an HTTP server fails,
    // and the error says why and how to list the registry.
    let err = client.list_tags(&repo).await.expect_err("no TLS here");
    assert_eq!(err.kind(), "plain_http", "{err}");
    assert!(
        err.to_string()
            .contains(&format!("pass --insecure-registry {host}")),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("https://{host}")),
        "{err}"
    );
    let url_err = client
        .get_url(&format!("http://{host}/doc.json"), 100)
        .await
        .expect_err("http URL");
    assert!(url_err.to_string().contains("only https"), "{url_err}");
}

async fn elsewhere() -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        "link",
        HeaderValue::from_static(
            "<https://evil.example/v2/acme/os/tags/list?last=a>; rel=\"next\"",
        ),
    );
    (headers, r#"{"tags":["a"]}"#)
}

#[tokio::test]
async fn pagination_to_another_origin_is_refused() {
    let host =
        serve(axum::Router::new().route("/v2/acme/os/tags/list", axum::routing::get(elsewhere)))
            .await;
    let (client, repo) = client(&host, Duration::from_secs(5));
    let err = client
        .list_tags(&repo)
        .await
        .expect_err("cross-origin link");
    assert!(err.to_string().contains("another origin"), "{err}");
    assert_eq!(
        client.request_count(),
        1,
        "the other origin was never contacted"
    );
}

async fn challenge_with_http_realm() -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        "www-authenticate",
        HeaderValue::from_static("Bearer realm=\"http://tokens.example:9/token\",service=\"x\""),
    );
    (StatusCode::UNAUTHORIZED, headers, "")
}

#[tokio::test]
async fn credentials_are_not_sent_to_a_plain_http_token_realm() {
    let host = serve(axum::Router::new().route(
        "/v2/acme/os/tags/list",
        axum::routing::get(challenge_with_http_realm),
    ))
    .await;
    let (client, repo) = client(&host, Duration::from_secs(5));
    let err = client.list_tags(&repo).await.expect_err("http realm");
    assert_eq!(err.kind(), "unauthorized");
    assert!(err.to_string().contains("not https"), "{err}");
}
