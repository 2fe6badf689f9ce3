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

/// Ask systemd (and greenboot, when installed) about this boot. A target
/// never enters a failed state itself: when a unit it requires fails, its
/// start job fails and it stays inactive. So the units it requires are asked.
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
    let failed =
        async |unit: &str| matches!(ask(&["is-failed", "--quiet", unit]).await, Some((0, _)));
    if failed("boot-complete.target").await {
        return BootHealth::Failed("boot-complete.target failed".into());
    }
    let required = ask(&[
        "show",
        "--property=Requires",
        "--value",
        "boot-complete.target",
    ])
    .await
    .map(|(_, units)| units)
    .unwrap_or_default();
    for unit in required.split_whitespace() {
        if failed(unit).await {
            return BootHealth::Failed(format!(
                "{unit} failed, so boot-complete.target was not reached"
            ));
        }
    }
    let greenboot = ask(&[
        "show",
        "--property=LoadState",
        "--value",
        "greenboot-healthcheck.service",
    ])
    .await
    .is_some_and(|(_, state)| state == "loaded");
    if greenboot && failed("greenboot-healthcheck.service").await {
        return BootHealth::Failed(
            "greenboot's health checks failed (greenboot-healthcheck.service)".into(),
        );
    }
    match ask(&["is-active", "boot-complete.target"]).await {
        Some((0, _)) => BootHealth::Healthy,
        Some((_, state)) if state == "activating" => BootHealth::Pending,
        Some(_) => {
            // Inactive: still queued, or nothing on this host asks for it
            // (then the booted digest alone decides).
            let queued = ask(&["list-jobs", "--no-legend", "boot-complete.target"])
                .await
                .is_some_and(|(_, jobs)| !jobs.is_empty());
            if queued {
                BootHealth::Pending
            } else {
                BootHealth::Unknown
            }
        }
        None => BootHealth::Unknown,
    }
}
