//! The index against a model: random op sequences (table-wide `truncate`s included) applied to
//! `Index` and to a `BTreeMap` of per-slot values; then random filters, sorted paging, the full
//! state dump, checkpoint round trips and bulk accumulation must agree with the model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pgroar::index::bulk::{BulkAccumulator, accumulate_par};
use pgroar::index::{
    CmpOp, DumpKey, FieldDump, Filter, Index, IndexState, Literal, Order, Query, Sort,
};
use pgroar::ops::{EntityOps, Op, Value};
use pgroar::schema::{FilterKind, Schema};
use proptest::prelude::*;

const FILTERS: &[(&str, FilterKind)] = &[
    ("s", FilterKind::Single),
    ("m", FilterKind::Multi),
    ("b", FilterKind::Bool),
    ("k", FilterKind::Single),
];
/// `k` is both a filter and a sort field.
const SORTS: &[(&str, u8)] = &[("n", 3), ("k", 2)];
const SLOTS: u32 = 6;

/// Not the shared image-feed fixture: few values per field (so random ops collide), a name that
/// is both filter and sort, and sorts narrow enough to clamp.
fn schema() -> Arc<Schema> {
    Arc::new(Schema::from_pairs(FILTERS, SORTS).unwrap())
}

fn kind_of(field: &str) -> Option<FilterKind> {
    FILTERS.iter().find(|(n, _)| *n == field).map(|(_, k)| *k)
}

fn bits_of(field: &str) -> Option<u8> {
    SORTS.iter().find(|(n, _)| *n == field).map(|(_, b)| *b)
}

// ---------------------------------------------------------------------------------------------
// Generated ops and filters

#[derive(Clone, Debug)]
enum Query_ {
    Good(Filter),
    Bad(&'static str),
}

#[derive(Clone, Debug)]
enum TOp {
    Set(&'static str, Value),
    Remove(&'static str, Value),
    Add(&'static str, Value),
    Delete,
    Qos(Option<Query_>, Vec<TOp>),
    /// One field emptied on every slot, or (`None`) every slot deleted.
    Truncate(Option<&'static str>),
}

impl TOp {
    fn op(&self) -> Op {
        match self {
            TOp::Set(f, v) => Op::set(f, v.clone()),
            TOp::Remove(f, v) => Op::remove(f, v.clone()),
            TOp::Add(f, v) => Op::add(f, v.clone()),
            TOp::Delete => Op::Delete,
            TOp::Qos(q, ops) => Op::QueryOpSet {
                query: q.as_ref().map(|q| match q {
                    Query_::Good(f) => f.to_string().into(),
                    Query_::Bad(s) => (*s).into(),
                }),
                ops: ops.iter().map(TOp::op).collect(),
            },
            TOp::Truncate(f) => Op::truncate(*f),
        }
    }
}

#[derive(Clone, Debug)]
struct TEntity {
    id: i64,
    ops: Vec<TOp>,
    creates: bool,
}

impl TEntity {
    fn entity(&self) -> EntityOps {
        EntityOps {
            entity_id: self.id,
            ops: self.ops.iter().map(TOp::op).collect(),
            creates_slot: self.creates,
        }
    }
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-2i64..10).prop_map(Value::Int),
        3 => prop::sample::select(vec!["a", "b", "7", "t"]).prop_map(Value::str),
        2 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::Bool),
        1 => prop::sample::select(vec![1.5, 2.0, 9.75]).prop_map(Value::Float),
    ]
}

fn field() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["s", "m", "b", "k", "n", "s", "m", "n", "zz"])
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        4 => (-2i64..9).prop_map(Literal::int),
        3 => prop::sample::select(vec!["a", "b", "7", "t"]).prop_map(|s| Literal::Text(s.into())),
        1 => any::<bool>().prop_map(Literal::Bool),
        1 => Just(Literal::Null),
        1 => prop::sample::select(vec![1.5, 2.0]).prop_map(|v| Literal::Decimal { value: v, text: format!("{v:?}") }),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    let fields = prop::sample::select(vec!["s", "m", "b", "k", "n"]);
    let op = prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Eq,
        CmpOp::Gt,
        CmpOp::Gte,
        CmpOp::Lt,
        CmpOp::Lte,
    ]);
    let leaf = prop_oneof![
        3 => (fields.clone(), op, literal()).prop_map(|(f, op, value)| Filter::Cmp { field: f.into(), op, value }),
        1 => (fields, prop::collection::vec(literal(), 0..3)).prop_map(|(f, values)| Filter::In { field: f.into(), values }),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Filter::Not(Box::new(a))),
        ]
    })
}

