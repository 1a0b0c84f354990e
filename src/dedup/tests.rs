//! Unit tests of the dedup rules.

use super::*;
use crate::schema::FilterKind::*;

fn deduper() -> Deduper {
    let schema = Schema::from_pairs(
        &[
            ("nsfwLevel", Single),
            ("tagIds", Multi),
            ("hasMeta", Bool),
            ("postId", Single),
        ],
        &[("publishedAt", 32), ("existedAt", 32)],
    )
    .unwrap();
    Deduper::new(&schema)
}

fn q(query: &str, ops: Vec<Op>) -> Op {
    Op::QueryOpSet {
        query: Some(query.into()),
        ops,
    }
}

#[test]
fn repeated_sets_keep_the_last() {
    let out = deduper().dedup(vec![
        EntityOps::new(1, vec![Op::set("nsfwLevel", 8)]),
        EntityOps::new(1, vec![Op::set("nsfwLevel", 16)]),
    ]);
    assert_eq!(out, vec![EntityOps::new(1, vec![Op::set("nsfwLevel", 16)])]);
}

#[test]
fn scalar_updates_keep_the_first_remove_and_the_last_set() {
    // The seed keeps `remove 16`, leaving the slot's stale bit in value 8.
    let out = deduper().dedup(vec![
        EntityOps::new(
            1,
            vec![Op::remove("nsfwLevel", 8), Op::set("nsfwLevel", 16)],
        ),
        EntityOps::new(
            1,
            vec![Op::remove("nsfwLevel", 16), Op::set("nsfwLevel", 32)],
        ),
    ]);
    assert_eq!(
        out,
        vec![EntityOps::new(
            1,
            vec![Op::remove("nsfwLevel", 8), Op::set("nsfwLevel", 32)]
        )]
    );
}

#[test]
fn a_set_then_its_remove_clears_the_field() {
    let out = deduper().dedup(vec![
        EntityOps::new(1, vec![Op::set("nsfwLevel", 16)]),
        EntityOps::new(1, vec![Op::remove("nsfwLevel", 16)]),
    ]);
    assert_eq!(
        out,
        vec![EntityOps::new(
            1,
            vec![Op::set("nsfwLevel", 16), Op::remove("nsfwLevel", 16)]
        )]
    );
}

#[test]
fn multi_values_follow_set_semantics() {
    // The seed's net counting turns add, add, remove into `add`.
    let out = deduper().dedup(vec![
        EntityOps::new(1, vec![Op::add("tagIds", 42)]),
        EntityOps::new(1, vec![Op::add("tagIds", 42)]),
        EntityOps::new(1, vec![Op::remove("tagIds", 42)]),
        EntityOps::new(1, vec![Op::add("tagIds", 99)]),
    ]);
    assert_eq!(
        out,
        vec![EntityOps::new(
            1,
            vec![Op::remove("tagIds", 42), Op::add("tagIds", 99)]
        )]
    );
}

/// A delete leaves the fields join tables feed, so dedup keeps their ops across it.
#[test]
fn delete_keeps_the_ops_of_join_table_fields() {
    let mut schema = Schema::from_pairs(&[("nsfwLevel", Single), ("tagIds", Multi)], &[]).unwrap();
    schema.join_tables = vec![std::sync::Arc::from("tagIds")];
    let out = Deduper::new(&schema).dedup(vec![
        EntityOps::alive(1, vec![Op::set("nsfwLevel", 16), Op::add("tagIds", 42)]),
        EntityOps::new(1, vec![Op::remove("tagIds", 3), Op::Delete]),
        EntityOps::new(1, vec![Op::add("tagIds", 7)]),
    ]);
    assert_eq!(
        out,
        vec![EntityOps::new(
            1,
            vec![
                Op::Delete,
                Op::add("tagIds", 42),
                Op::remove("tagIds", 3),
                Op::add("tagIds", 7)
            ]
        )]
    );
}

