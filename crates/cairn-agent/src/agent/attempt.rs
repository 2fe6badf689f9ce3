//! An attempt's records in the history, and the judgement of the boot that
//! ends most attempts: healthy, unverified, unhealthy, rolled back.
//!
//! An attempt begins when its target is staged and ends with exactly one
//! final record (see [`crate::history::Outcome`]). Final records are only
//! written while the attempt is under way, and the attempt is cleared with
//! them, so a step the agent repeats after a restart never ends one twice.

use super::{Agent, AgentError, Report, World};
use crate::health::BootHealth;
use crate::history::{Attempt, Outcome};
use crate::host::HostStatus;
use crate::host::driver::CommandRunner;
use crate::machine::{Event, Target};
use crate::reason::{Reason, ReasonKind};
use crate::store::{KeptSlot, Underway};
use jiff::Timestamp;

/// A rollback Cairn started in the current boot, with the failed check.
enum Rollback {
    /// Within the bound: the reboot may still come.
    Waiting(String),
    /// Past the bound: the host did not go down.
    Overdue(String),
}

/// A duration for operators: whole minutes when it is some.
fn in_words(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    if seconds.is_multiple_of(60) {
        format!("{} minutes", seconds / 60)
    } else {
        format!("{seconds} seconds")
    }
}

/// The booted release (version, digest) an attempt starts from.
pub(super) fn from(host: &HostStatus) -> (Option<String>, Option<String>) {
    let booted = host.booted.as_ref();
    (
        booted.and_then(|b| b.version.clone()),
        booted.and_then(|b| b.digest.as_ref().map(ToString::to_string)),
    )
}

impl<R: CommandRunner> Agent<R> {
    /// The target of the attempt under way: its own, or (state written by
    /// older agents) the state machine's.
    fn attempt_target(&self) -> Option<Target> {
        let underway = self.persisted.underway.as_ref()?;
        underway
            .target
            .clone()
            .or_else(|| self.persisted.state.target().cloned())
    }

    /// Append the record, and queue its outcome report (when reports are
    /// on and the outcome is reported): the report's id. A record already
    /// in the history (a step repeated after a crash) is not reported again.
    fn write(
        &self,
        underway: &Underway,
        target: &Target,
        now: Timestamp,
        result: Outcome,
        reason: &str,
    ) -> Option<String> {
        let attempt = Attempt {
            from_version: underway.from_version.clone(),
            from_digest: underway.from_digest.clone(),
            to_version: target.version.clone(),
            to_digest: target.digest.to_string(),
            started: underway.started,
            finished: now,
            result,
            reason: reason.to_string(),
        };
        if let Err(e) = crate::history::append(&self.state_dir, &attempt) {
            tracing::warn!(error = %e, result = %result, "could not append to the update history");
        }
        // Whether or not the record was there already: a crash between the
        // record and the queue must not lose the report, and the queue
        // makes each attempt's report of an outcome once.
        self.reporter.as_ref()?.enqueue(&attempt, now)
    }

    /// An intermediate record of the attempt under way; the id of its
    /// outcome report, when one was queued.
    pub(super) fn record_step(
        &self,
        now: Timestamp,
        result: Outcome,
        reason: &str,
    ) -> Option<String> {
        debug_assert!(!result.is_final());
        let (Some(underway), Some(target)) = (&self.persisted.underway, self.attempt_target())
        else {
            return None;
        };
        self.write(underway, &target, now, result, reason)
    }

    /// End the attempt under way with its final record. Nothing under way
    /// (already ended before a restart): nothing is written. The caller saves
    /// the state.
    pub(super) fn end_attempt(&mut self, now: Timestamp, result: Outcome, reason: &str) {
        debug_assert!(result.is_final());
        let target = self.attempt_target();
        if let (Some(underway), Some(target)) = (self.persisted.underway.take(), target) {
            self.write(&underway, &target, now, result, reason);
        }
    }

