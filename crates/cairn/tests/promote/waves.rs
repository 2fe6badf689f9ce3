//! Waves against real registries: a phased rollout reaches the canary
//! first and the late wave last; a derived graph's base barrier holds a
//! wave; a concurrent writer ends a run with a conflict, and the rerun
//! restarts the dwell rather than skip it; what a run costs in requests.

use super::{World, action, world};
use cairn_testkit::{Base, Recorded, write_derived_release, write_release};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const THREE_WAVES: [&str; 3] = ["stable-canary=0.05", "stable-early=0.3", "stable-late=1.0"];

/// Now, to the second: rollouts and `--now` count whole seconds.
fn now_seconds() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("a time")
}

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

/// The run's JSON plan, requiring exit code 0.
fn plan_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "promote failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

fn run(w: &World, now: Timestamp, waves: &[&str]) -> Value {
    plan_of(&w.promote_waves(now, waves, &[]))
}

/// The wave's `action.why` object in `plan`.
fn why<'a>(plan: &'a Value, tag: &str) -> &'a Value {
    plan["waves"]
        .as_array()
        .and_then(|waves| waves.iter().find(|w| w["tag"] == tag))
        .map(|wave| &wave["action"]["why"])
        .unwrap_or_else(|| panic!("no wave {tag} in {plan}"))
}

fn time_in(value: &Value, field: &str) -> Timestamp {
    value[field]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("no time in {field} of {value}"))
}

/// A wave that stays because the rollout of `version` has not reached it;
/// returns when the plan says it will.
fn held_by_rollout(plan: &Value, tag: &str, version: &str) -> Timestamp {
    assert_eq!(action(plan, tag), ("stay".into(), None), "{plan}");
    let why = why(plan, tag);
    assert_eq!(why["kind"], "rollout", "{tag}: {plan}");
    assert_eq!(why["version"], version, "{tag}: {plan}");
    let wariness = plan["waves"]
        .as_array()
        .and_then(|waves| waves.iter().find(|w| w["tag"] == tag))
        .and_then(|wave| wave["wariness"].as_f64())
        .expect("wariness");
    let progress = why["progress"].as_f64().expect("progress");
    assert!(progress < wariness, "{tag}: {progress} reached {wariness}");
    time_in(why, "reaches")
}

