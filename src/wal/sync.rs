//! A group commit's fsync, split so that it can run off the writer's lock: [`Wal::begin_sync`]
//! hands every buffered byte to the OS and takes what the fsync must cover (a [`PendingSync`]),
//! [`PendingSync::run`] fsyncs it on any thread while appends go on, and [`Wal::finish_sync`]
//! publishes the durable position it proved.
//!
//! Guarantees: the durable position only moves forward, and only to what an fsync that
//! succeeded covered; a failed fsync fails the WAL (as [`Wal::sync`] does). Crash window: while
//! a sync runs, nothing it covers has been published or acknowledged yet, so a crash then is
//! the "before sync" window of the WAL.
//!
//! [`Wal::begin_sync`]: super::Wal::begin_sync
//! [`Wal::finish_sync`]: super::Wal::finish_sync
//! [`Wal::sync`]: super::Wal::sync

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::segment;
use super::writer::Durable;

/// A failed step: the operation, the directory when it was the directory's fsync, the cause.
type Failure = (&'static str, Option<PathBuf>, io::Error);

/// What one fsync must cover, taken under the writer's lock.
#[derive(Debug)]
pub struct PendingSync {
    /// Segments closed by rotation, not yet fsynced.
    pub(super) sealed: Vec<(File, u64)>,
    /// A handle on the active segment when it has unsynced bytes.
    pub(super) active: Option<File>,
    /// The directory, when a segment was created or removed.
    pub(super) dir: Option<PathBuf>,
    /// The durable state once everything above is on disk.
    pub(super) target: Durable,
    /// The active segment's number and its bytes this sync covers.
    pub(super) segment: (u64, u64),
}

/// What [`PendingSync::run`] did, for [`super::Wal::finish_sync`].
#[derive(Debug)]
pub struct SyncOutcome {
    pub(super) target: Durable,
    pub(super) segment: (u64, u64),
    pub(super) result: Result<(), Failure>,
}

impl PendingSync {
    /// Fsyncs the sealed segments, the active one, then the directory. Blocking; holds no lock.
    pub fn run(self) -> SyncOutcome {
        let result = self.fsync_all();
        SyncOutcome {
            target: self.target,
            segment: self.segment,
            result,
        }
    }

    fn fsync_all(&self) -> Result<(), Failure> {
        for (file, _) in &self.sealed {
            file.sync_data().map_err(|e| ("fsync", None, e))?;
        }
        if let Some(file) = &self.active {
            match crate::failpoint::io_error("wal-fsync") {
                Some(e) => Err(e),
                None => file.sync_data(),
            }
            .map_err(|e| ("fsync", None, e))?;
        }
        if let Some(dir) = &self.dir {
            segment::sync_dir(dir).map_err(|e| ("fsync directory", Some(dir.clone()), e))?;
        }
        Ok(())
    }

    /// The durable LSN this sync proves once it succeeds.
    pub fn lsn(&self) -> crate::Lsn {
        self.target.lsn
    }
}
