//! The etcd backend: several `cairn serve` copies share one etcd cluster.
//!
//! Keys, under the configured prefix:
//! - `group/<name>/state`: the group's [`GroupState`] as JSON;
//! - `group/<name>/holder/<node>`: one per holder, bound to an etcd lease
//!   as long as the group's lease, so etcd deletes it when the lease runs out.
//!
//! An operation lets the model decide on the group as this copy last saw it
//! (or, when it has not seen it, as one linearizable range read shows it),
//! and writes the result in one transaction that first compares everything
//! the decision rested on: the state key's revision, and for each holder
//! whether its key still exists on the same lease (a holder whose key is
//! gone has expired: etcd's clock judges leases, not this server's). When a
//! compare fails nothing is written, and the transaction's fallback read
//! brings the group as it is for the next try. Two servers can therefore
//! never both grant from the same state. An operation that changes nothing
//! (a full group, a repeated `pre-reboot`) writes nothing: a decision from
//! the cache is confirmed by a read-only transaction with the same compares.
//!
//! Writes of different groups that wait together go to etcd as one
//! transaction; if any of their compares fails, each is sent again alone.
//! A released holder's lease is kept (key-less) for a later grant, which
//! renews it to its full TTL first: etcd's leader answers a renewal without
//! a raft write, where a grant and a revocation are one each.

use super::StoreError;
use super::etcd_conn::{Etcd, RETRY_PAUSE, txn_gets};
use super::locks::{Change, LockStore};
use crate::fleetlock::model::{GroupPolicy, GroupState, LockOp};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnResponse,
};
use jiff::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// The most compare failures (another server wrote first) one call retries.
const MAX_CONFLICTS: usize = 32;

/// The most released leases one copy keeps for later grants; a release past
/// it revokes its lease.
const POOL_LIMIT: usize = 256;

/// The most groups one copy remembers the last state of.
const CACHE_LIMIT: usize = 4096;

/// How long renewing a pooled lease may take before a fresh one is granted.
const RENEW_FOR: Duration = Duration::from_millis(500);

/// The most compares, and the most writes, one batched transaction carries
/// (etcd's default `--max-txn-ops` is 128).
const BATCH_OPS: usize = 128;

/// How many batched transactions one copy has in flight at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// A handle on the etcd store; cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    etcd: Etcd,
    prefix: String,
    /// One queue per group, so this server's own requests for a group take
    /// turns instead of failing each other's compares.
    turns: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Each group as this copy last read or wrote it.
    cache: Arc<Mutex<HashMap<String, Snapshot>>>,
    /// Leases whose holder key this copy deleted, by TTL in seconds, with
    /// when they were pooled (newest last).
    pool: Arc<Mutex<LeasePool>>,
    /// Transactions that write, on their way to the batcher.
    queue: mpsc::UnboundedSender<Part>,
}

/// Key-less leases kept for the next grants instead of being revoked.
#[derive(Debug, Default)]
struct LeasePool {
    by_ttl: HashMap<i64, Vec<(i64, Instant)>>,
    count: usize,
}

/// The etcd lease a holder key is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeldLease {
    id: i64,
    /// The TTL it was granted with, stored as the holder key's value; `None`
    /// for a key written without it.
    ttl: Option<i64>,
}

