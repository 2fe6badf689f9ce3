//! The reports' etcd backend: several `cairn serve` copies count into one
//! etcd cluster.
//!
//! Keys, under the configured prefix:
//! - `id/<id>`: a counted report's id; its value is when it came (Unix ms);
//! - `count/<stream>/<hour>/<outcome>/<digest>/<version>`: a count;
//! - `receipt/<stream>/<id>`: a `rebooting` report's release and time;
//! - `steps/<stream>/<hash>/<n>`: part `n` of a served graph set's compact
//!   form (parts of at most 1 MiB, under etcd's request size limit), and
//!   `served/<stream>/<hash>`: how many parts, and when it stopped being
//!   served. These are deleted by `prune`, 72 hours after that.
//!
//! Each key is bound to an etcd lease shared by the keys of its kind and
//! hour, which outlives the kind's window (de-duplication, retention,
//! `missing_after`) by an hour: etcd deletes what aged out, and reads filter
//! by the stored times, so answers are exact whenever the lease runs out.
//!
//! Reports that wait together are counted in one transaction: a read of
//! their ids and counts, then a write of the new counts that first compares
//! every key it rests on. When another copy wrote one of them in between,
//! nothing is written and the batch is decided again on what is there now.

use super::StoreError;
use super::etcd_conn::{Etcd, txn_gets};
use super::reports::{Recorded, ReportRecord, ReportStore, Windows, hour_of};
use crate::reports::model::{Outcome, Release, Tally};
use crate::reports::plausible::{KeptSteps, RECENT, Served};
use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use jiff::Timestamp;
use std::collections::{BTreeMap, HashMap, HashSet};
use tokio::sync::{mpsc, oneshot};

/// The most reports one transaction counts: each adds at most one compare
/// and three writes, under etcd's default `--max-txn-ops` of 128.
const MAX_REPORTS: usize = 32;

/// The most times a batch is decided again after another copy wrote first.
const MAX_CONFLICTS: usize = 16;

/// How long a lease outlives the window of the keys bound to it.
const LEASE_MARGIN_SECONDS: i64 = 3600;

/// A handle on the etcd report store; cheap to clone.
#[derive(Clone)]
pub struct EtcdReports {
    etcd: Etcd,
    prefix: String,
    windows: Windows,
    queue: mpsc::UnboundedSender<Pending>,
}

impl std::fmt::Debug for EtcdReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdReports")
            .field("endpoints", &self.etcd.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A report waiting for the counter.
struct Pending {
    report: ReportRecord,
    now: Timestamp,
    answer: oneshot::Sender<Result<Recorded, StoreError>>,
}

/// The largest part of a graph set's compact form in one key.
const STEPS_PART_BYTES: usize = 1 << 20;

/// The most operations put in one etcd transaction.
const MAX_TXN_OPS: usize = 100;

/// The value of `served/<stream>/<hash>`.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct ServedRecord {
    parts: usize,
    /// Unix ms; `None` while served.
    replaced: Option<i64>,
}

/// The kinds of key, each with its own leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Id,
    Count,
    Receipt,
}

/// Key names, shared by the handle and the counter.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn id(&self, id: &[u8; 16]) -> String {
        format!("{}id/{}", self.prefix, hex::encode(id))
    }

    fn counts(&self, stream: &str) -> String {
        format!("{}count/{stream}/", self.prefix)
    }

    fn count(&self, report: &ReportRecord, hour: i64) -> String {
        format!(
            "{}{hour}/{}/{}/{}",
            self.counts(&report.stream),
            report.outcome.as_str(),
            report.release.digest,
            report.release.version
        )
    }

    fn receipts(&self, stream: &str) -> String {
        format!("{}receipt/{stream}/", self.prefix)
    }

    fn served_all(&self) -> String {
        format!("{}served/", self.prefix)
    }

    fn served(&self, stream: &str, hash: &[u8; 32]) -> String {
        format!("{}{stream}/{}", self.served_all(), hex::encode(hash))
    }

    fn steps(&self, stream: &str, hash: &str) -> String {
        format!("{}steps/{stream}/{hash}/", self.prefix)
    }

    fn receipt(&self, report: &ReportRecord) -> String {
        format!(
            "{}{}",
            self.receipts(&report.stream),
            hex::encode(report.id)
        )
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Receipt {
    version: String,
    digest: String,
    /// Unix milliseconds.
    received: i64,
}

impl EtcdReports {
    /// A store on these members. Connecting is lazy: a cluster that is down
    /// now makes calls fail (503) and `/readyz` say so, not the start.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        windows: Windows,
    ) -> Result<EtcdReports, StoreError> {
        let etcd = Etcd::connect(endpoints).await?;
        let (queue, pending) = mpsc::unbounded_channel();
        let counter = Counter {
            etcd: etcd.clone(),
            keys: Keys {
                prefix: prefix.to_string(),
            },
            windows,
            leases: HashMap::new(),
        };
        tokio::spawn(counter.run(pending));
        Ok(EtcdReports {
            etcd,
            prefix: prefix.to_string(),
            windows,
            queue,
        })
    }

    fn keys(&self) -> Keys {
        Keys {
            prefix: self.prefix.clone(),
        }
    }

    fn corrupt(&self, key: &[u8], message: impl std::fmt::Display) -> StoreError {
        StoreError::Etcd {
            endpoints: self.etcd.endpoints.clone(),
            message: format!(
                "unreadable record {}: {message}",
                String::from_utf8_lossy(key)
            ),
        }
    }
}

