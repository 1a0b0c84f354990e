//! The replication source: the connection to Postgres and the stream loop that writes every
//! committed row change, translated into ops, to our WAL.
//!
//! # Guarantees
//!
//! * **Acknowledged only when durable.** Postgres is told "flushed up to L" (via
//!   `update_applied_lsn`) only with L one byte past the LSN [`Wal::sync`] returned ([`ack`]):
//!   our WAL holds every transaction committed at or before that LSN, which is everything
//!   before L (no record starts one byte after another). Acknowledging exactly the server's
//!   position matters: a shutting-down walsender exits only once the flush position it is told
//!   equals what it sent, so an acknowledgement one byte short would hang a fast shutdown. Each session starts with `ack_lsn` = our durable LSN, never the start
//!   position of some earlier, undurable attempt.
//! * **No gap, no duplicate.** Streaming starts at our durable LSN; a transaction whose commit
//!   LSN is at or below the last Commit/Mark already in the WAL is skipped whole (Postgres
//!   re-sends the transaction committed exactly at the start position). The WAL refuses
//!   non-increasing LSNs, so a duplicate cannot slip through.
//! * **Group commit.** Commits fill the WAL's buffer; one fsync covers all of them. It starts
//!   between transactions once `group_commit_max_ms` has passed since the first unsynced commit
//!   (default 0: at once), or as soon as no further event is immediately available, and runs in
//!   the background ([`crate::wal::PendingSync`]) while the stream goes on: one at a time, the
//!   next covering whatever arrived meanwhile; when `group_commit_max_bytes` are pending the
//!   stream waits for it. Its durable position is published and acknowledged when it ends, so
//!   a commit waits at most for the fsync running when it arrived and its own.
//! * **Read-your-writes.** At an idle group commit, a Mark just below the last transaction's
//!   end LSN goes into the same fsync: every transaction committed before that end has been
//!   received, so a query waiting for `pg_current_wal_lsn()` read after a commit is answered
//!   without waiting for a keepalive. A sync fired by the delay or size bound writes no Mark of
//!   its own; but while a query waits ([`Status::read_demand`]) for a position the WAL does not
//!   prove complete, the loop marks the best complete position it knows (that commit end, or the
//!   last keepalive's WAL end ahead of the Mark interval) and syncs it at once. Without waiting
//!   queries nothing extra is written.
//! * **Idle slots advance.** A keepalive's `wal_end` received while no transaction is open is
//!   written as a Mark one byte below it (at most once per `keepalive_mark_interval`), synced and
//!   acknowledged, so an idle or filtered publication never pins the server's WAL.
//! * **Positions mean the same everywhere.** A Commit or Mark at `m` in the WAL means "every
//!   transaction committed at or before `m` is here". Positions the server reports (a
//!   keepalive's `wal_end`, a new slot's consistent point) are where the next WAL record starts,
//!   and a transaction may still commit exactly there; so they are marked one byte below, and
//!   the slot's `confirmed_flush_lsn` may be one byte above our durable LSN without anything
//!   being lost.
//! * **Values in binary form where that is exact.** Sessions ask pgoutput for binary values
//!   (less work for the walsender's output functions and for our parsers). A Relation whose
//!   columns read by the index include a type without a binary decoder here (numeric, a
//!   domain, an array, a type newer than the session's list of enums) ends the session before
//!   any of its rows is read, and the source asks for text from then on; nothing is lost (the
//!   session ends like a stop: synced, acknowledged, resumed from the durable LSN).
//! * **Big transactions stream.** Each row's ops go to the WAL as they arrive; nothing holds a
//!   transaction in memory.
//! * **Faults.** A broken connection, a server restart, `wal_sender_timeout`, a connection
//!   silent for the receive timeout (a heartbeat asks for traffic half-way, see `heartbeat`)
//!   or a connect taking longer than `connect_timeout` aborts the open transaction in the WAL
//!   (Postgres re-sends it whole), syncs what was committed, and reconnects with capped
//!   exponential backoff, logging each attempt. What a reconnect cannot cure (a lost or
//!   overtaken slot, an undecodable message, a tracked column dropped or retyped — also while
//!   pgroar was stopped, see [`relations`] — a source table renamed or gone from the
//!   publication, a WAL failure) stops the source with an error saying so.
//!
//! # Crash windows
//!
//! Killed at any moment, the source leaves at worst an unsynced WAL tail that recovery cuts
//! back to the last whole transaction; Postgres was never told about it and re-sends it. A crash
//! between creating the slot and syncing its consistent point as a Mark is covered by the
//! slot-creation intent file (see [`slot`]): the next start adopts the slot.

