//! Driving the host tools: the exact command lines of bootc and rpm-ostree,
//! behind a runner seam so that tests see (and a stand-in answers) every call.

use super::probe::{self, Probe};
use super::{HostStatus, SignatureMode, StatusError, Tool};
use cairn_graph::digest::{IdForm, TargetId};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
}

/// Runs host commands. Mutating commands go through `systemd-run` on a real
/// host (see [`ProcessRunner`]); tests record or answer them instead.
pub trait CommandRunner: Send + Sync {
    /// Run `program` with `args`, killing it after `timeout`.
    fn run(
        &self,
        program: &str,
        args: &[String],
        mutating: bool,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Output, DriverError>> + Send;
}

/// A failed host operation. The short kind is the metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The tool is not installed: starting it found no such program.
    #[error("{command}: not installed ({message})")]
    NotInstalled {
        /// The command line.
        command: String,
        /// What starting it said.
        message: String,
    },
    /// The tool could not be started for another reason (permissions, no
    /// resources), or waiting for it failed.
    #[error("{command}: {message}")]
    Run {
        /// The command line.
        command: String,
        /// What happened.
        message: String,
    },
    /// The tool started but did not finish in time: it is installed.
    #[error("{command}: timed out after {after:?}")]
    TimedOut {
        /// The command line.
        command: String,
        /// How long it was given.
        after: Duration,
    },
    /// The tool said `error: …` (exit 1).
    #[error("{command}: {message}")]
    Failed {
        /// The command line.
        command: String,
        /// Its error message.
        message: String,
    },
    /// The tool does not know these arguments (exit 2): too old for this call.
    #[error("{command}: not supported by this version ({message})")]
    Unsupported {
        /// The command line.
        command: String,
        /// Its message.
        message: String,
    },
    /// rpm-ostree refused the target as older than the current deployment:
    /// `--disallow-downgrade` compares image creation times, and this image
    /// was built before the one the host runs (or has staged).
    #[error(
        "{command}: rpm-ostree refuses {release}: its image was created before the current deployment's, and --disallow-downgrade compares creation times ({message}). Cairn's signed order puts it later: rebuild it so it is the newest image on its base, or set `updates.allow_downgrade = true` (which also lets Cairn itself go back)"
    )]
    OlderThanCurrent {
        /// The command line.
        command: String,
        /// rpm-ostree's message.
        message: String,
        /// The target, as operators know it (its digest until the agent names it).
        release: String,
    },
    /// The status did not parse.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// What the tool accepts could not be found out; nothing was done.
    #[error("{command}: {message}; cannot tell how this bootc stages, so nothing was staged")]
    Probe {
        /// The command line.
        command: String,
        /// What went wrong.
        message: String,
    },
}

impl DriverError {
    /// The same error naming the target by its version.
    pub fn naming_release(self, version: &str) -> Self {
        match self {
            DriverError::OlderThanCurrent {
                command,
                message,
                release,
            } => DriverError::OlderThanCurrent {
                command,
                message,
                release: format!("{version} ({release})"),
            },
            other => other,
        }
    }

    /// A short, fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DriverError::NotInstalled { .. } => "not_installed",
            DriverError::Run { .. } => "run",
            DriverError::TimedOut { .. } => "timed_out",
            DriverError::Failed { .. } => "failed",
            DriverError::Unsupported { .. } => "unsupported",
            DriverError::OlderThanCurrent { .. } => "older_than_current",
            DriverError::Status(_) => "status",
            DriverError::Probe { .. } => "probe",
        }
    }
}

/// A bootc version, for choosing the staging sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Parse `bootc 1.17.0` (or just `1.17.0`).
    pub fn parse(text: &str) -> Option<Version> {
        let number = text
            .split_whitespace()
            .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
        let mut parts = number.split(['.', '-', '+']).map(|p| p.parse::<u32>().ok());
        Some(Version(
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
            parts.next().flatten().unwrap_or(0),
        ))
    }
}

