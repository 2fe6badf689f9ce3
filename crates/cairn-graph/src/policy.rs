//! Edits of a release team's policy file (Fedora's `updates/<stream>.json`
//! format): start, pause, resume and stop rollouts; add and remove barriers
//! and dead-ends. Each edit says what changed and what the fleet will see.
//!
//! An entry that names a version is authoritative for that version when a
//! document is assembled, even with empty metadata: that is how a stopped
//! rollout stays stopped instead of falling back to the default rollout.

use crate::document::MAX_ROLLOUT_MINUTES;
use crate::fcos::{RequiredReason, Updates};
use crate::rollout::Rollout;
use jiff::Timestamp;

/// One edit.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyEdit {
    /// Start a rollout over `minutes`, at `at` (Unix seconds), from `from` (a fraction).
    RolloutStart {
        /// Release.
        version: String,
        /// Duration in minutes.
        minutes: u64,
        /// Start time.
        at: i64,
        /// Starting fraction.
        from: f64,
    },
    /// Freeze a rollout at its current progress.
    RolloutPause {
        /// Release.
        version: String,
    },
    /// Let a (paused) rollout grow again from its current value over
    /// `minutes`, or over the minutes it had left when it was paused.
    RolloutResume {
        /// Release.
        version: String,
        /// Remaining duration in minutes; `None`: what pausing remembered.
        minutes: Option<u64>,
    },
    /// Remove the rollout: the release is a target for nobody.
    RolloutStop {
        /// Release.
        version: String,
    },
    /// Make the release a barrier.
    BarrierAdd {
        /// Release.
        version: String,
        /// Reason (a URL).
        reason: String,
    },
    /// Remove a barrier.
    BarrierRemove {
        /// Release.
        version: String,
    },
    /// Make the release a dead-end; stops its rollout unless `keep_rollout`.
    DeadendAdd {
        /// Release.
        version: String,
        /// Reason shown to operators.
        reason: String,
        /// Keep a live rollout (Zincati hosts keep being sent there).
        keep_rollout: bool,
    },
    /// Remove a dead-end.
    DeadendRemove {
        /// Release.
        version: String,
    },
    /// Clear the halts of a release made up to now, and restart its rollout
    /// now from `from` over `minutes`. Either defaults to what the rollout
    /// had when it was halted (`halted_at`, Unix seconds): its progress then,
    /// never the clock's share now, and the minutes it had left then.
    HaltClear {
        /// Release.
        version: String,
        /// When the (first uncleared) halt was made.
        halted_at: Option<i64>,
        /// Where the rollout restarts.
        from: Option<f64>,
        /// How long it takes from there.
        minutes: Option<u64>,
    },
}

/// Why an edit cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The release has no rollout to pause, resume or stop.
    #[error("{0} has no rollout")]
    NoRollout(String),
    /// The release is not a barrier or dead-end.
    #[error("{version} is not a {what}")]
    Missing {
        /// Release.
        version: String,
        /// `barrier` or `dead-end`.
        what: &'static str,
    },
    /// A duration out of range.
    #[error("--over must be between 1 minute and 366 days, not {0} minutes")]
    Duration(u64),
    /// A fraction out of range.
    #[error(
        "--from must be within [0, 1] (a fraction such as 0.05, or a percentage such as 5%), not {0}"
    )]
    Fraction(f64),
    /// An empty version.
    #[error("the version must not be empty")]
    EmptyVersion,
    /// A resume without `--over` of a rollout that has no remembered duration.
    #[error(
        "{0}'s rollout has no duration to resume with (it was paused without one): give --over"
    )]
    NoDuration(String),
    /// A clear that cannot tell where the rollout stood when it was halted.
    #[error(
        "to restart {0}'s rollout where it stood when it was halted, give the halt list \
         (--halt-list, for the time of the halt) or the starting point (--from)"
    )]
    NoHaltTime(String),
    /// A clear whose defaults need a rollout the policy does not have.
    #[error(
        "{0} has no rollout in the policy to restart where it stood when it was halted: \
         give --from and --over"
    )]
    NoRolloutToRestart(String),
    /// A clear without `--over` or the halt time.
    #[error(
        "without the halt list, the time {0}'s rollout had left when it was halted is unknown: \
         give --over (or --halt-list)"
    )]
    NoHaltTimeForOver(String),
    /// A clear whose rollout had no time left at the halt.
    #[error("{0}'s rollout had no time left when it was halted: give --over")]
    NoTimeLeft(String),
}