/// Canary, then early, then late, each exactly when the rollout reaches
/// its wariness, and each held until then with the time it will move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phased_rollout_reaches_the_canary_first_and_the_late_wave_last() {
    let w = world().await;
    let store = w.registry.store("acme/os");
    write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    w.publish();
    let start = now_seconds();
    let plan = run(&w, start, &THREE_WAVES);
    for tag in ["stable-canary", "stable-early", "stable-late"] {
        assert_eq!(
            action(&plan, tag),
            ("start".into(), Some("44.1".into())),
            "{plan}"
        );
    }

    // 44.2 rolls out from 5% over two days, starting a minute from now.
    let rollout = start + SignedDuration::from_mins(1);
    write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    let at = rollout.to_string();
    w.policy(&[
        "rollout", "start", "44.2", "--over", "2d", "--from", "5%", "--at", &at,
    ]);
    w.publish();

    // Before the rollout starts, nobody moves.
    let plan = run(&w, start + SignedDuration::from_secs(30), &THREE_WAVES);
    assert_eq!(
        held_by_rollout(&plan, "stable-canary", "44.2"),
        rollout,
        "the rollout starts at 5%, the canary's wariness: {plan}"
    );
    for tag in ["stable-early", "stable-late"] {
        assert!(
            held_by_rollout(&plan, tag, "44.2") > rollout,
            "{tag}: {plan}"
        );
    }

    // Early in the rollout only the canary moves.
    let plan = run(&w, rollout + SignedDuration::from_mins(1), &THREE_WAVES);
    assert_eq!(
        action(&plan, "stable-canary"),
        ("move".into(), Some("44.2".into())),
        "{plan}"
    );
    let early_at = held_by_rollout(&plan, "stable-early", "44.2");
    let late_at = held_by_rollout(&plan, "stable-late", "44.2");
    // 5% → 30% of a 48 h line takes 0.25 / 0.95 of it, about 12.6 h.
    assert!(
        early_at > rollout + hours(12) && early_at < rollout + hours(13),
        "{early_at}"
    );
    // The late wave (wariness 1.0) only once the rollout completes.
    assert!(
        late_at >= rollout + hours(48)
            && late_at <= rollout + hours(48) + SignedDuration::from_mins(1),
        "{late_at}"
    );

    // One second before the early wave's time it still stays; at it, it moves.
    let plan = run(&w, early_at - SignedDuration::from_secs(1), &THREE_WAVES);
    assert_eq!(held_by_rollout(&plan, "stable-early", "44.2"), early_at);
    assert_eq!(
        action(&plan, "stable-canary"),
        ("stay".into(), None),
        "{plan}"
    );
    assert_eq!(why(&plan, "stable-canary")["kind"], "up_to_date", "{plan}");
    let plan = run(&w, early_at, &THREE_WAVES);
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("44.2".into())),
        "{plan}"
    );
    assert_eq!(held_by_rollout(&plan, "stable-late", "44.2"), late_at);

    // The late wave waits for the rollout's end, not a second less.
    let plan = run(&w, late_at - SignedDuration::from_secs(1), &THREE_WAVES);
    assert_eq!(held_by_rollout(&plan, "stable-late", "44.2"), late_at);
    let plan = run(&w, late_at, &THREE_WAVES);
    assert_eq!(
        action(&plan, "stable-late"),
        ("move".into(), Some("44.2".into())),
        "{plan}"
    );
    for tag in ["stable-canary", "stable-early"] {
        assert_eq!(action(&plan, tag), ("stay".into(), None), "{plan}");
    }

    // The audit: each wave reached 44.2 once, in wave order, at its time.
    let (state, _) = cairn_oci::promote::read_state(&store)
        .await
        .expect("the promote state");
    let onto: Vec<(String, Timestamp)> = state
        .audit
        .iter()
        .filter(|entry| entry.to == "44.2")
        .map(|entry| (entry.tag.clone(), entry.time))
        .collect();
    assert_eq!(
        onto,
        vec![
            (
                "stable-canary".to_string(),
                rollout + SignedDuration::from_mins(1)
            ),
            ("stable-early".to_string(), early_at),
            ("stable-late".to_string(), late_at),
        ]
    );
    let index = store
        .resolve("44.2")
        .await
        .expect("resolves")
        .map(|h| h.digest);
    for tag in ["stable-canary", "stable-early", "stable-late"] {
        let at = store
            .resolve(tag)
            .await
            .expect("resolves")
            .map(|h| h.digest);
        assert_eq!(at, index, "{tag} does not point at 44.2's index");
    }
}