fn slot_op() -> impl Strategy<Value = TOp> {
    prop_oneof![
        5 => (field(), value()).prop_map(|(f, v)| TOp::Set(f, v)),
        3 => (field(), value()).prop_map(|(f, v)| TOp::Remove(f, v)),
        3 => (field(), value()).prop_map(|(f, v)| TOp::Add(f, v)),
        1 => Just(TOp::Delete),
    ]
}

fn op() -> impl Strategy<Value = TOp> {
    let query = prop_oneof![
        6 => filter().prop_map(|f| Some(Query_::Good(f))),
        1 => Just(None),
        1 => prop::sample::select(vec!["s eq", "zz eq 1", "n gt 'x'"]).prop_map(|s| Some(Query_::Bad(s))),
    ];
    let nested = prop::collection::vec(
        prop_oneof![
            8 => slot_op(),
            2 => Just(TOp::Qos(None, vec![])),
            1 => truncate(),
        ],
        0..3,
    );
    prop_oneof![
        16 => slot_op(),
        2 => (query, nested).prop_map(|(q, ops)| TOp::Qos(q, ops)),
        1 => truncate(),
    ]
}

/// A truncate of one field (unknown ones included) or, less often, of every slot.
fn truncate() -> impl Strategy<Value = TOp> {
    prop::option::weighted(0.75, field()).prop_map(TOp::Truncate)
}

fn entity() -> impl Strategy<Value = TEntity> {
    (
        prop_oneof![20 => (0..SLOTS).prop_map(i64::from), 1 => Just(-1i64), 1 => Just(1i64 << 33)],
        prop::collection::vec(op(), 0..4),
        prop::bool::weighted(0.4),
    )
        .prop_map(|(id, ops, creates)| TEntity { id, ops, creates })
}

// ---------------------------------------------------------------------------------------------
// The model

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MKey {
    Null,
    Int(i64),
    Str(String),
}

#[derive(Clone, Debug, Default)]
struct MSlot {
    alive: bool,
    single: BTreeMap<&'static str, MKey>,
    multi: BTreeSet<MKey>,
    sort: BTreeMap<&'static str, u32>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    slots: BTreeMap<u32, MSlot>,
}

fn model_key(kind: FilterKind, v: &Value) -> Option<MKey> {
    let k = match v {
        Value::Null => MKey::Null,
        Value::Bool(b) => MKey::Int(i64::from(*b)),
        Value::Int(i) => MKey::Int(*i),
        Value::Float(x) if x.fract() == 0.0 => MKey::Int(*x as i64),
        Value::Float(x) => MKey::Str(format!("{x}")),
        Value::Str(s) => MKey::Str(s.to_string()),
    };
    if kind != FilterKind::Bool {
        return Some(k);
    }
    match k {
        MKey::Null => Some(MKey::Null),
        MKey::Int(i @ (0 | 1)) => Some(MKey::Int(i)),
        MKey::Str(s) => match s.to_lowercase().as_str() {
            "t" | "true" => Some(MKey::Int(1)),
            "f" | "false" => Some(MKey::Int(0)),
            _ => None,
        },
        MKey::Int(_) => None,
    }
}

fn model_sort(bits: u8, v: &Value) -> Option<u32> {
    let max = (1i64 << bits) - 1;
    let i = match v {
        Value::Null => 0,
        Value::Bool(b) => i64::from(*b),
        Value::Int(i) => *i,
        Value::Float(x) => x.trunc() as i64,
        Value::Str(s) => s.parse::<i64>().ok()?,
    };
    Some(i.clamp(0, max) as u32)
}

