//! The outcome-report collector over real HTTP on loopback: reports checked
//! against a document stream served through the real refresh path, counted
//! once, refused with their kinds, limited per address, kept through a
//! restart, and read back with the missing hosts, on a settable clock. The
//! restart, retry and missing cases run on both backends (etcd with the
//! `etcd` feature, a one-member cluster per test).

mod common;

use cairn_graph::{ArchEntry, GraphDocument, Release, Rollout};
use cairn_server::refresh::StreamSource;
use cairn_server::state::Services;
use cairn_server::{AppState, Config, router};
use common::Backend;
use jiff::Timestamp;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const REPORT_TOKEN: &str = "report-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn commit(n: u8) -> String {
    format!("{:02x}", n + 0x80).repeat(32)
}

/// 44.1, then 44.2 (a rollout: the one step 44.1 → 44.2), then 44.3 (no
/// rollout, no barrier: nobody is sent to it).
fn document() -> String {
    document_with(None)
}

/// As [`document`], with 44.3 as given.
fn document_with(release_3: Option<Release>) -> String {
    let release = |n: u8, rollout: Option<Rollout>| Release {
        version: format!("44.{n}"),
        architectures: [(
            "x86_64".to_string(),
            ArchEntry {
                ostree: Some(commit(n)),
                ..ArchEntry::image(digest(n))
            },
        )]
        .into(),
        rollout,
        ..Release::default()
    };
    GraphDocument {
        stream: "stable".into(),
        repository: "registry.example.org/acme/os".into(),
        sequence: 1,
        issued: Timestamp::from_second(1_690_000_000).expect("time"),
        expires: Timestamp::from_second(4_000_000_000).expect("time"),
        releases: vec![
            release(1, None),
            release(2, Some(Rollout::immediate())),
            release_3.unwrap_or_else(|| release(3, None)),
        ],
        ..GraphDocument::default()
    }
    .to_json_pretty()
}

/// The start of an hour, so tests know how far the next one is.
fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_699_999_200 + seconds).expect("time")
}

/// A server with a settable clock, on loopback.
struct Server {
    url: String,
    now: Arc<Mutex<Timestamp>>,
    task: tokio::task::JoinHandle<()>,
    dir: Arc<tempfile::TempDir>,
    backend_keys: String,
    #[cfg(feature = "etcd")]
    _etcd: Option<Arc<cairn_testkit::EtcdCluster>>,
}

impl Server {
    fn set_time(&self, seconds: i64) {
        *self.now.lock().expect("clock") = t(seconds);
    }

    /// Stop serving and let go of the store (the embedded one's file).
    fn stop(self) -> (Arc<tempfile::TempDir>, String, Timestamp) {
        self.task.abort();
        let now = *self.now.lock().expect("clock");
        (self.dir, self.backend_keys, now)
    }
}

async fn start(backend: Backend, extra: &str) -> Server {
    start_serving(backend, extra, &document()).await
}

/// A server whose stream starts with this document.
async fn start_serving(backend: Backend, extra: &str, document: &str) -> Server {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    std::fs::write(dir.path().join("stable.json"), document).expect("document");
    match backend {
        Backend::Embedded => {
            start_in(dir, "database = \"reports.sqlite\"\n".into(), extra, t(0)).await
        }
        #[cfg(feature = "etcd")]
        Backend::Etcd => {
            let etcd = tokio::task::spawn_blocking(|| cairn_testkit::EtcdCluster::start(1))
                .await
                .expect("etcd");
            let keys = format!("backend = \"etcd\"\nendpoints = {:?}\n", etcd.endpoints());
            let mut server = start_in(dir, keys, extra, t(0)).await;
            server._etcd = Some(Arc::new(etcd));
            server
        }
    }
}

