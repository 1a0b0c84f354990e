//! Checkpoints: every `checkpoint_interval_secs` (and once more at shutdown) the newest published
//! snapshot is written to `<data_dir>/index` — when it is due: a checkpoint rewrites the whole
//! index, so a periodic one waits until the WAL written since the last one reaches
//! `checkpoint_wal_percent` of the last one's size ([`CheckpointPolicy`]; always when the last
//! one is small). The WAL after a checkpoint is its delta: checkpoints then cost at most as many
//! disk writes as the changes, and a restart replays at most about one checkpoint's size of WAL.
//! Then the WAL segments the *previous* checkpoint fully covers are removed: the previous
//! checkpoint file is kept ([`crate::index::checkpoint::PREVIOUS_CHECKPOINT_FILE`]), and with the
//! WAL after it, a damaged newest checkpoint costs a longer replay instead of a re-bootstrap.
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
use crate::wal::{Wal, WalPosition};
use crate::{Lsn, WalKey};

/// The LSN below which every record is reflected by an index applied up to `applied`: the
/// transaction's own LSN at a transaction boundary, the one before it mid-transaction.
pub fn covered_lsn(applied: WalKey) -> Lsn {
    applied.covered()
}

/// When a periodic checkpoint is due (see the module note).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// WAL bytes written since the last checkpoint, as a percentage of its size, that make the
    /// next one due (0: every interval with changes).
    pub wal_percent: u64,
    /// A last checkpoint smaller than this many bytes is rewritten at every interval (it is
    /// cheap, and a small index's restart then replays little).
    pub always_below: u64,
}

impl CheckpointPolicy {
    /// Default [`CheckpointPolicy::always_below`]: 64 MiB, well under a second to write.
    pub const ALWAYS_BELOW: u64 = 64 << 20;

    /// The policy of `index.checkpoint_wal_percent`.
    pub fn with_percent(wal_percent: u64) -> CheckpointPolicy {
        CheckpointPolicy {
            wal_percent,
            always_below: Self::ALWAYS_BELOW,
        }
    }

    /// Whether a checkpoint is due when the last one has `last_size` bytes and `wal_since` bytes
    /// of WAL were written after it.
    pub fn due(&self, last_size: u64, wal_since: u64) -> bool {
        last_size < self.always_below
            || u128::from(wal_since) * 100 >= u128::from(last_size) * u128::from(self.wal_percent)
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
    pub floors: Vec<crate::forward::Floor>,
    /// Signalled when a checkpoint's fsync fails: the pipeline stops.
    pub stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// The fsync failure that stopped the pipeline (no final checkpoint is tried then).
    pub fatal: Option<PipelineError>,
    /// When a periodic checkpoint is due.
    pub policy: CheckpointPolicy,
    /// The size of the newest checkpoint file (0: none yet).
    pub last_size: u64,
    /// The WAL's end when the newest checkpoint was taken (at start: the WAL's start, so the
    /// WAL replayed since the checkpoint counts too).
    pub mark: WalPosition,
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
            if let Err(e) = self.tick(&published.load_full()) {
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

    /// A periodic checkpoint of `snapshot`, if one is due (see [`CheckpointPolicy`]). Returns
    /// whether one was written.
    fn tick(&mut self, snapshot: &Snapshot) -> Result<bool, PipelineError> {
        let wal_since = lock(&self.wal).bytes_after(self.mark);
        if !self.policy.due(self.last_size, wal_since) {
            tracing::debug!(
                wal_since,
                last_size = self.last_size,
                "checkpoint not due yet"
            );
            return Ok(false);
        }
        self.checkpoint(snapshot)
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
        let mark = lock(&self.wal).end();
        snapshot.write_checkpoint(&self.dir)?;
        self.last = applied;
        self.mark = mark;
        self.last_size = checkpoint_size(&self.dir);
        let covered = covered_lsn(applied);
        self.status.set_checkpointed(covered);
        crate::failpoint::crash("checkpoint-before-truncate");
        let floor = Lsn(self
            .floors
            .iter()
            .map(|f| f.load(std::sync::atomic::Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX));
        let removed = lock(&self.wal).remove_segments_below(previous.min(floor))?;
        info!(
            applied = %applied.lsn,
            seq = applied.seq,
            alive = snapshot.alive_count(),
            took_ms = started.elapsed().as_millis() as u64,
            bytes = self.last_size,
            wal_segments_removed = removed,
            "checkpoint written"
        );
        Ok(true)
    }
}

/// The size of the checkpoint file in `dir` (0 when there is none).
pub(super) fn checkpoint_size(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join(crate::index::checkpoint::CHECKPOINT_FILE)).map_or(0, |m| m.len())
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

    /// A checkpointer over a fresh WAL and checkpoint directory in `dir`.
    fn checkpointer(dir: &std::path::Path, policy: CheckpointPolicy) -> Checkpointer {
        std::fs::create_dir_all(dir.join("index")).unwrap();
        let (wal, _) = Wal::open(dir.join("wal"), crate::wal::WalOptions::default()).unwrap();
        let mark = wal.start();
        Checkpointer {
            dir: dir.join("index"),
            wal: Arc::new(Mutex::new(wal)),
            status: Arc::new(Status::new("slot", "publication")),
            last: WalKey::ZERO,
            floors: vec![Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX))],
            stop: Arc::new(tokio::sync::watch::channel(false).0),
            fatal: None,
            policy,
            last_size: 0,
            mark,
        }
    }

