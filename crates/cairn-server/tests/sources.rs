//! Source refreshes: file inputs, lost architectures, expiry, and live scans.

mod common;
use common::{data, get};

use axum::http::StatusCode;
use cairn_server::AppState;
use cairn_server::config::{Input, SourceSpec, StreamConfig};
use cairn_server::refresh::StreamSource;
use cairn_testkit::{Auth, TestRegistry};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

fn local_client() -> cairn_oci::RegistryClient {
    cairn_oci::RegistryClient::new(cairn_oci::ClientOptions::default()).expect("client")
}

fn fcos_files(dir: &std::path::Path) -> StreamConfig {
    std::fs::write(
        dir.join("releases.json"),
        data("releases/stable/releases.json"),
    )
    .expect("write");
    std::fs::write(dir.join("updates.json"), data("updates/stable.json")).expect("write");
    StreamConfig {
        name: "stable".into(),
        source: SourceSpec::Fcos {
            releases: Input::Path(dir.join("releases.json")),
            updates: Input::Path(dir.join("updates.json")),
        },
    }
}

#[tokio::test]
async fn file_inputs_follow_changes_even_with_a_preserved_mtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = fcos_files(dir.path());
    let state = AppState::new(["stable".to_string()], AppState::system_clock(), 30);
    let mut source = StreamSource::new(&config, local_client(), Duration::from_secs(5));
    assert!(source.refresh_once(&state).await.expect("first"));
    assert!(!source.refresh_once(&state).await.expect("unchanged"));
    // Same size, different content, old mtime put back.
    let path = dir.path().join("updates.json");
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let text = String::from_utf8(data("updates/stable.json"))
        .expect("utf-8")
        .replace("issues/1890", "issues/1891");
    std::fs::write(&path, text).expect("write");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
    assert!(
        source.refresh_once(&state).await.expect("changed"),
        "the change is noticed"
    );
    let (_, body) = get(&state, "/v1/graph?basearch=x86_64&stream=stable").await;
    assert!(body.contains("issues/1891"));
}

#[tokio::test]
async fn a_source_that_loses_an_architecture_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = fcos_files(dir.path());
    let state = AppState::new(["stable".to_string()], AppState::system_clock(), 30);
    let mut source = StreamSource::new(&config, local_client(), Duration::from_secs(5));
    assert!(source.refresh_once(&state).await.expect("first"));
    let mut index: serde_json::Value =
        serde_json::from_slice(&data("releases/stable/releases.json")).expect("json");
    for release in index["releases"].as_array_mut().expect("releases") {
        for key in ["commits", "oci-images"] {
            if let Some(list) = release[key].as_array_mut() {
                list.retain(|entry| entry["architecture"] != "aarch64");
            }
        }
    }
    std::fs::write(dir.path().join("releases.json"), index.to_string()).expect("write");
    let err = source.refresh_once(&state).await.expect_err("lost aarch64");
    assert_eq!(err.kind, "lost_architecture", "{}", err.message);
    // The refused input is not taken for the served one: still refused.
    let err = source.refresh_once(&state).await.expect_err("still lost");
    assert_eq!(err.kind, "lost_architecture", "{}", err.message);
    let (_, ready) = get(&state, "/readyz").await;
    assert!(ready.contains("\"kind\":\"lost_architecture\""), "{ready}");
    assert_eq!(
        get(&state, "/v1/graph?basearch=aarch64&stream=stable")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_document_is_reported_but_still_served() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples/stable.json");
    let now = Arc::new(AtomicI64::new(1_762_876_800)); // 2025-11-11, before expiry
    let clock_now = Arc::clone(&now);
    let clock = Arc::new(move || {
        jiff::Timestamp::from_second(clock_now.load(Ordering::SeqCst)).expect("time")
    });
    let state = AppState::new(["stable".to_string()], clock, 30);
    let config = StreamConfig {
        name: "stable".into(),
        source: SourceSpec::Document {
            location: cairn_oci::Location::File(path),
            keys: Vec::new(),
            allow_unsigned: false,
            root: None,
            root_state: None,
        },
    };
    let mut source = StreamSource::new(&config, local_client(), Duration::from_secs(5));
    assert!(source.refresh_once(&state).await.expect("fresh"));
    now.store(1_764_100_000, Ordering::SeqCst); // a day after it expired
    let err = source.refresh_once(&state).await.expect_err("expired");
    assert_eq!(err.kind, "expired", "{}", err.message);
    assert_eq!(
        get(&state, "/v1/graph?basearch=x86_64&stream=stable&oci=true")
            .await
            .0,
        StatusCode::OK
    );
    let (_, ready) = get(&state, "/readyz").await;
    assert!(ready.contains("\"kind\":\"expired\""), "{ready}");
}

