//! `GET /status`: the report assembled from the pipeline's [`Status`], and the sampler's
//! [`History`] from which ops/s and the lag in seconds are derived.
//!
//! [`History`] is the server's side: a sampler copies the ops counter and the server's WAL
//! position into short rings once a second, from which ops/s and the lag in seconds are derived
//! without the pipeline taking any lock.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Lsn;
use crate::status::{Counter, Counts, Phase, SlotState, Status};

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
        self.ops.push_back((now, status.count(Counter::OpsApplied)));
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

fn single() -> crate::status::Role {
    crate::status::Role::Single
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
    /// Every counter of [`crate::status::COUNTERS`] since start: the totals as top-level keys
    /// (`ops_applied_total`, …), the bad data skipped or clamped by the translator and the index
    /// writer as the `bad_data` object.
    #[serde(flatten)]
    pub counts: Counts,
    /// Live slots in the newest snapshot.
    pub alive_slots: u64,
    /// The replication slot as the server last reported it (read every 10 s while running).
    #[serde(default)]
    pub slot_state: Option<SlotState>,
    /// The process's resident memory, in bytes (Linux).
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// This process's part in replication (`single` without `[replication]`).
    #[serde(default = "single")]
    pub role: crate::status::Role,
    /// The epoch of the leader this process is or follows (0 without replication).
    #[serde(default)]
    pub leader_epoch: u64,
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
    /// Acknowledged by the forwarding sink's remote (`0/0` without one).
    #[serde(default)]
    pub forwarded: Lsn,
    /// Acknowledged by the replication stream (`0/0` unless this is its leader).
    #[serde(default)]
    pub published: Lsn,
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
            forwarded: status.forwarded(),
            published: status.published(),
        };
        let counts = status.counts();
        let ops = counts.get(Counter::OpsApplied);
        let wall = SystemTime::now();
        StatusReport {
            slot: status.slot().to_string(),
            publication: status.publication().to_string(),
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
            counts,
            alive_slots,
            slot_state: status.slot_state(),
            role: status.role().0,
            leader_epoch: status.role().1,
            rss_bytes: rss_bytes(),
            last_error: status.last_error().map(|e| ErrorReport {
                at_unix_seconds: e
                    .at
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64(),
                age_seconds: wall.duration_since(e.at).unwrap_or_default().as_secs_f64(),
                message: e.message,
            }),
            uptime_seconds: now
                .saturating_duration_since(status.started())
                .as_secs_f64(),
        }
    }
}

/// The process's resident set size, from `/proc/self/statm` (`None` elsewhere).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
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
            s.add(Counter::OpsApplied, 100);
        }
        // 30 samples, one per second; 100 ops per second throughout.
        let now = t0 + Duration::from_secs(30);
        assert_eq!(h.ops_per_second(s.count(Counter::OpsApplied), now), 100.0);
        assert!(h.ops.len() <= 11, "{}", h.ops.len());
        // Nothing more applied for 5 s: the average over the window drops.
        let later = now + Duration::from_secs(5);
        h.sample(&s, later);
        let rate = h.ops_per_second(s.count(Counter::OpsApplied), later);
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
}
