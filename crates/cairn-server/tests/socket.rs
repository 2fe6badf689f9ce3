//! The server on a real socket: a bounded load of 10,000 requests with varied
//! wariness, all answered without error.

use cairn_graph::fcos::{ReleaseIndex, Updates};
use cairn_server::snapshot::Snapshot;
use cairn_server::{AppState, router};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn data(path: &str) -> Vec<u8> {
    let full = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fcos")
        .join(path);
    std::fs::read(full).expect("testdata")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_without_an_error() {
    // Mid-rollout, so that wariness values give different answers.
    let clock = Arc::new(|| jiff::Timestamp::from_second(1_784_815_200).expect("time"));
    let state = AppState::new(["stable".to_string()], clock, 30);
    let index = ReleaseIndex::from_json(&data("releases/stable/releases.json")).expect("index");
    let updates = Updates::from_json(&data("updates/stable.json")).expect("updates");
    state.install("stable", Snapshot::from_fcos(&index, &updates));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    let client = reqwest::Client::new();
    let failures = Arc::new(AtomicUsize::new(0));
    let distinct = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let mut tasks = Vec::new();
    for worker in 0..32u64 {
        let client = client.clone();
        let failures = Arc::clone(&failures);
        let distinct = Arc::clone(&distinct);
        tasks.push(tokio::spawn(async move {
            for n in 0..(10_000 / 32 + 1) {
                let wariness = ((worker * 7919 + n * 104_729) % 1000) as f64 / 1000.0;
                let url = format!("http://{address}/v1/graph?basearch=x86_64&stream=stable&rollout_wariness={wariness}");
                match client.get(&url).send().await {
                    Ok(response) if response.status().is_success() => {
                        let etag = response.headers().get("etag").map(|v| v.to_str().unwrap_or("").to_string());
                        if response.bytes().await.is_err() {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        distinct.lock().expect("lock").insert(etag);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    // One rollout in progress: exactly two distinct answers.
    assert_eq!(distinct.lock().expect("lock").len(), 2);
}
