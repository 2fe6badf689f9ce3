//! Zincati's merged settings turned into Cairn's keys: what carries over as
//! it is, what changes form (a templated URL, a node id), what Cairn has no
//! use for, and what it refuses.

use super::Line;
use super::read::{Findings, Merged, Set};
use super::urls::{Endpoint, carry_url};
use cairn_graph::windows::{parse_day, parse_time};

/// What the host knows for Zincati's URL templates and the node id.
#[derive(Debug, Clone)]
pub struct HostValues {
    /// `${basearch}`: Fedora's name for the architecture (`x86_64`).
    pub basearch: Option<String>,
    /// `${platform}`: `ignition.platform.id` from the kernel command line.
    pub platform: Option<String>,
    /// `${stream}`: the stream the host follows.
    pub stream: Option<String>,
    /// The app-specific node id Zincati derived from `/etc/machine-id`, or
    /// why it cannot be told.
    pub node_id: Result<String, NodeIdError>,
}

/// Why the host's node id cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// `/etc/machine-id` cannot be read.
    #[error("/etc/machine-id cannot be read ({0})")]
    Unreadable(String),
    /// It holds no machine id.
    #[error("{0}")]
    Invalid(String),
}

impl NodeIdError {
    /// A short, fixed label.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeIdError::Unreadable(_) => "machine_id_unreadable",
            NodeIdError::Invalid(_) => "invalid_machine_id",
        }
    }
}

/// Cairn's values, ready to be written.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Cairn {
    pub enabled: Option<bool>,
    pub allow_downgrade: Option<bool>,
    pub check_interval_seconds: Option<i64>,
    pub source: Option<String>,
    pub group: Option<String>,
    pub rollout_wariness: Option<f64>,
    pub time_zone: Option<String>,
    pub windows: Vec<CairnWindow>,
    pub fleet_lock_base_url: Option<String>,
}

/// A `[[strategy.window]]`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CairnWindow {
    pub days: Vec<&'static str>,
    pub start_time: String,
    pub length_minutes: i64,
}

/// Cairn's limits for the check interval, in seconds.
const CHECK_SECONDS: std::ops::RangeInclusive<i64> = 10..=7 * 24 * 3600;

/// A week, the longest window both tools take.
const WEEK_MINUTES: i64 = 7 * 24 * 60;

/// Turn `merged` into Cairn's values; what is not carried goes to `findings`.
pub(super) fn convert(merged: &Merged, host: &HostValues, findings: &mut Findings) -> Cairn {
    let mut cairn = Cairn {
        enabled: merged.enabled.as_ref().map(|s| s.value),
        allow_downgrade: merged.allow_downgrade.as_ref().map(|s| s.value),
        ..Cairn::default()
    };
    if let Some(Set { value, file }) = &merged.steady_interval_secs {
        if CHECK_SECONDS.contains(value) {
            cairn.check_interval_seconds = Some(*value);
        } else {
            findings.refused.push(Line::key(
                file,
                "agent.timing.steady_interval_secs",
                format!("{value} s: Cairn checks every 10 seconds to 7 days (updates.check_interval_seconds)"),
            ));
        }
    }
    let group = group(merged, findings);
    cairn.group = group.clone();
    let group = group.unwrap_or_else(|| "default".to_string());
    cairn.source = source(merged, host, &group, findings);
    cairn.rollout_wariness = wariness(merged, host, findings);
    strategy(merged, host, &group, &mut cairn, findings);
    cairn
}

/// `identity.group`: carried when Zincati would take it. An empty one is
/// Zincati's default, `default`.
fn group(merged: &Merged, findings: &mut Findings) -> Option<String> {
    let Set { value, file } = merged.group.as_ref()?;
    if value.is_empty() {
        return None;
    }
    let valid = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !valid {
        findings.refused.push(Line::key(
            file,
            "identity.group",
            format!("{value:?}: Zincati takes only letters, digits, '.' and '-' (so does the FleetLock protocol)"),
        ));
        return None;
    }
    Some(value.clone())
}

/// `cincinnati.base_url` → `updates.source = "cincinnati:<url>"`.
fn source(
    merged: &Merged,
    host: &HostValues,
    group: &str,
    findings: &mut Findings,
) -> Option<String> {
    const KEY: &str = "cincinnati.base_url";
    let Some(Set { value, file }) = &merged.cincinnati_base_url else {
        findings.notes.push(Line::unset(
            KEY,
            "not set (Zincati would not start without it); no updates.source is written, so Cairn uses its default source",
        ));
        return None;
    };
    let url = carry_url(
        KEY,
        value,
        file,
        host,
        group,
        Endpoint::Cincinnati,
        findings,
    )?;
    Some(format!("cincinnati:{url}"))
}