pub mod auth_probe;
pub mod catalog;
pub mod conninfo;
mod error;
mod heartbeat;
pub mod relations;
pub mod slot;
pub mod sql;
mod stream;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pgwire_replication::ReplicationClient;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::Lsn;
use crate::config::Config;
use crate::decode::{Message, Oid, RelationCache, RelationChange};
use crate::ops::EntityOps;
use crate::status::{PhaseTracker, Status};
use crate::translate::{TranslateError, TranslateStats, Translator};
use crate::wal::Wal;

pub use conninfo::{
    ChannelBinding, ConnInfo, ConnInfoError, DEFAULT_CONNECT_TIMEOUT, NetOptions, PINNED_OPTIONS,
    SslMode,
};
pub use error::SourceError;
pub use heartbeat::HEARTBEAT_PREFIX;
pub use slot::SlotCheck;
pub use sql::{SqlConnectError, SqlConnection, connect_sql, connect_sql_parts};

/// Turns row changes into ops: the calls the stream loop makes. [`Translator`] is the real one;
/// tests can put a fault-injecting one in its place.
pub trait Translate: Send + 'static {
    /// What the translator refuses (configuration and schema problems, never bad data).
    type Error: std::error::Error + Send + Sync + 'static;

    /// A Relation message arrived (a new or changed table).
    fn relation(&mut self, change: &RelationChange) -> Result<(), Self::Error>;

    /// Insert/Update/Delete/Truncate → ops appended to `out` (other messages: nothing).
    fn change(
        &mut self,
        msg: &Message,
        relations: &RelationCache,
        out: &mut Vec<EntityOps>,
    ) -> Result<(), Self::Error>;

    /// Counters of rows translated and bad data skipped, as totals (published with every group
    /// commit). None by default.
    fn stats(&self) -> TranslateStats {
        TranslateStats::default()
    }

    /// Whether the columns read from relation `oid` (bound by [`Translate::relation`]) can be
    /// sent in binary form; `enum_types` are the server's enum type OIDs. `false` by default:
    /// the stream then runs in text mode.
    fn reads_binary(&self, oid: Oid, enum_types: &HashSet<u32>) -> bool {
        let _ = (oid, enum_types);
        false
    }
}

impl Translate for Translator {
    type Error = TranslateError;

    fn relation(&mut self, change: &RelationChange) -> Result<(), TranslateError> {
        Translator::relation(self, change)
    }

    fn change(
        &mut self,
        msg: &Message,
        relations: &RelationCache,
        out: &mut Vec<EntityOps>,
    ) -> Result<(), TranslateError> {
        Translator::change(self, msg, relations, out)
    }

    fn stats(&self) -> TranslateStats {
        Translator::stats(self)
    }

    fn reads_binary(&self, oid: Oid, enum_types: &HashSet<u32>) -> bool {
        Translator::reads_binary(self, oid, enum_types)
    }
}

