//! The simulator against the agent's own decision code and against closed
//! forms, and its plot.

use cairn_graph::{ArchEntry, GraphDocument, Query, Reason, Release, Rollout};
use cairn_sim::{Options, Wariness, simulate};
use jiff::{SignedDuration, Timestamp};

const T0: i64 = 1_780_000_000;

fn release(n: u64, rollout: Option<Rollout>) -> Release {
    Release {
        version: format!("1.{n}"),
        architectures: [(
            "x86_64".to_string(),
            ArchEntry::image(format!("sha256:{n:064x}")),
        )]
        .into(),
        rollout,
        ..Release::default()
    }
}

fn document(releases: Vec<Release>) -> GraphDocument {
    GraphDocument {
        stream: "stable".into(),
        repository: "registry.example/os".into(),
        sequence: 1,
        issued: Timestamp::from_second(T0).expect("time"),
        expires: Timestamp::from_second(T0 + 90 * 86_400).expect("time"),
        releases,
        ..GraphDocument::default()
    }
}

fn options(nodes: usize, hours: i64) -> Options {
    Options {
        nodes,
        wariness: Wariness::Uniform,
        arch: "x86_64".into(),
        booted: vec![("1.0".into(), 1.0)],
        start: Timestamp::from_second(T0).expect("time"),
        span: SignedDuration::from_hours(hours),
        check_interval: SignedDuration::from_mins(5),
        reboot_time: SignedDuration::from_mins(2),
        schedule: None,
        lock_slots: None,
        samples: 97,
        seed: 7,
        failures: Vec::new(),
        guard: None,
        halted: Vec::new(),
    }
}

fn linear(start: i64, hours: u64) -> Option<Rollout> {
    Some(Rollout {
        start_epoch: Some(start),
        start_percentage: Some(0.0),
        duration_minutes: Some(hours * 60),
    })
}

#[test]
fn half_the_fleet_is_offered_a_48_hour_linear_rollout_at_24_hours() {
    let doc = document(vec![release(0, None), release(1, linear(T0, 48))]);
    let timeline = simulate(&doc, &options(20_000, 48)).expect("runs");
    let on_new = &timeline
        .lines
        .iter()
        .find(|l| l.version == "1.1")
        .expect("1.1")
        .shares;
    // Sample 48 of 97 is at 24 h; nodes lag their check by up to 5 min + 2 min reboot.
    let at_24h = on_new[48];
    assert!((at_24h - 0.5).abs() < 0.01, "share at 24 h: {at_24h}");
    assert!(
        (on_new[24] - 0.25).abs() < 0.01,
        "share at 12 h: {}",
        on_new[24]
    );
    assert!(on_new[96] > 0.99, "everybody at the end: {}", on_new[96]);
}

#[test]
fn each_node_lands_where_the_agents_decision_sends_it() {
    // A barrier, a rollout half-way, a dead-end beyond: several hops.
    let mut releases = vec![release(0, None), release(1, Some(Rollout::immediate()))];
    let mut barrier = release(2, Some(Rollout::immediate()));
    barrier.barrier = Some(Reason::new("migrate"));
    releases.push(barrier);
    releases.push(release(3, linear(T0 - 24 * 3600, 48)));
    let mut dead = release(4, linear(T0 - 24 * 3600, 48));
    dead.deadend = Some(Reason::new("broken"));
    releases.push(dead);
    let doc = document(releases);
    let graph = doc.graph_for("x86_64", "sha256:");
    for wariness in [0.0, 0.2, 0.49, 0.6, 0.9, 1.0] {
        // One node, a short span: follow the agent's decisions hop by hop.
        let mut expected = "1.0".to_string();
        loop {
            let (at, node) = graph
                .nodes()
                .iter()
                .enumerate()
                .find(|(_, n)| n.version == expected)
                .expect("node");
            let query = Query {
                booted: &node.id,
                wariness,
                now: Timestamp::from_second(T0).expect("time"),
                deny: &[],
                halted: &[],
                allow_downgrade: false,
            };
            match graph.decide_at(at, &query).target {
                Some(target) => expected = target.version,
                None => break,
            }
        }
        let timeline = simulate(
            &doc,
            &Options {
                wariness: Wariness::Values(vec![wariness]),
                // Short enough that the rollout (50% now) stays below 0.6.
                ..options(1, 1)
            },
        )
        .expect("runs");
        let ended: Vec<&str> = timeline
            .lines
            .iter()
            .zip(&timeline.final_counts)
            .filter(|(_, c)| **c == 1)
            .map(|(l, _)| l.version.as_str())
            .collect();
        assert_eq!(ended, vec![expected.as_str()], "wariness {wariness}");
    }
}

