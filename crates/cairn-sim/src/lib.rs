//! A fleet of nodes following one update graph over simulated weeks, decided
//! by the same `cairn-graph` code the agent runs, so a rollout plan can be
//! seen before it is published.
//!
//! Ticking every node at every check interval would be billions of decisions
//! for a million nodes over a month. A node's decision only changes when a
//! rollout reaches its wariness or it reboots into another release, and
//! [`UpdateGraph::next_change_after`] says exactly when the first happens. So
//! each node costs a handful of events in one time-ordered queue:
//! O(N log N + events).

#![forbid(unsafe_code)]

pub mod guard;
pub mod host;
pub mod plot;

pub use guard::{Comparison, Failure, Guard, Halt, ReleaseReports};

use cairn_graph::windows::Schedule;
use cairn_graph::{GraphDocument, Query, Scheme, UpdateGraph};
use jiff::{SignedDuration, Timestamp};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// How wariness is spread over the fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum Wariness {
    /// Evenly over [0, 1] (Fedora's hash of the node id is uniform).
    Uniform,
    /// These values, repeated over the fleet in order.
    Values(Vec<f64>),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of nodes.
    pub nodes: usize,
    /// Their wariness.
    pub wariness: Wariness,
    /// The architecture whose graph the fleet follows.
    pub arch: String,
    /// The releases nodes start on, with the share of the fleet on each
    /// (shares are normalised). Empty: everybody on the newest release that
    /// is offered to the whole fleet at `start` (what new installs get).
    pub booted: Vec<(String, f64)>,
    /// Start of the simulation.
    pub start: Timestamp,
    /// How long it runs.
    pub span: SignedDuration,
    /// Time between a node's checks; each node has its own phase.
    pub check_interval: SignedDuration,
    /// Time from the decision to reboot until the new release is up.
    pub reboot_time: SignedDuration,
    /// Maintenance windows, when reboots are limited to them.
    pub schedule: Option<Schedule>,
    /// A FleetLock with this many slots: a node reboots only holding one,
    /// and releases it once it is up again.
    pub lock_slots: Option<usize>,
    /// Points on the timeline.
    pub samples: usize,
    /// Seed of the node phases, of which hosts a failing release fails on,
    /// and of the delays of healthy reports.
    pub seed: u64,
    /// Releases that fail to boot on a share of the hosts that take them.
    pub failures: Vec<Failure>,
    /// The rollout guard, halting a release on its hosts' reports.
    pub guard: Option<Guard>,
    /// Digests a verified halt list halts from the start: offered to no host.
    pub halted: Vec<String>,
}

/// Why a simulation cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The document has no image releases for this architecture.
    #[error("the document has no releases with an image for {0}")]
    NoReleases(String),
    /// The starting release is not in this architecture's graph.
    #[error("release {0} is not in the graph for {1}")]
    UnknownRelease(String, String),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// A release on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Version.
    pub version: String,
    /// Barrier reason, if it is one.
    pub barrier: Option<String>,
    /// Dead-end reason, if it is one.
    pub deadend: Option<String>,
    /// Rollout start and end (Unix seconds), when it has a rollout.
    pub rollout: Option<(i64, Option<i64>)>,
    /// Share of the fleet on it at each sample, 0 to 1.
    pub shares: Vec<f64>,
}

/// The result.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Sample times.
    pub times: Vec<Timestamp>,
    /// Every release some node was on, in graph order.
    pub lines: Vec<Line>,
    /// Nodes simulated.
    pub nodes: usize,
    /// Events processed (checks and boots).
    pub events: u64,
    /// Node counts per release at the end, in graph order of `lines`.
    pub final_counts: Vec<usize>,
    /// Per wariness quartile: when its last node made its last move.
    pub settled: [Option<Timestamp>; 4],
    /// The simulation's start.
    pub start: Timestamp,
    /// Per release some node rebooted into, and per failing release, in
    /// graph order: what the hosts reported and the guard's halt.
    pub reports: Vec<ReleaseReports>,
    /// The guard the run had.
    pub guard: Option<Guard>,
}

/// A tiny deterministic generator (SplitMix64) for phases: no dependency,
/// and the same seed gives the same fleet.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The node comes up on its new release (before checks at the same second).
    Boot,
    /// The new release failed to boot: the node is back on the one it came
    /// from, and the failure is reported.
    BootFailed,
    /// The node asks the graph.
    Check,
}

type Event = (i64, Kind, u32, u32);