#[test]
fn delete_absorbs_before_and_keeps_a_reinsert_after() {
    // The seed collapses all of this to a bare delete and the re-created entity stays dead.
    let out = deduper().dedup(vec![
        EntityOps::alive(1, vec![Op::set("nsfwLevel", 16), Op::add("tagIds", 42)]),
        EntityOps::new(1, vec![Op::Delete]),
        EntityOps::alive(1, vec![Op::set("nsfwLevel", 4)]),
        EntityOps::new(1, vec![Op::add("tagIds", 7)]),
    ]);
    assert_eq!(
        out,
        vec![EntityOps::alive(
            1,
            vec![Op::Delete, Op::set("nsfwLevel", 4), Op::add("tagIds", 7)]
        )]
    );
    // creates_slot from before the delete does not survive it.
    let out = deduper().dedup(vec![
        EntityOps::alive(2, vec![Op::set("nsfwLevel", 16)]),
        EntityOps::new(2, vec![Op::Delete]),
    ]);
    assert_eq!(out, vec![EntityOps::new(2, vec![Op::Delete])]);
}

#[test]
fn creates_slot_is_ored_and_a_bare_creation_is_kept() {
    let out = deduper().dedup(vec![
        EntityOps::new(1, vec![Op::set("nsfwLevel", 1)]),
        EntityOps::alive(1, vec![]),
        EntityOps::alive(3, vec![]),
    ]);
    assert_eq!(
        out,
        vec![
            EntityOps::alive(1, vec![Op::set("nsfwLevel", 1)]),
            EntityOps::alive(3, vec![])
        ]
    );
}

#[test]
fn cancelled_entities_are_dropped_but_order_is_first_appearance() {
    let out = deduper().dedup(vec![
        EntityOps::new(5, vec![Op::set("nsfwLevel", 1)]),
        EntityOps::new(2, vec![Op::set("nsfwLevel", 2)]),
        EntityOps::new(5, vec![Op::set("hasMeta", true)]),
    ]);
    assert_eq!(
        out,
        vec![
            EntityOps::new(5, vec![Op::set("nsfwLevel", 1), Op::set("hasMeta", true)]),
            EntityOps::new(2, vec![Op::set("nsfwLevel", 2)]),
        ]
    );
}

#[test]
fn unknown_fields_pass_through_in_order() {
    let out = deduper().dedup(vec![EntityOps::new(
        1,
        vec![
            Op::set("mystery", 1),
            Op::remove("mystery", 1),
            Op::set("mystery", 2),
        ],
    )]);
    assert_eq!(
        out[0].ops,
        vec![
            Op::set("mystery", 1),
            Op::remove("mystery", 1),
            Op::set("mystery", 2)
        ]
    );
}

#[test]
fn query_op_sets_merge_per_query_and_field() {
    let out = deduper().dedup(vec![
        EntityOps::new(
            7,
            vec![q(
                "postId eq 7",
                vec![Op::set("publishedAt", 10), Op::set("hasMeta", true)],
            )],
        ),
        EntityOps::new(
            7,
            vec![q(
                "postId eq 7",
                vec![Op::remove("publishedAt", 10), Op::set("publishedAt", 20)],
            )],
        ),
        EntityOps::new(
            8,
            vec![Op::QueryOpSet {
                query: None,
                ops: vec![Op::set("publishedAt", 1)],
            }],
        ),
    ]);
    // The seed's last-wins would lose hasMeta; a null query is dropped.
    assert_eq!(
        out,
        vec![EntityOps::new(
            7,
            vec![q(
                "postId eq 7",
                vec![Op::set("publishedAt", 20), Op::set("hasMeta", true)]
            )]
        )]
    );
}

#[test]
fn query_op_sets_are_barriers_for_direct_ops() {
    let batch = vec![
        EntityOps::new(1, vec![Op::set("publishedAt", 7)]),
        EntityOps::new(5, vec![q("postId eq 5", vec![Op::set("publishedAt", 10)])]),
        EntityOps::new(1, vec![Op::set("nsfwLevel", 3)]),
    ];
    assert_eq!(deduper().dedup(batch.clone()), batch);
}

#[test]
fn conflicting_query_op_sets_keep_their_order() {
    let batch = vec![
        EntityOps::new(5, vec![q("postId eq 5", vec![Op::set("publishedAt", 10)])]),
        EntityOps::new(
            6,
            vec![q("nsfwLevel eq 1", vec![Op::set("publishedAt", 11)])],
        ),
        EntityOps::new(5, vec![q("postId eq 5", vec![Op::set("publishedAt", 12)])]),
    ];
    assert_eq!(deduper().dedup(batch.clone()), batch);
    // Ops that change what their own query matches are applied once per occurrence.
    let self_reading = vec![
        EntityOps::new(5, vec![q("nsfwLevel eq 3", vec![Op::set("nsfwLevel", 4)])]),
        EntityOps::new(5, vec![q("nsfwLevel eq 3", vec![Op::set("nsfwLevel", 3)])]),
    ];
    assert_eq!(deduper().dedup(self_reading.clone()), self_reading);
    let disjoint = vec![
        EntityOps::new(5, vec![q("postId eq 5", vec![Op::set("publishedAt", 10)])]),
        EntityOps::new(6, vec![q("nsfwLevel eq 1", vec![Op::set("existedAt", 11)])]),
        EntityOps::new(5, vec![q("postId eq 5", vec![Op::set("publishedAt", 12)])]),
    ];
    assert_eq!(
        deduper().dedup(disjoint),
        vec![
            EntityOps::new(5, vec![q("postId eq 5", vec![Op::set("publishedAt", 12)])]),
            EntityOps::new(6, vec![q("nsfwLevel eq 1", vec![Op::set("existedAt", 11)])]),
        ]
    );
}

