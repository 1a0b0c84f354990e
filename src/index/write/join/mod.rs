//! Joins: slots whose fields follow a parent table through a link field, as SQL's
//! `LEFT JOIN parent ON parent.key = child.link` says (DESIGN §2, "fan-out fields follow the
//! join").
//!
//! A [`Join`](crate::schema::Join) names a link filter field and its target fields. The index
//! keeps, per join, the parent rows it has learned: key (in the link field's key space) → one
//! [`Cell`] per target (the value as the target field files it; NULL where the parent has none).
//! Parent rows are learned from the ops themselves — a `queryOpSet` whose query is
//! `link eq key` sets the parent's cells instead of writing the matching slots — so an index fed
//! by trigger-made ops keeps the join too.
//!
//! Guarantees, after every op:
//! * **Single-value link.** A slot whose link holds key `k` has, in each target, the cell of
//!   parent `k`, or NULL when there is no parent `k` (or the parent's value is NULL); a slot
//!   whose link is NULL has NULL; a slot whose link holds nothing (never set, removed, the field
//!   truncated) holds nothing in the targets either.
//! * **Multi-value link.** Each target is a multi-value field holding the union of the non-NULL
//!   values of the parents whose keys the slot's link holds (nothing when none). NULL parent
//!   values, like missing parents, contribute nothing, so a parent DELETE is the same op as
//!   setting every target NULL. Per link field the writer keeps each slot's link keys exactly
//!   ([`LinkKeys`]), since the link's bitmaps keep a deleted slot's bits until a lazy cleanup.
//!   A parent change moves the linked slots with one bitmap union and one subtraction per
//!   changed target; of the slots with several links, those another parent gives the old value
//!   keep it; slots pending a cleanup, and targets that link further, go one by one.
//! * **Any order.** A parent change rewrites the targets of the slots linked to it; a change of a
//!   slot's link (a `set`/`add`/`remove`, whichever source or `queryOpSet` wrote it) rewrites
//!   that slot's targets from the parent rows. A target may itself be the link of another join
//!   (the writes cascade; the schema refuses cycles).
//! * **Targets have one writer.** An op that writes a join's target other than through its
//!   join's `link eq key` queries is skipped and counted (`joined_field_writes`).
//! * A parent row whose cells are all NULL is dropped: memory holds the parents that give a
//!   value. Rows live in shards behind `Arc`s, so a snapshot shares them and the first write
//!   after one copies a single shard.
//!
//! Crash windows: none of its own. The parent rows are part of the index's state: checkpoints
//! write them, and after a crash the ops the last checkpoint does not reflect are replayed from
//! the WAL like any others. The per-slot link keys are rebuilt from the link bitmaps on load.

mod links;
mod parent;

use std::collections::HashMap;
use std::sync::Arc;

use crate::filter::Literal;
use crate::ops::{Op, Value, literal_value};
use crate::schema::{FilterKind, Schema};

use crate::hash::KeyHash;
use crate::index::Index;
use crate::index::store::columns::{NONE, NULL};
use crate::index::store::keys::{self, BadValue, Key, RawKey};
use crate::index::store::size::{ARC, map_bytes, vec_bytes};
use crate::index::write::bulk::ParentRow;

/// A parent's value in one target, as the target field files it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cell {
    /// The filter key (`None`: NULL); unused when the target is only a sort field.
    pub key: Option<Key>,
    /// The sort value (0 for NULL); unused when the target is only a filter field.
    pub sort: u32,
}

impl Cell {
    /// NULL.
    pub(crate) const NULL: Cell = Cell { key: None, sort: 0 };
}

/// A parent row: one cell per target of its join.
pub(crate) type Row = Arc<[Cell]>;

/// Shards of the parent rows.
const SHARD_BITS: u32 = 12;

/// One join's parent rows, sharded for cheap copy-on-write (see the module note).
#[derive(Clone)]
pub(crate) struct Parents {
    shards: Arc<Vec<Arc<HashMap<Key, Row, KeyHash>>>>,
    len: usize,
}

impl Default for Parents {
    fn default() -> Self {
        Parents {
            shards: Arc::new(vec![Arc::default(); 1 << SHARD_BITS]),
            len: 0,
        }
    }
}

fn shard_of(k: &Key) -> usize {
    let z = k.word().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (z >> (64 - SHARD_BITS)) as usize
}

