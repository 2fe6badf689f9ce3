//! Cairn's node agent, as a library: the pieces the `cairn agent` daemon and
//! `cairn status` are built from.
//!
//! - [`identity`]: the Zincati-compatible app-specific node id.
//! - [`windows`]: weekly maintenance windows in a time zone.

#![forbid(unsafe_code)]

pub mod identity;
pub mod windows;
