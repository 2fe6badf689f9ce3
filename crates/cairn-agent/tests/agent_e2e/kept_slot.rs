//! After a failed boot the host keeps its FleetLock slot, so that its group
//! stops rebooting until an operator has looked; `release_on_failure =
//! true` hands it on as before.

use super::*;

const LOCK: &str = "[strategy.fleet_lock]\nbase_url = \"http://unused.invalid/\"\n";

/// Stage 44.3, take the slot, reboot, and come back on 44.2: the boot failed.
async fn fail_a_boot(fleet: &Fleet, n: &Node, lock: &LockServer) -> Agent<ProcessRunner> {
    {
        let mut agent = agent(fleet, n, Some(lock));
        agent.tick(&world(fleet)).await.expect("steady");
        let report = agent.tick(&world(fleet)).await.expect("stage");
        assert_eq!(report.reason.message, "staged 44.3");
    }
    reboot_and_fail(fleet, n, lock).await
}

/// Reboot into the staged 44.3 holding the slot, and come back on 44.2.
async fn reboot_and_fail(fleet: &Fleet, n: &Node, lock: &LockServer) -> Agent<ProcessRunner> {
    finalize_and_reboot(fleet, n, Some(lock), false).await;
    assert_eq!(
        lock.holders("default"),
        vec![format!("node-{}", n.wariness)]
    );
    let mut agent = agent(fleet, n, Some(lock));
    agent.recover(Timestamp::now()).await.expect("recover");
    let report = agent.tick(&world(fleet)).await.expect("verify");
    assert_eq!(
        report.reason.kind,
        ReasonKind::RolledBack,
        "{}",
        report.reason
    );
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_boot_keeps_the_slot_until_the_operator_releases_it() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    let failed = node(&fleet, 1, 0.1, LOCK);
    let mut agent = fail_a_boot(&fleet, &failed, &lock).await;
    assert_eq!(lock.holders("default"), vec!["node-0.1".to_string()]);
    let kept = agent.persisted.slot_kept.clone().expect("kept");
    assert_eq!(kept.version, "44.3");
    assert!(kept.reason.contains("rolled back"), "{}", kept.reason);
    // Later passes keep it too (an agent restarted, the same).
    let report = agent.tick(&world(&fleet)).await.expect("check");
    assert_eq!(report.reason.kind, ReasonKind::TargetRolledBack);
    let mut restarted = super::agent(&fleet, &failed, Some(&lock));
    restarted.tick(&world(&fleet)).await.expect("check");
    assert_eq!(lock.holders("default"), vec!["node-0.1".to_string()]);

    // So the group stops: the next host waits for the slot.
    let next = node(&fleet, 1, 0.2, LOCK);
    {
        let mut agent = super::agent(&fleet, &next, Some(&lock));
        agent.tick(&world(&fleet)).await.expect("steady");
        agent.tick(&world(&fleet)).await.expect("stage");
        let report = agent.tick(&world(&fleet)).await.expect("finalize");
        assert_eq!(
            report.reason.kind,
            ReasonKind::RebootLockWait,
            "{}",
            report.reason
        );
    }

    // The operator releases it; the next pass hands it back.
    let message = cairn_agent::control::release_kept_slot(&failed.state_dir).expect("a kept slot");
    assert!(message.contains("the boot into 44.3 failed"), "{message}");
    let mut agent = super::agent(&fleet, &failed, Some(&lock));
    agent.tick(&world(&fleet)).await.expect("release");
    assert!(lock.holders("default").is_empty(), "released");
    assert!(!agent.persisted.lock_held);
    let again = cairn_agent::control::release_kept_slot(&failed.state_dir)
        .expect_err("nothing kept any more");
    assert_eq!(again.kind(), "no_slot_kept");
    assert_eq!(again.to_string(), "this host holds no FleetLock slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_boot_later_hands_back_a_kept_slot() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    let n = node(&fleet, 1, 0.1, LOCK);
    drop(fail_a_boot(&fleet, &n, &lock).await);
    // The operator offers 44.3 again (a fixed host, say), and it boots.
    cairn_agent::control::remove_from_deny_list(&n.state_dir, "44.3").expect("denied");
    {
        let mut agent = agent(&fleet, &n, Some(&lock));
        let report = agent.tick(&world(&fleet)).await.expect("stage");
        assert_eq!(report.reason.message, "staged 44.3");
    }
    finalize_and_reboot(&fleet, &n, Some(&lock), true).await;
    let mut agent = agent(&fleet, &n, Some(&lock));
    agent.recover(Timestamp::now()).await.expect("recover");
    let report = agent.tick(&world(&fleet)).await.expect("verify");
    assert_eq!(
        report.reason.kind,
        ReasonKind::BootedUnverified,
        "{}",
        report.reason
    );
    assert!(
        lock.holders("default").is_empty(),
        "released after the boot"
    );
    assert_eq!(agent.persisted.slot_kept, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_release_on_failure_the_slot_goes_back_after_a_failed_boot() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    let config = format!("{LOCK}release_on_failure = true\n");
    let n = node(&fleet, 1, 0.1, &config);
    let agent = fail_a_boot(&fleet, &n, &lock).await;
    assert!(lock.holders("default").is_empty(), "handed on");
    assert_eq!(agent.persisted.slot_kept, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_is_held_while_the_new_boot_is_judged() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    let n = node(&fleet, 1, 0.1, LOCK);
    {
        let mut agent = agent(&fleet, &n, Some(&lock));
        agent.tick(&world(&fleet)).await.expect("steady");
        agent.tick(&world(&fleet)).await.expect("stage");
    }
    finalize_and_reboot(&fleet, &n, Some(&lock), true).await;
    let mut agent = agent(&fleet, &n, Some(&lock));
    agent.recover(Timestamp::now()).await.expect("recover");
    // boot-complete.target not reached yet: still verifying, slot held.
    let pending = World {
        boot_health: cairn_agent::health::BootHealth::Pending,
        ..world(&fleet)
    };
    let report = agent.tick(&pending).await.expect("verify");
    assert_eq!(report.reason.kind, ReasonKind::WaitingForBootComplete);
    assert_eq!(lock.holders("default"), vec!["node-0.1".to_string()]);
    let healthy = World {
        boot_health: cairn_agent::health::BootHealth::Healthy,
        ..world(&fleet)
    };
    let report = agent.tick(&healthy).await.expect("verify");
    assert_eq!(
        report.reason.kind,
        ReasonKind::BootedHealthy,
        "{}",
        report.reason
    );
    assert!(lock.holders("default").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_now_keeps_a_kept_slot_and_a_healthy_boot_hands_it_back() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    let n = node(&fleet, 1, 0.1, LOCK);
    drop(fail_a_boot(&fleet, &n, &lock).await);
    let taken = |lock: &LockServer| {
        lock.requests()
            .iter()
            .filter(|(operation, _, _)| operation == "pre-reboot")
            .count()
    };
    let before = taken(&lock);
    // update-now takes no slot, and does not forget the kept one.
    let mut now = agent(&fleet, &n, Some(&lock)).without_lock_gate();
    let report = now.tick(&world(&fleet)).await.expect("update-now");
    assert_eq!(
        report.reason.kind,
        ReasonKind::TargetRolledBack,
        "{}",
        report.reason
    );
    assert!(now.persisted.slot_kept.is_some(), "still kept");
    assert_eq!(lock.holders("default"), vec!["node-0.1".to_string()]);
    // 44.3 fixed and offered again: update-now reboots into it, healthy.
    cairn_agent::control::remove_from_deny_list(&n.state_dir, "44.3").expect("denied");
    let mut now = agent(&fleet, &n, Some(&lock)).without_lock_gate();
    let report = now.tick(&world(&fleet)).await.expect("stage");
    assert_eq!(report.reason.message, "staged 44.3");
    let now = agent(&fleet, &n, Some(&lock)).without_lock_gate();
    reboot_with(&fleet, &n, now, true).await;
    assert_eq!(taken(&lock), before, "update-now took no slot");
    let mut agent = agent(&fleet, &n, Some(&lock));
    agent.recover(Timestamp::now()).await.expect("recover");
    agent.tick(&world(&fleet)).await.expect("verify");
    assert!(
        lock.holders("default").is_empty(),
        "handed back after the healthy boot"
    );
    assert_eq!(agent.persisted.slot_kept, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_slot_outlives_removing_the_lock_from_the_configuration() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    let n = node(&fleet, 1, 0.1, LOCK);
    drop(fail_a_boot(&fleet, &n, &lock).await);
    // The lock section removed: no client, and the kept slot is not forgotten.
    let mut unlocked = agent(&fleet, &n, None);
    unlocked.tick(&world(&fleet)).await.expect("check");
    assert!(unlocked.persisted.lock_held);
    let kept = unlocked.persisted.slot_kept.clone().expect("kept");
    assert_eq!(kept.group.as_deref(), Some("default"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_boot_is_reported_to_the_lock_server_until_it_hears() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    // A Cairn lock server that is not reachable yet right after the boot.
    lock.answer_boot_failed(Some(503));
    let n = node(&fleet, 1, 0.1, LOCK);
    let mut agent = fail_a_boot(&fleet, &n, &lock).await;
    let reports = |lock: &LockServer| {
        lock.requests()
            .iter()
            .filter(|(operation, _, _)| operation == "x-cairn/boot-failed")
            .count()
    };
    assert_eq!(reports(&lock), 1, "told at once");
    assert!(!agent.persisted.slot_kept.clone().expect("kept").reported);
    // Every pass asks again until the server hears it; then never again.
    agent.tick(&world(&fleet)).await.expect("check");
    assert_eq!(reports(&lock), 2);
    lock.answer_boot_failed(Some(200));
    agent.tick(&world(&fleet)).await.expect("check");
    assert_eq!(reports(&lock), 3);
    assert!(agent.persisted.slot_kept.clone().expect("kept").reported);
    agent.tick(&world(&fleet)).await.expect("check");
    assert_eq!(reports(&lock), 3, "heard: not sent again");
    assert_eq!(lock.holders("default"), vec!["node-0.1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_failed_boot_is_reported_to_the_lock_server_too() {
    let fleet = fleet().await;
    let lock = LockServer::start(1).await;
    let n = node(&fleet, 1, 0.1, LOCK);
    drop(fail_a_boot(&fleet, &n, &lock).await);
    let reports = |lock: &LockServer| {
        lock.requests()
            .iter()
            .filter(|(operation, _, _)| operation == "x-cairn/boot-failed")
            .count()
    };
    assert_eq!(reports(&lock), 1);
    // The operator acknowledged the halt (a Cairn server then frees the
    // failed node's slot); 44.3 is offered to this host again, and its boot
    // fails again. The slot taken for that reboot must halt the group too,
    // or it stays held with no halt for anyone to acknowledge.
    cairn_agent::control::remove_from_deny_list(&n.state_dir, "44.3").expect("denied");
    {
        let mut agent = agent(&fleet, &n, Some(&lock));
        let report = agent.tick(&world(&fleet)).await.expect("stage");
        assert_eq!(report.reason.message, "staged 44.3");
    }
    let mut agent = reboot_and_fail(&fleet, &n, &lock).await;
    assert_eq!(reports(&lock), 2, "the second failure is reported too");
    let kept = agent.persisted.slot_kept.clone().expect("kept");
    assert!(kept.reported, "{kept:?}");
    // The pass after sends nothing more.
    agent.tick(&world(&fleet)).await.expect("check");
    assert_eq!(reports(&lock), 2);
}
