//! The steady-state sink: a bounded channel into one writer thread that owns the index.
//!
//! Guarantees:
//! * Batches are applied **in arrival order**, op by op, exactly as sent. There is no per-cycle
//!   reordering (applying all removes before all inserts, say), which could resurrect a value
//!   that a later batch removed.
//! * Readers never block the writer: after each drain of the channel the writer publishes an
//!   immutable [`Snapshot`] (a handful of `Arc` clones) tagged with the cursor of the last
//!   record it applied; readers load the newest one without taking a lock.
//! * Whole transactions only: a snapshot is published only where the applied cursor is a
//!   transaction boundary ([`WalKey::is_boundary`]). Batches may end inside a transaction (the
//!   apply loop cuts a large one into many); the writer then keeps applying until the
//!   transaction's last batch before it publishes, however large the transaction. Memory stays
//!   bounded meanwhile: the last published snapshot shares every bitmap, and the writer copies
//!   only what it touches, once. An index that starts inside a transaction (a checkpoint written
//!   by an older version) publishes an empty index until it reaches a boundary.
//! * Backpressure: `send` blocks while `capacity` batches are queued, so a slow writer slows the
//!   WAL reader instead of growing memory.
//! * Live counters: with [`CoalescingSink::spawn_observed`], the index's bad-data counters are
//!   handed to an observer *before* each snapshot is published, so whoever sees a snapshot (or
//!   its applied cursor) also finds the counters that include its ops.
//!
//! * Memory reports ([`MemoryProbe`]) are made on the writer thread between batches: a request
//!   waits at most for the batch being applied, and an idle writer answers at once. A probe does
//!   not keep the writer alive.
//!
//! Crash windows: none of its own. The index here lives in memory; what survives a crash is the
//! last checkpoint plus the WAL, and the caller checkpoints from a published snapshot.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, bounded};
use tokio::sync::watch;

use crate::WalKey;
use crate::index::{Index, IndexStats, MemoryReport, Snapshot};
use crate::ops::EntityOps;

/// Tuning of the coalescing sink.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Batches that may wait in the channel before `send` blocks.
    pub capacity: usize,
    /// Longest time the writer keeps applying queued batches before publishing a snapshot.
    pub max_publish_delay: Duration,
}

impl SinkOptions {
    /// Default channel capacity: enough to keep the writer busy across a WAL read.
    pub const DEFAULT_CAPACITY: usize = 64;
    /// Default publish delay: small next to a human's perception and a query's round trip, and
    /// long enough that a writer catching up publishes every few batches, not after each one
    /// (the first writes after a snapshot copy what they touch: publishing after every 10k-entity
    /// batch measured 2.6M ops/s against 3.9M publishing every fifth). An idle writer publishes
    /// at once.
    pub const DEFAULT_MAX_PUBLISH_DELAY: Duration = Duration::from_millis(20);
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            capacity: Self::DEFAULT_CAPACITY,
            max_publish_delay: Self::DEFAULT_MAX_PUBLISH_DELAY,
        }
    }
}

/// Failures of the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The writer thread is gone (it panicked, or the sink was shut down).
    #[error("the index writer thread has stopped")]
    WriterStopped,
}

enum Command {
    Apply { batch: Vec<EntityOps>, upto: WalKey },
    Sync(crossbeam_channel::Sender<Snapshot>),
}

/// A memory report request: the reply channel and when its asker stops waiting.
type MemoryRequest = (Sender<MemoryReport>, Instant);

/// Asks the index writer for the index's memory by field ([`Index::memory`]).
#[derive(Clone)]
pub struct MemoryProbe(Sender<MemoryRequest>);

