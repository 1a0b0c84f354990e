//! Prometheus metrics of one server.
//!
//! Each server owns a private recorder (no process-global one is installed), so several servers
//! can run in one process, each rendering only its own numbers. Gauges and the pipeline's
//! counters are refreshed from the [`StatusReport`] at scrape time; the query counters and the
//! latency histogram are recorded as queries run.

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::status::StatusReport;
use crate::status::{BAD_DATA_HELP, BAD_DATA_METRIC, COUNTERS, Group, Phase};

/// Buckets of the query latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

const QUERY_DURATION: &str = "pgroar_query_duration_seconds";

/// How a query ended, the `outcome` label of `pgroar_queries_total`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered.
    Ok = 0,
    /// Refused: malformed request, bad filter, sort, limit or cursor.
    BadRequest = 1,
    /// `min_lsn` was not reached in time.
    Timeout = 2,
    /// The index writer is gone or the server is shutting down.
    Unavailable = 3,
    /// The query itself failed unexpectedly.
    Error = 4,
}

const OUTCOMES: [&str; 5] = ["ok", "bad_request", "timeout", "unavailable", "error"];
const STAGES: [&str; 6] = [
    "received",
    "durable",
    "applied",
    "checkpointed",
    "server",
    "forwarded",
];

/// The metric handles of one server.
pub(crate) struct ServerMetrics {
    handle: PrometheusHandle,
    lsn: [Gauge; STAGES.len()],
    lag_bytes: Gauge,
    lag_seconds: Gauge,
    server_lsn_age: Gauge,
    /// One per row of [`COUNTERS`], in its order.
    counters: [Counter; COUNTERS.len()],
    alive: Gauge,
    slot_retained: Gauge,
    slot_active: Gauge,
    slot_lost: Gauge,
    rss: Gauge,
    phase: [Gauge; Phase::ALL.len()],
    queries: [Counter; OUTCOMES.len()],
    duration: Histogram,
    waiting: Gauge,
}

/// Counts one `min_lsn` wait in `pgroar_min_lsn_waits` while it lives.
pub(crate) struct WaitGuard<'a>(&'a Gauge);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl ServerMetrics {
    pub(crate) fn new() -> ServerMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(QUERY_DURATION.into()), &LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge};
            describe_gauge!(
                "pgroar_lsn",
                "WAL position reached by each stage (as a number; server = the server's WAL position)"
            );
            describe_gauge!(
                "pgroar_lag_bytes",
                Unit::Bytes,
                "Bytes of server WAL the index has not applied yet"
            );
            describe_gauge!(
                "pgroar_lag_seconds",
                Unit::Seconds,
                "How long the index has been behind the server's WAL position (NaN while unknown)"
            );
            describe_gauge!(
                "pgroar_server_lsn_age_seconds",
                Unit::Seconds,
                "Seconds since the server's WAL position was read (NaN while unknown)"
            );
            for spec in COUNTERS.iter().filter(|s| s.group == Group::Total) {
                describe_counter!(spec.metric, spec.help);
            }
            describe_counter!(BAD_DATA_METRIC, BAD_DATA_HELP);
            describe_gauge!("pgroar_alive_slots", "Live slots in the published snapshot");
            describe_gauge!(
                "pgroar_slot_retained_wal_bytes",
                Unit::Bytes,
                "WAL the replication slot keeps on the server"
            );
            describe_gauge!(
                "pgroar_slot_active",
                "1 while a session streams from the slot"
            );
            describe_gauge!(
                "pgroar_slot_lost",
                "1 when the server reports the slot's wal_status as lost (re-bootstrap)"
            );
            describe_gauge!("pgroar_resident_memory_bytes", Unit::Bytes, "Process RSS");
            describe_gauge!("pgroar_phase", "1 for the pipeline's current phase, else 0");
            describe_counter!("pgroar_queries_total", "Queries answered, by outcome");
            describe_gauge!(
                "pgroar_min_lsn_waits",
                "Queries waiting for the index to reach their min_lsn"
            );
            describe_histogram!(
                QUERY_DURATION,
                Unit::Seconds,
                "Time to run a query on a snapshot (excluding any min_lsn wait)"
            );
            ServerMetrics {
                handle: handle.clone(),
                lsn: STAGES.map(|s| gauge!("pgroar_lsn", "stage" => s)),
                lag_bytes: gauge!("pgroar_lag_bytes"),
                lag_seconds: gauge!("pgroar_lag_seconds"),
                server_lsn_age: gauge!("pgroar_server_lsn_age_seconds"),
                counters: COUNTERS.map(|spec| match spec.kind {
                    Some(kind) => counter!(spec.metric, "kind" => kind),
                    None => counter!(spec.metric),
                }),
                alive: gauge!("pgroar_alive_slots"),
                slot_retained: gauge!("pgroar_slot_retained_wal_bytes"),
                slot_active: gauge!("pgroar_slot_active"),
                slot_lost: gauge!("pgroar_slot_lost"),
                rss: gauge!("pgroar_resident_memory_bytes"),
                phase: Phase::ALL.map(|p| gauge!("pgroar_phase", "phase" => p.as_str())),
                queries: OUTCOMES.map(|o| counter!("pgroar_queries_total", "outcome" => o)),
                duration: metrics::histogram!(QUERY_DURATION),
                waiting: gauge!("pgroar_min_lsn_waits"),
            }
        })
    }

    /// Counts one query and, when it ran, its duration.
    pub(crate) fn query(&self, outcome: Outcome, ran_for: Option<std::time::Duration>) {
        self.queries[outcome as usize].increment(1);
        if let Some(d) = ran_for {
            self.duration.record(d.as_secs_f64());
        }
    }

    /// Marks a `min_lsn` wait as in progress until the guard drops.
    pub(crate) fn waiting(&self) -> WaitGuard<'_> {
        self.waiting.increment(1.0);
        WaitGuard(&self.waiting)
    }

    /// Moves buffered histogram samples into the histogram (call about once a second).
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Refreshes the gauges and pipeline counters from `report` and renders everything.
    pub(crate) fn render(&self, report: &StatusReport) -> String {
        let l = &report.lsn;
        for (g, lsn) in self.lsn.iter().zip([
            l.received,
            l.durable,
            l.applied,
            l.checkpointed,
            l.server,
            l.forwarded,
        ]) {
            // f64 holds LSNs exactly up to 2^53 bytes of WAL (8 PiB).
            g.set(lsn.0 as f64);
        }
        self.lag_bytes.set(report.lag_bytes.applied as f64);
        self.lag_seconds.set(report.lag_seconds.unwrap_or(f64::NAN));
        self.server_lsn_age
            .set(report.server_lsn_age_seconds.unwrap_or(f64::NAN));
        for (c, spec) in self.counters.iter().zip(&COUNTERS) {
            c.absolute(report.counts.get(spec.counter));
        }
        self.alive.set(report.alive_slots as f64);
        if let Some(slot) = &report.slot_state {
            self.slot_retained.set(slot.retained_bytes as f64);
            self.slot_active.set(f64::from(u8::from(slot.active)));
            self.slot_lost
                .set(f64::from(u8::from(slot.wal_status == "lost")));
        }
        if let Some(rss) = report.rss_bytes {
            self.rss.set(rss as f64);
        }
        for (g, p) in self.phase.iter().zip(Phase::ALL) {
            g.set(if p == report.phase { 1.0 } else { 0.0 });
        }
        self.handle.render()
    }
}
