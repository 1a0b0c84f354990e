//! The join engine's unit tests.

use std::sync::Arc;

use crate::WalKey;
use crate::index::{DumpKey, Index};
use crate::ops::{EntityOps, Op, Value};
use crate::schema::{FilterKind, Join, Schema};

/// Products link to a shop (`shopId`, single) and to model versions (`mvIds`, multi); a shop
/// gives `region` and `tier`, a model version gives `bases` (multi); `post` (single) links a
/// post that gives the product a model version of its own (`mvId`, which links `mvBase`).
fn index() -> Index {
    let schema = Schema::from_pairs(
        &[
            ("shopId", FilterKind::Single),
            ("region", FilterKind::Single),
            ("mvIds", FilterKind::Multi),
            ("bases", FilterKind::Multi),
            ("post", FilterKind::Single),
            ("mvId", FilterKind::Single),
            ("mvBase", FilterKind::Single),
        ],
        &[("tier", 8)],
    )
    .unwrap()
    .with_joins(vec![
        join("shopId", &["region", "tier"]),
        join("mvIds", &["bases"]),
        join("post", &["mvId"]),
        join("mvId", &["mvBase"]),
    ])
    .unwrap();
    Index::new(Arc::new(schema))
}

fn join(link: &str, targets: &[&str]) -> Join {
    Join {
        link: link.into(),
        targets: targets.iter().map(|t| Arc::from(*t)).collect(),
    }
}

fn parent(query: &str, ops: Vec<Op>) -> EntityOps {
    EntityOps::new(
        1,
        vec![Op::QueryOpSet {
            query: Some(query.into()),
            ops,
        }],
    )
}

fn count(ix: &Index, f: &str) -> u64 {
    ix.snapshot().count(Some(f)).unwrap()
}

#[test]
fn a_child_follows_its_parent_whatever_the_order() {
    let mut ix = index();
    // A child before its parent: NULL (a LEFT JOIN), then the parent's values.
    ix.apply(&EntityOps::alive(1, vec![Op::set("shopId", 7)]));
    assert_eq!(count(&ix, "region eq null"), 1);
    ix.apply(&parent(
        "shopId eq 7",
        vec![Op::set("region", "eu"), Op::set("tier", 3)],
    ));
    assert_eq!(count(&ix, "region eq eu AND tier eq 3"), 1);
    // A child after its parent gets the values at once.
    ix.apply(&EntityOps::alive(2, vec![Op::set("shopId", 7)]));
    assert_eq!(count(&ix, "region eq eu AND tier eq 3"), 2);
    // Moved to a parent that does not exist, to NULL, back.
    ix.apply(&EntityOps::new(1, vec![Op::set("shopId", 8)]));
    ix.apply(&EntityOps::new(2, vec![Op::set("shopId", Value::Null)]));
    assert_eq!(
        (count(&ix, "region eq null"), count(&ix, "tier eq 0")),
        (2, 2)
    );
    ix.apply(&EntityOps::new(2, vec![Op::set("shopId", 7)]));
    assert_eq!(count(&ix, "region eq eu"), 1);
    // The parent changes one field (REPLICA IDENTITY FULL), then is deleted.
    ix.apply(&parent(
        "shopId eq 7",
        vec![Op::remove("region", "eu"), Op::set("region", "us")],
    ));
    assert_eq!(count(&ix, "region eq us AND tier eq 3"), 1);
    ix.apply(&parent(
        "shopId eq 7",
        vec![Op::set("region", Value::Null), Op::set("tier", Value::Null)],
    ));
    assert_eq!(
        (count(&ix, "region eq null"), count(&ix, "tier eq 0")),
        (2, 2)
    );
    assert_eq!(
        ix.snapshot().state.joins[0].len(),
        0,
        "a NULL row is dropped"
    );
    // A removed link holds nothing, and so do its targets.
    ix.apply(&parent("shopId eq 8", vec![Op::set("region", "ap")]));
    assert_eq!(count(&ix, "region eq ap"), 1);
    ix.apply(&EntityOps::new(1, vec![Op::remove("shopId", 8)]));
    assert_eq!(count(&ix, "region eq ap OR region eq null"), 1);
    // Deleted and inserted again: the values of the new link only.
    ix.apply(&EntityOps::alive(1, vec![Op::set("shopId", 8)]));
    ix.apply(&EntityOps::alive(1, vec![Op::Delete, Op::set("shopId", 9)]));
    assert_eq!(count(&ix, "region eq null"), 2);
}

