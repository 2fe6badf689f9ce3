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

/// Three releases of a stream derived from a base with a barrier at b1:
/// d0 on b0, d1 on b2 and d2 on b1, which inherits the barrier.
fn derived_document(stream: &str, expires: i64) -> cairn_graph::GraphDocument {
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
        stream: stream.into(),
        repository: "quay.io/derived".into(),
        sequence: 1,
        issued: Timestamp::from_second(1_000).expect("time"),
        expires: Timestamp::from_second(expires).expect("time"),
        releases: [("d0", 0), ("d1", 2), ("d2", 1)]
            .iter()
            .enumerate()
            .map(|(i, &(version, on))| Release {
                version: version.into(),
                architectures: [(
                    "x86_64".to_string(),
                    ArchEntry::image(format!("sha256:{:064x}", 500 + i)),
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
    document
}

/// A derived stream whose barrier image was built after the fact: d0 on base
/// 0, d1 on base 2, then d2 on the base barrier 1. `/v1/graph` must number
/// nodes in update order, because Zincati takes only a target whose age index
/// is above the booted one's.
#[tokio::test]
async fn derived_streams_number_nodes_in_update_order() {
    let document = derived_document("stable", NOW + 86_400);
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
            "__Host-cairn_login_csrf={csrf}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=3600"
        )
    );
    let login_cookie = format!("__Host-cairn_login_csrf={csrf}");
    // The form's token is reused while the cookie carries it.
    let (again, set) = login_form_token(&state, &cookie_headers(&login_cookie));
    assert_eq!((again.as_str(), set), (csrf.as_str(), None));
    // A well-formed token this server did not make is replaced.
    let planted = "ab".repeat(64);
    let (fresh, set) = login_form_token(
        &state,
        &cookie_headers(&format!("__Host-cairn_login_csrf={planted}")),
    );
    assert!(fresh != planted && set.is_some());

    let planted_cookie = format!("__Host-cairn_login_csrf={planted}");
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
        // A proxy on this host that forwards without naming the scheme is
        // not trusted to have used TLS.
        (
            "plain_http",
            Some(LOOPBACK),
            vec![("cookie", &login_cookie), ("x-forwarded-for", "10.0.0.5")],
            vec![("csrf", &csrf), ("token", HALT_TOKEN)],
        ),
        (
            "plain_http",
            Some(LOOPBACK),
            vec![("cookie", &login_cookie), ("forwarded", "for=10.0.0.5")],
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
        &[
            ("cookie", &login_cookie),
            ("x-forwarded-for", "10.0.0.5"),
            ("x-forwarded-proto", "https"),
        ],
        &[("csrf", &csrf), ("token", HALT_TOKEN)],
    )
    .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER);
    assert_eq!(posted.location, "/?notice=logged_in");
    let session = posted.cookies[0]
        .strip_prefix("__Host-cairn_session=")
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
                "__Host-cairn_session={session}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=28800"
            ),
            "__Host-cairn_login_csrf=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"
                .to_string(),
        ]
    );
    let viewer = viewer(
        &state,
        &cookie_headers(&format!("__Host-cairn_session={session}")),
    );
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
        ["__Host-cairn_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"]
    );
    assert!(viewer(&state, &cookie_headers(&cookie)).name.is_none());
    assert!(state.shared.sessions.is_empty());
}

