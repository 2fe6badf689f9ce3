//! Refreshes run off the request workers: while a large source is read,
//! hashed, parsed and built into graphs, a server with a single request
//! worker keeps answering, and it keeps its last good graph when the next
//! refresh fails.

use cairn_graph::{ArchEntry, GraphDocument, Reason, Release};
use cairn_server::config::{SourceSpec, StreamConfig};
use cairn_server::refresh::{Refreshers, StreamSource};
use cairn_server::{AppState, router};
use std::path::Path;
use std::time::{Duration, Instant};

/// Large enough that reading, hashing, parsing and building take a while.
const LARGE_BYTES: usize = 10 * 1024 * 1024;

/// A document of `count` releases on four architectures, a barrier every 50.
fn document(sequence: u64, count: usize) -> String {
    let hex = |n: usize, salt: usize| format!("{:032x}{:032x}", n, salt);
    let releases = (0..count)
        .map(|i| Release {
            version: format!("44.{i}"),
            architectures: ["x86_64", "aarch64", "s390x", "ppc64le"]
                .iter()
                .enumerate()
                .map(|(a, arch)| {
                    let entry = ArchEntry {
                        ostree: Some(hex(i, a + 10)),
                        ..ArchEntry::image(format!("sha256:{}", hex(i, a)))
                    };
                    (arch.to_string(), entry)
                })
                .collect(),
            barrier: (i % 50 == 49).then(Reason::default),
            ..Release::default()
        })
        .collect();
    GraphDocument {
        stream: "stable".into(),
        repository: "registry.example.org/acme/os".into(),
        sequence,
        issued: jiff::Timestamp::from_second(1_780_000_000).expect("time"),
        expires: jiff::Timestamp::from_second(4_000_000_000).expect("time"),
        releases,
        ..GraphDocument::default()
    }
    .to_json_pretty()
}

/// Replace a file in one step, so the refresher never reads half of it.
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

fn served_sequence(state: &AppState) -> Option<u64> {
    state.snapshot("stable").and_then(|s| s.sequence)
}

/// Wait, answering requests meanwhile, until `done` holds; returns when each
/// request completed. Fails after `limit`, naming `what`.
async fn requests_until(
    client: &reqwest::Client,
    url: &str,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Vec<Instant> {
    let limit = Instant::now() + Duration::from_secs(300);
    let mut completed = Vec::new();
    while !done() {
        assert!(Instant::now() < limit, "timed out waiting for {what}");
        let response = client.get(url).send().await.expect("request");
        assert_eq!(response.status(), 200, "{url}");
        response.bytes().await.expect("body");
        completed.push(Instant::now());
    }
    completed
}

// The default test runtime has one thread: it is the only request worker.
#[tokio::test]
async fn requests_are_answered_while_a_large_source_is_refreshed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stable.json");
    replace(&path, &document(1, 20));
    let large = document(2, 12_000);
    assert!(large.len() >= LARGE_BYTES, "{} bytes", large.len());

    let state = AppState::new(["stable".to_string()], AppState::system_clock(), 30);
    let config = StreamConfig {
        name: "stable".into(),
        source: SourceSpec::Document {
            location: cairn_oci::Location::File(path.clone()),
            keys: Vec::new(),
            allow_unsigned: false,
            root: None,
            root_state: None,
        },
    };
    let client = cairn_oci::RegistryClient::new(cairn_oci::ClientOptions::default())
        .expect("registry client");
    let source = StreamSource::new(&config, client, Duration::from_secs(600));
    let _refreshers =
        Refreshers::start(vec![source], &state, Duration::from_millis(20)).expect("refreshers");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let url = format!("http://{address}/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=1");

    let first = requests_until(
        &http,
        &format!("http://{address}/healthz"),
        "the first graph",
        || served_sequence(&state) == Some(1),
    )
    .await;
    drop(first);

    // The refresher picks the large document up within its 20 ms interval,
    // then spends most of the window reading, hashing, parsing and building.
    let started = Instant::now();
    replace(&path, &large);
    let completed = requests_until(&http, &url, "the large graph", || {
        served_sequence(&state) == Some(2)
    })
    .await;
    let finished = Instant::now();
    let window = finished - started;
    // Had the refresh run on this thread, no request could complete after it
    // began its CPU work: every quarter but the first would be empty.
    for quarter in 0..4u32 {
        let from = started + window * quarter / 4;
        let to = started + window * (quarter + 1) / 4;
        let answered = completed.iter().filter(|t| **t >= from && **t < to).count();
        assert!(
            answered > 0,
            "no request was answered in quarter {} of a {window:?} refresh ({} in all)",
            quarter + 1,
            completed.len()
        );
    }

    // A broken replacement fails the refresh and leaves the large graph served.
    replace(&path, "{ not a document");
    requests_until(
        &http,
        &format!("http://{address}/healthz"),
        "the failed refresh",
        || state.health("stable").failing.is_some(),
    )
    .await;
    assert_eq!(served_sequence(&state), Some(2));
    let (kind, _) = state.health("stable").failing.expect("failing");
    assert_eq!(kind, "invalid_document");
    let ready = http
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "the last good graph is still served");
}
