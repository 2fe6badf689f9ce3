//! The halt lists' embedded backend: SQLite in WAL mode with
//! `synchronous=FULL`. Writes are rare (a new list, a halt), so calls run on
//! the blocking pool under one lock instead of a dedicated thread.

use super::StoreError;
use super::halts::{AuditEntry, HaltStore, HeldRecord};
use super::sqlite::open_exclusive;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS halt_lists (
        stream TEXT PRIMARY KEY,
        sequence INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS halt_audit (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        entry TEXT NOT NULL
    );";

/// A handle on the embedded halt store; cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedHalts {
    connection: Arc<Mutex<Connection>>,
    path: String,
}

impl EmbeddedHalts {
    /// Open (or create) the database; it is this server's alone.
    pub fn open(path: &Path) -> Result<EmbeddedHalts, StoreError> {
        let (connection, path) = open_exclusive(path, SCHEMA)?;
        Ok(EmbeddedHalts {
            connection: Arc::new(Mutex::new(connection)),
            path,
        })
    }

    /// Run `work` on the connection, off the async workers.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().map_err(|_| StoreError::Stopped)?;
            work(&mut connection, &path)
        })
        .await
        .map_err(|_| StoreError::Stopped)?
    }
}

fn io(path: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_string(),
        message: e.to_string(),
    }
}

fn corrupt(path: &str, stream: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        path: path.to_string(),
        group: format!("halt list of {stream}"),
        message: e.to_string(),
    }
}

fn read_newest(
    connection: &Connection,
    path: &str,
    stream: &str,
) -> Result<Option<HeldRecord>, StoreError> {
    let text: Option<String> = connection
        .query_row(
            "SELECT record FROM halt_lists WHERE stream = ?1",
            params![stream],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| io(path, e))?;
    text.map(|text| serde_json::from_str(&text).map_err(|e| corrupt(path, stream, e)))
        .transpose()
}

impl HaltStore for EmbeddedHalts {
    async fn newest(&self, stream: &str) -> Result<Option<HeldRecord>, StoreError> {
        let stream = stream.to_string();
        self.with(move |connection, path| read_newest(connection, path, &stream))
            .await
    }

    async fn keep(&self, stream: &str, record: &HeldRecord) -> Result<HeldRecord, StoreError> {
        let stream = stream.to_string();
        let record = record.clone();
        self.with(move |connection, path| {
            let text = serde_json::to_string(&record).map_err(|e| io(path, e))?;
            let sequence = i64::try_from(record.sequence).map_err(|e| io(path, e))?;
            let txn = connection.transaction().map_err(|e| io(path, e))?;
            txn.execute(
                "INSERT INTO halt_lists (stream, sequence, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (stream) DO UPDATE SET sequence = excluded.sequence, record = excluded.record
                 WHERE excluded.sequence > halt_lists.sequence",
                params![stream, sequence, text],
            )
            .map_err(|e| io(path, e))?;
            let kept = read_newest(&txn, path, &stream)?;
            txn.commit().map_err(|e| io(path, e))?;
            kept.ok_or_else(|| corrupt(path, &stream, "nothing kept after a write"))
        })
        .await
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.with(move |connection, path| {
            let text = serde_json::to_string(&entry).map_err(|e| io(path, e))?;
            connection
                .execute(
                    "INSERT INTO halt_audit (stream, entry) VALUES (?1, ?2)",
                    params![entry.stream, text],
                )
                .map_err(|e| io(path, e))?;
            Ok(())
        })
        .await
    }

    async fn audits(&self, stream: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let stream = stream.to_string();
        self.with(move |connection, path| {
            let mut statement = connection
                .prepare("SELECT entry FROM halt_audit WHERE stream = ?1 ORDER BY n")
                .map_err(|e| io(path, e))?;
            let rows = statement
                .query_map(params![stream], |row| row.get::<_, String>(0))
                .map_err(|e| io(path, e))?;
            let mut entries = Vec::new();
            for row in rows {
                let text = row.map_err(|e| io(path, e))?;
                entries.push(serde_json::from_str(&text).map_err(|e| corrupt(path, &stream, e))?);
            }
            Ok(entries)
        })
        .await
    }

    async fn lead(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: u64) -> HeldRecord {
        HeldRecord {
            sequence,
            body: format!("{{\"sequence\":{sequence}}}").into_bytes(),
            manifest_digest: Some(format!("sha256:{}", "a".repeat(64))),
            signature: None,
        }
    }

    #[tokio::test]
    async fn the_highest_list_is_kept_through_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("halts.sqlite");
        let store = EmbeddedHalts::open(&path).expect("open");
        assert_eq!(store.newest("stable").await.expect("read"), None);
        assert_eq!(
            store.keep("stable", &record(5)).await.expect("keep"),
            record(5)
        );
        // An older list does not replace it.
        assert_eq!(
            store.keep("stable", &record(4)).await.expect("keep"),
            record(5)
        );
        assert_eq!(
            store.keep("stable", &record(7)).await.expect("keep"),
            record(7)
        );
        let entry = AuditEntry {
            time: jiff::Timestamp::from_second(1_800_000_000).expect("time"),
            stream: "stable".into(),
            version: "44.3".into(),
            digests: vec![format!("sha256:{}", "b".repeat(64))],
            halt_id: "44.3-1".into(),
            tripped_by: cairn_graph::halts::TrippedBy::Guard {
                failures: 4,
                rebooting: 20,
            },
            sequence: 7,
        };
        store.audit(&entry).await.expect("audit");
        drop(store);
        let store = EmbeddedHalts::open(&path).expect("reopen");
        assert_eq!(store.newest("stable").await.expect("read"), Some(record(7)));
        assert_eq!(store.newest("testing").await.expect("read"), None);
        assert_eq!(store.audits("stable").await.expect("audits"), [entry]);
        assert!(store.lead().await.expect("lead"));
    }
}
