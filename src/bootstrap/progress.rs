//! Drawing a running dump's [`Progress`] on the terminal: indicatif bars when stderr is a
//! terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

use crate::status::{Progress, TableReport};

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
            let finished = progress.is_finished();
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
            // Redraw every 200 ms, but notice the end within 10 ms: the caller joins this
            // thread before it starts serving.
            for _ in 0..20 {
                if progress.is_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_rows_bytes_rate_and_eta() {
        let mut t = TableReport {
            table: "public.Image".into(),
            rows: 500,
            rows_estimate: 1000,
            bytes: 4096,
            pages_done: 50,
            pages_total: 100,
            rows_per_sec: 250.0,
            eta_secs: Some(2.0),
            done: false,
        };
        assert_eq!(
            line(&t),
            "public.Image: 500 rows, 4.0 KiB, 250 rows/s, ETA 2s"
        );
        t.done = true;
        assert!(line(&t).ends_with("done"));
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