    /// Make the attempt under way the one at `target`. An attempt at another
    /// target ends first (a newer one replaced it), and one begins from
    /// `from` (version, digest) now. True when it began now.
    pub(super) fn attempt_at(
        &mut self,
        target: &Target,
        from: (Option<String>, Option<String>),
        now: Timestamp,
    ) -> bool {
        if let Some(current) = self.attempt_target() {
            if current.digest == target.digest {
                return false;
            }
            self.end_attempt(
                now,
                Outcome::Withdrawn,
                &format!("{} replaced it as the target", target.version),
            );
        }
        self.persisted.underway = Some(Underway {
            from_version: from.0,
            from_digest: from.1,
            started: now,
            target: Some(target.clone()),
            rolling_back: None,
            rolling_back_boot: None,
            rolling_back_at: None,
        });
        true
    }

    /// `target` is staged: begin its attempt, unless it is the one under way.
    pub(super) fn begin_attempt(
        &mut self,
        target: &Target,
        host: &HostStatus,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        if self.attempt_at(target, from(host), now) {
            // Markers of an earlier attempt (perhaps at this same digest).
            self.persisted.judged = None;
            self.persisted.post_update_ran = None;
            // Saved first, so that the record's attempt is the one a restart finds.
            self.persisted.save(&self.state_dir)?;
            self.record_step(now, Outcome::Staged, &format!("staged {}", target.version));
        }
        Ok(())
    }

    /// Checking again while an attempt is still under way: its target was
    /// neither finalized nor withdrawn by the agent (the host dropped the
    /// staged deployment, or the state machine was reset by a configuration
    /// error). A target still staged is adopted by the check; otherwise the
    /// attempt ends here, and staging it again begins a new one.
    pub(super) fn close_stale_attempt(&mut self, host: &HostStatus, now: Timestamp) {
        let Some(target) = self.attempt_target() else {
            if self.persisted.underway.take().is_some() {
                tracing::warn!("dropped an update attempt without a known target");
            }
            return;
        };
        let digest =
            |d: &Option<crate::host::Deployment>| d.as_ref().and_then(|d| d.digest.clone());
        if digest(&host.staged).as_deref() == Some(target.digest.as_str()) {
            return;
        }
        if digest(&host.booted).as_deref() == Some(target.digest.as_str()) {
            self.end_attempt(
                now,
                Outcome::BootedUnverified,
                &format!(
                    "booted {}, but the agent's state was reset before the boot was judged",
                    target.version
                ),
            );
        } else {
            self.end_attempt(
                now,
                Outcome::Withdrawn,
                &format!(
                    "{} is no longer staged on the host (a reboot dropped the download-only deployment, or it was removed)",
                    target.version
                ),
            );
        }
    }

    /// After a restart found the previous release booted instead of the
    /// target: deny-list the target and end the attempt. After Cairn's own
    /// rollback that is `rolled_back`; otherwise the host came back by itself.
    pub(super) fn came_back(&mut self, target: &Target, now: Timestamp) {
        let Some(underway) = &self.persisted.underway else {
            // Ended already, before a restart: keep the deny-list entry's reason.
            if !self
                .persisted
                .deny_list
                .contains_key(target.digest.as_str())
            {
                self.persisted.deny(
                    &target.digest,
                    &target.version,
                    "the host rolled back after booting it",
                    now,
                );
            }
            return;
        };
        match underway.rolling_back.clone() {
            Some(why) => {
                self.persisted.deny(
                    &target.digest,
                    &target.version,
                    &format!("its health checks failed: {why}"),
                    now,
                );
                self.end_attempt(
                    now,
                    Outcome::RolledBack,
                    &format!(
                        "health checks failed ({why}); Cairn rolled back to the previous release and deny-listed {}",
                        target.version
                    ),
                );
            }
            None => {
                self.persisted.deny(
                    &target.digest,
                    &target.version,
                    "the host rolled back after booting it",
                    now,
                );
                self.end_attempt(
                    now,
                    Outcome::BootFailed,
                    "the host came back up on the previous release (a failed boot, or greenboot rolled back); the target is deny-listed and the agent does not roll back again",
                );
            }
        }
    }

