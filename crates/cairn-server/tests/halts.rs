//! Halt lists in `cairn serve`, against a real registry: the list a
//! document names is read, verified with the halt keys and kept through the
//! store (both backends, etcd with the `etcd` feature); `/v1/graph` drops
//! edges into halted releases at once and offers nothing without a
//! verified, unexpired list; `/v2/halts/<stream>` serves the signed bytes;
//! a restarted server refuses an older list; the guard halts failing
//! releases, with a scoped login that cannot push to the image repository.

mod common;

use cairn_graph::document::HaltSettings;
use cairn_graph::halts::{HaltList, TrippedBy};
use cairn_graph::{ArchEntry, GraphDocument, Release, Rollout};
use cairn_oci::document::PublishOptions;
use cairn_oci::halts::UpdateOptions;
use cairn_oci::signing::SigningKey;
use cairn_server::refresh::StreamSource;
use cairn_server::state::Services;
use cairn_server::{AppState, Config};
use cairn_testkit::{Auth, TestRegistry};
use common::{Backend, get};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TAG: &str = "cairn-halts-stable";

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

/// [`graph_document`] as JSON.
fn document(location: &str, min_sequence: u64) -> String {
    graph_document(location, min_sequence).to_json_pretty()
}

/// 44.1, then 44.2 and 44.3, both rolled out at once: 44.1 → 44.2, 44.1 →
/// 44.3 and 44.2 → 44.3 are edges. Halts on, at `location`.
fn graph_document(location: &str, min_sequence: u64) -> GraphDocument {
    let release = |n: u8, rollout: Option<Rollout>| Release {
        version: format!("44.{n}"),
        architectures: [("x86_64".to_string(), ArchEntry::image(digest(n)))].into(),
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
            release(3, Some(Rollout::immediate())),
        ],
        halts: Some(HaltSettings {
            location: location.into(),
            min_sequence,
            cleared: Vec::new(),
        }),
        ..GraphDocument::default()
    }
}

/// A registry with the halt-list repository, and the halt key.
struct Lists {
    registry: TestRegistry,
    /// The halt-list repository's path in it.
    path: &'static str,
    key: SigningKey,
    dir: tempfile::TempDir,
}

impl Lists {
    async fn start() -> Lists {
        Lists::start_on(TestRegistry::start(Auth::None).await, "acme/halts")
    }

    /// The lists in `path` of `registry`.
    fn start_on(registry: TestRegistry, path: &'static str) -> Lists {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SigningKey::generate();
        std::fs::write(dir.path().join("halt.key"), key.to_pem().expect("pem")).expect("key");
        std::fs::write(
            dir.path().join("halt.pub"),
            key.verifying_key().to_pem().expect("pem"),
        )
        .expect("key");
        Lists {
            registry,
            path,
            key,
            dir,
        }
    }

    fn location(&self) -> String {
        format!("{}/{}:{TAG}", self.registry.host, self.path)
    }

    fn options(&self) -> (cairn_oci::Store, String) {
        let repository = format!("{}/{}", self.registry.host, self.path);
        (self.registry.store(self.path), repository)
    }

    /// Publish the next list, adding a halt of `version` (or none).
    async fn publish(&self, version: Option<u8>) -> HaltList {
        let (store, identity) = self.options();
        let trust = cairn_oci::trust::TrustedRoot::from_config(&[self.key.verifying_key()], &[]);
        let options = UpdateOptions {
            publish: PublishOptions {
                tag: TAG,
                identity: &identity,
                keys: std::slice::from_ref(&self.key),
                root_version: 0,
                settle: Duration::ZERO,
                expected: None,
            },
            trust: trust.as_ref(),
            stream: "stable",
            lifetime: SignedDuration::from_hours(48),
            cleared: &[],
            accept_unverified_current: false,
        };
        let published = match version {
            Some(n) => cairn_oci::halts::add(
                &store,
                &options,
                &format!("44.{n}"),
                vec![digest(n)],
                "a test halt",
                TrippedBy::Person { who: "test".into() },
            )
            .await
            .expect("add"),
            None => cairn_oci::halts::refresh(&store, &options)
                .await
                .expect("refresh"),
        };
        published.list
    }

    /// Publish exactly `list`, signed with the halt key, over what the tag holds.
    async fn publish_exactly(&self, list: &HaltList) {
        let (store, identity) = self.options();
        let before = store.resolve(TAG).await.expect("resolve").map(|h| h.digest);
        let options = PublishOptions {
            tag: TAG,
            identity: &identity,
            keys: std::slice::from_ref(&self.key),
            root_version: 0,
            settle: Duration::ZERO,
            expected: None,
        };
        cairn_oci::halts::publish(&store, list, before, &options)
            .await
            .expect("publish");
    }
}

/// A server on a settable clock, refreshed by hand.
struct Server {
    state: AppState,
    source: StreamSource,
    now: Arc<Mutex<Timestamp>>,
}

impl Server {
    async fn refresh(&mut self) {
        let _ = self.source.refresh_once(&self.state).await;
    }

    fn set_time(&self, time: Timestamp) {
        *self.now.lock().expect("clock") = time;
    }

    /// The edges `/v1/graph` offers, as (from, to) versions.
    async fn edges(&self) -> Vec<(String, String)> {
        edges_of(&self.state).await
    }

    async fn source_error(&self) -> Value {
        let (status, body) = get(&self.state, "/readyz").await;
        assert_eq!(status, 200, "a halt list never changes readiness: {body}");
        let ready: Value = serde_json::from_str(&body).expect("JSON");
        ready["streams"]["stable"]["source_error"]["kind"].clone()
    }
}

