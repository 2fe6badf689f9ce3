//! The etcd backend: several `cairn serve` copies share one etcd cluster.
//!
//! Keys, under the configured prefix:
//! - `group/<name>/state`: the group's [`GroupState`] as JSON;
//! - `group/<name>/holder/<node>`: one per holder, bound to an etcd lease
//!   as long as the group's lease, so etcd deletes it when the lease runs out.
//!
//! An operation reads both kinds of key in one linearizable range read,
//! lets the model decide (a holder whose key is gone has expired: etcd's
//! clock judges leases, not this server's), and writes the result in one
//! transaction that first compares the state key's revision with the one
//! read. Two servers can therefore never both grant from the same state: the
//! second one's compare fails, and it decides again on what the first wrote.
//! An operation that changes nothing (a full group, a repeated `pre-reboot`)
//! writes nothing: the linearizable read already saw the latest state.

use super::StoreError;
use super::locks::{Change, LockStore};
use crate::fleetlock::model::{GroupPolicy, GroupState, LockOp};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use jiff::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one call keeps retrying etcd errors (a member down, an election)
/// before it gives up; under the server's 2 s answer deadline.
const RETRY_FOR: Duration = Duration::from_millis(1500);

/// The pause between two tries after an etcd error.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The most compare failures (another server wrote first) one call retries.
const MAX_CONFLICTS: usize = 32;

/// A handle on the etcd store; cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    endpoints: String,
    /// One queue per group, so this server's own requests for a group take
    /// turns instead of failing each other's compares.
    turns: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One group as read at one revision.
#[derive(Debug, Default)]
struct Snapshot {
    state: GroupState,
    /// The state key's mod revision; 0 when there is none.
    revision: i64,
    /// Holders whose lease key still exists, with the lease's id.
    live: BTreeMap<String, i64>,
}

