//! Why the agent is where it is: a closed set of reason kinds beside the
//! sentence operators read. Code (the MOTD, `cairn verify`, metrics) decides
//! on the kind, so rewording a message never changes behaviour.

use cairn_graph::select::{Decision, Hold, NoUpdate, Target};
use serde::{Deserialize, Serialize};

/// What kind of reason a status or report carries. The wire names
/// (snake_case) are stable, and fixed enough to be metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReasonKind {
    // The pass, before the state machine decides anything.
    /// The persistent state could not be read (or locked).
    StateUnreadable,
    /// The persistent state could not be written.
    StateUnwritable,
    /// The configuration is broken.
    ConfigError,
    /// No wariness is configured and `/etc/machine-id` cannot be read.
    WarinessUnknown,
    /// Neither bootc nor rpm-ostree reports a booted image.
    HostUnreadable,
    /// The host follows no image and no source is configured.
    NoFollowedImage,
    /// The host is on a digest and no stream is configured.
    StreamUnknown,
    /// Another updater (bootc's timer, Zincati, rpm-ostreed) is enabled.
    OtherUpdaterEnabled,
    /// `registries.conf` is broken.
    RegistriesConfInvalid,
    /// The registry or reboot-lock client could not be set up.
    SetupFailed,
    /// No trusted graph: the source is down, or its document is untrusted.
    SourceError,
    /// The document turns halt lists on, and no verified, unexpired halt
    /// list is at hand: nothing is staged or finalized.
    HaltsUnavailable,
    /// The host tool failed.
    HostError,
    /// The host tool refused the target as older; it waits out a backoff.
    StagingRefused,
    /// The reboot-lock server failed.
    LockError,
    // The check.
    /// Just started: steady state was reported to the reboot-lock server.
    SteadyStateReported,
    /// The host reports no booted image digest.
    NoBootedDigest,
    /// Nothing newer is offered.
    UpToDate,
    /// The booted image is in no release of the graph.
    BootedNotInGraph,
    /// The booted release is a dead-end.
    BootedDeadEnd,
    /// The document expired.
    DocumentExpired,
    /// The newest release's rollout has not reached this node.
    RolloutPending,
    /// The newest release is a dead-end.
    TargetDeadEnd,
    /// The newest release's image left the registry.
    TargetUnavailable,
    /// This host rolled back from the newest release.
    TargetRolledBack,
    /// The stream's halt list halts the newest release.
    TargetHalted,
    /// The newest release is older than the booted one.
    TargetDowngrade,
    /// Reaching the newest release would cross a base barrier no image is built on.
    BaseBarrier,
    /// The newest release's base (or the booted one's) is not in the base graph.
    UnknownBase,
    /// The newest release is past `updates.max_version`.
    PastMaxVersion,
    /// `updates.max_version` names no release of the stream.
    MaxVersionUnknown,
    /// Held by the operator.
    Held,
    /// Updates are disabled in the configuration.
    Disabled,
    /// A pre-update hook vetoed the target; it waits out a backoff.
    HookVeto,
    /// The target was staged in this pass.
    Staged,
    /// The target is (still) staged.
    StillStaged,
    /// The staged release was withdrawn: past `updates.max_version`.
    StagedPastMaxVersion,
    /// The staged release was withdrawn: it left the graph.
    StagedLeftGraph,
    /// The staged release was withdrawn: it became a dead-end.
    StagedDeadEnd,
    /// The staged release was withdrawn: this host rolled back from it.
    StagedDenied,
    /// The staged release was withdrawn: it would cross a base barrier.
    StagedCrossesBaseBarrier,
    /// The staged release was withdrawn: the graph no longer offers it to
    /// this host now (its rollout no longer reaches this wariness, its edge
    /// went, the document expired, ...).
    StagedNotOffered,
    /// The staged release was withdrawn: the stream's halt list halts it.
    StagedHalted,
    // Finalization.
    /// A one-shot check stages and runs the hooks, but never reboots.
    OneShot,
    /// Outside every maintenance window.
    WindowClosed,
    /// Interactive users are logged in.
    UsersLoggedIn,
    /// Waiting for the reboot-lock server's slot.
    RebootLockWait,
    /// The host is finalizing and rebooting.
    Rebooting,
    // After a restart.
    /// The persisted state was resumed.
    Resuming,
    /// The restart found the target booted; it is verified next.
    RecoveredBooted,
    /// The restart found the previous release booted: the target is deny-listed.
    RecoveredRolledBack,
    /// The restart found the target still staged: the reboot did not happen.
    RebootDidNotHappen,
    // The boot into a target.
    /// Waiting for `boot-complete.target` (or for systemctl to answer).
    WaitingForBootComplete,
    /// The target booted and its health checks passed.
    BootedHealthy,
    /// The target booted; nothing on the host could judge its health.
    BootedUnverified,
    /// The target booted, failed its health checks, and the host stays on it.
    BootedUnhealthy,
    /// The boot was judged before a restart; only leaving was left.
    AlreadyJudged,
    /// The target failed its health checks; Cairn is rolling back.
    RollingBack,
    /// Cairn's rollback was started in this boot; waiting for the reboot.
    RollbackInProgress,
    /// The host is back on the previous release.
    RolledBack,
    /// The rollback did not happen; the host stays on the failed target.
    RollbackFailed,
    /// The host stays on a deny-listed target it booted.
    StaysOnDenied,
    /// A kind this version does not know, read from a newer agent's status
    /// (kinds may be added within `cairn.dev/v1`). Never written by this one.
    #[serde(other)]
    Unknown,
}