/// Timing of the source.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Longest the first unsynced commit waits before a group commit's fsync starts.
    pub group_commit_max_delay: Duration,
    /// Write a Mark at the last commit's end at an idle group commit (read-your-writes without
    /// waiting for a keepalive; default on). Off, the WAL can end exactly at a commit, which
    /// the tests of the re-sent transaction after a restart need.
    pub mark_idle_commits: bool,
    /// Pending bytes after which a group commit is fsynced at once.
    pub group_commit_max_bytes: u64,
    /// How often the replication client sends standby status (our acknowledgements).
    pub status_interval: Duration,
    /// Least time between two keepalive Marks (each costs an fsync).
    pub keepalive_mark_interval: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// A session that streamed this long resets the backoff.
    pub stable_after: Duration,
    /// Silence after which the stream is presumed dead (a heartbeat asks for traffic half-way);
    /// `None`: twice the server's `wal_sender_timeout`, read at each connect.
    pub receive_timeout: Option<Duration>,
    /// Source WAL (LSN bytes) durable but not yet applied above which the stream pauses.
    pub max_backlog_bytes: u64,
}

impl SourceOptions {
    /// Default status interval: one acknowledgement a second keeps the slot close behind.
    pub const DEFAULT_STATUS_INTERVAL: Duration =
        Duration::from_millis(crate::config::DEFAULT_STATUS_INTERVAL_MS);
    /// Default first reconnect delay.
    pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(200);
    /// Default reconnect delay cap.
    pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

    /// The defaults, with the group commit bounds of `config`'s `[wal]` and its
    /// `postgres.status_interval_ms` (which also paces keepalive Marks: a Mark is worth its
    /// fsync only if an acknowledgement can carry it).
    pub fn from_config(config: &Config) -> SourceOptions {
        let status_interval = config.postgres.status_interval();
        SourceOptions {
            group_commit_max_delay: config.wal.group_commit_max_delay(),
            group_commit_max_bytes: config.wal.group_commit_max_bytes,
            status_interval,
            keepalive_mark_interval: status_interval,
            receive_timeout: config
                .postgres
                .receive_timeout_ms
                .map(Duration::from_millis),
            max_backlog_bytes: config.wal.max_backlog_bytes,
            ..SourceOptions::default()
        }
    }
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            group_commit_max_delay: Duration::from_millis(
                crate::config::DEFAULT_GROUP_COMMIT_MAX_MS,
            ),
            group_commit_max_bytes: crate::config::DEFAULT_GROUP_COMMIT_MAX_BYTES,
            mark_idle_commits: true,
            status_interval: Self::DEFAULT_STATUS_INTERVAL,
            keepalive_mark_interval: Self::DEFAULT_STATUS_INTERVAL,
            backoff_initial: Self::DEFAULT_BACKOFF_INITIAL,
            backoff_max: Self::DEFAULT_BACKOFF_MAX,
            stable_after: Duration::from_secs(30),
            receive_timeout: None,
            max_backlog_bytes: crate::config::DEFAULT_MAX_BACKLOG_BYTES,
        }
    }
}

/// The transaction being received.
#[derive(Copy, Clone, Debug)]
struct OpenTxn {
    lsn: Lsn,
    /// Already in the WAL: its changes are dropped.
    skip: bool,
}

