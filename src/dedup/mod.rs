//! Per-batch dedup: collapse a batch of entity ops into fewer ops with the same effect.
//!
//! The law this module keeps (checked by a property test over random batches): applying the
//! deduped batch to an index gives exactly the index that applying the raw batch gives.
//! Rules, per entity, within a run of entries that contain no `queryOpSet`:
//!
//! * entries of one entity are grouped (first-appearance order, so the output is deterministic);
//! * a `delete` absorbs everything before it but the ops of join-table multi-value fields (which
//!   it leaves, see `Schema::deleted_with_slot`); ops after it (a re-insert) survive, and
//!   `creates_slot` is the OR over the entry holding the last delete and those after it;
//! * single-value, bool and sort fields keep the **first** `remove` and the **last** `set`
//!   (plus a trailing `remove` of that value when one came after it); removes with no set keep
//!   each distinct value;
//! * multi-value `add`/`remove` follow set semantics: the last op per value wins;
//! * fields the schema does not know pass through untouched, in order.
//!
//! `queryOpSet` depends on other entities' state, so entries holding one act as barriers: the
//! direct entries before and after are deduped separately, and within a run of `queryOpSet`
//! entries the nested ops of one (entity, query) are merged per field — unless a later entry
//! of the run writes the same fields or the fields the query reads, in which case order wins
//! and a new group starts. A `queryOpSet` whose query is null is a no-op and is dropped. In a
//! join's `link eq key` query, the join's targets are cells of one parent row: they collapse as
//! single-value fields whatever their kind (a multi-value target's `set a, set b` is `set b`).
//! An entity left with no ops and no `creates_slot` is dropped; one that only creates its slot
//! is kept.
//!
//! A `truncate` changes every slot, so an entry holding one is a barrier for the whole batch:
//! every run before it is flushed, the entry passes through verbatim, and a new run starts
//! after it (nothing merges across it). A `truncate` nested in a `queryOpSet` (which the index
//! ignores) is kept verbatim like a nested `delete`.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;

mod fanout;

use fanout::FanoutRun;

use crate::hash::KeyHash;
use crate::index::{CanonicalValue, canonical_filter, canonical_sort};
use crate::ops::{EntityOps, Op, Value};
use crate::schema::{Field, FieldId, FieldIds, FilterKind, Schema, SortField};

/// How dedup collapses a field's ops.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Class {
    /// Single-value or bool filter: one current key per slot.
    ScalarFilter(FilterKind),
    /// Sort field: one current value per slot.
    ScalarSort(SortField),
    /// Multi-value: a set of values per slot.
    Multi,
    /// Unknown to the schema, or both a filter and a sort field: kept verbatim.
    Verbatim,
}

impl Class {
    /// The key the index files `v` under; `None` when the index rejects the value (a no-op).
    fn canonical(&self, v: &Value) -> Option<CanonicalValue> {
        match self {
            Class::ScalarFilter(kind) => canonical_filter(*kind, v),
            Class::ScalarSort(field) => canonical_sort(field, v),
            Class::Multi => canonical_filter(FilterKind::Multi, v),
            Class::Verbatim => None,
        }
    }
}

/// Collapses batches of entity ops for one schema. Build once; reuse for every batch.
#[derive(Clone, Debug)]
pub struct Deduper {
    /// The schema's fields, numbered.
    ids: FieldIds,
    /// Per field id, how its ops collapse.
    classes: Vec<Class>,
    /// The schema's joins: link field and target fields.
    joins: Vec<(Field, Vec<FieldId>)>,
    /// Per field id: a join-table multi-value field, which a `delete` leaves.
    survives_delete: Vec<bool>,
}

