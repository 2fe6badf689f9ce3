//! One agent: the state machine driven against a host, a document and a
//! reboot lock, one step per `tick`, persisting every transition before acting
//! on it. The time, the document and the host tool come in from outside, so
//! tests control all three.

use crate::config::Settings;
use crate::fleetlock::FleetLockClient;
use crate::host::driver::{CommandRunner, Driver};
use crate::machine::{BootOutcome, Event, State, Target, recover};
use crate::plan::{CheckInput, Plan, finalize_gate, plan};
use crate::source::SourceGraph;
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
    pub graph: Result<SourceGraph, String>,
    /// Interactive users are logged in (a failing `loginctl` counts as yes).
    pub users_logged_in: bool,
}

/// What the agent is doing and why, after a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The state's name.
    pub state: &'static str,
    /// One sentence for operators.
    pub reason: String,
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
    async fn release_lock_if_off_path(&mut self) -> Result<(), AgentError> {
        let on_path = self.persisted.state.may_hold_lock();
        if !self.persisted.lock_held || on_path {
            return Ok(());
        }
        if let Some(lock) = &self.lock {
            lock.steady_state().await?;
        }
        self.persisted.lock_held = false;
        self.persisted.save(&self.state_dir)?;
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
            self.persisted.deny(
                &target.digest,
                &target.version,
                "the host rolled back after booting it",
                now,
            );
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
            self.driver
                .stage(tier, &self.repository, &target.digest, &host.signature)
                .await?;
        }
        Ok(self.report(match outcome {
            Some(BootOutcome::Booted) => "booted the target; verifying".into(),
            Some(BootOutcome::RolledBack) => {
                "the target did not stay booted; it is deny-listed".into()
            }
            Some(BootOutcome::StillStaged) => {
                "the reboot did not happen; the update is still staged".into()
            }
            None => "resuming".into(),
        }))
    }

    fn report(&self, reason: String) -> Report {
        Report {
            state: self.persisted.state.name(),
            reason,
        }
    }

    /// One step.
    pub async fn tick(&mut self, world: &World) -> Result<Report, AgentError> {
        self.release_lock_if_off_path().await?;
        match self.persisted.state.clone() {
            State::ConfigError { message } => {
                Ok(self.report(format!("configuration error: {message}")))
            }
            State::Initialized => {
                if let Some(lock) = &self.lock {
                    lock.steady_state().await?;
                }
                self.transition(&Event::ReportedSteady)?;
                Ok(self.report("steady state reported".into()))
            }
            State::Verifying { target } => {
                let denied = self.persisted.deny_list.contains_key(&target.digest);
                let event = if denied {
                    Event::RolledBack
                } else {
                    Event::BootedHealthy
                };
                if let Some(lock) = &self.lock {
                    lock.steady_state().await?;
                }
                self.persisted.lock_held = false;
                self.transition(&event)?;
                let reason = if denied {
                    format!(
                        "rolled back from {}; it will not be offered again",
                        target.version
                    )
                } else {
                    format!("updated to {}", target.version)
                };
                Ok(self.report(reason))
            }
            State::Rebooting { .. } => Ok(self.report("rebooting".into())),
            State::Steady | State::Checking | State::UpdateAvailable { .. } => {
                self.check(world).await
            }
            State::Staged { .. } | State::FinalizeAllowed { .. } => {
                let report = self.check(world).await?;
                // Without a trusted document there is no reboot either.
                if world.graph.is_err() {
                    if matches!(self.persisted.state, State::FinalizeAllowed { .. }) {
                        self.transition(&Event::GatesClosed)?;
                        self.release_lock_if_off_path().await?;
                    }
                    return Ok(report);
                }
                match self.persisted.state.clone() {
                    State::Staged { target } | State::FinalizeAllowed { target } => {
                        self.finalize(world, target).await
                    }
                    _ => Ok(report),
                }
            }
        }
    }

    async fn check(&mut self, world: &World) -> Result<Report, AgentError> {
        if matches!(self.persisted.state, State::Steady) {
            self.transition(&Event::CheckStarted)?;
        }
        let graph = match &world.graph {
            Ok(graph) => graph,
            Err(why) => {
                if matches!(self.persisted.state, State::Checking) {
                    self.transition(&Event::NothingToDo)?;
                }
                return Ok(self.report(format!("no action: {why}")));
            }
        };
        let host = self.driver.status().await?;
        let deny = self.persisted.denied();
        let plan = plan(&CheckInput {
            settings: &self.settings,
            host: &host,
            graph,
            arch: &self.arch,
            wariness: self.wariness,
            now: world.now,
            deny: &deny,
            held: self.persisted.is_held(world.now),
        });
        match plan {
            Plan::Stage(target) | Plan::Restage(target) => {
                let event = if matches!(self.persisted.state, State::Checking) {
                    Event::Found(target.clone())
                } else {
                    Event::NewerTarget(target.clone())
                };
                self.transition(&event)?;
                let tier = self.driver.tier().await?;
                match self
                    .driver
                    .stage(tier, &self.repository, &target.digest, &host.signature)
                    .await
                {
                    Ok(()) => {
                        self.transition(&Event::StagedOk)?;
                        Ok(self.report(format!("staged {}", target.version)))
                    }
                    Err(e) => {
                        self.transition(&Event::StageFailed)?;
                        Err(e.into())
                    }
                }
            }
            Plan::Keep(target) => {
                // A staged update found after a reset is adopted, not ignored.
                if matches!(self.persisted.state, State::Checking) {
                    self.transition(&Event::Found(target.clone()))?;
                    self.transition(&Event::StagedOk)?;
                }
                Ok(self.report(format!("{} is staged", target.version)))
            }
            Plan::Unstage(why) => {
                self.driver.discard().await?;
                self.transition(&Event::Withdrawn)?;
                Ok(self.report(why))
            }
            Plan::Nothing(why) => {
                if matches!(self.persisted.state, State::Checking) {
                    self.transition(&Event::NothingToDo)?;
                }
                Ok(self.report(why))
            }
        }
    }

    async fn finalize(&mut self, world: &World, target: Target) -> Result<Report, AgentError> {
        let held = self.persisted.is_held(world.now);
        if let Err(wait) = finalize_gate(&self.settings, world.now, held, world.users_logged_in) {
            if matches!(self.persisted.state, State::FinalizeAllowed { .. }) {
                self.transition(&Event::GatesClosed)?;
                self.release_lock_if_off_path().await?;
            }
            return Ok(self.report(wait.to_string()));
        }
        if let Some(lock) = &self.lock {
            // Recorded before asking: a crash after the server granted the
            // slot must still lead to its release.
            self.persisted.lock_held = true;
            self.persisted.save(&self.state_dir)?;
            if let Err(e) = lock.pre_reboot().await {
                return Ok(self.report(format!("waiting for reboot lock ({e})")));
            }
        }
        if matches!(self.persisted.state, State::Staged { .. }) {
            self.transition(&Event::GatesPassed)?;
        }
        // Intent first: if the host goes down during --apply, the restart knows.
        self.transition(&Event::RebootStarted)?;
        match self.driver.apply(&target.digest).await {
            Ok(()) => Ok(self.report(format!("rebooting into {}", target.version))),
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