/// Whether `state` is stored (a group with no holder and no halt has no key).
fn writes_state(state: &GroupState) -> bool {
    !(state.holders.is_empty() && state.halt.is_none())
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.etcd.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One group as read at one revision.
#[derive(Debug, Default, Clone)]
struct Snapshot {
    state: GroupState,
    /// The state key's mod revision; 0 when there is none.
    revision: i64,
    /// Holders whose lease key still exists, with its lease.
    live: BTreeMap<String, HeldLease>,
}

impl EtcdStore {
    /// A store on these members. Connecting is lazy: a cluster that is down
    /// now makes calls fail (503) and `/readyz` say so, not the start.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
        let etcd = Etcd::connect(endpoints).await?;
        let (queue, parts) = mpsc::unbounded_channel();
        tokio::spawn(batcher(etcd.client.clone(), parts));
        Ok(EtcdStore {
            queue,
            etcd,
            prefix: prefix.to_string(),
            turns: Arc::default(),
            cache: Arc::default(),
            pool: Arc::default(),
        })
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
                        path: format!("etcd {}", self.etcd.endpoints),
                        group: group.to_string(),
                        message: e.to_string(),
                    })?;
                entry.revision = kv.mod_revision();
            } else if let Some(node) = what.strip_prefix("holder/") {
                let ttl = std::str::from_utf8(kv.value())
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .filter(|ttl| *ttl > 0);
                entry.live.insert(
                    node.to_string(),
                    HeldLease {
                        id: kv.lease(),
                        ttl,
                    },
                );
            }
        }
        Ok(groups)
    }

    async fn read_group(&self, group: &str) -> Result<Snapshot, StoreError> {
        let response = self.etcd.get_prefix(&self.group_prefix(group)).await?;
        Ok(self
            .snapshots(response.kvs())?
            .remove(group)
            .unwrap_or_default())
    }

    async fn read_all(&self) -> Result<BTreeMap<String, Snapshot>, StoreError> {
        let response = self.etcd.get_prefix(&self.groups_prefix()).await?;
        self.snapshots(response.kvs())
    }

    fn turn(&self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the queues nobody waits in, so the map stays small.
        turns.retain(|_, turn| Arc::strong_count(turn) > 1);
        Arc::clone(turns.entry(group.to_string()).or_default())
    }

    fn cached(&self, group: &str) -> Option<Snapshot> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(group).cloned()
    }

    fn remember(&self, group: &str, snapshot: Snapshot) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT && !cache.contains_key(group) {
            cache.clear();
        }
        cache.insert(group.to_string(), snapshot);
    }

    fn forget(&self, group: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(group);
    }

    /// What a decision on `snapshot` rests on: the state key's revision, and
    /// for each holder whether its key still exists on the same lease.
    fn compares(&self, group: &str, snapshot: &Snapshot) -> Vec<Compare> {
        let state_key = self.state_key(group);
        let mut compares = vec![if snapshot.revision == 0 {
            Compare::create_revision(state_key, CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(state_key, CompareOp::Equal, snapshot.revision)
        }];
        for node in snapshot.state.holders.keys() {
            let key = self.holder_key(group, node);
            compares.push(match snapshot.live.get(node) {
                Some(lease) => Compare::lease(key, CompareOp::Equal, lease.id),
                None => Compare::version(key, CompareOp::Equal, 0),
            });
        }
        compares
    }

    /// The group as the failed transaction's fallback read it.
    fn fallback_snapshot(
        &self,
        group: &str,
        response: TxnResponse,
    ) -> Result<Snapshot, StoreError> {
        let kvs: Vec<KeyValue> = txn_gets(response).flatten().collect();
        let snapshot = self.snapshots(&kvs)?.remove(group).unwrap_or_default();
        self.remember(group, snapshot.clone());
        Ok(snapshot)
    }

    /// A lease of `ttl` seconds for a new holder, running from now: a pooled
    /// one renewed (a renewal is answered by etcd's leader, not written
    /// through raft), or else a new grant.
    async fn lease(&self, ttl: i64) -> Result<HeldLease, StoreError> {
        while let Some(id) = self.take_pooled(ttl) {
            let mut client = self.etcd.client.clone();
            match tokio::time::timeout(RENEW_FOR, client.lease_keep_alive(id)).await {
                // The stream answered with a TTL above 0: renewed in full.
                Ok(Ok(_)) => return Ok(HeldLease { id, ttl: Some(ttl) }),
                // Run out, or revoked: try the next one.
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => continue,
                // etcd is unwell: let a grant retry it.
                Ok(Err(error)) => {
                    tracing::debug!(%error, lease = id, "renewing a pooled etcd lease failed");
                    break;
                }
                Err(_) => break,
            }
        }
        let lease = self
            .etcd
            .retrying(|mut client| async move { client.lease_grant(ttl, None).await })
            .await?;
        Ok(HeldLease {
            id: lease.id(),
            ttl: Some(ttl),
        })
    }

    /// The newest pooled lease of `ttl` that may still run; older ones of
    /// that TTL that cannot are dropped (they have run out by themselves).
    fn take_pooled(&self, ttl: i64) -> Option<i64> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let pool = &mut *pool;
        let leases = pool.by_ttl.get_mut(&ttl)?;
        let (id, pooled) = leases.pop()?;
        pool.count -= 1;
        let span = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
        if pooled.elapsed() >= span {
            // Renewed last before it was pooled: it, and every older one,
            // has run out.
            pool.count -= leases.len();
            leases.clear();
            return None;
        }
        Some(id)
    }

    /// Keep leases whose keys are gone for later grants; revoke those past
    /// the pool's limit or of unknown TTL.
    fn pool_leases(&self, leases: Vec<HeldLease>) {
        let mut overflow = Vec::new();
        {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            for lease in leases {
                match lease.ttl {
                    Some(ttl) if pool.count < POOL_LIMIT => {
                        pool.by_ttl
                            .entry(ttl)
                            .or_default()
                            .push((lease.id, Instant::now()));
                        pool.count += 1;
                    }
                    _ => overflow.push(lease.id),
                }
            }
        }
        self.revoke_later(overflow);
    }

    /// Best effort: a lease whose key was deleted would only run out later.
    fn revoke_later(&self, leases: Vec<i64>) {
        if leases.is_empty() {
            return;
        }
        let mut client = self.etcd.client.clone();
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
        let ttl = policy.lease.as_secs().max(1);
        // What this copy last saw of the group, if anything: the transaction's
        // compares check it, so a stale copy costs a failed compare, never a
        // wrong decision.
        let (mut snapshot, mut confirmed) = match self.cached(group) {
            Some(snapshot) => (snapshot, false),
            None => (self.read_group(group).await?, true),
        };
        for _ in 0..MAX_CONFLICTS {
            let before = snapshot.state.clone();
            let mut after = before.clone();
            let live = &snapshot.live;
            let applied = after.apply_judged(&op, &policy, now, |node, _| !live.contains_key(node));
            let compares = self.compares(group, &snapshot);
            let fallback = TxnOp::get(
                self.group_prefix(group),
                Some(GetOptions::new().with_prefix()),
            );
            if after == before {
                if confirmed {
                    self.remember(group, snapshot);
                    return Ok(Change {
                        applied,
                        before,
                        after,
                    });
                }
                // Nothing to write, but the decision came from the cache:
                // confirm it with a read-only transaction (a linearizable
                // read in etcd, no raft write).
                let txn = Txn::new().when(compares).or_else([fallback]);
                match self.etcd.client.clone().txn(txn).await {
                    Ok(response) if response.succeeded() => {
                        self.remember(group, snapshot);
                        return Ok(Change {
                            applied,
                            before,
                            after,
                        });
                    }
                    Ok(response) => snapshot = self.fallback_snapshot(group, response)?,
                    Err(error) => {
                        tracing::debug!(%error, group, "etcd read failed; reading again");
                        self.forget(group);
                        snapshot = self.read_group(group).await?;
                    }
                }
                confirmed = true;
                continue;
            }
            // A lease for each holder without a live key, as long as the
            // group's lease: a new one, and one whose lease ran out and that
            // the rules granted again in this call (under `release`).
            let mut granted = Vec::new();
            for node in after.holders.keys() {
                if !snapshot.live.contains_key(node) {
                    granted.push((node.clone(), self.lease(ttl).await?));
                }
            }
            let mut writes = Vec::new();
            if after.holders.is_empty() && after.halt.is_none() {
                writes.push(TxnOp::delete(state_key.clone(), None));
            } else {
                let text = serde_json::to_vec(&after).map_err(|e| self.etcd.error(e))?;
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
                    ttl.to_string(),
                    Some(PutOptions::new().with_lease(lease.id)),
                ));
            }
            // Not retried blindly: after an error the outcome is unknown, so
            // the next try reads again and decides on what it finds (a grant
            // that did commit shows as the node already holding its slot).
            // The leases taken for it are neither pooled nor revoked: one may
            // now hold a key.
            let (answer, outcome) = oneshot::channel();
            self.queue
                .send(Part {
                    group: group.to_string(),
                    compares,
                    writes,
                    fallback,
                    answer,
                })
                .map_err(|_| StoreError::Stopped)?;
            let committed = match outcome.await.map_err(|_| StoreError::Stopped)? {
                Outcome::Committed(revision) => revision,
                Outcome::Changed(response) => {
                    // The group changed since it was read or cached: nothing
                    // was written, so the leases taken for this try are
                    // still key-less.
                    self.pool_leases(granted.into_iter().map(|(_, lease)| lease).collect());
                    snapshot = self.fallback_snapshot(group, response)?;
                    confirmed = true;
                    continue;
                }
                Outcome::Unknown(error) => {
                    tracing::debug!(%error, group, "etcd transaction failed; reading again");
                    self.forget(group);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    snapshot = self.read_group(group).await?;
                    confirmed = true;
                    continue;
                }
            };
            // The holder keys deleted here were their leases' only keys:
            // those leases are free for later grants.
            self.pool_leases(gone);
            let mut live = snapshot.live.clone();
            live.retain(|node, _| after.holders.contains_key(node));
            for (node, lease) in granted {
                live.insert(node, lease);
            }
            // The state key's new revision is the transaction's; a
            // deleted state key has none.
            let revision = if writes_state(&after) {
                committed
            } else {
                Some(0)
            };
            match revision {
                Some(revision) => self.remember(
                    group,
                    Snapshot {
                        state: after.clone(),
                        revision,
                        live,
                    },
                ),
                None => self.forget(group),
            }
            return Ok(Change {
                applied,
                before,
                after,
            });
        }
        self.forget(group);
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
        self.etcd.check(&self.prefix).await
    }
}

