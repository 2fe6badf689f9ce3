//! One agent: the state machine driven against a host, a document and a
//! reboot lock, one step per `tick`, persisting every transition before acting
//! on it. The time, the document and the host tool come in from outside, so
//! tests control all three.

mod attempt;

use crate::config::Settings;
use crate::fleetlock::FleetLockClient;
use crate::history::Outcome;
use crate::host::driver::{CommandRunner, Driver};
use crate::machine::{BootOutcome, Event, State, Target, recover};
use crate::plan::{CheckInput, Plan, finalize_gate, plan};
use crate::reason::{Reason, ReasonKind};
use crate::source::{GraphUnavailable, SourceGraph};
use crate::status::StateName;
use crate::store::{AgentState, StoreError};
use jiff::Timestamp;
use std::path::PathBuf;

/// What a tick sees of the world besides the host.
#[derive(Debug, Clone)]
pub struct World {
    /// Now.
    pub now: Timestamp,
    /// The verified document (or the Cincinnati server's graph), or why
    /// there is none (source down, bad signature, expired, replayed): then
    /// nothing is done.
    pub graph: Result<SourceGraph, GraphUnavailable>,
    /// Interactive users are logged in (a failing `loginctl` counts as yes).
    pub users_logged_in: bool,
    /// Go on to finalize when the gates allow; a one-shot check stops after
    /// staging and the pre-update hooks.
    pub may_reboot: bool,
    /// The verdict on this boot, consulted after a reboot into a target.
    pub boot_health: crate::health::BootHealth,
    /// This boot's ID (`/proc/sys/kernel/random/boot_id`), `None` when it
    /// cannot be read: it tells a pass after Cairn's rollback command in the
    /// same boot (still going down) from one after the reboot.
    pub boot_id: Option<String>,
}

/// What the agent is doing and why, after a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The state.
    pub state: StateName,
    /// Why: a kind for code, one sentence for operators.
    pub reason: Reason,
}

/// Why a tick could not proceed; the state is kept and retried next tick.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The state could not be persisted: nothing was done.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The host tool failed.
    #[error(transparent)]
    Host(#[from] crate::host::driver::DriverError),
    /// The lock server failed.
    #[error(transparent)]
    Lock(#[from] crate::fleetlock::LockError),
    /// The host tool refused this target as older than the current
    /// deployment; it waits out a backoff before it is tried again.
    #[error("{message}; not staged again before {}", .retry_after.strftime("%a %Y-%m-%d %H:%M UTC"))]
    Refused {
        /// The refusal, as the host tool's error reported it.
        message: String,
        /// When it is tried again.
        retry_after: Timestamp,
    },
}

impl AgentError {
    /// A short, fixed label for metrics and status: the inner error's own
    /// kind, so one error has one kind on every path.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::Store(e) => e.kind(),
            AgentError::Host(e) => e.kind(),
            AgentError::Lock(e) => e.kind(),
            AgentError::Refused { .. } => "refused_backoff",
        }
    }

    /// The reason kind a status carries when a tick fails with this.
    pub fn reason_kind(&self) -> ReasonKind {
        match self {
            AgentError::Store(e) => e.reason_kind(),
            AgentError::Host(_) => ReasonKind::HostError,
            AgentError::Lock(_) => ReasonKind::LockError,
            AgentError::Refused { .. } => ReasonKind::StagingRefused,
        }
    }
}

/// How long the `rebooting` report may hold up the reboot.
const REPORT_BEFORE_REBOOT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a target a hook vetoed, or the host tool refused, waits after
/// `attempts` in a row: 5 minutes, doubling each time, at most 6 hours.
fn backoff(attempts: u32) -> jiff::SignedDuration {
    jiff::SignedDuration::from_mins(5 * (1i64 << attempts.saturating_sub(1).min(7)))
        .min(jiff::SignedDuration::from_hours(6))
}

/// Why finalization stops at the reboot lock: every slot held by others is
/// a wait; any other answer (or none) is the lock server failing.
fn lock_wait(error: &crate::fleetlock::LockError) -> Reason {
    if error.group_halted() {
        Reason::new(
            ReasonKind::RebootLockWait,
            format!(
                "waiting: the lock server halted this host's group ({error}); an operator lifts it"
            ),
        )
        .caused_by(error.kind())
    } else if error.held_by_others() {
        Reason::new(
            ReasonKind::RebootLockWait,
            format!("waiting for reboot lock ({error})"),
        )
        .caused_by(error.kind())
    } else {
        Reason::new(
            ReasonKind::LockError,
            format!("the reboot-lock server failed ({error}); finalization waits"),
        )
        .caused_by(error.kind())
    }
}

