//! The per-address limit: from one source address, at most N reports of each
//! outcome count per release per hour.
//!
//! An IPv4 source is its full address; an IPv6 source is its /64, the
//! smallest network a site is usually given, so one host cannot take a new
//! allowance from each of its 2^64 addresses.
//!
//! Addresses are kept only in memory, and only as a SHA-256 of the address
//! with a salt, the stream, the release and the outcome. The salt is drawn
//! at start and never stored or shown: a key can be tied to an address only
//! by hashing guessed addresses with it inside the running process, and not
//! at all once the process ends. Only the current hour is kept.

use crate::reports::model::Outcome;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// The most keys kept for one hour (about 40 MB). Past it, reports of new
/// keys are refused (429) for the rest of the hour: failing closed, so a
/// source that cycles through addresses cannot switch the limit off.
pub const MAX_KEYS: usize = 1_000_000;

/// One report taken from a key's allowance, to give back if it is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    key: [u8; 16],
    hour: i64,
}

/// Why a report was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    /// Seconds until the next hour, when the allowance is new.
    pub retry_after: u64,
    /// The limit holds [`MAX_KEYS`] sources this hour and takes no new one.
    pub full: bool,
}

#[derive(Debug, Default)]
struct Hour {
    hour: i64,
    used: HashMap<[u8; 16], u32>,
    /// Whether reaching [`MAX_KEYS`] was logged this hour.
    warned: bool,
}

/// The limit's state.
#[derive(Debug)]
pub struct AddressLimit {
    salt: [u8; 32],
    per_hour: u32,
    current: Mutex<Hour>,
}

impl AddressLimit {
    /// A limit of `per_hour` reports (0: no limit), with a fresh random salt.
    pub fn new(per_hour: u32) -> std::io::Result<AddressLimit> {
        use rand_core::RngCore;
        let mut salt = [0u8; 32];
        rand_core::OsRng
            .try_fill_bytes(&mut salt)
            .map_err(std::io::Error::other)?;
        Ok(AddressLimit {
            salt,
            per_hour,
            current: Mutex::default(),
        })
    }

    fn key(&self, address: IpAddr, stream: &str, digest: &str, outcome: Outcome) -> [u8; 16] {
        let address = match address.to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => {
                // The /64: the interface half is zeroed.
                let mut octets = v6.octets();
                octets[8..].fill(0);
                octets
            }
        };
        let mut hash = Sha256::new();
        hash.update(self.salt);
        hash.update(address);
        // Lengths first, so no two different inputs run together the same.
        for part in [stream, digest, outcome.as_str()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }

    /// Take one report of `outcome` for release `digest` of `stream` from
    /// `address`'s allowance for the hour of `now`; `None` when no limit
    /// applies.
    pub fn take(
        &self,
        address: IpAddr,
        stream: &str,
        digest: &str,
        outcome: Outcome,
        now: Timestamp,
    ) -> Result<Option<Taken>, OverLimit> {
        if self.per_hour == 0 {
            return Ok(None);
        }
        let key = self.key(address, stream, digest, outcome);
        let seconds = now.as_second();
        let hour = seconds.div_euclid(3600);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.hour != hour {
            // Past hours are dropped whole: the map holds one hour at most.
            *current = Hour {
                hour,
                ..Hour::default()
            };
        }
        let retry_after = u64::try_from(3600 - seconds.rem_euclid(3600)).unwrap_or(3600);
        if current.used.len() >= MAX_KEYS && !current.used.contains_key(&key) {
            if !current.warned {
                current.warned = true;
                tracing::warn!(
                    keys = MAX_KEYS,
                    "the per-address report limit is full for this hour; reports from new sources are refused until the hour ends"
                );
            }
            return Err(OverLimit {
                retry_after,
                full: true,
            });
        }
        let used = current.used.entry(key).or_default();
        if *used >= self.per_hour {
            return Err(OverLimit {
                retry_after,
                full: false,
            });
        }
        *used += 1;
        Ok(Some(Taken { key, hour }))
    }

