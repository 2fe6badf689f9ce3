//! Cairn's node agent, as a library: the pieces the `cairn agent` daemon and
//! `cairn status` are built from.
//!
//! - [`config`]: TOML fragments, merged and validated.
//! - [`identity`]: the Zincati-compatible app-specific node id.
//! - [`windows`]: weekly maintenance windows in a time zone.

#![forbid(unsafe_code)]

pub mod config;
pub mod fleetlock;
pub mod host;
pub mod identity;
pub mod windows;
