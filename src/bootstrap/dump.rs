//! The parallel COPY: sessions on the exported snapshot take jobs (a table or a page range of
//! one) from a shared queue and stream their rows, in batches, over a bounded channel to worker
//! threads. Each session's COPY task runs on the session's own thread ([`super::session`]);
//! emptied batch buffers go back to the COPY tasks for reuse. A table is copied in binary when
//! the translator reads every copied column's binary form (cheaper for Postgres to write and for
//! the workers to read), else as text. Each worker parses the rows and translates them with its
//! own [`Translator`] exactly as streamed INSERTs are translated. Direct and join tables' ops go
//! to the worker's [`BulkAccumulator`] (siblings sharing their columns, merged at the end);
//! fan-out tables' `queryOpSet`s are resolved against a snapshot of the loaded index into such
//! accumulators, or, when they must see each other's writes, handed to the thread that owns the
//! index. Memory is bounded by the channel (a few batches per worker, as many buffers in the
//! pool), never by a table's size; the accumulators hold bitmaps, not rows.

use std::collections::VecDeque;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::BootstrapError;
use super::catalog::{Job, TablePlan};
use super::copy_binary::{self, BinaryRow};
use super::copy_text::{CopyRow, CopyRowError, lines};
use super::session::CopySession;
use crate::config::Config;
use crate::decode::RelationCache;
use crate::index::Snapshot;
use crate::index::bulk::BulkAccumulator;
use crate::ops::EntityOps;
use crate::status::TableProgress;
use crate::translate::{TranslateStats, Translator, Tuple};

/// Bytes of rows per batch handed to a worker (a batch is passed once it reaches this size).
const BATCH_BYTES: usize = 128 << 10;

/// Emptied batch buffers go back to the COPY tasks, so that the dump reuses a few warm buffers
/// instead of faulting in fresh memory for every batch. One that a long row grew past this size
/// is freed instead.
const REUSE_BYTES: usize = 4 * BATCH_BYTES;

/// Emptied batch buffers, waiting for reuse.
#[derive(Clone)]
struct Buffers {
    give: crossbeam_channel::Sender<Vec<u8>>,
    take: crossbeam_channel::Receiver<Vec<u8>>,
}

impl Buffers {
    /// A pool holding at most `n` buffers.
    fn new(n: usize) -> Self {
        let (give, take) = crossbeam_channel::bounded(n);
        Buffers { give, take }
    }

    /// An empty buffer: a reused one, or a new one.
    fn get(&self) -> Vec<u8> {
        self.take
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES + 1024))
    }

    /// Gives `data` back for reuse (or frees it when the pool is full or it grew too large).
    fn put(&self, mut data: Vec<u8>) {
        if data.capacity() <= REUSE_BYTES {
            data.clear();
            let _ = self.give.try_send(data);
        }
    }
}

/// Rows of one table, as COPY sent them, copied into one buffer of whole lines. Copying (a few
/// dozen bytes per row) frees each received message on the thread that received it: handing the
/// messages themselves over would make the workers share their buffer's reference count with
/// the connection, one contended atomic per row and value.
pub struct Batch {
    table: usize,
    data: Vec<u8>,
}

/// What the workers do with translated ops.
#[derive(Clone)]
pub enum Mode {
    /// Accumulate in siblings of this accumulator (one per worker).
    Bulk(Arc<BulkAccumulator>),
    /// Send to the index owner.
    Apply(crossbeam_channel::Sender<Vec<EntityOps>>),
    /// Resolve fan-out queries against the snapshot, accumulate in siblings of the accumulator.
    FanOut(Arc<BulkAccumulator>, Snapshot),
}

/// A worker's results.
pub struct WorkerOut {
    /// Its accumulator (empty in [`Mode::Apply`]).
    pub acc: BulkAccumulator,
    /// Its translator's counters.
    pub stats: TranslateStats,
    /// Rows it translated.
    pub rows: u64,
}

