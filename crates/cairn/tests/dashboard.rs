//! The dashboard of `cairn serve`, in a real headless Chromium.
//!
//! One server, on a fixed clock, serves a derived stream read from a real
//! registry: a barrier, a dead-end, an inherited base barrier, a rollout
//! half-way, and a release the rollout guard halted on its hosts' reports;
//! FleetLock has a group halted by a failed boot. The browser checks what
//! each page shows, that the "what would this host get" control answers as
//! `cairn graph next` does, that node ids appear only to a lock admin, that
//! the forms refuse a wrong CSRF token or scope, that every page works
//! without JavaScript and on a 390 px screen with no console error or failed
//! request, and writes screenshots (into `docs/images/` with
//! `CAIRN_UPDATE_SCREENSHOTS=1`).

use cairn_graph::document::{BaseGraphSummary, HaltSettings};
use cairn_graph::{ArchEntry, BaseBarrier, BaseImage, GraphDocument, Reason, Release, Rollout};
use cairn_oci::document::PublishOptions;
use cairn_oci::signing::SigningKey;
use cairn_server::refresh::StreamSource;
use cairn_server::state::Services;
use cairn_server::{AppState, Config};
use cairn_testkit::browser::{Browser, Page, PageOptions};
use cairn_testkit::{Auth, TestRegistry};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const GRAPH_TAG: &str = "cairn-graph-stable";
const LIST_TAG: &str = "cairn-halts-stable";
const BASE: &str = "quay.io/fedora/fedora-coreos";
const REPORT_TOKEN: &str = "report-token-0123456789abcdef";
const HALT_TOKEN: &str = "halt-token-0123456789abcdef";
const LOCK_TOKEN: &str = "lock-admin-token-0123456789";
/// The FleetLock id of the host whose failed boot halts `workers`.
const NODE_ID: &str = "5f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn digest(release: u8, arch: u8) -> String {
    format!("sha256:{:02x}{}", arch, format!("{release:02x}").repeat(31))
}

fn base_digest(n: u8) -> String {
    format!("sha256:{}", format!("b{n:01x}").repeat(32))
}

/// 43.1–43.10 of a stream derived from Fedora CoreOS: 43.1–43.5 plain (a
/// run the graph collapses), 43.6 a barrier, 43.7 a dead-end, 43.8 built on
/// the base's barrier release, 43.9 half-way into a two-day rollout at
/// `now`, 43.10 offered to all (the guard halts it).
fn document(repository: &str, list: &str, now: Timestamp) -> GraphDocument {
    let release = |n: u8| {
        let base_age = match n {
            1..=4 => u64::from(n),
            5..=7 => 4,
            8 => 5,
            _ => 6,
        };
        let mut architectures: std::collections::BTreeMap<String, ArchEntry> =
            [("x86_64".to_string(), ArchEntry::image(digest(n, 0)))].into();
        // aarch64 builds from 43.3 on: arcs from 43.1 and 43.2 are x86_64's only.
        if n >= 3 {
            architectures.insert("aarch64".into(), ArchEntry::image(digest(n, 1)));
        }
        Release {
            version: format!("43.{n}"),
            architectures,
            base: Some(BaseImage {
                version: Some(format!("43.2026110{base_age}.3.0")),
                age_index: Some(base_age),
                ..BaseImage::new(BASE, base_digest(base_age as u8))
            }),
            ..Release::default()
        }
    };
    let mut releases: Vec<Release> = (1..=10).map(release).collect();
    releases[5].barrier = Some(Reason::new(
        "moves to the new signing key, see https://example.org/acme/os/issues/6",
    ));
    releases[6].deadend = Some(Reason::new("breaks networking on some NICs"));
    releases[8].rollout = Some(Rollout {
        start_epoch: Some(now.as_second() - 86_400),
        start_percentage: Some(0.0),
        duration_minutes: Some(2 * 24 * 60),
    });
    GraphDocument {
        stream: "stable".into(),
        repository: repository.into(),
        sequence: 1,
        issued: now - SignedDuration::from_hours(1),
        expires: now + SignedDuration::from_hours(24 * 14),
        releases,
        base: Some(BaseGraphSummary {
            source: format!("{BASE}:{GRAPH_TAG}"),
            repository: BASE.into(),
            barriers: vec![BaseBarrier {
                version: "43.20261105.3.0".into(),
                age_index: 5,
                reason: "the base moves its bootloader".into(),
            }],
        }),
        halts: Some(HaltSettings {
            location: list.into(),
            min_sequence: 0,
            cleared: Vec::new(),
        }),
        ..GraphDocument::default()
    }
}

