//! The streaming pipeline behind `pgroar run`: replication stream → WAL (durable before ack) →
//! apply loop → coalescing sink, with periodic checkpoints, and restart from the durable LSN.
//!
//! ```text
//!  source task (tokio)        apply thread               index writer thread     checkpointer thread
//!  stream → translate →  ──►  WalReader up to the   ──►  CoalescingSink applies ──► snapshot → checkpoint
//!  WAL append, group sync     durable end, dedup         and publishes snapshots     → remove WAL segments
//!  ack durable LSN
//! ```
//!
//! # Start
//! Opens the WAL in `<data_dir>/wal` (recovery cuts a torn tail), loads the checkpoint from
//! `<data_dir>/index` (none: an empty index at `WalKey::ZERO`, and the whole WAL is replayed),
//! then starts the threads. The apply loop replays the WAL after the checkpoint while the source
//! checks the slot and resumes streaming from the durable LSN. The source needs only the WAL:
//! it starts before the checkpoint loads (streaming into the WAL, acknowledging what is durable)
//! unless the checkpoint's header is ahead of the WAL — a bootstrap's consistent point, marked
//! into the WAL once loaded. Queries are served once the index is loaded, as before.
//!
//! # Stop
//! [`Pipeline::stop`] (or a fatal error anywhere) stops the source, which syncs the WAL and
//! acknowledges the durable LSN; then the apply loop drains to the final durable end, the sink
//! applies everything, and a final checkpoint is written. Everything after the ack is only an
//! optimisation of the next start: the pipeline can be killed at any moment. A crash loses no
//! acknowledged change — the WAL holds it — and the next start replays the WAL from the last
//! checkpoint, never applying a record twice (records are keyed and the checkpoint carries the
//! key of the last one it reflects).

mod apply;
pub mod checkpoint;
pub mod pin;
pub mod replication;
mod start;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::index::{CheckpointError, Index, Snapshot};
use crate::sink::coalescing::{CoalescingSink, MemoryProbe, SinkError, SinkOptions};
use crate::source::catalog::check_replica_identity;
use crate::source::{
    ConnInfo, Source, SourceError, SourceOptions, Translate, connect_sql, error_chain, lock,
};
use crate::status::{PhaseTracker, Status};
use crate::translate::{IdentityError, TranslateError};
use crate::wal::{Wal, WalError};
use crate::{Lsn, WalKey};

pub use checkpoint::CheckpointPolicy;
use checkpoint::Checkpointer;
pub use pin::{PinError, Pins};
pub use start::Feed;
use start::{Shared, Started, open_wal};

/// Why the pipeline could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A directory could not be created.
    #[error("cannot create {}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A checkpoint could not be loaded or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint reflects part of a transaction the WAL does not hold.
    #[error(
        "the checkpoint in {} reflects changes up to {applied:?}, but the WAL only holds changes \
         up to {durable}: the WAL was removed or replaced. The index must be re-bootstrapped",
        data_dir.display()
    )]
    CheckpointAheadOfWal {
        /// The checkpoint's cursor.
        applied: WalKey,
        /// The WAL's durable LSN.
        durable: Lsn,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The replication source stopped with an error.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Replication over NATS JetStream failed.
    #[error(transparent)]
    Replication(#[from] crate::replicate::ReplicationError),
    /// The forwarding sink's cursor could not be set up.
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardError),
    /// The index writer stopped.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The sync config's expressions do not work.
    #[error(transparent)]
    Translate(Box<TranslateError>),
    /// A source table's replica identity cannot support its source.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A pipeline thread or task panicked.
    #[error("the {0} panicked")]
    Panicked(&'static str),
}

impl From<TranslateError> for PipelineError {
    fn from(e: TranslateError) -> Self {
        PipelineError::Translate(Box::new(e))
    }
}

/// Tuning of the pipeline (the config's values plus what only tests change).
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// The replication source's timing.
    pub source: SourceOptions,
    /// The coalescing sink's channel and publish delay.
    pub sink: SinkOptions,
    /// Largest batch (entity-ops) the apply loop hands to the sink.
    pub apply_batch: usize,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// When a periodic checkpoint is due.
    pub checkpoint_policy: CheckpointPolicy,
    /// WAL segment size.
    pub segment_bytes: u64,
}

