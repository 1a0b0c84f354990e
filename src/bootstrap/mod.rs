//! Dump-then-stream bootstrap (`pgroar bootstrap`): a snapshot-consistent COPY of every source
//! table into a fresh index, checkpointed at the slot's consistent point, after which streaming
//! starts from that point.
//!
//! # Steps
//! 1. Check the data directory ([`marker`]): a complete index is kept unless `force`; leftovers
//!    of an unfinished bootstrap (or a forced one) are wiped and their slot dropped.
//! 2. Resolve the source tables, check that the publication publishes them and the columns the
//!    sources read ([`catalog`]).
//! 3. Write the intent, create the slot with its snapshot held open ([`snapshot`]), open the
//!    COPY sessions and import the snapshot in each, measure the tables, release the snapshot.
//! 4. COPY direct and join tables in parallel into bulk accumulators (shared columns, per-worker
//!    multi-value bitmaps) and put them into the index; then COPY fan-out tables, resolving each
//!    row's query against a snapshot of that index, into a second accumulator merged the same
//!    way ([`dump`]; row by row through the index when a fan-out writes a field a fan-out query
//!    reads).
//! 5. Set the index's cursor to the end of the consistent point, hand a snapshot of it to the
//!    caller (which may answer queries from it: they are SQL's answers at that point), write
//!    the checkpoint, then the marker. `run` then opens the WAL at that point and streams from
//!    the slot.
//!
//! # Guarantees and crash windows
//! The dump sees exactly the transactions committed before the consistent point; the stream
//! starts after it: no gap, no duplicate. A crash or kill anywhere before the marker is durable
//! leaves the directory incomplete (the intent is there, the marker is not): nothing treats it
//! as an index, and the next `bootstrap` or `run` drops the slot the intent names, wipes the
//! index and WAL, and starts over. The marker is written only after the checkpoint is durable.

pub mod catalog;
pub mod copy_binary;
pub mod copy_text;
pub mod dump;
pub mod marker;
pub mod progress;
pub mod session;
pub mod snapshot;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tracing::{info, warn};

use crate::config::Config;
use crate::index::bulk::BulkAccumulator;
use crate::index::{CheckpointError, Index, Snapshot};
use crate::source::{ConnInfo, ConnInfoError};
use crate::status::{Progress, TableProgress, TableReport};
use crate::translate::{TranslateError, TranslateStats, Translator};
use crate::{Lsn, WalKey};

pub use marker::{DataDir, Marker, MarkerError};