/// Everything the pages are served from.
struct Fleet {
    _registry: TestRegistry,
    registry_host: String,
    dir: tempfile::TempDir,
    state: AppState,
    /// `http://127.0.0.1:<port>`.
    url: String,
    /// The document's registry reference.
    location: String,
    now: Timestamp,
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
}

impl Fleet {
    async fn start() -> Fleet {
        let registry = TestRegistry::start(Auth::None).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let graph_key = SigningKey::generate();
        let halt_key = SigningKey::generate();
        write(dir.path(), "graph.pub", &graph_key.verifying_key().to_pem().expect("pem"));
        write(dir.path(), "halt.key", &halt_key.to_pem().expect("pem"));
        write(dir.path(), "halt.pub", &halt_key.verifying_key().to_pem().expect("pem"));
        write(dir.path(), "report.token", REPORT_TOKEN);
        write(dir.path(), "halt.token", HALT_TOKEN);
        write(dir.path(), "ops.token", LOCK_TOKEN);
        // The server's clock stands still at `now`: every share and lease
        // the pages show is exact.
        let now = Timestamp::from_second(Timestamp::now().as_second()).expect("now");
        let repository = format!("{}/acme/os", registry.host);
        let list_repository = format!("{}/acme/os-halts", registry.host);
        let list = format!("{list_repository}:{LIST_TAG}");
        let location = format!("{repository}:{GRAPH_TAG}");
        let document = document(&repository, &list, now);
        document.validate().expect("a valid document");
        // The first, empty halt list, then the document.
        let halt_trust = [halt_key.verifying_key()];
        cairn_oci::halts::refresh(
            &registry.store("acme/os-halts"),
            &cairn_oci::halts::UpdateOptions {
                publish: PublishOptions {
                    tag: LIST_TAG,
                    identity: &list_repository,
                    key: Some(&halt_key),
                    settle: Duration::ZERO,
                    expected: None,
                },
                trust_keys: &halt_trust,
                stream: "stable",
                lifetime: SignedDuration::from_hours(48),
                cleared: &[],
            },
        )
        .await
        .expect("the first halt list");
        cairn_oci::document::publish(
            &registry.store("acme/os"),
            document,
            &PublishOptions {
                tag: GRAPH_TAG,
                identity: &repository,
                key: Some(&graph_key),
                settle: Duration::ZERO,
                expected: None,
            },
        )
        .await
        .expect("publish the document");

        let insecure = registry.client_options().insecure_registries;
        let text = format!(
            "insecure_registries = {insecure:?}\n\
             [[stream]]\nname = \"stable\"\ndocument = {{ location = {location:?}, keys = [\"graph.pub\"] }}\n\
             [halts]\nhalt_keys = [\"halt.pub\"]\ndatabase = \"halts.sqlite\"\n\
             [reports]\ndatabase = \"reports.sqlite\"\nexempt_networks = [\"127.0.0.0/8\"]\n\
             [guard]\nhalt_key = \"halt.key\"\n\
             [fleet_lock]\ndatabase = \"locks.sqlite\"\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [[fleet_lock.group]]\nname = \"workers\"\nslots = 2\n\
             [[token]]\nfile = \"report.token\"\nscopes = [\"report\"]\n\
             [[token]]\nfile = \"halt.token\"\nscopes = [\"halt\"]\n\
             [[token]]\nfile = \"ops.token\"\nscopes = [\"lock-admin\"]\n"
        );
        let config = Config::from_toml(&text, &dir.path().join("server.toml")).expect("config");
        let names = || config.streams.iter().map(|s| s.name.clone());
        let halts = cairn_server::open_halts(&config, names())
            .await
            .expect("halts store");
        let reports = cairn_server::open_reports(config.reports.as_ref().expect("[reports]"), names())
            .await
            .expect("reports store");
        let fleet_lock = cairn_server::open_fleet_lock(
            config.fleet_lock.as_ref().expect("[fleet_lock]"),
            now,
        )
        .await
        .expect("FleetLock store");
        let state = AppState::with(
            names(),
            Arc::new(move || now),
            30,
            Services {
                fleet_lock: Some(fleet_lock),
                reports: Some(reports),
                tokens: config.tokens.clone(),
                halts: Some(Arc::new(halts)),
            },
        );
        let mut source =
            StreamSource::new(&config.streams[0], registry.client(), Duration::from_secs(10));
        let _ = source.refresh_once(&state).await;
        assert!(state.snapshot("stable").is_some(), "the stream is served: {:?}", state.health("stable"));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let app = cairn_server::router(state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let fleet = Fleet {
            registry_host: registry.host.clone(),
            _registry: registry,
            dir,
            state,
            url: format!("http://{address}"),
            location,
            now,
        };
        fleet.trip_the_guard().await;
        fleet.halt_the_workers().await;
        fleet
    }

    /// 20 hosts rebooted into 43.10 and 4 of them failed: over the guard's
    /// thresholds (3 failures, a share above 5 %).
    async fn trip_the_guard(&self) {
        use cairn_server::reports::model::{Outcome, Release as Reported};
        use cairn_server::store::reports::ReportRecord;
        let reports = self.state.shared.reports.as_ref().expect("reports");
        let outcomes = std::iter::repeat_n("rebooting", 20)
            .chain(std::iter::repeat_n("boot_failed", 3))
            .chain(std::iter::once("rolled_back"));
        for (id, outcome) in outcomes.enumerate() {
            let mut report_id = [0u8; 16];
            report_id[..8].copy_from_slice(&(id as u64).to_be_bytes());
            let record = ReportRecord {
                stream: "stable".into(),
                release: Reported {
                    version: "43.10".into(),
                    digest: digest(10, 0),
                },
                outcome: Outcome::parse(outcome).expect("outcome"),
                id: report_id,
            };
            reports
                .record(&self.state.shared.metrics, record, self.now)
                .await
                .expect("counted");
        }
        let guard = self.state.shared.halts.guard.as_ref().expect("guard");
        cairn_server::halts::guard::check(&self.state, guard).await;
        let halted = self.state.shared.halts.view("stable").halted;
        assert!(!halted.is_empty(), "the guard halted 43.10");
    }

    /// A host of `workers` takes a slot, then its boot fails: the group halts.
    async fn halt_the_workers(&self) {
        let client = reqwest::Client::new();
        let call = |path: &str, body: Value| {
            client
                .post(format!("{}{path}", self.url))
                .header("fleet-lock-protocol", "true")
                .json(&body)
                .send()
        };
        let params = serde_json::json!({"client_params": {"id": NODE_ID, "group": "workers"}});
        let taken = call("/v1/pre-reboot", params.clone()).await.expect("pre-reboot");
        assert_eq!(taken.status(), 200, "{:?}", taken.text().await);
        let mut failed = params;
        failed["reason"] = "boot_failed".into();
        let halted = call("/v1/x-cairn/boot-failed", failed).await.expect("boot-failed");
        assert_eq!(halted.status(), 200, "{:?}", halted.text().await);
    }

    /// `cairn graph next` on the same document, halt list and time.
    fn graph_next(&self, booted: &str, wariness: &str) -> Value {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["graph", "next", &self.location, "--arch", "x86_64", "--booted", booted])
            .args(["--wariness", wariness, "--now", &self.now.to_string()])
            .args(["--key", "graph.pub", "--halt-key", "halt.pub"])
            .args(["--insecure-registry", &self.registry_host])
            .current_dir(self.dir.path())
            .output()
            .expect("cairn graph next runs");
        assert!(
            output.status.success(),
            "cairn graph next: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON")
    }
}

/// Where screenshots go: always under the target directory, and into
/// `docs/images/` when `CAIRN_UPDATE_SCREENSHOTS` is set.
fn screenshot(page: &Page, name: &str) {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&target).expect("screenshot directory");
    page.screenshot(&target.join(name)).expect("screenshot");
    if std::env::var_os("CAIRN_UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
        std::fs::copy(target.join(name), docs.join(name)).expect("copy the screenshot");
    }
}