/// A derived repository's waves never cross a base barrier: with no image
/// built on it they stay, then they stop on the image built on it (which
/// inherits the barrier) for the whole barrier dwell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_wave_stops_on_the_release_built_on_a_base_barrier() {
    let w = world().await;
    let host = w.registry.host.clone();
    let w = World {
        repository: format!("{host}/acme/derived"),
        ..w
    };
    // The base stream: 40.2 is a barrier.
    let base_store = w.registry.store("fedora/fedora-coreos");
    let mut base_manifests = Vec::new();
    for (version, created, tags) in [
        ("40.1", "2026-01-01T00:00:00Z", vec!["40.1"]),
        ("40.2", "2026-01-15T00:00:00Z", vec!["40.2"]),
        ("40.3", "2026-02-01T00:00:00Z", vec!["40.3", "stable"]),
    ] {
        let (_, written) = write_release(&base_store, version, created, &tags).await;
        base_manifests.push((
            version,
            created,
            written[0].manifest.clone(),
            written[1].manifest.clone(),
        ));
    }
    let base_repo = format!("{host}/fedora/fedora-coreos");
    let base_policy = w.path("base-updates.json");
    super::ok(&[
        "policy",
        "--policy",
        &base_policy,
        "--stream",
        "stable",
        "barrier",
        "add",
        "40.2",
        "--reason",
        "https://example.org/migrate-bootloader",
    ]);
    super::ok(&["document", "keygen", "--output", &w.path("base")]);
    super::Publish::signed(&base_repo, w.path("base.key"))
        .policy(&base_policy)
        .insecure_registry(&host)
        .cache(w.path("base-cache.json"))
        .run();

    let store = w.registry.store("acme/derived");
    let base_name = format!("{base_repo}:stable");
    let derive = |own: &'static str, on: usize, created: &'static str| {
        let (version, base_created, amd64, arm64) = base_manifests[on].clone();
        let store = store.clone();
        let name = base_name.clone();
        async move {
            let base = Base {
                name: &name,
                version,
                created: base_created,
                recorded: Recorded::Manifests(amd64, arm64),
            };
            write_derived_release(&store, &base, own, created, &[own]).await;
        }
    };
    let publish_derived = || {
        super::Publish::signed(&w.repository, w.path("team.key"))
            .insecure_registry(&host)
            .cache(w.path("derived-cache.json"))
            .args([
                "--base-graph".to_string(),
                format!("{base_repo}:cairn-graph-stable"),
                "--base-key".to_string(),
                w.path("base.pub"),
            ])
            .run()
    };
    let waves = ["stable-early=0.3"];

    // The wave starts on d1, built on 40.1.
    derive("d1", 0, "2026-01-03T00:00:00Z").await;
    publish_derived();
    let start = now_seconds();
    let plan = run(&w, start, &waves);
    assert_eq!(
        action(&plan, "stable-early"),
        ("start".into(), Some("d1".into())),
        "{plan}"
    );

    // d3 is built on 40.3, past the base barrier, and nothing on 40.2: the
    // wave stays, naming the base barrier.
    derive("d3", 2, "2026-02-03T00:00:00Z").await;
    publish_derived();
    let plan = run(&w, start + hours(1), &waves);
    assert_eq!(
        action(&plan, "stable-early"),
        ("stay".into(), None),
        "{plan}"
    );
    let held = why(&plan, "stable-early");
    assert_eq!(held["kind"], "base_barrier", "{plan}");
    assert_eq!(held["version"], "d3", "{plan}");
    assert_eq!(held["base_version"], "40.2", "{plan}");

    // An image on the barrier, built late: the wave moves onto it, not past it.
    derive("d2", 1, "2026-03-05T00:00:00Z").await;
    publish_derived();
    let arrived = start + hours(2);
    let plan = run(&w, arrived, &waves);
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("d2".into())),
        "{plan}"
    );

    // It holds there for the barrier dwell, then moves on.
    let dwell_end = arrived + hours(7 * 24);
    let plan = run(&w, dwell_end - SignedDuration::from_secs(1), &waves);
    let wave = &plan["waves"][0];
    assert_eq!(wave["at"], "d2", "{plan}");
    assert_eq!(
        wave["at_barrier"], true,
        "d2 inherits 40.2's barrier: {plan}"
    );
    assert_eq!(
        action(&plan, "stable-early"),
        ("wait".into(), None),
        "{plan}"
    );
    let waiting = why(&plan, "stable-early");
    assert_eq!(waiting["kind"], "barrier_dwell", "{plan}");
    assert_eq!(time_in(waiting, "until"), dwell_end, "{plan}");
    assert_eq!(waiting["then"], "d3", "{plan}");
    let plan = run(&w, dwell_end, &waves);
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("d3".into())),
        "{plan}"
    );
}

/// `cairn promote --json` with `waves` at `now`, as a child process, with
/// a settle window of five seconds: room for the other writer's PUT on a
/// loaded machine.
fn spawn_promote(w: &World, now: Timestamp, waves: &[&str]) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command.args([
        "promote".to_string(),
        w.document(),
        "--key".to_string(),
        w.path("team.pub"),
        "--insecure-registry".to_string(),
        w.registry.host.clone(),
        "--now".to_string(),
        now.to_string(),
        "--settle".to_string(),
        "5s".to_string(),
        "--json".to_string(),
    ]);
    for wave in waves {
        command.args(["--wave", wave]);
    }
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn starts")
}

