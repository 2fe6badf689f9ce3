//! FleetLock over real HTTP on loopback: the protocol as Zincati and Cairn's
//! agent speak it, every malformed request, exclusion under contention,
//! leases and halts with an injected clock, and the admin calls.

mod common;

use cairn_agent::fleetlock::FleetLockClient;
use cairn_server::fleetlock::model::LockOp;
use cairn_server::{AppState, Config, router};
use common::Backend;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const ADMIN_TOKEN: &str = "admin-token-0123456789";
const REPORT_TOKEN: &str = "report-token-0123456789";

/// A server with a settable clock.
struct Server {
    url: String,
    state: AppState,
    now: Arc<Mutex<Timestamp>>,
    _dir: tempfile::TempDir,
    #[cfg(feature = "etcd")]
    _etcd: Option<cairn_testkit::EtcdCluster>,
}

impl Server {
    fn set_time(&self, minutes: i64) {
        *self.now.lock().expect("clock") = t(minutes);
    }
}

fn t(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + minutes * 60).expect("time")
}

async fn start(section: &str) -> Server {
    start_on(Backend::Embedded, section).await
}

async fn start_on(backend: Backend, section: &str) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    match backend {
        Backend::Embedded => start_in(dir, "database = \"locks.sqlite\"\n", section).await,
        #[cfg(feature = "etcd")]
        Backend::Etcd => {
            let etcd = tokio::task::spawn_blocking(|| cairn_testkit::EtcdCluster::start(1))
                .await
                .expect("etcd");
            let store = format!("backend = \"etcd\"\nendpoints = {:?}\n", etcd.endpoints());
            let mut server = start_in(dir, &store, section).await;
            server._etcd = Some(etcd);
            server
        }
    }
}

async fn start_in(dir: tempfile::TempDir, store: &str, section: &str) -> Server {
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).expect("token");
    std::fs::write(dir.path().join("report.token"), REPORT_TOKEN).expect("token");
    let text = format!(
        "[[token]]\nfile = \"admin.token\"\nscopes = [\"lock-admin\"]\n\
         [[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n\
         [fleet_lock]\n{store}{section}"
    );
    let config = Config::from_toml(&text, &dir.path().join("server.toml")).expect("config");
    let section = config.fleet_lock.expect("fleet_lock");
    let now = Arc::new(Mutex::new(t(0)));
    let clock_now = Arc::clone(&now);
    let clock = Arc::new(move || *clock_now.lock().expect("clock"));
    let lock = cairn_server::open_fleet_lock(&section, t(0))
        .await
        .expect("store");
    let state = AppState::with_services(Vec::<String>::new(), clock, 30, Some(lock), config.tokens);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        url: format!("http://{address}"),
        state,
        now,
        _dir: dir,
        #[cfg(feature = "etcd")]
        _etcd: None,
    }
}

const LOOPBACK: &str = "allowed_networks = [\"127.0.0.0/8\"]\n";

on_every_backend!(
    zincati_requests_take_and_release_slots_recursively,
    cairns_own_client_is_granted_and_sees_a_full_group_as_held_by_others,
    every_malformed_request_gets_its_4xx_and_kind,
    a_client_outside_the_allowed_networks_is_forbidden,
    two_hundred_clients_racing_for_three_slots_never_hold_more_than_three,
    admin_calls_need_a_lock_admin_token_and_release_one_holder,
);

