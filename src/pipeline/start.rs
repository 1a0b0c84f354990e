//! Start-up: the WAL opens first; the source can stream into it while the checkpoint loads;
//! then the index writer, the apply loop, the forwarder and the checkpointer start.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use super::apply::ApplyLoop;
use super::checkpoint::{self, Checkpointer, covered_lsn};
use super::replication::{self, Leader, Leading};
use super::{Pins, PipelineError, PipelineOptions, spawn_catalog_watch};
use crate::WalKey;
use crate::config::Config;
use crate::dedup::Deduper;
use crate::forward::Floor;
use crate::index::{Index, Snapshot};
use crate::replicate::{Follower, Link, ReplicationError};
use crate::sink::coalescing::{CoalescingSink, MemoryProbe};
use crate::source::{Source, Translate, lock};
use crate::status::{PhaseTracker, Status};
use crate::wal::{RecoveryMode, Wal, WalOptions};

/// Opens (and recovers) the WAL in `<data_dir>/wal`, creating `<data_dir>/index` too.
pub(super) async fn open_wal(
    config: &Config,
    options: &PipelineOptions,
) -> Result<Wal, PipelineError> {
    let data_dir = config.storage.data_dir.clone();
    let wal_dir = data_dir.join("wal");
    let index_dir = data_dir.join("index");
    std::fs::create_dir_all(&index_dir).map_err(|source| PipelineError::Io {
        path: index_dir.clone(),
        source,
    })?;
    // Damage with committed records after it is a disk fault, not a crash: refuse (`pgroar
    // wal repair` cuts it knowingly); a torn tail is still cut.
    let wal_options = WalOptions {
        segment_bytes: options.segment_bytes,
        recovery: RecoveryMode::RefuseCommittedCut,
        ..WalOptions::default()
    };
    let (wal, report, took) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let (wal, report) = Wal::open(&wal_dir, wal_options)?;
        Ok::<_, PipelineError>((wal, report, started.elapsed()))
    })
    .await
    .map_err(|_| PipelineError::Panicked("start-up task"))??;
    info!(wal = %report.summary(), wal_open_ms = took.as_millis() as u64, "WAL opened");
    Ok(wal)
}

/// Loads the newest checkpoint (`preloaded`: the index is given), or a new index when there is
/// none (`false`). A checkpoint at a transaction boundary ahead of the WAL (a bootstrap's
/// consistent point over an empty WAL) is recorded in the WAL as a Mark, so streaming resumes
/// from it; one inside a transaction the WAL does not hold is an error. The source may be
/// streaming into the WAL meanwhile (only when the checkpoint's header is not ahead of it).
async fn load_index(
    config: &Config,
    preloaded: Option<Index>,
    wal: &Mutex<Wal>,
) -> Result<(Index, bool), PipelineError> {
    let data_dir = config.storage.data_dir.clone();
    let index_dir = data_dir.join("index");
    let schema = config.schema();
    let (index, took) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let index = match preloaded {
            Some(index) => Some(index),
            // Queries are served once the bitmaps are in; the index writer rebuilds the rest.
            None => Index::load_checkpoint_lazy(&index_dir, schema)?,
        };
        Ok::<_, PipelineError>((index, started.elapsed()))
    })
    .await
    .map_err(|_| PipelineError::Panicked("start-up task"))??;
    let loaded = index.is_some();
    let index = index.unwrap_or_else(|| Index::new(config.schema()));
    let applied = index.applied();
    let mut wal = lock(wal);
    if applied.lsn > wal.durable_lsn() {
        if applied.seq != u32::MAX {
            return Err(PipelineError::CheckpointAheadOfWal {
                applied,
                durable: wal.durable_lsn(),
                data_dir,
            });
        }
        wal.mark(applied.lsn)?;
        wal.sync()?;
    }
    info!(
        checkpoint = if loaded { "loaded" } else { "none" },
        checkpoint_load_ms = took.as_millis() as u64,
        applied = %applied.lsn,
        seq = applied.seq,
        durable = %wal.durable_lsn(),
        "index ready; replaying the WAL after it"
    );
    Ok((index, loaded))
}

/// The source task, boxed (the replication source, a leader's or a follower's feed).
pub(super) type SourceTask = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), PipelineError>> + Send + 'static>,
>;

/// The source at start-up: streaming already, or waiting for the index to load.
pub(super) enum Started {
    /// Streaming already.
    Running(JoinHandle<Result<(), PipelineError>>),
    /// Waiting for the index to load (not yet polled).
    Waiting(SourceTask),
}