fn tag_puts(w: &World, tag: &str) -> usize {
    let suffix = format!("/manifests/{tag}");
    w.registry
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.uri.ends_with(&suffix))
        .count()
}

/// Another writer re-points the wave tag inside the run's settle window:
/// the run exits 3 naming the tag, its state already records the move, and
/// the rerun takes the wave back onto the barrier with the dwell counted
/// from the rerun, never from the first run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_writer_ends_the_run_with_a_conflict_and_the_dwell_restarts() {
    let w = world().await;
    let store = w.registry.store("acme/os");
    let (first_index, _) = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    w.publish();
    let waves = ["stable-early=0.3"];
    let start = now_seconds();
    let plan = run(&w, start, &waves);
    assert_eq!(
        action(&plan, "stable-early"),
        ("start".into(), Some("44.1".into())),
        "{plan}"
    );
    for (version, created) in [
        ("44.2", "2026-02-01T00:00:00Z"),
        ("44.3", "2026-03-01T00:00:00Z"),
    ] {
        write_release(&store, version, created, &[version]).await;
    }
    w.barrier("44.2");
    w.publish();
    let barrier_index = store
        .resolve("44.2")
        .await
        .expect("resolves")
        .map(|h| h.digest)
        .expect("44.2 is tagged");
    // What the other writer pushes, fetched ahead so its PUT is quick.
    let other = store
        .get_manifest(&first_index)
        .await
        .expect("44.1's index");

    // The run moves stable-early onto the barrier; the other writer puts
    // 44.1 back as soon as the run's PUT is in, before the run re-checks.
    let moved = start + hours(1);
    let puts = tag_puts(&w, "stable-early");
    let mut child = spawn_promote(&w, moved, &waves);
    let deadline = Instant::now() + Duration::from_secs(60);
    while tag_puts(&w, "stable-early") == puts {
        std::thread::sleep(Duration::from_millis(10));
        if let Some(status) = child.try_wait().expect("the child") {
            panic!("promote ended ({status}) before it moved stable-early");
        }
        assert!(
            Instant::now() < deadline,
            "promote never moved stable-early"
        );
    }
    store
        .put_manifest(other.bytes.clone(), &other.media_type, Some("stable-early"))
        .await
        .expect("the other writer's PUT");
    let out = child.wait_with_output().expect("the child ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("conflict: stable-early") && stderr.contains(&first_index),
        "the conflict names the tag and what it found: {stderr}"
    );
    let tagged = store.resolve("stable-early").await.expect("resolves");
    assert_eq!(tagged.map(|h| h.digest), Some(first_index.clone()));
    // The state was written before the tag: it records the move.
    let (state, _) = cairn_oci::promote::read_state(&store)
        .await
        .expect("the promote state");
    let recorded = &state.waves["stable-early"];
    assert_eq!(
        (recorded.version.as_str(), recorded.arrived),
        ("44.2", moved)
    );

    // The rerun finds the wave on 44.1, counts it as arrived now, and moves
    // it back onto the barrier at the rerun's time.
    let rerun = moved + hours(1);
    let plan = run(&w, rerun, &waves);
    assert_eq!(plan["waves"][0]["at"], "44.1", "{plan}");
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("44.2".into())),
        "{plan}"
    );
    assert!(plan["state_changed"].as_bool().unwrap_or(false), "{plan}");
    let tagged = store.resolve("stable-early").await.expect("resolves");
    assert_eq!(tagged.map(|h| h.digest), Some(barrier_index));
    let (state, _) = cairn_oci::promote::read_state(&store)
        .await
        .expect("the promote state");
    let recorded = &state.waves["stable-early"];
    assert_eq!(
        (recorded.version.as_str(), recorded.arrived),
        ("44.2", rerun)
    );
    let found = state
        .audit
        .iter()
        .find(|entry| entry.time == rerun && entry.to == "44.1")
        .unwrap_or_else(|| panic!("no audit of the tag found on 44.1: {:?}", state.audit));
    assert_eq!(found.from.as_deref(), Some("44.2"));

    // A barrier dwell after the first run is not enough: the dwell counts
    // from the rerun.
    let dwell = hours(7 * 24);
    let plan = run(&w, moved + dwell + SignedDuration::from_mins(10), &waves);
    assert_eq!(
        action(&plan, "stable-early"),
        ("wait".into(), None),
        "{plan}"
    );
    let waiting = why(&plan, "stable-early");
    assert_eq!(waiting["kind"], "barrier_dwell", "{plan}");
    assert_eq!(time_in(waiting, "until"), rerun + dwell, "{plan}");
    let plan = run(&w, rerun + dwell, &waves);
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("44.3".into())),
        "{plan}"
    );
}