    /// Judge the boot into `target` (the `Verifying` state).
    pub(super) async fn verify(
        &mut self,
        world: &World,
        target: Target,
    ) -> Result<Report, AgentError> {
        // Deny-listed by the restart that found the previous release booted,
        // or by a verdict that kept the host on it (leaving failed then).
        if let Some(denied) = self
            .persisted
            .deny_list
            .get(target.digest.as_str())
            .cloned()
        {
            let host = self.driver.status().await?;
            let still_on = host.booted.as_ref().and_then(|b| b.digest.as_deref())
                == Some(target.digest.as_str());
            if still_on {
                let reason = format!("booted it and stays on it: {}", denied.reason);
                self.leave_failed(Event::BootedHealthy, &target, &reason, world.now)
                    .await?;
                return Ok(self.report(
                    ReasonKind::StaysOnDenied,
                    format!(
                        "{} is deny-listed ({}); the host stays on it",
                        target.version, denied.reason
                    ),
                ));
            }
            let reason = format!("rolled back from it: {}", denied.reason);
            self.leave_failed(Event::RolledBack, &target, &reason, world.now)
                .await?;
            return Ok(self.report(
                ReasonKind::RolledBack,
                format!(
                    "rolled back from {}; it will not be offered again",
                    target.version
                ),
            ));
        }
        // Judged already, and the attempt ended: only leaving is left.
        if self.persisted.judged.as_deref() == Some(target.digest.as_str()) {
            self.finish_judged(&target).await?;
            return Ok(self.report(
                ReasonKind::AlreadyJudged,
                format!("updated to {}; its boot was judged earlier", target.version),
            ));
        }
        // Cairn's rollback ran in this very boot: the host is on its way
        // down (a delayed or inhibited shutdown). Nothing to judge yet, up
        // to a bound: the rollback command is never run again (it toggles).
        match self.rollback_in_progress(world)? {
            Some(Rollback::Waiting(why)) => {
                return Ok(self.report(
                    ReasonKind::RollbackInProgress,
                    format!(
                        "{} failed its health checks ({why}); the rollback is in progress: waiting for the reboot into the previous release",
                        target.version
                    ),
                ));
            }
            Some(Rollback::Overdue(why)) => {
                let reason = format!(
                    "booted {} but its health checks failed ({why}); the host did not reboot within {} after the rollback command; it is deny-listed and the host stays on it",
                    target.version,
                    in_words(self.settings.health_timeout)
                );
                return self
                    .stay(world, &target, &why, Outcome::RollbackFailed, reason)
                    .await;
            }
            None => {}
        }
        let (result, reason) = match world.boot_health.clone() {
            BootHealth::Pending => {
                return Ok(self.report(
                    ReasonKind::WaitingForBootComplete,
                    format!(
                        "verifying {}: waiting for boot-complete.target",
                        target.version
                    ),
                ));
            }
            BootHealth::Unanswered(why) => {
                let reason = Reason::new(
                    ReasonKind::WaitingForBootComplete,
                    format!(
                        "verifying {}: waiting for boot-complete.target; systemctl did not answer ({why})",
                        target.version
                    ),
                );
                return Ok(self.report_why(reason.caused_by(why.kind())));
            }
            BootHealth::Failed(why) => return self.unhealthy(world, target, why).await,
            BootHealth::Healthy => (
                Outcome::BootedHealthy,
                format!("booted {} and its health checks passed", target.version),
            ),
            BootHealth::Unknown => (
                Outcome::BootedUnverified,
                format!(
                    "booted {}; its health could not be verified (nothing on this host reports it)",
                    target.version
                ),
            ),
        };
        self.end_attempt(world.now, result, &reason);
        self.persisted.judged = Some(target.digest.to_string());
        self.persisted.save(&self.state_dir)?;
        self.finish_judged(&target).await?;
        Ok(match result {
            Outcome::BootedHealthy => self.report(
                ReasonKind::BootedHealthy,
                format!("updated to {}", target.version),
            ),
            _ => self.report(
                ReasonKind::BootedUnverified,
                format!(
                    "updated to {}; the boot is unverified: nothing on this host reports its health",
                    target.version
                ),
            ),
        })
    }