#[test]
fn the_summary_names_dead_ends_and_convergence() {
    let mut dead = release(1, Some(Rollout::immediate()));
    dead.deadend = Some(Reason::new("broken kernel"));
    let doc = document(vec![
        release(0, None),
        dead,
        release(2, Some(Rollout::immediate())),
    ]);
    // From 1.0 the dead-end is never a target: the fleet goes to 1.2.
    let summary = simulate(&doc, &options(1000, 24)).expect("runs").summary();
    assert!(summary.contains("95% on 1.2 after"), "{summary}");
    assert!(!summary.contains("stuck"), "{summary}");
    assert!(
        summary.contains("wariness 0.75-1.00: last move after"),
        "{summary}"
    );
    // Booted on the dead-end, nobody moves, and the summary says so.
    let stuck = Options {
        booted: vec![("1.1".into(), 1.0)],
        ..options(1000, 24)
    };
    let summary = simulate(&doc, &stuck).expect("runs").summary();
    assert!(
        summary.contains("1000 nodes stuck on dead-end 1.1 (broken kernel)"),
        "{summary}"
    );
    // The fleet began on the dead-end: that is not a move "after 0 min".
    assert!(
        summary.contains("95% on 1.1 from the start (the fleet began there)"),
        "{summary}"
    );
    assert!(!summary.contains("after 0 min"), "{summary}");
    assert!(
        summary.contains("at the end: 1.1 100.0% (1000 nodes)\n"),
        "{summary}"
    );
}

/// The summary gives where the whole fleet ends, most-held release first.
#[test]
fn the_summary_gives_the_final_spread() {
    let doc = document(vec![release(0, None), release(1, None)]);
    let split = Options {
        booted: vec![("1.0".into(), 3.0), ("1.1".into(), 1.0)],
        ..options(1000, 1)
    };
    let timeline = simulate(&doc, &split).expect("runs");
    let summary = timeline.summary();
    let on = |version: &str| {
        timeline
            .lines
            .iter()
            .zip(&timeline.final_counts)
            .find(|(line, _)| line.version == version)
            .map_or(0, |(_, count)| *count)
    };
    let (old, new) = (on("1.0"), on("1.1"));
    assert_eq!(old + new, 1000, "{summary}");
    // Release 1.1 has no rollout: nobody moves, so the start's split stays.
    assert!(old > new, "{summary}");
    let expected = format!(
        "at the end: 1.0 {:.1}% ({old} nodes), 1.1 {:.1}% ({new} nodes)\n",
        old as f64 / 10.0,
        new as f64 / 10.0
    );
    assert!(summary.contains(&expected), "{expected}\n{summary}");
}

#[test]
fn the_plot_is_an_svg_with_every_release() {
    let doc = document(vec![release(0, None), release(1, linear(T0 + 3600, 24))]);
    let timeline = simulate(&doc, &options(500, 36)).expect("runs");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plot.svg");
    cairn_sim::plot::svg(&timeline, "test rollout", &path).expect("plot");
    let text = std::fs::read_to_string(&path).expect("svg");
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(80)]);
    assert!(text.trim_end().ends_with("</svg>"));
    for label in ["1.0", "1.1", "test rollout", "1.1 rollout start"] {
        assert!(text.contains(label), "{label} in the plot");
    }
}

#[test]
fn the_fleet_starts_spread_as_asked() {
    let doc = document(vec![
        release(0, None),
        release(1, None),
        release(2, linear(T0 + 86_400, 24)),
    ]);
    let timeline = simulate(
        &doc,
        &Options {
            booted: vec![("1.0".into(), 3.0), ("1.1".into(), 7.0)],
            ..options(1000, 12)
        },
    )
    .expect("runs");
    let first: Vec<f64> = timeline.lines.iter().map(|l| l.shares[0]).collect();
    assert_eq!(first, vec![0.3, 0.7]);
    // Nothing is offered before the rollout starts tomorrow.
    assert_eq!(timeline.final_counts, vec![300, 700]);
    let unknown = Options {
        booted: vec![("9.9".into(), 1.0)],
        ..options(10, 1)
    };
    assert!(simulate(&doc, &unknown).is_err());
}

