//! `cairn serve` as a FleetLock server, as a process: slots survive SIGKILL,
//! `cairn lock` shows, releases and acks, and Cairn agents on stand-in hosts
//! hold a failed boot's slot and halt their group.

mod common;
use common::agent::{Daemon, wait_for_passes};
use common::fleet::{Node, Published, command, node_with_lock, published, status_json};
use common::served::{Served, serve};
use common::{cairn, wait_until};

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const TOKEN: &str = "lock-admin-token-0123456789";

/// Write the server's configuration into `dir`.
fn configure(dir: &Path, groups: &str) {
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).expect("token");
    std::fs::write(
        dir.join("server.toml"),
        format!(
            "[[token]]\nfile = \"admin.token\"\nscopes = [\"lock-admin\"]\n\
             [fleet_lock]\ndatabase = \"locks.sqlite\"\nallowed_networks = [\"127.0.0.0/8\"]\n{groups}"
        ),
    )
    .expect("config");
}

/// A FleetLock call exactly as Zincati makes it; the status and error kind.
async fn zincati(server: &Served, operation: &str, id: &str, group: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/{operation}", server.url))
        .header("fleet-lock-protocol", "true")
        .header("content-type", "application/json")
        .body(json!({"client_params": {"id": id, "group": group}}).to_string())
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let body: Value =
        serde_json::from_str(&response.text().await.expect("body")).unwrap_or_default();
    (
        status,
        body["kind"].as_str().unwrap_or_default().to_string(),
    )
}

fn lock_cli(server: &Served, dir: &Path, args: &[&str]) -> std::process::Output {
    let token = dir.join("admin.token").display().to_string();
    let mut all: Vec<&str> = vec!["lock"];
    all.extend(args);
    all.extend([
        "--server",
        server.url.as_str(),
        "--token-file",
        token.as_str(),
    ]);
    cairn(&all)
}

