//! The apply loop: follows the WAL's durable end, reads committed records, batches and dedups
//! them and hands them to the coalescing sink. Runs on its own thread.
//!
//! It reads only what is fsynced (the [`DurableWatch`]'s end), so the index never reflects a
//! change Postgres could re-send differently, and every batch carries the key of its last record
//! (or `WalKey::end_of` a Commit/Mark), so the index's applied cursor — and a checkpoint made
//! from it — says exactly which records are in.

use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tracing::debug;

use super::PipelineError;
use crate::WalKey;
use crate::dedup::Deduper;
use crate::ops::EntityOps;
use crate::sink::coalescing::CoalescingSink;
use crate::status::{Counter, PhaseTracker, Status};
use crate::wal::{DurableWatch, WalEntry, WalPosition, WalReader};

use super::pin::Pins;

/// How long the loop waits for new durable data before looking at its finish flag again.
const POLL: Duration = Duration::from_millis(50);

/// Sets the pipeline's stop flag when dropped: however the apply loop ends (finished, failed,
/// panicked), the source stops too.
struct StopOnDrop(Arc<watch::Sender<bool>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Everything the apply thread owns.
pub(super) struct ApplyLoop {
    pub wal_dir: PathBuf,
    /// The index's applied cursor at start: the WAL is read after it.
    pub after: WalKey,
    pub durable: DurableWatch,
    pub sink: CoalescingSink,
    pub deduper: Deduper,
    pub status: Arc<Status>,
    pub phase: Arc<PhaseTracker>,
    /// Largest batch, in entity-ops, handed to the sink at once.
    pub batch_max: usize,
    /// Set once the source has stopped: read to the final durable end, then return.
    pub finish: Arc<AtomicBool>,
    pub stop: Arc<watch::Sender<bool>>,
    /// Requests for the snapshot at an LSN (see [`super::pin`]).
    pub pins: Arc<Pins>,
}

impl ApplyLoop {
    /// Runs until `finish` (after draining) or an error; hands the sink back either way, for the
    /// final checkpoint.
    pub(super) fn run(self) -> (CoalescingSink, Result<(), PipelineError>) {
        let _stop = StopOnDrop(Arc::clone(&self.stop));
        let ApplyLoop {
            wal_dir,
            after,
            durable,
            sink,
            deduper,
            status,
            phase,
            batch_max,
            finish,
            stop: _,
            pins,
        } = self;
        let mut applier = Applier {
            sink,
            deduper,
            status,
            batch_max: batch_max.max(1),
            batch: Vec::new(),
            upto: None,
            ops: 0,
            commits: 0,
            pins,
        };
        let result = (|| {
            let ids = applier.deduper.field_ids().clone();
            let mut reader = WalReader::open(&wal_dir, after)?.with_field_ids(ids);
            let mut seen: Option<WalPosition> = None;
            loop {
                let finishing = finish.load(Ordering::SeqCst);
                let d = match seen {
                    Some(s) if !finishing => durable.wait_beyond(s, POLL),
                    _ => durable.get(),
                };
                if seen != Some(d.end) || finishing {
                    applier.read_to(&mut reader, d.end)?;
                    if seen.is_none() {
                        debug!(upto = ?applier.sink.snapshot().applied(), "WAL tail replayed");
                        phase.set_replaying(&applier.status, false);
                    }
                    seen = Some(d.end);
                }
                if finishing {
                    return Ok(());
                }
            }
        })();
        applier.pins.stopped();
        (applier.sink, result)
    }
}

struct Applier {
    sink: CoalescingSink,
    deduper: Deduper,
    status: Arc<Status>,
    batch_max: usize,
    batch: Vec<EntityOps>,
    /// The cursor the pending batch reaches.
    upto: Option<WalKey>,
    /// Ops in the pending batch (before dedup).
    ops: u64,
    /// Commits the pending batch completes.
    commits: u64,
    pins: Arc<Pins>,
}

impl Applier {
    /// Reads every committed entry before `limit`, sending batches on the way.
    fn read_to(&mut self, reader: &mut WalReader, limit: WalPosition) -> Result<(), PipelineError> {
        while let Some(entry) = reader.next(limit)? {
            let lsn = match &entry {
                WalEntry::Ops { key, .. } => key.lsn,
                WalEntry::Commit { lsn } | WalEntry::Mark { lsn } => *lsn,
            };
            if let Some(reply) = self.pins.due(lsn) {
                // Everything handed over so far commits before `lsn`: that is the pinned state.
                self.send()?;
                let _ = reply.send(Ok(self.sink.sync()?));
            }
            match entry {
                WalEntry::Ops { key, ops } => {
                    self.ops += ops.ops.len() as u64;
                    self.batch.push(ops);
                    self.upto = Some(key);
                    if self.batch.len() >= self.batch_max {
                        self.send()?;
                    }
                }
                WalEntry::Commit { lsn } => {
                    self.upto = Some(WalKey::end_of(lsn));
                    self.commits += 1;
                }
                WalEntry::Mark { lsn } => self.upto = Some(WalKey::end_of(lsn)),
            }
        }
        self.send()
    }

    fn send(&mut self) -> Result<(), PipelineError> {
        let Some(upto) = self.upto.take() else {
            return Ok(());
        };
        let batch = self.deduper.dedup(mem::take(&mut self.batch));
        // Tests slow the index writer here (`FAILPOINTS=apply-send=sleep(50)`).
        crate::failpoint::hit("apply-send");
        self.sink.send(batch, upto)?;
        self.status
            .add(Counter::OpsApplied, mem::take(&mut self.ops));
        self.status
            .add(Counter::Transactions, mem::take(&mut self.commits));
        Ok(())
    }
}
