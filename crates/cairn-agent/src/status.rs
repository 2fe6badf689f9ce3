//! What `cairn status` shows, and the files rendered from it after every
//! pass: the status file, the metrics textfile for node_exporter and the
//! MOTD snippet.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The status file inside the state directory.
pub const STATUS_FILE: &str = "status.json";

/// What `cairn status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StatusFile {
    /// When this was written.
    pub updated: String,
    /// State name.
    pub state: String,
    /// Why.
    pub reason: String,
    /// Booted version and digest.
    pub booted: Option<(Option<String>, Option<String>)>,
    /// Staged version and digest.
    pub staged: Option<(Option<String>, Option<String>)>,
    /// Stream and repository followed.
    pub stream: Option<String>,
    /// Where the graph comes from.
    pub source: String,
    /// Sequence of the last trusted document.
    pub document_sequence: Option<u64>,
    /// Wariness.
    pub wariness: Option<f64>,
    /// Strategy.
    pub strategy: String,
    /// When the decision is expected to change.
    pub next_change: Option<String>,
    /// Deny-listed versions.
    pub deny_list: Vec<String>,
    /// Held by the operator.
    pub held: bool,
    /// The last error, if the last step failed.
    pub last_error: Option<String>,
    /// Age index of the booted release in the document.
    #[serde(default)]
    pub booted_age_index: Option<u64>,
    /// Age index of the staged release in the document.
    #[serde(default)]
    pub staged_age_index: Option<u64>,
    /// Last pass without an error (Unix seconds).
    #[serde(default)]
    pub last_success: Option<i64>,
    /// A newer release is out of reach because no image of this repository
    /// is built on this base barrier (`<base repository> <version>`).
    #[serde(default)]
    pub missing_base_image: Option<String>,
    /// A pre-update hook's veto still in force: the hook and its reason.
    #[serde(default)]
    pub hook_veto: Option<(String, String)>,
    /// The newest finished attempt: its target version and final outcome
    /// (`booted_healthy`, `booted_unverified`, …; see docs/hooks.md).
    #[serde(default)]
    pub last_outcome: Option<(String, String)>,
    /// Why registering as rpm-ostree's update driver failed, if it did:
    /// updates go on, but other tools are not warned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_registration: Option<String>,
}

