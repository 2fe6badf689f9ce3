//! `cairn agent --once` and the operator commands, end to end: images and a
//! signed document published with `cairn policy` and `cairn publish` in a real
//! registry, and a host stand-in.

mod common;
use common::agent::{
    AgentCommand, BehindLogin, Daemon, behind_login, closed_window, wait_for_passes,
};
use common::fleet::{
    Node, Published, agent_once, command, count_calls, fragment, history_words, node,
    node_with_lock, published, republish, status_json,
};
use common::{cairn, ok, wait_until};

use cairn_testkit::host::FakeHost;
use cairn_testkit::{Auth, TestRegistry, write_release};
use serde_json::Value;
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_follow_the_rollout_and_explain_themselves() {
    let p = published().await;
    let early = node(&p, "early", 1, &fragment(&p, 0.3));
    let out = agent_once(&p, &early, &[]);
    assert!(out.contains("staged 44.3"), "{out}");
    assert_eq!(
        early.host.state().staged.map(|s| s.digest).as_deref(),
        Some(p.digests[2].as_str())
    );
    assert!(early.host.state().container_policy, "signature mode kept");
    let status = status_json(&early);
    assert_eq!(status["apiVersion"], "cairn.dev/v1", "{status}");
    assert_eq!(status["kind"], "AgentStatus");
    assert_eq!(status["state"], "staged");
    assert_eq!(status["reason"]["kind"], "one_shot", "{status}");
    assert_eq!(status["reason"]["cause"], Value::Null, "no error: {status}");
    assert_eq!(status["staged"]["version"], "44.3", "{status}");
    assert_eq!(
        status["target"]["digest"],
        p.digests[2].as_str(),
        "{status}"
    );
    assert_eq!(status["stream"], "stable");

    let late = node(&p, "late", 1, &fragment(&p, 0.8));
    let out = agent_once(&p, &late, &[]);
    assert!(out.contains("rollout of 44.3 at 50"), "{out}");
    assert!(out.contains("this node's wariness is 0.8"), "{out}");
    assert!(
        out.contains("Expected:   a change about"),
        "a time for the change: {out}"
    );
    assert!(late.host.state().staged.is_none());
    let text = ok(&["status", "--state-dir", &late.state]);
    assert!(
        text.starts_with("State:      steady — rollout of 44.3"),
        "{text}"
    );
    // Kept for the documentation's example.
    let _ = std::fs::write(std::env::temp_dir().join("cairn-status-example.txt"), &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_signatures_holds_and_other_updaters_stop_the_agent() {
    let p = published().await;
    // A broken fragment: config-error, and fixing it recovers.
    let n = node(&p, "n", 1, "[updates]\nstram = \"stable\"\n");
    let out = agent_once(&p, &n, &[]);
    assert!(
        out.contains("config-error") && out.contains("updates.stram"),
        "{out}"
    );
    assert!(n.host.state().staged.is_none());
    let status = status_json(&n);
    assert_eq!(status["reason"]["kind"], "config_error", "{status}");
    assert_eq!(status["reason"]["cause"], "invalid_key", "{status}");
    // Without a configuration there is no strategy and no source asked.
    assert!(
        status["strategy"].is_null() && status["source"].is_null(),
        "{status}"
    );
    let motd_path = Path::new(&n.root).join("run/motd.d/85-cairn.motd");
    let motd = std::fs::read_to_string(&motd_path).expect("MOTD written");
    assert!(
        motd.contains("configuration error") && motd.contains("updates.stram"),
        "{motd}"
    );
    let metrics =
        std::fs::read_to_string(Path::new(&n.state).join("metrics.prom")).expect("metrics");
    assert!(
        metrics.contains("cairn_agent_state{state=\"config-error\"} 1"),
        "{metrics}"
    );
    std::fs::write(
        Path::new(&n.root).join("etc/cairn/config.d/50-site.toml"),
        fragment(&p, 0.1),
    )
    .expect("fix");
    assert!(agent_once(&p, &n, &[]).contains("staged 44.3"));
    assert!(!motd_path.exists(), "the MOTD goes away once fixed");
    let metrics =
        std::fs::read_to_string(Path::new(&n.state).join("metrics.prom")).expect("metrics");
    assert!(
        metrics.contains("cairn_agent_state{state=\"staged\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_agent_booted_age_index 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_agent_staged_age_index 2"),
        "{metrics}"
    );

    // A key that did not sign the document: no action, and why.
    let stranger = p.dir.path().join("stranger");
    ok(&[
        "document",
        "keygen",
        "--output",
        &stranger.display().to_string(),
    ]);
    let wrong = node(
        &p,
        "wrong",
        1,
        &format!(
            "[updates]\nkeys = [\"{}.pub\"]\n[identity]\nrollout_wariness = 0.1\n",
            stranger.display()
        ),
    );
    let out = agent_once(&p, &wrong, &[]);
    assert!(
        out.contains("no action") && out.contains("no signature verifies"),
        "{out}"
    );
    assert!(wrong.host.state().staged.is_none());
    // The error's own kind says which trust check failed.
    let status = status_json(&wrong);
    assert_eq!(status["reason"]["kind"], "source_error", "{status}");
    assert_eq!(status["reason"]["cause"], "bad_signature", "{status}");

    // Held by the operator.
    let held = node(&p, "held", 1, &fragment(&p, 0.1));
    ok(&["hold", "--state-dir", &held.state]);
    assert!(agent_once(&p, &held, &[]).contains("held by the operator"));
    ok(&["unhold", "--state-dir", &held.state]);
    assert!(agent_once(&p, &held, &[]).contains("staged 44.3"));

    // Another updater is enabled: refuse, and say how to fix it.
    let other = node(&p, "other", 1, &fragment(&p, 0.1));
    let systemctl = p.dir.path().join("systemctl");
    std::fs::write(&systemctl, "#!/bin/sh\n[ \"$2\" = zincati.service ] && echo enabled && exit 0\necho disabled\nexit 1\n").expect("stub");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = command(&p, &other, &["agent", "--once"])
        .systemctl(&systemctl)
        .ok();
    assert!(
        out.contains("refusing to stage") && out.contains("zincati.service"),
        "{out}"
    );
    assert!(other.host.state().staged.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_now_reboots_into_the_newest_allowed_release_at_wariness_zero() {
    let p = published().await;
    // Wariness 1 and a window that is never open: update-now ignores both.
    let n = node(
        &p,
        "now",
        1,
        &format!(
            "{}[[strategy.window]]\ndays = [\"Mon\"]\nstart_time = \"00:00\"\nlength_minutes = 1\n",
            fragment(&p, 1.0)
        ),
    );
    let child = command(&p, &n, &["update-now"])
        .arg("--no-user-check")
        .spawn();
    let out = n.host.reboot_under(child, true).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rebooting into 44.3"), "{stdout}");
    assert!(stdout.contains("Strategy:   update-now"), "{stdout}");
    assert_eq!(
        n.host.state().booted.map(|b| b.digest).as_deref(),
        Some(p.digests[2].as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_release_the_document_stops_offering_is_withdrawn_and_not_staged_again() {
    let p = published().await;
    let n = node(&p, "stopped", 1, &fragment(&p, 0.3));
    let out = agent_once(&p, &n, &[]);
    assert!(out.contains("staged 44.3"), "{out}");
    // The release team stops the rollout: 44.3 is a target for nobody.
    ok(&[
        "policy",
        "--policy",
        &p.dir.path().join("updates.json").display().to_string(),
        "--stream",
        "stable",
        "rollout",
        "stop",
        "44.3",
    ]);
    republish(&p);
    let out = agent_once(&p, &n, &[]);
    assert!(
        out.contains("the staged release 44.3 is no longer offered to this host"),
        "{out}"
    );
    assert_eq!(
        history_words(&n),
        attempt_words(&[("44.3", "staged"), ("44.3", "withdrawn")])
    );
    let status = status_json(&n);
    assert_eq!(status["lastOutcome"]["outcome"], "withdrawn", "{status}");
    assert_eq!(status["reason"]["kind"], "staged_not_offered", "{status}");
    assert_eq!(status["target"], Value::Null, "{status}");
    // bootc cannot drop a staged deployment; left locked (download only),
    // it never becomes the boot: nothing unlocked or applied it.
    assert_locked_never_applied(&n);
    // The next check does not stage it again while it stays unoffered.
    let out = agent_once(&p, &n, &[]);
    assert!(out.contains("no longer offered"), "{out}");
    assert_eq!(
        history_words(&n),
        attempt_words(&[("44.3", "staged"), ("44.3", "withdrawn")])
    );
    assert_locked_never_applied(&n);
}

fn attempt_words(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(version, word)| (version.to_string(), word.to_string()))
        .collect()
}

/// The staged deployment is still download-only and no command unlocked or
/// applied it; the host is still on 44.2.
fn assert_locked_never_applied(n: &Node) {
    let host = n.host.state();
    assert!(
        host.staged.as_ref().is_some_and(|s| s.download_only),
        "{:?}",
        host.staged
    );
    assert!(
        !host
            .calls
            .iter()
            .any(|c| c.contains("--apply") || c.contains("unlock")),
        "{:?}",
        host.calls
    );
    assert_eq!(
        host.booted.map(|b| b.version),
        Some(Some("44.2".to_string()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_staged_with_update_now_is_kept_by_the_next_check() {
    let p = published().await;
    // Wariness 0.8: the 50% rollout of 44.3 does not reach this host.
    let n = node(&p, "picked", 1, &fragment(&p, 0.8));
    let out = command(&p, &n, &["update-now", "--once"]).ok();
    assert!(out.contains("staged 44.3"), "{out}");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&n.state).join("state.json")).expect("state"),
    )
    .expect("JSON");
    assert_eq!(state["operator_staged"]["version"], "44.3", "{state}");
    assert_eq!(
        state["operator_staged"]["by"], "cairn update-now",
        "{state}"
    );
    // An ordinary check at wariness 0.8 keeps the operator's pick.
    let out = agent_once(&p, &n, &[]);
    assert_eq!(
        n.host.state().staged.map(|s| s.digest).as_deref(),
        Some(p.digests[2].as_str()),
        "{out}"
    );
    assert_eq!(
        history_words(&n),
        attempt_words(&[("44.3", "staged")]),
        "{out}"
    );
    // A host that staged it by itself, at 0.3, loses it once its wariness
    // is 0.8: the same check, without the operator's pick.
    let own = node(&p, "own", 1, &fragment(&p, 0.3));
    assert!(agent_once(&p, &own, &[]).contains("staged 44.3"));
    std::fs::write(
        Path::new(&own.root).join("etc/cairn/config.d/50-site.toml"),
        fragment(&p, 0.8),
    )
    .expect("rewrite the fragment");
    let out = agent_once(&p, &own, &[]);
    assert!(out.contains("no longer offered"), "{out}");
    assert_eq!(
        history_words(&own),
        attempt_words(&[("44.3", "staged"), ("44.3", "withdrawn")]),
        "{out}"
    );
    assert_locked_never_applied(&own);
}

#[test]
fn systemd_is_told_when_the_agent_is_ready() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    // No host tools here: the pass fails, and the agent still reports READY with its status.
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/cairn/config.d")).expect("mkdir");
    std::fs::write(
        root.join("etc/cairn/config.d/50.toml"),
        "[identity]\nrollout_wariness = 0.5\n",
    )
    .expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "agent",
            "--root",
            &root.display().to_string(),
            "--state-dir",
            &dir.path().join("state").display().to_string(),
            // Its own socket: on the default one, it would answer the other
            // tests' status requests while it runs.
            "--socket",
            &dir.path().join("agent.sock").display().to_string(),
            "--bootc",
            "/nonexistent/bootc",
            "--rpm-ostree",
            "/nonexistent/rpm-ostree",
            "--no-updater-check",
            "--no-systemd",
        ])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut buffer = [0u8; 4096];
    let received = socket.recv(&mut buffer);
    let _ = child.kill();
    let _ = child.wait();
    let message =
        String::from_utf8_lossy(&buffer[..received.expect("a notification")]).into_owned();
    assert!(message.starts_with("READY=1\nSTATUS="), "{message}");
}

/// Fedora's shipped stable files, with the two newest releases pointed at
/// images in the test registry and the newest one's rollout moved to
/// half-way through, served over loopback HTTP as Fedora serves them.
async fn serve_fedora_files(
    digests: &[String; 2],
    versions: &[&str; 2],
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fcos");
    let mut index: Value = serde_json::from_slice(
        &std::fs::read(data.join("releases/stable/releases.json")).expect("releases.json"),
    )
    .expect("JSON");
    let releases = index["releases"].as_array_mut().expect("releases");
    for (version, digest) in versions.iter().zip(digests) {
        let release = releases
            .iter_mut()
            .find(|r| r["version"] == *version)
            .expect("the shipped data has this release");
        for image in release["oci-images"].as_array_mut().expect("oci-images") {
            // Fedora names quay.io; the host follows a mirror with the same digests.
            if image["architecture"] == "x86_64" {
                image["digest-ref"] =
                    Value::String(format!("quay.io/fedora/fedora-coreos@{digest}"));
            }
        }
    }
    let mut updates: Value =
        serde_json::from_slice(&std::fs::read(data.join("updates/stable.json")).expect("updates"))
            .expect("JSON");
    let entry = updates["releases"]
        .as_array_mut()
        .expect("releases")
        .iter_mut()
        .find(|r| r["version"] == versions[1])
        .expect("the shipped updates file has a rollout for the newest release");
    let yesterday = jiff::Timestamp::now().as_second() - 24 * 3600;
    entry["metadata"]["rollout"] = serde_json::json!({
        "start_epoch": yesterday, "start_percentage": 0.0, "duration_minutes": 2880
    });
    // Like Fedora's servers: an ETag, and 304 to a request that has it.
    let full = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let serve = |body: String, full: std::sync::Arc<std::sync::atomic::AtomicUsize>| {
        move |headers: axum::http::HeaderMap| {
            let body = body.clone();
            let full = full.clone();
            async move {
                use axum::response::IntoResponse;
                let etag = "\"v1\"";
                if headers.get("if-none-match").is_some_and(|v| v == etag) {
                    return axum::http::StatusCode::NOT_MODIFIED.into_response();
                }
                full.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ([("etag", etag)], body).into_response()
            }
        }
    };
    let router = axum::Router::new()
        .route(
            "/prod/streams/stable/releases.json",
            axum::routing::get(serve(index.to_string(), full.clone())),
        )
        .route(
            "/updates/stable.json",
            axum::routing::get(serve(updates.to_string(), full.clone())),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (address.to_string(), full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcos_source_follows_fedoras_own_rollout() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("fedora/fedora-coreos");
    let versions = ["44.20260621.3.1", "44.20260707.3.1"];
    let mut digests = Vec::new();
    for (version, created) in versions
        .iter()
        .zip(["2026-06-21T00:00:00Z", "2026-07-07T00:00:00Z"])
    {
        let (_, written) = write_release(&store, version, created, &[version]).await;
        digests.push(written[0].manifest.clone());
    }
    let repo = format!("{}/fedora/fedora-coreos", registry.host);
    let (fedora, full_answers) =
        serve_fedora_files(&[digests[0].clone(), digests[1].clone()], &versions).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |name: &str, wariness: f64| {
        let base = dir.path().join(name);
        let host = FakeHost::new(
            &base.join("host"),
            "1.17.0",
            &format!("{repo}:stable"),
            (&digests[0], versions[0]),
            std::slice::from_ref(&registry.host),
            true,
        );
        let config = base.join("root/etc/cairn/config.d");
        std::fs::create_dir_all(&config).expect("mkdir");
        std::fs::write(
            config.join("50-site.toml"),
            format!(
                "[updates]\nsource = \"fcos:http://{fedora}\"\n[identity]\nrollout_wariness = {wariness}\n"
            ),
        )
        .expect("write");
        let out = AgentCommand::new(
            &["agent", "--once"],
            &host,
            base.join("root"),
            base.join("state"),
        )
        .insecure_registry(&registry.host)
        .insecure_registry(&fedora)
        .ok();
        (host, out)
    };
    let (early, out) = run("early", 0.3);
    assert!(out.contains(&format!("staged {}", versions[1])), "{out}");
    assert_eq!(
        early.state().staged.map(|s| s.digest).as_deref(),
        Some(digests[1].as_str())
    );
    let (late, out) = run("late", 0.8);
    assert!(
        out.contains(&format!("rollout of {} at 50", versions[1])),
        "{out}"
    );
    assert!(late.state().staged.is_none(), "{out}");
    assert!(
        out.contains(&format!("stable from fcos:http://{fedora}")),
        "{out}"
    );
    // Each host fetched both files once; a second check of the late host
    // costs two 304s and decides the same.
    assert_eq!(full_answers.load(std::sync::atomic::Ordering::SeqCst), 4);
    let (_, again) = run("late", 0.8);
    assert!(
        again.contains(&format!("rollout of {} at 50", versions[1])),
        "{again}"
    );
    assert_eq!(full_answers.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_stops_early_still_names_the_state_and_why() {
    let p = published().await;
    // No wariness and no /etc/machine-id: the agent cannot place itself.
    let lost = node(
        &p,
        "lost",
        1,
        &format!("[updates]\nkeys = [\"{}\"]\n", p.public_key),
    );
    agent_once(&p, &lost, &[]);
    let status = status_json(&lost);
    assert_eq!(status["state"], "initialized", "{status}");
    assert_eq!(status["reason"]["kind"], "wariness_unknown", "{status}");
    assert_eq!(
        status["reason"]["cause"], "machine_id_unreadable",
        "{status}"
    );
    let reason = status["reason"]["message"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("no action:") && reason.contains("machine-id"),
        "{status}"
    );
    assert!(lost.host.state().staged.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_go_through_the_running_agents_socket() {
    let p = published().await;
    // Wariness 0.8: the 50% rollout leaves this host waiting.
    let n = node(&p, "daemon", 1, &fragment(&p, 0.8));
    let socket = p.dir.path().join("daemon/run/agent.sock");
    let socket_arg = socket.display().to_string();
    let on_host = |verb: &str| {
        command(&p, &n, &[verb]).args(["--socket", socket_arg.as_str(), "--no-user-check"])
    };
    let mut daemon = on_host("agent")
        .args(["--check-interval-ms", "600000"])
        .command()
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the agent");
    wait_until("the agent listens", || socket.exists()).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "root-only socket");
    let out = on_host("agent").output();
    assert!(!out.status.success(), "a second agent must not start");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another agent is running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state_args = [
        "--state-dir",
        n.state.as_str(),
        "--socket",
        socket_arg.as_str(),
    ];
    let status = |json: bool| {
        let mut args = vec!["status"];
        args.extend(state_args);
        if json {
            args.push("--json");
        }
        ok(&args)
    };
    let text = status(false);
    assert!(
        text.starts_with("State:      steady — rollout of 44.3"),
        "{text}"
    );
    assert!(!text.contains("no agent is running"), "{text}");
    // Asked about another state directory, this agent says it is not that one's.
    let elsewhere = p.dir.path().join("elsewhere");
    let out = cairn(&[
        "status",
        "--state-dir",
        &elsewhere.display().to_string(),
        "--socket",
        socket_arg.as_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "cairn: error: the agent on {socket_arg} keeps its state in {}, not {}; pass --socket",
            n.state,
            elsewhere.display()
        )),
        "{stderr}"
    );

    let mut hold = vec!["hold"];
    hold.extend(state_args);
    let out = ok(&hold);
    assert_eq!(out, "updates held until `cairn unhold`\n");
    let json: Value = serde_json::from_str(&status(true)).expect("JSON");
    assert_eq!(json["held"], true, "the agent re-checked at once: {json}");
    let mut unhold = vec!["unhold"];
    unhold.extend(state_args);
    assert_eq!(ok(&unhold), "updates no longer held\n");
    let mut remove = vec!["deny-list", "remove"];
    remove.extend(state_args);
    remove.push("44.9");
    let out = cairn(&remove);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("44.9 is not on the deny-list"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(&status(true)).expect("JSON");
    assert_eq!(json["held"], false, "{json}");

    // update-now runs in the agent: wariness 0, so 44.3 is staged and finalized.
    let child = on_host("update-now").spawn();
    let out = n.host.reboot_under(child, true).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("no agent is running"), "{stderr}");
    assert!(stdout.contains("rebooting into 44.3"), "{stdout}");
    let _ = daemon.kill();
    let _ = daemon.wait();

    // With the agent gone, commands say so and still work on the state directory.
    let text = status(false);
    assert!(text.contains("Agent:      no agent is running"), "{text}");
    let out = ok(&hold);
    assert!(out.contains("no agent is running"), "{out}");
    assert_eq!(
        serde_json::from_slice::<Value>(
            &std::fs::read(Path::new(&n.state).join("state.json")).expect("state")
        )
        .expect("JSON")["held"],
        true
    );
}

fn spawn_daemon(p: &Published, n: &Node) -> Daemon {
    command(p, n, &["agent"]).daemon(&n.state)
}

fn kill9(daemon: &mut Daemon) {
    // `Child::kill` is SIGKILL.
    daemon.0.kill().expect("SIGKILL");
    let _ = daemon.0.wait();
}

fn state_name(n: &Node) -> String {
    std::fs::read(Path::new(&n.state).join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_converges_after_restart_in_every_state() {
    let p = published().await;
    let target = p.digests[2].clone();
    let staged_once = |n: &Node| n.host.state().staged.map(|s| s.digest) == Some(target.clone());

    // Killed while asking the host for its status (initializing, checking).
    let n = node(
        &p,
        "kill-status",
        1,
        &(fragment(&p, 0.3) + &closed_window()),
    );
    n.host.pause_before("status");
    let mut agent = spawn_daemon(&p, &n);
    wait_until("bootc status is paused", || n.host.paused_pid().is_some()).await;
    kill9(&mut agent);
    n.host.resume();
    let mut agent = spawn_daemon(&p, &n);
    wait_until("staged after restart", || state_name(&n) == "staged").await;
    kill9(&mut agent);
    assert!(staged_once(&n));
    assert_eq!(
        count_calls(&n.host, "switch --download-only"),
        1,
        "staged once"
    );

    // Killed during `bootc switch` (update available); the switch finishes
    // without the agent, as under systemd-run.
    let n = node(
        &p,
        "kill-switch",
        1,
        &(fragment(&p, 0.3) + &closed_window()),
    );
    n.host.pause_before("switch --download-only");
    let mut agent = spawn_daemon(&p, &n);
    wait_until("bootc switch is paused", || n.host.paused_pid().is_some()).await;
    kill9(&mut agent);
    n.host.resume();
    wait_until("the orphaned switch finished", || staged_once(&n)).await;
    let mut agent = spawn_daemon(&p, &n);
    wait_until("staged after restart", || state_name(&n) == "staged").await;
    // A few more checks: none may stage again.
    wait_for_passes(&n, 3).await;
    kill9(&mut agent);
    assert_eq!(
        count_calls(&n.host, "switch --download-only"),
        1,
        "no double staging"
    );

    // Killed during `bootc switch`, and the switch died with it.
    let n = node(
        &p,
        "kill-switch-too",
        1,
        &(fragment(&p, 0.3) + &closed_window()),
    );
    n.host.pause_before("switch --download-only");
    let mut agent = spawn_daemon(&p, &n);
    wait_until("bootc switch is paused", || n.host.paused_pid().is_some()).await;
    kill9(&mut agent);
    if let Some(pid) = n.host.paused_pid() {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    n.host.resume();
    assert!(n.host.state().staged.is_none());
    let mut agent = spawn_daemon(&p, &n);
    wait_until("staged after restart", || state_name(&n) == "staged").await;
    kill9(&mut agent);
    assert!(staged_once(&n));

    // Killed while staged, between checks.
    let mut agent = spawn_daemon(&p, &n);
    wait_until("a check ran", || count_calls(&n.host, "status") >= 8).await;
    kill9(&mut agent);
    let switches = count_calls(&n.host, "switch --download-only");
    let mut agent = spawn_daemon(&p, &n);
    wait_for_passes(&n, 2).await;
    kill9(&mut agent);
    assert_eq!(
        count_calls(&n.host, "switch --download-only"),
        switches,
        "no re-staging"
    );
    assert_eq!(state_name(&n), "staged");

    // Killed while finalizing (rebooting) under a reboot lock; the reboot
    // happens. After restart: verified, steady, lock released, no reboot loop.
    let lock = cairn_testkit::LockServer::start(1).await;
    let n = node_with_lock(
        &p,
        "kill-reboot",
        &lock.base_url,
        "default",
        "0123456789abcdef0123456789abcdef",
    );
    let mut agent = spawn_daemon(&p, &n);
    wait_until("finalization started", || {
        n.host.state().apply_pid.is_some()
    })
    .await;
    assert_eq!(lock.holders("default").len(), 1, "lock taken before reboot");
    kill9(&mut agent);
    n.host.reboot(true);
    let mut agent = spawn_daemon(&p, &n);
    wait_until("steady on the new release", || state_name(&n) == "steady").await;
    wait_until("lock released", || lock.holders("default").is_empty()).await;
    wait_for_passes(&n, 2).await;
    kill9(&mut agent);
    let host = n.host.state();
    assert_eq!(host.booted.map(|b| b.digest), Some(target.clone()));
    assert!(host.staged.is_none(), "nothing staged again");
    assert_eq!(
        count_calls(&n.host, "upgrade --from-downloaded --apply"),
        1,
        "no reboot loop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_boot_keeps_the_reboot_slot_until_fleet_lock_release() {
    let p = published().await;
    let lock = cairn_testkit::LockServer::start(1).await;
    let n = node_with_lock(
        &p,
        "kept-slot",
        &lock.base_url,
        "workers",
        "0123456789abcdef0123456789abcdef",
    );
    let socket = format!("{}/agent.sock", n.state);
    let on_host = |verb: &[&str]| {
        let mut args = verb.to_vec();
        args.extend(["--state-dir", n.state.as_str(), "--socket", socket.as_str()]);
        cairn(&args)
    };
    let agent = spawn_daemon(&p, &n);
    wait_until("finalization started", || {
        n.host.state().apply_pid.is_some()
    })
    .await;
    assert_eq!(lock.holders("workers").len(), 1, "lock taken before reboot");
    // The new boot fails: the host comes back on 44.2.
    n.host.reboot(false);
    let status_json = || -> Value {
        std::fs::read(Path::new(&n.state).join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    wait_until("the failed boot was judged", || {
        !status_json()["fleetLockSlot"]["keptAfterFailure"].is_null()
    })
    .await;
    let shown = status_json();
    assert_eq!(shown["fleetLockSlot"]["group"], "workers", "{shown}");
    assert_eq!(
        shown["fleetLockSlot"]["keptAfterFailure"]["version"], "44.3",
        "{shown}"
    );
    assert_eq!(lock.holders("workers").len(), 1, "kept after the failure");
    let out = on_host(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Lock:       keeps a FleetLock slot of group workers since"),
        "{text}"
    );

    let out = on_host(&["release-slot"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the boot into 44.3 failed"), "{stdout}");
    assert!(stdout.ends_with("is handed back\n"), "{stdout}");
    // The pass the release ran handed it back before answering.
    assert!(lock.holders("workers").is_empty(), "released");
    assert!(
        status_json()["fleetLockSlot"].is_null(),
        "{}",
        status_json()
    );
    drop(agent);

    let out = on_host(&["release-slot"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cairn: error: this host holds no FleetLock slot\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_without_a_machine_id_stops_rather_than_share_an_id() {
    let p = published().await;
    let lock = cairn_testkit::LockServer::start(1).await;
    // A wariness is configured, so only the FleetLock id needs the machine id.
    let n = node(
        &p,
        "no-machine-id",
        1,
        &format!(
            "{}[strategy.fleet_lock]\nbase_url = \"{}\"\n",
            fragment(&p, 0.3),
            lock.base_url
        ),
    );
    let machine_id = Path::new(&n.root).join("etc/machine-id");
    assert!(!machine_id.exists(), "{}", machine_id.display());
    command(&p, &n, &["agent", "--once"]).output();
    let shown = status_json(&n);
    assert_eq!(shown["reason"]["kind"], "wariness_unknown", "{shown}");
    assert_eq!(shown["reason"]["cause"], "machine_id_unreadable", "{shown}");
    assert!(n.host.state().staged.is_none(), "nothing staged");
    assert!(lock.requests().is_empty(), "{:?}", lock.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reads_the_hosts_ostree_registry_credentials() {
    let BehindLogin {
        registry,
        dir,
        host,
        root,
        auth,
    } = behind_login(true).await;
    let d = |name: &str| dir.path().join(name).display().to_string();
    let once = || {
        AgentCommand::new(&["agent", "--once"], &host, &root, d("state"))
            .insecure_registry(&registry.host)
            .ok()
    };
    let out = once();
    assert!(out.contains("not authorized"), "{out}");
    assert!(out.contains("Last error: 127.0.0.1"), "{out}");
    std::fs::create_dir_all(root.join("etc/ostree")).expect("mkdir");
    std::fs::write(root.join("etc/ostree/auth.json"), &auth).expect("auth.json");
    let out = once();
    assert!(out.contains("State:      steady — up to date"), "{out}");
    assert!(out.contains("Last error: none"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_host_reads_the_document_from_its_registries_conf_mirror() {
    let p = published().await;
    let base = p.dir.path().join("mirrored");
    // The host follows a registry it cannot reach; registries.conf names a mirror.
    let host = FakeHost::new(
        &base.join("host"),
        "1.17.0",
        "127.0.0.1:1/acme/os:stable",
        (&p.digests[2], "44.3"),
        &[],
        true,
    );
    let root = base.join("root");
    std::fs::create_dir_all(root.join("etc/cairn/config.d")).expect("mkdir");
    std::fs::write(
        root.join("etc/cairn/config.d/50-site.toml"),
        fragment(&p, 0.5),
    )
    .expect("config");
    // No --insecure-registry: only registries.conf may name the mirror's.
    let once = || AgentCommand::new(&["agent", "--once"], &host, &root, base.join("state")).ok();
    let out = once();
    assert!(
        out.contains("Last error: 127.0.0.1:1/acme/os:cairn-graph-stable"),
        "{out}"
    );
    std::fs::create_dir_all(root.join("etc/containers/registries.conf.d")).expect("mkdir");
    std::fs::write(
        root.join("etc/containers/registries.conf.d/50-mirror.conf"),
        format!(
            "[[registry]]\nprefix = \"127.0.0.1:1/acme\"\nlocation = \"127.0.0.1:1/acme\"\n[[registry.mirror]]\nlocation = \"{}/acme\"\ninsecure = true\n",
            p.registry.host
        ),
    )
    .expect("registries.conf");
    let out = once();
    assert!(out.contains("State:      steady — up to date"), "{out}");
    assert!(
        out.contains(&format!(
            "from {}/acme/os:cairn-graph-stable",
            p.registry.host
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cincinnati_source_follows_the_servers_graph_with_the_local_wariness() {
    let p = published().await;
    let mut server = cairn_testkit::GraphServer::document(
        env!("CARGO_BIN_EXE_cairn"),
        p.dir.path(),
        &p.registry.host,
        &format!("{}:cairn-graph-stable", p.repo),
        &p.public_key,
    );
    let listen = server.listen.clone();
    let fragment = |w: f64| {
        format!(
            "[updates]\nsource = \"cincinnati:http://{listen}\"\n[identity]\nrollout_wariness = {w}\n"
        )
    };
    let once = |n: &Node| {
        command(&p, n, &["agent", "--once"])
            .insecure_registry(&listen)
            .ok()
    };

    let early = node(&p, "early", 1, &fragment(0.3));
    let out = once(&early);
    assert!(out.contains("staged 44.3"), "{out}");
    assert_eq!(
        early.host.state().staged.map(|s| s.digest).as_deref(),
        Some(p.digests[2].as_str())
    );
    let status = status_json(&early);
    assert_eq!(
        status["source"],
        format!("cincinnati:http://{listen} (stable)")
    );
    assert_eq!(status["documentSequence"], Value::Null, "no document");
    assert_eq!(status["booted"]["ageIndex"], 1);

    // The server is asked with wariness 0 and keeps the edge; the node applies
    // its own wariness to the node metadata and says why it waits.
    let late = node(&p, "late", 1, &fragment(0.8));
    let out = once(&late);
    assert!(out.contains("rollout of 44.3 at 50"), "{out}");
    assert!(out.contains("this node's wariness is 0.8"), "{out}");
    assert!(out.contains("Expected:   a change about"), "{out}");
    assert!(late.host.state().staged.is_none());

    // An old node walks the graph the server sent: one step at a time.
    let old = node(&p, "old", 0, &fragment(0.3));
    let out = once(&old);
    assert!(out.contains("staged 44.3"), "{out}");

    // The server gone: nothing is done, and status says why.
    server.stop();
    let down = node(&p, "down", 1, &fragment(0.3));
    let out = once(&down);
    assert!(down.host.state().staged.is_none(), "{out}");
    let status = status_json(&down);
    let error = status["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("cincinnati:http://{listen}")),
        "{status}"
    );
}
