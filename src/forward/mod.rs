//! The forwarding sink (`[forward]`): POSTs the index's ops, deduplicated per batch and in the
//! trigger pipeline's batch format, to a remote index server — so that the servers a trigger
//! pipeline fed keep being fed once pgroar replaces the triggers.
//!
//! Guarantees: at-least-once, in commit order, whole transactions per batch. The forwarder reads
//! pgroar's own WAL (only what is fsynced), so the remote never sees a change Postgres could send
//! again differently. Its position is a durable cursor, `<data_dir>/forward.cursor` (the commit
//! LSN of the last batch the remote answered 2xx), replaced atomically after each batch; the WAL
//! keeps every segment the cursor still needs ([`Floor`]: checkpoints truncate no further).
//!
//! Crash windows: killed after the remote applied a batch but before the cursor was replaced,
//! the forwarder sends that batch again on restart (ops re-applied in order leave the same
//! index). The remote down: each batch is retried with backoff (100 ms doubling to 30 s) as long
//! as the backlog — source WAL between the cursor and what pgroar has made durable — stays below
//! `forward.max_backlog_bytes`; past it, or when the remote refuses a batch (a 4xx other than
//! 408/429), forwarding stops with an error naming the cause and the fix, and releases the WAL it
//! held, so pgroar's disk does not fill: the index keeps running. A first start (no cursor file)
//! begins at the index's applied position: the remote is expected to hold the state up to there
//! (a team switching from triggers stops its poller at that point).

mod cursor;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::config::ForwardConfig;
use crate::dedup::Deduper;
use crate::ops::{EntityOps, OpsBatch, SyncMeta};
use crate::status::{Counter, Status};
use crate::wal::{DurableWatch, WalEntry, WalError, WalReader};
use crate::{Lsn, WalKey};

pub use cursor::{CURSOR_FILE, read_cursor, write_cursor};

/// Longest wait between two attempts at one batch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How often an idle forwarder moves its cursor over transactions without ops and Marks.
const IDLE_CURSOR_EVERY: Duration = Duration::from_secs(5);

/// The lowest LSN the WAL must keep for the forwarder (`u64::MAX`: nothing held).
pub type Floor = Arc<AtomicU64>;

/// A floor that holds nothing.
pub fn no_floor() -> Floor {
    Arc::new(AtomicU64::new(u64::MAX))
}