impl Deduper {
    /// A deduper for the fields of `schema`.
    pub fn new(schema: &Schema) -> Self {
        let ids = schema.field_ids();
        let classes = ids
            .iter()
            .map(|(id, _)| {
                let roles = ids.roles(id);
                match (roles.filter.map(|f| schema.filters[f].kind), roles.sort) {
                    (Some(FilterKind::Multi), None) => Class::Multi,
                    (Some(kind), None) => Class::ScalarFilter(kind),
                    (None, Some(s)) => Class::ScalarSort(schema.sorts[s].clone()),
                    // A name that is both a filter and a sort field keys values differently in
                    // each role; keep its ops as they are rather than reason about both at once.
                    _ => Class::Verbatim,
                }
            })
            .collect();
        let joins = schema
            .joins
            .iter()
            .map(|j| {
                let targets = j.targets.iter().filter_map(|t| ids.lookup(t)).collect();
                (ids.resolve(&j.link), targets)
            })
            .collect();
        let wiped = schema.deleted_with_slot();
        let survives_delete = ids
            .iter()
            .map(|(id, _)| {
                let roles = ids.roles(id);
                roles.sort.is_none()
                    && roles
                        .filter
                        .is_some_and(|f| schema.filters[f].kind == FilterKind::Multi && !wiped[f])
            })
            .collect();
        Deduper {
            ids,
            classes,
            joins,
            survives_delete,
        }
    }

    /// Whether a `delete` leaves `field` (a join-table multi-value field).
    fn survives_delete(&self, field: &Field) -> bool {
        self.ids
            .id(field)
            .is_some_and(|id| self.survives_delete[id.index()])
    }

    /// The join whose `link eq key` queries set parent rows, for a query on `link`.
    fn join_of_link(&self, link: &str) -> Option<usize> {
        self.joins.iter().position(|(l, _)| l.name() == link)
    }

    /// How a field collapses among the nested ops of a join's query (`join`): the join's
    /// targets are one cell of the parent row each, whatever the field's kind.
    fn class_in(&self, field: &Field, join: Option<usize>) -> Class {
        let id = self.ids.id(field);
        let class = id.map_or(Class::Verbatim, |id| self.classes[id.index()].clone());
        let target = join.is_some_and(|j| id.is_some_and(|id| self.joins[j].1.contains(&id)));
        match class {
            Class::Multi if target => Class::ScalarFilter(FilterKind::Multi),
            class => class,
        }
    }

    /// The schema's fields as this deduper numbers them (the WAL reader resolves ops to them).
    pub fn field_ids(&self) -> &FieldIds {
        &self.ids
    }

    /// The position of a field in `classes`; `None` for a name the schema does not know.
    fn position(&self, field: &Field) -> Option<usize> {
        self.ids.id(field).map(FieldId::index)
    }

    /// Whether collapsing `ops`, the only entry of its entity in a direct run, would give them
    /// back unchanged, so the entry can pass through as it is (the common case: no allocation).
    ///
    /// True when at most a leading `delete` precedes ops on schema fields that each form one
    /// contiguous group which collapsing keeps as it is: on a single-value, bool or sort field a
    /// `set`, a `remove`, or a `remove` then a `set`; on a multi-value field `add`s and `remove`s
    /// of distinct values; any ops of a field kept verbatim. Every value must be one the index
    /// accepts (rejected ones would be moved to the end of their field's group). Anything else
    /// (unknown fields included) takes the general path.
    fn unchanged(&self, ops: &[Op]) -> bool {
        const MAX_OPS: usize = 16;
        let ops = match ops.split_first() {
            Some((Op::Delete, rest)) => rest,
            _ => ops,
        };
        if ops.len() > MAX_OPS {
            return false;
        }
        // Each op's field as a position in `classes`, resolved once.
        let mut fields = [0usize; MAX_OPS];
        for (op, pos) in ops.iter().zip(&mut fields) {
            match op.field().and_then(|f| self.position(f)) {
                Some(p) => *pos = p,
                None => return false, // a second delete, or an unknown field
            }
        }
        let fields = &fields[..ops.len()];
        let mut start = 0;
        while start < ops.len() {
            let field = fields[start];
            if fields[..start].contains(&field) {
                return false; // the field's ops are not contiguous
            }
            let len = fields[start..].iter().take_while(|&&f| f == field).count();
            let group = &ops[start..start + len];
            let class = &self.classes[field];
            let accepted = |op: &Op| class.canonical(op_value(op)).is_some();
            let kept = match class {
                Class::Verbatim => true,
                Class::ScalarFilter(_) | Class::ScalarSort(_) => match group {
                    [op @ (Op::Set { .. } | Op::Remove { .. })] => accepted(op),
                    [rm @ Op::Remove { .. }, set @ Op::Set { .. }] => accepted(rm) && accepted(set),
                    _ => false,
                },
                Class::Multi => {
                    let mut keys: [Option<CanonicalValue>; MAX_OPS] = Default::default();
                    group.iter().zip(&mut keys).all(|(op, key)| {
                        matches!(op, Op::Add { .. } | Op::Remove { .. }) && {
                            *key = class.canonical(op_value(op));
                            key.is_some()
                        }
                    }) && (1..group.len()).all(|i| !keys[..i].contains(&keys[i]))
                }
            };
            if !kept {
                return false;
            }
            start += len;
        }
        true
    }