/// The replication source: connects, checks, streams into the WAL, reconnects.
pub struct Source<T: Translate> {
    conn: ConnInfo,
    slot: String,
    publication: String,
    data_dir: PathBuf,
    wal: Arc<Mutex<Wal>>,
    translator: T,
    relations: RelationCache,
    status: Arc<Status>,
    phase: Arc<PhaseTracker>,
    options: SourceOptions,
    /// The slot may be created: the data directory has never streamed.
    may_create: bool,
    /// A slot ahead of the empty WAL may be adopted: this data directory created it and crashed.
    may_adopt: bool,
    sessions: u64,
    txn: Option<OpenTxn>,
    /// When the oldest Commit/Mark not yet fsynced was appended.
    unsynced_since: Option<Instant>,
    /// The group commit whose fsync runs in the background (at most one; see `stream`).
    in_flight: Option<tokio::task::JoinHandle<crate::wal::SyncOutcome>>,
    /// A Mark position (one below a keepalive's WAL end) waiting for the mark interval.
    pending_mark: Option<Lsn>,
    /// When the last keepalive Mark was written (the rate limit's start at first).
    last_mark: Instant,
    /// The end LSN of the last transaction received, not yet marked.
    last_commit_end: Option<Lsn>,
    /// This session's receive timeout.
    receive_timeout: Duration,
    /// Since when the stream has been silent (the last event, or the end of our own last sync).
    silent_since: Instant,
    /// Whether this silence has had its heartbeat.
    heartbeat_sent: bool,
    /// The server pid of the current session, and of sessions given up on a silent connection
    /// (the server may keep them, and the slot, until its `wal_sender_timeout`).
    session_pid: Option<i32>,
    abandoned_pids: Vec<i32>,
    /// Whether sessions ask for values in binary form (until a relation reads a column whose
    /// binary form is not decoded here: then text, for the rest of the process).
    binary: bool,
    /// The server's enum type OIDs, read when a session opens (their binary form is the label).
    enum_types: HashSet<u32>,
    /// The bytes of `<data_dir>/relations` as last read or written.
    relations_written: Vec<u8>,
    /// Faults the catalog watcher found (a source table gone from the publication, a replica
    /// identity that no longer works): each stops the source.
    catalog: Option<watch::Receiver<Option<String>>>,
    /// The index's applied cursor, for the backlog bound (`None`: unbounded).
    applied: Option<watch::Receiver<crate::WalKey>>,
    /// With `[replication]`: what the stream has acknowledged; the slot is acknowledged no
    /// further (`None`: up to the durable WAL).
    ack_ceiling: Option<Arc<std::sync::atomic::AtomicU64>>,
    scratch: Vec<EntityOps>,
}

/// The prefix of the logical messages that carry `POST /ops` batches to the source reading
/// `slot` (`pg_logical_emit_message`): other pgroar instances on the database ignore them.
pub fn ops_message_prefix(slot: &str) -> String {
    format!("pgroar.ops:{slot}")
}

/// Locks the WAL; a panic elsewhere while holding it leaves a WAL whose own state is still
/// consistent (every method either completes or marks it failed).
pub(crate) fn lock(wal: &Mutex<Wal>) -> MutexGuard<'_, Wal> {
    wal.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn to_wire(lsn: Lsn) -> pgwire_replication::Lsn {
    pgwire_replication::Lsn(lsn.0)
}

/// What is acknowledged for a durable LSN: everything before `durable + 1` is in our WAL.
pub(crate) fn ack(durable: Lsn) -> Lsn {
    if durable == Lsn::ZERO {
        durable
    } else {
        Lsn(durable.0.saturating_add(1))
    }
}

pub(crate) fn from_wire(lsn: pgwire_replication::Lsn) -> Lsn {
    Lsn(lsn.0)
}

/// `error: cause: cause…`, for logs and the status's last error.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

enum Connected {
    Streaming(ReplicationClient),
    SlotCreated,
}

/// A session opened within the connect timeout: what the checks found.
enum Opened {
    Ready(ReplicationClient, Lsn),
    Missing(ReplicationClient),
    Orphaned(Lsn),
}

/// Longest wait between two attempts on a slot another session still holds.
const SLOT_ACTIVE_RETRY_MAX: Duration = Duration::from_secs(2);

