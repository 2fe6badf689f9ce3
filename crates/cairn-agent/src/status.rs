//! What `cairn status` shows: the versioned status document (`cairn.dev/v1`
//! `AgentStatus`), how it is read and rendered for people. The files a pass
//! leaves from it (status, metrics, MOTD) are written by [`files`].

#[cfg(test)]
mod documented;
mod files;

pub(crate) use files::finish;
pub use files::{METRICS_FILE, MOTD_FILE, metrics_text, motd};

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
    /// A state this version does not know, read from a newer agent's status
    /// (states may be added within `cairn.dev/v1`). Never written by this one.
    #[serde(other)]
    Unknown,
}

impl StateName {
    /// Every state this version writes, in the order of the machine (not
    /// [`StateName::Unknown`], which is only read).
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
            StateName::Unknown => "unknown",
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
    /// For a deployment, the id the graph knows it by: the image's manifest
    /// digest, or a deployment of an ostree commit's (base) checksum; for
    /// the target, the id staged (digest or checksum).
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

/// The FleetLock slot this host holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetLockSlot {
    /// The lock group; none when `strategy.fleet_lock` is no longer
    /// configured and the slot was not kept with its group.
    #[serde(default)]
    pub group: Option<String>,
    /// Kept after a failed boot: the group waits for the operator (`cairn
    /// release-slot`) or this host's next healthy boot. `None`: held
    /// for the reboot under way.
    #[serde(default)]
    pub kept_after_failure: Option<crate::store::KeptSlot>,
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
    /// When the pass that wrote this started: the time it decided at.
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
    /// Where the graph comes from; none when the pass stopped before asking.
    #[serde(default)]
    pub source: Option<String>,
    /// Sequence of the last trusted document.
    #[serde(default)]
    pub document_sequence: Option<u64>,
    /// This node's wariness.
    #[serde(default)]
    pub wariness: Option<f64>,
    /// The strategy; none when no valid configuration was read.
    #[serde(default)]
    pub strategy: Option<String>,
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
    /// The FleetLock slot this host holds, if it holds one.
    #[serde(default)]
    pub fleet_lock_slot: Option<FleetLockSlot>,
    /// Why registering as rpm-ostree's update driver failed, if it did:
    /// updates go on, but other tools are not warned off.
    #[serde(default)]
    pub driver_registration: Option<String>,
    /// Outcome reports: on or off, the queue, the last send's error; none
    /// when the pass read no valid configuration.
    #[serde(default)]
    pub reports: Option<crate::reports::ReportsStatus>,
    /// The stream's halt list, when the document turns halt lists on.
    #[serde(default)]
    pub halt_list: Option<crate::halts::HaltListStatus>,
    /// The trust root documents and halt lists were verified with; none
    /// when no key and no root is configured (unsigned documents).
    #[serde(default)]
    pub trust_root: Option<TrustRootStatus>,
    /// What read the registries in this pass; none when the pass stopped
    /// before reading any.
    #[serde(default)]
    pub registry_reader: Option<RegistryReaderStatus>,
}

/// What reads registries (docs/agent.md, "How the agent reads registries").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderBackend {
    /// skopeo's image proxy (containers/image, with the host's settings).
    Proxy,
    /// Cairn's own registry client.
    Builtin,
}

impl ReaderBackend {
    /// The value as the status writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReaderBackend::Proxy => "proxy",
            ReaderBackend::Builtin => "builtin",
        }
    }
}

/// How a pass read registries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryReaderStatus {
    /// What read the document, its signatures, halt lists and trust roots.
    pub backend: ReaderBackend,
    /// The proxy protocol skopeo spoke, when the proxy read.
    #[serde(default)]
    pub skopeo_protocol: Option<String>,
    /// Why the built-in client read instead of the proxy.
    #[serde(default)]
    pub reason: Option<String>,
    /// What read the tag and barrier scans (`updates.source = "tag"`): the
    /// proxy when it read, else the built-in client.
    pub scans: ReaderBackend,
}

impl RegistryReaderStatus {
    fn render(&self) -> String {
        let backend = match (self.backend, &self.skopeo_protocol) {
            (ReaderBackend::Proxy, Some(protocol)) => {
                format!("through skopeo (image proxy protocol {protocol})")
            }
            (ReaderBackend::Proxy, None) => "through skopeo".to_string(),
            (ReaderBackend::Builtin, _) => "built-in client".to_string(),
        };
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let scans = match self.scans {
            ReaderBackend::Builtin => "built-in client",
            ReaderBackend::Proxy => "through skopeo",
        };
        format!("Registries: {backend}{reason}; tag and barrier scans: {scans}\n")
    }
}