    /// Collapses `batch`; see the module docs for the rules. Output order is deterministic.
    pub fn dedup(&self, batch: Vec<EntityOps>) -> Vec<EntityOps> {
        let barrier = |e: &EntityOps| {
            e.ops
                .iter()
                .any(|op| matches!(op, Op::QueryOpSet { .. } | Op::Truncate { .. }))
        };
        if !batch.iter().any(barrier) {
            return self.dedup_direct(batch);
        }
        self.dedup_runs(batch)
    }

    /// [`Deduper::dedup`] run by run: direct runs split by `queryOpSet` and `truncate` entries.
    fn dedup_runs(&self, batch: Vec<EntityOps>) -> Vec<EntityOps> {
        let mut out = Vec::with_capacity(batch.len());
        let mut direct = DirectRun::with_capacity(batch.len());
        let mut fanout = FanoutRun::default();
        for mut e in batch {
            // A queryOpSet with a null query is a no-op: drop it before it acts as a barrier.
            e.ops
                .retain(|op| !matches!(op, Op::QueryOpSet { query: None, .. }));
            if e.ops.is_empty() && !e.creates_slot {
                continue;
            }
            let barrier = e
                .ops
                .iter()
                .any(|op| matches!(op, Op::QueryOpSet { .. } | Op::Truncate { .. }));
            if !barrier {
                fanout.flush(self, &mut out);
                direct.push(self, e);
                continue;
            }
            direct.flush(self, &mut out);
            let pure = e.ops.iter().all(|op| matches!(op, Op::QueryOpSet { .. }));
            if pure && !e.creates_slot {
                fanout.push(self, e);
            } else {
                fanout.flush(self, &mut out);
                out.push(e);
            }
        }
        direct.flush(self, &mut out);
        fanout.flush(self, &mut out);
        out
    }
}

impl Deduper {
    /// [`Deduper::dedup`] of a batch without `queryOpSet` or `truncate` (one direct run, the
    /// common case), in place: each entity's result goes where its first entry was, compacted
    /// toward the front, so the output reuses the batch's memory, which dedup has just read.
    fn dedup_direct(&self, mut batch: Vec<EntityOps>) -> Vec<EntityOps> {
        /// A position holding its entity's only entry so far.
        const SINGLE: u32 = u32::MAX;
        /// A position whose entry was folded into an earlier one's group, or dropped.
        const GONE: u32 = u32::MAX - 1;
        let take = |e: &mut EntityOps| std::mem::replace(e, EntityOps::new(0, Vec::new()));
        let n = batch.len();
        // Per position: SINGLE, GONE, or the index of the group its entity's entries fold into.
        let mut kind = vec![SINGLE; n];
        let mut groups: Vec<Option<Group>> = Vec::new();
        let mut first: HashMap<i64, usize, KeyHash> =
            HashMap::with_capacity_and_hasher(n, KeyHash::default());
        for i in 0..n {
            if batch[i].ops.is_empty() && !batch[i].creates_slot {
                kind[i] = GONE;
                continue;
            }
            let p = match first.entry(batch[i].entity_id) {
                MapEntry::Vacant(v) => {
                    v.insert(i);
                    continue;
                }
                MapEntry::Occupied(o) => *o.get(),
            };
            if kind[p] == SINGLE {
                let mut g = Group::new(batch[p].entity_id);
                g.push(self, take(&mut batch[p]));
                kind[p] = groups.len() as u32;
                groups.push(Some(g));
            }
            let e = take(&mut batch[i]);
            if let Some(g) = &mut groups[kind[p] as usize] {
                g.push(self, e);
            }
            kind[i] = GONE;
        }
        let mut w = 0;
        for i in 0..n {
            let out = match kind[i] {
                GONE => None,
                SINGLE if self.unchanged(&batch[i].ops) => Some(take(&mut batch[i])),
                SINGLE => {
                    let e = take(&mut batch[i]);
                    let mut g = Group::new(e.entity_id);
                    g.push(self, e);
                    g.into_entity()
                }
                g => groups[g as usize].take().and_then(Group::into_entity),
            };
            if let Some(e) = out {
                batch[w] = e;
                w += 1;
            }
        }
        batch.truncate(w);
        batch
    }
}