/// One call's transaction, waiting to be sent together with other groups'.
struct Part {
    /// Its group: one transaction carries at most one part per group (a call
    /// cut off by its deadline leaves its part behind while the group's next
    /// call sends its own).
    group: String,
    compares: Vec<Compare>,
    writes: Vec<TxnOp>,
    /// Read back when the compares fail: the group as it is now.
    fallback: TxnOp,
    answer: oneshot::Sender<Outcome>,
}

/// What became of one call's part.
enum Outcome {
    /// Written, at this revision.
    Committed(Option<i64>),
    /// Nothing written: the group changed; the answer carries it as it is.
    Changed(TxnResponse),
    /// The transaction failed: it may or may not have been written.
    Unknown(String),
}

impl Part {
    fn txn(&self) -> Txn {
        Txn::new()
            .when(self.compares.clone())
            .and_then(self.writes.clone())
            .or_else([self.fallback.clone()])
    }
}

/// Send one part as its own transaction.
async fn send_alone(mut client: Client, part: Part) {
    let outcome = match client.txn(part.txn()).await {
        Ok(response) if response.succeeded() => {
            Outcome::Committed(response.header().map(|header| header.revision()))
        }
        Ok(response) => Outcome::Changed(response),
        Err(error) => Outcome::Unknown(error.to_string()),
    };
    // The caller may have given up already (past its deadline).
    let _ = part.answer.send(outcome);
}