#[tokio::test]
async fn failed_logins_are_limited_per_client_and_a_limited_client_is_refused_outright() {
    use cairn_server::dashboard::session::login_form_token;
    let (state, now) = dashboard_state();
    let (csrf, _) = login_form_token(&state, &axum::http::HeaderMap::new());
    let cookie = format!("__Host-cairn_login_csrf={csrf}");
    // Through a TLS proxy on this host, which names each browser.
    let attempt = |client: &'static str, token: &'static str| {
        let (state, csrf, cookie) = (state.clone(), csrf.clone(), cookie.clone());
        async move {
            common::post_form(
                &state,
                "/login",
                Some(LOOPBACK),
                &[
                    ("cookie", &cookie),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-for", client),
                ],
                &[("csrf", &csrf), ("token", token)],
            )
            .await
            .notice()
            .to_string()
        }
    };
    let guesser = "203.0.113.9";
    let operator = "198.51.100.7";
    for _ in 0..9 {
        assert_eq!(
            attempt(guesser, "guessed-secret-0123456789").await,
            "unauthorized"
        );
    }
    // A report token has no dashboard scope: it counts as a failure too.
    assert_eq!(attempt(guesser, REPORT_TOKEN).await, "forbidden");
    assert_eq!(
        attempt(guesser, "guessed-secret-0123456789").await,
        "too_many_attempts"
    );
    // Limited, even a right token is not looked at: guessing is slowed for real.
    assert_eq!(attempt(guesser, HALT_TOKEN).await, "too_many_attempts");
    assert!(state.shared.sessions.is_empty());
    // Another browser behind the same proxy is not locked out.
    assert_eq!(attempt(operator, ADMIN_TOKEN).await, "logged_in");
    assert_eq!(state.shared.sessions.len(), 1);
    *now.lock().expect("clock") = Timestamp::from_second(NOW + 60).expect("time");
    assert_eq!(
        attempt(guesser, HALT_TOKEN).await,
        "logged_in",
        "a minute later the limit is over"
    );
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

/// The dashboard's JSON (`/api/...`), from the same in-process state.
#[tokio::test]
async fn the_dashboard_is_served_unless_the_configuration_turns_it_off() {
    let on = state();
    for path in [
        "/",
        "/streams/stable",
        "/api/overview",
        "/login",
        "/static/dashboard.css",
    ] {
        let (status, _, body) = get(&on, path).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let clock = Arc::new(|| Timestamp::from_second(NOW).expect("time"));
    let off = AppState::with_dashboard(
        STREAMS.map(String::from),
        clock,
        30,
        cairn_server::state::Services::default(),
        cairn_server::config::DashboardConfig {
            enabled: false,
            ..Default::default()
        },
    );
    for path in [
        "/",
        "/streams/stable",
        "/api/overview",
        "/login",
        "/static/dashboard.css",
    ] {
        let (status, _, _) = get(&off, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} with enabled = false");
    }
    let posted = router(off)
        .oneshot(
            Request::post("/login")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(posted.status(), StatusCode::NOT_FOUND, "no login route");
}

mod dashboard {
    use super::*;
    use cairn_graph::document::{HaltSettings, Reason};
    use cairn_graph::halts::{HaltEntry, HaltList, SignedAs, TrippedBy};
    use cairn_graph::{ArchEntry, GraphDocument, Query, Release, Rollout};
    use cairn_server::dashboard::build::{self, StreamQuery};
    use cairn_server::halts::Halts;
    use cairn_server::reports::model::{Outcome, Release as ReportedRelease};
    use cairn_server::state::Services;
    use cairn_server::store::halts::{AuditEntry, HaltBackend, HaltStore, HeldRecord};
    use cairn_server::store::reports::ReportRecord;
    use serde_json::Value;

    /// The dashboard test's clock.
    const T: i64 = 1_800_000_000;
    const ADMIN: &str = "admin-token-0123456789";
    const REPORTER: &str = "report-token-0123456789";

    fn digest(n: u64, arch: u64) -> String {
        format!("sha256:{:064x}", n * 16 + arch)
    }

    /// 1.0 … 1.6 on x86_64 and aarch64 (1.4 on x86_64 only), each offered
    /// at once, except: 1.1 a barrier, 1.3 a dead-end, 1.6 a 2-hour rollout
    /// that started an hour before `T`.
    fn document() -> GraphDocument {
        let releases = (0..7u64)
            .map(|n| {
                let arches: &[(&str, u64)] = if n == 4 {
                    &[("x86_64", 0)]
                } else {
                    &[("x86_64", 0), ("aarch64", 1)]
                };
                Release {
                    version: format!("1.{n}"),
                    architectures: arches
                        .iter()
                        .map(|&(arch, i)| (arch.to_string(), ArchEntry::image(digest(n, i))))
                        .collect(),
                    barrier: (n == 1).then(|| Reason::new("migrate first: https://example.org/b1")),
                    deadend: (n == 3).then(|| Reason::new("broken kernel")),
                    rollout: Some(if n == 6 {
                        Rollout {
                            start_epoch: Some(T - 3600),
                            start_percentage: Some(0.0),
                            duration_minutes: Some(120),
                        }
                    } else {
                        Rollout::immediate()
                    }),
                    ..Release::default()
                }
            })
            .collect();
        GraphDocument {
            stream: "stable".into(),
            repository: "registry.example.org/acme/os".into(),
            sequence: 7,
            issued: Timestamp::from_second(T - 86_400).expect("time"),
            expires: Timestamp::from_second(T + 86_400).expect("time"),
            releases,
            halts: Some(halt_settings()),
            root_version: 0,
            ..GraphDocument::default()
        }
    }

    fn halt_settings() -> HaltSettings {
        HaltSettings {
            location: "registry.example.org/acme/os-halts".into(),
            min_sequence: 0,
            cleared: Vec::new(),
        }
    }

    fn halted_digests() -> Vec<String> {
        vec![digest(5, 0), digest(5, 1)]
    }

    /// The derived stream of `derived_streams_number_nodes_in_update_order`:
    /// d2 is built on the base barrier b1 and inherits it.
    fn derived() -> GraphDocument {
        super::derived_document("derived", T + 86_400)
    }

    struct Dash {
        state: AppState,
        _dir: tempfile::TempDir,
    }

    /// A server with both streams, reports, FleetLock, tokens and a halt
    /// of 1.5 held, at `T`.
    async fn dash() -> Dash {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("admin.token"), ADMIN).expect("token");
        std::fs::write(dir.path().join("report.token"), REPORTER).expect("token");
        let text = "[[stream]]\nname = \"stable\"\ndocument = { location = \"stable.json\" }\n\
             [[stream]]\nname = \"derived\"\ndocument = { location = \"derived.json\" }\n\
             [[token]]\nfile = \"admin.token\"\nscopes = [\"lock-admin\"]\n\
             [[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n\
             [reports]\ndatabase = \"reports.sqlite\"\n\
             [fleet_lock]\ndatabase = \"locks.sqlite\"\nallowed_networks = [\"127.0.0.0/8\"]\n";
        let config =
            cairn_server::Config::from_toml(text, &dir.path().join("server.toml")).expect("config");
        let now = Timestamp::from_second(T).expect("time");
        let names = || config.streams.iter().map(|s| s.name.clone());
        let reports =
            cairn_server::open_reports(config.reports.as_ref().expect("reports"), names())
                .await
                .expect("reports");
        let lock = cairn_server::open_fleet_lock(config.fleet_lock.as_ref().expect("locks"), now)
            .await
            .expect("locks");
        let store = cairn_server::store::halts_embedded::EmbeddedHalts::open(
            &dir.path().join("halts.sqlite"),
        )
        .expect("halts store");
        let halts = Halts::new(
            names(),
            Vec::new(),
            Some(HaltBackend::Embedded(store)),
            None,
        );
        let clock = Arc::new(move || now);
        let state = AppState::with(
            names(),
            clock,
            30,
            Services {
                fleet_lock: Some(lock),
                reports: Some(reports),
                tokens: config.tokens.clone(),
                halts: Some(Arc::new(halts)),
            },
        );
        state.install("stable", Snapshot::from_document(&document(), None));
        state.install("derived", Snapshot::from_document(&derived(), None));
        // Halt 1.5, as a person did.
        let halts = &state.shared.halts;
        halts.configure("stable", Some(&halt_settings()), Vec::new(), None);
        let list = HaltList {
            format: cairn_graph::halts::FORMAT,
            stream: "stable".into(),
            sequence: 3,
            expires: Timestamp::from_second(T + 3600).expect("time"),
            root_version: 0,
            entries: vec![HaltEntry {
                id: "h-1.5".into(),
                version: "1.5".into(),
                digests: halted_digests(),
                reason: "boots fail".into(),
                time: Timestamp::from_second(T - 600).expect("time"),
                tripped_by: TrippedBy::Person {
                    who: "alice".into(),
                },
            }],
        };
        let record = HeldRecord {
            sequence: 3,
            body: serde_json::to_vec(&list).expect("json"),
            manifest_digest: None,
            signature: None,
        };
        halts
            .hold("stable", list, record, SignedAs::Graph, now)
            .await
            .expect("held");
        let store = halts.store.as_ref().expect("store");
        store
            .audit(&AuditEntry {
                time: Timestamp::from_second(T - 600).expect("time"),
                stream: "stable".into(),
                version: "1.5".into(),
                digests: halted_digests(),
                halt_id: "h-1.5".into(),
                tripped_by: TrippedBy::Guard {
                    failures: 4,
                    rebooting: 20,
                },
                sequence: 3,
            })
            .await
            .expect("audit");
        // Reports of 1.6: 3 rebooting, 1 boot failure.
        let reports = state.shared.reports.as_ref().expect("reports");
        for (i, outcome) in ["rebooting", "rebooting", "rebooting", "boot_failed"]
            .into_iter()
            .enumerate()
        {
            let record = ReportRecord {
                stream: "stable".into(),
                release: ReportedRelease {
                    version: "1.6".into(),
                    digest: digest(6, 0),
                },
                outcome: Outcome::parse(outcome).expect("outcome"),
                id: [i as u8 + 1; 16],
            };
            reports
                .record(&state.shared.metrics, record, now)
                .await
                .expect("recorded");
        }
        // Locks: node-a holds a slot of `default`; node-b's boot failed in `workers`.
        let lock = state.shared.fleet_lock.as_ref().expect("lock");
        let policy = lock.stored_policy("default");
        for (group, op) in [
            (
                "default",
                LockOp::PreReboot {
                    id: "node-a".into(),
                },
            ),
            (
                "workers",
                LockOp::PreReboot {
                    id: "node-b".into(),
                },
            ),
            (
                "workers",
                LockOp::BootFailed {
                    id: "node-b".into(),
                    reason: "no network".into(),
                },
            ),
        ] {
            lock.apply(&state.shared.metrics, group, policy, op, now)
                .await
                .expect("lock op");
        }
        Dash { state, _dir: dir }
    }

    use cairn_server::fleetlock::model::LockOp;

    async fn json(state: &AppState, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::get(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = router(state.clone())
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        if status == StatusCode::OK {
            assert_eq!(
                response.headers()[header::CACHE_CONTROL],
                "no-store",
                "{uri}"
            );
        }
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    fn row<'a>(page: &'a Value, version: &str) -> &'a Value {
        page["releases"]
            .as_array()
            .expect("releases")
            .iter()
            .find(|r| r["version"] == version)
            .unwrap_or_else(|| panic!("no release {version}: {page}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_page_shows_every_state_rollout_halt_and_outcome() {
        let dash = dash().await;
        let (status, page) = json(&dash.state, "/api/streams/stable", None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["arch"], "x86_64");
        assert_eq!(page["arches"], serde_json::json!(["aarch64", "x86_64"]));
        assert_eq!(page["scheme"], "oci");
        assert_eq!(page["health"]["sequence"], 7);
        let words: Vec<(String, &str)> = page["releases"]
            .as_array()
            .expect("releases")
            .iter()
            .map(|r| {
                let state = &r["state"];
                let word = if !state["halt"].is_null() {
                    "halted"
                } else if !state["deadend"].is_null() {
                    "dead-end"
                } else if !state["barrier"].is_null() {
                    "barrier"
                } else if !state["rollout"].is_null() {
                    "rollout"
                } else {
                    "plain"
                };
                (r["version"].as_str().expect("version").to_string(), word)
            })
            .collect();
        let expected = [
            ("1.0", "plain"),
            ("1.1", "barrier"),
            ("1.2", "plain"),
            ("1.3", "dead-end"),
            ("1.4", "plain"),
            ("1.5", "halted"),
            ("1.6", "rollout"),
        ]
        .map(|(v, w)| (v.to_string(), w));
        assert_eq!(words, expected);
        let barrier = &row(&page, "1.1")["state"]["barrier"];
        assert_eq!(barrier["reason"], "migrate first: https://example.org/b1");
        assert_eq!(barrier["link"], "https://example.org/b1");
        assert!(barrier["from_base"].is_null());
        assert_eq!(
            row(&page, "1.3")["state"]["deadend"]["reason"],
            "broken kernel"
        );
        assert_eq!(
            row(&page, "1.4")["architectures"],
            serde_json::json!(["x86_64"])
        );
        assert_eq!(
            row(&page, "1.6")["architectures"],
            serde_json::json!(["aarch64", "x86_64"])
        );
        // Half-way at the injected clock: started an hour ago, 2 hours long.
        let rollout = &row(&page, "1.6")["state"]["rollout"];
        assert_eq!(rollout["share"], 0.5);
        assert_eq!(rollout["start"], "2027-01-15T07:00:00Z");
        assert_eq!(rollout["full_at"], "2027-01-15T09:00:00Z");
        let halt = &row(&page, "1.5")["state"]["halt"];
        assert_eq!(halt["id"], "h-1.5");
        assert_eq!(halt["reason"], "boots fail");
        assert_eq!(halt["tripped_by"], "person alice");
        assert!(
            halt["resume_command"]
                .as_str()
                .expect("command")
                .starts_with(
                    "cairn policy halt clear 1.5 --halt-list registry.example.org/acme/os-halts"
                ),
            "{halt}"
        );
        assert_eq!(page["halts"]["on"], true);
        assert_eq!(page["halts"]["sequence"], 3);
        assert!(page["halts"]["error"].is_null());
        assert_eq!(page["halts"]["halted"][0]["version"], "1.5");
        // The timeline: 48 samples from 0 to 1, "now" at a half.
        let [series] = page["timeline"].as_array().expect("timeline").as_slice() else {
            panic!("one rollout in progress: {}", page["timeline"]);
        };
        assert_eq!(series["version"], "1.6");
        assert_eq!(series["share_now"], 0.5);
        let points = series["points"].as_array().expect("points");
        assert_eq!(points.len(), build::TIMELINE_SAMPLES);
        assert_eq!(points[0][1], 0.0);
        assert_eq!(points[points.len() - 1][1], 1.0);
        // Arcs: 1.0 must go through the barrier; after it, to the newest
        // release every host gets once rollouts are done (halts aside).
        let arcs: Vec<(u64, u64, Value)> = page["graph"]["arcs"]
            .as_array()
            .expect("arcs")
            .iter()
            .map(|a| {
                (
                    a["from"].as_u64().expect("from"),
                    a["to"].as_u64().expect("to"),
                    a["arches"].clone(),
                )
            })
            .collect();
        let none = serde_json::json!([]);
        assert_eq!(
            arcs,
            [
                (0, 1, none.clone()),
                (1, 6, none.clone()),
                (2, 6, none.clone()),
                (4, 6, none.clone()),
                (5, 6, none.clone()),
            ],
            "no arc out of the dead-end 1.3 or the newest"
        );
        // Outcomes: counts, failure share, audits.
        let outcomes = &page["outcomes"];
        assert!(outcomes["error"].is_null(), "{outcomes}");
        let [release] = outcomes["releases"]
            .as_array()
            .expect("releases")
            .as_slice()
        else {
            panic!("one release reported: {outcomes}");
        };
        assert_eq!(release["version"], "1.6");
        assert_eq!(release["rebooting"], 3);
        assert_eq!(release["failures"], 1);
        assert!((release["failure_share"].as_f64().expect("share") - 1.0 / 3.0).abs() < 1e-9);
        assert!(
            release["counts"]
                .as_array()
                .expect("counts")
                .contains(&serde_json::json!(["boot_failed", 1]))
        );
        assert!(outcomes["guard"].is_null(), "no [guard] here");
        assert_eq!(outcomes["audit"][0]["halt_id"], "h-1.5");
        assert_eq!(
            outcomes["audit"][0]["tripped_by"],
            "guard: 4 failures of 20 reboots"
        );
        // The other architecture.
        let (_, aarch) = json(&dash.state, "/api/streams/stable?arch=aarch64", None).await;
        assert_eq!(aarch["arch"], "aarch64");
        assert_eq!(aarch["releases"].as_array().expect("releases").len(), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_derived_stream_shows_its_inherited_base_barrier() {
        let dash = dash().await;
        let (status, page) = json(&dash.state, "/api/streams/derived", None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["base"]["repository"], "quay.io/base");
        assert_eq!(page["base"]["barriers"][0]["version"], "b1");
        assert_eq!(
            page["base"]["barriers"][0]["built_on"],
            serde_json::json!(["d2"])
        );
        let versions: Vec<&str> = page["releases"]
            .as_array()
            .expect("releases")
            .iter()
            .map(|r| r["version"].as_str().expect("version"))
            .collect();
        assert_eq!(versions, ["d0", "d2", "d1"], "update order");
        let d2 = row(&page, "d2");
        assert_eq!(d2["base_release"], "b1");
        assert_eq!(d2["state"]["barrier"]["reason"], "migrate");
        assert_eq!(d2["state"]["barrier"]["from_base"], "quay.io/base b1");
        assert!(row(&page, "d1")["state"]["barrier"].is_null());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decide_answers_what_the_document_decides() {
        let dash = dash().await;
        let document = document();
        let now = Timestamp::from_second(T).expect("time");
        let halted = halted_digests();
        let mut targets = Vec::new();
        for (booted, wariness) in [
            ("1.0", 1.0),
            ("1.2", 0.2),
            ("1.2", 1.0),
            ("1.4", 0.9),
            (digest(4, 0).as_str(), 0.5),
        ] {
            let uri = format!(
                "/api/streams/stable/decide?arch=x86_64&booted={booted}&wariness={wariness}"
            );
            let (status, answer) = json(&dash.state, &uri, None).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            let id = document.booted_id("x86_64", booted).expect("booted");
            let query = Query {
                booted: &id,
                wariness,
                now,
                deny: &[],
                halted: &halted,
                allow_downgrade: false,
            };
            let decision = document.decide("x86_64", &query);
            assert_eq!(answer["reason"], decision.reason(), "{uri}");
            assert_eq!(
                answer["target"]["version"].as_str(),
                decision.target.as_ref().map(|t| t.version.as_str()),
                "{uri}"
            );
            assert_eq!(
                answer["next_change"].as_str().map(String::from),
                document
                    .next_change_after("x86_64", &query)
                    .map(|t| t.to_string()),
                "{uri}"
            );
            targets.push(answer["target"]["version"].as_str().map(String::from));
        }
        // The halted 1.5 is never offered; the rollout at 50% reaches a
        // wariness of 0.5 (equal is offered) but not 0.9.
        assert_eq!(
            targets,
            [
                Some("1.1".to_string()),
                Some("1.6".to_string()),
                Some("1.4".to_string()),
                None,
                Some("1.6".to_string())
            ]
        );
        // By default: a host on the newest release every host gets (1.4,
        // as 1.5 is halted and 1.6 rolling out), of wariness 1.
        let (_, answer) = json(&dash.state, "/api/streams/stable/decide", None).await;
        assert_eq!(answer["booted"], "1.4");
        assert_eq!(answer["wariness"], 1.0);
        assert!(answer["target"].is_null());
        assert!(
            answer["reason"]
                .as_str()
                .expect("reason")
                .contains("rollout of 1.6 at 50%"),
            "{answer}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_halts_on_and_no_list_nothing_is_offered() {
        let dash = dash().await;
        // A document naming no list sequence the server holds: the held list
        // is below its floor, as after a stale mirror.
        let settings = HaltSettings {
            min_sequence: 9,
            ..halt_settings()
        };
        dash.state
            .shared
            .halts
            .configure("stable", Some(&settings), Vec::new(), None);
        let (_, answer) = json(
            &dash.state,
            "/api/streams/stable/decide?booted=1.2&wariness=0",
            None,
        )
        .await;
        assert!(answer["target"].is_null(), "{answer}");
        assert!(
            answer["reason"]
                .as_str()
                .expect("reason")
                .contains("no verified, unexpired list"),
            "{answer}"
        );
        let (_, page) = json(&dash.state, "/api/streams/stable", None).await;
        assert!(page["halts"]["error"].is_string(), "{}", page["halts"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_parameters_are_named_and_unknown_streams_are_404() {
        let dash = dash().await;
        for (uri, status, kind, names) in [
            (
                "/api/streams/nope",
                StatusCode::NOT_FOUND,
                "unknown_stream",
                "nope",
            ),
            (
                "/api/streams/nope/decide",
                StatusCode::NOT_FOUND,
                "unknown_stream",
                "nope",
            ),
            (
                "/api/streams/stable?arch=riscv64",
                StatusCode::BAD_REQUEST,
                "unknown_arch",
                "arch",
            ),
            (
                "/api/streams/stable?scheme=rpm",
                StatusCode::BAD_REQUEST,
                "invalid_params",
                "scheme",
            ),
            (
                "/api/streams/stable?expand=x",
                StatusCode::BAD_REQUEST,
                "invalid_params",
                "expand",
            ),
            (
                "/api/streams/stable/decide?wariness=1.5",
                StatusCode::BAD_REQUEST,
                "invalid_params",
                "wariness",
            ),
            (
                "/api/streams/stable/decide?arch=aarch64&booted=1.4",
                StatusCode::BAD_REQUEST,
                "invalid_params",
                "booted",
            ),
        ] {
            let (got, error) = json(&dash.state, uri, None).await;
            assert_eq!(got, status, "{uri}: {error}");
            assert_eq!(error["kind"], kind, "{uri}");
            assert!(
                error["value"].as_str().expect("value").contains(names),
                "{uri}: {error}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lock_holders_are_shown_to_a_lock_admin_only() {
        let dash = dash().await;
        let (status, locks) = json(&dash.state, "/api/locks", None).await;
        assert_eq!(status, StatusCode::OK, "{locks}");
        assert_eq!(locks["holders_shown"], false);
        let group = |locks: &Value, name: &str| -> Value {
            locks["groups"]
                .as_array()
                .expect("groups")
                .iter()
                .find(|g| g["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no group {name}: {locks}"))
        };
        let default = group(&locks, "default");
        assert_eq!(default["taken"], 1);
        assert!(default["holders"][0]["id"].is_null());
        assert_eq!(default["holders"][0]["lease_left_seconds"], 3600);
        let workers = group(&locks, "workers");
        assert_eq!(workers["halt"]["reason"], "boot_failed");
        assert_eq!(
            workers["halt"]["detail"], "",
            "the host's own text is for admins"
        );
        assert!(workers["halt"]["node"].is_null());
        assert!(!locks.to_string().contains("node-"), "{locks}");
        // A lock-admin token shows them.
        let (status, locks) = json(&dash.state, "/api/locks", Some(ADMIN)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(locks["holders_shown"], true);
        assert_eq!(group(&locks, "default")["holders"][0]["id"], "node-a");
        assert_eq!(group(&locks, "workers")["halt"]["node"], "node-b");
        assert_eq!(group(&locks, "workers")["halt"]["detail"], "no network");
        // A wrong token is refused, never read as no token; a token without
        // the scope too.
        let (status, error) = json(&dash.state, "/api/locks", Some("wrong-token-0123456789")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error["kind"], "invalid_token");
        let (status, _) = json(&dash.state, "/api/locks", Some(REPORTER)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // The overview highlights the halted group, holders hidden.
        let (status, overview) = json(&dash.state, "/api/overview", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(overview["fleet_lock"], true);
        let [halted] = overview["halted_lock_groups"]
            .as_array()
            .expect("groups")
            .as_slice()
        else {
            panic!("one halted group: {overview}");
        };
        assert_eq!(halted["name"], "workers");
        assert!(halted["halt"]["node"].is_null());
        let stable = &overview["streams"][1];
        assert_eq!(stable["name"], "stable");
        assert_eq!(stable["newest"]["version"], "1.6");
        assert_eq!(stable["rollouts"][0]["share"], 0.5);
        assert_eq!(stable["halted"][0]["version"], "1.5");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_fleet_lock_the_lock_view_is_404() {
        let (status, error) = json(&super::state(), "/api/locks", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error["kind"], "fleet_lock_not_configured");
    }

    /// Fedora's stable stream: long runs collapse, `expand=all` opens them,
    /// and the page's builder is timed (printed: a benchmark, not a test).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fedoras_stable_stream_collapses_runs_and_expands_them() {
        let state = super::state();
        let (status, page) = json(&state, "/api/streams/stable", None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let (index, updates) = inputs("stable");
        let oci = build_graph(&index, &updates, "x86_64", Scheme::Oci);
        let checksum = build_graph(&index, &updates, "x86_64", Scheme::Checksum);
        let (graph, scheme) = if oci.nodes().len() >= checksum.nodes().len() {
            (oci, "oci")
        } else {
            (checksum, "checksum")
        };
        assert_eq!(page["scheme"], scheme);
        let releases = page["releases"].as_array().expect("releases");
        assert_eq!(releases.len(), graph.nodes().len());
        assert!(releases.len() > 150, "{}", releases.len());
        let items = page["graph"]["items"].as_array().expect("items");
        let collapsed = items.iter().filter(|i| i["kind"] == "collapsed").count();
        assert!(collapsed > 0, "some runs collapse");
        assert!(items.len() < releases.len() / 2, "{} rows", items.len());
        // Every release is on one row, in order.
        let mut next = 0;
        for item in items {
            let (first, last) = match item["kind"].as_str() {
                Some("release") => (item["index"].as_u64(), item["index"].as_u64()),
                _ => (item["first"].as_u64(), item["last"].as_u64()),
            };
            assert_eq!(first, Some(next));
            next = last.expect("last") + 1;
        }
        assert_eq!(next as usize, releases.len());
        assert_eq!(
            page["graph"]["items"]
                .as_array()
                .expect("items")
                .last()
                .expect("a row")["kind"],
            "release",
            "the newest is never collapsed"
        );
        // The rollout mid-way at NOW.
        let progress = graph
            .nodes()
            .iter()
            .filter_map(|n| Some((n.version.clone(), n.rollout?.progress_at(NOW))))
            .filter(|(_, p)| *p < 1.0)
            .collect::<Vec<_>>();
        let shown: Vec<(String, f64)> = page["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .map(|s| {
                (
                    s["version"].as_str().expect("v").to_string(),
                    s["share_now"].as_f64().expect("share"),
                )
            })
            .collect();
        assert_eq!(shown, progress);
        // One run opened, then all.
        let first = items
            .iter()
            .find(|i| i["kind"] == "collapsed")
            .expect("a run");
        let (_, opened) = json(
            &state,
            &format!(
                "/api/streams/stable?{}",
                first["expand"].as_str().expect("expand")
            ),
            None,
        )
        .await;
        assert_eq!(
            opened["graph"]["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter(|i| i["kind"] == "collapsed")
                .count(),
            collapsed - 1
        );
        // Opening a second run keeps the first open.
        let second = opened["graph"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["kind"] == "collapsed")
            .expect("another run")
            .clone();
        let both = second["expand"].as_str().expect("expand");
        assert_eq!(
            both,
            format!("expand={},{}", first["first"], second["first"]),
            "the open run stays open"
        );
        let (_, opened_both) = json(&state, &format!("/api/streams/stable?{both}"), None).await;
        let still_collapsed = opened_both["graph"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|i| i["kind"] == "collapsed")
            .count();
        assert_eq!(still_collapsed, collapsed - 2);
        // Indexes that start no run are dropped from the links.
        let (_, crafted) = json(
            &state,
            &format!("/api/streams/stable?expand=9999,{},12345", first["first"]),
            None,
        )
        .await;
        let links: Vec<&str> = crafted["graph"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|i| i["expand"].as_str())
            .collect();
        assert!(!links.is_empty());
        assert!(
            links
                .iter()
                .all(|l| !l.contains("9999") && !l.contains("12345")),
            "{links:?}"
        );
        let (_, all) = json(&state, "/api/streams/stable?expand=all", None).await;
        let items = all["graph"]["items"].as_array().expect("items");
        assert_eq!(items.len(), releases.len());
        assert!(items.iter().all(|i| i["kind"] == "release"));
        // Fedora's sources decide at graph level: a node on an old release
        // goes to the barrier or rollout the graph sends it to.
        let old = &graph.nodes()[0];
        let (_, answer) = json(
            &state,
            &format!(
                "/api/streams/stable/decide?arch=x86_64&booted={}&wariness=0.3",
                old.version
            ),
            None,
        )
        .await;
        let query = Query {
            booted: old.id.as_str(),
            wariness: 0.3,
            now: Timestamp::from_second(NOW).expect("time"),
            deny: &[],
            halted: &[],
            allow_downgrade: false,
        };
        let decision = graph.decide(&query);
        assert_eq!(answer["reason"], decision.reason());
        assert_eq!(answer["booted"], old.version.as_str());
        // The builder, timed with every graph built (the steady state).
        let now = Timestamp::from_second(NOW).expect("time");
        let query = StreamQuery::default();
        let started = std::time::Instant::now();
        let rounds = 200;
        let mut bytes = 0;
        for _ in 0..rounds {
            let page = build::stream_page_now(&state, "stable", &query, now, None).expect("page");
            bytes = serde_json::to_vec(&page).expect("json").len();
        }
        let each = started.elapsed() / rounds;
        let all = StreamQuery {
            expand: build::Expand::All,
            ..StreamQuery::default()
        };
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            build::stream_page_now(&state, "stable", &all, now, None).expect("page");
        }
        println!(
            "fedora stable stream page: built in {:?} (expand=all {:?}), {bytes} bytes of JSON",
            each,
            started.elapsed() / rounds
        );
    }
}
