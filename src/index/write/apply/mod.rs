//! Applying ops to the writer's state.
//!
//! Per op, for each filter/sort field the op's field name denotes (a name may be both):
//! * `set`: single/bool filter → the slot moves from its current key (or NULL) to the new one;
//!   multi filter → like `add`; sort → only the layers where old and new values differ flip.
//! * `remove`: single/bool filter → only when the current key equals the value (NULL included);
//!   multi → out of the value's bitmap; sort → only when the current value equals it (then 0).
//! * `add`: multi → into the value's bitmap; otherwise like `set`.
//! * `delete`: wipes the slot (alive, every filter and sort bit, the columns).
//! * `queryOpSet`: the query is evaluated on the writer's current state ∩ alive and the nested
//!   ops applied to each match (a nested `delete` wipes, a nested `queryOpSet` or `truncate` is
//!   ignored).
//! * `truncate`: table-wide, whatever the entity id (see `truncate`): empties one field on every
//!   slot, or without a field wipes every slot.
//!
//! Bad data never stops the stream: unknown fields, values a field cannot hold, out-of-range
//! sort values (clamped), ids that do not fit a slot and bad queries are counted in
//! [`IndexStats`](crate::index::IndexStats) and logged (warn for the first few of each kind, then debug).

use crate::ops::{EntityOps, Op, OpQuery, Value};
use crate::schema::{Field, FieldIds, FilterKind, Schema};

use crate::index::store::columns::{NONE, NULL};
use crate::index::store::keys::{self, BadValue, Key, RawKey};
use crate::index::store::writes::WriteLog;
use crate::index::{FilterState, Index};

/// Bad-data reports of one kind beyond this many are logged at debug level.
const LOUD_REPORTS: u64 = 10;

macro_rules! report {
    ($count:expr, $($arg:tt)+) => {
        if $count <= LOUD_REPORTS {
            tracing::warn!($($arg)+);
        } else {
            tracing::debug!($($arg)+);
        }
    };
}

/// What one field name denotes: its filter field (position and kind) and/or sort field, and
/// the join (and target position) whose values it follows, if any.
#[derive(Copy, Clone, Debug)]
pub(in crate::index) struct Target {
    pub(in crate::index) filter: Option<(usize, FilterKind)>,
    pub(in crate::index) sort: Option<usize>,
    pub(in crate::index) joined: Option<(usize, usize)>,
}

/// Resolves op fields to [`Target`]s by their [`FieldId`]s (see [`FieldIds`]).
#[derive(Clone, Debug, Default)]
pub(in crate::index) struct FieldTable {
    ids: FieldIds,
    targets: Vec<Target>,
}

impl FieldTable {
    /// The table of `schema`'s filter and sort fields.
    pub(in crate::index) fn new(schema: &Schema) -> FieldTable {
        let ids = schema.field_ids();
        let targets = ids
            .iter()
            .map(|(id, field)| {
                let roles = ids.roles(id);
                let joined = schema.joins.iter().enumerate().find_map(|(j, join)| {
                    let t = join.targets.iter().position(|t| field == t)?;
                    Some((j, t))
                });
                Target {
                    filter: roles.filter.map(|f| (f, schema.filters[f].kind)),
                    sort: roles.sort,
                    joined,
                }
            })
            .collect();
        FieldTable { ids, targets }
    }

    pub(in crate::index) fn get(&self, field: &Field) -> Option<Target> {
        self.ids.id(field).map(|id| self.targets[id.index()])
    }
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Verb {
    Set,
    Remove,
    Add,
}

/// How many entities ahead [`Index::apply_batch`] prefetches the slot's column cells.
const PREFETCH_AHEAD: usize = 8;

impl Index {
    /// Applies a batch of entities in order, exactly as [`Index::apply`] on each would. While it
    /// applies one entity it has the CPU fetch the column cells of an entity a few places ahead:
    /// in a large index each slot's cells are cache misses, and this overlaps them.
    pub fn apply_batch(&mut self, batch: &[EntityOps]) {
        for (i, e) in batch.iter().enumerate() {
            if let Some(ahead) = batch.get(i + PREFETCH_AHEAD) {
                self.prefetch_slot(ahead.entity_id);
            }
            self.apply(e);
        }
    }

    /// Starts loading the column cells of the slot `entity_id` names, if any.
    fn prefetch_slot(&self, entity_id: i64) {
        let Ok(slot) = u32::try_from(entity_id) else {
            return;
        };
        for kc in self.key_cols.iter().flatten() {
            kc.col.prefetch(slot);
        }
        for col in &self.sort_cols {
            col.prefetch(slot);
        }
    }