#[tokio::test]
async fn a_live_scan_serves_the_repository() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    cairn_testkit::write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2", "stable"]).await;
    let config = StreamConfig {
        name: "stable".into(),
        source: SourceSpec::Scan {
            repository: format!("{}/acme/os", registry.host),
            policy: None,
            tag_pattern: None,
            base: None,
            base_root_state: None,
        },
    };
    let state = AppState::new(["stable".to_string()], AppState::system_clock(), 30);
    let mut source = StreamSource::new(&config, registry.client(), Duration::from_secs(10));
    assert!(source.refresh_once(&state).await.expect("scan"));
    let (status, body) = get(
        &state,
        "/v1/graph?basearch=aarch64&stream=stable&oci=true&rollout_wariness=1",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let graph = cairn_graph::cincinnati::CincinnatiGraph::from_json(body.as_bytes()).expect("JSON");
    assert_eq!(graph.nodes.len(), 2);
    assert_eq!(graph.edges, vec![(0, 1)], "the newest release is reachable");
    assert!(!source.refresh_once(&state).await.expect("nothing new"));
    let (status, document) = get(&state, "/v2/graph/stable").await;
    assert_eq!(status, StatusCode::OK);
    assert!(document.contains("44.2"));
}

#[tokio::test]
async fn a_document_file_is_reread_only_when_it_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples/stable.json");
    let text = std::fs::read_to_string(example).expect("example");
    let path = dir.path().join("stable.json");
    std::fs::write(&path, &text).expect("write");
    let clock = Arc::new(|| jiff::Timestamp::from_second(1_762_876_800).expect("time"));
    let state = AppState::new(["stable".to_string()], clock, 30);
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
    let mut source = StreamSource::new(&config, local_client(), Duration::from_secs(5));
    assert!(source.refresh_once(&state).await.expect("first"));
    assert!(!source.refresh_once(&state).await.expect("unchanged"));
    // The same size and a newer sequence: the stamp changes, so it is read.
    let next = text.replace("1762790400000", "1762790400001");
    assert_eq!(next.len(), text.len());
    // Replaced as publishers do, so the inode changes even within one clock tick.
    std::fs::write(dir.path().join("next.json"), next).expect("write");
    std::fs::rename(dir.path().join("next.json"), &path).expect("rename");
    assert!(source.refresh_once(&state).await.expect("changed"));
    let sequence = state.snapshot("stable").and_then(|s| s.sequence);
    assert_eq!(sequence, Some(1_762_790_400_001));
}

/// A scan reads its base graph again only after `reread_after`, keeping the
/// last one in between, and refuses a base document older than the last one
/// it accepted (a replay could drop a barrier).
#[tokio::test]
async fn a_scan_keeps_its_base_graph_and_refuses_a_replayed_one() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1", "stable"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let base_path = dir.path().join("base.json");
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples/stable.json");
    let example: serde_json::Value =
        serde_json::from_slice(&std::fs::read(example).expect("example")).expect("JSON");
    let write_base = |sequence: u64| {
        let mut document = example.clone();
        document["sequence"] = sequence.into();
        std::fs::write(&base_path, document.to_string()).expect("write");
    };
    // Before the example document expires.
    let clock = Arc::new(|| jiff::Timestamp::from_second(1_762_876_800).expect("time"));
    let config = |reread: Duration| StreamConfig {
        name: "stable".into(),
        source: SourceSpec::Scan {
            repository: format!("{}/acme/os", registry.host),
            policy: None,
            tag_pattern: None,
            base_root_state: None,
            base: Some(cairn_oci::publish::BaseOptions {
                source: cairn_oci::sources::BaseSource::Document(base_path.display().to_string()),
                keys: Vec::new(),
                allow_unsigned: true,
                layers_from: None,
                reread_after: Some(reread),
            }),
        },
    };

    write_base(10);
    let state = AppState::new(["stable".to_string()], clock.clone(), 30);
    let mut eager = StreamSource::new(
        &config(Duration::ZERO),
        registry.client(),
        Duration::from_secs(10),
    );
    assert!(eager.refresh_once(&state).await.expect("first"));
    write_base(9);
    let err = eager
        .refresh_once(&state)
        .await
        .expect_err("an older base document");
    assert_eq!(err.kind, "replayed", "{}", err.message);
    let (status, _) = get(&state, "/v2/graph/stable").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the last good graph is still served"
    );

    write_base(10);
    let state = AppState::new(["stable".to_string()], clock, 30);
    let hour = Duration::from_secs(3600);
    let mut lazy = StreamSource::new(&config(hour), registry.client(), Duration::from_secs(10));
    assert!(lazy.refresh_once(&state).await.expect("first"));
    std::fs::remove_file(&base_path).expect("remove");
    let refreshed = lazy.refresh_once(&state).await;
    assert!(
        !refreshed.expect("the kept base graph, not the file"),
        "nothing new"
    );
}

