//! The shared progress object the replication pipeline updates and the HTTP surface reads.
//!
//! [`Status`] is lock-free for its writers: every field is an atomic (or an `ArcSwap` for the
//! last error), so the WAL writer, the stream reader and the checkpointer can update it from
//! their own threads without ever waiting on a reader. Fields are independent: a reader may see
//! a new received LSN next to an old durable one, never a torn value. LSNs only move forward
//! (`fetch_max`), so a late or duplicated update cannot make a stage look as if it went back.
//!
//! Read-your-writes demand flows the other way ([`Status::read_demand`]): a query waiting for a
//! `min_lsn` registers it, and the replication source, which alone knows which positions are
//! complete, writes the position Mark that ends the wait as soon as it can.
//!
//! The applied LSN is not stored here: it is the applied cursor of the snapshot the sink last
//! published, which the server reads from the sink itself.
//!
//! [`History`] is the server's side: a sampler copies the ops counter and the server's WAL
//! position into short rings once a second, from which ops/s and the lag in seconds are derived
//! without the pipeline taking any lock.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

use super::demand::ReadDemand;
use crate::Lsn;
use crate::index::IndexStats;
use crate::translate::TranslateStats;

/// What the pipeline is doing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Phase {
    /// Loading the checkpoint, checking the slot; no stream yet.
    Starting = 0,
    /// Dump-then-stream bootstrap: copying tables into the index.
    Bootstrapping = 1,
    /// Replaying the WAL tail after a restart.
    Replaying = 2,
    /// Following the replication stream: the index is live.
    Streaming = 3,
    /// The connection dropped; retrying with backoff. Queries still answer from the last state.
    Reconnecting = 4,
    /// Shutting down.
    Stopping = 5,
}

impl Phase {
    /// Every phase, in declaration order.
    pub const ALL: [Phase; 6] = [
        Phase::Starting,
        Phase::Bootstrapping,
        Phase::Replaying,
        Phase::Streaming,
        Phase::Reconnecting,
        Phase::Stopping,
    ];

    /// The lower-case name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Bootstrapping => "bootstrapping",
            Phase::Replaying => "replaying",
            Phase::Streaming => "streaming",
            Phase::Reconnecting => "reconnecting",
            Phase::Stopping => "stopping",
        }
    }

    fn from_u8(v: u8) -> Phase {
        Phase::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(Phase::Starting)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last error the pipeline reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The error with its causes, as text.
    pub message: String,
    /// When it was reported.
    pub at: SystemTime,
}

/// Progress of the replication pipeline, shared (in an `Arc`) between the pipeline's threads
/// and the HTTP server. All setters are lock-free.
#[derive(Debug)]
pub struct Status {
    slot: String,
    publication: String,
    started: Instant,
    phase: AtomicU8,
    received: AtomicU64,
    durable: AtomicU64,
    checkpointed: AtomicU64,
    server_lsn: AtomicU64,
    /// Nanoseconds after `started` at which `server_lsn` was read, plus one; 0 = never.
    server_read_at: AtomicU64,
    ops_applied: AtomicU64,
    transactions: AtomicU64,
    reconnects: AtomicU64,
    index: [AtomicU64; BAD_DATA_KINDS.len()],
    translate: [AtomicU64; TRANSLATE_COUNTERS],
    read_demand: ReadDemand,
    last_error: ArcSwapOption<ErrorInfo>,
}

/// The bad-data counters of [`IndexStats`], by metric label.
pub(crate) const BAD_DATA_KINDS: [&str; 7] = [
    "skipped_id",
    "clamped_value",
    "bad_value",
    "unknown_field",
    "bad_query",
    "nested_query_op_set",
    "joined_field_write",
];

/// The translator's bad-data counters of [`TranslateStats`], by metric label (the same
/// `pgroar_bad_data_total` metric as the index writer's).
pub(crate) const TRANSLATE_BAD_DATA_KINDS: [&str; 3] =
    ["bad_slot_id", "eval_error", "unparsable_value"];

