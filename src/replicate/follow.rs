//! The follower's feed: the stream → its own WAL, in place of the replication source.
//!
//! Guarantees: the WAL receives whole transactions in the stream's order — a transaction's
//! parts go into one WAL transaction, committed with its last part — and nothing it already
//! holds: a session starts at the first message past the WAL's durable LSN (found by binary
//! search), and a part at or below the last commit written is skipped. The apply loop, the
//! index writer and the checkpoints then work exactly as on the leader. The feed is in the
//! `streaming` phase only once it has read as far as the stream reached when the session
//! began (`/readyz` is 503 while it catches up).
//!
//! Crash windows: killed with a transaction half written, the WAL's recovery cuts it and the
//! next session reads it again from its first part; killed between a commit and its fsync,
//! the transaction is not durable and is read again. A lost connection ends the session; the
//! next one starts after what is durable, with backoff.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{info, warn};

use super::message::Body;
use super::{Link, ReplicationError, js_err};
use crate::Lsn;
use crate::source::lock;
use crate::status::{PhaseTracker, Status};
use crate::wal::Wal;

/// Longest a written transaction waits for its fsync.
const SYNC_EVERY: Duration = Duration::from_millis(5);

/// Bytes written past which the WAL is synced at once.
const SYNC_BYTES: u64 = 8 << 20;

/// Longest wait between two sessions.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The stream → WAL feed of a follower.
pub struct Follower {
    /// The stream.
    pub link: Link,
    /// The follower's WAL.
    pub wal: Arc<Mutex<Wal>>,
    /// Positions, phase, errors.
    pub status: Arc<Status>,
    /// The phase tracker (connected = caught up with the stream).
    pub phase: Arc<PhaseTracker>,
    /// A standby's WAL floor: raised to what the stream is seen to hold, so that the WAL
    /// keeps what the stream may lack (`None`: a follower, which never publishes).
    pub floor: Option<crate::forward::Floor>,
    /// The open transaction's next record, as the last part read says.
    next_record: Option<(Lsn, u32)>,
}

/// How a session ended.
enum End {
    Stopped,
    /// Promoted and read to the stream's end: the last sequence read.
    CaughtUp(u64),
    Lost(String),
}

impl Follower {
    /// A feed of `link` into `wal` (`floor`: a standby's; `None` for a follower).
    pub fn new(
        link: Link,
        wal: Arc<Mutex<Wal>>,
        status: Arc<Status>,
        phase: Arc<PhaseTracker>,
        floor: Option<crate::forward::Floor>,
    ) -> Follower {
        Follower {
            link,
            wal,
            status,
            phase,
            floor,
            next_record: None,
        }
    }

