//! The pipeline's feed with `[replication]`: a leader (or standby) and a follower.
//!
//! A leader's source task runs in four steps: follow the stream into the WAL as a standby
//! (serving queries) until the lease is free; take it and read the stream to its end; publish
//! the fence (the stream's last sequence expected — refused if anything was published since,
//! and then it reads on and tries again); then publish from the WAL (a thread), upload
//! checkpoints (a task), renew the lease (a task) and stream from the slot with its
//! acknowledgements held at what the stream has acknowledged. Losing the lease, or the stream
//! refusing a publish, stops the pipeline with an error: this process no longer leads.
//!
//! A follower's source task is the stream feed alone ([`Follower`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::context::PublishErrorKind;
use tokio::sync::watch;
use tracing::{info, warn};

use super::PipelineError;
use crate::config::Config;
use crate::dedup::Deduper;
use crate::forward::Floor;
use crate::index::Index;
use crate::replicate::checkpoints;
use crate::replicate::lease::Lease;
use crate::replicate::message::{Body, Message};
use crate::replicate::{Follower, Link, Publisher, ReplicationError, js_err, now_ms, to_publish};
use crate::source::{Source, Translate, lock};
use crate::status::{PhaseTracker, Role, Status};
use crate::wal::Wal;
use crate::{Lsn, WalKey};

/// A leader's source task: the slot's source and the rest.
pub(super) struct Leading<T: Translate> {
    pub(super) leader: Leader,
    pub(super) source: Source<T>,
}

/// What a leader's source task needs besides the source.
pub(super) struct Leader {
    pub(super) link: Link,
    pub(super) wal: Arc<Mutex<Wal>>,
    pub(super) status: Arc<Status>,
    pub(super) phase: Arc<PhaseTracker>,
    pub(super) data_dir: PathBuf,
    pub(super) schema: Arc<crate::schema::Schema>,
    /// The slot's acknowledgement ceiling (shared with `source`).
    pub(super) ceiling: Arc<AtomicU64>,
    /// The publisher's WAL floor (shared with the checkpointer).
    pub(super) floor: Floor,
}

/// Opens the stream for `config`'s `[replication]`.
pub(super) async fn link(config: &Config) -> Result<Option<Link>, PipelineError> {
    let Some(replication) = &config.replication else {
        return Ok(None);
    };
    let ids = crate::schema::FieldIds::new(&config.schema());
    Ok(Some(Link::open(replication, ids).await?))
}

/// Who this process is, for the lease's value and logs.
fn holder(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{host} pid {} http {}",
        std::process::id(),
        config.http.listen
    )
}

/// A stop flag that turns true when either `a` or `b` does.
fn either(mut a: watch::Receiver<bool>, mut b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(*a.borrow() || !*b.borrow());
    tokio::spawn(async move {
        loop {
            if *a.borrow() || !*b.borrow() {
                tx.send_replace(true);
                return;
            }
            tokio::select! {
                r = a.changed() => if r.is_err() { return },
                r = b.changed() => if r.is_err() { tx.send_replace(true); return },
            }
        }
    });
    rx
}

impl<T: Translate> Leading<T> {
    /// The leader's source task (see the module's doc).
    pub(super) async fn run(
        self,
        config: Config,
        stop: watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let Leading { leader, source } = self;
        leader.run(source, config, stop).await
    }
}

impl Leader {
    fn follower(&self, floor: bool) -> Follower {
        Follower::new(
            self.link.clone(),
            Arc::clone(&self.wal),
            Arc::clone(&self.status),
            Arc::clone(&self.phase),
            floor.then(|| Arc::clone(&self.floor)),
        )
    }