/// Collapsed ops of one field. Values are compared by the key the index files them under.
#[derive(Debug)]
enum FieldOps {
    Scalar {
        field: Field,
        class: Class,
        /// Distinct removes seen before the first set, in order.
        removes: Vec<(CanonicalValue, Value)>,
        last_set: Option<(CanonicalValue, Value)>,
        /// A remove of `last_set`'s key came after it (the field ends empty).
        cleared: bool,
        /// Ops whose value the index rejects: no-ops, kept (at the end) so they are counted.
        rejected: Vec<Op>,
    },
    Multi {
        field: Field,
        /// Per key, the last op's value and whether it was an add.
        values: Vec<(CanonicalValue, Value, bool)>,
        rejected: Vec<Op>,
    },
    Verbatim {
        ops: Vec<Op>,
    },
}

impl FieldOps {
    fn new(field: &Field, class: Class) -> FieldOps {
        let field = field.clone();
        match class {
            Class::ScalarFilter(_) | Class::ScalarSort(_) => FieldOps::Scalar {
                field,
                class,
                removes: Vec::new(),
                last_set: None,
                cleared: false,
                rejected: Vec::new(),
            },
            Class::Multi => FieldOps::Multi {
                field,
                values: Vec::new(),
                rejected: Vec::new(),
            },
            Class::Verbatim => FieldOps::Verbatim { ops: Vec::new() },
        }
    }

    /// `set` (or `add`, which is a set on a scalar field and an add on a multi field).
    fn set(&mut self, op: Op) {
        match self {
            FieldOps::Scalar {
                class,
                last_set,
                cleared,
                rejected,
                ..
            } => {
                let value = op_value(&op);
                match class.canonical(value) {
                    Some(key) => {
                        *last_set = Some((key, value.clone()));
                        *cleared = false;
                    }
                    None => rejected.push(op),
                }
            }
            FieldOps::Multi {
                values, rejected, ..
            } => {
                let value = op_value(&op);
                match Class::Multi.canonical(value) {
                    Some(key) => upsert(values, key, value.clone(), true),
                    None => rejected.push(op),
                }
            }
            FieldOps::Verbatim { ops } => ops.push(op),
        }
    }

    fn remove(&mut self, op: Op) {
        match self {
            FieldOps::Scalar {
                class,
                removes,
                last_set,
                cleared,
                rejected,
                ..
            } => {
                let value = op_value(&op);
                match (class.canonical(value), last_set) {
                    (None, _) => rejected.push(op),
                    (Some(key), None) => {
                        if !removes.iter().any(|(k, _)| *k == key) {
                            removes.push((key, value.clone()));
                        }
                    }
                    (Some(key), Some((set, _))) => {
                        if key == *set {
                            *cleared = true;
                        }
                    }
                }
            }
            FieldOps::Multi {
                values, rejected, ..
            } => {
                let value = op_value(&op);
                match Class::Multi.canonical(value) {
                    Some(key) => upsert(values, key, value.clone(), false),
                    None => rejected.push(op),
                }
            }
            FieldOps::Verbatim { ops } => ops.push(op),
        }
    }