/// The edges `/v1/graph` of `state` offers, as (from, to) versions.
async fn edges_of(state: &AppState) -> Vec<(String, String)> {
    let (status, body) = get(
        state,
        "/v1/graph?basearch=x86_64&stream=stable&oci=true&rollout_wariness=0.5",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let graph: Value = serde_json::from_str(&body).expect("JSON");
    let version = |i: &Value| {
        graph["nodes"][i.as_u64().expect("index") as usize]["version"]
            .as_str()
            .expect("version")
            .to_string()
    };
    let mut edges: Vec<_> = graph["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (version(&e[0]), version(&e[1])))
        .collect();
    edges.sort();
    edges
}

fn edge(from: u8, to: u8) -> (String, String) {
    (format!("44.{from}"), format!("44.{to}"))
}

/// The `[halts]` store keys of `backend` (etcd: a one-member cluster, kept
/// alive by the returned handle).
async fn store_keys(backend: Backend) -> (String, Option<Arc<dyn std::any::Any + Send + Sync>>) {
    match backend {
        Backend::Embedded => ("database = \"halts.sqlite\"\n".into(), None),
        #[cfg(feature = "etcd")]
        Backend::Etcd => {
            let etcd = tokio::task::spawn_blocking(|| cairn_testkit::EtcdCluster::start(1))
                .await
                .expect("etcd");
            let keys = format!("backend = \"etcd\"\nendpoints = {:?}\n", etcd.endpoints());
            (keys, Some(Arc::new(etcd)))
        }
    }
}

/// Start a server on `lists`' directory with these `[halts]` store keys.
async fn start(lists: &Lists, store: &str, now: Timestamp, min_sequence: u64) -> Server {
    start_with(lists, store, now, min_sequence, "").await
}

/// [`start`], with more configuration (`[reports]`, `[guard]`, tokens).
async fn start_with(
    lists: &Lists,
    store: &str,
    now: Timestamp,
    min_sequence: u64,
    extra: &str,
) -> Server {
    let mut server = unrefreshed(lists, &lists.location(), store, now, min_sequence, extra).await;
    server.refresh().await;
    server
}

/// [`start_with`], with the list at `location`, before the first refresh.
async fn unrefreshed(
    lists: &Lists,
    location: &str,
    store: &str,
    now: Timestamp,
    min_sequence: u64,
    extra: &str,
) -> Server {
    let dir = lists.dir.path();
    std::fs::write(dir.join("stable.json"), document(location, min_sequence)).expect("document");
    // The registry and, with tokens, its token endpoint: both plain HTTP.
    let insecure = lists.registry.client_options().insecure_registries;
    let text = format!(
        "insecure_registries = {insecure:?}\n[[stream]]\nname = \"stable\"\ndocument = {{ location = {:?} }}\n\
         [halts]\nhalt_keys = [\"halt.pub\"]\n{store}{extra}",
        dir.join("stable.json").display().to_string(),
    );
    let config = Config::from_toml(&text, &dir.join("server.toml")).expect("config");
    let names = || config.streams.iter().map(|s| s.name.clone());
    let halts = cairn_server::open_halts(&config, names())
        .await
        .expect("halts store");
    halts.restore().await.expect("restore");
    let reports = match &config.reports {
        Some(section) => Some(
            cairn_server::open_reports(section, names())
                .await
                .expect("reports store"),
        ),
        None => None,
    };
    let clock_now = Arc::new(Mutex::new(now));
    let reading = Arc::clone(&clock_now);
    let state = AppState::with(
        names(),
        Arc::new(move || *reading.lock().expect("clock")),
        30,
        Services {
            halts: Some(Arc::new(halts)),
            reports,
            tokens: config.tokens.clone(),
            ..Services::default()
        },
    );
    let client = lists.registry.client();
    let source = StreamSource::new(&config.streams[0], client, Duration::from_secs(10));
    Server {
        state,
        source,
        now: clock_now,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_drops_the_edge_into_its_release_and_the_list_is_served_as_signed() {
    let lists = Lists::start().await;
    lists.publish(None).await;
    let mut server = start(&lists, "database = \"halts.sqlite\"\n", Timestamp::now(), 0).await;
    assert_eq!(server.edges().await, [edge(1, 2), edge(1, 3), edge(2, 3)]);
    assert_eq!(server.source_error().await, Value::Null);
    let halted = lists.publish(Some(3)).await;
    server.refresh().await;
    assert_eq!(server.edges().await, [edge(1, 2)]);
    // The exact bytes of the registry's copy, and where its signature is.
    let response = tower::ServiceExt::oneshot(
        cairn_server::router(server.state.clone()),
        axum::http::Request::get("/v2/halts/stable")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), 200);
    let signature = response.headers()["cairn-signature"]
        .to_str()
        .expect("header")
        .to_string();
    assert!(signature.ends_with(".sig"), "{signature}");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let (store, _) = lists.options();
    let fetched = cairn_oci::halts::fetch(&store, TAG).await.expect("fetch");
    assert_eq!(body, fetched.bytes);
    assert_eq!(HaltList::from_json(&body).expect("list"), halted);
    assert!(signature.contains(&cairn_oci::signing::signature_tag(
        fetched.manifest_digest.as_deref().expect("digest")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_verified_unexpired_list_no_edge_is_offered() {
    let lists = Lists::start().await;
    // Nothing published yet: no list, no edges.
    let mut server = start(&lists, "database = \"halts.sqlite\"\n", Timestamp::now(), 0).await;
    assert_eq!(server.edges().await, []);
    assert_eq!(server.source_error().await, "halts_not_found");
    // A list signed by a key nobody trusts is refused.
    let stranger = SigningKey::generate();
    let list = HaltList::successor(
        None,
        "stable",
        None,
        Timestamp::now(),
        SignedDuration::from_hours(1),
    )
    .expect("list");
    let (store, identity) = lists.options();
    cairn_oci::halts::publish(
        &store,
        &list,
        None,
        &PublishOptions {
            tag: TAG,
            identity: &identity,
            keys: std::slice::from_ref(&stranger),
            root_version: 0,
            settle: Duration::ZERO,
            expected: None,
        },
    )
    .await
    .expect("publish");
    server.refresh().await;
    assert_eq!(server.source_error().await, "halts_bad_signature");
    assert_eq!(server.edges().await, []);
    let published = HaltList::successor(
        Some(&list),
        "stable",
        None,
        Timestamp::now(),
        SignedDuration::from_hours(1),
    )
    .expect("list");
    lists.publish_exactly(&published).await;
    server.refresh().await;
    assert_eq!(server.source_error().await, Value::Null);
    assert_eq!(server.edges().await.len(), 3);
    // Past its expiry: the stream offers nothing and says why.
    server.set_time(published.expires + SignedDuration::from_secs(1));
    server.refresh().await;
    assert_eq!(server.source_error().await, "halts_expired");
    assert_eq!(server.edges().await, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_list_below_the_documents_min_sequence_counts_as_none() {
    let lists = Lists::start().await;
    let held = lists.publish(Some(3)).await;
    let mut server = start(&lists, "database = \"halts.sqlite\"\n", Timestamp::now(), 0).await;
    assert_eq!(server.edges().await, [edge(1, 2)]);
    // A new document raises the floor above the list held (and published).
    let mut raised = graph_document(&lists.location(), held.sequence + 1);
    raised.sequence = 2;
    std::fs::write(
        lists.dir.path().join("stable.json"),
        raised.to_json_pretty(),
    )
    .expect("document");
    server.refresh().await;
    assert_eq!(server.source_error().await, "halts_replayed");
    assert_eq!(server.edges().await, []);
    // A list at the floor brings the edges back.
    lists.publish(None).await;
    server.refresh().await;
    assert_eq!(server.source_error().await, Value::Null);
    assert_eq!(server.edges().await, [edge(1, 2)]);
}

async fn a_restarted_server_refuses_an_older_list(backend: Backend) {
    let lists = Lists::start().await;
    let (keys, _etcd) = store_keys(backend).await;
    let first = lists.publish(None).await;
    let newer = lists.publish(Some(2)).await;
    let server = start(&lists, &keys, Timestamp::now(), 0).await;
    assert_eq!(server.edges().await, [edge(1, 3), edge(2, 3)]);
    drop(server);
    // The registry goes back to the first list (a stale mirror, a replay).
    lists.publish_exactly(&first).await;
    let server = start(&lists, &keys, Timestamp::now(), 0).await;
    assert_eq!(server.source_error().await, "halts_replayed");
    // The newer list, kept before the restart, is still in force and served.
    assert_eq!(server.edges().await, [edge(1, 3), edge(2, 3)]);
    let (_, body) = get(&server.state, "/v2/halts/stable").await;
    assert_eq!(HaltList::from_json(body.as_bytes()).expect("list"), newer);
}

on_every_backend!(a_restarted_server_refuses_an_older_list);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_first_graph_already_applies_the_list_kept() {
    let lists = Lists::start().await;
    lists.publish(Some(3)).await;
    let keys = "database = \"halts.sqlite\"\n";
    let server = start(&lists, keys, Timestamp::now(), 0).await;
    assert_eq!(server.edges().await, [edge(1, 2)]);
    drop(server);
    // After the restart the list's registry does not answer: the refresh
    // serves the document, then waits on the list until its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = silent.local_addr().expect("address");
    let open: Arc<Mutex<Vec<tokio::net::TcpStream>>> = Arc::default();
    let kept = Arc::clone(&open);
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            kept.lock().expect("lock").push(socket);
        }
    });
    let location = format!("{address}/acme/halts:{TAG}");
    let Server {
        state, mut source, ..
    } = unrefreshed(&lists, &location, keys, Timestamp::now(), 0, "").await;
    let refreshing = state.clone();
    let refresh = tokio::spawn(async move {
        let _ = source.refresh_once(&refreshing).await;
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.snapshot("stable").is_none() {
        assert!(std::time::Instant::now() < deadline, "no document served");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!refresh.is_finished(), "the list's read still hangs");
    assert_eq!(edges_of(&state).await, [edge(1, 2)]);
    refresh.abort();
}

const REPORT_TOKEN: &str = "report-token-0123456789";
const HALT_TOKEN: &str = "halt-token-0123456789ab";

/// `[reports]` and `[guard]` (with a webhook at `webhook`), in `dir`.
fn guard_config(dir: &std::path::Path, webhook: &str) -> String {
    guard_config_on(dir, webhook, "database = \"reports.sqlite\"\n", "")
}

/// [`guard_config`] with these `[reports]` store keys and more `[guard]` keys.
fn guard_config_on(dir: &std::path::Path, webhook: &str, reports: &str, more: &str) -> String {
    std::fs::write(dir.join("report.token"), REPORT_TOKEN).expect("token");
    std::fs::write(dir.join("halt.token"), HALT_TOKEN).expect("token");
    format!(
        "[reports]\n{reports}exempt_networks = [\"127.0.0.0/8\"]\n\
         [[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n\
         [[token]]\nfile = \"halt.token\"\nscopes = [\"halt\"]\n\
         [guard]\nhalt_key = \"halt.key\"\nwebhook = \"{webhook}\"\n{more}"
    )
}

/// Count `n` reports of `outcome` for 44.3 (from 44.2) through the store.
async fn count(server: &Server, first_id: u32, n: u32, outcome: &str) {
    use cairn_server::reports::model::{Outcome, Release};
    use cairn_server::store::reports::ReportRecord;
    let reports = server.state.shared.reports.as_ref().expect("reports");
    let now = (server.state.shared.clock)();
    for id in first_id..first_id + n {
        let mut report_id = [0u8; 16];
        report_id[..4].copy_from_slice(&id.to_be_bytes());
        let record = ReportRecord {
            stream: "stable".into(),
            release: Release {
                version: "44.3".into(),
                digest: digest(3),
            },
            outcome: Outcome::parse(outcome).expect("outcome"),
            id: report_id,
        };
        reports
            .record(&server.state.shared.metrics, record, now)
            .await
            .expect("counted");
    }
}

/// A webhook receiver keeping every JSON body it is sent.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock().expect("lock").push(body.0);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}/hook"), received)
}

fn evaluations(server: &Server) -> u64 {
    server
        .state
        .shared
        .metrics
        .guard_evaluations
        .get_or_create(&cairn_server::metrics::StreamLabels {
            stream: "stable".into(),
        })
        .get()
}

async fn check(server: &Server) {
    let guard = server.state.shared.halts.guard.as_ref().expect("guard");
    cairn_server::halts::guard::check(&server.state, guard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failures_among_200_rebooting_reports_do_not_trip_the_guard() {
    let lists = Lists::start().await;
    lists.publish(None).await;
    let (url, received) = webhook().await;
    let extra = guard_config(lists.dir.path(), &url);
    let server = start_with(
        &lists,
        "database = \"halts.sqlite\"\n",
        Timestamp::now(),
        0,
        &extra,
    )
    .await;
    // 200 hosts are rebooting into 44.3; their healthy reports are still on
    // their way, and 3 boots failed: 1.5 %, under the 5 % share.
    count(&server, 0, 200, "rebooting").await;
    count(&server, 1000, 3, "boot_failed").await;
    let before = evaluations(&server);
    check(&server).await;
    assert_eq!(
        evaluations(&server),
        before + 1,
        "the guard evaluated the stream"
    );
    let (store, _) = lists.options();
    let list = cairn_oci::halts::fetch(&store, TAG)
        .await
        .expect("fetch")
        .list;
    assert!(list.entries.is_empty(), "{list:?}");
    assert_eq!(server.edges().await, [edge(1, 2), edge(1, 3), edge(2, 3)]);
    assert!(received.lock().expect("lock").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enough_failures_halt_the_release_signed_audited_and_announced() {
    let lists = Lists::start().await;
    lists.publish(None).await;
    let (url, received) = webhook().await;
    let extra = guard_config(lists.dir.path(), &url);
    let server = start_with(
        &lists,
        "database = \"halts.sqlite\"\n",
        Timestamp::now(),
        0,
        &extra,
    )
    .await;
    count(&server, 0, 20, "rebooting").await;
    count(&server, 1000, 2, "boot_failed").await;
    count(&server, 2000, 1, "rolled_back").await;
    check(&server).await;
    // In the registry, signed with the halt key.
    let (store, _) = lists.options();
    let fetched = cairn_oci::halts::fetch(&store, TAG).await.expect("fetch");
    assert_eq!(
        fetched.signed_as(
            None,
            Some(&cairn_oci::trust::RoleKeys::any_of(
                cairn_oci::trust::Role::Halt,
                &[lists.key.verifying_key()]
            ))
        ),
        Some(cairn_graph::halts::SignedAs::HaltOnly)
    );
    let [entry] = fetched.list.entries.as_slice() else {
        panic!("one entry: {:?}", fetched.list);
    };
    assert_eq!(entry.version, "44.3");
    assert_eq!(entry.digests, [digest(3)]);
    assert_eq!(
        entry.tripped_by,
        TrippedBy::Guard {
            failures: 3,
            rebooting: 20
        }
    );
    // Audited through the store.
    let store = server.state.shared.halts.store.as_ref().expect("store");
    let audits = cairn_server::store::halts::HaltStore::audits(store, "stable")
        .await
        .expect("audits");
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert_eq!(audits[0].halt_id, entry.id);
    assert_eq!(audits[0].sequence, fetched.list.sequence);
    // Announced.
    let calls = received.lock().expect("lock").clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["version"], "44.3");
    assert_eq!(calls[0]["tripped_by"]["failures"], 3);
    // Zincati-style clients no longer see an edge into it.
    assert_eq!(server.edges().await, [edge(1, 2)]);
    // A second check finds it halted already: no second entry, no second call.
    check(&server).await;
    let list = cairn_oci::halts::fetch(&lists.options().0, TAG)
        .await
        .expect("fetch")
        .list;
    assert_eq!(list.entries.len(), 1);
    assert_eq!(received.lock().expect("lock").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_halt_stands_cleared_until_new_reports_cross_the_thresholds() {
    let lists = Lists::start().await;
    lists.publish(None).await;
    let (url, received) = webhook().await;
    let extra = guard_config(lists.dir.path(), &url);
    let mut server = start_with(
        &lists,
        "database = \"halts.sqlite\"\n",
        Timestamp::now(),
        0,
        &extra,
    )
    .await;
    count(&server, 0, 20, "rebooting").await;
    count(&server, 1000, 3, "boot_failed").await;
    check(&server).await;
    let (store, _) = lists.options();
    let halted = cairn_oci::halts::fetch(&store, TAG)
        .await
        .expect("fetch")
        .list;
    let [entry] = halted.entries.as_slice() else {
        panic!("one entry: {halted:?}");
    };
    assert_eq!(server.edges().await, [edge(1, 2)]);
    // The release team clears it in a new document.
    let mut cleared = graph_document(&lists.location(), 0);
    cleared.sequence = 2;
    if let Some(settings) = cleared.halts.as_mut() {
        settings.cleared.push(cairn_graph::document::ClearedHalt {
            id: entry.id.clone(),
            version: "44.3".into(),
        });
    }
    std::fs::write(
        lists.dir.path().join("stable.json"),
        cleared.to_json_pretty(),
    )
    .expect("document");
    server.refresh().await;
    assert_eq!(server.edges().await, [edge(1, 2), edge(1, 3), edge(2, 3)]);
    // The counts that tripped the halt are still retained: they do not halt again.
    let before = evaluations(&server);
    check(&server).await;
    assert_eq!(evaluations(&server), before + 1);
    let list = cairn_oci::halts::fetch(&store, TAG)
        .await
        .expect("fetch")
        .list;
    assert_eq!(list.entries.len(), 1, "{list:?}");
    assert_eq!(server.edges().await, [edge(1, 2), edge(1, 3), edge(2, 3)]);
    // Failures after the clear do.
    count(&server, 3000, 20, "rebooting").await;
    count(&server, 4000, 3, "boot_failed").await;
    check(&server).await;
    let list = cairn_oci::halts::fetch(&store, TAG)
        .await
        .expect("fetch")
        .list;
    assert_eq!(list.entries.len(), 2, "{list:?}");
    assert_eq!(
        list.entries[1].tripped_by,
        TrippedBy::Guard {
            failures: 3,
            rebooting: 20
        }
    );
    assert_eq!(server.edges().await, [edge(1, 2)]);
    assert_eq!(received.lock().expect("lock").len(), 2);
}

/// The guard's own login: push and pull on the halt-list repository only,
/// pull elsewhere (what the docs advise for `[guard] authfile`).
fn halter() -> cairn_testkit::token::ScopedUser {
    cairn_testkit::token::ScopedUser {
        username: "halter".into(),
        password: "halter's own password".into(),
        push_repositories: vec!["acme/os-halts".into()],
        pull_elsewhere: true,
    }
}

/// A signed document for `acme/os` of `registry`, published with `client`.
async fn publish_release_document(
    registry: &TestRegistry,
    client: cairn_oci::RegistryClient,
    key: &SigningKey,
) -> Result<(), cairn_oci::document::DocumentStoreError> {
    let store = cairn_oci::Store::registry(client, registry.repository("acme/os"));
    let identity = format!("{}/acme/os", registry.host);
    let halt_location = format!("{}/acme/os-halts:{TAG}", registry.host);
    cairn_oci::document::publish(
        &store,
        graph_document(&halt_location, 0),
        &PublishOptions {
            tag: "cairn-graph-stable",
            identity: &identity,
            keys: std::slice::from_ref(key),
            root_version: 0,
            settle: Duration::ZERO,
            expected: None,
        },
    )
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_credential_publishes_halts_and_is_refused_on_the_image_repository() {
    let user = halter();
    let registry = TestRegistry::start_scoped(vec![user.clone()]).await;
    let lists = Lists::start_on(registry, "acme/os-halts");
    lists.publish(None).await;
    // A release document in the image repository, by the release pipeline's
    // (unscoped) login, so the scoped one has something to overwrite.
    publish_release_document(&lists.registry, lists.registry.client(), &lists.key)
        .await
        .expect("the release login publishes");
    let authfile = lists.dir.path().join("halter-auth.json");
    std::fs::write(
        &authfile,
        lists.registry.auth_json(&user.username, &user.password),
    )
    .expect("authfile");
    let (url, received) = webhook().await;
    let extra = guard_config_on(
        lists.dir.path(),
        &url,
        "database = \"reports.sqlite\"\n",
        "authfile = \"halter-auth.json\"\n",
    );
    let server = start_with(
        &lists,
        "database = \"halts.sqlite\"\n",
        Timestamp::now(),
        0,
        &extra,
    )
    .await;
    count(&server, 0, 20, "rebooting").await;
    count(&server, 1000, 3, "boot_failed").await;
    check(&server).await;
    // Published to acme/os-halts with the scoped login.
    let (store, _) = lists.options();
    let fetched = cairn_oci::halts::fetch(&store, TAG).await.expect("fetch");
    let versions: Vec<_> = fetched
        .list
        .entries
        .iter()
        .map(|e| e.version.as_str())
        .collect();
    assert_eq!(versions, ["44.3"], "{:?}", fetched.list);
    assert_eq!(received.lock().expect("lock").len(), 1);
    assert_eq!(server.edges().await, [edge(1, 2)]);
    // The same login may read the image repository, never write to it: not
    // through the guard's client, not through one built from the authfile.
    let guard = server.state.shared.halts.guard.as_ref().expect("guard");
    let image = lists.registry.repository("acme/os");
    let before = lists
        .registry
        .store("acme/os")
        .resolve("cairn-graph-stable")
        .await
        .expect("resolve")
        .expect("the release document");
    let refused = guard
        .client
        .push_blob(&image, bytes::Bytes::from_static(b"not a release"))
        .await
        .expect_err("a blob push to the image repository is refused");
    assert_eq!(refused.kind(), "unauthorized", "{refused}");
    let options = cairn_oci::ClientOptions {
        credentials: cairn_oci::auth::Credentials::from_file(&authfile).expect("authfile"),
        ..lists.registry.client_options()
    };
    let client = cairn_oci::RegistryClient::new(options).expect("client");
    let readable = cairn_oci::Store::registry(client.clone(), image.clone())
        .resolve("cairn-graph-stable")
        .await
        .expect("the scoped login pulls elsewhere")
        .expect("the release document");
    assert_eq!(readable.digest, before.digest);
    let refused = publish_release_document(&lists.registry, client, &lists.key)
        .await
        .expect_err("a document push to the image repository is refused");
    assert_eq!(refused.kind(), "unauthorized", "{refused}");
    let after = lists
        .registry
        .store("acme/os")
        .resolve("cairn-graph-stable")
        .await
        .expect("resolve")
        .expect("the release document");
    assert_eq!(
        after.digest, before.digest,
        "the image repository is unchanged"
    );
}

/// POST an Alertmanager payload with `token`: the status and the JSON answer.
async fn alert(server: &Server, token: Option<&str>, payload: &Value) -> (u16, Value) {
    let mut request =
        axum::http::Request::post("/v2/alerts").header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = tower::ServiceExt::oneshot(
        cairn_server::router(server.state.clone()),
        request
            .body(axum::body::Body::from(payload.to_string()))
            .expect("request"),
    )
    .await
    .expect("response");
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_payload_halts_with_the_halt_scope_only() {
    let lists = Lists::start().await;
    lists.publish(None).await;
    let (url, _) = webhook().await;
    let extra = guard_config(lists.dir.path(), &url);
    let server = start_with(
        &lists,
        "database = \"halts.sqlite\"\n",
        Timestamp::now(),
        0,
        &extra,
    )
    .await;
    let payload = serde_json::json!({
        "version": "4",
        "status": "firing",
        "receiver": "cairn",
        "groupKey": "{}:{alertname=\"CairnRollbacks\"}",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "CairnRollbacks", "cairn_stream": "stable", "cairn_release": "44.2"},
                "annotations": {"summary": "hosts roll back from 44.2"},
                "startsAt": "2026-05-01T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
            },
            {
                "status": "resolved",
                "labels": {"alertname": "CairnRollbacks", "cairn_stream": "stable", "cairn_release": "44.3"},
                "annotations": {},
                "startsAt": "2026-05-01T09:00:00Z",
                "endsAt": "2026-05-01T09:30:00Z",
            },
            {"status": "firing", "labels": {"alertname": "DiskFull"}},
            {"status": "firing", "labels": {"alertname": "X", "cairn_stream": "nightly", "cairn_release": "44.3"}},
            {"status": "firing", "labels": {"alertname": "X", "cairn_stream": "stable", "cairn_release": "99.9"}},
            {"status": "firing", "labels": {"alertname": "Long".repeat(400), "cairn_stream": "stable", "cairn_release": "44.3"}}
        ]
    });
    let (status, answer) = alert(&server, None, &payload).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["kind"], "missing_token");
    let (status, answer) = alert(&server, Some(REPORT_TOKEN), &payload).await;
    assert_eq!(status, 403, "{answer}");
    let (store, _) = lists.options();
    let untouched = cairn_oci::halts::fetch(&store, TAG)
        .await
        .expect("fetch")
        .list;
    assert!(untouched.entries.is_empty(), "refused calls halt nothing");
    let (status, answer) = alert(&server, Some(HALT_TOKEN), &payload).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ignored"], 2, "{answer}");
    // Bad alerts are skipped and counted; the ones after them still halt.
    let skipped: Vec<_> = answer["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        skipped,
        ["alert_unknown_stream", "alert_unknown_release"],
        "{answer}"
    );
    let list = cairn_oci::halts::fetch(&store, TAG)
        .await
        .expect("fetch")
        .list;
    let versions: Vec<_> = list.entries.iter().map(|e| e.version.as_str()).collect();
    assert_eq!(versions, ["44.2", "44.3"], "a resolved alert halts nothing");
    assert_eq!(
        list.entries[0].tripped_by,
        TrippedBy::Alert {
            name: "CairnRollbacks".into()
        }
    );
    // An overlong alertname is cut to fit the list's bounds.
    let TrippedBy::Alert { name } = &list.entries[1].tripped_by else {
        panic!("{:?}", list.entries[1]);
    };
    assert_eq!(name.chars().count(), 200);
    // Both 44.2 and 44.3 are halted: no edge leads into either.
    assert_eq!(server.edges().await, []);
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_etcd_publish_exactly_one_halt() {
    let lists = Lists::start().await;
    lists.publish(None).await;
    let (store, _etcd) = store_keys(Backend::Etcd).await;
    let (url, received) = webhook().await;
    let extra = guard_config_on(
        lists.dir.path(),
        &url,
        &store,
        "check_interval_seconds = 1\n",
    );
    let first = start_with(&lists, &store, Timestamp::now(), 0, &extra).await;
    let second = start_with(&lists, &store, Timestamp::now(), 0, &extra).await;
    // Counted once, in the shared etcd: both servers read the same counts.
    count(&first, 0, 20, "rebooting").await;
    count(&first, 1000, 5, "boot_failed").await;
    let guards = [
        tokio::spawn(cairn_server::halts::guard::run(first.state.clone())),
        tokio::spawn(cairn_server::halts::guard::run(second.state.clone())),
    ];
    let (store, _) = lists.options();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = cairn_oci::halts::fetch(&store, TAG)
            .await
            .expect("fetch")
            .list;
        // Halted, and the leader evaluated twice more since: another
        // chance for a second halt, had both servers been judging.
        if !list.entries.is_empty() {
            let leader = [&first, &second]
                .into_iter()
                .find(|s| s.state.shared.metrics.guard_leader.get() == 1)
                .expect("a leader");
            let seen = evaluations(leader);
            while evaluations(leader) < seen + 2 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the leader stopped evaluating"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no halt within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for guard in guards {
        guard.abort();
    }
    let list = cairn_oci::halts::fetch(&store, TAG)
        .await
        .expect("fetch")
        .list;
    assert_eq!(list.entries.len(), 1, "{list:?}");
    let leaders: i64 = [&first, &second]
        .iter()
        .map(|s| s.state.shared.metrics.guard_leader.get())
        .sum();
    assert_eq!(leaders, 1, "exactly one leader");
    let judged: Vec<u64> = [&first, &second].iter().map(|s| evaluations(s)).collect();
    assert!(judged.contains(&0), "only the leader evaluates: {judged:?}");
    assert_eq!(received.lock().expect("lock").len(), 1);
    let halts_store = first.state.shared.halts.store.as_ref().expect("store");
    let audits = cairn_server::store::halts::HaltStore::audits(halts_store, "stable")
        .await
        .expect("audits");
    assert_eq!(audits.len(), 1, "{audits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_halts_a_release_only_with_a_halt_session_and_its_csrf_token() {
    const ADMIN_TOKEN: &str = "admin-token-0123456789ab";
    let lists = Lists::start().await;
    lists.publish(None).await;
    let (url, _) = webhook().await;
    std::fs::write(lists.dir.path().join("admin.token"), ADMIN_TOKEN).expect("token");
    let extra = format!(
        "{}[[token]]\nfile = \"admin.token\"\nscopes = [\"lock-admin\"]\n",
        guard_config(lists.dir.path(), &url)
    );
    let server = start_with(
        &lists,
        "database = \"halts.sqlite\"\n",
        Timestamp::now(),
        0,
        &extra,
    )
    .await;
    let state = &server.state;
    let (store, _) = lists.options();
    let entries = || async {
        cairn_oci::halts::fetch(&store, TAG)
            .await
            .expect("fetch")
            .list
            .entries
    };
    let form = |csrf: &str| {
        vec![
            ("stream", "stable".to_string()),
            ("version", "44.2".to_string()),
            ("reason", "hosts roll back from 44.2".to_string()),
            ("csrf", csrf.to_string()),
        ]
    };
    let post = |cookie: Option<String>, fields: Vec<(&'static str, String)>| async move {
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::post_form(state, "/ui/halt", None, &headers, &fields)
            .await
            .location
    };
    let (admin, admin_csrf) = common::dashboard_login(state, ADMIN_TOKEN).await;
    let (halter, csrf) = common::dashboard_login(state, HALT_TOKEN).await;
    // Refused: no session, a session without the halt scope, a missing or
    // another session's CSRF token, an unknown release, no reason.
    let mut missing_csrf = form("");
    missing_csrf.pop();
    let mut no_reason = form(&csrf);
    no_reason[2].1 = " ".into();
    let mut unknown = form(&csrf);
    unknown[1].1 = "99.9".into();
    let refused = [
        (None, form(&csrf), "unauthorized"),
        (Some(admin.clone()), form(&admin_csrf), "forbidden"),
        (Some(halter.clone()), missing_csrf, "csrf"),
        (Some(halter.clone()), form(&admin_csrf), "csrf"),
        (Some(halter.clone()), unknown, "unknown_release"),
        (Some(halter.clone()), no_reason, "invalid_reason"),
    ];
    for (cookie, fields, notice) in refused {
        assert_eq!(
            post(cookie, fields).await,
            format!("/streams/stable?notice={notice}")
        );
    }
    assert!(entries().await.is_empty(), "refused forms halt nothing");
    assert_eq!(server.edges().await.len(), 3);

    // Everything right: published through the add-only list, as the person
    // the token's file names.
    assert_eq!(
        post(Some(halter.clone()), form(&csrf)).await,
        "/streams/stable?notice=halted"
    );
    let list = entries().await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].version, "44.2");
    assert_eq!(list[0].reason, "hosts roll back from 44.2");
    assert_eq!(list[0].digests, [digest(2)]);
    assert_eq!(
        list[0].tripped_by,
        TrippedBy::Person {
            who: "halt.token".into()
        }
    );
    // Held at once: no edge leads into 44.2 any more.
    assert_eq!(server.edges().await, [edge(1, 3), edge(2, 3)]);
    assert_eq!(
        post(Some(halter), form(&csrf)).await,
        "/streams/stable?notice=already_halted"
    );
    assert_eq!(entries().await.len(), 1);
}

/// The guard after a key rotation: the stream's trust root judges the list
/// it builds on and names the version it signs under, and a root that no
/// longer names its halt key stops it signing at all.
mod rotation {
    use super::*;
    use cairn_oci::trust::{Role, SignedRoot, TrustedRoot};
    use cairn_testkit::roots::signed_root as root;

    /// A server with the guard, following a document in `acme/os` signed by
    /// `graph` and pinned at `first`, with halts in `lists`.
    async fn server(lists: &Lists, first: &SignedRoot, graph: &SigningKey) -> Server {
        let dir = lists.dir.path();
        std::fs::write(dir.join("root1.json"), &first.envelope).expect("root file");
        let store = lists.registry.store("acme/os");
        cairn_oci::roots::publish_root(&store, first)
            .await
            .expect("root 1");
        let identity = format!("{}/acme/os", lists.registry.host);
        cairn_oci::document::publish(
            &store,
            graph_document(&lists.location(), 0),
            &PublishOptions {
                tag: "cairn-graph-stable",
                identity: &identity,
                keys: std::slice::from_ref(graph),
                root_version: 1,
                settle: Duration::ZERO,
                expected: None,
            },
        )
        .await
        .expect("document");
        let (url, _) = webhook().await;
        let insecure = lists.registry.client_options().insecure_registries;
        let text = format!(
            "insecure_registries = {insecure:?}\n[[stream]]\nname = \"stable\"\n\
             document = {{ location = \"{identity}:cairn-graph-stable\", root = \"root1.json\" }}\n\
             [halts]\nhalt_keys = [\"halt.pub\"]\ndatabase = \"halts.sqlite\"\n{}",
            guard_config(dir, &url)
        );
        let config = Config::from_toml(&text, &dir.join("server.toml")).expect("config");
        let names = || config.streams.iter().map(|s| s.name.clone());
        let halts = cairn_server::open_halts(&config, names())
            .await
            .expect("halts store");
        let reports =
            cairn_server::open_reports(config.reports.as_ref().expect("reports"), names())
                .await
                .expect("reports store");
        let now = Arc::new(Mutex::new(Timestamp::now()));
        let reading = Arc::clone(&now);
        let state = AppState::with(
            names(),
            Arc::new(move || *reading.lock().expect("clock")),
            30,
            Services {
                halts: Some(Arc::new(halts)),
                reports: Some(reports),
                tokens: config.tokens.clone(),
                ..Services::default()
            },
        );
        let source = StreamSource::new(
            &config.streams[0],
            lists.registry.client(),
            Duration::from_secs(10),
        );
        let mut server = Server { state, source, now };
        server.refresh().await;
        server
    }

    async fn halt(server: &Server, version: &str) -> Result<bool, cairn_server::halts::HaltsError> {
        cairn_server::halts::guard::add_halt(
            &server.state,
            "stable",
            version,
            vec![digest(3)],
            "halted in a test",
            TrippedBy::Person { who: "ops".into() },
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_guard_signs_under_the_newest_root_and_refuses_once_its_key_is_dropped() {
        let lists = Lists::start().await;
        let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate()).collect();
        let [a, b, graph, other_halt] = [0, 1, 2, 3].map(|i| &keys[i]);
        let guard = &lists.key;
        let one = root(1, &[a, b], &[graph], &[guard], &[a, b]);
        lists.publish(None).await;
        let mut server = server(&lists, &one, graph).await;
        assert_eq!(server.source_error().await, Value::Null);
        assert_eq!(server.edges().await, [edge(1, 2), edge(1, 3), edge(2, 3)]);

        // Root 2 adds a second halt key and keeps the guard's.
        let two = root(2, &[a, b], &[graph], &[guard, other_halt], &[a, b]);
        let repository = lists.registry.store("acme/os");
        cairn_oci::roots::publish_root(&repository, &two)
            .await
            .expect("root 2");
        server.refresh().await;
        assert_eq!(server.source_error().await, Value::Null);
        assert!(halt(&server, "44.3").await.expect("the guard halts"));
        let (store, _) = lists.options();
        let fetched = cairn_oci::halts::fetch(&store, TAG).await.expect("fetch");
        assert_eq!(fetched.list.root_version, 2, "{:?}", fetched.list);
        let under_two = TrustedRoot::pin(two.clone()).expect("root 2");
        assert_eq!(
            fetched.signed_as(
                Some(&under_two.role(Role::Graph)),
                Some(&under_two.role(Role::Halt))
            ),
            Some(cairn_graph::halts::SignedAs::HaltOnly)
        );
        assert_eq!(server.edges().await, [edge(1, 2)]);

        // Root 3 drops the guard's key: it signs nothing hosts would refuse.
        let three = root(3, &[a, b], &[graph], &[other_halt], &[a, b]);
        cairn_oci::roots::publish_root(&repository, &three)
            .await
            .expect("root 3");
        server.refresh().await;
        let before = store.resolve(TAG).await.expect("resolve").map(|h| h.digest);
        let error = halt(&server, "44.2")
            .await
            .expect_err("the guard's key is not in root 3");
        assert_eq!(error.kind, "halts_signers_not_in_root", "{}", error.message);
        assert!(
            error.message.contains("trust root version 3")
                && error
                    .message
                    .contains(guard.verifying_key().key_id().short()),
            "{}",
            error.message
        );
        let after = store.resolve(TAG).await.expect("resolve").map(|h| h.digest);
        assert_eq!(before, after, "nothing was pushed");
        let guard_errors = get(&server.state, "/metrics").await.1;
        assert!(
            guard_errors.contains("cairn_guard_errors_total{kind=\"publish\"} 1"),
            "{guard_errors}"
        );
    }
}
