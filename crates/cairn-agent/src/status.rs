//! What `cairn status` shows, and the files rendered from it after every
//! pass: the status file, the metrics textfile for node_exporter and the
//! MOTD snippet.

use crate::history::Outcome;
use crate::machine::State;
use crate::reason::{Reason, ReasonKind};
use cairn_graph::digest::TargetId;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The status file inside the state directory.
pub const STATUS_FILE: &str = "status.json";

/// The schema's version; see docs/agent.md for what may change within it.
pub const API_VERSION: &str = "cairn.dev/v1";
/// The document's kind.
pub const KIND: &str = "AgentStatus";

/// `apiVersion`: only `cairn.dev/v1` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ApiVersion {
    /// `cairn.dev/v1`.
    #[default]
    #[serde(rename = "cairn.dev/v1")]
    V1,
}

/// `kind`: the one kind of document this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StatusKind {
    /// `AgentStatus`.
    #[default]
    AgentStatus,
}

/// The state a status reports: the state machine's, or `error` when the pass
/// could not get as far as the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateName {
    /// Just started: steady state is reported first.
    #[default]
    Initialized,
    /// The configuration is broken: nothing is staged or finalized.
    ConfigError,
    /// Nothing to do until the next check.
    Steady,
    /// Asking the graph.
    Checking,
    /// A target was chosen and will be staged.
    UpdateAvailable,
    /// The target is staged, waiting for hooks and the strategy.
    Staged,
    /// Every gate passed and the reboot slot is held.
    FinalizeAllowed,
    /// The host is finalizing and rebooting.
    Rebooting,
    /// Booted again: checking that the target came up healthy.
    Verifying,
    /// The persistent state could not be read: nothing is done.
    Error,
}

impl StateName {
    /// Every state, in the order of the machine.
    pub const ALL: [StateName; 10] = [
        StateName::Initialized,
        StateName::ConfigError,
        StateName::Steady,
        StateName::Checking,
        StateName::UpdateAvailable,
        StateName::Staged,
        StateName::FinalizeAllowed,
        StateName::Rebooting,
        StateName::Verifying,
        StateName::Error,
    ];

    /// The wire name, also the metric label ([`State::name`] for the machine's).
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Initialized => "initialized",
            StateName::ConfigError => "config-error",
            StateName::Steady => "steady",
            StateName::Checking => "checking",
            StateName::UpdateAvailable => "update-available",
            StateName::Staged => "staged",
            StateName::FinalizeAllowed => "finalize-allowed",
            StateName::Rebooting => "rebooting",
            StateName::Verifying => "verifying",
            StateName::Error => "error",
        }
    }
}

impl From<&State> for StateName {
    fn from(state: &State) -> StateName {
        match state {
            State::Initialized => StateName::Initialized,
            State::ConfigError { .. } => StateName::ConfigError,
            State::Steady => StateName::Steady,
            State::Checking => StateName::Checking,
            State::UpdateAvailable { .. } => StateName::UpdateAvailable,
            State::Staged { .. } => StateName::Staged,
            State::FinalizeAllowed { .. } => StateName::FinalizeAllowed,
            State::Rebooting { .. } => StateName::Rebooting,
            State::Verifying { .. } => StateName::Verifying,
        }
    }
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A release on the host, or the one the agent moves it to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Version, when known.
    #[serde(default)]
    pub version: Option<String>,
    /// Manifest digest or ostree checksum, when known.
    #[serde(default)]
    pub digest: Option<TargetId>,
    /// Age index in the graph, when the release is in it.
    #[serde(default)]
    pub age_index: Option<u64>,
}

/// A newer release out of reach: no image of this repository is built on
/// this base barrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingBaseImage {
    /// The base repository.
    pub base_repository: String,
    /// The barrier's version in it.
    pub version: String,
}

/// A pre-update hook's veto still in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookVeto {
    /// The hook (`image:10-check`, `pre-update.d/20-drain`).
    pub hook: String,
    /// The vetoed target's version.
    pub version: String,
    /// What the hook said.
    pub reason: String,
    /// When the target is tried again.
    pub retry_after: Timestamp,
}

/// The newest finished update attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastOutcome {
    /// The target's version.
    pub version: String,
    /// The target's digest; `None` when the history's could not be read as one.
    #[serde(default)]
    pub digest: Option<TargetId>,
    /// Its final outcome (`booted_healthy`, `booted_unverified`, …).
    pub outcome: Outcome,
    /// When it ended.
    pub finished: Timestamp,
}

