//! Bad releases and bad documents: a wave stuck on a dead-end, its retreat
//! and the fix it moves on to; halted releases, which are never a
//! destination; and replayed or unsigned documents, which are refused before
//! anything is written.

use super::common::publish::Publish;
use super::common::{cairn, ok};
use super::{World, action, world};
use cairn_graph::promote::PromoteState;
use cairn_testkit::host::{FakeHost, Upgraded};
use cairn_testkit::write_release;
use jiff::Timestamp;
use serde_json::Value;
use std::process::Output;

/// `cairn promote`'s exit code for a stuck wave (`STUCK_EXIT`).
const STUCK_EXIT: i32 = 4;

/// `--json`'s plan, from a run that may have failed.
fn plan_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json printed no JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The wave's entry in `plan`.
fn wave<'a>(plan: &'a Value, tag: &str) -> &'a Value {
    plan["waves"]
        .as_array()
        .and_then(|waves| waves.iter().find(|w| w["tag"] == tag))
        .unwrap_or_else(|| panic!("no wave {tag} in {plan}"))
}

/// The digest `tag` points at in the stream's repository.
async fn points_at(w: &World, tag: &str) -> Option<String> {
    w.registry
        .store("acme/os")
        .resolve(tag)
        .await
        .unwrap_or_else(|e| panic!("resolving {tag}: {e}"))
        .map(|head| head.digest)
}

async fn promote_state(w: &World) -> PromoteState {
    let (state, _) = cairn_oci::promote::read_state(&w.registry.store("acme/os"))
        .await
        .unwrap_or_else(|e| panic!("reading the promote state: {e}"));
    state
}

/// Every recorded change of `tag`, as (from, to).
fn moves_of(state: &PromoteState, tag: &str) -> Vec<(Option<String>, String)> {
    state
        .audit
        .iter()
        .filter(|entry| entry.tag == tag)
        .map(|entry| (entry.from.clone(), entry.to.clone()))
        .collect()
}

fn moved(from: Option<&str>, to: &str) -> (Option<String>, String) {
    (from.map(str::to_string), to.to_string())
}

async fn boots(host: &FakeHost, version: &str) -> String {
    match host.timer_run().await {
        Upgraded::Rebooted {
            digest,
            version: booted,
        } => {
            assert_eq!(booted.as_deref(), Some(version), "booted {digest}");
            digest
        }
        other => panic!("the host did not boot {version}: {other:?}"),
    }
}

