//! The halt lists' etcd backend, shared by several `cairn serve` copies.
//!
//! Keys, under the configured prefix:
//! - `list/<stream>`: the newest list accepted by any copy, replaced only by
//!   a higher sequence (a transaction that compares the key's revision);
//! - `audit/<stream>/<ms>-<random>`: one audit entry;
//! - `leader`: the id of the copy that leads the guard, bound to that copy's
//!   lease. It is created only when absent, so one copy holds it until its
//!   lease runs out (it stopped, or lost etcd), and then another takes it.

use super::StoreError;
use super::etcd_conn::{Etcd, txn_gets};
use super::halts::{AuditEntry, HaltStore, HeldRecord};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use std::sync::Arc;

/// How long the leader's lease lives without a renewal. A task of its own
/// renews it every third of this, whatever the guard is doing.
pub const LEADER_TTL_SECONDS: i64 = 30;

/// Time between two renewals of the lease.
const RENEW_EVERY: std::time::Duration =
    std::time::Duration::from_secs(LEADER_TTL_SECONDS.unsigned_abs() / 3);

/// The most times a write is tried again after another copy wrote first.
const MAX_CONFLICTS: usize = 16;

/// A handle on the etcd halt store; cheap to clone.
#[derive(Clone)]
pub struct EtcdHalts {
    etcd: Etcd,
    prefix: String,
    /// This copy's id in the `leader` key.
    me: String,
    /// The lease this copy holds the leader key on, once granted.
    lease: Arc<tokio::sync::Mutex<Option<i64>>>,
}

impl std::fmt::Debug for EtcdHalts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHalts")
            .field("endpoints", &self.etcd.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl EtcdHalts {
    /// A store on these members; connecting is lazy.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdHalts, StoreError> {
        use rand_core::RngCore;
        let etcd = Etcd::connect(endpoints).await?;
        let mut id = [0u8; 16];
        rand_core::OsRng
            .try_fill_bytes(&mut id)
            .map_err(|e| etcd.error(format!("drawing this server's leader id: {e}")))?;
        Ok(EtcdHalts {
            etcd,
            prefix: prefix.to_string(),
            me: hex::encode(id),
            lease: Arc::default(),
        })
    }

    fn list_key(&self, stream: &str) -> String {
        format!("{}list/{stream}", self.prefix)
    }

    fn audit_prefix(&self, stream: &str) -> String {
        format!("{}audit/{stream}/", self.prefix)
    }

    fn corrupt(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        self.etcd.error(format!("unreadable record {key}: {e}"))
    }

    /// The lease this copy holds, or a new one, renewed from then on by a
    /// task of its own every [`RENEW_EVERY`] until a renewal fails (then the
    /// next call asks for a new lease) or this store is dropped.
    async fn live_lease(&self) -> Result<i64, StoreError> {
        let mut held = self.lease.lock().await;
        if let Some(id) = *held {
            return Ok(id);
        }
        let granted = self
            .etcd
            .retrying(
                |mut client| async move { client.lease_grant(LEADER_TTL_SECONDS, None).await },
            )
            .await?;
        let id = granted.id();
        *held = Some(id);
        let lease = Arc::downgrade(&self.lease);
        let client = self.etcd.client.clone();
        tokio::spawn(renew(client, id, lease));
        Ok(id)
    }
}

/// Keep lease `id` alive until a renewal fails or `lease` is gone or holds
/// another lease; then forget it.
async fn renew(
    mut client: etcd_client::Client,
    id: i64,
    lease: std::sync::Weak<tokio::sync::Mutex<Option<i64>>>,
) {
    let mut keeper = match client.lease_keep_alive(id).await {
        Ok(keeper) => Some(keeper),
        Err(error) => {
            tracing::warn!(%error, "renewing the guard's leader lease failed");
            None
        }
    };
    loop {
        let alive = match keeper.as_mut() {
            Some((keeper, answers)) => {
                tokio::time::sleep(RENEW_EVERY).await;
                let answer = tokio::time::timeout(RENEW_EVERY, async {
                    keeper.keep_alive().await?;
                    answers.message().await
                })
                .await;
                match answer {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => true,
                    Ok(Ok(_)) => {
                        tracing::info!("the guard's leader lease ran out; asking for a new one");
                        false
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "renewing the guard's leader lease failed");
                        false
                    }
                    Err(_) => {
                        tracing::warn!("renewing the guard's leader lease got no answer in time");
                        false
                    }
                }
            }
            None => false,
        };
        let Some(lease) = lease.upgrade() else {
            return;
        };
        if alive {
            if *lease.lock().await != Some(id) {
                return;
            }
            continue;
        }
        let mut held = lease.lock().await;
        if *held == Some(id) {
            *held = None;
        }
        return;
    }
}