impl PipelineOptions {
    /// Default apply batch: large enough to amortise dedup and the channel, small enough that
    /// the queued batches stay a few tens of MB.
    pub const DEFAULT_APPLY_BATCH: usize = 10_000;
    /// Default sink capacity in batches (each up to [`Self::DEFAULT_APPLY_BATCH`]).
    pub const DEFAULT_SINK_CAPACITY: usize = 8;

    /// The options `config` asks for.
    pub fn from_config(config: &Config) -> PipelineOptions {
        PipelineOptions {
            source: SourceOptions::from_config(config),
            sink: SinkOptions {
                capacity: Self::DEFAULT_SINK_CAPACITY,
                ..SinkOptions::default()
            },
            apply_batch: Self::DEFAULT_APPLY_BATCH,
            checkpoint_interval: Duration::from_secs(config.index.checkpoint_interval_secs.max(1)),
            checkpoint_policy: CheckpointPolicy::with_percent(config.index.checkpoint_wal_percent),
            segment_bytes: config.wal.segment_bytes,
        }
    }
}

/// Where the pipeline stood when it stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// The WAL's durable LSN (acknowledged to Postgres).
    pub durable: Lsn,
    /// The index's applied cursor.
    pub applied: WalKey,
    /// The newest checkpoint's cursor.
    pub checkpointed: WalKey,
}

/// A running pipeline. Stop it with [`Pipeline::stop`] and wait with [`Pipeline::join`].
pub struct Pipeline {
    status: Arc<Status>,
    published: Arc<ArcSwap<Snapshot>>,
    applied: watch::Receiver<WalKey>,
    stop: Arc<watch::Sender<bool>>,
    pins: Arc<Pins>,
    memory: MemoryProbe,
    supervisor: JoinHandle<Result<RunSummary, PipelineError>>,
}

impl Pipeline {
    /// Opens the data directory, loads the checkpoint, and starts the source, the apply loop,
    /// the index writer and the checkpointer. Errors here are about the data directory; the
    /// slot and connection checks run in the source (their errors come out of [`Pipeline::join`]).
    pub async fn start<T: Translate>(
        config: Config,
        translator: T,
        options: PipelineOptions,
    ) -> Result<Pipeline, PipelineError> {
        Self::start_with_index(config, translator, options, None).await
    }

    /// [`Pipeline::start`] with the index already in memory (`Some`: the one a bootstrap just
    /// checkpointed into this data directory), instead of loading the checkpoint.
    pub async fn start_with_index<T: Translate>(
        config: Config,
        translator: T,
        options: PipelineOptions,
        preloaded: Option<Index>,
    ) -> Result<Pipeline, PipelineError> {
        Self::start_with_feed(config, Feed::Postgres(translator), options, preloaded).await
    }

    /// [`Pipeline::start_with_index`] from any [`Feed`]: a follower's is the stream.
    pub async fn start_with_feed<T: Translate>(
        config: Config,
        feed: Feed<T>,
        options: PipelineOptions,
        preloaded: Option<Index>,
    ) -> Result<Pipeline, PipelineError> {
        let link = replication::link(&config).await?;
        let publish_floor = crate::forward::no_floor();
        let data_dir = config.storage.data_dir.clone();
        let wal = open_wal(&config, &options).await?;
        let status = Arc::new(Status::new(
            config.postgres.slot.clone(),
            config.postgres.publication.clone(),
        ));
        status.set_durable(wal.durable_lsn());
        let phase = Arc::new(PhaseTracker::default());
        phase.set_replaying(&status, true);
        // The stream needs only the WAL: it starts while the checkpoint loads, unless the
        // checkpoint is ahead of the WAL (a bootstrap's, marked into the WAL first).
        let peeked = match &preloaded {
            Some(_) => None,
            None => Index::peek_checkpoint(&data_dir.join("index")),
        };
        let stream_early = peeked.is_some_and(|a| a.lsn <= wal.durable_lsn());
        let wal = Arc::new(Mutex::new(wal));
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop = Arc::new(stop_tx);
        let shared = Shared {
            config: &config,
            options: &options,
            wal: &wal,
            status: &status,
            phase: &phase,
            stop: &stop,
            stop_rx: &stop_rx,
            link: link.as_ref(),
            publish_floor: &publish_floor,
        };
        let (source, source_applied) = shared.source(feed, peeked, stream_early)?;
        let threads = match shared.threads(preloaded, source_applied).await {
            Ok(threads) => threads,
            Err(e) => {
                stop.send_replace(true);
                if let Started::Running(task) = source {
                    let _ = task.await;
                }
                return Err(e);
            }
        };
        let source = match source {
            Started::Running(task) => task,
            Started::Waiting(task) => tokio::spawn(task),
        };
        let supervisor = tokio::spawn(supervise(Supervised {
            source,
            apply: threads.apply,
            finish: threads.finish,
            checkpointer: threads.checkpointer,
            ckpt_stop: threads.ckpt_stop,
            stop: Arc::clone(&stop),
            wal,
            status: Arc::clone(&status),
            phase,
        }));
        Ok(Pipeline {
            status,
            published: threads.published,
            applied: threads.applied_rx,
            stop,
            pins: threads.pins,
            memory: threads.memory,
            supervisor,
        })
    }

