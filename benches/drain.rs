//! Streaming drain: how long `pgroar run` takes to receive, persist and APPLY a replication
//! backlog, against `pg_recvlogical` merely receiving the same backlog into `/dev/null` on a
//! slot of its own, in the same run.
//!
//! Setup, on a private throwaway cluster: an Image-like table (`REPLICA IDENTITY FULL`, or the
//! default identity with `PGROAR_DRAIN_IDENTITY=default`) and a publication; two pgroar data directories, each bootstrapped
//! on the empty table so that it creates its slot, and two `pgoutput` slots for
//! `pg_recvlogical`. Then N rows are inserted and drained (untimed: the index then holds N live
//! slots, the recvlogical slots are advanced past the inserts), and the backlog is made: N
//! single-row UPDATEs of `nsfwLevel` and `scannedAt`, 10k rows per transaction. Then, timed and
//! alternating: recvlogical A, pgroar A, recvlogical B, pgroar B.
//!
//! The end of the backlog is `pg_current_wal_insert_lsn()` read inside its last transaction,
//! just before `COMMIT`: at or before the last commit record, so both readers pass it only once
//! they have received the whole backlog. pgroar is timed from spawning the process until
//! `GET /status` shows `lsn.applied` at or past that point (polled every 20 ms), start-up and
//! checkpoint load included.
//!
//! ```sh
//! cargo bench --bench drain                          # 1M rows
//! PGROAR_DRAIN_ROWS=100000 cargo bench --bench drain # a quick run
//! PGROAR_DRAIN_BIN_B=/path/to/other/pgroar cargo bench --bench drain  # round b: that binary
//! PGROAR_DRAIN_IDENTITY=default cargo bench --bench drain  # the default replica identity
//! ```

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]
// Scenario and case-table functions run long; library code keeps the line limit.
#![allow(clippy::too_many_lines)]

