//! Whether the boot into a new release is healthy: `boot-complete.target`
//! (which greenboot's checks and other `Before=boot-complete.target` units
//! feed), and greenboot's own verdict where greenboot is installed.

use std::time::Duration;

/// The verdict on the current boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootHealth {
    /// `boot-complete.target` was reached and nothing reported a failure.
    Healthy,
    /// A health check failed; the reason names it.
    Failed(String),
    /// `boot-complete.target` is neither reached nor failed yet.
    Pending,
    /// systemd is declared present but `systemctl` did not answer (it could
    /// not run, timed out, or has no bus); why. Waited on as `Pending`.
    Unanswered(SystemctlError),
    /// Nothing to judge by: nothing on this host asks for
    /// `boot-complete.target`, or it has no systemd (`host.systemd = false`).
    /// The booted digest alone decides, as before health checks existed.
    Unknown,
}

/// Why `systemctl` gave no answer at all. The message names the command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SystemctlError {
    /// It did not finish in time.
    #[error("{command}: timed out after {after:?}")]
    TimedOut {
        /// The command line.
        command: String,
        /// How long it was given.
        after: Duration,
    },
    /// It could not be started (missing, not executable).
    #[error("{command}: {message}")]
    NotRun {
        /// The command line.
        command: String,
        /// What the OS said.
        message: String,
    },
    /// A signal ended it.
    #[error("{command}: killed by a signal")]
    Killed {
        /// The command line.
        command: String,
    },
    /// It failed without printing an answer (no bus, say).
    #[error("{command}: exit code {code}: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit code.
        code: i32,
        /// The last line it wrote to standard error, or `no output`.
        stderr: String,
    },
}

impl SystemctlError {
    /// A short, fixed label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            SystemctlError::TimedOut { .. } => "timed_out",
            SystemctlError::NotRun { .. } => "not_run",
            SystemctlError::Killed { .. } => "killed",
            SystemctlError::Failed { .. } => "failed",
        }
    }
}

/// Ask systemd (and greenboot, when installed) about this boot. A target
/// never enters a failed state itself: when a unit it requires fails, its
/// start job fails and it stays inactive. So the units it requires are asked.
///
/// Only called where systemd is declared present: a `systemctl` that does not
/// answer (cannot run, times out, no bus) is `Unanswered`, and the agent
/// keeps waiting (up to `health.timeout_seconds`) instead of recording an
/// unverified boot and skipping health checks and rollback.
pub async fn boot_health(systemctl: &str, timeout: Duration) -> BootHealth {
    match judge(systemctl, timeout).await {
        Ok(verdict) => verdict,
        Err(why) => {
            tracing::warn!(error = %why, "systemctl did not answer; the boot's health stays pending");
            BootHealth::Unanswered(why)
        }
    }
}

/// `systemctl <args>`: its exit code and standard output, or why it gave
/// no answer at all.
async fn ask(
    systemctl: &str,
    timeout: Duration,
    args: &[&str],
) -> Result<(i32, String), SystemctlError> {
    let command = format!("{systemctl} {}", args.join(" "));
    let run = tokio::process::Command::new(systemctl)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| SystemctlError::TimedOut {
            command: command.clone(),
            after: timeout,
        })?
        .map_err(|e| SystemctlError::NotRun {
            command: command.clone(),
            message: e.to_string(),
        })?;
    let Some(code) = output.status.code() else {
        return Err(SystemctlError::Killed { command });
    };
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    // `show`, `is-active` and `list-jobs` print their answer; failing with
    // nothing printed is systemctl's own failure (no bus, say).
    if code != 0 && stdout.is_empty() && args.first() != Some(&"is-failed") {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(SystemctlError::Failed {
            command,
            code,
            stderr: last.unwrap_or("no output").trim().to_string(),
        });
    }
    Ok((code, stdout))
}