    /// Applies one entity's ops in order, then makes the slot alive if `creates_slot`.
    ///
    /// An `entity_id` outside `0..=u32::MAX` cannot be a slot: the entity's slot ops and
    /// `creates_slot` are skipped and counted; its `queryOpSet`s (which address other slots) and
    /// `truncate`s (which address every slot) still apply.
    pub fn apply(&mut self, e: &EntityOps) {
        self.finish_load();
        self.settle();
        let slot = u32::try_from(e.entity_id).ok();
        let slot_op = |op: &Op| !matches!(op, Op::QueryOpSet { .. } | Op::Truncate { .. });
        if slot.is_none() && (e.creates_slot || e.ops.iter().any(slot_op)) {
            self.stats.skipped_ids += 1;
            report!(
                self.stats.skipped_ids,
                entity_id = e.entity_id,
                "entity id does not fit a slot (0..=u32::MAX); its ops are skipped"
            );
        }
        for op in &e.ops {
            match (op, slot) {
                (Op::QueryOpSet { query, ops }, _) => {
                    self.query_op_set(query.as_ref(), ops, e.entity_id);
                }
                (Op::Truncate { field }, _) => self.truncate(field.as_ref()),
                (_, Some(slot)) => self.slot_op(slot, op),
                (_, None) => {}
            }
        }
        if let (true, Some(slot)) = (e.creates_slot, slot) {
            self.state.alive.insert(slot);
            if self.pending.contains(slot) {
                self.resurrected.insert(slot);
            }
        }
    }

    fn slot_op(&mut self, slot: u32, op: &Op) {
        // One op logs a few dozen writes at most, so the log stays far below 2^31 writes (the
        // room its packed sequence numbers have), even across a `queryOpSet`'s many slots.
        if self.log.len() >= WriteLog::LIMIT {
            self.flush_log();
        }
        let (verb, field, value) = match op {
            Op::Set { field, value } => (Verb::Set, field, value),
            Op::Remove { field, value } => (Verb::Remove, field, value),
            Op::Add { field, value } => (Verb::Add, field, value),
            Op::Delete => {
                self.delete(slot);
                self.stats.applied_ops += 1;
                return;
            }
            Op::QueryOpSet { .. } | Op::Truncate { .. } => {
                self.stats.nested_query_op_sets += 1;
                report!(
                    self.stats.nested_query_op_sets,
                    slot,
                    "a queryOpSet or truncate nested in a queryOpSet is ignored"
                );
                return;
            }
        };
        let Some(at) = self.fields.get(field) else {
            self.stats.unknown_fields += 1;
            report!(
                self.stats.unknown_fields,
                field = &**field,
                slot,
                "op names a field the index does not have; skipped"
            );
            return;
        };
        if at.joined.is_some() {
            self.joined_write(field, slot);
            return;
        }
        let mut applied = false;
        if let Some((fi, kind)) = at.filter {
            match keys::filter_key(kind, value) {
                Err(BadValue) => self.bad_value(field, slot, value),
                Ok(raw) => {
                    applied = true;
                    match (kind, verb) {
                        (FilterKind::Multi, Verb::Remove) => self.multi_remove(fi, slot, raw),
                        (FilterKind::Multi, _) => self.multi_insert(fi, slot, raw),
                        (_, Verb::Remove) => self.single_remove(fi, slot, raw),
                        (_, _) => self.single_set(fi, slot, raw),
                    }
                }
            }
        }
        if let Some(si) = at.sort {
            match keys::sort_value(&self.state.schema.sorts[si], value) {
                Err(BadValue) => self.bad_value(field, slot, value),
                Ok(v) => {
                    applied = true;
                    if v.clamped {
                        self.stats.clamped_values += 1;
                        report!(self.stats.clamped_values, field = &**field, slot, value = %value, stored = v.value, "sort value out of range; clamped");
                    }
                    if verb == Verb::Remove {
                        if self.sort_cols[si].get(slot) == v.value {
                            self.sort_write(si, slot, 0);
                        }
                    } else {
                        self.sort_write(si, slot, v.value);
                    }
                }
            }
        }
        if applied {
            self.stats.applied_ops += 1;
        }
    }

    fn bad_value(&mut self, field: &str, slot: u32, value: &Value) {
        self.stats.bad_values += 1;
        report!(self.stats.bad_values, field, slot, value = %value, "value the field cannot hold; skipped");
    }

    /// The key a raw value has in filter `fi`, adding text to the dictionary.
    pub(in crate::index) fn key_of(&mut self, fi: usize, raw: &RawKey) -> Option<Key> {
        key_in(&mut self.state.filters[fi], raw)
    }