/// How staging works on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagingTier {
    /// bootc whose `switch` accepts `--download-only` (bootc-dev/bootc#2342,
    /// after 1.16.9): one switch stages without unlocking finalization.
    DownloadOnlySwitch,
    /// bootc 1.12 or later without it: `switch`, then `upgrade --download-only`.
    SwitchThenDownloadOnly,
    /// bootc < 1.12: no download-only; stage only when finalizing is allowed.
    StageAtFinalize,
    /// rpm-ostree: `deploy --lock-finalization`.
    RpmOstree,
}

/// The staging tier of a bootc: what its `switch` accepts decides; the
/// version only chooses the fallback (`upgrade --download-only` is 1.12's).
pub fn bootc_tier(version: Version, switch_download_only: bool) -> StagingTier {
    if switch_download_only {
        StagingTier::DownloadOnlySwitch
    } else if version >= Version(1, 12, 0) {
        StagingTier::SwitchThenDownloadOnly
    } else {
        StagingTier::StageAtFinalize
    }
}

/// The command lines that stage `repository@digest`, keeping the host's
/// signature mode (an unverified switch would turn verification off for good).
/// `disallow_downgrade` asks rpm-ostree to refuse an image older than the
/// current deployment (bootc has no such check).
pub fn stage_commands(
    tier: StagingTier,
    repository: &str,
    digest: &TargetId,
    signature: &SignatureMode,
    disallow_downgrade: bool,
) -> Vec<Vec<String>> {
    let reference = format!("{repository}@{digest}");
    let enforce = matches!(signature, SignatureMode::ContainerPolicy);
    let switch = |download_only: bool| {
        let mut args = vec!["switch".to_string()];
        if download_only {
            args.push("--download-only".into());
        }
        if enforce {
            args.push("--enforce-container-sigpolicy".into());
        }
        args.push(reference.clone());
        args
    };
    match tier {
        StagingTier::DownloadOnlySwitch => vec![switch(true)],
        StagingTier::SwitchThenDownloadOnly => {
            vec![
                switch(false),
                vec!["upgrade".into(), "--download-only".into()],
            ]
        }
        StagingTier::StageAtFinalize => Vec::new(),
        StagingTier::RpmOstree => {
            // No `--`: rpm-ostree's parser stops at it and then finds no
            // revision. The id's type is the defence: it cannot start with `-`.
            let mut args = vec!["deploy".to_string(), "--lock-finalization".into()];
            // The driver is registered from the agent's own unit; this
            // deploy runs in a transient one (systemd-run), which rpm-ostree
            // would turn away as "driven by Cairn" without the bypass.
            args.push("--bypass-driver".into());
            let revision = match digest.form() {
                IdForm::Digest => digest.to_string(),
                // Without `revision=`, rpm-ostree takes what is not a
                // checksum for a version; a commit may sit on another branch.
                IdForm::Checksum => {
                    args.push("--skip-branch-check".into());
                    format!("revision={digest}")
                }
            };
            if disallow_downgrade {
                args.push("--disallow-downgrade".into());
            }
            args.push(revision);
            vec![args]
        }
    }
}

/// The command line that finalizes and reboots (it never returns on success).
pub fn apply_command(tool: Tool, digest: &TargetId) -> Vec<String> {
    match tool {
        Tool::Bootc => vec![
            "upgrade".into(),
            "--from-downloaded".into(),
            "--apply".into(),
        ],
        Tool::RpmOstree => vec!["finalize-deployment".into(), digest.to_string()],
    }
}

/// The command line that rolls back and reboots.
pub fn rollback_command(tool: Tool) -> Vec<String> {
    match tool {
        Tool::Bootc => vec!["rollback".into(), "--apply".into()],
        Tool::RpmOstree => vec!["rollback".into(), "-r".into()],
    }
}

/// The command line that drops a staged update, where the tool has one.
/// bootc has none: a download-only deployment left locked is dropped at
/// reboot, or replaced by staging the next target (never `bootc rollback`).
pub fn discard_command(tool: Tool) -> Option<Vec<String>> {
    match tool {
        Tool::Bootc => None,
        Tool::RpmOstree => Some(vec!["cleanup".into(), "-p".into()]),
    }
}

/// Registers Cairn as rpm-ostree's update driver.
pub fn register_driver_command() -> Vec<String> {
    vec![
        "deploy".into(),
        String::new(),
        "--register-driver=Cairn".into(),
    ]
}

