//! Two `cairn serve` processes sharing one real etcd (built with `--features
//! etcd`): clients split between them never hold more slots than there are,
//! and when one copy is SIGKILLed the other carries on with the same holders.

mod common;
use common::served::{Served, serve};

use cairn_testkit::EtcdCluster;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const TOKEN: &str = "lock-admin-token-0123456789";

/// Configure `dir` for a server whose locks are in `etcd`.
fn configure(dir: &Path, etcd: &EtcdCluster, groups: &str) {
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).expect("token");
    std::fs::write(
        dir.join("server.toml"),
        format!(
            "[[token]]\nfile = \"admin.token\"\nscopes = [\"lock-admin\"]\n\
             [fleet_lock]\nbackend = \"etcd\"\nendpoints = {:?}\n\
             allowed_networks = [\"127.0.0.0/8\"]\n{groups}",
            etcd.endpoints()
        ),
    )
    .expect("config");
}

async fn zincati(url: &str, operation: &str, id: &str, group: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/{operation}"))
        .header("fleet-lock-protocol", "true")
        .body(json!({"client_params": {"id": id, "group": group}}).to_string())
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

async fn holders(url: &str, group: &str) -> Vec<String> {
    let text = reqwest::Client::new()
        .get(format!("{url}/v1/x-cairn/locks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("status")
        .text()
        .await
        .expect("text");
    let status: Value = serde_json::from_str(&text).expect("json");
    status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| g["group"] == group)
        .flat_map(|g| g["holders"].as_array().cloned().unwrap_or_default())
        .map(|h| h["id"].as_str().expect("id").to_string())
        .collect()
}

/// What two `cairn serve` copies share: a one-member etcd, and their
/// configuration directories. Kept alive while the copies run.
struct Shared {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    _etcd: EtcdCluster,
}

/// Two `cairn serve` copies with the same `groups`, sharing one etcd.
async fn two_copies(groups: &str) -> (Shared, Served, Served) {
    let etcd = tokio::task::spawn_blocking(|| EtcdCluster::start(1))
        .await
        .expect("etcd");
    let dirs = (
        tempfile::tempdir().expect("d"),
        tempfile::tempdir().expect("d"),
    );
    configure(dirs.0.path(), &etcd, groups);
    configure(dirs.1.path(), &etcd, groups);
    let (first, second) = (serve(dirs.0.path()), serve(dirs.1.path()));
    let shared = Shared {
        _dirs: dirs,
        _etcd: etcd,
    };
    (shared, first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_on_two_servers_never_hold_more_than_three_slots() {
    let (_shared, first, second) =
        two_copies("[[fleet_lock.group]]\nname = \"race\"\nslots = 3\n").await;
    let urls = [first.url.clone(), second.url.clone()];
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            // Even clients call one server, odd ones the other.
            let url = urls[n % 2].clone();
            let (holding, most) = (Arc::clone(&holding), Arc::clone(&most));
            tokio::spawn(async move {
                let id = format!("node-{n}");
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let (status, kind) = zincati(&url, "pre-reboot", &id, "race").await;
                    if status == 200 {
                        break;
                    }
                    // A full group waits; a 503 (a copy busy past its 2 s
                    // deadline) is asked again, as calls are recursive.
                    assert!(
                        matches!(
                            (status, kind.as_str()),
                            (409, "group_full") | (503, "backend_unavailable")
                        ),
                        "{status} {kind}"
                    );
                    tokio::task::yield_now().await;
                }
                // Counted while etcd records the slot as this node's.
                let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Held a while, as a rebooting node does: a server granting a
                // slot too many would show as overlapping holders.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                holding.fetch_sub(1, Ordering::SeqCst);
                assert_eq!(zincati(&url, "steady-state", &id, "race").await.0, 200);
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
    assert!(attempts > 200, "the slots were contended ({attempts})");
    assert!(holders(&first.url, "race").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_server_is_killed_the_other_carries_on_with_the_same_holders() {
    let (_shared, first, second) =
        two_copies("[[fleet_lock.group]]\nname = \"g\"\nslots = 2\n").await;
    assert_eq!(zincati(&first.url, "pre-reboot", "a", "g").await.0, 200);
    assert_eq!(zincati(&first.url, "pre-reboot", "b", "g").await.0, 200);
    let url = first.url.clone();
    drop(first); // SIGKILL, while a and b hold their slots.
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "the first server is gone"
    );
    assert_eq!(holders(&second.url, "g").await, ["a", "b"]);
    // Its gauges show the slots the first copy granted: read from etcd.
    let metrics = cairn_testkit::serve::scrape_metrics(&second.url).await;
    assert!(
        metrics.contains("cairn_fleet_lock_slots_held{group=\"g\"} 2"),
        "{metrics}"
    );
    assert_eq!(
        zincati(&second.url, "pre-reboot", "c", "g").await,
        (409, "group_full".to_string())
    );
    // The holders carry on through the other copy: recursively held, then released.
    assert_eq!(zincati(&second.url, "pre-reboot", "a", "g").await.0, 200);
    assert_eq!(zincati(&second.url, "steady-state", "a", "g").await.0, 200);
    assert_eq!(zincati(&second.url, "pre-reboot", "c", "g").await.0, 200);
    assert_eq!(holders(&second.url, "g").await, ["b", "c"]);
}