/// Start a server again on what `server` kept, once its store let go.
async fn restart(server: Server) -> Server {
    #[cfg(feature = "etcd")]
    let etcd = server._etcd.clone();
    let (dir, keys, now) = server.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match try_start_in(dir.clone(), keys.clone(), "", now).await {
            Ok(server) => {
                #[cfg(feature = "etcd")]
                let server = Server {
                    _etcd: etcd.clone(),
                    ..server
                };
                return server;
            }
            // The old connections still hold the embedded store's file.
            Err(error) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the store was not let go: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn start_in(
    dir: Arc<tempfile::TempDir>,
    keys: String,
    extra: &str,
    now: Timestamp,
) -> Server {
    try_start_in(dir, keys, extra, now).await.expect("server")
}

async fn try_start_in(
    dir: Arc<tempfile::TempDir>,
    keys: String,
    extra: &str,
    now: Timestamp,
) -> Result<Server, cairn_server::ServeError> {
    std::fs::write(dir.path().join("report.token"), REPORT_TOKEN).expect("token");
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).expect("token");
    let document = dir.path().join("stable.json");
    if !document.exists() {
        std::fs::write(&document, self::document()).expect("document");
    }
    let text = format!(
        "[[stream]]\nname = \"stable\"\ndocument = {{ location = {:?} }}\n\
         [[stream]]\nname = \"later\"\ndocument = {{ location = {:?} }}\n\
         [[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n\
         [[token]]\nfile = \"admin.token\"\nscopes = [\"lock-admin\"]\n\
         [reports]\n{keys}missing_after_seconds = 5\n{extra}",
        document.display().to_string(),
        dir.path().join("never-written.json").display().to_string(),
    );
    let config = Config::from_toml(&text, &dir.path().join("server.toml")).expect("config");
    let section = config.reports.clone().expect("reports");
    let names = || config.streams.iter().map(|s| s.name.clone());
    let reports = cairn_server::open_reports(&section, names()).await?;
    reports.restore_steps(now).await.expect("kept steps");
    let clock_now = Arc::new(Mutex::new(now));
    let reading = Arc::clone(&clock_now);
    let clock = Arc::new(move || *reading.lock().expect("clock"));
    let state = AppState::with(
        names(),
        clock,
        30,
        Services {
            fleet_lock: None,
            reports: Some(reports),
            tokens: config.tokens.clone(),
            halts: None,
        },
    );
    // The real refresh path: the document is read, checked and served.
    let client = cairn_oci::RegistryClient::new(cairn_oci::ClientOptions::default())
        .expect("registry client");
    let mut source = StreamSource::new(&config.streams[0], client, Duration::from_secs(5));
    assert!(source.refresh_once(&state).await.expect("refresh"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Server {
        url: format!("http://{address}"),
        now: clock_now,
        task,
        dir,
        backend_keys: keys,
        #[cfg(feature = "etcd")]
        _etcd: None,
    })
}

/// A report of the contract, from 44.1 to 44.2 by image digest.
fn report(id: u32, outcome: &str) -> Value {
    json!({
        "id": format!("{id:032x}"),
        "from": {"version": "44.1", "digest": digest(1)},
        "to": {"version": "44.2", "digest": digest(2)},
        "outcome": outcome,
        "agent_version": "0.1.0",
    })
}

/// POST a body as the agent does; the status, the body and `Retry-After`.
async fn post_raw(
    server: &Server,
    stream: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value, Option<String>) {
    // A client per call: no kept-alive connection holds the server's state
    // (and its store) after it stops.
    let mut request = reqwest::Client::new()
        .post(format!("{}/v2/reports/{stream}", server.url))
        .header("content-type", content_type)
        .header("user-agent", "cairn-agent/0.1.0")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        retry_after,
    )
}

async fn post(server: &Server, body: &Value) -> (u16, Value) {
    let (status, answer, _) = post_raw(
        server,
        "stable",
        Some(REPORT_TOKEN),
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    (status, answer)
}

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The summary of release 44.2 in `GET /v2/reports/stable`.
async fn release_44_2(server: &Server) -> Value {
    let (status, body) = get(server, "/v2/reports/stable").await;
    assert_eq!(status, 200, "{body}");
    body["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .find(|release| release["version"] == "44.2")
        .cloned()
        .unwrap_or(Value::Null)
}

const COUNTED: (u16, &str) = (200, "counted");

fn answer(status: u16, body: &Value) -> (u16, &str) {
    let word = if body["counted"] == true {
        "counted"
    } else if body["duplicate"] == true {
        "duplicate"
    } else {
        body["kind"].as_str().unwrap_or("?")
    };
    (status, word)
}

on_every_backend!(
    a_retried_report_counts_once_and_a_restart_keeps_the_counts,
    missing_hosts_are_counted_exactly,
    a_restart_keeps_the_steps_of_the_documents_before_it,
);

async fn a_retried_report_counts_once_and_a_restart_keeps_the_counts(backend: Backend) {
    let server = start(backend, "exempt_networks = [\"127.0.0.0/8\"]\n").await;
    let failed = report(1, "boot_failed");
    let (status, body) = post(&server, &failed).await;
    assert_eq!(answer(status, &body), COUNTED);
    assert_eq!(body, json!({"counted": true}));
    // The same report again (the answer was lost): counted once.
    let (status, body) = post(&server, &failed).await;
    assert_eq!(body, json!({"counted": false, "duplicate": true}));
    assert_eq!(status, 200);
    for (id, outcome) in [(2, "rebooting"), (3, "rebooting"), (4, "booted_healthy")] {
        let (status, body) = post(&server, &report(id, outcome)).await;
        assert_eq!(answer(status, &body), COUNTED, "{outcome}");
    }
    let before = release_44_2(&server).await;
    assert_eq!(before["counts"]["boot_failed"], 1);
    assert_eq!(before["rebooting"], 2);
    let server = restart(server).await;
    assert_eq!(
        release_44_2(&server).await,
        before,
        "the counts survive a restart"
    );
    let (status, body) = post(&server, &failed).await;
    assert_eq!(answer(status, &body), (200, "duplicate"), "so do the ids");
}

/// 44.3 as a rollout, then dead-ended with its rollout stopped (as `cairn
/// deadend add` and `rollout stop` leave it), then two restarts: the step
/// 44.2 → 44.3 that only the first document offered still counts, for 72
/// hours after the second was served.
async fn a_restart_keeps_the_steps_of_the_documents_before_it(backend: Backend) {
    let release_3 = |rollout: Option<Rollout>, deadend: Option<cairn_graph::Reason>| Release {
        version: "44.3".into(),
        architectures: [("x86_64".to_string(), ArchEntry::image(digest(3)))].into(),
        rollout,
        deadend,
        ..Release::default()
    };
    let offered = document_with(Some(release_3(Some(Rollout::immediate()), None)));
    let exempt = "exempt_networks = [\"127.0.0.0/8\"]\n";
    let server = start_serving(backend, exempt, &offered).await;
    let failed = |id: u32| {
        json!({
            "id": format!("{id:032x}"),
            "from": {"version": "44.2", "digest": digest(2)},
            "to": {"version": "44.3", "digest": digest(3)},
            "outcome": "boot_failed",
            "agent_version": "0.1.0",
        })
    };
    let (status, body) = post(&server, &failed(1)).await;
    assert_eq!(answer(status, &body), COUNTED);
    let stopped = document_with(Some(release_3(
        None,
        Some(cairn_graph::Reason::new("does not boot")),
    )));
    std::fs::write(server.dir.path().join("stable.json"), stopped).expect("document");
    server.set_time(3600);
    // The first restart serves the second document only.
    let server = restart(server).await;
    let (status, body) = post(&server, &failed(2)).await;
    assert_eq!(answer(status, &body), COUNTED, "{body}");
    let server = restart(server).await;
    let (status, body) = post(&server, &failed(3)).await;
    assert_eq!(answer(status, &body), COUNTED, "{body}");
    // 72 hours after the second document was served, no longer.
    server.set_time(3600 + 72 * 3600);
    let (status, body) = post(&server, &failed(4)).await;
    assert_eq!(answer(status, &body), (422, "implausible"), "{body}");
    assert_eq!(
        (post(&server, &report(5, "rebooting")).await.0),
        200,
        "the document served now still counts"
    );
}

async fn missing_hosts_are_counted_exactly(backend: Backend) {
    // missing_after_seconds = 5 in every test's configuration.
    let server = start(backend, "exempt_networks = [\"127.0.0.0/8\"]\n").await;
    for id in 1..=3 {
        assert_eq!(post(&server, &report(id, "rebooting")).await.0, 200);
    }
    server.set_time(3);
    assert_eq!(post(&server, &report(4, "rebooting")).await.0, 200);
    assert_eq!(post(&server, &report(5, "booted_healthy")).await.0, 200);
    server.set_time(4);
    let release = release_44_2(&server).await;
    assert_eq!(
        (release["rebooting"].clone(), release["missing"].clone()),
        (json!(4), json!(0))
    );
    // At 5 s the first three are old enough; one final report came.
    server.set_time(5);
    assert_eq!(release_44_2(&server).await["missing"], 2);
    assert_eq!(post(&server, &report(6, "boot_failed")).await.0, 200);
    let release = release_44_2(&server).await;
    assert_eq!(release["missing"], 1);
    // The fourth is old enough at 8 s: four rebooting, two finals.
    server.set_time(8);
    let release = release_44_2(&server).await;
    assert_eq!(release["missing"], 2);
    assert_eq!(release["failures"], 1);
    assert_eq!(release["failure_share"], 0.25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counts_read_back_per_release_with_the_failure_share() {
    let server = start(Backend::Embedded, "exempt_networks = [\"127.0.0.0/8\"]\n").await;
    let outcomes = [
        "rebooting",
        "rebooting",
        "rebooting",
        "rebooting",
        "booted_healthy",
        "booted_unverified",
        "booted_unhealthy",
        "rolled_back",
        "boot_failed",
        "rollback_failed",
    ];
    for (id, outcome) in outcomes.iter().enumerate() {
        let (status, body) = post(&server, &report(id as u32, outcome)).await;
        assert_eq!(answer(status, &body), COUNTED, "{outcome}");
    }
    // A checksum-booted host's step: the commits of the same releases.
    let by_commit = json!({
        "id": "ffffffffffffffffffffffffffffffff",
        "from": {"version": "44.1", "digest": commit(1)},
        "to": {"version": "44.2", "digest": commit(2)},
        "outcome": "booted_healthy",
        "agent_version": "0.1.0",
    });
    let (status, body) = post(&server, &by_commit).await;
    assert_eq!(answer(status, &body), COUNTED);
    server.set_time(3600);
    let (status, body) = get(&server, "/v2/reports/stable").await;
    assert_eq!(status, 200);
    assert_eq!(body["stream"], "stable");
    assert_eq!(body["now"], t(3600).to_string());
    assert_eq!(body["missing_after_seconds"], 5);
    let releases = body["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 2, "{body}");
    let by_digest = releases
        .iter()
        .find(|r| r["digest"] == digest(2))
        .expect("by digest");
    assert_eq!(
        by_digest,
        &json!({
            "version": "44.2",
            "digest": digest(2),
            "counts": {
                "rebooting": 4, "booted_healthy": 1, "booted_unverified": 1,
                "booted_unhealthy": 1, "rolled_back": 1, "boot_failed": 1,
                "rollback_failed": 1,
            },
            "failures": 4,
            "rebooting": 4,
            "failure_share": 1.0,
            "missing": 0,
        })
    );
    let by_commit = releases
        .iter()
        .find(|r| r["digest"] == commit(2))
        .expect("by commit");
    assert_eq!(by_commit["counts"]["booted_healthy"], 1);
    assert_eq!(by_commit["failure_share"], Value::Null);
    // Reading needs no token; an unknown stream is 404.
    let (status, body) = get(&server, "/v2/reports/nowhere").await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (404, Some("unknown_stream"))
    );
    let (_, metrics) = get(&server, "/metrics").await;
    let metrics = metrics.as_str().expect("text");
    assert!(
        metrics.contains("cairn_reports_counted_total{stream=\"stable\",outcome=\"rebooting\"} 4"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_need_a_token_with_the_report_scope() {
    let server = start(Backend::Embedded, "").await;
    let body = report(1, "boot_failed").to_string().into_bytes();
    let cases = [
        (None, (401, "missing_token")),
        (Some("not-a-known-token-0123"), (401, "invalid_token")),
        (Some(ADMIN_TOKEN), (403, "missing_scope")),
    ];
    for (token, expected) in cases {
        let (status, answer_body, _) =
            post_raw(&server, "stable", token, "application/json", body.clone()).await;
        assert_eq!(answer(status, &answer_body), expected, "{token:?}");
    }
    assert!(release_44_2(&server).await.is_null(), "nothing was counted");
    let (status, answer_body, _) = post_raw(
        &server,
        "stable",
        Some(REPORT_TOKEN),
        "application/json",
        body,
    )
    .await;
    assert_eq!(answer(status, &answer_body), COUNTED);
}

/// The stream, the content type, the body, and the status and kind expected.
type BadCase = (&'static str, &'static str, Vec<u8>, (u16, &'static str));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_report_gets_its_4xx_and_kind() {
    let server = start(Backend::Embedded, "").await;
    let good = report(1, "boot_failed");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = good.clone();
        change(&mut body);
        body.to_string().into_bytes()
    };
    let padded = {
        let mut body = good.clone();
        body["agent_version"] = json!(" ".repeat(5000));
        body.to_string().into_bytes()
    };
    let cases: Vec<BadCase> = vec![
        (
            "stable",
            "application/json",
            padded,
            (413, "body_too_large"),
        ),
        (
            "stable",
            "application/json",
            b"{\"id\":".to_vec(),
            (400, "malformed"),
        ),
        (
            "stable",
            "application/json",
            with(&|b| b["host"] = json!("web-1")),
            (400, "malformed"),
        ),
        (
            "stable",
            "application/json",
            with(&|b| b["id"] = json!("ABC")),
            (400, "malformed"),
        ),
        (
            "stable",
            "application/json",
            with(&|b| b["to"]["digest"] = json!("latest")),
            (400, "malformed"),
        ),
        (
            "stable",
            "application/json",
            with(&|b| b["to"]["version"] = json!("44\u{7}2")),
            (400, "malformed"),
        ),
        (
            "stable",
            "application/json",
            with(&|b| b["outcome"] = json!("exploded")),
            (400, "unknown_outcome"),
        ),
        (
            "stable",
            "application/json",
            with(&|b| b["outcome"] = json!("staged")),
            (400, "unknown_outcome"),
        ),
        // 44.3 is offered to nobody; 44.2 → 44.1 goes backwards.
        (
            "stable",
            "application/json",
            with(&|b| b["to"] = json!({"version": "44.3", "digest": digest(3)})),
            (422, "implausible"),
        ),
        (
            "stable",
            "application/json",
            with(&|b| {
                b["from"] = json!({"version": "44.2", "digest": digest(2)});
                b["to"] = json!({"version": "44.1", "digest": digest(1)});
            }),
            (422, "implausible"),
        ),
        // The digest matches 44.2, the version does not.
        (
            "stable",
            "application/json",
            with(&|b| b["to"]["version"] = json!("44.9")),
            (422, "implausible"),
        ),
        // The booted release unknown to the agent.
        (
            "stable",
            "application/json",
            with(&|b| {
                b.as_object_mut().expect("object").remove("from");
            }),
            (422, "implausible"),
        ),
        (
            "stable",
            "text/plain",
            good.to_string().into_bytes(),
            (415, "unsupported_media_type"),
        ),
        (
            "nowhere",
            "application/json",
            good.to_string().into_bytes(),
            (404, "unknown_stream"),
        ),
    ];
    for (stream, content_type, body, expected) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(200)
            .collect::<String>();
        let (status, answer_body, _) =
            post_raw(&server, stream, Some(REPORT_TOKEN), content_type, body).await;
        assert_eq!(answer(status, &answer_body), expected, "{shown}");
        assert!(answer_body["value"].is_string(), "{answer_body}");
    }
    // A stream that has served no graph yet: retry later, not refused.
    let (status, answer_body, retry_after) = post_raw(
        &server,
        "later",
        Some(REPORT_TOKEN),
        "application/json",
        good.to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer(status, &answer_body), (503, "not_ready"));
    assert_eq!(retry_after.as_deref(), Some("30"));
    assert!(release_44_2(&server).await.is_null(), "nothing was counted");
    let (_, metrics) = get(&server, "/metrics").await;
    let metrics = metrics.as_str().expect("text");
    assert!(
        metrics.contains("cairn_reports_refused_total{kind=\"implausible\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_reports_refused_total{kind=\"malformed\"} 5"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_counts_one_report_per_outcome_release_and_hour() {
    let server = start(Backend::Embedded, "").await;
    server.set_time(600);
    assert_eq!(answer_of(&server, 1, "boot_failed").await, COUNTED);
    // Another host behind the same address, same outcome, same release.
    let (status, body, retry_after) = post_raw(
        &server,
        "stable",
        Some(REPORT_TOKEN),
        "application/json",
        report(2, "boot_failed").to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer(status, &body), (429, "address_limit"));
    assert_eq!(retry_after.as_deref(), Some("3000"), "until the next hour");
    // Another outcome has its own allowance; a retry of a counted report
    // is still only a duplicate.
    assert_eq!(answer_of(&server, 3, "rebooting").await, COUNTED);
    assert_eq!(release_44_2(&server).await["counts"]["boot_failed"], 1);
    // The refused report's id was not kept: sent again next hour, it counts.
    server.set_time(3600);
    assert_eq!(answer_of(&server, 2, "boot_failed").await, COUNTED);
    assert_eq!(release_44_2(&server).await["counts"]["boot_failed"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exempt_network_is_not_limited() {
    let server = start(Backend::Embedded, "exempt_networks = [\"127.0.0.0/8\"]\n").await;
    for id in 1..=3 {
        assert_eq!(answer_of(&server, id, "boot_failed").await, COUNTED);
    }
    assert_eq!(release_44_2(&server).await["counts"]["boot_failed"], 3);
}

async fn answer_of(server: &Server, id: u32, outcome: &str) -> (u16, &'static str) {
    let (status, body) = post(server, &report(id, outcome)).await;
    let word = match answer(status, &body).1 {
        "counted" => "counted",
        "duplicate" => "duplicate",
        "address_limit" => "address_limit",
        other => panic!("unexpected answer {status} {other}: {body}"),
    };
    (status, word)
}

/// Two copies on one etcd cluster, each sent every report: each report is
/// counted by exactly one of them, and both read the same totals.
#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_on_one_etcd_count_each_report_once() {
    let exempt = "exempt_networks = [\"127.0.0.0/8\"]\n";
    let first = start(Backend::Etcd, exempt).await;
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let second = start_in(dir, first.backend_keys.clone(), exempt, t(0)).await;
    let servers = Arc::new([first, second]);
    let tasks: Vec<_> = (0..60u32)
        .flat_map(|id| [(id, 0), (id, 1)])
        .map(|(id, copy)| {
            let servers = Arc::clone(&servers);
            tokio::spawn(async move {
                let (status, body) = post(&servers[copy], &report(id, "rebooting")).await;
                assert_eq!(status, 200, "{body}");
                body["counted"] == true
            })
        })
        .collect();
    let mut counted = 0;
    for task in tasks {
        counted += usize::from(task.await.expect("task"));
    }
    assert_eq!(counted, 60, "each report counted by one copy");
    for server in servers.iter() {
        assert_eq!(release_44_2(server).await["rebooting"], 60);
    }
}