impl Parents {
    /// The row of parent `k`.
    pub(crate) fn get(&self, k: &Key) -> Option<&Row> {
        self.shards[shard_of(k)].get(k)
    }

    /// Sets parent `k`'s row; a row of NULL cells (or `None`) drops the parent.
    pub(crate) fn set(&mut self, k: Key, row: Option<Row>) {
        let shard = Arc::make_mut(
            Arc::make_mut(&mut self.shards)
                .get_mut(shard_of(&k))
                .expect("shard"),
        );
        let before = shard.len();
        match row.filter(|r| r.iter().any(|c| *c != Cell::NULL)) {
            Some(r) => {
                shard.insert(k, r);
            }
            None => {
                shard.remove(&k);
            }
        }
        self.len = self.len + shard.len() - before;
    }

    /// Number of parents with a value.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes of the parent rows and their tables.
    pub(crate) fn heap_bytes(&self) -> u64 {
        let tables: u64 = self
            .shards
            .iter()
            .map(|s| ARC + map_bytes::<Key, Row>(s.capacity()))
            .sum();
        let rows: u64 = self
            .iter()
            .map(|(_, r)| ARC + vec_bytes::<Cell>(r.len()))
            .sum();
        vec_bytes::<Arc<HashMap<Key, Row, KeyHash>>>(self.shards.len()) + tables + rows
    }

    /// Every parent, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &Row)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// Sets target `t` NULL in every row (a TRUNCATE of the parent table, one target at a time).
    fn clear_target(&mut self, t: usize) {
        let keys: Vec<(Key, Row)> = self
            .iter()
            .filter(|(_, r)| r[t] != Cell::NULL)
            .map(|(k, r)| (*k, r.clone()))
            .collect();
        for (k, row) in keys {
            let mut cells = row.to_vec();
            cells[t] = Cell::NULL;
            self.set(k, Some(cells.into()));
        }
    }
}

/// How the writer reaches one target of a join.
#[derive(Copy, Clone, Debug)]
pub(crate) struct TargetSpec {
    /// The filter field and its kind.
    pub filter: Option<(usize, FilterKind)>,
    /// The sort field.
    pub sort: Option<usize>,
}

impl TargetSpec {
    /// A multi-value target holds a set of cells (the union over the slot's parents).
    fn multi(&self) -> Option<usize> {
        match self.filter {
            Some((fi, FilterKind::Multi)) => Some(fi),
            _ => None,
        }
    }
}

/// One join, resolved against the schema.
#[derive(Clone, Debug)]
pub(crate) struct JoinSpec {
    /// The link filter field.
    pub link: usize,
    /// Whether the link is multi-value.
    pub link_multi: bool,
    /// The targets, in the join's order.
    pub targets: Vec<TargetSpec>,
}

pub(crate) use links::LinkKeys;

/// The writer's join bookkeeping (the parent rows themselves live in the state).
#[derive(Clone, Debug, Default)]
pub(crate) struct Joins {
    pub specs: Vec<JoinSpec>,
    /// Per filter field: the joins it is the link of (empty for most fields).
    pub by_link: Vec<Vec<usize>>,
    /// Per filter field: for a multi-value link, each slot's link keys.
    pub links: Vec<Option<LinkKeys>>,
}

impl Joins {
    /// The joins of `schema`, resolved (the schema has checked them).
    pub(crate) fn new(schema: &Schema) -> Joins {
        let mut by_link = vec![Vec::new(); schema.filters.len()];
        let mut links: Vec<Option<LinkKeys>> = vec![None; schema.filters.len()];
        let mut specs = Vec::with_capacity(schema.joins.len());
        for (j, join) in schema.joins.iter().enumerate() {
            let link = schema
                .filter(&join.link)
                .expect("a join's link is a filter field");
            let link_multi = schema.filters[link].kind == FilterKind::Multi;
            by_link[link].push(j);
            if link_multi {
                links[link].get_or_insert_with(LinkKeys::default);
            }
            let targets = join
                .targets
                .iter()
                .map(|t| {
                    let at = schema.field(t);
                    TargetSpec {
                        filter: at.filter.map(|fi| (fi, schema.filters[fi].kind)),
                        sort: at.sort,
                    }
                })
                .collect();
            specs.push(JoinSpec {
                link,
                link_multi,
                targets,
            });
        }
        Joins {
            specs,
            by_link,
            links,
        }
    }