/// What `cairn status` shows: the status file, the control socket's answer
/// and `cairn status --json`. A stable interface: see docs/agent.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Always `cairn.dev/v1`.
    pub api_version: ApiVersion,
    /// Always `AgentStatus`.
    pub kind: StatusKind,
    /// When this was written.
    pub updated: Timestamp,
    /// Where the agent is.
    pub state: StateName,
    /// Why.
    pub reason: Reason,
    /// The booted release.
    #[serde(default)]
    pub booted: Option<Release>,
    /// The staged release.
    #[serde(default)]
    pub staged: Option<Release>,
    /// The release the state machine is moving the host to.
    #[serde(default)]
    pub target: Option<Release>,
    /// The stream followed.
    #[serde(default)]
    pub stream: Option<String>,
    /// Where the graph comes from.
    #[serde(default)]
    pub source: String,
    /// Sequence of the last trusted document.
    #[serde(default)]
    pub document_sequence: Option<u64>,
    /// This node's wariness.
    #[serde(default)]
    pub wariness: Option<f64>,
    /// The strategy.
    #[serde(default)]
    pub strategy: String,
    /// When the decision is expected to change without a new document.
    #[serde(default)]
    pub next_change: Option<Timestamp>,
    /// Versions on the deny-list.
    #[serde(default)]
    pub deny_list: Vec<String>,
    /// Held by the operator.
    #[serde(default)]
    pub held: bool,
    /// The last error, if the pass failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The last pass without an error.
    #[serde(default)]
    pub last_success: Option<Timestamp>,
    /// A newer release waits for an image built on a base barrier.
    #[serde(default)]
    pub missing_base_image: Option<MissingBaseImage>,
    /// A pre-update hook's veto still in force.
    #[serde(default)]
    pub hook_veto: Option<HookVeto>,
    /// The newest finished update attempt.
    #[serde(default)]
    pub last_outcome: Option<LastOutcome>,
    /// Why registering as rpm-ostree's update driver failed, if it did:
    /// updates go on, but other tools are not warned off.
    #[serde(default)]
    pub driver_registration: Option<String>,
}

/// Why the status file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// No status file, or it cannot be read.
    #[error("{}: {source} (is `cairn agent` running?)", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Written by an agent from before the versioned schema.
    #[error("{}: written by an older agent (no apiVersion); the next pass rewrites it", .path.display())]
    Unversioned {
        /// The file.
        path: PathBuf,
        /// Its last successful pass, kept across the upgrade.
        last_success: Option<Timestamp>,
    },
    /// Another schema version.
    #[error("{}: apiVersion {found:?} is not {API_VERSION}", .path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// What it says.
        found: String,
    },
    /// Not a status document.
    #[error("{}: {source}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

impl StatusError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StatusError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "missing"
            }
            StatusError::Read { .. } => "unreadable",
            StatusError::Unversioned { .. } => "unversioned",
            StatusError::Version { .. } => "unsupported_version",
            StatusError::Invalid { .. } => "invalid",
        }
    }
}

impl AgentStatus {
    /// A status written at `updated`, in `state`, for `reason`; the rest unknown.
    pub fn new(updated: Timestamp, state: StateName, reason: Reason) -> AgentStatus {
        AgentStatus {
            api_version: ApiVersion::V1,
            kind: StatusKind::AgentStatus,
            updated,
            state,
            reason,
            booted: None,
            staged: None,
            target: None,
            stream: None,
            source: String::new(),
            document_sequence: None,
            wariness: None,
            strategy: String::new(),
            next_change: None,
            deny_list: Vec::new(),
            held: false,
            last_error: None,
            last_success: None,
            missing_base_image: None,
            hook_veto: None,
            last_outcome: None,
            driver_registration: None,
        }
    }

    /// Read the status the running agent last wrote.
    pub fn read(state_dir: &Path) -> Result<AgentStatus, StatusError> {
        let path = state_dir.join(STATUS_FILE);
        let bytes = std::fs::read(&path).map_err(|source| StatusError::Read {
            path: path.clone(),
            source,
        })?;
        AgentStatus::from_json(&bytes, &path)
    }

