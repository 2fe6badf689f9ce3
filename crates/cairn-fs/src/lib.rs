//! Durable file writes and locked updates: one way to replace a file so that
//! a crash or power loss leaves either the old or the new content, and one
//! way for several processes to change the same file without losing a change.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let counter = dir.path().join("counter");
//! cairn_fs::write_atomic(&counter, b"1")?;
//! cairn_fs::update_locked(&counter, |old| -> Result<_, cairn_fs::FsError> {
//!     let n: u32 = String::from_utf8_lossy(old.unwrap_or(b"0")).parse().unwrap_or(0);
//!     Ok(Some((n + 1).to_string().into_bytes()))
//! })?;
//! assert_eq!(std::fs::read(&counter)?, b"2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a file could not be read, written or locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// The file exists but could not be read.
    #[error("reading {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file, its temporary copy or its directory could not be written or synced.
    #[error("writing {}: {source}", .path.display())]
    Write {
        /// The file, temporary file or directory that failed.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("locking {}: {source}", .path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl FsError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            FsError::Read { .. } => "read",
            FsError::Write { .. } => "write",
            FsError::Lock { .. } => "lock",
        }
    }

    /// The file and the I/O error, for callers with an I/O variant of their own.
    pub fn into_parts(self) -> (PathBuf, io::Error) {
        match self {
            FsError::Read { path, source }
            | FsError::Write { path, source }
            | FsError::Lock { path, source } => (path, source),
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FsError::Read { path, .. }
            | FsError::Write { path, .. }
            | FsError::Lock { path, .. } => path,
        }
    }
}

/// Replace `path` with `bytes` so that a crash leaves the old or the new
/// content, never half: a temporary file beside it (a name no other writer
/// uses), synced, renamed over it, and the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let write_error = |path: &Path, source| FsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(write_error(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
        ));
    };
    let (temporary, mut file) = create_temporary(dir, name).map_err(|e| write_error(path, e))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(source) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        // Best effort: a leftover temporary file is harmless, only untidy.
        let _ = std::fs::remove_file(&temporary);
        return Err(write_error(path, source));
    }
    // The rename is durable only once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| write_error(dir, e))
}

/// A new file `.<name>.<pid>.<n>.tmp` in `dir`. The name is unique to this
/// process and call, so two writers never share (and clobber) one temporary
/// file; one left by a dead process with a reused pid is skipped.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut file_name = OsString::from(".");
        file_name.push(name);
        file_name.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let temporary = dir.join(file_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
        {
            Ok(file) => return Ok((temporary, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The file's content, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FsError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The lock file that guards `path`: `<name>.lock` beside it.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// An exclusive advisory lock (`flock`) on a lock file, held until dropped.
/// The lock file is created if missing and never removed: removing it would
/// let a waiter lock an inode that a newcomer no longer sees.
#[derive(Debug)]
pub struct FileLock {
    // Closing the file releases the lock.
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Wait for the lock.
    pub fn acquire(path: &Path) -> Result<FileLock, FsError> {
        let file = open_lock_file(path)?;
        file.lock().map_err(|source| FsError::Lock {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// Take the lock if it is free; `None` while another holder has it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>, FsError> {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock {
                _file: file,
                path: path.to_path_buf(),
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(FsError::Lock {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_lock_file(path: &Path) -> Result<File, FsError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| FsError::Lock {
            path: path.to_path_buf(),
            source,
        })
}

/// Read, change and write `path` while holding the lock on [`lock_path`]:
/// two updaters never both start from the same old content, so neither
/// change is lost. `change` gets the old content (`None`: no file yet) and
/// returns the new one, or `None` to leave the file as it is.
///
/// The lock is on a sidecar file, not on `path`: `path` is replaced by a
/// rename, and a lock on a renamed-away inode protects nothing.
pub fn update_locked<E: From<FsError>>(
    path: &Path,
    change: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
) -> Result<(), E> {
    let _lock = FileLock::acquire(&lock_path(path))?;
    let old = read_optional(path)?;
    if let Some(new) = change(old.as_deref())? {
        write_atomic(path, &new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn increment(path: &Path) {
        update_locked(path, |old| -> Result<_, FsError> {
            let n: u64 = old
                .map(|b| String::from_utf8_lossy(b).trim().parse().expect("a number"))
                .unwrap_or(0);
            Ok(Some((n + 1).to_string().into_bytes()))
        })
        .expect("update");
    }

    #[test]
    fn the_lock_excludes_so_no_increment_is_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = dir.path().join("counter");
        const N: u64 = 100;
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..N {
                        increment(&counter);
                    }
                });
            }
        });
        assert_eq!(
            std::fs::read_to_string(&counter).expect("counter"),
            (2 * N).to_string()
        );
    }

    #[test]
    fn a_held_lock_is_busy_until_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = lock_path(&dir.path().join("state.json"));
        assert_eq!(path, dir.path().join("state.json.lock"));
        let held = FileLock::acquire(&path).expect("lock");
        assert!(FileLock::try_acquire(&path).expect("try").is_none());
        // A waiter gets the lock once the holder lets go.
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || FileLock::acquire(&path).map(|lock| lock.path().to_path_buf())
        });
        drop(held);
        assert_eq!(waiter.join().expect("thread").expect("lock"), path);
        assert!(FileLock::try_acquire(&path).expect("try").is_some());
    }

    #[test]
    fn a_change_may_leave_the_file_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("absent");
        update_locked(&path, |old| -> Result<_, FsError> {
            assert_eq!(old, None);
            Ok(None)
        })
        .expect("update");
        assert!(!path.exists());
        let error = update_locked(&path, |_| {
            Err(FsError::Read {
                path: PathBuf::from("why"),
                source: io::Error::other("refused"),
            })
        })
        .expect_err("the change's error");
        assert_eq!(error.kind(), "read");
        assert!(!path.exists());
    }

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporary_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("status.json");
        write_atomic(&path, b"first").expect("write");
        write_atomic(&path, b"second").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [OsString::from("status.json")]);
    }

    #[test]
    fn a_write_that_fails_names_the_file_and_keeps_the_old_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("file");
        write_atomic(&path, b"old").expect("write");
        // A directory in the way of the rename.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).expect("mkdir");
        let error = write_atomic(&blocked, b"new").expect_err("a directory cannot be replaced");
        assert_eq!((error.kind(), error.path()), ("write", blocked.as_path()));
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        let missing = write_atomic(&dir.path().join("no/such/dir/file"), b"x").expect_err("no dir");
        assert!(
            missing.to_string().contains("no/such/dir/file"),
            "{missing}"
        );
    }
}
