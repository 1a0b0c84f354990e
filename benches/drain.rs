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

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::cluster::{Cluster, ClusterOptions};
use tokio_postgres::{Client, NoTls};

/// Rows per transaction, for the inserts and for the backlog.
const CHUNK: i64 = 10_000;
/// How often `/status` is polled.
const POLL: Duration = Duration::from_millis(20);
/// Give up on any single wait after this long.
const WAIT_LIMIT: Duration = Duration::from_secs(1800);

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
    let client = rt.block_on(connect(&url));
    let sql = |q: &str| rt.block_on(client.batch_execute(q)).expect(q);

    sql(r#"
        CREATE TYPE "ImageType" AS ENUM ('image', 'video', 'audio');
        CREATE TABLE "Image" (
            id integer PRIMARY KEY,
            "nsfwLevel" integer NOT NULL,
            type "ImageType" NOT NULL,
            "scannedAt" timestamptz,
            "createdAt" timestamptz NOT NULL,
            flags integer NOT NULL,
            "postId" integer
        );
        CREATE PUBLICATION pgroar FOR TABLE "Image";
    "#);
    // `PGROAR_DRAIN_IDENTITY=default`: no old rows are sent, so every UPDATE re-sets every
    // tracked field.
    let identity = std::env::var("PGROAR_DRAIN_IDENTITY").unwrap_or_else(|_| "full".into());
    assert!(
        identity == "full" || identity == "default",
        "PGROAR_DRAIN_IDENTITY is full or default"
    );
    sql(&format!(
        r#"ALTER TABLE "Image" REPLICA IDENTITY {identity}"#
    ));
    eprintln!("replica identity: {identity}");

    let work = tempfile::Builder::new()
        .prefix("pgroar-drain-")
        .tempdir()
        .unwrap();
    let runs = ["a", "b"].map(|name| PgroarRun::new(work.path(), name, &url));
    for run in &runs {
        // On the empty table: bootstraps (creates the slot), then stops.
        let mut child = run.spawn("bootstrap");
        run.wait_until(&mut child, |s| s["phase"] == "streaming");
        stop(child);
    }
    for run in &runs {
        for slot in [&run.recv_slot, &run.null_slot] {
            sql(&format!(
                "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
            ));
        }
    }

    eprintln!("inserting {rows} rows…");
    let inserted = rt.block_on(chunked(&client, rows, |a, b| {
        format!(
            r#"INSERT INTO "Image" SELECT i, i % 6, (ARRAY['image','video','image','audio'])[i % 4 + 1]::"ImageType",
                 now() - (i % 1000) * interval '1 minute', now() - (i % 5000) * interval '1 hour',
                 (i::bigint * 7919) % 65536, i / 20 FROM generate_series({a}, {b}) i"#
        )
    }));
    for run in &runs {
        for slot in [&run.recv_slot, &run.null_slot] {
            sql(&format!(
                "SELECT pg_replication_slot_advance('{slot}', '{inserted}')"
            ));
        }
        let mut child = run.spawn("run");
        let t = Instant::now();
        run.wait_until(&mut child, |s| stage(s, "applied") >= inserted);
        eprintln!(
            "pgroar {}: indexed the {rows} inserts in {:.2} s (untimed setup)",
            run.name,
            t.elapsed().as_secs_f64()
        );
        stop(child);
    }

    eprintln!("making the backlog: {rows} single-row UPDATEs, {CHUNK} per transaction…");
    let end = rt.block_on(chunked(&client, rows, |a, b| {
        format!(
            r#"UPDATE "Image" SET "nsfwLevel" = ("nsfwLevel" + 1) % 6,
                 "scannedAt" = "scannedAt" + interval '1 hour' WHERE id BETWEEN {a} AND {b}"#
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

    let recvlogical = find_recvlogical(&cluster);
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
        let threads = thread_cpu(child.id());
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
        results.push((run.name, recv, null, took));
    }

    println!(
        "\nstreaming drain: {rows} single-row UPDATEs in {CHUNK}-row transactions, replica \
         identity {identity}"
    );
    println!("backlog: {:.0} MiB of server WAL\n", mib(backlog_bytes));
    println!(
        "| round | pg_recvlogical | null consumer | pgroar run (to applied) | rows/s | \
         ÷ pg_recvlogical | ÷ null consumer |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, recv, null, took) in &results {
        let (r, n, p) = (recv.as_secs_f64(), null.as_secs_f64(), took.as_secs_f64());
        println!(
            "| {name} | {r:.2} s | {n:.2} s | {p:.2} s | {:.0}k | {:.2}× | {:.2}× |",
            rows as f64 / p / 1e3,
            p / r,
            p / n
        );
    }
}

/// One pgroar data directory, its config, and the recvlogical slot timed against it.
struct PgroarRun {
    name: &'static str,
    config: PathBuf,
    log: PathBuf,
    status_url: String,
    recv_slot: String,
    /// The slot of the null consumer timed against it.
    null_slot: String,
}

impl PgroarRun {
    fn new(dir: &Path, name: &'static str, url: &str) -> PgroarRun {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data_dir = dir.join(format!("data-{name}"));
        let config = dir.join(format!("pgroar-{name}.toml"));
        fs::write(
            &config,
            format!(
                r#"
[postgres]
url = "{url}"
publication = "pgroar"
slot = "pgroar_{name}"

[storage]
data_dir = "{data_dir}"

[http]
listen = "127.0.0.1:{port}"

[index]
filters = [
  {{ name = "nsfwLevel", kind = "single" }},
  {{ name = "hasMeta", kind = "bool" }},
  {{ name = "type", kind = "single" }},
  {{ name = "postId", kind = "single" }},
]
sorts = [
  {{ name = "existedAt", bits = 32 }},
  {{ name = "id", bits = 32 }},
]

[[sources]]
table = "Image"
slot_field = "id"
sets_alive = true
on_delete = "delete_slot"
track_fields = [
  "id",
  "nsfwLevel",
  "postId",
  "{{type}}::text as type",
  "extract(epoch from GREATEST({{scannedAt}}, {{createdAt}}))::bigint as existedAt",
  "({{flags}} & (1 << 13)) != 0 AND ({{flags}} & (1 << 2)) = 0 as hasMeta",
]
"#,
                data_dir = data_dir.display()
            ),
        )
        .unwrap();
        PgroarRun {
            name,
            config,
            log: dir.join(format!("pgroar-{name}.log")),
            status_url: format!("http://127.0.0.1:{port}/status"),
            recv_slot: format!("recv_{name}"),
            null_slot: format!("null_{name}"),
        }
    }

    fn spawn(&self, command: &str) -> Child {
        self.spawn_bin(Path::new(env!("CARGO_BIN_EXE_pgroar")), command)
    }

    fn spawn_bin(&self, bin: &Path, command: &str) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Command::new(bin)
            .arg(command)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning pgroar")
    }

    /// Polls `/status` until `done` holds; returns that status. Panics (with the log) if
    /// pgroar exits or the wait takes too long.
    fn wait_until(
        &self,
        child: &mut Child,
        mut done: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let t = Instant::now();
        loop {
            if let Some(exit) = child.try_wait().unwrap() {
                panic!(
                    "pgroar run {} exited ({exit}):\n{}",
                    self.name,
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(mut resp) = ureq::get(&self.status_url).call()
                && let Ok(status) = resp.body_mut().read_json::<serde_json::Value>()
                && done(&status)
            {
                return status;
            }
            assert!(
                t.elapsed() < WAIT_LIMIT,
                "pgroar run {} timed out",
                self.name
            );
            std::thread::sleep(POLL);
        }
    }
}

/// A stage's LSN (`received`, `durable`, `applied`) in a `/status` answer.
fn stage(status: &serde_json::Value, name: &str) -> Lsn {
    status["lsn"][name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Lsn(0))
}

/// SIGTERM, then wait for the clean stop.
fn stop(mut child: Child) {
    // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "pgroar run did not stop cleanly: {status}"
    );
}

/// Runs `stmt(a, b)` for ids 1..=rows in `CHUNK`-row transactions; returns the WAL insert
/// position read inside the last one, just before its `COMMIT`.
async fn chunked(client: &Client, rows: i64, stmt: impl Fn(i64, i64) -> String) -> Lsn {
    let mut a = 1;
    while a + CHUNK <= rows {
        client.batch_execute(&stmt(a, a + CHUNK - 1)).await.unwrap();
        a += CHUNK;
    }
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute(&stmt(a, rows)).await.unwrap();
    let row = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    row.get::<_, String>(0).parse().unwrap()
}

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

fn find_recvlogical(cluster: &Cluster) -> PathBuf {
    let next_to_initdb = cluster.bin_dir().join("pg_recvlogical");
    if next_to_initdb.exists() {
        next_to_initdb
    } else {
        PathBuf::from("pg_recvlogical")
    }
}

/// User plus system CPU seconds used so far by process `pid` (0 if unreadable).
fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU seconds from a `/proc/…/stat` file (0 if unreadable).
fn cpu_seconds_of(path: &str) -> f64 {
    let Ok(stat) = fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// CPU seconds per thread name of process `pid`, busiest first, as `name 1.23 s, …`.
fn thread_cpu(pid: u32) -> String {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return String::new();
    };
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let secs = cpu_seconds_of(&format!("/proc/{pid}/task/{tid}/stat"));
        match by_name.iter_mut().find(|(n, _)| n == name.trim()) {
            Some((_, total)) => *total += secs,
            None => by_name.push((name.trim().to_string(), secs)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name
        .iter()
        .filter(|(_, secs)| *secs >= 0.01)
        .map(|(name, secs)| format!("{name} {secs:.2} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
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
        let cfg = conn
            .replication_config(slot, "pgroar")
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
