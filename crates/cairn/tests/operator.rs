//! What an operator sees from `cairn status` and `cairn config check` when
//! something is missing or wrong: the exact message and the exit code.

mod common;
use common::cairn;

use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cairn <verb> --state-dir <dir>/state --socket <dir>/agent.sock <extra>`.
fn with_state(verb: &[&str], dir: &Path, extra: &[&str]) -> Output {
    let state = dir.join("state").display().to_string();
    let socket = dir.join("agent.sock").display().to_string();
    let mut args: Vec<&str> = verb.to_vec();
    args.extend(["--state-dir", &state, "--socket", &socket]);
    args.extend(extra);
    cairn(&args)
}

#[test]
fn status_without_agent_names_the_socket_and_the_state_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let out = with_state(&["status"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "cairn: error: no agent is running (nothing answers on {d}/agent.sock), and the state directory {d}/state does not exist: is `cairn agent` running, with this --socket and --state-dir?\n"
        )
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn status_json_without_agent_is_a_json_error_object() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display().to_string();
    let out = with_state(&["status"], dir.path(), &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let object: Value = serde_json::from_slice(&out.stdout).expect("a JSON object on stdout");
    let error = &object["error"];
    assert_eq!(error["kind"], "no_state_dir");
    assert_eq!(error["socket"], format!("{d}/agent.sock"));
    assert_eq!(error["stateDir"], format!("{d}/state"));
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no agent is running (nothing answers on ")),
        "{error}"
    );
    assert_eq!(stderr(&out), "");
}

#[test]
fn a_hold_recorded_without_agent_is_shown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let held = with_state(&["hold"], dir.path(), &[]);
    assert!(held.status.success(), "{}", stderr(&held));
    // No agent has written a status yet: the hold is in the error.
    let out = with_state(&["status"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "cairn: error: no agent is running (nothing answers on {d}/agent.sock), and the state directory {d}/state has no status yet; updates are held until `cairn unhold`: is `cairn agent` running, with this --socket and --state-dir?\n"
        )
    );
    // A status the agent wrote before the hold: the hold shows anyway.
    std::fs::write(
        dir.path().join("state/status.json"),
        r#"{"apiVersion": "cairn.dev/v1", "kind": "AgentStatus", "updated": "2026-07-01T00:00:00Z",
            "state": "steady", "reason": {"kind": "up_to_date", "message": "up to date"}}"#,
    )
    .expect("write status");
    let out = with_state(&["status"], dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Held:       by operator\n"), "{text}");
    assert!(
        text.contains(&format!(
            "Agent:      no agent is running (nothing answers on {d}/agent.sock); this is the last status it wrote in {d}/state; updates held until `cairn unhold` since then\n"
        )),
        "{text}"
    );
    let out = with_state(&["status"], dir.path(), &["--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["held"], true);
}

#[test]
fn history_with_a_missing_state_dir_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let out = with_state(&["status"], dir.path(), &["--history"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "cairn: error: the state directory {d}/state does not exist, so it holds no history: has `cairn agent` run on this host, with this --state-dir?\n"
        )
    );
    // An existing directory without attempts is simply empty.
    std::fs::create_dir(dir.path().join("state")).expect("mkdir");
    let out = with_state(&["status"], dir.path(), &["--history"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "no update attempts recorded\n");
}

/// A root with these fragments in `etc/cairn/config.d`.
fn root_with(fragments: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("etc/cairn/config.d");
    std::fs::create_dir_all(&config).expect("mkdir");
    for (name, text) in fragments {
        std::fs::write(config.join(name), text).expect("write fragment");
    }
    dir
}

fn check(root: &Path) -> Output {
    cairn(&["config", "check", "--root", &root.display().to_string()])
}

#[test]
fn config_check_fails_on_what_will_fail() {
    let cases = [
        (
            "[updates]\nsource = \"registry:not a ref\"\n",
            "key `updates.source`: registry:not a ref: invalid reference \"not a ref\": expected registry/repository with lower-case path components\n",
        ),
        // Key files are read under --root: the root's own keys, not the host's.
        (
            "[updates]\nkeys = [\"/etc/cairn/keys/missing.pub\"]\n",
            "key `updates.keys`: {root}/etc/cairn/keys/missing.pub: No such file or directory (os error 2)\n",
        ),
        (
            "[updates]\nkeys = [\"/etc/cairn/keys/bad.pub\"]\n",
            "key `updates.keys`: key ",
        ),
        (
            "[identity]\nrollout_wariness = \"high\"\n",
            "key `identity.rollout_wariness`: invalid type: string \"high\", expected a number\n",
        ),
        (
            "[updates]\nstream = \n",
            "TOML parse error at line 2, column 10\n  |\n2 | stream = \n  |          ^\ninvalid string\nexpected `\"`, `'`\n",
        ),
    ];
    for (fragment, want) in cases {
        let root = root_with(&[("50-site.toml", fragment)]);
        let keys = root.path().join("etc/cairn/keys");
        std::fs::create_dir_all(&keys).expect("mkdir");
        std::fs::write(keys.join("bad.pub"), "not a key\n").expect("write");
        let out = check(root.path());
        let file = root.path().join("etc/cairn/config.d/50-site.toml");
        assert_eq!(out.status.code(), Some(1), "{fragment}");
        let got = stderr(&out);
        let want = want.replace("{root}", &root.path().display().to_string());
        assert!(
            got.starts_with(&format!("cairn: error: {}: {want}", file.display())),
            "{fragment}: {got}"
        );
    }
    let parent = root_with(&[]);
    let missing = parent.path().join("no-such-root");
    let out = check(&missing);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "cairn: error: --root {}: does not exist\n",
            missing.display()
        )
    );
    let empty = tempfile::tempdir().expect("temp dir");
    let out = check(empty.path());
    assert_eq!(out.status.code(), Some(1));
    let r = empty.path().display();
    assert_eq!(
        stderr(&out),
        format!(
            "cairn: error: --root {r}: no configuration fragments (*.toml) in {r}/usr/lib/cairn/config.d, {r}/run/cairn/config.d, {r}/etc/cairn/config.d\n"
        )
    );
}

#[test]
fn config_check_shows_settings_and_where_they_were_set() {
    let root = root_with(&[(
        "50-site.toml",
        "[updates]\nsource = \"registry:127.0.0.1:5000/acme/os:cairn-graph-stable\"\nstream = \"stable\"\n[strategy]\ntime_zone = \"Europe/Berlin\"\n[[strategy.window]]\ndays = [\"Sat\", \"Sun\"]\nstart_time = \"02:00\"\nlength_minutes = 120\n",
    )]);
    let file = root.path().join("etc/cairn/config.d/50-site.toml");
    let f = file.display();
    let out = check(root.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "fragments, in the order they apply:
  {f}
source:     registry:127.0.0.1:5000/acme/os:cairn-graph-stable  ({f})
stream:     stable  ({f})
keys:       none  (default)
window:     Sat,Sun 02:00 for 120 min  ({f})
time zone:  Europe/Berlin  ({f})
strategy:   periodic  (the windows above)
wariness:   derived from the node id  (default)
group:      default  (default)
check:      every 300 s  (default)
reports:    off: nothing is sent  (default)
updates:    enabled  (default)
ok
"
        )
    );
    // No keys: every unsigned document would be accepted.
    assert_eq!(
        stderr(&out),
        "cairn: warning: updates.keys is not set: unsigned documents are accepted (set it to the release team's public key files)\n"
    );
}
