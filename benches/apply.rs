//! Dedup + apply rate on one thread, in ops/s, on an Image-like index of 1M live slots.
//!
//! The stream mimics steady state on an image feed: updates of single-value fields (each a
//! `remove old` + `set new` pair), sort-field updates, tag adds/removes, new images with all
//! their fields, and deletes. Batches are 10k entity-ops, deduped then applied, as the apply
//! loop does. Throughput counts raw ops in (before dedup).
//!
//! Besides the loop itself, the two stages are timed alone over the same batches.
//!
//! Three workloads, side by side: the plain one; the same with a `Post` fan-out applied to the
//! current matches (`join = false`, the cost baseline); and the same fan-out kept as a
//! join (`postId eq {id}` giving `publishedAt` and `availability`): each image links one of 200k
//! posts, 1% of the stream's entities update a post (every linked image follows), 0.5% move an
//! image to another post, and new images link a post. Its throughput also counts raw ops in: a
//! post update is one `queryOpSet` of two nested ops, however many images follow it.
//!
//! Run: `cargo bench --bench apply`
//!
//! Quick probe (no criterion; prints the best of `PROBE_REPS` runs, default 20, of the same
//! loop with its three stages timed apart: dedup, in-line apply, and the flush of logged
//! bitmap writes at `set_applied`):
//!
//! ```sh
//! cargo bench --bench apply --no-run   # prints the binary's path
//! PROBE=1 target/release/deps/apply-<hash> --bench        # all workloads, and what 200k
//!                                                          # posts' parent rows take
//! PROBE=1 PROBE_ONLY=join target/release/deps/apply-<hash> --bench   # one (for a profiler)
//! ```
//!
//! With `PROBE_PUBLISH=n` the probe also takes a snapshot after every `n`th batch (counted in
//! "flush"), as the sink does when `n` batches take as long as its publish delay: every write
//! after a snapshot copies what it touches first, so this measures the copy-on-write tax of
//! publishing often. Without it, the index is cloned once per run of 10 batches.

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]
// Scenario and case-table functions run long; library code keeps the line limit.
#![allow(clippy::too_many_lines)]

use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pgroar::WalKey;
use pgroar::dedup::Deduper;
use pgroar::fixtures;
use pgroar::index::Index;
use pgroar::ops::{EntityOps, Op, Value};
use pgroar::schema::Schema;
use pgroar::wal::{decode_entity_ops_with, encode_entity_ops};

const SLOTS: u32 = 1_000_000;
const BATCH: usize = 10_000;

/// Posts the join workload's images link (five images per post).
const POSTS: u64 = 200_000;

/// The three streams the benchmark runs side by side.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Workload {
    /// Images only.
    Plain,
    /// Images linking posts, the post fan-out applied to the current matches (`join = false`).
    FanOut,
    /// The same, the post fan-out kept as a join.
    Join,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Plain, Workload::FanOut, Workload::Join];

    fn name(self) -> &'static str {
        match self {
            Workload::Plain => "plain",
            Workload::FanOut => "fanout",
            Workload::Join => "join",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Workload::Plain => "apply",
            Workload::FanOut => "apply with the Post fan-out, join = false",
            Workload::Join => "apply with the Post join",
        }
    }

    fn posts(self) -> bool {
        self != Workload::Plain
    }
}