/// A literal as a number, as ranges and sort fields need it.
fn numeric(l: &Literal) -> Option<f64> {
    match l {
        Literal::Null => None,
        Literal::Bool(b) => Some(f64::from(u8::from(*b))),
        Literal::Int { value, .. } => Some(*value as f64),
        Literal::Decimal { value, .. } => Some(*value),
        Literal::Text(s) => s
            .parse::<i64>()
            .map(|i| i as f64)
            .ok()
            .or_else(|| s.parse::<f64>().ok()),
    }
}

/// The keys `eq` matches on a filter field of `kind`.
fn matchset(kind: FilterKind, l: &Literal) -> Vec<MKey> {
    match l {
        Literal::Null => vec![MKey::Null],
        Literal::Bool(b) => vec![MKey::Int(i64::from(*b))],
        Literal::Int { value, text } => vec![MKey::Int(*value), MKey::Str(text.clone())],
        Literal::Decimal { value, text } => {
            let k = if value.fract() == 0.0 {
                MKey::Int(*value as i64)
            } else {
                MKey::Str(format!("{value}"))
            };
            vec![k, MKey::Str(text.clone())]
        }
        Literal::Text(s) => {
            let mut v = vec![MKey::Str(s.clone())];
            if let Ok(i) = s.parse::<i64>() {
                v.push(MKey::Int(i));
            } else if kind == FilterKind::Bool {
                match s.to_lowercase().as_str() {
                    "t" | "true" => v.push(MKey::Int(1)),
                    "f" | "false" => v.push(MKey::Int(0)),
                    _ => {}
                }
            }
            v
        }
    }
}

fn cmp(v: f64, op: CmpOp, x: f64) -> bool {
    match op {
        CmpOp::Eq => v == x,
        CmpOp::Gt => v > x,
        CmpOp::Gte => v >= x,
        CmpOp::Lt => v < x,
        CmpOp::Lte => v <= x,
    }
}

/// Whether a clause on `field` with `op` reads the sort layers (else the filter keys).
fn uses_sort(field: &str, op: CmpOp) -> bool {
    match (kind_of(field), bits_of(field)) {
        (Some(_), Some(_)) => op != CmpOp::Eq,
        (None, Some(_)) => true,
        _ => false,
    }
}

fn clause_lits(f: &Filter) -> Option<(&str, CmpOp, &[Literal])> {
    match f {
        Filter::Cmp { field, op, value } => Some((field, *op, std::slice::from_ref(value))),
        Filter::In { field, values } => Some((field, CmpOp::Eq, values)),
        _ => None,
    }
}

fn valid(f: &Filter) -> bool {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => valid(a) && valid(b),
        Filter::Not(a) => valid(a),
        _ => {
            let (field, op, lits) = clause_lits(f).unwrap();
            if uses_sort(field, op) || op != CmpOp::Eq {
                lits.iter().all(|l| numeric(l).is_some())
            } else {
                true
            }
        }
    }
}

impl Model {
    fn apply(&mut self, e: &TEntity) {
        let slot = u32::try_from(e.id).ok();
        for op in &e.ops {
            match (op, slot) {
                (TOp::Qos(q, ops), _) => self.qos(q, ops),
                (TOp::Truncate(f), _) => self.truncate(*f),
                (_, Some(s)) => self.slot_op(s, op),
                _ => {}
            }
        }
        if let (true, Some(s)) = (e.creates, slot) {
            self.slots.entry(s).or_default().alive = true;
        }
    }

    fn slot_op(&mut self, s: u32, op: &TOp) {
        let (field, value, verb) = match op {
            TOp::Delete => {
                self.slots.insert(s, MSlot::default());
                return;
            }
            // Neither nests in a queryOpSet: ignored there.
            TOp::Qos(..) | TOp::Truncate(_) => return,
            TOp::Set(f, v) => (*f, v, 's'),
            TOp::Remove(f, v) => (*f, v, 'r'),
            TOp::Add(f, v) => (*f, v, 'a'),
        };
        let slot = self.slots.entry(s).or_default();
        if let Some(kind) = kind_of(field)
            && let Some(k) = model_key(kind, value)
        {
            match (kind, verb) {
                (FilterKind::Multi, 'r') => {
                    slot.multi.remove(&k);
                }
                (FilterKind::Multi, _) => {
                    slot.multi.insert(k);
                }
                (_, 'r') => {
                    if slot.single.get(field) == Some(&k) {
                        slot.single.remove(field);
                    }
                }
                _ => {
                    slot.single.insert(field, k);
                }
            }
        }
        if let Some(bits) = bits_of(field)
            && let Some(v) = model_sort(bits, value)
        {
            let cur = slot.sort.entry(field).or_insert(0);
            if verb != 'r' {
                *cur = v;
            } else if *cur == v {
                *cur = 0;
            }
        }
    }