/// The receive timeout when the server's `wal_sender_timeout` is 0 (off).
pub const DEFAULT_RECEIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The least receive timeout derived from the server (a `wal_sender_timeout` of a few
/// milliseconds would otherwise make every pause a reconnect).
const MIN_RECEIVE_TIMEOUT: Duration = Duration::from_secs(2);

impl<T: Translate> Source<T> {
    /// A source for `config`'s `[postgres]`, writing to `wal` (shared with the checkpointer,
    /// which removes segments). The slot may be created only if the WAL has never been written.
    pub fn new(
        config: &Config,
        wal: Arc<Mutex<Wal>>,
        translator: T,
        status: Arc<Status>,
        phase: Arc<PhaseTracker>,
        options: SourceOptions,
    ) -> Result<Source<T>, SourceError> {
        let conn = ConnInfo::parse(&config.postgres.url)?;
        if conn.channel_binding == ChannelBinding::Require {
            // Fail closed: the replication transport's SCRAM does not bind to the TLS channel,
            // so `require` could not be honoured on the connection that matters most.
            return Err(ConnInfoError::BadValue {
                key: "channel_binding",
                value: "require".into(),
                rule: "the replication connection cannot bind SCRAM to the TLS channel; use \
                       sslmode=verify-full (the server is authenticated by its certificate) \
                       with channel_binding=prefer",
            }
            .into());
        }
        let may_create = lock(&wal).durable_lsn() == Lsn::ZERO;
        let data_dir = config.storage.data_dir.clone();
        let may_adopt = may_create && slot::intent_names(&data_dir, &config.postgres.slot);
        // What the last run saw: the first description of each table is compared with it.
        let mut seen = RelationCache::new();
        for r in relations::load(&data_dir)? {
            seen.insert(r);
        }
        let relations_written = {
            let mut rs: Vec<&crate::decode::Relation> = seen.iter().map(|r| &**r).collect();
            rs.sort_unstable_by_key(|r| r.oid);
            if rs.is_empty() {
                Vec::new()
            } else {
                relations::encode(&rs)
            }
        };
        Ok(Source {
            conn,
            slot: config.postgres.slot.clone(),
            publication: config.postgres.publication.clone(),
            data_dir,
            wal,
            translator,
            relations: seen,
            status,
            phase,
            options,
            may_create,
            may_adopt,
            sessions: 0,
            txn: None,
            unsynced_since: None,
            in_flight: None,
            binary: true,
            enum_types: HashSet::new(),
            pending_mark: None,
            // The rate limit starts now: the first keepalive Mark comes at most one interval
            // after start.
            last_mark: Instant::now(),
            last_commit_end: None,
            receive_timeout: DEFAULT_RECEIVE_TIMEOUT,
            silent_since: Instant::now(),
            heartbeat_sent: false,
            session_pid: None,
            abandoned_pids: Vec::new(),
            relations_written,
            catalog: None,
            applied: None,
            ack_ceiling: None,
            scratch: Vec::new(),
        })
    }

    /// Stops the source with [`SourceError::Catalog`] when `faults` carries a message.
    pub fn watch_catalog(&mut self, faults: watch::Receiver<Option<String>>) {
        self.catalog = Some(faults);
    }

    /// Bounds the backlog by the index's applied cursor (see [`SourceOptions::max_backlog_bytes`]).
    pub fn watch_applied(&mut self, applied: watch::Receiver<crate::WalKey>) {
        self.applied = Some(applied);
    }

    /// Never creates (or adopts) the slot: a standby or a leader of a stream streams only from
    /// the slot its history came from, and a missing one is an error naming the fix.
    pub fn never_create_slot(&mut self) {
        self.may_create = false;
        self.may_adopt = false;
    }

    /// Acknowledges the slot no further than `ceiling` (what the replication stream holds).
    pub fn ack_ceiling(&mut self, ceiling: Arc<std::sync::atomic::AtomicU64>) {
        self.ack_ceiling = Some(ceiling);
    }

    /// What is acknowledged to the server for a durable LSN (see [`ack`]), held at the
    /// stream's ceiling with `[replication]`.
    pub(crate) fn ack_of(&self, durable: Lsn) -> Lsn {
        let ceiling = self
            .ack_ceiling
            .as_ref()
            .map_or(u64::MAX, |c| c.load(std::sync::atomic::Ordering::SeqCst));
        ack(Lsn(durable.0.min(ceiling)))
    }

    /// A fault the catalog watcher reported, if any (no waiting).
    fn catalog_fault(&self) -> Option<SourceError> {
        let rx = self.catalog.as_ref()?;
        rx.borrow().clone().map(SourceError::Catalog)
    }

    /// Streams until `stop` turns true (then syncs, acknowledges and returns `Ok`) or a fault a
    /// reconnect cannot cure happens (returned). Transient faults reconnect with backoff.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), SourceError> {
        let mut failures = 0u32;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            if let Some(fault) = self.catalog_fault() {
                return Err(fault);
            }
            let err = match self.connect().await {
                Ok(Connected::SlotCreated) => continue,
                Ok(Connected::Streaming(client)) => {
                    let started = Instant::now();
                    match self.stream(client, &mut stop).await? {
                        None => return Ok(()),
                        Some(SourceError::TextValuesNeeded { .. }) => {
                            // Not a reconnect: the next session is the same one in text form.
                            self.sessions = self.sessions.saturating_sub(1);
                            continue;
                        }
                        Some(e) => {
                            if started.elapsed() >= self.options.stable_after {
                                failures = 0;
                            }
                            e
                        }
                    }
                }
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            failures = failures.saturating_add(1);
            let mut delay = backoff(&self.options, failures);
            if matches!(err, SourceError::SlotActive { .. }) {
                // A slot held by a session about to end (ours, abandoned): take it promptly.
                delay = delay.min(SLOT_ACTIVE_RETRY_MAX);
            }
            let message = error_chain(&err);
            warn!(
                attempt = failures,
                retry_in_ms = delay.as_millis() as u64,
                error = %message,
                "replication stream interrupted; reconnecting"
            );
            self.status.set_error(&message);
            self.phase.set_connected(&self.status, false);
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Opens a session within `connect_timeout`, then creates or adopts the slot (outside the
    /// timeout: creating a slot waits for the transactions running on the server) or starts
    /// replication at our durable LSN.
    async fn connect(&mut self) -> Result<Connected, SourceError> {
        let durable = lock(&self.wal).durable_lsn();
        let opened = match self.conn.net.connect_timeout {
            Some(after) => tokio::time::timeout(after, self.open(durable))
                .await
                .map_err(|_| SourceError::ConnectTimeout {
                    target: self.conn.display(),
                    after,
                })??,
            None => self.open(durable).await?,
        };
        match opened {
            Opened::Missing(mut client) => {
                // Intent first: a crash after the slot exists but before its consistent point
                // is durable must not look like a slot ahead of the WAL.
                slot::write_intent(&self.data_dir, &self.slot)?;
                let created = slot::create(&mut client, &self.slot).await;
                drop(client);
                let consistent_point = match created {
                    Ok(lsn) => lsn,
                    Err(e) => {
                        slot::remove_intent(&self.data_dir)?;
                        return Err(e);
                    }
                };
                info!(slot = %self.slot, %consistent_point, "created the replication slot");
                self.adopt(consistent_point).await?;
                Ok(Connected::SlotCreated)
            }
            Opened::Orphaned(confirmed) => {
                info!(
                    slot = %self.slot,
                    consistent_point = %confirmed,
                    "adopting the replication slot created just before a crash"
                );
                self.adopt(confirmed).await?;
                Ok(Connected::SlotCreated)
            }
            Opened::Ready(client, confirmed) => {
                info!(
                    slot = %self.slot,
                    publication = %self.publication,
                    from = %durable,
                    slot_confirmed = %confirmed,
                    values = if self.binary { "binary" } else { "text" },
                    receive_timeout_ms = self.receive_timeout.as_millis() as u64,
                    "streaming"
                );
                Ok(Connected::Streaming(client))
            }
        }
    }

    /// Connects a gated session, runs the checks, reads the server's `wal_sender_timeout` and,
    /// when the slot is ready, starts replication at `durable`.
    async fn open(&mut self, durable: Lsn) -> Result<Opened, SourceError> {
        let cfg = self
            .conn
            .replication_config(&self.slot, &self.publication)
            .with_binary(self.binary)
            .with_start_lsn(to_wire(durable))
            .with_ack_lsn(to_wire(self.ack_of(durable)))
            .with_status_interval(self.options.status_interval)
            .with_wakeup_interval(self.options.status_interval.max(Duration::from_secs(1)));
        let target = self.conn.display();
        let connect_err = |source| SourceError::Connect {
            target: target.clone(),
            source,
        };
        auth_probe::refuse_cleartext(&self.conn, true).await?;
        let mut client = ReplicationClient::connect_gated(cfg)
            .await
            .map_err(connect_err)?;
        let input = slot::CheckInput {
            slot: &self.slot,
            publication: &self.publication,
            durable,
            may_create: self.may_create,
            may_adopt: self.may_adopt,
            data_dir: &self.data_dir,
        };
        let checked = match slot::check(&mut client, &input).await {
            Err(SourceError::SlotActive { pid, .. }) if self.abandoned_pids.contains(&pid) => {
                // Our own earlier session, given up on a silent connection: the server has not
                // noticed yet. End it; the slot is free once it exits (the next attempt).
                if slot::terminate(&mut client, pid).await? {
                    warn!(pid, slot = %self.slot, "ended our abandoned replication session");
                    self.abandoned_pids.retain(|&p| p != pid);
                } else {
                    warn!(
                        pid,
                        slot = %self.slot,
                        "our abandoned replication session is blocked writing to the dead \
                         connection; the server's wal_sender_timeout will end it"
                    );
                }
                return Err(SourceError::SlotActive {
                    slot: self.slot.clone(),
                    pid,
                });
            }
            checked => checked?,
        };
        match checked {
            SlotCheck::Missing => Ok(Opened::Missing(client)),
            SlotCheck::Orphaned { confirmed } => Ok(Opened::Orphaned(confirmed)),
            SlotCheck::Ready { confirmed } => {
                let facts = slot::session_facts(&mut client).await?;
                self.receive_timeout = receive_timeout(
                    self.options.receive_timeout,
                    facts.sender_timeout,
                    &self.conn.net,
                );
                self.session_pid = Some(facts.pid);
                self.enum_types = facts.enum_types;
                client.start().await.map_err(connect_err)?;
                client.wait_started().await.map_err(connect_err)?;
                Ok(Opened::Ready(client, confirmed))
            }
        }
    }

    /// Makes `consistent_point` the durable start of a fresh WAL, then forgets the intent. The
    /// Mark goes one byte below it: a transaction committing exactly at the consistent point is
    /// not in the slot's snapshot and is streamed (see the module note).
    async fn adopt(&mut self, consistent_point: Lsn) -> Result<(), SourceError> {
        self.mark_and_sync(Lsn(consistent_point.0.saturating_sub(1)))
            .await?;
        self.may_create = false;
        self.may_adopt = false;
        slot::remove_intent(&self.data_dir)?;
        Ok(())
    }

    /// Writes `lsn` as a Mark (if above the WAL's last LSN) and syncs.
    async fn mark_and_sync(&mut self, lsn: Lsn) -> Result<Lsn, SourceError> {
        {
            let mut wal = lock(&self.wal);
            if lsn > wal.written_lsn() {
                wal.mark(lsn)?;
            }
        }
        self.status.set_received(lsn);
        self.sync_wal().await
    }

    /// Fsyncs the WAL on the blocking pool; returns the durable LSN. The translator's counters
    /// are published on the way (a few atomic stores per group commit).
    async fn sync_wal(&mut self) -> Result<Lsn, SourceError> {
        self.status.set_totals(self.translator.stats().counts());
        // A background fsync finishes first: durable positions are published in order.
        self.finish_in_flight().await?;
        let wal = Arc::clone(&self.wal);
        let durable = tokio::task::spawn_blocking(move || lock(&wal).sync())
            .await
            .map_err(|e| SourceError::Task(e.to_string()))??;
        self.unsynced_since = None;
        self.status.set_durable(durable);
        Ok(durable)
    }

    /// Starts a group commit whose fsync runs on the blocking pool while the stream goes on
    /// (none may be running). Its durable position is published and acknowledged when it ends
    /// ([`Source::finish_in_flight`]).
    fn start_sync(&mut self) -> Result<(), SourceError> {
        debug_assert!(self.in_flight.is_none());
        self.status.set_totals(self.translator.stats().counts());
        let pending = lock(&self.wal).begin_sync()?;
        self.unsynced_since = None;
        self.in_flight = Some(tokio::task::spawn_blocking(move || pending.run()));
        Ok(())
    }

    /// Waits for the background fsync, if any, and publishes what it made durable; returns the
    /// durable LSN then (`None`: there was none).
    async fn finish_in_flight(&mut self) -> Result<Option<Lsn>, SourceError> {
        let Some(handle) = self.in_flight.take() else {
            return Ok(None);
        };
        let outcome = handle.await.map_err(|e| SourceError::Task(e.to_string()))?;
        self.publish_synced(outcome).map(Some)
    }

    /// Publishes a finished background fsync's durable position.
    fn publish_synced(&mut self, outcome: crate::wal::SyncOutcome) -> Result<Lsn, SourceError> {
        let durable = lock(&self.wal).finish_sync(outcome)?;
        self.status.set_durable(durable);
        Ok(durable)
    }
}

/// The configured receive timeout, else twice `wal_sender_timeout` (at least
/// [`MIN_RECEIVE_TIMEOUT`]; [`DEFAULT_RECEIVE_TIMEOUT`] when it is off), bounded by the
/// connection string's `tcp_user_timeout` and keepalive cycle.
fn receive_timeout(
    configured: Option<Duration>,
    wal_sender_timeout: Duration,
    net: &NetOptions,
) -> Duration {
    let derived = if wal_sender_timeout.is_zero() {
        DEFAULT_RECEIVE_TIMEOUT
    } else {
        wal_sender_timeout
            .saturating_mul(2)
            .max(MIN_RECEIVE_TIMEOUT)
    };
    let chosen = configured.unwrap_or(derived);
    match net.dead_after() {
        Some(bound) => chosen.min(bound.max(MIN_RECEIVE_TIMEOUT)),
        None => chosen,
    }
}

/// `initial · 2^(n-1)`, capped.
fn backoff(options: &SourceOptions, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    options
        .backoff_initial
        .saturating_mul(factor)
        .min(options.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let o = SourceOptions {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..SourceOptions::default()
        };
        let d: Vec<u64> = (1..=6).map(|n| backoff(&o, n).as_millis() as u64).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&o, u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn receive_timeout_follows_the_server_and_the_connection_string() {
        let s = Duration::from_secs;
        let net = |url: &str| ConnInfo::parse_with_env(url, |_| None).unwrap().net;
        let plain = net("host=h");
        assert_eq!(receive_timeout(None, s(60), &plain), s(120));
        assert_eq!(
            receive_timeout(None, Duration::ZERO, &plain),
            DEFAULT_RECEIVE_TIMEOUT
        );
        assert_eq!(
            receive_timeout(None, Duration::from_millis(10), &plain),
            s(2)
        );
        assert_eq!(receive_timeout(Some(s(7)), s(60), &plain), s(7));
        let bounded = net("host=h tcp_user_timeout=20000");
        assert_eq!(receive_timeout(None, s(60), &bounded), s(20));
        let keepalive = net("host=h keepalives_idle=5 keepalives_interval=1 keepalives_count=3");
        assert_eq!(receive_timeout(Some(s(30)), s(60), &keepalive), s(8));
    }

    #[test]
    fn acknowledgements_cover_everything_before_the_next_byte() {
        assert_eq!(ack(Lsn::ZERO), Lsn::ZERO);
        assert_eq!(ack(Lsn(0x16B_3747)), Lsn(0x16B_3748));
    }
}