/// Why a bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The connection string does not parse.
    #[error(transparent)]
    ConnInfo(#[from] ConnInfoError),
    /// The config's expressions do not work.
    #[error(transparent)]
    Translate(Box<TranslateError>),
    /// The data directory's marker or intent.
    #[error(transparent)]
    Marker(#[from] MarkerError),
    /// The checkpoint could not be written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The data directory already holds a complete index.
    #[error(
        "{} already holds a complete index (slot {slot}, consistent point {consistent_point}); \
         `pgroar run` streams from it. To throw it away and bootstrap again, pass --force",
        data_dir.display()
    )]
    AlreadyBootstrapped {
        /// The data directory.
        data_dir: PathBuf,
        /// The marker's slot.
        slot: String,
        /// The marker's consistent point.
        consistent_point: Lsn,
    },
    /// The slot exists but this data directory did not create it.
    #[error(
        "the replication slot {slot} already exists and {} did not create it (another pgroar may \
         be using it). Drop it with SELECT pg_drop_replication_slot('{slot}'), choose another \
         [postgres] slot, or pass --force to drop it",
        data_dir.display()
    )]
    SlotExists {
        /// The slot.
        slot: String,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The slot to drop is held by a session.
    #[error(
        "the replication slot {slot} is in use by the process with pid {pid}; stop it (or \
         SELECT pg_terminate_backend({pid})) and try again"
    )]
    SlotActive {
        /// The slot.
        slot: String,
        /// The holder's pid.
        pid: i32,
    },
    /// Connecting failed.
    #[error(transparent)]
    Connect(Box<crate::source::SqlConnectError>),
    /// A catalog query failed.
    #[error("{what} failed")]
    Sql {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A replication-session command failed.
    #[error("{what} failed")]
    Replication {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: pgwire_replication::PgWireError,
    },
    /// A replication-session command answered something unexpected.
    #[error("{what}: unexpected reply: {detail}")]
    Reply {
        /// What was being done.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The publication does not exist.
    #[error("the publication {publication} does not exist. Create it: {fix}")]
    PublicationMissing {
        /// The publication.
        publication: String,
        /// The SQL that fixes it.
        fix: String,
    },
    /// The publication lacks source tables.
    #[error("the publication {publication} does not publish {missing}. Add them: {fix}")]
    PublicationIncomplete {
        /// The publication.
        publication: String,
        /// The missing tables.
        missing: String,
        /// The SQL that fixes it.
        fix: String,
    },
    /// The publication's column lists leave out columns the sources read.
    #[error(
        "the publication {publication} does not publish the columns {columns}, which the sources \
         read; add them to its column lists (ALTER PUBLICATION … SET TABLE …) or drop the lists"
    )]
    PublicationColumns {
        /// The publication.
        publication: String,
        /// `schema.table.column`, comma-separated.
        columns: String,
    },
    /// A source table does not exist.
    #[error("the source table {table} does not exist")]
    TableMissing {
        /// The config's name.
        table: String,
    },
    /// A column a source reads does not exist.
    #[error("the source table {table} has no column {column}")]
    ColumnMissing {
        /// `schema.table`.
        table: String,
        /// The column.
        column: String,
    },
    /// A COPY failed.
    #[error("copying {table} failed")]
    Copy {
        /// `schema.table`.
        table: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A COPY row did not parse.
    #[error("a row of {table} did not parse")]
    Row {
        /// `schema.table`.
        table: String,
        /// The cause.
        #[source]
        source: copy_text::CopyRowError,
    },
    /// A local I/O failure.
    #[error("{what} failed")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A thread or task panicked.
    #[error("{0} panicked")]
    Panicked(&'static str),
}

impl From<TranslateError> for BootstrapError {
    fn from(e: TranslateError) -> Self {
        BootstrapError::Translate(Box::new(e))
    }
}

/// How the dump runs.
#[derive(Clone, Debug)]
pub struct BootstrapOptions {
    /// COPY sessions in parallel.
    pub connections: usize,
    /// Threads parsing and translating rows.
    pub workers: usize,
    /// Pages per COPY job of a large table.
    pub chunk_pages: u64,
    /// Throw away a complete index (and its slot) and start over.
    pub force: bool,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        BootstrapOptions {
            connections: cores.clamp(2, 8),
            workers: cores.clamp(1, 8),
            // 16k pages = 128 MiB of heap per job with the default 8 KiB block size.
            chunk_pages: 16_384,
            force: false,
        }
    }
}

/// What a finished bootstrap did.
#[derive(Clone, Debug)]
pub struct BootstrapSummary {
    /// The slot's consistent point: the index reflects every transaction before it.
    pub consistent_point: Lsn,
    /// Rows copied.
    pub rows: u64,
    /// Live slots in the index.
    pub alive: u64,
    /// Per table.
    pub tables: Vec<TableReport>,
    /// Seconds per phase.
    pub phases: Vec<(&'static str, f64)>,
    /// Bad data skipped while translating.
    pub translate: TranslateStats,
    /// Wall time.
    pub elapsed: Duration,
}

/// What every COPY phase of one bootstrap shares.
struct Dump<'a> {
    sessions: &'a [session::CopySession],
    plans: &'a Arc<Vec<catalog::TablePlan>>,
    tables: &'a [Arc<TableProgress>],
    config: &'a Config,
    workers: usize,
}

