//! Agents end to end: a real registry with images and a document published
//! the way `cairn publish` does it, host stand-ins, and a FleetLock server
//! without lease timeout.

use cairn_agent::agent::{Agent, World};
use cairn_agent::config::{ConfigDirs, Settings, load};
use cairn_agent::fleetlock::FleetLockClient;
use cairn_agent::host::Tool;
use cairn_agent::host::driver::{Driver, ProcessRunner};
use cairn_agent::reason::ReasonKind;
use cairn_agent::source::{GraphUnavailable, SourceGraph};
use cairn_agent::status::StateName;
use cairn_graph::GraphDocument;
use cairn_graph::assemble::{AssembleOptions, assemble};
use cairn_graph::fcos::Updates;
use cairn_graph::policy::{PolicyEdit, apply};
use cairn_oci::scan::{ScanCache, ScanOptions, scan};
use cairn_testkit::host::FakeHost;
use cairn_testkit::{Auth, LockServer, TestRegistry, write_release};
use jiff::{SignedDuration, Timestamp};
use std::path::Path;
use std::time::Duration;

struct Fleet {
    registry: TestRegistry,
    repo: String,
    document: GraphDocument,
    /// amd64 manifest digests of 44.1, 44.2 (barrier) and 44.3 (rollout at 50%).
    digests: [String; 3],
}

/// Three releases; 44.2 a barrier, 44.3 half-way through a two-day rollout.
async fn fleet() -> Fleet {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (_, r1) = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let (_, r2) = write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    let (_, r3) = write_release(&store, "44.3", "2026-03-01T00:00:00Z", &["44.3", "stable"]).await;
    let now = Timestamp::now();
    let mut policy = Updates::default();
    apply(
        &mut policy,
        &PolicyEdit::BarrierAdd {
            version: "44.2".into(),
            reason: "https://example.org/keys".into(),
        },
        now.as_second(),
    )
    .expect("barrier");
    let start = now.as_second() - 24 * 3600;
    apply(
        &mut policy,
        &PolicyEdit::RolloutStart {
            version: "44.3".into(),
            minutes: 2 * 24 * 60,
            at: start,
            from: 0.0,
        },
        now.as_second(),
    )
    .expect("rollout");
    // What `cairn publish` does: scan, assemble, sign and push.
    let mut cache = ScanCache::default();
    let report = scan(
        &store,
        &ScanOptions::for_stream("stable"),
        &mut cache,
        &|_, _| {},
    )
    .await
    .expect("scan");
    let repo = format!("{}/acme/os", registry.host);
    let assembled = assemble(
        None,
        report.candidates,
        &AssembleOptions {
            stream: "stable",
            repository: &repo,
            now,
            expires: now + SignedDuration::from_hours(24 * 14),
            default_rollout: Some(cairn_graph::Rollout::immediate()),
            policy: Some(&policy),
            present: Some(&report.present),
            base: None,
        },
    )
    .expect("assemble");
    let key = cairn_oci::signing::SigningKey::generate();
    let options = cairn_oci::document::PublishOptions {
        tag: "cairn-graph-stable",
        identity: &repo,
        keys: std::slice::from_ref(&key),
        root_version: 0,
        settle: Duration::ZERO,
        expected: None,
    };
    cairn_oci::document::publish(&store, assembled.document, &options)
        .await
        .expect("publish");
    // What the agent reads back, verified.
    let fetched = cairn_oci::document::fetch(&store, "cairn-graph-stable")
        .await
        .expect("fetch");
    let signers =
        cairn_oci::trust::RoleKeys::any_of(cairn_oci::trust::Role::Graph, &[key.verifying_key()]);
    let trust = cairn_oci::document::TrustPolicy {
        signers: Some(&signers),
        allow_unsigned: false,
        now,
        last_seen: None,
        stream: Some("stable"),
    };
    fetched.verify("test", &trust).expect("verifies");
    Fleet {
        repo,
        document: fetched.document,
        digests: [
            r1[0].manifest.clone(),
            r2[0].manifest.clone(),
            r3[0].manifest.clone(),
        ],
        registry,
    }
}

