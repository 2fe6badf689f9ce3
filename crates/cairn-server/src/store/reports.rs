//! The outcome reports' storage seam.
//!
//! A backend keeps, durably:
//! - counts per (stream, release, outcome, hour), pruned after the retention;
//! - every report id counted within the de-duplication window, so a retried
//!   report counts once;
//! - the receipt time of each `rebooting` report younger than `missing_after`,
//!   so the hosts missing a final report are counted exactly;
//! - each graph set a stream served, in its compact form, until 72 hours
//!   after it stopped being served, so reports are judged on the same steps
//!   after a restart.
//!
//! Recording a report checks its id and counts it in one atomic, durable
//! step: when `record` returns `Ok`, the count survives a crash.

use super::StoreError;
use super::reports_embedded::EmbeddedReports;
use crate::reports::model::{Outcome, Release, Tally};
use crate::reports::plausible::{KeptSteps, Served};
use jiff::{SignedDuration, Timestamp};
use std::future::Future;

/// One report to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    /// The stream (a configured one).
    pub stream: String,
    /// The release it went to.
    pub release: Release,
    /// What happened.
    pub outcome: Outcome,
    /// Its random id.
    pub id: [u8; 16],
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted now.
    Counted,
    /// Its id was counted within the de-duplication window: a retry.
    Duplicate,
}

/// How long a store keeps each kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Ids are kept this long.
    pub dedup: SignedDuration,
    /// `rebooting` receipts are kept this long.
    pub missing_after: SignedDuration,
    /// Hourly counts are kept this long.
    pub retention: SignedDuration,
}

impl Windows {
    /// The windows of a `[reports]` section.
    pub fn of(config: &crate::config::ReportsConfig) -> Windows {
        Windows {
            dedup: config.dedup_window,
            missing_after: config.missing_after,
            retention: config.retention,
        }
    }

    /// The oldest hour whose counts are still read at `now`.
    pub fn first_hour(&self, now: Timestamp) -> i64 {
        hour_of(now) - self.retention.as_secs().div_euclid(3600)
    }
}

/// The hour (since the Unix epoch) a time falls in.
pub fn hour_of(time: Timestamp) -> i64 {
    time.as_second().div_euclid(3600)
}

/// Where reports are counted.
pub trait ReportStore {
    /// Count `report` received at `now`, unless its id was counted within
    /// the de-duplication window; atomically and durably.
    fn record(
        &self,
        report: ReportRecord,
        now: Timestamp,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;

    /// A stream's counts over the retained hours, with the `rebooting`
    /// reports received within `missing_after` of `now`.
    fn tally(
        &self,
        stream: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Tally, StoreError>> + Send;

    /// Drop what has aged out of its window by `now`.
    fn prune(&self, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Keep the graph set `stream` serves from `now` on; mark every other
    /// one it served as replaced at `now`, and forget the evicted ones.
    fn keep_steps(
        &self,
        stream: &str,
        served: &Served,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every graph set kept that was served within 72 hours of `now`.
    fn kept_steps(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<KeptSteps>, StoreError>> + Send;

    /// Whether the backend can take writes now.
    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The configured backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ReportBackend {
    /// SQLite on the server's disk.
    Embedded(EmbeddedReports),
    /// An etcd cluster shared by several servers.
    #[cfg(feature = "etcd")]
    Etcd(Box<super::reports_etcd::EtcdReports>),
}

impl ReportStore for ReportBackend {
    async fn record(&self, report: ReportRecord, now: Timestamp) -> Result<Recorded, StoreError> {
        match self {
            ReportBackend::Embedded(store) => store.record(report, now).await,
            #[cfg(feature = "etcd")]
            ReportBackend::Etcd(store) => store.record(report, now).await,
        }
    }

    async fn tally(&self, stream: &str, now: Timestamp) -> Result<Tally, StoreError> {
        match self {
            ReportBackend::Embedded(store) => store.tally(stream, now).await,
            #[cfg(feature = "etcd")]
            ReportBackend::Etcd(store) => store.tally(stream, now).await,
        }
    }

    async fn prune(&self, now: Timestamp) -> Result<(), StoreError> {
        match self {
            ReportBackend::Embedded(store) => store.prune(now).await,
            #[cfg(feature = "etcd")]
            ReportBackend::Etcd(store) => store.prune(now).await,
        }
    }

    async fn keep_steps(
        &self,
        stream: &str,
        served: &Served,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match self {
            ReportBackend::Embedded(store) => store.keep_steps(stream, served, now).await,
            #[cfg(feature = "etcd")]
            ReportBackend::Etcd(store) => store.keep_steps(stream, served, now).await,
        }
    }

    async fn kept_steps(&self, now: Timestamp) -> Result<Vec<KeptSteps>, StoreError> {
        match self {
            ReportBackend::Embedded(store) => store.kept_steps(now).await,
            #[cfg(feature = "etcd")]
            ReportBackend::Etcd(store) => store.kept_steps(now).await,
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        match self {
            ReportBackend::Embedded(store) => store.check().await,
            #[cfg(feature = "etcd")]
            ReportBackend::Etcd(store) => store.check().await,
        }
    }
}