impl EtcdReports {
    /// Every `served/` record: (key, stream, hash in hex, record).
    async fn served_records(
        &self,
    ) -> Result<Vec<(String, String, String, ServedRecord)>, StoreError> {
        let prefix = self.keys().served_all();
        let response = self.etcd.get_prefix(&prefix).await?;
        let mut records = Vec::new();
        for kv in response.kvs() {
            let key = std::str::from_utf8(kv.key()).map_err(|e| self.corrupt(kv.key(), e))?;
            let rest = key.strip_prefix(&prefix).unwrap_or_default();
            let Some((stream, hash)) = rest.rsplit_once('/') else {
                return Err(self.corrupt(kv.key(), "not served/<stream>/<hash>"));
            };
            let record: ServedRecord =
                serde_json::from_slice(kv.value()).map_err(|e| self.corrupt(kv.key(), e))?;
            records.push((
                key.to_string(),
                stream.to_string(),
                hash.to_string(),
                record,
            ));
        }
        Ok(records)
    }

    /// Run these operations, at most [`MAX_TXN_OPS`] a transaction.
    async fn apply(&self, operations: Vec<TxnOp>) -> Result<(), StoreError> {
        for chunk in operations.chunks(MAX_TXN_OPS) {
            let chunk = chunk.to_vec();
            self.etcd
                .retrying(|mut client| {
                    let txn = Txn::new().and_then(chunk.clone());
                    async move { client.txn(txn).await }
                })
                .await?;
        }
        Ok(())
    }

    /// The operations that forget one graph set.
    fn forget(&self, served_key: String, stream: &str, hash: &str) -> [TxnOp; 2] {
        [
            TxnOp::delete(served_key, None),
            TxnOp::delete(
                self.keys().steps(stream, hash),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            ),
        ]
    }
}

impl ReportStore for EtcdReports {
    async fn record(&self, report: ReportRecord, now: Timestamp) -> Result<Recorded, StoreError> {
        let (answer, outcome) = oneshot::channel();
        self.queue
            .send(Pending {
                report,
                now,
                answer,
            })
            .map_err(|_| StoreError::Stopped)?;
        outcome.await.map_err(|_| StoreError::Stopped)?
    }

