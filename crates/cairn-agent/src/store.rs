//! The agent's persistent state under `/var/lib/cairn`, written atomically
//! (temporary file, fsync, rename, fsync of the directory) so that a crash or
//! power loss at any instant leaves either the old or the new state, never half,
//! and changed only under its lock so that no writer loses another's change.

use crate::machine::{State, Target};
use cairn_fs::{FileLock, FsError};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// A release the host rolled back from; never offered again until removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenyEntry {
    /// Its version.
    pub version: String,
    /// When it was added.
    pub since: Timestamp,
    /// Why.
    pub reason: String,
}

/// A target a pre-update hook refused; it is staged again after `retry_after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VetoEntry {
    /// Its version.
    pub version: String,
    /// The hook (`image:<name>` or `operator:<name>`).
    pub hook: String,
    /// The hook's last line on stderr.
    pub reason: String,
    /// Vetoes in a row.
    pub attempts: u32,
    /// Not staged again before this.
    pub retry_after: Timestamp,
}

/// A target the host tool refused as older than the current deployment
/// (rpm-ostree's date check); it is not staged again before `retry_after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalEntry {
    /// Its version.
    pub version: String,
    /// The refusal, as reported (it names what to do).
    pub message: String,
    /// Refusals in a row.
    pub attempts: u32,
    /// Not staged again before this.
    pub retry_after: Timestamp,
}

/// The FleetLock slot a host keeps after a failed boot, so that its group
/// stops rebooting until an operator has looked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptSlot {
    /// The lock group, as configured when the slot was kept.
    #[serde(default)]
    pub group: Option<String>,
    /// The release whose boot failed.
    pub version: String,
    /// What happened, as the attempt's final record says it.
    pub reason: String,
    /// Since when.
    pub since: Timestamp,
    /// The lock server was told (Cairn's boot-failed extension), or needs
    /// no telling (it has no such extension). Retried at every pass until so.
    #[serde(default)]
    pub reported: bool,
}

/// A target the operator staged on purpose (`cairn update-now`, at
/// wariness 0, or with `--cross-barrier`). Later checks keep it while only
/// the rollout's wariness or the base-barrier guard would withdraw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStaged {
    /// The staged release's digest (or commit checksum).
    pub digest: String,
    /// Its version.
    pub version: String,
    /// The command that staged it, as the operator typed it.
    pub by: String,
    /// When.
    pub since: Timestamp,
}

/// One signature a halt list was accepted with, and the bytes it signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptSignature {
    /// The signed message, hex.
    pub message: String,
    /// The base64 signature.
    pub signature: String,
}

/// Most signatures kept per halt list, and the longest message kept: a
/// simple-signing payload is a few hundred bytes.
pub const MAX_KEPT_SIGNATURES: usize = 16;
/// See [`MAX_KEPT_SIGNATURES`].
pub const MAX_KEPT_MESSAGE_BYTES: usize = 16 * 1024;

