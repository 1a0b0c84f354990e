//! The dedup law: for every batch, applying the deduped batch to an index gives exactly the
//! index that applying the raw batch gives (compared on the index's full canonical state,
//! dead slots included), starting from a random pre-existing index state. Batches mix direct
//! entries, `queryOpSet` entries and table-wide `truncate`s (alone, or among an entity's ops).

use std::sync::Arc;

use pgroar::dedup::Deduper;
use pgroar::index::Index;
use pgroar::ops::{EntityOps, Op, Value};
use pgroar::schema::{FilterKind, Schema};
use proptest::prelude::*;

/// Not the shared image-feed fixture: dedup has a rule for a name that is both a filter and a
/// sort field, and narrow sorts make clamped values collide. `m` is a multi-value field a delete
/// empties, `j` one a join table feeds (a delete leaves it).
fn schema() -> Arc<Schema> {
    let mut schema = Schema::from_pairs(
        &[
            ("s", FilterKind::Single),
            ("m", FilterKind::Multi),
            ("j", FilterKind::Multi),
            ("b", FilterKind::Bool),
            ("p", FilterKind::Single),
            // A name that is both a filter and a sort field.
            ("both", FilterKind::Single),
        ],
        &[("t", 32), ("u", 4), ("both", 8)],
    )
    .unwrap();
    schema.join_tables = vec![Arc::from("j")];
    Arc::new(schema)
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0i64..4).prop_map(Value::Int),
        1 => Just(Value::Null),
        1 => prop_oneof![Just(Value::str("a")), Just(Value::str("b"))],
        1 => any::<bool>().prop_map(Value::Bool),
        1 => prop_oneof![Just(Value::Int(-1)), Just(Value::Int(300))],
    ]
}

fn field() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("s"),
        Just("m"),
        Just("j"),
        Just("b"),
        Just("p"),
        Just("both"),
        Just("t"),
        Just("u"),
        Just("unknown")
    ]
}

fn field_op() -> impl Strategy<Value = Op> {
    (0..3u8, field(), value()).prop_map(|(kind, f, v)| match kind {
        0 => Op::set(f, v),
        1 => Op::remove(f, v),
        _ => Op::add(f, v),
    })
}

/// A `truncate` of one field (known or not) or, less often, of every slot.
fn truncate_op() -> impl Strategy<Value = Op> {
    prop::option::weighted(0.75, field()).prop_map(Op::truncate)
}

/// A TRUNCATE as the translator emits it: its own entity, id 0.
fn truncate_entry() -> impl Strategy<Value = EntityOps> {
    prop::collection::vec(truncate_op(), 1..3).prop_map(|ops| EntityOps::new(0, ops))
}

fn direct_entry() -> impl Strategy<Value = EntityOps> {
    (
        0i64..6,
        prop::collection::vec(
            prop_oneof![16 => field_op(), 2 => Just(Op::Delete), 1 => truncate_op()],
            0..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(id, ops, creates_slot)| EntityOps {
            entity_id: id,
            ops,
            creates_slot,
        })
}

fn fanout_entry() -> impl Strategy<Value = EntityOps> {
    let query = prop_oneof![
        Just(Some("p eq 1")),
        Just(Some("p in [1, 2]")),
        Just(Some("s eq 2 AND NOT b eq true")),
        Just(None),
    ];
    let nested = prop::collection::vec(
        prop_oneof![16 => field_op(), 2 => Just(Op::Delete), 1 => truncate_op()],
        0..4,
    );
    (100i64..103, query, nested).prop_map(|(id, q, ops)| {
        EntityOps::new(
            id,
            vec![Op::QueryOpSet {
                query: q.map(pgroar::ops::OpQuery::from),
                ops,
            }],
        )
    })
}

fn batch() -> impl Strategy<Value = Vec<EntityOps>> {
    prop::collection::vec(
        prop_oneof![12 => direct_entry(), 2 => fanout_entry(), 1 => truncate_entry()],
        0..24,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn applying_the_deduped_batch_equals_applying_the_raw_batch(setup in batch(), raw in batch()) {
        let schema = schema();
        let deduper = Deduper::new(&schema);
        let mut base = Index::new(schema.clone());
        for e in &setup {
            base.apply(e);
        }
        let mut by_raw = base.clone();
        for e in &raw {
            by_raw.apply(e);
        }
        let deduped = deduper.dedup(raw.clone());
        let mut by_dedup = base;
        for e in &deduped {
            by_dedup.apply(e);
        }
        prop_assert_eq!(by_raw.debug_state(), by_dedup.debug_state(), "deduped: {:?}", deduped);
    }

    #[test]
    fn dedup_never_grows_a_batch_and_is_deterministic(raw in batch()) {
        let deduper = Deduper::new(&schema());
        let once = deduper.dedup(raw.clone());
        let count = |b: &[EntityOps]| b.iter().map(|e| e.ops.len()).sum::<usize>();
        prop_assert!(count(&once) <= count(&raw) + raw.len());
        prop_assert_eq!(&deduper.dedup(raw.clone()), &once);
        // Dedup is idempotent.
        prop_assert_eq!(deduper.dedup(once.clone()), once);
    }
}
