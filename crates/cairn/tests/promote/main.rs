//! `cairn promote` against a real registry, with a stand-in bootc host that
//! follows a wave tag with no agent (`bootc switch` to the wave, then the
//! stock `bootc upgrade --apply` timer).

#[path = "../common/mod.rs"]
mod common;
use common::ok;
use common::publish::Publish;

use cairn_testkit::host::{FakeHost, Upgraded};
use cairn_testkit::{Auth, TestRegistry, write_release};
use serde_json::Value;
use std::process::Output;

// Each file is one group of the scenarios.
mod bad_releases;
mod mirror;
mod waves;

struct World {
    registry: TestRegistry,
    dir: tempfile::TempDir,
    repository: String,
}

impl World {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn document(&self) -> String {
        format!("{}:cairn-graph-stable", self.repository)
    }

    /// Publish the repository's releases, signed, with the policy.
    fn publish(&self) {
        let mut publish = Publish::signed(&self.repository, self.path("team.key"))
            .insecure_registry(&self.registry.host)
            .cache(self.path("cache.json"));
        if std::path::Path::new(&self.path("updates.json")).exists() {
            publish = publish.policy(self.path("updates.json"));
        }
        publish.run();
    }

    fn policy(&self, args: &[&str]) {
        let policy = self.path("updates.json");
        let mut all = vec!["policy", "--policy", &policy, "--stream", "stable"];
        all.extend_from_slice(args);
        ok(&all);
    }

    /// Make `version` a barrier in the release policy.
    fn barrier(&self, version: &str) {
        self.policy(&[
            "barrier",
            "add",
            version,
            "--reason",
            "https://example.org/migrate",
        ]);
    }

    /// A stand-in bootc host, booted on image `digest` of `version`, that
    /// follows `stable-early` with bootc's own timer.
    fn early_host(&self, digest: &str, version: &str) -> FakeHost {
        FakeHost::new(
            &self.dir.path().join("host"),
            "1.17.0",
            &format!("{}:stable-early", self.repository),
            (digest, version),
            std::slice::from_ref(&self.registry.host),
            false,
        )
    }

    /// `cairn promote` with the early and late waves, at `now`.
    fn promote(&self, now: jiff::Timestamp, extra: &[&str]) -> Output {
        self.promote_waves(now, &["stable-early=0.3", "stable-late=1.0"], extra)
    }

    /// `cairn promote --json` with `waves` (each `TAG=WARINESS`), at `now`,
    /// trusting the team key.
    fn promote_waves(&self, now: jiff::Timestamp, waves: &[&str], extra: &[&str]) -> Output {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        self.promote_waves_raw(now, waves, &args)
    }

    /// `cairn promote` with `waves` at `now`, trusting the team key, with
    /// `extra` (no `--json` unless given).
    fn promote_waves_raw(&self, now: jiff::Timestamp, waves: &[&str], extra: &[&str]) -> Output {
        let key = self.path("team.pub");
        let now = now.to_string();
        let document = self.document();
        let mut args = vec![
            "promote",
            &document,
            "--key",
            &key,
            "--insecure-registry",
            &self.registry.host,
            "--now",
            &now,
        ];
        for wave in waves {
            args.extend_from_slice(&["--wave", wave]);
        }
        args.extend_from_slice(extra);
        common::cairn(&args)
    }

    fn promoted(&self, now: jiff::Timestamp) -> Value {
        let out = self.promote(now, &[]);
        assert!(
            out.status.success(),
            "promote failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("--json prints JSON")
    }
}

/// `cairn promote --dry-run` for both waves at `now`, which must succeed.
fn dry_run(w: &World, now: jiff::Timestamp, extra: &[&str]) -> Output {
    let mut args = vec!["--dry-run"];
    args.extend_from_slice(extra);
    let out = w.promote_waves_raw(now, &["stable-early=0.3", "stable-late=1.0"], &args);
    assert!(
        out.status.success(),
        "dry run failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dry run: no image copied, no state written, no tag moved"),
        "{stderr}"
    );
    out
}

