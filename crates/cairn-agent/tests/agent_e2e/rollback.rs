//! Rollbacks judged by the boot they ran in: a pass in the same boot waits,
//! bounded; only a later boot ends the attempt.

use super::*;

/// Up to a rollback Cairn started in the boot `boot-2` whose command
/// returned (exit 0) while the host is still up on the target, as when the
/// shutdown is delayed; then a pass in that same boot.
async fn rolling_back_in_the_same_boot(fleet: &Fleet, n: &Node) -> World {
    stage_and_boot_healthy(fleet, n).await;
    let failed = World {
        boot_health: cairn_agent::health::BootHealth::Failed("check.service failed".into()),
        boot_id: Some("boot-2".into()),
        ..world(fleet)
    };
    let rolling = {
        let mut agent = agent(fleet, n, None);
        agent.recover(Timestamp::now()).await.expect("recover");
        let failed = failed.clone();
        tokio::spawn(async move { agent.tick(&failed).await.map(|r| r.reason) })
    };
    n.host.wait_for_apply().await;
    // The command ends; the host has not gone down yet, so it still reports
    // the target booted (the stand-in swaps at once; a real bootc at boot).
    let mut host = n.host.state();
    std::mem::swap(&mut host.booted, &mut host.rollback);
    cairn_testkit::host::write_state(&n.host.dir, &host);
    n.host.reboot(true);
    let reason = rolling.await.expect("task").expect("tick");
    assert_eq!(reason.kind, ReasonKind::RollingBack, "{reason}");
    assert!(reason.message.contains("rolling back"), "{reason}");
    // Another pass before the reboot (a timer, `cairn verify`): the boot is
    // still judged failed, and nothing ends.
    let mut agent = agent(fleet, n, None);
    agent.recover(Timestamp::now()).await.expect("recover");
    let report = agent.tick(&failed).await.expect("same boot");
    assert_eq!(
        report.state,
        StateName::Verifying,
        "{}",
        report.reason.message
    );
    assert_eq!(report.reason.kind, ReasonKind::RollbackInProgress);
    assert!(
        report
            .reason
            .message
            .contains("the rollback is in progress"),
        "{}",
        report.reason.message
    );
    assert_eq!(outcomes(n), ["staged", "rebooting", "rolling_back"]);
    assert!(!agent.persisted.deny_list.contains_key(&fleet.digests[2]));
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_does_not_take_effect_is_not_repeated() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "[health]\nrollback_on_failure = true\n");
    let failed = rolling_back_in_the_same_boot(&fleet, &n).await;
    // The next boot is the target's again: the rollback did not stick.
    let next_boot = World {
        boot_id: Some("boot-3".into()),
        ..failed
    };
    let report = pass_in(&fleet, &n, &next_boot).await;
    assert_eq!(report.reason.kind, ReasonKind::RollbackFailed);
    assert!(
        report
            .reason
            .message
            .contains("the rollback did not take effect"),
        "{}",
        report.reason.message
    );
    assert_eq!(report.state, StateName::Steady);
    assert_ended_once_as(&fleet, &n, "rollback_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_reboots_late_still_ends_as_rolled_back() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "[health]\nrollback_on_failure = true\n");
    let failed = rolling_back_in_the_same_boot(&fleet, &n).await;
    // The delayed shutdown happens: the previous release boots.
    let mut host = n.host.state();
    std::mem::swap(&mut host.booted, &mut host.rollback);
    cairn_testkit::host::write_state(&n.host.dir, &host);
    let next_boot = World {
        boot_id: Some("boot-3".into()),
        boot_health: cairn_agent::health::BootHealth::Healthy,
        ..failed
    };
    let report = pass_in(&fleet, &n, &next_boot).await;
    assert_eq!(report.reason.kind, ReasonKind::RolledBack);
    assert!(
        report.reason.message.contains("rolled back from 44.3"),
        "{}",
        report.reason.message
    );
    assert_eq!(report.state, StateName::Steady);
    assert_ended_once_as(&fleet, &n, "rolled_back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_recorded_by_an_older_agent_is_judged_without_a_boot_id() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "[health]\nrollback_on_failure = true\n");
    let failed = rolling_back_in_the_same_boot(&fleet, &n).await;
    // Older agents recorded no boot: the agent that reads it runs in a later one.
    let mut state = cairn_agent::store::AgentState::load(&n.state_dir).expect("state");
    if let Some(underway) = state.underway.as_mut() {
        underway.rolling_back_boot = None;
    }
    state.save(&n.state_dir).expect("save");
    let report = pass_in(&fleet, &n, &failed).await;
    assert_eq!(report.reason.kind, ReasonKind::RollbackFailed);
    assert!(
        report
            .reason
            .message
            .contains("the rollback did not take effect"),
        "{}",
        report.reason.message
    );
    assert_ended_once_as(&fleet, &n, "rollback_failed");
}

/// Passes in the boot of the rollback, `minutes` after it, reporting whose
/// boot ID is `boot_id`.
async fn pass_after(
    fleet: &Fleet,
    n: &Node,
    failed: &World,
    minutes: i64,
    boot_id: Option<&str>,
) -> cairn_agent::agent::Report {
    let later = World {
        now: failed.now + SignedDuration::from_mins(minutes),
        boot_id: boot_id.map(str::to_string),
        ..failed.clone()
    };
    pass_in(fleet, n, &later).await
}

/// One pass of a freshly started agent (as after a reboot or restart).
async fn pass_in(fleet: &Fleet, n: &Node, world: &World) -> cairn_agent::agent::Report {
    let mut agent = agent(fleet, n, None);
    agent.recover(world.now).await.expect("recover");
    agent.tick(world).await.expect("pass")
}

/// The attempt ended once, as `last`, after exactly one rollback command;
/// the target is deny-listed and no lock slot is held.
fn assert_ended_once_as(fleet: &Fleet, n: &Node, last: &str) {
    assert_eq!(rollbacks(n), 1, "never a second rollback");
    assert_eq!(
        outcomes(n),
        ["staged", "rebooting", "rolling_back", last],
        "one final record"
    );
    let state = cairn_agent::store::AgentState::load(&n.state_dir).expect("state");
    assert!(state.deny_list.contains_key(&fleet.digests[2]));
    assert!(!state.lock_held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_does_not_reboot_after_the_rollback_ends_it_as_failed() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "[health]\nrollback_on_failure = true\n");
    let failed = rolling_back_in_the_same_boot(&fleet, &n).await;
    // Within health.timeout_seconds (15 minutes by default): still waiting.
    let report = pass_after(&fleet, &n, &failed, 14, Some("boot-2")).await;
    assert_eq!(report.reason.kind, ReasonKind::RollbackInProgress);
    assert!(
        report
            .reason
            .message
            .contains("the rollback is in progress"),
        "{}",
        report.reason.message
    );
    assert_eq!(report.state, StateName::Verifying);
    // Past it, in the same boot: the attempt ends; the slot goes back.
    let report = pass_after(&fleet, &n, &failed, 16, Some("boot-2")).await;
    assert_eq!(report.reason.kind, ReasonKind::RollbackFailed);
    assert!(
        report
            .reason
            .message
            .contains("the host did not reboot within 15 minutes after the rollback command"),
        "{}",
        report.reason.message
    );
    assert_eq!(report.state, StateName::Steady);
    let report = pass_after(&fleet, &n, &failed, 17, Some("boot-2")).await;
    assert_eq!(report.state, StateName::Steady, "{}", report.reason.message);
    assert_ended_once_as(&fleet, &n, "rollback_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_waited_on_without_a_boot_id_is_bounded_too() {
    let fleet = fleet().await;
    let n = node(&fleet, 1, 0.1, "[health]\nrollback_on_failure = true\n");
    let failed = rolling_back_in_the_same_boot(&fleet, &n).await;
    let report = pass_after(&fleet, &n, &failed, 1, None).await;
    assert_eq!(report.reason.kind, ReasonKind::RollbackInProgress);
    assert!(
        report
            .reason
            .message
            .contains("the rollback is in progress"),
        "{}",
        report.reason.message
    );
    let report = pass_after(&fleet, &n, &failed, 16, None).await;
    assert_eq!(report.reason.kind, ReasonKind::RollbackFailed);
    assert!(
        report
            .reason
            .message
            .contains("did not reboot within 15 minutes"),
        "{}",
        report.reason.message
    );
    assert_eq!(report.state, StateName::Steady);
    assert_ended_once_as(&fleet, &n, "rollback_failed");
}
