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
    /// No systemd to ask (containers, tests without it): the booted digest
    /// alone decides, as before health checks existed.
    Unknown,
}

/// Ask systemd (and greenboot, when installed) about this boot.
pub async fn boot_health(systemctl: &str, timeout: Duration) -> BootHealth {
    let ask = async |args: &[&str]| -> Option<(i32, String)> {
        let run = tokio::process::Command::new(systemctl)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(timeout, run).await.ok()?.ok()?;
        Some((
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
        ))
    };
    // `is-failed` exits 0 only for a failed unit.
    if let Some((0, _)) = ask(&["is-failed", "--quiet", "boot-complete.target"]).await {
        return BootHealth::Failed("boot-complete.target failed".into());
    }
    let greenboot = ask(&[
        "show",
        "--property=LoadState",
        "--value",
        "greenboot-healthcheck.service",
    ])
    .await
    .is_some_and(|(_, state)| state == "loaded");
    if greenboot
        && let Some((0, _)) = ask(&["is-failed", "--quiet", "greenboot-healthcheck.service"]).await
    {
        return BootHealth::Failed(
            "greenboot's health checks failed (greenboot-healthcheck.service)".into(),
        );
    }
    match ask(&["is-active", "boot-complete.target"]).await {
        Some((0, _)) => BootHealth::Healthy,
        Some((_, state)) if state == "inactive" || state == "activating" => BootHealth::Pending,
        Some((_, state)) => BootHealth::Failed(format!("boot-complete.target is {state}")),
        None => BootHealth::Unknown,
    }
}