    fn truncate(&mut self, field: Option<&'static str>) {
        let Some(field) = field else {
            self.slots.clear();
            return;
        };
        for slot in self.slots.values_mut() {
            match kind_of(field) {
                Some(FilterKind::Multi) => slot.multi.clear(),
                Some(_) => {
                    slot.single.remove(field);
                }
                None => {}
            }
            if bits_of(field).is_some() {
                slot.sort.remove(field);
            }
        }
    }

    fn qos(&mut self, q: &Option<Query_>, ops: &[TOp]) {
        let Some(Query_::Good(f)) = q else { return };
        let Some(matched) = self.eval(f) else { return };
        for s in matched {
            for op in ops {
                self.slot_op(s, op);
            }
        }
    }

    fn pred(&self, s: &MSlot, f: &Filter) -> bool {
        match f {
            Filter::And(a, b) => self.pred(s, a) && self.pred(s, b),
            Filter::Or(a, b) => self.pred(s, a) || self.pred(s, b),
            Filter::Not(a) => !self.pred(s, a),
            _ => {
                let (field, op, lits) = clause_lits(f).unwrap();
                if uses_sort(field, op) {
                    let v = f64::from(s.sort.get(field).copied().unwrap_or(0));
                    return lits.iter().any(|l| cmp(v, op, numeric(l).unwrap()));
                }
                let kind = kind_of(field).unwrap();
                let values: Vec<&MKey> = if kind == FilterKind::Multi {
                    s.multi.iter().collect()
                } else {
                    s.single.get(field).into_iter().collect()
                };
                lits.iter().any(|l| {
                    if op == CmpOp::Eq {
                        let keys = matchset(kind, l);
                        values.iter().any(|v| keys.contains(v))
                    } else {
                        let x = numeric(l).unwrap();
                        values
                            .iter()
                            .any(|v| matches!(v, MKey::Int(i) if cmp(*i as f64, op, x)))
                    }
                })
            }
        }
    }

    /// Live slots matching `f`, or `None` when the index must refuse it.
    fn eval(&self, f: &Filter) -> Option<Vec<u32>> {
        if !valid(f) {
            return None;
        }
        Some(
            self.slots
                .iter()
                .filter(|(_, s)| s.alive && self.pred(s, f))
                .map(|(id, _)| *id)
                .collect(),
        )
    }

    fn sorted(&self, matched: &[u32], field: &str, order: Order) -> Vec<u32> {
        let mut rows: Vec<(u32, u32)> = matched
            .iter()
            .map(|id| (self.slots[id].sort.get(field).copied().unwrap_or(0), *id))
            .collect();
        rows.sort();
        if order == Order::Desc {
            rows.reverse();
        }
        rows.into_iter().map(|(_, id)| id).collect()
    }