fn dry_run_plan(w: &World, now: jiff::Timestamp, extra: &[&str]) -> Value {
    serde_json::from_slice(&dry_run(w, now, extra).stdout).expect("--json prints JSON")
}

fn dry_run_text(w: &World, now: jiff::Timestamp, extra: &[&str]) -> String {
    String::from_utf8_lossy(&dry_run(w, now, extra).stdout).into_owned()
}

/// The wave's planned action in `plan`: its `action` and the version it
/// moves to, if any.
fn action(plan: &Value, tag: &str) -> (String, Option<String>) {
    let wave = plan["waves"]
        .as_array()
        .and_then(|waves| waves.iter().find(|w| w["tag"] == tag))
        .unwrap_or_else(|| panic!("no wave {tag} in {plan}"));
    let action = &wave["action"];
    (
        action["action"].as_str().unwrap_or_default().to_string(),
        action["to"].as_str().map(str::to_string),
    )
}

async fn world() -> World {
    let registry = TestRegistry::start(Auth::None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let repository = format!("{}/acme/os", registry.host);
    let w = World {
        registry,
        dir,
        repository,
    };
    ok(&["document", "keygen", "--output", &w.path("team")]);
    w
}

/// The end-to-end run: a host following `stable-early` with bootc's
/// own timer passes through the barrier, never lands on the dead-end and
/// ends on the newest release; the barrier holds the wave for the dwell; a
/// run with nothing due writes nothing; the late wave follows the same path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_following_a_wave_passes_the_barrier_and_skips_the_dead_end() {
    let w = world().await;
    let store = w.registry.store("acme/os");
    let (_, first) = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    w.publish();
    let start = jiff::Timestamp::now();

    // First run: both waves start at the one release offered to everyone.
    let plan = w.promoted(start);
    assert_eq!(
        action(&plan, "stable-early"),
        ("start".into(), Some("44.1".into()))
    );
    assert_eq!(
        action(&plan, "stable-late"),
        ("start".into(), Some("44.1".into()))
    );

    let host = w.early_host(&first[0].manifest, "44.1");
    assert_eq!(host.timer_run().await, Upgraded::NoUpdate);

    // The barrier, a plain release, a dead-end and the newest.
    for (version, created) in [
        ("44.2", "2026-02-01T00:00:00Z"),
        ("44.3", "2026-03-01T00:00:00Z"),
        ("44.4", "2026-04-01T00:00:00Z"),
        ("44.5", "2026-05-01T00:00:00Z"),
    ] {
        write_release(&store, version, created, &[version]).await;
    }
    w.barrier("44.2");
    w.policy(&["deadend", "add", "44.4", "--reason", "broken kernel"]);
    w.publish();

    // The dry run says what the run would do, and writes nothing.
    let writes = w.registry.write_requests();
    let early_before = store.resolve("stable-early").await.expect("resolves");
    let plan = dry_run_plan(&w, start, &["--json"]);
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("44.2".into()))
    );
    assert_eq!(plan["requests"]["writes"], 0, "{plan}");
    let text = dry_run_text(&w, start + jiff::SignedDuration::from_hours(1), &[]);
    assert!(
        text.contains("stable-early: at 44.1, moves to 44.2"),
        "{text}"
    );
    assert_eq!(w.registry.write_requests(), writes, "a dry run wrote");
    assert_eq!(
        store.resolve("stable-early").await.expect("resolves"),
        early_before
    );

    // One step: onto the barrier, not past it.
    let plan = w.promoted(start);
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("44.2".into()))
    );
    match host.timer_run().await {
        Upgraded::Rebooted { version, .. } => assert_eq!(version.as_deref(), Some("44.2")),
        other => panic!("the host did not boot the barrier: {other:?}"),
    }

    // The barrier holds the wave for the dwell; a run with nothing due
    // writes nothing.
    let writes = w.registry.write_requests();
    let plan = w.promoted(start + jiff::SignedDuration::from_hours(24));
    assert_eq!(action(&plan, "stable-early").0, "wait", "{plan}");
    assert_eq!(plan["requests"]["writes"], 0, "{plan}");
    assert_eq!(
        w.registry.write_requests(),
        writes,
        "a run with nothing due wrote"
    );

    // The dry run gives the wait's reason and its end.
    let text = dry_run_text(&w, start + jiff::SignedDuration::from_hours(24), &[]);
    let until = start + jiff::SignedDuration::from_hours(7 * 24);
    assert!(
        text.contains(&format!(
            "stable-early: at 44.2 (barrier), waits for the barrier dwell until {until}, then moves to 44.5"
        )),
        "{text}"
    );

    // After the dwell: past the barrier to the newest release, never the
    // dead-end.
    let later = start + jiff::SignedDuration::from_hours(8 * 24);
    let plan = w.promoted(later);
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("44.5".into()))
    );
    assert_eq!(
        action(&plan, "stable-late"),
        ("move".into(), Some("44.5".into())),
        "{plan}"
    );
    match host.timer_run().await {
        Upgraded::Rebooted { version, .. } => assert_eq!(version.as_deref(), Some("44.5")),
        other => panic!("the host did not boot the newest release: {other:?}"),
    }
    let plan = w.promoted(later);
    assert_eq!(action(&plan, "stable-early").0, "stay", "{plan}");
    assert_eq!(host.timer_run().await, Upgraded::NoUpdate);

    // The state's audit records every move of the early wave, in order,
    // and none to the dead-end.
    let (state, _) = cairn_oci::promote::read_state(&store)
        .await
        .expect("the promote state");
    let early: Vec<(Option<String>, String)> = state
        .audit
        .iter()
        .filter(|entry| entry.tag == "stable-early")
        .map(|entry| (entry.from.clone(), entry.to.clone()))
        .collect();
    assert_eq!(
        early,
        vec![
            (None, "44.1".to_string()),
            (Some("44.1".to_string()), "44.2".to_string()),
            (Some("44.2".to_string()), "44.5".to_string()),
        ]
    );
    assert!(state.audit.iter().all(|entry| entry.to != "44.4"));
}