/// A host driven through one tool.
#[derive(Debug, Clone)]
pub struct Driver<R> {
    runner: R,
    tool: Tool,
    program: String,
    timeout: Duration,
    /// Where the probe's answer is kept across processes, if anywhere.
    probe_file: Option<PathBuf>,
    /// The probe's answer in this process.
    probed: Arc<Mutex<Option<Probe>>>,
}

fn command_line(program: &str, args: &[String]) -> String {
    let mut parts = vec![program.to_string()];
    parts.extend(args.iter().map(|a| {
        if a.is_empty() {
            "\"\"".to_string()
        } else {
            a.clone()
        }
    }));
    parts.join(" ")
}

impl<R: CommandRunner> Driver<R> {
    /// A driver for `tool`, run as `program` (`bootc`, `rpm-ostree`, or a stand-in).
    pub fn new(runner: R, tool: Tool, program: &str, timeout: Duration) -> Self {
        Driver {
            runner,
            tool,
            program: program.to_string(),
            timeout,
            probe_file: None,
            probed: Arc::default(),
        }
    }

    /// Keep what bootc was found to accept in this file (in the state
    /// directory), so that each bootc version is probed once.
    pub fn with_probe_file(mut self, path: PathBuf) -> Self {
        self.probe_file = Some(path);
        self
    }

    /// The tool.
    pub fn tool(&self) -> Tool {
        self.tool
    }

    async fn run(&self, args: &[String], mutating: bool) -> Result<Output, DriverError> {
        let command = command_line(&self.program, args);
        let output = self
            .runner
            .run(&self.program, args, mutating, self.timeout)
            .await?;
        // The `error:` line: clap follows it with a tip and usage lines.
        let message = || {
            let lines = || output.stderr.lines().map(str::trim);
            lines()
                .find_map(|l| l.strip_prefix("error: "))
                .or_else(|| lines().rev().find(|l| !l.is_empty()))
                .map(str::to_string)
                .unwrap_or_else(|| format!("exit code {:?}", output.code))
        };
        match output.code {
            Some(0) => Ok(output),
            Some(_)
                if self.tool == Tool::RpmOstree
                    && output.stderr.contains("is chronologically older than") =>
            {
                Err(DriverError::OlderThanCurrent {
                    release: args.last().cloned().unwrap_or_default(),
                    command,
                    message: message(),
                })
            }
            Some(2) if self.tool == Tool::Bootc => Err(DriverError::Unsupported {
                command,
                message: message(),
            }),
            _ => Err(DriverError::Failed {
                command,
                message: message(),
            }),
        }
    }

    /// The host's status.
    pub async fn status(&self) -> Result<HostStatus, DriverError> {
        let args: Vec<String> = match self.tool {
            Tool::Bootc => ["status", "--format=json", "--format-version=1"]
                .map(String::from)
                .to_vec(),
            Tool::RpmOstree => ["status", "--json"].map(String::from).to_vec(),
        };
        let output = self.run(&args, false).await?;
        Ok(match self.tool {
            Tool::Bootc => super::bootc::parse_status(&output.stdout)?,
            Tool::RpmOstree => super::rpm_ostree::parse_status(&output.stdout)?,
        })
    }

    /// How this host stages.
    pub async fn tier(&self) -> Result<StagingTier, DriverError> {
        if self.tool == Tool::RpmOstree {
            return Ok(StagingTier::RpmOstree);
        }
        let output = self.run(&["--version".to_string()], false).await?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let version = Version::parse(&text).ok_or_else(|| DriverError::Failed {
            command: command_line(&self.program, &["--version".into()]),
            message: format!("cannot read a version from {text:?}"),
        })?;
        let switch_download_only = self.switch_download_only(&text).await?;
        Ok(bootc_tier(version, switch_download_only))
    }

