//! Outcome reports: how each update attempt went, told to a `cairn serve`
//! collector without anything that links the report to the host.
//!
//! Opt-in: nothing is queued or sent unless `reports.url` is configured.
//! A report carries the stream, the from and to releases (version and
//! release id), the outcome word, the agent's version and a random id made
//! for that report alone (its retries reuse it, so the collector counts it
//! once). Never the machine id, the host name, the wariness, the boot id or
//! anything else that stays the same from one report to the next.
//!
//! Reports are written to a queue in the state directory ([`queue`]) before
//! any send, and sent by [`sender`]: failures and `rebooting` at once,
//! healthy or unverified boots after a random delay, so their timing does
//! not mark the host. The wire contract is in docs/agent.md.

pub mod queue;
pub mod sender;

use crate::history::{Attempt, Outcome};
use jiff::Timestamp;
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The largest body the collector accepts.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// `User-Agent` of every report: the same on every host of this version.
pub const USER_AGENT: &str = concat!("cairn-agent/", env!("CARGO_PKG_VERSION"));

/// A release as a report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedRelease {
    /// The version.
    pub version: String,
    /// The release id the graph uses: an image digest (`sha256:…`) or an
    /// ostree commit checksum.
    pub digest: String,
}

/// The body of one report: exactly the keys the collector accepts, no more.
/// (`Report` is the agent's report of a pass; this is the one sent.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeReport {
    /// 128 random bits as 32 lowercase hex digits, fresh for each report.
    pub id: String,
    /// The release the host was on; absent when the agent did not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ReportedRelease>,
    /// The target.
    pub to: ReportedRelease,
    /// `rebooting`, or the attempt's final word.
    pub outcome: Outcome,
    /// This agent's version.
    pub agent_version: String,
}

/// True for the outcomes that are failures: sent at once, and kept over
/// any other report when the queue is full.
pub fn is_failure(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::BootFailed
            | Outcome::BootedUnhealthy
            | Outcome::RolledBack
            | Outcome::RollbackFailed
    )
}

/// When a report of `outcome` goes: `Some(false)` at once (failures and
/// `rebooting`), `Some(true)` after a random delay (a boot that did not
/// fail), `None` never (nothing was booted: `staged`, `rolling_back`,
/// `hook_veto`, `withdrawn`).
pub fn delayed(outcome: Outcome) -> Option<bool> {
    match outcome {
        Outcome::Rebooting => Some(false),
        Outcome::BootedHealthy | Outcome::BootedUnverified => Some(true),
        other if is_failure(other) => Some(false),
        _ => None,
    }
}

/// True when `stream` can name the collector's path: 1 to 64 of
/// `A-Z a-z 0-9 . _ -`, and not `.` or `..` (which a URL would resolve away).
pub fn valid_stream(stream: &str) -> bool {
    (1..=64).contains(&stream.len())
        && stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && stream != "."
        && stream != ".."
}

/// A fresh report id: 128 bits from the operating system's generator.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A uniform random fraction in [0, 1], for delays and jitter.
pub(crate) fn random_fraction() -> f64 {
    // 53 bits: every value a double holds exactly in [0, 1].
    (rand_core::OsRng.next_u64() >> 11) as f64 / ((1u64 << 53) - 1) as f64
}

/// Wakes the daemon's sender when a report is queued in this process.
pub(crate) static QUEUED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Sends in this process take turns, so the sender and the flush before a
/// reboot never send one report at once.
pub(crate) static SENDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where an agent's reports go: the queue in its state directory, for the
/// stream it follows.
#[derive(Debug, Clone)]
pub struct Reporter {
    state_dir: PathBuf,
    stream: String,
    settings: crate::config::Reports,
    backoff: queue::Backoff,
}

impl Reporter {
    /// A reporter for `stream`; `None` (said once in the log) when the
    /// stream cannot name the collector's path.
    pub fn new(
        state_dir: &Path,
        settings: &crate::config::Reports,
        stream: &str,
        backoff: queue::Backoff,
    ) -> Option<Reporter> {
        static SAID: AtomicBool = AtomicBool::new(false);
        if !valid_stream(stream) {
            if !SAID.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    %stream,
                    "outcome reports are configured, but the stream's name cannot be sent (1 to 64 of A-Z a-z 0-9 . _ -): nothing is reported"
                );
            }
            return None;
        }
        Some(Reporter {
            state_dir: state_dir.to_path_buf(),
            stream: stream.to_string(),
            settings: settings.clone(),
            backoff,
        })
    }

    /// Queue the report of `record`, if its outcome is reported; its id.
    /// Written (fsync'd) before this returns, so no send can come first.
    pub fn enqueue(&self, record: &Attempt, now: Timestamp) -> Option<String> {
        let delayed = delayed(record.result)?;
        let report = OutcomeReport {
            id: new_id(),
            from: match (&record.from_version, &record.from_digest) {
                (Some(version), Some(digest)) => Some(ReportedRelease {
                    version: version.clone(),
                    digest: digest.clone(),
                }),
                _ => None,
            },
            to: ReportedRelease {
                version: record.to_version.clone(),
                digest: record.to_digest.clone(),
            },
            outcome: record.result,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let size = serde_json::to_vec(&report).map_or(usize::MAX, |b| b.len());
        if size > MAX_BODY_BYTES {
            tracing::warn!(
                size,
                outcome = %record.result,
                "the report is larger than the collector takes (its versions are too long): not queued"
            );
            return None;
        }
        let delay = if delayed {
            self.settings.max_delay.mul_f64(random_fraction())
        } else {
            Duration::ZERO
        };
        let id = report.id.clone();
        let entry = queue::Entry::new(&self.stream, report, now, delay);
        match queue::update(&self.state_dir, |q| {
            q.push_once(made_key(record), entry, now)
        }) {
            Ok(None) => return None,
            Ok(Some(dropped)) => {
                for gone in dropped {
                    tracing::warn!(
                        outcome = %gone.report.outcome,
                        created = %gone.created,
                        "the report queue is full: dropped a report"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, kind = error.kind(), outcome = %record.result, "could not queue the outcome report");
                return None;
            }
        }
        QUEUED.notify_one();
        Some(id)
    }

    /// Send the report `id` now, within `bound`: before a reboot, so that
    /// `rebooting` leaves before the host goes down. Whatever fails, the
    /// report stays queued and goes after the boot.
    pub async fn flush(&self, id: &str, bound: Duration) {
        let in_time = tokio::time::timeout(bound, async {
            let _turn = SENDING.lock().await;
            sender::send_queued(&self.state_dir, &self.settings, id, bound, &self.backoff).await
        })
        .await;
        if in_time.is_err() {
            tracing::info!(
                bound_seconds = bound.as_secs(),
                "the report could not be sent before the reboot; it goes after the boot"
            );
        }
    }
}

/// What `cairn status` shows of the reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportsStatus {
    /// `reports.url` is set.
    pub enabled: bool,
    /// Reports waiting in the queue.
    pub queued: u64,
    /// Why the last send failed, until one works.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Reports the collector took since the queue file was made.
    #[serde(default)]
    pub sent: u64,
    /// Reports dropped unsent since the queue file was made, by why.
    #[serde(default)]
    pub dropped: queue::Dropped,
}