/// A time-ordered event queue in one-minute buckets. A binary heap of a
/// million events spends most of its time on cache misses; appending to the
/// bucket of an event's minute and sorting each minute when it comes is
/// cache-friendly. Events for the minute being processed go to a small heap.
struct Calendar {
    start: i64,
    end: i64,
    buckets: Vec<Vec<Event>>,
    /// The minute being processed, sorted newest first (popped from the end).
    current: Vec<Event>,
    /// Its index.
    current_index: Option<usize>,
    /// Events pushed for the current minute (or earlier) while it is processed.
    late: BinaryHeap<Reverse<Event>>,
}

const BUCKET_SECONDS: i64 = 60;

impl Calendar {
    fn new(start: i64, end: i64) -> Self {
        let count = ((end - start) / BUCKET_SECONDS + 1).max(1) as usize;
        Calendar {
            start,
            end,
            buckets: vec![Vec::new(); count],
            current: Vec::new(),
            current_index: None,
            late: BinaryHeap::new(),
        }
    }

    fn push(&mut self, event: Event) {
        if event.0 > self.end {
            return;
        }
        let index = ((event.0 - self.start).max(0) / BUCKET_SECONDS) as usize;
        match self.current_index {
            Some(current) if index <= current => self.late.push(Reverse(event)),
            _ => {
                if let Some(bucket) = self.buckets.get_mut(index) {
                    bucket.push(event);
                }
            }
        }
    }

    fn pop(&mut self) -> Option<Event> {
        loop {
            let next_sorted = self.current.last().copied();
            let next_late = self.late.peek().map(|Reverse(e)| *e);
            match (next_sorted, next_late) {
                (Some(a), Some(b)) if b < a => return self.late.pop().map(|Reverse(e)| e),
                (Some(_), _) => return self.current.pop(),
                (None, Some(_)) => return self.late.pop().map(|Reverse(e)| e),
                (None, None) => {}
            }
            // The current minute is done: sort the next non-empty one.
            let from = self.current_index.map_or(0, |i| i + 1);
            let next = (from..self.buckets.len()).find(|&i| !self.buckets[i].is_empty())?;
            self.current_index = Some(next);
            self.current = std::mem::take(&mut self.buckets[next]);
            self.current.sort_unstable_by(|a, b| b.cmp(a));
        }
    }
}