    /// Parse a status file's bytes; `path` names it in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<AgentStatus, StatusError> {
        let invalid = |source| StatusError::Invalid {
            path: path.to_path_buf(),
            source,
        };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(invalid)?;
        match value.get("apiVersion") {
            None => {
                // The unversioned file had `last_success` in Unix seconds.
                let last_success = value
                    .get("last_success")
                    .and_then(serde_json::Value::as_i64)
                    .and_then(|s| Timestamp::from_second(s).ok());
                return Err(StatusError::Unversioned {
                    path: path.to_path_buf(),
                    last_success,
                });
            }
            Some(serde_json::Value::String(v)) if v == API_VERSION => {}
            Some(other) => {
                return Err(StatusError::Version {
                    path: path.to_path_buf(),
                    found: other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_string),
                });
            }
        }
        serde_json::from_value(value).map_err(invalid)
    }

    /// True while the boot into a target waits for `boot-complete.target`:
    /// `cairn verify` asks again rather than judge.
    pub fn waiting_for_boot(&self) -> bool {
        self.state == StateName::Verifying && self.reason.kind == ReasonKind::WaitingForBootComplete
    }

    /// True when an operator must know: a configuration error, a hold, a
    /// missing base image, a dead-end, a booted image not in the graph,
    /// another updater in the way.
    pub fn needs_attention(&self) -> bool {
        self.state == StateName::ConfigError
            || self.held
            || self.missing_base_image.is_some()
            || matches!(
                self.reason.kind,
                ReasonKind::ConfigError
                    | ReasonKind::BootedDeadEnd
                    | ReasonKind::BootedNotInGraph
                    | ReasonKind::OtherUpdaterEnabled
            )
    }

    /// For people.
    pub fn render(&self) -> String {
        let release = |r: &Option<Release>| match r {
            Some(release) => format!(
                "{} ({})",
                release.version.as_deref().unwrap_or("unknown version"),
                release
                    .digest
                    .as_deref()
                    .map(cairn_graph::digest::short)
                    .unwrap_or("no digest")
            ),
            None => "none".into(),
        };
        let mut text = format!("State:      {} — {}\n", self.state, self.reason.message);
        text.push_str(&format!("Booted:     {}\n", release(&self.booted)));
        text.push_str(&format!("Staged:     {}\n", release(&self.staged)));
        text.push_str(&format!(
            "Stream:     {} from {}{}\n",
            self.stream.as_deref().unwrap_or("unknown"),
            self.source,
            self.document_sequence
                .map(|s| format!(" (document sequence {s})"))
                .unwrap_or_default()
        ));
        text.push_str(&format!(
            "Strategy:   {}; wariness {}\n",
            self.strategy,
            self.wariness
                .map_or("unknown".to_string(), |w| format!("{w:.3}"))
        ));
        if let Some(next) = &self.next_change {
            // "Thu 2026-11-27 04:23 UTC" reads better than RFC 3339.
            text.push_str(&format!(
                "Expected:   a change about {}\n",
                next.strftime("%a %Y-%m-%d %H:%M UTC")
            ));
        }
        if self.held {
            text.push_str("Held:       by operator\n");
        }
        text.push_str(&format!(
            "Deny-list:  {}\n",
            if self.deny_list.is_empty() {
                "none".to_string()
            } else {
                self.deny_list.join(", ")
            }
        ));
        if let Some(last) = &self.last_outcome {
            text.push_str(&format!(
                "Outcome:    {} (newest attempt, {})\n",
                last.outcome, last.version
            ));
        }
        if let Some(error) = &self.driver_registration {
            text.push_str(&format!(
                "Driver:     not registered with rpm-ostree: {error}\n"
            ));
        }
        text.push_str(&format!(
            "Last error: {}\n",
            self.last_error.as_deref().unwrap_or("none")
        ));
        text.push_str(&format!("Updated:    {}\n", self.updated));
        text
    }

    fn write(&self, state_dir: &Path) {
        let written = std::fs::create_dir_all(state_dir)
            .and_then(|()| serde_json::to_vec_pretty(self).map_err(std::io::Error::other))
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                cairn_fs::write_atomic(&state_dir.join(STATUS_FILE), &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not write the status file");
        }
    }
}

/// The last successful pass the previous status file records. An
/// unversioned file (an older agent's) still gives its `last_success`.
fn previous_success(state_dir: &Path) -> Option<Timestamp> {
    match AgentStatus::read(state_dir) {
        Ok(previous) => previous.last_success,
        Err(StatusError::Unversioned { last_success, .. }) => last_success,
        Err(e) if e.kind() == "missing" => None,
        Err(e) => {
            tracing::warn!(error = %e, kind = e.kind(), "the previous status is unreadable; its last success is lost");
            None
        }
    }
}