/// Cells of [`TranslateStats`] kept: rows, the bad-data kinds, truncates.
const TRANSLATE_COUNTERS: usize = 5;

fn translate_cells(s: &TranslateStats) -> [u64; TRANSLATE_COUNTERS] {
    [
        s.rows,
        s.bad_slot_ids,
        s.eval_errors,
        s.bad_values,
        s.truncates,
    ]
}

fn bad_data(s: &IndexStats) -> [u64; BAD_DATA_KINDS.len()] {
    [
        s.skipped_ids,
        s.clamped_values,
        s.bad_values,
        s.unknown_fields,
        s.bad_queries,
        s.nested_query_op_sets,
        s.joined_field_writes,
    ]
}

impl Status {
    /// A status for the pipeline streaming `publication` through `slot`, in phase `starting`.
    pub fn new(slot: impl Into<String>, publication: impl Into<String>) -> Status {
        Status {
            slot: slot.into(),
            publication: publication.into(),
            started: Instant::now(),
            phase: AtomicU8::new(Phase::Starting as u8),
            received: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            checkpointed: AtomicU64::new(0),
            server_lsn: AtomicU64::new(0),
            server_read_at: AtomicU64::new(0),
            ops_applied: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            index: Default::default(),
            translate: Default::default(),
            read_demand: ReadDemand::default(),
            last_error: ArcSwapOption::empty(),
        }
    }

    /// The replication slot's name.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// The publication's name.
    pub fn publication(&self) -> &str {
        &self.publication
    }

    /// When this status was created (the process's start, for uptime).
    pub fn started(&self) -> Instant {
        self.started
    }

    // ---- setters for the pipeline ----