impl StatusFile {
    /// Read the status the running agent last wrote.
    pub fn read(state_dir: &Path) -> Result<StatusFile, String> {
        let path = state_dir.join(STATUS_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("{}: {e} (is `cairn agent` running?)", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// For people.
    pub fn render(&self) -> String {
        let release = |r: &Option<(Option<String>, Option<String>)>| match r {
            Some((version, digest)) => format!(
                "{} ({})",
                version.as_deref().unwrap_or("unknown version"),
                digest
                    .as_deref()
                    .map(cairn_graph::digest::short)
                    .unwrap_or("no digest")
            ),
            None => "none".into(),
        };
        let mut text = format!("State:      {} — {}\n", self.state, self.reason);
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
            let friendly = next
                .parse::<Timestamp>()
                .map(|t| t.strftime("%a %Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|_| next.clone());
            text.push_str(&format!("Expected:   a change about {friendly}\n"));
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
        if let Some((version, outcome)) = &self.last_outcome {
            text.push_str(&format!(
                "Outcome:    {outcome} (newest attempt, {version})\n"
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

/// Status file, metrics textfile and MOTD (in `motd_dir`, if any), from the
/// outcome of a pass.
pub(crate) fn finish(
    state_dir: &Path,
    motd_dir: Option<&Path>,
    status: &mut StatusFile,
    now: Timestamp,
) {
    let previous = StatusFile::read(state_dir).ok();
    status.last_success = if status.last_error.is_none() {
        Some(now.as_second())
    } else {
        previous.and_then(|p| p.last_success)
    };
    status.last_outcome = match crate::history::last_final(state_dir) {
        Ok(last) => last.map(|a| (a.to_version, a.result.as_str().to_string())),
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
pub fn motd(status: &StatusFile) -> Option<String> {
    let reason = &status.reason;
    let needs_attention = status.state == "config-error"
        || status.held
        || status.missing_base_image.is_some()
        || reason.starts_with("dead-end")
        || reason.contains("not in the graph")
        || reason.starts_with("refusing to stage");
    needs_attention.then(|| format!("Cairn updates: {reason}\n"))
}

/// Prometheus text for a status.
pub fn metrics_text(status: &StatusFile, now: Timestamp) -> String {
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
            success.to_string(),
        );
    }
    if let Some(age) = status.booted_age_index {
        gauge(
            "cairn_agent_booted_age_index",
            "Age index of the booted release",
            age.to_string(),
        );
    }
    if let Some(age) = status.staged_age_index {
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
        Some((hook, _)) => text.push_str(&format!(
            "cairn_agent_hook_veto{{hook=\"{}\"}} 1\n",
            hook.replace(['"', '\\', '\n'], "_")
        )),
        None => text.push_str("cairn_agent_hook_veto{hook=\"\"} 0\n"),
    }
    match &status.missing_base_image {
        Some(barrier) => text.push_str(&format!(
            "cairn_agent_missing_base_image{{barrier=\"{}\"}} 1\n",
            barrier.replace(['"', '\\', '\n'], "_")
        )),
        None => text.push_str("cairn_agent_missing_base_image{barrier=\"\"} 0\n"),
    }
    text.push_str(
        "# HELP cairn_agent_last_outcome 1 for the final outcome of the newest finished update attempt\n\
         # TYPE cairn_agent_last_outcome gauge\n",
    );
    let last = status.last_outcome.as_ref().map(|(_, o)| o.as_str());
    for outcome in crate::history::Outcome::ALL.iter().filter(|o| o.is_final()) {
        text.push_str(&format!(
            "cairn_agent_last_outcome{{outcome=\"{outcome}\"}} {}\n",
            u8::from(last == Some(outcome.as_str()))
        ));
    }
    text.push_str(
        "# HELP cairn_agent_state 1 for the current state\n# TYPE cairn_agent_state gauge\n",
    );
    for state in [
        "initialized",
        "config-error",
        "steady",
        "checking",
        "update-available",
        "staged",
        "finalize-allowed",
        "rebooting",
        "verifying",
        "error",
    ] {
        text.push_str(&format!(
            "cairn_agent_state{{state=\"{state}\"}} {}\n",
            u8::from(status.state == state)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_leaves_status_metrics_and_a_motd_only_when_needed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (state, run) = (dir.path().join("state"), dir.path().join("run"));
        let now = Timestamp::from_second(1_800_000_000).expect("time");
        let mut held = StatusFile {
            state: "steady".into(),
            reason: "held by the operator".into(),
            held: true,
            ..StatusFile::default()
        };
        finish(&state, Some(&run), &mut held, now);
        let read = StatusFile::read(&state).expect("status");
        assert_eq!(read.last_success, Some(now.as_second()));
        assert!(read.held);
        let metrics = std::fs::read_to_string(state.join(METRICS_FILE)).expect("metrics");
        assert!(metrics.contains("cairn_agent_held 1\n"), "{metrics}");
        assert_eq!(
            std::fs::read_to_string(run.join(MOTD_FILE)).expect("motd"),
            "Cairn updates: held by the operator\n"
        );
        // Released, and a failed pass: the MOTD goes, the last success stays.
        let mut failed = StatusFile {
            state: "steady".into(),
            last_error: Some("registry down".into()),
            ..StatusFile::default()
        };
        let later = Timestamp::from_second(1_800_000_600).expect("time");
        finish(&state, Some(&run), &mut failed, later);
        assert_eq!(
            StatusFile::read(&state).expect("status").last_success,
            Some(now.as_second())
        );
        assert!(!run.join(MOTD_FILE).exists());
    }
}