#[test]
fn a_parent_finds_its_children_in_a_short_or_a_long_unapplied_log() {
    for children in [3u32, super::parent::LINK_REPLAY_MAX as u32 + 10] {
        let mut ix = index();
        let mut batch: Vec<EntityOps> = (0..children)
            .map(|c| EntityOps::alive(i64::from(c) + 10, vec![Op::set("shopId", 7)]))
            .collect();
        // One child moves away and another dies inside the same batch.
        batch.push(EntityOps::new(10, vec![Op::set("shopId", 8)]));
        batch.push(EntityOps::new(11, vec![Op::Delete]));
        batch.push(parent("shopId eq 7", vec![Op::set("region", "eu")]));
        ix.apply_batch(&batch);
        assert_eq!(count(&ix, "region eq eu"), u64::from(children) - 2);
        assert_eq!(count(&ix, "shopId eq 8 AND region eq null"), 1);
    }
}

#[test]
fn a_multi_value_link_holds_the_union_of_its_parents_values() {
    let mut ix = index();
    ix.apply(&parent("mvIds eq 1", vec![Op::set("bases", "SDXL")]));
    ix.apply(&parent("mvIds eq 2", vec![Op::set("bases", "SDXL")]));
    ix.apply(&parent("mvIds eq 3", vec![Op::set("bases", "SD1")]));
    ix.apply(&parent("mvIds eq 4", vec![Op::set("bases", Value::Null)]));
    ix.apply(&EntityOps::alive(
        5,
        vec![
            Op::add("mvIds", 1),
            Op::add("mvIds", 2),
            Op::add("mvIds", 4),
        ],
    ));
    assert_eq!(count(&ix, "bases eq SDXL"), 1);
    assert_eq!(count(&ix, "bases eq null OR bases eq SD1"), 0);
    // One of two links to SDXL goes: still SDXL.
    ix.apply(&EntityOps::new(5, vec![Op::remove("mvIds", 1)]));
    assert_eq!(count(&ix, "bases eq SDXL"), 1);
    // The other parent changes: SD1 in, SDXL out.
    ix.apply(&parent(
        "mvIds eq 2",
        vec![Op::remove("bases", "SDXL"), Op::set("bases", "SD1")],
    ));
    assert_eq!(
        (count(&ix, "bases eq SDXL"), count(&ix, "bases eq SD1")),
        (0, 1)
    );
    ix.apply(&EntityOps::new(
        5,
        vec![Op::add("mvIds", 3), Op::add("mvIds", 1)],
    ));
    assert_eq!(count(&ix, "bases eq SDXL AND bases eq SD1"), 1);
    // Parent 3 deleted: SD1 stays through parent 2.
    ix.apply(&parent("mvIds eq 3", vec![Op::set("bases", Value::Null)]));
    assert_eq!(count(&ix, "bases eq SD1"), 1);
    // The slot deleted while its bits wait for the lazy cleanup: a parent change does not
    // bring its values back, and a new life starts from its new links only.
    ix.apply(&EntityOps::new(5, vec![Op::Delete]));
    ix.apply(&parent("mvIds eq 1", vec![Op::set("bases", "XL")]));
    ix.apply(&EntityOps::alive(5, vec![Op::add("mvIds", 3)]));
    let st = ix.debug_state();
    assert!(st.filters["bases"].values.is_empty(), "{st:?}");
    ix.apply(&EntityOps::new(5, vec![Op::add("mvIds", 1)]));
    assert_eq!(count(&ix, "bases eq XL"), 1);
}

#[test]
fn joins_cascade_through_a_target_that_links_another_join() {
    let mut ix = index();
    ix.apply(&parent("mvId eq 10", vec![Op::set("mvBase", "SDXL")]));
    ix.apply(&EntityOps::alive(1, vec![Op::set("post", 100)]));
    assert_eq!(count(&ix, "mvId eq null AND mvBase eq null"), 1);
    ix.apply(&parent("post eq 100", vec![Op::set("mvId", 10)]));
    assert_eq!(count(&ix, "mvId eq 10 AND mvBase eq SDXL"), 1);
    ix.apply(&parent("mvId eq 10", vec![Op::set("mvBase", "SD1")]));
    assert_eq!(count(&ix, "mvBase eq SD1"), 1);
    ix.apply(&parent("post eq 100", vec![Op::set("mvId", 11)]));
    assert_eq!(count(&ix, "mvId eq 11 AND mvBase eq null"), 1);
    // The post's table truncated: mvId NULL, and so the model's base.
    ix.apply(&parent("post eq 100", vec![Op::set("mvId", 10)]));
    ix.apply(&EntityOps::new(0, vec![Op::truncate(Some("mvId"))]));
    assert_eq!(count(&ix, "mvId eq null AND mvBase eq null"), 1);
}