/// Runs `jobs` on `sessions` (each already inside the snapshot), feeding `workers` worker
/// threads; returns their results once every job is done.
pub async fn run(
    sessions: &[CopySession],
    plans: &Arc<Vec<TablePlan>>,
    jobs: Vec<Job>,
    progress: &[Arc<TableProgress>],
    config: &Config,
    workers: usize,
    mode: Mode,
) -> Result<Vec<WorkerOut>, BootstrapError> {
    let workers = workers.max(1);
    let (tx, rx) = mpsc::channel::<Batch>(workers * 2);
    let rx = Arc::new(Mutex::new(rx));
    // Every buffer in flight: the channel's, one per worker, one per COPY task.
    let buffers = Buffers::new(workers * 3 + sessions.len());
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let (rx, plans, config, mode, buffers) = (
            Arc::clone(&rx),
            Arc::clone(plans),
            config.clone(),
            mode.clone(),
            buffers.clone(),
        );
        let handle = std::thread::Builder::new()
            .name(format!("pgroar-dump-{i}"))
            .spawn(move || worker(&config, &plans, &rx, &mode, &buffers))
            .map_err(|source| BootstrapError::Io {
                what: "starting a dump worker",
                source,
            })?;
        threads.push(handle);
    }
    drop(mode);

    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let mut copies = tokio::task::JoinSet::new();
    for copy in sessions {
        let (session, queue, plans, tx, buffers) = (
            Arc::clone(&copy.client),
            Arc::clone(&queue),
            Arc::clone(plans),
            tx.clone(),
            buffers.clone(),
        );
        let progress: Vec<Arc<TableProgress>> = progress.to_vec();
        // On the session's thread, beside its connection (see [`super::session`]).
        copies.spawn_on(
            async move {
                loop {
                    let job = queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    let Some(job) = job else {
                        return Ok(());
                    };
                    copy_job(&session, &plans, &job, &progress[job.table], &tx, &buffers).await?;
                }
            },
            &copy.runtime,
        );
    }
    drop(tx);
    let mut first_err = None;
    while let Some(r) = copies.join_next().await {
        let r = r.unwrap_or(Err(BootstrapError::Panicked("a COPY task")));
        if let Err(e) = r {
            // Stop the other copies; the workers end when the channel closes.
            copies.abort_all();
            first_err.get_or_insert(e);
        }
    }
    let outs = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or(Err(BootstrapError::Panicked("a dump worker")))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| BootstrapError::Panicked("the dump"))?;
    // A worker's error is the cause (a COPY task then only sees the channel close), so it wins.
    let outs = outs.into_iter().collect::<Result<Vec<_>, _>>()?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(outs),
    }
}

async fn copy_job(
    session: &Client,
    plans: &[TablePlan],
    job: &Job,
    progress: &TableProgress,
    tx: &mpsc::Sender<Batch>,
    buffers: &Buffers,
) -> Result<(), BootstrapError> {
    let plan = &plans[job.table];
    let copy_err = |source| BootstrapError::Copy {
        table: plan.display(),
        source,
    };
    let stream = session
        .copy_out(&job.copy_sql(plan))
        .await
        .map_err(copy_err)?;
    let mut stream = std::pin::pin!(stream);
    let mut data = buffers.get();
    let mut rows = 0u64;
    // A binary stream starts with a header (sent with the first row): the batches hold rows only.
    let mut header = plan.binary;
    while let Some(buf) = stream.next().await {
        let buf = buf.map_err(copy_err)?;
        let len = buf.len();
        data.extend_from_slice(&buf);
        drop(buf);
        if header {
            match copy_binary::header_len(&data).map_err(|source| row_err(plan, source))? {
                Some(n) => {
                    data.drain(..n);
                    header = false;
                }
                None => continue,
            }
        }
        // Each row comes in a message; a binary stream's end marker in one of its own (or with
        // the header, when the table is empty).
        let marker = plan.binary && (len == 2 || data.len() == 2) && data.ends_with(&[0xff; 2]);
        if !marker {
            rows += 1;
        }
        if data.len() >= BATCH_BYTES {
            progress.add(rows, data.len() as u64);
            let full = std::mem::replace(&mut data, buffers.get());
            rows = 0;
            send(tx, job.table, full).await?;
        }
    }
    if header {
        return Err(row_err(plan, CopyRowError::Header));
    }
    if data.is_empty() {
        buffers.put(data);
    } else {
        progress.add(rows, data.len() as u64);
        send(tx, job.table, data).await?;
    }
    let pages = match (job.from_page, job.to_page) {
        (from, Some(to)) => to - from.unwrap_or(0),
        (from, None) => plan.pages.saturating_sub(from.unwrap_or(0)),
    };
    progress.job_done(pages);
    Ok(())
}

