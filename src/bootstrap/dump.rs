//! The parallel COPY: sessions on the exported snapshot take jobs (a table or a page range of
//! one) from a shared queue and stream their rows, in batches, over a bounded channel to worker
//! threads. Each worker parses the rows and translates them with its own [`Translator`] exactly
//! as streamed INSERTs are translated. Direct and join tables' ops go to the worker's
//! [`BulkAccumulator`] (siblings sharing their columns, merged at the end); fan-out tables'
//! `queryOpSet`s are resolved against a snapshot of the loaded index into such accumulators, or,
//! when they must see each other's writes, handed to the thread that owns the index. Memory is
//! bounded by the channel (a few batches per worker), never by a
//! table's size; the accumulators hold bitmaps, not rows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::BootstrapError;
use super::catalog::{Job, TablePlan};
use super::copy_text::{lines, parse_row_at};
use super::progress::TableProgress;
use crate::config::Config;
use crate::decode::{Insert, Message, RelationCache, TupleData};
use crate::index::Snapshot;
use crate::ops::EntityOps;
use crate::sink::bulk::BulkAccumulator;
use crate::translate::{TranslateStats, Translator};

/// Rows per batch handed to a worker.
const BATCH_ROWS: usize = 2048;
/// Bytes per batch handed to a worker.
const BATCH_BYTES: usize = 1 << 20;

/// Rows of one table, as COPY sent them (one or more whole lines per buffer).
pub struct Batch {
    table: usize,
    rows: Vec<Bytes>,
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
    sessions: &[Arc<Client>],
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
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let (rx, plans, config, mode) = (
            Arc::clone(&rx),
            Arc::clone(plans),
            config.clone(),
            mode.clone(),
        );
        let handle = std::thread::Builder::new()
            .name(format!("pgroar-dump-{i}"))
            .spawn(move || worker(&config, &plans, &rx, &mode))
            .map_err(|source| BootstrapError::Io {
                what: "starting a dump worker",
                source,
            })?;
        threads.push(handle);
    }
    drop(mode);

    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let mut copies = tokio::task::JoinSet::new();
    for session in sessions {
        let (session, queue, plans, tx) = (
            Arc::clone(session),
            Arc::clone(&queue),
            Arc::clone(plans),
            tx.clone(),
        );
        let progress: Vec<Arc<TableProgress>> = progress.to_vec();
        copies.spawn(async move {
            loop {
                let job = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(job) = job else {
                    return Ok(());
                };
                copy_job(&session, &plans, &job, &progress[job.table], &tx).await?;
            }
        });
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
    let mut rows = Vec::with_capacity(BATCH_ROWS);
    let mut bytes = 0usize;
    while let Some(buf) = stream.next().await {
        let buf = buf.map_err(copy_err)?;
        bytes += buf.len();
        rows.push(buf);
        if rows.len() >= BATCH_ROWS || bytes >= BATCH_BYTES {
            progress.add(rows.len() as u64, bytes as u64);
            let batch = Batch {
                table: job.table,
                rows: std::mem::replace(&mut rows, Vec::with_capacity(BATCH_ROWS)),
            };
            bytes = 0;
            tx.send(batch)
                .await
                .map_err(|_| BootstrapError::Panicked("the dump workers"))?;
        }
    }
    if !rows.is_empty() {
        progress.add(rows.len() as u64, bytes as u64);
        tx.send(Batch {
            table: job.table,
            rows,
        })
        .await
        .map_err(|_| BootstrapError::Panicked("the dump workers"))?;
    }
    let pages = match (job.from_page, job.to_page) {
        (from, Some(to)) => to - from.unwrap_or(0),
        (from, None) => plan.pages.saturating_sub(from.unwrap_or(0)),
    };
    progress.job_done(pages);
    Ok(())
}

fn worker(
    config: &Config,
    plans: &[TablePlan],
    rx: &Mutex<mpsc::Receiver<Batch>>,
    mode: &Mode,
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
    // One insert message, its columns refilled for each row.
    let mut msg = Message::Insert(Insert {
        relation: 0,
        new: TupleData {
            columns: Vec::new(),
        },
    });
    let mut ops: Vec<EntityOps> = Vec::new();
    let mut rows = 0u64;
    loop {
        // One worker waits on the channel at a time; the others wait for the lock.
        let batch = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
        let Some(batch) = batch else {
            break;
        };
        let plan = &plans[batch.table];
        for buf in &batch.rows {
            for line in lines(buf) {
                let Message::Insert(insert) = &mut msg else {
                    unreachable!("the worker's message is an insert");
                };
                insert.relation = plan.oid;
                parse_row_at(buf, line, plan.columns.len(), &mut insert.new.columns).map_err(
                    |source| BootstrapError::Row {
                        table: plan.display(),
                        source,
                    },
                )?;
                rows += 1;
                translator
                    .change(&msg, &relations, &mut ops)
                    .map_err(|e| BootstrapError::Translate(Box::new(e)))?;
            }
        }
        match mode {
            Mode::Bulk(_) => {
                for e in ops.drain(..) {
                    acc.add(&e);
                }
            }
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
    }
    Ok(WorkerOut {
        acc,
        stats: translator.stats(),
        rows,
    })
}