#[test]
fn truncates_and_direct_writes_keep_the_join() {
    let mut ix = index();
    ix.apply(&parent(
        "shopId eq 7",
        vec![Op::set("region", "eu"), Op::set("tier", 2)],
    ));
    ix.apply(&parent("mvIds eq 1", vec![Op::set("bases", "SDXL")]));
    for id in 1..=3 {
        ix.apply(&EntityOps::alive(
            id,
            vec![
                Op::set("shopId", if id == 3 { 8 } else { 7 }),
                Op::add("mvIds", 1),
            ],
        ));
    }
    // A write to a joined field from anywhere else is skipped and counted.
    ix.apply(&EntityOps::new(1, vec![Op::set("region", "xx")]));
    ix.apply(&parent("shopId in [7]", vec![Op::set("region", "yy")]));
    assert_eq!(count(&ix, "region eq eu"), 2);
    assert_eq!(ix.stats().joined_field_writes, 3);
    // The shops' table emptied, one target at a time: NULL where there was a link.
    ix.apply(&EntityOps::new(0, vec![Op::truncate(Some("region"))]));
    assert_eq!(
        (count(&ix, "region eq null"), count(&ix, "tier eq 2")),
        (3, 2)
    );
    ix.apply(&EntityOps::new(0, vec![Op::truncate(Some("tier"))]));
    assert_eq!(count(&ix, "tier eq 0"), 3);
    assert_eq!(ix.debug_state().parents[0].len(), 0);
    ix.apply(&EntityOps::alive(4, vec![Op::set("shopId", 7)]));
    assert_eq!(count(&ix, "region eq null"), 4);
    // The link table emptied: the union is empty everywhere, the parents stay.
    ix.apply(&EntityOps::new(0, vec![Op::truncate(Some("mvIds"))]));
    assert_eq!(count(&ix, "bases eq SDXL"), 0);
    ix.apply(&EntityOps::new(2, vec![Op::add("mvIds", 1)]));
    assert_eq!(count(&ix, "bases eq SDXL"), 1);
    // Every slot deleted: the parents stay for the slots to come.
    ix.apply(&EntityOps::new(0, vec![Op::truncate(None)]));
    ix.apply(&parent("shopId eq 7", vec![Op::set("region", "eu")]));
    ix.apply(&EntityOps::alive(
        9,
        vec![Op::set("shopId", 7), Op::add("mvIds", 1)],
    ));
    assert_eq!(count(&ix, "region eq eu AND bases eq SDXL"), 1);
}

#[test]
fn checkpoints_carry_the_parents_and_the_links() {
    let mut ix = index();
    ix.apply(&parent(
        "shopId eq 7",
        vec![Op::set("region", "eu"), Op::set("tier", 200)],
    ));
    ix.apply(&parent("shopId eq 8", vec![Op::set("tier", 1)]));
    ix.apply(&parent("mvIds eq 1", vec![Op::set("bases", "SDXL")]));
    ix.apply(&parent("mvIds eq 2", vec![Op::set("bases", "SDXL")]));
    ix.apply(&EntityOps::alive(
        1,
        vec![
            Op::set("shopId", 7),
            Op::add("mvIds", 1),
            Op::add("mvIds", 2),
        ],
    ));
    ix.set_applied(WalKey::end_of(crate::Lsn(5)));
    let dir = tempfile::tempdir().unwrap();
    ix.snapshot().write_checkpoint(dir.path()).unwrap();
    let mut loaded = Index::load_checkpoint(dir.path(), ix.schema().clone())
        .unwrap()
        .unwrap();
    assert_eq!(loaded.debug_state(), ix.debug_state());
    assert_eq!(
        loaded.debug_state().parents[0][&DumpKey::Int(7)],
        vec![(Some(DumpKey::Str("eu".into())), 0), (None, 200)]
    );
    for i in [&mut ix, &mut loaded] {
        i.apply(&EntityOps::new(1, vec![Op::remove("mvIds", 1)]));
        i.apply(&EntityOps::new(1, vec![Op::set("shopId", 8)]));
        i.apply(&EntityOps::alive(2, vec![Op::set("shopId", 7)]));
    }
    assert_eq!(loaded.debug_state(), ix.debug_state());
    assert_eq!(count(&loaded, "bases eq SDXL AND tier eq 1"), 1);
}
