//! The load generator of `scripts/bench-fleet-lock`: `clients` FleetLock
//! clients, each in its own group, take and release their slot as fast as
//! the server answers, for `seconds`. Prints the lock-and-release pairs per
//! second; fails on any answer but 200.
//!
//! Usage: fleet-lock-bench <server-url> <clients> <seconds>

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, clients, seconds] = args.as_slice() else {
        panic!("usage: fleet-lock-bench <server-url> <clients> <seconds>");
    };
    let clients: usize = clients
        .parse()
        .unwrap_or_else(|e| panic!("clients {clients:?}: {e}"));
    let seconds: f64 = seconds
        .parse()
        .unwrap_or_else(|e| panic!("seconds {seconds:?}: {e}"));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    let pairs = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let (http, url) = (http.clone(), url.clone());
            let (pairs, stop) = (Arc::clone(&pairs), Arc::clone(&stop));
            tokio::spawn(async move {
                let body = format!(
                    "{{\"client_params\":{{\"id\":\"bench-node-{n}\",\"group\":\"bench-{n}\"}}}}"
                );
                while !stop.load(Ordering::Relaxed) {
                    for operation in ["pre-reboot", "steady-state"] {
                        let response = http
                            .post(format!("{url}/v1/{operation}"))
                            .header("fleet-lock-protocol", "true")
                            .body(body.clone())
                            .send()
                            .await
                            .unwrap_or_else(|e| panic!("{operation}: {e}"));
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        assert!(status.is_success(), "{operation}: {status} {text}");
                    }
                    pairs.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let counted = pairs.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("client task: {e}"));
    }
    println!(
        "{clients} clients: {counted} pairs in {elapsed:.1} s, {:.0} pairs/s",
        counted as f64 / elapsed
    );
}
