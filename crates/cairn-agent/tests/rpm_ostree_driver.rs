//! The rpm-ostree driver against its stand-in, with mutating commands run
//! through a `systemd-run` stand-in as on a real host: Cairn registers as
//! rpm-ostree's update driver from its own unit, so other updaters are
//! turned away while its own deploys (in transient units) go through.

use cairn_agent::host::driver::{
    CommandRunner, Driver, ProcessRunner, StagingTier, register_driver_command,
};
use cairn_agent::host::{SignatureMode, Tool, needs_driver_registration};
use cairn_graph::digest::TargetId;
use cairn_testkit::host::{FakeHost, fake_systemd_run_binary};
use cairn_testkit::{Auth, TestRegistry, write_release};
use std::time::Duration;

const AGENT_UNIT: &str = "cairn-agent.service";

fn runner() -> ProcessRunner {
    ProcessRunner {
        use_systemd_run: true,
        systemd_run: Some(fake_systemd_run_binary().display().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_is_registered_from_the_agents_own_unit_and_blocks_other_updaters() {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (_, old) = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let (_, new) = write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2", "stable"]).await;
    let repo = format!("{}/acme/os", registry.host);
    let dir = tempfile::tempdir().expect("temp dir");
    let host = FakeHost::rpm_ostree(
        dir.path(),
        &format!("{repo}:stable"),
        (&old[0].manifest, "44.1"),
        std::slice::from_ref(&registry.host),
        false,
    );
    let program = host.program.display().to_string();
    let driver = Driver::new(runner(), Tool::RpmOstree, &program, Duration::from_secs(30));

    driver.register().await.expect("register");
    let status = driver.status().await.expect("status");
    assert_eq!(status.update_driver.as_deref(), Some("Cairn"));
    assert_eq!(status.update_driver_unit.as_deref(), Some(AGENT_UNIT));
    assert!(!needs_driver_registration(&status, Some(AGENT_UNIT)));

    // Another updater, in a unit of its own, is turned away.
    let other = runner()
        .run(
            &program,
            &[
                "deploy".into(),
                "--lock-finalization".into(),
                new[0].manifest.clone(),
            ],
            true,
            Duration::from_secs(30),
        )
        .await
        .expect("runs");
    assert_eq!(other.code, Some(1));
    assert!(
        other
            .stderr
            .contains("driven by Cairn (cairn-agent.service)"),
        "{}",
        other.stderr
    );
    assert!(host.state().staged.is_none());

    // Cairn's own deploy also runs in a transient unit, and goes through.
    let target: TargetId = new[0].manifest.parse().expect("a digest");
    driver
        .stage(
            StagingTier::RpmOstree,
            &repo,
            &target,
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect("stage");
    assert_eq!(
        host.state().staged.map(|s| s.digest).as_deref(),
        Some(new[0].manifest.as_str())
    );

    // A registration from another unit, while the agent's holds it, is
    // refused, as rpm-ostree does.
    let elsewhere = runner()
        .run(
            &program,
            &register_driver_command(),
            true,
            Duration::from_secs(30),
        )
        .await
        .expect("runs");
    assert_eq!(elsewhere.code, Some(1), "{}", elsewhere.stderr);
    assert_eq!(host.state().update_driver_unit.as_deref(), Some(AGENT_UNIT));

    // A registration left by an older agent, made through systemd-run,
    // names a transient unit that is gone: it is renewed from the agent's.
    let mut state = host.state();
    state.update_driver_unit = Some("run-u4242.service".into());
    cairn_testkit::host::write_state(&host.dir, &state);
    let status = driver.status().await.expect("status");
    assert!(needs_driver_registration(&status, Some(AGENT_UNIT)));
    assert!(needs_driver_registration(&status, None));
    driver.register().await.expect("register again");
    let status = driver.status().await.expect("status");
    assert_eq!(status.update_driver_unit.as_deref(), Some(AGENT_UNIT));
    assert!(!needs_driver_registration(&status, Some(AGENT_UNIT)));
}

/// Three Fedora CoreOS stable commits (checksums from Fedora's shipped
/// release index); only the newest is in the branch's history, as a target
/// older than the branch head (a barrier) is not.
fn commits() -> Vec<cairn_testkit::host::FakeCommit> {
    let commit = |checksum: &str, version: &str, timestamp: i64, on_branch: bool| {
        cairn_testkit::host::FakeCommit {
            checksum: checksum.into(),
            version: version.into(),
            timestamp,
            on_branch,
        }
    };
    vec![
        commit(OLD_COMMIT, "44.20260607.3.1", 1_780_790_400, false),
        commit(BOOTED_COMMIT, "44.20260621.3.1", 1_782_000_000, false),
        commit(NEW_COMMIT, "44.20260707.3.1", 1_783_382_400, true),
    ]
}

const OLD_COMMIT: &str = "ba7f7cbfb41f1afd2bc870a7e69ff21a64b9169fa10000e9a06d120a42e84799";
const BOOTED_COMMIT: &str = "74fa90b848b54de71e79147a8f1efcf43ba384a9d91ebf1ad492eb912e190f00";
const NEW_COMMIT: &str = "961fa74adb5ff62bef2b4ad1a20fd0b339aad25e9bbe914c7487e03aaa13f46c";
const ORIGIN: &str = "fedora:fedora/x86_64/coreos/stable";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_staged_by_checksum_as_zincati_stages_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = FakeHost::rpm_ostree_commits(dir.path(), ORIGIN, BOOTED_COMMIT, commits());
    let program = host.program.display().to_string();
    let driver = Driver::new(runner(), Tool::RpmOstree, &program, Duration::from_secs(30));
    driver.register().await.expect("register");
    let status = driver.status().await.expect("status");
    assert_eq!(status.ostree_origin.as_deref(), Some(ORIGIN));
    assert_eq!(
        status.booted.and_then(|b| b.digest).as_deref(),
        Some(BOOTED_COMMIT)
    );

    // rpm-ostree's own checks, as the stand-in reproduces them: a commit
    // outside the branch's history needs --skip-branch-check, `--` leaves
    // no revision, and --disallow-downgrade compares commit timestamps.
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let runner = runner();
        let program = program.clone();
        async move {
            runner
                .run(&program, &args, true, Duration::from_secs(30))
                .await
                .expect("runs")
        }
    };
    let revision = format!("revision={OLD_COMMIT}");
    let branch = run(&[
        "deploy",
        "--lock-finalization",
        "--bypass-driver",
        &revision,
    ])
    .await;
    assert_eq!(branch.code, Some(1));
    assert!(
        branch
            .stderr
            .contains(&format!("Checksum {OLD_COMMIT} not found in {ORIGIN}")),
        "{}",
        branch.stderr
    );
    let dashes = run(&[
        "deploy",
        "--lock-finalization",
        "--bypass-driver",
        "--skip-branch-check",
        "--",
        &revision,
    ])
    .await;
    assert_eq!(dashes.code, Some(1), "{}", dashes.stderr);
    let older = run(&[
        "deploy",
        "--lock-finalization",
        "--bypass-driver",
        "--skip-branch-check",
        "--disallow-downgrade",
        &revision,
    ])
    .await;
    assert_eq!(older.code, Some(1));
    assert!(
        older.stderr.contains("is chronologically older than"),
        "{}",
        older.stderr
    );
    assert!(host.state().staged.is_none());

    // The driver's own stage of a commit: checksum validated by its type,
    // named with `revision=`, the branch check skipped.
    let target = TargetId::checksum(NEW_COMMIT).expect("a checksum");
    driver
        .stage(
            StagingTier::RpmOstree,
            ORIGIN,
            &target,
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect("stage");
    let state = host.state();
    assert_eq!(
        state.calls.last().map(String::as_str),
        Some(
            format!(
                "deploy --lock-finalization --bypass-driver --skip-branch-check --disallow-downgrade revision={NEW_COMMIT}"
            )
            .as_str()
        )
    );
    let staged = state.staged.expect("staged");
    assert!(staged.download_only, "locked");
    let status = driver.status().await.expect("status");
    let staged = status.staged.expect("staged");
    assert_eq!(staged.digest.as_deref(), Some(NEW_COMMIT));
    assert_eq!(staged.version.as_deref(), Some("44.20260707.3.1"));
    assert!(staged.download_only);

    // An older commit the driver is asked for is refused as rpm-ostree
    // refuses it, and named so.
    let older = driver
        .stage(
            StagingTier::RpmOstree,
            ORIGIN,
            &TargetId::checksum(OLD_COMMIT).expect("a checksum"),
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect_err("older");
    assert_eq!(older.kind(), "older_than_current", "{older}");
}