/// The image-feed schema shared with the tests; the plain and fan-out workloads without its joins.
fn schema(w: Workload) -> Arc<Schema> {
    match w {
        Workload::Plain | Workload::FanOut => fixtures::schema_without_joins(),
        Workload::Join => fixtures::schema(),
    }
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

fn image(id: u32, rng: &mut Rng, w: Workload) -> EntityOps {
    let mut e = plain_image(id, rng);
    if w.posts() {
        e.ops.push(Op::set("postId", rng.below(POSTS) as i64));
    }
    e
}

fn plain_image(id: u32, rng: &mut Rng) -> EntityOps {
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
        4..=5 => vec![Op::set("id", rng.below(10_000) as i64)],
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

const AVAILABILITY: [&str; 3] = ["Public", "Private", "Unsearchable"];

/// A post row: its `queryOpSet` as an INSERT (every field), or as an UPDATE with old values.
fn post(id: u64, rng: &mut Rng, update: bool) -> EntityOps {
    let at = 1_600_000_000 + rng.below(100_000_000) as i64;
    let availability = AVAILABILITY[rng.below(3) as usize];
    let ops = if update && rng.below(2) == 0 {
        vec![
            Op::remove("publishedAt", 1_600_000_000i64),
            Op::set("publishedAt", at),
        ]
    } else if update {
        vec![
            Op::remove("availability", "Public"),
            Op::set("availability", availability),
        ]
    } else {
        vec![
            Op::set("publishedAt", at),
            Op::set("availability", availability),
        ]
    };
    EntityOps::new(
        id as i64,
        vec![Op::QueryOpSet {
            query: Some(format!("postId eq {id}").into()),
            ops,
        }],
    )
}

/// `batches` batches of the steady-state stream, as the apply loop gets them: each entity
/// encoded to a WAL payload and decoded again against the schema's fields, as the WAL reader
/// hands them over (fields carry their ids).
fn stream(rng: &mut Rng, batches: usize, deduper: &Deduper, w: Workload) -> Vec<Vec<EntityOps>> {
    let ids = deduper.field_ids();
    let mut buf = Vec::new();
    let mut read_back = |e: EntityOps| {
        buf.clear();
        encode_entity_ops(&e, &mut buf).unwrap();
        decode_entity_ops_with(&buf, ids).unwrap()
    };
    (0..batches)
        .map(|_| {
            (0..BATCH)
                .map(|_| match rng.below(200) {
                    0..=9 => image(SLOTS + rng.below(100_000) as u32, rng, w),
                    10..=11 => EntityOps::new(rng.below(u64::from(SLOTS)) as i64, vec![Op::Delete]),
                    12..=13 if w.posts() => post(rng.below(POSTS), rng, true),
                    14 if w.posts() => EntityOps::new(
                        rng.below(u64::from(SLOTS)) as i64,
                        vec![Op::set("postId", rng.below(POSTS) as i64)],
                    ),
                    _ => update(rng),
                })
                .map(&mut read_back)
                .collect()
        })
        .collect()
}

/// The 1M-slot base index (with posts, their 200k posts), a deduper for its schema, and
/// 10 batches of the stream.
fn setup(w: Workload) -> (Index, Deduper, Vec<Vec<EntityOps>>) {
    let schema = schema(w);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut base = Index::new(schema.clone());
    for id in 0..SLOTS {
        base.apply(&image(id, &mut rng, w));
    }
    if w.posts() {
        for id in 0..POSTS {
            base.apply(&post(id, &mut rng, false));
        }
    }
    base.set_applied(WalKey::end_of(pgroar::Lsn(1)));
    let deduper = Deduper::new(&schema);
    let batches = stream(&mut rng, 10, &deduper, w);
    (base, deduper, batches)
}

/// The same loop as the criterion benchmark, timed stage by stage (see the module note), for
/// both workloads.
fn probe() {
    // PROBE_ONLY=plain, fanout or join runs one workload (for a profiler).
    let only = std::env::var("PROBE_ONLY").ok();
    if only.is_none() {
        parents_memory();
    }
    for w in Workload::ALL {
        if only.as_deref().is_some_and(|o| o != w.name()) {
            continue;
        }
        print!("{}: ", w.title());
        probe_one(w);
    }
}

/// Resident memory of this process, in bytes (Linux).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// What the join's parent rows cost: 200k posts learned by an index without images.
fn parents_memory() {
    let mut rng = Rng(7);
    let posts: Vec<EntityOps> = (0..POSTS).map(|id| post(id, &mut rng, false)).collect();
    let mut index = Index::new(schema(Workload::Join));
    let before = resident();
    index.apply_batch(&posts);
    index.set_applied(WalKey::end_of(pgroar::Lsn(1)));
    let after = resident();
    println!(
        "parent rows: {POSTS} posts (two fields each) take {:.1} MiB, {:.0} bytes a post",
        (after - before) as f64 / f64::from(1 << 20),
        (after - before) as f64 / POSTS as f64
    );
    std::hint::black_box(&index);
}

fn probe_one(w: Workload) {
    let (base, deduper, batches) = setup(w);
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
            index.set_applied(WalKey::end_of(pgroar::Lsn(i as u64 + 2)));
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
    for w in Workload::ALL {
        bench_one(c, w);
    }
}

fn bench_one(c: &mut Criterion, w: Workload) {
    let (base, deduper, batches) = setup(w);
    let ops: usize = batches.iter().flatten().map(|e| e.ops.len()).sum();

    let mut group = c.benchmark_group(w.title());
    group.sample_size(10);
    group.throughput(Throughput::Elements(ops as u64));
    group.bench_function("dedup+apply 100k entity-ops", |b| {
        b.iter_batched(
            || (base.clone(), batches.clone()),
            |(mut index, batches)| {
                for (i, batch) in batches.into_iter().enumerate() {
                    index.apply_batch(&deduper.dedup(batch));
                    index.set_applied(WalKey::end_of(pgroar::Lsn(i as u64 + 2)));
                }
                index
            },
            BatchSize::LargeInput,
        );
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
                    index.set_applied(WalKey::end_of(pgroar::Lsn(i as u64 + 2)));
                }
                index
            },
            BatchSize::LargeInput,
        );
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
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