    async fn run<T: Translate>(
        self,
        source: Source<T>,
        config: Config,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        self.status.set_role(Role::Standby, 0);
        // Standing by, the WAL keeps what the stream may lack (a restarted leader's unpublished
        // transactions): the floor follows what the stream is seen to hold.
        self.floor.store(0, Ordering::SeqCst);
        let (promote_tx, promote_rx) = watch::channel(false);
        let following = tokio::spawn(
            self.follower(true)
                .run_until(stop.clone(), Some(promote_rx)),
        );
        let lease = Lease::acquire(&self.link, &holder(&config), &mut stop).await;
        promote_tx.send_replace(true);
        // Renewed from the moment it is taken: catching up may outlast its TTL.
        let (leading_tx, leading) = watch::channel(true);
        let leading_tx = Arc::new(leading_tx);
        let (released_tx, released) = watch::channel(false);
        let epoch = match lease {
            Ok(Some(lease)) => {
                let epoch = lease.epoch;
                tokio::spawn(lease.keep(Arc::clone(&leading_tx), stop.clone(), released));
                Some(epoch)
            }
            Ok(None) => None,
            Err(e) => return Err(e.into()),
        };
        let caught_up = following.await;
        let last_seq = match (epoch, caught_up) {
            (Some(_), Ok(Ok(Some(seq)))) if *leading.borrow() => seq,
            (_, caught_up) => {
                released_tx.send_replace(true);
                caught_up.map_err(|_| PipelineError::Panicked("stream follower"))??;
                return self.lost(epoch.unwrap_or(0), &leading, &stop, None);
            }
        };
        let epoch = epoch.unwrap_or(0);
        if let Err(e) = self.fence(epoch, last_seq, &stop, &leading).await {
            released_tx.send_replace(true);
            return Err(e);
        }
        if *stop.borrow() || !*leading.borrow() {
            released_tx.send_replace(true);
            return self.lost(epoch, &leading, &stop, None);
        }
        self.status.set_role(Role::Leader, epoch);
        let tail = match self.start_tail().await {
            Ok(tail) => tail,
            Err(e) => {
                released_tx.send_replace(true);
                return Err(e);
            }
        };
        self.ceiling.store(tail.covered().0, Ordering::SeqCst);
        self.floor.store(tail.covered().0, Ordering::SeqCst);
        self.status.set_published(tail.covered());
        info!(epoch, from = %tail.covered(), seq = tail.seq, "leading: publishing and streaming from the slot");
        let failure = Arc::new(std::sync::Mutex::new(None));
        self.spawn_publisher(
            tail,
            epoch,
            (&leading_tx, &leading),
            released_tx,
            &failure,
            &stop,
        )?;
        tokio::spawn(upload_loop(
            self.link.clone(),
            self.data_dir.join("index"),
            Arc::clone(&self.ceiling),
            stop.clone(),
            leading.clone(),
        ));
        let result = source.run(either(stop.clone(), leading.clone())).await;
        let failed = failure.lock().map(|mut f| f.take()).unwrap_or(None);
        self.lost(epoch, &leading, &stop, failed)?;
        result.map_err(PipelineError::from)
    }

