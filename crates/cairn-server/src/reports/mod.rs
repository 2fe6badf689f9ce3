//! The outcome-report collector: hosts say how each update went, and
//! nothing that links a report to a host is kept.
//!
//! [`model`] reads reports and sums counts; [`plausible`] holds the steps
//! each stream offered lately; [`limit`] is the per-address limit; the store
//! (`crate::store::reports`) keeps the counts. [`Reports`] puts them together
//! for the handlers in `crate::routes::reports`, with a timeout on every
//! store call and the metrics.

pub mod limit;
pub mod model;
pub mod plausible;

use crate::config::ReportsConfig;
use crate::error::ApiError;
use crate::metrics::{KindLabels, Metrics};
use crate::store::reports::{Recorded, ReportBackend, ReportRecord, ReportStore};
use axum::http::StatusCode;
use jiff::Timestamp;
use std::time::Duration;

/// The longest a store call may take before the answer is a 503.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often aged-out records are pruned.
pub const TICK: Duration = Duration::from_secs(60);

/// The collector as the handlers see it.
#[derive(Debug)]
pub struct Reports {
    /// The `[reports]` section.
    pub config: ReportsConfig,
    /// Where the counts are kept.
    pub store: ReportBackend,
    /// The longest a store call may take.
    pub timeout: Duration,
    /// The steps each stream offered lately.
    pub graphs: plausible::RecentGraphs,
    /// The per-address limit.
    pub limit: limit::AddressLimit,
}

fn unavailable(value: String) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "backend_unavailable",
        value,
    }
}

impl Reports {
    /// The collector for these streams, over this store. Fails only when no
    /// random salt can be drawn for the per-address limit.
    pub fn new(
        config: ReportsConfig,
        store: ReportBackend,
        streams: impl IntoIterator<Item = String>,
    ) -> std::io::Result<Reports> {
        let limit = limit::AddressLimit::new(config.per_address_per_hour)?;
        Ok(Reports {
            config,
            store,
            timeout: STORE_TIMEOUT,
            graphs: plausible::RecentGraphs::new(streams),
            limit,
        })
    }

    fn failed(&self, metrics: &Metrics, kind: &'static str) {
        metrics
            .report_backend_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Count one report through the store, within the timeout.
    pub async fn record(
        &self,
        metrics: &Metrics,
        report: ReportRecord,
        now: Timestamp,
    ) -> Result<Recorded, ApiError> {
        match tokio::time::timeout(self.timeout, self.store.record(report, now)).await {
            Ok(Ok(recorded)) => Ok(recorded),
            Ok(Err(error)) => {
                self.failed(metrics, error.kind());
                tracing::error!(%error, "the reports store failed");
                // The details (file names) stay in the server's log.
                Err(unavailable(format!(
                    "the reports store failed ({}); send the report again later",
                    error.kind()
                )))
            }
            Err(_) => {
                self.failed(metrics, "timeout");
                tracing::error!("the reports store did not answer in time");
                Err(unavailable(format!(
                    "the reports store did not answer within {} s; send the report again later (a retry counts once)",
                    self.timeout.as_secs_f64()
                )))
            }
        }
    }

    /// A stream's counts, within the timeout.
    pub async fn tally(
        &self,
        metrics: &Metrics,
        stream: &str,
        now: Timestamp,
    ) -> Result<model::Tally, ApiError> {
        match tokio::time::timeout(self.timeout, self.store.tally(stream, now)).await {
            Ok(Ok(tally)) => Ok(tally),
            Ok(Err(error)) => {
                self.failed(metrics, error.kind());
                tracing::error!(%error, "the reports store could not be read");
                Err(unavailable(format!(
                    "the reports store failed ({})",
                    error.kind()
                )))
            }
            Err(_) => {
                self.failed(metrics, "timeout");
                Err(unavailable(
                    "the reports store did not answer in time".into(),
                ))
            }
        }
    }

    /// Keep the graph set `stream` serves from `now` on, within the timeout;
    /// a failure is logged and counted, and only a restart misses it.
    pub async fn keep_steps(
        &self,
        metrics: &Metrics,
        stream: &str,
        served: &plausible::Served,
        now: Timestamp,
    ) {
        let kept = self.store.keep_steps(stream, served, now);
        match tokio::time::timeout(self.timeout, kept).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.failed(metrics, error.kind());
                tracing::error!(%stream, %error, "the reports store could not keep the served graphs; a restart will not judge reports on them");
            }
            Err(_) => {
                self.failed(metrics, "timeout");
                tracing::error!(%stream, "the reports store did not keep the served graphs in time; a restart will not judge reports on them");
            }
        }
    }

    /// Take back the graph sets the store kept from the last 72 hours:
    /// before anything is served, so reports are judged on them at once.
    pub async fn restore_steps(&self, now: Timestamp) -> Result<(), crate::store::StoreError> {
        let kept = self.store.kept_steps(now).await?;
        self.graphs.restore(kept, now);
        Ok(())
    }

    /// The periodic work: drop what aged out of its window.
    pub async fn tick(&self, metrics: &Metrics, now: Timestamp) {
        self.graphs.prune(now);
        // Pruning may take longer than one call: it has no deadline.
        if let Err(error) = self.store.prune(now).await {
            self.failed(metrics, error.kind());
            tracing::error!(%error, "pruning the reports store failed");
        }
        metrics
            .report_limit_keys
            .set(i64::try_from(self.limit.keys()).unwrap_or(i64::MAX));
    }

    /// Whether the store can take writes, within the timeout.
    pub async fn ready(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.store.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("the reports store did not answer in time".into()),
        }
    }
}