    async fn tally(&self, stream: &str, now: Timestamp) -> Result<Tally, StoreError> {
        let keys = self.keys();
        let (counts, receipts) = (keys.counts(stream), keys.receipts(stream));
        // One transaction: counts and receipts as of one revision.
        let response = self
            .etcd
            .retrying(|mut client| {
                let txn = Txn::new().and_then([
                    TxnOp::get(counts.clone(), Some(GetOptions::new().with_prefix())),
                    TxnOp::get(receipts.clone(), Some(GetOptions::new().with_prefix())),
                ]);
                async move { client.txn(txn).await }
            })
            .await?;
        let mut answers = txn_gets(response);
        let (count_kvs, receipt_kvs) = (
            answers.next().unwrap_or_default(),
            answers.next().unwrap_or_default(),
        );
        let first_hour = self.windows.first_hour(now);
        let mut tally = Tally::new();
        for kv in &count_kvs {
            let rest = kv.key().strip_prefix(counts.as_bytes()).unwrap_or_default();
            let rest = std::str::from_utf8(rest).map_err(|e| self.corrupt(kv.key(), e))?;
            let mut parts = rest.splitn(4, '/');
            let (Some(hour), Some(word), Some(digest), Some(version)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(self.corrupt(kv.key(), "not hour/outcome/digest/version"));
            };
            let hour: i64 = hour.parse().map_err(|e| self.corrupt(kv.key(), e))?;
            // A word this build does not know (written by a newer one) is
            // left out rather than failing every read.
            let Some(outcome) = Outcome::parse(word) else {
                continue;
            };
            if hour < first_hour {
                continue;
            }
            let n = count_value(kv).map_err(|e| self.corrupt(kv.key(), e))?;
            tally
                .entry(Release {
                    version: version.to_string(),
                    digest: digest.to_string(),
                })
                .or_default()
                .add(outcome, n);
        }
        let since = (now - self.windows.missing_after).as_millisecond();
        for kv in &receipt_kvs {
            let receipt: Receipt =
                serde_json::from_slice(kv.value()).map_err(|e| self.corrupt(kv.key(), e))?;
            if receipt.received > since {
                tally
                    .entry(Release {
                        version: receipt.version,
                        digest: receipt.digest,
                    })
                    .or_default()
                    .recent_rebooting += 1;
            }
        }
        Ok(tally)
    }

    async fn prune(&self, now: Timestamp) -> Result<(), StoreError> {
        // etcd deletes the counting keys when their leases run out; graph
        // sets are deleted here, 72 hours after they stopped being served.
        let cutoff = (now - RECENT).as_millisecond();
        let mut operations = Vec::new();
        for (key, stream, hash, record) in self.served_records().await? {
            if record.replaced.is_some_and(|at| at <= cutoff) {
                operations.extend(self.forget(key, &stream, &hash));
            }
        }
        self.apply(operations).await
    }

    async fn keep_steps(
        &self,
        stream: &str,
        served: &Served,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let keys = self.keys();
        let hash = hex::encode(served.hash);
        let served_key = keys.served(stream, &served.hash);
        let records = self.served_records().await?;
        let parts = served.steps.chunks(STEPS_PART_BYTES).count();
        let known = records
            .iter()
            .any(|(key, _, _, record)| *key == served_key && record.parts == parts);
        if !known {
            // The parts first, one request each: the record that names
            // them is written only once they all are.
            let base = keys.steps(stream, &hash);
            for (n, part) in served.steps.chunks(STEPS_PART_BYTES).enumerate() {
                let (key, part) = (format!("{base}{n}"), part.to_vec());
                self.etcd
                    .retrying(|mut client| {
                        let (key, part) = (key.clone(), part.clone());
                        async move { client.put(key, part, None).await }
                    })
                    .await?;
            }
        }
        let record = |replaced| {
            serde_json::to_vec(&ServedRecord { parts, replaced }).map_err(|e| self.etcd.error(e))
        };
        let mut operations = vec![TxnOp::put(served_key.clone(), record(None)?, None)];
        let evicted: HashSet<String> = served.evicted.iter().map(hex::encode).collect();
        for (key, other_stream, other_hash, other) in records {
            if other_stream != stream || key == served_key {
                continue;
            }
            if evicted.contains(&other_hash) {
                operations.extend(self.forget(key, &other_stream, &other_hash));
            } else if other.replaced.is_none() {
                let replaced = ServedRecord {
                    replaced: Some(now.as_millisecond()),
                    ..other
                };
                let value = serde_json::to_vec(&replaced).map_err(|e| self.etcd.error(e))?;
                operations.push(TxnOp::put(key, value, None));
            }
        }
        self.apply(operations).await
    }

