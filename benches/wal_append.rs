//! Durable append rate of the ops WAL at several group-commit sizes.
//!
//! One iteration appends `group` transactions of 10 Image-like updates (2–4 set/remove ops each)
//! and then syncs once, so every op counted is on disk when the iteration ends. Throughput is in
//! ops (EntityOps records) per second. `buffered` appends the same transactions without syncing:
//! the encoding and write cost alone.
//!
//! The WAL lives under `PGROAR_BENCH_DIR` if set, else the system temp dir. Put it on the disk
//! you mean to measure: on a tmpfs an fsync costs nothing.
//!
//! Run: `cargo bench --bench wal_append -- --warm-up-time 1 --measurement-time 3`

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]
// Scenario and case-table functions run long; library code keeps the line limit.
#![allow(clippy::too_many_lines)]

use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use pgroar::Lsn;
use pgroar::ops::{EntityOps, Op, Value};
use pgroar::wal::{Wal, WalOptions};

const OPS_PER_TXN: usize = 10;

/// A pool of transactions of realistic Image updates.
fn transactions(n: usize) -> Vec<Vec<EntityOps>> {
    let update = |id: i64| -> EntityOps {
        let ops = match id % 3 {
            0 => vec![
                Op::remove("nsfwLevel", id % 32),
                Op::set("nsfwLevel", (id + 1) % 32),
            ],
            1 => vec![
                Op::remove("reactionCount", id),
                Op::set("reactionCount", id + 1),
                Op::set("sortAt", 1_700_000_000 + id),
            ],
            _ => vec![
                Op::remove("baseModel", "SD 1.5"),
                Op::set("baseModel", "SDXL 1.0"),
                Op::remove("publishedAt", Value::Null),
                Op::set("publishedAt", 1_700_000_000 + id),
            ],
        };
        EntityOps::new(100_000_000 + id, ops)
    };
    (0..n)
        .map(|t| {
            (0..OPS_PER_TXN)
                .map(|i| update((t * OPS_PER_TXN + i) as i64))
                .collect()
        })
        .collect()
}

fn bench_dir() -> tempfile::TempDir {
    let b = tempfile::Builder::new().prefix("pgroar-wal-bench-").clone();
    match std::env::var_os("PGROAR_BENCH_DIR") {
        Some(d) => b.tempdir_in(d),
        None => b.tempdir(),
    }
    .expect("create the bench directory")
}

/// Appends `group` transactions (and syncs once if `sync`); keeps at most two segments on disk.
fn round(wal: &mut Wal, pool: &[Vec<EntityOps>], lsn: &mut u64, group: usize, sync: bool) {
    for t in 0..group {
        *lsn += 1;
        wal.begin(Lsn(*lsn)).unwrap();
        for ops in &pool[(*lsn as usize + t) % pool.len()] {
            wal.append(ops).unwrap();
        }
        wal.commit().unwrap();
    }
    if sync {
        assert_eq!(wal.sync().unwrap(), Lsn(*lsn));
    }
    if wal.segments().len() > 2 {
        let covered = wal.durable_lsn();
        wal.remove_segments_below(covered).unwrap();
    }
}

fn wal_append(c: &mut Criterion) {
    let pool = transactions(1000);
    let mut g = c.benchmark_group("wal_append");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    for group in [1usize, 10, 100, 1000] {
        let dir = bench_dir();
        let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let mut lsn = 0u64;
        g.throughput(Throughput::Elements((group * OPS_PER_TXN) as u64));
        g.bench_function(BenchmarkId::new("sync_every_txns", group), |b| {
            b.iter(|| round(&mut wal, &pool, &mut lsn, group, true));
        });
    }
    let dir = bench_dir();
    let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let mut lsn = 0u64;
    g.throughput(Throughput::Elements((1000 * OPS_PER_TXN) as u64));
    g.bench_function("buffered_no_sync", |b| {
        b.iter(|| round(&mut wal, &pool, &mut lsn, 1000, false));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = wal_append
}
criterion_main!(benches);