    /// Follows until `stop` turns true (`Ok(None)`, with what was written synced), or — once
    /// `promote` turns true — until it has read the stream to its end (`Ok(Some(last sequence))`:
    /// a standby taking over); `Err` when the stream holds something this follower cannot take.
    pub async fn run_until(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut promote: Option<watch::Receiver<bool>>,
    ) -> Result<Option<u64>, ReplicationError> {
        let mut delay = Duration::from_millis(100);
        loop {
            if *stop.borrow() {
                self.close().await?;
                return Ok(None);
            }
            let started = Instant::now();
            match self.session(&mut stop, promote.as_mut()).await? {
                End::Stopped => {
                    self.close().await?;
                    return Ok(None);
                }
                End::CaughtUp(seq) => {
                    self.close().await?;
                    return Ok(Some(seq));
                }
                End::Lost(why) => {
                    self.phase.set_connected(&self.status, false);
                    self.close().await?;
                    if started.elapsed() > Duration::from_secs(30) {
                        delay = Duration::from_millis(100);
                    }
                    warn!(error = %why, retry_in_ms = delay.as_millis() as u64, "following the stream failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => {}
                    }
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Drops a half-written transaction and makes the rest durable.
    async fn close(&mut self) -> Result<(), ReplicationError> {
        self.next_record = None;
        {
            let mut wal = lock(&self.wal);
            if wal.open_transaction().is_some() {
                wal.abort()?;
            }
        }
        self.sync().await
    }

    async fn sync(&mut self) -> Result<(), ReplicationError> {
        let wal = Arc::clone(&self.wal);
        let durable = tokio::task::spawn_blocking(move || lock(&wal).sync())
            .await
            .map_err(|_| ReplicationError::Gap("the WAL sync task panicked".into()))??;
        self.status.set_durable(durable);
        Ok(())
    }

    /// One consumer from the first message past the durable WAL.
    async fn session(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        mut promote: Option<&mut watch::Receiver<bool>>,
    ) -> Result<End, ReplicationError> {
        let durable = lock(&self.wal).durable_lsn();
        let (start, tail) = match async {
            let tail = self.link.tail().await?;
            Ok::<_, ReplicationError>((self.link.first_after(durable).await?, tail))
        }
        .await
        {
            Ok(found) => found,
            Err(e) => return Ok(End::Lost(e.to_string())),
        };
        self.check_retained(start, durable).await?;
        self.status.set_server_lsn(tail.covered().max(durable));
        self.status.set_role(self.status.role().0, tail.epoch);
        let mut read = start.saturating_sub(1);
        // Promoted: read up to the end as it is now.
        let mut target = None;
        if promote.as_ref().is_some_and(|p| *p.borrow()) {
            if read >= tail.seq {
                return Ok(End::CaughtUp(read.max(tail.seq)));
            }
            target = Some(tail.seq);
        }
        let mut messages = match self.consume(start).await {
            Ok(m) => m,
            Err(why) => return Ok(End::Lost(why)),
        };
        info!(from = %durable, seq = start, last = tail.seq, "following the stream");
        let mut caught_up = tail.seq < start;
        if caught_up {
            self.phase.set_connected(&self.status, true);
        }
        let mut unsynced: Option<Instant> = None;
        loop {
            let wait = match unsynced {
                Some(since) => SYNC_EVERY.saturating_sub(since.elapsed()),
                None => Duration::from_secs(1),
            };
            let promoted = async {
                match promote.as_mut() {
                    Some(p) if target.is_none() => p.changed().await.is_ok(),
                    _ => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                _ = stop.changed() => return Ok(End::Stopped),
                true = promoted => {
                    let last = match self.link.bounds().await {
                        Ok((_, last)) => last,
                        Err(e) => return Ok(End::Lost(e.to_string())),
                    };
                    if read >= last {
                        return Ok(End::CaughtUp(read));
                    }
                    target = Some(last);
                    continue;
                }
                next = tokio::time::timeout(wait, messages.next()) => next,
            };
            let message = match next {
                Err(_) => {
                    if unsynced.take().is_some() {
                        self.sync().await?;
                    }
                    continue;
                }
                Ok(None) => return Ok(End::Lost("the stream's consumer ended".into())),
                Ok(Some(Err(e))) => return Ok(End::Lost(e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            let seq = message.info().map_or(read + 1, |i| i.stream_sequence);
            self.check_next(read, seq)?;
            let empty = async_nats::HeaderMap::new();
            let headers = message.headers.as_ref().unwrap_or(&empty);
            let m = self.link.decode(seq, headers, &message.payload)?;
            let reached = m.cursor();
            self.write(m.body, m.epoch)?;
            if let Some(cursor) = reached {
                self.raise_floor(cursor.covered());
            }
            read = seq;
            unsynced.get_or_insert_with(Instant::now);
            if !caught_up && seq >= tail.seq {
                caught_up = true;
                self.sync().await?;
                unsynced = None;
                self.phase.set_connected(&self.status, true);
                info!(seq, "caught up with the stream");
            }
            if target.is_some_and(|t| seq >= t) {
                return Ok(End::CaughtUp(seq));
            }
            let pending = lock(&self.wal).pending_bytes();
            if pending >= SYNC_BYTES || unsynced.is_some_and(|t| t.elapsed() >= SYNC_EVERY) {
                self.sync().await?;
                unsynced = None;
            }
        }
    }

    /// An ordered consumer's messages from `start`.
    async fn consume(
        &self,
        start: u64,
    ) -> Result<async_nats::jetstream::consumer::pull::Ordered, String> {
        let consumer = self
            .link
            .stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| js_err("creating a consumer")(&e).to_string())?;
        consumer
            .messages()
            .await
            .map_err(|e| js_err("consuming")(&e).to_string())
    }

    /// Refuses to start after a purged part of the stream: what was purged lies at or below
    /// the oldest checkpoint in the bucket, so a WAL behind that checkpoint would miss it.
    async fn check_retained(&self, start: u64, durable: Lsn) -> Result<(), ReplicationError> {
        let (first, _) = match self.link.bounds().await {
            Ok(b) => b,
            Err(_) => return Ok(()), // the session's own requests report it
        };
        if start != first || first <= 1 {
            return Ok(());
        }
        let store = super::checkpoints::bucket(&self.link).await?;
        let oldest = super::checkpoints::list(&store).await?.first().copied();
        match oldest {
            Some(c) if durable >= c => Ok(()),
            oldest => Err(ReplicationError::Gap(format!(
                "this data directory's WAL ends at {durable}, but the stream {} no longer holds                  what follows it (purged up to the oldest checkpoint kept, {}): restart the                  process to load the newest checkpoint from the bucket",
                self.link.names.stream,
                oldest.map_or("none".into(), |c| c.to_string())
            ))),
        }
    }

    /// One subject and no deleted messages: a jump in sequence is a purge past this reader.
    fn check_next(&self, read: u64, seq: u64) -> Result<(), ReplicationError> {
        if seq == read + 1 {
            return Ok(());
        }
        Err(ReplicationError::Gap(format!(
            "the stream {} skipped from {read} to {seq} (purged past this data directory's \
             position): restart the process to load the newest checkpoint from the bucket",
            self.link.names.stream
        )))
    }

    /// Everything at or below `lsn` is in the stream: a standby's WAL need not keep it.
    fn raise_floor(&self, lsn: Lsn) {
        if let Some(floor) = &self.floor {
            floor.fetch_max(lsn.0, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Writes one message into the WAL.
    fn write(&mut self, body: Body, epoch: u64) -> Result<(), ReplicationError> {
        let mut wal = lock(&self.wal);
        match body {
            Body::Ops {
                lsn,
                first,
                last,
                end,
                ops,
            } => {
                if lsn <= wal.written_lsn() {
                    return Ok(());
                }
                match wal.open_transaction() {
                    Some(open) if open == lsn && first > 0 => {
                        if self.next_record != Some((lsn, first)) {
                            return Err(ReplicationError::Gap(format!(
                                "the stream {} holds a part of the transaction at {lsn} from \
                                 record {first}, not following the last part read ({:?})",
                                self.link.names.stream, self.next_record
                            )));
                        }
                    }
                    open => {
                        if open.is_some() {
                            wal.abort()?;
                        }
                        if first > 0 {
                            return Err(ReplicationError::Gap(format!(
                                "the stream {} holds a part of the transaction at {lsn} without \
                                 its beginning (records from {first})",
                                self.link.names.stream
                            )));
                        }
                        wal.begin(lsn)?;
                    }
                }
                for op in &ops {
                    wal.append(op)?;
                }
                if end {
                    wal.commit()?;
                }
                self.next_record = (!end).then_some((lsn, last + 1));
                self.status.set_received(lsn);
                self.status.set_server_lsn(lsn);
            }
            Body::Mark { lsn } => {
                if lsn > wal.written_lsn() && wal.open_transaction().is_none() {
                    wal.mark(lsn)?;
                }
                self.status.set_received(lsn);
                self.status.set_server_lsn(lsn);
            }
            Body::Leader => {
                self.status.set_role(self.status.role().0, epoch);
                info!(epoch, "a new leader took over the stream");
            }
        }
        Ok(())
    }
}
