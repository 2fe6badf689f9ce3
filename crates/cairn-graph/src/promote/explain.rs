//! The dry run's words: one line per wave saying where it is, where it goes and why.

use super::{Action, Plan, StayReason, StuckReason, WaitReason, WavePlan};
use std::fmt;

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::BarrierDwell { until, then } => write!(
                f,
                "waits for the barrier dwell until {until}, then moves to {then}"
            ),
            WaitReason::MinDwell { until, then } => write!(
                f,
                "waits for the minimum dwell until {until}, then moves to {then}"
            ),
            WaitReason::ArchitecturesDisagree { targets } => {
                let each: Vec<String> = targets
                    .iter()
                    .map(|(arch, to)| format!("{arch}: {}", to.as_deref().unwrap_or("none")))
                    .collect();
                write!(
                    f,
                    "waits: the architectures' next releases differ ({})",
                    each.join(", ")
                )
            }
            WaitReason::NoStartingRelease => {
                f.write_str("new wave, waits: no release is offered to every host yet")
            }
        }
    }
}

impl fmt::Display for StayReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StayReason::UpToDate => f.write_str("stays: up to date"),
            StayReason::Rollout {
                version,
                progress,
                reaches,
            } => {
                let percent = (progress * 1000.0).round() / 10.0;
                write!(
                    f,
                    "stays: the rollout of {version} is at {percent}%, not yet at this wave's wariness"
                )?;
                match reaches {
                    Some(at) => write!(f, "; it reaches the wave at {at}"),
                    None => f.write_str("; it does not reach the wave under this document"),
                }
            }
            StayReason::DeadEndAhead { version, reason } => {
                let reason = if reason.is_empty() { "generic" } else { reason };
                write!(f, "stays: {version} ahead is a dead-end ({reason})")
            }
            StayReason::HaltedAhead { version } => {
                write!(
                    f,
                    "stays: {version} ahead is halted by the stream's halt list"
                )
            }
            StayReason::BaseBarrier {
                version,
                base_version,
            } => write!(
                f,
                "stays: {version} would cross base barrier {base_version}, and no release is built on it"
            ),
            StayReason::Held { version, why } => write!(f, "stays: {version} is held: {why}"),
        }
    }
}

impl fmt::Display for StuckReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StuckReason::BadRelease {
                version,
                bad,
                retreat_to,
                no_retreat,
            } => {
                write!(
                    f,
                    "stuck: {version} is {bad}, the graph offers no way forward, and the tag keeps pointing at it"
                )?;
                match (retreat_to, no_retreat) {
                    (Some(to), _) => write!(
                        f,
                        "; --allow-retreat would move it back to {to}, and its hosts would downgrade"
                    ),
                    (None, Some(why)) => write!(f, "; no retreat: {why}"),
                    (None, None) => Ok(()),
                }
            }
            StuckReason::UnknownImage { digest } => write!(
                f,
                "stuck: the tag points at {digest}, an image of no release of the document; left alone"
            ),
            StuckReason::NotDecidable { version, why } => {
                write!(f, "stuck: cannot decide from {version}: {why}")
            }
        }
    }
}

impl fmt::Display for WavePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.tag)?;
        if let Some(at) = &self.at {
            let barrier = if self.at_barrier { " (barrier)" } else { "" };
            write!(f, "at {at}{barrier}, ")?;
        }
        match &self.action {
            Action::Start { to } => write!(
                f,
                "new wave, starts at {to}, the newest release offered to every host"
            ),
            Action::Move { to, why } => write!(f, "moves to {to}: {why}"),
            Action::Retreat { to, why, warning } => {
                write!(f, "retreats to {to}: {why}. Warning: {warning}")
            }
            Action::Wait { why } => why.fmt(f),
            Action::Stay { why } => why.fmt(f),
            Action::Stuck { why } => why.fmt(f),
        }
    }
}

impl WavePlan {
    /// One line for the dry run.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for wave in &self.waves {
            writeln!(f, "{wave}")?;
        }
        Ok(())
    }
}
