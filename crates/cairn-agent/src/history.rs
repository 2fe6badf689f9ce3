//! The outcome of every update attempt, appended one JSON line at a time to
//! `/var/lib/cairn/history.jsonl`, shown by `cairn status --history`.
//!
//! An attempt begins when a target is staged. Its records share `to_digest`
//! and `started`; any number of intermediate records (staged, rebooting,
//! rolling back) are followed by exactly one final record.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The history file inside the state directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// What a record says about an attempt: one vocabulary for the file, the
/// status, the metrics and the documentation.
///
/// Older agents wrote other words; they are read as the nearest new one.
/// `succeeded` was written for verified and unverifiable boots alike, so it
/// reads as `booted_unverified`, never as a verified healthy boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Intermediate: the target is staged (download only).
    Staged,
    /// Intermediate: finalization began; the host reboots into the target.
    Rebooting,
    /// Intermediate: the target failed its health checks; Cairn rolls back.
    #[serde(alias = "rolling-back")]
    RollingBack,
    /// Final: the target booted and its health checks passed.
    BootedHealthy,
    /// Final: the target booted; nothing on the host could judge its health.
    #[serde(alias = "succeeded")]
    BootedUnverified,
    /// Final: the target booted, its health checks failed, and no rollback
    /// is configured: the host stays on it.
    #[serde(alias = "unhealthy")]
    BootedUnhealthy,
    /// Final: the target failed its health checks and Cairn rolled back.
    RolledBack,
    /// Final: the host came back on the previous release by itself (a failed
    /// boot, or greenboot rolling back).
    #[serde(alias = "rolled-back")]
    BootFailed,
    /// Final: the target failed its health checks and the rollback did not
    /// happen; the host stays on the target.
    RollbackFailed,
    /// Final: a pre-update hook vetoed the target.
    #[serde(alias = "vetoed")]
    HookVeto,
    /// Final: the staged target is no longer offered (or was replaced by a
    /// newer one, or vanished from the host before the reboot).
    Withdrawn,
    /// A word this version does not know, read from a newer agent's status
    /// (outcomes may be added within `cairn.dev/v1`). Never written by this
    /// one, and never trusted in its own history: [`read`] skips the record.
    #[serde(other)]
    Unknown,
}

impl Outcome {
    /// Every outcome this version writes, intermediate ones first (not
    /// [`Outcome::Unknown`], which is only read).
    pub const ALL: [Outcome; 11] = [
        Outcome::Staged,
        Outcome::Rebooting,
        Outcome::RollingBack,
        Outcome::BootedHealthy,
        Outcome::BootedUnverified,
        Outcome::BootedUnhealthy,
        Outcome::RolledBack,
        Outcome::BootFailed,
        Outcome::RollbackFailed,
        Outcome::HookVeto,
        Outcome::Withdrawn,
    ];

    /// The word in the file, the status and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Staged => "staged",
            Outcome::Rebooting => "rebooting",
            Outcome::RollingBack => "rolling_back",
            Outcome::BootedHealthy => "booted_healthy",
            Outcome::BootedUnverified => "booted_unverified",
            Outcome::BootedUnhealthy => "booted_unhealthy",
            Outcome::RolledBack => "rolled_back",
            Outcome::BootFailed => "boot_failed",
            Outcome::RollbackFailed => "rollback_failed",
            Outcome::HookVeto => "hook_veto",
            Outcome::Withdrawn => "withdrawn",
            Outcome::Unknown => "unknown",
        }
    }

    /// True for the words that end an attempt; an unknown word is not known to.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Outcome::Staged | Outcome::Rebooting | Outcome::RollingBack | Outcome::Unknown
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The release the host was on.
    pub from_version: Option<String>,
    /// Its digest.
    pub from_digest: Option<String>,
    /// The target.
    pub to_version: String,
    /// The target's digest.
    pub to_digest: String,
    /// When the attempt began (staging); the same in all its records.
    pub started: Timestamp,
    /// When this record was written.
    pub finished: Timestamp,
    /// What happened.
    pub result: Outcome,
    /// Why, in words.
    pub reason: String,
}

