//! The index's joins against a model of what SQL says: random sequences of child ops (link
//! sets, removes, adds, deletes, re-creations), parent `queryOpSet`s (sets, removes, NULLs,
//! deletes), direct writes to joined fields and table-wide `truncate`s, over a schema with a
//! single-value link, a multi-value link and a chain (a joined field that links another join).
//! After every batch, every live slot's every field must equal the model's LEFT JOIN, a
//! checkpoint round trip must change nothing, and the deduped batch must give the index the raw
//! batch gives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pgroar::dedup::Deduper;
use pgroar::index::bulk::BulkAccumulator;
use pgroar::index::{DumpKey, Index, IndexState};
use pgroar::ops::{EntityOps, Op, Value};
use pgroar::schema::{FilterKind, Join, Schema};
use proptest::prelude::*;

/// Not the shared image-feed fixture: joins that cascade (a joined field that is itself another
/// join's link) and a sort target, which the feed does not have.
fn schema() -> Arc<Schema> {
    let join = |link: &str, targets: &[&str]| Join {
        link: link.into(),
        targets: targets.iter().map(|t| Arc::from(*t)).collect(),
    };
    Arc::new(
        Schema::from_pairs(
            &[
                ("shopId", FilterKind::Single),
                ("region", FilterKind::Single),
                ("mvIds", FilterKind::Multi),
                ("bases", FilterKind::Multi),
                ("post", FilterKind::Single),
                ("mvId", FilterKind::Single),
                ("mvBase", FilterKind::Single),
            ],
            &[("tier", 3)],
        )
        .unwrap()
        .with_joins(vec![
            join("shopId", &["region", "tier"]),
            join("mvIds", &["bases"]),
            join("post", &["mvId"]),
            join("mvId", &["mvBase"]),
        ])
        .unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// The model: per slot its links, per parent table its rows; joined fields computed on demand.

/// What a single-value field holds for a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum One {
    /// No value at all.
    Absent,
    Null,
    Int(i64),
}

#[derive(Clone, Debug, Default)]
struct Slot {
    alive: bool,
    shop: Option<One>,
    post: Option<One>,
    mvs: BTreeSet<i64>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    slots: BTreeMap<u32, Slot>,
    /// shop → (region, tier).
    shops: BTreeMap<i64, (Option<&'static str>, u32)>,
    /// model version (multi link) → base.
    mvs: BTreeMap<i64, Option<&'static str>>,
    /// post → mvId.
    posts: BTreeMap<i64, Option<i64>>,
    /// model (single link through mvId) → base.
    models: BTreeMap<i64, Option<&'static str>>,
}

fn one(v: &Value) -> One {
    match v {
        Value::Int(i) => One::Int(*i),
        _ => One::Null,
    }
}

impl Model {
    fn slot(&mut self, id: u32) -> &mut Slot {
        self.slots.entry(id).or_default()
    }

    fn apply(&mut self, e: &EntityOps) {
        let id = e.entity_id as u32;
        for op in &e.ops {
            match op {
                Op::Set { field, value } | Op::Add { field, value } => match &**field {
                    "shopId" => self.slot(id).shop = Some(one(value)),
                    "post" => self.slot(id).post = Some(one(value)),
                    "mvIds" => {
                        if let Value::Int(k) = value {
                            self.slot(id).mvs.insert(*k);
                        }
                    }
                    _ => {} // a joined field: skipped
                },
                Op::Remove { field, value } => match &**field {
                    "shopId" => {
                        let s = self.slot(id);
                        if s.shop == Some(one(value)) {
                            s.shop = None;
                        }
                    }
                    "post" => {
                        let s = self.slot(id);
                        if s.post == Some(one(value)) {
                            s.post = None;
                        }
                    }
                    "mvIds" => {
                        if let Value::Int(k) = value {
                            self.slot(id).mvs.remove(k);
                        }
                    }
                    _ => {}
                },
                Op::Delete => {
                    self.slots.remove(&id);
                }
                Op::QueryOpSet {
                    query: Some(q),
                    ops,
                } => self.parent(q.text(), ops),
                Op::QueryOpSet { query: None, .. } => {}
                Op::Truncate { field: None } => self.slots.clear(),
                Op::Truncate { field: Some(f) } => match &**f {
                    "shopId" => self.slots.values_mut().for_each(|s| s.shop = None),
                    "post" => self.slots.values_mut().for_each(|s| s.post = None),
                    "mvIds" => self.slots.values_mut().for_each(|s| s.mvs.clear()),
                    "region" => self.shops.values_mut().for_each(|r| r.0 = None),
                    "tier" => self.shops.values_mut().for_each(|r| r.1 = 0),
                    "bases" => self.mvs.values_mut().for_each(|b| *b = None),
                    "mvId" => self.posts.values_mut().for_each(|m| *m = None),
                    "mvBase" => self.models.values_mut().for_each(|b| *b = None),
                    _ => {}
                },
            }
        }
        if e.creates_slot {
            self.slot(id).alive = true;
        }
    }

    /// A parent `queryOpSet`: `link eq key` sets that parent's row.
    fn parent(&mut self, query: &str, ops: &[Op]) {
        let (link, key) = query.split_once(" eq ").unwrap();
        let key: i64 = key.parse().unwrap();
        for op in ops {
            let (value, remove) = match op {
                Op::Set { value, .. } | Op::Add { value, .. } => (value, false),
                Op::Remove { value, .. } => (value, true),
                _ => continue,
            };
            let text = |v: &Value| match v {
                Value::Str(s) => Some(if &**s == "a" { "a" } else { "b" }),
                _ => None,
            };
            let field = op.field().unwrap();
            match (link, &**field) {
                ("shopId", "region") => {
                    let row = self.shops.entry(key).or_default();
                    if !remove {
                        row.0 = text(value);
                    } else if row.0 == text(value) {
                        row.0 = None;
                    }
                }
                ("shopId", "tier") => {
                    let row = self.shops.entry(key).or_default();
                    let v = match value {
                        Value::Int(i) => (*i).clamp(0, 7) as u32,
                        _ => 0,
                    };
                    if !remove {
                        row.1 = v;
                    } else if row.1 == v {
                        row.1 = 0;
                    }
                }
                ("mvIds", "bases") => {
                    set_text(self.mvs.entry(key).or_default(), text(value), remove);
                }
                ("mvId", "mvBase") => {
                    set_text(self.models.entry(key).or_default(), text(value), remove);
                }
                ("post", "mvId") => {
                    let row = self.posts.entry(key).or_default();
                    let v = match value {
                        Value::Int(i) => Some(*i),
                        _ => None,
                    };
                    if !remove {
                        *row = v;
                    } else if *row == v {
                        *row = None;
                    }
                }
                _ => {} // not this join's field: skipped
            }
        }
    }

    /// What the index must answer: per live slot, every field.
    fn expected(&self) -> BTreeMap<u32, Fields> {
        let mut out = BTreeMap::new();
        for (&id, s) in &self.slots {
            if !s.alive {
                continue;
            }
            let region = s.shop.map(|l| match l {
                One::Int(k) => self.shops.get(&k).and_then(|r| r.0),
                _ => None,
            });
            let tier = match s.shop {
                Some(One::Int(k)) => self.shops.get(&k).map_or(0, |r| r.1),
                _ => 0,
            };
            let bases = s
                .mvs
                .iter()
                .filter_map(|k| self.mvs.get(k).copied().flatten())
                .collect();
            let mv_id = s.post.map(|l| match l {
                One::Int(k) => self
                    .posts
                    .get(&k)
                    .copied()
                    .flatten()
                    .map_or(One::Null, One::Int),
                _ => One::Null,
            });
            let mv_base = mv_id.map(|l| match l {
                One::Int(k) => self.models.get(&k).copied().flatten(),
                _ => None,
            });
            out.insert(
                id,
                Fields {
                    shop: s.shop.unwrap_or(One::Absent),
                    region: region.map(|r| r.map(str::to_string)),
                    tier,
                    mvs: s.mvs.clone(),
                    bases,
                    post: s.post.unwrap_or(One::Absent),
                    mv_id: mv_id.unwrap_or(One::Absent),
                    mv_base: mv_base.map(|b| b.map(str::to_string)),
                },
            );
        }
        out
    }
}

fn set_text(cell: &mut Option<&'static str>, v: Option<&'static str>, remove: bool) {
    if !remove {
        *cell = v;
    } else if *cell == v {
        *cell = None;
    }
}

/// One live slot's fields, as the model and the index see them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fields {
    shop: One,
    /// `None`: no value; `Some(None)`: NULL.
    region: Option<Option<String>>,
    tier: u32,
    mvs: BTreeSet<i64>,
    bases: BTreeSet<&'static str>,
    post: One,
    mv_id: One,
    mv_base: Option<Option<String>>,
}

/// The same view of an index.
fn observed(st: &IndexState) -> BTreeMap<u32, Fields> {
    let single = |field: &str, slot: u32| -> One {
        let f = &st.filters[field];
        if f.null.contains(&slot) {
            return One::Null;
        }
        f.values
            .iter()
            .find(|(_, s)| s.contains(&slot))
            .map_or(One::Absent, |(k, _)| match k {
                DumpKey::Int(i) => One::Int(*i),
                DumpKey::Str(s) => panic!("{field} holds text {s}"),
            })
    };
    let text = |field: &str, slot: u32| -> Option<Option<String>> {
        let f = &st.filters[field];
        if f.null.contains(&slot) {
            return Some(None);
        }
        f.values
            .iter()
            .find(|(_, s)| s.contains(&slot))
            .map(|(k, _)| match k {
                DumpKey::Str(s) => Some(s.clone()),
                DumpKey::Int(i) => Some(i.to_string()),
            })
    };
    let ints = |field: &str, slot: u32| -> BTreeSet<i64> {
        st.filters[field]
            .values
            .iter()
            .filter(|(_, s)| s.contains(&slot))
            .map(|(k, _)| match k {
                DumpKey::Int(i) => *i,
                DumpKey::Str(s) => panic!("{field} holds text {s}"),
            })
            .collect()
    };
    let mut out = BTreeMap::new();
    for &slot in &st.alive {
        let bases = st.filters["bases"]
            .values
            .iter()
            .filter(|(_, s)| s.contains(&slot))
            .map(|(k, _)| match k {
                DumpKey::Str(s) if s == "a" => "a",
                DumpKey::Str(s) if s == "b" => "b",
                other => panic!("bases holds {other:?}"),
            })
            .collect();
        assert!(
            !st.filters["bases"].null.contains(&slot),
            "slot {slot} has NULL in a multi-value join target"
        );
        out.insert(
            slot,
            Fields {
                shop: single("shopId", slot),
                region: text("region", slot),
                tier: st.sorts["tier"].get(&slot).copied().unwrap_or(0),
                mvs: ints("mvIds", slot),
                bases,
                post: single("post", slot),
                mv_id: single("mvId", slot),
                mv_base: text("mvBase", slot),
            },
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Generated batches.

/// Few keys and mostly one text value: slots often link several parents with equal values.
fn key() -> impl Strategy<Value = i64> {
    1i64..4
}

fn link_value() -> impl Strategy<Value = Value> {
    prop_oneof![5 => key().prop_map(Value::Int), 1 => Just(Value::Null)]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![3 => Just(Value::str("a")), 1 => Just(Value::str("b")), 1 => Just(Value::Null)]
}

fn child() -> impl Strategy<Value = EntityOps> {
    let op = prop_oneof![
        6 => link_value().prop_map(|v| Op::set("shopId", v)),
        2 => link_value().prop_map(|v| Op::remove("shopId", v)),
        5 => key().prop_map(|k| Op::add("mvIds", k)),
        3 => key().prop_map(|k| Op::remove("mvIds", k)),
        4 => link_value().prop_map(|v| Op::set("post", v)),
        1 => link_value().prop_map(|v| Op::remove("post", v)),
        2 => Just(Op::Delete),
        1 => text().prop_map(|v| Op::set("region", v)),
        1 => key().prop_map(|k| Op::set("mvId", k)),
    ];
    (1i64..7, prop::collection::vec(op, 0..5), any::<bool>()).prop_map(|(id, ops, creates)| {
        EntityOps {
            entity_id: id,
            ops,
            creates_slot: creates,
        }
    })
}

fn parent() -> impl Strategy<Value = EntityOps> {
    let tier = prop_oneof![(0i64..9).prop_map(Value::Int), Just(Value::Null)];
    let set_or_remove = |f: &'static str, v: Value, remove: bool| {
        if remove {
            Op::remove(f, v)
        } else {
            Op::set(f, v)
        }
    };
    let shop_op = prop_oneof![
        (text(), any::<bool>()).prop_map(move |(v, r)| set_or_remove("region", v, r)),
        (tier, any::<bool>()).prop_map(move |(v, r)| set_or_remove("tier", v, r)),
    ];
    let text_op =
        |f: &'static str| (text(), any::<bool>()).prop_map(move |(v, r)| set_or_remove(f, v, r));
    let mv_op = (link_value(), any::<bool>()).prop_map(move |(v, r)| set_or_remove("mvId", v, r));
    let q = |link: &'static str, ops: BoxedStrategy<Op>| {
        (key(), prop::collection::vec(ops, 1..4)).prop_map(move |(k, ops)| {
            EntityOps::new(
                k,
                vec![Op::QueryOpSet {
                    query: Some(format!("{link} eq {k}").into()),
                    ops,
                }],
            )
        })
    };
    prop_oneof![
        3 => q("shopId", shop_op.boxed()),
        2 => q("mvIds", text_op("bases").boxed()),
        2 => q("post", mv_op.boxed()),
        2 => q("mvId", text_op("mvBase").boxed()),
        // A parent DELETE: every field NULL.
        1 => key().prop_map(|k| EntityOps::new(k, vec![Op::QueryOpSet {
            query: Some(format!("shopId eq {k}").into()),
            ops: vec![Op::set("region", Value::Null), Op::set("tier", Value::Null)],
        }])),
    ]
}

fn truncate() -> impl Strategy<Value = EntityOps> {
    prop::sample::select(vec![
        Some("region"),
        Some("tier"),
        Some("bases"),
        Some("mvId"),
        Some("mvBase"),
        Some("shopId"),
        Some("mvIds"),
        Some("post"),
        None,
    ])
    .prop_map(|f| EntityOps::new(0, vec![Op::truncate(f)]))
}

fn batch() -> impl Strategy<Value = Vec<EntityOps>> {
    prop::collection::vec(
        prop_oneof![10 => child(), 6 => parent(), 1 => truncate()],
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn joined_fields_equal_the_left_join_after_every_batch(batches in prop::collection::vec(batch(), 1..6)) {
        let schema = schema();
        let deduper = Deduper::new(&schema);
        let mut index = Index::new(schema.clone());
        let mut deduped = Index::new(schema.clone());
        let mut model = Model::default();
        for (b, batch) in batches.iter().enumerate() {
            for e in batch {
                index.apply(e);
                model.apply(e);
            }
            deduped.apply_batch(&deduper.dedup(batch.clone()));
            let st = index.debug_state();
            prop_assert_eq!(observed(&st), model.expected(), "after batch {}", b);
            prop_assert_eq!(deduped.debug_state(), st, "dedup changed batch {}", b);
        }
        let dir = tempfile::tempdir().unwrap();
        index.snapshot().write_checkpoint(dir.path()).unwrap();
        let mut loaded = Index::load_checkpoint(dir.path(), schema).unwrap().unwrap();
        prop_assert_eq!(loaded.debug_state(), index.debug_state());
        // The loaded index goes on exactly as the original (its per-slot links were rebuilt).
        for e in batches.concat() {
            loaded.apply(&e);
            index.apply(&e);
            model.apply(&e);
        }
        prop_assert_eq!(observed(&loaded.debug_state()), model.expected());
        prop_assert_eq!(loaded.debug_state(), index.debug_state());
    }
}

/// The rows of the model's tables as a dump reads them: one insert per slot (its links),
/// one `queryOpSet` per parent row (every field set).
fn dump(model: &Model) -> (Vec<EntityOps>, Vec<EntityOps>, Vec<EntityOps>) {
    let mut children = Vec::new();
    // Slots that are not live yet but hold values (ops before their creation) are rows too.
    for (&id, s) in &model.slots {
        let mut ops = Vec::new();
        let value = |l: One| match l {
            One::Int(k) => Value::Int(k),
            _ => Value::Null,
        };
        if let Some(l) = s.shop.filter(|l| *l != One::Absent) {
            ops.push(Op::set("shopId", value(l)));
        }
        if let Some(l) = s.post.filter(|l| *l != One::Absent) {
            ops.push(Op::set("post", value(l)));
        }
        ops.extend(s.mvs.iter().map(|&k| Op::add("mvIds", k)));
        children.push(EntityOps {
            entity_id: i64::from(id),
            ops,
            creates_slot: s.alive,
        });
    }
    let text = |t: Option<&str>| t.map_or(Value::Null, Value::str);
    let row = |link: &str, k: i64, ops: Vec<Op>| {
        EntityOps::new(
            k,
            vec![Op::QueryOpSet {
                query: Some(format!("{link} eq {k}").into()),
                ops,
            }],
        )
    };
    let mut bulk = Vec::new();
    for (&k, &(region, tier)) in &model.shops {
        bulk.push(row(
            "shopId",
            k,
            vec![
                Op::set("region", text(region)),
                Op::set("tier", i64::from(tier)),
            ],
        ));
    }
    for (&k, &base) in &model.mvs {
        bulk.push(row("mvIds", k, vec![Op::set("bases", text(base))]));
    }
    let mut row_by_row = Vec::new();
    for (&k, &mv) in &model.posts {
        let v = mv.map_or(Value::Null, Value::Int);
        row_by_row.push(row("post", k, vec![Op::set("mvId", v)]));
    }
    for (&k, &base) in &model.models {
        row_by_row.push(row("mvId", k, vec![Op::set("mvBase", text(base))]));
    }
    (children, bulk, row_by_row)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// A dump of the same tables (children in bulk, then parent rows: in bulk against the
    /// loaded index, or row by row through it) gives every live slot the model's LEFT JOIN,
    /// and the index goes on from there like one that applied the history.
    #[test]
    fn a_dump_of_the_tables_loads_the_same_joins(batches in prop::collection::vec(batch(), 1..5), more in batch()) {
        let schema = schema();
        let mut model = Model::default();
        for e in batches.concat() {
            model.apply(&e);
        }
        let (children, bulk, row_by_row) = dump(&model);
        let mut index = Index::new(schema.clone());
        let mut acc = BulkAccumulator::new(schema.clone());
        for e in &children {
            acc.add(e);
        }
        index.merge_bulk(acc);
        let snapshot = index.snapshot();
        let mut acc = BulkAccumulator::new(schema.clone());
        for e in &bulk {
            acc.add_fan_out(&snapshot, e);
        }
        index.merge_bulk(acc);
        for e in &row_by_row {
            index.apply(e);
        }
        index.finish_joins();
        prop_assert_eq!(observed(&index.debug_state()), model.expected());
        for e in &more {
            index.apply(e);
            model.apply(e);
        }
        prop_assert_eq!(observed(&index.debug_state()), model.expected());
    }
}
