//! Scale-out: a leader publishing to NATS JetStream and a follower replaying it, as users run
//! them (the release binary; a throwaway nats-server and PostgreSQL).
//!
//! 1. **Follower lag**: a writer changes `nsfwLevel` of ten rows per transaction at
//!    `PGROAR_REPL_RATE` changes/s (default 10000); every 20 ms a probe commits a value never
//!    used before and polls both the leader's and the follower's `POST /query` until each sees
//!    it. The lag is follower-visible minus leader-visible (p50/p99/max).
//! 2. **Catch-up**: with the follower stopped, `PGROAR_REPL_BACKLOG` rows (default 300k) are
//!    updated in 10k-row transactions; the leader's time from the last commit to applying it is
//!    set against the follower's time, from its restart, to apply the same position (its local
//!    checkpoint, then the stream). Both as changes per second.
//! 3. **Drain with publishing on / off**: two leaders of the same table, one with
//!    `[replication]` and one without (their own slots), both stopped while the same backlog is
//!    written, then started one after the other; each is timed from process start until it has
//!    applied (and, publishing, published) the backlog's end. `PGROAR_REPL_DRAIN_ROUNDS`
//!    rounds (default 4), orders alternating; the ratio on ÷ off per round.
//! 4. **Takeover**: a standby (`pgroar run`, default lease settings) beside the leader; the
//!    leader is SIGKILLed, and the time until the standby reports itself leader and until a
//!    probe committed after the kill is visible on the follower is measured.
//!
//! ```sh
//! cargo bench --bench replication
//! PGROAR_REPL_ROWS=1000000 PGROAR_REPL_BACKLOG=1000000 cargo bench --bench replication
//! ```

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]
// Scenario functions run long; library code keeps the line limit.
#![allow(clippy::too_many_lines)]

mod process;
mod schemas;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgroar::cluster::nats::NatsServer;
use process::{Pgroar, free_port, percentile_ms, pgroar_bin, stage};

/// Writer sessions.
const WRITERS: usize = 4;
/// Rows at the end of the table kept for the probe.
const PROBE_ROWS: i64 = 1000;

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .map_or(default, |s| s.parse().expect("a number"))
}