fn settings(root: &Path, text: &str) -> Settings {
    let dir = root.join("etc/cairn/config.d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("50-test.toml"), text).expect("write");
    load(&ConfigDirs::under(root)).expect("valid configuration")
}

struct Node {
    host: FakeHost,
    state_dir: std::path::PathBuf,
    config_root: std::path::PathBuf,
    wariness: f64,
    _dir: tempfile::TempDir,
}

fn node(fleet: &Fleet, booted: usize, wariness: f64, config: &str) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let insecure = vec![fleet.registry.host.clone()];
    let booted_version = ["44.1", "44.2", "44.3"][booted];
    let host = FakeHost::new(
        &dir.path().join("host"),
        "1.17.0",
        &format!("{}:stable", fleet.repo),
        (&fleet.digests[booted], booted_version),
        &insecure,
        true,
    );
    let config_root = dir.path().join("config");
    settings(&config_root, config);
    Node {
        host,
        state_dir: dir.path().join("state"),
        config_root,
        wariness,
        _dir: dir,
    }
}

fn agent(fleet: &Fleet, node: &Node, lock: Option<&LockServer>) -> Agent<ProcessRunner> {
    let lock = lock.map(|server| lock_client(node, &server.base_url));
    agent_with(fleet, node, lock)
}

/// The node's FleetLock client, against any URL.
fn lock_client(node: &Node, base_url: &str) -> FleetLockClient {
    FleetLockClient::new(
        url::Url::parse(base_url).expect("url"),
        &format!("node-{}", node.wariness),
        "default",
        Duration::from_secs(5),
    )
    .expect("lock client")
}

fn agent_with(fleet: &Fleet, node: &Node, lock: Option<FleetLockClient>) -> Agent<ProcessRunner> {
    let settings = load(&ConfigDirs::under(&node.config_root)).expect("valid configuration");
    let driver = Driver::new(
        ProcessRunner {
            use_systemd_run: false,
            systemd_run: None,
        },
        Tool::Bootc,
        &node.host.program.display().to_string(),
        Duration::from_secs(30),
    );
    Agent::new(
        settings,
        driver,
        lock,
        node.state_dir.clone(),
        node.wariness,
        "x86_64",
        &fleet.repo,
    )
    .expect("agent")
}

/// A one-minute window twelve hours from now: closed for the whole test.
fn closed_window() -> String {
    let later = Timestamp::now() + SignedDuration::from_hours(12);
    let zoned = later.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    format!(
        "[[strategy.window]]\ndays = [\"{}\"]\nstart_time = \"{}\"\nlength_minutes = 1\n",
        zoned.strftime("%a"),
        zoned.strftime("%H:%M")
    )
}

fn world(fleet: &Fleet) -> World {
    World {
        now: Timestamp::now(),
        graph: Ok(SourceGraph::Document(fleet.document.clone())),
        users_logged_in: false,
        may_reboot: true,
        boot_health: cairn_agent::health::BootHealth::Unknown,
        boot_id: Some("boot-1".into()),
    }
}

fn staged(node: &Node) -> Option<String> {
    node.host.state().staged.map(|s| s.digest)
}

/// A fresh agent's first two passes (steady, then stage), then the reboot
/// into the staged release, healthy.
async fn stage_and_boot_healthy(fleet: &Fleet, n: &Node) {
    {
        let mut agent = agent(fleet, n, None);
        let report = agent.tick(&world(fleet)).await.expect("steady");
        assert_eq!(report.reason.kind, ReasonKind::SteadyStateReported);
        let report = agent.tick(&world(fleet)).await.expect("stage");
        assert_eq!(report.reason.kind, ReasonKind::Staged, "{}", report.reason);
    }
    finalize_and_reboot(fleet, n, None, true).await;
}