async fn judge(systemctl: &str, timeout: Duration) -> Result<BootHealth, SystemctlError> {
    let ask = async |args: &[&str]| ask(systemctl, timeout, args).await;
    // `is-failed` exits 0 only for a failed unit.
    let failed = async |unit: &str| {
        ask(&["is-failed", "--quiet", unit])
            .await
            .map(|(code, _)| code == 0)
    };
    if failed("boot-complete.target").await? {
        return Ok(BootHealth::Failed("boot-complete.target failed".into()));
    }
    let (_, required) = ask(&[
        "show",
        "--property=Requires",
        "--value",
        "boot-complete.target",
    ])
    .await?;
    for unit in required.split_whitespace() {
        if failed(unit).await? {
            return Ok(BootHealth::Failed(format!(
                "{unit} failed, so boot-complete.target was not reached"
            )));
        }
    }
    let (_, load_state) = ask(&[
        "show",
        "--property=LoadState",
        "--value",
        "greenboot-healthcheck.service",
    ])
    .await?;
    if load_state == "loaded" && failed("greenboot-healthcheck.service").await? {
        return Ok(BootHealth::Failed(
            "greenboot's health checks failed (greenboot-healthcheck.service)".into(),
        ));
    }
    Ok(match ask(&["is-active", "boot-complete.target"]).await? {
        (0, _) => BootHealth::Healthy,
        (_, state) if state == "activating" => BootHealth::Pending,
        _ => {
            // Inactive: still queued, or nothing on this host asks for it
            // (then the booted digest alone decides).
            let (_, jobs) = ask(&["list-jobs", "--no-legend", "boot-complete.target"]).await?;
            if jobs.is_empty() {
                BootHealth::Unknown
            } else {
                BootHealth::Pending
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `systemctl` script in `dir` with this shell body.
    fn systemctl(dir: &std::path::Path, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    }

    #[tokio::test]
    async fn a_systemctl_that_does_not_answer_keeps_the_boot_pending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let no_bus = systemctl(
            dir.path(),
            "no-bus",
            "echo 'Failed to connect to bus: No such file or directory' >&2; exit 1",
        );
        let hangs = systemctl(dir.path(), "hangs", "exec sleep 30");
        let killed = systemctl(dir.path(), "killed", "kill -KILL $$");
        // Nothing asks for boot-complete.target: an answer, so Unknown.
        let nothing_asks = systemctl(
            dir.path(),
            "nothing-asks",
            r#"case "$*" in
  "is-active boot-complete.target") echo inactive; exit 3 ;;
  "is-failed "*) exit 1 ;;
esac
exit 0"#,
        );
        let second = Duration::from_secs(1);
        let missing = dir.path().join("missing").display().to_string();
        let unanswered = async |systemctl: &str| match boot_health(systemctl, second).await {
            BootHealth::Unanswered(why) => (why.kind(), why.to_string()),
            other => panic!("{systemctl}: {other:?}"),
        };
        // Each names the command it ran and says why it has no answer.
        let (kind, message) = unanswered(&missing).await;
        assert_eq!(kind, "not_run", "{message}");
        assert!(
            message.starts_with(&format!("{missing} is-failed")),
            "{message}"
        );
        let (kind, message) = unanswered(&no_bus).await;
        assert_eq!(kind, "failed", "{message}");
        assert!(message.starts_with(&no_bus), "{message}");
        assert!(message.contains("Failed to connect to bus"), "{message}");
        let (kind, message) = unanswered(&hangs).await;
        assert_eq!(kind, "timed_out", "{message}");
        assert!(
            message.starts_with(&hangs) && message.contains("timed out"),
            "{message}"
        );
        let (kind, message) = unanswered(&killed).await;
        assert_eq!(kind, "killed", "{message}");
        assert!(message.starts_with(&killed), "{message}");
        assert_eq!(
            boot_health(&nothing_asks, second).await,
            BootHealth::Unknown
        );
    }
}