impl ReasonKind {
    /// Every kind, in declaration order.
    pub const ALL: [ReasonKind; 63] = [
        ReasonKind::StateUnreadable,
        ReasonKind::StateUnwritable,
        ReasonKind::ConfigError,
        ReasonKind::WarinessUnknown,
        ReasonKind::HostUnreadable,
        ReasonKind::NoFollowedImage,
        ReasonKind::StreamUnknown,
        ReasonKind::OtherUpdaterEnabled,
        ReasonKind::RegistriesConfInvalid,
        ReasonKind::SetupFailed,
        ReasonKind::SourceError,
        ReasonKind::HaltsUnavailable,
        ReasonKind::HostError,
        ReasonKind::StagingRefused,
        ReasonKind::LockError,
        ReasonKind::SteadyStateReported,
        ReasonKind::NoBootedDigest,
        ReasonKind::UpToDate,
        ReasonKind::BootedNotInGraph,
        ReasonKind::BootedDeadEnd,
        ReasonKind::DocumentExpired,
        ReasonKind::RolloutPending,
        ReasonKind::TargetDeadEnd,
        ReasonKind::TargetUnavailable,
        ReasonKind::TargetRolledBack,
        ReasonKind::TargetHalted,
        ReasonKind::TargetDowngrade,
        ReasonKind::BaseBarrier,
        ReasonKind::UnknownBase,
        ReasonKind::PastMaxVersion,
        ReasonKind::MaxVersionUnknown,
        ReasonKind::Held,
        ReasonKind::Disabled,
        ReasonKind::HookVeto,
        ReasonKind::Staged,
        ReasonKind::StillStaged,
        ReasonKind::StagedPastMaxVersion,
        ReasonKind::StagedLeftGraph,
        ReasonKind::StagedDeadEnd,
        ReasonKind::StagedDenied,
        ReasonKind::StagedCrossesBaseBarrier,
        ReasonKind::StagedNotOffered,
        ReasonKind::StagedHalted,
        ReasonKind::OneShot,
        ReasonKind::WindowClosed,
        ReasonKind::UsersLoggedIn,
        ReasonKind::RebootLockWait,
        ReasonKind::Rebooting,
        ReasonKind::Resuming,
        ReasonKind::RecoveredBooted,
        ReasonKind::RecoveredRolledBack,
        ReasonKind::RebootDidNotHappen,
        ReasonKind::WaitingForBootComplete,
        ReasonKind::BootedHealthy,
        ReasonKind::BootedUnverified,
        ReasonKind::BootedUnhealthy,
        ReasonKind::AlreadyJudged,
        ReasonKind::RollingBack,
        ReasonKind::RollbackInProgress,
        ReasonKind::RolledBack,
        ReasonKind::RollbackFailed,
        ReasonKind::StaysOnDenied,
        ReasonKind::Unknown,
    ];

