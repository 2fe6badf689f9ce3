//! FleetLock: reboot slots for a fleet, with leases and failure halts.
//!
//! [`model`] holds the rules; the store (`crate::store::locks`) keeps the
//! state; the HTTP handlers are in `crate::routes::fleetlock`.

pub mod model;
