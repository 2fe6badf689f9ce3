//! The running agent's root-only control socket. `cairn status`, `hold`,
//! `unhold` and `update-now` go through it, so an operator's command never
//! races a check: the agent serves one request at a time between its passes.

use crate::status::AgentStatus;
use crate::store::{AgentState, StoreError};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/cairn/agent.sock";

/// Requests are one short JSON line; anything longer is not ours.
const MAX_REQUEST_BYTES: u64 = 4096;

/// What an operator asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    /// The current status.
    Status,
    /// Hold updates, optionally until a time (Unix seconds).
    Hold {
        /// End of the hold.
        until: Option<i64>,
    },
    /// Lift a hold.
    Unhold,
    /// Check, stage and finalize now (wariness 0, no windows or lock).
    UpdateNow {
        /// Lift the base-barrier guard (the operator accepts the risk).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cross_barrier: bool,
        /// Stage, but do not finalize.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stage_only: bool,
    },
    /// Do a pass now (after boot: judge the boot into a new release).
    Verify {
        /// A boot still waiting for boot-complete.target counts as failed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pending_is_failure: bool,
    },
    /// Offer a deny-listed release (version or digest) again.
    DenyListRemove {
        /// Its version or digest.
        release: String,
    },
    /// Hand back the FleetLock slot kept after a failed boot.
    ReleaseSlot,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// One line for people.
    pub message: String,
    /// The status after the request.
    pub status: Option<AgentStatus>,
    /// The state directory of the agent that answered, so that a command
    /// meant for another one (`--state-dir` without `--socket`) can tell.
    /// Absent in answers of older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<std::path::PathBuf>,
}

/// Why asking the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing listens: the agent is not running.
    #[error("no agent is running (nothing answers on {0})")]
    NotRunning(String),
    /// It listens but the exchange failed.
    #[error("{socket}: {message}")]
    Exchange {
        /// The socket.
        socket: String,
        /// What went wrong.
        message: String,
    },
}

/// Listen on `path`: a stale socket from a killed agent is replaced, and only
/// root (the owner) may connect. Fails when another agent answers there.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // A socket that answers belongs to a running agent: two agents would
    // drive one host at once.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "another agent is running (it answers on {})",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Send one request to the running agent and wait up to `timeout` for its answer.
pub async fn ask(path: &Path, request: &Request, timeout: Duration) -> Result<Response, AskError> {
    let socket = path.display().to_string();
    let exchange = |message: String| AskError::Exchange {
        socket: socket.clone(),
        message,
    };
    let stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(AskError::NotRunning(socket));
        }
        Err(e) => return Err(exchange(e.to_string())),
    };
    let talk = async {
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
        line.push('\n');
        write
            .write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        if answer.is_empty() {
            return Err("the agent closed the connection without answering".to_string());
        }
        serde_json::from_str::<Response>(&answer).map_err(|e| format!("answer: {e}"))
    };
    tokio::time::timeout(timeout, talk)
        .await
        .map_err(|_| exchange(format!("no answer within {}s", timeout.as_secs())))?
        .map_err(exchange)
}

/// Read one request from a connection; `None` when it is not a valid request
/// (the error is sent back).
pub async fn read_request(stream: &mut UnixStream) -> Option<Request> {
    let (read, mut write) = stream.split();
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::take(BufReader::new(read), MAX_REQUEST_BYTES).read_line(&mut line),
    )
    .await;
    let problem = match read {
        Err(_) => "no request within 5s".to_string(),
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => return Some(request),
            Err(e) => format!("not a request: {e}"),
        },
    };
    let response = Response {
        ok: false,
        message: problem,
        status: None,
        state_dir: None,
    };
    let _ = write_response(&mut write, &response).await;
    None
}

/// Send the answer as one JSON line.
pub async fn write_response(
    write: &mut (impl AsyncWriteExt + Unpin),
    response: &Response,
) -> std::io::Result<()> {
    let mut line = serde_json::to_string(response).map_err(std::io::Error::other)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await
}

/// Why an operator's change to the state was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A hold end outside the times Cairn can represent: read as "no end",
    /// it would hold updates for ever.
    #[error(
        "hold time {seconds} is out of range (Unix seconds from {} to {})",
        Timestamp::MIN.as_second(),
        Timestamp::MAX.as_second()
    )]
    HoldOutOfRange {
        /// The time asked for.
        seconds: i64,
    },
    /// The release is not on the deny-list.
    #[error("{release} is not on the deny-list")]
    NotDenied {
        /// The version or digest asked for.
        release: String,
    },
    /// No FleetLock slot is kept after a failed boot.
    #[error("{0}")]
    NoSlotKept(String),
    /// The state could not be read or written (the message names the file).
    #[error(transparent)]
    State(#[from] StoreError),
}

impl ControlError {
    /// A short, fixed label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlError::HoldOutOfRange { .. } => "hold_out_of_range",
            ControlError::NotDenied { .. } => "not_denied",
            ControlError::NoSlotKept(_) => "no_slot_kept",
            ControlError::State(e) => e.kind(),
        }
    }
}

/// The end of a hold as a request carries it (Unix seconds). A time out of
/// range is refused: read as "no end", it would hold updates for ever.
pub fn hold_end(until: Option<i64>) -> Result<Option<Timestamp>, ControlError> {
    until
        .map(|seconds| {
            Timestamp::from_second(seconds).map_err(|_| ControlError::HoldOutOfRange { seconds })
        })
        .transpose()
}

