//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`, written
//! by one dedicated thread.
//!
//! The thread owns the connection and a copy of every group in memory. It
//! takes whatever requests are waiting, applies them in order, and commits
//! them as one transaction before it answers any of them: each answer
//! follows a durable write, and a burst of requests costs one fsync.
//!
//! It also keeps a heartbeat, the last time the server was known alive. At
//! start every lease is pushed back by the time since then, so the server's
//! own downtime never counts against a node.

use super::StoreError;
use super::locks::{Change, LockStore};
use super::sqlite::{next_batch, open_exclusive, spawn_worker};
use crate::fleetlock::model::{GroupPolicy, GroupState, LockOp};
use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

/// The most requests committed in one transaction.
const MAX_BATCH: usize = 512;

enum Request {
    Apply {
        group: String,
        policy: GroupPolicy,
        op: LockOp,
        now: Timestamp,
        reply: oneshot::Sender<Result<Change, StoreError>>,
    },
    Groups {
        reply: oneshot::Sender<BTreeMap<String, GroupState>>,
    },
    Heartbeat {
        now: Timestamp,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A handle on the embedded store; cheap to clone. The thread stops when the
/// last handle is dropped.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    requests: mpsc::Sender<Request>,
    /// False after a failed commit, until one succeeds.
    writable: Arc<AtomicBool>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// How long the server was down (from the last heartbeat to `now`); every
    /// lease was pushed back by this much.
    pub grace: SignedDuration,
}

struct Worker {
    connection: Connection,
    path: String,
    groups: BTreeMap<String, GroupState>,
    writable: Arc<AtomicBool>,
}

impl EmbeddedStore {
    /// Open (or create) the database at `path` and start its thread. Leases
    /// are extended by the time since the last heartbeat, judged at `now`.
    pub fn open(path: &Path, now: Timestamp) -> Result<(EmbeddedStore, Opened), StoreError> {
        let (worker, opened) = Worker::open(path, now)?;
        let writable = worker.writable.clone();
        let requests = spawn_worker("fleet-lock-store", path, move |receiver| {
            worker.run(&receiver);
        })?;
        Ok((EmbeddedStore { requests, writable }, opened))
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        self.requests.send(request).map_err(|_| StoreError::Stopped)
    }
}

impl Worker {
    /// Open the database and bring every lease past the downtime.
    fn open(path: &Path, now: Timestamp) -> Result<(Worker, Opened), StoreError> {
        // Exclusive: a second server on the same file would grant the same
        // slots.
        let (connection, shown) = open_exclusive(
            path,
            "CREATE TABLE IF NOT EXISTS lock_groups (name TEXT PRIMARY KEY, state TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS server_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        let open_error = |e: rusqlite::Error| StoreError::Open {
            path: shown.clone(),
            message: e.to_string(),
        };
        let mut worker = Worker {
            connection,
            path: shown.clone(),
            groups: BTreeMap::new(),
            writable: Arc::new(AtomicBool::new(true)),
        };
        worker.load()?;
        let last_alive: Option<String> = worker
            .connection
            .query_row(
                "SELECT value FROM server_meta WHERE key = 'heartbeat'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(open_error)?;
        let grace = match last_alive.and_then(|text| text.parse::<Timestamp>().ok()) {
            Some(last) if last < now => now.duration_since(last),
            _ => SignedDuration::ZERO,
        };
        let changed: Vec<String> = worker
            .groups
            .iter_mut()
            .filter(|(_, state)| !state.holders.is_empty())
            .map(|(name, state)| {
                state.extend_leases(grace);
                name.clone()
            })
            .collect();
        worker.commit(&changed, Some(now))?;
        Ok((worker, Opened { grace }))
    }
}

impl LockStore for EmbeddedStore {
    async fn apply(
        &self,
        group: &str,
        policy: GroupPolicy,
        op: LockOp,
        now: Timestamp,
    ) -> Result<Change, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Apply {
            group: group.to_string(),
            policy,
            op,
            now,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    async fn groups(&self) -> Result<BTreeMap<String, GroupState>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Groups { reply })?;
        answer.await.map_err(|_| StoreError::Stopped)
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        Ok(self
            .groups()
            .await?
            .into_iter()
            .filter(|(_, state)| state.holders.values().any(|holder| holder.expires <= now))
            .map(|(name, _)| name)
            .collect())
    }

