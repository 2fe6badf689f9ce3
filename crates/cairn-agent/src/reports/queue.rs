//! The reports waiting to be sent: one JSON file in the state directory,
//! changed only under its lock and replaced atomically (fsync'd) before any
//! send, so neither a crash, a SIGKILL nor a collector outage loses a report.
//!
//! The queue is bounded: past [`MAX_ENTRIES`] the oldest report that is not
//! a failure goes first, and only then the oldest failure. An entry is kept
//! until the collector takes it, refuses it for good, or it is older than
//! [`RETRY_HORIZON`]. The decisions here are pure (the time and the random
//! parts come in as arguments); [`update`] and [`read`] do the file.

use super::OutcomeReport;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The queue file inside the state directory.
pub const QUEUE_FILE: &str = "reports.json";

/// Where a queue file that does not parse is kept aside (overwritten by the
/// next damaged one), so an operator can look at it.
pub const DAMAGED_FILE: &str = "reports.json.damaged";

/// The most reports kept.
pub const MAX_ENTRIES: usize = 1000;

/// How long a report is retried after it was made; older ones are dropped.
/// Shorter than the collector's de-duplication window (7 days by default),
/// so a retry of a report the collector counted is still known there.
pub const RETRY_HORIZON: SignedDuration = SignedDuration::from_hours(72);

/// The pause after failed sends: `first`, doubling after each failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// After the first failure.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The pause after `failures` failures in a row (1 or more). `jitter` in
    /// [0, 1] picks a point in the upper half of the step, so hosts that
    /// failed together do not come back together.
    pub fn pause(&self, failures: u32, jitter: f64) -> Duration {
        let step = self
            .first
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.max);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// One report waiting to be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The stream, which names the collector's path.
    pub stream: String,
    /// The body, exactly as sent (its id is reused only for its retries).
    pub report: OutcomeReport,
    /// When it was made; it is dropped [`RETRY_HORIZON`] later.
    pub created: Timestamp,
    /// Not sent before this: a random delay after `created` for a boot that
    /// did not fail, `created` itself for failures and `rebooting`.
    pub not_before: Timestamp,
    /// Sends that failed so far.
    pub attempts: u32,
    /// The next send, after `not_before` and any backoff.
    pub next_try: Timestamp,
}

impl Entry {
    /// A new report made `now`, to be sent no earlier than `delay` later.
    pub fn new(stream: &str, report: OutcomeReport, now: Timestamp, delay: Duration) -> Entry {
        let not_before = SignedDuration::try_from(delay)
            .ok()
            .and_then(|delay| now.checked_add(delay).ok())
            .unwrap_or(now);
        Entry {
            stream: stream.to_string(),
            report,
            created: now,
            not_before,
            attempts: 0,
            next_try: not_before,
        }
    }

    /// True for a failure (`boot_failed`, `booted_unhealthy`, `rolled_back`,
    /// `rollback_failed`): kept over any other report when the queue is full.
    pub fn is_failure(&self) -> bool {
        super::is_failure(self.report.outcome)
    }

    /// True when it is older than the retry horizon at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.created
            .checked_add(RETRY_HORIZON)
            .is_ok_and(|end| end <= now)
    }
}

/// Reports dropped unsent, by why: the labels of
/// `cairn_agent_reports_dropped_total{reason}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dropped {
    /// The queue was full.
    pub full: u64,
    /// Older than the retry horizon.
    pub expired: u64,
    /// The collector refused it for good (a 4xx other than 401, 403, 408, 429).
    pub refused: u64,
}

/// The queue file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Queue {
    /// Format version of this file.
    pub format: u32,
    /// Waiting reports, oldest first.
    pub entries: Vec<Entry>,
    /// Reports the collector took (counted, or already counted), since the
    /// file was made: `cairn_agent_reports_sent_total`.
    pub sent: u64,
    /// Reports dropped unsent, since the file was made.
    pub dropped: Dropped,
    /// Why the last send failed; cleared by the next that works.
    pub last_error: Option<String>,
    /// The newest reports made, by attempt and outcome (see [`Queue::push_once`]),
    /// at most [`MADE_KEPT`]: local only, never sent.
    pub made: Vec<String>,
}

/// How many attempt-and-outcome keys [`Queue::made`] keeps: far more than
/// the steps one attempt can repeat.
pub const MADE_KEPT: usize = 32;

/// What became of one send.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// The collector took it: remove it.
    Sent,
    /// Refused for good: drop it, and say why.
    Refused(String),
    /// Try again at `at`; `error` says what failed.
    Retry {
        /// When.
        at: Timestamp,
        /// What failed.
        error: String,
    },
}

