//! Ops applied to the writer: per-op semantics, bad data counted, the write log.

use std::sync::Arc;

use crate::index::store::writes::WriteLog;
use crate::index::{Index, IndexStats};
use crate::ops::{EntityOps, Op, Value};
use crate::schema::{FilterKind, Schema};

fn index() -> Index {
    Index::new(Arc::new(
        Schema::from_pairs(
            &[
                ("type", FilterKind::Single),
                ("tags", FilterKind::Multi),
                ("flag", FilterKind::Bool),
                ("postId", FilterKind::Single),
            ],
            &[("at", 8)],
        )
        .unwrap(),
    ))
}

fn count(ix: &Index, f: &str) -> u64 {
    ix.snapshot().count(Some(f)).unwrap()
}

#[test]
fn set_without_remove_moves_the_slot() {
    let mut ix = index();
    ix.apply(&EntityOps::alive(
        1,
        vec![Op::set("type", "image"), Op::set("at", 9)],
    ));
    ix.apply(&EntityOps::new(
        1,
        vec![Op::set("type", "video"), Op::set("at", 6)],
    ));
    assert_eq!(count(&ix, "type eq image"), 0);
    assert_eq!(count(&ix, "type eq video"), 1);
    assert_eq!(count(&ix, "at eq 9"), 0);
    assert_eq!(count(&ix, "at eq 6"), 1);
    ix.apply(&EntityOps::new(1, vec![Op::set("type", Value::Null)]));
    assert_eq!(
        (count(&ix, "type eq video"), count(&ix, "type eq null")),
        (0, 1)
    );
}

#[test]
fn remove_of_a_stale_value_is_a_no_op() {
    let mut ix = index();
    ix.apply(&EntityOps::alive(
        1,
        vec![Op::set("type", "video"), Op::set("at", 6)],
    ));
    ix.apply(&EntityOps::new(
        1,
        vec![Op::remove("type", "image"), Op::remove("at", 5)],
    ));
    assert_eq!((count(&ix, "type eq video"), count(&ix, "at eq 6")), (1, 1));
    ix.apply(&EntityOps::new(
        1,
        vec![Op::remove("type", "video"), Op::remove("at", 6)],
    ));
    assert_eq!((count(&ix, "type eq video"), count(&ix, "at eq 6")), (0, 0));
    assert_eq!(count(&ix, "NOT type eq video"), 1, "no value, still alive");
}

/// A join table's rows outlive the entity's row: a delete leaves the values of a field that
/// join tables feed, and the same id inserted again joins them (as SQL does); the entity's own
/// fields are gone.
#[test]
fn a_delete_leaves_join_table_values() {
    let mut schema = Schema::from_pairs(
        &[
            ("type", FilterKind::Single),
            ("tags", FilterKind::Multi),
            ("labels", FilterKind::Multi),
        ],
        &[("at", 8)],
    )
    .unwrap();
    schema.join_tables = vec![Arc::from("tags")];
    let mut ix = Index::new(Arc::new(schema));
    ix.apply(&EntityOps::alive(
        7,
        vec![
            Op::set("type", "image"),
            Op::add("tags", 1),
            Op::add("labels", 5),
            Op::set("at", 9),
        ],
    ));
    ix.apply(&EntityOps::new(7, vec![Op::Delete]));
    assert_eq!(ix.snapshot().count(Some("tags eq 1")).unwrap(), 0, "dead");
    ix.apply(&EntityOps::alive(7, vec![Op::set("type", "video")]));
    let st = ix.debug_state();
    assert_eq!(st.alive, vec![7]);
    assert_eq!(
        st.filters["tags"].values.keys().collect::<Vec<_>>(),
        vec![&crate::index::DumpKey::Int(1)],
        "the join table's value is back"
    );
    assert!(
        st.filters["labels"].values.is_empty(),
        "not a join table's: gone"
    );
    assert!(st.sorts["at"].is_empty());
    // A whole-index truncate deletes the same way.
    ix.apply(&EntityOps::new(0, vec![Op::truncate(None)]));
    ix.apply(&EntityOps::alive(7, vec![]));
    assert_eq!(ix.snapshot().count(Some("tags eq 1")).unwrap(), 1);
}

#[test]
fn a_recreated_slot_inherits_nothing() {
    let mut ix = index();
    ix.apply(&EntityOps::alive(
        7,
        vec![
            Op::set("type", "image"),
            Op::add("tags", 1),
            Op::add("tags", Value::Null),
            Op::set("flag", true),
            Op::set("at", 200),
        ],
    ));
    let before = ix.snapshot();
    ix.apply(&EntityOps::new(7, vec![Op::Delete]));
    ix.apply(&EntityOps::alive(7, vec![Op::add("tags", 2)]));
    let st = ix.debug_state();
    assert_eq!(st.alive, vec![7]);
    assert!(st.filters["type"].values.is_empty());
    assert_eq!(
        st.filters["tags"].values.keys().collect::<Vec<_>>(),
        vec![&crate::index::DumpKey::Int(2)]
    );
    assert!(st.filters["tags"].null.is_empty());
    assert!(st.filters["flag"].values.is_empty());
    assert!(st.sorts["at"].is_empty());
    // The snapshot taken before is untouched.
    assert_eq!(before.count(Some("tags eq 1 AND at eq 200")).unwrap(), 1);
}

