//! Cairn's node agent, as a library: the pieces the `cairn agent` daemon and
//! `cairn status` are built from.
//!
//! - [`config`]: TOML fragments, merged and validated.
//! - [`control`]: the root-only socket operator commands use.
//! - [`daemon`]: the `cairn agent` process: host probes, document trust, the
//!   pass and the socket loop.
//! - [`identity`]: the Zincati-compatible app-specific node id.
//! - [`windows`]: time zones for maintenance windows, by name (the schedule is
//!   [`cairn_graph::windows`]).
//! - [`fleetlock`]: the FleetLock reboot-lock client.
//! - [`follow`]: following a tag, guarded by the base graph (derived images).
//! - [`halts`]: the stream's halt list on a host: which list is in force.
//! - [`health`]: whether a boot into a new release is healthy.
//! - [`history`]: the outcome of every update attempt.
//! - [`hooks`]: pre-update hooks from the new image, and the operator's.
//! - [`host`]: bootc and rpm-ostree status, in one shape.
//! - [`machine`]: the update state machine and crash recovery.
//! - [`plan`]: what a check decides, and the gates before a reboot.
//! - [`reason`]: why the agent is where it is, as a kind and a sentence.
//! - [`reports`]: anonymous outcome reports to a collector (opt-in), queued and sent.
//! - [`source`]: the graph a check plans against: a document or a Cincinnati answer.
//! - [`status`]: what `cairn status` shows; the status, metrics and MOTD files.
//! - [`store`]: the persistent state, written atomically.

#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod control;
pub mod daemon;
pub mod fleetlock;
pub mod follow;
pub mod halts;
pub mod health;
pub mod history;
pub mod hooks;
pub mod host;
pub mod identity;
pub mod machine;
pub mod plan;
pub mod reason;
pub mod reports;
pub mod server_http;
pub mod source;
pub mod status;
pub mod store;
pub mod windows;
