//! What the agent asks the host outside the host tools' status: other
//! updaters, logged-in users, the machine and boot IDs, the wariness they
//! give, and which tool (bootc or rpm-ostree) drives it.

use super::Options;
use crate::config::Settings;
use crate::host::driver::{Driver, DriverError, ProcessRunner};
use crate::host::{HostStatus, Tool};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Units that update the host on their own; staging waits while any is enabled.
pub const OTHER_UPDATERS: [&str; 3] = [
    "bootc-fetch-apply-updates.timer",
    "zincati.service",
    "rpm-ostreed-automatic.timer",
];

/// Units among [`OTHER_UPDATERS`] that are enabled, or whose state cannot be
/// told: the agent does nothing rather than race another updater.
pub async fn enabled_updaters(systemctl: &str, root: &Path) -> Vec<String> {
    let mut enabled = Vec::new();
    for unit in OTHER_UPDATERS {
        let output = tokio::process::Command::new(systemctl)
            .args(["is-enabled", unit])
            .output()
            .await;
        // A `systemctl` that cannot answer (no bus, no systemd) is not a "no".
        let is_enabled = match output {
            Ok(o) => {
                let answer = String::from_utf8_lossy(&o.stdout).trim().to_string();
                answer.starts_with("enabled") || (answer.is_empty() && !o.status.success())
            }
            Err(_) => true,
        };
        // rpm-ostreed's automatic timer only stages with a policy other than "none".
        let matters = unit != "rpm-ostreed-automatic.timer"
            || std::fs::read_to_string(root.join("etc/rpm-ostreed.conf")).map_or(true, |conf| {
                !conf.lines().any(|l| {
                    l.replace(' ', "")
                        .eq_ignore_ascii_case("AutomaticUpdatePolicy=none")
                })
            });
        if is_enabled && matters {
            enabled.push(unit.to_string());
        }
    }
    enabled
}

/// Why this node's wariness cannot be told.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WarinessError {
    /// None is configured and `/etc/machine-id` cannot be read.
    #[error("{}: {error}; set identity.rollout_wariness", path.display())]
    MachineIdUnreadable {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        error: std::io::Error,
    },
    /// `/etc/machine-id` holds no machine ID.
    #[error(transparent)]
    InvalidMachineId(#[from] crate::identity::IdError),
}

impl WarinessError {
    /// A short, fixed label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            WarinessError::MachineIdUnreadable { .. } => "machine_id_unreadable",
            WarinessError::InvalidMachineId(_) => "invalid_machine_id",
        }
    }
}

pub(super) fn wariness(settings: &Settings, root: &Path) -> Result<f64, WarinessError> {
    match settings.wariness {
        Some(w) => Ok(w),
        None => derived_wariness(root),
    }
}

/// The wariness derived from `/etc/machine-id` under `root`, as Fedora's
/// server derives it from Zincati's node id.
pub fn derived_wariness(root: &Path) -> Result<f64, WarinessError> {
    Ok(cairn_graph::wariness::from_app_id(&node_id(root)?))
}

/// The app-specific node id from `/etc/machine-id` under `root`: the FleetLock
/// id, and where the wariness comes from. Never a shared stand-in: two hosts
/// with one id would hold one recursive slot and reboot together.
pub(super) fn node_id(root: &Path) -> Result<String, WarinessError> {
    let path = root.join("etc/machine-id");
    let machine_id = std::fs::read_to_string(&path)
        .map_err(|error| WarinessError::MachineIdUnreadable { path, error })?;
    Ok(crate::identity::node_id(&machine_id)?)
}

/// This boot's ID, under `root` (`/` on a host) so tests can give one.
pub(super) fn boot_id(root: &Path) -> Option<String> {
    let path = root.join("proc/sys/kernel/random/boot_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Some(id.trim().to_string()),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(file = %path.display(), error = %e, "no boot ID");
            None
        }
    }
}

/// True when an interactive user session exists; a `loginctl` that fails
/// counts as "users present", so nobody is rebooted out from under them.
pub async fn users_logged_in(loginctl: &str) -> bool {
    let output = tokio::process::Command::new(loginctl)
        .args(["list-sessions", "--no-legend"])
        .output()
        .await;
    match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| !l.trim().is_empty()),
        _ => true,
    }
}