/// Record a hold or its end in the state directory, under the state's lock
/// (waiting for a pass under way); returns what to tell the operator.
pub fn apply_hold(
    state_dir: &Path,
    hold: bool,
    until: Option<Timestamp>,
) -> Result<String, ControlError> {
    AgentState::update(state_dir, |state| {
        state.held = hold;
        state.hold_until = if hold { until } else { None };
    })?;
    Ok(match (hold, until) {
        (true, Some(until)) => format!("updates held until {until}"),
        (true, None) => "updates held until `cairn unhold`".to_string(),
        (false, _) => "updates no longer held".to_string(),
    })
}

/// Take a release (version or digest) off the deny-list; returns what to tell the operator.
pub fn remove_from_deny_list(state_dir: &Path, release: &str) -> Result<String, ControlError> {
    let removed = AgentState::update(state_dir, |state| {
        let before = state.deny_list.len();
        state
            .deny_list
            .retain(|digest, entry| digest != release && entry.version != release);
        state.deny_list.len() < before
    })?;
    if !removed {
        return Err(ControlError::NotDenied {
            release: release.to_string(),
        });
    }
    Ok(format!(
        "{release} removed from the deny-list; it may be offered again"
    ))
}

/// Stop keeping the FleetLock slot kept after a failed boot: the agent's
/// next pass hands it back to the lock server (and retries until it can).
pub fn release_kept_slot(state_dir: &Path) -> Result<String, ControlError> {
    let (kept, held) = AgentState::update(state_dir, |state| {
        let held = state.lock_held;
        (state.slot_kept.take(), held)
    })?;
    match kept {
        Some(kept) => Ok(format!(
            "the FleetLock slot kept since {} (the boot into {} failed: {}) is handed back",
            kept.since, kept.version, kept.reason
        )),
        None if held => Err(ControlError::NoSlotKept(
            "no slot is kept after a failed boot; the slot this host holds is for a reboot under way, and goes back once the new boot is judged".into(),
        )),
        None => Err(ControlError::NoSlotKept(
            "this host holds no FleetLock slot".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let text = serde_json::to_string(&Request::Hold { until: Some(5) }).expect("JSON");
        assert_eq!(text, r#"{"command":"hold","until":5}"#);
        let parsed: Request = serde_json::from_str(r#"{"command":"update-now"}"#).expect("parses");
        assert_eq!(
            parsed,
            Request::UpdateNow {
                cross_barrier: false,
                stage_only: false
            }
        );
        let parsed: Request =
            serde_json::from_str(r#"{"command":"update-now","cross_barrier":true}"#)
                .expect("parses");
        assert!(matches!(
            parsed,
            Request::UpdateNow {
                cross_barrier: true,
                ..
            }
        ));
        assert!(serde_json::from_str::<Request>(r#"{"command":"reboot"}"#).is_err());
    }

    #[test]
    fn a_hold_time_out_of_range_is_refused_not_made_indefinite() {
        assert_eq!(hold_end(None).expect("no end"), None);
        assert_eq!(
            hold_end(Some(1_800_000_000)).expect("in range"),
            Timestamp::from_second(1_800_000_000).ok()
        );
        for seconds in [i64::MAX, i64::MIN, Timestamp::MAX.as_second() + 1] {
            let error = hold_end(Some(seconds)).expect_err("out of range");
            assert_eq!(error.kind(), "hold_out_of_range");
            let message = error.to_string();
            assert!(
                message.contains(&seconds.to_string()) && message.contains("out of range"),
                "{message}"
            );
        }
    }

    #[test]
    fn removing_a_release_not_denied_or_with_a_damaged_state_says_which() {
        let dir = tempfile::tempdir().expect("temp dir");
        AgentState::default().save(dir.path()).expect("save");
        let error = remove_from_deny_list(dir.path(), "44.9").expect_err("not denied");
        assert_eq!(error.kind(), "not_denied");
        assert_eq!(error.to_string(), "44.9 is not on the deny-list");
        // A damaged state file: the store's own kind, and the file is named.
        let file = dir.path().join(crate::store::STATE_FILE);
        std::fs::write(&file, "not json").expect("damage");
        for error in [
            apply_hold(dir.path(), true, None).expect_err("damaged"),
            remove_from_deny_list(dir.path(), "44.9").expect_err("damaged"),
        ] {
            assert_eq!(error.kind(), "damaged");
            assert!(
                error.to_string().contains(&file.display().to_string()),
                "{error}"
            );
        }
    }

    #[test]
    fn holds_and_removals_from_two_threads_are_all_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut state = AgentState::default();
        for n in 0..20 {
            let digest = format!("sha256:{n:064}");
            state.deny(&digest, &format!("9.{n}"), "test", Timestamp::UNIX_EPOCH);
        }
        state.save(dir.path()).expect("save");
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in (0..20).step_by(2) {
                    remove_from_deny_list(dir.path(), &format!("9.{n}")).expect("remove");
                }
            });
            scope.spawn(|| {
                apply_hold(dir.path(), true, None).expect("hold");
                for n in (1..20).step_by(2) {
                    remove_from_deny_list(dir.path(), &format!("9.{n}")).expect("remove");
                }
            });
        });
        let state = AgentState::load(dir.path()).expect("load");
        assert!(state.held);
        assert!(state.deny_list.is_empty(), "{:?}", state.deny_list);
    }
}
