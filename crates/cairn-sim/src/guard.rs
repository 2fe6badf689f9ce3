//! Failing releases and the rollout guard, as the simulator models them.
//!
//! A failing release fails to boot on a share of the hosts that take it. Like
//! the agent, such a host comes back on the release it came from, deny-lists
//! the failed one and never takes it again; it sends its failure report at
//! once. Every host sends `rebooting` when it decides to reboot, and a healthy
//! host its `booted_healthy` report after a random delay of up to the report
//! delay. The guard reads the counts every guard interval and halts a release
//! once it has at least `min_failures` failures and a failure share
//! (failures / `rebooting`) above `max_share`, or, when `max_missing` is set,
//! more than that many missing hosts. From then on no host is offered it.

use jiff::{SignedDuration, Timestamp};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A release that fails to boot on a share of the hosts that take it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Its version.
    pub version: String,
    /// The share of hosts it fails on, in [0, 1]; which hosts is drawn from
    /// the seed, the same in every run with that seed.
    pub share: f64,
}

/// The rollout guard's settings, and the report timing it sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// At least this many failure reports of a release.
    pub min_failures: u64,
    /// And a failure share (failures / `rebooting`) above this.
    pub max_share: f64,
    /// Or more than this many missing hosts, when set.
    pub max_missing: Option<u64>,
    /// How often the guard reads the counts.
    pub interval: SignedDuration,
    /// The longest random delay of a healthy report (the agent's
    /// `reports.max_delay_seconds`).
    pub report_delay: SignedDuration,
    /// A `rebooting` report this old without a final report counts as a
    /// missing host (the collector's `reports.missing_after_seconds`).
    pub missing_after: SignedDuration,
}

impl Default for Guard {
    /// The defaults of `cairn serve` and the agent: 3 failures, 5%, a check
    /// every minute, healthy reports delayed up to 30 minutes, missing after
    /// an hour.
    fn default() -> Self {
        Guard {
            min_failures: 3,
            max_share: 0.05,
            max_missing: None,
            interval: SignedDuration::from_mins(1),
            report_delay: SignedDuration::from_mins(30),
            missing_after: SignedDuration::from_hours(1),
        }
    }
}

/// When and on what counts the guard halted a release.
#[derive(Debug, Clone, PartialEq)]
pub struct Halt {
    /// The guard's reading that tripped; offered to no host after it.
    pub at: Timestamp,
    /// Failure reports counted then.
    pub failures: u64,
    /// `rebooting` reports counted then.
    pub rebooting: u64,
    /// Missing hosts counted then (counted only under a missing-host limit;
    /// 0 without one).
    pub missing: u64,
}

/// What the hosts reported of one release.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseReports {
    /// Its version.
    pub version: String,
    /// The share it fails on, when it is a failing release.
    pub fails: Option<f64>,
    /// Hosts that rebooted into it (its `rebooting` reports).
    pub took: u64,
    /// Of those, the hosts it failed on (each rolled back).
    pub failed: u64,
    /// Hosts that had rebooted into it by each sample time.
    pub took_over_time: Vec<u64>,
    /// The guard's halt, if it tripped.
    pub halt: Option<Halt>,
}