    /// The shared status (LSNs, counters, phase) the HTTP server reads.
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// The newest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load_full()
    }

    /// The cell snapshots are published in (for the HTTP server).
    pub fn published(&self) -> Arc<ArcSwap<Snapshot>> {
        Arc::clone(&self.published)
    }

    /// A receiver of the applied cursor (for read-your-writes waits).
    pub fn applied(&self) -> watch::Receiver<WalKey> {
        self.applied.clone()
    }

    /// The requests for snapshots pinned at an LSN (see [`pin`]): what `pgroar check` compares
    /// with SQL.
    pub fn pins(&self) -> &Arc<Pins> {
        &self.pins
    }

    /// Asks the index writer for the index's memory by field.
    pub fn memory_probe(&self) -> MemoryProbe {
        self.memory.clone()
    }

    /// Asks the pipeline to stop: sync, acknowledge, drain, checkpoint.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits until the pipeline has stopped (after [`Pipeline::stop`] or a fatal error).
    pub async fn join(self) -> Result<RunSummary, PipelineError> {
        self.supervisor
            .await
            .map_err(|_| PipelineError::Panicked("pipeline supervisor"))?
    }

    /// Runs until `shutdown` completes (then stops gracefully) or a fatal error stops it.
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary, PipelineError> {
        tokio::select! {
            r = &mut self.supervisor => {
                return r.map_err(|_| PipelineError::Panicked("pipeline supervisor"))?;
            }
            _ = shutdown => info!("shutting down"),
        }
        self.stop();
        self.join().await
    }
}

/// The parts the supervisor joins at the end.
struct Supervised {
    source: JoinHandle<Result<(), PipelineError>>,
    apply: std::thread::JoinHandle<(CoalescingSink, Result<(), PipelineError>)>,
    finish: Arc<AtomicBool>,
    checkpointer: std::thread::JoinHandle<Checkpointer>,
    ckpt_stop: crossbeam_channel::Sender<()>,
    stop: Arc<watch::Sender<bool>>,
    wal: Arc<Mutex<Wal>>,
    status: Arc<Status>,
    phase: Arc<PhaseTracker>,
}

