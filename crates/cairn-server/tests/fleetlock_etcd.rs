//! FleetLock on a real etcd cluster on loopback (built with `--features
//! etcd`): leases judged by etcd, and a three-member cluster losing one
//! member, then its quorum, then getting it back.

use cairn_server::{AppState, Config, router};
use cairn_testkit::EtcdCluster;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "admin-token-0123456789";

#[derive(Clone)]
struct Server {
    url: String,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

/// An in-process server on the system clock, its locks in `etcd`.
async fn start(etcd: &EtcdCluster, section: &str) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).expect("token");
    let text = format!(
        "[[token]]\nfile = \"admin.token\"\nscopes = [\"lock-admin\"]\n\
         [fleet_lock]\nbackend = \"etcd\"\nendpoints = {:?}\n\
         allowed_networks = [\"127.0.0.0/8\"]\n{section}",
        etcd.endpoints()
    );
    let config = Config::from_toml(&text, &dir.path().join("server.toml")).expect("config");
    let section = config.fleet_lock.expect("fleet_lock");
    let clock = AppState::system_clock();
    let lock = cairn_server::open_fleet_lock(&section, clock())
        .await
        .expect("store");
    let state = AppState::with_services(Vec::<String>::new(), clock, 30, Some(lock), config.tokens);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        url: format!("http://{address}"),
        _dir: std::sync::Arc::new(dir),
    }
}

async fn start_cluster(members: usize) -> EtcdCluster {
    tokio::task::spawn_blocking(move || EtcdCluster::start(members))
        .await
        .expect("etcd")
}

/// A FleetLock call as Zincati makes it: the status and the error kind.
async fn zincati(server: &Server, operation: &str, id: &str, group: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/{operation}", server.url))
        .header("fleet-lock-protocol", "true")
        .body(json!({"client_params": {"id": id, "group": group}}).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let body: Value =
        serde_json::from_str(&response.text().await.expect("body")).unwrap_or_default();
    (
        status,
        body["kind"].as_str().unwrap_or_default().to_string(),
    )
}

async fn admin(server: &Server, method: &str, path: &str) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/x-cairn/locks{path}", server.url);
    let request = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    let response = request.bearer_auth(ADMIN_TOKEN).send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn group<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group"] == name)
}

async fn readyz(server: &Server) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/readyz", server.url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