    /// `Ok` when the pipeline was asked to stop; else why this process no longer leads.
    fn lost(
        &self,
        epoch: u64,
        leading: &watch::Receiver<bool>,
        stop: &watch::Receiver<bool>,
        failed: Option<ReplicationError>,
    ) -> Result<(), PipelineError> {
        if *stop.borrow() {
            return Ok(());
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        if !*leading.borrow() {
            return Err(ReplicationError::LeaseLost {
                stream: self.link.names.stream.clone(),
                epoch,
            }
            .into());
        }
        Ok(())
    }

    /// Starts the publishing thread. When it ends — stopped, fenced, failed or panicked — this
    /// process stops leading (`leading` false), its error is kept in `failure`, and `released`
    /// lets the lease go.
    fn spawn_publisher(
        &self,
        tail: crate::replicate::Tail,
        epoch: u64,
        (leading_tx, leading): (&Arc<watch::Sender<bool>>, &watch::Receiver<bool>),
        released: watch::Sender<bool>,
        failure: &Arc<std::sync::Mutex<Option<ReplicationError>>>,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let publisher = Publisher {
            link: self.link.clone(),
            handle: tokio::runtime::Handle::current(),
            wal_dir: self.data_dir.join("wal"),
            durable: lock(&self.wal).durable_watch(),
            deduper: Deduper::new(&self.schema),
            status: Arc::clone(&self.status),
            tail,
            epoch,
            ceiling: Arc::clone(&self.ceiling),
            floor: Arc::clone(&self.floor),
            leading: leading.clone(),
            stop: stop.clone(),
        };
        /// Ends leadership and releases the lease however the thread ends.
        struct Ended(Arc<watch::Sender<bool>>, watch::Sender<bool>);
        impl Drop for Ended {
            fn drop(&mut self) {
                self.0.send_replace(false);
                self.1.send_replace(true);
            }
        }
        let ended = Ended(Arc::clone(leading_tx), released);
        let failure = Arc::clone(failure);
        std::thread::Builder::new()
            .name("pgroar-publish".into())
            .spawn(move || {
                let _ended = ended;
                if let Err(e) = publisher.run()
                    && let Ok(mut f) = failure.lock()
                {
                    *f = Some(e);
                }
            })
            .map_err(|source| PipelineError::Io {
                path: self.data_dir.clone(),
                source,
            })?;
        Ok(())
    }

    /// Publishes the fence of `epoch` after `last_seq`; if anything was published since by an
    /// older leader, reads it into the WAL and tries again; a newer leader's message means
    /// this process is fenced already.
    async fn fence(
        &self,
        epoch: u64,
        mut last_seq: u64,
        stop: &watch::Receiver<bool>,
        leading: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        for _ in 0..10 {
            if *stop.borrow() || !*leading.borrow() {
                return Ok(());
            }
            let m = Message {
                body: Body::Leader,
                epoch,
                time_ms: now_ms(),
            };
            let publish = to_publish(&m, last_seq).map_err(|e| {
                PipelineError::from(ReplicationError::Gap(format!("encoding the fence: {e}")))
            })?;
            let sent = self
                .link
                .js
                .send_publish(self.link.names.subject.clone(), publish)
                .await;
            let acked = match sent {
                Ok(ack) => ack.await,
                Err(e) => return Err(js_err("publishing the fence")(&e).into()),
            };
            match acked {
                Ok(_) => {
                    info!(epoch, after_seq = last_seq, "fence published");
                    return Ok(());
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    let tail = self.link.tail().await?;
                    if tail.epoch > epoch {
                        return Err(ReplicationError::Fenced {
                            stream: self.link.names.stream.clone(),
                            ours: epoch,
                            theirs: tail.epoch,
                        }
                        .into());
                    }
                    warn!(epoch, "the stream moved while taking over; reading on");
                    let (_promote, promote_rx) = watch::channel(true);
                    match self
                        .follower(false)
                        .run_until(stop.clone(), Some(promote_rx))
                        .await?
                    {
                        Some(seq) => last_seq = seq,
                        None => return Ok(()),
                    }
                }
                Err(e) => return Err(js_err("publishing the fence")(&e).into()),
            }
        }
        Err(ReplicationError::Gap("the stream kept moving while taking over".into()).into())
    }

    /// Where publishing starts: after the stream's last part, or — the stream holding no ops
    /// yet — after the local checkpoint, uploaded first so followers have a start.
    async fn start_tail(&self) -> Result<crate::replicate::Tail, PipelineError> {
        let mut tail = self.link.tail().await?;
        if tail.after.is_none() {
            let store = checkpoints::bucket(&self.link).await?;
            let index_dir = self.data_dir.join("index");
            let key = checkpoints::upload(&store, &index_dir)
                .await?
                .unwrap_or(WalKey::ZERO);
            tail.after = Some(key);
        }
        Ok(tail)
    }
}

/// Uploads each new local checkpoint and prunes old ones while leading.
async fn upload_loop(
    link: Link,
    index_dir: PathBuf,
    ceiling: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
    leading: watch::Receiver<bool>,
) {
    let keep = link.config.keep_checkpoints as usize;
    let mut uploaded: Option<WalKey> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(checkpoints::UPLOAD_EVERY) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() || !*leading.borrow() {
            return;
        }
        let local = Index::peek_checkpoint(&index_dir);
        // Only a checkpoint the stream covers: a follower or standby starting from it must
        // find what follows in the stream, not in this process's unpublished WAL.
        let covered = Lsn(ceiling.load(Ordering::SeqCst));
        if local == uploaded || local.is_some_and(|k| k.lsn > covered) {
            continue;
        }
        let done = async {
            let store = checkpoints::bucket(&link).await?;
            let key = checkpoints::upload(&store, &index_dir).await?;
            checkpoints::prune(&link, &store, keep).await?;
            Ok::<_, ReplicationError>(key)
        };
        match done.await {
            Ok(key) => uploaded = key,
            Err(e) => warn!(error = %e, "uploading a checkpoint failed; retrying"),
        }
    }
}