    /// The failed check, while Cairn's rollback was started in the current
    /// boot (or this boot cannot be told apart). Only a later boot can show
    /// whether it took effect; past `health.timeout_seconds` it is overdue.
    fn rollback_in_progress(&mut self, world: &World) -> Result<Option<Rollback>, AgentError> {
        let Some(underway) = self.persisted.underway.as_mut() else {
            return Ok(None);
        };
        let Some(why) = underway.rolling_back.clone() else {
            return Ok(None);
        };
        let same_boot = match (&underway.rolling_back_boot, &world.boot_id) {
            (Some(then), Some(now)) => then == now,
            // This boot cannot be told apart: wait (bounded) rather than end it wrongly.
            (Some(_), None) => true,
            // Recorded by an older agent, which ran in an earlier boot (the
            // agent changes with the image), or with no boot ID to compare.
            (None, _) => false,
        };
        if !same_boot {
            return Ok(None);
        }
        let Some(since) = underway.rolling_back_at else {
            // An intent saved without its time: the bound starts now.
            underway.rolling_back_at = Some(world.now);
            self.persisted.save(&self.state_dir)?;
            return Ok(Some(Rollback::Waiting(why)));
        };
        let bound = jiff::SignedDuration::try_from(self.settings.health_timeout)
            .unwrap_or(jiff::SignedDuration::MAX);
        Ok(Some(if world.now.duration_since(since) > bound {
            Rollback::Overdue(why)
        } else {
            Rollback::Waiting(why)
        }))
    }

    /// After the verdict: the post-update hooks (once), then leave `Verifying`.
    async fn finish_judged(&mut self, target: &Target) -> Result<(), AgentError> {
        if self.persisted.post_update_ran.as_deref() != Some(target.digest.as_str()) {
            self.post_update_hooks(target).await;
            self.persisted.post_update_ran = Some(target.digest.to_string());
            self.persisted.save(&self.state_dir)?;
        }
        self.leave_verifying(Event::BootedHealthy).await
    }

    /// Steady again after a boot judged healthy (or unverified): the reboot
    /// slot goes back, a slot kept after an earlier failure included.
    async fn leave_verifying(&mut self, event: Event) -> Result<(), AgentError> {
        // A slot taken for this reboot, or kept since an earlier failure.
        if self.lock.is_some() || self.persisted.lock_held {
            self.give_slot_back().await?;
        }
        self.leave(event)
    }

    /// Steady again after a failed boot into `target`. A FleetLock slot
    /// held for it is kept (unless `release_on_failure` is set): the group
    /// stops rebooting until an operator has looked, rather than hand the
    /// next host the slot, and perhaps the same failure.
    async fn leave_failed(
        &mut self,
        event: Event,
        target: &Target,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        if !(self.persisted.lock_held && self.keeps_slot_after_failure()) {
            return self.leave_verifying(event).await;
        }
        // A slot kept since an earlier failure (whose halt an operator may
        // have acknowledged, freeing it at the server) is kept anew for this
        // one: the lock server must hear of every failure, or the slot
        // taken again for this reboot stays held with no halt to resolve it.
        // The failure is the target's deny-list entry: a slot kept for it
        // was kept after that entry was made (a retried pass keeps it as is).
        let denied_since = self
            .persisted
            .deny_list
            .get(target.digest.as_str())
            .map(|d| d.since);
        let kept_for_this_failure = self.persisted.slot_kept.as_ref().is_some_and(|kept| {
            kept.version == target.version && denied_since.is_none_or(|since| kept.since >= since)
        });
        if !kept_for_this_failure {
            tracing::warn!(
                target = %target.version,
                "the boot failed: the FleetLock slot is kept until `cairn release-slot` or a healthy boot"
            );
            self.persisted.slot_kept = Some(KeptSlot {
                group: self.settings.fleet_lock.as_ref().map(|l| l.group.clone()),
                version: target.version.clone(),
                reason: reason.to_string(),
                since: now,
                reported: false,
            });
            self.persisted.save(&self.state_dir)?;
        }
        self.report_kept_slot().await;
        self.leave(event)
    }

