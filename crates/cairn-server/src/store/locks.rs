//! The FleetLock storage seam.
//!
//! A backend keeps one [`GroupState`] per group and applies each operation
//! with [`GroupState::apply`] as one atomic step: read the group, apply, write
//! it back only if nothing else changed it in between. The embedded backend
//! gets that from a single writer thread and SQLite transactions; a
//! replicated backend (etcd) from a compare-and-put on the group key's
//! revision, retried on conflict. Either way each grant is one transaction,
//! durable before the answer.

use super::StoreError;
use super::embedded::EmbeddedStore;
use crate::fleetlock::model::{Applied, GroupPolicy, GroupState, LockOp};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::future::Future;

/// One applied operation, with the group before and after it (for metrics
/// and answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What the operation did.
    pub applied: Applied,
    /// The group before.
    pub before: GroupState,
    /// The group after, as stored.
    pub after: GroupState,
}

/// Where FleetLock state is kept.
pub trait LockStore {
    /// Apply `op` to `group` at `now` under `policy`, atomically and durably:
    /// when this returns `Ok`, the new state survives a crash.
    fn apply(
        &self,
        group: &str,
        policy: GroupPolicy,
        op: LockOp,
        now: Timestamp,
    ) -> impl Future<Output = Result<Change, StoreError>> + Send;

    /// Every group with any holder or halt.
    fn groups(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, GroupState>, StoreError>> + Send;

    /// The groups with a lease that ran out by `now`, by this backend's
    /// clock (the server's own for embedded, etcd's leases for etcd).
    fn due(&self, now: Timestamp) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Record that the server is alive at `now` (the embedded backend's
    /// measure of its own downtime).
    fn heartbeat(&self, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the backend can take writes now.
    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The configured backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LockBackend {
    /// SQLite on the server's disk.
    Embedded(EmbeddedStore),
    /// An etcd cluster shared by several servers.
    #[cfg(feature = "etcd")]
    Etcd(Box<super::etcd::EtcdStore>),
}

impl LockStore for LockBackend {
    async fn apply(
        &self,
        group: &str,
        policy: GroupPolicy,
        op: LockOp,
        now: Timestamp,
    ) -> Result<Change, StoreError> {
        match self {
            LockBackend::Embedded(store) => store.apply(group, policy, op, now).await,
            #[cfg(feature = "etcd")]
            LockBackend::Etcd(store) => store.apply(group, policy, op, now).await,
        }
    }

    async fn groups(&self) -> Result<BTreeMap<String, GroupState>, StoreError> {
        match self {
            LockBackend::Embedded(store) => store.groups().await,
            #[cfg(feature = "etcd")]
            LockBackend::Etcd(store) => store.groups().await,
        }
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        match self {
            LockBackend::Embedded(store) => store.due(now).await,
            #[cfg(feature = "etcd")]
            LockBackend::Etcd(store) => store.due(now).await,
        }
    }

    async fn heartbeat(&self, now: Timestamp) -> Result<(), StoreError> {
        match self {
            LockBackend::Embedded(store) => store.heartbeat(now).await,
            #[cfg(feature = "etcd")]
            LockBackend::Etcd(store) => store.heartbeat(now).await,
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        match self {
            LockBackend::Embedded(store) => store.check().await,
            #[cfg(feature = "etcd")]
            LockBackend::Etcd(store) => store.check().await,
        }
    }
}