    fn emit(self, out: &mut Vec<Op>) {
        match self {
            FieldOps::Scalar {
                field,
                removes,
                last_set,
                cleared,
                rejected,
                ..
            } => {
                match last_set {
                    None => out.extend(removes.into_iter().map(|(_, value)| Op::Remove {
                        field: field.clone(),
                        value,
                    })),
                    Some((_, value)) => {
                        if let Some((_, first)) = removes.into_iter().next() {
                            out.push(Op::Remove {
                                field: field.clone(),
                                value: first,
                            });
                        }
                        out.push(Op::Set {
                            field: field.clone(),
                            value: value.clone(),
                        });
                        if cleared {
                            out.push(Op::Remove { field, value });
                        }
                    }
                }
                out.extend(rejected);
            }
            FieldOps::Multi {
                field,
                values,
                rejected,
            } => {
                out.extend(values.into_iter().map(|(_, value, add)| {
                    if add {
                        Op::Add {
                            field: field.clone(),
                            value,
                        }
                    } else {
                        Op::Remove {
                            field: field.clone(),
                            value,
                        }
                    }
                }));
                out.extend(rejected);
            }
            FieldOps::Verbatim { ops } => out.extend(ops),
        }
    }
}

fn op_value(op: &Op) -> &Value {
    match op {
        Op::Set { value, .. } | Op::Remove { value, .. } | Op::Add { value, .. } => value,
        Op::Delete | Op::QueryOpSet { .. } | Op::Truncate { .. } => &Value::Null,
    }
}

/// The collapsed state of one entity (or of one queryOpSet's nested ops).
#[derive(Debug, Default)]
struct Collapsed {
    /// For a join query's nested ops: the join (its targets collapse as parent cells).
    join: Option<usize>,
    deleted: bool,
    /// Nested ops that cannot be collapsed (a delete or queryOpSet inside a queryOpSet).
    verbatim_tail: Vec<Op>,
    fields: Vec<(Field, FieldOps)>,
}

impl Collapsed {
    fn field(&mut self, d: &Deduper, name: &Field) -> &mut FieldOps {
        let pos = match self.fields.iter().position(|(f, _)| f == name) {
            Some(pos) => pos,
            None => {
                self.fields.push((
                    name.clone(),
                    FieldOps::new(name, d.class_in(name, self.join)),
                ));
                self.fields.len() - 1
            }
        };
        &mut self.fields[pos].1
    }

    /// Folds one op into the state. A nested `delete`/`queryOpSet`/`truncate` (inside a
    /// queryOpSet) cannot be collapsed: it and every op after it are kept verbatim, after the
    /// collapsed fields.
    fn push(&mut self, d: &Deduper, op: Op) {
        if !self.verbatim_tail.is_empty()
            || matches!(op, Op::Delete | Op::QueryOpSet { .. } | Op::Truncate { .. })
        {
            self.verbatim_tail.push(op);
            return;
        }
        let Some(field) = op.field().cloned() else {
            return;
        };
        let f = self.field(d, &field);
        match op {
            Op::Remove { .. } => f.remove(op),
            _ => f.set(op),
        }
    }

    fn emit(self) -> Vec<Op> {
        let mut out = Vec::with_capacity(self.fields.len() + 1);
        if self.deleted {
            out.push(Op::Delete);
        }
        for (_, f) in self.fields {
            f.emit(&mut out);
        }
        out.extend(self.verbatim_tail);
        out
    }

    fn written_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields
            .iter()
            .map(|(f, _)| f)
            .chain(self.verbatim_tail.iter().filter_map(Op::field))
    }
}

fn upsert(
    values: &mut Vec<(CanonicalValue, Value, bool)>,
    key: CanonicalValue,
    value: Value,
    add: bool,
) {
    match values.iter_mut().find(|(k, _, _)| *k == key) {
        Some(slot) => {
            slot.1 = value;
            slot.2 = add;
        }
        None => values.push((key, value, add)),
    }
}

