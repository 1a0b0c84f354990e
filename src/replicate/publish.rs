//! The leader's publisher: durable WAL → deduplicated parts → the stream, acknowledged.
//!
//! Guarantees: a transaction is published only once it is durable in the local WAL; the
//! position it reaches (`ceiling`) moves only when the stream has acknowledged every part up
//! to it, and the replication source acknowledges the slot no further than that. The WAL keeps
//! every segment after `ceiling` (`floor`). Every publish expects the stream's last sequence to
//! be the one before it; a refusal means another leader published, and this one stops for
//! good (`Fenced`). A lost connection or a timeout is retried: the publisher reads the stream's
//! tail again and goes on after the last part the stream holds (a part sent twice within the
//! server's duplicate window is dropped by its message id).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::message::{Body, Message, PART_BYTES};
use super::{Link, ReplicationError, Tail, now_ms, to_publish};
use crate::dedup::Deduper;
use crate::ops::EntityOps;
use crate::status::Status;
use crate::wal::{DurableWatch, WalEntry, WalReader};
use crate::{Lsn, WalKey};

/// Parts awaiting the stream's acknowledgement at most.
const MAX_IN_FLIGHT: usize = 512;

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Everything the publishing thread owns.
pub struct Publisher {
    /// The stream.
    pub link: Link,
    /// The runtime the NATS client runs on.
    pub handle: Handle,
    /// `<data_dir>/wal`.
    pub wal_dir: PathBuf,
    /// The WAL's durable end.
    pub durable: DurableWatch,
    /// Dedups each part.
    pub deduper: Deduper,
    /// Counters and the published position.
    pub status: Arc<Status>,
    /// Where the stream ends (read after this leader's fence).
    pub tail: Tail,
    /// This leader's epoch.
    pub epoch: u64,
    /// What the stream has acknowledged: the slot is acknowledged no further.
    pub ceiling: Arc<AtomicU64>,
    /// What the WAL must keep (the forwarder's floor type).
    pub floor: crate::forward::Floor,
    /// Whether this process still holds the lease (`false`: stop publishing).
    pub leading: watch::Receiver<bool>,
    /// The pipeline's stop flag.
    pub stop: watch::Receiver<bool>,
}

/// A part sent and not yet acknowledged, with the position it completes.
struct InFlight {
    ack: PublishAckFuture,
    seq: u64,
    reaches: Option<Lsn>,
}

/// The transaction being cut into parts.
#[derive(Default)]
struct Open {
    lsn: Lsn,
    first: u32,
    last: u32,
    bytes: usize,
    ops: Vec<EntityOps>,
    /// Reused to measure each record's encoded size.
    scratch: Vec<u8>,
}

impl Open {
    /// Starts over at `lsn`'s record `first` (the ops are empty: each part takes them).
    fn restart(&mut self, lsn: Lsn, first: u32) {
        self.lsn = lsn;
        self.first = first;
        self.last = first;
        self.bytes = 0;
    }
}

