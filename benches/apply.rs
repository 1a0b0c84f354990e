//! Dedup + apply rate on one thread, in ops/s, on an Image-like index of 1M live slots.
//!
//! The stream mimics steady state on an image feed: updates of single-value fields (each a
//! `remove old` + `set new` pair), sort-field updates, tag adds/removes, new images with all
//! their fields, and deletes. Batches are 10k entity-ops, deduped then applied, as the apply
//! loop does. Throughput counts raw ops in (before dedup).
//!
//! Besides the loop itself, the two stages are timed alone over the same batches.
//!
//! Run: `cargo bench --bench apply`
//!
//! Quick probe (no criterion; prints the best of `PROBE_REPS` runs, default 20, of the same
//! loop with its three stages timed apart: dedup, in-line apply, and the flush of logged
//! bitmap writes at `set_applied`):
//!
//! ```sh
//! cargo bench --bench apply --no-run   # prints the binary's path
//! PROBE=1 target/release/deps/apply-<hash> --bench
//! ```
//!
//! With `PROBE_PUBLISH=n` the probe also takes a snapshot after every `n`th batch (counted in
//! "flush"), as the sink does when `n` batches take as long as its publish delay: every write
//! after a snapshot copies what it touches first, so this measures the copy-on-write tax of
//! publishing often. Without it, the index is cloned once per run of 10 batches.

use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pgroar::WalKey;
use pgroar::dedup::Deduper;
use pgroar::index::Index;
use pgroar::ops::{EntityOps, Op, Value};
use pgroar::schema::{FilterKind, Schema};
use pgroar::wal::{FieldNames, decode_entity_ops_with, encode_entity_ops};

const SLOTS: u32 = 1_000_000;
const BATCH: usize = 10_000;

fn schema() -> Arc<Schema> {
    Arc::new(
        Schema::from_pairs(
            &[
                ("nsfwLevel", FilterKind::Single),
                ("type", FilterKind::Single),
                ("userId", FilterKind::Single),
                ("tagIds", FilterKind::Multi),
                ("hasMeta", FilterKind::Bool),
            ],
            &[("existedAt", 32), ("reactionCount", 32)],
        )
        .unwrap(),
    )
}

/// A tiny deterministic PRNG (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const NSFW: [i64; 6] = [1, 2, 4, 8, 16, 32];
const TYPES: [&str; 3] = ["image", "video", "audio"];

fn image(id: u32, rng: &mut Rng) -> EntityOps {
    EntityOps::alive(
        i64::from(id),
        vec![
            Op::set("nsfwLevel", NSFW[rng.below(6) as usize]),
            Op::set("type", TYPES[rng.below(3) as usize]),
            Op::set("userId", rng.below(100_000) as i64),
            Op::set("hasMeta", rng.below(2) == 0),
            Op::set("existedAt", 1_600_000_000 + rng.below(100_000_000) as i64),
            Op::add("tagIds", rng.below(5_000) as i64),
            Op::add("tagIds", rng.below(5_000) as i64),
        ],
    )
}

fn update(rng: &mut Rng) -> EntityOps {
    let id = i64::from(rng.below(u64::from(SLOTS)) as u32);
    let ops = match rng.below(10) {
        0..=3 => vec![
            Op::remove("nsfwLevel", NSFW[rng.below(6) as usize]),
            Op::set("nsfwLevel", NSFW[rng.below(6) as usize]),
        ],
        4..=5 => vec![Op::set("reactionCount", rng.below(10_000) as i64)],
        6 => vec![
            Op::remove("hasMeta", Value::Bool(false)),
            Op::set("hasMeta", true),
        ],
        7 => vec![Op::add("tagIds", rng.below(5_000) as i64)],
        8 => vec![Op::remove("tagIds", rng.below(5_000) as i64)],
        _ => vec![
            Op::remove("existedAt", 1_600_000_000i64),
            Op::set("existedAt", 1_600_000_000 + rng.below(100_000_000) as i64),
        ],
    };
    EntityOps::new(id, ops)
}

/// `batches` batches of the steady-state stream, as the apply loop gets them: each entity
/// encoded to a WAL payload and decoded again with the schema's field names, as the WAL reader
/// hands them over (names share the schema's `Arc`s).
fn stream(rng: &mut Rng, batches: usize, deduper: &Deduper) -> Vec<Vec<EntityOps>> {
    let mut names = FieldNames::new(deduper.field_names().cloned());
    let mut buf = Vec::new();
    let mut read_back = |e: EntityOps| {
        buf.clear();
        encode_entity_ops(&e, &mut buf).unwrap();
        decode_entity_ops_with(&buf, &mut names).unwrap()
    };
    (0..batches)
        .map(|_| {
            (0..BATCH)
                .map(|_| match rng.below(100) {
                    0..=4 => image(SLOTS + rng.below(100_000) as u32, rng),
                    5 => EntityOps::new(rng.below(u64::from(SLOTS)) as i64, vec![Op::Delete]),
                    _ => update(rng),
                })
                .map(&mut read_back)
                .collect()
        })
        .collect()
}