impl HaltStore for EtcdHalts {
    async fn newest(&self, stream: &str) -> Result<Option<HeldRecord>, StoreError> {
        let key = self.list_key(stream);
        let answer = self
            .etcd
            .retrying(|mut client| {
                let key = key.clone();
                async move { client.get(key, None).await }
            })
            .await?;
        answer
            .kvs()
            .first()
            .map(|kv| serde_json::from_slice(kv.value()).map_err(|e| self.corrupt(&key, e)))
            .transpose()
    }

    async fn keep(&self, stream: &str, record: &HeldRecord) -> Result<HeldRecord, StoreError> {
        let key = self.list_key(stream);
        let value = serde_json::to_vec(record).map_err(|e| self.corrupt(&key, e))?;
        for _ in 0..MAX_CONFLICTS {
            let answer = self
                .etcd
                .retrying(|mut client| {
                    let key = key.clone();
                    async move { client.get(key, None).await }
                })
                .await?;
            let (stored, revision) = match answer.kvs().first() {
                Some(kv) => (
                    Some(
                        serde_json::from_slice::<HeldRecord>(kv.value())
                            .map_err(|e| self.corrupt(&key, e))?,
                    ),
                    kv.mod_revision(),
                ),
                None => (None, 0),
            };
            if let Some(stored) = stored
                && stored.sequence >= record.sequence
            {
                return Ok(stored);
            }
            let written = self
                .etcd
                .retrying(|mut client| {
                    let txn = Txn::new()
                        .when([Compare::mod_revision(
                            key.clone(),
                            CompareOp::Equal,
                            revision,
                        )])
                        .and_then([TxnOp::put(key.clone(), value.clone(), None)]);
                    async move { client.txn(txn).await }
                })
                .await?;
            if written.succeeded() {
                return Ok(record.clone());
            }
        }
        Err(StoreError::Conflict {
            group: format!("halt list of {stream}"),
            tries: MAX_CONFLICTS,
        })
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        use rand_core::RngCore;
        let mut suffix = [0u8; 4];
        rand_core::OsRng.fill_bytes(&mut suffix);
        let key = format!(
            "{}{:015}-{}",
            self.audit_prefix(&entry.stream),
            entry.time.as_millisecond(),
            hex::encode(suffix)
        );
        let value = serde_json::to_vec(entry).map_err(|e| self.corrupt(&key, e))?;
        self.etcd
            .retrying(|mut client| {
                let (key, value) = (key.clone(), value.clone());
                async move { client.put(key, value, None).await }
            })
            .await?;
        Ok(())
    }

    async fn audits(&self, stream: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let answer = self.etcd.get_prefix(&self.audit_prefix(stream)).await?;
        answer
            .kvs()
            .iter()
            .map(|kv| {
                serde_json::from_slice(kv.value())
                    .map_err(|e| self.corrupt(&String::from_utf8_lossy(kv.key()), e))
            })
            .collect()
    }

    async fn lead(&self) -> Result<bool, StoreError> {
        let lease = self.live_lease().await?;
        let key = format!("{}leader", self.prefix);
        let me = self.me.clone();
        let answer = self
            .etcd
            .retrying(|mut client| {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key.clone(),
                        me.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    )])
                    .or_else([TxnOp::get(key.clone(), Some(GetOptions::new()))]);
                async move { client.txn(txn).await }
            })
            .await?;
        if answer.succeeded() {
            return Ok(true);
        }
        let holder = txn_gets(answer).next().unwrap_or_default();
        Ok(holder
            .first()
            .is_some_and(|kv| kv.value() == me.as_bytes() && kv.lease() == lease))
    }
}
