//! A full disk stalls this server's Raft storage until there is room again, instead of
//! stopping it for good.
//!
//! openraft quits its core on any storage error and never starts it again in that process;
//! before issue 11 the first "No space left on device" left a server refusing every write
//! until it was restarted. RocksDB itself recovers from a full disk: its `SstFileManager`
//! (which RocksDB creates by default) polls the free space and resumes the database once
//! there is room. So every write Raft's storage makes goes through [`DiskSpace::write`] (or
//! [`DiskSpace::write_blocking`] on a plain thread): a write refused for lack of space is
//! tried again every [`DISK_FULL_RETRY_MS`] until it succeeds, and the error never reaches
//! openraft. Every such write is idempotent (puts and deletes of whole batches), so trying
//! it again is safe.
//!
//! While a write waits, [`DiskSpace::is_full`] is up and new proposals are refused at once
//! with [`DISK_FULL_MESSAGE`] (a clear 500), so clients are not queued behind a core that
//! waits for the disk; the server sends no Raft messages, as if partitioned (`network`), so
//! if it leads, the other servers elect a leader that has room (a leader's core does not
//! always wait in a write: with only its state machine stalled it would go on heartbeating
//! and hold the cluster's writes hostage); and it does not name itself leader (`live_leader`).
//! Once its write goes through it hears the new term and follows (`tests/it/disk_full.rs`).
//!
//! Waiting is bounded: after [`DISK_FULL_WAIT_S_MAX`] the error is handed to openraft as any
//! other storage error (the core stops; a restart recovers, nothing acknowledged is lost).
//! Other errors are handed over at once, as before.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a write refused for lack of space is tried again, in milliseconds. RocksDB's
/// own recovery polls the free space every few seconds, so trying more often gains nothing.
pub const DISK_FULL_RETRY_MS: u64 = 500;

/// How long a write waits for space before the error goes to openraft (which stops the
/// core), in seconds: a day, long enough for an operator to free space.
pub const DISK_FULL_WAIT_S_MAX: u64 = 24 * 60 * 60;

/// What a write proposed while the disk is full answers.
pub const DISK_FULL_MESSAGE: &str = "disk full: this server cannot write to its data dir (No space left on device); \
     writes resume by themselves once space is freed";

/// Whether this server's storage is waiting for disk space. Cheap to clone; clones share the
/// flag.
#[derive(Clone, Debug, Default)]
pub struct DiskSpace {
    full: Arc<AtomicBool>,
}

/// Whether `error` means the disk (or the filesystem's quota) is full. RocksDB reports
/// ENOSPC as text ("IO error: No space left on device: ..."), and keeps answering with it
/// while it waits for room, so the text is what can be matched.
pub fn is_no_space(error: &std::io::Error) -> bool {
    if error.kind() == std::io::ErrorKind::StorageFull || error.kind() == std::io::ErrorKind::QuotaExceeded {
        return true;
    }
    let text = error.to_string();
    text.contains("No space left on device") || text.contains("NoSpace") || text.contains("Disk quota exceeded")
}

impl DiskSpace {
    /// True while some write of this server's Raft storage waits for disk space.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// A flag that is up, as while a write waits for space (for tests of what reads it).
    #[cfg(test)]
    pub(super) fn full_for_test() -> DiskSpace {
        DiskSpace { full: Arc::new(AtomicBool::new(true)) }
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not a full disk, or has
    /// waited [`DISK_FULL_WAIT_S_MAX`] for space. `what` names the write in the log.
    pub async fn write<T, F, Fut>(&self, what: &'static str, mut attempt: F) -> Result<T, std::io::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, std::io::Error>>,
    {
        let mut waiting = Waiting::new(self, what);
        loop {
            let result = attempt().await;
            match waiting.after(result) {
                Next::Done(result) => return result,
                Next::RetryIn(pause) => tokio::time::sleep(pause).await,
            }
        }
    }

    /// [`DiskSpace::write`] for a plain thread (the log's fsync thread).
    pub fn write_blocking<T>(&self, what: &'static str, mut attempt: impl FnMut() -> Result<T, std::io::Error>) -> Result<T, std::io::Error> {
        let mut waiting = Waiting::new(self, what);
        loop {
            match waiting.after(attempt()) {
                Next::Done(result) => return result,
                Next::RetryIn(pause) => std::thread::sleep(pause),
            }
        }
    }
}

enum Next<T> {
    Done(Result<T, std::io::Error>),
    RetryIn(Duration),
}

/// One write's wait for space: raises the flag and logs on the first refusal, lowers it and
/// logs when the write goes through.
struct Waiting<'a> {
    space: &'a DiskSpace,
    what: &'static str,
    since: Option<Instant>,
}

impl<'a> Waiting<'a> {
    fn new(space: &'a DiskSpace, what: &'static str) -> Waiting<'a> {
        Waiting { space, what, since: None }
    }

    fn after<T>(&mut self, result: Result<T, std::io::Error>) -> Next<T> {
        match result {
            Err(error) if is_no_space(&error) => {
                let since = *self.since.get_or_insert_with(|| {
                    tracing::error!(write = self.what, error = %error, "{DISK_FULL_MESSAGE}; waiting for space");
                    Instant::now()
                });
                self.space.full.store(true, Ordering::Relaxed);
                if since.elapsed() >= Duration::from_secs(DISK_FULL_WAIT_S_MAX) {
                    tracing::error!(write = self.what, "no disk space after {DISK_FULL_WAIT_S_MAX} s; Raft stops on this error");
                    return Next::Done(Err(error));
                }
                Next::RetryIn(Duration::from_millis(DISK_FULL_RETRY_MS))
            }
            result => {
                if let Some(since) = self.since {
                    self.space.full.store(false, Ordering::Relaxed);
                    let waited_ms = since.elapsed().as_millis() as u64;
                    tracing::warn!(write = self.what, waited_ms, "disk space is back; Raft storage writes resumed");
                }
                Next::Done(result)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> std::io::Error {
        std::io::Error::other("rocksdb: IO error: No space left on device: While appending to file: 000012.log")
    }

    #[test]
    fn no_space_is_recognised_in_rocksdb_text_and_in_the_error_kind() {
        assert!(is_no_space(&full()));
        assert!(is_no_space(&std::io::Error::from(std::io::ErrorKind::StorageFull)));
        assert!(!is_no_space(&std::io::Error::other("Corruption: bad block")));
    }

    /// A write refused for lack of space raises the flag, is tried again, and lowers the flag
    /// when it goes through; an error that is not a full disk is handed over at once.
    #[test]
    fn a_full_disk_is_waited_out_and_other_errors_are_not() {
        let space = DiskSpace::default();
        let mut attempts = 0;
        let observer = space.clone();
        let written = space.write_blocking("test", || {
            attempts += 1;
            if attempts < 3 {
                return Err(full());
            }
            assert!(observer.is_full(), "the flag is up while the write waits");
            Ok(attempts)
        });
        assert_eq!(written.unwrap(), 3);
        assert!(!space.is_full());

        let mut attempts = 0;
        let failed: Result<(), _> = space.write_blocking("test", || {
            attempts += 1;
            Err(std::io::Error::other("Corruption"))
        });
        assert!(failed.is_err());
        assert_eq!(attempts, 1);
        assert!(!space.is_full());
    }
}