    /// Give back a report that was not counted (a duplicate, a store failure).
    pub fn give_back(&self, taken: Taken) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.hour == taken.hour
            && let Some(used) = current.used.get_mut(&taken.key)
        {
            *used = used.saturating_sub(1);
            if *used == 0 {
                current.used.remove(&taken.key);
            }
        }
    }

    /// Keys held for the current hour.
    pub fn keys(&self) -> usize {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 / 3600 * 3600 + seconds).expect("time")
    }

    const DIGEST: &str = "sha256:00";

    #[test]
    fn one_report_per_outcome_release_and_hour_from_one_address() {
        let limit = AddressLimit::new(1).expect("salt");
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let take = |address, outcome, now| limit.take(address, "s", DIGEST, outcome, t(now));
        assert!(take(a, Outcome::BootFailed, 0).expect("first").is_some());
        assert_eq!(
            take(a, Outcome::BootFailed, 600),
            Err(OverLimit {
                retry_after: 3000,
                full: false
            })
        );
        // The same address as IPv4-mapped IPv6 is the same address.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert!(take(mapped, Outcome::BootFailed, 600).is_err());
        // Another outcome, release or address has its own allowance.
        assert!(take(a, Outcome::Rebooting, 600).is_ok());
        assert!(take(b, Outcome::BootFailed, 600).is_ok());
        assert!(
            limit
                .take(a, "s", "sha256:01", Outcome::BootFailed, t(600))
                .is_ok()
        );
        // The next hour starts afresh, with the past hour dropped.
        assert!(
            take(a, Outcome::BootFailed, 3600)
                .expect("next hour")
                .is_some()
        );
        assert_eq!(limit.keys(), 1);
    }

    #[test]
    fn a_report_given_back_frees_its_place() {
        let limit = AddressLimit::new(1).expect("salt");
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let taken = limit
            .take(a, "s", DIGEST, Outcome::BootFailed, t(0))
            .expect("first")
            .expect("limited");
        limit.give_back(taken);
        assert_eq!(limit.keys(), 0);
        assert!(
            limit
                .take(a, "s", DIGEST, Outcome::BootFailed, t(1))
                .is_ok()
        );
    }

    #[test]
    fn an_ipv6_source_is_its_64() {
        let limit = AddressLimit::new(1).expect("salt");
        let take = |address: &str| {
            let address: IpAddr = address.parse().expect("ip");
            limit.take(address, "s", DIGEST, Outcome::BootFailed, t(0))
        };
        assert!(take("2001:db8:1:2::1").is_ok());
        assert!(
            take("2001:db8:1:2:ffff:ffff:ffff:ffff").is_err(),
            "the same /64"
        );
        assert!(take("2001:db8:1:3::1").is_ok(), "another /64");
        // IPv4 sources stay whole addresses.
        assert!(take("192.0.2.1").is_ok());
        assert!(take("192.0.2.2").is_ok());
    }

    #[test]
    fn a_full_map_refuses_new_sources_and_keeps_counting_known_ones() {
        let limit = AddressLimit::new(2).expect("salt");
        let known: IpAddr = "192.0.2.1".parse().expect("ip");
        let take = |address: IpAddr| limit.take(address, "s", DIGEST, Outcome::BootFailed, t(60));
        assert!(take(known).is_ok());
        {
            // Fill the hour with other keys.
            let mut current = limit.current.lock().expect("lock");
            for n in 0..(MAX_KEYS - 1) as u64 {
                let mut key = [0xffu8; 16];
                key[..8].copy_from_slice(&n.to_le_bytes());
                current.used.insert(key, 1);
            }
            assert_eq!(current.used.len(), MAX_KEYS);
        }
        let new: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(
            take(new),
            Err(OverLimit {
                retry_after: 3540,
                full: true
            })
        );
        assert!(take(known).is_ok(), "a known source keeps its allowance");
        assert!(take(known).is_err());
        assert_eq!(limit.keys(), MAX_KEYS);
    }

    #[test]
    fn zero_turns_the_limit_off_and_salts_differ() {
        let limit = AddressLimit::new(0).expect("salt");
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(
                limit.take(a, "s", DIGEST, Outcome::BootFailed, t(0)),
                Ok(None)
            );
        }
        let other = AddressLimit::new(1).expect("salt");
        let one = AddressLimit::new(1).expect("salt");
        assert_ne!(
            one.key(a, "s", DIGEST, Outcome::BootFailed),
            other.key(a, "s", DIGEST, Outcome::BootFailed),
            "a fresh salt per process"
        );
    }
}