/// The 1M-slot base index, a deduper for its schema, and 10 batches of the stream.
fn setup() -> (Index, Deduper, Vec<Vec<EntityOps>>) {
    let schema = schema();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut base = Index::new(schema.clone());
    for id in 0..SLOTS {
        base.apply(&image(id, &mut rng));
    }
    let deduper = Deduper::new(&schema);
    let batches = stream(&mut rng, 10, &deduper);
    (base, deduper, batches)
}

/// The same loop as the criterion benchmark, timed stage by stage (see the module note).
fn probe() {
    let (base, deduper, batches) = setup();
    let ops: usize = batches.iter().flatten().map(|e| e.ops.len()).sum();
    let reps: usize = std::env::var("PROBE_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let secs = |t: Instant| t.elapsed().as_secs_f64();
    let publish_every: Option<usize> = std::env::var("PROBE_PUBLISH")
        .ok()
        .map(|s| s.parse().unwrap_or(1).max(1));
    // (total, dedup, apply, flush) of the fastest run.
    let mut best = (f64::MAX, 0.0, 0.0, 0.0);
    for _ in 0..reps {
        let mut index = base.clone();
        let batches = batches.clone();
        let (mut dedup, mut apply, mut flush) = (0.0, 0.0, 0.0);
        let mut published: Option<pgroar::index::Snapshot> = None;
        let start = Instant::now();
        for (i, batch) in batches.into_iter().enumerate() {
            let t = Instant::now();
            let deduped = deduper.dedup(batch);
            dedup += secs(t);
            let t = Instant::now();
            index.apply_batch(&deduped);
            apply += secs(t);
            let t = Instant::now();
            index.set_applied(WalKey::new(pgroar::Lsn(i as u64 + 1), 0));
            flush += secs(t);
            if publish_every.is_some_and(|n| (i + 1) % n == 0) {
                let t = Instant::now();
                // Held until the next one replaces it, as the sink's published cell does.
                let old = published.replace(index.snapshot());
                std::hint::black_box(old);
                flush += secs(t);
            }
        }
        let total = secs(start);
        if total < best.0 {
            best = (total, dedup, apply, flush);
        }
    }
    let (total, dedup, apply, flush) = best;
    println!(
        "best {:.1} ms = {:.2} M ops/s (dedup {:.1} ms, apply {:.1} ms, flush {:.1} ms), {ops} ops",
        total * 1e3,
        ops as f64 / total / 1e6,
        dedup * 1e3,
        apply * 1e3,
        flush * 1e3
    );
}

fn bench(c: &mut Criterion) {
    if std::env::var("PROBE").is_ok() {
        probe();
        return;
    }
    let (base, deduper, batches) = setup();
    let ops: usize = batches.iter().flatten().map(|e| e.ops.len()).sum();

    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ops as u64));
    group.bench_function("dedup+apply 100k entity-ops", |b| {
        b.iter_batched(
            || (base.clone(), batches.clone()),
            |(mut index, batches)| {
                for (i, batch) in batches.into_iter().enumerate() {
                    index.apply_batch(&deduper.dedup(batch));
                    index.set_applied(WalKey::new(pgroar::Lsn(i as u64 + 1), 0));
                }
                index
            },
            BatchSize::LargeInput,
        )
    });
    // The two stages alone, over the same batches (throughput still counts raw ops in): apply
    // replays batches deduped beforehand; dedup is timed without applying.
    let deduped: Vec<Vec<EntityOps>> = batches.iter().map(|b| deduper.dedup(b.clone())).collect();
    group.bench_function("apply alone 100k entity-ops", |b| {
        b.iter_batched(
            || base.clone(),
            |mut index| {
                for (i, batch) in deduped.iter().enumerate() {
                    index.apply_batch(batch);
                    index.set_applied(WalKey::new(pgroar::Lsn(i as u64 + 1), 0));
                }
                index
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("dedup alone 100k entity-ops", |b| {
        b.iter_batched(
            || batches.clone(),
            |batches| {
                batches
                    .into_iter()
                    .map(|batch| deduper.dedup(batch))
                    .collect::<Vec<_>>()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
