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
//! - [`assemble`] and [`policy`]: the next document from a scan and a policy,
//!   and edits of the policy file.
//! - [`windows`]: weekly maintenance windows in a time zone.
//!
//! A host deciding what to do next:
//!
//! ```
//! use cairn_graph::{GraphDocument, Query};
//! use jiff::Timestamp;
//!
//! let json = br#"{
//!   "schema": 1, "stream": "stable", "repository": "registry.example/os", "sequence": 1,
//!   "issued": "2026-01-01T00:00:00Z", "expires": "2026-01-15T00:00:00Z",
//!   "releases": [
//!     {"version": "1", "architectures": {"x86_64": {"digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"}}},
//!     {"version": "2", "architectures": {"x86_64": {"digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222"}},
//!      "rollout": {"start_epoch": 1767225600, "start_percentage": 0.0, "duration_minutes": 1440}}
//!   ]
//! }"#;
//! let document = GraphDocument::from_json(json)?.document;
//! let booted = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
//! let noon = "2026-01-01T12:00:00Z".parse::<Timestamp>()?;
//! let query = |wariness| Query { booted, wariness, now: noon, deny: &[], halted: &[], allow_downgrade: false };
//!
//! // Half-way through the rollout: an early node updates, a late one waits.
//! assert_eq!(document.decide("x86_64", &query(0.2)).target.map(|t| t.version), Some("2".into()));
//! let late = document.decide("x86_64", &query(0.8));
//! assert_eq!(late.reason(), "rollout of 2 at 50%, this node's wariness is 0.8");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod assemble;
pub mod cincinnati;
pub mod derive;
pub mod digest;
pub mod document;
pub mod fcos;
pub mod graph;
pub mod halts;
pub mod policy;
pub mod promote;
pub mod render;
pub mod rollout;
pub mod select;
pub mod wariness;
pub mod windows;

pub use document::{
    ArchEntry, BaseBarrier, BaseGraphSummary, BaseImage, GraphDocument, Reason, Release,
};
pub use graph::{Node, Scheme, UpdateGraph};
pub use rollout::Rollout;
pub use select::{BootedError, Decision, NoUpdate, NotOffered, Query, Target};