    /// Whether filter field `fi` links a join.
    #[inline]
    pub(crate) fn is_link(&self, fi: usize) -> bool {
        self.by_link.get(fi).is_some_and(|j| !j.is_empty())
    }
}

/// What a single-value link holds for one slot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// No value at all: the targets hold nothing.
    Absent,
    /// NULL: no parent, so the targets are NULL.
    Null,
    /// A parent key.
    Key(Key),
}

impl Index {
    /// The link state a single-value link column code stands for.
    fn link_of_code(&self, fi: usize, code: u32) -> Link {
        match code {
            NONE => Link::Absent,
            NULL => Link::Null,
            c => self.key_cols[fi]
                .as_ref()
                .and_then(|kc| kc.table.key(c))
                .map_or(Link::Absent, Link::Key),
        }
    }

    /// A single-value link of `slot` moved from code `old` to code `new`: its joins' targets
    /// follow.
    pub(in crate::index) fn follow_single(&mut self, fi: usize, slot: u32, old: u32, new: u32) {
        let (old, new) = (self.link_of_code(fi, old), self.link_of_code(fi, new));
        for n in 0..self.joins.by_link[fi].len() {
            let j = self.joins.by_link[fi][n];
            let parents = &self.state.joins[j];
            let row = |l: Link| match l {
                Link::Key(k) => parents.get(&k).cloned(),
                _ => None,
            };
            let (old_row, new_row) = (row(old), row(new));
            for t in 0..self.joins.specs[j].targets.len() {
                let spec = self.joins.specs[j].targets[t];
                let cell = |l: Link, r: &Option<Row>| match l {
                    Link::Absent => None,
                    _ => Some(r.as_ref().map_or(Cell::NULL, |r| r[t])),
                };
                let (was, now) = (cell(old, &old_row), cell(new, &new_row));
                self.put_cell(spec, slot, was, now);
            }
        }
    }

    /// Gives `slot` cell `now` (`None`: nothing) in a target of a single-value link, where it
    /// had `was`.
    fn put_cell(&mut self, spec: TargetSpec, slot: u32, was: Option<Cell>, now: Option<Cell>) {
        if let Some(fi) = spec.multi() {
            // A set of at most one value: the parent's, unless NULL.
            let (a, b) = (was.and_then(|c| c.key), now.and_then(|c| c.key));
            if a != b {
                if let Some(k) = a {
                    self.multi_remove_key(fi, slot, Some(k));
                }
                if let Some(k) = b {
                    self.multi_insert_key(fi, slot, Some(k));
                }
            }
        } else if let Some((fi, _)) = spec.filter {
            match now {
                None => self.single_clear(fi, slot),
                Some(c) => self.single_set_key(fi, slot, c.key),
            }
        }
        if let Some(si) = spec.sort {
            self.sort_write(si, slot, now.map_or(0, |c| c.sort));
        }
    }

    /// `slot`'s multi-value link `fi` gained (`added`) or lost key `k`: the union its joins'
    /// targets hold follows. The slot's link keys are already updated.
    pub(in crate::index) fn follow_multi(&mut self, fi: usize, slot: u32, k: Key, added: bool) {
        for n in 0..self.joins.by_link[fi].len() {
            let j = self.joins.by_link[fi][n];
            let Some(row) = self.state.joins[j].get(&k).cloned() else {
                continue; // no parent: contributes nothing
            };
            for t in 0..row.len() {
                let Some(v) = row[t].key else { continue };
                let Some(tfi) = self.joins.specs[j].targets[t].multi() else {
                    continue;
                };
                if added {
                    self.multi_insert_key(tfi, slot, Some(v));
                } else if !self.linked_value(j, slot, t, v, k) {
                    self.multi_remove_key(tfi, slot, Some(v));
                }
            }
        }
    }

    /// Whether a parent of join `j` other than `except` that `slot` links to has `v` in target
    /// `t`.
    fn linked_value(&self, j: usize, slot: u32, t: usize, v: Key, except: Key) -> bool {
        let fi = self.joins.specs[j].link;
        let Some(links) = self.joins.links[fi].as_ref() else {
            return false;
        };
        let parents = &self.state.joins[j];
        links
            .keys(slot)
            .filter(|&k| k != except)
            .any(|k| parents.get(&k).is_some_and(|r| r[t].key == Some(v)))
    }

