//! A node's wariness: its place in every phased rollout, from 0 (first) to 1 (last).
//!
//! Fedora CoreOS's server hashes the node's app-specific id with SipHash-1-3.
//! Cairn computes the very same number on the node, so a host moving from
//! Zincati keeps its place in a rollout, and it never has to send the id to
//! anyone. The hash comes from the `siphasher` crate because the standard
//! library does not promise that `DefaultHasher` stays SipHash-1-3.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

/// The smallest derived wariness: a derived node never sees an unstarted rollout.
pub const MIN_DERIVED: f64 = 0.000_001;

/// Wariness derived from an app-specific machine id, as Fedora's policy engine does it.
pub fn from_app_id(app_id: &str) -> f64 {
    let mut hasher = SipHasher13::new_with_keys(0, 0);
    // `str`'s `Hash` writes the bytes and then a 0xFF terminator.
    hasher.write(app_id.as_bytes());
    hasher.write_u8(0xff);
    let fraction = hasher.finish() as f64 / u64::MAX as f64;
    fraction.clamp(MIN_DERIVED, 1.0)
}

/// The wariness Fedora's `/v1/graph` computes from its query parameters: an
/// explicit `rollout_wariness` that parses as a number wins (clamped to [0, 1];
/// NaN sees every rollout, as it does on Fedora's server), otherwise the hash
/// of `node_uuid` (an absent id hashes as the empty string).
pub fn from_query(rollout_wariness: Option<&str>, node_uuid: Option<&str>) -> f64 {
    match rollout_wariness.and_then(|value| value.parse::<f64>().ok()) {
        Some(value) => value.clamp(0.0, 1.0),
        None => from_app_id(node_uuid.unwrap_or("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounded(value: f64) -> f64 {
        (value * 100_000.0).round() / 100_000.0
    }

    #[test]
    fn matches_fedora_for_known_ids() {
        assert_eq!(
            rounded(from_app_id("e0f3745b108f471cbd4883c6fbed8cdd")),
            0.65332
        );
        assert_eq!(
            rounded(from_app_id("00000000000000000000000000000001")),
            0.39956
        );
        assert_eq!(rounded(from_app_id("")), 0.18848);
    }

    #[test]
    fn explicit_wariness_wins_and_is_clamped() {
        assert_eq!(from_query(Some("0.25"), Some("whatever")), 0.25);
        assert_eq!(from_query(Some("-3"), None), 0.0);
        assert_eq!(from_query(Some("7"), None), 1.0);
        assert_eq!(from_query(Some("inf"), None), 1.0);
        assert!(from_query(Some("NaN"), None).is_nan());
        assert_eq!(
            from_query(Some("not a number"), Some("")),
            from_app_id(""),
            "an unparsable value falls back to the id"
        );
        assert_eq!(from_query(None, None), from_app_id(""));
    }
}