impl EtcdStore {
    /// A store on these members. Connecting is lazy: a cluster that is down
    /// now makes calls fail (503) and `/readyz` say so, not the start.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
        let shown = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(2))
            // A member cut off from the others answers nothing rather than
            // stale reads or writes that cannot commit.
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Open {
                path: format!("etcd {shown}"),
                message: e.to_string(),
            })?;
        Ok(EtcdStore {
            client,
            prefix: prefix.to_string(),
            endpoints: shown,
            turns: Arc::default(),
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            message: e.to_string(),
        }
    }

    fn groups_prefix(&self) -> String {
        format!("{}group/", self.prefix)
    }

    fn group_prefix(&self, group: &str) -> String {
        format!("{}group/{group}/", self.prefix)
    }

    fn state_key(&self, group: &str) -> String {
        format!("{}state", self.group_prefix(group))
    }

    fn holder_key(&self, group: &str, node: &str) -> String {
        format!("{}holder/{node}", self.group_prefix(group))
    }

    /// Sort the keys of one range read into groups.
    fn snapshots(&self, kvs: &[KeyValue]) -> Result<BTreeMap<String, Snapshot>, StoreError> {
        let base = self.groups_prefix();
        let mut groups: BTreeMap<String, Snapshot> = BTreeMap::new();
        for kv in kvs {
            let Some(rest) = kv.key().strip_prefix(base.as_bytes()) else {
                continue;
            };
            let Ok(rest) = std::str::from_utf8(rest) else {
                continue;
            };
            let Some((group, what)) = rest.split_once('/') else {
                continue;
            };
            let entry = groups.entry(group.to_string()).or_default();
            if what == "state" {
                entry.state =
                    serde_json::from_slice(kv.value()).map_err(|e| StoreError::Corrupt {
                        path: format!("etcd {}", self.endpoints),
                        group: group.to_string(),
                        message: e.to_string(),
                    })?;
                entry.revision = kv.mod_revision();
            } else if let Some(node) = what.strip_prefix("holder/") {
                entry.live.insert(node.to_string(), kv.lease());
            }
        }
        Ok(groups)
    }

    /// Retry `call` on etcd errors for up to [`RETRY_FOR`]: a request that
    /// went to a member just killed, or arrived during an election, goes to
    /// another one or waits for the new leader.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        loop {
            match call(self.client.clone()).await {
                Ok(value) => return Ok(value),
                Err(error) if started.elapsed() < RETRY_FOR => {
                    tracing::debug!(%error, "etcd call failed; trying again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) => return Err(self.error(error)),
            }
        }
    }

    async fn read_group(&self, group: &str) -> Result<Snapshot, StoreError> {
        let prefix = self.group_prefix(group);
        let response = self
            .retrying(|mut client| {
                let prefix = prefix.clone();
                async move {
                    client
                        .get(prefix, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
        Ok(self
            .snapshots(response.kvs())?
            .remove(group)
            .unwrap_or_default())
    }

    async fn read_all(&self) -> Result<BTreeMap<String, Snapshot>, StoreError> {
        let prefix = self.groups_prefix();
        let response = self
            .retrying(|mut client| {
                let prefix = prefix.clone();
                async move {
                    client
                        .get(prefix, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
        self.snapshots(response.kvs())
    }

    fn turn(&self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the queues nobody waits in, so the map stays small.
        turns.retain(|_, turn| Arc::strong_count(turn) > 1);
        Arc::clone(turns.entry(group.to_string()).or_default())
    }

    /// Best effort: a lease whose key was deleted would only run out later.
    fn revoke_later(&self, leases: Vec<i64>) {
        if leases.is_empty() {
            return;
        }
        let mut client = self.client.clone();
        tokio::spawn(async move {
            for lease in leases {
                if let Err(error) = client.lease_revoke(lease).await {
                    tracing::debug!(%error, lease, "revoking an unused etcd lease failed");
                }
            }
        });
    }
}

impl LockStore for EtcdStore {
    async fn apply(
        &self,
        group: &str,
        policy: GroupPolicy,
        op: LockOp,
        now: Timestamp,
    ) -> Result<Change, StoreError> {
        let turn = self.turn(group);
        let _turn = turn.lock().await;
        let state_key = self.state_key(group);
        let mut snapshot = self.read_group(group).await?;
        for _ in 0..MAX_CONFLICTS {
            let before = snapshot.state.clone();
            let mut after = before.clone();
            let live = &snapshot.live;
            let applied = after.apply_judged(&op, &policy, now, |node, _| !live.contains_key(node));
            if after == before {
                return Ok(Change {
                    applied,
                    before,
                    after,
                });
            }
            // A lease for each holder without a live key, as long as the
            // group's lease: a new one, and one whose lease ran out and that
            // the rules granted again in this call (under `release`).
            let ttl = policy.lease.as_secs().max(1);
            let mut granted = Vec::new();
            for node in after.holders.keys() {
                if !snapshot.live.contains_key(node) {
                    let lease = self
                        .retrying(|mut client| async move { client.lease_grant(ttl, None).await })
                        .await?;
                    granted.push((node.clone(), lease.id()));
                }
            }
            let compare = if snapshot.revision == 0 {
                Compare::create_revision(state_key.clone(), CompareOp::Equal, 0)
            } else {
                Compare::mod_revision(state_key.clone(), CompareOp::Equal, snapshot.revision)
            };
            let mut writes = Vec::new();
            if after.holders.is_empty() && after.halt.is_none() {
                writes.push(TxnOp::delete(state_key.clone(), None));
            } else {
                let text = serde_json::to_vec(&after).map_err(|e| self.error(e))?;
                writes.push(TxnOp::put(state_key.clone(), text, None));
            }
            let mut gone = Vec::new();
            for node in before.holders.keys() {
                if !after.holders.contains_key(node) {
                    writes.push(TxnOp::delete(self.holder_key(group, node), None));
                    if let Some(lease) = snapshot.live.get(node) {
                        gone.push(*lease);
                    }
                }
            }
            for (node, lease) in &granted {
                writes.push(TxnOp::put(
                    self.holder_key(group, node),
                    Vec::new(),
                    Some(PutOptions::new().with_lease(*lease)),
                ));
            }
            let txn = Txn::new()
                .when([compare])
                .and_then(writes)
                .or_else([TxnOp::get(
                    self.group_prefix(group),
                    Some(GetOptions::new().with_prefix()),
                )]);
            // Not retried blindly: after an error the outcome is unknown, so
            // the next try reads again and decides on what it finds (a grant
            // that did commit shows as the node already holding its slot).
            let response = match self.client.clone().txn(txn).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::debug!(%error, group, "etcd transaction failed; reading again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    snapshot = self.read_group(group).await?;
                    continue;
                }
            };
            if response.succeeded() {
                self.revoke_later(gone);
                return Ok(Change {
                    applied,
                    before,
                    after,
                });
            }
            // Another server wrote first: the leases granted here are unused.
            self.revoke_later(granted.into_iter().map(|(_, lease)| lease).collect());
            let kvs: Vec<KeyValue> = response
                .op_responses()
                .into_iter()
                .flat_map(|answer| match answer {
                    TxnOpResponse::Get(mut get) => get.take_kvs(),
                    _ => Vec::new(),
                })
                .collect();
            snapshot = self.snapshots(&kvs)?.remove(group).unwrap_or_default();
        }
        Err(StoreError::Conflict {
            group: group.to_string(),
            tries: MAX_CONFLICTS,
        })
    }

    async fn groups(&self) -> Result<BTreeMap<String, GroupState>, StoreError> {
        Ok(self
            .read_all()
            .await?
            .into_iter()
            .filter(|(_, snapshot)| snapshot.revision != 0)
            .map(|(name, snapshot)| (name, snapshot.state))
            .collect())
    }

    async fn due(&self, _now: Timestamp) -> Result<Vec<String>, StoreError> {
        Ok(self
            .read_all()
            .await?
            .into_iter()
            .filter(|(_, snapshot)| {
                snapshot
                    .state
                    .holders
                    .keys()
                    .any(|node| !snapshot.live.contains_key(node))
            })
            .map(|(name, _)| name)
            .collect())
    }

    async fn heartbeat(&self, _now: Timestamp) -> Result<(), StoreError> {
        // etcd's leases run on etcd's clock: this server's downtime is no
        // concern of theirs.
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        // A linearizable read needs a leader and a quorum, as a grant does.
        let key = format!("{}ready", self.prefix);
        self.retrying(|mut client| {
            let key = key.clone();
            async move { client.get(key, None).await }
        })
        .await
        .map(|_| ())
    }
}