/// Status file, metrics textfile and MOTD (in `motd_dir`, if any), from the
/// outcome of a pass.
pub(crate) fn finish(
    state_dir: &Path,
    motd_dir: Option<&Path>,
    status: &mut AgentStatus,
    now: Timestamp,
) {
    status.last_success = if status.last_error.is_none() {
        Some(Timestamp::from_second(now.as_second()).unwrap_or(now))
    } else {
        previous_success(state_dir)
    };
    status.last_outcome = match crate::history::last_final(state_dir) {
        Ok(last) => last.map(|a| LastOutcome {
            digest: a.to_digest.parse().ok(),
            version: a.to_version,
            outcome: a.result,
            finished: a.finished,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the update history");
            None
        }
    };
    status.write(state_dir);
    let metrics = metrics_text(status, now);
    if let Err(e) = cairn_fs::write_atomic(&state_dir.join(METRICS_FILE), metrics.as_bytes()) {
        tracing::warn!(error = %e, "could not write the metrics file");
    }
    if let Some(dir) = motd_dir {
        let path = dir.join(MOTD_FILE);
        let result = match motd(status) {
            Some(text) => std::fs::create_dir_all(dir)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    cairn_fs::write_atomic(&path, text.as_bytes()).map_err(|e| e.to_string())
                }),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not update the MOTD");
        }
    }
}

/// The metrics textfile, for node_exporter's textfile collector. A file
/// rather than a listening socket: nothing to secure, and it outlives restarts.
pub const METRICS_FILE: &str = "metrics.prom";
/// The MOTD snippet's name in `/run/motd.d`.
pub const MOTD_FILE: &str = "85-cairn.motd";

/// The MOTD, when an operator must know: a dead-end, a hold, a configuration
/// error, a host not in the graph, another updater in the way.
pub fn motd(status: &AgentStatus) -> Option<String> {
    status
        .needs_attention()
        .then(|| format!("Cairn updates: {}\n", status.reason.message))
}