impl Dump<'_> {
    /// Runs `jobs` (fan-out tables) with their ops applied to `index` in order on a loader
    /// thread, adding the workers' counters to `translate` and `rows`.
    async fn apply(
        &self,
        mut index: Index,
        jobs: Vec<catalog::Job>,
        translate: &mut TranslateStats,
        rows: &mut u64,
    ) -> Result<Index, BootstrapError> {
        let (to_index, from_workers) = crossbeam_channel::bounded::<Vec<crate::ops::EntityOps>>(8);
        let loader = std::thread::spawn(move || {
            for ops in from_workers {
                for e in &ops {
                    index.apply(e);
                }
            }
            index
        });
        let outs = dump::run(
            self.sessions,
            self.plans,
            jobs,
            self.tables,
            self.config,
            self.workers,
            dump::Mode::Apply(to_index),
        )
        .await;
        let loaded = tokio::task::spawn_blocking(move || loader.join())
            .await
            .map_err(|_| BootstrapError::Panicked("the index loader"))?
            .map_err(|_| BootstrapError::Panicked("the index loader"))?;
        for out in outs? {
            translate.add(&out.stats);
            *rows += out.rows;
        }
        Ok(loaded)
    }

    /// Runs `jobs` into sibling bulk accumulators (fan-out rows resolved against `fan_out`)
    /// and returns their merge, adding the workers' counters to `translate` and `rows`.
    async fn bulk(
        &self,
        jobs: Vec<catalog::Job>,
        fan_out: Option<crate::index::Snapshot>,
        translate: &mut TranslateStats,
        rows: &mut u64,
    ) -> Result<BulkAccumulator, BootstrapError> {
        let root = Arc::new(BulkAccumulator::new(self.config.schema()));
        let mode = match fan_out {
            None => dump::Mode::Bulk(Arc::clone(&root)),
            Some(snapshot) => dump::Mode::FanOut(Arc::clone(&root), snapshot),
        };
        let outs = dump::run(
            self.sessions,
            self.plans,
            jobs,
            self.tables,
            self.config,
            self.workers,
            mode,
        )
        .await?;
        // The workers have ended, so the root is the only other holder of their shared columns.
        let mut acc = Arc::try_unwrap(root).unwrap_or_else(|root| root.sibling());
        let mut accs = Vec::with_capacity(outs.len());
        for out in outs {
            translate.add(&out.stats);
            *rows += out.rows;
            accs.push(out.acc);
        }
        tokio::task::spawn_blocking(move || {
            for other in accs {
                acc = acc.merge(other);
            }
            acc
        })
        .await
        .map_err(|_| BootstrapError::Panicked("merging the dump workers"))
    }
}

/// Puts `acc` into `index` on a blocking thread.
async fn merge(mut index: Index, acc: BulkAccumulator) -> Result<Index, BootstrapError> {
    tokio::task::spawn_blocking(move || {
        index.merge_bulk(acc);
        index
    })
    .await
    .map_err(|_| BootstrapError::Panicked("the bitmap merge"))
}

/// Whether the fan-out tables can load in bulk: every row's query resolved against the index the
/// other tables loaded, the ops accumulated in parallel. That equals applying the rows one by
/// one unless a fan-out source writes a field some fan-out query reads (a later row's query
/// would then see an earlier row's writes); such configs load row by row through the index.
fn fan_out_in_bulk(config: &Config) -> bool {
    let mut read = std::collections::HashSet::new();
    let mut written = std::collections::HashSet::new();
    for source in &config.sources {
        if let crate::config::SourceKind::FanOut { query, track, .. } = &source.kind {
            read.extend(query.clauses.iter().map(|c| c.field.as_str()));
            written.extend(track.iter().map(|t| t.target.as_str()));
        }
    }
    read.is_disjoint(&written)
}