    async fn heartbeat(&self, now: Timestamp) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Heartbeat { now, reply })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    async fn check(&self) -> Result<(), StoreError> {
        // Round-trips through the thread, so a stopped one shows.
        self.groups().await?;
        if self.writable.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(StoreError::Io {
                path: "the lock database".into(),
                message: "the last write failed".into(),
            })
        }
    }
}

impl Worker {
    fn io(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Read every group into memory.
    fn load(&mut self) -> Result<(), StoreError> {
        let mut groups = BTreeMap::new();
        let mut statement = self
            .connection
            .prepare("SELECT name, state FROM lock_groups")
            .map_err(|e| self.io(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(|e| self.io(e))?;
        for row in rows {
            let (name, text) = row.map_err(|e| self.io(e))?;
            let state: GroupState =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    group: name.clone(),
                    message: e.to_string(),
                })?;
            groups.insert(name, state);
        }
        drop(statement);
        self.groups = groups;
        Ok(())
    }

    /// Write these groups (and the heartbeat) in one durable transaction.
    fn commit(
        &mut self,
        changed: &[String],
        heartbeat: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let result = self.try_commit(changed, heartbeat);
        // Only a write tried says whether the store can write: a batch of
        // readers alone must not clear the mark of a failed commit.
        if !changed.is_empty() || heartbeat.is_some() {
            self.writable.store(result.is_ok(), Ordering::Relaxed);
        }
        result
    }

    fn try_commit(
        &mut self,
        changed: &[String],
        heartbeat: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        if changed.is_empty() && heartbeat.is_none() {
            return Ok(());
        }
        let path = self.path.clone();
        let io = |e: rusqlite::Error| StoreError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let transaction = self.connection.transaction().map_err(io)?;
        for name in changed {
            // An empty group (dropped from memory, or not yet) is no record at all.
            let kept = self
                .groups
                .get(name)
                .filter(|state| !state.holders.is_empty() || state.halt.is_some());
            match kept {
                None => {
                    transaction
                        .execute("DELETE FROM lock_groups WHERE name = ?1", params![name])
                        .map_err(io)?;
                }
                Some(state) => {
                    let text = serde_json::to_string(state).map_err(|e| StoreError::Io {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                    transaction
                        .execute(
                            "INSERT INTO lock_groups (name, state) VALUES (?1, ?2)
                             ON CONFLICT (name) DO UPDATE SET state = excluded.state",
                            params![name, text],
                        )
                        .map_err(io)?;
                }
            }
        }
        if let Some(now) = heartbeat {
            transaction
                .execute(
                    "INSERT INTO server_meta (key, value) VALUES ('heartbeat', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![now.to_string()],
                )
                .map_err(io)?;
        }
        transaction.commit().map_err(io)
    }

    fn run(mut self, requests: &mpsc::Receiver<Request>) {
        while let Some(batch) = next_batch(requests, MAX_BATCH) {
            if self.serve_batch(batch).is_err() {
                // Memory may now be ahead of the disk: serving it could show
                // grants that were answered 503. Stop: every later call gets
                // 503, and /readyz fails.
                self.writable.store(false, Ordering::Relaxed);
                tracing::error!(
                    "the lock store stopped: restart the server once the database is usable"
                );
                return;
            }
        }
    }

    /// Serve one batch. An error means memory could not be brought back in
    /// line with the disk after a failed commit.
    fn serve_batch(&mut self, batch: Vec<Request>) -> Result<(), StoreError> {
        let mut changed: Vec<String> = Vec::new();
        let mut heartbeat: Option<Timestamp> = None;
        let mut applied = Vec::new();
        let mut beats = Vec::new();
        let mut readers = Vec::new();
        for request in batch {
            match request {
                Request::Apply {
                    group,
                    policy,
                    op,
                    now,
                    reply,
                } => {
                    // The caller gave up (its timeout answered 503): applying
                    // it now would grant a slot nobody heard of.
                    if reply.is_closed() {
                        continue;
                    }
                    let state = self.groups.entry(group.clone()).or_default();
                    let before = state.clone();
                    let result = state.apply(&op, &policy, now);
                    let after = state.clone();
                    if after != before && !changed.contains(&group) {
                        changed.push(group.clone());
                    }
                    if after.holders.is_empty() && after.halt.is_none() {
                        self.groups.remove(&group);
                    }
                    applied.push((
                        reply,
                        Change {
                            applied: result,
                            before,
                            after,
                        },
                    ));
                }
                // Answered after the commit: nothing uncommitted is shown.
                Request::Groups { reply } => readers.push(reply),
                Request::Heartbeat { now, reply } => {
                    heartbeat = Some(heartbeat.map_or(now, |earlier| earlier.max(now)));
                    beats.push(reply);
                }
            }
        }
        match self.commit(&changed, heartbeat) {
            Ok(()) => {
                for (reply, change) in applied {
                    let _ = reply.send(Ok(change));
                }
                for reply in beats {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(%error, "the lock store could not commit; nothing was granted");
                for (reply, _) in applied {
                    let _ = reply.send(Err(self.io(&error)));
                }
                for reply in beats {
                    let _ = reply.send(Err(self.io(&error)));
                }
                // Memory must not run ahead of the disk: read it back.
                if let Err(error) = self.load() {
                    tracing::error!(%error, "the lock store could not re-read its database");
                    return Err(error);
                }
            }
        }
        for reply in readers {
            let _ = reply.send(self.groups.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleetlock::model::{Denial, Outcome};

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + minutes * 60).expect("time")
    }

    fn take(id: &str) -> LockOp {
        LockOp::PreReboot { id: id.into() }
    }

    fn apply_request(
        group: &str,
        op: LockOp,
        now: Timestamp,
    ) -> (Request, oneshot::Receiver<Result<Change, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let request = Request::Apply {
            group: group.into(),
            policy: GroupPolicy::default(),
            op,
            now,
            reply,
        };
        (request, answer)
    }

    #[test]
    fn a_request_its_caller_gave_up_on_is_not_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut worker, _) = Worker::open(&dir.path().join("locks.sqlite"), t(0)).expect("open");
        // The caller's timeout answered 503 and dropped its end.
        let (abandoned, answer) = apply_request("g", take("a"), t(0));
        drop(answer);
        let (waited, mut answer) = apply_request("g", take("b"), t(0));
        worker.serve_batch(vec![abandoned, waited]).expect("served");
        let change = answer.try_recv().expect("answered").expect("applied");
        assert_eq!(change.applied.outcome, Outcome::Granted { already: false });
        let holders: Vec<&String> = worker.groups["g"].holders.keys().collect();
        assert_eq!(holders, ["b"], "only the request still awaited");
    }

    #[test]
    fn a_failed_commit_keeps_the_store_unready_until_a_write_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut worker, _) = Worker::open(&dir.path().join("locks.sqlite"), t(0)).expect("open");
        worker
            .connection
            .execute_batch("PRAGMA query_only = 1;")
            .expect("read-only");
        let (request, mut answer) = apply_request("g", take("a"), t(1));
        worker.serve_batch(vec![request]).expect("memory re-read");
        assert!(
            answer.try_recv().expect("answered").is_err(),
            "503, not a grant"
        );
        assert!(worker.groups.is_empty(), "memory follows the disk");
        assert!(!worker.writable.load(Ordering::Relaxed));
        // A batch of readers alone writes nothing: still not ready.
        let (reply, _answer) = oneshot::channel();
        worker
            .serve_batch(vec![Request::Groups { reply }])
            .expect("served");
        assert!(
            !worker.writable.load(Ordering::Relaxed),
            "/readyz still fails"
        );
        worker
            .connection
            .execute_batch("PRAGMA query_only = 0;")
            .expect("writable");
        let (request, mut answer) = apply_request("g", take("a"), t(2));
        worker.serve_batch(vec![request]).expect("served");
        assert!(answer.try_recv().expect("answered").is_ok());
        assert!(worker.writable.load(Ordering::Relaxed), "ready again");
    }

    /// Open `path` again once the earlier store's thread has let go of the
    /// file (it does when its last handle is gone).
    async fn reopen(path: &Path, now: Timestamp) -> EmbeddedStore {
        loop {
            match EmbeddedStore::open(path, now) {
                Ok((store, _)) => return store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    #[tokio::test]
    async fn granted_slots_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("locks.sqlite");
        let policy = GroupPolicy::default();
        {
            let (store, opened) = EmbeddedStore::open(&path, t(0)).expect("open");
            assert_eq!(opened.grace, SignedDuration::ZERO);
            let change = store
                .apply("g", policy, take("a"), t(0))
                .await
                .expect("apply");
            assert_eq!(change.applied.outcome, Outcome::Granted { already: false });
        }
        let store = reopen(&path, t(1)).await;
        let groups = store.groups().await.expect("groups");
        assert!(groups["g"].holders.contains_key("a"), "{groups:?}");
        let change = store
            .apply("g", policy, take("b"), t(2))
            .await
            .expect("apply");
        assert_eq!(
            change.applied.outcome,
            Outcome::Denied(Denial::Full { slots: 1 })
        );
    }

    #[tokio::test]
    async fn a_released_slot_stays_released_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("locks.sqlite");
        let policy = GroupPolicy::default();
        {
            let (store, _) = EmbeddedStore::open(&path, t(0)).expect("open");
            store
                .apply("g", policy, take("a"), t(0))
                .await
                .expect("take");
            store
                .apply("h", policy, take("b"), t(0))
                .await
                .expect("take");
            let give = LockOp::SteadyState { id: "a".into() };
            let change = store.apply("g", policy, give, t(1)).await.expect("give");
            assert!(change.after.holders.is_empty());
        }
        let store = reopen(&path, t(2)).await;
        let groups = store.groups().await.expect("groups");
        assert_eq!(groups.keys().collect::<Vec<_>>(), ["h"], "{groups:?}");
    }

    #[tokio::test]
    async fn a_second_server_cannot_open_the_same_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("locks.sqlite");
        let (_store, _) = EmbeddedStore::open(&path, t(0)).expect("open");
        let err = EmbeddedStore::open(&path, t(0)).expect_err("second open");
        assert!(err.to_string().contains("another `cairn serve`"), "{err}");
    }

    #[tokio::test]
    async fn downtime_is_granted_as_grace_to_every_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("locks.sqlite");
        let policy = GroupPolicy::default();
        {
            let (store, _) = EmbeddedStore::open(&path, t(0)).expect("open");
            store
                .apply("g", policy, take("a"), t(0))
                .await
                .expect("apply");
            store.heartbeat(t(10)).await.expect("heartbeat");
        }
        // Down from minute 10 to minute 180: well past the 60-minute lease.
        let (store, opened) = loop {
            match EmbeddedStore::open(&path, t(180)) {
                Ok(opened) => break opened,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        assert_eq!(opened.grace, SignedDuration::from_mins(170));
        let change = store
            .apply("g", policy, LockOp::Expire, t(180))
            .await
            .expect("apply");
        assert!(change.applied.expired.is_empty() && change.after.halt.is_none());
        assert_eq!(change.after.holders["a"].expires, t(230));
        let change = store
            .apply("g", policy, LockOp::Expire, t(230))
            .await
            .expect("apply");
        assert_eq!(change.applied.expired.len(), 1);
        assert!(change.after.halt.is_some());
    }

    #[tokio::test]
    async fn concurrent_requests_never_exceed_the_slots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = EmbeddedStore::open(&dir.path().join("l.sqlite"), t(0)).expect("open");
        let policy = GroupPolicy {
            slots: 3,
            ..GroupPolicy::default()
        };
        let tasks: Vec<_> = (0..100)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .apply("g", policy, take(&format!("n{n}")), t(0))
                        .await
                        .expect("apply")
                })
            })
            .collect();
        let mut granted = 0;
        for task in tasks {
            let change = task.await.expect("task");
            assert!(change.after.holders.len() <= 3);
            granted += usize::from(matches!(change.applied.outcome, Outcome::Granted { .. }));
        }
        assert_eq!(granted, 3);
    }
}
