//! The reports' embedded backend: SQLite in WAL mode with `synchronous=FULL`,
//! written by one dedicated thread, as the lock store is.
//!
//! The thread takes every report waiting, checks and counts them in one
//! transaction, and commits before it answers any of them: each answer
//! follows a durable write, and a burst of reports costs one fsync.

use super::StoreError;
use super::reports::{Recorded, ReportRecord, ReportStore, Windows, hour_of};
use super::sqlite::{next_batch, open_exclusive, spawn_worker};
use crate::reports::model::{Outcome, Release, Tally};
use crate::reports::plausible::{KeptSteps, RECENT, Served};
use jiff::Timestamp;
use rusqlite::{Connection, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

/// The most requests served in one transaction.
const MAX_BATCH: usize = 1024;

/// The most rows one prune deletes per table; a prune that hits it is
/// followed by another at once, so writes wait behind none for long.
const PRUNE_ROWS: usize = 20_000;

enum Request {
    Record {
        report: ReportRecord,
        now: Timestamp,
        reply: oneshot::Sender<Result<Recorded, StoreError>>,
    },
    Tally {
        stream: String,
        now: Timestamp,
        reply: oneshot::Sender<Result<Tally, StoreError>>,
    },
    Prune {
        now: Timestamp,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    KeepSteps {
        stream: String,
        served: Served,
        now: Timestamp,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    KeptSteps {
        now: Timestamp,
        reply: oneshot::Sender<Result<Vec<KeptSteps>, StoreError>>,
    },
}

/// A handle on the embedded report store; cheap to clone. The thread stops
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct EmbeddedReports {
    requests: mpsc::Sender<Request>,
    /// False after a failed commit, until one succeeds.
    writable: Arc<AtomicBool>,
}

struct Worker {
    connection: Connection,
    path: String,
    windows: Windows,
    writable: Arc<AtomicBool>,
}

impl EmbeddedReports {
    /// Open (or create) the database at `path` and start its thread.
    pub fn open(path: &Path, windows: Windows) -> Result<EmbeddedReports, StoreError> {
        let worker = Worker::open(path, windows)?;
        let writable = worker.writable.clone();
        let requests = spawn_worker("reports-store", path, move |receiver| {
            worker.run(&receiver);
        })?;
        Ok(EmbeddedReports { requests, writable })
    }

    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(request(reply))
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

impl ReportStore for EmbeddedReports {
    async fn record(&self, report: ReportRecord, now: Timestamp) -> Result<Recorded, StoreError> {
        self.ask(|reply| Request::Record { report, now, reply })
            .await
    }

    async fn tally(&self, stream: &str, now: Timestamp) -> Result<Tally, StoreError> {
        let stream = stream.to_string();
        self.ask(|reply| Request::Tally { stream, now, reply })
            .await
    }

    async fn prune(&self, now: Timestamp) -> Result<(), StoreError> {
        // Each call deletes a bounded share, so reports wait behind no long
        // delete; go on until everything aged out is gone.
        while self.ask(|reply| Request::Prune { now, reply }).await? {}
        Ok(())
    }

    async fn keep_steps(
        &self,
        stream: &str,
        served: &Served,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (stream, served) = (stream.to_string(), served.clone());
        self.ask(|reply| Request::KeepSteps {
            stream,
            served,
            now,
            reply,
        })
        .await
    }

    async fn kept_steps(&self, now: Timestamp) -> Result<Vec<KeptSteps>, StoreError> {
        self.ask(|reply| Request::KeptSteps { now, reply }).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        // Round-trips through the thread, so a stopped one shows.
        self.ask(|reply| Request::Tally {
            stream: String::new(),
            now: Timestamp::UNIX_EPOCH,
            reply,
        })
        .await?;
        if self.writable.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(StoreError::Io {
                path: "the reports database".into(),
                message: "the last write failed".into(),
            })
        }
    }
}

/// A count to add: (stream, version, digest, outcome, hour).
type CountKey = (String, String, String, &'static str, i64);

impl Worker {
    fn open(path: &Path, windows: Windows) -> Result<Worker, StoreError> {
        let (connection, shown) = open_exclusive(
            path,
            "CREATE TABLE IF NOT EXISTS report_ids (
                     id BLOB PRIMARY KEY,
                     received INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS report_ids_by_time ON report_ids (received);
                 CREATE TABLE IF NOT EXISTS report_counts (
                     stream TEXT NOT NULL,
                     version TEXT NOT NULL,
                     digest TEXT NOT NULL,
                     outcome TEXT NOT NULL,
                     hour INTEGER NOT NULL,
                     count INTEGER NOT NULL,
                     PRIMARY KEY (stream, version, digest, outcome, hour)
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS report_counts_by_hour ON report_counts (hour);
                 CREATE TABLE IF NOT EXISTS report_receipts (
                     stream TEXT NOT NULL,
                     version TEXT NOT NULL,
                     digest TEXT NOT NULL,
                     received INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS report_receipts_by_stream
                     ON report_receipts (stream, received);
                 CREATE INDEX IF NOT EXISTS report_receipts_by_time ON report_receipts (received);
                 CREATE TABLE IF NOT EXISTS report_steps (
                     stream TEXT NOT NULL,
                     hash BLOB NOT NULL,
                     steps BLOB NOT NULL,
                     replaced INTEGER,
                     PRIMARY KEY (stream, hash)
                 ) WITHOUT ROWID;",
        )?;
        Ok(Worker {
            connection,
            path: shown,
            windows,
            writable: Arc::new(AtomicBool::new(true)),
        })
    }

    fn io(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn run(mut self, requests: &mpsc::Receiver<Request>) {
        while let Some(batch) = next_batch(requests, MAX_BATCH) {
            self.serve_batch(batch);
        }
    }

    /// Serve one batch: every report in one transaction, then the reads.
    fn serve_batch(&mut self, batch: Vec<Request>) {
        let mut reports = Vec::new();
        let mut reads = Vec::new();
        let mut prunes = Vec::new();
        let mut steps = Vec::new();
        for request in batch {
            match request {
                // The caller gave up (its timeout answered 503): the host
                // sends it again, and that one counts.
                Request::Record { reply, .. } if reply.is_closed() => {}
                Request::Record { report, now, reply } => reports.push((report, now, reply)),
                Request::Tally { stream, now, reply } => reads.push((stream, now, reply)),
                Request::Prune { now, reply } => prunes.push((now, reply)),
                other => steps.push(other),
            }
        }
        if !reports.is_empty() {
            let records: Vec<(&ReportRecord, Timestamp)> = reports
                .iter()
                .map(|(report, now, _)| (report, *now))
                .collect();
            let result = self.count(&records);
            self.writable.store(result.is_ok(), Ordering::Relaxed);
            match result {
                Ok(outcomes) => {
                    for ((_, _, reply), outcome) in reports.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "the reports store could not commit; nothing was counted");
                    for (_, _, reply) in reports {
                        let _ = reply.send(Err(self.io(&error)));
                    }
                }
            }
        }
        // After the commit: nothing uncommitted is shown.
        for (stream, now, reply) in reads {
            let _ = reply.send(self.read(&stream, now));
        }
        for (now, reply) in prunes {
            let result = self.prune(now);
            if let Err(error) = &result {
                tracing::error!(%error, "the reports store could not prune");
            }
            let _ = reply.send(result);
        }
        for request in steps {
            match request {
                Request::KeepSteps {
                    stream,
                    served,
                    now,
                    reply,
                } => {
                    let _ = reply.send(self.keep_steps(&stream, &served, now));
                }
                Request::KeptSteps { now, reply } => {
                    let _ = reply.send(self.kept_steps(now));
                }
                _ => {}
            }
        }
    }

    fn keep_steps(
        &mut self,
        stream: &str,
        served: &Served,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let io = |e: rusqlite::Error| StoreError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let transaction = self.connection.transaction().map_err(io)?;
        transaction
            .execute(
                "UPDATE report_steps SET replaced = ?3
                 WHERE stream = ?1 AND hash != ?2 AND replaced IS NULL",
                params![stream, &served.hash[..], now.as_millisecond()],
            )
            .map_err(io)?;
        transaction
            .execute(
                "INSERT INTO report_steps (stream, hash, steps, replaced) VALUES (?1, ?2, ?3, NULL)
                 ON CONFLICT (stream, hash) DO UPDATE SET replaced = NULL",
                params![stream, &served.hash[..], &served.steps],
            )
            .map_err(io)?;
        for hash in &served.evicted {
            transaction
                .execute(
                    "DELETE FROM report_steps WHERE stream = ?1 AND hash = ?2",
                    params![stream, &hash[..]],
                )
                .map_err(io)?;
        }
        transaction.commit().map_err(io)
    }

    fn kept_steps(&self, now: Timestamp) -> Result<Vec<KeptSteps>, StoreError> {
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT stream, steps, replaced FROM report_steps
                 WHERE replaced IS NULL OR replaced > ?1",
            )
            .map_err(|e| self.io(e))?;
        let rows = select
            .query_map(params![(now - RECENT).as_millisecond()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(|e| self.io(e))?;
        let mut kept = Vec::new();
        for row in rows {
            let (stream, steps, replaced) = row.map_err(|e| self.io(e))?;
            kept.push(KeptSteps {
                stream,
                steps,
                replaced: replaced.and_then(|ms| Timestamp::from_millisecond(ms).ok()),
            });
        }
        Ok(kept)
    }

    /// Check and count reports in one durable transaction; what became of
    /// each, in order.
    fn count(
        &mut self,
        reports: &[(&ReportRecord, Timestamp)],
    ) -> Result<Vec<Recorded>, StoreError> {
        let path = self.path.clone();
        let io = |e: rusqlite::Error| StoreError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let dedup = self.windows.dedup;
        let transaction = self.connection.transaction().map_err(io)?;
        let mut outcomes = Vec::with_capacity(reports.len());
        let mut counts: HashMap<CountKey, i64> = HashMap::new();
        {
            // A new id is inserted; one counted before the window began is
            // taken as new (it may not be pruned yet); a recent one changes
            // nothing: a retry.
            let mut remember = transaction
                .prepare_cached(
                    "INSERT INTO report_ids (id, received) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET received = excluded.received
                     WHERE report_ids.received <= ?3",
                )
                .map_err(io)?;
            let mut receipt = transaction
                .prepare_cached(
                    "INSERT INTO report_receipts (stream, version, digest, received)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(io)?;
            for (report, now) in reports {
                let received = now.as_millisecond();
                let cutoff = (*now - dedup).as_millisecond();
                let changed = remember
                    .execute(params![&report.id[..], received, cutoff])
                    .map_err(io)?;
                if changed == 0 {
                    outcomes.push(Recorded::Duplicate);
                    continue;
                }
                outcomes.push(Recorded::Counted);
                let key = (
                    report.stream.clone(),
                    report.release.version.clone(),
                    report.release.digest.clone(),
                    report.outcome.as_str(),
                    hour_of(*now),
                );
                *counts.entry(key).or_default() += 1;
                if report.outcome == Outcome::Rebooting {
                    receipt
                        .execute(params![
                            report.stream,
                            report.release.version,
                            report.release.digest,
                            received
                        ])
                        .map_err(io)?;
                }
            }
            let mut add = transaction
                .prepare_cached(
                    "INSERT INTO report_counts (stream, version, digest, outcome, hour, count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (stream, version, digest, outcome, hour)
                     DO UPDATE SET count = count + excluded.count",
                )
                .map_err(io)?;
            for ((stream, version, digest, outcome, hour), n) in &counts {
                add.execute(params![stream, version, digest, outcome, hour, n])
                    .map_err(io)?;
            }
        }
        transaction.commit().map_err(io)?;
        Ok(outcomes)
    }

    fn read(&self, stream: &str, now: Timestamp) -> Result<Tally, StoreError> {
        let mut tally = Tally::new();
        let mut counts = self
            .connection
            .prepare_cached(
                "SELECT version, digest, outcome, SUM(count) FROM report_counts
                 WHERE stream = ?1 AND hour >= ?2 GROUP BY version, digest, outcome",
            )
            .map_err(|e| self.io(e))?;
        let rows = counts
            .query_map(params![stream, self.windows.first_hour(now)], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(|e| self.io(e))?;
        for row in rows {
            let (version, digest, word, n) = row.map_err(|e| self.io(e))?;
            // A word this build does not know (written by a newer one) is
            // left out rather than failing every read.
            let Some(outcome) = Outcome::parse(&word) else {
                continue;
            };
            tally
                .entry(Release { version, digest })
                .or_default()
                .add(outcome, u64::try_from(n).unwrap_or(0));
        }
        let mut recent = self
            .connection
            .prepare_cached(
                "SELECT version, digest, COUNT(*) FROM report_receipts
                 WHERE stream = ?1 AND received > ?2 GROUP BY version, digest",
            )
            .map_err(|e| self.io(e))?;
        let since = (now - self.windows.missing_after).as_millisecond();
        let rows = recent
            .query_map(params![stream, since], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.io(e))?;
        for row in rows {
            let (version, digest, n) = row.map_err(|e| self.io(e))?;
            tally
                .entry(Release { version, digest })
                .or_default()
                .recent_rebooting = u64::try_from(n).unwrap_or(0);
        }
        Ok(tally)
    }

    /// Delete a bounded share of what aged out; true when more is left.
    fn prune(&mut self, now: Timestamp) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let io = |e: rusqlite::Error| StoreError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let windows = self.windows;
        let limit = PRUNE_ROWS as i64;
        let transaction = self.connection.transaction().map_err(io)?;
        let ids = transaction
            .execute(
                "DELETE FROM report_ids WHERE id IN
                 (SELECT id FROM report_ids WHERE received <= ?1 LIMIT ?2)",
                params![(now - windows.dedup).as_millisecond(), limit],
            )
            .map_err(io)?;
        // Counts are few (releases by outcomes by hours): whole hours go at once.
        transaction
            .execute(
                "DELETE FROM report_counts WHERE hour < ?1",
                params![windows.first_hour(now)],
            )
            .map_err(io)?;
        let receipts = transaction
            .execute(
                "DELETE FROM report_receipts WHERE rowid IN
                 (SELECT rowid FROM report_receipts WHERE received <= ?1 LIMIT ?2)",
                params![(now - windows.missing_after).as_millisecond(), limit],
            )
            .map_err(io)?;
        // Graph sets are few (a handful a day per stream): all at once.
        transaction
            .execute(
                "DELETE FROM report_steps WHERE replaced <= ?1",
                params![(now - RECENT).as_millisecond()],
            )
            .map_err(io)?;
        transaction.commit().map_err(io)?;
        Ok(ids == PRUNE_ROWS || receipts == PRUNE_ROWS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("time")
    }

    fn windows() -> Windows {
        Windows {
            dedup: SignedDuration::from_hours(72),
            missing_after: SignedDuration::from_secs(60),
            retention: SignedDuration::from_hours(48),
        }
    }

    fn release() -> Release {
        Release {
            version: "44.2".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
        }
    }

    fn report(id: u8, outcome: Outcome) -> ReportRecord {
        ReportRecord {
            stream: "stable".into(),
            release: release(),
            outcome,
            id: [id; 16],
        }
    }

    /// Open `path` again once the earlier store's thread has let go of it.
    async fn reopen(path: &Path) -> EmbeddedReports {
        loop {
            match EmbeddedReports::open(path, windows()) {
                Ok(store) => return store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    #[tokio::test]
    async fn an_id_counts_once_within_the_window_and_counts_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reports.sqlite");
        {
            let store = EmbeddedReports::open(&path, windows()).expect("open");
            let first = store.record(report(1, Outcome::Rebooting), t(0)).await;
            assert_eq!(first.expect("record"), Recorded::Counted);
            let retry = store.record(report(1, Outcome::Rebooting), t(10)).await;
            assert_eq!(retry.expect("record"), Recorded::Duplicate);
            let other = store.record(report(2, Outcome::BootFailed), t(10)).await;
            assert_eq!(other.expect("record"), Recorded::Counted);
        }
        let store = reopen(&path).await;
        let retry = store.record(report(1, Outcome::Rebooting), t(20)).await;
        assert_eq!(
            retry.expect("record"),
            Recorded::Duplicate,
            "ids are durable"
        );
        let tally = store.tally("stable", t(20)).await.expect("tally");
        let counted = &tally[&release()];
        assert_eq!(counted.count(Outcome::Rebooting), 1);
        assert_eq!(counted.count(Outcome::BootFailed), 1);
        assert_eq!(counted.recent_rebooting, 1);
        // Past missing_after the receipt is no longer recent.
        let tally = store.tally("stable", t(60)).await.expect("tally");
        assert_eq!(tally[&release()].recent_rebooting, 0);
        // Past the de-duplication window the same id counts again.
        let late = t(72 * 3600);
        let again = store.record(report(1, Outcome::Rebooting), late).await;
        assert_eq!(again.expect("record"), Recorded::Counted);
        assert!(store.tally("other", t(0)).await.expect("tally").is_empty());
    }

    #[tokio::test]
    async fn a_burst_of_reports_with_repeated_ids_counts_each_id_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedReports::open(&dir.path().join("r.sqlite"), windows()).expect("open");
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .record(report((n % 50) as u8, Outcome::BootedHealthy), t(0))
                        .await
                        .expect("record")
                })
            })
            .collect();
        let mut counted = 0;
        for task in tasks {
            counted += usize::from(task.await.expect("task") == Recorded::Counted);
        }
        assert_eq!(counted, 50);
        let tally = store.tally("stable", t(0)).await.expect("tally");
        assert_eq!(tally[&release()].count(Outcome::BootedHealthy), 50);
    }

    #[tokio::test]
    async fn served_graph_sets_are_kept_until_72_hours_after_they_were_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedReports::open(&dir.path().join("r.sqlite"), windows()).expect("open");
        let served = |n: u8, evicted: Vec<[u8; 32]>| Served {
            hash: [n; 32],
            steps: vec![n; 3],
            evicted,
        };
        store
            .keep_steps("stable", &served(1, vec![]), t(0))
            .await
            .expect("keep");
        store
            .keep_steps("other", &served(9, vec![]), t(0))
            .await
            .expect("keep");
        store
            .keep_steps("stable", &served(2, vec![]), t(10))
            .await
            .expect("keep");
        let mut kept = store.kept_steps(t(10)).await.expect("kept");
        kept.sort_by(|a, b| (&a.stream, &a.steps).cmp(&(&b.stream, &b.steps)));
        let replaced: Vec<(&str, u8, Option<Timestamp>)> = kept
            .iter()
            .map(|k| (k.stream.as_str(), k.steps[0], k.replaced))
            .collect();
        assert_eq!(
            replaced,
            [
                ("other", 9, None),
                ("stable", 1, Some(t(10))),
                ("stable", 2, None)
            ]
        );
        // Read before any prune, an old one is left out already.
        let later = t(10 + 72 * 3600);
        assert_eq!(store.kept_steps(later).await.expect("kept").len(), 2);
        store.prune(later).await.expect("prune");
        assert_eq!(store.kept_steps(t(10)).await.expect("kept").len(), 2);
        // Evicted for the bounds: forgotten at once.
        store
            .keep_steps("stable", &served(3, vec![[2; 32]]), later)
            .await
            .expect("keep");
        let streams: Vec<(String, u8)> = store
            .kept_steps(later)
            .await
            .expect("kept")
            .into_iter()
            .map(|k| (k.stream, k.steps[0]))
            .filter(|(stream, _)| stream == "stable")
            .collect();
        assert_eq!(streams, [("stable".to_string(), 3)]);
    }

    #[test]
    fn pruning_drops_old_hours_receipts_and_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut worker = Worker::open(&dir.path().join("r.sqlite"), windows()).expect("open");
        let first = report(1, Outcome::Rebooting);
        assert_eq!(
            worker.count(&[(&first, t(0))]).expect("count"),
            [Recorded::Counted]
        );
        let rows = |worker: &Worker, table: &str| {
            worker
                .connection
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                    row.get::<_, i64>(0)
                })
                .expect("count rows")
        };
        // Read before any prune, old hours are left out already.
        assert!(
            worker
                .read("stable", t(49 * 3600))
                .expect("read")
                .is_empty()
        );
        assert!(
            !worker.prune(t(61)).expect("prune"),
            "nothing more to prune"
        );
        assert_eq!(rows(&worker, "report_receipts"), 0, "past missing_after");
        assert_eq!(rows(&worker, "report_counts"), 1);
        worker.prune(t(49 * 3600)).expect("prune");
        assert_eq!(rows(&worker, "report_counts"), 0, "past the retention");
        assert_eq!(rows(&worker, "report_ids"), 1);
        worker.prune(t(72 * 3600)).expect("prune");
        assert_eq!(rows(&worker, "report_ids"), 0, "past the window");
    }
}