    /// The wire name, also the metric label.
    pub fn as_str(self) -> &'static str {
        use ReasonKind::*;
        match self {
            StateUnreadable => "state_unreadable",
            StateUnwritable => "state_unwritable",
            ConfigError => "config_error",
            WarinessUnknown => "wariness_unknown",
            HostUnreadable => "host_unreadable",
            NoFollowedImage => "no_followed_image",
            StreamUnknown => "stream_unknown",
            OtherUpdaterEnabled => "other_updater_enabled",
            RegistriesConfInvalid => "registries_conf_invalid",
            SetupFailed => "setup_failed",
            SourceError => "source_error",
            HaltsUnavailable => "halts_unavailable",
            HostError => "host_error",
            StagingRefused => "staging_refused",
            LockError => "lock_error",
            SteadyStateReported => "steady_state_reported",
            NoBootedDigest => "no_booted_digest",
            UpToDate => "up_to_date",
            BootedNotInGraph => "booted_not_in_graph",
            BootedDeadEnd => "booted_dead_end",
            DocumentExpired => "document_expired",
            RolloutPending => "rollout_pending",
            TargetDeadEnd => "target_dead_end",
            TargetUnavailable => "target_unavailable",
            TargetRolledBack => "target_rolled_back",
            TargetHalted => "target_halted",
            TargetDowngrade => "target_downgrade",
            BaseBarrier => "base_barrier",
            UnknownBase => "unknown_base",
            PastMaxVersion => "past_max_version",
            MaxVersionUnknown => "max_version_unknown",
            Held => "held",
            Disabled => "disabled",
            HookVeto => "hook_veto",
            Staged => "staged",
            StillStaged => "still_staged",
            StagedPastMaxVersion => "staged_past_max_version",
            StagedLeftGraph => "staged_left_graph",
            StagedDeadEnd => "staged_dead_end",
            StagedDenied => "staged_denied",
            StagedNotOffered => "staged_not_offered",
            StagedHalted => "staged_halted",
            StagedCrossesBaseBarrier => "staged_crosses_base_barrier",
            OneShot => "one_shot",
            WindowClosed => "window_closed",
            UsersLoggedIn => "users_logged_in",
            RebootLockWait => "reboot_lock_wait",
            Rebooting => "rebooting",
            Resuming => "resuming",
            RecoveredBooted => "recovered_booted",
            RecoveredRolledBack => "recovered_rolled_back",
            RebootDidNotHappen => "reboot_did_not_happen",
            WaitingForBootComplete => "waiting_for_boot_complete",
            BootedHealthy => "booted_healthy",
            BootedUnverified => "booted_unverified",
            BootedUnhealthy => "booted_unhealthy",
            AlreadyJudged => "already_judged",
            RollingBack => "rolling_back",
            RollbackInProgress => "rollback_in_progress",
            RolledBack => "rolled_back",
            RollbackFailed => "rollback_failed",
            StaysOnDenied => "stays_on_denied",
            Unknown => "unknown",
        }
    }

    /// The kind of the reason a graph decision takes no update.
    fn of_no_update(no_update: Option<&NoUpdate>) -> ReasonKind {
        match no_update {
            None | Some(NoUpdate::UpToDate) => ReasonKind::UpToDate,
            Some(NoUpdate::BootedNotInGraph { .. }) => ReasonKind::BootedNotInGraph,
            Some(NoUpdate::DeadEnd { .. }) => ReasonKind::BootedDeadEnd,
            Some(NoUpdate::DocumentExpired { .. }) => ReasonKind::DocumentExpired,
            Some(NoUpdate::Held(held)) => match held.hold {
                Hold::Rollout { .. } => ReasonKind::RolloutPending,
                Hold::SameConfig => ReasonKind::UpToDate,
                Hold::DeadEnd { .. } => ReasonKind::TargetDeadEnd,
                Hold::Unavailable => ReasonKind::TargetUnavailable,
                Hold::RolledBack => ReasonKind::TargetRolledBack,
                Hold::Halted => ReasonKind::TargetHalted,
                Hold::Downgrade => ReasonKind::TargetDowngrade,
                Hold::BaseBarrier { .. } => ReasonKind::BaseBarrier,
                Hold::UnknownBase => ReasonKind::UnknownBase,
            },
        }
    }
}

impl std::fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason: its kind, for code, and one sentence, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reason {
    /// What code decides on.
    pub kind: ReasonKind,
    /// What operators read; its wording may change at any time.
    pub message: String,
    /// The short kind of the error behind the reason (`expired`,
    /// `bad_signature`, `transport`, `syntax`…), when one stopped the pass:
    /// an error's `kind()`, never text from a source. Added within
    /// `cairn.dev/v1`, so a status an older agent wrote has none.
    #[serde(default)]
    pub cause: Option<String>,
}

impl Reason {
    /// A reason of `kind`.
    pub fn new(kind: ReasonKind, message: impl Into<String>) -> Reason {
        Reason {
            kind,
            message: message.into(),
            cause: None,
        }
    }

    /// The same reason, caused by an error of kind `cause` (its `kind()`).
    pub fn caused_by(self, cause: &'static str) -> Reason {
        Reason {
            cause: Some(cause.to_string()),
            ..self
        }
    }

    /// The same kind, with `note` appended to the sentence.
    pub fn noting(self, note: &str) -> Reason {
        Reason {
            message: format!("{}; {note}", self.message),
            ..self
        }
    }

    /// The target a graph decision offers, or why it offers none, in words
    /// and kind. An offered update has no kind of its own: it is staged, or
    /// what keeps it back (a hold, `max_version`) is the reason.
    pub fn of_decision(decision: &Decision) -> Result<&Target, Reason> {
        match &decision.target {
            Some(target) => Ok(target),
            None => Err(Reason::new(
                ReasonKind::of_no_update(decision.no_update.as_ref()),
                decision.reason(),
            )),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