/// `identity.rollout_wariness`, or the one Fedora's server derived from a
/// configured `identity.node_uuid`; nothing when Cairn derives the same.
fn wariness(merged: &Merged, host: &HostValues, findings: &mut Findings) -> Option<f64> {
    const KEY: &str = "identity.rollout_wariness";
    let explicit = match &merged.rollout_wariness {
        Some(Set { value, file }) if !(0.0..=1.0).contains(value) => {
            findings.refused.push(Line::key(
                file,
                KEY,
                format!("{value} is outside [0, 1]; Zincati would not start with it"),
            ));
            return None;
        }
        Some(set) => Some(set.value),
        None => None,
    };
    let configured_id = match &merged.node_uuid {
        Some(Set { value, file }) if !value.is_empty() => match normalized_id(value) {
            Some(id) => Some((id, file)),
            None => {
                findings.refused.push(Line::key(
                    file,
                    "identity.node_uuid",
                    format!("{value:?} is not a 128-bit id; Zincati would not start with it"),
                ));
                return explicit;
            }
        },
        _ => None,
    };
    let derived = |id: &str| cairn_graph::wariness::from_app_id(id);
    match (explicit, configured_id) {
        (Some(w), Some((_, file))) => {
            findings.notes.push(Line::key(file, "identity.node_uuid", format!(
                "not carried: Cairn has no node id setting; its FleetLock id is derived from /etc/machine-id{} (the rollout position comes from identity.rollout_wariness = {w})",
                derived_id_suffix(host),
            )));
            Some(w)
        }
        (Some(w), None) => Some(w),
        (None, Some((id, file))) => {
            let w = derived(&id);
            findings.notes.push(Line::key(file, "identity.node_uuid", format!(
                "not carried: Cairn has no node id setting; its FleetLock id is derived from /etc/machine-id{}. The rollout position Fedora's server gave this id is kept as identity.rollout_wariness = {w}",
                derived_id_suffix(host),
            )));
            Some(w)
        }
        (None, None) => {
            let message = match &host.node_id {
                Ok(id) => format!(
                    "not set, so none is written: Cairn derives {} from /etc/machine-id, as Fedora's server derived it from Zincati's node id {id}",
                    derived(id)
                ),
                Err(why) => format!(
                    "not set, so none is written; but {why}, so the agent cannot derive it: set identity.rollout_wariness"
                ),
            };
            findings.notes.push(Line::unset(KEY, message));
            None
        }
    }
}

fn derived_id_suffix(host: &HostValues) -> String {
    match &host.node_id {
        Ok(id) => format!(" ({id})"),
        Err(_) => String::new(),
    }
}

