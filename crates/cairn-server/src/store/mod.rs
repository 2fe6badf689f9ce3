//! The server's durable state, behind one seam per kind of record: FleetLock
//! groups ([`locks`]), outcome-report counts ([`reports`]) and halt lists
//! ([`halts`]), each with its
//! own trait, on the same two backends (SQLite on this server, or etcd).
//!
//! Backends are chosen by enum, not by `dyn`: each trait method is a plain
//! `async fn`, and [`locks::LockBackend`] and [`reports::ReportBackend`]
//! forward to the configured one.

pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "etcd")]
mod etcd_conn;
pub mod halts;
pub mod halts_embedded;
#[cfg(feature = "etcd")]
pub mod halts_etcd;
pub mod locks;
pub mod reports;
pub mod reports_embedded;
#[cfg(feature = "etcd")]
pub mod reports_etcd;
mod sqlite;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or prepared.
    #[error("opening {path}: {message}")]
    Open {
        /// The database file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A read or a durable write failed.
    #[error("{path}: {message}")]
    Io {
        /// The database file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A stored record could not be read back.
    #[error("{path}: group {group}: unreadable record: {message}")]
    Corrupt {
        /// The database file.
        path: String,
        /// The group.
        group: String,
        /// What failed.
        message: String,
    },
    /// The backend's worker has stopped.
    #[error("the store has stopped")]
    Stopped,
    /// etcd did not answer, or refused.
    #[error("etcd {endpoints}: {message}")]
    Etcd {
        /// The configured members.
        endpoints: String,
        /// What failed.
        message: String,
    },
    /// Other servers kept changing the group first.
    #[error("group {group}: other servers changed it first {tries} times in a row")]
    Conflict {
        /// The group.
        group: String,
        /// How many times.
        tries: usize,
    },
    /// The configured backend is not in this build.
    #[error(
        "`backend = \"etcd\"` needs a cairn built with the etcd backend (`cargo build --features etcd`, docs/fleet-lock.md#high-availability-etcd)"
    )]
    NotBuilt,
}

impl StoreError {
    /// A short fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Open { .. } => "open",
            StoreError::Io { .. } => "io",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Stopped => "stopped",
            StoreError::Etcd { .. } => "etcd",
            StoreError::Conflict { .. } => "conflict",
            StoreError::NotBuilt => "not_built",
        }
    }
}
