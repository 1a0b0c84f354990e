//! The pipeline's status: where each stage is, what phase it is in, its counters and its last
//! error. The pipeline's stages write it; the HTTP surface and the CLI only read it. It sits at
//! the bottom of the crate: it imports no stage.
//!
//! [`Status`] is lock-free for its writers: every field is an atomic (or an `ArcSwap` for the
//! last error), so the WAL writer, the stream reader and the checkpointer can update it from
//! their own threads without ever waiting on a reader. Fields are independent: a reader may see
//! a new received LSN next to an old durable one, never a torn value. LSNs only move forward
//! (`fetch_max`), so a late or duplicated update cannot make a stage look as if it went back.
//!
//! Counters are declared once, in [`counters::COUNTERS`]; `/status` and `/metrics` are
//! generated from that table.
//!
//! Read-your-writes demand flows the other way ([`Status::read_demand`]): a query waiting for a
//! `min_lsn` registers it, and the replication source, which alone knows which positions are
//! complete, writes the position Mark that ends the wait as soon as it can.
//!
//! The applied LSN is not stored here: it is the applied cursor of the snapshot the sink last
//! published, which readers take from the sink itself.

mod bootstrap;
pub mod counters;
mod demand;
mod phase;
mod slot;

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

use crate::Lsn;

pub use bootstrap::{Progress, ProgressReport, TableProgress, TableReport};
pub use counters::{BAD_DATA_HELP, BAD_DATA_METRIC, COUNTERS, Counter, CounterSpec, Counts, Group};
pub use demand::{ReadDemand, ReadWait};
pub use phase::{Phase, PhaseTracker};
pub use slot::SlotState;

/// A process's part in replication (`[replication]`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Role {
    /// No `[replication]`: the only index of its slot.
    Single = 0,
    /// Holds the lease: reads the slot and publishes.
    Leader = 1,
    /// Follows the stream and waits for the lease.
    Standby = 2,
    /// `pgroar follow`: follows the stream.
    Follower = 3,
}

impl Role {
    /// The lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Leader => "leader",
            Role::Standby => "standby",
            Role::Follower => "follower",
        }
    }

    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::Leader,
            2 => Role::Standby,
            3 => Role::Follower,
            _ => Role::Single,
        }
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
/// and its readers. All setters are lock-free.
#[derive(Debug)]
pub struct Status {
    slot: String,
    publication: String,
    started: Instant,
    phase: AtomicU8,
    received: AtomicU64,
    durable: AtomicU64,
    checkpointed: AtomicU64,
    forwarded: AtomicU64,
    published: AtomicU64,
    /// [`Role`] as a byte.
    role: AtomicU8,
    epoch: AtomicU64,
    server_lsn: AtomicU64,
    /// Nanoseconds after `started` at which `server_lsn` was read, plus one; 0 = never.
    server_read_at: AtomicU64,
    counts: [AtomicU64; COUNTERS.len()],
    read_demand: ReadDemand,
    last_error: ArcSwapOption<ErrorInfo>,
    /// The slot's row and when it was read.
    slot_state: ArcSwapOption<(SlotState, Instant)>,
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
            forwarded: AtomicU64::new(0),
            published: AtomicU64::new(0),
            role: AtomicU8::new(Role::Single as u8),
            epoch: AtomicU64::new(0),
            server_lsn: AtomicU64::new(0),
            server_read_at: AtomicU64::new(0),
            counts: Default::default(),
            slot_state: ArcSwapOption::empty(),
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

    /// The forwarding sink's remote has acknowledged everything up to `lsn`.
    pub fn set_forwarded(&self, lsn: Lsn) {
        self.forwarded.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// The replication stream has acknowledged everything up to `lsn` (leader).
    pub fn set_published(&self, lsn: Lsn) {
        self.published.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// This process's part in replication, and the leader's epoch it follows or holds.
    pub fn set_role(&self, role: Role, epoch: u64) {
        self.role.store(role as u8, Ordering::Relaxed);
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The role and epoch set by [`Status::set_role`].
    pub fn role(&self) -> (Role, u64) {
        (
            Role::from_u8(self.role.load(Ordering::Relaxed)),
            self.epoch.load(Ordering::Relaxed),
        )
    }

    /// What the replication stream has acknowledged (leader).
    pub fn published(&self) -> Lsn {
        Lsn(self.published.load(Ordering::Relaxed))
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

    /// Counts `n` more of `c`.
    pub fn add(&self, c: Counter, n: u64) {
        self.counts[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Counters kept as totals by their owner (the index writer's, the translator's `counts()`):
    /// they replace the values held.
    pub fn set_totals(&self, totals: impl IntoIterator<Item = (Counter, u64)>) {
        for (c, v) in totals {
            self.counts[c as usize].store(v, Ordering::Relaxed);
        }
    }

    /// The `min_lsn` positions queries are waiting for (registered by the server, read by the
    /// replication source).
    pub fn read_demand(&self) -> &ReadDemand {
        &self.read_demand
    }

    /// Records the slot's row as just read.
    pub fn set_slot_state(&self, state: SlotState) {
        self.slot_state
            .store(Some(std::sync::Arc::new((state, Instant::now()))));
    }

    /// The slot's row last read, with its age.
    pub fn slot_state(&self) -> Option<SlotState> {
        self.slot_state.load().as_ref().map(|s| SlotState {
            age_seconds: s.1.elapsed().as_secs_f64(),
            ..s.0.clone()
        })
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

    /// What the forwarding sink's remote has acknowledged (`0/0` without one).
    pub fn forwarded(&self) -> Lsn {
        Lsn(self.forwarded.load(Ordering::Relaxed))
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

    /// The value of counter `c`.
    pub fn count(&self, c: Counter) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    /// Every counter's value.
    pub fn counts(&self) -> Counts {
        let mut out = Counts::default();
        for spec in &COUNTERS {
            out.set(spec.counter, self.count(spec.counter));
        }
        out
    }

    /// The last error reported, if any.
    pub fn last_error(&self) -> Option<ErrorInfo> {
        self.last_error.load_full().map(|e| (*e).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_errors_and_counters_round_trip() {
        let s = Status::new("slot", "pub");
        s.set_phase(Phase::Reconnecting);
        assert_eq!(s.phase(), Phase::Reconnecting);
        s.set_error("connection reset");
        assert_eq!(s.last_error().unwrap().message, "connection reset");
        s.clear_error();
        assert_eq!(s.last_error(), None);
        s.add(Counter::OpsApplied, 5);
        s.add(Counter::OpsApplied, 2);
        s.set_totals([(Counter::SkippedIds, 3), (Counter::UnparsableValues, 4)]);
        s.set_totals([(Counter::SkippedIds, 6)]);
        let c = s.counts();
        assert_eq!(
            (
                c.get(Counter::OpsApplied),
                c.get(Counter::SkippedIds),
                c.get(Counter::UnparsableValues),
                c.get(Counter::BadValues)
            ),
            (7, 6, 4, 0)
        );
        for p in Phase::ALL {
            assert_eq!(Phase::from_u8(p as u8), p);
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }
}
