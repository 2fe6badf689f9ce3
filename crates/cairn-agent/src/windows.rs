//! Time zones for maintenance windows, by name.
//!
//! The schedule itself is pure and lives in [`cairn_graph::windows`]; finding
//! a zone reads the system's time zone database (and `/etc/localtime`), so
//! that lookup stays here, with the agent's other I/O.

use jiff::tz::TimeZone;

/// A zone by IANA name, or the system's for `localtime`.
pub fn parse_zone(name: &str) -> Option<TimeZone> {
    match name {
        "localtime" => Some(TimeZone::system()),
        _ => TimeZone::get(name).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_zones_by_iana_name() {
        assert!(parse_zone("Europe/Berlin").is_some());
        assert!(parse_zone("UTC").is_some());
        assert!(parse_zone("Mars/Olympus").is_none());
    }
}
