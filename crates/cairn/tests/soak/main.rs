//! The fleet chaos soak (`scripts/soak [minutes] [seed]`): real `cairn
//! agent`s on stand-in bootc hosts, a real registry behind a fault-injecting
//! proxy, `cairn serve` as graph server, FleetLock server, report collector
//! and rollout guard, and `cairn publish` and `cairn policy` changing the
//! stream, all at once, while a seeded injector breaks things. The
//! invariants are judged from the stand-ins' own logs and the agents'
//! state, against the document and halt list each agent had verified.
//!
//! Ignored in the normal suite (it runs for minutes); `scripts/soak` runs it
//! with `CAIRN_SOAK_MINUTES` and `CAIRN_SOAK_SEED`.

#[path = "../common/mod.rs"]
mod common;
mod judge;
mod proxy;
mod rig;

use rig::{Rig, Rng};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Shuts the rig down when the test ends, a panic included.
struct ShutDown(Arc<Rig>);

impl Drop for ShutDown {
    fn drop(&mut self) {
        self.0.shut_down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a soak of minutes: scripts/soak runs it"]
async fn a_fleet_under_faults_keeps_every_invariant_and_converges() {
    let minutes: f64 = std::env::var("CAIRN_SOAK_MINUTES")
        .ok()
        .map(|m| {
            m.parse()
                .expect("CAIRN_SOAK_MINUTES is a number of minutes")
        })
        .unwrap_or(2.0);
    let seed: u64 = match std::env::var("CAIRN_SOAK_SEED") {
        Ok(seed) => seed.parse().expect("CAIRN_SOAK_SEED is a whole number"),
        Err(_) => rig::random_seed(),
    };
    let hosts: usize = std::env::var("CAIRN_SOAK_HOSTS")
        .ok()
        .map(|n| n.parse().expect("CAIRN_SOAK_HOSTS is a whole number"))
        .unwrap_or(10);
    assert!(hosts >= 2, "the soak needs at least two hosts");
    println!(
        "soak: seed {seed}, {minutes} minutes, {hosts} hosts (replay: scripts/soak {minutes} {seed})"
    );
    let started = Instant::now();
    let rig = Arc::new(Rig::set_up(seed, hosts).await);
    // Whatever happens from here, no agent or server outlives the test.
    let _shut_down = ShutDown(rig.clone());
    println!(
        "soak: set up in {:.1} s: registry {} behind the fault proxy {}, cairn serve at {}",
        started.elapsed().as_secs_f64(),
        rig.registry_host,
        rig.proxy.host,
        rig.server_url()
    );

    // Faults for 3/4 of the run, then convergence.
    let fault_time = Duration::from_secs_f64((minutes * 60.0 * 0.75).max(20.0));
    let mut background = Vec::new();
    {
        let rig = rig.clone();
        background.push(std::thread::spawn(move || rig.watch_reboots()));
    }
    {
        let rig = rig.clone();
        background.push(std::thread::spawn(move || rig.monitor()));
    }
    {
        let rig = rig.clone();
        background.push(std::thread::spawn(move || rig.acknowledge_halted_groups()));
    }
    let mut injectors = Vec::new();
    {
        let rig = rig.clone();
        let rng = Rng::new(seed ^ 0x686f_7374);
        injectors.push(std::thread::spawn(move || rig.host_faults(rng)));
    }
    {
        let rig = rig.clone();
        let rng = Rng::new(seed ^ 0x7265_6769);
        injectors.push(std::thread::spawn(move || rig.registry_faults(rng)));
    }
    tokio::time::sleep(fault_time).await;
    rig.faults_over.store(true, Ordering::SeqCst);
    for injector in injectors {
        injector.join().expect("an injector panicked");
    }
    println!(
        "soak: faults stopped after {:.0} s; every fault cleared, waiting for the fleet to converge",
        started.elapsed().as_secs_f64()
    );
    let rig_for_end = rig.clone();
    let converged = tokio::task::spawn_blocking(move || rig_for_end.clear_faults_and_converge())
        .await
        .expect("convergence");
    // The watchers go on judging the settled fleet for the rest of the time.
    let total = Duration::from_secs_f64(minutes * 60.0);
    if let Some(rest) = total.checked_sub(started.elapsed()) {
        println!(
            "soak: converged; watching the settled fleet for the last {:.0} s",
            rest.as_secs_f64()
        );
        tokio::time::sleep(rest).await;
    }
    rig.all_over.store(true, Ordering::SeqCst);
    for thread in background {
        thread.join().expect("a watcher panicked");
    }
    rig.shut_down();
    let report = rig.report(&converged, started.elapsed());
    println!("{report}");
    let violations = rig.violations();
    assert!(
        violations.is_empty(),
        "{} invariant violations (seed {seed}):\n{}",
        violations.len(),
        violations.join("\n")
    );
}
