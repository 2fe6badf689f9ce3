//! The agent's update state machine: a plain enum, a pure transition
//! function that never panics, and recovery from whatever state was
//! persisted when the agent (or the host) went down.
//!
//! ```text
//! Initialized → Steady → Checking → UpdateAvailable → Staged → FinalizeAllowed → Rebooting → Verifying → Steady
//!                  ↑_______________________________________|  (a newer target re-stages; a withdrawn one un-stages)
//! ```
//! Any state may move to `ConfigError`, which stages and finalizes nothing.

use cairn_graph::digest::TargetId;
use serde::{Deserialize, Serialize};

/// A release the agent is moving the host to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Version shown to people.
    pub version: String,
    /// Manifest digest or ostree checksum to stage, checked where it
    /// entered (graph, host status or state file).
    pub digest: TargetId,
}

/// Where the agent is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum State {
    /// Just started: must report steady state (and release any reboot lock) first.
    Initialized,
    /// The configuration is broken: nothing is staged or finalized.
    ConfigError {
        /// The error, naming file and key.
        message: String,
    },
    /// Nothing to do until the next check.
    Steady,
    /// Asking the graph.
    Checking,
    /// A target was chosen and will be staged.
    UpdateAvailable {
        /// The target.
        target: Target,
    },
    /// The target is staged (download only), waiting for hooks and the strategy.
    Staged {
        /// The target.
        target: Target,
    },
    /// Every gate passed and the reboot slot is held.
    FinalizeAllowed {
        /// The target.
        target: Target,
    },
    /// Intent recorded; the host is finalizing and rebooting.
    Rebooting {
        /// The target.
        target: Target,
    },
    /// Booted again: checking that the target came up healthy.
    Verifying {
        /// The target.
        target: Target,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The configuration failed to load.
    ConfigFailed(String),
    /// The configuration loaded (again).
    ConfigLoaded,
    /// Steady state was reported and any lock released.
    ReportedSteady,
    /// A check began.
    CheckStarted,
    /// The check chose a target.
    Found(Target),
    /// The check chose nothing (up to date, held back, or an error: see status).
    NothingToDo,
    /// The target is staged.
    StagedOk,
    /// Staging failed.
    StageFailed,
    /// A newer target appeared before finalization: stage it instead.
    NewerTarget(Target),
    /// The staged target became a dead-end or left the graph: un-stage it.
    Withdrawn,
    /// Hooks passed, the window is open, the host is not held, no users, lock taken.
    GatesPassed,
    /// A gate closed again (window over, user logged in, hold): lock released.
    GatesClosed,
    /// Finalization started; the host reboots.
    RebootStarted,
    /// Finalization failed without a reboot.
    FinalizeFailed,
    /// After boot, the target is booted and healthy.
    BootedHealthy,
    /// After boot, the target is not booted (rolled back): it goes on the deny-list.
    RolledBack,
}

/// An event that makes no sense in a state; the state is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event} does not apply in state {state}")]
pub struct InvalidTransition {
    /// The state's name.
    pub state: &'static str,
    /// The event's name.
    pub event: String,
}

impl State {
    /// A short, fixed name for status lines and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            State::Initialized => "initialized",
            State::ConfigError { .. } => "config-error",
            State::Steady => "steady",
            State::Checking => "checking",
            State::UpdateAvailable { .. } => "update-available",
            State::Staged { .. } => "staged",
            State::FinalizeAllowed { .. } => "finalize-allowed",
            State::Rebooting { .. } => "rebooting",
            State::Verifying { .. } => "verifying",
        }
    }

    /// The target being worked on, if any.
    pub fn target(&self) -> Option<&Target> {
        match self {
            State::UpdateAvailable { target }
            | State::Staged { target }
            | State::FinalizeAllowed { target }
            | State::Rebooting { target }
            | State::Verifying { target } => Some(target),
            _ => None,
        }
    }

    /// True while the agent may hold the reboot lock: from the permission to
    /// reboot until the new boot is judged. Leaving these states any other
    /// way must release it (or, after a failed boot, keep it on purpose).
    pub fn may_hold_lock(&self) -> bool {
        matches!(
            self,
            State::FinalizeAllowed { .. } | State::Rebooting { .. } | State::Verifying { .. }
        )
    }

    /// The next state. Never panics; an event that does not apply is an error
    /// and the caller keeps the current state.
    pub fn next(&self, event: &Event) -> Result<State, InvalidTransition> {
        use Event as E;
        use State as S;
        let next = match (self, event) {
            // A configuration error wins everywhere except mid-reboot, where the
            // host is already going down and the error is seen after boot, and
            // while a boot waits for its verdict: that boot is judged once the
            // configuration is fixed (its reboot slot held until then), never
            // forgotten.
            (S::Rebooting { .. } | S::Verifying { .. }, E::ConfigFailed(_)) => {
                return Err(self.invalid(event));
            }
            (_, E::ConfigFailed(message)) => S::ConfigError {
                message: message.clone(),
            },
            (S::ConfigError { .. }, E::ConfigLoaded) => S::Initialized,
            (S::Initialized, E::ReportedSteady) => S::Steady,
            (S::Steady, E::CheckStarted) => S::Checking,
            (S::Checking, E::Found(target)) => S::UpdateAvailable {
                target: target.clone(),
            },
            (S::Checking, E::NothingToDo) => S::Steady,
            (S::UpdateAvailable { target }, E::StagedOk) => S::Staged {
                target: target.clone(),
            },
            (S::UpdateAvailable { .. }, E::StageFailed) => S::Steady,
            (S::Staged { .. } | S::FinalizeAllowed { .. }, E::NewerTarget(target)) => {
                S::UpdateAvailable {
                    target: target.clone(),
                }
            }
            (S::Staged { .. } | S::FinalizeAllowed { .. }, E::Withdrawn) => S::Steady,
            (S::Staged { target }, E::GatesPassed) => S::FinalizeAllowed {
                target: target.clone(),
            },
            (S::FinalizeAllowed { target }, E::GatesClosed) => S::Staged {
                target: target.clone(),
            },
            (S::FinalizeAllowed { target }, E::RebootStarted) => S::Rebooting {
                target: target.clone(),
            },
            (S::FinalizeAllowed { target }, E::FinalizeFailed) => S::Staged {
                target: target.clone(),
            },
            (S::Rebooting { target }, E::BootedHealthy | E::RolledBack) => {
                // Recovery after boot goes through verification first.
                S::Verifying {
                    target: target.clone(),
                }
            }
            (S::Verifying { .. }, E::BootedHealthy | E::RolledBack) => S::Steady,
            _ => return Err(self.invalid(event)),
        };
        Ok(next)
    }

    fn invalid(&self, event: &Event) -> InvalidTransition {
        InvalidTransition {
            state: self.name(),
            event: format!("{event:?}"),
        }
    }
}