/// Prometheus text for a status.
pub fn metrics_text(status: &AgentStatus, now: Timestamp) -> String {
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, value: String| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    gauge(
        "cairn_agent_last_check_timestamp_seconds",
        "Unix time of the last check",
        now.as_second().to_string(),
    );
    if let Some(success) = status.last_success {
        gauge(
            "cairn_agent_last_success_timestamp_seconds",
            "Unix time of the last check without error",
            success.as_second().to_string(),
        );
    }
    if let Some(age) = status.booted.as_ref().and_then(|r| r.age_index) {
        gauge(
            "cairn_agent_booted_age_index",
            "Age index of the booted release",
            age.to_string(),
        );
    }
    if let Some(age) = status.staged.as_ref().and_then(|r| r.age_index) {
        gauge(
            "cairn_agent_staged_age_index",
            "Age index of the staged release",
            age.to_string(),
        );
    }
    gauge(
        "cairn_agent_deny_list_size",
        "Releases this host rolled back from",
        status.deny_list.len().to_string(),
    );
    gauge(
        "cairn_agent_held",
        "1 while updates are held by the operator",
        u8::from(status.held).to_string(),
    );
    text.push_str(
        "# HELP cairn_agent_missing_base_image 1 while updates wait for an image built on this base barrier\n\
         # TYPE cairn_agent_missing_base_image gauge\n",
    );
    text.push_str(
        "# HELP cairn_agent_hook_veto 1 while a pre-update hook's veto holds the update back\n\
         # TYPE cairn_agent_hook_veto gauge\n",
    );
    match &status.hook_veto {
        Some(veto) => text.push_str(&format!(
            "cairn_agent_hook_veto{{hook=\"{}\"}} 1\n",
            veto.hook.replace(['"', '\\', '\n'], "_")
        )),
        None => text.push_str("cairn_agent_hook_veto{hook=\"\"} 0\n"),
    }
    match &status.missing_base_image {
        Some(missing) => text.push_str(&format!(
            "cairn_agent_missing_base_image{{barrier=\"{} {}\"}} 1\n",
            missing.base_repository.replace(['"', '\\', '\n'], "_"),
            missing.version.replace(['"', '\\', '\n'], "_")
        )),
        None => text.push_str("cairn_agent_missing_base_image{barrier=\"\"} 0\n"),
    }
    text.push_str(
        "# HELP cairn_agent_last_outcome 1 for the final outcome of the newest finished update attempt\n\
         # TYPE cairn_agent_last_outcome gauge\n",
    );
    let last = status.last_outcome.as_ref().map(|l| l.outcome);
    for outcome in crate::history::Outcome::ALL.iter().filter(|o| o.is_final()) {
        text.push_str(&format!(
            "cairn_agent_last_outcome{{outcome=\"{outcome}\"}} {}\n",
            u8::from(last == Some(*outcome))
        ));
    }
    text.push_str(
        "# HELP cairn_agent_state 1 for the current state\n# TYPE cairn_agent_state gauge\n",
    );
    for state in StateName::ALL {
        text.push_str(&format!(
            "cairn_agent_state{{state=\"{state}\"}} {}\n",
            u8::from(status.state == state)
        ));
    }
    // Only the current kind: a textfile is rewritten whole, so the previous
    // kind's series goes with it.
    text.push_str(&format!(
        "# HELP cairn_agent_reason 1 for the kind of the current reason\n\
         # TYPE cairn_agent_reason gauge\n\
         cairn_agent_reason{{kind=\"{}\"}} 1\n",
        status.reason.kind
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("time")
    }

    fn status(state: StateName, kind: ReasonKind, message: &str) -> AgentStatus {
        AgentStatus::new(at(1_800_000_000), state, Reason::new(kind, message))
    }

    #[test]
    fn a_pass_leaves_status_metrics_and_a_motd_only_when_needed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (state, run) = (dir.path().join("state"), dir.path().join("run"));
        let now = at(1_800_000_000);
        let mut held = AgentStatus {
            held: true,
            ..status(StateName::Steady, ReasonKind::Held, "held by the operator")
        };
        finish(&state, Some(&run), &mut held, now);
        let read = AgentStatus::read(&state).expect("status");
        assert_eq!(read.last_success, Some(now));
        assert!(read.held);
        let metrics = std::fs::read_to_string(state.join(METRICS_FILE)).expect("metrics");
        assert!(metrics.contains("cairn_agent_held 1\n"), "{metrics}");
        assert!(
            metrics.contains("cairn_agent_reason{kind=\"held\"} 1\n"),
            "{metrics}"
        );
        assert_eq!(
            std::fs::read_to_string(run.join(MOTD_FILE)).expect("motd"),
            "Cairn updates: held by the operator\n"
        );
        // Released, and a failed pass: the MOTD goes, the last success stays.
        let mut failed = AgentStatus {
            last_error: Some("registry down".into()),
            ..status(StateName::Steady, ReasonKind::SourceError, "no action")
        };
        finish(&state, Some(&run), &mut failed, at(1_800_000_600));
        assert_eq!(
            AgentStatus::read(&state).expect("status").last_success,
            Some(now)
        );
        assert!(!run.join(MOTD_FILE).exists());
    }

    #[test]
    fn the_status_round_trips_with_its_version_and_camel_case_fields() {
        let full = AgentStatus {
            booted: Some(Release {
                version: Some("44.2".into()),
                digest: Some(format!("sha256:{}", "a".repeat(64)).parse().expect("id")),
                age_index: Some(1),
            }),
            target: Some(Release::default()),
            next_change: Some(at(1_800_003_600)),
            last_success: Some(at(1_800_000_000)),
            missing_base_image: Some(MissingBaseImage {
                base_repository: "quay.io/fedora/fedora-coreos".into(),
                version: "42.1".into(),
            }),
            hook_veto: Some(HookVeto {
                hook: "image:10-check".into(),
                version: "44.3".into(),
                reason: "no space".into(),
                retry_after: at(1_800_000_300),
            }),
            last_outcome: Some(LastOutcome {
                version: "44.2".into(),
                digest: None,
                outcome: Outcome::BootedUnverified,
                finished: at(1_799_999_000),
            }),
            ..status(
                StateName::FinalizeAllowed,
                ReasonKind::RebootLockWait,
                "waiting",
            )
        };
        let json = serde_json::to_value(&full).expect("serializes");
        assert_eq!(json["apiVersion"], "cairn.dev/v1");
        assert_eq!(json["kind"], "AgentStatus");
        assert_eq!(json["state"], "finalize-allowed");
        assert_eq!(json["reason"]["kind"], "reboot_lock_wait");
        assert_eq!(json["booted"]["ageIndex"], 1);
        assert_eq!(json["updated"], "2027-01-15T08:00:00Z");
        assert_eq!(json["hookVeto"]["retryAfter"], "2027-01-15T08:05:00Z");
        assert_eq!(json["lastOutcome"]["outcome"], "booted_unverified");
        assert_eq!(
            json["missingBaseImage"]["baseRepository"],
            "quay.io/fedora/fedora-coreos"
        );
        let bytes = serde_json::to_vec(&full).expect("serializes");
        let back = AgentStatus::from_json(&bytes, Path::new("status.json")).expect("parses");
        assert_eq!(back, full);
    }

    #[test]
    fn wire_names_are_the_documented_ones() {
        for kind in ReasonKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).expect("kind"),
                kind.as_str(),
                "{kind:?}"
            );
            assert!(
                kind.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "a metric label: {kind}"
            );
        }
        for state in StateName::ALL {
            assert_eq!(serde_json::to_value(state).expect("state"), state.as_str());
        }
        // A newer agent's kind reads as unknown, not as an error.
        let newer: ReasonKind = serde_json::from_str("\"cosmic_rays\"").expect("reads");
        assert_eq!(newer, ReasonKind::Unknown);
        let machine = State::Staged {
            target: crate::machine::Target {
                version: "44.3".into(),
                digest: format!("sha256:{}", "b".repeat(64)).parse().expect("id"),
            },
        };
        assert_eq!(StateName::from(&machine).as_str(), machine.name());
        for outcome in Outcome::ALL {
            assert_eq!(
                serde_json::to_value(outcome).expect("outcome"),
                outcome.as_str()
            );
        }
    }

    #[test]
    fn the_motd_and_verify_decide_on_kinds_not_words() {
        // Reworded messages that match none of the old phrases.
        let dead_end = status(
            StateName::Steady,
            ReasonKind::BootedDeadEnd,
            "the booted release is withdrawn",
        );
        assert_eq!(
            motd(&dead_end).as_deref(),
            Some("Cairn updates: the booted release is withdrawn\n")
        );
        let other = status(
            StateName::Steady,
            ReasonKind::OtherUpdaterEnabled,
            "zincati is on",
        );
        assert!(motd(&other).is_some());
        // The old phrases, under a kind that needs no attention.
        let fine = status(
            StateName::Steady,
            ReasonKind::StagedDeadEnd,
            "dead-end: not in the graph; refusing to stage",
        );
        assert_eq!(motd(&fine), None);
        let config = status(StateName::ConfigError, ReasonKind::ConfigError, "bad key");
        assert!(motd(&config).is_some());

        let waiting = status(
            StateName::Verifying,
            ReasonKind::WaitingForBootComplete,
            "patience",
        );
        assert!(waiting.waiting_for_boot());
        let worded = status(
            StateName::Verifying,
            ReasonKind::BootedHealthy,
            "verifying 44.3: waiting for boot-complete.target",
        );
        assert!(!worded.waiting_for_boot());
        let elsewhere = status(StateName::Steady, ReasonKind::WaitingForBootComplete, "");
        assert!(!elsewhere.waiting_for_boot());
    }

    #[test]
    fn an_old_status_file_is_refused_cleanly_but_keeps_its_last_success() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = r#"{"updated":"2026-11-26T13:59:50Z","state":"steady","reason":"up to date",
            "booted":["44.2","sha256:00"],"staged":null,"stream":"stable","source":"x",
            "document_sequence":1,"wariness":0.5,"strategy":"immediate","next_change":null,
            "deny_list":[],"held":false,"last_error":null,"last_success":1795701590}"#;
        std::fs::write(dir.path().join(STATUS_FILE), old).expect("write");
        let e = AgentStatus::read(dir.path()).expect_err("unversioned");
        assert_eq!(e.kind(), "unversioned", "{e}");
        assert_eq!(previous_success(dir.path()), Some(at(1_795_701_590)));
        // A failed pass after the upgrade keeps it, in the new format.
        let mut failed = AgentStatus {
            last_error: Some("registry down".into()),
            ..status(StateName::Steady, ReasonKind::SourceError, "no action")
        };
        finish(dir.path(), None, &mut failed, at(1_800_000_000));
        let read = AgentStatus::read(dir.path()).expect("rewritten");
        assert_eq!(read.last_success, Some(at(1_795_701_590)));

        std::fs::write(
            dir.path().join(STATUS_FILE),
            r#"{"apiVersion":"cairn.dev/v2"}"#,
        )
        .expect("write");
        let e = AgentStatus::read(dir.path()).expect_err("v2");
        assert_eq!(e.kind(), "unsupported_version", "{e}");
        std::fs::write(dir.path().join(STATUS_FILE), "{").expect("write");
        assert_eq!(
            AgentStatus::read(dir.path()).expect_err("junk").kind(),
            "invalid"
        );
        let empty = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            AgentStatus::read(empty.path()).expect_err("none").kind(),
            "missing"
        );
    }
}