    /// Whether this bootc's `switch` accepts `--download-only`: from this
    /// process's answer, the probe file, or `bootc switch --help`, for the
    /// bootc that reports `version`. A probe that fails is an error, never
    /// a guess.
    async fn switch_download_only(&self, version: &str) -> Result<bool, DriverError> {
        let remembered = self.probed.lock().ok().and_then(|p| p.clone());
        let found = remembered.filter(|p| p.version == version).or_else(|| {
            let path = self.probe_file.as_ref()?;
            probe::cached(path, version)
        });
        if let Some(found) = found {
            self.remember(&found);
            return Ok(found.switch_download_only);
        }
        let args = ["switch".to_string(), "--help".to_string()];
        let output = self
            .run(&args, false)
            .await
            .map_err(|e| DriverError::Probe {
                command: command_line(&self.program, &args),
                message: match e {
                    DriverError::Run { message, .. }
                    | DriverError::NotInstalled { message, .. }
                    | DriverError::Failed { message, .. }
                    | DriverError::Unsupported { message, .. } => message,
                    other => other.to_string(),
                },
            })?;
        let found = Probe {
            version: version.to_string(),
            switch_download_only: probe::offers_download_only(&String::from_utf8_lossy(
                &output.stdout,
            )),
        };
        tracing::info!(bootc = %version, switch_download_only = found.switch_download_only, "probed bootc switch");
        self.remember(&found);
        if let Some(path) = &self.probe_file
            && let Err(e) = probe::store(path, &found)
        {
            tracing::warn!(file = %path.display(), error = %e, "could not keep the bootc probe's answer");
        }
        Ok(found.switch_download_only)
    }

    fn remember(&self, found: &Probe) {
        if let Ok(mut probed) = self.probed.lock() {
            *probed = Some(found.clone());
        }
    }

    /// Stage `repository@digest` without unlocking finalization.
    /// `disallow_downgrade`: see [`stage_commands`].
    pub async fn stage(
        &self,
        tier: StagingTier,
        repository: &str,
        digest: &TargetId,
        signature: &SignatureMode,
        disallow_downgrade: bool,
    ) -> Result<(), DriverError> {
        // bootc cannot express an ostree-remote signature origin: a plain
        // switch would turn verification off for good. Such hosts need rpm-ostree.
        if let (Tool::Bootc, SignatureMode::OstreeRemote(remote)) = (self.tool, signature) {
            return Err(DriverError::Failed {
                command: format!("{} switch", self.program),
                message: format!(
                    "the host verifies images with the ostree remote {remote:?}, which bootc cannot keep; use rpm-ostree for this host"
                ),
            });
        }
        let staged = self
            .stage_as(tier, repository, digest, signature, disallow_downgrade)
            .await;
        match staged {
            // The kept answer is stale (another build with the same version
            // string): probe once more, and stage as that answer says.
            Err(rejected @ DriverError::Unsupported { .. })
                if tier == StagingTier::DownloadOnlySwitch && self.tool == Tool::Bootc =>
            {
                self.forget_probe();
                let again = self.tier().await?;
                if again == StagingTier::DownloadOnlySwitch {
                    return Err(rejected);
                }
                tracing::warn!(error = %rejected, tier = ?again, "bootc rejected the download-only switch its probe had found; probed again");
                self.stage_as(again, repository, digest, signature, disallow_downgrade)
                    .await
            }
            other => other,
        }
    }

    async fn stage_as(
        &self,
        tier: StagingTier,
        repository: &str,
        digest: &TargetId,
        signature: &SignatureMode,
        disallow_downgrade: bool,
    ) -> Result<(), DriverError> {
        if tier == StagingTier::StageAtFinalize {
            return Err(DriverError::Unsupported {
                command: format!("{} switch --download-only", self.program),
                message: "bootc older than 1.12 cannot stage without rebooting; update bootc to 1.12 or later".into(),
            });
        }
        for args in stage_commands(tier, repository, digest, signature, disallow_downgrade) {
            self.run(&args, true).await?;
        }
        Ok(())
    }

    /// Drop the probe's answer, in this process and in its file.
    fn forget_probe(&self) {
        if let Ok(mut probed) = self.probed.lock() {
            *probed = None;
        }
        if let Some(path) = &self.probe_file
            && let Err(e) = probe::forget(path)
        {
            tracing::warn!(file = %path.display(), error = %e, "could not drop the bootc probe's answer");
        }
    }

    /// Register as rpm-ostree's update driver (no-op for bootc).
    ///
    /// Run directly, never through `systemd-run`: rpm-ostree ties the
    /// driver to the caller's unit and ignores a driver whose unit is not
    /// active, so a registration from a short-lived transient unit would
    /// warn nobody off. From here it is the agent's own service.
    pub async fn register(&self) -> Result<(), DriverError> {
        if self.tool == Tool::RpmOstree {
            self.run(&register_driver_command(), false).await?;
        }
        Ok(())
    }

