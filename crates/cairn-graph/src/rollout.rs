//! Phased rollouts: how far a rollout has progressed at a given time.
//!
//! The arithmetic follows Fedora CoreOS's policy engine to the bit, including
//! its defaults (start 0, start value 0.0) and its one-minute minimum duration,
//! so a Cairn server and a Cairn agent hide exactly the edges Fedora's server
//! would hide for the same wariness and time.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A rollout of one release, in the Fedora CoreOS `updates` vocabulary.
///
/// Every field is optional so that documents converted from Fedora keep the
/// exact shape they had; the documented defaults apply when a field is absent.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Rollout {
    /// Unix time (seconds) when the rollout starts. Absent means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 253_402_300_799i64))]
    pub start_epoch: Option<i64>,
    /// Fraction of the fleet, in [0, 1], offered the release at `start_epoch`. Absent means 0.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub start_percentage: Option<f64>,
    /// Minutes from `start_epoch` until the whole fleet is offered the release.
    /// Absent means the rollout never grows past `start_percentage`; 0 is
    /// treated as 1 minute, as Fedora's policy engine does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 527_040))]
    pub duration_minutes: Option<u64>,
}

impl Rollout {
    /// A rollout that offers the release to everybody from the start.
    pub fn immediate() -> Self {
        Rollout {
            start_percentage: Some(1.0),
            ..Rollout::default()
        }
    }

    /// The start time in Unix seconds, with the default applied.
    pub fn start(&self) -> i64 {
        self.start_epoch.unwrap_or(0)
    }

    /// The starting fraction, with the default applied.
    pub fn start_value(&self) -> f64 {
        self.start_percentage.unwrap_or(0.0)
    }

    /// The end time in Unix seconds, when the rollout has a duration.
    pub fn end(&self) -> Option<i64> {
        let minutes = self.duration_minutes?.max(1);
        let seconds = i64::try_from(minutes.saturating_mul(60)).unwrap_or(i64::MAX);
        Some(self.start().saturating_add(seconds))
    }

    /// Progress in [0, 1] at `now`.
    pub fn progress(&self, now: Timestamp) -> f64 {
        self.progress_at(now.as_second())
    }

    /// Progress at `now` given in Unix seconds; the formula of Fedora's policy engine.
    pub fn progress_at(&self, now: i64) -> f64 {
        let start = self.start();
        let start_value = self.start_value();
        if now < start {
            return 0.0;
        }
        let Some(end) = self.end() else {
            return start_value;
        };
        if now > end {
            return 1.0;
        }
        let rate = (1.0 - start_value) / end.saturating_sub(start) as f64;
        start_value + rate * now.saturating_sub(start) as f64
    }

    /// True when a node of this wariness may not take the release at `now`.
    /// The comparison is strict: a wariness equal to the progress is offered.
    pub fn hides(&self, wariness: f64, now: i64) -> bool {
        wariness > self.progress_at(now)
    }

    /// The first Unix second after `now` at which a node of this wariness is
    /// offered the release, or `None` when it already is or never will be.
    pub fn visible_from(&self, wariness: f64, now: i64) -> Option<i64> {
        if !self.hides(wariness, now) {
            return None;
        }
        let start = self.start();
        let last = match self.end() {
            // Progress is 1.0 from end + 1 on, so the search ends there.
            Some(end) => end.saturating_add(1),
            None => start,
        };
        let mut low = now.max(start.saturating_sub(1));
        if self.hides(wariness, last) {
            return None;
        }
        // Progress never decreases, so bisect for the first visible second.
        // The width is computed in i128: start and end may come from untrusted metadata.
        let mut high = last;
        while i128::from(high) - i128::from(low) > 1 {
            let middle = low + ((i128::from(high) - i128::from(low)) / 2) as i64;
            if self.hides(wariness, middle) {
                low = middle;
            } else {
                high = middle;
            }
        }
        Some(high.max(now + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_784_728_800;

    fn rollout(start_value: f64, minutes: Option<u64>) -> Rollout {
        Rollout {
            start_epoch: Some(START),
            start_percentage: Some(start_value),
            duration_minutes: minutes,
        }
    }

    #[test]
    fn progress_before_during_and_after() {
        let r = rollout(0.0, Some(2880));
        assert_eq!(r.progress_at(START - 1), 0.0);
        assert_eq!(r.progress_at(START), 0.0);
        assert_eq!(r.progress_at(START + 1440 * 60), 0.5);
        assert_eq!(r.progress_at(START + 2880 * 60 + 1), 1.0);
        assert_eq!(r.progress_at(i64::MAX), 1.0);
    }

    #[test]
    fn start_value_shifts_the_line() {
        let r = rollout(0.2, Some(100));
        assert_eq!(r.progress_at(START), 0.2);
        let mid = r.progress_at(START + 50 * 60);
        assert!((mid - 0.6).abs() < 1e-12, "{mid}");
    }

    #[test]
    fn without_duration_progress_stays_at_start_value() {
        let r = rollout(0.3, None);
        assert_eq!(r.progress_at(START - 1), 0.0);
        assert_eq!(r.progress_at(START), 0.3);
        assert_eq!(r.progress_at(START + 10_000_000), 0.3);
    }

    #[test]
    fn zero_duration_counts_as_one_minute() {
        let r = rollout(0.0, Some(0));
        assert_eq!(r.end(), Some(START + 60));
        assert_eq!(r.progress_at(START + 30), 0.5);
    }

    #[test]
    fn defaults_apply_when_fields_are_absent() {
        let r = Rollout::default();
        assert_eq!(r.progress_at(0), 0.0);
        assert_eq!(r.progress_at(1_000), 0.0);
        assert_eq!(Rollout::immediate().progress_at(0), 1.0);
    }

    #[test]
    fn strict_comparison_offers_equal_wariness() {
        let r = rollout(0.0, Some(2880));
        let now = START + 1440 * 60;
        assert!(!r.hides(0.5, now));
        assert!(r.hides(0.500001, now));
        assert!(
            !r.hides(0.0, START - 100),
            "wariness 0 sees unstarted rollouts"
        );
        assert!(!r.hides(f64::NAN, now), "NaN never hides, as in Fedora");
    }

    #[test]
    fn visible_from_finds_the_first_second() {
        let r = rollout(0.0, Some(2880));
        let t = r.visible_from(0.61, START).expect("becomes visible");
        assert!(!r.hides(0.61, t));
        assert!(r.hides(0.61, t - 1));
        assert_eq!(r.visible_from(0.61, t), None, "already visible");
        let full = r.visible_from(1.0, START).expect("visible at the end");
        assert!(!r.hides(1.0, full) && r.hides(1.0, full - 1));
        // Not started yet, and the node is within the start value.
        let r = rollout(0.4, Some(60));
        assert_eq!(r.visible_from(0.3, START - 500), Some(START));
        // No duration: never beyond the start value.
        assert_eq!(rollout(0.4, None).visible_from(0.5, START), None);
        // Extreme values from untrusted metadata do not overflow.
        let huge = Rollout {
            start_epoch: Some(0),
            start_percentage: None,
            duration_minutes: Some(u64::MAX),
        };
        assert!(huge.visible_from(0.5, -1000).is_some());
        let early = Rollout {
            start_epoch: Some(i64::MIN),
            ..huge
        };
        if let Some(t) = early.visible_from(1.0, i64::MIN) {
            assert!(!early.hides(1.0, t) && early.hides(1.0, t - 1));
        }
    }
}