/// The trust root a pass verified with (docs/agent.md, "Trust roots").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustRootStatus {
    /// Its version (0: built from `updates.keys` and `updates.halt_keys`).
    pub version: u64,
    /// How the host came to hold it: `configured`, `shipped`, `stored` or `walked`.
    pub origin: String,
    /// When it expires (none for version 0).
    #[serde(default)]
    pub expires: Option<Timestamp>,
    /// Each role's threshold and full key ids, by role name.
    pub roles: std::collections::BTreeMap<String, RoleStatus>,
    /// A root of version 1 or more is held: `updates.keys` and
    /// `updates.halt_keys` are not used.
    #[serde(default)]
    pub configured_keys_ignored: bool,
    /// What people should know that is not a refusal (a source without a
    /// root chain, a shipped root not taken).
    #[serde(default)]
    pub note: Option<String>,
    /// Checks since the state began whose document was read at a mirror
    /// while the repository could not be reached to ask for the next root,
    /// by the error's kind (`updates.mirror_root_check = "best-effort"`).
    #[serde(default)]
    pub origin_unasked: std::collections::BTreeMap<String, u64>,
}

/// One role of a trust root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleStatus {
    /// How many distinct keys must sign.
    pub threshold: usize,
    /// The role's key ids (hex SHA-256 of each key's SPKI DER).
    pub keys: Vec<String>,
}

impl TrustRootStatus {
    /// The status of `root`, held by way of `origin`.
    pub fn of(root: &cairn_oci::trust::TrustedRoot, origin: &str) -> TrustRootStatus {
        use cairn_oci::trust::Role;
        TrustRootStatus {
            version: root.version(),
            origin: origin.to_string(),
            expires: root.expires(),
            roles: Role::ALL
                .iter()
                .map(|&role| {
                    let keys = root.role(role);
                    (
                        role.name().to_string(),
                        RoleStatus {
                            threshold: keys.threshold(),
                            keys: keys.key_ids().map(|id| id.as_str().to_string()).collect(),
                        },
                    )
                })
                .collect(),
            configured_keys_ignored: root.version() >= 1,
            note: None,
            origin_unasked: std::collections::BTreeMap::new(),
        }
    }

    /// The lines `cairn status` shows.
    pub fn render(&self) -> String {
        let roles: Vec<String> = self
            .roles
            .iter()
            .map(|(name, role)| {
                let ids: Vec<&str> = role
                    .keys
                    .iter()
                    .map(|id| id.get(..12).unwrap_or(id))
                    .collect();
                format!(
                    "{name} {}/{} [{}]",
                    role.threshold,
                    role.keys.len(),
                    ids.join(" ")
                )
            })
            .collect();
        let expires = self
            .expires
            .map(|e| format!(", expires {e}"))
            .unwrap_or_default();
        let mut text = format!(
            "Trust root: version {} ({}{expires}); {}\n",
            self.version,
            self.origin,
            roles.join("; ")
        );
        if self.configured_keys_ignored {
            text.push_str(&format!(
                "            updates.keys is ignored: trust root version {} is held\n",
                self.version
            ));
        }
        if let Some(note) = &self.note {
            text.push_str(&format!("            {note}\n"));
        }
        text
    }
}

/// Why the status file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// No status file: no agent has written one here yet.
    #[error("{}: no status yet (is `cairn agent` running?)", .path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The status file cannot be read.
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
    #[error("{}: {}{source}", .path.display(), .field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field that does not parse (`reason.kind`), when it is one.
        field: Option<String>,
        /// Why.
        source: serde_json::Error,
    },
}

