//! Every route through `router(state).oneshot(request)`, with no socket: golden
//! answers against `cairn graph fcos`'s model, errors, caching headers.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cairn_graph::Scheme;
use cairn_graph::cincinnati::CincinnatiGraph;
use cairn_graph::fcos::{ReleaseIndex, Updates, build_graph};
use cairn_server::snapshot::Snapshot;
use cairn_server::{AppState, router};
use http_body_util::BodyExt;
use jiff::Timestamp;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

const STREAMS: [&str; 3] = ["stable", "testing", "next"];
const ARCHES: [&str; 4] = ["x86_64", "aarch64", "s390x", "ppc64le"];
/// Mid-way through the newest stable rollout.
const NOW: i64 = 1_784_815_200;

fn data(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fcos")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn inputs(stream: &str) -> (ReleaseIndex, Updates) {
    (
        ReleaseIndex::from_json(&data(&format!("releases/{stream}/releases.json"))).expect("index"),
        Updates::from_json(&data(&format!("updates/{stream}.json"))).expect("updates"),
    )
}

fn state() -> AppState {
    let clock = Arc::new(|| Timestamp::from_second(NOW).expect("time"));
    let state = AppState::new(STREAMS.map(String::from), clock, 30);
    for stream in STREAMS {
        let (index, updates) = inputs(stream);
        state.install(stream, Snapshot::from_fcos(&index, &updates));
    }
    state
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

#[tokio::test]
async fn answers_equal_the_model_for_every_stream_arch_scheme_and_wariness() {
    let state = state();
    let mut checked = 0;
    for stream in STREAMS {
        let (index, updates) = inputs(stream);
        for arch in ARCHES {
            for oci in [false, true] {
                let scheme = if oci { Scheme::Oci } else { Scheme::Checksum };
                let graph = build_graph(&index, &updates, arch, scheme);
                for wariness in ["0", "0.000001", "0.25", "0.5", "0.500001", "0.75", "1"] {
                    let uri = format!(
                        "/v1/graph?basearch={arch}&stream={stream}&oci={oci}&rollout_wariness={wariness}"
                    );
                    let (status, headers, body) = get(&state, &uri).await;
                    assert_eq!(status, StatusCode::OK, "{uri}");
                    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
                    let served = CincinnatiGraph::from_json(&body).expect("Cincinnati JSON");
                    let w: f64 = wariness.parse().expect("number");
                    let expected = graph.throttled(w, NOW).to_cincinnati();
                    assert_eq!(served, expected, "{uri}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3 * 4 * 2 * 7);
}

#[tokio::test]
async fn node_uuid_gives_fedoras_wariness_and_is_filtered_accordingly() {
    let state = state();
    let (index, updates) = inputs("stable");
    let graph = build_graph(&index, &updates, "x86_64", Scheme::Checksum);
    // 0.65332 is above the rollout's 0.5 at NOW; 0.39956 is below.
    for (uuid, wariness) in [
        ("e0f3745b108f471cbd4883c6fbed8cdd", 0.65332),
        ("00000000000000000000000000000001", 0.39956),
    ] {
        let (_, _, body) = get(
            &state,
            &format!("/v1/graph?basearch=x86_64&stream=stable&node_uuid={uuid}"),
        )
        .await;
        let served = CincinnatiGraph::from_json(&body).expect("JSON");
        assert_eq!(
            served,
            graph.throttled(wariness, NOW).to_cincinnati(),
            "{uuid}"
        );
    }
    let (_, _, early) = get(
        &state,
        "/v1/graph?basearch=x86_64&stream=stable&node_uuid=00000000000000000000000000000001",
    )
    .await;
    let (_, _, late) = get(
        &state,
        "/v1/graph?basearch=x86_64&stream=stable&node_uuid=e0f3745b108f471cbd4883c6fbed8cdd",
    )
    .await;
    assert_ne!(
        early, late,
        "the rollout in progress separates the two nodes"
    );
}

#[tokio::test]
async fn the_exact_request_zincati_sends_works() {
    let state = state();
    let uri = "/v1/graph?basearch=x86_64&stream=stable&os_version=44.20260621.3.1\
        &os_checksum=quay.io%2Ffedora%2Ffedora-coreos%40sha256%3A98b2e2b6e4ef1fa2eb24aaabbbf36e1fc3df67ae75229ab26945f098ba7078d2\
        &group=default&node_uuid=e0f3745b108f471cbd4883c6fbed8cdd&platform=metal&oci=true";
    let response = router(state)
        .oneshot(
            Request::get(uri)
                .header(header::ACCEPT, "application/json")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    // Parse it as Zincati does: scheme and age_index on every node, edges in range.
    let graph = CincinnatiGraph::from_json(&body).expect("JSON");
    let parsed =
        cairn_graph::UpdateGraph::from_cincinnati(&graph).expect("what Zincati needs is there");
    assert!(parsed.nodes().iter().any(|n| {
        n.payload
            .ends_with("98b2e2b6e4ef1fa2eb24aaabbbf36e1fc3df67ae75229ab26945f098ba7078d2")
    }));
}

#[tokio::test]
async fn bad_requests_are_400_with_json_never_500() {
    let state = state();
    let long = format!(
        "/v1/graph?basearch=x86_64&stream=stable&pad={}",
        "x".repeat(5000)
    );
    for (uri, kind) in [
        ("/v1/graph", "missing_params"),
        ("/v1/graph?stream=stable", "missing_params"),
        ("/v1/graph?basearch=x86_64", "missing_params"),
        ("/v1/graph?basearch=x86_64&stream=lts", "unknown_stream"),
        (
            "/v1/graph?basearch=riscv64&stream=stable",
            "unknown_basearch",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=stable&oci=yes",
            "invalid_params",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=NaN",
            "invalid_params",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=-1",
            "invalid_params",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=2",
            "invalid_params",
        ),
        (
            "/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=abc",
            "invalid_params",
        ),
        (long.as_str(), "invalid_params"),
    ] {
        let (status, headers, body) = get(&state, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let error: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(error["kind"], kind, "{uri}");
        assert!(error["value"].is_string());
    }
    // Unknown parameters are ignored, as Fedora's server does.
    let (status, _, _) = get(
        &state,
        "/v1/graph?basearch=x86_64&stream=stable&newer_client_param=1",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn etags_let_clients_revalidate() {
    let state = state();
    let uri = "/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0.1";
    let (_, headers, _) = get(&state, uri).await;
    let etag = headers[header::ETAG].to_str().expect("etag").to_string();
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=30");
    let response = router(state.clone())
        .oneshot(
            Request::get(uri)
                .header(header::IF_NONE_MATCH, &etag)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    // Another visible rollout set is another body and another ETag.
    let (_, other, _) = get(
        &state,
        "/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0.9",
    )
    .await;
    assert_ne!(other[header::ETAG], etag.as_str());
}

#[tokio::test]
async fn readiness_health_documents_and_metrics() {
    let clock = Arc::new(|| Timestamp::from_second(NOW).expect("time"));
    let state = AppState::new(["stable".to_string()], clock, 30);
    let (status, _, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("\"serving\":false"));
    let (status, _, body) = get(&state, "/v1/graph?basearch=x86_64&stream=stable").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("not_ready"));
    assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
    let (index, updates) = inputs("stable");
    state.install("stable", Snapshot::from_fcos(&index, &updates));
    assert_eq!(get(&state, "/readyz").await.0, StatusCode::OK);
    // Fedora-built streams have no Cairn document.
    let (status, _, body) = get(&state, "/v2/graph/stable").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("no_document"));
    assert_eq!(get(&state, "/v2/graph/nope").await.0, StatusCode::NOT_FOUND);
    let (_, _, metrics) = get(&state, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics);
    assert!(
        text.contains("cairn_http_requests_total{route=\"/v1/graph\",status=\"503\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("cairn_http_requests_total{route=\"/readyz\",status=\"200\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn documents_are_served_byte_for_byte() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/stable.json");
    let bytes = std::fs::read(&path).expect("example");
    let document = cairn_graph::GraphDocument::from_json(&bytes)
        .expect("parses")
        .document;
    let clock = Arc::new(|| Timestamp::from_second(1_762_876_800).expect("time"));
    let state = AppState::new(["stable".to_string()], clock, 30);
    let served = cairn_server::snapshot::ServedDocument {
        bytes: bytes.clone().into(),
        manifest_digest: Some(format!("sha256:{}", "a".repeat(64))),
        signature: Some("registry.example.org/acme/os:sha256-aaaa.sig".into()),
    };
    state.install("stable", Snapshot::from_document(&document, Some(served)));
    let (status, headers, body) = get(&state, "/v2/graph/stable").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, bytes);
    assert_eq!(
        headers["cairn-signature"],
        "registry.example.org/acme/os:sha256-aaaa.sig"
    );
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/vnd.cairn.graph.v1+json"
    );
    // And its graph on /v1/graph, OCI scheme.
    let (status, _, body) = get(
        &state,
        "/v1/graph?basearch=x86_64&stream=stable&oci=true&rollout_wariness=0",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let graph = CincinnatiGraph::from_json(&body).expect("JSON");
    assert_eq!(graph.nodes.len(), 5);
}

#[tokio::test]
async fn every_error_is_json() {
    let state = state();
    for (uri, status) in [
        ("/nope", StatusCode::NOT_FOUND),
        ("/v2/graph/%FF", StatusCode::BAD_REQUEST),
    ] {
        let (got, headers, body) = get(&state, uri).await;
        assert_eq!(got, status, "{uri}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
        assert!(
            serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
            "{uri}"
        );
    }
    let response = router(state)
        .oneshot(
            Request::post("/v1/graph")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(
        response.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "no write endpoint"
    );
}

/// A derived stream whose barrier image was built after the fact: d0 on base
/// 0, d1 on base 2, then d2 on the base barrier 1. `/v1/graph` must number
/// nodes in update order, because Zincati takes only a target whose age index
/// is above the booted one's.
#[tokio::test]
async fn derived_streams_number_nodes_in_update_order() {
    use cairn_graph::derive::{BaseGraph, BaseRelease, inherit};
    use cairn_graph::{ArchEntry, BaseImage, GraphDocument, Release, Rollout};
    let base_digest = |age: u64| format!("sha256:{:064x}", 100 + age);
    let base = BaseGraph {
        source: "test".into(),
        repository: "quay.io/base".into(),
        releases: (0..3)
            .map(|age| BaseRelease {
                version: format!("b{age}"),
                age_index: age,
                digests: [base_digest(age)].into(),
                barrier: (age == 1).then(|| "migrate".to_string()),
                deadend: None,
            })
            .collect(),
        uneven: Vec::new(),
    };
    let mut document = GraphDocument {
        stream: "stable".into(),
        repository: "quay.io/derived".into(),
        sequence: 1,
        issued: Timestamp::from_second(1_000).expect("time"),
        expires: Timestamp::from_second(NOW + 86_400).expect("time"),
        releases: [("d0", 0), ("d1", 2), ("d2", 1)]
            .iter()
            .enumerate()
            .map(|(i, &(version, on))| Release {
                version: version.into(),
                architectures: [(
                    "x86_64".to_string(),
                    ArchEntry::image(format!("sha256:{i:064x}")),
                )]
                .into(),
                base: Some(BaseImage::new("", base_digest(on))),
                rollout: Some(Rollout::immediate()),
                ..Release::default()
            })
            .collect(),
        ..GraphDocument::default()
    };
    inherit(&mut document, &base, &Default::default());
    let clock = Arc::new(|| Timestamp::from_second(NOW).expect("time"));
    let state = AppState::new(["stable".to_string()], clock, 30);
    state.install("stable", Snapshot::from_document(&document, None));
    let (status, _, body) = get(
        &state,
        "/v1/graph?basearch=x86_64&stream=stable&oci=true&rollout_wariness=0.5",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let graph = CincinnatiGraph::from_json(&body).expect("JSON");
    let age = |i: u64| -> u64 {
        graph.nodes[i as usize].metadata[cairn_graph::cincinnati::AGE_INDEX]
            .parse()
            .expect("age index")
    };
    let version = |i: u64| graph.nodes[i as usize].version.clone();
    let mut edges: Vec<(String, String)> = graph
        .edges
        .iter()
        .map(|&(from, to)| {
            assert!(age(to) > age(from), "Zincati would refuse {from} -> {to}");
            (version(from), version(to))
        })
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        [("d0".into(), "d2".into()), ("d2".into(), "d1".into())],
        "through the barrier image, then on"
    );
    // Each node names its base, so Cairn's agents on a `cincinnati:` source
    // know a move to a newer base as such.
    let read = cairn_graph::UpdateGraph::from_cincinnati(&graph).expect("graph");
    let bases: Vec<(&str, Option<u64>)> = read
        .nodes()
        .iter()
        .map(|n| (n.version.as_str(), n.base_age))
        .collect();
    assert_eq!(bases, [("d0", Some(0)), ("d2", Some(1)), ("d1", Some(2))]);
}

// The dashboard's login, sessions and logout.

const HALT_TOKEN: &str = "halt-secret-0123456789";
const ADMIN_TOKEN: &str = "admin-secret-0123456789";
const REPORT_TOKEN: &str = "report-secret-0123456789";
const LOOPBACK: &str = "127.0.0.1:40000";

/// A server with the three kinds of token, on a settable clock.
fn dashboard_state() -> (AppState, Arc<std::sync::Mutex<Timestamp>>) {
    use cairn_server::tokens::{Scope, Token, Tokens};
    let token = |file: &str, secret: &str, scope| {
        Token::from_text(format!("/etc/cairn/{file}").into(), secret, vec![scope]).expect("token")
    };
    let tokens = Tokens(vec![
        token("halt.token", HALT_TOKEN, Scope::Halt),
        token("admin.token", ADMIN_TOKEN, Scope::LockAdmin),
        token("report.token", REPORT_TOKEN, Scope::Report),
    ]);
    let now = Arc::new(std::sync::Mutex::new(
        Timestamp::from_second(NOW).expect("time"),
    ));
    let reading = Arc::clone(&now);
    let clock = Arc::new(move || *reading.lock().expect("clock"));
    let state =
        AppState::with_services(STREAMS.map(String::from), clock, 30, None, Arc::new(tokens));
    (state, now)
}

fn cookie_headers(cookie: &str) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(header::COOKIE, cookie.parse().expect("cookie"));
    headers
}

#[tokio::test]
async fn the_login_form_refuses_bad_csrf_plain_http_unknown_and_report_tokens() {
    use cairn_server::dashboard::session::{login_form_token, viewer};
    let (state, _) = dashboard_state();
    let (csrf, set) = login_form_token(&state, &axum::http::HeaderMap::new());
    assert_eq!(
        set.expect("a cookie to set").to_str().expect("ASCII"),
        format!(
            "cairn_login_csrf={csrf}; HttpOnly; Secure; SameSite=Strict; Path=/login; Max-Age=3600"
        )
    );
    let login_cookie = format!("cairn_login_csrf={csrf}");
    // The form's token is reused while the cookie carries it.
    let (again, set) = login_form_token(&state, &cookie_headers(&login_cookie));
    assert_eq!((again.as_str(), set), (csrf.as_str(), None));
    // A well-formed token this server did not make is replaced.
    let planted = "ab".repeat(64);
    let (fresh, set) = login_form_token(
        &state,
        &cookie_headers(&format!("cairn_login_csrf={planted}")),
    );
    assert!(fresh != planted && set.is_some());

    let planted_cookie = format!("cairn_login_csrf={planted}");
    let with_cookie = [("cookie", login_cookie.as_str())];
    // (notice, peer, headers, fields)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Vec<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        (
            "csrf",
            Some(LOOPBACK),
            with_cookie.to_vec(),
            vec![("token", HALT_TOKEN)],
        ),
        (
            "csrf",
            Some(LOOPBACK),
            with_cookie.to_vec(),
            vec![("csrf", &fresh), ("token", HALT_TOKEN)],
        ),
        (
            "csrf",
            Some(LOOPBACK),
            vec![],
            vec![("csrf", &csrf), ("token", HALT_TOKEN)],
        ),
        (
            "csrf",
            Some(LOOPBACK),
            vec![("cookie", &planted_cookie)],
            vec![("csrf", planted.as_str()), ("token", HALT_TOKEN)],
        ),
        (
            "plain_http",
            Some("10.0.0.5:40000"),
            with_cookie.to_vec(),
            vec![("csrf", &csrf), ("token", HALT_TOKEN)],
        ),
        (
            "plain_http",
            Some(LOOPBACK),
            vec![("cookie", &login_cookie), ("x-forwarded-proto", "http")],
            vec![("csrf", &csrf), ("token", HALT_TOKEN)],
        ),
        (
            "plain_http",
            None,
            with_cookie.to_vec(),
            vec![("csrf", &csrf), ("token", HALT_TOKEN)],
        ),
        (
            "unauthorized",
            Some(LOOPBACK),
            with_cookie.to_vec(),
            vec![("csrf", &csrf), ("token", "unknown-secret-0123456789")],
        ),
        (
            "unauthorized",
            Some(LOOPBACK),
            with_cookie.to_vec(),
            vec![("csrf", &csrf)],
        ),
        (
            "forbidden",
            Some(LOOPBACK),
            with_cookie.to_vec(),
            vec![("csrf", &csrf), ("token", REPORT_TOKEN)],
        ),
    ];
    for (notice, peer, headers, fields) in &cases {
        let posted = common::post_form(&state, "/login", *peer, headers, fields).await;
        assert_eq!(posted.status, StatusCode::SEE_OTHER, "{posted:?}");
        assert_eq!(
            posted.location,
            format!("/login?notice={notice}"),
            "{fields:?}"
        );
        assert!(posted.cookies.is_empty(), "{posted:?}");
        assert!(
            state.shared.sessions.is_empty(),
            "no session from {fields:?}"
        );
    }

    // A TLS proxy on this host says it received HTTPS: the login succeeds.
    let posted = common::post_form(
        &state,
        "/login",
        Some(LOOPBACK),
        &[("cookie", &login_cookie), ("x-forwarded-proto", "https")],
        &[("csrf", &csrf), ("token", HALT_TOKEN)],
    )
    .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER);
    assert_eq!(posted.location, "/?notice=logged_in");
    let session = posted.cookies[0]
        .strip_prefix("cairn_session=")
        .and_then(|rest| rest.split(';').next())
        .expect("the session cookie first");
    assert!(
        session.len() == 64 && session.bytes().all(|b| b.is_ascii_hexdigit()),
        "{session}"
    );
    assert_eq!(
        posted.cookies,
        [
            format!(
                "cairn_session={session}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=28800"
            ),
            "cairn_login_csrf=; HttpOnly; Secure; SameSite=Strict; Path=/login; Max-Age=0"
                .to_string(),
        ]
    );
    let viewer = viewer(&state, &cookie_headers(&format!("cairn_session={session}")));
    assert_eq!(viewer.name.as_deref(), Some("halt.token"));
    assert!(viewer.can_halt && !viewer.can_admin_locks);
    let session_csrf = viewer.csrf.expect("csrf");
    assert_eq!(session_csrf.len(), 64);
    // The session's own CSRF token is not the login form's.
    assert_ne!(session_csrf, csrf);
    // Neither the id, nor the digest it is kept under, nor the CSRF token
    // shows in a debug print.
    let debug = format!("{:?}", state.shared.sessions);
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(session));
    for secret in [session.to_string(), hex::encode(digest), session_csrf] {
        assert!(!debug.contains(&secret), "{debug}");
    }
    assert!(debug.contains("live: 1"), "{debug}");
}

#[tokio::test]
async fn sessions_end_at_their_expiry_on_the_injected_clock_and_at_logout() {
    use cairn_server::dashboard::session::viewer;
    let (state, now) = dashboard_state();
    let (cookie, csrf) = common::dashboard_login(&state, ADMIN_TOKEN).await;
    let headers = cookie_headers(&cookie);
    let admin = viewer(&state, &headers);
    assert_eq!(admin.name.as_deref(), Some("admin.token"));
    assert!(admin.can_admin_locks && !admin.can_halt);
    let start = Timestamp::from_second(NOW).expect("time");
    *now.lock().expect("clock") =
        start + jiff::SignedDuration::from_hours(8) - jiff::SignedDuration::from_secs(1);
    assert!(
        viewer(&state, &headers).name.is_some(),
        "a second before its end"
    );
    *now.lock().expect("clock") = start + jiff::SignedDuration::from_hours(8);
    let expired = viewer(&state, &headers);
    assert!(expired.name.is_none() && expired.csrf.is_none() && !expired.can_admin_locks);
    assert!(
        state.shared.sessions.is_empty(),
        "the expired session is dropped"
    );

    // Logout needs the session's CSRF token too.
    let (cookie, csrf_now) = common::dashboard_login(&state, ADMIN_TOKEN).await;
    assert_ne!(csrf_now, csrf);
    let posted = common::post_form(
        &state,
        "/logout",
        None,
        &[("cookie", &cookie)],
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(posted.location, "/?notice=csrf");
    assert!(viewer(&state, &cookie_headers(&cookie)).name.is_some());
    let posted = common::post_form(
        &state,
        "/logout",
        None,
        &[("cookie", &cookie)],
        &[("csrf", &csrf_now)],
    )
    .await;
    assert_eq!(posted.location, "/?notice=logged_out");
    assert_eq!(
        posted.cookies,
        ["cairn_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"]
    );
    assert!(viewer(&state, &cookie_headers(&cookie)).name.is_none());
    assert!(state.shared.sessions.is_empty());
}

#[tokio::test]
async fn failed_logins_from_one_address_are_limited_to_ten_a_minute() {
    use cairn_server::dashboard::session::login_form_token;
    let (state, now) = dashboard_state();
    let (csrf, _) = login_form_token(&state, &axum::http::HeaderMap::new());
    let cookie = format!("cairn_login_csrf={csrf}");
    let attempt = |token: &'static str| {
        let (state, csrf, cookie) = (state.clone(), csrf.clone(), cookie.clone());
        async move {
            common::post_form(
                &state,
                "/login",
                Some(LOOPBACK),
                &[("cookie", &cookie)],
                &[("csrf", &csrf), ("token", token)],
            )
            .await
            .notice()
            .to_string()
        }
    };
    for _ in 0..10 {
        assert_eq!(attempt("guessed-secret-0123456789").await, "unauthorized");
    }
    assert_eq!(attempt(HALT_TOKEN).await, "too_many_attempts");
    *now.lock().expect("clock") = Timestamp::from_second(NOW + 60).expect("time");
    assert_eq!(attempt(HALT_TOKEN).await, "logged_in");
}

#[tokio::test]
async fn actions_without_a_session_or_its_csrf_token_do_nothing() {
    let (state, _) = dashboard_state();
    let (cookie, csrf) = common::dashboard_login(&state, ADMIN_TOKEN).await;
    let halt = [
        ("stream", "stable"),
        ("version", "40.20240906.3.0"),
        ("reason", "broken"),
    ];
    let posted = common::post_form(
        &state,
        "/ui/halt",
        None,
        &[],
        &[&halt[..], &[("csrf", &csrf)]].concat(),
    )
    .await;
    assert_eq!(posted.location, "/streams/stable?notice=unauthorized");
    let posted = common::post_form(
        &state,
        "/ui/halt",
        None,
        &[("cookie", &cookie)],
        &[&halt[..], &[("csrf", &csrf)]].concat(),
    )
    .await;
    assert_eq!(
        posted.location, "/streams/stable?notice=forbidden",
        "a lock-admin session may not halt"
    );
    let posted = common::post_form(
        &state,
        "/ui/locks/default/ack",
        None,
        &[("cookie", &cookie)],
        &[("csrf", "0".repeat(64).as_str())],
    )
    .await;
    assert_eq!(posted.location, "/locks?notice=csrf");
    // Without FleetLock the checked ack fails, and says so.
    let posted = common::post_form(
        &state,
        "/ui/locks/default/ack",
        None,
        &[("cookie", &cookie)],
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(posted.location, "/locks?notice=failed");
}
