//! What the lock and report stores' embedded backends share: a SQLite file
//! owned by one server, and one thread that serves requests in batches.

use super::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc;

/// Open (or create) the database at `path` in WAL mode with
/// `synchronous=FULL`, and create `schema` (statements ending in `;`) in one
/// transaction. Returns the connection and the path as messages name it.
///
/// Exclusive: a second server on the same file would keep its own copy of
/// the state and answer from it; it fails to start instead.
pub(super) fn open_exclusive(
    path: &Path,
    schema: &str,
) -> Result<(Connection, String), StoreError> {
    let shown = path.display().to_string();
    let connection = Connection::open(path).map_err(|e| StoreError::Open {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    connection
        .execute_batch(&format!(
            "PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 1000;
             BEGIN IMMEDIATE;
             {schema}
             COMMIT;"
        ))
        .map_err(|e| StoreError::Open {
            path: shown.clone(),
            message: if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
                format!("{e} (is another `cairn serve` using this database?)")
            } else {
                e.to_string()
            },
        })?;
    Ok((connection, shown))
}

/// Start the thread `name` that serves the requests sent on the returned
/// channel with `serve`; it stops when the last sender is dropped.
pub(super) fn spawn_worker<R: Send + 'static>(
    name: &str,
    path: &Path,
    serve: impl FnOnce(mpsc::Receiver<R>) + Send + 'static,
) -> Result<mpsc::Sender<R>, StoreError> {
    let (requests, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || serve(receiver))
        .map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: format!("starting its thread: {e}"),
        })?;
    Ok(requests)
}

/// The next request and every one already waiting behind it, up to `most`;
/// `None` once every sender is gone.
pub(super) fn next_batch<R>(requests: &mpsc::Receiver<R>, most: usize) -> Option<Vec<R>> {
    let first = requests.recv().ok()?;
    let mut batch = vec![first];
    while batch.len() < most {
        match requests.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}