    /// A transaction of `n` ops at `lsn` in the checkpointer's WAL.
    fn write_wal(c: &Checkpointer, lsn: u64, n: i64) {
        let mut wal = lock(&c.wal);
        wal.begin(Lsn(lsn)).unwrap();
        for id in 0..n {
            let ops = crate::ops::EntityOps::new(id, vec![crate::ops::Op::Delete]);
            wal.append(&ops).unwrap();
        }
        wal.commit().unwrap();
    }

    #[test]
    fn periodic_checkpoints_wait_for_the_wal_since_the_last_to_reach_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let policy = CheckpointPolicy {
            wal_percent: 100,
            always_below: 0,
        };
        let mut c = checkpointer(dir.path(), policy);
        let schema =
            crate::schema::Schema::from_pairs(&[("a", crate::schema::FilterKind::Single)], &[])
                .unwrap();
        let mut index = crate::index::Index::new(Arc::new(schema));
        // An index of some size: a checkpoint of several KB, against WAL transactions of a few
        // hundred bytes.
        let rows: Vec<_> = (0..5000)
            .map(|id| crate::ops::EntityOps::new(id, vec![crate::ops::Op::set("a", id * 7)]))
            .collect();
        index.apply_batch(&rows);
        let mut lsn = 100;
        let mut step = |index: &mut crate::index::Index, c: &Checkpointer, n: i64| {
            write_wal(c, lsn, n);
            index.set_applied(WalKey::end_of(Lsn(lsn)));
            lsn += 100;
            index.snapshot()
        };
        // No checkpoint yet: the first tick writes one.
        let s = step(&mut index, &c, 10);
        assert!(c.tick(&s).unwrap());
        let size = c.last_size;
        assert!(size > 0);
        // WAL short of the checkpoint's size: not due.
        let s = step(&mut index, &c, 1);
        assert!(
            !c.tick(&s).unwrap(),
            "due after {} bytes",
            lock(&c.wal).bytes_after(c.mark)
        );
        // Past it: due.
        while lock(&c.wal).bytes_after(c.mark) < size {
            step(&mut index, &c, 1);
        }
        let s = step(&mut index, &c, 1);
        assert!(c.tick(&s).unwrap());
        // The final checkpoint at shutdown does not wait.
        let s = step(&mut index, &c, 1);
        assert!(c.checkpoint(&s).unwrap());
    }

    #[test]
    fn a_checkpoint_is_due_once_the_wal_since_reaches_its_share_of_the_last_one() {
        let p = CheckpointPolicy::with_percent(100);
        let big = 1 << 30;
        assert!(p.due(0, 0), "no checkpoint yet");
        assert!(
            p.due(CheckpointPolicy::ALWAYS_BELOW - 1, 1),
            "a small one: every interval"
        );
        assert!(!p.due(big, big - 1));
        assert!(p.due(big, big));
        assert!(!CheckpointPolicy::with_percent(50).due(big, big / 2 - 1));
        assert!(CheckpointPolicy::with_percent(50).due(big, big / 2));
        assert!(CheckpointPolicy::with_percent(0).due(big, 0));
    }
}