/// Why forwarding stopped.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The cursor file could not be read or written.
    #[error("forward cursor {path}")]
    Cursor {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The WAL could not be read (e.g. it no longer holds the cursor's position).
    #[error("reading the WAL for forwarding")]
    Wal(#[from] WalError),
    /// The remote refused a batch.
    #[error("the remote {url} refused the batch ending at {lsn} with {status}: {body}")]
    Refused {
        /// The remote.
        url: String,
        /// The batch's last commit.
        lsn: Lsn,
        /// HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
    /// The remote stayed unreachable until the backlog passed its bound.
    #[error(
        "the remote {url} is {backlog} bytes of source WAL behind (forward.max_backlog_bytes = \
         {max}); last error: {last}"
    )]
    Backlog {
        /// The remote.
        url: String,
        /// Bytes behind.
        backlog: u64,
        /// The bound.
        max: u64,
        /// The last failure.
        last: String,
    },
}

/// Everything the forwarding thread owns.
pub struct Forwarder {
    /// `<data_dir>/wal`.
    pub wal_dir: PathBuf,
    /// `<data_dir>/forward.cursor`.
    pub cursor_path: PathBuf,
    /// Where the cursor starts (from [`read_cursor`], or the applied position on a first start).
    pub cursor: Lsn,
    /// pgroar's durable WAL end.
    pub durable: DurableWatch,
    /// Dedups each batch before it goes.
    pub deduper: Deduper,
    /// Counters and the forwarded position.
    pub status: Arc<Status>,
    /// What the WAL must keep; released when forwarding stops.
    pub floor: Floor,
    /// `[forward]`.
    pub config: ForwardConfig,
    /// The pipeline's stop flag.
    pub stop: watch::Receiver<bool>,
}

impl Forwarder {
    /// Forwards until the pipeline stops (`Ok`) or forwarding cannot go on (`Err`, logged and
    /// put in the status, with the WAL released).
    pub fn run(self) -> Result<(), ForwardError> {
        let (status, floor, url) = (
            Arc::clone(&self.status),
            Arc::clone(&self.floor),
            self.config.url.clone(),
        );
        let result = self.forward();
        if let Err(e) = &result {
            floor.store(u64::MAX, Ordering::SeqCst);
            let message = format!(
                "forwarding to {url} stopped: {}. The index keeps running; the remote misses \
                 what follows. Fix the cause, bring the remote to the index's state (re-seed it), \
                 delete forward.cursor in the data directory and restart to forward from then on",
                chain(e)
            );
            error!("{message}");
            status.set_error(message);
        }
        result
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn forward(mut self) -> Result<(), ForwardError> {
        let mut reader = WalReader::open(&self.wal_dir, WalKey::end_of(self.cursor))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        info!(url = %self.config.url, from = %self.cursor, "forwarding ops");
        let mut txn: Vec<EntityOps> = Vec::new();
        let mut batch: Vec<EntityOps> = Vec::new();
        // The newest boundary read (a Commit or a Mark) and the commit ending `batch`.
        let (mut read_to, mut batch_end) = (self.cursor, self.cursor);
        let mut idle_since = Instant::now();
        while !self.stopped() {
            let durable = self.durable.get();
            while let Some(entry) = reader.next(durable.end)? {
                match entry {
                    WalEntry::Ops { ops, .. } => txn.push(ops),
                    WalEntry::Commit { lsn } => {
                        read_to = lsn;
                        if !txn.is_empty() {
                            batch.append(&mut txn);
                            batch_end = lsn;
                        }
                        if batch.len() as u64 >= self.config.batch_entities {
                            break;
                        }
                    }
                    WalEntry::Mark { lsn } => read_to = lsn,
                }
            }
            if batch.is_empty() {
                // Nothing to send: move the cursor over empty transactions and Marks now and
                // then, so the WAL behind it can go.
                if read_to > self.cursor && idle_since.elapsed() >= IDLE_CURSOR_EVERY {
                    self.advance(read_to)?;
                    idle_since = Instant::now();
                }
                self.durable
                    .wait_beyond(durable.end, Duration::from_millis(200));
                continue;
            }
            let ops = self.deduper.dedup(std::mem::take(&mut batch));
            if !self.send(&agent, ops, batch_end)? {
                return Ok(()); // stopped while retrying
            }
            self.status.add(Counter::ForwardedBatches, 1);
            self.advance(batch_end)?;
            idle_since = Instant::now();
        }
        Ok(())
    }

    /// Makes `lsn` the durable cursor and lets the WAL go up to it.
    fn advance(&mut self, lsn: Lsn) -> Result<(), ForwardError> {
        write_cursor(&self.cursor_path, lsn)?;
        self.cursor = lsn;
        self.floor.store(lsn.0, Ordering::SeqCst);
        self.status.set_forwarded(lsn);
        Ok(())
    }

    /// POSTs one batch until the remote takes it; `Ok(false)` when the pipeline stopped first.
    fn send(
        &self,
        agent: &ureq::Agent,
        ops: Vec<EntityOps>,
        lsn: Lsn,
    ) -> Result<bool, ForwardError> {
        let body = serde_json::to_string(&OpsBatch {
            ops,
            meta: Some(SyncMeta {
                source: "pgroar".into(),
                cursor: Some(serde_json::Value::String(lsn.to_string())),
                max_id: None,
                lag_rows: None,
            }),
        })
        .unwrap_or_default();
        let mut delay = Duration::from_millis(100);
        let mut failures = 0u64;
        loop {
            if self.stopped() {
                return Ok(false);
            }
            let last = match self.post(agent, &body) {
                Ok(()) => return Ok(true),
                Err(Attempt::Refused(status, text)) => {
                    return Err(ForwardError::Refused {
                        url: self.config.url.clone(),
                        lsn,
                        status,
                        body: text,
                    });
                }
                Err(Attempt::Retry(why)) => why,
            };
            failures += 1;
            self.status.add(Counter::ForwardRetries, 1);
            if failures <= 3 {
                warn!(url = %self.config.url, error = %last, retry_in_ms = delay.as_millis() as u64, "forwarding failed; retrying");
            } else {
                debug!(url = %self.config.url, error = %last, "forwarding failed; retrying");
            }
            let backlog = self.status.durable().0.saturating_sub(self.cursor.0);
            if backlog > self.config.max_backlog_bytes {
                return Err(ForwardError::Backlog {
                    url: self.config.url.clone(),
                    backlog,
                    max: self.config.max_backlog_bytes,
                    last,
                });
            }
            self.sleep(delay);
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    fn post(&self, agent: &ureq::Agent, body: &str) -> Result<(), Attempt> {
        let mut request = agent
            .post(&self.config.url)
            .header("Content-Type", "application/json");
        if let Some(token) = &self.config.token {
            request = request.header("Authorization", &format!("Bearer {}", token.expose()));
        }
        let mut response = request
            .send(body)
            .map_err(|e| Attempt::Retry(e.to_string()))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = response
            .body_mut()
            .read_to_string()
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect::<String>();
        if (400..500).contains(&status) && status != 408 && status != 429 {
            Err(Attempt::Refused(status, text))
        } else {
            Err(Attempt::Retry(format!("HTTP {status}: {text}")))
        }
    }

    /// Sleeps `d`, waking early when the pipeline stops.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stopped() {
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
    }
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

enum Attempt {
    Retry(String),
    Refused(u16, String),
}

/// The cursor a forwarder over `data_dir` starts from: the file's, or — on a first start —
/// `applied`, written to the file at once.
pub fn start_cursor(data_dir: &Path, applied: Lsn) -> Result<Lsn, ForwardError> {
    let path = data_dir.join(CURSOR_FILE);
    match read_cursor(&path)? {
        Some(lsn) => Ok(lsn),
        None => {
            write_cursor(&path, applied)?;
            Ok(applied)
        }
    }
}