#[test]
fn reboots_wait_for_the_window_and_take_the_best_target_then() {
    use cairn_graph::windows::{Schedule, Window, parse_day, parse_time};
    // 1.1 is offered at once, 1.2 six hours later; the only window opens at
    // 12:00 UTC on Friday, the day after the start (T0 is Thursday 20:26 UTC).
    let doc = document(vec![
        release(0, None),
        release(1, Some(Rollout::immediate())),
        release(
            2,
            Some(Rollout {
                start_epoch: Some(T0 + 6 * 3600),
                start_percentage: Some(1.0),
                duration_minutes: None,
            }),
        ),
    ]);
    let schedule = Schedule {
        windows: vec![Window {
            days: vec![parse_day("Fri").expect("day")],
            start: parse_time("12:00").expect("time"),
            length_minutes: 120,
        }],
        zone: jiff::tz::TimeZone::UTC,
        zone_name: "UTC".into(),
    };
    let timeline = simulate(
        &doc,
        &Options {
            schedule: Some(schedule),
            ..options(200, 48)
        },
    )
    .expect("runs");
    // Nobody reboots before the window; then everybody goes straight to 1.2.
    let on = |v: &str| {
        timeline
            .lines
            .iter()
            .find(|l| l.version == v)
            .map(|l| l.shares.clone())
    };
    let new = on("1.2").expect("1.2");
    let window_opens = (Timestamp::from_second(T0)
        .expect("time")
        .duration_until("2026-05-29T12:00:00Z".parse().expect("time")))
    .as_secs_f64()
        / (48.0 * 3600.0);
    let before = ((window_opens * 96.0).floor() as usize).saturating_sub(1);
    assert_eq!(new[before], 0.0, "nobody before the window");
    assert_eq!(*new.last().expect("end"), 1.0, "everybody on 1.2 after it");
    assert!(
        on("1.1").is_none_or(|s| s.iter().all(|x| *x == 0.0)),
        "nobody stopped at 1.1"
    );
}

#[test]
fn a_fleet_lock_lets_one_node_reboot_at_a_time() {
    let doc = document(vec![
        release(0, None),
        release(1, Some(Rollout::immediate())),
    ]);
    let free = simulate(&doc, &options(60, 6)).expect("runs");
    let locked = simulate(
        &doc,
        &Options {
            lock_slots: Some(1),
            ..options(60, 6)
        },
    )
    .expect("runs");
    let on_new = |t: &cairn_sim::Timeline| {
        t.lines
            .iter()
            .find(|l| l.version == "1.1")
            .expect("1.1")
            .shares
            .clone()
    };
    // Sample 16 is 60 minutes in. Without a lock everybody is through after
    // one check interval and a reboot; with one slot a reboot takes 2 minutes each.
    assert_eq!(on_new(&free)[16], 1.0);
    let through = on_new(&locked)[16];
    assert!(through > 0.2 && through <= 0.5, "one at a time: {through}");
    assert_eq!(
        *on_new(&locked).last().expect("end"),
        1.0,
        "all through in the end"
    );
}

#[test]
fn a_derived_fleet_walks_a_late_barrier_image_to_the_newest_base() {
    use cairn_graph::derive::{BaseGraph, BaseRelease, inherit};
    let base_digest = |age: u64| format!("sha256:{:064x}", 100 + age);
    let base = BaseGraph {
        source: "test".into(),
        repository: "registry.example/base".into(),
        releases: (0..3)
            .map(|age| BaseRelease {
                version: format!("b{age}"),
                age_index: age,
                digests: [base_digest(age)].into(),
                barrier: (age == 1).then(|| "migrate".to_string()),
                deadend: None,
            })
            .collect(),
        uneven: Vec::new(),
    };
    // Published as 1.0 (base 0), 1.1 (base 2), then 1.2 on the barrier base 1.
    let mut releases: Vec<Release> = [0, 2, 1]
        .iter()
        .enumerate()
        .map(|(n, &on)| Release {
            base: Some(cairn_graph::BaseImage::new("", base_digest(on))),
            ..release(n as u64, Some(Rollout::immediate()))
        })
        .collect();
    releases[0].rollout = None;
    let mut doc = document(releases);
    inherit(&mut doc, &base, &Default::default());
    let timeline = simulate(&doc, &options(200, 6)).expect("runs");
    let names: Vec<&str> = timeline.lines.iter().map(|l| l.version.as_str()).collect();
    let on_newest = names
        .iter()
        .position(|v| *v == "1.1")
        .map(|i| timeline.final_counts[i]);
    assert_eq!(
        on_newest,
        Some(200),
        "{names:?} {:?}",
        timeline.final_counts
    );
    // A fresh fleet starts on the newest release in update order: 1.1.
    let fresh = simulate(
        &doc,
        &Options {
            booted: Vec::new(),
            ..options(10, 1)
        },
    )
    .expect("runs");
    assert_eq!(fresh.lines.len(), 1);
    assert_eq!(fresh.lines[0].version, "1.1");
}