/// One node's config: the image table's, with `[replication]` when `nats` is given.
fn config(url: &str, slot: &str, dir: &Path, port: u16, nats: Option<(&str, &str)>) -> String {
    let mut text = schemas::image_config(url, slot, dir, port);
    if let Some((nats, stream)) = nats {
        text.push_str(&format!(
            "\n[replication]\nurl = \"{nats}\"\nstream = \"{stream}\"\n"
        ));
    }
    text
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_num("PGROAR_REPL_ROWS", 100_000.0) as i64;
    let rate = env_num("PGROAR_REPL_RATE", 10_000.0);
    let secs = env_num("PGROAR_REPL_SECS", 15.0);
    let backlog = env_num("PGROAR_REPL_BACKLOG", 300_000.0) as i64;
    let (_cluster, url, rt) = schemas::cluster("repl");
    let client = rt.block_on(schemas::connect(&url));
    schemas::load_image(&rt, &client, rows, "default");
    rt.block_on(client.batch_execute("VACUUM ANALYZE")).unwrap();
    let nats = NatsServer::start().unwrap();
    let work = tempfile::Builder::new()
        .prefix("pgroar-repl-")
        .tempdir()
        .unwrap();
    let nats_url = nats.url();
    let node = |name: &str, slot: &str, stream: Option<&str>| {
        let port = free_port();
        let nats = stream.map(|s| (nats_url.as_str(), s));
        let text = config(&url, slot, &work.path().join(name), port, nats);
        Pgroar::new(work.path(), name, port, &text)
    };
    let bin = pgroar_bin();
    let leader = node("leader", "repl", Some("BENCH"));
    let mut leader_child = leader.spawn(&bin, &["bootstrap"], "warn");
    leader.wait_status(&mut leader_child, |s| s["phase"] == "streaming");
    let mut follower = node("follower", "repl", Some("BENCH"));
    let mut follower_child = follower.spawn(&bin, &["follow"], "warn");
    follower.wait_status(&mut follower_child, |s| s["phase"] == "streaming");
    eprintln!("{rows} rows; leader and follower streaming");

    // 1. Lag at the given rate.
    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, stop, changes) = (url.clone(), Arc::clone(&stop), Arc::clone(&changes));
            rt.spawn(async move {
                schemas::rate_writer(
                    &url,
                    (w, WRITERS),
                    rows - PROBE_ROWS,
                    Some(rate / WRITERS as f64),
                    &stop,
                    &changes,
                )
                .await;
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let probe = rt.block_on(schemas::connect(&url));
    let started = Instant::now();
    let before = changes.load(Ordering::Relaxed);
    let (mut lags, mut leader_seen, mut follower_seen) = (Vec::new(), Vec::new(), Vec::new());
    let mut marker = 1_000_000i64;
    follower.poll = Duration::from_micros(200);
    while started.elapsed().as_secs_f64() < secs {
        marker += 1;
        rt.block_on(schemas::probe_commit(
            &probe,
            marker,
            rows - (marker % PROBE_ROWS),
        ));
        let committed = Instant::now();
        let body = format!(r#"{{"filter": "nsfwLevel eq {marker}", "limit": 0}}"#);
        let (mut at_leader, mut at_follower) = (None, None);
        while at_leader.is_none() || at_follower.is_none() {
            for (seen, p) in [(&mut at_leader, &leader), (&mut at_follower, &follower)] {
                if seen.is_none() && p.query(&body).and_then(|a| a["total"].as_u64()) == Some(1) {
                    *seen = Some(committed.elapsed());
                }
            }
            assert!(committed.elapsed() < Duration::from_secs(60), "never seen");
            std::thread::sleep(Duration::from_micros(200));
        }
        let (l, f) = (at_leader.unwrap(), at_follower.unwrap());
        leader_seen.push(l);
        follower_seen.push(f);
        lags.push(f.saturating_sub(l));
        std::thread::sleep(Duration::from_millis(20));
    }
    let achieved =
        (changes.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        rt.block_on(w).unwrap();
    }
    for v in [&mut lags, &mut leader_seen, &mut follower_seen] {
        v.sort();
    }
    let row = |v: &[Duration]| {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile_ms(v, 50.0),
            percentile_ms(v, 99.0),
            percentile_ms(v, 100.0)
        )
    };
    let lag_line = format!(
        "lag at {achieved:.0} changes/s ({} probes): follower behind leader {}; commit → leader {}; \
         commit → follower {}",
        lags.len(),
        row(&lags),
        row(&leader_seen),
        row(&follower_seen)
    );
    eprintln!("{lag_line}");

    // 2. Catch-up from the follower's checkpoint.
    process::stop(follower_child);
    let t0 = Instant::now();
    let end = rt.block_on(schemas::chunked(&client, backlog, |a, b| {
        format!(
            r#"UPDATE "Image" SET "nsfwLevel" = ("nsfwLevel" + 1) % 6 WHERE id BETWEEN {a} AND {b}"#
        )
    }));
    let committed = t0.elapsed();
    leader.wait_status(&mut leader_child, |s| {
        stage(s, "applied") >= end && stage(s, "published") >= end
    });
    let leader_took = t0.elapsed();
    let restarted = Instant::now();
    follower.poll = process::POLL;
    follower_child = follower.spawn(&bin, &["follow"], "warn");
    follower.wait_status(&mut follower_child, |s| stage(s, "applied") >= end);
    let follower_took = restarted.elapsed();
    let catch_line = format!(
        "catch-up of {backlog} changes: leader {:.0} changes/s ({:.2} s, writes committed in \
         {:.2} s), follower from its checkpoint {:.0} changes/s ({:.2} s from process start): \
         follower ÷ leader rate {:.2}",
        backlog as f64 / leader_took.as_secs_f64(),
        leader_took.as_secs_f64(),
        committed.as_secs_f64(),
        backlog as f64 / follower_took.as_secs_f64(),
        follower_took.as_secs_f64(),
        leader_took.as_secs_f64() / follower_took.as_secs_f64(),
    );
    eprintln!("{catch_line}");

    // 4. Takeover (before 3, which stops the leader).
    let standby = node("standby", "repl", Some("BENCH"));
    let mut standby_child = standby.spawn(&bin, &["run"], "warn");
    standby.wait_status(&mut standby_child, |s| {
        s["role"] == "standby" && s["phase"] == "streaming"
    });
    leader_child.kill().unwrap();
    leader_child.wait().unwrap();
    let killed = Instant::now();
    marker += 1;
    rt.block_on(schemas::probe_commit(
        &probe,
        marker,
        rows - (marker % PROBE_ROWS),
    ));
    standby.wait_status(&mut standby_child, |s| s["role"] == "leader");
    let role_after = killed.elapsed();
    follower.poll = Duration::from_millis(5);
    let body = format!(r#"{{"filter": "nsfwLevel eq {marker}", "limit": 0}}"#);
    follower.wait_status(&mut follower_child, |_| {
        follower.query(&body).and_then(|a| a["total"].as_u64()) == Some(1)
    });
    let visible_after = killed.elapsed();
    let takeover_line = format!(
        "takeover (lease TTL 4 s): standby leads {:.2} s after the kill; a commit made at the \
         kill is visible on the follower after {:.2} s",
        role_after.as_secs_f64(),
        visible_after.as_secs_f64()
    );
    eprintln!("{takeover_line}");
    process::stop(follower_child);
    process::stop(standby_child);

    // 3. Drain with publishing on and off: two fresh leaders over their own slots.
    let on = node("drain-on", "drain_on", Some("DRAIN"));
    let off = node("drain-off", "drain_off", None);
    let mut results = Vec::new();
    let rounds = env_num("PGROAR_REPL_DRAIN_ROUNDS", 4.0) as usize;
    for round in 0..rounds {
        // Both orders, alternating: the second run of a pair is often faster whatever it is.
        let order = if round % 2 == 0 {
            [&on, &off]
        } else {
            [&off, &on]
        };
        for p in order {
            let mut c = p.spawn(&bin, &["bootstrap", "--if-needed"], "warn");
            p.wait_status(&mut c, |s| s["phase"] == "streaming");
            stop_logged(p, c);
        }
        let end = rt.block_on(schemas::chunked(&client, backlog, |a, b| {
            format!(r#"UPDATE "Image" SET flags = flags + 1 WHERE id BETWEEN {a} AND {b}"#)
        }));
        let mut times = Vec::new();
        for p in order {
            let publishing = std::ptr::eq(p, &on);
            let t = Instant::now();
            let mut c = p.spawn(&bin, &["run"], "warn");
            p.wait_status(&mut c, |s| {
                stage(s, "applied") >= end && (!publishing || stage(s, "published") >= end)
            });
            times.push((publishing, t.elapsed()));
            stop_logged(p, c);
        }
        let get = |want: bool| times.iter().find(|(p, _)| *p == want).unwrap().1;
        let (t_on, t_off) = (get(true), get(false));
        eprintln!(
            "drain round {round}: publishing on {:.2} s, off {:.2} s, on ÷ off {:.2}",
            t_on.as_secs_f64(),
            t_off.as_secs_f64(),
            t_on.as_secs_f64() / t_off.as_secs_f64()
        );
        results.push((t_on, t_off));
    }
    drop(nats);
    println!("\nreplication: {rows} rows, release binary, leader + follower over nats-server");
    println!("{lag_line}");
    println!("{catch_line}");
    for (i, (t_on, t_off)) in results.iter().enumerate() {
        println!(
            "drain of {backlog} updates, round {i}: publishing on {:.2} s, off {:.2} s, on ÷ off {:.2}",
            t_on.as_secs_f64(),
            t_off.as_secs_f64(),
            t_on.as_secs_f64() / t_off.as_secs_f64()
        );
    }
    let drain_on_rate = backlog as f64 / results[0].0.as_secs_f64();
    println!(
        "catch-up ÷ the leader's drain rate (publishing on, round 0: {drain_on_rate:.0} \
         changes/s): {:.2}",
        backlog as f64 / follower_took.as_secs_f64() / drain_on_rate
    );
    println!("{takeover_line}");
}

/// SIGTERM and a clean stop, or a panic with the process's log.
fn stop_logged(p: &Pgroar, mut child: std::process::Child) {
    // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "pgroar {} did not stop cleanly: {status}\n{}",
        p.name,
        std::fs::read_to_string(&p.log).unwrap_or_default()
    );
}
