//! Faults of real upstreams: an HTTP server with Fedora's files that stops,
//! fails, sends garbage or hangs, and a real registry holding a document. The
//! server keeps answering with the last good graph, says so on /readyz and in
//! /metrics, and recovers by itself.

mod common;
use common::{data, get};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use cairn_oci::signing::SigningKey;
use cairn_server::AppState;
use cairn_server::config::{Input, SourceSpec, StreamConfig};
use cairn_server::refresh::StreamSource;
use cairn_testkit::{Auth, TestRegistry};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OK: u8 = 0;
const FAIL_500: u8 = 1;
const GARBAGE: u8 = 2;
const TRUNCATED: u8 = 3;
const HANG: u8 = 4;

struct Upstream {
    mode: AtomicU8,
    files: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    not_modified: AtomicUsize,
}

fn etag(bytes: &[u8]) -> String {
    format!(
        "\"{}\"",
        bytes.len()
            ^ bytes
                .iter()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(*b as usize))
    )
}

async fn file(
    State(upstream): State<Arc<Upstream>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let Some(bytes) = upstream.files.lock().expect("lock").get(&name).cloned() else {
        return (StatusCode::NOT_FOUND, HeaderMap::new(), Vec::new());
    };
    let tag = etag(&bytes);
    let mut reply = HeaderMap::new();
    reply.insert(header::ETAG, tag.parse().expect("etag"));
    match upstream.mode.load(Ordering::SeqCst) {
        FAIL_500 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            HeaderMap::new(),
            b"oops".to_vec(),
        ),
        GARBAGE => (
            StatusCode::OK,
            HeaderMap::new(),
            b"<html>maintenance</html>".to_vec(),
        ),
        TRUNCATED => (
            StatusCode::OK,
            HeaderMap::new(),
            bytes[..bytes.len() / 2].to_vec(),
        ),
        HANG => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, reply, bytes)
        }
        _ if headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.to_str().ok() == Some(tag.as_str())) =>
        {
            upstream.not_modified.fetch_add(1, Ordering::SeqCst);
            (StatusCode::NOT_MODIFIED, reply, Vec::new())
        }
        _ => (StatusCode::OK, reply, bytes),
    }
}

async fn start_upstream(upstream: Arc<Upstream>, port: u16) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new()
        .route("/{name}", axum::routing::get(file))
        .with_state(upstream);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

fn client(insecure: &str, timeout: Duration) -> cairn_oci::RegistryClient {
    cairn_oci::RegistryClient::new(cairn_oci::ClientOptions {
        insecure_registries: vec![insecure.to_string()],
        timeout,
        retries: 0,
        ..cairn_oci::ClientOptions::default()
    })
    .expect("client")
}