impl MemoryProbe {
    /// The writer's report, or `None` when it is gone or does not answer within `timeout`. A
    /// request the writer reaches after `timeout` is dropped unanswered, so requests that piled
    /// up while it was busy cost it nothing.
    pub fn report(&self, timeout: Duration) -> Option<MemoryReport> {
        let (tx, rx) = bounded(1);
        self.0.send((tx, Instant::now() + timeout)).ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

/// Receives the index's counters on the writer thread before each publish (and once at start).
/// It runs inside the writer's loop: keep it to a few atomic stores.
pub type PublishObserver = Box<dyn FnMut(&IndexStats) + Send>;

/// Handle to the writer thread. Dropping it without [`CoalescingSink::shutdown`] stops the
/// writer after it has applied what was queued.
pub struct CoalescingSink {
    tx: Option<Sender<Command>>,
    published: Arc<ArcSwap<Snapshot>>,
    applied: watch::Receiver<WalKey>,
    memory: MemoryProbe,
    thread: Option<JoinHandle<Index>>,
}

impl CoalescingSink {
    /// Moves `index` into a new writer thread and publishes its first snapshot.
    pub fn spawn(index: Index, options: SinkOptions) -> Self {
        CoalescingSink::start(index, options, None, None)
    }

    /// Like [`CoalescingSink::spawn`], and hands the index's counters ([`Index::stats`]) to
    /// `observer` before every publish, e.g. to show bad data in status and metrics while the
    /// pipeline runs; the applied cursor goes to `applied`, whose receivers may predate the sink
    /// (the stream's backlog bound, while the index loads).
    pub fn spawn_observed(
        index: Index,
        options: SinkOptions,
        observer: impl FnMut(&IndexStats) + Send + 'static,
        applied: watch::Sender<WalKey>,
    ) -> Self {
        CoalescingSink::start(index, options, Some(Box::new(observer)), Some(applied))
    }

    fn start(
        index: Index,
        options: SinkOptions,
        mut observer: Option<PublishObserver>,
        applied: Option<watch::Sender<WalKey>>,
    ) -> Self {
        if let Some(observe) = observer.as_mut() {
            observe(&index.stats());
        }
        let first = if index.applied().is_boundary() {
            index.snapshot()
        } else {
            Index::new(Arc::clone(index.schema())).snapshot()
        };
        let applied_tx = applied.unwrap_or_else(|| watch::channel(first.applied()).0);
        applied_tx.send_replace(first.applied());
        let applied = applied_tx.subscribe();
        let published = Arc::new(ArcSwap::from_pointee(first));
        let (tx, rx) = bounded(options.capacity.max(1));
        let (memory_tx, memory) = crossbeam_channel::unbounded();
        let writer = Writer {
            index,
            rx,
            memory,
            published: published.clone(),
            applied: applied_tx,
            options,
            observer,
        };
        let thread = std::thread::Builder::new()
            .name("pgroar-index-writer".into())
            .spawn(move || writer.run())
            .expect("spawning the index writer thread");
        CoalescingSink {
            tx: Some(tx),
            published,
            applied,
            memory: MemoryProbe(memory_tx),
            thread: Some(thread),
        }
    }

    /// Queues `batch` (already deduped); `upto` is the cursor of its last record. Blocks while
    /// the channel is full.
    pub fn send(&self, batch: Vec<EntityOps>, upto: WalKey) -> Result<(), SinkError> {
        let tx = self.tx.as_ref().ok_or(SinkError::WriterStopped)?;
        tx.send(Command::Apply { batch, upto })
            .map_err(|_| SinkError::WriterStopped)
    }

    /// The newest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load_full()
    }

    /// Waits until everything sent before this call is applied and published; returns that
    /// snapshot.
    pub fn sync(&self) -> Result<Snapshot, SinkError> {
        let tx = self.tx.as_ref().ok_or(SinkError::WriterStopped)?;
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        tx.send(Command::Sync(reply_tx))
            .map_err(|_| SinkError::WriterStopped)?;
        reply_rx.recv().map_err(|_| SinkError::WriterStopped)
    }

    /// The shared cell readers load snapshots from (for servers that outlive a borrow of the sink).
    pub fn published(&self) -> Arc<ArcSwap<Snapshot>> {
        self.published.clone()
    }

    /// A receiver of the applied cursor, updated at every publish (for read-your-writes waits).
    pub fn applied(&self) -> watch::Receiver<WalKey> {
        self.applied.clone()
    }

    /// A handle that asks the writer for the index's memory report.
    pub fn memory_probe(&self) -> MemoryProbe {
        self.memory.clone()
    }

    /// Applies what is queued, stops the writer and hands the index back (for a final checkpoint).
    pub fn shutdown(mut self) -> Result<Index, SinkError> {
        self.tx.take();
        let thread = self.thread.take().ok_or(SinkError::WriterStopped)?;
        thread.join().map_err(|_| SinkError::WriterStopped)
    }
}

impl Drop for CoalescingSink {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Writer {
    index: Index,
    rx: Receiver<Command>,
    /// Memory report requests (see [`MemoryProbe`]).
    memory: Receiver<MemoryRequest>,
    published: Arc<ArcSwap<Snapshot>>,
    applied: watch::Sender<WalKey>,
    options: SinkOptions,
    observer: Option<PublishObserver>,
}

impl Writer {
    fn run(mut self) -> Index {
        // Readers have the first snapshot already; what only writes need is rebuilt now.
        self.index.finish_load();
        let mut waiting: Vec<crossbeam_channel::Sender<Snapshot>> = Vec::new();
        'publish: while let Some(first) = self.recv() {
            let started = Instant::now();
            self.handle(first, &mut waiting);
            loop {
                // Coalesce: keep applying what is already queued, up to the publish delay.
                while started.elapsed() < self.options.max_publish_delay {
                    match self.rx.try_recv() {
                        Ok(cmd) => self.handle(cmd, &mut waiting),
                        Err(_) => break,
                    }
                }
                if self.index.applied().is_boundary() {
                    break;
                }
                // Inside a transaction: readers see it whole or not at all, so apply its rest
                // before publishing.
                match self.recv() {
                    Some(cmd) => self.handle(cmd, &mut waiting),
                    None => break 'publish,
                }
            }
            if let Some(observe) = self.observer.as_mut() {
                observe(&self.index.stats());
            }
            let snapshot = self.index.snapshot();
            let applied = snapshot.applied();
            self.published.store(Arc::new(snapshot.clone()));
            self.applied.send_replace(applied);
            for w in waiting.drain(..) {
                let _ = w.send(snapshot.clone());
            }
        }
        self.index
    }