/// What a booted host says about a target it was rebooting into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// The target is booted.
    Booted,
    /// Something else is booted and the target is the rollback entry (or gone).
    RolledBack,
    /// The target is still staged: the reboot never happened.
    StillStaged,
}

/// Where to resume after a restart, from the persisted state and what the
/// host reports now. The rules keep a crash at any point from staging twice
/// or rebooting in a loop:
/// - mid-reboot: look at what booted, never reboot again blindly;
/// - staged: keep it only if the host still has it staged, else check again;
/// - anything else: start over, reporting steady state first.
pub fn recover(
    persisted: &State,
    booted_digest: Option<&str>,
    staged_digest: Option<&str>,
) -> (State, Option<BootOutcome>) {
    match persisted {
        State::Rebooting { target } | State::Verifying { target } => {
            let outcome = if booted_digest == Some(target.digest.as_str()) {
                BootOutcome::Booted
            } else if staged_digest == Some(target.digest.as_str()) {
                BootOutcome::StillStaged
            } else {
                BootOutcome::RolledBack
            };
            let state = match outcome {
                BootOutcome::StillStaged => State::Staged {
                    target: target.clone(),
                },
                _ => State::Verifying {
                    target: target.clone(),
                },
            };
            (state, Some(outcome))
        }
        State::Staged { target }
        | State::FinalizeAllowed { target }
        | State::UpdateAvailable { target }
            if staged_digest == Some(target.digest.as_str()) =>
        {
            // The lock, if one was held, is released by reporting steady first;
            // the staged deployment stays and the gates are checked again.
            (
                State::Staged {
                    target: target.clone(),
                },
                None,
            )
        }
        State::ConfigError { message } => (
            State::ConfigError {
                message: message.clone(),
            },
            None,
        ),
        _ => (State::Initialized, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(n: u8) -> Target {
        Target {
            version: format!("v{n}"),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32))
                .parse()
                .expect("an id"),
        }
    }

    fn all_states() -> Vec<State> {
        vec![
            State::Initialized,
            State::ConfigError {
                message: "x".into(),
            },
            State::Steady,
            State::Checking,
            State::UpdateAvailable { target: target(1) },
            State::Staged { target: target(1) },
            State::FinalizeAllowed { target: target(1) },
            State::Rebooting { target: target(1) },
            State::Verifying { target: target(1) },
        ]
    }

    fn all_events() -> Vec<Event> {
        vec![
            Event::ConfigFailed("bad".into()),
            Event::ConfigLoaded,
            Event::ReportedSteady,
            Event::CheckStarted,
            Event::Found(target(2)),
            Event::NothingToDo,
            Event::StagedOk,
            Event::StageFailed,
            Event::NewerTarget(target(3)),
            Event::Withdrawn,
            Event::GatesPassed,
            Event::GatesClosed,
            Event::RebootStarted,
            Event::FinalizeFailed,
            Event::BootedHealthy,
            Event::RolledBack,
        ]
    }

    #[test]
    fn every_state_and_event_is_handled_without_panicking() {
        let mut valid = 0;
        for state in all_states() {
            for event in all_events() {
                match state.next(&event) {
                    Ok(next) => {
                        valid += 1;
                        // Targets only change through explicit events.
                        if let (Some(before), Some(after)) = (state.target(), next.target())
                            && !matches!(event, Event::NewerTarget(_))
                        {
                            assert_eq!(before, after, "{state:?} + {event:?}");
                        }
                    }
                    Err(e) => assert_eq!(e.state, state.name()),
                }
            }
        }
        // ConfigFailed is valid in 7 states (not while rebooting or verifying);
        // NewerTarget, Withdrawn, BootedHealthy and RolledBack in 2; every
        // other event in exactly 1.
        assert_eq!(valid, 7 + 4 * 2 + 11);
    }

    #[test]
    fn the_happy_path() {
        let mut state = State::Initialized;
        for event in [
            Event::ReportedSteady,
            Event::CheckStarted,
            Event::Found(target(1)),
            Event::StagedOk,
            Event::GatesPassed,
            Event::RebootStarted,
            Event::BootedHealthy,
            Event::BootedHealthy,
        ] {
            state = state.next(&event).expect("valid");
        }
        assert_eq!(state, State::Steady);
    }

    #[test]
    fn leaving_the_reboot_path_is_visible_for_lock_release() {
        let allowed = State::FinalizeAllowed { target: target(1) };
        assert!(allowed.may_hold_lock());
        for event in [
            Event::GatesClosed,
            Event::FinalizeFailed,
            Event::Withdrawn,
            Event::NewerTarget(target(2)),
        ] {
            let next = allowed.next(&event).expect("valid");
            assert!(
                !next.may_hold_lock(),
                "{event:?}: the caller must release the lock"
            );
        }
        // Held through the reboot and the judgement of the new boot.
        let rebooting = State::Rebooting { target: target(1) };
        assert!(rebooting.may_hold_lock());
        let verifying = rebooting.next(&Event::BootedHealthy).expect("valid");
        assert!(verifying.may_hold_lock(), "{verifying:?}");
        for event in [Event::BootedHealthy, Event::RolledBack] {
            assert!(!verifying.next(&event).expect("valid").may_hold_lock());
        }
    }

    #[test]
    fn config_errors_stop_everything_but_a_reboot_in_flight_or_its_verdict() {
        let staged = State::Staged { target: target(1) };
        assert_eq!(
            staged
                .next(&Event::ConfigFailed("k".into()))
                .map(|s| s.name()),
            Ok("config-error")
        );
        let rebooting = State::Rebooting { target: target(1) };
        assert!(rebooting.next(&Event::ConfigFailed("k".into())).is_err());
        let verifying = State::Verifying { target: target(1) };
        assert!(verifying.next(&Event::ConfigFailed("k".into())).is_err());
        let broken = State::ConfigError {
            message: "k".into(),
        };
        assert!(
            broken.next(&Event::CheckStarted).is_err(),
            "no checks in config-error"
        );
        assert_eq!(broken.next(&Event::ConfigLoaded), Ok(State::Initialized));
    }

    #[test]
    fn recovery_after_a_crash_in_every_state() {
        let t = target(1);
        let other = target(9).digest;
        // Mid-reboot and the target booted: verify, never reboot again.
        let (state, outcome) = recover(
            &State::Rebooting { target: t.clone() },
            Some(&t.digest),
            None,
        );
        assert_eq!(
            (state.name(), outcome),
            ("verifying", Some(BootOutcome::Booted))
        );
        // Mid-reboot but something else booted: a rollback.
        let (_, outcome) = recover(&State::Rebooting { target: t.clone() }, Some(&other), None);
        assert_eq!(outcome, Some(BootOutcome::RolledBack));
        // Killed before the reboot happened: still staged, gates again.
        let (state, outcome) = recover(
            &State::Rebooting { target: t.clone() },
            Some(&other),
            Some(&t.digest),
        );
        assert_eq!(
            (state.name(), outcome),
            ("staged", Some(BootOutcome::StillStaged))
        );
        // Staged and still staged: no second staging.
        for persisted in [
            State::UpdateAvailable { target: t.clone() },
            State::Staged { target: t.clone() },
            State::FinalizeAllowed { target: t.clone() },
        ] {
            let (state, _) = recover(&persisted, Some(&other), Some(&t.digest));
            assert_eq!(state, State::Staged { target: t.clone() });
        }
        // Staged but the host dropped it (reboot discarded a locked deployment): start over.
        assert_eq!(
            recover(&State::Staged { target: t.clone() }, Some(&other), None).0,
            State::Initialized
        );
        for persisted in [State::Initialized, State::Steady, State::Checking] {
            assert_eq!(
                recover(&persisted, Some(&other), None).0,
                State::Initialized
            );
        }
    }

    #[test]
    fn states_serialize_with_a_tag() {
        let text = serde_json::to_string(&State::Staged { target: target(1) }).expect("json");
        assert!(text.starts_with("{\"state\":\"staged\""), "{text}");
        let back: State = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, State::Staged { target: target(1) });
    }
}