/// 1.1 rolls out linearly over 48 h from T0 and fails to boot on `share`
/// of the hosts that take it.
fn failing_rollout(share: f64, guard: Option<cairn_sim::Guard>) -> (GraphDocument, Options) {
    let doc = document(vec![release(0, None), release(1, linear(T0, 48))]);
    let options = Options {
        failures: vec![cairn_sim::Failure {
            version: "1.1".into(),
            share,
        }],
        guard,
        ..options(10_000, 72)
    };
    (doc, options)
}

fn reports<'a>(timeline: &'a cairn_sim::Timeline, version: &str) -> &'a cairn_sim::ReleaseReports {
    timeline
        .reports
        .iter()
        .find(|r| r.version == version)
        .expect("reports of the release")
}

fn final_count(timeline: &cairn_sim::Timeline, version: &str) -> usize {
    timeline
        .lines
        .iter()
        .zip(&timeline.final_counts)
        .find(|(l, _)| l.version == version)
        .map_or(0, |(_, c)| *c)
}

#[test]
fn the_guard_halts_a_release_failing_on_30_percent_soon_after_its_third_failure() {
    let guard = cairn_sim::Guard::default();
    let (doc, options) = failing_rollout(0.3, Some(guard.clone()));
    let compared = cairn_sim::simulate_with_and_without_guard(&doc, &options).expect("runs");
    let (with, without) = (&compared.with_guard, &compared.without_guard);
    let n = options.nodes as f64;
    let rollout = 48.0 * 3600.0;
    let (check, reboot) = (
        options.check_interval.as_secs() as f64,
        options.reboot_time.as_secs() as f64,
    );

    // Without the guard every host tries 1.1 once (the rollout ends within
    // the 72 hours); 30% fail, roll back, and never try it again.
    let open = reports(without, "1.1");
    assert_eq!(open.took, 10_000);
    assert!(open.halt.is_none());
    // Binomial(10,000, 0.3): mean 3,000, standard deviation 46.
    assert!((2_800..=3_200).contains(&open.failed), "{}", open.failed);
    assert_eq!(final_count(without, "1.0") as u64, open.failed);
    assert_eq!(final_count(without, "1.1") as u64, open.took - open.failed);

    let guarded = reports(with, "1.1");
    let halt = guarded.halt.as_ref().expect("the guard trips");
    // It trips on the rule: enough failures, and a share above the limit.
    assert!(halt.failures >= guard.min_failures, "{halt:?}");
    assert!(
        halt.failures as f64 / halt.rebooting as f64 > guard.max_share,
        "{halt:?}"
    );
    // Hosts stop taking 1.1 from the halt on: every `rebooting` report it
    // got was in when it tripped.
    assert_eq!(guarded.took, halt.rebooting);
    let after = (halt.at.as_second() - T0) as f64;
    // Node i (of wariness (i + 0.5) / n) is offered 1.1 at T0 + its
    // wariness x 48 h, and takes it at its next check, within one interval.
    // So by the halt every host offered it a check interval earlier took
    // it, and none offered it later did.
    let offered_by = |seconds: f64| (seconds / rollout * n + 0.5).floor().max(0.0);
    assert!(
        (guarded.took as f64) >= offered_by(after - check)
            && (guarded.took as f64) <= offered_by(after),
        "took {} by {after} s",
        guarded.took
    );
    // The earliest the third failure can be known: the third host offered
    // it, plus a failed boot and the boot back. The latest it trips: with
    // 30% failing, three failures among the first 40 takers fail to happen
    // with a chance of 1 in 10,000; then the 40th host's check, its two
    // boots and one guard reading.
    let earliest = 2.5 / n * rollout + 2.0 * reboot;
    let latest = 40.0 / n * rollout + check + 2.0 * reboot + guard.interval.as_secs() as f64;
    assert!(
        after >= earliest && after <= latest,
        "{after} s not in [{earliest}, {latest}]"
    );
    // Nobody took it after the halt's sample; the hosts that got through
    // stay on it, the failed ones are back on 1.0.
    let halt_sample = (after / (72.0 * 3600.0) * 96.0).ceil() as usize;
    assert!(
        guarded.took_over_time[halt_sample..]
            .iter()
            .all(|took| *took == guarded.took),
        "{:?}",
        &guarded.took_over_time[..halt_sample + 2]
    );
    assert_eq!(
        final_count(with, "1.1") as u64,
        guarded.took - guarded.failed
    );
    assert_eq!(
        final_count(with, "1.0") as u64,
        10_000 - guarded.took + guarded.failed
    );
    assert!(
        guarded.took * 100 < open.took,
        "{} vs {}",
        guarded.took,
        open.took
    );

    let summary = compared.summary();
    let expected = format!(
        "1.1 fails to boot on 30.0% of hosts: {} hosts took it with the guard, 10000 without\n",
        guarded.took
    );
    assert!(summary.contains(&expected), "{summary}");
    assert!(summary.contains("guard: halted 1.1 after "), "{summary}");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("failures.svg");
    cairn_sim::plot::failures_svg(
        &[("with the guard", with), ("without the guard", without)],
        "1.1 failing",
        &path,
    )
    .expect("plot");
    let svg = std::fs::read_to_string(&path).expect("svg");
    for label in [
        format!("hosts that took 1.1, with the guard: {}", guarded.took),
        "hosts that took 1.1, without the guard: 10000".to_string(),
        "guard halted 1.1".to_string(),
    ] {
        assert!(svg.contains(&label), "{label} in the plot");
    }
}