    fn state(&self) -> IndexState {
        let dump = |k: &MKey| match k {
            MKey::Int(i) => DumpKey::Int(*i),
            MKey::Str(s) => DumpKey::Str(s.clone()),
            MKey::Null => unreachable!("NULL has its own list"),
        };
        let mut st = IndexState {
            alive: self
                .slots
                .iter()
                .filter(|(_, s)| s.alive)
                .map(|(id, _)| *id)
                .collect(),
            ..IndexState::default()
        };
        for (name, kind) in FILTERS {
            let mut fd = FieldDump::default();
            for (id, s) in &self.slots {
                let keys: Vec<&MKey> = if *kind == FilterKind::Multi {
                    s.multi.iter().collect()
                } else {
                    s.single.get(name).into_iter().collect()
                };
                for k in keys {
                    match k {
                        MKey::Null => fd.null.push(*id),
                        k => fd.values.entry(dump(k)).or_default().push(*id),
                    }
                }
            }
            st.filters.insert(name.to_string(), fd);
        }
        for (name, _) in SORTS {
            let values = self
                .slots
                .iter()
                .filter_map(|(id, s)| s.sort.get(name).filter(|v| **v != 0).map(|v| (*id, *v)))
                .collect();
            st.sorts.insert(name.to_string(), values);
        }
        st
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

fn walk_pages(
    snap: &pgroar::index::Snapshot,
    filter: &str,
    sort: Option<Sort>,
    limit: usize,
) -> Result<(Vec<u32>, u64), TestCaseError> {
    let (mut ids, mut cursor, mut total) = (Vec::new(), None, None);
    for _ in 0..=SLOTS {
        let r = snap
            .query(&Query {
                filter: Some(filter.to_string()),
                sort: sort.clone(),
                limit,
                cursor: cursor.take(),
            })
            .map_err(|e| TestCaseError::fail(format!("{filter}: {e}")))?;
        prop_assert!(r.ids.len() <= limit);
        prop_assert!(
            *total.get_or_insert(r.total) == r.total,
            "total changes between pages"
        );
        ids.extend(r.ids);
        match r.next_cursor {
            None => return Ok((ids, total.unwrap())),
            Some(c) => cursor = Some(c),
        }
    }
    Err(TestCaseError::fail("paging does not end"))
}

fn check_queries(
    ix: &Index,
    model: &Model,
    filters: &[Filter],
    limit: usize,
    order: Order,
) -> Result<(), TestCaseError> {
    let snap = ix.snapshot();
    let alive: BTreeSet<u32> = snap.debug_state().alive.into_iter().collect();
    for f in filters {
        let text = f.to_string();
        let want = model.eval(f);
        let got = snap.count(Some(&text));
        prop_assert_eq!(got.is_ok(), want.is_some(), "{}: {:?}", text, got);
        let Some(want) = want else { continue };
        prop_assert_eq!(got.unwrap(), want.len() as u64, "{}", text);
        let (ids, total) = walk_pages(&snap, &text, None, limit)?;
        prop_assert_eq!(&ids, &want, "{}", text);
        prop_assert_eq!(total, want.len() as u64);
        prop_assert!(ids.iter().all(|id| alive.contains(id)));
        for field in ["n", "k"] {
            let sort = Sort {
                field: field.into(),
                order,
            };
            let (ids, _) = walk_pages(&snap, &text, Some(sort), limit)?;
            prop_assert_eq!(
                ids,
                model.sorted(&want, field, order),
                "{} by {} {:?}",
                text,
                field,
                order
            );
        }
    }
    Ok(())
}

fn order() -> impl Strategy<Value = Order> {
    prop_oneof![Just(Order::Asc), Just(Order::Desc)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_the_model(
        entities in prop::collection::vec(entity(), 0..30),
        filters in prop::collection::vec(filter(), 1..6),
        limit in 1usize..5,
        order in order(),
        snapshot_every in 1usize..6,
    ) {
        let mut ix = Index::new(schema());
        let mut model = Model::default();
        for (i, e) in entities.iter().enumerate() {
            ix.apply(&e.entity());
            model.apply(e);
            // Snapshots in between exercise the lazy cleanup's adopt path.
            if i % snapshot_every == 0 {
                prop_assert_eq!(ix.debug_state(), model.state());
            }
        }
        prop_assert_eq!(ix.debug_state(), model.state());
        check_queries(&ix, &model, &filters, limit, order)?;
    }

    #[test]
    fn checkpoints_round_trip_the_state_and_the_columns(
        before in prop::collection::vec(entity(), 0..25),
        after in prop::collection::vec(entity(), 0..10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::new(schema());
        let mut model = Model::default();
        for e in &before {
            ix.apply(&e.entity());
            model.apply(e);
        }
        ix.set_applied(pgroar::WalKey::new(pgroar::Lsn(77), 3));
        ix.snapshot().write_checkpoint(dir.path()).unwrap();
        let mut loaded = Index::load_checkpoint(dir.path(), schema()).unwrap().unwrap();
        prop_assert_eq!(loaded.debug_state(), ix.debug_state());
        for e in &after {
            ix.apply(&e.entity());
            loaded.apply(&e.entity());
            model.apply(e);
        }
        let mut want = model.state();
        want.applied = pgroar::WalKey::new(pgroar::Lsn(77), 3);
        prop_assert_eq!(loaded.debug_state(), ix.debug_state());
        prop_assert_eq!(loaded.debug_state(), want);
    }

    #[test]
    fn bulk_accumulation_equals_sequential_apply(
        prefix in prop::collection::vec(entity(), 0..12),
        rows in prop::collection::btree_map(0..SLOTS + 2, (
            prop::option::of(value()), prop::option::of(value()), prop::option::of(value()),
            prop::option::of(value()), prop::collection::vec(value(), 0..3), any::<bool>(),
        ), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        spread in any::<bool>(),
        after in prop::collection::vec(entity(), 0..8),
    ) {
        // Insert-only rows: at most one set per single/bool/sort field, any adds, one row per slot.
        // Spread out, the rows' slots fall in different column pages and bitmap chunks.
        let stride = if spread { 300_007 } else { 1 };
        let batch: Vec<EntityOps> = rows
            .into_iter()
            .map(|(slot, (s, b, k, n, m, creates))| {
                let mut ops = Vec::new();
                for (f, v) in [("s", s), ("b", b), ("k", k), ("n", n)] {
                    if let Some(v) = v {
                        ops.push(Op::set(f, v));
                    }
                }
                ops.extend(m.into_iter().map(|v| Op::add("m", v)));
                EntityOps { entity_id: i64::from(slot) * stride, ops, creates_slot: creates }
            })
            .collect();
        let mut sequential = Index::new(schema());
        let mut bulk = Index::new(schema());
        let mut par = Index::new(schema());
        for e in &prefix {
            for ix in [&mut sequential, &mut bulk, &mut par] {
                ix.apply(&e.entity());
            }
        }
        for e in &batch {
            sequential.apply(e);
        }
        // Several accumulators over contiguous parts, merged with OR.
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(batch.len() + 1)).collect();
        bounds.extend([0, batch.len()]);
        bounds.sort();
        let acc = bounds
            .windows(2)
            .map(|w| {
                let mut acc = BulkAccumulator::new(schema());
                for e in &batch[w[0]..w[1]] {
                    acc.add(e);
                }
                acc
            })
            .fold(BulkAccumulator::new(schema()), BulkAccumulator::merge);
        bulk.merge_bulk(acc);
        par.merge_bulk(accumulate_par(schema(), batch.clone()));
        prop_assert_eq!(bulk.debug_state(), sequential.debug_state());
        prop_assert_eq!(par.debug_state(), sequential.debug_state());
        // The writer's columns agree too: later ops (which read a slot's current value) land
        // the same way.
        for e in &after {
            for ix in [&mut sequential, &mut bulk, &mut par] {
                ix.apply(&e.entity());
            }
        }
        prop_assert_eq!(bulk.debug_state(), sequential.debug_state());
        prop_assert_eq!(par.debug_state(), sequential.debug_state());
    }
}

#[test]
fn every_result_is_within_alive_and_not_is_relative_to_alive() {
    let mut ix = Index::new(schema());
    ix.apply(&EntityOps::new(1, vec![Op::set("s", "a"), Op::set("n", 5)]));
    ix.apply(&EntityOps::alive(2, vec![Op::set("s", "b")]));
    let snap = ix.snapshot();
    assert_eq!(snap.count(Some("s eq a")).unwrap(), 0);
    assert_eq!(snap.count(Some("NOT s eq b")).unwrap(), 0);
    assert_eq!(snap.count(Some("n gte 0")).unwrap(), 1);
    assert_eq!(snap.count(None).unwrap(), 1);
    let r = snap
        .query(&Query {
            filter: None,
            sort: Some(Sort {
                field: "n".into(),
                order: Order::Desc,
            }),
            limit: 10,
            cursor: None,
        })
        .unwrap();
    assert_eq!(r.ids, vec![2]);
}
