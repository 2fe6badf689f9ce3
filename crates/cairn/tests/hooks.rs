//! Update hooks and boot health, end to end: images whose layers carry
//! pre-update hooks, published with `cairn publish` in a real registry, a
//! stand-in host that checks staged images out into ostree deployment
//! directories, a stand-in `systemctl` for boot-complete.target and
//! greenboot, and `cairn agent`, `cairn update-now`, `cairn verify` and
//! `cairn status --history`.

mod common;
use common::agent::AgentCommand;
use common::ok;
use common::publish::Publish;
use common::systemctl::FakeSystemctl;

use cairn_testkit::host::FakeHost;
use cairn_testkit::{Auth, ImageSpec, TestRegistry, write_index, write_release};
use serde_json::Value;
use std::path::{Path, PathBuf};

struct World {
    registry: TestRegistry,
    repo: String,
    old: String,
    new: String,
    dir: tempfile::TempDir,
}

const NEW_CREATED: &str = "2026-03-01T00:00:00Z";

/// 44.2 and 44.3 of `acme/os`, 44.3 shipping `hooks` (name, script body) in
/// `/usr/lib/cairn/hooks/pre-update.d`, published with an immediate rollout.
async fn world(hooks: &[(&str, &str)]) -> World {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (_, old) = write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    let specs: Vec<ImageSpec> = ["amd64", "arm64"]
        .into_iter()
        .map(|arch| {
            let mut spec = ImageSpec::bootable(arch, "44.3", "stable", NEW_CREATED);
            spec.files = hooks
                .iter()
                .map(|(name, body)| {
                    (
                        format!("usr/lib/cairn/hooks/pre-update.d/{name}"),
                        format!("#!/bin/sh\n{body}\n"),
                        0o755,
                    )
                })
                .collect();
            spec
        })
        .collect();
    let (_, new) = write_index(&store, &specs, "44.3").await;
    cairn_testkit::add_tags(
        &store,
        &store
            .resolve("44.3")
            .await
            .expect("HEAD")
            .expect("tag")
            .digest,
        &["stable"],
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = format!("{}/acme/os", registry.host);
    let d = |name: &str| dir.path().join(name).display().to_string();
    ok(&["document", "keygen", "--output", &d("team")]);
    Publish::signed(&repo, d("team.key"))
        .insecure_registry(&registry.host)
        .cache(d("cache.json"))
        .run();
    World {
        old: old[0].manifest.clone(),
        new: new[0].manifest.clone(),
        registry,
        repo,
        dir,
    }
}

struct Node {
    host: FakeHost,
    root: PathBuf,
    state: String,
    systemctl: FakeSystemctl,
}

const UNCONFINED_FRAGMENT: &str = "40-this-host.toml";

fn node(w: &World, name: &str, config: &str) -> Node {
    let base = w.dir.path().join(name);
    let host = FakeHost::new(
        &base.join("host"),
        "1.17.0",
        &format!("{}:stable", w.repo),
        (&w.old, "44.2"),
        std::slice::from_ref(&w.registry.host),
        true,
    );
    let root = base.join("root");
    let dir = root.join("etc/cairn/config.d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("50-site.toml"),
        format!(
            "[updates]\nkeys = [\"{}\"]\n[identity]\nrollout_wariness = 0.5\n{config}",
            w.dir.path().join("team.pub").display()
        ),
    )
    .expect("write");
    // This machine's systemd is not PID 1: image hooks run only if allowed.
    std::fs::write(
        dir.join(UNCONFINED_FRAGMENT),
        "[hooks]\nallow_unconfined = true\n",
    )
    .expect("write");
    Node {
        systemctl: FakeSystemctl::new(&base.join("systemd")),
        host,
        root,
        state: base.join("state").display().to_string(),
    }
}

/// `cairn <verb>` against the node, with its stand-ins.
fn command(w: &World, n: &Node, verb: &[&str]) -> AgentCommand {
    let sysroot = n.host.dir.join("sysroot").display().to_string();
    let socket = format!("{}/agent.sock", n.state);
    AgentCommand::new(verb, &n.host, &n.root, &n.state)
        .systemctl(&n.systemctl.path)
        .insecure_registry(&w.registry.host)
        .args([
            "--sysroot",
            &sysroot,
            "--socket",
            &socket,
            "--no-user-check",
        ])
}

fn run(w: &World, n: &Node, verb: &[&str]) -> String {
    command(w, n, verb).ok()
}

/// `cairn update-now`, which blocks in `--apply` until the stand-in reboots.
async fn update_now_and_reboot(w: &World, n: &Node, healthy: bool) -> String {
    let child = command(w, n, &["update-now"]).spawn();
    let out = n.host.reboot_under(child, healthy).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn history(n: &Node) -> Vec<Value> {
    let text = ok(&["status", "--state-dir", &n.state, "--history", "--json"]);
    serde_json::from_str::<Vec<Value>>(&text).expect("JSON")
}

/// The words that end an attempt (docs/hooks.md).
const FINAL: [&str; 8] = [
    "booted_healthy",
    "booted_unverified",
    "booted_unhealthy",
    "rolled_back",
    "boot_failed",
    "rollback_failed",
    "hook_veto",
    "withdrawn",
];

/// The history's words, oldest first, once every attempt in it (the records
/// with one target and start time) is seen to end in exactly one final
/// word, its last.
fn outcomes(n: &Node) -> Vec<String> {
    let records = history(n);
    let mut attempts: Vec<((Value, Value), Vec<&str>)> = Vec::new();
    for record in &records {
        let key = (record["to_digest"].clone(), record["started"].clone());
        let word = record["result"].as_str().expect("a word");
        match attempts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, words)) => words.push(word),
            None => attempts.push((key, vec![word])),
        }
    }
    for (key, words) in &attempts {
        let finals = words.iter().filter(|w| FINAL.contains(w)).count();
        assert_eq!(finals, 1, "attempt {key:?}: {words:?}");
        assert!(
            words.last().is_some_and(|w| FINAL.contains(w)),
            "attempt {key:?} ends with a final word: {words:?}"
        );
    }
    records
        .iter()
        .map(|r| r["result"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The history's words, oldest first, with an attempt still under way.
fn outcomes_so_far(n: &Node) -> Vec<String> {
    history(n)
        .iter()
        .map(|r| r["result"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn calls(n: &Node, prefix: &str) -> usize {
    n.host
        .state()
        .calls
        .iter()
        .filter(|c| c.starts_with(prefix))
        .count()
}

fn deny_listed(n: &Node) -> bool {
    ok(&["deny-list", "list", "--state-dir", &n.state]).contains("44.3")
}

const RECORD: &str = r#"cat "$CAIRN_STAGED_ROOT/usr/lib/cairn-test-release" > "$CAIRN_BOOTED_ROOT/seen-release"
env | grep '^CAIRN_' | sort > "$CAIRN_BOOTED_ROOT/seen-env"
echo "checked the new tree""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_hook_runs_in_the_new_image_with_the_contracted_environment() {
    let w = world(&[
        ("10-record", RECORD),
        (
            "20-loud",
            "yes 'progress line' | head -c 5000000; echo done >&2",
        ),
    ])
    .await;
    let n = node(&w, "pass", "");
    // An operator hook (drain the node) runs only when the reboot is next.
    let operator = n.root.join("etc/cairn/hooks/pre-update.d");
    std::fs::create_dir_all(&operator).expect("mkdir");
    std::fs::write(
        operator.join("50-drain"),
        "#!/bin/sh\necho \"$CAIRN_TO_VERSION\" > \"$CAIRN_BOOTED_ROOT/drained\"\n",
    )
    .expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            operator.join("50-drain"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
    }
    // The booted tree has its own release file; the hook must see the new one.
    std::fs::create_dir_all(n.root.join("usr/lib")).expect("mkdir");
    std::fs::write(n.root.join("usr/lib/cairn-test-release"), "44.2 booted").expect("write");
    let out = run(&w, &n, &["agent", "--once"]);
    assert!(
        out.contains("staged 44.3; pre-update hooks passed"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(n.root.join("seen-release")).expect("hook ran"),
        format!("44.3 amd64 {NEW_CREATED}"),
        "the hook read the staged image's /usr"
    );
    let env = std::fs::read_to_string(n.root.join("seen-env")).expect("env");
    for expected in [
        "CAIRN_FROM_VERSION=44.2".to_string(),
        format!("CAIRN_FROM_DIGEST={}", w.old),
        "CAIRN_TO_VERSION=44.3".to_string(),
        format!("CAIRN_TO_DIGEST={}", w.new),
        "CAIRN_STREAM=stable".to_string(),
        format!("CAIRN_BOOTED_ROOT={}", n.root.display()),
    ] {
        assert!(env.lines().any(|l| l == expected), "{expected} in {env}");
    }
    assert!(
        !n.root.join("drained").exists(),
        "no drain without a reboot"
    );
    // The hooks passed once; the update goes on with no further hook run.
    std::fs::remove_file(n.root.join("seen-release")).expect("rm");
    let out = update_now_and_reboot(&w, &n, true).await;
    assert!(out.contains("rebooting into 44.3"), "{out}");
    assert!(
        !n.root.join("seen-release").exists(),
        "hooks do not run twice"
    );
    assert_eq!(
        std::fs::read_to_string(n.root.join("drained")).expect("drained before the reboot"),
        "44.3\n"
    );
    let out = run(&w, &n, &["verify"]);
    assert!(out.contains("updated to 44.3"), "{out}");
    assert_eq!(
        outcomes(&n),
        ["staged", "rebooting", "booted_healthy"],
        "{:?}",
        history(&n)
    );
    let last = &history(&n)[2];
    assert_eq!(last["from_version"], "44.2");
    assert_eq!(last["to_version"], "44.3");
    let text = ok(&["status", "--state-dir", &n.state, "--history"]);
    assert!(text.contains("44.2 -> 44.3  booted_healthy"), "{text}");
    let metrics =
        std::fs::read_to_string(Path::new(&n.state).join("metrics.prom")).expect("metrics");
    assert!(
        metrics.contains("cairn_agent_last_outcome{outcome=\"booted_healthy\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vetoing_hook_withdraws_the_update_and_says_why() {
    let w = world(&[(
        "10-check",
        r#"echo run >> "$CAIRN_BOOTED_ROOT/runs"; echo 'checking /boot' >&2; echo 'needs 300 MiB free on /boot' >&2; exit 1"#,
    )])
    .await;
    let n = node(&w, "veto", "");
    let out = run(&w, &n, &["agent", "--once"]);
    assert!(
        out.contains("pre-update hook image:10-check vetoed 44.3: needs 300 MiB free on /boot; retrying after"),
        "{out}"
    );
    let status: Value =
        serde_json::from_str(&ok(&["status", "--state-dir", &n.state, "--json"])).expect("JSON");
    assert_eq!(status["hookVeto"]["hook"], "image:10-check");
    assert_eq!(status["hookVeto"]["version"], "44.3");
    assert_eq!(status["reason"]["kind"], "hook_veto", "{status}");
    let metrics =
        std::fs::read_to_string(Path::new(&n.state).join("metrics.prom")).expect("metrics");
    assert!(
        metrics.contains("cairn_agent_hook_veto{hook=\"image:10-check\"} 1"),
        "{metrics}"
    );
    assert_eq!(outcomes(&n), ["staged", "hook_veto"]);
    // Within the backoff, nothing is staged again and the hook does not rerun.
    let out = run(&w, &n, &["agent", "--once"]);
    assert!(out.contains("retrying after"), "{out}");
    assert_eq!(
        std::fs::read_to_string(n.root.join("runs")).expect("runs"),
        "run\n"
    );
    assert_eq!(calls(&n, "upgrade --from-downloaded --apply"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_hooks_are_not_run_unconfined_unless_allowed() {
    let w = world(&[("10-check", r#"echo run >> "$CAIRN_BOOTED_ROOT/runs""#)]).await;
    let n = node(&w, "confined", "");
    std::fs::remove_file(n.root.join("etc/cairn/config.d").join(UNCONFINED_FRAGMENT))
        .expect("remove");
    let out = run(&w, &n, &["agent", "--once"]);
    assert!(
        out.contains("pre-update hook image:10-check vetoed 44.3: not run: systemd is not PID 1"),
        "{out}"
    );
    let status: Value =
        serde_json::from_str(&ok(&["status", "--state-dir", &n.state, "--json"])).expect("JSON");
    assert_eq!(status["hookVeto"]["hook"], "image:10-check", "{status}");
    assert!(
        status["hookVeto"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("hooks.allow_unconfined = true")),
        "{status}"
    );
    assert!(!n.root.join("runs").exists(), "the hook never ran");
    assert_eq!(outcomes(&n), ["staged", "hook_veto"]);
    assert_eq!(calls(&n, "upgrade --from-downloaded --apply"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_hook_is_killed_at_the_timeout() {
    let w = world(&[("10-hang", "sleep 120")]).await;
    let n = node(&w, "hang", "[hooks]\ntimeout_seconds = 1\n");
    let started = std::time::Instant::now();
    let out = run(&w, &n, &["agent", "--once"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert!(out.contains("timed out after 1s and was killed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_during_the_hooks_runs_them_again_after_restart() {
    // The first run kills its parent, the agent, as a crash would.
    let w = world(&[(
        "10-once",
        r#"if [ ! -e "$CAIRN_BOOTED_ROOT/crashed" ]; then touch "$CAIRN_BOOTED_ROOT/crashed"; kill -9 $PPID; sleep 5; fi
echo run >> "$CAIRN_BOOTED_ROOT/runs""#,
    )])
    .await;
    let n = node(&w, "crash", "");
    let crashed = command(&w, &n, &["agent", "--once"]).output();
    assert!(!crashed.status.success(), "the agent was killed");
    assert_eq!(
        n.host.state().staged.map(|s| s.digest).as_deref(),
        Some(w.new.as_str())
    );
    let out = run(&w, &n, &["agent", "--once"]);
    assert!(
        out.contains("staged 44.3; pre-update hooks passed"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(n.root.join("runs")).expect("runs"),
        "run\n"
    );
    assert_eq!(
        calls(&n, "switch --download-only"),
        1,
        "staged once: {:?}",
        n.host.state().calls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_boot_is_recorded_and_deny_listed() {
    let w = world(&[]).await;
    let n = node(&w, "failed-boot", "[health]\nrollback_on_failure = true\n");
    update_now_and_reboot(&w, &n, false).await;
    let out = run(&w, &n, &["verify"]);
    assert!(out.contains("rolled back from 44.3"), "{out}");
    assert!(deny_listed(&n));
    assert_eq!(outcomes(&n), ["staged", "rebooting", "boot_failed"]);
    assert_eq!(
        calls(&n, "rollback"),
        0,
        "the host is already on the old release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_roll_back_when_configured_and_only_once() {
    let w = world(&[]).await;
    let n = node(
        &w,
        "unhealthy-rollback",
        "[health]\nrollback_on_failure = true\n",
    );
    update_now_and_reboot(&w, &n, true).await;
    n.systemctl.boot(true, None);
    let child = command(&w, &n, &["verify"]).spawn();
    n.host.wait_for_apply().await;
    assert_eq!(calls(&n, "rollback --apply"), 1);
    let out = n.host.reboot_under(child, true).await;
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("failed its health checks (health-check.service failed, so boot-complete.target was not reached); rolling back"),
        "{out}"
    );
    assert_eq!(
        n.host.state().booted.map(|b| b.digest).as_deref(),
        Some(w.old.as_str())
    );
    // Back on the old release: recorded, deny-listed, never a second rollback.
    let out = run(&w, &n, &["verify"]);
    assert!(out.contains("rolled back from 44.3"), "{out}");
    assert_eq!(calls(&n, "rollback --apply"), 1);
    assert!(deny_listed(&n));
    assert_eq!(
        outcomes(&n),
        ["staged", "rebooting", "rolling_back", "rolled_back"]
    );
    let text = ok(&["status", "--state-dir", &n.state, "--history"]);
    assert!(
        text.lines().next().is_some_and(|l| l.contains(
            "44.2 -> 44.3  rolled_back: health checks failed (health-check.service failed"
        )),
        "the newest line is the final outcome: {text}"
    );
    let out = run(&w, &n, &["agent", "--once"]);
    assert!(
        !out.contains("staged 44.3"),
        "a rolled-back release is not offered again: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_are_reported_when_rollback_is_off() {
    let w = world(&[]).await;
    let n = node(&w, "unhealthy-report", "");
    update_now_and_reboot(&w, &n, true).await;
    n.systemctl.boot(true, None);
    let out = run(&w, &n, &["verify"]);
    assert!(
        out.contains("booted 44.3 but its health checks failed (health-check.service failed, so boot-complete.target was not reached); it is deny-listed; health.rollback_on_failure is off"),
        "{out}"
    );
    assert_eq!(calls(&n, "rollback"), 0);
    assert_eq!(outcomes(&n), ["staged", "rebooting", "booted_unhealthy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_greenboot_rolled_back_first_the_agent_does_not_roll_back_again() {
    let w = world(&[]).await;
    let n = node(&w, "greenboot", "[health]\nrollback_on_failure = true\n");
    // greenboot's checks failed and it already booted the old release.
    update_now_and_reboot(&w, &n, false).await;
    n.systemctl.boot(false, Some(true));
    let out = run(&w, &n, &["verify"]);
    assert!(out.contains("rolled back from 44.3"), "{out}");
    assert_eq!(calls(&n, "rollback"), 0, "no second rollback");
    assert!(deny_listed(&n));
    assert_eq!(outcomes(&n), ["staged", "rebooting", "boot_failed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_fails_ends_the_attempt_and_the_host_stays() {
    let w = world(&[]).await;
    let n = node(
        &w,
        "rollback-fails",
        "[health]\nrollback_on_failure = true\n",
    );
    update_now_and_reboot(&w, &n, true).await;
    n.systemctl.boot(true, None);
    n.host.fail(
        "rollback",
        "Rollback: acquiring the sysroot lock: timed out",
    );
    let out = run(&w, &n, &["verify"]);
    assert!(
        out.contains("the rollback failed (") && out.contains("acquiring the sysroot lock"),
        "{out}"
    );
    assert_eq!(calls(&n, "rollback --apply"), 1);
    assert_eq!(
        n.host.state().booted.map(|b| b.digest).as_deref(),
        Some(w.new.as_str()),
        "still on the target"
    );
    assert!(deny_listed(&n));
    assert_eq!(
        outcomes(&n),
        ["staged", "rebooting", "rolling_back", "rollback_failed"]
    );
    // Settled: the next pass neither rolls back again nor records anything.
    let out = run(&w, &n, &["verify"]);
    assert!(out.contains("State:      steady"), "{out}");
    assert_eq!(calls(&n, "rollback --apply"), 1);
    assert_eq!(outcomes(&n).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_nothing_can_judge_is_recorded_as_unverified() {
    let w = world(&[]).await;
    let n = node(&w, "unverified", "");
    update_now_and_reboot(&w, &n, true).await;
    n.systemctl.no_health_checks();
    let out = run(&w, &n, &["verify"]);
    assert!(
        out.contains("updated to 44.3; the boot is unverified"),
        "{out}"
    );
    assert_eq!(outcomes(&n), ["staged", "rebooting", "booted_unverified"]);
    assert!(!deny_listed(&n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_systemctl_that_does_not_answer_keeps_the_boot_waiting() {
    let w = world(&[]).await;
    let n = node(&w, "systemctl-down", "");
    update_now_and_reboot(&w, &n, true).await;
    n.systemctl.flag("down", true);
    // The updater check would refuse to go on without an answer; the boot
    // is judged all the same.
    let out = run(&w, &n, &["agent", "--once", "--no-updater-check"]);
    assert!(
        out.contains("verifying 44.3: waiting for boot-complete.target; systemctl did not answer")
            && out.contains("Failed to connect to bus"),
        "{out}"
    );
    assert_eq!(outcomes_so_far(&n), ["staged", "rebooting"]);
    n.systemctl.flag("down", false);
    let out = run(&w, &n, &["verify"]);
    assert!(out.contains("updated to 44.3"), "{out}");
    assert_eq!(outcomes(&n), ["staged", "rebooting", "booted_healthy"]);

    // The wait is bounded: at health.timeout_seconds the boot counts as
    // failed, and the reason says systemctl never answered.
    let n = node(&w, "systemctl-gone", "[health]\ntimeout_seconds = 1\n");
    update_now_and_reboot(&w, &n, true).await;
    n.systemctl.flag("down", true);
    let out = run(&w, &n, &["verify", "--no-updater-check"]);
    assert!(
        out.contains("its health checks failed (systemctl did not answer within 1 s"),
        "{out}"
    );
    assert_eq!(outcomes(&n), ["staged", "rebooting", "booted_unhealthy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_the_updater_check_still_judges_the_boot() {
    let w = world(&[]).await;
    let n = node(&w, "no-updater-check", "");
    update_now_and_reboot(&w, &n, true).await;
    n.systemctl.boot(true, None);
    let out = run(&w, &n, &["verify", "--no-updater-check"]);
    assert!(
        out.contains("booted 44.3 but its health checks failed (health-check.service failed"),
        "{out}"
    );
    assert_eq!(outcomes(&n), ["staged", "rebooting", "booted_unhealthy"]);
    assert!(deny_listed(&n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_systemd_records_its_boots_as_unverified() {
    let w = world(&[]).await;
    // The stand-in systemctl would report a failed check: it must not be asked.
    let flag = node(&w, "no-systemd-flag", "");
    let key = node(&w, "no-systemd-key", "[host]\nsystemd = false\n");
    for (n, extra) in [(&flag, Some("--no-systemd")), (&key, None)] {
        update_now_and_reboot(&w, n, true).await;
        n.systemctl.boot(true, None);
        let mut verb = vec!["verify"];
        verb.extend(extra);
        let out = run(&w, n, &verb);
        assert!(
            out.contains("updated to 44.3; the boot is unverified"),
            "{out}"
        );
        assert!(
            out.contains("Outcome:    booted_unverified (newest attempt, 44.3)"),
            "{out}"
        );
        assert_eq!(outcomes(n), ["staged", "rebooting", "booted_unverified"]);
        assert!(!deny_listed(n));
        let status: Value =
            serde_json::from_str(&ok(&["status", "--state-dir", &n.state, "--json"]))
                .expect("JSON");
        assert_eq!(
            status["lastOutcome"]["outcome"], "booted_unverified",
            "{status}"
        );
        assert_eq!(status["lastOutcome"]["version"], "44.3", "{status}");
        let metrics =
            std::fs::read_to_string(Path::new(&n.state).join("metrics.prom")).expect("metrics");
        assert!(
            metrics.contains("cairn_agent_last_outcome{outcome=\"booted_unverified\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("cairn_agent_last_outcome{outcome=\"booted_healthy\"} 0"),
            "{metrics}"
        );
    }
}