/// Everything the agent must remember across restarts and reboots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentState {
    /// Format version of this file.
    pub format: u32,
    /// Where the state machine was.
    pub state: State,
    /// Rolled-back releases by digest.
    pub deny_list: BTreeMap<String, DenyEntry>,
    /// The tag the host follows; bootc's spec shows a digest after a digest switch.
    pub followed: Option<String>,
    /// The last accepted document: sequence and sha256 of its bytes.
    pub last_document: Option<(u64, String)>,
    /// Updates held by the operator until this time (`None` with `held`: indefinitely).
    pub hold_until: Option<Timestamp>,
    /// Updates held by the operator.
    pub held: bool,
    /// This host holds a FleetLock slot; released whenever the agent is not
    /// on its way into a reboot (or kept, see `slot_kept`), retried until it
    /// succeeds.
    pub lock_held: bool,
    /// Set after a failed boot unless `strategy.fleet_lock.release_on_failure`:
    /// the slot is not released until the operator runs `cairn release-slot`
    /// or a later boot is judged healthy.
    pub slot_kept: Option<KeptSlot>,
    /// The staged digest whose pre-update hooks all passed. A crash between
    /// staging and this record reruns the hooks (they must be idempotent).
    pub hooks_passed: Option<String>,
    /// Targets vetoed by a hook, by digest.
    pub vetoes: BTreeMap<String, VetoEntry>,
    /// Targets the host tool refused as older, by digest.
    pub refused: BTreeMap<String, RefusalEntry>,
    /// The attempt under way since its target was staged; it ends with one
    /// final record in the history, then this is cleared.
    pub underway: Option<Underway>,
    /// The target whose post-update hooks ran for the boot being judged;
    /// cleared on leaving `Verifying`. A pass retried after a failure (the
    /// lock server, say) does not run them again; a crash while they run does.
    pub post_update_ran: Option<String>,
    /// The target whose boot was judged (healthy or unverified), saved with
    /// the end of its attempt: a pass retried before `Verifying` is left
    /// (the lock server down, a crash) only finishes leaving, never judges
    /// again. Cleared on leaving `Verifying` and when an attempt begins.
    pub judged: Option<String>,
    /// The staged target, when the operator staged it on purpose; cleared
    /// when another target is staged or the staged one goes.
    pub operator_staged: Option<OperatorStaged>,
    /// The newest halt list accepted, by stream: a restarted agent still
    /// refuses an older list and, under halt keys, one that drops an entry.
    pub halt_lists: BTreeMap<String, cairn_graph::halts::HaltList>,
    /// The manifest digest each held list was read under, by stream, with a
    /// digest of the keys it was verified with: a check whose tag still
    /// names that manifest, under the same keys, reads nothing more (a HEAD
    /// only).
    pub halt_list_digests: BTreeMap<String, String>,
    /// The signatures each held halt list was accepted with, by stream: a
    /// new trust root re-checks the list held against its keys.
    pub halt_list_signatures: BTreeMap<String, Vec<KeptSignature>>,
    /// The newest trust root this host verified (version 1 or more), as its
    /// envelope's JSON text: where the next check starts and walks on from.
    pub trust_root: Option<String>,
    /// Checks of a document read at a mirror whose repository could not be
    /// reached to ask for the next trust root, by the error's kind: the
    /// metrics' counters.
    pub root_origin_unasked: BTreeMap<String, u64>,
    /// Halt lists refused or unread, by kind ([`crate::halts::REFUSAL_KINDS`]):
    /// the metrics' counters.
    pub halt_refusals: BTreeMap<String, u64>,
}

/// An attempt between staging and its final outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Underway {
    /// The release the host was on.
    pub from_version: Option<String>,
    /// Its digest.
    pub from_digest: Option<String>,
    /// When the attempt began.
    pub started: Timestamp,
    /// Its target. Absent in state written by agents that began attempts at
    /// finalization; the state machine's target is the one then.
    #[serde(default)]
    pub target: Option<Target>,
    /// Set, with the failed check, once Cairn has started a rollback: the
    /// boot that follows ends the attempt as rolled back, and a boot still on
    /// the target is never rolled back a second time.
    #[serde(default)]
    pub rolling_back: Option<String>,
    /// The boot in which the rollback command ran. A pass in that same boot
    /// (the host not yet down) waits; only a later boot judges the rollback.
    /// Absent in state written by older agents.
    #[serde(default)]
    pub rolling_back_boot: Option<String>,
    /// When the rollback intent was saved: a host still up on the target
    /// `health.timeout_seconds` later ends the attempt rather than wait for
    /// good. Absent in state written by older agents (the clock starts then).
    #[serde(default)]
    pub rolling_back_at: Option<Timestamp>,
}

impl Default for AgentState {
    fn default() -> Self {
        AgentState {
            format: 1,
            state: State::Initialized,
            deny_list: BTreeMap::new(),
            followed: None,
            last_document: None,
            hold_until: None,
            held: false,
            lock_held: false,
            slot_kept: None,
            hooks_passed: None,
            vetoes: BTreeMap::new(),
            refused: BTreeMap::new(),
            underway: None,
            post_update_ran: None,
            judged: None,
            operator_staged: None,
            halt_lists: BTreeMap::new(),
            halt_refusals: BTreeMap::new(),
            halt_list_digests: BTreeMap::new(),
            halt_list_signatures: BTreeMap::new(),
            trust_root: None,
            root_origin_unasked: BTreeMap::new(),
        }
    }
}

