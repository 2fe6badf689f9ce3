//! The bootc driver against the host stand-in, which resolves digests in a
//! real registry and answers with bootc's command lines and exit codes.

use cairn_agent::host::driver::{Driver, DriverError, ProcessRunner, StagingTier};
use cairn_agent::host::{SignatureMode, Tool};
use cairn_graph::digest::TargetId;
use cairn_testkit::host::FakeHost;
use cairn_testkit::{Auth, TestRegistry, write_release};
use std::time::Duration;

struct Setup {
    _registry: TestRegistry,
    repo: String,
    old: String,
    new: TargetId,
}

async fn setup() -> Setup {
    let registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    let (_, old) = write_release(&store, "44.1", "2026-01-01T00:00:00Z", &["44.1"]).await;
    let (_, new) = write_release(&store, "44.2", "2026-02-01T00:00:00Z", &["44.2", "stable"]).await;
    Setup {
        repo: format!("{}/acme/os", registry.host),
        old: old[0].manifest.clone(),
        new: new[0].manifest.parse().expect("a digest"),
        _registry: registry,
    }
}

fn driver(host: &FakeHost) -> Driver<ProcessRunner> {
    Driver::new(
        ProcessRunner {
            use_systemd_run: false,
            systemd_run: None,
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
    host.wait_for_apply().await;
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
    let missing: TargetId = format!("sha256:{}", "e".repeat(64))
        .parse()
        .expect("a digest");
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
    assert!(err.to_string().contains(missing.as_str()), "{err}");
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

/// `tier()` then `stage()`, as the agent does; the staged deployment and
/// the command lines the stand-in received.
async fn stage_with_probe(setup: &Setup, host: &FakeHost) -> (StagingTier, Vec<String>) {
    let driver = driver(host);
    let tier = driver.tier().await.expect("probe");
    driver
        .stage(
            tier,
            &setup.repo,
            &setup.new,
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect("stage");
    let staged = driver
        .status()
        .await
        .expect("status")
        .staged
        .expect("staged");
    assert_eq!(staged.digest.as_deref(), Some(setup.new.as_str()));
    assert!(staged.download_only, "staged locked");
    (tier, host.state().calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_follows_what_switch_accepts_not_the_version() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let reference = format!("{}@{}", setup.repo, setup.new);

    // Reports 1.17 but has no `switch --download-only`: two steps.
    let without = host(&dir.path().join("without"), "1.17.0", &setup, false);
    without.set_bootc("1.17.0", false);
    let (tier, calls) = stage_with_probe(&setup, &without).await;
    assert_eq!(tier, StagingTier::SwitchThenDownloadOnly);
    let calls: Vec<&str> = calls.iter().map(String::as_str).collect();
    assert_eq!(
        calls,
        [
            "--version",
            "switch --help",
            &format!("switch {reference}"),
            "upgrade --download-only",
            "status --format=json --format-version=1"
        ],
    );

    // Reports 1.16 but has it (a build with the change): one locked switch.
    let with = host(&dir.path().join("with"), "1.16.9", &setup, false);
    with.set_bootc("1.16.9", true);
    let (tier, calls) = stage_with_probe(&setup, &with).await;
    assert_eq!(tier, StagingTier::DownloadOnlySwitch);
    let calls: Vec<&str> = calls.iter().map(String::as_str).collect();
    assert_eq!(
        calls,
        [
            "--version",
            "switch --help",
            &format!("switch --download-only {reference}"),
            "status --format=json --format-version=1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bootc_is_probed_once_and_the_answer_is_kept() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(&dir.path().join("host"), "1.17.0", &setup, false);
    let file = dir
        .path()
        .join("state")
        .join(cairn_agent::host::probe::PROBE_FILE);
    let probes = || {
        host.state()
            .calls
            .iter()
            .filter(|c| *c == "switch --help")
            .count()
    };
    let first = driver(&host).with_probe_file(file.clone());
    assert_eq!(
        first.tier().await.expect("probe"),
        StagingTier::DownloadOnlySwitch
    );
    assert_eq!(
        first.tier().await.expect("again"),
        StagingTier::DownloadOnlySwitch
    );
    assert_eq!(probes(), 1, "remembered in the process");
    // Another process (the next pass) reads the file.
    let second = driver(&host).with_probe_file(file.clone());
    assert_eq!(
        second.tier().await.expect("cached"),
        StagingTier::DownloadOnlySwitch
    );
    assert_eq!(probes(), 1, "kept in the state directory");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("probe file")).expect("JSON");
    assert_eq!(kept["version"], "bootc 1.17.0");
    assert_eq!(kept["switch_download_only"], true);
    // A new bootc (an update of the host) is asked again.
    host.set_bootc("1.17.1", false);
    assert_eq!(
        second.tier().await.expect("probe"),
        StagingTier::SwitchThenDownloadOnly
    );
    assert_eq!(probes(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_fails_is_an_error_and_stages_nothing() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path(), "1.17.0", &setup, false);
    let file = dir
        .path()
        .join("state")
        .join(cairn_agent::host::probe::PROBE_FILE);
    // A kept answer from when the probe worked.
    assert_eq!(
        driver(&host)
            .with_probe_file(file.clone())
            .tier()
            .await
            .expect("probe"),
        StagingTier::DownloadOnlySwitch
    );
    let before = host.state().calls.len();

    // The probe fails: tier() is an error, and nothing is kept.
    host.fail(
        "switch --help",
        "This command must be executed as the root user",
    );
    std::fs::remove_file(&file).expect("drop the kept answer");
    let err = driver(&host)
        .with_probe_file(file.clone())
        .tier()
        .await
        .expect_err("no answer");
    assert_eq!(err.kind(), "probe", "{err}");
    assert!(err.to_string().contains("root user"), "{err}");
    assert!(!file.exists(), "no answer kept");

    // Staging on a kept answer that this bootc rejects probes again; that
    // probe fails too: an error, and no switch is run that stages.
    cairn_agent::host::probe::store(
        &file,
        &cairn_agent::host::probe::Probe {
            version: "bootc 1.17.0".into(),
            switch_download_only: true,
        },
    )
    .expect("keep an answer");
    host.fail_usage("switch --download-only");
    let driver = driver(&host).with_probe_file(file.clone());
    let tier = driver.tier().await.expect("kept answer");
    let err = driver
        .stage(
            tier,
            &setup.repo,
            &setup.new,
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect_err("no answer");
    assert_eq!(err.kind(), "probe", "{err}");
    assert!(!file.exists(), "the stale answer is dropped, none kept");
    let state = host.state();
    assert!(state.staged.is_none());
    let switches: Vec<&String> = state.calls[before..]
        .iter()
        .filter(|c| c.starts_with("switch"))
        .collect();
    let reference = format!("{}@{}", setup.repo, setup.new);
    assert_eq!(
        switches,
        [
            "switch --help",
            &format!("switch --download-only {reference}"),
            "switch --help",
        ],
        "only probes and the rejected switch: {:?}",
        state.calls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_answer_that_switch_contradicts_is_probed_again() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(&dir.path().join("host"), "1.17.0", &setup, false);
    let file = dir
        .path()
        .join("state")
        .join(cairn_agent::host::probe::PROBE_FILE);
    host.set_bootc("1.17.0", true);
    assert_eq!(
        driver(&host)
            .with_probe_file(file.clone())
            .tier()
            .await
            .expect("probe"),
        StagingTier::DownloadOnlySwitch
    );
    // Another build that reports the same version, without the option.
    host.set_bootc("1.17.0", false);
    let driver = driver(&host).with_probe_file(file.clone());
    let tier = driver.tier().await.expect("kept answer");
    assert_eq!(tier, StagingTier::DownloadOnlySwitch, "from the file");
    let before = host.state().calls.len();
    driver
        .stage(
            tier,
            &setup.repo,
            &setup.new,
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect("staged after probing again");
    let reference = format!("{}@{}", setup.repo, setup.new);
    let calls = host.state().calls[before..].to_vec();
    assert_eq!(
        calls,
        [
            format!("switch --download-only {reference}"),
            "--version".to_string(),
            "switch --help".to_string(),
            format!("switch {reference}"),
            "upgrade --download-only".to_string(),
        ]
    );
    let staged = driver
        .status()
        .await
        .expect("status")
        .staged
        .expect("staged");
    assert!(staged.download_only, "staged locked");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("probe file")).expect("JSON");
    assert_eq!(
        kept["switch_download_only"], false,
        "the new answer is kept"
    );
    assert_eq!(
        driver.tier().await.expect("remembered"),
        StagingTier::SwitchThenDownloadOnly
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_that_rejects_what_a_fresh_probe_found_fails_after_one_probe() {
    let setup = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(&dir.path().join("host"), "1.17.0", &setup, false);
    // The help lists the option, the switch rejects it anyway: probing
    // again finds the same, so the error stands.
    host.set_bootc("1.17.0", true);
    let driver = driver(&host);
    let tier = driver.tier().await.expect("probe");
    host.fail_usage("switch --download-only");
    let err = driver
        .stage(
            tier,
            &setup.repo,
            &setup.new,
            &SignatureMode::Unverified,
            true,
        )
        .await
        .expect_err("rejected");
    assert!(matches!(err, DriverError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("unexpected argument '--download-only' found"),
        "clap's error line, not its usage lines: {err}"
    );
    let state = host.state();
    let probes = state.calls.iter().filter(|c| *c == "switch --help").count();
    assert_eq!(
        probes, 2,
        "probed once more, not in a loop: {:?}",
        state.calls
    );
    assert!(state.staged.is_none());
}