    /// The key a raw value already has in filter `fi` (no dictionary insert).
    fn existing_key(&self, fi: usize, raw: &RawKey) -> Option<Key> {
        match raw {
            RawKey::Null => None,
            RawKey::Int(i) => Some(Key::Int(*i)),
            RawKey::Str(s) => self.state.filters[fi].dict.get(s).map(Key::Str),
        }
    }

    fn single_set(&mut self, fi: usize, slot: u32, raw: RawKey) {
        let key = self.key_of(fi, &raw);
        if key.is_none() && raw != RawKey::Null {
            return; // dictionary id space exhausted
        }
        self.single_set_key(fi, slot, key);
    }

    /// Moves `slot` into `key` (`None`: NULL) of single/bool field `fi`.
    pub(in crate::index) fn single_set_key(&mut self, fi: usize, slot: u32, key: Option<Key>) {
        let kc = self.key_cols[fi]
            .as_mut()
            .expect("single/bool fields have a column");
        let new = key.map_or(NULL, |k| kc.table.intern(k));
        let old = kc.col.get(slot);
        if old == new {
            // The column and the bitmaps agree (with the log): the slot is already in the key.
            return;
        }
        match old {
            NONE => {}
            NULL => self.log.filter(fi, None, slot, false),
            c => {
                if let Some(k) = kc.table.key(c) {
                    self.log.filter(fi, Some(k), slot, false);
                }
            }
        }
        self.log.filter(fi, key, slot, true);
        kc.col.set(slot, new);
        if self.joins.is_link(fi) {
            self.follow_single(fi, slot, old, new);
        }
    }

    /// Takes `slot` out of whatever single/bool field `fi` holds for it ("no value").
    pub(in crate::index) fn single_clear(&mut self, fi: usize, slot: u32) {
        let kc = self.key_cols[fi]
            .as_mut()
            .expect("single/bool fields have a column");
        let old = kc.col.get(slot);
        match old {
            NONE => return,
            NULL => self.log.filter(fi, None, slot, false),
            c => {
                if let Some(k) = kc.table.key(c) {
                    self.log.filter(fi, Some(k), slot, false);
                }
            }
        }
        kc.col.set(slot, NONE);
        if self.joins.is_link(fi) {
            self.follow_single(fi, slot, old, NONE);
        }
    }

    fn single_remove(&mut self, fi: usize, slot: u32, raw: RawKey) {
        let kc = self.key_cols[fi]
            .as_mut()
            .expect("single/bool fields have a column");
        // The slot leaves its key only when that key is the removed value: compare the slot's
        // current key with the value directly (no lookups by value).
        let same = match kc.col.get(slot) {
            NONE => false,
            NULL => raw == RawKey::Null,
            code => match kc.table.key(code) {
                None => false,
                Some(k) => {
                    let dict = &self.state.filters[fi].dict;
                    match (&raw, k) {
                        (RawKey::Int(i), Key::Int(j)) => *i == j,
                        (RawKey::Str(s), Key::Str(id)) => dict.text(id).is_some_and(|t| t == s),
                        _ => false,
                    }
                }
            },
        };
        if same {
            self.single_clear(fi, slot);
        }
    }

    fn multi_insert(&mut self, fi: usize, slot: u32, raw: RawKey) {
        let key = match self.key_of(fi, &raw) {
            None if raw != RawKey::Null => return, // dictionary id space exhausted
            key => key,
        };
        self.multi_insert_key(fi, slot, key);
    }

    /// Adds `slot` to `key` (`None`: NULL) of multi-value field `fi`.
    pub(in crate::index) fn multi_insert_key(&mut self, fi: usize, slot: u32, key: Option<Key>) {
        if self.pending.contains(slot) {
            self.revive(slot, fi, key, true);
        }
        self.log.filter(fi, key, slot, true);
        if let Some(k) = key
            && self.joins.is_link(fi)
            && self.note_link(fi, slot, k, true)
        {
            self.follow_multi(fi, slot, k, true);
        }
    }

    fn multi_remove(&mut self, fi: usize, slot: u32, raw: RawKey) {
        let key = match self.existing_key(fi, &raw) {
            None if raw != RawKey::Null => return, // text never seen: in no bitmap
            key => key,
        };
        self.multi_remove_key(fi, slot, key);
    }