/// Poll `check` every 100 ms until it returns `Some`, for at most `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_etcd_lease_halts_the_group_until_ack_and_a_repeat_never_extends_it() {
    let etcd = start_cluster(1).await;
    let server = start(
        &etcd,
        "[[fleet_lock.group]]\nname = \"w\"\nslots = 2\nlease_seconds = 2\n",
    )
    .await;
    assert_eq!(zincati(&server, "pre-reboot", "a", "w").await.0, 200);
    let taken = Instant::now();
    // The holder asks again and again: that never extends its lease, so it
    // loses the slot when etcd's lease runs out, about 2 s after it took it.
    let answer = wait_for("a's lease to run out", Duration::from_secs(30), || async {
        let (status, kind) = zincati(&server, "pre-reboot", "a", "w").await;
        (status != 200).then_some((status, kind))
    })
    .await;
    assert_eq!(answer, (423, "group_halted".to_string()));
    assert!(
        taken.elapsed() >= Duration::from_millis(1500),
        "the lease ran out after {:?}",
        taken.elapsed()
    );
    let (_, status) = admin(&server, "GET", "").await;
    let w = group(&status, "w").expect("group w");
    assert_eq!(w["halt"]["reason"], "lease_expired", "{w}");
    assert_eq!(w["halt"]["node"], "a", "{w}");
    assert_eq!(w["holders"], json!([]), "{w}");
    assert_eq!(zincati(&server, "pre-reboot", "b", "w").await.0, 423);
    let (code, body) = admin(&server, "POST", "/w/ack").await;
    assert_eq!((code, &body["was_halted"]), (200, &json!(true)));
    assert_eq!(zincati(&server, "pre-reboot", "b", "w").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_finds_an_expired_etcd_lease_and_on_expiry_release_goes_on() {
    let etcd = start_cluster(1).await;
    let server = start(
        &etcd,
        "[[fleet_lock.group]]\nname = \"halts\"\nlease_seconds = 2\n\
         [[fleet_lock.group]]\nname = \"spot\"\nlease_seconds = 2\non_expiry = \"release\"\n",
    )
    .await;
    assert_eq!(zincati(&server, "pre-reboot", "a", "halts").await.0, 200);
    assert_eq!(zincati(&server, "pre-reboot", "a", "spot").await.0, 200);
    assert_eq!(
        zincati(&server, "pre-reboot", "b", "spot").await,
        (409, "group_full".to_string())
    );
    // `cairn lock status` judges expired leases first: the halt shows there
    // without any FleetLock call in the group.
    let halt = wait_for("the halt in status", Duration::from_secs(30), || async {
        let (_, status) = admin(&server, "GET", "").await;
        group(&status, "halts")
            .map(|g| g["halt"].clone())
            .filter(|halt| !halt.is_null())
    })
    .await;
    assert_eq!(
        (&halt["node"], &halt["reason"]),
        (&json!("a"), &json!("lease_expired"))
    );
    // The release group went on: its slot is free, and it is not halted.
    let (status, kind) = zincati(&server, "pre-reboot", "b", "spot").await;
    assert_eq!((status, kind.as_str()), (200, ""));
    let (_, status) = admin(&server, "GET", "").await;
    let spot = group(&status, "spot").expect("spot");
    assert!(spot["halt"].is_null(), "{spot}");
    assert_eq!(spot["holders"][0]["id"], "b", "{spot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_cluster_grants_with_one_down_refuses_without_quorum_and_recovers() {
    let mut etcd = start_cluster(3).await;
    let server = start(&etcd, "[[fleet_lock.group]]\nname = \"g\"\nslots = 1\n").await;
    assert_eq!(zincati(&server, "pre-reboot", "n0", "g").await.0, 200);
    assert_eq!(zincati(&server, "steady-state", "n0", "g").await.0, 200);

    // The leader down: the other two elect another, and are a quorum.
    let leader = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(leader) = etcd.leader() {
                break leader;
            }
            assert!(Instant::now() < deadline, "no member says it leads");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    etcd.kill(leader);
    let other = (0..3).find(|&n| n != leader).expect("another member");
    let (status, _) = wait_for(
        "a grant with one member down",
        Duration::from_secs(20),
        || async {
            let answer = zincati(&server, "pre-reboot", "n1", "g").await;
            assert!(
                answer.0 == 200 || answer == (503, "backend_unavailable".to_string()),
                "{answer:?}"
            );
            (answer.0 == 200).then_some(answer)
        },
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(readyz(&server).await, 200);

    // Two down: no quorum. Every call is a 503, never a grant.
    etcd.kill(other);
    wait_for("/readyz to fail", Duration::from_secs(20), || async {
        (readyz(&server).await == 503).then_some(())
    })
    .await;
    let started = Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|n| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for operation in ["pre-reboot", "steady-state", "pre-reboot"] {
                    answers.push(zincati(&server, operation, &format!("m{n}"), "g").await);
                }
                answers
            })
        })
        .collect();
    for call in calls {
        for answer in call.await.expect("client") {
            assert_eq!(answer, (503, "backend_unavailable".to_string()));
        }
    }
    // Each answer came within the deadline (2 s), not when etcd gave up.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Back: it recovers by itself, with n1 still the only holder.
    etcd.restart(leader);
    etcd.restart(other);
    tokio::task::block_in_place(|| {
        etcd.wait_healthy(leader);
        etcd.wait_healthy(other);
    });
    wait_for("/readyz to pass", Duration::from_secs(30), || async {
        (readyz(&server).await == 200).then_some(())
    })
    .await;
    let (_, status) = admin(&server, "GET", "").await;
    let g = group(&status, "g").expect("g");
    assert_eq!(g["holders"].as_array().map(Vec::len), Some(1), "{g}");
    assert_eq!(g["holders"][0]["id"], "n1", "{g}");
    // The slot is still n1's: racing nodes are refused until it is released.
    let racers: Vec<_> = (0..10)
        .map(|n| {
            let server = server.clone();
            tokio::spawn(async move { zincati(&server, "pre-reboot", &format!("r{n}"), "g").await })
        })
        .collect();
    for racer in racers {
        assert_eq!(racer.await.expect("racer"), (409, "group_full".to_string()));
    }
    assert_eq!(zincati(&server, "steady-state", "n1", "g").await.0, 200);
    let racers: Vec<_> = (0..10)
        .map(|n| {
            let server = server.clone();
            tokio::spawn(async move { zincati(&server, "pre-reboot", &format!("r{n}"), "g").await })
        })
        .collect();
    let mut granted = 0;
    for racer in racers {
        let answer = racer.await.expect("racer");
        assert!(
            answer.0 == 200 || answer == (409, "group_full".to_string()),
            "{answer:?}"
        );
        granted += usize::from(answer.0 == 200);
    }
    assert_eq!(granted, 1, "one slot, one grant");
}

/// Under `release`, a node whose lease ran out and that asks again is granted
/// a fresh slot, with a fresh lease behind it: the next call on the group
/// must still count it as holding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_granted_again_after_its_lease_ran_out_holds_a_real_lease() {
    let etcd = start_cluster(1).await;
    let server = start(
        &etcd,
        "[[fleet_lock.group]]\nname = \"spot\"\nslots = 1\nlease_seconds = 2\non_expiry = \"release\"\n",
    )
    .await;
    let take = |id: &'static str| {
        let url = format!("{}/v1/pre-reboot", server.url);
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("fleet-lock-protocol", "true")
                .body(json!({"client_params": {"id": id, "group": "spot"}}).to_string())
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let body: Value =
                serde_json::from_str(&response.text().await.expect("body")).unwrap_or(Value::Null);
            (status, body)
        }
    };
    assert_eq!(take("a").await.0, 200);
    // Asking again holds it as it is, until the lease has run out: then the
    // grant is a new one.
    wait_for(
        "a's lease to run out and a new grant",
        Duration::from_secs(30),
        || async {
            let (status, body) = take("a").await;
            assert_eq!(status, 200, "{body}");
            (body["already_held"] == json!(false)).then_some(())
        },
    )
    .await;
    let (status, body) = take("b").await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (409, Some("group_full")),
        "{body}"
    );
}