#[test]
fn logged_writes_are_applied_in_order_before_anyone_looks() {
    let mut ix = index();
    for v in [9, 6, 9, 200] {
        ix.apply(&EntityOps::alive(
            1,
            vec![Op::set("at", v), Op::set("type", "a"), Op::add("tags", v)],
        ));
    }
    ix.apply(&EntityOps::new(1, vec![Op::set("type", "b")]));
    // A fork starts settled and independent.
    assert!(!ix.log.is_empty());
    let mut fork = ix.clone();
    assert!(fork.log.is_empty());
    assert_eq!(fork.debug_state(), ix.debug_state());
    fork.apply(&EntityOps::new(1, vec![Op::set("at", 1), Op::Delete]));
    assert_eq!(count(&fork, "at eq 200"), 0);
    let snap = ix.snapshot();
    assert_eq!(
        (count(&ix, "at eq 200"), count(&ix, "at eq 9")),
        (1, 0),
        "the last write of a layer bit wins"
    );
    assert_eq!(count(&ix, "type eq b AND NOT type eq a"), 1);
    // Past the log's limit the writer applies it by itself; every write still lands.
    let n = WriteLog::LIMIT as i64 * 5 / 4;
    let (mut now, mut logged) = ([0i64; 52], 0);
    for i in 0..n {
        let slot = (2 + i % 50) as usize;
        logged += usize::from(now[slot] != i % 256);
        now[slot] = i % 256;
        ix.apply(&EntityOps::alive(slot as i64, vec![Op::set("at", i % 256)]));
        assert!(ix.log.len() < WriteLog::LIMIT + 64);
    }
    assert!(logged > WriteLog::LIMIT, "the log filled up at least once");
    let st = ix.debug_state();
    for slot in 2..52u32 {
        let last = (0..n)
            .rev()
            .find(|i| 2 + i % 50 == i64::from(slot))
            .unwrap();
        assert_eq!(st.sorts["at"].get(&slot), Some(&((last % 256) as u32)));
    }
    // So it does within one queryOpSet that fans out to many slots.
    let many = WriteLog::LIMIT as i64 / 4;
    for id in 100..100 + many {
        ix.apply(&EntityOps::alive(id, vec![Op::set("postId", 7)]));
    }
    ix.apply(&EntityOps::new(
        7,
        vec![Op::QueryOpSet {
            query: Some("postId eq 7".into()),
            ops: [255, 0, 255, 0, 255].map(|v| Op::set("at", v)).to_vec(),
        }],
    ));
    assert!(ix.log.len() < WriteLog::LIMIT + 64);
    assert_eq!(count(&ix, "at eq 255 AND postId eq 7"), many as u64);
    // A snapshot taken earlier never changes.
    assert_eq!(snap.count(Some("at eq 200")).unwrap(), 1);
    assert_eq!(snap.alive_count(), 1);
}

#[test]
fn lazy_multi_cleanup_is_not_observable() {
    let mut ix = index();
    ix.apply(&EntityOps::alive(
        3,
        vec![Op::add("tags", 1), Op::add("tags", 2)],
    ));
    ix.apply(&EntityOps::new(3, vec![Op::Delete]));
    // Dead but not yet cleaned: no query, snapshot or dump sees its tags.
    ix.apply(&EntityOps::alive(3, vec![]));
    assert_eq!(count(&ix, "tags in [1, 2]"), 0);
    assert!(ix.debug_state().filters["tags"].values.is_empty());
    // An op after the snapshot adopts the cleaned state; later ops see it too.
    ix.apply(&EntityOps::new(3, vec![Op::add("tags", 2)]));
    assert_eq!(count(&ix, "tags eq 1"), 0);
    assert_eq!(count(&ix, "tags eq 2"), 1);
    // A delete followed by an add in one entity: the add survives, the old values do not.
    ix.apply(&EntityOps::alive(3, vec![Op::Delete, Op::add("tags", 5)]));
    assert_eq!((count(&ix, "tags eq 2"), count(&ix, "tags eq 5")), (0, 1));
}

#[test]
fn ops_on_dead_slots_apply_but_stay_invisible() {
    let mut ix = index();
    ix.apply(&EntityOps::new(4, vec![Op::set("type", "image")]));
    assert_eq!(count(&ix, "type eq image"), 0);
    ix.apply(&EntityOps::alive(4, vec![]));
    assert_eq!(count(&ix, "type eq image"), 1);
}