impl Queue {
    /// [`Queue::push`], once per `made` key (an attempt's start, target and
    /// outcome): a step repeated after a crash, or a reboot retried after a
    /// failed apply, is not reported twice. `None` when it was made before.
    pub fn push_once(&mut self, made: String, entry: Entry, now: Timestamp) -> Option<Vec<Entry>> {
        if self.made.contains(&made) {
            return None;
        }
        self.made.push(made);
        let excess = self.made.len().saturating_sub(MADE_KEPT);
        self.made.drain(..excess);
        Some(self.push(entry, now))
    }

    /// Add `entry`, then drop what the bound and the horizon ask for.
    /// Returns the reports dropped because the queue was full.
    pub fn push(&mut self, entry: Entry, now: Timestamp) -> Vec<Entry> {
        self.entries.push(entry);
        self.expire(now);
        let mut dropped = Vec::new();
        while self.entries.len() > MAX_ENTRIES {
            let oldest = |failure: bool| {
                self.entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.is_failure() == failure)
                    .min_by_key(|(_, e)| e.created)
                    .map(|(at, _)| at)
            };
            let Some(at) = oldest(false).or_else(|| oldest(true)) else {
                break;
            };
            dropped.push(self.entries.remove(at));
            self.dropped.full += 1;
        }
        dropped
    }

    /// Drop every report older than the retry horizon; how many went.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| !e.expired(now));
        let gone = before - self.entries.len();
        self.dropped.expired += gone as u64;
        gone
    }

    /// The ids of the reports due at `now`: failures first, then the oldest.
    pub fn due(&self, now: Timestamp) -> Vec<String> {
        let mut due: Vec<&Entry> = self.entries.iter().filter(|e| e.next_try <= now).collect();
        due.sort_by_key(|e| (!e.is_failure(), e.created));
        due.into_iter().map(|e| e.report.id.clone()).collect()
    }

    /// When the next report falls due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.entries.iter().map(|e| e.next_try).min()
    }

    /// The report with this id.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.report.id == id)
    }

    /// Record what became of the send of `id`. A report no longer queued
    /// (sent meanwhile by another sender) changes nothing.
    pub fn settle(&mut self, id: &str, settled: Settled) {
        let Some(at) = self.entries.iter().position(|e| e.report.id == id) else {
            return;
        };
        match settled {
            Settled::Sent => {
                self.entries.remove(at);
                self.sent += 1;
                self.last_error = None;
            }
            Settled::Refused(error) => {
                self.entries.remove(at);
                self.dropped.refused += 1;
                self.last_error = Some(error);
            }
            Settled::Retry { at: next, error } => {
                let entry = &mut self.entries[at];
                entry.attempts = entry.attempts.saturating_add(1);
                entry.next_try = next.max(entry.not_before);
                self.last_error = Some(error);
            }
        }
    }
}

/// Why the queue file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Reading, writing or locking the file failed.
    #[error(transparent)]
    Fs(#[from] cairn_fs::FsError),
    /// The queue could not be encoded.
    #[error("{}: {source}", .path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

impl QueueError {
    /// A short, fixed label for logs: `read`, `write`, `lock` or `encode`.
    pub fn kind(&self) -> &'static str {
        match self {
            QueueError::Fs(e) => e.kind(),
            QueueError::Encode { .. } => "encode",
        }
    }
}

/// The queue in `bytes` (`None`: no file yet). A file that does not parse
/// is kept aside as [`DAMAGED_FILE`] and the queue starts empty: reports are
/// not worth stopping the agent for.
fn decode(state_dir: &Path, bytes: Option<&[u8]>, keep_aside: bool) -> Queue {
    let Some(bytes) = bytes else {
        return Queue::default();
    };
    match serde_json::from_slice::<Queue>(bytes) {
        Ok(queue) => queue,
        Err(error) => {
            let aside = state_dir.join(DAMAGED_FILE);
            if keep_aside {
                match cairn_fs::write_atomic(&aside, bytes) {
                    Ok(()) => tracing::warn!(
                        %error,
                        kept = %aside.display(),
                        "the report queue does not parse: kept aside, starting an empty queue"
                    ),
                    Err(e) => tracing::warn!(
                        %error,
                        aside_error = %e,
                        "the report queue does not parse, and could not be kept aside: starting an empty queue"
                    ),
                }
            }
            Queue::default()
        }
    }
}

/// Change the queue under its lock and write it back (atomically, fsync'd)
/// before returning what `change` returned.
pub fn update<T>(state_dir: &Path, change: impl FnOnce(&mut Queue) -> T) -> Result<T, QueueError> {
    let path = state_dir.join(QUEUE_FILE);
    std::fs::create_dir_all(state_dir).map_err(|source| cairn_fs::FsError::Write {
        path: state_dir.to_path_buf(),
        source,
    })?;
    // The lock is on a file beside the queue, which is replaced by a rename.
    let _lock = cairn_fs::FileLock::acquire(&cairn_fs::lock_path(&path))?;
    let old = cairn_fs::read_optional(&path)?;
    let mut queue = decode(state_dir, old.as_deref(), true);
    let result = change(&mut queue);
    queue.format = 1;
    let bytes = serde_json::to_vec(&queue).map_err(|source| QueueError::Encode {
        path: path.clone(),
        source,
    })?;
    cairn_fs::write_atomic(&path, &bytes)?;
    Ok(result)
}