/// Before a follower or standby starts: when the bucket's newest checkpoint is ahead of the
/// data directory (or the stream no longer holds what follows it), it replaces the local one.
pub async fn seed_from_bucket(config: &Config) -> Result<Option<Lsn>, PipelineError> {
    let Some(link) = link(config).await? else {
        return Ok(None);
    };
    let data_dir = &config.storage.data_dir;
    let index_dir = data_dir.join("index");
    let local = local_position(data_dir, &index_dir);
    let store = checkpoints::bucket(&link).await?;
    let Some(&newest) = checkpoints::list(&store).await?.last() else {
        return Ok(None);
    };
    // The stream is purged only up to the oldest checkpoint kept: a local position it no
    // longer follows from is older than the newest checkpoint too.
    if newest > local || local == Lsn::ZERO {
        info!(checkpoint = %newest, local = %local, "starting from the bucket's checkpoint");
        checkpoints::download(&store, newest, &index_dir).await?;
        Ok(Some(newest))
    } else {
        Ok(None)
    }
}

/// Before a bootstrap with `[replication]`: the stream must not hold an earlier index's
/// changes (a bootstrap starts a new history; followers would mix the two).
pub async fn check_new_history(config: &Config) -> Result<(), PipelineError> {
    let Some(link) = link(config).await? else {
        return Ok(());
    };
    let (_, last) = link.bounds().await?;
    let store = checkpoints::bucket(&link).await?;
    let kept = checkpoints::list(&store).await?;
    if last == 0 && kept.is_empty() {
        return Ok(());
    }
    let n = &link.names;
    Err(ReplicationError::Gap(format!(
        "the stream {} already holds an earlier index's history ({last} messages, {}          checkpoints in {}): a bootstrap starts a new one. Start this process with `pgroar run`          to stand by or lead from that history, or remove it first (nats stream rm {}; nats          object rm {}; nats kv rm {}), or set replication.stream to a new name",
        n.stream,
        kept.len(),
        n.checkpoints,
        n.stream,
        n.checkpoints,
        n.lease
    ))
    .into())
}

/// How far a data directory reaches: its checkpoint's or its WAL's position.
fn local_position(data_dir: &Path, index_dir: &Path) -> Lsn {
    let ckpt = Index::peek_checkpoint(index_dir).map_or(Lsn::ZERO, |k| k.lsn);
    let wal = crate::wal::Wal::inspect(data_dir.join("wal"))
        .map(|r| r.durable_lsn)
        .unwrap_or(Lsn::ZERO);
    ckpt.max(wal)
}

/// A follower's source task.
pub(super) async fn follow(
    follower: Follower,
    stop: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    follower.status.set_role(Role::Follower, 0);
    follower.run_until(stop, None).await?;
    Ok(())
}