mod process;
mod schemas;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::cluster::{Cluster, ClusterOptions};
use process::{Pgroar, cpu_seconds, free_port, mib, pg_program, stage, stop, thread_cpu_text};
use schemas::CHUNK;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery: nothing to list.
    }
    let rows: i64 = std::env::var("PGROAR_DRAIN_ROWS")
        .ok()
        .map(|s| s.parse().expect("PGROAR_DRAIN_ROWS must be a number"))
        .unwrap_or(1_000_000);
    assert!(
        rows >= CHUNK && rows % CHUNK == 0,
        "rows must be a multiple of {CHUNK}"
    );

    let cluster = Cluster::start(ClusterOptions::fast()).expect("starting a cluster");
    let db = cluster
        .create_database("drain")
        .expect("creating the database");
    let url = cluster.url(&db);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(schemas::connect(&url));
    let sql = |q: &str| rt.block_on(client.batch_execute(q)).expect(q);

    // `PGROAR_DRAIN_IDENTITY=default`: no old rows are sent, so every UPDATE re-sets every
    // tracked field.
    let identity = std::env::var("PGROAR_DRAIN_IDENTITY").unwrap_or_else(|_| "full".into());
    assert!(
        identity == "full" || identity == "default",
        "PGROAR_DRAIN_IDENTITY is full or default"
    );
    let schema = std::env::var("PGROAR_DRAIN_SCHEMA").unwrap_or_else(|_| "image".into());
    eprintln!("schema {schema}, replica identity {identity}: loading {rows} images…");
    match schema.as_str() {
        "image" => schemas::load_image(&rt, &client, rows, &identity),
        "feed" => schemas::load_feed(&rt, &url, rows as u32, identity.parse().unwrap()),
        other => panic!("PGROAR_DRAIN_SCHEMA is image or feed, not {other}"),
    }
    sql("VACUUM ANALYZE");

    let work = tempfile::Builder::new()
        .prefix("pgroar-drain-")
        .tempdir()
        .unwrap();
    let runs = ["a", "b"].map(|name| PgroarRun::new(work.path(), name, &url, &schema));
    for run in &runs {
        // Bootstraps the loaded tables (and creates the slot), then stops.
        let mut child = run.spawn("bootstrap");
        let t = Instant::now();
        run.wait_until(&mut child, |s| s["phase"] == "streaming");
        eprintln!(
            "pgroar {}: bootstrapped in {:.2} s (untimed setup)",
            run.name,
            t.elapsed().as_secs_f64()
        );
        stop(child);
    }
    for run in &runs {
        for slot in [&run.recv_slot, &run.null_slot] {
            sql(&format!(
                "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
            ));
        }
    }

    eprintln!("making the backlog: {rows} single-row UPDATEs, {CHUNK} per transaction…");
    let end = rt.block_on(schemas::chunked(&client, rows, |a, b| {
        format!(
            r#"UPDATE "Image" SET "nsfwLevel" = ("nsfwLevel" + 1) % 6,
                 "scannedAt" = COALESCE("scannedAt", "createdAt") + interval '1 hour'
               WHERE id BETWEEN {a} AND {b}"#
        )
    }));
    let start_lsn: String = rt
        .block_on(client.query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'recv_a'",
            &[],
        ))
        .unwrap()
        .get(0);
    let backlog_bytes = end.0 - start_lsn.parse::<Lsn>().unwrap().0;
    eprintln!(
        "backlog: {start_lsn} .. {end} ({:.0} MiB of server WAL)",
        mib(backlog_bytes)
    );

    let recvlogical: PathBuf = pg_program("pg_recvlogical", Some(cluster.bin_dir()));
    let mut results = Vec::new();
    for run in &runs {
        let t = Instant::now();
        let status = Command::new(&recvlogical)
            .args(["-d", &url, "--slot", &run.recv_slot, "--start"])
            .args(["--endpos", &end.to_string(), "-f", "/dev/null", "--no-loop"])
            .args(["-o", "proto_version=1", "-o", "publication_names=pgroar"])
            .status()
            .expect("running pg_recvlogical");
        let recv = t.elapsed();
        assert!(status.success(), "pg_recvlogical failed: {status}");
        eprintln!("pg_recvlogical {}: {:.2} s", run.name, recv.as_secs_f64());
        let null = null_consumer(&url, &run.null_slot, end);
        eprintln!(
            "null consumer {}: {:.2} s (received and acknowledged, nothing decoded)",
            run.name,
            null.as_secs_f64()
        );

        // `PGROAR_DRAIN_BIN_B`: round b runs another pgroar binary (e.g. an earlier build),
        // timed side by side with this one in round a.
        let other = std::env::var_os("PGROAR_DRAIN_BIN_B").filter(|_| run.name == "b");
        let mut child = match &other {
            Some(bin) => run.spawn_bin(Path::new(bin), "run"),
            None => run.spawn("run"),
        };
        let t = Instant::now();
        let mut first_status = None;
        let (mut received_at, mut durable_at) = (None, None);
        let last = run.wait_until(&mut child, |s| {
            first_status.get_or_insert_with(|| t.elapsed());
            if stage(s, "received") >= end {
                received_at.get_or_insert_with(|| t.elapsed());
            }
            if stage(s, "durable") >= end {
                durable_at.get_or_insert_with(|| t.elapsed());
            }
            stage(s, "applied") >= end
        });
        let took = t.elapsed();
        let cpu = cpu_seconds(child.id());
        let threads = thread_cpu_text(child.id());
        let per_million = |secs: f64| secs * 1e6 / rows as f64;
        let stages: String = process::thread_cpu(child.id())
            .iter()
            .map(|(name, secs)| format!("{name} {:.2}", per_million(*secs)))
            .collect::<Vec<_>>()
            .join(", ");
        let walsender: Option<i32> = rt
            .block_on(client.query_one(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&format!("pgroar_{}", run.name)],
            ))
            .ok()
            .and_then(|r| r.get(0));
        let walsender_cpu = walsender.map_or(0.0, |pid| cpu_seconds(pid as u32));
        let t_stop = Instant::now();
        stop(child);
        eprintln!(
            "pgroar run {}: {:.2} s, {cpu:.2} s of CPU, its walsender {walsender_cpu:.2} s of CPU \
             (first /status {:.2} s, received {:.2} s, durable {:.2} s; stop took {:.2} s; \
             ops applied {}, {} transactions)",
            run.name,
            took.as_secs_f64(),
            first_status.unwrap_or_default().as_secs_f64(),
            received_at.unwrap_or_default().as_secs_f64(),
            durable_at.unwrap_or_default().as_secs_f64(),
            t_stop.elapsed().as_secs_f64(),
            last["ops_applied_total"],
            last["transactions_total"],
        );
        eprintln!("  CPU by thread: {threads}");
        let cpu_per_million = format!(
            "{:.2} s ({stages}); walsender {:.2} s",
            per_million(cpu),
            per_million(walsender_cpu)
        );
        results.push((run.name, recv, null, took, cpu_per_million));
    }

    println!(
        "\nstreaming drain: {rows} single-row UPDATEs in {CHUNK}-row transactions, replica \
         identity {identity}"
    );
    println!("backlog: {:.0} MiB of server WAL\n", mib(backlog_bytes));
    println!(
        "| round | pg_recvlogical | null consumer | pgroar run (to applied) | rows/s | \
         ÷ pg_recvlogical | ÷ null consumer | CPU per 1M changes, by thread |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, recv, null, took, cpu) in &results {
        let (r, n, p) = (recv.as_secs_f64(), null.as_secs_f64(), took.as_secs_f64());
        println!(
            "| {name} | {r:.2} s | {n:.2} s | {p:.2} s | {:.0}k | {:.2}× | {:.2}× | {cpu} |",
            rows as f64 / p / 1e3,
            p / r,
            p / n
        );
    }
}