/// The queue as last written (without its lock: the file is only ever
/// replaced whole). A damaged file reads as empty; [`update`] keeps it aside.
pub fn read(state_dir: &Path) -> Result<Queue, QueueError> {
    let bytes = cairn_fs::read_optional(&state_dir.join(QUEUE_FILE))?;
    Ok(decode(state_dir, bytes.as_deref(), false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;
    use crate::reports::{OutcomeReport, ReportedRelease};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).expect("time")
    }

    fn report(id: &str, outcome: Outcome) -> OutcomeReport {
        OutcomeReport {
            id: id.to_string(),
            from: Some(ReportedRelease {
                version: "44.2".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
            }),
            to: ReportedRelease {
                version: "44.3".into(),
                digest: format!("sha256:{}", "b".repeat(64)),
            },
            outcome,
            agent_version: "0.1.0".into(),
        }
    }

    fn entry(id: &str, outcome: Outcome, created: i64) -> Entry {
        Entry::new("stable", report(id, outcome), at(created), Duration::ZERO)
    }

    fn ids(queue: &Queue) -> Vec<&str> {
        queue.entries.iter().map(|e| e.report.id.as_str()).collect()
    }

    #[test]
    fn an_attempts_outcome_is_reported_once_however_often_its_step_runs() {
        let mut queue = Queue::default();
        let key = |n: usize| format!("2026-11-30T06:00:00Z|sha256:b|rebooting{n}");
        assert!(
            queue
                .push_once(key(0), entry("r1", Outcome::Rebooting, 0), at(0))
                .is_some()
        );
        // The same step again (a retried apply, a crash before the state
        // was saved): not made twice.
        assert!(
            queue
                .push_once(key(0), entry("r2", Outcome::Rebooting, 1), at(1))
                .is_none()
        );
        assert_eq!(ids(&queue), ["r1"]);
        // The keys kept are bounded, the newest kept.
        for n in 1..=100 {
            queue.push_once(
                key(n),
                entry(&format!("k{n}"), Outcome::Rebooting, 2),
                at(2),
            );
        }
        assert_eq!(queue.made.len(), MADE_KEPT);
        assert_eq!(queue.made.last(), Some(&key(100)));
    }

    #[test]
    fn a_full_queue_drops_the_oldest_non_failure_first_then_the_oldest_failure() {
        let mut queue = Queue::default();
        // 999 failures, then one healthy boot: full.
        for n in 0..999 {
            queue.push(entry(&format!("f{n}"), Outcome::BootFailed, n), at(n));
        }
        queue.push(entry("healthy-1", Outcome::BootedHealthy, 1000), at(1000));
        assert_eq!(queue.entries.len(), MAX_ENTRIES);
        assert_eq!(queue.dropped.full, 0);
        // A newer healthy boot: the older one goes, though failures are older still.
        let gone = queue.push(entry("healthy-2", Outcome::BootedHealthy, 1001), at(1001));
        assert_eq!(
            gone.iter()
                .map(|e| e.report.id.as_str())
                .collect::<Vec<_>>(),
            ["healthy-1"]
        );
        // `rebooting` is not a failure either.
        let gone = queue.push(entry("reboot-1", Outcome::Rebooting, 1002), at(1002));
        assert_eq!(gone[0].report.id, "healthy-2");
        // A failure: the last non-failure goes, even though it is the newest.
        let gone = queue.push(entry("f-new", Outcome::RolledBack, 1003), at(1003));
        assert_eq!(gone[0].report.id, "reboot-1");
        // Only failures left: the oldest failure goes.
        let gone = queue.push(entry("f-newer", Outcome::RollbackFailed, 1004), at(1004));
        assert_eq!(gone[0].report.id, "f0");
        // A non-failure arriving at a queue of failures is itself the one dropped.
        let gone = queue.push(
            entry("healthy-3", Outcome::BootedUnverified, 1005),
            at(1005),
        );
        assert_eq!(gone[0].report.id, "healthy-3");
        assert_eq!(queue.entries.len(), MAX_ENTRIES);
        assert_eq!(queue.dropped.full, 5);
        assert!(queue.entries.iter().all(Entry::is_failure));
        assert_eq!(ids(&queue).last(), Some(&"f-newer"));
    }

    #[test]
    fn reports_older_than_the_retry_horizon_are_dropped() {
        let mut queue = Queue::default();
        queue.push(entry("old", Outcome::BootFailed, 0), at(0));
        queue.push(entry("new", Outcome::BootFailed, 3600), at(3600));
        let horizon = RETRY_HORIZON.as_secs();
        assert_eq!(queue.expire(at(horizon - 1)), 0);
        assert_eq!(queue.expire(at(horizon)), 1);
        assert_eq!(ids(&queue), ["new"]);
        assert_eq!(queue.dropped.expired, 1);
        // Pushing expires too.
        queue.push(
            entry("newest", Outcome::Rebooting, horizon + 3600),
            at(horizon + 3600),
        );
        assert_eq!(ids(&queue), ["newest"]);
        assert_eq!(queue.dropped.expired, 2);
    }

    #[test]
    fn due_reports_come_failures_first_and_a_delay_holds_one_back() {
        let mut queue = Queue::default();
        queue.push(
            Entry::new(
                "stable",
                report("healthy", Outcome::BootedHealthy),
                at(0),
                Duration::from_secs(600),
            ),
            at(0),
        );
        queue.push(entry("rebooting", Outcome::Rebooting, 10), at(10));
        queue.push(entry("failed", Outcome::BootFailed, 20), at(20));
        assert_eq!(queue.due(at(20)), ["failed", "rebooting"]);
        assert_eq!(queue.next_due(), Some(at(10)));
        assert_eq!(queue.due(at(600)), ["failed", "healthy", "rebooting"]);
        let healthy = queue.get("healthy").expect("queued");
        assert_eq!((healthy.not_before, healthy.next_try), (at(600), at(600)));
    }

    #[test]
    fn settling_removes_sent_and_refused_reports_and_delays_the_rest() {
        let mut queue = Queue::default();
        for id in ["a", "b", "c"] {
            queue.push(entry(id, Outcome::BootFailed, 0), at(0));
        }
        queue.settle(
            "a",
            Settled::Retry {
                at: at(30),
                error: "HTTP 503".into(),
            },
        );
        let a = queue.get("a").expect("kept");
        assert_eq!((a.attempts, a.next_try), (1, at(30)));
        assert_eq!(queue.last_error.as_deref(), Some("HTTP 503"));
        queue.settle("b", Settled::Refused("HTTP 422: implausible".into()));
        queue.settle("c", Settled::Sent);
        // Gone already (another sender): nothing changes.
        queue.settle("c", Settled::Sent);
        assert_eq!(ids(&queue), ["a"]);
        assert_eq!((queue.sent, queue.dropped.refused), (1, 1));
        assert_eq!(queue.last_error, None, "a send that worked clears it");
        assert!(queue.due(at(29)).is_empty());
        assert_eq!(queue.due(at(30)), ["a"]);
    }

    #[test]
    fn the_backoff_doubles_from_its_first_step_to_its_cap_with_jitter_in_the_upper_half() {
        let backoff = Backoff::default();
        assert_eq!(backoff.pause(1, 1.0), Duration::from_secs(30));
        assert_eq!(backoff.pause(1, 0.0), Duration::from_secs(15));
        assert_eq!(backoff.pause(2, 1.0), Duration::from_secs(60));
        assert_eq!(backoff.pause(3, 0.5), Duration::from_secs(90));
        // 30 s · 2^7 = 64 min: capped at an hour.
        assert_eq!(backoff.pause(8, 1.0), Duration::from_secs(3600));
        assert_eq!(backoff.pause(u32::MAX, 1.0), Duration::from_secs(3600));
        assert_eq!(backoff.pause(u32::MAX, 0.0), Duration::from_secs(1800));
    }

    #[test]
    fn the_queue_survives_in_its_file_and_a_damaged_file_is_kept_aside() {
        let dir = tempfile::tempdir().expect("temp dir");
        update(dir.path(), |q| {
            q.push(entry("a", Outcome::BootFailed, 0), at(0))
        })
        .expect("update");
        let read_back = read(dir.path()).expect("read");
        assert_eq!(ids(&read_back), ["a"]);
        assert_eq!(read_back.format, 1);

        std::fs::write(dir.path().join(QUEUE_FILE), b"{\"entries\": [half").expect("damage");
        // Reading alone does not move it.
        assert!(read(dir.path()).expect("read").entries.is_empty());
        assert!(!dir.path().join(DAMAGED_FILE).exists());
        let queued = update(dir.path(), |q| {
            q.push(entry("b", Outcome::Rebooting, 10), at(10));
            q.entries.len()
        })
        .expect("an update after damage works");
        assert_eq!(queued, 1, "started empty");
        assert_eq!(
            std::fs::read(dir.path().join(DAMAGED_FILE)).expect("kept aside"),
            b"{\"entries\": [half"
        );
        assert_eq!(ids(&read(dir.path()).expect("read")), ["b"]);
    }
}