/// Simulate the fleet.
pub fn simulate(document: &GraphDocument, options: &Options) -> Result<Timeline, SimError> {
    if options.nodes == 0 || options.samples < 2 {
        return Err(SimError::Invalid(
            "at least one node and two samples are needed".into(),
        ));
    }
    let interval = options.check_interval.as_secs();
    if interval <= 0 {
        return Err(SimError::Invalid(
            "the check interval must be positive".into(),
        ));
    }
    let graph = UpdateGraph::from_document(document, &options.arch, Scheme::Oci);
    if graph.nodes().is_empty() {
        return Err(SimError::NoReleases(options.arch.clone()));
    }
    let starts = starting_releases(&graph, options)?;
    // Per graph position: the share of hosts it fails on.
    let mut fails = vec![None::<f64>; graph.nodes().len()];
    for failure in &options.failures {
        if !(0.0..=1.0).contains(&failure.share) {
            return Err(SimError::Invalid(format!(
                "the failure share of {} must be in [0, 1]",
                failure.version
            )));
        }
        let position = graph
            .nodes()
            .iter()
            .position(|n| n.version == failure.version)
            .ok_or_else(|| {
                SimError::UnknownRelease(failure.version.clone(), options.arch.clone())
            })?;
        fails[position] = Some(failure.share);
    }
    if let Some(guard) = &options.guard {
        if guard.interval.as_secs() <= 0 {
            return Err(SimError::Invalid(
                "the guard interval must be positive".into(),
            ));
        }
        if guard.report_delay.is_negative() || !(0.0..=1.0).contains(&guard.max_share) {
            return Err(SimError::Invalid(
                "the report delay must not be negative and the guard's share must be in [0, 1]"
                    .into(),
            ));
        }
    }
    let position: HashMap<&str, usize> = graph
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();

    let mut random = SplitMix(options.seed);
    let wariness: Vec<f64> = (0..options.nodes)
        .map(|i| match &options.wariness {
            // Evenly spaced, not random: the closed form is then exact.
            Wariness::Uniform => (i as f64 + 0.5) / options.nodes as f64,
            Wariness::Values(values) if values.is_empty() => 0.5,
            Wariness::Values(values) => values[i % values.len()].clamp(0.0, 1.0),
        })
        .collect();
    let phase: Vec<i64> = (0..options.nodes)
        .map(|_| (random.next() % interval.unsigned_abs()) as i64)
        .collect();
    let start = options.start.as_second();
    let end = start.saturating_add(options.span.as_secs());
    // The first check at or after `t` for node `i`.
    let check_after = |i: usize, t: i64| {
        let since = t - start - phase[i];
        start
            + phase[i]
            + since.div_euclid(interval) * interval
            + if since.rem_euclid(interval) == 0 {
                0
            } else {
                interval
            }
    };

    // Node i starts on the release whose cumulative share covers it.
    let total: f64 = starts.iter().map(|(_, share)| share).sum();
    let mut at = Vec::with_capacity(options.nodes);
    let mut counts = vec![0usize; graph.nodes().len()];
    let mut cumulative = 0.0;
    for (position, share) in &starts {
        cumulative += share / total;
        let until = ((cumulative * options.nodes as f64).round() as usize).min(options.nodes);
        while at.len() < until {
            at.push(*position);
            counts[*position] += 1;
        }
    }
    while at.len() < options.nodes {
        let last = starts.last().map_or(0, |(p, _)| *p);
        at.push(last);
        counts[last] += 1;
    }
    let mut last_move = vec![None::<i64>; options.nodes];
    // Releases passed through between samples (a barrier hop takes minutes).
    let mut visited = vec![false; graph.nodes().len()];
    for (position, _) in &starts {
        visited[*position] = true;
    }
    // Releases a host failed to boot: like the agent's deny-list, never
    // offered to it again. Empty (no allocation) without failing releases.
    let mut denied: Vec<Vec<String>> = if options.failures.is_empty() {
        Vec::new()
    } else {
        vec![Vec::new(); options.nodes]
    };
    let mut counts_of_reports =
        guard::Counts::new(graph.nodes().len(), options.guard.clone(), start);
    let mut halted: Vec<String> = options.halted.clone();
    let mut took_samples: Vec<Vec<u64>> = Vec::with_capacity(options.samples);
    let reboot = options.reboot_time.as_secs().max(1);
    let report_delay = options
        .guard
        .as_ref()
        .map_or(0, |g| g.report_delay.as_secs().max(0));
    let mut queue = Calendar::new(start, end);
    for i in 0..options.nodes {
        queue.push((check_after(i, start), Kind::Check, i as u32, 0));
    }
    let sample_times: Vec<i64> = (0..options.samples)
        .map(|k| start + (end - start) * k as i64 / (options.samples as i64 - 1))
        .collect();
    let mut samples: Vec<Vec<usize>> = Vec::with_capacity(options.samples);
    let mut next_sample = 0;
    let mut events = 0u64;
    let mut slots_taken = 0usize;

    while let Some((t, kind, node, target)) = queue.pop() {
        while next_sample < sample_times.len() && sample_times[next_sample] < t {
            samples.push(counts.clone());
            took_samples.push(took_now(&counts_of_reports, graph.nodes().len()));
            next_sample += 1;
        }
        // The guard's readings before this event; a halt reaches every host
        // at its next check.
        for position in counts_of_reports.read_before(t) {
            halted.push(graph.nodes()[position].id.to_string());
        }
        events += 1;
        let i = node as usize;
        match kind {
            Kind::Boot => {
                slots_taken = slots_taken.saturating_sub(1);
                counts[at[i]] -= 1;
                at[i] = target as usize;
                counts[at[i]] += 1;
                visited[at[i]] = true;
                last_move[i] = Some(t);
                let delay = (guard::draw(options.seed, guard::DELAY_SALT, i, at[i])
                    * report_delay as f64) as i64;
                counts_of_reports.healthy(at[i], t + delay);
                queue.push((check_after(i, t), Kind::Check, node, 0));
            }
            Kind::BootFailed => {
                slots_taken = slots_taken.saturating_sub(1);
                let failed = target as usize;
                counts_of_reports.failed(failed);
                if let Some(list) = denied.get_mut(i) {
                    list.push(graph.nodes()[failed].id.to_string());
                }
                queue.push((check_after(i, t), Kind::Check, node, 0));
            }
            Kind::Check => {
                let now =
                    Timestamp::from_second(t).map_err(|e| SimError::Invalid(e.to_string()))?;
                let booted = &graph.nodes()[at[i]];
                let query = Query {
                    booted: &booted.id,
                    wariness: wariness[i],
                    now,
                    deny: denied.get(i).map_or(&[], Vec::as_slice),
                    halted: &halted,
                    allow_downgrade: false,
                };
                let (decision, change) = graph.decide_and_next_change_at(at[i], &query);
                if let Some(to) = decision
                    .target
                    .as_ref()
                    .and_then(|t| position.get(t.digest.as_str()))
                {
                    match &options.schedule {
                        // Staged, waiting for the window: like the agent, it
                        // decides again at its first check inside the window.
                        Some(schedule) if !schedule.is_open(now) => {
                            if let Some(opening) = schedule.next_opening(now) {
                                let next = check_after(i, opening.as_second());
                                queue.push((next, Kind::Check, node, 0));
                            }
                        }
                        // Every slot taken: try again at the next check.
                        _ if options.lock_slots.is_some_and(|slots| slots_taken >= slots) => {
                            queue.push((check_after(i, t + 1), Kind::Check, node, 0));
                        }
                        _ => {
                            if options.lock_slots.is_some() {
                                slots_taken += 1;
                            }
                            counts_of_reports.rebooting(*to, t);
                            let fails_here = fails[*to].is_some_and(|share| {
                                guard::draw(options.seed, guard::FAIL_SALT, i, *to) < share
                            });
                            if fails_here {
                                // The failed boot, then the boot back into
                                // the release it came from.
                                let back = t.saturating_add(2 * reboot);
                                queue.push((back, Kind::BootFailed, node, *to as u32));
                            } else {
                                let up = t.saturating_add(reboot);
                                queue.push((up, Kind::Boot, node, *to as u32));
                            }
                        }
                    }
                } else if let Some(change) = change {
                    queue.push((check_after(i, change.as_second()), Kind::Check, node, 0));
                }
            }
        }
    }
    while samples.len() < sample_times.len() {
        samples.push(counts.clone());
        took_samples.push(took_now(&counts_of_reports, graph.nodes().len()));
    }
    // The guard reads on to the end: late reports can still trip it.
    counts_of_reports.read_before(end.saturating_add(1));
    let reports = (0..graph.nodes().len())
        .filter(|&p| fails[p].is_some() || counts_of_reports.took(p) > 0)
        .map(|p| ReleaseReports {
            version: graph.nodes()[p].version.clone(),
            fails: fails[p],
            took: counts_of_reports.took(p),
            failed: counts_of_reports.failures(p),
            took_over_time: took_samples.iter().map(|s| s[p]).collect(),
            halt: counts_of_reports.halt(p).cloned(),
        })
        .collect();

    let used: Vec<usize> = (0..graph.nodes().len()).filter(|&p| visited[p]).collect();
    let lines = used
        .iter()
        .map(|&p| {
            let node = &graph.nodes()[p];
            Line {
                version: node.version.clone(),
                barrier: node.barrier.clone(),
                deadend: node.deadend.clone(),
                rollout: node.rollout.map(|r| (r.start(), r.end())),
                shares: samples
                    .iter()
                    .map(|s| s[p] as f64 / options.nodes as f64)
                    .collect(),
            }
        })
        .collect();
    let mut settled = [None; 4];
    for (i, moved) in last_move.iter().enumerate() {
        let quartile = ((wariness[i] * 4.0) as usize).min(3);
        if let Some(t) = moved {
            settled[quartile] = Some(settled[quartile].map_or(*t, |s: i64| s.max(*t)));
        }
    }
    Ok(Timeline {
        times: sample_times
            .iter()
            .filter_map(|&t| Timestamp::from_second(t).ok())
            .collect(),
        lines,
        nodes: options.nodes,
        events,
        final_counts: used.iter().map(|&p| counts[p]).collect(),
        settled: settled.map(|s| s.and_then(|t| Timestamp::from_second(t).ok())),
        start: options.start,
        reports,
        guard: options.guard.clone(),
    })
}