/// Waits for the source to end, then drains and checkpoints; the first error wins.
async fn supervise(s: Supervised) -> Result<RunSummary, PipelineError> {
    let source = match s.source.await {
        Ok(r) => r,
        Err(_) => Err(PipelineError::Panicked("replication source")),
    };
    s.stop.send_replace(true);
    s.phase.set_stopping(&s.status);
    if let Err(e) = &source {
        let message = error_chain(e);
        error!(error = %message, "the replication source stopped");
        s.status.set_error(&message);
    }
    s.finish.store(true, std::sync::atomic::Ordering::SeqCst);
    let (apply, checkpointer) = (s.apply, s.checkpointer);
    let _ = s.ckpt_stop.try_send(());
    drop(s.ckpt_stop);
    let (wal, status) = (s.wal, s.status);
    let last = tokio::task::spawn_blocking(move || {
        let (sink, applied) = apply
            .join()
            .map_err(|_| PipelineError::Panicked("apply loop"))?;
        let mut checkpointer = checkpointer
            .join()
            .map_err(|_| PipelineError::Panicked("checkpointer"))?;
        if let Some(e) = checkpointer.fatal.take() {
            return Err(e);
        }
        // The index writer applies what is queued and hands the index back. It ends at a
        // transaction boundary unless the apply loop failed inside one: then the last published
        // snapshot is what gets checkpointed (a checkpoint is served as soon as it is loaded).
        let published = sink.published();
        let index = sink.shutdown()?;
        status.set_totals(index.stats().counts());
        let snapshot = if index.applied().is_boundary() {
            index.snapshot()
        } else {
            (*published.load_full()).clone()
        };
        let checkpointed = checkpointer
            .checkpoint(&snapshot)
            .map(|_| checkpointer.last);
        let durable = lock(&wal).sync();
        let summary = RunSummary {
            durable: durable?,
            applied: snapshot.applied(),
            checkpointed: checkpointed?,
        };
        applied.map(|()| summary)
    })
    .await
    .map_err(|_| PipelineError::Panicked("shutdown task"))?;
    source?;
    let summary = last?;
    info!(
        durable = %summary.durable,
        applied = %summary.applied.lsn,
        checkpointed = %summary.checkpointed.lsn,
        "pipeline stopped"
    );
    Ok(summary)
}

/// The start-up replica identity check, on an ordinary connection. Refuses to start when a
/// source table's identity cannot support it; a connection problem only warns (the stream
/// retries on its own).
pub async fn check_identities(config: &Config) -> Result<(), PipelineError> {
    let conn = ConnInfo::parse(&config.postgres.url).map_err(SourceError::from)?;
    let client = match connect_sql(&conn).await {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %error_chain(&e), "replica identity check skipped: cannot connect");
            return Ok(());
        }
    };
    match check_replica_identity(&client, config).await {
        Ok(reports) => {
            for r in reports {
                info!(
                    table = %r.table,
                    identity = r.identity,
                    notes = %r.notes.join(" "),
                    "replica identity"
                );
            }
            Ok(())
        }
        Err(IdentityError::Sql(e)) => {
            warn!(error = %error_chain(&e), "replica identity check failed to run");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts [`watch_catalog`], wired to stop `source` on a fault.
fn spawn_catalog_watch<T: Translate>(
    source: &mut Source<T>,
    config: &Config,
    status: &Arc<Status>,
    stop: &watch::Receiver<bool>,
) {
    let (faults_tx, faults_rx) = watch::channel(None);
    source.watch_catalog(faults_rx);
    tokio::spawn(watch_catalog(
        config.clone(),
        Arc::clone(status),
        stop.clone(),
        faults_tx,
    ));
}

/// How often the slot's row and the source tables are read.
const SLOT_WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// Every interval until `stop`: reads the slot's row into the status, and checks that every
/// source table is still in the publication with a replica identity that works; a fault goes
/// to `faults`, which stops the source. Failures to read only delay the next reading (the
/// source reports connection trouble).
async fn watch_catalog(
    config: Config,
    status: Arc<Status>,
    mut stop: watch::Receiver<bool>,
    faults: watch::Sender<Option<String>>,
) {
    let Ok(conn) = ConnInfo::parse(&config.postgres.url) else {
        return;
    };
    let slot = config.postgres.slot.clone();
    let mut client = None;
    while !*stop.borrow_and_update() {
        if client.is_none() {
            client = connect_sql(&conn).await.ok();
        }
        if let Some(c) = &client {
            // A silent connection must not hang the watcher: the reading has one interval.
            let read = tokio::time::timeout(SLOT_WATCH_INTERVAL, async {
                let state = crate::source::catalog::slot_state(c, &slot)
                    .await
                    .map_err(|e| e.to_string())?;
                let fault = crate::source::catalog::source_faults(c, &config).await?;
                Ok::<_, String>((state, fault))
            });
            match read.await {
                Ok(Ok((state, fault))) => {
                    if let Some(state) = state {
                        status.set_slot_state(state);
                    }
                    if let Some(fault) = fault {
                        faults.send_replace(Some(fault));
                        return;
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "reading the catalog failed");
                    client = None;
                }
                Err(_) => {
                    tracing::debug!("reading the catalog timed out");
                    client = None;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(SLOT_WATCH_INTERVAL) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}