/// Opens an ordinary session with the pinned settings (TLS as `sslmode` says).
pub async fn connect(conn: &ConnInfo) -> Result<Client, BootstrapError> {
    crate::source::connect_sql(conn)
        .await
        .map_err(|e| BootstrapError::Connect(Box::new(e)))
}

/// Runs the whole bootstrap (see the module note). On success the data directory holds a
/// checkpoint at the consistent point and the marker; `run` streams from there.
pub async fn bootstrap(
    config: &Config,
    options: &BootstrapOptions,
    progress: &Arc<Progress>,
) -> Result<BootstrapSummary, BootstrapError> {
    let (summary, index) = bootstrap_keep(config, options, progress).await?;
    // Freeing a large index takes a while: off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(index)).await;
    Ok(summary)
}

/// [`bootstrap`], also handing back the index it checkpointed (equal to what loading that
/// checkpoint gives), so that streaming can start without reading it back from disk.
pub async fn bootstrap_keep(
    config: &Config,
    options: &BootstrapOptions,
    progress: &Arc<Progress>,
) -> Result<(BootstrapSummary, Index), BootstrapError> {
    bootstrap_serving(config, options, progress, |_| ()).await
}

/// [`bootstrap_keep`], handing `complete` a snapshot of the finished index (its cursor at the
/// consistent point) before the checkpoint is written: it answers queries as SQL does at that
/// point while the checkpoint is made durable. Nothing streams until the marker is written.
pub async fn bootstrap_serving(
    config: &Config,
    options: &BootstrapOptions,
    progress: &Arc<Progress>,
    complete: impl FnOnce(Snapshot) + Send,
) -> Result<(BootstrapSummary, Index), BootstrapError> {
    let started = Instant::now();
    // Small pages until the checkpoint is written (see [`crate::index::huge_pages`]).
    let _small_pages = crate::index::huge_pages::NoHugePages::new();
    let translator = Translator::new(config)?;
    let conn = ConnInfo::parse(&config.postgres.url)?;
    let state = marker::state(&config.storage.data_dir)?;
    if let DataDir::Complete(m) = &state
        && !options.force
    {
        return Err(BootstrapError::AlreadyBootstrapped {
            data_dir: config.storage.data_dir.clone(),
            slot: m.slot.clone(),
            consistent_point: m.consistent_point,
        });
    }
    progress.set_phase("checking the publication and tables");
    let control = connect(&conn).await?;
    let mut plans = catalog::plan(&control, config, &translator).await?;
    start_over(&control, config, &state, options.force).await?;
    progress.set_phase("creating the slot and its snapshot");
    let (sessions, consistent_point) =
        open_sessions(&conn, config, options.connections.max(1), &mut plans).await?;
    let plans = Arc::new(plans);
    let (mut index, translate, rows) = load(config, options, progress, &sessions, &plans).await?;
    for s in &sessions {
        // Read-only: ending the transaction only releases the snapshot.
        let _ = s.client.batch_execute("COMMIT").await;
    }
    if !config.schema().joins.is_empty() {
        progress.set_phase("completing the joins");
        index = tokio::task::spawn_blocking(move || {
            index.finish_joins();
            index
        })
        .await
        .map_err(|_| BootstrapError::Panicked("completing the joins"))?;
    }
    progress.set_phase("writing the checkpoint");
    let alive = index.alive_count();
    let index = commit(config, index, consistent_point, rows, complete).await?;
    progress.set_phase("done");
    progress.finish();
    let report = progress.report();
    let summary = BootstrapSummary {
        consistent_point,
        rows,
        alive,
        phases: report.phases,
        tables: report.tables,
        translate,
        elapsed: started.elapsed(),
    };
    info!(
        rows,
        alive,
        consistent_point = %consistent_point,
        secs = summary.elapsed.as_secs_f64(),
        "bootstrap complete"
    );
    Ok((summary, index))
}

