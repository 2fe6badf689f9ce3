//! `cairn agent` on a Fedora CoreOS host booted from ostree commits (origin
//! `fedora:fedora/x86_64/coreos/stable`), where Zincati runs today: Fedora's
//! shipped stable files (the newest release's rollout moved into the
//! present) or Fedora's own checksum graph, served over loopback HTTP, and an
//! rpm-ostree stand-in whose remote holds every stable x86_64 commit.

mod common;
use common::agent::{Daemon, Node, closed_window, open_window, wait_for_passes, weekday};
use common::fleet::history_words;
use common::systemctl::FakeSystemctl;
use common::wait_until;

use cairn_testkit::LockServer;
use cairn_testkit::host::{FakeCommit, FakeHost};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const ORIGIN: &str = "fedora:fedora/x86_64/coreos/stable";
/// Before the newest release, whose rollout is half-way.
const BOOTED: &str = "44.20260621.3.1";
/// The release before it.
const PREVIOUS: &str = "44.20260607.3.1";
const NEWEST: &str = "44.20260707.3.1";
/// Below the barrier 43.20260413.3.2.
const BELOW_BARRIER: &str = "43.20260331.3.1";
const BARRIER: &str = "43.20260413.3.2";

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fcos")
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("shipped data")).expect("JSON")
}

/// Fedora's stable release index as shipped.
fn release_index() -> Value {
    json(&data().join("releases/stable/releases.json"))
}

/// The x86_64 commit of each stable release, as the host's ostree remote
/// has them. Each commit's timestamp is its version's build date (plus its
/// respin, so same-day respins keep their order). Only the newest commit is
/// in the branch's history, so every older target needs the branch check
/// skipped, as a target Fedora's graph names may.
fn commits(index: &Value) -> Vec<FakeCommit> {
    let releases = index["releases"].as_array().expect("releases");
    releases
        .iter()
        .enumerate()
        .filter_map(|(at, release)| {
            let version = release["version"].as_str()?.to_string();
            let checksum = release["commits"]
                .as_array()?
                .iter()
                .find(|c| c["architecture"] == "x86_64")?["checksum"]
                .as_str()?
                .to_string();
            let parts: Vec<&str> = version.split('.').collect();
            let day: jiff::Timestamp = format!(
                "{}-{}-{}T00:00:00Z",
                parts[1].get(..4)?,
                parts[1].get(4..6)?,
                parts[1].get(6..8)?
            )
            .parse()
            .ok()?;
            let respin: i64 = parts.get(3).and_then(|p| p.parse().ok()).unwrap_or(0);
            let timestamp = day.as_second() + respin * 60;
            Some(FakeCommit {
                checksum,
                version,
                timestamp,
                on_branch: at + 1 == releases.len(),
            })
        })
        .collect()
}

fn checksum_of(commits: &[FakeCommit], version: &str) -> String {
    commits
        .iter()
        .find(|c| c.version == version)
        .map(|c| c.checksum.clone())
        .unwrap_or_else(|| panic!("the shipped data has a commit for {version}"))
}

