//! Checkpoints: every `checkpoint_interval_secs` (and once more at shutdown) the newest published
//! snapshot is written to `<data_dir>/index`, then the WAL segments the *previous* checkpoint
//! fully covers are removed: the previous checkpoint file is kept
//! ([`crate::index::checkpoint::PREVIOUS_CHECKPOINT_FILE`]), and with the WAL after it, a damaged
//! newest checkpoint costs a longer replay instead of a re-bootstrap.
//!
//! Order is what makes it safe: the checkpoint file is replaced atomically and fsynced before any
//! segment goes, and only segments whose every record is at or below what the previous
//! checkpoint reflects are removed. A crash between the two leaves extra segments, which the
//! next checkpoint removes. Segments the forwarding sink has not sent yet stay too (its floor). A
//! periodic checkpoint whose write failed (e.g. no space) is logged and retried at the next
//! interval with a new file (the WAL still holds everything); one whose fsync failed stops the
//! pipeline, as what reached the disk is unknown and an fsync is never retried on the same data.
//! A failed final checkpoint is returned.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use tracing::{error, info, warn};

use super::PipelineError;
use crate::index::Snapshot;
use crate::index::checkpoint::CheckpointError;
use crate::source::{error_chain, lock};
use crate::status::Status;
use crate::wal::Wal;
use crate::{Lsn, WalKey};

/// The LSN below which every record is reflected by an index applied up to `applied`: the
/// transaction's own LSN at a transaction boundary, the one before it mid-transaction.
pub fn covered_lsn(applied: WalKey) -> Lsn {
    if applied.seq == u32::MAX {
        applied.lsn
    } else {
        Lsn(applied.lsn.0.saturating_sub(1))
    }
}

/// Writes checkpoints and truncates the WAL behind them.
pub(super) struct Checkpointer {
    pub dir: PathBuf,
    pub wal: Arc<Mutex<Wal>>,
    pub status: Arc<Status>,
    /// The cursor of the newest checkpoint on disk.
    pub last: WalKey,
    /// The forwarding sink's cursor: segments it still needs stay (`u64::MAX`: none held).
    pub floor: crate::forward::Floor,
    /// Signalled when a checkpoint's fsync fails: the pipeline stops.
    pub stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// The fsync failure that stopped the pipeline (no final checkpoint is tried then).
    pub fatal: Option<PipelineError>,
}

impl Checkpointer {
    /// Checkpoints `published` every `interval` until `stop` is dropped or signalled; returns
    /// itself for the final checkpoint.
    pub(super) fn run(
        mut self,
        published: Arc<ArcSwap<Snapshot>>,
        interval: Duration,
        stop: Receiver<()>,
    ) -> Checkpointer {
        loop {
            match stop.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return self,
            }
            if let Err(e) = self.checkpoint(&published.load_full()) {
                let message = error_chain(&e);
                self.status
                    .set_error(format!("checkpoint failed: {message}"));
                if matches!(e, PipelineError::Checkpoint(CheckpointError::Sync { .. })) {
                    error!(error = %message, "checkpoint fsync failed; stopping");
                    self.fatal = Some(e);
                    self.stop.send_replace(true);
                    return self;
                }
                warn!(error = %message, "checkpoint failed; retrying at the next interval");
            }
        }
    }

    /// Writes `snapshot` as the checkpoint (unless the newest one already has its cursor), then
    /// removes the WAL segments it covers. Returns whether a checkpoint was written.
    pub(super) fn checkpoint(&mut self, snapshot: &Snapshot) -> Result<bool, PipelineError> {
        let applied = snapshot.applied();
        if applied == self.last {
            return Ok(false);
        }
        let started = Instant::now();
        // What the checkpoint now becoming the previous one covers: the WAL after it stays.
        let previous = covered_lsn(self.last);
        snapshot.write_checkpoint(&self.dir)?;
        self.last = applied;
        let covered = covered_lsn(applied);
        self.status.set_checkpointed(covered);
        crate::failpoint::crash("checkpoint-before-truncate");
        let floor = Lsn(self.floor.load(std::sync::atomic::Ordering::SeqCst));
        let removed = lock(&self.wal).remove_segments_below(previous.min(floor))?;
        info!(
            applied = %applied.lsn,
            seq = applied.seq,
            alive = snapshot.alive_count(),
            took_ms = started.elapsed().as_millis() as u64,
            wal_segments_removed = removed,
            "checkpoint written"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_lsn_excludes_a_partly_applied_transaction() {
        assert_eq!(covered_lsn(WalKey::end_of(Lsn(100))), Lsn(100));
        assert_eq!(covered_lsn(WalKey::new(Lsn(100), 7)), Lsn(99));
        assert_eq!(covered_lsn(WalKey::ZERO), Lsn::ZERO);
    }
}