impl ReportsStatus {
    /// The queue in `state_dir`, as status shows it.
    pub fn read(state_dir: &Path, enabled: bool) -> ReportsStatus {
        let queue = queue::read(state_dir).unwrap_or_else(|error| {
            tracing::warn!(%error, "could not read the report queue");
            queue::Queue::default()
        });
        ReportsStatus {
            enabled,
            queued: queue.entries.len() as u64,
            last_error: queue.last_error,
            sent: queue.sent,
            dropped: queue.dropped,
        }
    }
}

/// What makes a report once: the attempt (its start and target) and its
/// step. An attempt ends once, so every final word is one step: a restart
/// that judges the boot again (a crash after the first verdict) never
/// reports a second ending.
fn made_key(record: &Attempt) -> String {
    let step = if record.result.is_final() {
        "final"
    } else {
        record.result.as_str()
    };
    format!("{}|{}|{step}", record.started, record.to_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_has_one_rebooting_and_one_ending_to_report() {
        let attempt = |result: Outcome, started: i64| Attempt {
            from_version: Some("44.2".into()),
            from_digest: Some(format!("sha256:{}", "a".repeat(64))),
            to_version: "44.3".into(),
            to_digest: format!("sha256:{}", "b".repeat(64)),
            started: Timestamp::from_second(started).expect("time"),
            finished: Timestamp::from_second(started + 60).expect("time"),
            result,
            reason: String::new(),
        };
        let healthy = made_key(&attempt(Outcome::BootedHealthy, 100));
        assert_eq!(healthy, made_key(&attempt(Outcome::BootFailed, 100)));
        assert_ne!(healthy, made_key(&attempt(Outcome::Rebooting, 100)));
        assert_ne!(healthy, made_key(&attempt(Outcome::BootedHealthy, 200)));
    }

    #[test]
    fn only_rebooting_and_what_was_booted_is_reported_and_failures_go_at_once() {
        let words: Vec<(&str, Option<bool>)> = Outcome::ALL
            .iter()
            .map(|o| (o.as_str(), delayed(*o)))
            .collect();
        assert_eq!(
            words,
            [
                ("staged", None),
                ("rebooting", Some(false)),
                ("rolling_back", None),
                ("booted_healthy", Some(true)),
                ("booted_unverified", Some(true)),
                ("booted_unhealthy", Some(false)),
                ("rolled_back", Some(false)),
                ("boot_failed", Some(false)),
                ("rollback_failed", Some(false)),
                ("hook_veto", None),
                ("withdrawn", None),
            ]
        );
    }

    #[test]
    fn ids_are_128_random_bits_in_lowercase_hex() {
        let ids: std::collections::BTreeSet<String> = (0..100).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 100);
        assert!(ids.iter().all(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
        let fractions: Vec<f64> = (0..1000).map(|_| random_fraction()).collect();
        assert!(fractions.iter().all(|f| (0.0..=1.0).contains(f)));
        assert!(fractions.iter().any(|f| *f < 0.1) && fractions.iter().any(|f| *f > 0.9));
    }

    #[test]
    fn a_stream_names_a_path_segment_or_is_not_reported() {
        for good in ["stable", "next-devel", "rhel_9.4", &"s".repeat(64)] {
            assert!(valid_stream(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "stable?x", "é", &"s".repeat(65)] {
            assert!(!valid_stream(bad), "{bad}");
        }
    }

    #[test]
    fn the_body_has_exactly_the_contract_s_keys() {
        let report = OutcomeReport {
            id: new_id(),
            from: None,
            to: ReportedRelease {
                version: "44.3".into(),
                digest: format!("sha256:{}", "b".repeat(64)),
            },
            outcome: Outcome::BootFailed,
            agent_version: "0.1.0".into(),
        };
        let json = serde_json::to_value(&report).expect("JSON");
        let keys: Vec<&String> = json.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["agent_version", "id", "outcome", "to"]);
        assert_eq!(json["outcome"], "boot_failed");
        assert_eq!(json["to"]["version"], "44.3");
    }
}