/// What an edit did, in two sentences.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What changed in the file.
    pub changed: String,
    /// What hosts will see once the document is published.
    pub fleet: String,
}

fn when(second: i64) -> String {
    Timestamp::from_second(second).map_or_else(|_| second.to_string(), |t| t.to_string())
}

fn percent(fraction: f64) -> String {
    let text = format!("{:.1}", fraction * 100.0);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// A duration in minutes as people say it: `2 d`, `1 d 12 h`, `90 min` → `1 h 30 min`.
pub fn duration_words(minutes: u64) -> String {
    let (days, hours, minutes) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days} d"));
    }
    if hours > 0 {
        parts.push(format!("{hours} h"));
    }
    if minutes > 0 || parts.is_empty() {
        parts.push(format!("{minutes} min"));
    }
    parts.join(" ")
}

/// A time as people read it: `2026-03-10 12:00 UTC`.
fn clock(second: i64) -> String {
    Timestamp::from_second(second).map_or_else(
        |_| second.to_string(),
        |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// The rollout a release gets by default: everybody, at once, for ever.
pub fn is_default(rollout: &Rollout) -> bool {
    rollout.duration_minutes.is_none() && rollout.start_value() >= 1.0
}

/// A rollout in `cairn policy`'s words: `100%`, `paused at 5%`, or
/// `5% → 100% over 2 d from 2026-03-10 12:00 UTC`.
pub fn describe_rollout(rollout: &Rollout) -> String {
    match rollout.duration_minutes {
        None if is_default(rollout) => "100%".to_string(),
        None => format!("paused at {}", percent(rollout.start_value())),
        Some(minutes) => format!(
            "{} → 100% over {} from {}",
            percent(rollout.start_value()),
            duration_words(minutes),
            clock(rollout.start())
        ),
    }
}

fn check_minutes(minutes: u64) -> Result<(), PolicyError> {
    if (1..=MAX_ROLLOUT_MINUTES).contains(&minutes) {
        Ok(())
    } else {
        Err(PolicyError::Duration(minutes))
    }
}

/// Apply one edit at time `now` (Unix seconds).
pub fn apply(updates: &mut Updates, edit: &PolicyEdit, now: i64) -> Result<Change, PolicyError> {
    let version = match edit {
        PolicyEdit::RolloutStart { version, .. }
        | PolicyEdit::RolloutPause { version }
        | PolicyEdit::RolloutResume { version, .. }
        | PolicyEdit::RolloutStop { version }
        | PolicyEdit::BarrierAdd { version, .. }
        | PolicyEdit::BarrierRemove { version }
        | PolicyEdit::DeadendAdd { version, .. }
        | PolicyEdit::DeadendRemove { version }
        | PolicyEdit::HaltClear { version, .. } => version.clone(),
    };
    if version.trim().is_empty() {
        return Err(PolicyError::EmptyVersion);
    }
    let known = updates.settings(&version);
    let current = known.clone().unwrap_or_default();
    let entry = updates.entry_mut(&version);
    let metadata = &mut entry.metadata;
    let change = match edit {
        PolicyEdit::RolloutStart {
            minutes, at, from, ..
        } => {
            check_minutes(*minutes)?;
            if !(0.0..=1.0).contains(from) {
                return Err(PolicyError::Fraction(*from));
            }
            let rollout = Rollout {
                start_epoch: Some(*at),
                start_percentage: Some(*from),
                duration_minutes: Some(*minutes),
            };
            metadata.rollout = Some(rollout);
            metadata.resume_minutes = None;
            Change {
                changed: format!(
                    "{version}: rollout from {} starting {} over {minutes} minutes",
                    percent(*from),
                    when(*at)
                ),
                fleet: format!(
                    "{version} is offered to {} of hosts at {}, growing steadily to all hosts by {}",
                    percent(*from),
                    when(*at),
                    when(rollout.end().unwrap_or(*at))
                ),
            }
        }
        PolicyEdit::RolloutPause { .. } => {
            let rollout = current
                .rollout
                .ok_or_else(|| PolicyError::NoRollout(version.clone()))?;
            let progress = rollout.progress_at(now);
            // What it had left, so that resuming continues at the same pace.
            let left = match rollout.end() {
                Some(end) => u64::try_from(end.saturating_sub(now.max(rollout.start())))
                    .ok()
                    .map(|seconds| seconds.div_ceil(60))
                    .filter(|&minutes| minutes > 0),
                None => current.resume_minutes,
            };
            metadata.rollout = Some(Rollout {
                start_epoch: Some(now.min(rollout.start())),
                start_percentage: Some(progress),
                duration_minutes: None,
            });
            metadata.resume_minutes = left;
            let remembered = left.map_or(String::new(), |minutes| {
                format!(
                    "; `resume` grows it again over the {} it had left",
                    duration_words(minutes)
                )
            });
            Change {
                changed: format!(
                    "{version}: rollout paused at {}{remembered}",
                    percent(progress)
                ),
                fleet: format!(
                    "hosts with wariness up to {progress:.3} are still offered {version}; the rest wait until it is resumed"
                ),
            }
        }
        PolicyEdit::RolloutResume { minutes, .. } => {
            let rollout = current
                .rollout
                .ok_or_else(|| PolicyError::NoRollout(version.clone()))?;
            let minutes = &minutes
                .or(current.resume_minutes)
                .ok_or_else(|| PolicyError::NoDuration(version.clone()))?;
            check_minutes(*minutes)?;
            metadata.resume_minutes = None;
            let progress = rollout.progress_at(now);
            let resumed = Rollout {
                start_epoch: Some(now),
                start_percentage: Some(progress),
                duration_minutes: Some(*minutes),
            };
            metadata.rollout = Some(resumed);
            Change {
                changed: format!(
                    "{version}: rollout resumed from {} over {}",
                    percent(progress),
                    duration_words(*minutes)
                ),
                fleet: format!(
                    "{version} reaches more hosts again from now on, all of them by {}",
                    when(resumed.end().unwrap_or(now))
                ),
            }
        }
        PolicyEdit::RolloutStop { .. } => {
            // Without a rollout in the file the release may still have the
            // default rollout in the published document; the entry, now
            // present and empty, overrides that when the document is assembled.
            metadata.rollout = None;
            metadata.resume_minutes = None;
            Change {
                changed: format!("{version}: rollout removed"),
                fleet: format!(
                    "no host is sent to {version} any more; hosts already on it stay there"
                ),
            }
        }
        PolicyEdit::BarrierAdd { reason, .. } => {
            metadata.barrier = Some(RequiredReason {
                reason: reason.clone(),
            });
            Change {
                changed: format!("{version}: barrier ({reason})"),
                fleet: format!("every older host must boot {version} before it may update further"),
            }
        }
        PolicyEdit::BarrierRemove { .. } | PolicyEdit::DeadendRemove { .. } if known.is_none() => {
            // The published document may still carry a value the policy no
            // longer mentions; an entry, even empty, is authoritative.
            Change {
                changed: format!(
                    "{version}: new entry with no barrier, dead-end or rollout; once published it replaces whatever the published document has for {version}"
                ),
                fleet: format!(
                    "{version} is no barrier or dead-end, and no host is sent to it (give it a rollout with `cairn policy rollout start {version}` to keep offering it)"
                ),
            }
        }
        PolicyEdit::BarrierRemove { .. } => {
            if current.barrier.is_none() {
                return Err(PolicyError::Missing {
                    version,
                    what: "barrier",
                });
            }
            metadata.barrier = None;
            Change {
                changed: format!("{version}: barrier removed"),
                fleet: format!("older hosts may jump past {version}"),
            }
        }
        PolicyEdit::DeadendAdd {
            reason,
            keep_rollout,
            ..
        } => {
            metadata.deadend = Some(RequiredReason {
                reason: reason.clone(),
            });
            let stopped = current.rollout.is_some() && !keep_rollout;
            if stopped {
                metadata.rollout = None;
            }
            Change {
                changed: format!(
                    "{version}: dead-end ({reason}){}",
                    if stopped {
                        "; its rollout was stopped"
                    } else {
                        ""
                    }
                ),
                fleet: format!(
                    "hosts on {version} stop updating automatically and are told: {reason}{}",
                    if stopped {
                        "; no host is sent there any more"
                    } else {
                        ""
                    }
                ),
            }
        }
        PolicyEdit::DeadendRemove { .. } => {
            if current.deadend.is_none() {
                return Err(PolicyError::Missing {
                    version,
                    what: "dead-end",
                });
            }
            metadata.deadend = None;
            Change {
                changed: format!("{version}: dead-end removed"),
                fleet: format!("hosts on {version} update normally again"),
            }
        }
        PolicyEdit::HaltClear {
            halted_at,
            from,
            minutes,
            ..
        } => {
            let restarted =
                restart_after_halt(&version, &current, *halted_at, *from, *minutes, now)?;
            metadata.rollout = Some(restarted);
            metadata.resume_minutes = None;
            metadata.halt_cleared = Some(Timestamp::from_second(now).unwrap_or_default());
            let (changed, fleet) = match restarted.duration_minutes {
                Some(minutes) => (
                    format!(
                        "{version}: halts made up to {} cleared; rollout restarts from {} over {}",
                        when(now),
                        percent(restarted.start_value()),
                        duration_words(minutes)
                    ),
                    format!(
                        "{version} is offered again to {} of hosts, growing to all of them by {}; \
                         a halt made after this clear stays in force",
                        percent(restarted.start_value()),
                        when(restarted.end().unwrap_or(now))
                    ),
                ),
                None => (
                    format!(
                        "{version}: halts made up to {} cleared; rollout restarts at {}",
                        when(now),
                        percent(restarted.start_value())
                    ),
                    format!(
                        "{version} is offered again to {} of hosts; a halt made after this \
                         clear stays in force",
                        percent(restarted.start_value())
                    ),
                ),
            };
            Change { changed, fleet }
        }
    };
    Ok(change)
}

/// The rollout a cleared release restarts with, at `now`: from `from` (else
/// its progress when halted) over `minutes` (else the time it had left when
/// halted, or the time a pause remembered).
fn restart_after_halt(
    version: &str,
    current: &crate::fcos::UpdateMetadata,
    halted_at: Option<i64>,
    from: Option<f64>,
    minutes: Option<u64>,
    now: i64,
) -> Result<Rollout, PolicyError> {
    let rollout = current.rollout;
    let from = match (from, halted_at) {
        (Some(from), _) => from,
        (None, Some(halted_at)) => rollout
            .ok_or_else(|| PolicyError::NoRolloutToRestart(version.to_string()))?
            .progress_at(halted_at),
        (None, None) => return Err(PolicyError::NoHaltTime(version.to_string())),
    };
    if !(0.0..=1.0).contains(&from) {
        return Err(PolicyError::Fraction(from));
    }
    if from >= 1.0 {
        // Everybody at once: no duration to grow over.
        return Ok(Rollout {
            start_epoch: Some(now),
            start_percentage: Some(1.0),
            duration_minutes: None,
        });
    }
    let minutes = match minutes {
        Some(minutes) => minutes,
        None => time_left_at_halt(version, current, rollout, halted_at)?,
    };
    check_minutes(minutes)?;
    Ok(Rollout {
        start_epoch: Some(now),
        start_percentage: Some(from),
        duration_minutes: Some(minutes),
    })
}

/// The minutes a rollout had left when it was halted, as `resume` would
/// grow it over.
fn time_left_at_halt(
    version: &str,
    current: &crate::fcos::UpdateMetadata,
    rollout: Option<Rollout>,
    halted_at: Option<i64>,
) -> Result<u64, PolicyError> {
    let rollout = rollout.ok_or_else(|| PolicyError::NoRolloutToRestart(version.to_string()))?;
    match (rollout.end(), halted_at) {
        (Some(end), Some(halted_at)) => {
            u64::try_from(end.saturating_sub(halted_at.max(rollout.start())))
                .ok()
                .map(|seconds| seconds.div_ceil(60))
                .filter(|&minutes| minutes > 0)
                .ok_or_else(|| PolicyError::NoTimeLeft(version.to_string()))
        }
        (Some(_), None) => Err(PolicyError::NoHaltTimeForOver(version.to_string())),
        (None, _) => current
            .resume_minutes
            .ok_or_else(|| PolicyError::NoDuration(version.to_string())),
    }
}

/// A `--from` value that is not a fraction or a percentage.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{text:?} {problem}")]
pub struct FractionError {
    /// The value given.
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl FractionError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        "bad_fraction"
    }
}

/// Parse `--from`: a fraction (`0.05`) or a percentage (`5%`), never a bare
/// number above 1, which is ambiguous (5 meaning 5% or 500%?).
pub fn parse_fraction(text: &str) -> Result<f64, FractionError> {
    let text = text.trim();
    let error = |problem| FractionError {
        text: text.to_string(),
        problem,
    };
    let value = match text.strip_suffix('%') {
        Some(number) => number
            .trim()
            .parse::<f64>()
            .map(|n| n / 100.0)
            .map_err(|_| error("is not a percentage"))?,
        None => {
            let n: f64 = text.parse().map_err(|_| error("is not a number"))?;
            if n > 1.0 {
                return Err(error(
                    "is ambiguous: write a fraction such as 0.05 or a percentage such as 5%",
                ));
            }
            n
        }
    };
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(error("is outside 0%..100%"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn start(updates: &mut Updates) {
        let edit = PolicyEdit::RolloutStart {
            version: "2".into(),
            minutes: 100,
            at: NOW,
            from: 0.0,
        };
        apply(updates, &edit, NOW).expect("start");
    }

    /// A 2-day rollout halted at 5% and cleared 2 days later restarts at 5%
    /// over the time it had left, not at the clock's 100%.
    #[test]
    fn a_cleared_halt_restarts_the_rollout_where_it_stood() {
        let two_days = 2 * 24 * 60;
        let mut updates = Updates::default();
        let edit = PolicyEdit::RolloutStart {
            version: "2".into(),
            minutes: two_days,
            at: NOW,
            from: 0.0,
        };
        apply(&mut updates, &edit, NOW).expect("start");
        let halted_at = NOW + i64::try_from(two_days * 60 / 20).expect("seconds");
        let cleared_at = halted_at + 2 * 86_400;
        let clear = |halted_at, from, minutes| PolicyEdit::HaltClear {
            version: "2".into(),
            halted_at,
            from,
            minutes,
        };
        let mut defaulted = updates.clone();
        let change = apply(
            &mut defaulted,
            &clear(Some(halted_at), None, None),
            cleared_at,
        )
        .expect("clear");
        assert!(
            change.changed.contains("from 5% over 1 d 21 h 36 min"),
            "{change:?}"
        );
        let settings = defaulted.settings("2").expect("entry");
        let rollout = settings.rollout.expect("rollout");
        assert_eq!(rollout.start(), cleared_at);
        assert!((rollout.start_value() - 0.05).abs() < 1e-9);
        assert_eq!(rollout.duration_minutes, Some(two_days * 19 / 20));
        assert_eq!(
            settings.halt_cleared.map(|t| t.as_second()),
            Some(cleared_at)
        );
        let mut given = updates.clone();
        apply(&mut given, &clear(None, Some(0.1), Some(60)), cleared_at).expect("given");
        let rollout = given
            .settings("2")
            .and_then(|s| s.rollout)
            .expect("rollout");
        assert_eq!(
            (rollout.start_value(), rollout.duration_minutes),
            (0.1, Some(60))
        );
        let mut neither = updates.clone();
        assert_eq!(
            apply(&mut neither, &clear(None, None, None), cleared_at),
            Err(PolicyError::NoHaltTime("2".into()))
        );
        assert_eq!(
            apply(&mut neither, &clear(None, Some(0.1), None), cleared_at),
            Err(PolicyError::NoHaltTimeForOver("2".into()))
        );
        let late = NOW + i64::try_from(two_days * 60).expect("seconds");
        let mut finished = updates.clone();
        apply(&mut finished, &clear(Some(late), None, None), cleared_at).expect("at 100%");
        let rollout = finished
            .settings("2")
            .and_then(|s| s.rollout)
            .expect("rollout");
        assert!(is_default(&rollout), "{rollout:?}");
    }

    #[test]
    fn start_pause_resume_stop() {
        let mut updates = Updates::default();
        start(&mut updates);
        let rollout = updates
            .settings("2")
            .and_then(|s| s.rollout)
            .expect("rollout");
        assert_eq!(rollout.progress_at(NOW + 50 * 60), 0.5);
        // Pause at 50%: frozen for ever after.
        let change = apply(
            &mut updates,
            &PolicyEdit::RolloutPause {
                version: "2".into(),
            },
            NOW + 50 * 60,
        )
        .expect("pause");
        assert!(change.changed.contains("50%"), "{change:?}");
        let paused = updates
            .settings("2")
            .and_then(|s| s.rollout)
            .expect("rollout");
        assert_eq!(paused.progress_at(NOW + 50 * 60), 0.5);
        assert_eq!(paused.progress_at(NOW + 10_000 * 60), 0.5);
        // Pausing remembers the 50 minutes left: resuming without a
        // duration continues at the same pace.
        assert_eq!(
            change.changed,
            "2: rollout paused at 50%; `resume` grows it again over the 50 min it had left"
        );
        let later = NOW + 500 * 60;
        let mut remembered = updates.clone();
        let resume = |minutes| PolicyEdit::RolloutResume {
            version: "2".into(),
            minutes,
        };
        let change = apply(&mut remembered, &resume(None), later).expect("resume");
        assert_eq!(change.changed, "2: rollout resumed from 50% over 50 min");
        let resumed = remembered.settings("2").and_then(|s| s.rollout);
        assert_eq!(resumed.map(|r| r.progress_at(later + 25 * 60)), Some(0.75));
        assert_eq!(
            remembered.settings("2").map(|s| s.resume_minutes),
            Some(None)
        );
        assert_eq!(
            apply(
                &mut remembered,
                &PolicyEdit::RolloutPause {
                    version: "2".into()
                },
                later
            )
            .and_then(|_| apply(&mut remembered, &resume(None), later))
            .map(|c| c.changed),
            Ok("2: rollout resumed from 50% over 50 min".to_string())
        );
        // Resume over 10 minutes from 50%: --over changes the pace.
        apply(&mut updates, &resume(Some(10)), later).expect("resume");
        let resumed = updates
            .settings("2")
            .and_then(|s| s.rollout)
            .expect("rollout");
        assert_eq!(resumed.progress_at(later), 0.5);
        assert_eq!(resumed.progress_at(later + 5 * 60), 0.75);
        assert_eq!(resumed.progress_at(later + 11 * 60), 1.0);
        // Stop: the entry stays, with no rollout.
        apply(
            &mut updates,
            &PolicyEdit::RolloutStop {
                version: "2".into(),
            },
            later,
        )
        .expect("stop");
        assert_eq!(updates.settings("2").map(|s| s.rollout), Some(None));
        // Stopping a release's default rollout, which lives only in the
        // published document, writes an empty entry that overrides it.
        let stop = PolicyEdit::RolloutStop {
            version: "7".into(),
        };
        apply(&mut updates, &stop, later).expect("stop");
        assert_eq!(updates.settings("7").map(|s| s.rollout), Some(None));
    }

    #[test]
    fn deadend_stops_a_rollout_unless_kept() {
        let mut updates = Updates::default();
        start(&mut updates);
        let edit = PolicyEdit::DeadendAdd {
            version: "2".into(),
            reason: "bad".into(),
            keep_rollout: true,
        };
        apply(&mut updates, &edit, NOW).expect("deadend");
        assert!(updates.settings("2").and_then(|s| s.rollout).is_some());
        let edit = PolicyEdit::DeadendAdd {
            version: "2".into(),
            reason: "bad".into(),
            keep_rollout: false,
        };
        let change = apply(&mut updates, &edit, NOW).expect("deadend");
        assert!(change.changed.contains("stopped"));
        assert!(updates.settings("2").and_then(|s| s.rollout).is_none());
        apply(
            &mut updates,
            &PolicyEdit::DeadendRemove {
                version: "2".into(),
            },
            NOW,
        )
        .expect("remove");
        assert!(
            apply(
                &mut updates,
                &PolicyEdit::DeadendRemove {
                    version: "2".into()
                },
                NOW
            )
            .is_err()
        );
    }

    #[test]
    fn barriers_and_bad_values() {
        let mut updates = Updates::default();
        let edit = PolicyEdit::BarrierAdd {
            version: "1".into(),
            reason: "https://x".into(),
        };
        apply(&mut updates, &edit, NOW).expect("barrier");
        assert_eq!(updates.releases.len(), 1);
        apply(
            &mut updates,
            &PolicyEdit::BarrierRemove {
                version: "1".into(),
            },
            NOW,
        )
        .expect("remove");
        let bad = PolicyEdit::RolloutStart {
            version: "1".into(),
            minutes: 0,
            at: NOW,
            from: 0.0,
        };
        assert_eq!(
            apply(&mut updates, &bad, NOW),
            Err(PolicyError::Duration(0))
        );
        let bad = PolicyEdit::RolloutPause {
            version: "9".into(),
        };
        assert!(apply(&mut updates, &bad, NOW).is_err());
    }

    #[test]
    fn fractions_and_percentages() {
        assert_eq!(parse_fraction("0.05"), Ok(0.05));
        assert_eq!(parse_fraction("5%"), Ok(0.05));
        assert_eq!(parse_fraction("100%"), Ok(1.0));
        assert_eq!(parse_fraction("1"), Ok(1.0));
        assert!(parse_fraction("5").is_err_and(|e| e.to_string().contains("ambiguous")));
        assert_eq!(
            parse_fraction("lots").map_err(|e| e.kind()),
            Err("bad_fraction")
        );
        assert!(parse_fraction("150%").is_err());
        assert!(parse_fraction("-0.1").is_err());
        assert!(parse_fraction("lots").is_err());
    }
}