/// Where a worker's translated rows go.
enum Out<'a> {
    Acc(&'a mut BulkAccumulator),
    Ops(&'a mut Vec<EntityOps>),
}

impl Out<'_> {
    fn insert<T: Tuple>(&mut self, translator: &mut Translator, oid: u32, tuple: &T) {
        match self {
            Out::Acc(acc) => translator.insert(oid, tuple, *acc),
            Out::Ops(ops) => translator.insert(oid, tuple, *ops),
        }
    }
}

fn row_err(plan: &TablePlan, source: CopyRowError) -> BootstrapError {
    BootstrapError::Row {
        table: plan.display(),
        source,
    }
}

async fn send(tx: &mpsc::Sender<Batch>, table: usize, data: Vec<u8>) -> Result<(), BootstrapError> {
    tx.send(Batch { table, data })
        .await
        .map_err(|_| BootstrapError::Panicked("the dump workers"))
}

fn worker(
    config: &Config,
    plans: &[TablePlan],
    rx: &Mutex<mpsc::Receiver<Batch>>,
    mode: &Mode,
    buffers: &Buffers,
) -> Result<WorkerOut, BootstrapError> {
    let mut translator =
        Translator::new(config).map_err(|e| BootstrapError::Translate(Box::new(e)))?;
    let mut relations = RelationCache::new();
    for plan in plans {
        let change = relations.insert(plan.relation());
        translator
            .relation(&change)
            .map_err(|e| BootstrapError::Translate(Box::new(e)))?;
    }
    let mut acc = match mode {
        Mode::Bulk(root) | Mode::FanOut(root, _) => root.sibling(),
        Mode::Apply(_) => BulkAccumulator::new(config.schema()),
    };
    let mut row = CopyRow::default();
    let mut binary_row = BinaryRow::default();
    let mut ops: Vec<EntityOps> = Vec::new();
    let mut rows = 0u64;
    loop {
        // One worker waits on the channel at a time; the others wait for the lock.
        let batch = rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocking_recv();
        let Some(batch) = batch else {
            break;
        };
        let plan = &plans[batch.table];
        // Direct and join tables' ops go straight into the accumulator.
        let mut out = match mode {
            Mode::Bulk(_) => Out::Acc(&mut acc),
            _ => Out::Ops(&mut ops),
        };
        let data = &batch.data;
        let columns = plan.columns.len();
        if plan.binary {
            let mut pos = 0;
            while pos < data.len() {
                let next = binary_row.parse(data, pos, columns);
                match next.map_err(|source| row_err(plan, source))? {
                    Some(next) => pos = next,
                    None => break, // the end-of-data marker
                }
                rows += 1;
                out.insert(&mut translator, plan.oid, &binary_row.tuple(data));
            }
        } else {
            for line in lines(data) {
                let line = &data[line];
                row.parse(line, columns)
                    .map_err(|source| row_err(plan, source))?;
                rows += 1;
                out.insert(&mut translator, plan.oid, &row.tuple(line));
            }
        }
        match mode {
            Mode::Bulk(_) => {}
            Mode::FanOut(_, snapshot) => {
                for e in ops.drain(..) {
                    acc.add_fan_out(snapshot, &e);
                }
            }
            Mode::Apply(to) => {
                if !ops.is_empty() {
                    to.send(std::mem::take(&mut ops))
                        .map_err(|_| BootstrapError::Panicked("the index loader"))?;
                }
            }
        }
        buffers.put(batch.data);
    }
    acc.flush();
    Ok(WorkerOut {
        acc,
        stats: translator.stats(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emptied_buffers_are_reused_unless_grown_or_the_pool_is_full() {
        let pool = Buffers::new(1);
        let mut a = pool.get();
        a.extend_from_slice(b"rows");
        let at = a.as_ptr();
        pool.put(a);
        let b = pool.get();
        assert!(b.is_empty());
        assert_eq!(
            b.as_ptr(),
            at,
            "the buffer put back is the one handed out next"
        );
        // The pool holds one: a second one put back is freed, not queued.
        pool.put(b);
        pool.put(Vec::with_capacity(BATCH_BYTES));
        let reused = pool.get();
        assert_eq!(reused.as_ptr(), at);
        assert!(
            pool.take.is_empty(),
            "the second buffer was freed, not queued"
        );
        // One a long row grew is freed, not kept.
        pool.put(Vec::with_capacity(REUSE_BYTES + 1));
        assert!(pool.take.is_empty());
    }
}