/// Starts over: drops the slots this directory owns (the configured one only with `force`, or
/// when an unfinished or discarded bootstrap of this directory made it), wipes the index and
/// WAL, and writes the intent naming the slot about to be created.
async fn start_over(
    control: &Client,
    config: &Config,
    state: &DataDir,
    force: bool,
) -> Result<(), BootstrapError> {
    let data_dir = &config.storage.data_dir;
    let slot = &config.postgres.slot;
    let mut ours: Vec<String> = Vec::new();
    match state {
        DataDir::Empty => {
            if snapshot::slot_state(control, slot).await?.is_some() {
                if !force {
                    return Err(BootstrapError::SlotExists {
                        slot: slot.clone(),
                        data_dir: data_dir.clone(),
                    });
                }
                ours.push(slot.clone());
            }
        }
        DataDir::Incomplete { slot: named } => {
            warn!(
                data_dir = %data_dir.display(),
                "an unfinished bootstrap was found; dropping its slot and starting over"
            );
            ours.extend(named.iter().cloned());
            ours.push(slot.clone());
        }
        DataDir::Complete(m) => {
            warn!(data_dir = %data_dir.display(), "--force: discarding the complete index");
            ours.push(m.slot.clone());
            ours.push(slot.clone());
        }
    }
    ours.sort();
    ours.dedup();
    for s in &ours {
        if snapshot::drop_slot(control, s).await? {
            info!(slot = %s, "dropped the stale replication slot");
        }
    }
    marker::wipe(data_dir)?;
    marker::write_intent(data_dir, slot)?;
    Ok(())
}

/// Creates the slot with its exported snapshot, opens `n` COPY sessions that import it,
/// measures the tables in it, and releases the exporting session. Returns the sessions and the
/// slot's consistent point.
async fn open_sessions(
    conn: &ConnInfo,
    config: &Config,
    n: usize,
    plans: &mut [catalog::TablePlan],
) -> Result<(Vec<session::CopySession>, Lsn), BootstrapError> {
    let slot = &config.postgres.slot;
    let exported = snapshot::create(conn, slot, &config.postgres.publication).await?;
    info!(
        slot = %slot,
        consistent_point = %exported.consistent_point,
        snapshot = %exported.snapshot,
        "created the replication slot"
    );
    let mut sessions = Vec::with_capacity(n);
    let import = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
        exported.snapshot.replace('\'', "''")
    );
    for i in 0..n {
        let session = session::CopySession::open(conn, format!("pgroar-copy-{i}")).await?;
        session
            .client
            .batch_execute(&import)
            .await
            .map_err(|source| BootstrapError::Sql {
                what: "importing the snapshot",
                source,
            })?;
        sessions.push(session);
    }
    catalog::measure(&sessions[0].client, plans).await?;
    let consistent_point = exported.consistent_point;
    exported.release().await?;
    Ok((sessions, consistent_point))
}