const GRAPH: &str = "/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedora_upstream_faults_keep_the_last_good_graph() {
    let upstream = Arc::new(Upstream {
        mode: AtomicU8::new(OK),
        files: Mutex::new(
            [
                (
                    "releases.json".to_string(),
                    data("releases/stable/releases.json"),
                ),
                ("updates.json".to_string(), data("updates/stable.json")),
            ]
            .into(),
        ),
        not_modified: AtomicUsize::new(0),
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let host = format!("127.0.0.1:{port}");
    let server = start_upstream(Arc::clone(&upstream), port).await;
    let config = StreamConfig {
        name: "stable".into(),
        source: SourceSpec::Fcos {
            releases: Input::Url(format!("http://{host}/releases.json")),
            updates: Input::Url(format!("http://{host}/updates.json")),
        },
    };
    let state = AppState::new(["stable".to_string()], AppState::system_clock(), 30);
    let mut source = StreamSource::new(
        &config,
        client(&host, Duration::from_millis(800)),
        Duration::from_secs(2),
    );

    assert!(
        source.refresh_once(&state).await.expect("first refresh"),
        "updated"
    );
    let (status, good) = get(&state, GRAPH).await;
    assert_eq!(status, StatusCode::OK);
    // Unchanged upstream: conditional requests, answered 304.
    assert!(
        !source.refresh_once(&state).await.expect("second refresh"),
        "unchanged"
    );
    assert_eq!(upstream.not_modified.load(Ordering::SeqCst), 2);

    for (mode, kind) in [
        (FAIL_500, "status"),
        (GARBAGE, "invalid"),
        (TRUNCATED, "invalid"),
        (HANG, "transport"),
    ] {
        upstream.mode.store(mode, Ordering::SeqCst);
        // Garbage must not be mistaken for "unchanged": validators are per content.
        let err = source
            .refresh_once(&state)
            .await
            .expect_err("upstream fault");
        assert_eq!(err.kind, kind, "mode {mode}: {}", err.message);
        assert_eq!(
            get(&state, GRAPH).await,
            (StatusCode::OK, good.clone()),
            "mode {mode}"
        );
        let (status, ready) = get(&state, "/readyz").await;
        assert_eq!(status, StatusCode::OK, "still serving");
        assert!(ready.contains(&format!("\"kind\":\"{kind}\"")), "{ready}");
        let (_, metrics) = get(&state, "/metrics").await;
        assert!(
            metrics.contains("cairn_source_up{stream=\"stable\"} 0"),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "cairn_source_refreshes_total{{stream=\"stable\",result=\"{kind}\"}}"
            )),
            "{metrics}"
        );
    }

    // The upstream goes away altogether.
    server.abort();
    let _ = server.await;
    upstream.mode.store(OK, Ordering::SeqCst);
    let err = source.refresh_once(&state).await.expect_err("down");
    assert_eq!(err.kind, "transport", "{}", err.message);
    assert_eq!(get(&state, GRAPH).await, (StatusCode::OK, good.clone()));

    // It comes back with a change: recovered, and the change is served.
    let changed = String::from_utf8(data("updates/stable.json"))
        .expect("utf-8")
        .replace(
            "\"start_percentage\": 1.0",
            "\"start_percentage\": 1.0, \"duration_minutes\": 60",
        );
    upstream
        .files
        .lock()
        .expect("lock")
        .insert("updates.json".into(), changed.into_bytes());
    let _server = start_upstream(Arc::clone(&upstream), port).await;
    assert!(source.refresh_once(&state).await.expect("recovered"));
    let (_, ready) = get(&state, "/readyz").await;
    assert!(ready.contains("\"source_error\":null"), "{ready}");
    let (_, metrics) = get(&state, "/metrics").await;
    assert!(
        metrics.contains("cairn_source_up{stream=\"stable\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_source_last_success_timestamp_seconds{stream=\"stable\"}"),
        "{metrics}"
    );
    let (_, fresh) = get(&state, GRAPH).await;
    assert!(
        fresh.contains("duration_minutes\": \"60"),
        "the new metadata is served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_document_faults_keep_the_last_good_graph() {
    let mut registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let key = SigningKey::generate();
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples/stable.json");
    let mut document =
        cairn_graph::GraphDocument::from_json(&std::fs::read(path).expect("example"))
            .expect("parses")
            .document;
    document.issued = jiff::Timestamp::now();
    document.expires = document.issued + jiff::SignedDuration::from_hours(24);
    let publish = |document: cairn_graph::GraphDocument, key: SigningKey| {
        let store = store.clone();
        async move {
            let options = cairn_oci::document::PublishOptions {
                tag: "cairn-graph-stable",
                identity: "acme/os",
                keys: std::slice::from_ref(&key),
                root_version: 0,
                settle: Duration::ZERO,
                expected: None,
            };
            cairn_oci::document::publish(&store, document, &options)
                .await
                .expect("publish")
        }
    };
    publish(document.clone(), key.clone()).await;
    let config = StreamConfig {
        name: "stable".into(),
        source: SourceSpec::Document {
            location: cairn_oci::Location::parse(&format!(
                "{}/acme/os:cairn-graph-stable",
                registry.host
            ))
            .expect("location"),
            keys: vec![key.verifying_key()],
            allow_unsigned: false,
            root: None,
            root_state: None,
        },
    };
    let client = registry.client();
    let state = AppState::new(["stable".to_string()], AppState::system_clock(), 30);
    let mut source = StreamSource::new(&config, client.clone(), Duration::from_secs(5));
    assert!(source.refresh_once(&state).await.expect("first"));
    let good = get(
        &state,
        "/v1/graph?basearch=x86_64&stream=stable&oci=true&rollout_wariness=0",
    )
    .await;
    assert_eq!(good.0, StatusCode::OK);
    let (status, served) = get(&state, "/v2/graph/stable").await;
    assert_eq!(status, StatusCode::OK);
    assert!(served.contains("\"stream\": \"stable\""));

    // Unchanged costs two HEADs: the next trust root's tag (version 1 after
    // the version 0 the key makes), and the document's.
    let before = client.request_count();
    assert!(!source.refresh_once(&state).await.expect("unchanged"));
    assert_eq!(client.request_count() - before, 2);

    // A document signed by someone else is refused; the old one stays.
    publish(document.clone(), SigningKey::generate()).await;
    let err = source
        .refresh_once(&state)
        .await
        .expect_err("bad signature");
    assert_eq!(err.kind, "bad_signature", "{}", err.message);
    assert_eq!(
        get(
            &state,
            "/v1/graph?basearch=x86_64&stream=stable&oci=true&rollout_wariness=0"
        )
        .await,
        good
    );

    // The registry goes down, then comes back with a new document.
    registry.stop();
    let err = source.refresh_once(&state).await.expect_err("down");
    assert_eq!(err.kind, "transport", "{}", err.message);
    assert_eq!(
        get(
            &state,
            "/v1/graph?basearch=x86_64&stream=stable&oci=true&rollout_wariness=0"
        )
        .await,
        good
    );
    registry.resume();
    let mut newer = document.clone();
    newer.releases[5].rollout = None;
    publish(newer, key.clone()).await;
    assert!(source.refresh_once(&state).await.expect("recovered"));
    assert_ne!(
        get(
            &state,
            "/v1/graph?basearch=x86_64&stream=stable&oci=true&rollout_wariness=0"
        )
        .await,
        good
    );
}

