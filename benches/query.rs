//! Top-50 query latency on a 1M-slot index with realistic cardinalities, built through the bulk
//! accumulator: nsfwLevel (6 skewed values), type (3 strings), userId (~100k values), tagIds
//! (~5k tags, Zipf-like, ~10 per slot), hasMeta (bool); sorted by existedAt (unix seconds over
//! three years) or id.

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]
// Scenario and case-table functions run long; library code keeps the line limit.
#![allow(clippy::too_many_lines)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use pgroar::index::bulk::accumulate_par;
use pgroar::index::{Index, Order, Query, Snapshot, Sort};
use pgroar::ops::{EntityOps, Op};
use pgroar::schema::{FilterKind, Schema};
use rayon::prelude::*;

const SLOTS: u32 = 1_000_000;
const TAGS: f64 = 5000.0;

/// splitmix64: a deterministic stream per slot, no RNG dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn row(slot: u32) -> EntityOps {
    let mut r = Rng(u64::from(slot) * 0x2545_f491_4f6c_dd1d);
    let u = r.unit();
    let nsfw = match u {
        u if u < 0.60 => 1,
        u if u < 0.80 => 2,
        u if u < 0.90 => 4,
        u if u < 0.95 => 8,
        u if u < 0.98 => 16,
        _ => 32,
    };
    let u = r.unit();
    let kind = if u < 0.85 {
        "image"
    } else if u < 0.97 {
        "video"
    } else {
        "audio"
    };
    let mut ops = vec![
        Op::set("nsfwLevel", nsfw),
        Op::set("type", kind),
        Op::set("userId", (r.next() % 100_000) as i64),
        Op::set("hasMeta", r.unit() < 0.7),
        Op::set(
            "existedAt",
            1_600_000_000 + (r.next() % (3 * 365 * 86_400)) as i64,
        ),
        Op::set("id", i64::from(slot)),
    ];
    for _ in 0..(5 + r.next() % 11) {
        // Log-uniform ranks: tag t is drawn with probability ~ 1/(t+1).
        let tag = ((r.unit() * TAGS.ln()).exp() - 1.0) as i64;
        ops.push(Op::add("tagIds", tag));
    }
    EntityOps::alive(i64::from(slot), ops)
}

fn build() -> Index {
    let schema = Arc::new(
        Schema::from_pairs(
            &[
                ("nsfwLevel", FilterKind::Single),
                ("type", FilterKind::Single),
                ("userId", FilterKind::Single),
                ("tagIds", FilterKind::Multi),
                ("hasMeta", FilterKind::Bool),
            ],
            &[("existedAt", 32), ("id", 32)],
        )
        .expect("valid schema"),
    );
    let started = Instant::now();
    let acc = accumulate_par(schema.clone(), (1..=SLOTS).into_par_iter().map(row));
    let accumulated = started.elapsed();
    let mut index = Index::new(schema);
    index.merge_bulk(acc);
    eprintln!(
        "built {} slots: accumulate {:?}, merge {:?}",
        index.alive_count(),
        accumulated,
        started.elapsed() - accumulated
    );
    index
}

fn top50(filter: Option<&str>, cursor: Option<String>) -> Query {
    Query {
        filter: filter.map(String::from),
        sort: Some(Sort {
            field: "existedAt".into(),
            order: Order::Desc,
        }),
        limit: 50,
        cursor,
    }
}

fn bench(c: &mut Criterion) {
    let mut index = build();
    let snap: Snapshot = index.snapshot();
    let cases: &[(&str, Option<&str>)] = &[
        ("no_filter", None),
        ("nsfw_eq", Some("nsfwLevel eq 1")),
        (
            "nsfw_in_and_popular_tag",
            Some("nsfwLevel in [1, 2] AND tagIds eq 0"),
        ),
        (
            "tags_in_and_not_video",
            Some("tagIds in [40, 41] AND NOT type eq video"),
        ),
    ];
    let mut g = c.benchmark_group("top50_existedAt_desc");
    for (name, filter) in cases {
        let q = top50(*filter, None);
        let r = snap.query(&q).expect("query runs");
        assert_eq!(r.ids.len(), 50);
        eprintln!("{name}: total {}", r.total);
        g.bench_function(*name, |b| {
            b.iter(|| black_box(snap.query(black_box(&q)).unwrap()));
        });
    }
    let first = snap
        .query(&top50(Some("nsfwLevel in [1, 2] AND tagIds eq 0"), None))
        .unwrap();
    let second = top50(
        Some("nsfwLevel in [1, 2] AND tagIds eq 0"),
        first.next_cursor,
    );
    g.bench_function("second_page_via_cursor", |b| {
        b.iter(|| black_box(snap.query(black_box(&second)).unwrap()));
    });
    let unsorted = Query {
        filter: Some("nsfwLevel eq 1".into()),
        sort: None,
        limit: 50,
        cursor: None,
    };
    g.bench_function("nsfw_eq_unsorted", |b| {
        b.iter(|| black_box(snap.query(black_box(&unsorted)).unwrap()));
    });
    g.finish();

    // The writer's cost per publish: a snapshot, then one entity update that moves a single
    // value, flips sort layers and adds a tag, so every touched chunk is copied once.
    let mut n = 0i64;
    c.bench_function("publish_then_update_one_entity", |b| {
        b.iter(|| {
            let s = index.snapshot();
            n += 1;
            index.apply(&EntityOps::new(
                n % i64::from(SLOTS),
                vec![
                    Op::set("nsfwLevel", 1 + n % 2),
                    Op::set("existedAt", 1_700_000_000 + n),
                    Op::add("tagIds", n % 7),
                ],
            ));
            black_box(s)
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
