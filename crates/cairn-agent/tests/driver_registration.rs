//! Which passes register Cairn as rpm-ostree's update driver: only the
//! agent's own. `cairn verify` and `cairn update-now` fall back to a pass in
//! their own process (and unit) when no agent answers; registering there
//! would take the driver away from `cairn-agent.service`, or be refused.
//! A refused registration never stops a pass.

use cairn_agent::daemon::{Options, PassMode, run_once};
use cairn_testkit::host::{FakeHost, write_state};
use std::path::Path;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn host(dir: &Path) -> FakeHost {
    FakeHost::rpm_ostree(
        &dir.join("host"),
        "quay.io/acme/os:stable",
        (DIGEST, "44.1"),
        &[],
        false,
    )
}

fn options(dir: &Path, host: &FakeHost, own_unit: &str) -> Options {
    let config = dir.join("root/etc/cairn/config.d");
    std::fs::create_dir_all(&config).expect("mkdir");
    // A source that cannot be read: the pass goes on past registration
    // and stops at the graph, which is all these tests need.
    std::fs::write(
        config.join("50-site.toml"),
        format!(
            "[updates]\nsource = \"file:{}\"\nallow_unsigned = true\n[identity]\nrollout_wariness = 0.5\n",
            dir.join("no-such-document.json").display()
        ),
    )
    .expect("write");
    Options {
        root: dir.join("root"),
        sysroot: dir.join("sysroot"),
        state_dir: dir.join("state"),
        bootc: dir.join("no-bootc").display().to_string(),
        rpm_ostree: host.program.display().to_string(),
        systemctl: None,
        updater_check: false,
        loginctl: None,
        motd_dir: None,
        arch: "x86_64".into(),
        client: cairn_oci::ClientOptions::default(),
        auth_file: None,
        check_interval: None,
        socket: None,
        own_unit: Some(own_unit.into()),
        report_backoff: None,
    }
}

fn registrations(host: &FakeHost) -> usize {
    host.state()
        .calls
        .iter()
        .filter(|c| c.contains("--register-driver"))
        .count()
}

#[tokio::test]
async fn a_verify_or_update_now_pass_does_not_register() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path());
    let mut state = host.state();
    state.update_driver = Some("Cairn".into());
    state.update_driver_unit = Some("cairn-agent.service".into());
    write_state(&host.dir, &state);
    // As `cairn verify` runs it: in cairn-verify.service, with no agent to ask.
    let options = options(dir.path(), &host, "cairn-verify.service");
    let mode = PassMode::agent(false).fallback();
    let status = run_once(&options, mode, jiff::Timestamp::now()).await;
    assert!(
        host.state().calls.iter().any(|c| c.starts_with("status")),
        "the pass ran: {status:?}"
    );
    assert_eq!(registrations(&host), 0, "{:?}", host.state().calls);
    assert_eq!(
        host.state().update_driver_unit.as_deref(),
        Some("cairn-agent.service")
    );
    assert_eq!(status.driver_registration, None);
}

#[tokio::test]
async fn the_agent_registers_and_a_refusal_does_not_stop_its_pass() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path());
    // Not registered yet: the agent's pass registers from its own unit.
    let options = options(dir.path(), &host, "cairn-agent.service");
    let mode = PassMode::agent(false);
    let status = run_once(&options, mode, jiff::Timestamp::now()).await;
    assert_eq!(registrations(&host), 1, "{:?}", host.state().calls);
    assert_eq!(
        host.state().update_driver_unit.as_deref(),
        Some("cairn-agent.service")
    );
    assert_eq!(status.driver_registration, None);

    // Another, still active unit holds the registration: rpm-ostree refuses
    // ours; the pass goes on to the graph and says so.
    let mut state = host.state();
    state.update_driver_unit = Some("other-updater.service".into());
    write_state(&host.dir, &state);
    let status = run_once(&options, mode, jiff::Timestamp::now()).await;
    assert_eq!(registrations(&host), 2);
    let refused = status.driver_registration.clone().unwrap_or_default();
    assert!(
        refused.contains("driven by Cairn (other-updater.service)"),
        "{status:?}"
    );
    let error = status.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("no-such-document.json"),
        "the pass reached the graph: {status:?}"
    );
    assert!(
        status.render().contains("not registered with rpm-ostree"),
        "{}",
        status.render()
    );
}

/// Only a missing bootc program makes this an rpm-ostree host. A bootc that
/// is there but cannot be started (here: not executable) stops the pass, and
/// rpm-ostree is never asked: driving the host behind bootc's back is worse
/// than doing nothing.
#[tokio::test]
async fn a_bootc_that_cannot_start_is_not_taken_for_a_missing_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path());
    let mut options = options(dir.path(), &host, "cairn-agent.service");
    let bootc = dir.path().join("bootc-not-executable");
    std::fs::write(&bootc, "#!/bin/sh\nexit 0\n").expect("write");
    options.bootc = bootc.display().to_string();
    let status = run_once(&options, PassMode::agent(true), jiff::Timestamp::now()).await;
    assert_eq!(
        status.reason.kind,
        cairn_agent::reason::ReasonKind::HostUnreadable,
        "{status:?}"
    );
    assert_eq!(
        status.reason.cause.as_deref(),
        Some("bootc_failed"),
        "{status:?}"
    );
    assert!(host.state().calls.is_empty(), "rpm-ostree was never asked");

    // With no bootc program at all, the same host is driven by rpm-ostree.
    options.bootc = dir.path().join("no-bootc").display().to_string();
    let status = run_once(&options, PassMode::agent(true), jiff::Timestamp::now()).await;
    assert_ne!(
        status.reason.kind,
        cairn_agent::reason::ReasonKind::HostUnreadable,
        "{status:?}"
    );
    assert!(
        host.state().calls.iter().any(|c| c.contains("status")),
        "rpm-ostree was asked: {:?}",
        host.state().calls
    );
}