// ---------------------------------------------------------------------------
// Trust roots: the walk at each refresh, the re-check, the stored root.

mod roots {
    use super::*;
    use cairn_oci::trust::{SignedRoot, TrustRoot, build_root};
    use jiff::{SignedDuration, Timestamp};

    const GRAPH: &str = "/v1/graph?basearch=x86_64&stream=stable&oci=true&rollout_wariness=0";

    fn root(
        version: u64,
        root: &[&SigningKey],
        graph: &[&SigningKey],
        by: &[&SigningKey],
    ) -> SignedRoot {
        root_expiring(
            version,
            root,
            graph,
            by,
            Timestamp::now() + SignedDuration::from_hours(24 * 365),
        )
    }

    fn root_expiring(
        version: u64,
        root: &[&SigningKey],
        graph: &[&SigningKey],
        by: &[&SigningKey],
        expires: Timestamp,
    ) -> SignedRoot {
        let public =
            |keys: &[&SigningKey]| keys.iter().map(|k| k.verifying_key()).collect::<Vec<_>>();
        let (root, graph) = (public(root), public(graph));
        let content: TrustRoot =
            build_root(version, expires, [(&root, 2), (&graph, 1), (&graph, 1)]).expect("root");
        let by: Vec<SigningKey> = by.iter().map(|k| (*k).clone()).collect();
        SignedRoot::sign(&content, &by).expect("signs")
    }

    /// A registry with a document publisher, and a server state on a clock
    /// the test sets.
    struct Setup {
        registry: TestRegistry,
        store: cairn_oci::Store,
        document: cairn_graph::GraphDocument,
        now: Arc<Mutex<Timestamp>>,
        state: AppState,
        client: cairn_oci::RegistryClient,
        dir: tempfile::TempDir,
    }