/// Where the pipeline's changes come from.
pub enum Feed<T: Translate> {
    /// The replication slot, through the translator (with `[replication]`: as the leader, or a
    /// standby until it takes the lease).
    Postgres(T),
    /// The stream a leader publishes (`pgroar follow`): never Postgres.
    Follow,
}

/// What the start-up steps share.
pub(super) struct Shared<'a> {
    pub(super) config: &'a Config,
    pub(super) options: &'a PipelineOptions,
    pub(super) wal: &'a Arc<Mutex<Wal>>,
    pub(super) status: &'a Arc<Status>,
    pub(super) phase: &'a Arc<PhaseTracker>,
    pub(super) stop: &'a Arc<watch::Sender<bool>>,
    pub(super) stop_rx: &'a watch::Receiver<bool>,
    /// The stream, with `[replication]`.
    pub(super) link: Option<&'a Link>,
    /// The publisher's WAL floor (holds nothing unless this process leads).
    pub(super) publish_floor: &'a Floor,
}

/// The pipeline's threads once the index is loaded.
pub(super) struct Threads {
    pub(super) published: Arc<ArcSwap<Snapshot>>,
    pub(super) applied_rx: watch::Receiver<WalKey>,
    pub(super) apply: std::thread::JoinHandle<(CoalescingSink, Result<(), PipelineError>)>,
    pub(super) finish: Arc<AtomicBool>,
    pub(super) checkpointer: std::thread::JoinHandle<Checkpointer>,
    pub(super) ckpt_stop: crossbeam_channel::Sender<()>,
    pub(super) pins: Arc<Pins>,
    pub(super) memory: MemoryProbe,
}

impl Shared<'_> {
    /// Builds the source task and starts it now (`early`) or leaves it for after the load;
    /// returns it with the sender of its view of the applied cursor (`peeked` until the index
    /// writer takes the sender over).
    pub(super) fn source<T: Translate>(
        &self,
        feed: Feed<T>,
        peeked: Option<WalKey>,
        early: bool,
    ) -> Result<(Started, watch::Sender<WalKey>), PipelineError> {
        let (applied, applied_rx) = watch::channel(peeked.unwrap_or(WalKey::ZERO));
        let stop = self.stop_rx.clone();
        let task: SourceTask = match (feed, self.link) {
            (Feed::Follow, Some(link)) => Box::pin(replication::follow(self.follower(link), stop)),
            (Feed::Follow, None) => {
                return Err(ReplicationError::Gap(
                    "following needs a [replication] section with the stream's url".into(),
                )
                .into());
            }
            (Feed::Postgres(translator), link) => {
                let mut source = Source::new(
                    self.config,
                    Arc::clone(self.wal),
                    translator,
                    Arc::clone(self.status),
                    Arc::clone(self.phase),
                    self.options.source.clone(),
                )?;
                source.watch_applied(applied_rx);
                spawn_catalog_watch(&mut source, self.config, self.status, self.stop_rx);
                match link {
                    None => Box::pin(async move { source.run(stop).await.map_err(Into::into) }),
                    Some(link) => {
                        let ceiling = Arc::new(std::sync::atomic::AtomicU64::new(0));
                        source.ack_ceiling(Arc::clone(&ceiling));
                        // A leader's history is the stream's: only a bootstrap creates the slot.
                        source.never_create_slot();
                        let leader = Leader {
                            link: link.clone(),
                            wal: Arc::clone(self.wal),
                            status: Arc::clone(self.status),
                            phase: Arc::clone(self.phase),
                            data_dir: self.config.storage.data_dir.clone(),
                            schema: self.config.schema(),
                            ceiling,
                            floor: Arc::clone(self.publish_floor),
                        };
                        let leading = Leading { leader, source };
                        Box::pin(leading.run(self.config.clone(), stop))
                    }
                }
            }
        };
        let started = if early {
            Started::Running(tokio::spawn(task))
        } else {
            Started::Waiting(task)
        };
        Ok((started, applied))
    }

    fn follower(&self, link: &Link) -> Follower {
        Follower::new(
            link.clone(),
            Arc::clone(self.wal),
            Arc::clone(self.status),
            Arc::clone(self.phase),
            None,
        )
    }

    /// Loads the index, then starts the index writer, the apply loop, the forwarder and the
    /// checkpointer.
    pub(super) async fn threads(
        &self,
        preloaded: Option<Index>,
        source_applied: watch::Sender<WalKey>,
    ) -> Result<Threads, PipelineError> {
        let (config, options, status) = (self.config, self.options, self.status);
        let data_dir = &config.storage.data_dir;
        let (index, loaded) = load_index(config, preloaded, self.wal).await?;
        let applied = index.applied();
        if loaded {
            status.set_checkpointed(covered_lsn(applied));
        }
        // Bad-data counters go to the status with every snapshot: visible while running.
        let sink_status = Arc::clone(status);
        let sink = CoalescingSink::spawn_observed(
            index,
            options.sink.clone(),
            move |stats| sink_status.set_totals(stats.counts()),
            source_applied,
        );
        let published = sink.published();
        let applied_rx = sink.applied();
        let memory = sink.memory_probe();
        let finish = Arc::new(AtomicBool::new(false));
        let pins = Pins::new();
        let apply = ApplyLoop {
            wal_dir: data_dir.join("wal"),
            after: applied,
            durable: lock(self.wal).durable_watch(),
            sink,
            deduper: Deduper::new(&config.schema()),
            status: Arc::clone(status),
            phase: Arc::clone(self.phase),
            batch_max: options.apply_batch,
            finish: Arc::clone(&finish),
            stop: Arc::clone(self.stop),
            pins: Arc::clone(&pins),
        };
        let apply = spawn_thread("pgroar-apply", data_dir, move || apply.run())?;
        let floor = start_forwarder(
            config,
            data_dir,
            covered_lsn(applied),
            Forwarding {
                durable: lock(self.wal).durable_watch(),
                status: Arc::clone(status),
                stop: self.stop_rx.clone(),
            },
        )?;
        let checkpointer = Checkpointer {
            dir: data_dir.join("index"),
            wal: Arc::clone(self.wal),
            status: Arc::clone(status),
            last: applied,
            floors: vec![floor, Arc::clone(self.publish_floor)],
            stop: Arc::clone(self.stop),
            fatal: None,
            policy: options.checkpoint_policy,
            last_size: checkpoint::checkpoint_size(&data_dir.join("index")),
            mark: lock(self.wal).start(),
        };
        let (ckpt_stop, ckpt_stop_rx) = crossbeam_channel::bounded::<()>(1);
        let ckpt_published = Arc::clone(&published);
        let interval = options.checkpoint_interval;
        let checkpointer = spawn_thread("pgroar-checkpoint", data_dir, move || {
            checkpointer.run(ckpt_published, interval, ckpt_stop_rx)
        })?;
        Ok(Threads {
            published,
            applied_rx,
            apply,
            finish,
            checkpointer,
            ckpt_stop,
            pins,
            memory,
        })
    }
}