    async fn kept_steps(&self, now: Timestamp) -> Result<Vec<KeptSteps>, StoreError> {
        let cutoff = (now - RECENT).as_millisecond();
        let mut kept = Vec::new();
        'records: for (_, stream, hash, record) in self.served_records().await? {
            if record.replaced.is_some_and(|at| at <= cutoff) {
                continue;
            }
            let base = self.keys().steps(&stream, &hash);
            let mut steps = Vec::new();
            for n in 0..record.parts {
                let key = format!("{base}{n}");
                let response = self
                    .etcd
                    .retrying(|mut client| {
                        let key = key.clone();
                        async move { client.get(key, None).await }
                    })
                    .await?;
                match response.kvs().first() {
                    Some(kv) => steps.extend_from_slice(kv.value()),
                    // Another copy forgetting it right now: left out.
                    None => {
                        tracing::warn!(%key, "a part of a kept graph set is missing; left out");
                        continue 'records;
                    }
                }
            }
            kept.push(KeptSteps {
                stream,
                steps,
                replaced: record
                    .replaced
                    .and_then(|ms| Timestamp::from_millisecond(ms).ok()),
            });
        }
        Ok(kept)
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.etcd.check(&self.prefix).await
    }
}

fn count_value(kv: &KeyValue) -> Result<u64, String> {
    std::str::from_utf8(kv.value())
        .map_err(|e| e.to_string())?
        .parse::<u64>()
        .map_err(|e| e.to_string())
}

/// The task that counts: one batch at a time, each in one transaction.
struct Counter {
    etcd: Etcd,
    keys: Keys,
    windows: Windows,
    /// Leases by kind and hour.
    leases: HashMap<(Kind, i64), i64>,
}

/// What a batch rests on: each key read, with its mod revision (0: absent).
#[derive(Debug, Default)]
struct Read {
    /// Id key → (revision, when it was counted, Unix ms).
    ids: HashMap<String, (i64, i64)>,
    /// Count key → (revision, count).
    counts: HashMap<String, (i64, u64)>,
}