fn lock_status(server: &Served, dir: &Path) -> Value {
    let out = lock_cli(server, dir, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn group<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group"] == name)
        .unwrap_or(&Value::Null)
}

fn holder_ids(status: &Value, name: &str) -> Vec<String> {
    group(status, name)["holders"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|h| h["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn held_slots_survive_sigkill_and_operators_release_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    configure(dir.path(), "default_group = { slots = 2 }\n");
    let server = serve(dir.path());
    assert_eq!(
        zincati(&server, "pre-reboot", "node-a", "default").await,
        (200, String::new())
    );
    assert_eq!(
        zincati(&server, "pre-reboot", "node-b", "default").await,
        (200, String::new())
    );
    // SIGKILL: no shutdown code runs.
    drop(server);
    let server = serve(dir.path());
    assert_eq!(
        zincati(&server, "pre-reboot", "node-c", "default").await,
        (409, "group_full".to_string())
    );
    // The holders hold, recursively.
    assert_eq!(
        zincati(&server, "pre-reboot", "node-a", "default").await.0,
        200
    );
    let status = lock_status(&server, dir.path());
    assert_eq!(holder_ids(&status, "default"), ["node-a", "node-b"]);

    let out = lock_cli(&server, dir.path(), &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("group default: 2 of 2 slots held; lease 1h; on expiry halt\n"),
        "{text}"
    );
    assert!(text.contains("  node-a: taken "), "{text}");

    let out = lock_cli(&server, dir.path(), &["release", "default", "node-a"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "node-a's slot in group default is released\n"
    );
    assert_eq!(
        zincati(&server, "pre-reboot", "node-c", "default").await.0,
        200
    );
    let out = lock_cli(&server, dir.path(), &["ack", "default"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "group default was not halted; nothing changed\n"
    );

    // Without a token: a clear refusal.
    let out = cairn(&["lock", "status", "--server", server.url.as_str()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 401: missing_token") && stderr.contains("pass --token-file"),
        "{stderr}"
    );
    let readyz = reqwest::get(format!("{}/readyz", server.url))
        .await
        .expect("readyz");
    assert_eq!(readyz.status().as_u16(), 200);
}

#[tokio::test]
async fn a_second_server_on_the_same_database_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    configure(dir.path(), "");
    let _server = serve(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("server.toml"))
        .output()
        .expect("cairn runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another `cairn serve`"), "{stderr}");
}

fn spawn_agent(p: &Published, n: &Node) -> Daemon {
    command(p, n, &["agent"]).daemon(&n.state)
}

fn agent_node(p: &Published, name: &str, machine_id: &str, server: &Served) -> Node {
    node_with_lock(p, name, &format!("{}/", server.url), "workers", machine_id)
}

/// A `workers` group of two slots whose first host failed its boot into
/// 44.3: the group is halted naming that host, which keeps its slot.
struct HaltedByFailure {
    dir: tempfile::TempDir,
    server: Served,
    first: Node,
    _agent: Daemon,
    /// The first host's id at the lock server, and the status while halted.
    holder: String,
    halted: Value,
}

async fn halted_by_a_failed_boot(p: &Published) -> HaltedByFailure {
    let dir = tempfile::tempdir().expect("tempdir");
    configure(
        dir.path(),
        "[[fleet_lock.group]]\nname = \"workers\"\nslots = 2\n",
    );
    let server = serve(dir.path());
    let first = agent_node(p, "first", "0123456789abcdef0123456789abcdef", &server);
    let agent = spawn_agent(p, &first);
    wait_until("the first host finalizes", || {
        first.host.state().apply_pid.is_some()
    })
    .await;
    let status = lock_status(&server, dir.path());
    let holders = holder_ids(&status, "workers");
    assert_eq!(holders.len(), 1, "{status}");
    // Its new boot fails: it comes back on the old release.
    first.host.reboot(false);
    wait_until("the group is halted", || {
        !group(&lock_status(&server, dir.path()), "workers")["halt"].is_null()
    })
    .await;
    let halted = lock_status(&server, dir.path());
    let halt = &group(&halted, "workers")["halt"];
    assert_eq!(halt["reason"], "boot_failed", "{halted}");
    assert_eq!(halt["node"].as_str(), Some(holders[0].as_str()), "{halted}");
    assert_eq!(
        holder_ids(&halted, "workers"),
        holders,
        "the failed host keeps its slot"
    );
    HaltedByFailure {
        dir,
        server,
        first,
        _agent: agent,
        holder: holders[0].clone(),
        halted,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_boot_halts_the_group_and_the_other_host_waits_for_ack() {
    let p = published().await;
    let HaltedByFailure {
        dir,
        server,
        first: _first,
        _agent,
        holder,
        halted: _,
    } = halted_by_a_failed_boot(&p).await;
    let second = agent_node(&p, "second", "fedcba9876543210fedcba9876543210", &server);

    // The second host stages, but may not reboot while the group is halted,
    // though a slot is free.
    let _second_agent = spawn_agent(&p, &second);
    wait_until("the second host staged", || {
        second.host.state().staged.is_some()
    })
    .await;
    wait_for_passes(&second, 3).await;
    assert!(
        second.host.state().apply_pid.is_none(),
        "no reboot while halted"
    );
    let metrics = cairn_testkit::serve::scrape_metrics(&server.url).await;
    assert!(
        metrics.contains("cairn_fleet_lock_halted_groups 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_fleet_lock_denials_total{kind=\"group_halted\"}"),
        "{metrics}"
    );

    let out = lock_cli(&server, dir.path(), &["ack", "workers"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "group workers is resumed: its nodes may take slots again\n"
    );
    wait_until("the second host finalizes after the ack", || {
        second.host.state().apply_pid.is_some()
    })
    .await;
    // The ack also freed the failed host's slot: only the second holds one.
    let status = lock_status(&server, dir.path());
    let now_held = holder_ids(&status, "workers");
    assert_eq!(now_held.len(), 1, "{status}");
    assert_ne!(now_held, [holder], "{status}");
}

/// The host whose failed boot halted the group keeps its slot, but reboots
/// again (here into the same release, taken off its deny-list) only after
/// the ack, on a slot taken afresh: found by the fleet soak, where such a
/// reboot lost its slot to the ack midway and ran beside two others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_that_halted_the_group_waits_for_the_ack_too() {
    let p = published().await;
    let HaltedByFailure {
        dir,
        server,
        first,
        _agent,
        holder,
        halted,
    } = halted_by_a_failed_boot(&p).await;
    let kept_since = group(&halted, "workers")["holders"][0]["taken"].clone();

    // The agent re-checks at once and the command waits for that pass: had
    // the host been granted its reboot, the pass would block in it.
    let socket = format!("{}/agent.sock", first.state);
    let mut remove = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["deny-list", "remove", "--state-dir", &first.state])
        .args(["--socket", &socket, "44.3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cairn runs");
    wait_until("the pass ends, or the host reboots", || {
        first.host.state().apply_pid.is_some() || matches!(remove.try_wait(), Ok(Some(_)))
    })
    .await;
    if first.host.state().apply_pid.is_some() {
        let _ = remove.kill();
        panic!("the host rebooted while its group was halted");
    }
    let out = remove.wait_with_output().expect("cairn runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = status_json(&first);
    assert_eq!(status["reason"]["kind"], "reboot_lock_wait", "{status}");
    assert_eq!(status["reason"]["cause"], "group_halted", "{status}");
    assert!(first.host.state().staged.is_some(), "44.3 is staged again");

    lock_cli(&server, dir.path(), &["ack", "workers"]);
    wait_until("the host finalizes after the ack", || {
        first.host.state().apply_pid.is_some()
    })
    .await;
    let status = lock_status(&server, dir.path());
    assert_eq!(holder_ids(&status, "workers"), [holder], "{status}");
    assert!(group(&status, "workers")["halt"].is_null(), "{status}");
    assert_ne!(
        group(&status, "workers")["holders"][0]["taken"],
        kept_since,
        "the slot is taken afresh: {status}"
    );
    // A healthy boot hands the slot back.
    first.host.reboot(true);
    wait_until("the slot is handed back", || {
        holder_ids(&lock_status(&server, dir.path()), "workers").is_empty()
    })
    .await;
}

/// Four hosts, two slots: never more than two reboot at once, and every host
/// gets its turn as the ones before it come back healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_agents_never_reboot_more_than_the_slots_at_once() {
    let p = published().await;
    let dir = tempfile::tempdir().expect("tempdir");
    configure(
        dir.path(),
        "[[fleet_lock.group]]\nname = \"workers\"\nslots = 2\n",
    );
    let server = serve(dir.path());
    let nodes: Vec<Node> = (0..4)
        .map(|i| {
            agent_node(
                &p,
                &format!("host-{i}"),
                &format!("{:032x}", 0xc0ffee + i),
                &server,
            )
        })
        .collect();
    let _agents: Vec<Daemon> = nodes.iter().map(|n| spawn_agent(&p, n)).collect();
    let rebooting = |nodes: &[Node]| {
        nodes
            .iter()
            .filter(|n| n.host.state().apply_pid.is_some())
            .count()
    };
    let status_of = |n: &Node| {
        std::fs::read(Path::new(&n.state).join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or_default()
    };
    let reason = |n: &Node| {
        status_of(n)["reason"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut done = vec![false; nodes.len()];
    while done.iter().any(|d| !d) {
        let left = done.iter().filter(|d| !**d).count();
        // The positive event: as many hosts finalizing as there are slots (or
        // hosts left), and every other host left waiting for the lock.
        wait_until("the slots are taken and the rest wait", || {
            let finalizing = rebooting(&nodes);
            let waiting = nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| !done[*i] && n.host.state().apply_pid.is_none())
                .filter(|(_, n)| reason(n) == "reboot_lock_wait")
                .count();
            finalizing == left.min(2) && finalizing + waiting == left
        })
        .await;
        assert!(rebooting(&nodes) <= 2, "more reboots than slots");
        let status = lock_status(&server, dir.path());
        assert_eq!(
            holder_ids(&status, "workers").len(),
            left.min(2),
            "{status}"
        );
        // One of them comes back healthy.
        let (i, next) = nodes
            .iter()
            .enumerate()
            .find(|(i, n)| !done[*i] && n.host.state().apply_pid.is_some())
            .expect("a host finalizing");
        next.host.reboot(true);
        wait_until("the host judged its new boot", || {
            let shown = status_of(next);
            shown["booted"]["version"] == "44.3" && shown["state"] == "steady"
        })
        .await;
        // Its slot goes back; the next round waits for a waiting host to take it.
        done[i] = true;
    }
    wait_until("every slot is given back", || {
        holder_ids(&lock_status(&server, dir.path()), "workers").is_empty()
    })
    .await;
}
