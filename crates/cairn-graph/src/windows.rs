//! Weekly maintenance windows in a time zone.
//!
//! A window opens on each of its days at `start_time` local time and stays open
//! for `length_minutes` of real time. Around daylight-saving changes that means:
//! a start time that does not exist that day (the spring-forward gap) opens at
//! the first valid instant after it; a start time that happens twice (the
//! fall-back fold) opens at the first occurrence; and a window that spans the
//! change is still `length_minutes` long, so it ends an hour earlier or later
//! on the wall clock. Unlike Zincati, the end is exclusive: a 60-minute window
//! from 23:00 closes at 00:00.
//!
//! The zone comes in already loaded: finding one by name reads the system's
//! time zone database, so that lookup stays with the caller (the agent's
//! `windows::parse_zone`).

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, ZonedDateTime};

/// One window: the days it opens on, when, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Days it opens on.
    pub days: Vec<Weekday>,
    /// Local opening time.
    pub start: Time,
    /// Length in minutes (1 to one week).
    pub length_minutes: u32,
}

/// A week of windows in one time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Windows; they may overlap.
    pub windows: Vec<Window>,
    /// The zone they are written in.
    pub zone: TimeZone,
    /// The zone's name, for messages.
    pub zone_name: String,
}

/// Longest window: one week.
pub const MAX_LENGTH_MINUTES: u32 = 7 * 24 * 60;

/// Parse a day name (`Mon`, `monday`, ... in the C locale).
pub fn parse_day(text: &str) -> Option<Weekday> {
    let lower = text.trim().to_ascii_lowercase();
    let day = match lower.as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    };
    Some(day)
}

/// Parse `HH:MM` (24-hour).
pub fn parse_time(text: &str) -> Option<Time> {
    let (hour, minute) = text.trim().split_once(':')?;
    let hour: i8 = hour.parse().ok()?;
    let minute: i8 = minute.parse().ok()?;
    Time::new(hour, minute, 0, 0).ok()
}

impl Schedule {
    /// Openings (start, end) that may contain `now` or come within the next week.
    fn openings_around(&self, now: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let today = now.to_zoned_datetime(self.zone.clone()).date();
        let mut openings = Vec::new();
        // A window can last a week, so one that opened up to 7 days ago may still be open.
        for offset in -8i64..=8 {
            let Ok(date) = today.checked_add(offset.days()) else {
                continue;
            };
            for window in &self.windows {
                if !window.days.contains(&date.weekday()) {
                    continue;
                }
                let Ok(start) = date
                    .to_datetime(window.start)
                    .to_zoned_datetime(self.zone.clone())
                else {
                    continue;
                };
                let start = start.timestamp();
                let length = SignedDuration::from_mins(i64::from(window.length_minutes));
                if let Ok(end) = start.checked_add(length) {
                    openings.push((start, end));
                }
            }
        }
        openings.sort();
        openings
    }