    /// Sets the phase. `/readyz` answers 200 only in [`Phase::Streaming`].
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// The stream has delivered everything up to `lsn` (an XLogData's or keepalive's WAL end).
    pub fn set_received(&self, lsn: Lsn) {
        self.received.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// Our WAL is fsynced up to `lsn` (what is acknowledged to Postgres as flushed).
    pub fn set_durable(&self, lsn: Lsn) {
        self.durable.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// A checkpoint reflecting everything up to `lsn` is on disk.
    pub fn set_checkpointed(&self, lsn: Lsn) {
        self.checkpointed.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// The server's current WAL position, read now (from a keepalive's WAL end or
    /// `pg_current_wal_lsn()`); lag is measured against it.
    pub fn set_server_lsn(&self, lsn: Lsn) {
        self.set_server_lsn_at(lsn, Instant::now());
    }

    /// The server's WAL position as read at `at` (for callers that timestamp the read
    /// themselves). A position older than the one held is ignored.
    pub fn set_server_lsn_at(&self, lsn: Lsn, at: Instant) {
        let nanos = at.saturating_duration_since(self.started).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        // The time is stored first so that a reader never pairs a new position with a read
        // time older than the position's.
        self.server_read_at.fetch_max(nanos, Ordering::Relaxed);
        self.server_lsn.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// `n` more ops were handed to the sink (drives `ops_applied_total` and ops/s).
    pub fn add_ops(&self, n: u64) {
        self.ops_applied.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` more source transactions were applied.
    pub fn add_transactions(&self, n: u64) {
        self.transactions.fetch_add(n, Ordering::Relaxed);
    }

    /// The stream was re-established after a connection loss.
    pub fn add_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The index writer's bad-data counters ([`crate::index::Index::stats`]), as totals
    /// (they replace the ones held).
    pub fn set_index_stats(&self, stats: &IndexStats) {
        for (cell, v) in self.index.iter().zip(bad_data(stats)) {
            cell.store(v, Ordering::Relaxed);
        }
    }

    /// The translator's counters ([`crate::translate::Translator::stats`]), as totals (they
    /// replace the ones held). The source publishes them at every group commit.
    pub fn set_translate_stats(&self, stats: &TranslateStats) {
        for (cell, v) in self.translate.iter().zip(translate_cells(stats)) {
            cell.store(v, Ordering::Relaxed);
        }
    }

    /// The `min_lsn` positions queries are waiting for (registered by the server, read by the
    /// replication source).
    pub fn read_demand(&self) -> &ReadDemand {
        &self.read_demand
    }

    /// Records `error` (with its causes, e.g. `format!("{e:#}")`) as the last error.
    pub fn set_error(&self, error: impl fmt::Display) {
        self.last_error.store(Some(std::sync::Arc::new(ErrorInfo {
            message: error.to_string(),
            at: SystemTime::now(),
        })));
    }

    /// Forgets the last error (e.g. after a successful reconnect, if the pipeline prefers).
    pub fn clear_error(&self) {
        self.last_error.store(None);
    }

    // ---- getters ----

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Highest LSN received from the stream.
    pub fn received(&self) -> Lsn {
        Lsn(self.received.load(Ordering::Relaxed))
    }

    /// Highest LSN fsynced in our WAL.
    pub fn durable(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::Relaxed))
    }

    /// LSN of the newest checkpoint.
    pub fn checkpointed(&self) -> Lsn {
        Lsn(self.checkpointed.load(Ordering::Relaxed))
    }

    /// The server's WAL position and when it was read; `None` before the first read.
    pub fn server_lsn(&self) -> Option<(Lsn, Instant)> {
        let lsn = Lsn(self.server_lsn.load(Ordering::Relaxed));
        match self.server_read_at.load(Ordering::Relaxed) {
            0 => None,
            n => Some((lsn, self.started + Duration::from_nanos(n - 1))),
        }
    }

    /// Ops handed to the sink since start.
    pub fn ops_applied(&self) -> u64 {
        self.ops_applied.load(Ordering::Relaxed)
    }

    /// Transactions applied since start.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Reconnects since start.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// The bad-data counters last set (`applied_ops` is not kept: see [`Status::ops_applied`]).
    pub fn index_stats(&self) -> IndexStats {
        let v: Vec<u64> = self
            .index
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        IndexStats {
            applied_ops: 0,
            skipped_ids: v[0],
            clamped_values: v[1],
            bad_values: v[2],
            unknown_fields: v[3],
            bad_queries: v[4],
            nested_query_op_sets: v[5],
            joined_field_writes: v[6],
        }
    }

    /// The translator's counters last set.
    // `..default()` keeps this compiling if the translator gains counters.
    #[allow(clippy::needless_update)]
    pub fn translate_stats(&self) -> TranslateStats {
        let [rows, bad_slot_ids, eval_errors, bad_values, truncates] =
            self.translate.each_ref().map(|c| c.load(Ordering::Relaxed));
        TranslateStats {
            rows,
            bad_slot_ids,
            eval_errors,
            bad_values,
            truncates,
            ..TranslateStats::default()
        }
    }

    /// The last error reported, if any.
    pub fn last_error(&self) -> Option<ErrorInfo> {
        self.last_error.load_full().map(|e| (*e).clone())
    }
}

/// Window over which ops/s is averaged.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Server-position samples kept for the lag in seconds (about 17 minutes at one per second).
const MAX_SERVER_SAMPLES: usize = 1024;

/// Samples of the ops counter and the server's WAL position, taken by the server's sampler.
#[derive(Debug, Default)]
pub struct History {
    ops: VecDeque<(Instant, u64)>,
    server: VecDeque<(Instant, Lsn)>,
}

impl History {
    /// Takes a sample of `status` at `now`.
    pub fn sample(&mut self, status: &Status, now: Instant) {
        self.ops.push_back((now, status.ops_applied()));
        // Keep the newest sample at or before the window's start, so the window is covered.
        while self.ops.len() > 1 && now.saturating_duration_since(self.ops[1].0) >= RATE_WINDOW {
            self.ops.pop_front();
        }
        if let Some((lsn, at)) = status.server_lsn()
            && self.server.back().is_none_or(|&(t, l)| at > t && lsn > l)
        {
            self.server.push_back((at, lsn));
            if self.server.len() > MAX_SERVER_SAMPLES {
                self.server.pop_front();
            }
        }
    }

    /// Ops per second over the window ending at `now`, given the counter's value `ops_now`.
    pub fn ops_per_second(&self, ops_now: u64, now: Instant) -> f64 {
        match self.ops.front() {
            Some(&(t, n)) if now > t => {
                ops_now.saturating_sub(n) as f64 / now.duration_since(t).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// How long the index has been behind the server: the time since the server was first seen
    /// past `applied`. A lower bound, at the resolution of the samples; 0 when `applied` has
    /// reached the newest known server position, `None` before the server position is known.
    pub fn lag_seconds(&self, applied: Lsn, now: Instant) -> Option<f64> {
        let &(_, newest) = self.server.back()?;
        if applied >= newest {
            return Some(0.0);
        }
        let &(t, _) = self.server.iter().find(|&&(_, l)| l > applied)?;
        Some(now.saturating_duration_since(t).as_secs_f64())
    }
}

/// The body of `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Replication slot.
    pub slot: String,
    /// Publication.
    pub publication: String,
    /// What the pipeline is doing.
    pub phase: Phase,
    /// Positions of each stage.
    pub lsn: StageLsns,
    /// Bytes each stage is behind the server's WAL position (0 while it is unknown).
    pub lag_bytes: StageLags,
    /// How long the index has been behind the server (see [`History::lag_seconds`]).
    pub lag_seconds: Option<f64>,
    /// Seconds since the server's WAL position was read; `None` before the first read.
    pub server_lsn_age_seconds: Option<f64>,
    /// Ops applied per second over the last [`RATE_WINDOW`].
    pub ops_per_second: f64,
    /// Ops applied since start.
    pub ops_applied_total: u64,
    /// Transactions applied since start.
    pub transactions_total: u64,
    /// Row changes of source tables translated since start.
    pub rows_translated_total: u64,
    /// TRUNCATEs of source tables received since start.
    pub truncates_total: u64,
    /// Reconnects since start.
    pub reconnects_total: u64,
    /// Live slots in the newest snapshot.
    pub alive_slots: u64,
    /// Bad data skipped or clamped by the translator and the index writer, counted live.
    pub bad_data: BadData,
    /// The last error reported by the pipeline.
    pub last_error: Option<ErrorReport>,
    /// Seconds since start.
    pub uptime_seconds: f64,
}

/// Positions of the pipeline's stages, as Postgres-style strings in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLsns {
    /// Received from the stream.
    pub received: Lsn,
    /// Fsynced in our WAL.
    pub durable: Lsn,
    /// Applied to the index (the published snapshot's cursor).
    pub applied: Lsn,
    /// Written in the newest checkpoint.
    pub checkpointed: Lsn,
    /// The server's WAL position, as last read (`0/0` while unknown).
    pub server: Lsn,
}

/// Bytes behind the server's WAL position, per stage (saturating at 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLags {
    /// Server − received.
    pub received: u64,
    /// Server − durable.
    pub durable: u64,
    /// Server − applied.
    pub applied: u64,
}

/// Bad data that did not stop the stream: each case was skipped or clamped, and logged with its
/// table, id and field. The first three come from the translator (row → ops), the others from
/// the index writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadData {
    /// Rows skipped because their slot id was NULL, unknown or not an integer.
    pub bad_slot_ids: u64,
    /// Fields skipped because a `track_fields` expression or join filter failed on the row
    /// (integer overflow, division by zero, …).
    pub eval_errors: u64,
    /// Column values that did not parse as their column's type.
    pub unparsable_values: u64,
    /// Entity ids that do not fit a slot (outside `0..=4294967295`).
    pub skipped_ids: u64,
    /// Sort values clamped into range.
    pub clamped_values: u64,
    /// Values a field cannot hold.
    pub bad_values: u64,
    /// Ops naming an unknown field.
    pub unknown_fields: u64,
    /// `queryOpSet` queries that did not parse or named an unknown field.
    pub bad_queries: u64,
    /// Nested `queryOpSet`s ignored.
    pub nested_query_op_sets: u64,
    /// Ops that wrote a field following a join other than through it, skipped.
    #[serde(default)]
    pub joined_field_writes: u64,
}

/// The last error, for JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// The error text.
    pub message: String,
    /// When it happened, in seconds since the Unix epoch.
    pub at_unix_seconds: f64,
    /// Seconds ago.
    pub age_seconds: f64,
}

impl StatusReport {
    /// Assembles the report from the pipeline's status, the published snapshot's applied LSN
    /// and live slots, and the sampler's history, as of `now`.
    pub fn build(
        status: &Status,
        applied: Lsn,
        alive_slots: u64,
        history: &History,
        now: Instant,
    ) -> StatusReport {
        let server = status.server_lsn();
        let server_lsn = server.map_or(Lsn::ZERO, |(l, _)| l);
        let lag = |stage: Lsn| match server {
            Some(_) => server_lsn.0.saturating_sub(stage.0),
            None => 0,
        };
        let lsn = StageLsns {
            received: status.received(),
            durable: status.durable(),
            applied,
            checkpointed: status.checkpointed(),
            server: server_lsn,
        };
        let s = status.index_stats();
        let t = status.translate_stats();
        let ops = status.ops_applied();
        let wall = SystemTime::now();
        StatusReport {
            slot: status.slot.clone(),
            publication: status.publication.clone(),
            phase: status.phase(),
            lag_bytes: StageLags {
                received: lag(lsn.received),
                durable: lag(lsn.durable),
                applied: lag(applied),
            },
            lsn,
            lag_seconds: history.lag_seconds(applied, now),
            server_lsn_age_seconds: server
                .map(|(_, at)| now.saturating_duration_since(at).as_secs_f64()),
            ops_per_second: history.ops_per_second(ops, now),
            ops_applied_total: ops,
            transactions_total: status.transactions(),
            rows_translated_total: t.rows,
            truncates_total: t.truncates,
            reconnects_total: status.reconnects(),
            alive_slots,
            bad_data: BadData {
                bad_slot_ids: t.bad_slot_ids,
                eval_errors: t.eval_errors,
                unparsable_values: t.bad_values,
                skipped_ids: s.skipped_ids,
                clamped_values: s.clamped_values,
                bad_values: s.bad_values,
                unknown_fields: s.unknown_fields,
                bad_queries: s.bad_queries,
                nested_query_op_sets: s.nested_query_op_sets,
                joined_field_writes: s.joined_field_writes,
            },
            last_error: status.last_error().map(|e| ErrorReport {
                at_unix_seconds: e
                    .at
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64(),
                age_seconds: wall.duration_since(e.at).unwrap_or_default().as_secs_f64(),
                message: e.message,
            }),
            uptime_seconds: now.saturating_duration_since(status.started).as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_only_move_forward_and_lags_saturate() {
        let s = Status::new("slot", "pub");
        s.set_received(Lsn(500));
        s.set_received(Lsn(400));
        s.set_durable(Lsn(300));
        s.set_checkpointed(Lsn(100));
        let t0 = s.started() + Duration::from_secs(1);
        s.set_server_lsn_at(Lsn(450), t0);
        let h = History::default();
        let r = StatusReport::build(&s, Lsn(200), 7, &h, t0 + Duration::from_secs(3));
        assert_eq!(r.lsn.received, Lsn(500));
        assert_eq!(
            (
                r.lag_bytes.received,
                r.lag_bytes.durable,
                r.lag_bytes.applied
            ),
            (0, 150, 250)
        );
        assert_eq!(r.server_lsn_age_seconds, Some(3.0));
        assert_eq!((r.alive_slots, r.phase), (7, Phase::Starting));
        // Without a server position nothing is "behind".
        let fresh = Status::new("slot", "pub");
        fresh.set_received(Lsn(9));
        let r = StatusReport::build(&fresh, Lsn(0), 0, &h, Instant::now());
        assert_eq!(
            r.lag_bytes,
            StageLags {
                received: 0,
                durable: 0,
                applied: 0
            }
        );
        assert_eq!((r.server_lsn_age_seconds, r.lag_seconds), (None, None));
    }

    #[test]
    fn ops_rate_covers_the_window() {
        let s = Status::new("slot", "pub");
        let t0 = s.started();
        let mut h = History::default();
        for sec in 0..30u64 {
            h.sample(&s, t0 + Duration::from_secs(sec));
            s.add_ops(100);
        }
        // 30 samples, one per second; 100 ops per second throughout.
        let now = t0 + Duration::from_secs(30);
        assert_eq!(h.ops_per_second(s.ops_applied(), now), 100.0);
        assert!(h.ops.len() <= 11, "{}", h.ops.len());
        // Nothing more applied for 5 s: the average over the window drops.
        let later = now + Duration::from_secs(5);
        h.sample(&s, later);
        let rate = h.ops_per_second(s.ops_applied(), later);
        assert!(rate > 0.0 && rate < 100.0, "{rate}");
    }

    #[test]
    fn lag_seconds_is_time_since_the_server_passed_applied() {
        let s = Status::new("slot", "pub");
        let t0 = s.started();
        let mut h = History::default();
        assert_eq!(h.lag_seconds(Lsn(0), t0), None);
        for (sec, lsn) in [(1, 100), (2, 200), (3, 300), (4, 300)] {
            let at = t0 + Duration::from_secs(sec);
            s.set_server_lsn_at(Lsn(lsn), at);
            h.sample(&s, at);
        }
        let now = t0 + Duration::from_secs(10);
        assert_eq!(h.lag_seconds(Lsn(300), now), Some(0.0));
        assert_eq!(h.lag_seconds(Lsn(150), now), Some(8.0));
        assert_eq!(h.lag_seconds(Lsn(50), now), Some(9.0));
    }

    #[test]
    #[allow(clippy::needless_update)] // keeps compiling if the translator gains counters
    fn errors_phase_and_bad_data_round_trip() {
        let s = Status::new("slot", "pub");
        s.set_phase(Phase::Reconnecting);
        assert_eq!(s.phase(), Phase::Reconnecting);
        s.set_error("connection reset");
        assert_eq!(s.last_error().unwrap().message, "connection reset");
        s.clear_error();
        assert_eq!(s.last_error(), None);
        s.set_index_stats(&IndexStats {
            skipped_ids: 3,
            nested_query_op_sets: 1,
            ..IndexStats::default()
        });
        let st = s.index_stats();
        assert_eq!(
            (st.skipped_ids, st.nested_query_op_sets, st.bad_values),
            (3, 1, 0)
        );
        s.set_translate_stats(&TranslateStats {
            rows: 10,
            bad_slot_ids: 2,
            eval_errors: 4,
            bad_values: 5,
            truncates: 1,
            ..TranslateStats::default()
        });
        let r = StatusReport::build(&s, Lsn(0), 0, &History::default(), Instant::now());
        assert_eq!((r.rows_translated_total, r.truncates_total), (10, 1));
        assert_eq!(
            r.bad_data,
            BadData {
                bad_slot_ids: 2,
                eval_errors: 4,
                unparsable_values: 5,
                skipped_ids: 3,
                nested_query_op_sets: 1,
                ..BadData::default()
            }
        );
        for p in Phase::ALL {
            assert_eq!(Phase::from_u8(p as u8), p);
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }
}
