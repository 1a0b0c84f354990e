//! Scale run: the image-feed dataset at production size, as a user runs pgroar on it. Not part
//! of CI (it needs tens of GB of disk and takes minutes to hours); `docs/benchmarks.md` records
//! its figures.
//!
//! On a private throwaway cluster: `pgroar generate`'s dataset with `PGROAR_SCALE_IMAGES` images
//! (default 10M; ~4 tags, ~1.5 model versions and ~0.4 tools each, a post per ~7 images), then:
//!
//! 1. a sequential raw `psql COPY … TO STDOUT > /dev/null` of the six tables;
//! 2. `pgroar bootstrap` (release binary) until its first `/query` answer: wall time, rows/s,
//!    CPU, peak RSS, the phases and the checkpoint's size on disk;
//! 3. a restart (`pgroar run`) until its first `/query` answer (`PGROAR_SCALE_COLD_RESTART=1`:
//!    with the page cache dropped first, as after a reboot; needs root);
//! 4. the dataset's writer (one session) at `PGROAR_SCALE_WRITE_RATE` transactions per
//!    second in all (default 10,000; the writer's mix of small changes; the rate reached is
//!    printed) for `PGROAR_SCALE_WRITE_SECS` (default 60), while
//!    a reader runs top-50 queries back to back: their p50/p99/max, the apply rate, the
//!    checkpoints written meanwhile (size, time), resident memory at the start and the end,
//!    and every `PGROAR_SCALE_SAMPLE_SECS` (default 300) a line of rates, lag and memory.
//!
//! ```sh
//! cargo bench --bench scale                                      # 10M images
//! PGROAR_SCALE_IMAGES=1000000 cargo bench --bench scale          # a quick run
//! PGROAR_SCALE_WRITE_SECS=3600 cargo bench --bench scale         # an hour of writes
//! ```

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]
// Scenario and case-table functions run long; library code keeps the line limit.
#![allow(clippy::too_many_lines)]

mod process;
mod schemas;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use pgroar::dataset::{Identity, Writer, WriterStats};
use pgroar::source::ConnInfo;
use process::{Pgroar, free_port, percentile_ms, pgroar_bin};

/// Writer sessions (the dataset's writer allocates new ids alone: one session).
const WRITERS: u64 = 1;