/// One entity within a run of direct entries, once it has more than one entry.
#[derive(Debug)]
struct Group {
    entity_id: i64,
    creates_slot: bool,
    ops: Collapsed,
}

impl Group {
    fn new(entity_id: i64) -> Group {
        Group {
            entity_id,
            creates_slot: false,
            ops: Collapsed::default(),
        }
    }

    /// Folds the next entry of this entity in.
    fn push(&mut self, d: &Deduper, e: EntityOps) {
        let mut ops = e.ops;
        if let Some(last_delete) = ops.iter().rposition(|op| matches!(op, Op::Delete)) {
            // The delete wipes the slot's own fields: nothing before it on them matters, and
            // only this entry's and later entries' creates_slot can bring the slot back. The
            // join-table multi-value fields survive it, and so do their ops.
            let before: Vec<Op> = ops.drain(..=last_delete).collect();
            let mut kept = std::mem::take(&mut self.ops.fields);
            kept.retain(|(f, _)| d.survives_delete(f));
            self.ops = Collapsed {
                deleted: true,
                fields: kept,
                ..Collapsed::default()
            };
            self.creates_slot = false;
            for op in before {
                if op.field().is_some_and(|f| d.survives_delete(f)) {
                    self.ops.push(d, op);
                }
            }
        }
        self.creates_slot |= e.creates_slot;
        for op in ops {
            self.ops.push(d, op);
        }
    }

    fn emit(self, out: &mut Vec<EntityOps>) {
        out.extend(self.into_entity());
    }

    /// The collapsed entity; `None` when nothing is left (no ops, no `creates_slot`).
    fn into_entity(self) -> Option<EntityOps> {
        let ops = self.ops.emit();
        (!ops.is_empty() || self.creates_slot).then_some(EntityOps {
            entity_id: self.entity_id,
            ops,
            creates_slot: self.creates_slot,
        })
    }
}

/// An entity of a direct run: its only entry so far, kept as it came, or its collapsed entries.
#[derive(Debug)]
enum Entry {
    Single(EntityOps),
    /// Boxed: most entries are single, and a small entry keeps the run's buffer small.
    Merged(Box<Group>),
}

/// A run of entries without `queryOpSet`, grouped by entity.
#[derive(Debug, Default)]
struct DirectRun {
    entries: Vec<Entry>,
    by_entity: HashMap<i64, usize, KeyHash>,
}

impl DirectRun {
    fn with_capacity(n: usize) -> DirectRun {
        DirectRun {
            entries: Vec::with_capacity(n),
            by_entity: HashMap::with_capacity_and_hasher(n, KeyHash::default()),
        }
    }

    fn push(&mut self, d: &Deduper, e: EntityOps) {
        let i = match self.by_entity.entry(e.entity_id) {
            MapEntry::Vacant(v) => {
                v.insert(self.entries.len());
                self.entries.push(Entry::Single(e));
                return;
            }
            MapEntry::Occupied(o) => *o.get(),
        };
        let entry = &mut self.entries[i];
        if let Entry::Single(first) = entry {
            // A second entry: fold the first one in, then this one.
            let first = std::mem::replace(first, EntityOps::new(e.entity_id, Vec::new()));
            let mut g = Box::new(Group::new(e.entity_id));
            g.push(d, first);
            *entry = Entry::Merged(g);
        }
        if let Entry::Merged(g) = entry {
            g.push(d, e);
        }
    }

    fn flush(&mut self, d: &Deduper, out: &mut Vec<EntityOps>) {
        self.by_entity.clear();
        for entry in self.entries.drain(..) {
            match entry {
                Entry::Single(e) if d.unchanged(&e.ops) => out.push(e),
                Entry::Single(e) => {
                    let mut g = Group::new(e.entity_id);
                    g.push(d, e);
                    g.emit(out);
                }
                Entry::Merged(g) => g.emit(out),
            }
        }
    }
}

#[cfg(test)]
mod tests;
