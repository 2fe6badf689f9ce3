//! The `cairn agent` process around the [`Agent`](crate::agent::Agent) state
//! machine: what one pass may do and where it finds things. The host probes,
//! the document's trust, the pass itself and the socket loop each have their
//! own module; what a pass leaves for `cairn status` is [`crate::status`].

mod halts;
mod pass;
mod probes;
mod readers;
mod roots;
mod socket;
mod trust;

pub use pass::run_once;
pub use probes::{
    HostToolError, OTHER_UPDATERS, WarinessError, derived_wariness, enabled_updaters,
    users_logged_in,
};
pub use socket::{RunError, notify, run};

use std::path::PathBuf;
use std::time::Duration;

/// Where the agent finds things.
#[derive(Debug, Clone)]
pub struct Options {
    /// Root of the configuration directories, `/etc/machine-id` and
    /// `/proc/sys/kernel/random/boot_id`.
    pub root: PathBuf,
    /// The sysroot the host's deployments live under (`/sysroot`).
    pub sysroot: PathBuf,
    /// Persistent state (`/var/lib/cairn`).
    pub state_dir: PathBuf,
    /// The bootc executable.
    pub bootc: String,
    /// The rpm-ostree executable.
    pub rpm_ostree: String,
    /// `systemctl`, asked about the boot's health and other updaters; `None`:
    /// this host has no systemd (as has `host.systemd = false`), so boots are
    /// recorded as unverified.
    pub systemctl: Option<String>,
    /// Refuse to stage while another updater is enabled.
    pub updater_check: bool,
    /// `loginctl`, to delay reboots while users are logged in; `None` skips the check.
    pub loginctl: Option<String>,
    /// Where the MOTD snippet goes (`/run/motd.d`); `None` writes none.
    pub motd_dir: Option<PathBuf>,
    /// Fedora's name of this host's architecture.
    pub arch: String,
    /// Registry access.
    pub client: cairn_oci::ClientOptions,
    /// The auth file `client`'s credentials were read from, handed to
    /// skopeo as well; `None`: skopeo reads anonymously.
    pub auth_file: Option<PathBuf>,
    /// Check this often instead of the configured interval, without jitter
    /// (benchmarks).
    pub check_interval: Option<Duration>,
    /// The control socket the daemon listens on; `None` for no socket.
    pub socket: Option<PathBuf>,
    /// The systemd unit this process runs in (`/proc/self/cgroup`), to tell
    /// whether the registration is its own; `None` when not a service.
    pub own_unit: Option<String>,
    /// The first pause after a failed report send instead of 30 s (tests).
    pub report_backoff: Option<Duration>,
}

impl Options {
    /// The backoff of failed report sends.
    pub fn report_backoff(&self) -> crate::reports::queue::Backoff {
        let default = crate::reports::queue::Backoff::default();
        match self.report_backoff {
            Some(first) => crate::reports::queue::Backoff {
                first,
                max: default.max,
            },
            None => default,
        }
    }
}

/// What one pass may do, beyond what the configuration says: the daemon's
/// passes, `cairn agent --once`, `cairn verify` and `cairn update-now` differ
/// only in this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassMode {
    /// Go on to finalize (reboot) when the gates allow; a one-shot check does not.
    pub finalize: bool,
    /// `cairn update-now`: wariness 0 and no windows or lock, but barriers,
    /// dead-ends, the deny-list, max_version and holds still apply.
    pub update_now: bool,
    /// `cairn update-now --cross-barrier`: the base-barrier guard of a
    /// derived graph is lifted for this pass, and that is logged.
    pub cross_barrier: bool,
    /// `cairn verify` gave up waiting: a boot that has still not reached
    /// `boot-complete.target` counts as failed.
    pub pending_is_failure: bool,
    /// Register as rpm-ostree's update driver. Only the agent's own passes
    /// do: rpm-ostree ties the driver to the caller's unit, so a
    /// registration from `cairn-verify.service` or a shell would take it
    /// away from `cairn-agent.service` (or be refused).
    pub register_driver: bool,
}

impl PassMode {
    /// A pass of the agent itself: the daemon's (`finalize`) or `--once`.
    pub fn agent(finalize: bool) -> PassMode {
        PassMode {
            finalize,
            update_now: false,
            cross_barrier: false,
            pending_is_failure: false,
            register_driver: true,
        }
    }

    /// A pass `cairn verify` or `cairn update-now` runs in its own process
    /// because no agent answered: it never registers the driver.
    pub fn fallback(self) -> PassMode {
        PassMode {
            register_driver: false,
            ..self
        }
    }
}