#[test]
fn query_op_set_applies_to_live_matches() {
    let mut ix = index();
    for (id, post) in [(1, 10), (2, 10), (3, 11)] {
        ix.apply(&EntityOps::alive(
            id,
            vec![Op::set("postId", post), Op::set("at", 1)],
        ));
    }
    ix.apply(&EntityOps::new(5, vec![Op::set("postId", 10)])); // not alive
    let fan_out = |query: Option<&str>, ops: Vec<Op>| {
        EntityOps::new(
            10,
            vec![Op::QueryOpSet {
                query: query.map(Into::into),
                ops,
            }],
        )
    };
    ix.apply(&fan_out(
        Some("postId eq 10"),
        vec![Op::remove("at", 1), Op::set("at", 50)],
    ));
    assert_eq!(count(&ix, "at eq 50"), 2);
    assert_eq!(
        ix.debug_state().sorts["at"].get(&5),
        None,
        "dead slots are not matched"
    );
    ix.apply(&fan_out(None, vec![Op::set("at", 99)]));
    ix.apply(&fan_out(Some("postId eq"), vec![Op::set("at", 99)]));
    ix.apply(&fan_out(Some("nope eq 1"), vec![Op::set("at", 99)]));
    assert_eq!(count(&ix, "at eq 99"), 0);
    ix.apply(&fan_out(
        Some("postId in [10, 11]"),
        vec![
            Op::QueryOpSet {
                query: None,
                ops: vec![],
            },
            Op::Delete,
        ],
    ));
    assert_eq!(ix.alive_count(), 0);
    // An id that does not fit a slot still runs its queryOpSet.
    ix.apply(&EntityOps::alive(9, vec![Op::set("postId", 12)]));
    ix.apply(&EntityOps {
        entity_id: 1 << 40,
        ops: vec![Op::QueryOpSet {
            query: Some("postId eq 12".into()),
            ops: vec![Op::set("at", 7)],
        }],
        creates_slot: false,
    });
    assert_eq!(count(&ix, "at eq 7"), 1);
    let s = ix.stats();
    assert_eq!(
        (s.bad_queries, s.nested_query_op_sets, s.skipped_ids),
        (2, 1, 0)
    );
}

#[test]
fn bad_data_is_counted_and_skipped() {
    let mut ix = index();
    ix.apply(&EntityOps::alive(-1, vec![Op::set("type", "x")]));
    ix.apply(&EntityOps::alive(i64::from(u32::MAX) + 1, vec![]));
    ix.apply(&EntityOps::alive(
        1,
        vec![
            Op::set("nope", 1),
            Op::set("flag", "maybe"),
            Op::set("flag", 1),
            Op::set("at", 1000),
            Op::set("at", -5),
            Op::set("at", "abc"),
            Op::set("at", "12"),
            Op::set("type", Value::Float(2.5)),
            Op::set("postId", Value::Float(3.0)),
        ],
    ));
    assert_eq!(ix.alive_count(), 1);
    assert_eq!(
        ix.stats(),
        IndexStats {
            applied_ops: 6,
            skipped_ids: 2,
            clamped_values: 2,
            bad_values: 2,
            unknown_fields: 1,
            bad_queries: 0,
            nested_query_op_sets: 0,
            joined_field_writes: 0,
        }
    );
    assert_eq!(count(&ix, "flag eq true AND at eq 12"), 1);
    assert_eq!(
        count(&ix, "type eq 2.5 AND type eq '2.5' AND postId eq 3"),
        1
    );
    assert_eq!(count(&ix, "postId eq 3.0"), 1);
}

#[test]
fn literals_match_ints_and_text_alike() {
    let mut ix = index();
    ix.apply(&EntityOps::alive(1, vec![Op::set("type", 7)]));
    ix.apply(&EntityOps::alive(2, vec![Op::set("type", "7")]));
    ix.apply(&EntityOps::alive(3, vec![Op::set("type", "Image")]));
    ix.apply(&EntityOps::alive(4, vec![Op::set("flag", "t")]));
    assert_eq!(count(&ix, "type eq 7"), 2);
    assert_eq!(count(&ix, "type eq '7'"), 2);
    assert_eq!(
        count(&ix, "type eq image"),
        0,
        "dictionaries are case-sensitive"
    );
    assert_eq!(count(&ix, "type eq Image"), 1);
    assert_eq!(
        count(&ix, "type gte 7"),
        1,
        "ranges cover integer keys only"
    );
    assert_eq!(count(&ix, "flag eq 't'"), 1);
    assert_eq!(count(&ix, "flag eq 1"), 1);
    assert_eq!(count(&ix, "NOT flag eq true"), 3);
}
