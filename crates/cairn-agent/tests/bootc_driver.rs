//! The bootc driver against the host stand-in, which resolves digests in a
//! real registry and answers with bootc's command lines and exit codes.

use cairn_agent::host::driver::{Driver, DriverError, ProcessRunner, StagingTier};
use cairn_agent::host::{SignatureMode, Tool};
use cairn_testkit::host::FakeHost;
use cairn_testkit::{Auth, TestRegistry, write_release};
use std::time::Duration;

struct Setup {
    _registry: TestRegistry,
    repo: String,
    old: String,
    new: String,
}

async fn setup() -> Setup {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (_, old) = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let (_, new) = write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2", "stable"]).await;
    Setup {
        repo: format!("{}/acme/os", registry.host),
        old: old[0].manifest.clone(),
        new: new[0].manifest.clone(),
        _registry: registry,
    }
}

fn driver(host: &FakeHost) -> Driver<ProcessRunner> {
    Driver::new(
        ProcessRunner {
            use_systemd_run: false,
        },
        Tool::Bootc,
        &host.program.display().to_string(),
        Duration::from_secs(30),
    )
}

fn host(dir: &std::path::Path, version: &str, setup: &Setup, policy: bool) -> FakeHost {
    let insecure = vec![setup.repo.split('/').next().unwrap_or_default().to_string()];
    FakeHost::new(
        dir,
        version,
        &format!("{}:stable", setup.repo),
        (&setup.old, "44.1"),
        &insecure,
        policy,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_apply_and_reboot_on_a_current_bootc() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path(), "1.17.0", &setup, true);
    let driver = driver(&host);
    let status = driver.status().await.expect("status");
    assert_eq!(
        status.booted.and_then(|b| b.digest).as_deref(),
        Some(setup.old.as_str())
    );
    assert_eq!(status.signature, SignatureMode::ContainerPolicy);
    let tier = driver.tier().await.expect("version");
    assert_eq!(tier, StagingTier::DownloadOnlySwitch);

    driver
        .stage(tier, &setup.repo, &setup.new, &status.signature, true)
        .await
        .expect("stage");
    let status = driver.status().await.expect("status");
    let staged = status.staged.expect("staged");
    assert!(staged.download_only);
    assert_eq!(staged.digest.as_deref(), Some(setup.new.as_str()));
    assert_eq!(
        staged.version.as_deref(),
        Some("44.2"),
        "read from the image in the registry"
    );
    assert_eq!(
        status.signature,
        SignatureMode::ContainerPolicy,
        "the signature mode survived"
    );
    assert_eq!(
        status.followed.as_deref(),
        Some(format!("{}@{}", setup.repo, setup.new).as_str()),
        "bootc's spec shows the digest, not the tag"
    );

    // --apply blocks until the "reboot" kills it, which is success.
    let applying = tokio::spawn({
        let driver = driver.clone();
        let digest = setup.new.clone();
        async move { driver.apply(&digest).await }
    });
    for _ in 0..100 {
        if host.state().apply_pid.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.reboot(true);
    applying
        .await
        .expect("task")
        .expect("a killed --apply is the expected end");
    let status = driver.status().await.expect("status");
    assert_eq!(
        status.booted.and_then(|b| b.digest).as_deref(),
        Some(setup.new.as_str())
    );
    assert_eq!(
        status.rollback.and_then(|b| b.digest).as_deref(),
        Some(setup.old.as_str())
    );
    let calls = host.state().calls;
    assert!(
        calls.contains(&format!(
            "switch --download-only --enforce-container-sigpolicy {}@{}",
            setup.repo, setup.new
        )),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"upgrade --from-downloaded --apply".to_string()),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_digest_fails_as_bootc_does() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path(), "1.17.0", &setup, false);
    let driver = driver(&host);
    let missing = format!("sha256:{}", "e".repeat(64));
    let err = driver
        .stage(
            StagingTier::DownloadOnlySwitch,
            &setup.repo,
            &missing,
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect_err("not in the registry");
    assert_eq!(err.kind(), "failed", "{err}");
    assert!(err.to_string().contains(&missing), "{err}");
    assert!(
        driver.status().await.expect("status").staged.is_none(),
        "nothing half-staged"
    );
    // Applying with nothing staged is bootc's error too.
    assert!(driver.apply(&missing).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_bootc_versions_use_the_two_step_sequence() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path(), "1.14.2", &setup, false);
    let driver = driver(&host);
    let tier = driver.tier().await.expect("version");
    assert_eq!(tier, StagingTier::SwitchThenDownloadOnly);
    // The new flag on an old bootc is a usage error (exit 2), reported as such.
    let err = driver
        .stage(
            StagingTier::DownloadOnlySwitch,
            &setup.repo,
            &setup.new,
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect_err("old bootc");
    assert!(matches!(err, DriverError::Unsupported { .. }), "{err}");
    driver
        .stage(
            tier,
            &setup.repo,
            &setup.new,
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect("two steps");
    let staged = driver
        .status()
        .await
        .expect("status")
        .staged
        .expect("staged");
    assert!(staged.download_only, "locked by the second step");
    let calls = host.state().calls;
    assert!(
        calls.contains(&format!("switch {}@{}", setup.repo, setup.new)),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"upgrade --download-only".to_string()),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_boot_leaves_the_old_release_booted() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path(), "1.17.0", &setup, true);
    let driver = driver(&host);
    driver
        .stage(
            StagingTier::DownloadOnlySwitch,
            &setup.repo,
            &setup.new,
            &SignatureMode::ContainerPolicy,
            true,
        )
        .await
        .expect("stage");
    host.reboot(false);
    let status = driver.status().await.expect("status");
    assert_eq!(
        status.booted.and_then(|b| b.digest).as_deref(),
        Some(setup.old.as_str())
    );
    assert_eq!(
        status.rollback.and_then(|b| b.digest).as_deref(),
        Some(setup.new.as_str()),
        "the failed target shows as rollback"
    );
}