impl Counter {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Pending>) {
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_REPORTS {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            // The caller gave up (its timeout answered 503): the host sends
            // it again, and that one counts.
            batch.retain(|pending| !pending.answer.is_closed());
            if batch.is_empty() {
                continue;
            }
            let result = self.count(&batch).await;
            match result {
                Ok(outcomes) => {
                    for (pending, outcome) in batch.into_iter().zip(outcomes) {
                        let _ = pending.answer.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "the reports store could not count a batch");
                    for pending in batch {
                        let _ = pending.answer.send(Err(self.etcd.error(&error)));
                    }
                }
            }
        }
    }

    /// Count a batch, deciding it again while other copies write first.
    async fn count(&mut self, batch: &[Pending]) -> Result<Vec<Recorded>, StoreError> {
        for _ in 0..MAX_CONFLICTS {
            let read = self.read(batch).await?;
            if let Some(outcomes) = self.write(batch, &read).await? {
                return Ok(outcomes);
            }
        }
        Err(StoreError::Conflict {
            group: "reports".into(),
            tries: MAX_CONFLICTS,
        })
    }

    /// Read every id and count key the batch touches, in one transaction.
    async fn read(&self, batch: &[Pending]) -> Result<Read, StoreError> {
        let mut ids: Vec<String> = Vec::new();
        let mut counts: Vec<String> = Vec::new();
        for pending in batch {
            let id = self.keys.id(&pending.report.id);
            if !ids.contains(&id) {
                ids.push(id);
            }
            let count = self.keys.count(&pending.report, hour_of(pending.now));
            if !counts.contains(&count) {
                counts.push(count);
            }
        }
        let gets: Vec<TxnOp> = ids
            .iter()
            .chain(&counts)
            .map(|key| TxnOp::get(key.clone(), None))
            .collect();
        let response = self
            .etcd
            .client
            .clone()
            .txn(Txn::new().and_then(gets))
            .await
            .map_err(|e| self.etcd.error(e))?;
        let mut found: HashMap<Vec<u8>, KeyValue> = HashMap::new();
        for answer in response.op_responses() {
            if let TxnOpResponse::Get(mut get) = answer {
                for kv in get.take_kvs() {
                    found.insert(kv.key().to_vec(), kv);
                }
            }
        }
        let mut read = Read::default();
        for key in ids {
            let entry = match found.get(key.as_bytes()) {
                Some(kv) => {
                    // An unreadable time is taken as long ago: the id
                    // counts again rather than blocking its report.
                    let received = std::str::from_utf8(kv.value())
                        .ok()
                        .and_then(|text| text.parse::<i64>().ok())
                        .unwrap_or(i64::MIN);
                    (kv.mod_revision(), received)
                }
                None => (0, 0),
            };
            read.ids.insert(key, entry);
        }
        for key in counts {
            let entry = match found.get(key.as_bytes()) {
                Some(kv) => (
                    kv.mod_revision(),
                    count_value(kv).map_err(|e| self.etcd.error(format!("{key}: {e}")))?,
                ),
                None => (0, 0),
            };
            read.counts.insert(key, entry);
        }
        Ok(read)
    }

    /// Decide the batch on `read` and write it if nothing changed since:
    /// `None` when something did.
    async fn write(
        &mut self,
        batch: &[Pending],
        read: &Read,
    ) -> Result<Option<Vec<Recorded>>, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut seen: HashSet<[u8; 16]> = HashSet::new();
        let mut added: BTreeMap<(String, i64), u64> = BTreeMap::new();
        let mut compares = Vec::new();
        let mut writes = Vec::new();
        for pending in batch {
            let report = &pending.report;
            let id = self.keys.id(&report.id);
            let (revision, received) = read.ids.get(&id).copied().unwrap_or((0, 0));
            let cutoff = (pending.now - self.windows.dedup).as_millisecond();
            let recent = revision != 0 && received > cutoff;
            if recent || !seen.insert(report.id) {
                outcomes.push(Recorded::Duplicate);
                continue;
            }
            outcomes.push(Recorded::Counted);
            let hour = hour_of(pending.now);
            compares.push(Compare::mod_revision(
                id.clone(),
                CompareOp::Equal,
                revision,
            ));
            let lease = self.lease(Kind::Id, hour, pending.now).await?;
            writes.push(TxnOp::put(
                id,
                pending.now.as_millisecond().to_string(),
                Some(PutOptions::new().with_lease(lease)),
            ));
            *added
                .entry((self.keys.count(report, hour), hour))
                .or_default() += 1;
            if report.outcome == Outcome::Rebooting {
                let receipt = Receipt {
                    version: report.release.version.clone(),
                    digest: report.release.digest.clone(),
                    received: pending.now.as_millisecond(),
                };
                let value = serde_json::to_vec(&receipt).map_err(|e| self.etcd.error(e))?;
                let lease = self.lease(Kind::Receipt, hour, pending.now).await?;
                writes.push(TxnOp::put(
                    self.keys.receipt(report),
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                ));
            }
        }
        if added.is_empty() {
            return Ok(Some(outcomes));
        }
        let now = batch
            .iter()
            .map(|pending| pending.now)
            .max()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        for ((key, hour), n) in added {
            let (revision, count) = read.counts.get(&key).copied().unwrap_or((0, 0));
            compares.push(Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            ));
            let lease = self.lease(Kind::Count, hour, now).await?;
            writes.push(TxnOp::put(
                key,
                (count + n).to_string(),
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        match self
            .etcd
            .client
            .clone()
            .txn(Txn::new().when(compares).and_then(writes))
            .await
        {
            Ok(response) if response.succeeded() => Ok(Some(outcomes)),
            Ok(_) => Ok(None),
            Err(error) if error.to_string().contains("lease not found") => {
                // A lease ran out or was revoked under us: take new ones.
                tracing::debug!(%error, "an etcd lease of the reports store is gone");
                self.leases.clear();
                Ok(None)
            }
            // It may or may not have been written: the caller answers 503,
            // and the host's retry is counted, or found counted.
            Err(error) => Err(self.etcd.error(error)),
        }
    }

    /// The lease of `kind`'s keys of `hour`, granted on first use to run
    /// out an hour after the last of them leaves its window.
    async fn lease(&mut self, kind: Kind, hour: i64, now: Timestamp) -> Result<i64, StoreError> {
        if let Some(id) = self.leases.get(&(kind, hour)) {
            return Ok(*id);
        }
        let window = match kind {
            Kind::Id => self.windows.dedup,
            Kind::Count => self.windows.retention,
            Kind::Receipt => self.windows.missing_after,
        };
        let expires = (hour + 1) * 3600 + window.as_secs() + LEASE_MARGIN_SECONDS;
        let ttl = (expires - now.as_second()).max(LEASE_MARGIN_SECONDS);
        let lease = self
            .etcd
            .client
            .clone()
            .lease_grant(ttl, None)
            .await
            .map_err(|e| self.etcd.error(e))?;
        // Only the last two hours' leases are used again.
        self.leases.retain(|(_, at), _| *at >= hour - 1);
        self.leases.insert((kind, hour), lease.id());
        Ok(lease.id())
    }
}
