//! Progress of a running bootstrap dump: per table rows, bytes, pages, rate and ETA, and the
//! phases. Counters are atomics the COPY tasks bump; the bootstrap's reporter draws them on the
//! terminal and `/status` reads [`Progress::report`].

use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::info;

/// Counters of one table.
#[derive(Debug)]
pub struct TableProgress {
    /// `schema.table`.
    pub table: String,
    /// Pages to copy (the table's size when the snapshot was taken).
    pub pages_total: u64,
    /// The planner's row estimate.
    pub rows_estimate: u64,
    rows: AtomicU64,
    bytes: AtomicU64,
    pages_done: AtomicU64,
    jobs_left: AtomicU64,
    started: std::sync::OnceLock<Instant>,
    finished: std::sync::OnceLock<Instant>,
}

impl TableProgress {
    /// Counters for a table copied in `jobs` COPY jobs.
    pub fn new(table: String, pages_total: u64, rows_estimate: u64, jobs: u64) -> Self {
        TableProgress {
            table,
            pages_total,
            rows_estimate,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            pages_done: AtomicU64::new(0),
            jobs_left: AtomicU64::new(jobs),
            started: std::sync::OnceLock::new(),
            finished: std::sync::OnceLock::new(),
        }
    }

    /// Rows and bytes received.
    pub fn add(&self, rows: u64, bytes: u64) {
        self.started.get_or_init(Instant::now);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A job covering `pages` pages finished.
    pub fn job_done(&self, pages: u64) {
        self.started.get_or_init(Instant::now);
        self.pages_done.fetch_add(pages, Ordering::Relaxed);
        if self.jobs_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.finished.set(Instant::now());
        }
    }

    /// Rows received so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    fn report(&self) -> TableReport {
        let rows = self.rows();
        let bytes = self.bytes.load(Ordering::Relaxed);
        let pages_done = self
            .pages_done
            .load(Ordering::Relaxed)
            .min(self.pages_total);
        let done = self.finished.get().is_some();
        let elapsed = match (self.started.get(), self.finished.get()) {
            (Some(s), Some(f)) => f.duration_since(*s),
            (Some(s), None) => s.elapsed(),
            _ => Duration::ZERO,
        };
        let secs = elapsed.as_secs_f64();
        let rows_per_sec = if secs > 0.0 { rows as f64 / secs } else { 0.0 };
        // Fraction done: pages when known, else rows against the estimate.
        let fraction = if done {
            1.0
        } else if self.pages_total > 0 && pages_done > 0 {
            pages_done as f64 / self.pages_total as f64
        } else if self.rows_estimate > 0 {
            (rows as f64 / self.rows_estimate as f64).min(0.99)
        } else {
            0.0
        };
        let eta_secs = (!done && fraction > 0.0).then(|| secs * (1.0 - fraction) / fraction);
        TableReport {
            table: self.table.clone(),
            rows,
            rows_estimate: self.rows_estimate,
            bytes,
            pages_done,
            pages_total: self.pages_total,
            rows_per_sec,
            eta_secs,
            done,
        }
    }
}

/// One table's progress, as `/status` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TableReport {
    /// `schema.table`.
    pub table: String,
    /// Rows received.
    pub rows: u64,
    /// The planner's estimate of the table's rows.
    pub rows_estimate: u64,
    /// COPY bytes received.
    pub bytes: u64,
    /// Pages of the table whose COPY finished.
    pub pages_done: u64,
    /// Pages to copy.
    pub pages_total: u64,
    /// Rows per second since the table's first row.
    pub rows_per_sec: f64,
    /// Estimated seconds left (none when done or not started).
    pub eta_secs: Option<f64>,
    /// Every COPY of the table finished.
    pub done: bool,
}

/// Progress of the whole dump.
#[derive(Debug, Default)]
pub struct Progress {
    tables: std::sync::RwLock<Vec<Arc<TableProgress>>>,
    phase: std::sync::RwLock<&'static str>,
    /// Each phase and when it began.
    history: std::sync::Mutex<Vec<(&'static str, Instant)>>,
    finished: AtomicBool,
}

/// The dump's progress, as `/status` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProgressReport {
    /// What the bootstrap is doing.
    pub phase: &'static str,
    /// Per table.
    pub tables: Vec<TableReport>,
    /// Seconds spent in each phase so far, in order.
    pub phases: Vec<(&'static str, f64)>,
}

impl Progress {
    /// Empty progress (phase `starting`).
    pub fn new() -> Arc<Progress> {
        let p = Progress::default();
        *p.phase.write().unwrap_or_else(PoisonError::into_inner) = "starting";
        Arc::new(p)
    }

    /// Sets the tables (once planned).
    pub fn set_tables(&self, tables: Vec<Arc<TableProgress>>) {
        *self.tables.write().unwrap_or_else(PoisonError::into_inner) = tables;
    }

    /// Sets the phase shown.
    pub fn set_phase(&self, phase: &'static str) {
        info!(phase, "bootstrap");
        *self.phase.write().unwrap_or_else(PoisonError::into_inner) = phase;
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((phase, Instant::now()));
    }

    /// Marks the dump finished (the reporter stops).
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// Whether [`Progress::finish`] was called.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// A copy of the counters.
    pub fn report(&self) -> ProgressReport {
        ProgressReport {
            phase: *self.phase.read().unwrap_or_else(PoisonError::into_inner),
            tables: self
                .tables
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|t| t.report())
                .collect(),
            phases: {
                let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
                history
                    .iter()
                    .enumerate()
                    .map(|(i, (name, at))| {
                        let end = history.get(i + 1).map_or_else(Instant::now, |n| n.1);
                        (*name, end.duration_since(*at).as_secs_f64())
                    })
                    .collect()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_reports_rate_fraction_and_done() {
        let t = TableProgress::new("public.Image".into(), 100, 1000, 2);
        assert_eq!(t.report().eta_secs, None);
        t.add(500, 4096);
        t.job_done(50);
        let r = t.report();
        assert_eq!(
            (r.rows, r.bytes, r.pages_done, r.done),
            (500, 4096, 50, false)
        );
        assert!(r.eta_secs.is_some());
        t.job_done(50);
        let r = t.report();
        assert!(r.done && r.eta_secs.is_none());
    }
}