    impl Setup {
        async fn new() -> Setup {
            let registry = TestRegistry::start(Auth::None).await;
            let store = registry.store("acme/os");
            let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../docs/examples/stable.json");
            let mut document =
                cairn_graph::GraphDocument::from_json(&std::fs::read(path).expect("example"))
                    .expect("parses")
                    .document;
            document.issued = Timestamp::now();
            document.expires = document.issued + SignedDuration::from_hours(24);
            let now = Arc::new(Mutex::new(Timestamp::now()));
            let reading = Arc::clone(&now);
            let state = AppState::new(
                ["stable".to_string()],
                Arc::new(move || *reading.lock().expect("clock")),
                30,
            );
            Setup {
                client: registry.client(),
                registry,
                store,
                document,
                now,
                state,
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        async fn publish(&self, key: &SigningKey) {
            let options = cairn_oci::document::PublishOptions {
                tag: "cairn-graph-stable",
                identity: "acme/os",
                keys: std::slice::from_ref(key),
                root_version: 0,
                settle: Duration::ZERO,
                expected: None,
            };
            cairn_oci::document::publish(&self.store, self.document.clone(), &options)
                .await
                .expect("publish");
        }

        async fn publish_roots(&self, roots: &[SignedRoot]) {
            for root in roots {
                cairn_oci::roots::publish_root(&self.store, root)
                    .await
                    .expect("root published");
            }
        }

        fn stored_root(&self) -> std::path::PathBuf {
            self.dir.path().join("roots").join("stable.root.json")
        }

        /// A server source configured with `keys` and the `root` file.
        fn source(&self, keys: &[&SigningKey], pinned: Option<SignedRoot>) -> StreamSource {
            let config = StreamConfig {
                name: "stable".into(),
                source: SourceSpec::Document {
                    location: cairn_oci::Location::parse(&format!(
                        "{}/acme/os:cairn-graph-stable",
                        self.registry.host
                    ))
                    .expect("location"),
                    keys: keys.iter().map(|k| k.verifying_key()).collect(),
                    allow_unsigned: false,
                    root: pinned,
                    root_state: Some(self.stored_root()),
                },
            };
            StreamSource::new(&config, self.client.clone(), Duration::from_secs(10))
        }

        async fn readyz(&self) -> serde_json::Value {
            let (_, body) = get(&self.state, "/readyz").await;
            serde_json::from_str(&body).expect("JSON")
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_pinned_at_root_1_serves_a_document_signed_by_a_key_of_root_3_and_keeps_root_3()
     {
        let setup = Setup::new().await;
        let keys: Vec<SigningKey> = (0..6).map(|_| SigningKey::generate()).collect();
        let [a, b, c, d, g1, g3] = [0, 1, 2, 3, 4, 5].map(|i| &keys[i]);
        let chain = [
            root(1, &[a, b], &[g1], &[a, b]),
            root(2, &[a, c], &[g1], &[a, b, c]),
            root(3, &[c, d], &[g3], &[a, c, d]),
        ];
        setup.publish_roots(&chain).await;
        setup.publish(g3).await;
        // Configured with g1 only and pinned at root 1: g3 is known only
        // from root 3.
        let mut source = setup.source(&[g1], Some(chain[0].clone()));
        assert!(
            source
                .refresh_once(&setup.state)
                .await
                .expect("walked and served")
        );
        let (status, _) = get(&setup.state, GRAPH).await;
        assert_eq!(status, StatusCode::OK);
        let ready = setup.readyz().await;
        assert_eq!(ready["streams"]["stable"]["root_version"], 3, "{ready}");
        let stored = std::fs::read(setup.stored_root()).expect("root 3 kept");
        assert_eq!(stored, chain[2].envelope.to_vec());

        // Nothing new: one HEAD of cairn-root-4 and one of the document.
        let before = setup.client.request_count();
        assert!(!source.refresh_once(&setup.state).await.expect("unchanged"));
        assert_eq!(setup.client.request_count() - before, 2);

        // A restart starts from the stored root 3, even pinned at 1 and
        // configured with g1: a document g1 signs is refused.
        setup.publish(g1).await;
        let mut restarted = setup.source(&[g1], Some(chain[0].clone()));
        let error = restarted
            .refresh_once(&setup.state)
            .await
            .expect_err("g1 is not in root 3");
        assert_eq!(error.kind, "bad_signature", "{}", error.message);
        assert!(
            error.message.contains("trust root version 3"),
            "{}",
            error.message
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_root_that_drops_the_served_documents_key_stops_it_being_served() {
        let setup = Setup::new().await;
        let keys: Vec<SigningKey> = (0..5).map(|_| SigningKey::generate()).collect();
        let [a, b, c, g1, g2] = [0, 1, 2, 3, 4].map(|i| &keys[i]);
        let one = root(1, &[a, b], &[g1], &[a, b]);
        setup.publish_roots(std::slice::from_ref(&one)).await;
        setup.publish(g1).await;
        let mut source = setup.source(&[], Some(one.clone()));
        assert!(source.refresh_once(&setup.state).await.expect("served"));
        assert_eq!(get(&setup.state, GRAPH).await.0, StatusCode::OK);
        // The pinned root is kept from the start, before any walk.
        let stored = std::fs::read(setup.stored_root()).expect("root 1 kept at pin time");
        assert_eq!(stored, one.envelope.to_vec());

        // Root 2 removes g1 (a leak): the document tag does not move, yet the
        // next refresh withdraws the document.
        setup
            .publish_roots(&[root(2, &[a, c], &[g2], &[a, b, c])])
            .await;
        let error = source
            .refresh_once(&setup.state)
            .await
            .expect_err("no longer vouched for");
        assert_eq!(error.kind, "root_revoked", "{}", error.message);
        assert!(
            error.message.contains("trust root version 2"),
            "{}",
            error.message
        );
        assert_eq!(
            get(&setup.state, GRAPH).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let ready = setup.readyz().await;
        assert_eq!(ready["ready"], false, "{ready}");
        assert_eq!(ready["streams"]["stable"]["root_version"], 2, "{ready}");
        assert_eq!(
            ready["streams"]["stable"]["source_error"]["kind"],
            "root_revoked"
        );
        // Read again, it is refused again: it never comes back.
        let error = source
            .refresh_once(&setup.state)
            .await
            .expect_err("still refused");
        assert_eq!(error.kind, "bad_signature", "{}", error.message);
        // Signed anew with g2, it is served again.
        setup.publish(g2).await;
        assert!(source.refresh_once(&setup.state).await.expect("g2 signs"));
        assert_eq!(get(&setup.state, GRAPH).await.0, StatusCode::OK);

        // An expired final root stops the source, naming the version.
        let past = Timestamp::now() + SignedDuration::from_hours(2);
        setup
            .publish_roots(&[root_expiring(3, &[a, c], &[g2], &[a, c], past)])
            .await;
        *setup.now.lock().expect("clock") = past + SignedDuration::from_hours(1);
        let error = source
            .refresh_once(&setup.state)
            .await
            .expect_err("expired root");
        assert_eq!(error.kind, "root_expired", "{}", error.message);
        assert!(
            error.message.contains("trust root version 3 expired"),
            "{}",
            error.message
        );
        let metrics = get(&setup.state, "/metrics").await.1;
        assert!(metrics.contains("result=\"root_expired\""), "{metrics}");
        // No current root vouches for the graph: Zincati clients, which
        // check no signature, must not keep updating from it.
        assert_eq!(
            get(&setup.state, GRAPH).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let ready = setup.readyz().await;
        assert_eq!(ready["ready"], false, "{ready}");
        assert_eq!(ready["streams"]["stable"]["root_version"], 3, "{ready}");
        assert_eq!(
            ready["streams"]["stable"]["source_error"]["kind"],
            "root_expired"
        );

        // Root 4, current, brings the same document back without a new
        // publication.
        setup
            .publish_roots(&[root(4, &[a, c], &[g2], &[a, c])])
            .await;
        assert!(
            source
                .refresh_once(&setup.state)
                .await
                .expect("root 4 is current")
        );
        assert_eq!(get(&setup.state, GRAPH).await.0, StatusCode::OK);
        let ready = setup.readyz().await;
        assert_eq!(ready["ready"], true, "{ready}");
        assert_eq!(ready["streams"]["stable"]["root_version"], 4, "{ready}");
    }
    use cairn_testkit::roots::signed_root as root_with_halt;

    /// Options to write `acme/os`'s halt list with `key`.
    fn update<'a>(
        key: &'a SigningKey,
        trust: Option<&'a cairn_oci::trust::TrustedRoot>,
        accept_unverified_current: bool,
    ) -> cairn_oci::halts::UpdateOptions<'a> {
        cairn_oci::halts::UpdateOptions {
            publish: cairn_oci::document::PublishOptions {
                tag: "cairn-halts-stable",
                identity: "acme/os",
                keys: std::slice::from_ref(key),
                root_version: 0,
                settle: Duration::ZERO,
                expected: None,
            },
            trust,
            stream: "stable",
            lifetime: cairn_oci::halts::DEFAULT_LIFETIME,
            cleared: &[],
            accept_unverified_current,
        }
    }

    /// How many edges `/v1/graph` offers.
    async fn edge_count(state: &AppState) -> usize {
        let (status, body) = get(state, GRAPH).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let graph: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        graph["edges"].as_array().expect("edges").len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_halt_list_signed_only_by_a_key_the_next_root_drops_is_no_longer_held() {
        let mut setup = Setup::new().await;
        let keys: Vec<SigningKey> = (0..5).map(|_| SigningKey::generate()).collect();
        let [a, b, g, leaked, fresh] = [0, 1, 2, 3, 4].map(|i| &keys[i]);
        let location = format!("{}/acme/os:cairn-halts-stable", setup.registry.host);
        setup.document.halts = Some(cairn_graph::document::HaltSettings {
            location: location.clone(),
            min_sequence: 0,
            cleared: Vec::new(),
        });
        let one = root_with_halt(1, &[a, b], &[g], &[leaked], &[a, b]);
        setup.publish_roots(std::slice::from_ref(&one)).await;
        setup.publish(g).await;
        let first = cairn_oci::halts::refresh(&setup.store, &update(leaked, None, false))
            .await
            .expect("the halt key's list");
        let mut source = setup.source(&[], Some(one.clone()));
        assert!(source.refresh_once(&setup.state).await.expect("served"));
        let (status, body) = get(&setup.state, "/v2/halts/stable").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let edges = edge_count(&setup.state).await;
        assert!(edges > 0, "the example document has edges");

        // Root 2 drops the halt key (it leaked): the tag does not move, yet
        // the list it alone signed is no longer held, and no edge is offered.
        let two = root_with_halt(2, &[a, b], &[g], &[fresh], &[a, b]);
        setup.publish_roots(std::slice::from_ref(&two)).await;
        let _ = source.refresh_once(&setup.state).await;
        let ready = setup.readyz().await;
        assert_eq!(ready["streams"]["stable"]["root_version"], 2, "{ready}");
        assert_eq!(
            ready["streams"]["stable"]["source_error"]["kind"], "halts_bad_signature",
            "{ready}"
        );
        let message = ready["streams"]["stable"]["source_error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains("trust root version 2 does not vouch for it"),
            "{message}"
        );
        let (status, body) = get(&setup.state, "/v2/halts/stable").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("halts_bad_signature"), "{body}");
        assert_eq!(edge_count(&setup.state).await, 0);

        // The new halt key cannot build on the leaked key's list unless told
        // to; then its list is held and the edges come back.
        let two_trusted = cairn_oci::trust::TrustedRoot::pin(two).expect("root 2");
        let error =
            cairn_oci::halts::refresh(&setup.store, &update(fresh, Some(&two_trusted), false))
                .await
                .expect_err("the leaked key's list is not built on");
        assert_eq!(error.kind(), "halts_bad_signature", "{error}");
        let renewed =
            cairn_oci::halts::refresh(&setup.store, &update(fresh, Some(&two_trusted), true))
                .await
                .expect("built on as asked");
        let base = renewed.built_on_unverified.expect("reported as unverified");
        assert_eq!(base.sequence, first.list.sequence);
        assert_eq!(renewed.list.root_version, 2);
        let _ = source.refresh_once(&setup.state).await;
        let (status, body) = get(&setup.state, "/v2/halts/stable").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(edge_count(&setup.state).await, edges);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chain_longer_than_one_walk_withdraws_the_stream_until_walked_to_its_end() {
        let setup = Setup::new().await;
        let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate()).collect();
        let [a, b, g] = [0, 1, 2].map(|i| &keys[i]);
        let one = root(1, &[a, b], &[g], &[a, b]);
        setup.publish_roots(std::slice::from_ref(&one)).await;
        setup.publish(g).await;
        let mut source = setup.source(&[], Some(one.clone()));
        assert!(source.refresh_once(&setup.state).await.expect("served"));
        assert_eq!(get(&setup.state, GRAPH).await.0, StatusCode::OK);

        // One version more than a walk takes: 2 ..= MAX_ROOT_WALK + 2.
        let last = cairn_oci::trust::MAX_ROOT_WALK + 2;
        let chain: Vec<SignedRoot> = (2..=last)
            .map(|v| root(v, &[a, b], &[g], &[a, b]))
            .collect();
        setup.publish_roots(&chain).await;
        let error = source
            .refresh_once(&setup.state)
            .await
            .expect_err("not walked to the end");
        assert_eq!(error.kind, "root_behind", "{}", error.message);
        let reached = 1 + cairn_oci::trust::MAX_ROOT_WALK;
        assert!(
            error.message.contains(&format!(
                "walked {} trust root versions, the most in one check, to version {reached}; newer ones remain",
                cairn_oci::trust::MAX_ROOT_WALK
            )) && error.message.contains("no longer serving the graph"),
            "{}",
            error.message
        );
        assert_eq!(
            get(&setup.state, GRAPH).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let ready = setup.readyz().await;
        assert_eq!(ready["ready"], false, "{ready}");
        assert_eq!(
            ready["streams"]["stable"]["source_error"]["kind"], "root_behind",
            "{ready}"
        );
        assert_eq!(
            ready["streams"]["stable"]["root_version"], reached,
            "{ready}"
        );

        // The next check walks on to the end and serves the graph again.
        assert!(source.refresh_once(&setup.state).await.expect("walked on"));
        assert_eq!(get(&setup.state, GRAPH).await.0, StatusCode::OK);
        let ready = setup.readyz().await;
        assert_eq!(ready["streams"]["stable"]["root_version"], last, "{ready}");
    }
}