/// The run's request counts from `--json`, and the writes the registry
/// itself logged meanwhile, by URI.
fn counted(w: &World, now: Timestamp) -> (Value, u64, u64, Vec<String>) {
    let before = w.registry.requests().len();
    let plan = run(w, now, &THREE_WAVES);
    let logged: Vec<String> = w.registry.requests()[before..]
        .iter()
        .filter(|r| r.is_write())
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    let total = plan["requests"]["total"].as_u64().expect("requests.total");
    let writes = plan["requests"]["writes"]
        .as_u64()
        .expect("requests.writes");
    (plan, total, writes, logged)
}

/// What a run costs: a run with nothing due makes no write; a run where
/// one of three waves moves writes the state and that one tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_nothing_when_nothing_is_due_and_little_for_one_step() {
    let w = world().await;
    let store = w.registry.store("acme/os");
    write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    w.publish();
    let start = now_seconds();
    let (_, total, writes, _) = counted(&w, start);
    eprintln!("requests: first run, three waves start: {total} total, {writes} writes");

    let (plan, total, writes, logged) = counted(&w, start + hours(1));
    eprintln!("requests: no-op run, three waves: {total} total, {writes} writes");
    for tag in ["stable-canary", "stable-early", "stable-late"] {
        assert_eq!(action(&plan, tag), ("stay".into(), None), "{plan}");
    }
    assert_eq!(plan["state_changed"], false, "{plan}");
    assert_eq!(writes, 0, "{plan}");
    assert_eq!(logged, Vec::<String>::new(), "the registry saw writes");
    assert!(total > 0, "{plan}");

    // A rollout that has reached the canary only: one wave moves.
    write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    let at = start.to_string();
    w.policy(&[
        "rollout", "start", "44.2", "--over", "2d", "--from", "5%", "--at", &at,
    ]);
    w.publish();
    let (plan, total, writes, logged) = counted(&w, start + hours(2));
    eprintln!("requests: one-step run, three waves, one moves: {total} total, {writes} writes");
    eprintln!("requests: one-step run, writes the registry logged: {logged:#?}");
    assert_eq!(
        action(&plan, "stable-canary"),
        ("move".into(), Some("44.2".into())),
        "{plan}"
    );
    for tag in ["stable-early", "stable-late"] {
        assert_eq!(action(&plan, tag), ("stay".into(), None), "{plan}");
    }
    // The state's blob (its empty config is already there) and manifest,
    // and the one tag: at most an upload (POST, PUT) per state blob, the
    // state manifest and the tag.
    assert!((2..=6).contains(&writes), "{writes} writes: {logged:?}");
    assert_eq!(writes, logged.len() as u64, "{logged:?}");
    let manifest_puts: Vec<&String> = logged
        .iter()
        .filter(|line| line.starts_with("PUT ") && line.contains("/manifests/"))
        .collect();
    assert_eq!(
        manifest_puts,
        vec![
            &"PUT /v2/acme/os/manifests/cairn-promote-state".to_string(),
            &"PUT /v2/acme/os/manifests/stable-canary".to_string(),
        ],
        "the state first, then the one tag"
    );

    // And nothing due again: no write.
    let (plan, total, writes, logged) = counted(&w, start + hours(3));
    eprintln!("requests: no-op run after the step: {total} total, {writes} writes");
    assert_eq!(writes, 0, "{plan}");
    assert!(logged.is_empty(), "{logged:?}");
}