/// What a forwarder shares with the pipeline.
struct Forwarding {
    durable: crate::wal::DurableWatch,
    status: Arc<Status>,
    stop: watch::Receiver<bool>,
}

/// With `[forward]`: sets the WAL floor at the forwarder's cursor (before any checkpoint can
/// truncate) and starts its thread, which runs on its own and stops with the pipeline (see
/// `forward`). The floor checkpoints respect (holding nothing without `[forward]`).
fn start_forwarder(
    config: &Config,
    data_dir: &std::path::Path,
    applied: crate::Lsn,
    shared: Forwarding,
) -> Result<crate::forward::Floor, PipelineError> {
    let floor = crate::forward::no_floor();
    let Some(forward) = &config.forward else {
        return Ok(floor);
    };
    let cursor = crate::forward::start_cursor(data_dir, applied)?;
    floor.store(cursor.0, std::sync::atomic::Ordering::SeqCst);
    shared.status.set_forwarded(cursor);
    let forwarder = crate::forward::Forwarder {
        wal_dir: data_dir.join("wal"),
        cursor_path: data_dir.join(crate::forward::CURSOR_FILE),
        cursor,
        durable: shared.durable,
        deduper: Deduper::new(&config.schema()),
        status: shared.status,
        floor: Arc::clone(&floor),
        config: forward.clone(),
        stop: shared.stop,
    };
    spawn_thread("pgroar-forward", data_dir, move || forwarder.run())?;
    Ok(floor)
}

/// Starts a named pipeline thread.
pub(super) fn spawn_thread<R: Send + 'static>(
    name: &str,
    data_dir: &std::path::Path,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<std::thread::JoinHandle<R>, PipelineError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| PipelineError::Io {
            path: data_dir.to_path_buf(),
            source,
        })
}
