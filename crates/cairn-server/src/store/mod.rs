//! The server's durable state, behind one seam per kind of record: FleetLock
//! groups now ([`locks`]); the outcome reports of a later feature sit beside
//! them with their own trait, on the same backends.
//!
//! Backends are chosen by enum, not by `dyn`: each trait method is a plain
//! `async fn`, and [`locks::LockBackend`] forwards to the configured one.

pub mod embedded;
pub mod locks;

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
    #[error("the lock store has stopped")]
    Stopped,
}

impl StoreError {
    /// A short fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Open { .. } => "open",
            StoreError::Io { .. } => "io",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Stopped => "stopped",
        }
    }
}
