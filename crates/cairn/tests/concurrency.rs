//! Operator commands racing a running agent over the state directory: no
//! change is lost, and a hold whose time is out of range is refused rather
//! than made indefinite.

mod common;

use cairn_testkit::host::FakeHost;
use common::agent::AgentCommand;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// How many deny-list entries the operator removes while the agent checks.
const REMOVALS: usize = 16;

/// A stand-in host, its configuration root and its state directory; the
/// document source is a file that does not exist, so each check reads and
/// saves the state and stops there, with no network.
struct Host {
    _dir: tempfile::TempDir,
    host: FakeHost,
    root: PathBuf,
    state: PathBuf,
    /// A socket path nothing listens on: commands fall back to the state directory.
    nobody: PathBuf,
}

fn host() -> Host {
    let dir = tempfile::tempdir().expect("temp dir");
    let digest = format!("sha256:{}", "1".repeat(64));
    let host = FakeHost::new(
        &dir.path().join("host"),
        "1.17.0",
        "registry.invalid/acme/os:stable",
        (&digest, "44.1"),
        &[],
        false,
    );
    let root = dir.path().join("root");
    let config = root.join("etc/cairn/config.d");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(
        config.join("50-site.toml"),
        format!(
            "[updates]\nsource = \"file:{}\"\nallow_unsigned = true\n[identity]\nrollout_wariness = 0.5\n",
            dir.path().join("no-such-document.json").display()
        ),
    )
    .expect("write");
    Host {
        host,
        root,
        state: dir.path().join("state"),
        nobody: dir.path().join("nobody.sock"),
        _dir: dir,
    }
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// A running `cairn agent`, killed when dropped, so that a failing test
/// leaves none behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // Errors mean it is gone already.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(h: &Host, socket: &Path, interval_ms: u64) -> Daemon {
    AgentCommand::new(&["agent"], &h.host, &h.root, &h.state)
        .args(["--socket", &arg(socket), "--no-user-check"])
        .args(["--check-interval-ms", &interval_ms.to_string()])
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Daemon)
        .expect("spawn the agent")
}

/// `cairn <args> --state-dir … --socket …` as a child.
fn operator(h: &Host, args: &[&str], socket: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .args(["--state-dir", &arg(&h.state), "--socket", &arg(socket)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn")
}

fn succeeded(out: &Output) -> bool {
    out.status.success()
}

/// Checks the agent has begun (one `bootc status` each).
fn checks(h: &Host) -> usize {
    h.host
        .state()
        .calls
        .iter()
        .filter(|c| c.starts_with("status"))
        .count()
}

/// Wait (at most 30 s) until `done`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

fn state_json(h: &Host) -> Value {
    serde_json::from_slice(&std::fs::read(h.state.join("state.json")).expect("state.json"))
        .expect("JSON")
}

#[test]
fn holds_and_removals_made_while_the_agent_checks_are_all_kept() {
    let h = host();
    // Releases on the deny-list, for the operator to take off one by one.
    let deny_list: serde_json::Map<String, Value> = (0..REMOVALS)
        .map(|n| {
            (
                format!("sha256:{n:064}"),
                serde_json::json!({"version": format!("9.{n}"), "since": "2026-01-01T00:00:00Z", "reason": "test"}),
            )
        })
        .collect();
    std::fs::create_dir_all(&h.state).expect("mkdir");
    std::fs::write(
        h.state.join("state.json"),
        serde_json::json!({"format": 1, "deny_list": deny_list}).to_string(),
    )
    .expect("write");
    // The agent's socket cannot be bound (its directory is a file), so it
    // runs without one, as an operator's commands then find it: they fall
    // back to the state directory while it checks every 5 ms.
    let blocked = h.state.join("not-a-directory");
    std::fs::write(&blocked, "").expect("write");
    let _agent = agent(&h, &blocked.join("agent.sock"), 5);
    wait_until("the agent has checked twice", || checks(&h) >= 2);

    let before = checks(&h);
    let mut children = vec![operator(&h, &["hold"], &h.nobody)];
    for n in 0..REMOVALS {
        let release = format!("9.{n}");
        children.push(operator(
            &h,
            &["deny-list", "remove", release.as_str()],
            &h.nobody,
        ));
    }
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(succeeded(&out), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("no agent is running") || stdout.contains("removed"),
            "{stdout}"
        );
    }
    let after = checks(&h);
    assert!(
        after > before,
        "the agent kept checking while the commands ran ({before} then {after} checks)"
    );
    // Checks that began after every command: a save from a stale state would show now.
    wait_until("the agent has checked twice more", || {
        checks(&h) >= after + 2
    });

    let state = state_json(&h);
    assert_eq!(state["held"], true, "the hold was lost: {state}");
    assert_eq!(
        state["deny_list"],
        serde_json::json!({}),
        "a removal was lost: {state}"
    );
}

#[test]
fn a_hold_time_out_of_range_is_refused_not_made_indefinite() {
    let h = host();
    // From the command line, with no agent: the value is named, nothing held.
    let out = operator(&h, &["hold", "--until", "99999999999999"], &h.nobody)
        .wait_with_output()
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!succeeded(&out));
    assert!(
        stderr.contains("--until") && stderr.contains("99999999999999"),
        "{stderr}"
    );
    assert!(!h.state.join("state.json").exists());

    // Over the socket, as another client could send it.
    let socket = h.state.join("agent.sock");
    let _agent = agent(&h, &socket, 600_000);
    wait_until("the agent listens", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    let ask = |line: &str| -> Value {
        use std::io::{BufRead, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        writeln!(stream, "{line}").expect("send");
        let mut answer = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut answer)
            .expect("answer");
        serde_json::from_str(&answer).expect("JSON")
    };
    let answer = ask(&format!(r#"{{"command":"hold","until":{}}}"#, i64::MAX));
    assert_eq!(answer["ok"], false, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&i64::MAX.to_string()) && message.contains("out of range"),
        "{answer}"
    );
    let status = operator(&h, &["status", "--json"], &socket)
        .wait_with_output()
        .expect("wait");
    let status: Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(status["held"], false, "{status}");

    // A time in range is taken, so the refusal above was the time's.
    let until = jiff::Timestamp::now().as_second() + 3600;
    let answer = ask(&format!(r#"{{"command":"hold","until":{until}}}"#));
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["status"]["held"], true, "{answer}");
    assert_eq!(
        state_json(&h)["hold_until"],
        jiff::Timestamp::from_second(until)
            .expect("time")
            .to_string()
    );
}