/// Why the state could not be read, written or locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file is there but is not a state file.
    #[error("{}: damaged state file ({message}); move it aside to start over", .path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What does not parse.
        message: String,
    },
    /// Reading, writing or locking failed.
    #[error(transparent)]
    File(#[from] FsError),
    /// The state could not be turned into JSON.
    #[error("encoding the state: {0}")]
    Encode(#[from] serde_json::Error),
}

impl StoreError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Damaged { .. } => "damaged",
            StoreError::File(e) => e.kind(),
            StoreError::Encode(_) => "encode",
        }
    }

    /// The reason kind a status carries for this: a state that cannot be
    /// read (damaged, unreadable, or its lock not taken) or one that cannot
    /// be written.
    pub fn reason_kind(&self) -> crate::reason::ReasonKind {
        use crate::reason::ReasonKind;
        match self {
            StoreError::Damaged { .. }
            | StoreError::File(FsError::Read { .. } | FsError::Lock { .. }) => {
                ReasonKind::StateUnreadable
            }
            StoreError::File(_) | StoreError::Encode(_) => ReasonKind::StateUnwritable,
        }
    }
}

/// Lock the state for a read-modify-write: a pass from its load to its last
/// save, or an operator's [`AgentState::update`]. Waits for the holder.
pub fn lock(dir: &Path) -> Result<FileLock, StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| FsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    // A sidecar file: `state.json` itself is replaced by rename, and a lock
    // on a renamed-away inode protects nothing.
    Ok(FileLock::acquire(&cairn_fs::lock_path(
        &dir.join(STATE_FILE),
    ))?)
}

/// True while another process holds the state's lock (an agent's pass, for
/// a message before waiting for it); false when that cannot be told.
pub fn is_locked(dir: &Path) -> bool {
    let path = cairn_fs::lock_path(&dir.join(STATE_FILE));
    path.exists() && matches!(FileLock::try_acquire(&path), Ok(None))
}