/// The bad-release scenario: a wave whose release becomes a
/// dead-end with nothing newer is stuck (exit 4, the tag and its state left
/// alone) while another wave takes its step in the same run; with
/// `--allow-retreat` it goes back where it came from and its host
/// downgrades; a fixed release then takes it forward, past the dead-end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_on_a_dead_end_is_stuck_retreats_only_when_allowed_and_moves_on_to_the_fix() {
    let w = world().await;
    let store = w.registry.store("acme/os");
    let (index_1, first) = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    w.publish();
    let plan = w.promoted(Timestamp::now());
    assert_eq!(
        action(&plan, "stable-early"),
        ("start".into(), Some("44.1".into()))
    );
    let host = w.early_host(&first[0].manifest, "44.1");

    // 44.2 rolls out from 50%: the early wave (0.3) takes it, the late
    // one (1.0) not yet.
    let (index_2, _) = write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    w.policy(&["rollout", "start", "44.2", "--from", "50%", "--over", "10d"]);
    w.publish();
    let plan = w.promoted(Timestamp::now());
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("44.2".into())),
        "{plan}"
    );
    assert_eq!(action(&plan, "stable-late").0, "stay", "{plan}");
    boots(&host, "44.2").await;

    // 44.2 turns out bad, and nothing newer is published.
    w.policy(&[
        "deadend",
        "add",
        "44.2",
        "--reason",
        "https://example.org/incidents/42",
    ]);
    w.publish();
    let before = promote_state(&w).await;

    // Without --allow-retreat: stuck, and the tag keeps pointing at 44.2.
    // A new wave still takes its step in the same run.
    let waves = ["stable-early=0.3", "stable-late=1.0", "stable-fresh=1.0"];
    let out = w.promote_waves(Timestamp::now(), &waves, &[]);
    assert_eq!(out.status.code(), Some(STUCK_EXIT), "{}", stderr(&out));
    let plan = plan_of(&out);
    let stuck = &wave(&plan, "stable-early")["action"];
    assert_eq!(stuck["action"], "stuck", "{plan}");
    assert_eq!(stuck["why"]["kind"], "bad_release", "{plan}");
    assert_eq!(stuck["why"]["version"], "44.2", "{plan}");
    assert_eq!(stuck["why"]["retreat_to"], "44.1", "{plan}");
    let bad = stuck["why"]["bad"].as_str().unwrap_or_default();
    assert!(
        bad.contains("dead-end") && bad.contains("https://example.org/incidents/42"),
        "{plan}"
    );
    let said = stderr(&out);
    assert!(
        said.contains("cairn: stable-early: at 44.2, stuck: 44.2 is a dead-end")
            && said.contains("the graph offers no way forward")
            && said.contains("--allow-retreat would move it back to 44.1"),
        "{said}"
    );
    assert_eq!(action(&plan, "stable-late").0, "stay", "{plan}");
    assert_eq!(
        action(&plan, "stable-fresh"),
        ("start".into(), Some("44.1".into())),
        "a new wave starts at the newest release that is not a dead-end: {plan}"
    );
    assert_eq!(points_at(&w, "stable-early").await, Some(index_2.clone()));
    assert_eq!(points_at(&w, "stable-late").await, Some(index_1.clone()));
    assert_eq!(points_at(&w, "stable-fresh").await, Some(index_1.clone()));
    let after = promote_state(&w).await;
    assert_eq!(
        after.waves.get("stable-early"),
        before.waves.get("stable-early"),
        "the stuck wave's state changed"
    );
    assert_eq!(
        moves_of(&after, "stable-early"),
        moves_of(&before, "stable-early")
    );
    assert_eq!(moves_of(&after, "stable-fresh"), vec![moved(None, "44.1")]);
    assert_eq!(host.timer_run().await, Upgraded::NoUpdate);

    // Run again with nothing new: still stuck, and nothing is written.
    let writes = w.registry.write_requests();
    let out = w.promote(Timestamp::now(), &[]);
    assert_eq!(out.status.code(), Some(STUCK_EXIT), "{}", stderr(&out));
    assert_eq!(plan_of(&out)["requests"]["writes"], 0);
    assert_eq!(
        w.registry.write_requests(),
        writes,
        "a stuck run with nothing new wrote"
    );

    // The dry run of a retreat says what it would do, warning included,
    // and writes nothing.
    let warning = "bootc has no downgrade check: hosts following stable-early go back to 44.1 at their next upgrade";
    let writes = w.registry.write_requests();
    let out = w.promote(Timestamp::now(), &["--allow-retreat", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = plan_of(&out);
    assert_eq!(
        action(&plan, "stable-early"),
        ("retreat".into(), Some("44.1".into())),
        "{plan}"
    );
    assert!(
        stderr(&out).contains(&format!("cairn: warning: {warning}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.registry.write_requests(), writes, "a dry run wrote");
    assert_eq!(points_at(&w, "stable-early").await, Some(index_2.clone()));

    // With --allow-retreat: back to 44.1, with the downgrade warning, and
    // the host following the wave boots 44.1 again.
    let out = w.promote(Timestamp::now(), &["--allow-retreat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = plan_of(&out);
    assert_eq!(
        action(&plan, "stable-early"),
        ("retreat".into(), Some("44.1".into())),
        "{plan}"
    );
    assert_eq!(
        wave(&plan, "stable-early")["action"]["warning"],
        warning,
        "{plan}"
    );
    let said = stderr(&out);
    assert!(
        said.contains(&format!("cairn: warning: {warning}")),
        "{said}"
    );
    assert_eq!(points_at(&w, "stable-early").await, Some(index_1.clone()));
    assert_eq!(boots(&host, "44.1").await, first[0].manifest);

    // A fix is published: the wave moves forward to it, never to the
    // dead-end, and so does the late wave.
    let (index_3, _) = write_release(&store, "44.3", "2026-03-01T00:00:00Z", &["44.3"]).await;
    w.publish();
    let plan = w.promoted(Timestamp::now());
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("44.3".into())),
        "{plan}"
    );
    assert_eq!(
        action(&plan, "stable-late"),
        ("move".into(), Some("44.3".into())),
        "{plan}"
    );
    assert_eq!(points_at(&w, "stable-early").await, Some(index_3));
    boots(&host, "44.3").await;
    let state = promote_state(&w).await;
    assert_eq!(
        moves_of(&state, "stable-early"),
        vec![
            moved(None, "44.1"),
            moved(Some("44.1"), "44.2"),
            moved(Some("44.2"), "44.1"),
            moved(Some("44.1"), "44.3"),
        ]
    );
    assert!(
        moves_of(&state, "stable-late")
            .iter()
            .all(|(_, to)| to != "44.2"),
        "the late wave was moved to the dead-end"
    );
}

/// A halted release is never a destination: the wave takes the newest
/// release that is not halted, then stays with the halt as its reason; a
/// halted release under a wave is left at the next run, minimum dwell or
/// not; and without the halt key the halt list is refused and nothing is
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_release_is_never_a_destination() {
    let w = world().await;
    ok(&["document", "keygen", "--output", &w.path("halt")]);
    let store = w.registry.store("acme/os");
    let halt_pub = w.path("halt.pub");
    let halt_key = w.path("halt.key");
    let team_pub = w.path("team.pub");
    let halt_repository = format!("{}/acme/os-halts", w.registry.host);
    let halt_list = format!("{halt_repository}:cairn-halts-stable");
    let document = w.document();
    let publish = || {
        Publish::signed(&w.repository, w.path("team.key"))
            .insecure_registry(&w.registry.host)
            .cache(w.path("cache.json"))
            .args(["--halt-key", &halt_pub])
    };
    let halt = |version: &str| {
        ok(&[
            "halt",
            "add",
            version,
            "--halt-list",
            &halt_list,
            "--key",
            &halt_key,
            "--trust-key",
            &team_pub,
            "--document",
            &document,
            "--document-key",
            &team_pub,
            "--who",
            "tester",
            "--reason",
            "3 of 20 boots failed",
            "--insecure-registry",
            &w.registry.host,
        ])
    };
    let with_halts = ["--halt-key", halt_pub.as_str()];
    let promoted = |extra: &[&str]| {
        let out = w.promote(Timestamp::now(), extra);
        assert!(out.status.success(), "{}", stderr(&out));
        plan_of(&out)
    };

    write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    publish().arg("--halt-list").arg(&halt_repository).run();
    let plan = promoted(&with_halts);
    assert_eq!(
        action(&plan, "stable-early"),
        ("start".into(), Some("44.1".into()))
    );

    // Two releases, and the newer one, where the waves would go, is halted.
    let (index_2, _) = write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    write_release(&store, "44.3", "2026-03-01T00:00:00Z", &["44.3"]).await;
    publish().run();
    halt("44.3");
    let waves = ["stable-early=0.3", "stable-late=1.0", "stable-fresh=1.0"];
    let out = w.promote_waves(Timestamp::now(), &waves, &with_halts);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = plan_of(&out);
    for tag in ["stable-early", "stable-late"] {
        assert_eq!(
            action(&plan, tag),
            ("move".into(), Some("44.2".into())),
            "{plan}"
        );
        assert_eq!(points_at(&w, tag).await, Some(index_2.clone()));
    }
    assert_eq!(
        action(&plan, "stable-fresh"),
        ("start".into(), Some("44.2".into())),
        "a new wave starts at the newest release that is not halted: {plan}"
    );

    // On 44.2, only the halted 44.3 is ahead: the waves stay, naming it.
    let writes = w.registry.write_requests();
    let plan = promoted(&with_halts);
    for tag in ["stable-early", "stable-late"] {
        let stays = &wave(&plan, tag)["action"];
        assert_eq!(stays["action"], "stay", "{plan}");
        assert_eq!(stays["why"]["kind"], "halted_ahead", "{plan}");
        assert_eq!(stays["why"]["version"], "44.3", "{plan}");
    }
    assert_eq!(
        w.registry.write_requests(),
        writes,
        "a run that stays wrote"
    );

    // The dry run's text says it in words, and exits 0.
    let now = Timestamp::now().to_string();
    let halt_state = w.path("halt-state.json");
    let dry = cairn(&[
        "promote",
        &document,
        "--key",
        &team_pub,
        "--halt-key",
        &halt_pub,
        "--insecure-registry",
        &w.registry.host,
        "--now",
        &now,
        "--wave",
        "stable-early=0.3",
        "--halt-state",
        &halt_state,
        "--dry-run",
    ]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    // Nothing written: not even the --halt-state file.
    assert!(
        !std::path::Path::new(&halt_state).exists(),
        "a dry run wrote {halt_state}"
    );
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        said.contains(
            "stable-early: at 44.2, stays: 44.3 ahead is halted by the stream's halt list"
        ),
        "{said}"
    );

    // The release under the waves is halted too, and a fix is published:
    // they leave 44.2 at once, although a minimum dwell of 30 days is not
    // over, and skip the halted 44.3.
    let (index_4, _) = write_release(&store, "44.4", "2026-04-01T00:00:00Z", &["44.4"]).await;
    publish().run();
    halt("44.2");
    let plan = promoted(&["--halt-key", &halt_pub, "--min-dwell", "30d"]);
    for tag in ["stable-early", "stable-late"] {
        assert_eq!(
            action(&plan, tag),
            ("move".into(), Some("44.4".into())),
            "{plan}"
        );
        let why = wave(&plan, tag)["action"]["why"]
            .as_str()
            .unwrap_or_default();
        assert!(why.contains("44.2 is halted"), "{plan}");
        assert_eq!(points_at(&w, tag).await, Some(index_4.clone()));
    }
    let state = promote_state(&w).await;
    assert!(
        state.audit.iter().all(|entry| entry.to != "44.3"),
        "a wave was moved to the halted release: {:?}",
        state.audit
    );

    // 44.4 is halted too, with nothing newer, and the release the waves
    // came from is halted: stuck, and no retreat even when allowed.
    let halts_store = w.registry.store("acme/os-halts");
    let older_list = halts_store
        .get_manifest("cairn-halts-stable")
        .await
        .unwrap_or_else(|e| panic!("the halt list before 44.4's halt: {e}"));
    halt("44.4");
    let logged = w.registry.requests().len();
    let out = w.promote(
        Timestamp::now(),
        &["--halt-key", &halt_pub, "--allow-retreat"],
    );
    assert_eq!(out.status.code(), Some(STUCK_EXIT), "{}", stderr(&out));
    let plan = plan_of(&out);
    for tag in ["stable-early", "stable-late"] {
        let stuck = &wave(&plan, tag)["action"];
        assert_eq!(stuck["action"], "stuck", "{plan}");
        assert_eq!(stuck["why"]["version"], "44.4", "{plan}");
        assert_eq!(stuck["why"]["retreat_to"], Value::Null, "{plan}");
        assert_eq!(
            stuck["why"]["no_retreat"],
            "44.2, where it came from, is halted by the stream's halt list too",
            "{plan}"
        );
        assert_eq!(points_at(&w, tag).await, Some(index_4.clone()));
    }
    let said = stderr(&out);
    assert!(
        said.contains(
            "cairn: stable-early: at 44.4, stuck: 44.4 is halted by the stream's halt list"
        ),
        "{said}"
    );
    // The only write records the new halt list's sequence in the state
    // (its floor from now on); no tag moves.
    let manifest_puts: Vec<String> = w.registry.requests()[logged..]
        .iter()
        .filter(|r| r.method == "PUT" && r.uri.contains("/manifests/"))
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(manifest_puts.len(), 1, "{manifest_puts:?}");
    assert!(
        manifest_puts[0].ends_with("/manifests/cairn-promote-state"),
        "{manifest_puts:?}"
    );
    let recorded = promote_state(&w).await;
    assert_eq!(
        (&recorded.waves, &recorded.audit),
        (&state.waves, &state.audit)
    );
    assert!(
        recorded.halt_sequence > state.halt_sequence,
        "{:?} then {:?}",
        state.halt_sequence,
        recorded.halt_sequence
    );
    let state = recorded;

    // The list before 44.4's halt, signed and served again, would lift that
    // halt: the state's floor refuses it, and nothing is written.
    halts_store
        .put_manifest(
            older_list.bytes.clone(),
            &older_list.media_type,
            Some("cairn-halts-stable"),
        )
        .await
        .unwrap_or_else(|e| panic!("putting the older halt list back: {e}"));
    let writes = w.registry.write_requests();
    let out = w.promote(Timestamp::now(), &with_halts);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("refusing a replayed halt list"), "{said}");
    assert_eq!(w.registry.write_requests(), writes, "a replayed list wrote");
    assert_eq!(promote_state(&w).await, state);

    // Without the halt key the list, signed by it, is refused: exit 1,
    // nothing written, no tag moved.
    let writes = w.registry.write_requests();
    let out = w.promote(Timestamp::now(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&halt_list) && said.contains("halts_bad_signature"),
        "{said}"
    );
    assert_eq!(w.registry.write_requests(), writes, "a refused run wrote");
    assert_eq!(points_at(&w, "stable-early").await, Some(index_4.clone()));
    assert_eq!(promote_state(&w).await, state);

    // The list deleted: with halts on, a missing list is refused too, even
    // with the halt key, rather than read as "nothing is halted".
    cairn_testkit::skopeo(&[
        "delete",
        "--tls-verify=false",
        &format!("docker://{halt_list}"),
    ]);
    let writes = w.registry.write_requests();
    let out = w.promote(Timestamp::now(), &with_halts);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains(&halt_list), "{said}");
    assert_eq!(w.registry.write_requests(), writes, "a refused run wrote");
    assert_eq!(points_at(&w, "stable-early").await, Some(index_4));
    assert_eq!(promote_state(&w).await, state);
}

/// After a run acted on a document, an older signed document put back
/// under the document tag is refused as a replay, and so is an unsigned
/// one; neither run writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_unsigned_document_is_refused_and_nothing_is_written() {
    let w = world().await;
    let store = w.registry.store("acme/os");
    let document_tag = "cairn-graph-stable";
    write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    w.publish();
    let older = store
        .get_manifest(document_tag)
        .await
        .unwrap_or_else(|e| panic!("the first document: {e}"));
    let plan = w.promoted(Timestamp::now());
    let older_sequence = plan["sequence"].as_u64().unwrap_or_default();

    let (index_2, _) = write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2"]).await;
    w.publish();
    let plan = w.promoted(Timestamp::now());
    assert_eq!(
        action(&plan, "stable-early"),
        ("move".into(), Some("44.2".into()))
    );
    let newer_sequence = plan["sequence"].as_u64().unwrap_or_default();
    assert!(older_sequence < newer_sequence, "{plan}");
    let state = promote_state(&w).await;
    assert_eq!(state.last_sequence, newer_sequence);

    // The first document, with its signature still beside it, served again.
    store
        .put_manifest(older.bytes.clone(), &older.media_type, Some(document_tag))
        .await
        .unwrap_or_else(|e| panic!("putting the first document back: {e}"));
    assert_eq!(
        points_at(&w, document_tag).await,
        Some(older.digest.clone())
    );
    let writes = w.registry.write_requests();
    let out = w.promote(Timestamp::now(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "the document's sequence {older_sequence} is below {newer_sequence}"
        )) && said.contains("refusing a replayed document"),
        "{said}"
    );
    assert_eq!(w.registry.write_requests(), writes, "a replay wrote");
    assert_eq!(promote_state(&w).await, state);
    assert_eq!(points_at(&w, "stable-early").await, Some(index_2.clone()));

    // An unsigned document, newer than any, is refused as unsigned.
    Publish::unsigned(&w.repository)
        .insecure_registry(&w.registry.host)
        .cache(w.path("cache.json"))
        .run();
    assert_ne!(points_at(&w, document_tag).await, Some(older.digest));
    let writes = w.registry.write_requests();
    let out = w.promote(Timestamp::now(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("no signature"), "{said}");
    assert_eq!(w.registry.write_requests(), writes, "an unsigned run wrote");
    assert_eq!(promote_state(&w).await, state);
    assert_eq!(points_at(&w, "stable-early").await, Some(index_2));
}