#[test]
fn truncates_are_barriers_for_the_whole_batch() {
    let truncate = |f: Option<&str>| EntityOps::new(0, vec![Op::truncate(f)]);
    // Nothing merges across a truncate: not direct ops of one entity, not queryOpSets.
    let batch = vec![
        EntityOps::new(1, vec![Op::add("tagIds", 4)]),
        truncate(Some("tagIds")),
        EntityOps::new(1, vec![Op::add("tagIds", 5)]),
        EntityOps::new(5, vec![q("postId eq 5", vec![Op::set("publishedAt", 10)])]),
        truncate(None),
        EntityOps::new(5, vec![q("postId eq 5", vec![Op::set("publishedAt", 12)])]),
        EntityOps::alive(1, vec![Op::set("nsfwLevel", 1)]),
    ];
    assert_eq!(deduper().dedup(batch.clone()), batch);
    // Between truncates the usual rules apply; the truncate entry itself passes verbatim, with
    // the ops it shares an entry with.
    let out = deduper().dedup(vec![
        EntityOps::new(1, vec![Op::set("nsfwLevel", 1)]),
        EntityOps::new(1, vec![Op::set("nsfwLevel", 2)]),
        EntityOps::new(
            3,
            vec![
                Op::set("nsfwLevel", 1),
                Op::truncate(None),
                Op::set("nsfwLevel", 1),
            ],
        ),
        EntityOps::new(1, vec![Op::set("nsfwLevel", 3)]),
        EntityOps::new(1, vec![Op::set("nsfwLevel", 4)]),
    ]);
    assert_eq!(
        out,
        vec![
            EntityOps::new(1, vec![Op::set("nsfwLevel", 2)]),
            EntityOps::new(
                3,
                vec![
                    Op::set("nsfwLevel", 1),
                    Op::truncate(None),
                    Op::set("nsfwLevel", 1)
                ],
            ),
            EntityOps::new(1, vec![Op::set("nsfwLevel", 4)]),
        ]
    );
    // Nested in a queryOpSet (where the index ignores it) it is kept, and seals its group.
    let nested = vec![
        EntityOps::new(5, vec![q("postId eq 5", vec![Op::truncate(None)])]),
        EntityOps::new(5, vec![q("postId eq 5", vec![Op::set("publishedAt", 12)])]),
    ];
    assert_eq!(deduper().dedup(nested.clone()), nested);
}

#[test]
fn the_in_place_direct_path_matches_the_run_by_run_path() {
    // Barrier-free batches take the in-place path; the run-by-run path must give the same
    // entities in the same order. Random batches over few entities, so entities repeat.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let d = deduper();
    for _ in 0..500 {
        let batch: Vec<EntityOps> = (0..next(40))
            .map(|_| {
                let ops = (0..next(5))
                    .map(|_| match next(8) {
                        0 => Op::Delete,
                        1 => Op::set("nsfwLevel", next(4) as i64),
                        2 => Op::remove("nsfwLevel", next(4) as i64),
                        3 => Op::add("tagIds", next(4) as i64),
                        4 => Op::remove("tagIds", next(4) as i64),
                        5 => Op::set("hasMeta", next(2) == 0),
                        6 => Op::set("publishedAt", next(3) as i64),
                        _ => Op::set("nope", 1),
                    })
                    .collect();
                EntityOps {
                    entity_id: next(6) as i64,
                    ops,
                    creates_slot: next(3) == 0,
                }
            })
            .collect();
        assert_eq!(
            d.dedup(batch.clone()),
            d.dedup_runs(batch.clone()),
            "{batch:?}"
        );
    }
}
