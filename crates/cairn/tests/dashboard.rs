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

use cairn_graph::derive::{BaseGraph, BaseRelease, inherit};
use cairn_graph::document::HaltSettings;
use cairn_graph::{ArchEntry, BaseImage, GraphDocument, Reason, Release, Rollout};
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

fn base_digest(n: u64) -> String {
    format!("sha256:{:064x}", 0xb000 + n)
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
            base: Some(BaseImage::new("", base_digest(base_age))),
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
    let mut document = GraphDocument {
        stream: "stable".into(),
        repository: repository.into(),
        sequence: 1,
        issued: now - SignedDuration::from_hours(1),
        expires: now + SignedDuration::from_hours(24 * 14),
        releases,
        halts: Some(HaltSettings {
            location: list.into(),
            min_sequence: 0,
            cleared: Vec::new(),
        }),
        ..GraphDocument::default()
    };
    // As `cairn publish --base-graph` does: 43.8 is built on the base's
    // barrier release, and inherits its barrier.
    let base = BaseGraph {
        source: format!("{BASE}:{GRAPH_TAG}"),
        repository: BASE.into(),
        releases: (1..=6)
            .map(|age| BaseRelease {
                version: format!("43.2026110{age}.3.0"),
                age_index: age,
                digests: [base_digest(age)].into(),
                barrier: (age == 5).then(|| "the base moves its bootloader".to_string()),
                deadend: None,
            })
            .collect(),
        uneven: Vec::new(),
    };
    inherit(&mut document, &base, &Default::default());
    document
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
        write(
            dir.path(),
            "graph.pub",
            &graph_key.verifying_key().to_pem().expect("pem"),
        );
        write(dir.path(), "halt.key", &halt_key.to_pem().expect("pem"));
        write(
            dir.path(),
            "halt.pub",
            &halt_key.verifying_key().to_pem().expect("pem"),
        );
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
        let halt_trust =
            cairn_oci::trust::TrustedRoot::from_config(&[halt_key.verifying_key()], &[]);
        cairn_oci::halts::refresh(
            &registry.store("acme/os-halts"),
            &cairn_oci::halts::UpdateOptions {
                publish: PublishOptions {
                    tag: LIST_TAG,
                    identity: &list_repository,
                    keys: std::slice::from_ref(&halt_key),
                    root_version: 0,
                    settle: Duration::ZERO,
                    expected: None,
                },
                trust: halt_trust.as_ref(),
                stream: "stable",
                lifetime: SignedDuration::from_hours(48),
                cleared: &[],
                accept_unverified_current: false,
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
                keys: std::slice::from_ref(&graph_key),
                root_version: 0,
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
        let reports =
            cairn_server::open_reports(config.reports.as_ref().expect("[reports]"), names())
                .await
                .expect("reports store");
        let fleet_lock =
            cairn_server::open_fleet_lock(config.fleet_lock.as_ref().expect("[fleet_lock]"), now)
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
        let mut source = StreamSource::new(
            &config.streams[0],
            registry.client(),
            Duration::from_secs(10),
        );
        let _ = source.refresh_once(&state).await;
        assert!(
            state.snapshot("stable").is_some(),
            "the stream is served: {:?}",
            state.health("stable")
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let app =
            cairn_server::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
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
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
        };
        let params = serde_json::json!({"client_params": {"id": NODE_ID, "group": "workers"}});
        let taken = call("/v1/pre-reboot", params.clone())
            .await
            .expect("pre-reboot");
        assert_eq!(taken.status(), 200, "{:?}", taken.text().await);
        let mut failed = params;
        failed["reason"] = "boot_failed".into();
        let halted = call("/v1/x-cairn/boot-failed", failed)
            .await
            .expect("boot-failed");
        assert_eq!(halted.status(), 200, "{:?}", halted.text().await);
    }

    /// `cairn graph next` on the same document, halt list and time.
    fn graph_next(&self, booted: &str, wariness: &str) -> Value {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args([
                "graph",
                "next",
                &self.location,
                "--arch",
                "x86_64",
                "--booted",
                booted,
            ])
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
async fn screenshot(page: &Page, name: &str) {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&target).expect("screenshot directory");
    page.screenshot(&target.join(name))
        .await
        .expect("screenshot");
    if std::env::var_os("CAIRN_UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
        std::fs::copy(target.join(name), docs.join(name)).expect("copy the screenshot");
    }
}

/// A Chromium page at `path` of the fleet's server, loaded.
async fn open(browser: &Browser, fleet: &Fleet, options: PageOptions, path: &str) -> Page {
    let page = browser.new_page(options).await.expect("a page");
    page.goto(&format!("{}{path}", fleet.url))
        .await
        .unwrap_or_else(|e| panic!("loading {path}: {e}"));
    page
}

/// The releases table's row of `version`: (its class, its state cell's text).
async fn release_state(page: &Page, version: &str) -> (String, String) {
    let found = page
        .eval(&format!(
            "(() => {{ for (const row of document.querySelectorAll('table.releases tbody tr')) {{ \
               if (row.querySelector('th').textContent.trim() === {version:?}) \
                 return [row.className, row.lastElementChild.textContent.replace(/\\s+/g, ' ').trim()]; }} \
               return null; }})()"
        ))
        .await
        .expect("eval");
    let pair: (String, String) = serde_json::from_value(found)
        .unwrap_or_else(|e| panic!("no row for {version} in the releases table: {e}"));
    pair
}

/// Every text drawn in the graph's SVG.
async fn drawn(page: &Page) -> String {
    let texts = page
        .eval(
            "[...document.querySelectorAll('.figure svg text')].map(t => t.textContent).join(' ')",
        )
        .await
        .expect("eval");
    texts.as_str().unwrap_or_default().to_string()
}

fn assert_clean(page: &Page, what: &str) {
    let problems = page.problems();
    assert!(problems.is_empty(), "{what}: {problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_show_each_state_and_answer_as_cairn_graph_next() {
    let fleet = Fleet::start().await;
    let browser = Browser::launch().await.expect("Chromium");

    // The overview: the stream, its newest release, the rollout half-way, the
    // halted release and the halted lock group, each said in words.
    let overview = open(&browser, &fleet, PageOptions::desktop(), "/").await;
    let text = overview.text("main").await.expect("main");
    for expected in ["stable", "43.10", "43.9", "50%", "Halted", "workers"] {
        assert!(
            text.contains(expected),
            "the overview lacks {expected:?}: {text}"
        );
    }
    // The auto-refresh fetches the page again: allowed by the page's policy.
    let refreshed = overview
        .eval("fetch(location.href, {cache: 'no-store'}).then(r => r.status)")
        .await
        .expect("a fetch of the page itself");
    assert_eq!(refreshed, 200);
    assert_clean(&overview, "overview");
    screenshot(&overview, "dashboard-overview.png").await;

    // The stream page: every release's state.
    let stream = open(&browser, &fleet, PageOptions::desktop(), "/streams/stable").await;
    let (class, state) = release_state(&stream, "43.6").await;
    assert_eq!(class, "state-barrier", "{state}");
    assert!(state.contains("moves to the new signing key"), "{state}");
    let link = stream
        .eval("document.querySelector('table.releases a[href^=\"https://example.org/\"]')?.href ?? null")
        .await
        .expect("eval");
    assert_eq!(link, "https://example.org/acme/os/issues/6");
    let (class, state) = release_state(&stream, "43.7").await;
    assert_eq!(class, "state-dead-end", "{state}");
    assert!(state.contains("breaks networking"), "{state}");
    let (class, state) = release_state(&stream, "43.8").await;
    assert_eq!(
        class, "state-barrier",
        "the base's barrier, inherited: {state}"
    );
    assert!(
        state.contains("from base") && state.contains(BASE),
        "{state}"
    );
    let (class, state) = release_state(&stream, "43.9").await;
    assert_eq!(class, "state-rollout", "{state}");
    assert!(
        state.contains("50%"),
        "half-way at the server's clock: {state}"
    );
    let (class, state) = release_state(&stream, "43.10").await;
    assert_eq!(class, "state-halted", "{state}");
    assert!(state.contains("guard"), "what tripped it: {state}");
    assert!(
        state.contains("cairn policy halt clear 43.10"),
        "the resume command: {state}"
    );
    let (class, _) = release_state(&stream, "43.2").await;
    assert_eq!(class, "state-plain");
    let resume_buttons = stream
        .eval("[...document.querySelectorAll('button')].filter(b => /resume/i.test(b.textContent)).length")
        .await
        .expect("eval");
    assert_eq!(
        resume_buttons, 0,
        "resuming is the release team's signed act"
    );
    // The plain run 43.1–43.5 is one row of the graph until expanded.
    let collapsed = drawn(&stream).await;
    assert!(collapsed.contains("5 releases: 43.1 … 43.5"), "{collapsed}");
    assert!(
        !collapsed.split_whitespace().any(|word| word == "43.3"),
        "43.3 is inside the collapsed run: {collapsed}"
    );
    assert_clean(&stream, "stream page");
    screenshot(&stream, "dashboard-stream.png").await;
    let expanded = open(
        &browser,
        &fleet,
        PageOptions::desktop(),
        "/streams/stable?expand=all",
    )
    .await;
    let all = drawn(&expanded).await;
    for n in 1..=10 {
        assert!(
            all.contains(&format!("43.{n}")),
            "43.{n} is drawn once expanded: {all}"
        );
    }

    // "What would this host get?", filled in and sent as a user does, against
    // `cairn graph next` on the same document, halt list and time.
    for (booted, wariness) in [
        ("43.6", "0.3"),
        ("43.6", "0.8"),
        ("43.8", "0.2"),
        ("43.1", "1"),
    ] {
        let page = open(&browser, &fleet, PageOptions::desktop(), "/streams/stable").await;
        page.fill("#ask-booted", booted).await.expect("fill");
        page.fill("#ask-wariness", wariness).await.expect("fill");
        page.click_and_wait("form.ask button[type=submit]")
            .await
            .expect("submit");
        // The answer's lines: asked, offered now, why, …
        let shown = page.texts(".decision dd").await.expect("a decision");
        let expected = fleet.graph_next(booted, wariness);
        let offered = match (
            expected["target"]["version"].as_str(),
            expected["target"]["digest"].as_str(),
        ) {
            (Some(version), Some(digest)) => format!("{version} {digest}"),
            _ => "No update".to_string(),
        };
        assert_eq!(
            shown.get(1),
            Some(&offered),
            "booted {booted}, wariness {wariness}: {shown:?}"
        );
        assert_eq!(
            shown.get(2).map(String::as_str),
            expected["reason"].as_str(),
            "{shown:?}"
        );
        assert_clean(&page, "the host control");
    }

    // Phones: the pages fit 390 px without sideways scrolling.
    for path in ["/", "/streams/stable", "/locks"] {
        let page = open(&browser, &fleet, PageOptions::phone(), path).await;
        let width = page
            .eval("document.documentElement.scrollWidth")
            .await
            .expect("eval");
        assert!(
            width.as_u64().is_some_and(|w| w <= 390),
            "{path} is {width} px wide on a phone"
        );
        assert_clean(&page, path);
        match path {
            "/" => screenshot(&page, "dashboard-overview-phone.png").await,
            "/streams/stable" => screenshot(&page, "dashboard-stream-phone.png").await,
            _ => {}
        }
    }

    // Without JavaScript every page still renders, with no problem.
    for path in [
        "/",
        "/streams/stable",
        "/streams/stable?booted=43.6&wariness=0.3",
        "/locks",
        "/login",
    ] {
        let page = open(
            &browser,
            &fleet,
            PageOptions::desktop().without_javascript(),
            path,
        )
        .await;
        let heading = page.text("main h1").await.expect("a heading");
        assert!(!heading.is_empty(), "{path}");
        assert_clean(&page, path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ids_show_only_to_a_lock_admin_and_forms_need_their_csrf_token_and_scope() {
    let fleet = Fleet::start().await;
    let browser = Browser::launch().await.expect("Chromium");

    // Read-only: the halted group, but not whose boot failed.
    let locks = open(&browser, &fleet, PageOptions::desktop(), "/locks").await;
    let text = locks.text("main").await.expect("main");
    assert!(
        text.contains("workers") && text.contains("Halted"),
        "{text}"
    );
    assert!(text.contains("boot_failed"), "{text}");
    assert!(
        !locks
            .eval("document.documentElement.outerHTML")
            .await
            .expect("eval")
            .as_str()
            .unwrap_or_default()
            .contains(NODE_ID)
    );
    assert_eq!(locks.count("form[action$='/ack']").await.expect("count"), 0);
    assert_clean(&locks, "locks, read-only");

    // A halt token logs in, but may not acknowledge: no form, and a forged
    // post is refused.
    let halter = login(&browser, &fleet, HALT_TOKEN).await;
    halter
        .goto(&format!("{}/locks", fleet.url))
        .await
        .expect("locks");
    assert!(!halter.text("main").await.expect("main").contains(NODE_ID));
    let halter_csrf = session_csrf(&halter).await;
    let forged = post_from(
        &halter,
        "/ui/locks/workers/ack",
        &format!("csrf={halter_csrf}"),
    )
    .await;
    assert_eq!(forged, "/locks?notice=forbidden");
    assert!(
        fleet_halted(&fleet).await,
        "a halt-scoped session acknowledged nothing"
    );

    // A lock admin sees the node id; a wrong CSRF token changes nothing.
    let admin = login(&browser, &fleet, LOCK_TOKEN).await;
    let cookies = admin.cookies().await.expect("cookies");
    let session = cookies
        .iter()
        .find(|c| c.name == "__Host-cairn_session")
        .expect("a session cookie");
    assert!(session.http_only && session.secure, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"), "{session:?}");
    admin
        .goto(&format!("{}/locks", fleet.url))
        .await
        .expect("locks");
    let text = admin.text("main").await.expect("main");
    assert!(text.contains(NODE_ID), "the admin sees the holder: {text}");
    assert!(
        !admin
            .eval("document.documentElement.outerHTML")
            .await
            .expect("eval")
            .as_str()
            .unwrap_or_default()
            .contains(LOCK_TOKEN),
        "the token is never shown"
    );
    admin
        .eval("document.querySelector('form[action$=\"/ack\"] input[name=csrf]').value = 'wrong'")
        .await
        .expect("eval");
    admin
        .click_and_wait("form[action$='/ack'] button")
        .await
        .expect("submit");
    assert!(
        notice(&admin)
            .await
            .starts_with("The form had expired or was not sent from this dashboard")
    );
    assert!(
        fleet_halted(&fleet).await,
        "a wrong CSRF token acknowledged nothing"
    );
    let missing = post_from(&admin, "/ui/locks/workers/ack", "").await;
    assert!(missing.contains("notice=csrf"), "{missing}");
    assert!(fleet_halted(&fleet).await);
    // The form as served acknowledges.
    admin
        .goto(&format!("{}/locks", fleet.url))
        .await
        .expect("locks");
    admin
        .click_and_wait("form[action$='/ack'] button")
        .await
        .expect("submit");
    assert_eq!(
        notice(&admin).await,
        "The lock group was acknowledged and resumes."
    );
    assert!(!fleet_halted(&fleet).await, "acknowledged");
    assert_clean(&admin, "the lock admin's pages");

    // The halt form: only for a halt session, and refused without its CSRF token.
    let stream = open(&browser, &fleet, PageOptions::desktop(), "/streams/stable").await;
    assert_eq!(
        stream
            .count("form[action='/ui/halt']")
            .await
            .expect("count"),
        0
    );
    admin
        .goto(&format!("{}/streams/stable", fleet.url))
        .await
        .expect("stream");
    assert_eq!(
        admin.count("form[action='/ui/halt']").await.expect("count"),
        0
    );
    let admin_csrf = session_csrf(&admin).await;
    let wrong_scope = post_from(
        &admin,
        "/ui/halt",
        &format!("csrf={admin_csrf}&stream=stable&version=43.9&reason=test"),
    )
    .await;
    assert!(wrong_scope.ends_with("notice=forbidden"), "{wrong_scope}");
    halter
        .goto(&format!("{}/streams/stable", fleet.url))
        .await
        .expect("stream");
    assert_eq!(
        halter
            .count("form[action='/ui/halt']")
            .await
            .expect("count"),
        1
    );
    let no_csrf = post_from(
        &halter,
        "/ui/halt",
        "stream=stable&version=43.9&reason=test",
    )
    .await;
    assert!(no_csrf.contains("notice=csrf"), "{no_csrf}");
    assert!(!halted_versions(&fleet).contains(&"43.9".to_string()));
    halter
        .fill("form[action='/ui/halt'] select[name=version]", "43.9")
        .await
        .expect("fill");
    halter
        .fill(
            "form[action='/ui/halt'] [name=reason]",
            "kernel panics on boot",
        )
        .await
        .expect("fill");
    halter
        .click_and_wait("form[action='/ui/halt'] button")
        .await
        .expect("submit");
    assert_eq!(notice(&halter).await, "The release is halted.");
    assert!(halted_versions(&fleet).contains(&"43.9".to_string()));
    let (class, state) = release_state(&halter, "43.9").await;
    assert_eq!(class, "state-halted", "{state}");
    assert!(
        state.contains("halt.token"),
        "tripped by the person the token names: {state}"
    );
    assert_clean(&halter, "the halt session's pages");
}

/// The page's notice line after an action (the script drops `?notice=`
/// from the address, so the page's text is what tells).
async fn notice(page: &Page) -> String {
    page.text("main [role=status], [role=status]")
        .await
        .unwrap_or_default()
}

/// The CSRF token of `page`'s session, from its logout form.
async fn session_csrf(page: &Page) -> String {
    let value = page
        .eval("document.querySelector('form[action=\"/logout\"] input[name=csrf]').value")
        .await
        .expect("a logout form with the session's CSRF token");
    value.as_str().expect("a token").to_string()
}

/// A fresh page logged in with `token` through the login form.
async fn login(browser: &Browser, fleet: &Fleet, token: &str) -> Page {
    let page = open(browser, fleet, PageOptions::desktop(), "/login").await;
    page.fill("#login-token", token).await.expect("fill");
    page.click_and_wait("form.login button[type=submit]")
        .await
        .expect("log in");
    assert_eq!(notice(&page).await, "Logged in.");
    page
}

/// POST a form body with `page`'s cookies (no CSRF field unless given):
/// where the answer sends the browser.
async fn post_from(page: &Page, path: &str, body: &str) -> String {
    // Sent with the browser's cookies (HttpOnly ones too), from outside
    // the page, so the answer's Location can be read.
    let cookies = page.cookies().await.expect("cookies");
    let header: Vec<String> = cookies
        .iter()
        .map(|c| format!("{}={}", c.name, c.value))
        .collect();
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!(
            "{}{path}",
            page.url()
                .await
                .expect("url")
                .split('/')
                .take(3)
                .collect::<Vec<_>>()
                .join("/")
        ))
        .header("cookie", header.join("; "))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn fleet_halted(fleet: &Fleet) -> bool {
    let lock = fleet.state.shared.fleet_lock.as_ref().expect("FleetLock");
    let groups = lock.groups().await.expect("groups");
    groups
        .get("workers")
        .is_some_and(|group| group.halt.is_some())
}

fn halted_versions(fleet: &Fleet) -> Vec<String> {
    let view = fleet.state.shared.halts.view("stable");
    view.held
        .map(|held| {
            held.list
                .entries
                .iter()
                .filter(|e| !view.cleared.contains(&e.id))
                .map(|e| e.version.clone())
                .collect()
        })
        .unwrap_or_default()
}