/// A 128-bit id as Zincati sends it: 32 lower-case hex digits. Zincati
/// takes it plain or with the UUID's dashes.
fn normalized_id(text: &str) -> Option<String> {
    let plain = text.len() == 32;
    let dashed = text.len() == 36
        && text
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    ((plain || dashed) && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// `updates.strategy` and the settings of the strategy in use.
fn strategy(
    merged: &Merged,
    host: &HostValues,
    group: &str,
    cairn: &mut Cairn,
    findings: &mut Findings,
) {
    let (name, file) = match &merged.strategy {
        Some(Set { value, file }) => (value.as_str(), Some(file.as_str())),
        None => ("", None),
    };
    let name = if name.is_empty() { "immediate" } else { name };
    match name {
        "immediate" => {}
        "periodic" => periodic(merged, file, cairn, findings),
        "fleet_lock" => {
            const KEY: &str = "updates.fleet_lock.base_url";
            match &merged.fleet_lock_base_url {
                Some(Set { value, file }) => {
                    cairn.fleet_lock_base_url =
                        carry_url(KEY, value, file, host, group, Endpoint::FleetLock, findings);
                }
                None => findings.refused.push(Line::unset(
                    KEY,
                    "not set, but the strategy is fleet_lock; Zincati would not start without it",
                )),
            }
        }
        other => {
            findings.refused.push(Line::key(
                file.unwrap_or("-"),
                "updates.strategy",
                format!("{other:?}: Zincati knows immediate, periodic and fleet_lock, and would not start with it"),
            ));
            return;
        }
    }
    // Settings of a strategy not in use: Zincati read them and did nothing.
    let unused = format!("not carried: the strategy is {name}, so Zincati did not use it");
    if name != "fleet_lock"
        && let Some(Set { file, .. }) = &merged.fleet_lock_base_url
    {
        findings.notes.push(Line::key(
            file,
            "updates.fleet_lock.base_url",
            unused.clone(),
        ));
    }
    if name != "periodic" {
        if let Some(Set { file, .. }) = &merged.time_zone {
            findings.notes.push(Line::key(
                file,
                "updates.periodic.time_zone",
                unused.clone(),
            ));
        }
        let mut files: Vec<&str> = merged.windows.iter().map(|w| w.file.as_str()).collect();
        files.dedup();
        for file in files {
            findings
                .notes
                .push(Line::key(file, "updates.periodic.window", unused.clone()));
        }
    }
}

/// The `periodic` strategy: its windows and its time zone.
fn periodic(
    merged: &Merged,
    strategy_file: Option<&str>,
    cairn: &mut Cairn,
    findings: &mut Findings,
) {
    const KEY: &str = "updates.periodic.window";
    let refused_before = findings.refused.len();
    for Set { value, file } in &merged.windows {
        if value.days.is_empty() {
            findings.notes.push(Line::key(
                file,
                KEY,
                "not carried: a window without days, which Zincati ignores",
            ));
            continue;
        }
        let mut days = Vec::new();
        for day in &value.days {
            match zincati_day(day) {
                Some(short) => days.push(short),
                // Zincati's parser misspells Tuesday, so a file naming it
                // never ran: carrying it would reboot on days Zincati never did.
                None => match parse_day(day) {
                    Some(weekday) => {
                        let short = short_name(weekday);
                        findings.refused.push(Line::key(
                            file,
                            KEY,
                            format!(
                                "day {day:?}: Zincati's parser refuses it (it knows \"tue\" and the misspelling \"tuesady\"), so Zincati never ran with this file; if {short} is meant, write \"{short}\""
                            ),
                        ));
                    }
                    None => findings.refused.push(Line::key(
                        file,
                        KEY,
                        format!("day {day:?} is not a day of the week"),
                    )),
                },
            }
        }
        let start = zincati_time(&value.start_time);
        if start.is_none() {
            findings.refused.push(Line::key(
                file,
                KEY,
                format!(
                    "start_time {:?} is not hh:mm (24 h); Zincati would not start with it",
                    value.start_time
                ),
            ));
        }
        if !(1..=WEEK_MINUTES).contains(&value.length_minutes) {
            findings.refused.push(Line::key(
                file,
                KEY,
                format!(
                    "length_minutes {} is outside 1 minute to 1 week; Zincati would not start with it",
                    value.length_minutes
                ),
            ));
        }
        if let Some((hour, minute)) = start {
            cairn.windows.push(CairnWindow {
                days,
                start_time: format!("{hour:02}:{minute:02}"),
                length_minutes: value.length_minutes,
            });
        }
    }
    if cairn.windows.is_empty() && findings.refused.len() == refused_before {
        findings.refused.push(Line::key(
            strategy_file.unwrap_or("-"),
            "updates.strategy",
            "periodic without a single window; Zincati would not start (its weekly calendar is empty)",
        ));
    }
    let zone = merged
        .time_zone
        .as_ref()
        .map_or("UTC", |s| s.value.as_str());
    if crate::windows::parse_zone(zone).is_none() {
        findings.refused.push(Line::key(
            merged.time_zone.as_ref().map_or("-", |s| s.file.as_str()),
            "updates.periodic.time_zone",
            format!("{zone:?} is not a time zone Cairn knows (an IANA name or \"localtime\")"),
        ));
        return;
    }
    cairn.time_zone = Some(zone.to_string());
}

/// A day name as Zincati's parser takes it (C locale, any case, its typo included).
fn zincati_day(day: &str) -> Option<&'static str> {
    Some(match day.to_lowercase().as_str() {
        "mon" | "monday" => "Mon",
        "tue" | "tuesady" => "Tue",
        "wed" | "wednesday" => "Wed",
        "thu" | "thursday" => "Thu",
        "fri" | "friday" => "Fri",
        "sat" | "saturday" => "Sat",
        "sun" | "sunday" => "Sun",
        _ => return None,
    })
}

fn short_name(day: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match day {
        Monday => "Mon",
        Tuesday => "Tue",
        Wednesday => "Wed",
        Thursday => "Thu",
        Friday => "Fri",
        Saturday => "Sat",
        Sunday => "Sun",
    }
}

/// `h:m` as Zincati's parser takes it: two fields, hour ≤ 23, minute ≤ 59.
fn zincati_time(text: &str) -> Option<(u8, u8)> {
    let (hour, minute) = text.split_once(':')?;
    let hour: u8 = hour.parse().ok()?;
    let minute: u8 = minute.parse().ok()?;
    // Cairn reads the same time from the normalized text.
    (hour <= 23 && minute <= 59 && parse_time(&format!("{hour:02}:{minute:02}")).is_some())
        .then_some((hour, minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_taken_as_zincati_takes_them() {
        assert_eq!(
            normalized_id("975228D4-6DC9-4622-B9BB-E16671E2B58D").as_deref(),
            Some("975228d46dc94622b9bbe16671e2b58d")
        );
        assert!(normalized_id("975228d46dc94622b9bbe16671e2b58").is_none());
        assert!(normalized_id("975228d4-6dc94622-b9bb-e16671e2b58d0").is_none());
    }

    #[test]
    fn times_and_days_follow_zincatis_parser() {
        assert_eq!(zincati_time("7:5"), Some((7, 5)));
        assert_eq!(zincati_time("24:00"), None);
        assert_eq!(zincati_time("12:00:00"), None);
        assert_eq!(zincati_day("SATURDAY"), Some("Sat"));
        assert_eq!(zincati_day("tuesady"), Some("Tue"));
        assert_eq!(zincati_day("tuesday"), None);
    }
}