    /// Takes `slot` out of `key` (`None`: NULL) of multi-value field `fi`.
    pub(in crate::index) fn multi_remove_key(&mut self, fi: usize, slot: u32, key: Option<Key>) {
        if self.pending.contains(slot) {
            self.revive(slot, fi, key, false);
        }
        self.log.filter(fi, key, slot, false);
        if let Some(k) = key
            && self.joins.is_link(fi)
            && self.note_link(fi, slot, k, false)
        {
            self.follow_multi(fi, slot, k, false);
        }
    }

    /// Stores `new` as sort field `si`'s value for `slot`, flipping only the differing layers.
    pub(in crate::index) fn sort_write(&mut self, si: usize, slot: u32, new: u32) {
        let old = self.sort_cols[si].get(slot);
        if old == new {
            return;
        }
        self.log.sort_change(si, slot, old);
        self.sort_cols[si].set(slot, new);
    }

    /// Wipes `slot`: out of alive, every filter key, every sort layer; columns reset.
    /// The slot's own values go: alive, single/bool fields, sorts, and the multi-value fields
    /// that follow its own link; join-table multi values stay (see
    /// [`Schema::deleted_with_slot`](crate::schema::Schema::deleted_with_slot)).
    fn delete(&mut self, slot: u32) {
        self.state.alive.remove(slot);
        let mut has_multi = false;
        for (fi, kc) in self.key_cols.iter_mut().enumerate() {
            let Some(kc) = kc else {
                has_multi |= self.wiped[fi];
                continue;
            };
            match kc.col.get(slot) {
                NONE => {}
                NULL => self.log.filter(fi, None, slot, false),
                c => {
                    if let Some(k) = kc.table.key(c) {
                        self.log.filter(fi, Some(k), slot, false);
                    }
                }
            }
            kc.col.set(slot, NONE);
        }
        for (fi, links) in self.joins.links.iter_mut().enumerate() {
            if let Some(links) = links.as_mut().filter(|_| self.wiped[fi]) {
                links.remove_slot(slot);
            }
        }
        if has_multi {
            self.pending.insert(slot);
            self.revived.remove(&slot);
            // Dead again: no query can see its stale values.
            self.resurrected.remove(slot);
        }
        for si in 0..self.sort_cols.len() {
            self.sort_write(si, slot, 0);
        }
    }

    fn query_op_set(&mut self, query: Option<&OpQuery>, ops: &[Op], source_id: i64) {
        let Some(query) = query else {
            return;
        };
        let cannot_nest = |op: &&Op| matches!(op, Op::QueryOpSet { .. } | Op::Truncate { .. });
        let nested = ops.iter().filter(cannot_nest).count() as u64;
        if nested > 0 {
            self.stats.nested_query_op_sets += nested;
            report!(
                self.stats.nested_query_op_sets,
                source_id,
                query = %query,
                "a queryOpSet or truncate nested in a queryOpSet is ignored"
            );
        }
        let filter = match query.filter() {
            Ok(f) => f,
            Err(err) => {
                self.stats.bad_queries += 1;
                report!(self.stats.bad_queries, source_id, query = %query, error = %err, "queryOpSet query does not parse; skipped");
                return;
            }
        };
        // `link eq key` of a join: its targets' ops set the parent row (see `join`); any other
        // ops apply to the matches below.
        let joined;
        let ops: Vec<&Op> = match query.join_key() {
            Some((link, value))
                if self
                    .state
                    .schema
                    .filter(link)
                    .is_some_and(|fi| self.joins.is_link(fi)) =>
            {
                joined = self.join_query_op_set(link, value, ops, source_id);
                if joined.is_empty() {
                    return;
                }
                joined
            }
            _ => ops.iter().collect(),
        };
        self.settle_for_query();
        let matched = match crate::index::query::eval::evaluate(&self.state, filter, None) {
            Ok(m) => m,
            Err(err) => {
                self.stats.bad_queries += 1;
                report!(self.stats.bad_queries, source_id, query = %query, error = %err, "queryOpSet query cannot be evaluated; skipped");
                return;
            }
        };
        let slots: Vec<u32> = matched.iter().collect();
        for slot in slots {
            for op in &ops {
                if !cannot_nest(op) {
                    self.slot_op(slot, op);
                }
            }
        }
    }
}

/// The key of `raw` in a filter field (`None`: NULL, or a text its dictionary has no room for).
pub(in crate::index) fn key_in(fs: &mut FilterState, raw: &RawKey) -> Option<Key> {
    match raw {
        RawKey::Null => None,
        RawKey::Int(i) => Some(Key::Int(*i)),
        RawKey::Str(s) => keys::intern(&mut fs.dict, s).map(Key::Str),
    }
}

#[cfg(test)]
mod tests;