    /// True while some window is open.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.openings_around(now)
            .iter()
            .any(|&(start, end)| start <= now && now < end)
    }

    /// When the next window opens (now, if one is open).
    pub fn next_opening(&self, now: Timestamp) -> Option<Timestamp> {
        if self.is_open(now) {
            return Some(now);
        }
        self.openings_around(now)
            .into_iter()
            .map(|(start, _)| start)
            .find(|&start| start > now)
    }

    /// When the current window closes, if one is open.
    pub fn closes_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.openings_around(now)
            .into_iter()
            .filter(|&(start, end)| start <= now && now < end)
            .map(|(_, end)| end)
            .max()
    }

    /// `Sat 02:00 Europe/Berlin`, for status lines.
    pub fn describe(&self, instant: Timestamp) -> String {
        let zoned: ZonedDateTime = instant.to_zoned_datetime(self.zone.clone());
        format!("{} {}", zoned.strftime("%a %H:%M"), self.zone_name)
    }

    /// Total open minutes per week (overlaps counted once), for the startup log.
    pub fn weekly_minutes(&self) -> u32 {
        let mut minutes = std::collections::BTreeSet::new();
        for window in &self.windows {
            for day in &window.days {
                let day_index = i64::from(day.to_monday_zero_offset());
                let start = day_index * 1440
                    + i64::from(window.start.hour()) * 60
                    + i64::from(window.start.minute());
                for m in 0..i64::from(window.length_minutes) {
                    minutes.insert((start + m) % (7 * 1440));
                }
            }
        }
        u32::try_from(minutes.len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(zone: &str, days: &[&str], start: &str, length: u32) -> Schedule {
        Schedule {
            windows: vec![Window {
                days: days.iter().map(|d| parse_day(d).expect("day")).collect(),
                start: parse_time(start).expect("time"),
                length_minutes: length,
            }],
            // Tests may read the time zone database; the code under test does not.
            zone: TimeZone::get(zone).expect("zone"),
            zone_name: zone.to_string(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn parses_days_and_times() {
        assert_eq!(parse_day("Sat"), Some(Weekday::Saturday));
        assert_eq!(
            parse_day("Tuesday"),
            Some(Weekday::Tuesday),
            "long names work"
        );
        assert_eq!(parse_day("Sab"), None);
        assert_eq!(parse_time("23:30"), Time::new(23, 30, 0, 0).ok());
        assert_eq!(parse_time("24:00"), None);
        assert_eq!(parse_time("7"), None);
    }

    #[test]
    fn open_and_closed_with_an_exclusive_end() {
        let s = schedule("UTC", &["Sat"], "23:00", 60);
        // 2026-11-28 is a Saturday.
        assert!(!s.is_open(at("2026-11-28T22:59:59Z")));
        assert!(s.is_open(at("2026-11-28T23:00:00Z")));
        assert!(
            s.is_open(at("2026-11-28T23:59:59Z")),
            "across midnight into Sunday"
        );
        assert!(!s.is_open(at("2026-11-29T00:00:00Z")));
        assert_eq!(
            s.next_opening(at("2026-11-26T12:00:00Z")),
            Some(at("2026-11-28T23:00:00Z"))
        );
        assert_eq!(
            s.closes_at(at("2026-11-28T23:30:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
        assert_eq!(s.describe(at("2026-11-28T23:00:00Z")), "Sat 23:00 UTC");
    }

    #[test]
    fn a_window_across_the_week_boundary() {
        let s = schedule("UTC", &["Sun"], "22:00", 240);
        assert!(
            s.is_open(at("2026-11-30T01:00:00Z")),
            "Monday 01:00 is still Sunday's window"
        );
        assert!(!s.is_open(at("2026-11-30T02:00:00Z")));
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let s = schedule("Europe/Berlin", &["Sun"], "02:30", 60);
        // 2026-03-29: clocks jump from 02:00 to 03:00; 02:30 does not exist.
        assert_eq!(
            s.next_opening(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-29T01:30:00Z")),
            "03:30 CEST"
        );
        assert!(s.is_open(at("2026-03-29T02:00:00Z")));
        assert!(!s.is_open(at("2026-03-29T02:30:00Z")), "60 real minutes");
        // 2026-10-25: 02:30 happens twice; the first one (CEST) opens the window.
        assert_eq!(
            s.next_opening(at("2026-10-24T12:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
        // A normal winter Sunday: 02:30 CET is 01:30 UTC.
        assert_eq!(
            s.next_opening(at("2026-11-28T12:00:00Z")),
            Some(at("2026-11-29T01:30:00Z"))
        );
        assert_eq!(
            s.describe(at("2026-11-29T01:30:00Z")),
            "Sun 02:30 Europe/Berlin"
        );
    }

    #[test]
    fn weekly_length_counts_overlaps_once() {
        let mut s = schedule("UTC", &["Mon", "Tue"], "10:00", 60);
        s.windows.push(Window {
            days: vec![Weekday::Monday],
            start: parse_time("10:30").expect("time"),
            length_minutes: 60,
        });
        assert_eq!(s.weekly_minutes(), 60 + 30 + 60);
    }
}