/// A uniform draw in [0, 1) for `host` and `release`: fixed by the seed, and
/// independent of the order of events, so a run with the guard and one
/// without fail the same hosts.
pub(crate) fn draw(seed: u64, salt: u64, host: usize, release: usize) -> f64 {
    let mut mix = crate::SplitMix(
        seed ^ salt
            ^ (host as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ (release as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7),
    );
    (mix.next() >> 11) as f64 / (1u64 << 53) as f64
}

/// Salts of the two draws: failing, and the healthy report's delay.
pub(crate) const FAIL_SALT: u64 = 0x6661_696c;
pub(crate) const DELAY_SALT: u64 = 0x6465_6c61;

/// The counts per release, as the collector has them, and the guard.
pub(crate) struct Counts {
    guard: Option<Guard>,
    /// Per graph position: `rebooting` reports.
    rebooting: Vec<u64>,
    /// Their arrival times, in order: kept only for a missing-host limit.
    rebooting_times: Vec<Vec<i64>>,
    failures: Vec<u64>,
    healthy: Vec<u64>,
    /// Healthy reports still in their delay.
    pending: Vec<BinaryHeap<Reverse<i64>>>,
    halts: Vec<Option<Halt>>,
    /// Positions with any report, in the order they got their first.
    active: Vec<usize>,
    next_reading: i64,
}

impl Counts {
    pub(crate) fn new(positions: usize, guard: Option<Guard>, start: i64) -> Self {
        let next_reading = start + guard.as_ref().map_or(0, |g| g.interval.as_secs());
        Counts {
            guard,
            rebooting: vec![0; positions],
            rebooting_times: vec![Vec::new(); positions],
            failures: vec![0; positions],
            healthy: vec![0; positions],
            pending: vec![BinaryHeap::new(); positions],
            halts: vec![None; positions],
            active: Vec::new(),
            next_reading,
        }
    }

    pub(crate) fn rebooting(&mut self, position: usize, at: i64) {
        if self.rebooting[position] == 0 {
            self.active.push(position);
        }
        self.rebooting[position] += 1;
        if self.guard.as_ref().is_some_and(|g| g.max_missing.is_some()) {
            self.rebooting_times[position].push(at);
        }
    }

    pub(crate) fn failed(&mut self, position: usize) {
        self.failures[position] += 1;
    }

    /// A healthy boot whose report arrives at `arrives`.
    pub(crate) fn healthy(&mut self, position: usize, arrives: i64) {
        if self.guard.is_some() {
            self.pending[position].push(Reverse(arrives));
        }
    }

    pub(crate) fn took(&self, position: usize) -> u64 {
        self.rebooting[position]
    }

    pub(crate) fn failures(&self, position: usize) -> u64 {
        self.failures[position]
    }

    pub(crate) fn halt(&self, position: usize) -> Option<&Halt> {
        self.halts[position].as_ref()
    }

    /// Every guard reading before `t` (the reports of events up to then are
    /// all in); returns the positions halted by them.
    pub(crate) fn read_before(&mut self, t: i64) -> Vec<usize> {
        let Some(guard) = self.guard.clone() else {
            return Vec::new();
        };
        let step = guard.interval.as_secs().max(1);
        let mut halted = Vec::new();
        if self.active.is_empty() && self.next_reading < t {
            // Nothing reported yet: skip to the first reading at or after `t`.
            let behind = (t - self.next_reading + step - 1) / step;
            self.next_reading += behind * step;
        }
        while self.next_reading < t {
            let now = self.next_reading;
            self.next_reading += step;
            for index in 0..self.active.len() {
                let position = self.active[index];
                if self.halts[position].is_some() {
                    continue;
                }
                while let Some(Reverse(arrives)) = self.pending[position].peek().copied() {
                    if arrives > now {
                        break;
                    }
                    self.pending[position].pop();
                    self.healthy[position] += 1;
                }
                let rebooting = self.rebooting[position];
                let failures = self.failures[position];
                let aged = now - guard.missing_after.as_secs();
                let old = self.rebooting_times[position].partition_point(|&r| r <= aged) as u64;
                let missing = old.saturating_sub(failures + self.healthy[position]);
                let by_share = failures >= guard.min_failures
                    && rebooting > 0
                    && failures as f64 / rebooting as f64 > guard.max_share;
                let by_missing = guard.max_missing.is_some_and(|max| missing > max);
                if by_share || by_missing {
                    let Ok(at) = Timestamp::from_second(now) else {
                        continue;
                    };
                    self.halts[position] = Some(Halt {
                        at,
                        failures,
                        rebooting,
                        missing,
                    });
                    halted.push(position);
                }
            }
        }
        halted
    }
}

/// A run with the guard and the same run (same seed, same failing hosts)
/// without it.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// With the guard.
    pub with_guard: crate::Timeline,
    /// Without it.
    pub without_guard: crate::Timeline,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn failing_line(report: &ReleaseReports, share: f64) -> String {
    format!(
        "{} fails to boot on {:.1}% of hosts",
        report.version,
        share * 100.0
    )
}

impl crate::Timeline {
    /// Per failing release: how many hosts took it and how many it failed
    /// on; with a guard, what the guard did with every release.
    pub fn failure_summary(&self) -> String {
        let mut text = String::new();
        for report in &self.reports {
            if let Some(share) = report.fails {
                text.push_str(&format!(
                    "{}: {} hosts took it, {} failed and rolled back\n",
                    failing_line(report, share),
                    report.took,
                    report.failed
                ));
            }
        }
        text.push_str(&self.guard_summary());
        text
    }

    /// What the guard did with each release hosts rebooted into: halted
    /// when and on which counts, or not halted and its counts at the end.
    pub fn guard_summary(&self) -> String {
        let Some(guard) = &self.guard else {
            return String::new();
        };
        let mut text = format!(
            "guard: halts at {} failures or more and a failure share above {:.1}%{}, read every {}; healthy reports delayed up to {}\n",
            guard.min_failures,
            guard.max_share * 100.0,
            guard.max_missing.map_or(String::new(), |m| format!(
                ", or more than {m} missing hosts"
            )),
            crate::human(guard.interval),
            crate::human(guard.report_delay)
        );
        for report in self
            .reports
            .iter()
            .filter(|r| r.took > 0 || r.halt.is_some())
        {
            text.push_str(&match &report.halt {
                Some(halt) => format!(
                    "guard: halted {} after {} ({}) on {} failures of {} rebooting reports ({:.1}%){}\n",
                    report.version,
                    crate::human(halt.at.duration_since(self.start)),
                    halt.at,
                    halt.failures,
                    halt.rebooting,
                    percent(halt.failures, halt.rebooting),
                    if guard.max_missing.is_some() {
                        format!(", {} missing", halt.missing)
                    } else {
                        String::new()
                    }
                ),
                None => format!(
                    "guard: {} not tripped: {} failures of {} rebooting reports ({:.1}%)\n",
                    report.version,
                    report.failed,
                    report.took,
                    percent(report.failed, report.took)
                ),
            });
        }
        text
    }
}

impl Comparison {
    /// Per failing release: hosts that took it with the guard and without,
    /// then what the guard did.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for with in &self.with_guard.reports {
            let Some(share) = with.fails else {
                continue;
            };
            let without = self
                .without_guard
                .reports
                .iter()
                .find(|r| r.version == with.version);
            let (took, failed) = without.map_or((0, 0), |r| (r.took, r.failed));
            text.push_str(&format!(
                "{}: {} hosts took it with the guard, {} without\n",
                failing_line(with, share),
                with.took,
                took
            ));
            text.push_str(&format!(
                "  with the guard: {} failed and rolled back; {}\n",
                with.failed,
                match &with.halt {
                    Some(halt) => format!(
                        "halted after {}",
                        crate::human(halt.at.duration_since(self.with_guard.start))
                    ),
                    None => "not halted".to_string(),
                }
            ));
            text.push_str(&format!(
                "  without the guard: {failed} failed and rolled back\n"
            ));
        }
        text.push_str(&self.with_guard.guard_summary());
        text
    }
}
