//! FleetLock: reboot slots for a fleet, with leases and failure halts.
//!
//! [`model`] holds the rules; the store (`crate::store::locks`) keeps the
//! state; [`FleetLock`] puts them together for the handlers in
//! `crate::routes::fleetlock`, with a timeout on every store call and the
//! metrics.

pub mod model;

use crate::config::FleetLockConfig;
use crate::error::ApiError;
use crate::metrics::{ExpiryLabels, GroupLabels, KindLabels, Metrics};
use crate::store::locks::{Change, LockBackend, LockStore};
use axum::http::StatusCode;
use jiff::Timestamp;
use model::{GroupPolicy, LockOp, Outcome};
use std::time::Duration;

/// The longest a store call may take before the answer is a 503.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the server records its heartbeat and judges expired leases.
pub const TICK: Duration = Duration::from_secs(5);

/// FleetLock as the handlers see it.
#[derive(Debug)]
pub struct FleetLock {
    /// The `[fleet_lock]` section.
    pub config: FleetLockConfig,
    /// Where the state is kept.
    pub store: LockBackend,
    /// The longest a store call may take.
    pub timeout: Duration,
}

fn unavailable(value: String) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "backend_unavailable",
        value,
    }
}

impl FleetLock {
    /// FleetLock over this store.
    pub fn new(config: FleetLockConfig, store: LockBackend) -> FleetLock {
        FleetLock {
            config,
            store,
            timeout: STORE_TIMEOUT,
        }
    }

    /// A group's metric label: listed groups by name, the rest together.
    pub fn label(&self, group: &str) -> GroupLabels {
        let listed =
            self.config.groups.contains_key(group) || group == crate::config::DEFAULT_GROUP;
        GroupLabels {
            group: if listed { group } else { "unlisted" }.to_string(),
        }
    }

    /// A group's rules for judging what is stored, even when calls for it
    /// are refused now.
    pub fn stored_policy(&self, group: &str) -> GroupPolicy {
        self.config
            .policy(group)
            .unwrap_or(self.config.default_group)
    }

    /// Apply one operation through the store, within the timeout.
    pub async fn apply(
        &self,
        metrics: &Metrics,
        group: &str,
        policy: GroupPolicy,
        op: LockOp,
        now: Timestamp,
    ) -> Result<Change, ApiError> {
        let name = op.name();
        let answer =
            tokio::time::timeout(self.timeout, self.store.apply(group, policy, op, now)).await;
        let change = match answer {
            Ok(Ok(change)) => change,
            Ok(Err(error)) => {
                metrics
                    .lock_backend_errors
                    .get_or_create(&KindLabels { kind: error.kind() })
                    .inc();
                tracing::error!(%error, operation = name, "the lock store failed");
                // The details (file names) stay in the server's log.
                // On etcd a failed transaction may still have committed:
                // the host learns the truth by asking again.
                return Err(unavailable(format!(
                    "the lock store failed ({}); ask again (calls are recursive and idempotent)",
                    error.kind()
                )));
            }
            Err(_) => {
                metrics
                    .lock_backend_errors
                    .get_or_create(&KindLabels { kind: "timeout" })
                    .inc();
                tracing::error!(operation = name, "the lock store did not answer in time");
                return Err(unavailable(format!(
                    "the lock store did not answer within {} s; the call may still have taken effect, so ask again (calls are recursive and idempotent)",
                    self.timeout.as_secs_f64()
                )));
            }
        };
        self.record(metrics, group, policy, &change);
        Ok(change)
    }

    fn record(&self, metrics: &Metrics, group: &str, policy: GroupPolicy, change: &Change) {
        let label = self.label(group);
        // The two gauges are set from the store itself (`load_metrics`, at
        // every scrape): with several copies, every change counts.
        if change.applied.outcome == (Outcome::Granted { already: false }) {
            metrics.lock_grants.get_or_create(&label).inc();
        }
        for expired in &change.applied.expired {
            metrics
                .lock_lease_expiries
                .get_or_create(&ExpiryLabels {
                    group: label.group.clone(),
                    on_expiry: policy.on_expiry.as_str(),
                })
                .inc();
            tracing::warn!(
                group,
                node = %expired.node,
                at = %expired.at,
                halted = expired.halted,
                "a FleetLock lease ran out before the node released its slot"
            );
        }
        if let (None, Some(halt)) = (&change.before.halt, &change.after.halt) {
            tracing::warn!(group, node = %halt.node, reason = halt.reason.kind(), "FleetLock group halted");
        }
    }