/// Exactly what Zincati sends: the header, a JSON body, nothing else.
async fn zincati(server: &Server, operation: &str, id: &str, group: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/{operation}", server.url))
        .header("fleet-lock-protocol", "true")
        .header("content-type", "application/json")
        .body(json!({"client_params": {"id": id, "group": group}}).to_string())
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn admin(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/x-cairn/locks{path}", server.url);
    let request = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    let request = request.bearer_auth(ADMIN_TOKEN);
    let request = match body {
        Some(body) => request.body(body.to_string()),
        None => request,
    };
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn holders(status: &Value, group: &str) -> Vec<String> {
    status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group"] == group)
        .map(|g| {
            g["holders"]
                .as_array()
                .expect("holders")
                .iter()
                .map(|h| h["id"].as_str().expect("id").to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn zincati_requests_take_and_release_slots_recursively(backend: Backend) {
    let server = start_on(backend, LOOPBACK).await;
    let id = "e0f3745b108f471cbd4883c6fbed8cdd";
    assert_eq!(zincati(&server, "pre-reboot", id, "default").await.0, 200);
    // Recursive and idempotent.
    let (status, body) = zincati(&server, "pre-reboot", id, "default").await;
    assert_eq!((status, &body["already_held"]), (200, &json!(true)));
    let (status, body) = zincati(&server, "pre-reboot", "other-node", "default").await;
    assert_eq!((status, body["kind"].as_str()), (409, Some("group_full")));
    assert_eq!(zincati(&server, "steady-state", id, "default").await.0, 200);
    assert_eq!(zincati(&server, "steady-state", id, "default").await.0, 200);
    assert_eq!(
        zincati(&server, "pre-reboot", "other-node", "default")
            .await
            .0,
        200
    );
}

async fn cairns_own_client_is_granted_and_sees_a_full_group_as_held_by_others(backend: Backend) {
    let server = start_on(backend, LOOPBACK).await;
    // A base URL with and without the trailing slash both reach the routes.
    let base = url::Url::parse(&server.url).expect("url");
    let timeout = std::time::Duration::from_secs(5);
    let first = FleetLockClient::new(base.clone(), "node-a", "default", timeout).expect("client");
    let second = FleetLockClient::new(
        url::Url::parse(&format!("{}/", server.url)).expect("url"),
        "node-b",
        "default",
        timeout,
    )
    .expect("client");
    first.pre_reboot().await.expect("granted");
    first.pre_reboot().await.expect("recursive");
    let refused = second.pre_reboot().await.expect_err("full");
    assert!(refused.held_by_others(), "{refused:?}");
    first.steady_state().await.expect("released");
    second.pre_reboot().await.expect("granted after release");
    // The extension halts the group, naming the node.
    second
        .boot_failed("health check failed")
        .await
        .expect("reported");
    first.steady_state().await.expect("a release is still fine");
    let refused = first.pre_reboot().await.expect_err("halted");
    assert!(!refused.held_by_others());
    let message = refused.to_string();
    assert!(
        message.contains("group_halted") && message.contains("node-b"),
        "{message}"
    );
}

async fn every_malformed_request_gets_its_4xx_and_kind(backend: Backend) {
    let server = start_on(
        backend,
        &format!(
            "{LOOPBACK}unknown_groups = \"refuse\"\n[[fleet_lock.group]]\nname = \"workers\"\n"
        ),
    )
    .await;
    let client = reqwest::Client::new();
    let good = json!({"client_params": {"id": "n1", "group": "workers"}}).to_string();
    let long_id = "x".repeat(300);
    let big = format!(
        "{{\"client_params\":{{\"id\":\"n1\",\"group\":\"workers\"}},\"reason\":\"{}\"}}",
        "y".repeat(5000)
    );
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        (
            "pre-reboot",
            None,
            good.clone(),
            400,
            "missing_protocol_header",
        ),
        (
            "pre-reboot",
            Some("false"),
            good.clone(),
            400,
            "missing_protocol_header",
        ),
        (
            "steady-state",
            None,
            good.clone(),
            400,
            "missing_protocol_header",
        ),
        (
            "pre-reboot",
            Some("true"),
            "{not json".into(),
            400,
            "invalid_body",
        ),
        ("pre-reboot", Some("true"), "{}".into(), 400, "invalid_body"),
        (
            "pre-reboot",
            Some("true"),
            json!({"client_params": {"id": "n1"}}).to_string(),
            400,
            "invalid_body",
        ),
        (
            "pre-reboot",
            Some("true"),
            json!({"client_params": {"id": "n1", "group": "a b"}}).to_string(),
            400,
            "invalid_group",
        ),
        (
            "pre-reboot",
            Some("true"),
            json!({"client_params": {"id": "n1", "group": ""}}).to_string(),
            400,
            "invalid_group",
        ),
        (
            "pre-reboot",
            Some("true"),
            json!({"client_params": {"id": "n1", "group": "g/../x"}}).to_string(),
            400,
            "invalid_group",
        ),
        (
            "pre-reboot",
            Some("true"),
            json!({"client_params": {"id": "", "group": "workers"}}).to_string(),
            400,
            "invalid_client_identity",
        ),
        (
            "pre-reboot",
            Some("true"),
            json!({"client_params": {"id": long_id, "group": "workers"}}).to_string(),
            400,
            "invalid_client_identity",
        ),
        (
            "pre-reboot",
            Some("true"),
            json!({"client_params": {"id": "a\nb", "group": "workers"}}).to_string(),
            400,
            "invalid_client_identity",
        ),
        (
            "pre-reboot",
            Some("true"),
            json!({"client_params": {"id": "n1", "group": "elsewhere"}}).to_string(),
            403,
            "unknown_group",
        ),
        (
            "x-cairn/boot-failed",
            Some("true"),
            big,
            413,
            "body_too_large",
        ),
    ];
    for (operation, header, body, status, kind) in cases {
        let mut request = client
            .post(format!("{}/v1/{operation}", server.url))
            .body(body.clone());
        if let Some(value) = header {
            request = request.header("fleet-lock-protocol", value);
        }
        let response = request.send().await.expect("send");
        let got = response.status().as_u16();
        let answer: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("a JSON error");
        assert_eq!(
            (got, answer["kind"].as_str()),
            (status, Some(kind)),
            "{operation} {header:?} {body:.80}: {answer}"
        );
    }
    // The default group is always known.
    let (status, _) = zincati(&server, "pre-reboot", "n1", "default").await;
    assert_eq!(status, 200);
    // Refusals are counted by kind.
    let metrics = cairn_testkit::serve::scrape_metrics(&server.url).await;
    assert!(
        metrics.contains("cairn_fleet_lock_denials_total{kind=\"invalid_group\"} 3"),
        "{metrics}"
    );
}

async fn a_client_outside_the_allowed_networks_is_forbidden(backend: Backend) {
    let server = start_on(
        backend,
        "allowed_networks = [\"10.0.0.0/8\", \"fd00::/8\"]\n",
    )
    .await;
    let (status, body) = zincati(&server, "pre-reboot", "n1", "default").await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (403, Some("forbidden_network"))
    );
    let (status, body) = zincati(&server, "steady-state", "n1", "default").await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (403, Some("forbidden_network"))
    );
    // Admin calls are judged by their token.
    let (status, _) = admin(&server, "GET", "", None).await;
    assert_eq!(status, 200);
}

async fn two_hundred_clients_racing_for_three_slots_never_hold_more_than_three(backend: Backend) {
    let server = start_on(
        backend,
        &format!("{LOOPBACK}[[fleet_lock.group]]\nname = \"race\"\nslots = 3\n"),
    )
    .await;
    let url = server.url.clone();
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let timeouts = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let (client, url) = (client.clone(), url.clone());
            let (holding, most) = (Arc::clone(&holding), Arc::clone(&most));
            let timeouts = Arc::clone(&timeouts);
            tokio::spawn(async move {
                let body = json!({"client_params": {"id": format!("node-{n}"), "group": "race"}})
                    .to_string();
                let call = |operation: &'static str| {
                    client
                        .post(format!("{url}/v1/{operation}"))
                        .header("fleet-lock-protocol", "true")
                        .body(body.clone())
                        .send()
                };
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let status = call("pre-reboot").await.expect("send").status().as_u16();
                    if status == 200 {
                        break;
                    }
                    // Only a full group refuses. On etcd, where 200 callers
                    // queue for one group, a call past its 2 s deadline is a
                    // 503 too, and is asked again (calls are recursive).
                    let queued = matches!(backend, Backend::Embedded) || status != 503;
                    assert!(status == 409 || !queued, "refused with {status}");
                    if status == 503 {
                        timeouts.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                }
                // Counted while the server holds the slot for this node.
                let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Held a while, as a rebooting node does: a server granting a
                // slot too many would show as overlapping holders.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                holding.fetch_sub(1, Ordering::SeqCst);
                // A release past its deadline on a loaded etcd is a 503 too,
                // and is asked again; anything else must be a 200.
                let released = loop {
                    let status = call("steady-state").await.expect("send").status().as_u16();
                    if status != 503 || matches!(backend, Backend::Embedded) {
                        break status;
                    }
                    tokio::task::yield_now().await;
                };
                assert_eq!(released, 200);
                attempts
            })
        })
        .collect();
    let mut attempts = 0;
    for task in tasks {
        attempts += task.await.expect("client");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 3, "{most} nodes held a slot at once");
    assert_eq!(most, 3, "the test saw the group full at least once");
    assert!(
        attempts > 200,
        "the slots were contended ({attempts} attempts)"
    );
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    // Every grant counted, but for those answered 503 after they committed
    // (their node then found its slot held already).
    let grants: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_fleet_lock_grants_total{group=\"race\"} "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a grants count");
    let timeouts = timeouts.load(Ordering::SeqCst);
    assert!(
        (200 - timeouts.min(200)..=200).contains(&grants),
        "{grants} grants, {timeouts} timeouts"
    );
    assert!(
        metrics.contains("cairn_fleet_lock_slots_held{group=\"race\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_expired_lease_halts_the_group_until_ack_and_a_repeat_never_extends_it() {
    let server = start(&format!(
        "{LOOPBACK}[[fleet_lock.group]]\nname = \"w\"\nslots = 2\n"
    ))
    .await;
    assert_eq!(zincati(&server, "pre-reboot", "a", "w").await.0, 200);
    server.set_time(50);
    assert_eq!(
        zincati(&server, "pre-reboot", "a", "w").await.0,
        200,
        "recursive"
    );
    server.set_time(59);
    let (_, status) = admin(&server, "GET", "", None).await;
    let group = status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group"] == "w")
        .cloned()
        .expect("w");
    assert_eq!(group["holders"][0]["lease_left_seconds"], 60, "{group}");
    server.set_time(61);
    let (status, body) = zincati(&server, "pre-reboot", "b", "w").await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (423, Some("group_halted")),
        "{body}"
    );
    let value = body["value"].as_str().expect("value");
    assert!(
        value.contains("node a") && value.contains(&t(60).to_string()),
        "{value}"
    );
    // Status says why.
    let (_, status) = admin(&server, "GET", "", None).await;
    let group = status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group"] == "w")
        .cloned()
        .expect("w");
    assert_eq!(group["halt"]["reason"], "lease_expired");
    assert_eq!(group["halt"]["node"], "a");
    assert!(holders(&status, "w").is_empty());
    // Ack resumes.
    let (code, body) = admin(&server, "POST", "/w/ack", None).await;
    assert_eq!((code, &body["was_halted"]), (200, &json!(true)));
    assert_eq!(zincati(&server, "pre-reboot", "b", "w").await.0, 200);
    let metrics = cairn_testkit::serve::scrape_metrics(&server.url).await;
    assert!(
        metrics.contains("cairn_fleet_lock_lease_expiries_total{group=\"w\",on_expiry=\"halt\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_fleet_lock_halted_groups 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn on_expiry_release_frees_the_slot_and_goes_on() {
    let server = start(&format!(
        "{LOOPBACK}[[fleet_lock.group]]\nname = \"spot\"\nlease_seconds = 600\non_expiry = \"release\"\n"
    ))
    .await;
    assert_eq!(zincati(&server, "pre-reboot", "a", "spot").await.0, 200);
    server.set_time(9);
    assert_eq!(zincati(&server, "pre-reboot", "b", "spot").await.0, 409);
    server.set_time(10);
    assert_eq!(zincati(&server, "pre-reboot", "b", "spot").await.0, 200);
    let (_, status) = admin(&server, "GET", "", None).await;
    assert_eq!(holders(&status, "spot"), ["b"]);
}

async fn admin_calls_need_a_lock_admin_token_and_release_one_holder(backend: Backend) {
    let server = start_on(
        backend,
        &format!("{LOOPBACK}default_group = {{ slots = 2 }}\n"),
    )
    .await;
    zincati(&server, "pre-reboot", "a", "default").await;
    zincati(&server, "pre-reboot", "b", "default").await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/x-cairn/locks", server.url);
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
        (status, body["kind"].as_str().map(str::to_string))
    };
    let kind = |k: &str| Some(k.to_string());
    assert_eq!(
        answer(client.get(&url).send().await.expect("s")).await,
        (401, kind("missing_token"))
    );
    assert_eq!(
        answer(
            client
                .get(&url)
                .bearer_auth("not-a-token-at-all")
                .send()
                .await
                .expect("s")
        )
        .await,
        (401, kind("invalid_token"))
    );
    assert_eq!(
        answer(
            client
                .get(&url)
                .bearer_auth(REPORT_TOKEN)
                .send()
                .await
                .expect("s")
        )
        .await,
        (403, kind("missing_scope"))
    );
    assert_eq!(
        answer(
            client
                .post(format!("{url}/default/ack"))
                .send()
                .await
                .expect("s")
        )
        .await,
        (401, kind("missing_token"))
    );
    let (code, body) = admin(
        &server,
        "POST",
        "/default/release",
        Some(json!({"id": "a"})),
    )
    .await;
    assert_eq!((code, &body["released"]), (200, &json!(true)));
    let (_, status) = admin(&server, "GET", "", None).await;
    assert_eq!(holders(&status, "default"), ["b"]);
    let (code, body) = admin(
        &server,
        "POST",
        "/default/release",
        Some(json!({"nope": 1})),
    )
    .await;
    assert_eq!((code, body["kind"].as_str()), (400, Some("invalid_body")));
}

#[tokio::test]
async fn a_restarted_server_does_not_halt_groups_for_its_own_downtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("[fleet_lock]\ndatabase = \"locks.sqlite\"\n{LOOPBACK}");
    let config = Config::from_toml(&text, &dir.path().join("server.toml")).expect("config");
    let section = config.fleet_lock.expect("section");
    let metrics = cairn_server::metrics::Metrics::default();
    let policy = section.default_group;
    {
        let lock = cairn_server::open_fleet_lock(&section, t(0))
            .await
            .expect("open");
        let take = LockOp::PreReboot { id: "a".into() };
        lock.apply(&metrics, "default", policy, take, t(0))
            .await
            .expect("grant");
        // The last heartbeat before the server went down.
        lock.tick(&metrics, t(10)).await;
    }
    // Up again at minute 180, long past the lease, after 170 minutes down.
    let reopened = loop {
        match cairn_server::open_fleet_lock(&section, t(180)).await {
            Ok(lock) => break lock,
            // The old store's thread lets go of the file once its last handle is gone.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    reopened.sweep(&metrics, t(180)).await.expect("sweep");
    let groups = reopened.groups().await.expect("groups");
    assert!(groups["default"].halt.is_none(), "{groups:?}");
    assert_eq!(
        groups["default"].holders["a"].expires,
        t(60) + SignedDuration::from_mins(170)
    );
    // Past the extended lease, it does expire.
    reopened.sweep(&metrics, t(230)).await.expect("sweep");
    let groups = reopened.groups().await.expect("groups");
    assert_eq!(
        groups["default"].halt.as_ref().map(|h| h.node.as_str()),
        Some("a")
    );
}

#[tokio::test]
async fn only_a_holder_halts_its_group_and_ack_frees_the_failed_node_s_slot() {
    let server = start(LOOPBACK).await;
    let report = |id: &'static str| {
        let url = format!("{}/v1/x-cairn/boot-failed", server.url);
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("fleet-lock-protocol", "true")
                .body(json!({"client_params": {"id": id, "group": "default"}, "reason": "rolled back"}).to_string())
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let body: Value =
                serde_json::from_str(&response.text().await.expect("body")).expect("json");
            (status, body)
        }
    };
    // A client holding nothing cannot halt the group.
    let (status, body) = report("stranger").await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (409, Some("not_holder")),
        "{body}"
    );
    let (_, locks) = admin(&server, "GET", "", None).await;
    assert!(holders(&locks, "default").is_empty(), "{locks}");
    // The holder's failed boot halts it; the ack frees its slot as well.
    assert_eq!(zincati(&server, "pre-reboot", "a", "default").await.0, 200);
    assert_eq!(report("a").await.0, 200);
    assert_eq!(zincati(&server, "pre-reboot", "b", "default").await.0, 423);
    let (status, body) = admin(&server, "POST", "/default/ack", None).await;
    assert_eq!((status, &body["was_halted"]), (200, &json!(true)), "{body}");
    let (_, locks) = admin(&server, "GET", "", None).await;
    assert!(holders(&locks, "default").is_empty(), "{locks}");
    assert_eq!(zincati(&server, "pre-reboot", "b", "default").await.0, 200);
}

#[tokio::test]
async fn the_dashboard_acks_a_halted_group_only_with_its_csrf_token() {
    let server = start(&format!("{LOOPBACK}[[fleet_lock.group]]\nname = \"w\"\n")).await;
    assert_eq!(zincati(&server, "pre-reboot", "a", "w").await.0, 200);
    server.set_time(61);
    assert_eq!(
        zincati(&server, "pre-reboot", "b", "w").await.0,
        423,
        "halted"
    );
    let (cookie, csrf) = common::dashboard_login(&server.state, ADMIN_TOKEN).await;
    let ack = |csrf: String| {
        let (state, cookie) = (server.state.clone(), cookie.clone());
        async move {
            common::post_form(
                &state,
                "/ui/locks/w/ack",
                None,
                &[("cookie", &cookie)],
                &[("csrf", &csrf)],
            )
            .await
            .location
        }
    };
    assert_eq!(ack("f".repeat(64)).await, "/locks?notice=csrf");
    assert_eq!(
        zincati(&server, "pre-reboot", "b", "w").await.0,
        423,
        "a wrong CSRF token leaves the group halted"
    );
    assert_eq!(ack(csrf.clone()).await, "/locks?notice=acked");
    assert_eq!(zincati(&server, "pre-reboot", "b", "w").await.0, 200);
    assert_eq!(ack(csrf).await, "/locks?notice=not_halted");
}