impl AgentState {
    /// Read the state; a missing file is a fresh start. A damaged file is an
    /// error: the agent does nothing rather than forget a deny-list.
    pub fn load(dir: &Path) -> Result<AgentState, StoreError> {
        let path = dir.join(STATE_FILE);
        match cairn_fs::read_optional(&path)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
                path,
                message: e.to_string(),
            }),
            None => Ok(AgentState::default()),
        }
    }

    /// Write the state atomically. Between [`AgentState::load`] and this the
    /// caller holds [`lock`], or a concurrent change is lost.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| FsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(STATE_FILE);
        let bytes = serde_json::to_vec_pretty(self)?;
        Ok(cairn_fs::write_atomic(&path, &bytes)?)
    }

    /// Load, change and save the state under its lock (an operator's hold or
    /// deny-list removal); it waits for a pass under way to end. Written only
    /// when `change` changed something.
    pub fn update<R>(
        dir: &Path,
        change: impl FnOnce(&mut AgentState) -> R,
    ) -> Result<R, StoreError> {
        let _lock = lock(dir)?;
        let before = AgentState::load(dir)?;
        let mut state = before.clone();
        let result = change(&mut state);
        if state != before {
            state.save(dir)?;
        }
        Ok(result)
    }

    /// Put a release on the deny-list.
    pub fn deny(&mut self, digest: &str, version: &str, reason: &str, now: Timestamp) {
        self.deny_list.insert(
            digest.to_string(),
            DenyEntry {
                version: version.to_string(),
                since: now,
                reason: reason.to_string(),
            },
        );
    }

    /// The denied digests, for target selection.
    pub fn denied(&self) -> Vec<String> {
        self.deny_list.keys().cloned().collect()
    }

    /// True while the operator holds updates.
    pub fn is_held(&self, now: Timestamp) -> bool {
        self.held && self.hold_until.is_none_or(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::ReasonKind;

    #[test]
    fn a_state_that_cannot_be_read_is_unreadable_and_one_that_cannot_be_saved_unwritable() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(STATE_FILE), "{not json").expect("write");
        let damaged = AgentState::load(dir.path()).expect_err("damaged");
        assert_eq!(
            damaged.reason_kind(),
            ReasonKind::StateUnreadable,
            "{damaged}"
        );
        // A directory where the file should be: it cannot be read.
        let unreadable = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(unreadable.path().join(STATE_FILE)).expect("mkdir");
        let e = AgentState::load(unreadable.path()).expect_err("a directory");
        assert!(matches!(e, StoreError::File(FsError::Read { .. })), "{e}");
        assert_eq!(e.reason_kind(), ReasonKind::StateUnreadable, "{e}");
        // A state directory under a regular file cannot be created.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "").expect("write");
        let e = AgentState::default()
            .save(&blocked.join("state"))
            .expect_err("not a directory");
        assert_eq!(e.reason_kind(), ReasonKind::StateUnwritable, "{e}");
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("time")
    }

    #[test]
    fn round_trip_and_fresh_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            AgentState::load(dir.path()).expect("fresh"),
            AgentState::default()
        );
        let mut state = AgentState {
            state: State::Staged {
                target: Target {
                    version: "2".into(),
                    digest: format!("sha256:{}", "a".repeat(64)).parse().expect("an id"),
                },
            },
            followed: Some("quay.io/acme/os:stable".into()),
            ..AgentState::default()
        };
        state.deny(
            &format!("sha256:{}", "b".repeat(64)),
            "1.9",
            "rolled back after boot",
            now(),
        );
        state.save(dir.path()).expect("save");
        assert_eq!(AgentState::load(dir.path()).expect("load"), state);
        assert_eq!(state.denied().len(), 1);
    }

    #[test]
    fn a_leftover_temporary_file_does_not_matter() {
        let dir = tempfile::tempdir().expect("temp dir");
        AgentState::default().save(dir.path()).expect("save");
        std::fs::write(dir.path().join(format!(".{STATE_FILE}.tmp")), b"{\"half").expect("write");
        assert_eq!(
            AgentState::load(dir.path()).expect("load"),
            AgentState::default()
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(STATE_FILE), b"{\"state\": ").expect("write");
        let err = AgentState::load(dir.path()).expect_err("damaged");
        assert!(
            err.to_string().contains("state.json") && err.to_string().contains("damaged"),
            "{err}"
        );
    }

    #[test]
    fn an_attempt_recorded_by_an_older_agent_still_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"format":1,"state":{"state":"rebooting","target":{"version":"2","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}},
               "underway":{"from_version":"1","from_digest":"sha256:a","started":"2026-03-01T04:10:51Z"}}"#,
        )
        .expect("write");
        let state = AgentState::load(dir.path()).expect("loads");
        let underway = state.underway.expect("under way");
        assert_eq!(underway.from_version.as_deref(), Some("1"));
        assert_eq!((underway.target, underway.rolling_back), (None, None));
    }

    #[test]
    fn a_rollback_recorded_without_its_boot_still_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"format":1,"state":{"state":"verifying","target":{"version":"2","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}},
               "underway":{"from_version":"1","from_digest":"sha256:a","started":"2026-03-01T04:10:51Z",
                           "target":{"version":"2","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},"rolling_back":"check.service failed"}}"#,
        )
        .expect("write");
        let underway = AgentState::load(dir.path())
            .expect("loads")
            .underway
            .expect("under way");
        assert_eq!(
            underway.rolling_back.as_deref(),
            Some("check.service failed")
        );
        assert_eq!(underway.rolling_back_boot, None);
    }

    #[test]
    fn holds_expire() {
        let mut state = AgentState {
            held: true,
            ..AgentState::default()
        };
        assert!(state.is_held(now()));
        state.hold_until = Timestamp::from_second(1_800_000_100).ok();
        assert!(state.is_held(now()));
        assert!(!state.is_held(Timestamp::from_second(1_800_000_100).expect("time")));
    }
}