    /// Set the slots-held and halted-groups gauges from what is stored (at
    /// start, and at every scrape of `/metrics`): the store is the truth,
    /// whichever copy of the server changed it.
    pub async fn load_metrics(&self, metrics: &Metrics) -> Result<(), ApiError> {
        let groups = self.groups().await?;
        let mut held: std::collections::BTreeMap<String, i64> = self
            .config
            .groups
            .keys()
            .map(String::as_str)
            .chain([crate::config::DEFAULT_GROUP, "unlisted"])
            .map(|name| (self.label(name).group, 0))
            .collect();
        for (name, state) in &groups {
            *held.entry(self.label(name).group).or_default() += state.holders.len() as i64;
        }
        for (group, count) in held {
            metrics
                .lock_slots_held
                .get_or_create(&GroupLabels { group })
                .set(count);
        }
        let halted = groups.values().filter(|state| state.halt.is_some()).count();
        metrics.lock_halted_groups.set(halted as i64);
        Ok(())
    }

    /// Every stored group, within the timeout.
    pub async fn groups(
        &self,
    ) -> Result<std::collections::BTreeMap<String, model::GroupState>, ApiError> {
        match tokio::time::timeout(self.timeout, self.store.groups()).await {
            Ok(Ok(groups)) => Ok(groups),
            Ok(Err(error)) => {
                tracing::error!(%error, "the lock store failed");
                Err(unavailable(format!(
                    "the lock store failed ({})",
                    error.kind()
                )))
            }
            Err(_) => Err(unavailable("the lock store did not answer in time".into())),
        }
    }

    /// Every group to show at `now`, by name: the configured ones, the
    /// stored ones and the default group, with expiries judged first so no
    /// lease past its end is shown. The flag: listed in the configuration.
    pub async fn overview(
        &self,
        metrics: &Metrics,
        now: Timestamp,
    ) -> Result<Vec<(String, bool, model::GroupPolicy, model::GroupState)>, ApiError> {
        self.sweep(metrics, now).await?;
        let mut stored = self.groups().await?;
        let default = crate::config::DEFAULT_GROUP.to_string();
        let mut names: std::collections::BTreeSet<String> =
            self.config.groups.keys().cloned().collect();
        names.extend(stored.keys().cloned());
        names.insert(default.clone());
        Ok(names
            .into_iter()
            .map(|name| {
                let listed = self.config.groups.contains_key(&name) || name == default;
                let policy = self.stored_policy(&name);
                let state = stored.remove(&name).unwrap_or_default();
                (name, listed, policy, state)
            })
            .collect())
    }

    /// Judge the leases that ran out by `now`, in every group that has one.
    pub async fn sweep(&self, metrics: &Metrics, now: Timestamp) -> Result<(), ApiError> {
        let due = match tokio::time::timeout(self.timeout, self.store.due(now)).await {
            Ok(Ok(due)) => due,
            Ok(Err(error)) => return Err(unavailable(format!("the lock store failed: {error}"))),
            Err(_) => return Err(unavailable("the lock store did not answer in time".into())),
        };
        for name in due {
            let policy = self.stored_policy(&name);
            self.apply(metrics, &name, policy, LockOp::Expire, now)
                .await?;
        }
        Ok(())
    }

    /// The periodic work: the heartbeat, then expired leases.
    pub async fn tick(&self, metrics: &Metrics, now: Timestamp) {
        match tokio::time::timeout(self.timeout, self.store.heartbeat(now)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                metrics
                    .lock_backend_errors
                    .get_or_create(&KindLabels { kind: error.kind() })
                    .inc();
                tracing::error!(%error, "the lock store could not record the heartbeat");
            }
            Err(_) => tracing::error!("the lock store did not record the heartbeat in time"),
        }
        if let Err(error) = self.sweep(metrics, now).await {
            tracing::error!(kind = error.kind, value = %error.value, "judging expired leases failed");
        }
    }

    /// Whether the store can take writes, within the timeout.
    pub async fn ready(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.store.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("the lock store did not answer in time".into()),
        }
    }
}