/// Simulate the fleet with the guard of `options` and without it, on the
/// same seed (so the same hosts fail): what the guard spared.
pub fn simulate_with_and_without_guard(
    document: &GraphDocument,
    options: &Options,
) -> Result<Comparison, SimError> {
    let with_guard = simulate(document, options)?;
    let without_guard = simulate(
        document,
        &Options {
            guard: None,
            ..options.clone()
        },
    )?;
    Ok(Comparison {
        with_guard,
        without_guard,
    })
}

/// Hosts that have rebooted into each release so far.
fn took_now(counts: &guard::Counts, positions: usize) -> Vec<u64> {
    (0..positions).map(|p| counts.took(p)).collect()
}

fn starting_releases(
    graph: &UpdateGraph,
    options: &Options,
) -> Result<Vec<(usize, f64)>, SimError> {
    if !options.booted.is_empty() {
        let mut starts = Vec::new();
        for (version, share) in &options.booted {
            if !(share.is_finite() && *share > 0.0) {
                return Err(SimError::Invalid(format!(
                    "the share of {version} must be positive"
                )));
            }
            let position = graph
                .nodes()
                .iter()
                .position(|n| &n.version == version)
                .ok_or_else(|| SimError::UnknownRelease(version.clone(), options.arch.clone()))?;
            starts.push((position, *share));
        }
        return Ok(starts);
    }
    // What a fresh install gets: the newest release released to everybody.
    let newest = graph.nodes().len() - 1;
    let fully_out = (0..graph.nodes().len()).rev().find(|&p| {
        let node = &graph.nodes()[p];
        node.deadend.is_none()
            && node
                .rollout
                .is_none_or(|r| !r.hides(1.0, options.start.as_second()))
    });
    Ok(vec![(fully_out.unwrap_or(newest), 1.0)])
}