/// Finalize in the background (bootc --apply blocks), wait for it, reboot the stand-in.
async fn finalize_and_reboot(fleet: &Fleet, node: &Node, lock: Option<&LockServer>, healthy: bool) {
    reboot_with(fleet, node, agent(fleet, node, lock), healthy).await;
}

/// Finalize with `agent` in the background, wait for it, reboot the stand-in.
async fn reboot_with(fleet: &Fleet, node: &Node, mut agent: Agent<ProcessRunner>, healthy: bool) {
    let world = world(fleet);
    let task = tokio::spawn(async move { agent.tick(&world).await.map(|r| r.reason) });
    node.host.wait_for_apply().await;
    node.host.reboot(healthy);
    let reason = task.await.expect("task").expect("tick");
    assert_eq!(reason.kind, ReasonKind::Rebooting, "{reason}");
    assert!(reason.message.starts_with("rebooting into"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_at_half_updates_exactly_the_nodes_up_to_half() {
    let fleet = fleet().await;
    let nodes: Vec<Node> = [0.2, 0.4, 0.6, 0.8]
        .iter()
        .map(|&w| node(&fleet, 1, w, ""))
        .collect();
    for node in &nodes {
        let mut agent = agent(&fleet, node, None);
        agent.tick(&world(&fleet)).await.expect("steady");
        let report = agent.tick(&world(&fleet)).await.expect("check");
        if node.wariness <= 0.5 {
            assert_eq!(report.state, StateName::Staged, "{report:?}");
            assert_eq!(staged(node).as_deref(), Some(fleet.digests[2].as_str()));
        } else {
            assert_eq!(report.state, StateName::Steady, "{report:?}");
            assert_eq!(report.reason.kind, ReasonKind::RolloutPending);
            assert!(
                report.reason.message.starts_with("rollout of 44.3 at 50"),
                "{}",
                report.reason.message
            );
            assert!(
                report
                    .reason
                    .message
                    .ends_with(&format!("this node's wariness is {}", node.wariness)),
                "{}",
                report.reason.message
            );
            assert_eq!(staged(node), None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_node_passes_the_barrier_then_moves_on_and_the_lock_is_released() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    let old = node(
        &fleet,
        0,
        0.0,
        "[strategy.fleet_lock]\nbase_url = \"http://unused.invalid/\"\n",
    );
    {
        let mut agent = agent(&fleet, &old, Some(&lock));
        agent.tick(&world(&fleet)).await.expect("steady");
        let report = agent.tick(&world(&fleet)).await.expect("check");
        assert_eq!(
            report.reason.message, "staged 44.2",
            "the barrier first, not 44.3"
        );
        assert_eq!(report.reason.kind, ReasonKind::Staged);
    }
    finalize_and_reboot(&fleet, &old, Some(&lock), true).await;
    assert_eq!(
        lock.holders("default"),
        vec!["node-0".to_string()],
        "held across the reboot"
    );
    // The agent starts again on the new boot.
    let mut agent = agent(&fleet, &old, Some(&lock));
    agent.recover(Timestamp::now()).await.expect("recover");
    let report = agent.tick(&world(&fleet)).await.expect("verify");
    // Nothing in this world reports boot health: moved on, but not verified.
    assert_eq!(report.reason.kind, ReasonKind::BootedUnverified);
    assert!(
        report
            .reason
            .message
            .starts_with("updated to 44.2; the boot is unverified"),
        "{}",
        report.reason.message
    );
    assert_eq!(outcomes(&old), ["staged", "rebooting", "booted_unverified"]);
    assert!(
        lock.holders("default").is_empty(),
        "released at steady state after boot"
    );
    let report = agent.tick(&world(&fleet)).await.expect("check again");
    assert_eq!(
        report.reason.message, "staged 44.3",
        "then on past the barrier"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_boot_rolls_back_and_deny_lists_the_release() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "");
    {
        let mut agent = agent(&fleet, &n, None);
        agent.tick(&world(&fleet)).await.expect("steady");
        assert_eq!(
            agent
                .tick(&world(&fleet))
                .await
                .expect("check")
                .reason
                .message,
            "staged 44.3"
        );
    }
    finalize_and_reboot(&fleet, &n, None, false).await;
    let mut agent = agent(&fleet, &n, None);
    let report = agent.recover(Timestamp::now()).await.expect("recover");
    assert_eq!(report.reason.kind, ReasonKind::RecoveredRolledBack);
    assert!(
        report.reason.message.contains("deny-listed"),
        "{}",
        report.reason.message
    );
    let report = agent.tick(&world(&fleet)).await.expect("verify");
    assert_eq!(
        report.reason.kind,
        ReasonKind::RolledBack,
        "{}",
        report.reason
    );
    let report = agent.tick(&world(&fleet)).await.expect("check");
    assert_eq!(report.state, StateName::Steady);
    assert_eq!(
        report.reason.kind,
        ReasonKind::TargetRolledBack,
        "{}",
        report.reason
    );
    assert!(
        report.reason.message.contains("rolled back"),
        "{}",
        report.reason.message
    );
    assert!(agent.persisted.deny_list.contains_key(&fleet.digests[2]));
    assert_eq!(outcomes(&n), ["staged", "rebooting", "boot_failed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_locks_gate_finalization_and_never_leave_a_slot_held() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    // Outside any window, so no finalization and no lock.
    let config = format!(
        "{}[strategy.fleet_lock]\nbase_url = \"http://unused.invalid/\"\n",
        closed_window()
    );
    let n = node(&fleet, 1, 0.1, &config);
    let mut first = agent(&fleet, &n, Some(&lock));
    first.tick(&world(&fleet)).await.expect("steady");
    first.tick(&world(&fleet)).await.expect("stage");
    let report = first.tick(&world(&fleet)).await.expect("gate");
    assert!(
        report.reason.kind == ReasonKind::WindowClosed
            && report.reason.message.starts_with("waiting for window"),
        "{}",
        report.reason.message
    );
    assert!(
        lock.holders("default").is_empty(),
        "no lock taken outside the window"
    );
    assert!(n.host.state().apply_pid.is_none(), "not finalized");

    // Inside the window but another node holds the only slot.
    let m = node(
        &fleet,
        1,
        0.1,
        "[strategy.fleet_lock]\nbase_url = \"http://unused.invalid/\"\n",
    );
    let other = FleetLockClient::new(
        url::Url::parse(&lock.base_url).expect("url"),
        "someone-else",
        "default",
        Duration::from_secs(5),
    )
    .expect("client");
    other
        .pre_reboot()
        .await
        .expect("someone else takes the slot");
    let mut second = agent(&fleet, &m, Some(&lock));
    second.tick(&world(&fleet)).await.expect("steady");
    second.tick(&world(&fleet)).await.expect("stage");
    let report = second.tick(&world(&fleet)).await.expect("gate");
    assert!(
        report.reason.kind == ReasonKind::RebootLockWait
            && report.reason.message.starts_with("waiting for reboot lock"),
        "{}",
        report.reason.message
    );
    assert!(m.host.state().apply_pid.is_none());
    assert_eq!(lock.holders("default"), vec!["someone-else".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_server_that_does_not_answer_is_a_lock_error_not_a_wait() {
    let fleet = fleet().await;
    let n = node(
        &fleet,
        1,
        0.1,
        "[strategy.fleet_lock]\nbase_url = \"http://unused.invalid/\"\n",
    );
    {
        // Staged without a lock: steady state needs no answer here.
        let mut agent = agent(&fleet, &n, None);
        agent.tick(&world(&fleet)).await.expect("steady");
        agent.tick(&world(&fleet)).await.expect("stage");
    }
    let mut agent = agent_with(&fleet, &n, Some(lock_client(&n, "http://127.0.0.1:9/")));
    let report = agent.tick(&world(&fleet)).await.expect("gate");
    assert_eq!(
        report.reason.kind,
        ReasonKind::LockError,
        "{}",
        report.reason.message
    );
    assert_eq!(report.state, StateName::Staged);
    assert!(n.host.state().apply_pid.is_none(), "not finalized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trusted_document_nothing_is_done_and_status_says_why() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "");
    let mut agent = agent(&fleet, &n, None);
    for (kind, why) in [
        ("transport", "registry down: connection refused"),
        ("bad_signature", "bad signature"),
        ("expired", "document expired"),
        ("replayed", "sequence replayed"),
    ] {
        let world = World {
            now: Timestamp::now(),
            graph: Err(GraphUnavailable::new(kind, why)),
            users_logged_in: false,
            may_reboot: true,
            boot_health: cairn_agent::health::BootHealth::Unknown,
            boot_id: None,
        };
        agent.tick(&world).await.expect("tick");
        let report = agent.tick(&world).await.expect("tick");
        assert_eq!(report.reason.message, format!("no action: {why}"));
        assert_eq!(report.reason.kind, ReasonKind::SourceError);
        assert_eq!(staged(&n), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_update_is_not_finalized_without_a_trusted_document() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "");
    let mut agent = agent(&fleet, &n, None);
    agent.tick(&world(&fleet)).await.expect("steady");
    assert_eq!(
        agent
            .tick(&world(&fleet))
            .await
            .expect("stage")
            .reason
            .message,
        "staged 44.3"
    );
    let untrusted = World {
        now: Timestamp::now(),
        graph: Err(GraphUnavailable::new("bad_signature", "bad signature")),
        users_logged_in: false,
        may_reboot: true,
        boot_health: cairn_agent::health::BootHealth::Unknown,
        boot_id: None,
    };
    let report = agent.tick(&untrusted).await.expect("tick");
    assert!(
        report.reason.message.starts_with("no action"),
        "{}",
        report.reason.message
    );
    assert!(
        n.host.state().apply_pid.is_none(),
        "no reboot without a trusted document"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_held_at_a_crash_is_released_after_restart() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    // A window that is closed now, so the restarted agent does not finalize.
    let config = closed_window();
    let n = node(&fleet, 1, 0.1, &config);
    {
        let mut agent = agent(&fleet, &n, Some(&lock));
        agent.tick(&world(&fleet)).await.expect("steady");
        agent.tick(&world(&fleet)).await.expect("stage");
    }
    // A crash right after the slot was granted: FinalizeAllowed, lock held.
    let mut state = cairn_agent::store::AgentState::load(&n.state_dir).expect("state");
    let target = state.state.target().cloned().expect("target");
    state.state = cairn_agent::machine::State::FinalizeAllowed { target };
    state.lock_held = true;
    state.save(&n.state_dir).expect("save");
    let slot = FleetLockClient::new(
        url::Url::parse(&lock.base_url).expect("url"),
        "node-0.1",
        "default",
        Duration::from_secs(5),
    )
    .expect("client");
    slot.pre_reboot()
        .await
        .expect("the slot was granted before the crash");
    let mut agent = agent(&fleet, &n, Some(&lock));
    agent.recover(Timestamp::now()).await.expect("recover");
    let report = agent.tick(&world(&fleet)).await.expect("tick");
    assert!(
        report.reason.kind == ReasonKind::WindowClosed
            && report.reason.message.starts_with("waiting for window"),
        "{}",
        report.reason.message
    );
    assert!(lock.holders("default").is_empty(), "the slot was released");
    assert!(!agent.persisted.lock_held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_update_found_after_a_reset_is_adopted() {
    let fleet = fleet().await;
    let config = closed_window();
    let n = node(&fleet, 1, 0.1, &config);
    {
        let mut agent = agent(&fleet, &n, None);
        agent.tick(&world(&fleet)).await.expect("steady");
        agent.tick(&world(&fleet)).await.expect("stage");
    }
    // The state file is lost; the host still has the update staged.
    std::fs::remove_file(n.state_dir.join(cairn_agent::store::STATE_FILE)).expect("remove");
    let mut agent = agent(&fleet, &n, None);
    let report = agent.recover(Timestamp::now()).await.expect("recover");
    assert_eq!(report.reason.kind, ReasonKind::Resuming);
    agent.tick(&world(&fleet)).await.expect("steady");
    let report = agent.tick(&world(&fleet)).await.expect("check");
    assert_eq!(
        report.reason.kind,
        ReasonKind::StillStaged,
        "{}",
        report.reason
    );
    assert_eq!(
        agent.state().name(),
        "staged",
        "adopted, not stuck in checking"
    );
    let calls = n
        .host
        .state()
        .calls
        .iter()
        .filter(|c| c.starts_with("switch --download-only"))
        .count();
    assert_eq!(calls, 1, "not staged twice");
}

/// The history's words, oldest first.
fn outcomes(node: &Node) -> Vec<String> {
    let (records, damaged) = cairn_agent::history::read(&node.state_dir).expect("history");
    assert_eq!(damaged, 0);
    records.iter().map(|r| r.result.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_update_the_host_dropped_ends_its_attempt_and_a_new_one_begins() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, &closed_window());
    {
        let mut agent = agent(&fleet, &n, None);
        agent.tick(&world(&fleet)).await.expect("steady");
        agent.tick(&world(&fleet)).await.expect("stage");
    }
    // A reboot by someone else drops the download-only deployment.
    let mut host = n.host.state();
    host.staged = None;
    cairn_testkit::host::write_state(&n.host.dir, &host);
    let mut agent = agent(&fleet, &n, None);
    agent.recover(Timestamp::now()).await.expect("recover");
    agent.tick(&world(&fleet)).await.expect("steady");
    let report = agent.tick(&world(&fleet)).await.expect("check");
    assert_eq!(report.reason.message, "staged 44.3");
    assert_eq!(outcomes(&n), ["staged", "withdrawn", "staged"]);
    let (records, _) = cairn_agent::history::read(&n.state_dir).expect("history");
    assert!(
        records[1].reason.contains("no longer staged on the host"),
        "{}",
        records[1].reason
    );
    assert_ne!(records[0].started, records[2].started, "a new attempt");
}

fn rollbacks(n: &Node) -> usize {
    n.host
        .state()
        .calls
        .iter()
        .filter(|c| c.starts_with("rollback"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_update_hooks_run_once_even_when_the_lock_release_fails() {
    use std::os::unix::fs::PermissionsExt;
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "");
    stage_and_boot_healthy(&fleet, &n).await;
    // An operator hook that counts its runs.
    let hooks = n.config_root.join("etc/cairn/hooks/post-update.d");
    std::fs::create_dir_all(&hooks).expect("mkdir");
    let runs = n.config_root.join("post-update-runs");
    std::fs::write(
        hooks.join("50-uncordon"),
        format!("#!/bin/sh\necho run >> '{}'\n", runs.display()),
    )
    .expect("write");
    std::fs::set_permissions(
        hooks.join("50-uncordon"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let healthy = World {
        boot_health: cairn_agent::health::BootHealth::Healthy,
        boot_id: Some("boot-2".into()),
        ..world(&fleet)
    };
    // A lock server that does not answer: the slot cannot go back.
    let unreachable = FleetLockClient::new(
        url::Url::parse("http://127.0.0.1:9/").expect("url"),
        "node-0.1",
        "default",
        Duration::from_secs(5),
    )
    .expect("client");
    let with_hooks = |lock: Option<FleetLockClient>| {
        agent_with(&fleet, &n, lock).with_hooks(
            cairn_agent::hooks::HookSettings {
                root: n.config_root.clone(),
                sysroot: n.host.dir.join("sysroot"),
                timeout: Duration::from_secs(30),
                systemd: false,
                allow_unconfined: false,
            },
            "stable",
        )
    };
    for pass in 0..2 {
        let mut agent = with_hooks(Some(unreachable.clone()));
        agent.recover(Timestamp::now()).await.expect("recover");
        let err = agent.tick(&healthy).await.expect_err("no lock server");
        assert!(
            matches!(err, cairn_agent::agent::AgentError::Lock(_)),
            "pass {pass}: {err}"
        );
        assert_eq!(agent.state().name(), "verifying", "pass {pass}");
        assert_eq!(
            std::fs::read_to_string(&runs).expect("the hook ran"),
            "run\n",
            "pass {pass}: the hooks ran once"
        );
    }
    let mut agent = with_hooks(None);
    agent.recover(Timestamp::now()).await.expect("recover");
    agent.tick(&healthy).await.expect("verify");
    assert_eq!(agent.state().name(), "steady");
    assert_eq!(std::fs::read_to_string(&runs).expect("runs"), "run\n");
    assert_eq!(outcomes(&n), ["staged", "rebooting", "booted_healthy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_judged_healthy_is_not_judged_again_when_leaving_is_retried() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    let n = node(&fleet, 1, 0.1, "[health]\nrollback_on_failure = true\n");
    stage_and_boot_healthy(&fleet, &n).await;
    // Judged healthy, but the lock server does not answer the release.
    let healthy = World {
        boot_health: cairn_agent::health::BootHealth::Healthy,
        boot_id: Some("boot-2".into()),
        ..world(&fleet)
    };
    {
        let mut agent = agent_with(&fleet, &n, Some(lock_client(&n, "http://127.0.0.1:9/")));
        agent.recover(Timestamp::now()).await.expect("recover");
        let err = agent.tick(&healthy).await.expect_err("no lock server");
        assert!(
            matches!(err, cairn_agent::agent::AgentError::Lock(_)),
            "{err}"
        );
        assert_eq!(agent.state().name(), "verifying");
    }
    assert_eq!(outcomes(&n), ["staged", "rebooting", "booted_healthy"]);
    // A required unit fails meanwhile; the lock server is back, still
    // holding the slot the release did not reach.
    lock_client(&n, &lock.base_url)
        .pre_reboot()
        .await
        .expect("the slot");
    assert_eq!(lock.holders("default"), vec!["node-0.1".to_string()]);
    let failed = World {
        boot_health: cairn_agent::health::BootHealth::Failed("check.service failed".into()),
        ..healthy
    };
    let mut agent = agent(&fleet, &n, Some(&lock));
    agent.recover(Timestamp::now()).await.expect("recover");
    let report = agent.tick(&failed).await.expect("leave");
    assert_eq!(report.state, StateName::Steady, "{}", report.reason.message);
    assert_eq!(report.reason.kind, ReasonKind::AlreadyJudged);
    assert!(
        report.reason.message.contains("updated to 44.3"),
        "{}",
        report.reason.message
    );
    assert_eq!(rollbacks(&n), 0, "no rollback after a healthy verdict");
    assert!(lock.holders("default").is_empty(), "the slot was released");
    assert!(!agent.persisted.deny_list.contains_key(&fleet.digests[2]));
    assert_eq!(
        outcomes(&n),
        ["staged", "rebooting", "booted_healthy"],
        "exactly one final record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_staged_past_a_barrier_is_withdrawn_and_a_refused_target_not_pulled_again() {
    let fleet = fleet().await;
    let n = node(&fleet, 0, 0.1, "");
    // This agent staged 44.3 on 44.1 (under an earlier document); the
    // target now is 44.2 (the barrier), which the host tool refused as older.
    // 44.3 is no longer offered from 44.1 (the barrier stands between): it
    // must not be finalized, and 44.2 waits out its backoff.
    let mut host = n.host.state();
    let booted = host.booted.clone().expect("booted");
    host.staged = Some(cairn_testkit::host::FakeDeployment {
        digest: fleet.digests[2].clone(),
        version: Some("44.3".into()),
        download_only: true,
        ..booted
    });
    cairn_testkit::host::write_state(&n.host.dir, &host);
    let x = cairn_agent::machine::Target {
        version: "44.3".into(),
        digest: fleet.digests[2].parse().expect("a digest"),
    };
    let now = Timestamp::now();
    let mut state = cairn_agent::store::AgentState {
        state: cairn_agent::machine::State::Staged { target: x.clone() },
        underway: Some(cairn_agent::store::Underway {
            from_version: Some("44.1".into()),
            from_digest: Some(fleet.digests[0].clone()),
            started: now,
            target: Some(x),
            rolling_back: None,
            rolling_back_boot: None,
            rolling_back_at: None,
        }),
        ..Default::default()
    };
    state.refused.insert(
        fleet.digests[1].clone(),
        cairn_agent::store::RefusalEntry {
            version: "44.2".into(),
            message: "rpm-ostree refuses 44.2: created before the current deployment".into(),
            attempts: 1,
            retry_after: now + SignedDuration::from_hours(1),
        },
    );
    state.save(&n.state_dir).expect("save");
    let mut agent = agent(&fleet, &n, None);
    agent.recover(now).await.expect("recover");
    let reason = agent.tick(&world(&fleet)).await.expect("tick").reason;
    assert_eq!(reason.kind, ReasonKind::StagedNotOffered, "{reason}");
    assert!(
        reason
            .message
            .starts_with("the staged release 44.3 is no longer offered to this host"),
        "{reason}"
    );
    assert_eq!(outcomes(&n), ["withdrawn"]);
    let calls = n.host.state().calls;
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("switch") || c.contains("--apply")),
        "44.2 not pulled again, 44.3 never applied: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_kept_on_an_unhealthy_target_is_not_reported_as_rolled_back() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "");
    stage_and_boot_healthy(&fleet, &n).await;
    // Unhealthy without rollback_on_failure: the host stays; leaving fails.
    let failed = World {
        boot_health: cairn_agent::health::BootHealth::Failed("check.service failed".into()),
        boot_id: Some("boot-2".into()),
        ..world(&fleet)
    };
    {
        let mut agent = agent_with(&fleet, &n, Some(lock_client(&n, "http://127.0.0.1:9/")));
        agent.recover(Timestamp::now()).await.expect("recover");
        let err = agent.tick(&failed).await.expect_err("no lock server");
        assert!(
            matches!(err, cairn_agent::agent::AgentError::Lock(_)),
            "{err}"
        );
    }
    let mut agent = agent(&fleet, &n, None);
    agent.recover(Timestamp::now()).await.expect("recover");
    let report = agent.tick(&failed).await.expect("leave");
    assert_eq!(report.state, StateName::Steady, "{}", report.reason.message);
    assert_eq!(report.reason.kind, ReasonKind::StaysOnDenied);
    assert!(
        report.reason.message.contains("44.3 is deny-listed")
            && report.reason.message.contains("stays on it"),
        "{}",
        report.reason.message
    );
    assert!(
        !report.reason.message.contains("rolled back"),
        "{}",
        report.reason.message
    );
    assert_eq!(outcomes(&n), ["staged", "rebooting", "booted_unhealthy"]);
    // The same verdict where leaving works: judged in one pass, in the
    // outcome's word.
    let m = node(&fleet, 1, 0.2, "");
    stage_and_boot_healthy(&fleet, &m).await;
    let mut judged = agent_with(&fleet, &m, None);
    let report = judged.recover(Timestamp::now()).await.expect("recover");
    assert_eq!(report.reason.kind, ReasonKind::RecoveredBooted);
    let report = judged.tick(&failed).await.expect("judge");
    assert_eq!(report.state, StateName::Steady, "{}", report.reason.message);
    assert_eq!(report.reason.kind, ReasonKind::BootedUnhealthy);
    assert_eq!(outcomes(&m), ["staged", "rebooting", "booted_unhealthy"]);
}

mod halts;
mod kept_slot;
mod rollback;
mod roots;
