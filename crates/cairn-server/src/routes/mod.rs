//! One module per resource; `router` puts them together.

pub mod alerts;
pub mod document;
pub mod fleetlock;
pub mod graph;
pub mod halts;
pub mod health;
pub mod metrics;
pub mod reports;