    /// Records that `slot`'s multi-value link `fi` now holds (or no longer holds) `k`; `true`
    /// when that changed something.
    pub(in crate::index) fn note_link(
        &mut self,
        fi: usize,
        slot: u32,
        k: Key,
        holds: bool,
    ) -> bool {
        self.joins.links[fi]
            .as_mut()
            .is_some_and(|links| links.note(slot, k, holds))
    }

    /// A `queryOpSet` whose query is `link eq key` for a join link: the ops on that join's
    /// targets set parent `key`'s cells, and the linked slots follow. Returns the ops it did not
    /// take (other fields), which apply to the query's matches as usual.
    pub(in crate::index) fn join_query_op_set<'o>(
        &mut self,
        link: &str,
        value: &Literal,
        ops: &'o [Op],
        source_id: i64,
    ) -> Vec<&'o Op> {
        let Some(fi) = self.state.schema.filter(link) else {
            return ops.iter().collect();
        };
        let mut rest = Vec::new();
        // Per join on this link: the ops for its targets, in order.
        let mut mine: Vec<(usize, usize, &Op)> = Vec::new();
        for op in ops {
            let joined = op
                .field()
                .and_then(|f| self.fields.get(f))
                .and_then(|at| at.joined)
                .filter(|&(j, _)| self.joins.specs[j].link == fi);
            match (joined, op) {
                (Some((j, t)), Op::Set { .. } | Op::Add { .. } | Op::Remove { .. }) => {
                    mine.push((j, t, op));
                }
                _ => rest.push(op),
            }
        }
        if mine.is_empty() {
            return rest;
        }
        let kind = self.state.schema.filters[fi].kind;
        let key = match keys::filter_key(kind, &literal_value(value)) {
            Ok(RawKey::Null) | Err(BadValue) => None,
            Ok(raw) => self.key_of(fi, &raw),
        };
        let Some(key) = key else {
            self.stats.bad_queries += 1;
            tracing::warn!(source_id, link, value = %value, "a join query's key is not a value of its link field; skipped");
            return rest;
        };
        let mut joins: Vec<usize> = mine.iter().map(|&(j, _, _)| j).collect();
        joins.dedup();
        for j in joins {
            let ops: Vec<(usize, &Op)> = mine
                .iter()
                .filter(|m| m.0 == j)
                .map(|&(_, t, op)| (t, op))
                .collect();
            self.set_parent(j, key, &ops);
        }
        rest
    }

    /// The cell `value` makes in a target; `None` (counted) when the field cannot hold it.
    fn cell_of(&mut self, spec: TargetSpec, field: &str, value: &Value) -> Option<Cell> {
        let mut cell = Cell::NULL;
        if let Some((fi, kind)) = spec.filter {
            match keys::filter_key(kind, value) {
                Ok(raw) => {
                    cell.key = self.key_of(fi, &raw);
                    if cell.key.is_none() && raw != RawKey::Null {
                        return None; // dictionary id space exhausted
                    }
                }
                Err(BadValue) => {
                    self.stats.bad_values += 1;
                    tracing::warn!(field, value = %value, "a joined row's value the field cannot hold; skipped");
                    return None;
                }
            }
        }
        if let Some(si) = spec.sort {
            match keys::sort_value(&self.state.schema.sorts[si], value) {
                Ok(v) => {
                    if v.clamped {
                        self.stats.clamped_values += 1;
                    }
                    cell.sort = v.value;
                }
                Err(BadValue) => {
                    self.stats.bad_values += 1;
                    tracing::warn!(field, value = %value, "a joined row's value the field cannot hold; skipped");
                    return None;
                }
            }
        }
        Some(cell)
    }

    /// An op wrote joined target `at` other than through its join: skipped and counted.
    pub(in crate::index) fn joined_write(&mut self, field: &str, slot: u32) {
        self.stats.joined_field_writes += 1;
        let n = self.stats.joined_field_writes;
        if n <= 10 {
            tracing::warn!(
                field,
                slot,
                "an op writes a field that follows a join; skipped (the field takes its values from the joined rows)"
            );
        }
    }

    /// A `truncate` of joined target `(j, t)`: the parent table was emptied, so every parent's
    /// cell goes NULL and every slot that held a value in the target holds NULL (a multi-value
    /// target: nothing).
    pub(in crate::index) fn truncate_target(&mut self, j: usize, t: usize) {
        self.state.joins[j].clear_target(t);
        let spec = self.joins.specs[j].targets[t];
        if let Some(fi) = spec.multi() {
            self.empty_filter(fi);
        } else if let Some((fi, _)) = spec.filter {
            self.settle_for_query();
            let fs = &self.state.filters[fi];
            let mut slots: Vec<u32> = Vec::new();
            for (_, bits) in fs.values.iter() {
                slots.extend(bits.iter());
            }
            for slot in slots {
                self.single_set_key(fi, slot, None);
            }
        }
        if let Some(si) = spec.sort {
            self.truncate_sort(si);
        }
    }

    /// Empties filter field `fi` on every slot, and what follows it through joins.
    pub(in crate::index) fn empty_filter(&mut self, fi: usize) {
        self.truncate_filter(fi);
        if self.joins.is_link(fi) {
            self.truncate_links(fi);
        }
    }

    /// Link field `fi` was emptied on every slot: its joins' targets hold nothing anywhere.
    fn truncate_links(&mut self, fi: usize) {
        if let Some(links) = self.joins.links[fi].as_mut() {
            links.clear();
        }
        for n in 0..self.joins.by_link[fi].len() {
            let j = self.joins.by_link[fi][n];
            for t in 0..self.joins.specs[j].targets.len() {
                let spec = self.joins.specs[j].targets[t];
                if let Some((tfi, _)) = spec.filter {
                    self.empty_filter(tfi);
                }
                if let Some(si) = spec.sort {
                    self.truncate_sort(si);
                }
            }
        }
    }

    /// Loads the parent rows a dump saw (the dump has given the linked slots their values).
    pub(in crate::index) fn load_parents(&mut self, rows: Vec<ParentRow>) {
        for (j, key, values) in rows {
            let link = self.joins.specs[j].link;
            let kind = self.state.schema.filters[link].kind;
            let key = match keys::filter_key(kind, &key) {
                Ok(RawKey::Null) | Err(BadValue) => None,
                Ok(raw) => self.key_of(link, &raw),
            };
            let Some(key) = key else {
                self.stats.bad_queries += 1;
                continue;
            };
            let mut row = vec![Cell::NULL; self.joins.specs[j].targets.len()];
            for (t, value) in values {
                let spec = self.joins.specs[j].targets[t];
                let field = self.state.schema.joins[j].targets[t].clone();
                if let Some(cell) = self.cell_of(spec, &field, &value) {
                    row[t] = cell;
                }
            }
            self.state.joins[j].set(key, Some(row.into()));
        }
    }

    /// Completes the joins after a dump: the multi-value links' per-slot keys, and NULL in the
    /// targets of every slot whose single-value link holds NULL or a key no parent row has (the
    /// dump gave values only to the slots of the parents it saw).
    pub fn finish_joins(&mut self) {
        self.finish_load();
        self.rebuild_links();
        let order = self.state.schema.join_order().unwrap_or_default();
        for j in order {
            if self.joins.specs[j].link_multi {
                continue;
            }
            self.settle_for_query();
            let fs = &self.state.filters[self.joins.specs[j].link];
            let linked = crate::index::query::eval::union(
                std::iter::once(&fs.null).chain(fs.values.iter().map(|(_, b)| b)),
            );
            for t in 0..self.joins.specs[j].targets.len() {
                let Some((tfi, kind)) = self.joins.specs[j].targets[t].filter else {
                    continue; // a sort field's NULL is 0: nothing to give
                };
                if kind == FilterKind::Multi {
                    continue; // NULL contributes nothing to a union
                }
                self.settle_for_query();
                let tfs = &self.state.filters[tfi];
                let has = crate::index::query::eval::union(
                    std::iter::once(&tfs.null).chain(tfs.values.iter().map(|(_, b)| b)),
                );
                for slot in linked.andnot(&has).iter() {
                    self.single_set_key(tfi, slot, None);
                }
            }
        }
    }

    /// Rebuilds every multi-value link's per-slot keys from its bitmaps (after a load or a bulk
    /// merge; the state has no pending deleted slots then).
    pub(in crate::index) fn rebuild_links(&mut self) {
        for fi in 0..self.joins.links.len() {
            if self.joins.links[fi].is_none() {
                continue;
            }
            self.joins.links[fi] = Some(LinkKeys::from_bitmaps(&self.state.filters[fi].values));
        }
    }
}

#[cfg(test)]
mod tests;
