//! The halt lists' storage seam: per stream, the newest halt list this
//! server accepted (so a restarted copy accepts no older one), the guard's
//! audit entries, and, on etcd, which server leads the guard.
//!
//! Both backends keep a list only when its sequence is higher than the one
//! stored, in one atomic step: of two servers racing, the higher list wins.

use super::StoreError;
use super::halts_embedded::EmbeddedHalts;
use cairn_graph::halts::TrippedBy;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::future::Future;

/// The newest halt list a server accepted for a stream, as it serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecord {
    /// The list's sequence.
    pub sequence: u64,
    /// The exact signed JSON bytes.
    #[serde(with = "body_text")]
    pub body: Vec<u8>,
    /// Its manifest digest, when it came from a registry or layout.
    pub manifest_digest: Option<String>,
    /// Where its signature is (`repository:sha256-….sig`, or `<url>.sig`).
    pub signature: Option<String>,
}

/// The body is JSON text: kept as a string, readable in etcd and SQLite.
mod body_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(body))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}

/// What the guard (or an alert) did, for people to read afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub time: Timestamp,
    /// The stream.
    pub stream: String,
    /// The release halted.
    pub version: String,
    /// Its digests.
    pub digests: Vec<String>,
    /// The id of the halt entry, in the list published.
    pub halt_id: String,
    /// What tripped it, with the guard's counts.
    pub tripped_by: TrippedBy,
    /// The sequence of the list published.
    pub sequence: u64,
}

/// Where halt lists and audit entries are kept.
pub trait HaltStore {
    /// The newest list kept for `stream`.
    fn newest(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<Option<HeldRecord>, StoreError>> + Send;

    /// Keep `record` for `stream` unless a list with the same or a higher
    /// sequence is kept already; returns the list kept afterwards.
    fn keep(
        &self,
        stream: &str,
        record: &HeldRecord,
    ) -> impl Future<Output = Result<HeldRecord, StoreError>> + Send;

    /// Add an audit entry.
    fn audit(&self, entry: &AuditEntry) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A stream's audit entries, oldest first.
    fn audits(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// Whether this server leads the guard now (with etcd, it holds the
    /// leader key on a live lease; the embedded store's single server always does).
    fn lead(&self) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The configured backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HaltBackend {
    /// SQLite on the server's disk.
    Embedded(EmbeddedHalts),
    /// An etcd cluster shared by several servers.
    #[cfg(feature = "etcd")]
    Etcd(Box<super::halts_etcd::EtcdHalts>),
}

impl HaltStore for HaltBackend {
    async fn newest(&self, stream: &str) -> Result<Option<HeldRecord>, StoreError> {
        match self {
            HaltBackend::Embedded(store) => store.newest(stream).await,
            #[cfg(feature = "etcd")]
            HaltBackend::Etcd(store) => store.newest(stream).await,
        }
    }

    async fn keep(&self, stream: &str, record: &HeldRecord) -> Result<HeldRecord, StoreError> {
        match self {
            HaltBackend::Embedded(store) => store.keep(stream, record).await,
            #[cfg(feature = "etcd")]
            HaltBackend::Etcd(store) => store.keep(stream, record).await,
        }
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        match self {
            HaltBackend::Embedded(store) => store.audit(entry).await,
            #[cfg(feature = "etcd")]
            HaltBackend::Etcd(store) => store.audit(entry).await,
        }
    }

    async fn audits(&self, stream: &str) -> Result<Vec<AuditEntry>, StoreError> {
        match self {
            HaltBackend::Embedded(store) => store.audits(stream).await,
            #[cfg(feature = "etcd")]
            HaltBackend::Etcd(store) => store.audits(stream).await,
        }
    }

    async fn lead(&self) -> Result<bool, StoreError> {
        match self {
            HaltBackend::Embedded(store) => store.lead().await,
            #[cfg(feature = "etcd")]
            HaltBackend::Etcd(store) => store.lead().await,
        }
    }
}