/// An agent for one host.
#[derive(Debug)]
pub struct Agent<R> {
    settings: Settings,
    driver: Driver<R>,
    lock: Option<FleetLockClient>,
    state_dir: PathBuf,
    /// What is persisted.
    pub persisted: AgentState,
    wariness: f64,
    arch: String,
    repository: String,
    /// Pre- and post-update hooks; `None` runs none (library tests).
    hooks: Option<(crate::hooks::HookSettings, String)>,
    /// Reboots wait for a slot (`false` for `update-now`, which still
    /// releases a slot held or kept).
    lock_gate: bool,
    /// The operator's command when this pass stages on purpose
    /// (`cairn update-now`): what it stages is recorded as theirs.
    operator_staging: Option<&'static str>,
    /// Where outcome reports are queued; `None`: nothing is reported.
    reporter: Option<crate::reports::Reporter>,
    /// The digests the stream's halt list halts (entries minus the ids the
    /// document clears; empty when the document turns no halt list on), or
    /// why no verified, unexpired list is at hand: then, as without a
    /// document, nothing is staged or finalized.
    halted: Result<Vec<String>, GraphUnavailable>,
}

impl<R: CommandRunner> Agent<R> {
    /// An agent; loads (or starts) its persistent state.
    pub fn new(
        settings: Settings,
        driver: Driver<R>,
        lock: Option<FleetLockClient>,
        state_dir: PathBuf,
        wariness: f64,
        arch: &str,
        repository: &str,
    ) -> Result<Self, AgentError> {
        let persisted = AgentState::load(&state_dir)?;
        Ok(Agent {
            settings,
            driver,
            lock,
            state_dir,
            persisted,
            wariness,
            arch: arch.to_string(),
            repository: repository.to_string(),
            hooks: None,
            lock_gate: true,
            operator_staging: None,
            reporter: None,
            halted: Ok(Vec::new()),
        })
    }