/// Copies every table into a new index: the direct and join tables in bulk and merged, then
/// the fan-out tables (in bulk against a snapshot of that index when no fan-out writes what a
/// query reads, else applied in order). Returns the index, the translator's counters and the
/// rows copied.
async fn load(
    config: &Config,
    options: &BootstrapOptions,
    progress: &Arc<Progress>,
    sessions: &[session::CopySession],
    plans: &Arc<Vec<catalog::TablePlan>>,
) -> Result<(Index, TranslateStats, u64), BootstrapError> {
    let bulk: Vec<usize> = (0..plans.len()).filter(|&i| !plans[i].fan_out).collect();
    let fan: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].fan_out).collect();
    let bulk_jobs = catalog::jobs(plans, &bulk, options.chunk_pages);
    let fan_jobs = catalog::jobs(plans, &fan, options.chunk_pages);
    let tables: Vec<Arc<TableProgress>> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let jobs = bulk_jobs
                .iter()
                .chain(&fan_jobs)
                .filter(|j| j.table == i)
                .count() as u64;
            Arc::new(TableProgress::new(p.display(), p.pages, p.est_rows, jobs))
        })
        .collect();
    progress.set_tables(tables.clone());
    let dump = Dump {
        sessions,
        plans,
        tables: &tables,
        config,
        workers: options.workers,
    };
    let mut translate = TranslateStats::default();
    let mut rows = 0;
    progress.set_phase("copying tables");
    let acc = dump
        .bulk(bulk_jobs, None, &mut translate, &mut rows)
        .await?;
    progress.set_phase("merging bitmaps");
    let mut index = merge(Index::new(config.schema()), acc).await?;
    if fan.is_empty() {
        return Ok((index, translate, rows));
    }
    progress.set_phase("copying fan-out tables");
    if fan_out_in_bulk(config) {
        let snapshot = Some(index.snapshot());
        let acc = dump
            .bulk(fan_jobs, snapshot, &mut translate, &mut rows)
            .await?;
        progress.set_phase("merging fan-out values");
        index = merge(index, acc).await?;
    } else {
        index = dump
            .apply(index, fan_jobs, &mut translate, &mut rows)
            .await?;
    }
    Ok((index, translate, rows))
}

/// Sets the index's cursor at the consistent point, hands its snapshot to `complete`, writes
/// its checkpoint, then the marker (the commit point of the bootstrap).
async fn commit(
    config: &Config,
    mut index: Index,
    consistent_point: Lsn,
    rows: u64,
    complete: impl FnOnce(Snapshot),
) -> Result<Index, BootstrapError> {
    // The snapshot holds every transaction that committed before the consistent point; one
    // whose commit record starts exactly at it is streamed. The cursor says "everything
    // committed at or before this LSN is here", so it is one byte below the point.
    index.set_applied(WalKey::end_of(Lsn(consistent_point.0.saturating_sub(1))));
    let data_dir = &config.storage.data_dir;
    let index_dir = data_dir.join("index");
    let snapshot = index.snapshot();
    complete(snapshot.clone());
    tokio::task::spawn_blocking(move || {
        crate::failpoint::hit("bootstrap-checkpoint");
        std::fs::create_dir_all(&index_dir).map_err(|source| BootstrapError::Io {
            what: "creating the index directory",
            source,
        })?;
        snapshot.write_checkpoint(&index_dir)?;
        Ok::<_, BootstrapError>(())
    })
    .await
    .map_err(|_| BootstrapError::Panicked("the checkpoint writer"))??;
    crate::failpoint::crash("bootstrap-before-marker");
    marker::write_marker(
        data_dir,
        &Marker {
            slot: config.postgres.slot.clone(),
            consistent_point,
            rows,
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
    )?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(fan_out: &str) -> Config {
        let text = format!(
            r#"
[postgres]
url = "postgres://localhost/db"
publication = "p"
slot = "s"
[storage]
data_dir = "/tmp/unused"
[index]
filters = [ {{ name = "postId", kind = "single" }}, {{ name = "hidden", kind = "bool" }} ]
sorts = [ {{ name = "publishedAt", bits = 32 }} ]
[[sources]]
table = "Image"
sets_alive = true
track_fields = ["postId"]
[[sources]]
table = "Post"
{fan_out}
"#
        );
        Config::from_toml_str(&text, std::iter::empty()).unwrap()
    }

    #[test]
    fn fan_outs_load_in_bulk_unless_one_writes_what_a_query_reads() {
        let reads_other = r#"query = "postId eq {id}"
track_fields = ["{publishedAt} as publishedAt", "{hidden} as hidden"]"#;
        assert!(fan_out_in_bulk(&config(reads_other)));
        let reads_own = r#"query = "postId eq {id}"
track_fields = ["{publishedAt} as publishedAt", "{other} as postId"]
join = false"#;
        assert!(!fan_out_in_bulk(&config(reads_own)));
    }
}