impl Attempt {
    /// True when `other` is a record of the same attempt.
    pub fn same_attempt(&self, other: &Attempt) -> bool {
        self.to_digest == other.to_digest && self.started == other.started
    }
}

/// Append a record; the file only grows, so a crash loses at most the line
/// being written. A final record is written once: when the attempt already
/// has one (a crash after appending it, before the state was saved), this
/// does nothing, so a retried step never ends an attempt twice. True when
/// the record was written.
pub fn append(state_dir: &Path, attempt: &Attempt) -> std::io::Result<bool> {
    if attempt.result.is_final() {
        let (existing, _) = read(state_dir)?;
        if existing
            .iter()
            .any(|a| a.result.is_final() && a.same_attempt(attempt))
        {
            return Ok(false);
        }
    }
    let mut line = serde_json::to_string(attempt).map_err(std::io::Error::other)?;
    line.push('\n');
    std::fs::create_dir_all(state_dir)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join(HISTORY_FILE))?;
    file.write_all(line.as_bytes())?;
    file.sync_data()?;
    Ok(true)
}

/// Every record, oldest first; a damaged line (bad JSON, bytes that are not
/// UTF-8, or a word this version does not know) is skipped and counted. Read as bytes, line by line: one bad
/// byte must not hide the rest, nor stop `append` from recording.
pub fn read(state_dir: &Path) -> std::io::Result<(Vec<Attempt>, usize)> {
    let bytes = match std::fs::read(state_dir.join(HISTORY_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut attempts = Vec::new();
    let mut damaged = 0;
    for line in bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
    {
        match serde_json::from_slice::<Attempt>(line) {
            // The agent decides on its history (an attempt's end, the last
            // outcome): a word it does not know must not count as any.
            Ok(attempt) if attempt.result == Outcome::Unknown => damaged += 1,
            Ok(attempt) => attempts.push(attempt),
            Err(_) => damaged += 1,
        }
    }
    Ok((attempts, damaged))
}

/// The newest final record, if any.
pub fn last_final(state_dir: &Path) -> std::io::Result<Option<Attempt>> {
    let (attempts, _) = read(state_dir)?;
    Ok(attempts.into_iter().rev().find(|a| a.result.is_final()))
}

/// A table for people, newest first.
pub fn render(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "no update attempts recorded\n".into();
    }
    let mut text = String::new();
    for a in attempts.iter().rev() {
        text.push_str(&format!(
            "{}  {} -> {}  {}: {}\n",
            a.finished.strftime("%Y-%m-%d %H:%M:%S UTC"),
            a.from_version.as_deref().unwrap_or("?"),
            a.to_version,
            a.result,
            a.reason
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(result: Outcome, started: i64) -> Attempt {
        Attempt {
            from_version: Some("1".into()),
            from_digest: None,
            to_version: "2".into(),
            to_digest: "sha256:b".into(),
            started: Timestamp::from_second(started).expect("time"),
            finished: Timestamp::from_second(200).expect("time"),
            result,
            reason: "booted 2 and boot-complete.target was reached".into(),
        }
    }

    #[test]
    fn attempts_append_and_read_back_skipping_damage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let staged = attempt(Outcome::Staged, 100);
        let healthy = attempt(Outcome::BootedHealthy, 100);
        append(dir.path(), &staged).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(HISTORY_FILE))
            .and_then(|mut f| f.write_all(b"{half a line\n"))
            .expect("damage");
        append(dir.path(), &healthy).expect("append");
        let (read_back, damaged) = read(dir.path()).expect("read");
        assert_eq!(read_back, vec![staged, healthy.clone()]);
        assert_eq!(damaged, 1);
        assert!(render(&read_back).contains("1 -> 2  booted_healthy"));
        assert_eq!(last_final(dir.path()).expect("read"), Some(healthy));
    }

    #[test]
    fn bytes_that_are_not_utf8_damage_one_line_and_recording_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let staged = attempt(Outcome::Staged, 100);
        append(dir.path(), &staged).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(HISTORY_FILE))
            .and_then(|mut f| f.write_all(b"{\"reason\":\"\xff\xfe\"}\n"))
            .expect("damage");
        let healthy = attempt(Outcome::BootedHealthy, 100);
        append(dir.path(), &healthy).expect("a final record is still appended");
        let (read_back, damaged) = read(dir.path()).expect("read");
        assert_eq!(read_back, vec![staged, healthy.clone()]);
        assert_eq!(damaged, 1);
        // The dedupe still sees the final record past the damaged line.
        append(dir.path(), &healthy).expect("append");
        assert_eq!(read(dir.path()).expect("read").0.len(), 2);
        assert_eq!(last_final(dir.path()).expect("read"), Some(healthy));
    }

    #[test]
    fn an_attempt_ends_once_even_when_a_step_is_retried() {
        let dir = tempfile::tempdir().expect("temp dir");
        append(dir.path(), &attempt(Outcome::Rebooting, 100)).expect("append");
        append(dir.path(), &attempt(Outcome::BootedHealthy, 100)).expect("append");
        // The same step again after a crash before the state was saved.
        let again = append(dir.path(), &attempt(Outcome::BootedHealthy, 100)).expect("append");
        assert!(!again, "not written twice");
        // A later attempt at the same target is a new one.
        append(dir.path(), &attempt(Outcome::HookVeto, 300)).expect("append");
        let (records, _) = read(dir.path()).expect("read");
        let words: Vec<&str> = records.iter().map(|a| a.result.as_str()).collect();
        assert_eq!(words, ["rebooting", "booted_healthy", "hook_veto"]);
    }

    #[test]
    fn the_words_of_older_agents_read_as_the_new_vocabulary() {
        let old = |word: &str| {
            format!(
                r#"{{"from_version":"46.1","from_digest":"sha256:a","to_version":"46.3","to_digest":"sha256:c","started":"2026-03-01T04:10:51Z","finished":"2026-03-01T04:12:09Z","result":"{word}","reason":"r"}}"#
            )
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let lines: Vec<String> = [
            "succeeded",
            "vetoed",
            "rolled-back",
            "unhealthy",
            "rolling-back",
        ]
        .iter()
        .map(|w| old(w))
        .collect();
        std::fs::write(dir.path().join(HISTORY_FILE), lines.join("\n")).expect("write");
        let (records, damaged) = read(dir.path()).expect("read");
        assert_eq!(damaged, 0);
        let words: Vec<Outcome> = records.iter().map(|a| a.result).collect();
        assert_eq!(
            words,
            [
                Outcome::BootedUnverified,
                Outcome::HookVeto,
                Outcome::BootFailed,
                Outcome::BootedUnhealthy,
                Outcome::RollingBack,
            ]
        );
        // Written back in the new words only.
        let text = serde_json::to_string(&records[2]).expect("JSON");
        assert!(text.contains(r#""result":"boot_failed""#), "{text}");
    }

    #[test]
    fn every_word_round_trips_and_matches_its_serde_name() {
        for outcome in Outcome::ALL {
            let json = serde_json::to_string(&outcome).expect("JSON");
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
            assert_eq!(
                serde_json::from_str::<Outcome>(&json).expect("parses"),
                outcome
            );
        }
        let finals = Outcome::ALL.iter().filter(|o| o.is_final()).count();
        assert_eq!(finals, 8);
        assert!(!Outcome::ALL.contains(&Outcome::Unknown));
    }

    #[test]
    fn a_word_from_a_newer_agent_is_skipped_in_the_history_never_taken_for_an_outcome() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rolled_back = attempt(Outcome::RolledBack, 100);
        append(dir.path(), &rolled_back).expect("append");
        let newer = serde_json::to_string(&attempt(Outcome::BootedHealthy, 300))
            .expect("JSON")
            .replace("booted_healthy", "booted_and_blessed");
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(HISTORY_FILE))
            .and_then(|mut f| f.write_all(format!("{newer}\n").as_bytes()))
            .expect("append");
        let (records, damaged) = read(dir.path()).expect("read");
        assert_eq!((records, damaged), (vec![rolled_back.clone()], 1));
        assert_eq!(last_final(dir.path()).expect("read"), Some(rolled_back));
        // A status reader takes the word as unknown rather than fail.
        let word: Outcome = serde_json::from_str("\"booted_and_blessed\"").expect("reads");
        assert_eq!(word, Outcome::Unknown);
        assert!(!word.is_final());
    }
}