    /// Finalize and reboot. The caller records its intent first: on success the
    /// host goes down and this never returns.
    pub async fn apply(&self, digest: &TargetId) -> Result<(), DriverError> {
        self.run_until_reboot(&apply_command(self.tool, digest))
            .await
    }

    /// Roll back to the previous deployment and reboot (`bootc rollback
    /// --apply`, `rpm-ostree rollback -r`).
    pub async fn rollback(&self) -> Result<(), DriverError> {
        self.run_until_reboot(&rollback_command(self.tool)).await
    }

    /// A command that reboots the host: being killed by the shutdown it
    /// started (no exit code) is how it ends, not a failure.
    async fn run_until_reboot(&self, args: &[String]) -> Result<(), DriverError> {
        let output = self
            .runner
            .run(&self.program, args, true, self.timeout)
            .await?;
        match output.code {
            None | Some(0) => Ok(()),
            Some(_) => Err(DriverError::Failed {
                command: command_line(&self.program, args),
                message: output
                    .stderr
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string(),
            }),
        }
    }

    /// Drop a staged update, where the tool can.
    pub async fn discard(&self) -> Result<(), DriverError> {
        match discard_command(self.tool) {
            Some(args) => self.run(&args, true).await.map(|_| ()),
            None => Ok(()),
        }
    }
}

/// Runs real processes. Mutating commands run through `systemd-run --wait
/// --collect --pipe` when systemd is PID 1, so that an agent killed half-way
/// does not take a half-done `switch` or `--apply` down with it.
#[derive(Debug, Clone, Default)]
pub struct ProcessRunner {
    /// Wrap mutating commands in `systemd-run`.
    pub use_systemd_run: bool,
    /// The `systemd-run` executable; `None` is `systemd-run` from `PATH`.
    pub systemd_run: Option<String>,
}

impl ProcessRunner {
    /// A runner that uses `systemd-run` when systemd is PID 1.
    pub fn detect() -> Self {
        let systemd =
            std::fs::read_to_string("/proc/1/comm").is_ok_and(|name| name.trim() == "systemd");
        ProcessRunner {
            use_systemd_run: systemd,
            systemd_run: None,
        }
    }
}