impl Publisher {
    /// Publishes until the pipeline stops (`Ok`) or publishing cannot go on (`Err`: fenced, or
    /// the stream lost what this leader needs).
    pub fn run(mut self) -> Result<(), ReplicationError> {
        let mut delay = Duration::from_millis(100);
        loop {
            let why = match self.session() {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(e)) => {
                    error!(error = %crate::source::error_chain(&e), "publishing stopped");
                    self.status.set_error(format!("publishing stopped: {e}"));
                    return Err(e);
                }
                Err(Failure::Retry(why)) => why,
            };
            warn!(error = %why, retry_in_ms = delay.as_millis() as u64, "publishing to the stream failed; retrying");
            self.status
                .set_error(format!("publishing to the stream failed (retrying): {why}"));
            // The next session starts from the stream's tail as it is now: read it first.
            loop {
                if self.sleep(delay) {
                    return Ok(());
                }
                delay = (delay * 2).min(MAX_BACKOFF);
                match self.handle.block_on(self.link.tail()) {
                    Ok(tail) if tail.epoch > self.epoch => return Err(self.fenced(tail.epoch)),
                    Ok(tail) => {
                        // A stream holding only fences keeps the start this leader had.
                        let after = tail.after.or(self.tail.after);
                        self.tail = Tail { after, ..tail };
                        break;
                    }
                    Err(e) => warn!(error = %e, "reading the stream's tail failed"),
                }
            }
        }
    }

    fn fenced(&self, theirs: u64) -> ReplicationError {
        let e = ReplicationError::Fenced {
            stream: self.link.names.stream.clone(),
            ours: self.epoch,
            theirs,
        };
        self.status.set_error(e.to_string());
        error!(error = %e, "fenced");
        e
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow() || !*self.leading.borrow()
    }

    /// Sleeps `d`; `true` when the pipeline stopped meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopped() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        self.stopped()
    }

    /// Publishes from the tail until stopped or a failure.
    fn session(&mut self) -> Result<(), Failure> {
        let after = self.tail.after.unwrap_or(WalKey::ZERO);
        let mut reader = WalReader::open(&self.wal_dir, after)
            .map_err(|e| {
                Failure::Fatal(ReplicationError::Gap(format!(
                    "the stream {} ends at {}, and this leader's WAL no longer holds what follows \
                     it ({e}). Delete the stream and its checkpoint bucket, and restart the \
                     leader: it publishes its checkpoint and goes on from there",
                    self.link.names.stream, after.lsn
                )))
            })?
            .with_field_ids(self.link.ids.clone());
        let mut expected = self.tail.seq;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut open = Open::default();
        // The newest mark read and not yet published: published once nothing follows it for
        // now (a commit after it says more), so a follower's `min_lsn` for a position read
        // after a commit is answered as on the leader.
        let mut mark: Option<Lsn> = None;
        info!(from = %after.lsn, seq = expected, epoch = self.epoch, "publishing to the stream");
        while !self.stopped() {
            let durable = self.durable.get();
            let mut read_any = false;
            while let Some(entry) = reader
                .next(durable.end)
                .map_err(|e| Failure::Fatal(e.into()))?
            {
                read_any = true;
                match entry {
                    WalEntry::Ops { key, ops } => {
                        mark = None;
                        if open.ops.is_empty() && open.lsn != key.lsn {
                            open.restart(key.lsn, key.seq);
                        }
                        let size = encoded_len(&ops, &mut open.scratch);
                        if !open.ops.is_empty() && open.bytes + size > PART_BYTES {
                            let part = self.part(&mut open, false, key.seq);
                            self.send(part, None, &mut expected, &mut in_flight)?;
                        }
                        open.bytes += size;
                        open.last = key.seq;
                        open.ops.push(ops);
                    }
                    WalEntry::Commit { lsn } => {
                        // A transaction without ops moves nothing: the ceiling stays at what the
                        // stream holds (a standby resumes from there; the slot must not be past).
                        if !open.ops.is_empty() {
                            let part = self.part(&mut open, true, 0);
                            self.send(part, Some(lsn), &mut expected, &mut in_flight)?;
                        }
                        open.restart(lsn, 0);
                        mark = None;
                    }
                    WalEntry::Mark { lsn } => mark = Some(lsn),
                }
                if in_flight.len() >= MAX_IN_FLIGHT {
                    self.settle(&mut in_flight, MAX_IN_FLIGHT / 2)?;
                }
            }
            if let Some(lsn) = mark.take() {
                let m = self.message(Body::Mark { lsn });
                self.send(m, Some(lsn), &mut expected, &mut in_flight)?;
            }
            self.settle(&mut in_flight, 0)?;
            if !read_any {
                self.durable
                    .wait_beyond(durable.end, Duration::from_millis(100));
            }
        }
        self.settle(&mut in_flight, 0)
    }

    /// The open transaction's ops so far as a part; the open transaction continues at
    /// `next_seq` unless `end`.
    fn part(&self, open: &mut Open, end: bool, next_seq: u32) -> Message {
        let ops = self.deduper.dedup(std::mem::take(&mut open.ops));
        let body = Body::Ops {
            lsn: open.lsn,
            first: open.first,
            last: open.last,
            end,
            ops,
        };
        open.first = next_seq;
        open.bytes = 0;
        self.message(body)
    }

    fn message(&self, body: Body) -> Message {
        Message {
            body,
            epoch: self.epoch,
            time_ms: now_ms(),
        }
    }

    /// Publishes `m`, expecting the stream's last sequence to be `expected`.
    fn send(
        &self,
        m: Message,
        reaches: Option<Lsn>,
        expected: &mut u64,
        in_flight: &mut VecDeque<InFlight>,
    ) -> Result<(), Failure> {
        let publish = to_publish(&m, *expected)
            .map_err(|e| Failure::Fatal(ReplicationError::Gap(format!("encoding a part: {e}"))))?;
        crate::failpoint::hit("publish-send");
        let ack = self
            .handle
            .block_on(
                self.link
                    .js
                    .send_publish(self.link.names.subject.clone(), publish),
            )
            .map_err(|e| self.classify(e.kind(), e.to_string()))?;
        *expected += 1;
        in_flight.push_back(InFlight {
            ack,
            seq: *expected,
            reaches,
        });
        Ok(())
    }

    fn advance(&self, lsn: Lsn) {
        self.ceiling.fetch_max(lsn.0, Ordering::SeqCst);
        self.floor.fetch_max(lsn.0, Ordering::SeqCst);
        self.status.set_published(lsn);
    }

    /// Waits for acknowledgements until at most `keep` parts are in flight.
    fn settle(&self, in_flight: &mut VecDeque<InFlight>, keep: usize) -> Result<(), Failure> {
        while in_flight.len() > keep {
            let Some(part) = in_flight.pop_front() else {
                break;
            };
            let ack = self
                .handle
                .block_on(part.ack.into_future())
                .map_err(|e| self.classify(e.kind(), e.to_string()))?;
            if ack.duplicate || ack.sequence != part.seq {
                return Err(Failure::Retry(format!(
                    "the stream stored the part at sequence {} (expected {}{})",
                    ack.sequence,
                    part.seq,
                    if ack.duplicate { ", a duplicate" } else { "" }
                )));
            }
            if let Some(lsn) = part.reaches {
                self.advance(lsn);
            }
        }
        Ok(())
    }

    /// A refused expected sequence is checked against the stream's tail before the next
    /// session (fenced only if a newer leader wrote it); a part too large for the server or a
    /// stream that is gone cannot be cured by retrying.
    fn classify(&self, kind: PublishErrorKind, text: String) -> Failure {
        match kind {
            PublishErrorKind::MaxPayloadExceeded => Failure::Fatal(ReplicationError::Gap(format!(
                "a part exceeds the NATS server's max_payload ({text}): raise max_payload in \
                 the server's configuration"
            ))),
            PublishErrorKind::StreamNotFound => Failure::Fatal(ReplicationError::Gap(format!(
                "the stream {} is gone ({text}): it was deleted while this leader published; \
                 restart the leader to recreate it from its checkpoint",
                self.link.names.stream
            ))),
            _ => Failure::Retry(text),
        }
    }
}

/// How a publishing session failed.
enum Failure {
    /// Stop publishing for good.
    Fatal(ReplicationError),
    /// Read the tail again and go on.
    Retry(String),
}

/// The encoded size of one entity's ops (the part size bound's measure).
fn encoded_len(ops: &EntityOps, scratch: &mut Vec<u8>) -> usize {
    scratch.clear();
    let _ = crate::wal::encode_entity_ops(ops, scratch);
    scratch.len() + crate::wal::format::RECORD_OVERHEAD
}
