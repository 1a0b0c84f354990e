//! Freshness: how long after a commit has returned to its client a query sees the change, while
//! a writer keeps changing the table at a given rate (`synchronous_commit = on`).
//!
//! Setup, on a private throwaway cluster: the Image-like table (`PGROAR_FRESH_ROWS` rows,
//! default 100k), bootstrapped by the release `pgroar bootstrap`, which then streams. Then, per
//! rate (`PGROAR_FRESH_RATES`, changes per second, default `0,10000,max`; `max` is as fast as
//! four writer sessions go, the rate reported): a background writer updates `nsfwLevel` of ten
//! rows per transaction at that rate, and a probe, every 20 ms, sets one row of its own to a
//! value never used before, notes when its `COMMIT` returns, and polls `POST /query` for
//! `nsfwLevel eq <value>` (every 0.2 ms) until the row is in the answer. Each rate runs
//! `PGROAR_FRESH_SECS` seconds (default 15). Prints p50 / p99 / max per rate.
//!
//! With `PGROAR_FRESH_STAGES=1` each probe also polls `/status` and reports when its commit was
//! received, durable in pgroar's WAL and applied.
//!
//! ```sh
//! cargo bench --bench freshness
//! PGROAR_FRESH_RATES=10000 PGROAR_FRESH_SECS=60 cargo bench --bench freshness
//! PGROAR_WAL_GROUP_COMMIT_MAX_MS=5 cargo bench --bench freshness   # any config key
//! ```

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]
// Scenario and case-table functions run long; library code keeps the line limit.
#![allow(clippy::too_many_lines)]

mod process;
mod schemas;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use process::{Pgroar, free_port, percentile_ms, pgroar_bin};

/// Writer sessions.
const WRITERS: usize = 4;
/// Rows at the end of the table kept for the probe.
const PROBE_ROWS: i64 = 1000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows: i64 = std::env::var("PGROAR_FRESH_ROWS")
        .ok()
        .map_or(100_000, |s| {
            s.parse().expect("PGROAR_FRESH_ROWS is a number")
        });
    let secs: f64 = std::env::var("PGROAR_FRESH_SECS")
        .ok()
        .map_or(15.0, |s| s.parse().expect("PGROAR_FRESH_SECS is a number"));
    let rates: Vec<Option<f64>> = std::env::var("PGROAR_FRESH_RATES")
        .unwrap_or_else(|_| "0,10000,max".into())
        .split(',')
        .map(|r| match r.trim() {
            "max" => None,
            n => Some(n.parse().expect("PGROAR_FRESH_RATES: numbers or max")),
        })
        .collect();
    let (_cluster, url, rt) = schemas::cluster("fresh");
    let client = rt.block_on(schemas::connect(&url));
    schemas::load_image(&rt, &client, rows, "default");
    rt.block_on(client.batch_execute("VACUUM ANALYZE")).unwrap();

    let work = tempfile::Builder::new()
        .prefix("pgroar-fresh-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let config = schemas::image_config(&url, "fresh", &work.path().join("data"), port);
    let mut pgroar = Pgroar::new(work.path(), "fresh", port, &config);
    let mut child = pgroar.spawn(&pgroar_bin(), &["bootstrap"], "warn");
    pgroar.wait_status(&mut child, |s| s["phase"] == "streaming");
    eprintln!("{rows} rows bootstrapped; streaming");
    pgroar.poll = Duration::from_micros(200);

    // `PGROAR_FRESH_STAGES=1`: also poll `/status` after each probe commit and report when its
    // LSN was received, durable in pgroar's WAL and applied (the query's wait then starts later).
    let stages = std::env::var_os("PGROAR_FRESH_STAGES").is_some();
    let mut marker = 1_000_000i64;
    let mut results = Vec::new();
    for rate in rates {
        let stop = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .filter(|_| rate != Some(0.0))
            .map(|w| {
                let (url, stop, changes) = (url.clone(), Arc::clone(&stop), Arc::clone(&changes));
                let per_writer = rate.map(|r| r / WRITERS as f64);
                rt.spawn(async move {
                    schemas::rate_writer(
                        &url,
                        (w, WRITERS),
                        rows - PROBE_ROWS,
                        per_writer,
                        &stop,
                        &changes,
                    )
                    .await;
                })
            })
            .collect();
        // Let the writer reach its pace first.
        std::thread::sleep(Duration::from_secs(1));
        let started = Instant::now();
        let changes_before = changes.load(Ordering::Relaxed);
        let mut lags = Vec::new();
        let mut stage_lags: [Vec<Duration>; 3] = Default::default();
        let probe = rt.block_on(schemas::connect(&url));
        while started.elapsed().as_secs_f64() < secs {
            marker += 1;
            let id = rows - (marker % PROBE_ROWS);
            let lsn = rt.block_on(schemas::probe_commit(&probe, marker, id));
            let committed = Instant::now();
            if stages {
                let mut at = [None; 3];
                pgroar.wait_status(&mut child, |s| {
                    for (i, name) in ["received", "durable", "applied"].iter().enumerate() {
                        if process::stage(s, name) >= lsn {
                            at[i].get_or_insert_with(|| committed.elapsed());
                        }
                    }
                    at[2].is_some()
                });
                for (i, t) in at.iter().enumerate() {
                    stage_lags[i].push(t.unwrap_or_default());
                }
            }
            let body = format!(r#"{{"filter": "nsfwLevel eq {marker}", "limit": 0}}"#);
            loop {
                if let Some(answer) = pgroar.query(&body)
                    && answer["total"].as_u64() == Some(1)
                {
                    break;
                }
                assert!(
                    committed.elapsed() < Duration::from_secs(60),
                    "the change was never seen"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            lags.push(committed.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        let achieved = (changes.load(Ordering::Relaxed) - changes_before) as f64
            / started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            rt.block_on(w).unwrap();
        }
        lags.sort();
        let label = match rate {
            Some(r) => format!("{r:.0}/s"),
            None => "max".into(),
        };
        eprintln!(
            "rate {label}: achieved {achieved:.0} changes/s; {} probes: p50 {:.1} ms, p99 {:.1} \
             ms, max {:.1} ms",
            lags.len(),
            percentile_ms(&lags, 50.0),
            percentile_ms(&lags, 99.0),
            percentile_ms(&lags, 100.0),
        );
        if stages {
            for (name, mut l) in ["received", "durable", "applied"]
                .into_iter()
                .zip(stage_lags)
            {
                l.sort();
                eprintln!(
                    "  commit returned → {name}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    percentile_ms(&l, 50.0),
                    percentile_ms(&l, 99.0),
                    percentile_ms(&l, 100.0),
                );
            }
        }
        results.push((label, achieved, lags));
    }
    process::stop(child);

    println!(
        "\nfreshness: commit returned → visible to a query; {rows} rows, synchronous_commit on"
    );
    println!("| writer rate | achieved changes/s | probes | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (label, achieved, lags) in &results {
        println!(
            "| {label} | {achieved:.0} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            lags.len(),
            percentile_ms(lags, 50.0),
            percentile_ms(lags, 99.0),
            percentile_ms(lags, 100.0),
        );
    }
}