/// Refusals: no key, a document signed by another key, and a wave tag the
/// build pushes.
#[tokio::test]
async fn promote_refuses_an_unverified_document_and_build_tags() {
    let w = world().await;
    let store = w.registry.store("acme/os");
    write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1", "stable"]).await;
    w.publish();
    let now = jiff::Timestamp::now().to_string();

    let document = w.document();
    let out = common::cairn(&[
        "promote",
        &document,
        "--insecure-registry",
        &w.registry.host,
        "--wave",
        "stable-early=0.3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no --key or --root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    ok(&["document", "keygen", "--output", &w.path("stranger")]);
    let stranger = w.path("stranger.pub");
    let out = common::cairn(&[
        "promote",
        &document,
        "--key",
        &stranger,
        "--insecure-registry",
        &w.registry.host,
        "--wave",
        "stable-early=0.3",
        "--now",
        &now,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = w.path("team.pub");
    for wave in ["stable=0.3", "cairn-early=0.3", "44.1=0.3"] {
        let out = common::cairn(&[
            "promote",
            &document,
            "--key",
            &key,
            "--insecure-registry",
            &w.registry.host,
            "--wave",
            wave,
            "--now",
            &now,
        ]);
        assert!(!out.status.success(), "--wave {wave} was taken");
    }
    // Nothing was written by any refused run.
    let state = cairn_oci::promote::read_state(&store).await.expect("reads");
    assert!(state.1.is_none(), "a refused run wrote the promote state");
}