#[test]
fn without_failures_the_guard_never_trips() {
    let doc = document(vec![release(0, None), release(1, linear(T0, 48))]);
    let options = Options {
        guard: Some(cairn_sim::Guard::default()),
        ..options(10_000, 72)
    };
    let timeline = simulate(&doc, &options).expect("runs");
    let took = reports(&timeline, "1.1");
    assert_eq!((took.took, took.failed, &took.halt), (10_000, 0, &None));
    assert_eq!(final_count(&timeline, "1.1"), 10_000);
    let summary = timeline.guard_summary();
    assert!(
        summary.contains("guard: 1.1 not tripped: 0 failures of 10000 rebooting reports (0.0%)\n"),
        "{summary}"
    );
}

#[test]
fn hosts_never_retry_a_release_that_failed_and_move_past_it() {
    // 1.1 fails on half the hosts; 1.2 comes out six hours later.
    let doc = document(vec![
        release(0, None),
        release(1, Some(Rollout::immediate())),
        release(
            2,
            Some(Rollout {
                start_epoch: Some(T0 + 6 * 3600),
                start_percentage: Some(1.0),
                duration_minutes: None,
            }),
        ),
    ]);
    let options = Options {
        failures: vec![cairn_sim::Failure {
            version: "1.1".into(),
            share: 0.5,
        }],
        ..options(2_000, 12)
    };
    let timeline = simulate(&doc, &options).expect("runs");
    let failing = reports(&timeline, "1.1");
    assert_eq!(failing.took, 2_000, "each host tried it once");
    assert!(
        (900..=1_100).contains(&failing.failed),
        "{}",
        failing.failed
    );
    // Sample 40 is 5 hours in: the failed hosts are back on 1.0 and stay.
    let on_old = timeline
        .lines
        .iter()
        .find(|l| l.version == "1.0")
        .expect("1.0")
        .shares[40];
    assert_eq!(on_old, failing.failed as f64 / 2_000.0);
    // Then everybody, failed or not, goes on to 1.2.
    assert_eq!(final_count(&timeline, "1.2"), 2_000);
    assert!(timeline.failure_summary().contains(&format!(
        "1.1 fails to boot on 50.0% of hosts: 2000 hosts took it, {} failed and rolled back\n",
        failing.failed
    )));
}

#[test]
fn the_guard_counts_hosts_silent_past_the_missing_time() {
    // Healthy reports delayed up to 3 hours while a host counts as missing
    // after one: with max_missing 0, silence alone trips it.
    let doc = document(vec![
        release(0, None),
        release(1, Some(Rollout::immediate())),
    ]);
    let silent = Options {
        guard: Some(cairn_sim::Guard {
            max_missing: Some(0),
            report_delay: SignedDuration::from_hours(3),
            ..cairn_sim::Guard::default()
        }),
        ..options(1_000, 6)
    };
    let timeline = simulate(&doc, &silent).expect("runs");
    let halt = reports(&timeline, "1.1").halt.clone().expect("trips");
    assert_eq!(halt.failures, 0);
    assert!(halt.missing > 0, "{halt:?}");
    // Not before the first `rebooting` report is an hour old.
    assert!(halt.at.as_second() >= T0 + 3600, "{halt:?}");
    // Failing releases and settings out of range are refused.
    let unknown = Options {
        failures: vec![cairn_sim::Failure {
            version: "9.9".into(),
            share: 0.1,
        }],
        ..options(10, 1)
    };
    assert!(matches!(
        simulate(&doc, &unknown),
        Err(cairn_sim::SimError::UnknownRelease(v, _)) if v == "9.9"
    ));
}