/// Why no host tool can drive this host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostToolError {
    /// bootc is installed but failed: falling back to rpm-ostree would drive
    /// the host behind bootc's back.
    #[error("bootc status failed: {0}")]
    BootcFailed(DriverError),
    /// rpm-ostree, asked after bootc, reports no booted image either.
    #[error("neither bootc nor rpm-ostree reports a booted image: {0}")]
    NoBootedImage(DriverError),
}

impl HostToolError {
    /// A short, fixed label for metrics and status: `bootc_failed` (bootc is
    /// there, so nothing falls back to rpm-ostree), or rpm-ostree's own
    /// error kind (`run` when it cannot be started, `timed_out`, `failed`,
    /// `status`…), which tells a missing tool from a hung one.
    pub fn kind(&self) -> &'static str {
        match self {
            HostToolError::BootcFailed(_) => "bootc_failed",
            HostToolError::NoBootedImage(e) => e.kind(),
        }
    }
}

/// Which tool drives this host: bootc when it reports a booted image it can
/// manage, else rpm-ostree.
pub(super) async fn pick_driver(
    options: &Options,
) -> Result<(Driver<ProcessRunner>, HostStatus), HostToolError> {
    let runner = ProcessRunner::detect();
    let bootc = Driver::new(
        runner.clone(),
        Tool::Bootc,
        &options.bootc,
        Duration::from_secs(600),
    )
    .with_probe_file(options.state_dir.join(crate::host::probe::PROBE_FILE));
    match bootc.status().await {
        Ok(status)
            if status
                .booted
                .as_ref()
                .is_some_and(|b| !b.incompatible && b.digest.is_some()) =>
        {
            return Ok((bootc, status));
        }
        // bootc answered, but cannot manage this deployment: rpm-ostree can.
        Ok(_) => {}
        // No bootc program: an rpm-ostree host.
        Err(DriverError::NotInstalled { .. }) => {}
        // bootc is there but failed, hung or could not be started (no
        // resources, no permission): falling back would drive the host
        // behind bootc's back.
        Err(e) => return Err(HostToolError::BootcFailed(e)),
    }
    let rpm = Driver::new(
        runner,
        Tool::RpmOstree,
        &options.rpm_ostree,
        Duration::from_secs(600),
    );
    let status = rpm.status().await.map_err(HostToolError::NoBootedImage)?;
    Ok((rpm, status))
}

/// What the host tool reports now.
pub(super) async fn agent_status(options: &Options) -> Result<HostStatus, HostToolError> {
    pick_driver(options).await.map(|(_, status)| status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_booted_image_carries_the_host_tool_s_kind() {
        let missing = HostToolError::NoBootedImage(DriverError::NotInstalled {
            command: "rpm-ostree status --json".into(),
            message: "No such file or directory".into(),
        });
        assert_eq!(missing.kind(), "not_installed");
        let unstartable = HostToolError::NoBootedImage(DriverError::Run {
            command: "rpm-ostree status --json".into(),
            message: "Resource temporarily unavailable".into(),
        });
        assert_eq!(unstartable.kind(), "run");
        let hung = HostToolError::NoBootedImage(DriverError::TimedOut {
            command: "rpm-ostree status --json".into(),
            after: Duration::from_secs(600),
        });
        assert_eq!(hung.kind(), "timed_out");
        let bootc = HostToolError::BootcFailed(DriverError::TimedOut {
            command: "bootc status --json".into(),
            after: Duration::from_secs(600),
        });
        assert_eq!(bootc.kind(), "bootc_failed");
    }

    #[test]
    fn the_boot_id_is_read_under_the_root() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(boot_id(dir.path()), None);
        let file = dir.path().join("proc/sys/kernel/random/boot_id");
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        std::fs::write(&file, "6f1c2e0a-3b4d-4e5f-8a9b-0c1d2e3f4a5b\n").expect("write");
        assert_eq!(
            boot_id(dir.path()).as_deref(),
            Some("6f1c2e0a-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
        );
    }
}