/// A scan's base trust root is kept in `roots_directory`: a base chain
/// longer than one walk's cap is refused as behind at first, and the server
/// started again walks on from the root it kept (from `base_keys` it would be
/// behind again), takes the base document, and keeps the newest root.
#[tokio::test]
async fn a_scan_keeps_its_base_trust_root_across_a_restart() {
    use cairn_oci::trust::{MAX_ROOT_WALK, SignedRoot, TrustedRoot, build_root};
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    cairn_testkit::write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1", "stable"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let base_dir = dir.path().join("base");
    let base = cairn_oci::Store::Layout(
        cairn_oci::layout::Layout::open_or_create(&base_dir).expect("layout"),
    );
    let key = cairn_oci::signing::SigningKey::generate();
    let public = [key.verifying_key()];
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
    let versions = MAX_ROOT_WALK + 2;
    let chain: Vec<SignedRoot> = (1..=versions)
        .map(|version| {
            let content = build_root(version, expires, [(&public, 1), (&public, 1), (&public, 1)])
                .expect("root");
            SignedRoot::sign(&content, std::slice::from_ref(&key)).expect("signs")
        })
        .collect();
    cairn_oci::roots::push_missing(&base, &chain)
        .await
        .expect("roots");
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples/stable.json");
    let mut document =
        cairn_graph::GraphDocument::from_json(&std::fs::read(example).expect("example"))
            .expect("parses")
            .document;
    document.issued = jiff::Timestamp::now();
    document.expires = document.issued + jiff::SignedDuration::from_hours(24);
    let options = cairn_oci::document::PublishOptions {
        tag: "cairn-graph-stable",
        identity: "acme/base",
        keys: std::slice::from_ref(&key),
        root_version: versions,
        settle: Duration::ZERO,
        expected: None,
    };
    cairn_oci::document::publish(&base, document, &options)
        .await
        .expect("base document");

    let kept = dir
        .path()
        .join("roots")
        .join(cairn_server::config::base_root_state_name("stable"));
    let config = StreamConfig {
        name: "stable".into(),
        source: SourceSpec::Scan {
            repository: format!("{}/acme/os", registry.host),
            policy: None,
            tag_pattern: None,
            base_root_state: Some(kept.clone()),
            base: Some(cairn_oci::publish::BaseOptions {
                source: cairn_oci::sources::BaseSource::parse(&format!(
                    "oci:{}:cairn-graph-stable",
                    base_dir.display()
                ))
                .expect("base source"),
                keys: public.to_vec(),
                allow_unsigned: false,
                layers_from: None,
                reread_after: None,
            }),
        },
    };
    let kept_version = || {
        let bytes = std::fs::read(&kept).expect("the base root is kept");
        let signed = SignedRoot::from_envelope(bytes.into(), "kept").expect("envelope");
        TrustedRoot::pin(signed).expect("pins").version()
    };

    let state = AppState::new(["stable".to_string()], AppState::system_clock(), 30);
    let mut first = StreamSource::new(&config, registry.client(), Duration::from_secs(10));
    let behind = first
        .refresh_once(&state)
        .await
        .expect_err("more roots than one walk takes");
    assert!(
        behind.message.contains("root_behind") || behind.kind == "root_behind",
        "{}: {}",
        behind.kind,
        behind.message
    );
    assert_eq!(kept_version(), MAX_ROOT_WALK);

    // Started again: the walk goes on from the kept root.
    let state = AppState::new(["stable".to_string()], AppState::system_clock(), 30);
    let mut restarted = StreamSource::new(&config, registry.client(), Duration::from_secs(10));
    assert!(
        restarted
            .refresh_once(&state)
            .await
            .expect("walks on from the kept root")
    );
    assert_eq!(kept_version(), versions);
}
