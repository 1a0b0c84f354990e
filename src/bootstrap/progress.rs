//! Progress of a running dump: per table rows, bytes, pages, rate and ETA. Counters are atomics
//! the COPY tasks bump; a reporter draws them on the terminal (indicatif bars when stderr is a
//! terminal, plain log lines otherwise) and `/status` reads [`Progress::report`].

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
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
        *p.phase.write().unwrap_or_else(|e| e.into_inner()) = "starting";
        Arc::new(p)
    }

    /// Sets the tables (once planned).
    pub fn set_tables(&self, tables: Vec<Arc<TableProgress>>) {
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = tables;
    }

    /// Sets the phase shown.
    pub fn set_phase(&self, phase: &'static str) {
        info!(phase, "bootstrap");
        *self.phase.write().unwrap_or_else(|e| e.into_inner()) = phase;
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((phase, Instant::now()));
    }

    /// Marks the dump finished (the reporter stops).
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// A copy of the counters.
    pub fn report(&self) -> ProgressReport {
        ProgressReport {
            phase: *self.phase.read().unwrap_or_else(|e| e.into_inner()),
            tables: self
                .tables
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|t| t.report())
                .collect(),
            phases: {
                let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
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

fn human_bytes(b: u64) -> String {
    let mut v = b as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 || unit == "TiB" {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    unreachable!()
}

fn line(t: &TableReport) -> String {
    let eta = match (t.done, t.eta_secs) {
        (true, _) => "done".to_owned(),
        (false, Some(s)) => format!("ETA {s:.0}s"),
        (false, None) => "waiting".to_owned(),
    };
    format!(
        "{}: {} rows, {}, {:.0} rows/s, {eta}",
        t.table,
        t.rows,
        human_bytes(t.bytes),
        t.rows_per_sec
    )
}

/// Draws `progress` until it finishes: bars on a terminal, else a log line per table every
/// `log_every`. Runs on its own thread; returns when the dump finishes.
pub fn spawn_reporter(progress: Arc<Progress>, log_every: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let terminal = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = ProgressStyle::with_template("{prefix:>24} [{bar:30}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let mut bars: Vec<ProgressBar> = Vec::new();
        let mut last_log = Instant::now();
        loop {
            let finished = progress.finished.load(Ordering::Acquire);
            let report = progress.report();
            if terminal {
                while bars.len() < report.tables.len() {
                    let t = &report.tables[bars.len()];
                    let bar = multi.add(ProgressBar::new(1000));
                    bar.set_style(style.clone());
                    bar.set_prefix(t.table.clone());
                    bars.push(bar);
                }
                for (bar, t) in bars.iter().zip(&report.tables) {
                    let fraction = if t.done {
                        1.0
                    } else if t.pages_total > 0 {
                        t.pages_done as f64 / t.pages_total as f64
                    } else {
                        0.0
                    };
                    bar.set_position((fraction * 1000.0) as u64);
                    bar.set_message(line(t));
                }
            } else if last_log.elapsed() >= log_every || finished {
                last_log = Instant::now();
                for t in &report.tables {
                    info!("bootstrap {}", line(t));
                }
            }
            if finished {
                for bar in &bars {
                    bar.finish();
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
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
        assert!(line(&r).contains("done"));
        assert_eq!(human_bytes(4096), "4.0 KiB");
    }
}