impl StatusError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StatusError::Missing { .. } => "missing",
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
            source: None,
            document_sequence: None,
            wariness: None,
            strategy: None,
            next_change: None,
            deny_list: Vec::new(),
            held: false,
            last_error: None,
            last_success: None,
            missing_base_image: None,
            hook_veto: None,
            fleet_lock_slot: None,
            last_outcome: None,
            driver_registration: None,
            reports: None,
            halt_list: None,
            trust_root: None,
            registry_reader: None,
        }
    }

    /// Read the status the running agent last wrote.
    pub fn read(state_dir: &Path) -> Result<AgentStatus, StatusError> {
        let path = state_dir.join(STATUS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StatusError::Missing { path });
            }
            Err(source) => return Err(StatusError::Read { path, source }),
        };
        AgentStatus::from_json(&bytes, &path)
    }

    /// Parse a status file's bytes; `path` names it (and the field that
    /// does not parse) in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<AgentStatus, StatusError> {
        let invalid = |field: Option<String>, source| StatusError::Invalid {
            path: path.to_path_buf(),
            field,
            source,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(None, e))?;
        match value.get("apiVersion") {
            // Only the older agent's object (it always had these two) is
            // unversioned; `{}`, `[]` or `null` is no status at all.
            None if value.get("state").is_some() && value.get("updated").is_some() => {
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
            None => {}
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
        // From the bytes again, not the value: the error keeps its line.
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let field = e.path().to_string();
            invalid((field != ".").then_some(field), e.into_inner())
        })
    }

    /// True while the boot into a target waits for `boot-complete.target`:
    /// `cairn verify` asks again rather than judge.
    pub fn waiting_for_boot(&self) -> bool {
        self.state == StateName::Verifying && self.reason.kind == ReasonKind::WaitingForBootComplete
    }

    /// True when an operator must know: a configuration error, a hold, a
    /// missing base image, a halt list refused or missing, a dead-end, a booted image not in the graph,
    /// another updater in the way.
    pub fn needs_attention(&self) -> bool {
        self.state == StateName::ConfigError
            || self.held
            || self.missing_base_image.is_some()
            || self.halt_list.as_ref().is_some_and(|h| h.refused.is_some())
            || matches!(
                self.reason.kind,
                ReasonKind::ConfigError
                    | ReasonKind::HaltsUnavailable
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
            self.source.as_deref().unwrap_or("no source asked"),
            self.document_sequence
                .map(|s| format!(" (document sequence {s})"))
                .unwrap_or_default()
        ));
        text.push_str(&format!(
            "Strategy:   {}; wariness {}\n",
            self.strategy.as_deref().unwrap_or("unknown"),
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
        if let Some(slot) = &self.fleet_lock_slot {
            let group = slot
                .group
                .as_deref()
                .unwrap_or("(strategy.fleet_lock is no longer configured)");
            text.push_str(&match &slot.kept_after_failure {
                Some(kept) => format!(
                    "Lock:       keeps a FleetLock slot of group {group} since {}: the boot into {} failed ({}); the group waits until `cairn release-slot` or a healthy boot\n",
                    kept.since.strftime("%a %Y-%m-%d %H:%M UTC"),
                    kept.version,
                    kept.reason
                ),
                None => format!(
                    "Lock:       holds a FleetLock slot of group {group} for the reboot under way\n"
                ),
            });
        }
        if let Some(reports) = &self.reports {
            text.push_str(&if !reports.enabled {
                "Reports:    off (reports.url is not set): nothing is sent\n".to_string()
            } else {
                format!(
                    "Reports:    on; {} queued{}\n",
                    reports.queued,
                    reports
                        .last_error
                        .as_deref()
                        .map(|e| format!("; the last send failed: {e}"))
                        .unwrap_or_default()
                )
            });
        }
        if let Some(root) = &self.trust_root {
            text.push_str(&root.render());
        }
        if let Some(halts) = &self.halt_list {
            text.push_str(&crate::halts::render(halts));
        }
        if let Some(reader) = &self.registry_reader {
            text.push_str(&reader.render());
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

    pub(crate) fn write(&self, state_dir: &Path) {
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

/// Statuses for this module's tests and its children's.
#[cfg(test)]
mod sample {
    use super::*;

    pub(super) fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("time")
    }

    pub(super) fn status(state: StateName, kind: ReasonKind, message: &str) -> AgentStatus {
        AgentStatus::new(at(1_800_000_000), state, Reason::new(kind, message))
    }
}

#[cfg(test)]
mod tests {
    use super::sample::{at, status};
    use super::*;

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
        assert_eq!(json["reason"]["cause"], serde_json::Value::Null);
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

    /// A status a newer `cairn.dev/v1` agent may write: a field, a state, a
    /// reason kind and an outcome this version does not know.
    const NEWER: &str = r#"{"apiVersion":"cairn.dev/v1","kind":"AgentStatus",
        "updated":"2027-01-15T08:00:00Z","state":"hibernating",
        "reason":{"kind":"cosmic_rays","message":"resting"},"source":"x",
        "strategy":"immediate","lastSuccess":"2027-01-15T07:00:00Z",
        "lastOutcome":{"version":"44.3","outcome":"booted_and_blessed",
            "finished":"2027-01-15T06:00:00Z"},
        "solarFlares":3}"#;

    #[test]
    fn a_newer_v1_status_reads_with_unknown_words_and_keeps_its_last_success() {
        let read = AgentStatus::from_json(NEWER.as_bytes(), Path::new("status.json"))
            .expect("a newer v1 status reads");
        assert_eq!(read.state, StateName::Unknown);
        assert_eq!(read.reason.kind, ReasonKind::Unknown);
        assert_eq!(read.last_outcome.map(|l| l.outcome), Some(Outcome::Unknown));
        // `cairn status` through the socket reads it as well.
        let answer = format!(r#"{{"ok":true,"message":"","status":{NEWER}}}"#);
        let response: crate::control::Response =
            serde_json::from_str(&answer).expect("the answer reads");
        assert_eq!(response.status.map(|s| s.state), Some(StateName::Unknown));
        // After a downgrade, a failed pass keeps the newer agent's last success.
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(STATUS_FILE), NEWER).expect("write");
        let mut failed = AgentStatus {
            last_error: Some("registry down".into()),
            ..status(StateName::Steady, ReasonKind::SourceError, "no action")
        };
        finish(dir.path(), None, &mut failed, at(1_800_000_000));
        assert_eq!(
            AgentStatus::read(dir.path())
                .expect("rewritten")
                .last_success,
            Some("2027-01-15T07:00:00Z".parse().expect("time"))
        );
    }

    #[test]
    fn a_status_that_does_not_parse_names_the_file_and_the_field() {
        let path = Path::new("/var/lib/cairn/status.json");
        let bad = NEWER.replace(r#""message":"resting""#, r#""message":5"#);
        let e = AgentStatus::from_json(bad.as_bytes(), path).expect_err("a number");
        assert_eq!(e.kind(), "invalid");
        let text = e.to_string();
        assert!(
            text.starts_with("/var/lib/cairn/status.json: reason.message: "),
            "{text}"
        );
        // Only the older agent's object is unversioned; these are no status.
        for junk in ["[]", "null", "{}", "3", r#"{"state":"steady"}"#] {
            let e = AgentStatus::from_json(junk.as_bytes(), path).expect_err(junk);
            assert_eq!(e.kind(), "invalid", "{junk}: {e}");
        }
        let old = r#"{"updated":"2026-11-26T13:59:50Z","state":"steady"}"#;
        let e = AgentStatus::from_json(old.as_bytes(), path).expect_err("old");
        assert_eq!(e.kind(), "unversioned", "{e}");
    }

    #[test]
    fn a_missing_status_is_told_from_an_unreadable_one_by_its_variant() {
        let dir = tempfile::tempdir().expect("temp dir");
        let e = AgentStatus::read(dir.path()).expect_err("none yet");
        assert!(matches!(e, StatusError::Missing { .. }), "{e}");
        assert_eq!(e.kind(), "missing");
        std::fs::create_dir(dir.path().join(STATUS_FILE)).expect("mkdir");
        let e = AgentStatus::read(dir.path()).expect_err("a directory");
        assert!(matches!(e, StatusError::Read { .. }), "{e}");
        assert_eq!(e.kind(), "unreadable");
    }

    #[test]
    fn a_reason_carries_the_kind_of_the_error_behind_it() {
        let stopped = AgentStatus {
            reason: Reason::new(ReasonKind::SourceError, "no action: expired").caused_by("expired"),
            ..status(StateName::Steady, ReasonKind::SourceError, "")
        };
        let json = serde_json::to_value(&stopped).expect("serializes");
        assert_eq!(json["reason"]["cause"], "expired");
        let bytes = serde_json::to_vec(&stopped).expect("serializes");
        let back = AgentStatus::from_json(&bytes, Path::new("status.json")).expect("parses");
        assert_eq!(back.reason.cause.as_deref(), Some("expired"));
        // An earlier v1 agent wrote no cause: it reads as none.
        let earlier: Reason =
            serde_json::from_str(r#"{"kind":"source_error","message":"down"}"#).expect("reads");
        assert_eq!(earlier.cause, None);
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
        for state in StateName::ALL.into_iter().chain([StateName::Unknown]) {
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
}
