//! `cairn agent` on a Fedora CoreOS host booted from ostree commits (origin
//! `fedora:fedora/x86_64/coreos/stable`), where Zincati runs today: Fedora's
//! shipped stable files (the newest release's rollout moved into the
//! present) or Fedora's own checksum graph, served over loopback HTTP, and an
//! rpm-ostree stand-in whose remote holds every stable x86_64 commit.

mod common;
use common::agent::Node;

use cairn_testkit::host::{FakeCommit, FakeHost};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const ORIGIN: &str = "fedora:fedora/x86_64/coreos/stable";
/// Before the newest release, whose rollout is half-way.
const BOOTED: &str = "44.20260621.3.1";
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

/// Fedora's shipped stable files, the newest release's rollout moved to
/// half-way through (started a day ago, two days long).
async fn serve_fedora_files(index: &Value) -> String {
    let mut updates = json(&data().join("updates/stable.json"));
    let entry = updates["releases"]
        .as_array_mut()
        .expect("releases")
        .iter_mut()
        .find(|r| r["version"] == NEWEST)
        .expect("the shipped updates file has a rollout for the newest release");
    let yesterday = jiff::Timestamp::now().as_second() - 24 * 3600;
    entry["metadata"]["rollout"] = serde_json::json!({
        "start_epoch": yesterday, "start_percentage": 0.0, "duration_minutes": 2880
    });
    let (address, _) = serve(vec![
        ("/prod/streams/stable/releases.json", index.to_string()),
        ("/updates/stable.json", updates.to_string()),
    ])
    .await;
    address
}

/// A commit-booted host on `version`, reading `source` with `wariness`.
fn host(base: &Path, commits: &[FakeCommit], version: &str, source: &str, wariness: f64) -> Node {
    let booted = checksum_of(commits, version);
    let host = FakeHost::rpm_ostree_commits(&base.join("host"), ORIGIN, &booted, commits.to_vec());
    Node::configured(
        host,
        base,
        &format!("[updates]\nsource = \"{source}\"\n[identity]\nrollout_wariness = {wariness}\n"),
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

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A running `cairn agent`, killed when dropped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_booted_host_follows_fedoras_rollout_and_barriers_by_checksum() {
    let index = release_index();
    let commits = commits(&index);
    let fedora = serve_fedora_files(&index).await;
    let source = format!("fcos:http://{fedora}");
    let dir = tempfile::tempdir().expect("temp dir");
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
    let calls = early.host.state().calls;
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("finalize-deployment"))
            .collect::<Vec<_>>(),
        vec![&format!("finalize-deployment {newest}")],
        "{calls:?}"
    );
    assert_eq!(deploys(&early).len(), 1, "staged once: {calls:?}");
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
    let socket = format!("{}/agent.sock", node.state);
    Daemon(
        node.command(&["agent"])
            .insecure_registry(fedora)
            .args(["--socket", socket.as_str(), "--no-user-check"])
            .args(["--check-interval-ms", "100"])
            .command()
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the agent"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_host_came_back_from_is_deny_listed() {
    let index = release_index();
    let commits = commits(&index);
    let fedora = serve_fedora_files(&index).await;
    let dir = tempfile::tempdir().expect("temp dir");
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
    let metrics = Path::new(&node.state).join("metrics.prom");
    let _ = std::fs::remove_file(&metrics);
    wait_until("another pass finished", || metrics.exists()).await;
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
