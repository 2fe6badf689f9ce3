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