/// Top-50 queries the reader cycles through while the writer runs.
const QUERIES: [&str; 5] = [
    r#"{"sort": {"field": "existedAt", "order": "desc"}, "limit": 50}"#,
    r#"{"filter": "nsfwLevel eq 1", "sort": {"field": "existedAt", "order": "desc"}, "limit": 50}"#,
    r#"{"filter": "nsfwLevel in [1, 2] AND tagIds eq 1", "sort": {"field": "existedAt", "order": "desc"}, "limit": 50}"#,
    r#"{"filter": "tagIds in [40, 41] AND NOT type eq video", "sort": {"field": "id", "order": "desc"}, "limit": 50}"#,
    r#"{"filter": "availability eq Public AND baseModels eq SDXL", "sort": {"field": "publishedAt", "order": "desc"}, "limit": 50}"#,
];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let images = env("PGROAR_SCALE_IMAGES", 10_000_000.0) as u32;
    let rate = env("PGROAR_SCALE_WRITE_RATE", 10_000.0);
    let write_secs = env("PGROAR_SCALE_WRITE_SECS", 60.0);
    let sample_secs = env("PGROAR_SCALE_SAMPLE_SECS", 300.0);
    let (cluster, url, rt) = schemas::cluster("scale");
    let t = Instant::now();
    schemas::load_feed(&rt, &url, images, Identity::Default);
    let client = rt.block_on(schemas::connect(&url));
    for sql in ["VACUUM ANALYZE", "CHECKPOINT"] {
        rt.block_on(client.batch_execute(sql)).unwrap();
    }
    let size: i64 = rt
        .block_on(client.query_one("SELECT pg_database_size(current_database())", &[]))
        .unwrap()
        .get(0);
    let tables: Vec<(String, i64)> = rt
        .block_on(client.query(
            "SELECT format('%I.%I', schemaname, tablename), \
                    (SELECT reltuples::bigint FROM pg_class \
                     WHERE oid = format('%I.%I', schemaname, tablename)::regclass) \
             FROM pg_publication_tables WHERE pubname = 'pgroar'",
            &[],
        ))
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let rows: i64 = tables.iter().map(|t| t.1).sum();
    eprintln!(
        "loaded {images} images, {rows} rows in {} tables, {:.1} GiB on disk, in {:.0?}",
        tables.len(),
        size as f64 / (1u64 << 30) as f64,
        t.elapsed()
    );

    // 1. The raw COPY baseline.
    let psql = process::pg_program("psql", Some(cluster.bin_dir()));
    let t = Instant::now();
    for (table, _) in &tables {
        let status = Command::new(&psql)
            .arg(&url)
            .args(["-X", "-q", "-c", &format!("COPY {table} TO STDOUT")])
            .stdout(Stdio::from(std::fs::File::create("/dev/null").unwrap()))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let raw = t.elapsed();
    eprintln!("raw COPY, sequential: {:.1} s", raw.as_secs_f64());

    // 2. The bootstrap, whole process.
    let work = tempfile::Builder::new()
        .prefix("pgroar-scale-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let data_dir = work.path().join("data");
    let config = schemas::feed_config(&url, "scale", &data_dir, port);
    let pgroar = Pgroar::new(work.path(), "scale", port, &config);
    let bin = pgroar_bin();
    let t = Instant::now();
    let mut child = pgroar.spawn(&bin, &["bootstrap"], "info");
    let answer = pgroar.wait_query(&mut child, r#"{"limit": 1}"#);
    let boot = t.elapsed();
    // The first answer can come while the checkpoint is written: wait for it to be durable.
    pgroar.wait_status(&mut child, |s| s["phase"] != "bootstrapping");
    let durable = t.elapsed();
    let (boot_cpu, boot_rss) = (
        process::cpu_seconds(child.id()),
        process::peak_rss_mib(child.id()),
    );
    let checkpoint = dir_bytes(&data_dir.join("index"));
    let boot_memory = memory_table(&pgroar);
    process::stop(child);
    eprintln!(
        "bootstrap to the first answer: {:.1} s ({:.2}× the raw COPY), {:.0} rows/s, {} alive, \
         CPU {boot_cpu:.1} s, peak RSS {boot_rss:.0} MiB; checkpoint {:.0} MiB, durable and \
         streaming at {:.1} s",
        boot.as_secs_f64(),
        boot.as_secs_f64() / raw.as_secs_f64(),
        rows as f64 / boot.as_secs_f64(),
        answer["total"],
        process::mib(checkpoint),
        durable.as_secs_f64(),
    );
    eprintln!(
        "  {}",
        log_lines(&pgroar.log, &["bootstrap phases", "WAL opened"])
    );
    eprintln!("index memory by field after the bootstrap:\n{boot_memory}");

    // 3. Restart to serving (after a reboot's empty page cache, with PGROAR_SCALE_COLD_RESTART=1;
    // needs root).
    if std::env::var_os("PGROAR_SCALE_COLD_RESTART").is_some() {
        let dropped = Command::new("sync").status().is_ok_and(|s| s.success())
            && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
        eprintln!("restart with an empty page cache: {dropped}");
    }
    let t = Instant::now();
    let mut child = pgroar.spawn(&bin, &["run"], "info");
    pgroar.wait_query(&mut child, r#"{"limit": 1}"#);
    let restart = t.elapsed();
    let rss_start = process::rss_mib(child.id());
    eprintln!(
        "restart to the first answer: {:.2} s ({}); RSS {rss_start:.0} MiB; index memory:\n{}",
        restart.as_secs_f64(),
        log_lines(&pgroar.log, &["WAL opened"]),
        memory_table(&pgroar),
    );

    // 4. Writer + readers.
    let stats = Arc::new(WriterStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let conn = ConnInfo::parse(&url).unwrap();
    let applied_before = ops_applied(&pgroar);
    let writing: Vec<_> = (0..WRITERS)
        .map(|w| {
            let writer = rt
                .block_on(Writer::connect(&conn, 7 + w, Arc::clone(&stats)))
                .unwrap();
            rt.spawn(writer.run(rate / WRITERS as f64, stop_rx.clone()))
        })
        .collect();
    let t = Instant::now();
    let mut lat = Vec::new();
    let mut i = 0;
    let mut sample = Sample::new(&pgroar, sample_secs);
    while t.elapsed().as_secs_f64() < write_secs {
        let q = Instant::now();
        let answer = pgroar.query(QUERIES[i % QUERIES.len()]);
        assert!(
            answer.is_some(),
            "query {} failed",
            QUERIES[i % QUERIES.len()]
        );
        lat.push(q.elapsed());
        i += 1;
        sample.tick(&pgroar, child.id(), &stats, &lat);
    }
    let _ = stop_tx.send(true);
    for w in writing {
        rt.block_on(w).unwrap().unwrap();
    }
    let written = t.elapsed();
    let applied = ops_applied(&pgroar) - applied_before;
    let rss_end = process::rss_mib(child.id());
    let peak = process::peak_rss_mib(child.id());
    let lag = status_field(&pgroar, "lag_seconds");
    lat.sort();
    eprintln!(
        "{:.0} s of writes: {} writer transactions ({:.0}/s), {applied} ops applied ({:.0}/s); \
         {} top-50 queries: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; RSS {rss_start:.0} → \
         {rss_end:.0} MiB (peak {peak:.0} MiB)",
        written.as_secs_f64(),
        stats.total(),
        stats.total() as f64 / written.as_secs_f64(),
        applied as f64 / written.as_secs_f64(),
        lat.len(),
        percentile_ms(&lat, 50.0),
        percentile_ms(&lat, 99.0),
        percentile_ms(&lat, 100.0),
    );
    eprintln!(
        "  applied lag at the end of the writes: {lag} s; {}",
        log_lines(&pgroar.log, &["checkpoint written"])
    );
    eprintln!("index memory after the writes:\n{}", memory_table(&pgroar));
    // The stop applies what is still behind and writes a final checkpoint.
    let t = Instant::now();
    process::stop(child);
    eprintln!("stopped in {:.1} s", t.elapsed().as_secs_f64());
}

/// A line every `every` seconds of the writes: the writer's and the apply's rates since the
/// last line, the lag, resident memory beside the index's own estimate, the queries' p50/p99.
struct Sample {
    every: f64,
    start: Instant,
    next: f64,
    applied: u64,
    tx: u64,
    queries: usize,
}

impl Sample {
    fn new(pgroar: &Pgroar, every: f64) -> Self {
        Sample {
            every,
            start: Instant::now(),
            next: every,
            applied: ops_applied(pgroar),
            tx: 0,
            queries: 0,
        }
    }

    fn tick(
        &mut self,
        pgroar: &Pgroar,
        pid: u32,
        stats: &WriterStats,
        lat: &[std::time::Duration],
    ) {
        let now = self.start.elapsed().as_secs_f64();
        if now < self.next {
            return;
        }
        let (applied, tx) = (ops_applied(pgroar), stats.total());
        let mut window = lat[self.queries..].to_vec();
        window.sort();
        let index_mib = memory_total_mib(pgroar);
        eprintln!(
            "  [{:>5.0} s] writer {:.0} tx/s, applied {:.0} ops/s, lag {} s; RSS {:.0} MiB, \
             index {index_mib:.0} MiB; queries p50 {:.2} / p99 {:.2} ms",
            now,
            (tx - self.tx) as f64 / self.every,
            (applied - self.applied) as f64 / self.every,
            status_field(pgroar, "lag_seconds"),
            process::rss_mib(pid),
            percentile_ms(&window, 50.0),
            percentile_ms(&window, 99.0),
        );
        (self.applied, self.tx, self.queries) = (applied, tx, lat.len());
        self.next += self.every;
    }
}

/// The index's own estimate of its heap bytes (`GET /status/memory`), in MiB.
fn memory_total_mib(pgroar: &Pgroar) -> f64 {
    memory_report(pgroar)["total"].as_u64().unwrap() as f64 / f64::from(1 << 20)
}

/// `GET /status/memory`.
fn memory_report(pgroar: &Pgroar) -> serde_json::Value {
    let mut resp = ureq::get(&format!("{}/status/memory", pgroar.base))
        .call()
        .unwrap();
    resp.body_mut().read_json().unwrap()
}

/// Total bytes of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn ops_applied(pgroar: &Pgroar) -> u64 {
    status_field(pgroar, "ops_applied_total")
        .as_u64()
        .unwrap_or(0)
}

/// `GET /status/memory` as a table: each field's keys and bytes, then the total per live slot.
fn memory_table(pgroar: &Pgroar) -> String {
    let report = memory_report(pgroar);
    let slots = report["slots"].as_u64().unwrap().max(1) as f64;
    let mib = |v: &serde_json::Value| v.as_u64().unwrap() as f64 / f64::from(1 << 20);
    let mut out = String::from(
        "  | field | kind | keys | bitmaps MiB | columns MiB | other MiB | B per slot |\n",
    );
    for f in report["fields"].as_array().unwrap() {
        let total: u64 = ["bitmaps", "columns", "other"]
            .iter()
            .map(|k| f[*k].as_u64().unwrap())
            .sum();
        out += &format!(
            "  | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            f["name"].as_str().unwrap(),
            f["kind"].as_str().unwrap(),
            f["keys"],
            mib(&f["bitmaps"]),
            mib(&f["columns"]),
            mib(&f["other"]),
            total as f64 / slots,
        );
    }
    out + &format!(
        "  | total | | {} slots | | | | {:.1} ({:.0} MiB) |",
        report["slots"],
        report["total"].as_u64().unwrap() as f64 / slots,
        mib(&report["total"]),
    )
}

/// One field of `/status`.
fn status_field(pgroar: &Pgroar, name: &str) -> serde_json::Value {
    let mut resp = ureq::get(&format!("{}/status", pgroar.base))
        .call()
        .unwrap();
    let status: serde_json::Value = resp.body_mut().read_json().unwrap();
    status[name].clone()
}

/// The last log line containing each needle, from its message on.
fn log_lines(log: &Path, needles: &[&str]) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    needles
        .iter()
        .filter_map(|n| text.lines().rfind(|l| l.contains(n)))
        .map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest).to_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}
