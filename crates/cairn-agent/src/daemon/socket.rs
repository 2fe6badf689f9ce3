//! The daemon's loop: a pass per check interval, and the operator's
//! requests on the control socket served between passes.

use super::pass::run_once;
use super::{Options, PassMode};
use crate::config::ConfigDirs;
use crate::status::AgentStatus;
use jiff::Timestamp;
use std::time::Duration;

/// Tell systemd (a `Type=notify` service) that the agent is up and what it
/// is doing; a no-op outside systemd.
pub fn notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|address| socket.send_to_addr(message.as_bytes(), &address))
        }
        None => socket.send_to(message.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Why the daemon cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Another agent answers on the control socket: two would drive one host.
    #[error("{0}")]
    AnotherAgent(std::io::Error),
}

impl RunError {
    /// A short, fixed label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::AnotherAgent(_) => "another_agent",
        }
    }
}

/// Run for ever: one pass per check interval, with up to 10% jitter so a
/// fleet does not check in lockstep.
pub async fn run(options: Options) -> Result<(), RunError> {
    let listener = match options
        .socket
        .as_deref()
        .map(|path| (path, crate::control::bind(path)))
    {
        None => None,
        Some((_, Ok(listener))) => Some(listener),
        Some((_, Err(e))) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(RunError::AnotherAgent(e));
        }
        Some((path, Err(e))) => {
            tracing::warn!(socket = %path.display(), error = %e, "no control socket; operator commands fall back to the state directory");
            None
        }
    };
    // Outcome reports leave beside the passes, never holding one up.
    tokio::spawn(crate::reports::sender::run(
        options.root.clone(),
        options.state_dir.clone(),
        options.report_backoff(),
    ));
    let mut ready = false;
    let mut status = run_once(&options, PassMode::agent(true), Timestamp::now()).await;
    loop {
        tracing::info!(state = %status.state, reason = %status.reason, kind = %status.reason.kind, "check done");
        let line = format!("{}: {}", status.state, status.reason).replace('\n', " ");
        if ready {
            notify(&format!("STATUS={line}"));
        } else {
            notify(&format!("READY=1\nSTATUS={line}"));
            ready = true;
        }
        let sleep = tokio::time::sleep(next_interval(&options));
        tokio::pin!(sleep);
        // Operator requests are served here, between passes, so they never race one.
        status = loop {
            let accepted = async {
                match &listener {
                    Some(listener) => listener.accept().await.map(|(stream, _)| stream),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut sleep => break run_once(&options, PassMode::agent(true), Timestamp::now()).await,
                stream = accepted => {
                    let Ok(mut stream) = stream else { continue };
                    if let Some(status) = serve_request(&options, &mut stream).await {
                        break status;
                    }
                }
            }
        };
    }
}

fn next_interval(options: &Options) -> Duration {
    if let Some(interval) = options.check_interval {
        return interval;
    }
    let interval = crate::config::load(&ConfigDirs::under(&options.root))
        .map(|s| s.check_interval)
        .unwrap_or(Duration::from_secs(crate::config::DEFAULT_CHECK_SECONDS));
    let jitter = Duration::from_millis(
        u64::from(std::process::id()) % (interval.as_millis() as u64 / 10).max(1),
    );
    interval + jitter
}

/// A pass the operator asked for, answered with the status it left.
async fn pass_now(
    options: &Options,
    mode: PassMode,
) -> (crate::control::Response, Option<AgentStatus>) {
    let status = run_once(options, mode, Timestamp::now()).await;
    (
        crate::control::Response {
            ok: status.last_error.is_none(),
            message: String::new(),
            status: Some(status.clone()),
            state_dir: None,
        },
        Some(status),
    )
}

/// After an operator's change to the state, a pass right away, so that
/// status shows its effect.
async fn after_change(
    options: &Options,
    change: Result<String, crate::control::ControlError>,
) -> (crate::control::Response, Option<AgentStatus>) {
    match change {
        Ok(message) => {
            let status = run_once(options, PassMode::agent(true), Timestamp::now()).await;
            (
                crate::control::Response {
                    ok: true,
                    message,
                    status: Some(status.clone()),
                    state_dir: None,
                },
                Some(status),
            )
        }
        Err(error) => (
            crate::control::Response {
                ok: false,
                message: error.to_string(),
                status: None,
                state_dir: None,
            },
            None,
        ),
    }
}

/// The pass after `cairn release-slot` gave the slot back, or the
/// answer says it did not (the lock server down: the agent retries).
fn slot_handed_back(
    options: &Options,
    mut response: crate::control::Response,
) -> crate::control::Response {
    let still_held = crate::store::AgentState::load(&options.state_dir).is_ok_and(|state| {
        state.lock_held && state.slot_kept.is_none() && !state.state.may_hold_lock()
    });
    let no_server = crate::config::load(&ConfigDirs::under(&options.root))
        .is_ok_and(|settings| settings.fleet_lock.is_none());
    if response.ok && no_server {
        response.message = format!(
            "{}; strategy.fleet_lock is no longer configured, so no lock server was told: release the slot at the server",
            response.message
        );
    }
    if response.ok && still_held {
        let error = response
            .status
            .as_ref()
            .and_then(|s| s.last_error.clone())
            .unwrap_or_else(|| "no answer".into());
        response.ok = false;
        response.message = format!(
            "{}, but the lock server did not take it back yet ({error}); the agent retries at every pass",
            response.message
        );
    }
    response
}

/// Carry out one operator request. Returns the status of a pass it ran, so
/// the loop reports it and starts a new interval.
async fn serve_request(
    options: &Options,
    stream: &mut tokio::net::UnixStream,
) -> Option<AgentStatus> {
    use crate::control::{Request, Response, apply_hold, read_request, write_response};
    let request = read_request(stream).await?;
    tracing::info!(?request, "operator request");
    let (response, ran) = match request {
        Request::Status => (
            match AgentStatus::read(&options.state_dir) {
                Ok(status) => Response {
                    ok: true,
                    message: String::new(),
                    status: Some(status),
                    state_dir: None,
                },
                Err(e) => Response {
                    ok: false,
                    message: e.to_string(),
                    status: None,
                    state_dir: None,
                },
            },
            None,
        ),
        Request::Hold { until } => match crate::control::hold_end(until) {
            Ok(until) => after_change(options, apply_hold(&options.state_dir, true, until)).await,
            Err(error) => after_change(options, Err(error)).await,
        },
        Request::Unhold => after_change(options, apply_hold(&options.state_dir, false, None)).await,
        Request::DenyListRemove { release } => {
            after_change(
                options,
                crate::control::remove_from_deny_list(&options.state_dir, &release),
            )
            .await
        }
        Request::ReleaseSlot => {
            let change = crate::control::release_kept_slot(&options.state_dir);
            let (response, ran) = after_change(options, change).await;
            (slot_handed_back(options, response), ran)
        }
        Request::Verify { pending_is_failure } => {
            let mode = PassMode {
                pending_is_failure,
                ..PassMode::agent(true)
            };
            pass_now(options, mode).await
        }
        Request::UpdateNow {
            cross_barrier,
            stage_only,
        } => {
            let mode = PassMode {
                finalize: !stage_only,
                update_now: true,
                cross_barrier,
                ..PassMode::agent(true)
            };
            pass_now(options, mode).await
        }
    };
    let response = Response {
        state_dir: Some(options.state_dir.clone()),
        ..response
    };
    if let Err(e) = write_response(stream, &response).await {
        tracing::warn!(error = %e, "could not answer an operator request");
    }
    ran
}
