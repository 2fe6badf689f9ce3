//! The update graph model behind Cairn.
//!
//! This crate holds everything that decides *what* a host may update to, and
//! nothing that touches the outside world: it reads no files, opens no sockets
//! and never asks the clock. Callers pass bytes in and the current time as an
//! argument, so every rule here can be tested exactly and reused by the
//! publisher, the agent, the graph server and the simulator alike.
//!
//! The pieces:
//! - [`document`]: Cairn's signed update graph document (schema 1) and its validation.
//! - [`graph`]: the Cincinnati-compatible graph (nodes, barrier and rollout edges,
//!   dead-end pruning) built from a document, from Fedora CoreOS metadata or
//!   from a Cincinnati response.
//! - [`rollout`] and [`wariness`]: rollout progress and a node's place in a rollout.
//! - [`select`]: target selection and "when does this decision next change?".
//! - [`fcos`] and [`cincinnati`]: the Fedora CoreOS input formats and the
//!   Cincinnati `/v1/graph` output format.
//! - [`render`]: human, JSON and Graphviz summaries of a document.

#![forbid(unsafe_code)]

pub mod cincinnati;
pub mod digest;
pub mod document;
pub mod fcos;
pub mod graph;
pub mod render;
pub mod rollout;
pub mod select;
pub mod wariness;

pub use document::{ArchEntry, BaseImage, GraphDocument, Reason, Release};
pub use graph::{Node, Scheme, UpdateGraph};
pub use rollout::Rollout;
pub use select::{Decision, NoUpdate, Query, Target};