/// One pgroar data directory, its config, and the slots timed against it.
struct PgroarRun {
    name: &'static str,
    pgroar: Pgroar,
    recv_slot: String,
    /// The slot of the null consumer timed against it.
    null_slot: String,
}

impl PgroarRun {
    fn new(dir: &Path, name: &'static str, url: &str, schema: &str) -> PgroarRun {
        let port = free_port();
        let data_dir = dir.join(format!("data-{name}"));
        let config = if schema == "feed" {
            schemas::feed_config(url, &format!("pgroar_{name}"), &data_dir, port)
        } else {
            schemas::image_config(url, &format!("pgroar_{name}"), &data_dir, port)
        };
        PgroarRun {
            name,
            pgroar: Pgroar::new(dir, name, port, &config),
            recv_slot: format!("recv_{name}"),
            null_slot: format!("null_{name}"),
        }
    }

    fn spawn(&self, command: &str) -> Child {
        self.spawn_bin(&process::pgroar_bin(), command)
    }

    fn spawn_bin(&self, bin: &Path, command: &str) -> Child {
        self.pgroar.spawn(bin, &[command], "warn")
    }

    /// Polls `/status` until `done` holds; returns that status.
    fn wait_until(
        &self,
        child: &mut Child,
        done: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.pgroar.wait_status(child, done)
    }
}

/// The walsender's own limit on this machine: the backlog up to `end` received on `slot`
/// through the same replication library and settings pgroar uses, each transaction
/// acknowledged as its commit arrives, nothing decoded, translated or written.
fn null_consumer(url: &str, slot: &str, end: Lsn) -> Duration {
    use pgwire_replication::{ReplicationClient, ReplicationEvent};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = pgroar::source::ConnInfo::parse(url).unwrap();
        // Values in binary form, as pgroar asks for them on both bench schemas.
        let cfg = conn
            .replication_config(slot, "pgroar")
            .with_binary(true)
            .with_stop_lsn(pgwire_replication::Lsn(end.0));
        let t = Instant::now();
        let mut client = ReplicationClient::connect(cfg).await.unwrap();
        while let Some(event) = client.recv().await.unwrap() {
            match event {
                ReplicationEvent::Commit { end_lsn, .. } => client.update_applied_lsn(end_lsn),
                ReplicationEvent::StoppedAt { .. } => break,
                _ => {}
            }
        }
        let took = t.elapsed();
        client.stop();
        took
    })
}