    /// The next command, answering memory requests while waiting for it; `None` once every
    /// sender of commands is gone (probes do not count).
    fn recv(&self) -> Option<Command> {
        loop {
            crossbeam_channel::select! {
                recv(self.rx) -> cmd => return cmd.ok(),
                recv(self.memory) -> request => match request {
                    Ok((reply, until)) => {
                        if Instant::now() < until {
                            let _ = reply.send(self.index.memory());
                        }
                    }
                    // No probe left: wait for commands alone.
                    Err(_) => return self.rx.recv().ok(),
                },
            }
        }
    }

    fn handle(&mut self, cmd: Command, waiting: &mut Vec<crossbeam_channel::Sender<Snapshot>>) {
        match cmd {
            Command::Apply { batch, upto } => {
                self.index.apply_batch(&batch);
                if upto > self.index.applied() {
                    self.index.set_applied(upto);
                }
            }
            Command::Sync(reply) => waiting.push(reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::Lsn;
    use crate::ops::Op;
    use crate::schema::{FilterKind, Schema};

    #[test]
    fn the_observer_sees_the_counters_of_every_published_snapshot() {
        let schema = Schema::from_pairs(&[("a", FilterKind::Single)], &[("s", 8)]).unwrap();
        let seen: Arc<Mutex<Vec<IndexStats>>> = Arc::default();
        let log = Arc::clone(&seen);
        // A receiver of the applied cursor made before the sink.
        let (applied, early) = watch::channel(WalKey::end_of(Lsn(3)));
        let sink = CoalescingSink::spawn_observed(
            Index::new(Arc::new(schema)),
            SinkOptions::default(),
            move |s| log.lock().unwrap().push(*s),
            applied,
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "once at start");
        let batch = vec![
            EntityOps::alive(1, vec![Op::set("a", 1i64), Op::set("s", -3i64)]),
            EntityOps::alive(5_000_000_000, vec![Op::set("a", 2i64)]),
            EntityOps::alive(2, vec![Op::set("s", 1000i64)]),
        ];
        sink.send(batch, WalKey::end_of(Lsn(10))).unwrap();
        let snapshot = sink.sync().unwrap();
        assert_eq!(snapshot.applied(), WalKey::end_of(Lsn(10)));
        assert_eq!(*early.borrow(), WalKey::end_of(Lsn(10)));
        let last = *seen.lock().unwrap().last().unwrap();
        assert_eq!((last.skipped_ids, last.clamped_values), (1, 2));
        let index = sink.shutdown().unwrap();
        assert_eq!(index.stats().clamped_values, 2);
    }

    #[test]
    fn snapshots_hold_whole_transactions_only() {
        let schema = Schema::from_pairs(&[("a", FilterKind::Single)], &[]).unwrap();
        let options = SinkOptions {
            capacity: 4,
            max_publish_delay: Duration::ZERO,
        };
        let sink = CoalescingSink::spawn(Index::new(Arc::new(schema)), options);
        let row = |slot: i64| vec![EntityOps::alive(slot, vec![Op::set("a", 1i64)])];
        // Transaction 10 arrives in three batches; the first two end inside it.
        sink.send(row(1), WalKey::new(Lsn(10), 0)).unwrap();
        sink.send(row(2), WalKey::new(Lsn(10), 1)).unwrap();
        std::thread::scope(|s| {
            let synced = s.spawn(|| sink.sync().unwrap());
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(sink.snapshot().alive_count(), 0, "part of a transaction");
            assert_eq!(*sink.applied().borrow(), WalKey::ZERO);
            assert!(!synced.is_finished());
            sink.send(row(3), WalKey::end_of(Lsn(10))).unwrap();
            let snap = synced.join().unwrap();
            assert_eq!(snap.applied(), WalKey::end_of(Lsn(10)));
            assert_eq!(snap.alive_count(), 3);
        });
        // An index that starts inside a transaction shows none of it.
        let mut index = sink.shutdown().unwrap();
        index.apply(&row(4)[0]);
        index.set_applied(WalKey::new(Lsn(11), 0));
        let sink = CoalescingSink::spawn(index, SinkOptions::default());
        assert_eq!(sink.snapshot().alive_count(), 0);
        sink.send(row(5), WalKey::end_of(Lsn(11))).unwrap();
        assert_eq!(sink.sync().unwrap().alive_count(), 5);
    }

    #[test]
    fn an_idle_writer_answers_memory_probes_and_probes_do_not_keep_it_alive() {
        let schema = Schema::from_pairs(&[("a", FilterKind::Single)], &[]).unwrap();
        let sink = CoalescingSink::spawn(Index::new(Arc::new(schema)), SinkOptions::default());
        let probe = sink.memory_probe();
        let batch = (0..1000).map(|i| EntityOps::alive(i, vec![Op::set("a", i % 7)]));
        sink.send(batch.collect(), WalKey::end_of(Lsn(10))).unwrap();
        sink.sync().unwrap();
        let report = probe
            .report(Duration::from_secs(10))
            .expect("an idle writer answers");
        assert_eq!(report.slots, 1000);
        assert_eq!(report.fields[1].keys, 7);
        sink.shutdown().unwrap();
        assert_eq!(
            probe.report(Duration::from_secs(1)),
            None,
            "the writer is gone"
        );
    }
}