/// Serve `routes` (path, body) over loopback HTTP; record each request's
/// path and query.
async fn serve(routes: Vec<(&'static str, String)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let mut router = axum::Router::new();
    for (path, body) in routes {
        let asked = asked.clone();
        router = router.route(
            path,
            axum::routing::get(move |uri: axum::http::Uri| {
                let body = body.clone();
                let asked = asked.clone();
                async move {
                    asked.lock().expect("lock").push(uri.to_string());
                    body
                }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (address, asked)
}

/// Fedora's shipped stable updates file, the newest release's rollout moved
/// to half-way through (started a day ago, two days long).
fn fedora_updates() -> Value {
    let mut updates = json(&data().join("updates/stable.json"));
    let yesterday = jiff::Timestamp::now().as_second() - 24 * 3600;
    metadata(&mut updates, NEWEST)["rollout"] = serde_json::json!({
        "start_epoch": yesterday, "start_percentage": 0.0, "duration_minutes": 2880
    });
    updates
}

/// The metadata of `version`'s entry in an updates file.
fn metadata<'a>(updates: &'a mut Value, version: &str) -> &'a mut Value {
    let entry = updates["releases"]
        .as_array_mut()
        .expect("releases")
        .iter_mut()
        .find(|r| r["version"] == version)
        .unwrap_or_else(|| panic!("the shipped updates file has an entry for {version}"));
    &mut entry["metadata"]
}

/// Serve Fedora's release index and `updates`, as Fedora's servers lay them out.
async fn serve_fedora(index: &Value, updates: &Value) -> String {
    let (address, _) = serve(vec![
        ("/prod/streams/stable/releases.json", index.to_string()),
        ("/updates/stable.json", updates.to_string()),
    ])
    .await;
    address
}

/// Fedora's shipped stable files, with [`fedora_updates`]'s rollout.
async fn serve_fedora_files(index: &Value) -> String {
    serve_fedora(index, &fedora_updates()).await
}

/// What most tests start from: Fedora's shipped stable files served as they
/// are (`fedora`, an address), their commits, and a directory for the hosts.
struct Served {
    commits: Vec<FakeCommit>,
    fedora: String,
    dir: tempfile::TempDir,
}

impl Served {
    async fn start() -> Served {
        let index = release_index();
        Served {
            commits: commits(&index),
            fedora: serve_fedora_files(&index).await,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

/// A commit-booted host on `version`, reading `source` with `wariness`.
fn host(base: &Path, commits: &[FakeCommit], version: &str, source: &str, wariness: f64) -> Node {
    host_with(base, commits, version, source, wariness, "")
}

/// [`host`], with more configuration (`extra`, TOML).
fn host_with(
    base: &Path,
    commits: &[FakeCommit],
    version: &str,
    source: &str,
    wariness: f64,
    extra: &str,
) -> Node {
    let booted = checksum_of(commits, version);
    let host = FakeHost::rpm_ostree_commits(&base.join("host"), ORIGIN, &booted, commits.to_vec());
    Node::configured(
        host,
        base,
        &format!(
            "[updates]\nsource = \"{source}\"\n[identity]\nrollout_wariness = {wariness}\n{extra}"
        ),
    )
}

fn deploys(node: &Node) -> Vec<String> {
    node.host
        .state()
        .calls
        .into_iter()
        .filter(|c| c.starts_with("deploy --lock-finalization"))
        .collect()
}

/// The finalizations the stand-in was asked for.
fn finalizes(node: &Node) -> Vec<String> {
    calls(node, "finalize-deployment")
}

/// The stand-in's command lines that start with `prefix`.
fn calls(node: &Node, prefix: &str) -> Vec<String> {
    node.host
        .state()
        .calls
        .into_iter()
        .filter(|c| c.starts_with(prefix))
        .collect()
}

/// Zincati's stage of a commit, with the agent's two additions: the bypass
/// its transient unit needs, and the downgrade check Zincati also asks for.
fn stage_line(checksum: &str) -> String {
    format!(
        "deploy --lock-finalization --bypass-driver --skip-branch-check --disallow-downgrade revision={checksum}"
    )
}

fn status(node: &Node) -> Value {
    std::fs::read(Path::new(&node.state).join("status.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_booted_host_follows_fedoras_rollout_and_barriers_by_checksum() {
    let Served {
        commits,
        fedora,
        dir,
    } = Served::start().await;
    let source = format!("fcos:http://{fedora}");
    let newest = checksum_of(&commits, NEWEST);

    // Below the rollout's progress: staged by checksum, exactly as Zincati
    // stages, with the branch check skipped.
    let early = host(&dir.path().join("early"), &commits, BOOTED, &source, 0.3);
    let out = early
        .command(&["agent", "--once"])
        .insecure_registry(&fedora)
        .ok();
    assert!(out.contains(&format!("staged {NEWEST}")), "{out}");
    assert_eq!(deploys(&early), vec![stage_line(&newest)]);
    let staged = early.host.state().staged.expect("staged");
    assert_eq!(staged.digest, newest);
    assert!(staged.download_only, "finalization stays locked");
    let shown = status(&early);
    assert_eq!(shown["booted"]["digest"], checksum_of(&commits, BOOTED));
    assert_eq!(shown["target"]["digest"], newest.as_str());
    assert_eq!(shown["stream"], "stable");

    // The running agent finalizes it (unlock and reboot, by checksum), and
    // after the reboot it is booted.
    let daemon = spawn_daemon(&early, &fedora);
    early.host.wait_for_apply().await;
    assert_eq!(
        finalizes(&early),
        vec![format!("finalize-deployment {newest}")]
    );
    assert_eq!(deploys(&early).len(), 1, "staged once");
    early.host.reboot(true);
    wait_until("the agent saw the new boot", || {
        let shown = status(&early);
        shown["booted"]["digest"] == newest.as_str() && shown["state"] == "steady"
    })
    .await;
    drop(daemon);
    assert_eq!(
        early.host.state().booted.map(|b| b.digest).as_deref(),
        Some(newest.as_str())
    );

    // Above it: waits, and says why.
    let late = host(&dir.path().join("late"), &commits, BOOTED, &source, 0.8);
    let out = late
        .command(&["agent", "--once"])
        .insecure_registry(&fedora)
        .ok();
    assert!(out.contains(&format!("rollout of {NEWEST} at 50")), "{out}");
    assert!(out.contains("this node's wariness is 0.8"), "{out}");
    assert!(late.host.state().staged.is_none(), "{out}");
    assert!(deploys(&late).is_empty());

    // Below a barrier: the barrier first, an older commit than the branch
    // head (which rpm-ostree's branch check would refuse).
    let old = host(
        &dir.path().join("old"),
        &commits,
        BELOW_BARRIER,
        &source,
        0.3,
    );
    let out = old
        .command(&["agent", "--once"])
        .insecure_registry(&fedora)
        .ok();
    assert!(out.contains(&format!("staged {BARRIER}")), "{out}");
    assert_eq!(
        deploys(&old),
        vec![stage_line(&checksum_of(&commits, BARRIER))]
    );
}

/// Start `cairn agent` (a daemon checking every 100 ms) on `node`.
fn spawn_daemon(node: &Node, fedora: &str) -> Daemon {
    node.command(&["agent"])
        .insecure_registry(fedora)
        .daemon(&node.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_host_came_back_from_is_deny_listed() {
    let Served {
        commits,
        fedora,
        dir,
    } = Served::start().await;
    let newest = checksum_of(&commits, NEWEST);
    let node = host(
        dir.path(),
        &commits,
        BOOTED,
        &format!("fcos:http://{fedora}"),
        0.3,
    );
    let daemon = spawn_daemon(&node, &fedora);
    node.host.wait_for_apply().await;
    assert_eq!(deploys(&node), vec![stage_line(&newest)]);
    // The boot fails and the host comes back to the commit it ran.
    node.host.reboot(false);
    wait_until("the agent deny-listed the commit", || {
        status(&node)["denyList"]
            .as_array()
            .is_some_and(|list| list.iter().any(|v| v == NEWEST))
    })
    .await;
    // A whole pass after that decides with the deny-list: nothing to stage.
    wait_for_passes(&node, 1).await;
    drop(daemon);
    let shown = status(&node);
    assert_eq!(shown["booted"]["digest"], checksum_of(&commits, BOOTED));
    assert_eq!(shown["staged"], Value::Null, "{shown}");
    assert_eq!(deploys(&node).len(), 1, "never staged again");
    assert_eq!(
        node.host.state().rollback.map(|r| r.digest).as_deref(),
        Some(newest.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_booted_host_asks_a_cincinnati_server_for_the_checksum_graph() {
    let index = release_index();
    let commits = commits(&index);
    // Fedora's own graph for stable x86_64 without `oci=true`: commit payloads.
    let graph = std::fs::read_to_string(
        data().join("fcos-cincinnati-golden/gb_stable_x86_64_oci-false.json"),
    )
    .expect("golden graph");
    let (server, asked) = serve(vec![("/v1/graph", graph)]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let node = host(
        dir.path(),
        &commits,
        BOOTED,
        &format!("cincinnati:http://{server}"),
        0.8,
    );
    let out = node
        .command(&["agent", "--once"])
        .insecure_registry(&server)
        .ok();
    // The graph's rollout of the newest release ended in July.
    assert!(out.contains(&format!("staged {NEWEST}")), "{out}");
    assert_eq!(
        deploys(&node),
        vec![stage_line(&checksum_of(&commits, NEWEST))]
    );
    let asked = asked.lock().expect("lock").clone();
    assert!(!asked.is_empty());
    for request in &asked {
        assert!(request.contains("basearch=x86_64"), "{request}");
        assert!(request.contains("stream=stable"), "{request}");
        assert!(!request.contains("oci"), "the checksum graph: {request}");
    }
}

/// The machine id of the stand-in hosts that talk to a lock server, and the
/// id Zincati sends for it (`systemd-id128 machine-id --app-specific=
/// de35106b6ec24688b63afddaa156679b`, as crates/cairn/tests/zincati.rs has it).
const MACHINE_ID: &str = "3d1219c7c4c5404aaa1f6d2a48adfda4";
const ZINCATI_ID: &str = "975228d46dc94622b9bbe16671e2b58d";

/// A commit-booted host on [`BOOTED`] under the reboot lock at `lock`,
/// with Fedora's machine id.
fn locked_host(base: &Path, commits: &[FakeCommit], source: &str, lock: &LockServer) -> Node {
    let node = host_with(
        base,
        commits,
        BOOTED,
        source,
        0.3,
        &format!("[strategy.fleet_lock]\nbase_url = \"{}\"\n", lock.base_url),
    );
    std::fs::write(
        Path::new(&node.root).join("etc/machine-id"),
        format!("{MACHINE_ID}\n"),
    )
    .expect("machine-id");
    node
}

/// A commit-booted host that asks `systemctl` (a stand-in) how its boots
/// went, and whose hooks see the stand-in's deployments.
struct Judged {
    node: Node,
    systemctl: FakeSystemctl,
}

impl Judged {
    fn new(base: &Path, commits: &[FakeCommit], source: &str, extra: &str) -> Judged {
        Judged {
            node: host_with(base, commits, BOOTED, source, 0.3, extra),
            systemctl: FakeSystemctl::new(&base.join("systemd")),
        }
    }

    fn spawn_daemon(&self, fedora: &str) -> Daemon {
        let sysroot = self.node.host.dir.join("sysroot").display().to_string();
        self.node
            .command(&["agent"])
            .insecure_registry(fedora)
            .systemctl(&self.systemctl.path)
            .args(["--sysroot", sysroot.as_str()])
            .daemon(&self.node.state)
    }
}

/// Write an executable `script` as `dir/name`.
fn hook(dir: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn deny_listed(node: &Node, version: &str) -> bool {
    status(node)["denyList"]
        .as_array()
        .is_some_and(|list| list.iter().any(|v| v == version))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_end_commit_is_never_staged_and_a_host_booted_on_one_says_so() {
    let index = release_index();
    let commits = commits(&index);
    let dir = tempfile::tempdir().expect("temp dir");
    // Fedora's stable data has no dead-end today: the newest release becomes one.
    let mut updates = fedora_updates();
    metadata(&mut updates, NEWEST)["deadend"] =
        serde_json::json!({"reason": "https://example.org/issues/17"});
    let fedora = serve_fedora(&index, &updates).await;
    let source = format!("fcos:http://{fedora}");

    // Two releases behind: past the dead-end, to the newest that is not one.
    let behind = host(&dir.path().join("behind"), &commits, PREVIOUS, &source, 0.3);
    let out = behind
        .command(&["agent", "--once"])
        .insecure_registry(&fedora)
        .ok();
    assert!(out.contains(&format!("staged {BOOTED}")), "{out}");
    assert_eq!(
        deploys(&behind),
        vec![stage_line(&checksum_of(&commits, BOOTED))]
    );

    // One release behind: nothing else to take; it stays and says why.
    let next = host(&dir.path().join("next"), &commits, BOOTED, &source, 0.3);
    let out = next
        .command(&["agent", "--once"])
        .insecure_registry(&fedora)
        .ok();
    assert!(
        out.contains(&format!(
            "{NEWEST} is not offered: it is a dead-end: https://example.org/issues/17"
        )),
        "{out}"
    );
    assert!(deploys(&next).is_empty(), "{out}");
    let shown = status(&next);
    assert_eq!(shown["reason"]["kind"], "target_dead_end", "{shown}");
    assert_eq!(shown["staged"], Value::Null, "{shown}");

    // Booted on a dead-end: no update from it, and the operator is told, in
    // the status and at login.
    let mut updates = fedora_updates();
    metadata(&mut updates, BOOTED)["deadend"] =
        serde_json::json!({"reason": "https://example.org/issues/18"});
    let fedora = serve_fedora(&index, &updates).await;
    let stuck = host(
        &dir.path().join("stuck"),
        &commits,
        BOOTED,
        &format!("fcos:http://{fedora}"),
        0.3,
    );
    let out = stuck
        .command(&["agent", "--once"])
        .insecure_registry(&fedora)
        .ok();
    assert!(deploys(&stuck).is_empty(), "{out}");
    let shown = status(&stuck);
    assert_eq!(shown["reason"]["kind"], "booted_dead_end", "{shown}");
    let message = shown["reason"]["message"].as_str().expect("message");
    assert!(
        message.contains(BOOTED) && message.contains("https://example.org/issues/18"),
        "{message}"
    );
    let motd = std::fs::read_to_string(Path::new(&stuck.root).join("run/motd.d/85-cairn.motd"))
        .expect("MOTD written");
    assert_eq!(motd, format!("Cairn updates: {message}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizing_a_commit_takes_the_fleet_lock_first_with_zincatis_id() {
    let Served {
        commits,
        fedora,
        dir,
    } = Served::start().await;
    let newest = checksum_of(&commits, NEWEST);
    let lock = LockServer::start(1).await;
    let node = locked_host(
        dir.path(),
        &commits,
        &format!("fcos:http://{fedora}"),
        &lock,
    );
    let systemctl = FakeSystemctl::new(&dir.path().join("systemd"));
    node.host.pause_before("finalize-deployment");
    let daemon = node
        .command(&["agent"])
        .insecure_registry(&fedora)
        .systemctl(&systemctl.path)
        .daemon(&node.state);
    wait_until("the agent asks to finalize", || {
        node.host.paused_pid().is_some()
    })
    .await;
    // At the finalization, the slot is already this node's, taken with the
    // id Zincati would send (after the release every agent sends at start).
    let before = lock.requests();
    assert_eq!(
        before
            .iter()
            .filter(|(op, _, _)| op == "pre-reboot")
            .count(),
        1,
        "{before:?}"
    );
    assert_eq!(
        before.last(),
        Some(&(
            "pre-reboot".to_string(),
            ZINCATI_ID.to_string(),
            "default".to_string()
        ))
    );
    assert_eq!(lock.holders("default"), vec![ZINCATI_ID.to_string()]);
    node.host.resume();
    node.host.wait_for_apply().await;
    assert_eq!(
        finalizes(&node),
        vec![format!("finalize-deployment {newest}")]
    );
    // A healthy boot: the slot goes back.
    node.host.reboot(true);
    wait_until("the slot is given back", || {
        lock.holders("default").is_empty()
    })
    .await;
    wait_until("the agent is steady on the new commit", || {
        let shown = status(&node);
        shown["booted"]["digest"] == newest.as_str() && shown["state"] == "steady"
    })
    .await;
    drop(daemon);
    assert_eq!(
        history_words(&node).last().map(|(_, word)| word.as_str()),
        Some("booted_healthy")
    );
    let requests = lock.requests();
    assert!(
        requests
            .iter()
            .all(|(_, id, group)| id == ZINCATI_ID && group == "default"),
        "{requests:?}"
    );
    assert_eq!(
        requests.last().map(|(operation, _, _)| operation.as_str()),
        Some("steady-state"),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waits_for_a_reboot_slot_another_node_holds() {
    let Served {
        commits,
        fedora,
        dir,
    } = Served::start().await;
    let lock = LockServer::start(1).await;
    lock.hold("default", "another-node");
    let node = locked_host(
        dir.path(),
        &commits,
        &format!("fcos:http://{fedora}"),
        &lock,
    );
    let daemon = spawn_daemon(&node, &fedora);
    wait_until("the agent waits for the lock", || {
        status(&node)["reason"]["kind"] == "reboot_lock_wait"
    })
    .await;
    // A few more passes: each asks again, none finalizes.
    wait_for_passes(&node, 2).await;
    drop(daemon);
    let shown = status(&node);
    let message = shown["reason"]["message"].as_str().expect("message");
    assert!(message.contains("waiting for reboot lock"), "{message}");
    assert!(message.contains("all reboot slots are taken"), "{message}");
    assert_eq!(shown["staged"]["digest"], checksum_of(&commits, NEWEST));
    assert!(finalizes(&node).is_empty(), "{:?}", node.host.state().calls);
    assert_eq!(lock.holders("default"), vec!["another-node".to_string()]);
    let requests = lock.requests();
    assert!(
        requests
            .iter()
            .filter(|(op, _, _)| op == "pre-reboot")
            .count()
            >= 2,
        "asked at every pass: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|(_, id, group)| id == ZINCATI_ID && group == "default"),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_commit_is_finalized_only_in_a_maintenance_window() {
    let Served {
        commits,
        fedora,
        dir,
    } = Served::start().await;
    let source = format!("fcos:http://{fedora}");
    let newest = checksum_of(&commits, NEWEST);

    // Closed now: staged, not finalized, and the status names the next window.
    let closed = host_with(
        &dir.path().join("closed"),
        &commits,
        BOOTED,
        &source,
        0.3,
        &format!("[strategy]\ntime_zone = \"UTC\"\n{}", closed_window()),
    );
    let daemon = spawn_daemon(&closed, &fedora);
    wait_until("the agent waits for the window", || {
        status(&closed)["reason"]["kind"] == "window_closed"
    })
    .await;
    wait_for_passes(&closed, 2).await;
    drop(daemon);
    let shown = status(&closed);
    assert_eq!(
        shown["reason"]["message"],
        format!("waiting for window {} 00:00 UTC", weekday(3)),
        "{shown}"
    );
    assert_eq!(shown["staged"]["digest"], newest.as_str(), "{shown}");
    assert!(closed.host.state().staged.expect("staged").download_only);
    assert!(
        finalizes(&closed).is_empty(),
        "{:?}",
        closed.host.state().calls
    );

    // Open now: finalized.
    let open = host_with(
        &dir.path().join("open"),
        &commits,
        BOOTED,
        &source,
        0.3,
        &open_window(),
    );
    let daemon = spawn_daemon(&open, &fedora);
    open.host.wait_for_apply().await;
    drop(daemon);
    assert_eq!(
        finalizes(&open),
        vec![format!("finalize-deployment {newest}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_the_commit_and_post_update_hooks_run_after_the_healthy_boot() {
    let Served {
        commits,
        fedora,
        dir,
    } = Served::start().await;
    let booted = checksum_of(&commits, BOOTED);
    let newest = checksum_of(&commits, NEWEST);
    let host = Judged::new(
        dir.path(),
        &commits,
        &format!("fcos:http://{fedora}"),
        // This machine's systemd is not PID 1: the commit's hooks run only if allowed.
        "[hooks]\nallow_unconfined = true\n",
    );
    let root = PathBuf::from(&host.node.root);
    // The new commit carries a pre-update hook; the stand-in's remote has no
    // trees, so the test lays it out where rpm-ostree checks the commit out.
    let deployment = host.node.host.dir.join(format!(
        "sysroot/ostree/deploy/fedora-coreos/deploy/{newest}.0"
    ));
    hook(
        &deployment.join("usr/lib/cairn/hooks/pre-update.d"),
        "10-record",
        r#"echo "$CAIRN_STAGED_ROOT" > "$CAIRN_BOOTED_ROOT/commit-hook-ran-in""#,
    );
    hook(
        &root.join("etc/cairn/hooks/pre-update.d"),
        "50-drain",
        r#"env | grep '^CAIRN_' | sort > "$CAIRN_BOOTED_ROOT/pre-update-env""#,
    );
    hook(
        &root.join("etc/cairn/hooks/post-update.d"),
        "50-uncordon",
        r#"echo "$CAIRN_TO_VERSION $CAIRN_TO_DIGEST" > "$CAIRN_BOOTED_ROOT/uncordoned""#,
    );
    let daemon = host.spawn_daemon(&fedora);
    host.node.host.wait_for_apply().await;
    assert_eq!(
        std::fs::read_to_string(root.join("commit-hook-ran-in")).expect("the commit's hook ran"),
        format!("{}\n", deployment.display())
    );
    let env = std::fs::read_to_string(root.join("pre-update-env")).expect("the drain ran");
    for expected in [
        format!("CAIRN_FROM_VERSION={BOOTED}"),
        format!("CAIRN_FROM_DIGEST={booted}"),
        format!("CAIRN_TO_VERSION={NEWEST}"),
        format!("CAIRN_TO_DIGEST={newest}"),
        "CAIRN_STREAM=stable".to_string(),
        format!("CAIRN_BOOTED_ROOT={}", root.display()),
    ] {
        assert!(env.lines().any(|l| l == expected), "{expected} in {env}");
    }
    assert!(
        !root.join("uncordoned").exists(),
        "post-update hooks wait for the boot"
    );
    host.node.host.reboot(true);
    // Read after the hook and the pass that ran it are done.
    wait_until("the post-update hook ran", || {
        std::fs::read_to_string(root.join("uncordoned")).is_ok_and(|text| text.ends_with('\n'))
    })
    .await;
    wait_for_passes(&host.node, 1).await;
    drop(daemon);
    assert_eq!(
        std::fs::read_to_string(root.join("uncordoned")).expect("uncordoned"),
        format!("{NEWEST} {newest}\n")
    );
    assert_eq!(
        history_words(&host.node)
            .into_iter()
            .map(|(_, word)| word)
            .collect::<Vec<_>>(),
        ["staged", "rebooting", "booted_healthy"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vetoing_hook_keeps_a_commit_from_being_finalized() {
    let Served {
        commits,
        fedora,
        dir,
    } = Served::start().await;
    let node = host(
        dir.path(),
        &commits,
        BOOTED,
        &format!("fcos:http://{fedora}"),
        0.3,
    );
    hook(
        &Path::new(&node.root).join("etc/cairn/hooks/pre-update.d"),
        "50-drain",
        "echo 'the node could not be drained' >&2; exit 1",
    );
    let daemon = spawn_daemon(&node, &fedora);
    wait_until("the hook vetoed", || {
        status(&node)["reason"]["kind"] == "hook_veto"
    })
    .await;
    wait_for_passes(&node, 2).await;
    drop(daemon);
    let shown = status(&node);
    assert_eq!(shown["hookVeto"]["version"], NEWEST, "{shown}");
    let message = shown["reason"]["message"].as_str().expect("message");
    assert!(
        message.contains(&format!(
            "vetoed {NEWEST}: the node could not be drained; retrying after"
        )),
        "{message}"
    );
    assert!(finalizes(&node).is_empty(), "{:?}", node.host.state().calls);
    assert_eq!(
        calls(&node, "cleanup -p").len(),
        1,
        "the staged commit is dropped"
    );
    assert!(node.host.state().staged.is_none());
    assert_eq!(
        deploys(&node).len(),
        1,
        "not staged again within the backoff"
    );
    assert_eq!(
        history_words(&node)
            .into_iter()
            .map(|(_, word)| word)
            .collect::<Vec<_>>(),
        ["staged", "hook_veto"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_its_health_checks_is_rolled_back_and_deny_listed() {
    let Served {
        commits,
        fedora,
        dir,
    } = Served::start().await;
    let booted = checksum_of(&commits, BOOTED);
    let newest = checksum_of(&commits, NEWEST);
    let host = Judged::new(
        dir.path(),
        &commits,
        &format!("fcos:http://{fedora}"),
        "[health]\nrollback_on_failure = true\n",
    );
    let node = &host.node;
    let daemon = host.spawn_daemon(&fedora);
    node.host.wait_for_apply().await;
    // The new commit boots, and a health check fails.
    host.systemctl.boot(true, None);
    node.host.reboot(true);
    wait_until("the agent rolls back", || {
        node.host.state().apply_pid.is_some()
    })
    .await;
    assert_eq!(calls(node, "rollback"), vec!["rollback -r".to_string()]);
    // Back on the previous commit, which is healthy.
    host.systemctl.boot(false, None);
    node.host.reboot(true);
    wait_until("the commit is deny-listed", || deny_listed(node, NEWEST)).await;
    wait_for_passes(node, 2).await;
    drop(daemon);
    let state = node.host.state();
    assert_eq!(state.booted.map(|b| b.digest), Some(booted));
    assert_eq!(state.rollback.map(|b| b.digest), Some(newest));
    assert!(state.staged.is_none(), "not staged again");
    assert_eq!(deploys(node).len(), 1);
    assert_eq!(calls(node, "rollback").len(), 1, "never a second rollback");
    assert_eq!(
        history_words(node)
            .into_iter()
            .map(|(_, word)| word)
            .collect::<Vec<_>>(),
        ["staged", "rebooting", "rolling_back", "rolled_back"]
    );
}

/// Fedora CoreOS ships bootc beside rpm-ostree. On a host booted from a
/// commit, `bootc status` answers with no image (bootc cannot manage such a
/// deployment), and the agent drives rpm-ostree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootc_seeing_no_image_leaves_a_commit_booted_host_to_rpm_ostree() {
    use std::os::unix::fs::PermissionsExt;
    let Served {
        commits,
        fedora,
        dir,
    } = Served::start().await;
    let node = host(
        &dir.path().join("both"),
        &commits,
        BOOTED,
        &format!("fcos:http://{fedora}"),
        0.3,
    );
    let booted = checksum_of(&commits, BOOTED);
    // bootc's status of an ostree deployment that came from no image.
    let answer = serde_json::json!({
        "apiVersion": "org.containers.bootc/v1",
        "kind": "BootcHost",
        "metadata": {"name": "host"},
        "spec": {"image": null, "bootOrder": "default"},
        "status": {
            "staged": null,
            "booted": {
                "image": null,
                "cachedUpdate": null,
                "incompatible": false,
                "pinned": false,
                "store": null,
                "ostree": {"checksum": booted, "deploySerial": 0, "stateroot": "fedora-coreos"}
            },
            "rollback": null,
            "rollbackQueued": false,
            "type": null
        }
    });
    let calls = node.host.dir.join("bootc-calls");
    let bootc = node.host.dir.join("no-bootc");
    std::fs::write(
        &bootc,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\n[ \"$1\" = status ] || exit 1\ncat <<'JSON'\n{answer}\nJSON\n",
            calls.display()
        ),
    )
    .expect("bootc stand-in");
    std::fs::set_permissions(&bootc, std::fs::Permissions::from_mode(0o755)).expect("mode");
    let out = node
        .command(&["agent", "--once"])
        .insecure_registry(&fedora)
        .ok();
    assert!(out.contains(&format!("staged {NEWEST}")), "{out}");
    let asked = std::fs::read_to_string(&calls).expect("bootc was asked");
    assert!(
        asked.lines().all(|l| l.starts_with("status ")),
        "only asked for its status: {asked}"
    );
    assert_eq!(
        deploys(&node),
        vec![stage_line(&checksum_of(&commits, NEWEST))]
    );
    assert_eq!(status(&node)["booted"]["digest"], booted.as_str());
}
