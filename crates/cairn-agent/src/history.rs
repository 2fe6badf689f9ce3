//! The outcome of every update attempt, appended one JSON line at a time to
//! `/var/lib/cairn/history.jsonl`, shown by `cairn status --history`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The history file inside the state directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// One attempt.
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
    /// When the attempt began (finalization, or the hooks for a veto).
    pub started: Timestamp,
    /// When its outcome was known.
    pub finished: Timestamp,
    /// `succeeded`, `vetoed`, `rolled-back`, `unhealthy`, `rolling-back`.
    pub result: String,
    /// Why, in words.
    pub reason: String,
}

/// Append an attempt; the file only grows, so a crash loses at most the line being written.
pub fn append(state_dir: &Path, attempt: &Attempt) -> std::io::Result<()> {
    let mut line = serde_json::to_string(attempt).map_err(std::io::Error::other)?;
    line.push('\n');
    std::fs::create_dir_all(state_dir)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join(HISTORY_FILE))?;
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Every attempt, oldest first; a damaged line is skipped (and counted).
pub fn read(state_dir: &Path) -> std::io::Result<(Vec<Attempt>, usize)> {
    let text = match std::fs::read_to_string(state_dir.join(HISTORY_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut attempts = Vec::new();
    let mut damaged = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(attempt) => attempts.push(attempt),
            Err(_) => damaged += 1,
        }
    }
    Ok((attempts, damaged))
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

    #[test]
    fn attempts_append_and_read_back_skipping_damage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let attempt = Attempt {
            from_version: Some("1".into()),
            from_digest: None,
            to_version: "2".into(),
            to_digest: "sha256:b".into(),
            started: Timestamp::from_second(100).expect("time"),
            finished: Timestamp::from_second(200).expect("time"),
            result: "succeeded".into(),
            reason: "booted 2 and boot-complete.target was reached".into(),
        };
        append(dir.path(), &attempt).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(HISTORY_FILE))
            .and_then(|mut f| f.write_all(b"{half a line\n"))
            .expect("damage");
        append(dir.path(), &attempt).expect("append");
        let (read_back, damaged) = read(dir.path()).expect("read");
        assert_eq!(read_back, vec![attempt.clone(), attempt]);
        assert_eq!(damaged, 1);
        assert!(render(&read_back).contains("1 -> 2  succeeded"));
    }
}