/// Send several groups' parts as one transaction: all their compares, then
/// all their writes. If any compare fails nothing is written, and each part
/// is sent again alone, so each learns its own group's fate.
async fn send_batch(client: Client, mut parts: Vec<Part>) {
    if parts.len() == 1 {
        if let Some(part) = parts.pop() {
            send_alone(client, part).await;
        }
        return;
    }
    let compares: Vec<Compare> = parts
        .iter()
        .flat_map(|part| part.compares.iter().cloned())
        .collect();
    let writes: Vec<TxnOp> = parts
        .iter()
        .flat_map(|part| part.writes.iter().cloned())
        .collect();
    let txn = Txn::new().when(compares).and_then(writes);
    match client.clone().txn(txn).await {
        Ok(response) if response.succeeded() => {
            let revision = response.header().map(|header| header.revision());
            for part in parts {
                let _ = part.answer.send(Outcome::Committed(revision));
            }
        }
        Ok(_) => {
            for part in parts {
                tokio::spawn(send_alone(client.clone(), part));
            }
        }
        Err(error) => {
            let message = error.to_string();
            for part in parts {
                let _ = part.answer.send(Outcome::Unknown(message.clone()));
            }
        }
    }
}

/// Gather the parts that wait while earlier transactions are in flight into
/// one transaction, up to [`BATCH_OPS`] compares and writes, with at most
/// [`BATCHES_IN_FLIGHT`] transactions in flight.
async fn batcher(client: Client, mut queue: mpsc::UnboundedReceiver<Part>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut held: Option<Part> = None;
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let first = match held.take() {
            Some(part) => part,
            None => match queue.recv().await {
                Some(part) => part,
                None => return,
            },
        };
        let mut compares = first.compares.len();
        let mut writes = first.writes.len();
        let mut parts = vec![first];
        while let Ok(part) = queue.try_recv() {
            if compares + part.compares.len() > BATCH_OPS
                || writes + part.writes.len() > BATCH_OPS
                || parts.iter().any(|other| other.group == part.group)
            {
                held = Some(part);
                break;
            }
            compares += part.compares.len();
            writes += part.writes.len();
            parts.push(part);
        }
        let client = client.clone();
        tokio::spawn(async move {
            send_batch(client, parts).await;
            drop(permit);
        });
    }
}