/// Time as people read it: `2 d 4 h`, `3 h 10 min`.
pub fn human(duration: SignedDuration) -> String {
    let minutes = duration.as_secs() / 60;
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{mins} min"),
        (0, _) => format!("{hours} h {mins} min"),
        _ => format!("{days} d {hours} h"),
    }
}

impl Timeline {
    /// Where the fleet ends, most-held release first: `at the end: 1.2 95.0%
    /// (950 nodes), 1.1 5.0% (50 nodes)`.
    fn final_spread(&self) -> String {
        let mut held: Vec<(&str, usize)> = self
            .lines
            .iter()
            .zip(&self.final_counts)
            .filter(|(_, count)| **count > 0)
            .map(|(line, count)| (line.version.as_str(), *count))
            .collect();
        held.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let nodes = self.nodes.max(1) as f64;
        let each: Vec<String> = held
            .iter()
            .map(|(version, count)| {
                let noun = if *count == 1 { "node" } else { "nodes" };
                format!(
                    "{version} {:.1}% ({count} {noun})",
                    *count as f64 * 100.0 / nodes
                )
            })
            .collect();
        format!("at the end: {}\n", each.join(", "))
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} nodes, {} events, from {} for {}\n",
            self.nodes,
            self.events,
            self.start.strftime("%Y-%m-%d %H:%M UTC"),
            human(
                self.times
                    .last()
                    .map_or(SignedDuration::ZERO, |t| t.duration_since(self.start))
            )
        );
        // The release most of the fleet ends on, and when 95% got there.
        if let Some((line, count)) = self
            .lines
            .iter()
            .zip(&self.final_counts)
            .max_by_key(|(_, c)| **c)
        {
            let share = *count as f64 / self.nodes as f64;
            let reached = line
                .shares
                .iter()
                .position(|s| *s >= 0.95)
                .map(|k| self.times[k].duration_since(self.start));
            match reached {
                // The fleet began there: nothing had to move.
                Some(after) if after <= SignedDuration::ZERO => text.push_str(&format!(
                    "95% on {} from the start (the fleet began there)\n",
                    line.version
                )),
                Some(after) => {
                    text.push_str(&format!("95% on {} after {}\n", line.version, human(after)))
                }
                None => text.push_str(&format!(
                    "{:.1}% on {} at the end (95% not reached)\n",
                    share * 100.0,
                    line.version
                )),
            }
        }
        text.push_str(&self.final_spread());
        for (line, count) in self.lines.iter().zip(&self.final_counts) {
            if *count == 0 {
                continue;
            }
            if let Some(reason) = &line.deadend {
                text.push_str(&format!(
                    "{count} nodes stuck on dead-end {} ({})\n",
                    line.version,
                    if reason.is_empty() { "generic" } else { reason }
                ));
            }
        }
        for (q, settled) in self.settled.iter().enumerate() {
            let range = format!("{:.2}-{:.2}", q as f64 / 4.0, (q + 1) as f64 / 4.0);
            match settled {
                Some(t) => text.push_str(&format!(
                    "wariness {range}: last move after {}\n",
                    human(t.duration_since(self.start))
                )),
                None => text.push_str(&format!("wariness {range}: no node moved\n")),
            }
        }
        text
    }
}