    /// Queue an outcome report of each attempt's `rebooting` and final outcome.
    pub fn with_reports(mut self, reporter: crate::reports::Reporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// The halted digests of this pass (see [`cairn_graph::halts`]), or why
    /// the halt list the document asks for is not at hand.
    pub fn with_halts(mut self, halted: Result<Vec<String>, GraphUnavailable>) -> Self {
        self.halted = halted;
        self
    }

    /// Reboot without taking a FleetLock slot (`update-now`); a slot already
    /// held or kept is still released when its time comes.
    pub fn without_lock_gate(mut self) -> Self {
        self.lock_gate = false;
        self
    }

    /// What this pass stages, the operator staged on purpose with
    /// `command`: later checks keep it while only the rollout's wariness or
    /// the base-barrier guard would withdraw it.
    pub fn staging_for_operator(mut self, command: &'static str) -> Self {
        self.operator_staging = Some(command);
        self
    }

    /// Record `target` as staged by the operator in this pass, or forget an
    /// earlier operator pick when an ordinary pass staged something else.
    fn note_staged_by(&mut self, target: &Target, now: Timestamp) {
        self.persisted.operator_staged =
            self.operator_staging
                .map(|command| crate::store::OperatorStaged {
                    digest: target.digest.to_string(),
                    version: target.version.clone(),
                    by: command.to_string(),
                    since: now,
                });
    }

    /// Run update hooks, with `stream` in their environment.
    pub fn with_hooks(mut self, hooks: crate::hooks::HookSettings, stream: &str) -> Self {
        self.hooks = Some((hooks, stream.to_string()));
        self
    }

    /// The hook veto that keeps `digest` from being staged now.
    fn vetoed(&self, digest: &str, now: Timestamp) -> Option<Reason> {
        let veto = self.persisted.vetoes.get(digest)?;
        (veto.retry_after > now).then(|| {
            Reason::new(
                ReasonKind::HookVeto,
                format!(
                    "pre-update hook {} vetoed {}: {}; retrying after {}",
                    veto.hook,
                    veto.version,
                    veto.reason,
                    veto.retry_after.strftime("%a %Y-%m-%d %H:%M UTC")
                ),
            )
        })
    }

    /// The refusal that keeps `digest` from being staged now. Only while the
    /// date check is on: `allow_downgrade` lifts it at once.
    fn refusal(&self, digest: &str, now: Timestamp) -> Option<AgentError> {
        let refused = self.persisted.refused.get(digest)?;
        (refused.retry_after > now && !self.settings.allow_downgrade).then(|| AgentError::Refused {
            message: refused.message.clone(),
            retry_after: refused.retry_after,
        })
    }

    /// The host tool refused `target` as older: back off before trying again.
    fn refused(
        &mut self,
        target: &Target,
        error: &crate::host::driver::DriverError,
        now: Timestamp,
    ) {
        let attempts = self
            .persisted
            .refused
            .get(target.digest.as_str())
            .map_or(1, |r| r.attempts.saturating_add(1));
        let retry_after = now.checked_add(backoff(attempts)).unwrap_or(now);
        tracing::warn!(target = %target.version, error = %error, %retry_after, "the host tool refused the target as older");
        self.persisted.refused.insert(
            target.digest.to_string(),
            crate::store::RefusalEntry {
                version: target.version.clone(),
                message: error.to_string(),
                attempts,
                retry_after,
            },
        );
    }

    /// The release on the host's staged slot when it is this agent's own
    /// (the attempt under way), not one staged by hand.
    fn own_staged(&self, host: &crate::host::HostStatus, graph: &SourceGraph) -> Option<Target> {
        let staged = host.staged.as_ref()?.digest.clone()?;
        let ours = self
            .persisted
            .underway
            .as_ref()
            .and_then(|u| u.target.as_ref())
            .or(self.persisted.state.target())
            .is_some_and(|t| t.digest == staged);
        ours.then(|| Target {
            version: graph
                .release_of_digest(&staged)
                .map_or_else(|| "the staged release".to_string(), |(version, _)| version),
            digest: staged,
        })
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.persisted.state
    }

    fn transition(&mut self, event: &Event) -> Result<(), AgentError> {
        let next = match self.persisted.state.next(event) {
            Ok(next) => next,
            Err(invalid) => {
                tracing::warn!(%invalid, "ignored");
                return Ok(());
            }
        };
        self.persisted.state = next;
        self.persisted.save(&self.state_dir)?;
        Ok(())
    }

    /// Release the reboot slot when it is held and the agent is not on its
    /// way into a reboot. Awaited, and retried at every tick until it works:
    /// some lock servers (airlock) never expire a slot.
    /// A lock is configured, and its slot is kept after a failed boot.
    fn keeps_slot_after_failure(&self) -> bool {
        self.lock.is_some()
            && self
                .settings
                .fleet_lock
                .as_ref()
                .is_some_and(|lock| !lock.release_on_failure)
    }

    /// Release the reboot slot when it is held and the agent is not on its
    /// way into a reboot. Awaited, and retried at every tick until it works:
    /// some lock servers (airlock) never expire a slot. A slot kept after a
    /// failed boot stays held while the configuration asks for that.
    async fn release_lock_if_off_path(&mut self) -> Result<(), AgentError> {
        let on_path = self.persisted.state.may_hold_lock();
        if !self.persisted.lock_held || on_path {
            return Ok(());
        }
        if self.persisted.slot_kept.is_some()
            && (self.keeps_slot_after_failure() || self.lock.is_none())
        {
            self.report_kept_slot().await;
            return Ok(());
        }
        self.give_slot_back().await?;
        self.persisted.save(&self.state_dir)?;
        Ok(())
    }

    /// Tell the lock server that the boot behind a kept slot failed, so a
    /// Cairn server halts the group at once; until it has heard (the network
    /// may not be up right after the boot), every pass asks again. Without
    /// the report, a server with `on_expiry = "release"` would hand the slot
    /// to the next host when the lease runs out.
    pub(crate) async fn report_kept_slot(&mut self) {
        let (Some(lock), Some(kept)) = (&self.lock, &self.persisted.slot_kept) else {
            return;
        };
        if kept.reported {
            return;
        }
        match lock.boot_failed(&kept.reason).await {
            Ok(()) => {
                if let Some(kept) = self.persisted.slot_kept.as_mut() {
                    kept.reported = true;
                }
                if let Err(error) = self.persisted.save(&self.state_dir) {
                    tracing::warn!(%error, "could not record that the failed boot was reported");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not report the failed boot to the lock server; trying again at the next pass");
            }
        }
    }

    /// `steady-state` at the lock server, and forget the slot. With no lock
    /// configured any more there is no server to tell: say so, loudly.
    pub(crate) async fn give_slot_back(&mut self) -> Result<(), AgentError> {
        match &self.lock {
            Some(lock) => lock.steady_state().await?,
            None if self.persisted.lock_held => tracing::warn!(
                "this host held a FleetLock slot, but strategy.fleet_lock is no longer configured: release it at the lock server"
            ),
            None => {}
        }
        self.persisted.lock_held = false;
        self.persisted.slot_kept = None;
        Ok(())
    }

    /// After a restart: reconcile the persisted state with the host.
    pub async fn recover(&mut self, now: Timestamp) -> Result<Report, AgentError> {
        let host = self.driver.status().await?;
        let booted = host.booted.as_ref().and_then(|d| d.digest.clone());
        let staged = host.staged.as_ref().and_then(|d| d.digest.clone());
        let (state, outcome) = recover(&self.persisted.state, booted.as_deref(), staged.as_deref());
        self.persisted.state = state;
        if let (Some(BootOutcome::RolledBack), State::Verifying { target }) =
            (&outcome, &self.persisted.state)
        {
            let target = target.clone();
            self.came_back(&target, now);
        }
        self.persisted.save(&self.state_dir)?;
        // A crash between `switch` and `upgrade --download-only` (bootc 1.12–1.16)
        // leaves an unlocked deployment that any reboot would finalize, gates or
        // not: stage it again, locked.
        if let State::Staged { target } = &self.persisted.state
            && host.staged.as_ref().is_some_and(|s| !s.download_only)
        {
            let target = target.clone();
            let tier = self.driver.tier().await?;
            // The same target again, vetted (date check included) when it
            // was first staged: no downgrade check.
            self.driver
                .stage(
                    tier,
                    &self.repository,
                    &target.digest,
                    &host.signature,
                    false,
                )
                .await
                .map_err(|e| e.naming_release(&target.version))?;
        }
        let (kind, message) = match outcome {
            Some(BootOutcome::Booted) => {
                (ReasonKind::RecoveredBooted, "booted the target; verifying")
            }
            Some(BootOutcome::RolledBack) => (
                ReasonKind::RecoveredRolledBack,
                "the target did not stay booted; it is deny-listed",
            ),
            Some(BootOutcome::StillStaged) => (
                ReasonKind::RebootDidNotHappen,
                "the reboot did not happen; the update is still staged",
            ),
            None => (ReasonKind::Resuming, "resuming"),
        };
        Ok(self.report(kind, message))
    }

    /// The operator's post-update hooks, after a healthy (or unverifiable)
    /// boot. They cannot undo the update; a failure is logged, nothing more.
    async fn post_update_hooks(&self, target: &Target) {
        let Some((settings, stream)) = &self.hooks else {
            return;
        };
        let env = crate::hooks::HookEnv {
            to_version: target.version.clone(),
            to_digest: target.digest.to_string(),
            stream: stream.clone(),
            ..crate::hooks::HookEnv::default()
        };
        if let Err(veto) = crate::hooks::operator(settings, "post-update.d", &env, "").await {
            tracing::warn!(hook = %veto.hook, reason = %veto.reason, "post-update hook failed");
        }
    }

    fn report(&self, kind: ReasonKind, message: impl Into<String>) -> Report {
        self.report_why(Reason::new(kind, message))
    }

    fn report_why(&self, reason: Reason) -> Report {
        Report {
            state: StateName::from(&self.persisted.state),
            reason,
        }
    }

    /// One step.
    pub async fn tick(&mut self, world: &World) -> Result<Report, AgentError> {
        self.release_lock_if_off_path().await?;
        match self.persisted.state.clone() {
            State::ConfigError { message } => Ok(self.report(
                ReasonKind::ConfigError,
                format!("configuration error: {message}"),
            )),
            State::Initialized => {
                // A first start reports steady state, as Zincati does: a
                // slot left by an earlier install goes back. Not one kept
                // after a failed boot.
                if let Some(lock) = self
                    .lock
                    .as_ref()
                    .filter(|_| self.persisted.slot_kept.is_none())
                {
                    lock.steady_state().await?;
                }
                self.transition(&Event::ReportedSteady)?;
                Ok(self.report(ReasonKind::SteadyStateReported, "steady state reported"))
            }
            State::Verifying { target } => self.verify(world, target).await,
            State::Rebooting { .. } => Ok(self.report(ReasonKind::Rebooting, "rebooting")),
            State::Steady | State::Checking | State::UpdateAvailable { .. } => {
                self.check(world).await.map(|(report, _)| report)
            }
            State::Staged { .. } | State::FinalizeAllowed { .. } => {
                let (report, refusal) = self.check(world).await?;
                // Without a trusted document (or halt list) there is no reboot either.
                if world.graph.is_err() || self.halted.is_err() {
                    if matches!(self.persisted.state, State::FinalizeAllowed { .. }) {
                        self.transition(&Event::GatesClosed)?;
                        self.release_lock_if_off_path().await?;
                    }
                    return Ok(report);
                }
                match self.persisted.state.clone() {
                    State::Staged { target } | State::FinalizeAllowed { target } => {
                        let report = self.finalize(world, target).await?;
                        Ok(match refusal {
                            Some(note) => Report {
                                reason: report.reason.noting(&note),
                                ..report
                            },
                            None => report,
                        })
                    }
                    _ => Ok(report),
                }
            }
        }
    }

    /// The check: its report, and the refusal of a newer target that left
    /// the staged one on its way (a note for the report).
    async fn check(&mut self, world: &World) -> Result<(Report, Option<String>), AgentError> {
        if matches!(self.persisted.state, State::Steady) {
            self.transition(&Event::CheckStarted)?;
        }
        let halts = self.halted.clone();
        let (graph, halted) = match (&world.graph, &halts) {
            (Ok(graph), Ok(halted)) => (graph, halted),
            (Err(why), _) | (Ok(_), Err(why)) => {
                if matches!(self.persisted.state, State::Checking) {
                    self.transition(&Event::NothingToDo)?;
                }
                let (kind, message) = if world.graph.is_err() {
                    (ReasonKind::SourceError, format!("no action: {why}"))
                } else {
                    (
                        ReasonKind::HaltsUnavailable,
                        format!(
                            "no action: the stream turns halt lists on and no verified, unexpired list is at hand: {why}"
                        ),
                    )
                };
                let reason = Reason::new(kind, message).caused_by(why.kind());
                return Ok((self.report_why(reason), None));
            }
        };
        let host = self.driver.status().await?;
        if matches!(self.persisted.state, State::Checking) {
            self.close_stale_attempt(&host, world.now);
        }
        let deny = self.persisted.denied();
        let staged_digest = host.staged.as_ref().and_then(|s| s.digest.as_deref());
        // An operator's pick counts only while it is what is staged.
        if self
            .persisted
            .operator_staged
            .as_ref()
            .is_some_and(|pick| Some(pick.digest.as_str()) != staged_digest)
        {
            self.persisted.operator_staged = None;
        }
        let plan = plan(&CheckInput {
            settings: &self.settings,
            host: &host,
            graph,
            arch: &self.arch,
            wariness: self.wariness,
            now: world.now,
            deny: &deny,
            halted,
            held: self.persisted.is_held(world.now),
            operator_staged: self.persisted.operator_staged.is_some(),
        });
        // A target the host tool refused as older waits out its backoff (a
        // retry would pull it again). The release this agent staged before
        // stays on its way, as for a vetoed one; else the refusal is the error.
        let mut refusal = None;
        let plan = match plan {
            // The staged release goes all the same; nothing replaces it yet.
            Plan::Replace(target, why)
                if self.refusal(&target.digest, world.now).is_some()
                    || self.vetoed(&target.digest, world.now).is_some() =>
            {
                Plan::Unstage(why)
            }
            plan => plan,
        };
        let plan = match plan {
            Plan::Stage(target) | Plan::Restage(target)
                if let Some(refused) = self.refusal(&target.digest, world.now) =>
            {
                match self.own_staged(&host, graph) {
                    Some(staged) => {
                        refusal = Some(refused.to_string());
                        Plan::Keep(staged)
                    }
                    None => {
                        if matches!(self.persisted.state, State::Checking) {
                            self.transition(&Event::NothingToDo)?;
                        }
                        return Err(refused);
                    }
                }
            }
            plan => plan,
        };
        // A vetoed target waits out its backoff, staged or not.
        let plan = match plan {
            Plan::Stage(target) | Plan::Restage(target) | Plan::Keep(target)
                if self.vetoed(&target.digest, world.now).is_some() =>
            {
                match self.vetoed(&target.digest, world.now) {
                    Some(veto) => Plan::Nothing(veto),
                    None => Plan::Nothing(Reason::new(
                        ReasonKind::HookVeto,
                        "an update hook vetoed the update",
                    )),
                }
            }
            plan => plan,
        };
        // Withdraw the staged release first, then stage what replaces it.
        if let Plan::Replace(_, why) = &plan {
            self.driver.discard().await?;
            self.persisted.operator_staged = None;
            self.end_attempt(world.now, Outcome::Withdrawn, &why.message);
            self.persisted.save(&self.state_dir)?;
        }
        let report: Result<Report, AgentError> = match plan {
            Plan::Stage(target) | Plan::Restage(target) | Plan::Replace(target, _) => {
                let event = if matches!(self.persisted.state, State::Checking) {
                    Event::Found(target.clone())
                } else {
                    Event::NewerTarget(target.clone())
                };
                self.transition(&event)?;
                let tier = self.driver.tier().await?;
                // rpm-ostree's downgrade check compares build dates; for a
                // move to a newer base Cairn's signed order is the check.
                let booted = host.booted.as_ref().and_then(|b| b.digest.as_deref());
                let disallow_downgrade = !self.settings.allow_downgrade
                    && !booted.is_some_and(|booted| {
                        graph.moves_to_newer_base(&self.arch, booted, &target.digest)
                    });
                match self
                    .driver
                    .stage(
                        tier,
                        &self.repository,
                        &target.digest,
                        &host.signature,
                        disallow_downgrade,
                    )
                    .await
                    .map_err(|e| e.naming_release(&target.version))
                {
                    Ok(()) => {
                        self.persisted.refused.remove(target.digest.as_str());
                        self.note_staged_by(&target, world.now);
                        self.begin_attempt(&target, &host, world.now)?;
                        self.transition(&Event::StagedOk)?;
                        Ok(self.report(ReasonKind::Staged, format!("staged {}", target.version)))
                    }
                    Err(e) => {
                        if matches!(e, crate::host::driver::DriverError::OlderThanCurrent { .. }) {
                            self.refused(&target, &e, world.now);
                        }
                        // Saved with the refusal, if any.
                        self.transition(&Event::StageFailed)?;
                        Err(e.into())
                    }
                }
            }
            Plan::Keep(target) => {
                // `update-now` takes the staged release as the operator's pick.
                if self.operator_staging.is_some() {
                    self.note_staged_by(&target, world.now);
                    self.persisted.save(&self.state_dir)?;
                }
                // A staged update found after a reset is adopted, not ignored.
                if matches!(self.persisted.state, State::Checking) {
                    self.begin_attempt(&target, &host, world.now)?;
                    self.transition(&Event::Found(target.clone()))?;
                    self.transition(&Event::StagedOk)?;
                }
                let kept = Reason::new(
                    ReasonKind::StillStaged,
                    format!("{} is staged", target.version),
                );
                Ok(self.report_why(match &refusal {
                    Some(note) => kept.noting(note),
                    None => kept,
                }))
            }
            Plan::Unstage(why) => {
                self.driver.discard().await?;
                self.persisted.operator_staged = None;
                self.end_attempt(world.now, Outcome::Withdrawn, &why.message);
                // bootc cannot drop a staged deployment: later passes find it
                // again, already withdrawn, and have only the check to end.
                if matches!(self.persisted.state, State::Checking) {
                    self.transition(&Event::NothingToDo)?;
                } else {
                    self.transition(&Event::Withdrawn)?;
                }
                Ok(self.report_why(why))
            }
            Plan::Nothing(why) => {
                if matches!(self.persisted.state, State::Checking) {
                    self.transition(&Event::NothingToDo)?;
                }
                Ok(self.report_why(why))
            }
        };
        Ok((report?, refusal))
    }

    /// Run the pre-update hooks once per staged target. `Err` carries the
    /// report when a hook vetoed (the target is withdrawn); `Ok` a note for
    /// the report when the host cannot run the image's hooks.
    async fn run_hooks(
        &mut self,
        world: &World,
        target: &Target,
    ) -> Result<Result<Option<String>, Report>, AgentError> {
        let Some((settings, stream)) = self.hooks.clone() else {
            return Ok(Ok(None));
        };
        if self.persisted.hooks_passed.as_deref() == Some(target.digest.as_str()) {
            return Ok(Ok(None));
        }
        let host = self.driver.status().await?;
        let deployment = host
            .staged
            .as_ref()
            .filter(|s| s.digest.as_deref() == Some(target.digest.as_str()))
            .and_then(|s| s.deploy_path.as_ref())
            .map(|path| settings.sysroot.join(path));
        let unsupported = match &deployment {
            None => Some("hooks unsupported on this host (no ostree deployment directory, as on the composefs backend): the new image's pre-update hooks were not run".to_string()),
            Some(path) if !path.is_dir() => Some(format!(
                "hooks unsupported: the staged deployment {} is not a directory; the new image's pre-update hooks were not run",
                path.display()
            )),
            Some(_) => None,
        };
        let staged_root = deployment.filter(|_| unsupported.is_none());
        let booted = host.booted.as_ref();
        let env = crate::hooks::HookEnv {
            from_version: booted.and_then(|b| b.version.clone()).unwrap_or_default(),
            from_digest: booted
                .and_then(|b| b.digest.as_ref().map(ToString::to_string))
                .unwrap_or_default(),
            to_version: target.version.clone(),
            to_digest: target.digest.to_string(),
            stream,
        };
        match crate::hooks::pre_update(&settings, staged_root.as_deref(), &env).await {
            crate::hooks::Outcome::Passed(ran) => {
                tracing::info!(target = %target.version, hooks = ?ran, "pre-update hooks passed");
                self.persisted.hooks_passed = Some(target.digest.to_string());
                self.persisted.vetoes.remove(target.digest.as_str());
                self.persisted.save(&self.state_dir)?;
                Ok(Ok(unsupported))
            }
            crate::hooks::Outcome::Vetoed(veto) => {
                Ok(Err(self.withdraw_vetoed(world, target, veto, &env).await?))
            }
        }
    }

    /// The environment hooks get for `target`.
    async fn hook_env(&self, target: &Target) -> Result<crate::hooks::HookEnv, AgentError> {
        let host = self.driver.status().await?;
        let booted = host.booted.as_ref();
        Ok(crate::hooks::HookEnv {
            from_version: booted.and_then(|b| b.version.clone()).unwrap_or_default(),
            from_digest: booted
                .and_then(|b| b.digest.as_ref().map(ToString::to_string))
                .unwrap_or_default(),
            to_version: target.version.clone(),
            to_digest: target.digest.to_string(),
            stream: self
                .hooks
                .as_ref()
                .map(|(_, s)| s.clone())
                .unwrap_or_default(),
        })
    }

    /// A hook vetoed `target`: back off (exit 75 sooner), record it, drop
    /// the staged update where the tool can, leave the reboot path and its lock.
    async fn withdraw_vetoed(
        &mut self,
        world: &World,
        target: &Target,
        veto: crate::hooks::Veto,
        env: &crate::hooks::HookEnv,
    ) -> Result<Report, AgentError> {
        let attempts = self
            .persisted
            .vetoes
            .get(target.digest.as_str())
            .map_or(1, |v| v.attempts.saturating_add(1));
        let wait = if veto.temporary {
            jiff::SignedDuration::from_mins(1)
        } else {
            backoff(attempts)
        };
        let retry_after = world.now.checked_add(wait).unwrap_or(world.now);
        tracing::warn!(hook = %veto.hook, reason = %veto.reason, target = %target.version, "an update hook vetoed the update");
        let from = (
            Some(env.from_version.clone()),
            Some(env.from_digest.clone()),
        );
        self.attempt_at(target, from, world.now);
        self.end_attempt(
            world.now,
            Outcome::HookVeto,
            &format!("hook {}: {}", veto.hook, veto.reason),
        );
        self.persisted.vetoes.insert(
            target.digest.to_string(),
            crate::store::VetoEntry {
                version: target.version.clone(),
                hook: veto.hook,
                reason: veto.reason,
                attempts,
                retry_after,
            },
        );
        self.persisted.hooks_passed = None;
        self.persisted.save(&self.state_dir)?;
        self.withdraw(world, target).await
    }

    /// Leave the reboot path for a vetoed target: drop it where the tool
    /// can, release the lock, and say until when it waits.
    async fn withdraw(&mut self, world: &World, target: &Target) -> Result<Report, AgentError> {
        self.driver.discard().await?;
        self.transition(&Event::Withdrawn)?;
        self.release_lock_if_off_path().await?;
        let reason = self.vetoed(&target.digest, world.now).unwrap_or_else(|| {
            Reason::new(ReasonKind::HookVeto, "an update hook vetoed the update")
        });
        Ok(self.report_why(reason))
    }

    async fn finalize(&mut self, world: &World, target: Target) -> Result<Report, AgentError> {
        // Still vetoed (say a discard failed, or the agent died before
        // withdrawing): withdraw now rather than rerun the hooks.
        if self.vetoed(&target.digest, world.now).is_some() {
            return self.withdraw(world, &target).await;
        }
        let note = match self.run_hooks(world, &target).await? {
            Ok(note) => note,
            Err(vetoed) => return Ok(vetoed),
        };
        let report = self.finalize_gated(world, target).await?;
        Ok(match note {
            Some(note) => Report {
                reason: report.reason.noting(&note),
                ..report
            },
            None => report,
        })
    }

    async fn finalize_gated(
        &mut self,
        world: &World,
        target: Target,
    ) -> Result<Report, AgentError> {
        if !world.may_reboot {
            return Ok(self.report(
                ReasonKind::OneShot,
                format!(
                    "staged {}; pre-update hooks passed; a one-shot check does not reboot",
                    target.version
                ),
            ));
        }
        let held = self.persisted.is_held(world.now);
        if let Err(wait) = finalize_gate(&self.settings, world.now, held, world.users_logged_in) {
            if matches!(self.persisted.state, State::FinalizeAllowed { .. }) {
                self.transition(&Event::GatesClosed)?;
                self.release_lock_if_off_path().await?;
            }
            return Ok(self.report_why(wait.reason()));
        }
        if let Some(lock) = self.lock.as_ref().filter(|_| self.lock_gate) {
            // Recorded before asking: a crash after the server granted the
            // slot must still lead to its release.
            self.persisted.lock_held = true;
            self.persisted.save(&self.state_dir)?;
            if let Err(e) = lock.pre_reboot().await {
                return Ok(self.report_why(lock_wait(&e)));
            }
        }
        if matches!(self.persisted.state, State::Staged { .. }) {
            self.transition(&Event::GatesPassed)?;
        }
        // The operator's hooks (drain the node, …) run last, once nothing but
        // the reboot is left; a veto leaves the path and releases the lock.
        if let Some((settings, _)) = self.hooks.clone() {
            let env = self.hook_env(&target).await?;
            if let Err(veto) = crate::hooks::operator(&settings, "pre-update.d", &env, "").await {
                if matches!(self.persisted.state, State::Staged { .. }) {
                    self.transition(&Event::GatesPassed)?;
                }
                return self.withdraw_vetoed(world, &target, veto, &env).await;
            }
        }
        // Intent first: if the host goes down during --apply, the restart knows.
        let host = self.driver.status().await?;
        self.attempt_at(&target, attempt::from(&host), world.now);
        self.transition(&Event::RebootStarted)?;
        let report = self.record_step(
            world.now,
            Outcome::Rebooting,
            &format!("rebooting into {}", target.version),
        );
        // Best effort, bounded: a report not sent now goes after the boot.
        if let (Some(id), Some(reporter)) = (report, &self.reporter) {
            reporter.flush(&id, REPORT_BEFORE_REBOOT).await;
        }
        match self.driver.apply(&target.digest).await {
            Ok(()) => Ok(self.report(
                ReasonKind::Rebooting,
                format!("rebooting into {}", target.version),
            )),
            Err(e) => {
                // Back to staged, and the slot goes back at once.
                self.persisted.state = State::FinalizeAllowed { target };
                self.transition(&Event::FinalizeFailed)?;
                self.release_lock_if_off_path().await?;
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleetlock::LockError;

    #[test]
    fn only_slots_held_by_others_are_a_wait_for_the_reboot_lock() {
        let refused = |status: u16| LockError::Refused {
            url: "http://lock/v1/pre-reboot".into(),
            status,
            kind: "k".into(),
            value: "v".into(),
        };
        let wait = lock_wait(&refused(409));
        assert_eq!(wait.kind, ReasonKind::RebootLockWait);
        assert_eq!(wait.cause.as_deref(), Some("held_by_others"));
        let failed = lock_wait(&refused(500));
        assert_eq!(failed.kind, ReasonKind::LockError);
        assert_eq!(failed.cause.as_deref(), Some("refused"));
        assert_eq!(lock_wait(&refused(400)).kind, ReasonKind::LockError);
        // A Cairn server's halted group is a wait, whatever its status code.
        let halted = lock_wait(&LockError::Refused {
            url: "http://lock/v1/pre-reboot".into(),
            status: 423,
            kind: "group_halted".into(),
            value: "node n's boot failed at t".into(),
        });
        assert_eq!(halted.kind, ReasonKind::RebootLockWait);
        assert_eq!(halted.cause.as_deref(), Some("group_halted"));
        assert!(halted.message.contains("halted"), "{}", halted.message);
        let down = LockError::Transport {
            url: "http://lock/v1/pre-reboot".into(),
            message: "connection refused".into(),
        };
        let down = lock_wait(&down);
        assert_eq!(down.kind, ReasonKind::LockError);
        assert_eq!(down.cause.as_deref(), Some("transport"));
    }

    #[test]
    fn an_error_has_its_inner_kind_on_every_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(crate::store::STATE_FILE), "{not json").expect("write");
        let store = AgentState::load(dir.path()).expect_err("damaged");
        let inner = store.kind();
        assert_eq!(inner, "damaged");
        assert_eq!(AgentError::from(store).kind(), inner);
        let lock = LockError::Transport {
            url: "http://lock/v1/steady-state".into(),
            message: "connection refused".into(),
        };
        assert_eq!(AgentError::from(lock).kind(), "transport");
        let older = crate::host::driver::DriverError::OlderThanCurrent {
            command: "rpm-ostree deploy".into(),
            message: "older".into(),
            release: "sha256:ab".into(),
        };
        assert_eq!(AgentError::from(older).kind(), "older_than_current");
        let refused = AgentError::Refused {
            message: "older".into(),
            retry_after: jiff::Timestamp::UNIX_EPOCH,
        };
        assert_eq!(refused.kind(), "refused_backoff");
    }

    #[test]
    fn a_state_the_agent_cannot_load_is_unreadable_not_unwritable() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(crate::store::STATE_FILE), "{not json").expect("write");
        let e = AgentError::from(AgentState::load(dir.path()).expect_err("damaged"));
        assert_eq!(e.reason_kind(), ReasonKind::StateUnreadable, "{e}");
    }
}