    fn leave(&mut self, event: Event) -> Result<(), AgentError> {
        self.persisted.post_update_ran = None;
        self.persisted.judged = None;
        self.transition(&event)
    }

    /// The boot into `target` failed its health checks: roll back once if
    /// configured and possible, else deny-list it and stay.
    async fn unhealthy(
        &mut self,
        world: &World,
        target: Target,
        why: String,
    ) -> Result<Report, AgentError> {
        let host = self.driver.status().await?;
        let booted_is_target =
            host.booted.as_ref().and_then(|b| b.digest.as_deref()) == Some(target.digest.as_str());
        let tried = self
            .persisted
            .underway
            .as_ref()
            .is_some_and(|u| u.rolling_back.is_some());
        if !self.settings.rollback_on_failure {
            let reason = format!(
                "booted {} but its health checks failed ({why}); it is deny-listed; health.rollback_on_failure is off, so the host stays on it",
                target.version
            );
            return self
                .stay(world, &target, &why, Outcome::BootedUnhealthy, reason)
                .await;
        }
        if tried || !booted_is_target || host.rollback.is_none() {
            // `tried`: a later boot than the rollback's (see `verify`).
            let cause = if tried {
                "the rollback did not take effect (the host booted it again)"
            } else {
                "there is nothing to roll back to"
            };
            let reason = format!(
                "booted {} but its health checks failed ({why}); {cause}; it is deny-listed and the host stays on it",
                target.version
            );
            return self
                .stay(world, &target, &why, Outcome::RollbackFailed, reason)
                .await;
        }
        // Intent persisted before the reboot; the restart that finds the
        // previous release booted deny-lists the target and ends the attempt.
        self.attempt_at(&target, from(&host), world.now);
        if let Some(underway) = self.persisted.underway.as_mut() {
            underway.rolling_back = Some(why.clone());
            underway.rolling_back_boot = world.boot_id.clone();
            underway.rolling_back_at = Some(world.now);
        }
        self.persisted.save(&self.state_dir)?;
        self.record_step(
            world.now,
            Outcome::RollingBack,
            &format!("health checks failed ({why}); rolling back"),
        );
        tracing::warn!(target = %target.version, reason = %why, "health checks failed; rolling back");
        if let Err(e) = self.driver.rollback().await {
            tracing::warn!(error = %e, "the rollback failed");
            let reason = format!(
                "booted {} but its health checks failed ({why}); the rollback failed ({e}); it is deny-listed and the host stays on it",
                target.version
            );
            return self
                .stay(world, &target, &why, Outcome::RollbackFailed, reason)
                .await;
        }
        Ok(self.report(
            ReasonKind::RollingBack,
            format!(
                "{} failed its health checks ({why}); rolling back to the previous release",
                target.version
            ),
        ))
    }

    /// The host stays on an unhealthy target: deny-list it, end the attempt.
    async fn stay(
        &mut self,
        world: &World,
        target: &Target,
        why: &str,
        result: Outcome,
        reason: String,
    ) -> Result<Report, AgentError> {
        self.persisted.deny(
            &target.digest,
            &target.version,
            &format!("its health checks failed: {why}"),
            world.now,
        );
        self.end_attempt(world.now, result, &reason);
        // Saved with the final record: a retried pass only leaves.
        self.persisted.save(&self.state_dir)?;
        self.leave_failed(Event::BootedHealthy, target, &reason, world.now)
            .await?;
        // The same word as the outcome: the host stays on the target.
        let kind = match result {
            Outcome::BootedUnhealthy => ReasonKind::BootedUnhealthy,
            _ => ReasonKind::RollbackFailed,
        };
        Ok(self.report(kind, reason))
    }
}