impl CommandRunner for ProcessRunner {
    async fn run(
        &self,
        program: &str,
        args: &[String],
        mutating: bool,
        timeout: Duration,
    ) -> Result<Output, DriverError> {
        let (program, args): (String, Vec<String>) = if mutating && self.use_systemd_run {
            let mut wrapped: Vec<String> = ["--wait", "--collect", "--pipe", "--quiet", "--"]
                .map(String::from)
                .to_vec();
            wrapped.push(program.to_string());
            wrapped.extend(args.iter().cloned());
            let systemd_run = self.systemd_run.as_deref().unwrap_or("systemd-run");
            (systemd_run.to_string(), wrapped)
        } else {
            (program.to_string(), args.to_vec())
        };
        let command = command_line(&program, &args);
        let child = tokio::process::Command::new(&program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                // Only a missing program means "not installed"; a host short
                // of processes or memory still has the tool.
                if e.kind() == std::io::ErrorKind::NotFound {
                    DriverError::NotInstalled {
                        command: command.clone(),
                        message: e.to_string(),
                    }
                } else {
                    DriverError::Run {
                        command: command.clone(),
                        message: e.to_string(),
                    }
                }
            })?;
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| DriverError::TimedOut {
                command: command.clone(),
                after: timeout,
            })?
            .map_err(|e| DriverError::Run {
                command,
                message: e.to_string(),
            })?;
        Ok(Output {
            code: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:16dc2b6256b4ff0d2ec18d2dbfb06d117904010c8cf9732cdb022818cf7a7566";
    const CHECKSUM: &str = "16dc2b6256b4ff0d2ec18d2dbfb06d117904010c8cf9732cdb022818cf7a7566";

    fn digest() -> TargetId {
        DIGEST.parse().expect("an id")
    }

    fn line(args: &[String]) -> String {
        args.join(" ")
    }

    #[test]
    fn versions_and_tiers() {
        assert_eq!(Version::parse("bootc 1.17.0"), Some(Version(1, 17, 0)));
        assert_eq!(Version::parse("1.12.1-1.fc42"), Some(Version(1, 12, 1)));
        assert_eq!(Version::parse("bootc"), None);
        // What `switch` accepts decides, whatever the version says.
        for version in [Version(1, 16, 9), Version(1, 17, 0), Version(2, 0, 0)] {
            assert_eq!(
                bootc_tier(version, true),
                StagingTier::DownloadOnlySwitch,
                "{version:?}"
            );
        }
        assert_eq!(
            bootc_tier(Version(1, 17, 0), false),
            StagingTier::SwitchThenDownloadOnly
        );
        assert_eq!(
            bootc_tier(Version(1, 16, 9), false),
            StagingTier::SwitchThenDownloadOnly
        );
        assert_eq!(
            bootc_tier(Version(1, 12, 0), false),
            StagingTier::SwitchThenDownloadOnly
        );
        assert_eq!(
            bootc_tier(Version(1, 11, 9), false),
            StagingTier::StageAtFinalize
        );
    }

    #[test]
    fn exact_staging_command_lines() {
        let repo = "quay.io/acme/os";
        let signed = SignatureMode::ContainerPolicy;
        let unsigned = SignatureMode::Unverified;
        let lines = |tier, sig| {
            stage_commands(tier, repo, &digest(), sig, true)
                .iter()
                .map(|a| line(a))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines(StagingTier::DownloadOnlySwitch, &signed),
            vec![format!(
                "switch --download-only --enforce-container-sigpolicy {repo}@{DIGEST}"
            )]
        );
        assert_eq!(
            lines(StagingTier::DownloadOnlySwitch, &unsigned),
            vec![format!("switch --download-only {repo}@{DIGEST}")]
        );
        assert_eq!(
            lines(StagingTier::SwitchThenDownloadOnly, &signed),
            vec![
                format!("switch --enforce-container-sigpolicy {repo}@{DIGEST}"),
                "upgrade --download-only".to_string()
            ]
        );
        assert!(lines(StagingTier::StageAtFinalize, &signed).is_empty());
        assert_eq!(
            lines(StagingTier::RpmOstree, &signed),
            vec![format!(
                "deploy --lock-finalization --bypass-driver --disallow-downgrade {DIGEST}"
            )]
        );
        // A commit is named as one, so rpm-ostree never reads it as a version.
        let commit: TargetId = CHECKSUM.parse().expect("an id");
        assert_eq!(
            line(&stage_commands(StagingTier::RpmOstree, repo, &commit, &signed, true)[0]),
            format!(
                "deploy --lock-finalization --bypass-driver --skip-branch-check --disallow-downgrade revision={CHECKSUM}"
            )
        );
        // A move Cairn's own order vouches for (a newer base) leaves it off.
        assert_eq!(
            stage_commands(StagingTier::RpmOstree, repo, &digest(), &signed, false),
            vec![vec![
                "deploy".to_string(),
                "--lock-finalization".into(),
                "--bypass-driver".into(),
                DIGEST.into()
            ]]
        );
    }

    #[test]
    fn exact_apply_rollback_discard_and_register_lines() {
        assert_eq!(
            line(&apply_command(Tool::Bootc, &digest())),
            "upgrade --from-downloaded --apply"
        );
        assert_eq!(
            line(&apply_command(Tool::RpmOstree, &digest())),
            format!("finalize-deployment {DIGEST}")
        );
        assert_eq!(line(&rollback_command(Tool::Bootc)), "rollback --apply");
        assert_eq!(line(&rollback_command(Tool::RpmOstree)), "rollback -r");
        assert_eq!(
            discard_command(Tool::Bootc),
            None,
            "never bootc rollback to discard"
        );
        assert_eq!(
            discard_command(Tool::RpmOstree)
                .map(|a| line(&a))
                .as_deref(),
            Some("cleanup -p")
        );
        assert_eq!(
            register_driver_command(),
            vec![
                "deploy".to_string(),
                String::new(),
                "--register-driver=Cairn".to_string()
            ]
        );
    }
}
