//! The bulk accumulator of the dump path: per-thread bitmaps, merged with OR, then ORed into the
//! index once with [`Index::merge_bulk`](crate::index::Index::merge_bulk).
//!
//! It has insert-only semantics: `set`/`add` insert the slot under the value (filter) or set the
//! value's bits (sort), and `creates_slot` makes the slot alive. Text keys stay text per field
//! (threads cannot share dictionary ids); the index assigns ids at merge. `remove`, `delete`,
//! `queryOpSet` and `truncate` are not for this path: they are counted as `unsupported` and
//! ignored. Fan-out sources are applied through `Index::apply` after the dump, when the slots
//! they address exist.
//!
//! A dump gives each slot at most one value per single-value and sort field (one row per slot);
//! should an accumulator see two, the single-value key is resolved at merge (see
//! `merge_bulk`) and the sort value is the OR of both.
//!
//! No crash windows: accumulators live in memory and a crashed dump restarts from scratch.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::index::IndexStats;
use crate::index::keys::{self, BadValue, RawKey};
use crate::ops::{EntityOps, Op};
use crate::schema::Schema;

/// Counters of one accumulator (summed by `merge`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkStats {
    /// Entities added.
    pub entities: u64,
    /// `remove` / `delete` / `queryOpSet` / `truncate` ops ignored (not for the bulk path).
    pub unsupported: u64,
    /// Counters shared with the index (applied ops, bad ids, clamped and bad values, unknown
    /// fields).
    pub index: IndexStats,
}

/// One sort field's accumulated layers and the slots given a value.
#[derive(Clone, Debug, Default)]
pub(crate) struct BulkSort {
    pub layers: Vec<RoaringBitmap>,
    pub touched: RoaringBitmap,
}

/// What `Index::merge_bulk` consumes.
pub(crate) struct BulkParts {
    pub alive: RoaringBitmap,
    /// Per filter field: raw key (NULL included) → slots.
    pub filters: Vec<HashMap<RawKey, RoaringBitmap>>,
    pub sorts: Vec<BulkSort>,
    pub stats: IndexStats,
}

/// Insert-only bitmaps accumulated from dump rows (see the module note).
#[derive(Clone, Debug)]
pub struct BulkAccumulator {
    schema: Arc<Schema>,
    alive: RoaringBitmap,
    filters: Vec<HashMap<RawKey, RoaringBitmap>>,
    /// Per filter field, integer-keyed inserts not yet in `filters` (see [`Self::PENDING`]).
    pending: Vec<Vec<(i64, u32)>>,
    sorts: Vec<BulkSort>,
    /// Per sort field, `slot << 32 | value` not yet in its layers (buffered like `pending`:
    /// sorted by slot, a value's set bits append to each layer instead of inserting).
    sort_pending: Vec<Vec<u64>>,
    /// Slots made alive, not yet in `alive`.
    alive_pending: Vec<u32>,
    stats: BulkStats,
}

impl BulkAccumulator {
    /// Integer-keyed filter inserts buffered per field before they go into the bitmaps, sorted
    /// by key and slot: each key's bitmap is then reached once per run instead of once per row
    /// (with thousands of keys, each reach is a cache miss). 1M pairs: 16 MiB per field.
    pub const PENDING: usize = 1 << 20;

    /// An empty accumulator for `schema`.
    pub fn new(schema: Arc<Schema>) -> Self {
        BulkAccumulator {
            alive: RoaringBitmap::new(),
            filters: vec![HashMap::new(); schema.filters.len()],
            pending: vec![Vec::new(); schema.filters.len()],
            sorts: schema
                .sorts
                .iter()
                .map(|s| BulkSort {
                    layers: vec![RoaringBitmap::new(); usize::from(s.bits)],
                    touched: RoaringBitmap::new(),
                })
                .collect(),
            sort_pending: vec![Vec::new(); schema.sorts.len()],
            alive_pending: Vec::new(),
            stats: BulkStats::default(),
            schema,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> BulkStats {
        self.stats
    }

    /// Number of slots made alive so far.
    pub fn alive_count(&mut self) -> u64 {
        self.flush_alive();
        self.alive.len()
    }

    /// Adds one entity's `set`/`add` ops and `creates_slot`; other ops are counted and ignored.
    pub fn add(&mut self, e: &EntityOps) {
        self.stats.entities += 1;
        let Ok(slot) = u32::try_from(e.entity_id) else {
            self.stats.index.skipped_ids += 1;
            tracing::debug!(
                entity_id = e.entity_id,
                "entity id does not fit a slot; skipped"
            );
            return;
        };
        for op in &e.ops {
            let (field, value) = match op {
                Op::Set { field, value } | Op::Add { field, value } => (field, value),
                Op::Remove { .. } | Op::Delete | Op::QueryOpSet { .. } | Op::Truncate { .. } => {
                    self.stats.unsupported += 1;
                    continue;
                }
            };
            let at = self.schema.field(field);
            if at.is_unknown() {
                self.stats.index.unknown_fields += 1;
                tracing::debug!(field = &**field, slot, "unknown field; skipped");
                continue;
            }
            let mut applied = false;
            if let Some(fi) = at.filter {
                match keys::filter_key(self.schema.filters[fi].kind, value) {
                    Ok(RawKey::Int(k)) => {
                        applied = true;
                        self.pending[fi].push((k, slot));
                        if self.pending[fi].len() >= Self::PENDING {
                            self.flush_field(fi);
                        }
                    }
                    Ok(raw) => {
                        applied = true;
                        self.filters[fi].entry(raw).or_default().insert(slot);
                    }
                    Err(BadValue) => self.stats.index.bad_values += 1,
                }
            }
            if let Some(si) = at.sort {
                match keys::sort_value(&self.schema.sorts[si], value) {
                    Ok(v) => {
                        applied = true;
                        if v.clamped {
                            self.stats.index.clamped_values += 1;
                            tracing::debug!(field = &**field, slot, "sort value clamped");
                        }
                        self.sort_pending[si].push(u64::from(slot) << 32 | u64::from(v.value));
                        if self.sort_pending[si].len() >= Self::PENDING {
                            self.flush_sort(si);
                        }
                    }
                    Err(BadValue) => self.stats.index.bad_values += 1,
                }
            }
            if applied {
                self.stats.index.applied_ops += 1;
            }
        }
        if e.creates_slot {
            self.alive_pending.push(slot);
            if self.alive_pending.len() >= Self::PENDING {
                self.flush_alive();
            }
        }
    }

    /// Moves sort field `si`'s buffered values into its layers: each layer ORed with a bitmap
    /// built from the sorted slots whose value has its bit set.
    fn flush_sort(&mut self, si: usize) {
        let mut pending = std::mem::take(&mut self.sort_pending[si]);
        pending.sort_unstable();
        let sort = &mut self.sorts[si];
        sort.touched |= sorted_bitmap(pending.iter().map(|&p| (p >> 32) as u32));
        for (b, layer) in sort.layers.iter_mut().enumerate() {
            let slots = pending
                .iter()
                .filter(|&&p| p >> b & 1 == 1)
                .map(|&p| (p >> 32) as u32);
            *layer |= sorted_bitmap(slots);
        }
        pending.clear();
        self.sort_pending[si] = pending;
    }

    /// Moves the buffered alive slots into `alive`.
    fn flush_alive(&mut self) {
        self.alive_pending.sort_unstable();
        self.alive |= sorted_bitmap(self.alive_pending.iter().copied());
        self.alive_pending.clear();
    }

    /// Moves field `fi`'s buffered inserts into its bitmaps, key by key, slots ascending.
    fn flush_field(&mut self, fi: usize) {
        let mut pending = std::mem::take(&mut self.pending[fi]);
        pending.sort_unstable();
        let map = &mut self.filters[fi];
        for run in pending.chunk_by(|a, b| a.0 == b.0) {
            let slots = sorted_bitmap(run.iter().map(|&(_, slot)| slot));
            *map.entry(RawKey::Int(run[0].0)).or_default() |= slots;
        }
        pending.clear();
        self.pending[fi] = pending;
    }

    /// Moves every buffered insert into the bitmaps.
    fn flush(&mut self) {
        for fi in 0..self.pending.len() {
            if !self.pending[fi].is_empty() {
                self.flush_field(fi);
            }
        }
        for si in 0..self.sort_pending.len() {
            if !self.sort_pending[si].is_empty() {
                self.flush_sort(si);
            }
        }
        self.flush_alive();
    }

    /// The union of two accumulators of the same schema.
    pub fn merge(mut self, mut other: Self) -> Self {
        self.flush();
        other.flush();
        if other.alive.len() > self.alive.len() {
            std::mem::swap(&mut self, &mut other);
        }
        self.alive |= other.alive;
        for (mine, theirs) in self.filters.iter_mut().zip(other.filters) {
            for (k, bm) in theirs {
                match mine.get_mut(&k) {
                    Some(m) => *m |= bm,
                    None => {
                        mine.insert(k, bm);
                    }
                }
            }
        }
        for (mine, theirs) in self.sorts.iter_mut().zip(other.sorts) {
            mine.touched |= theirs.touched;
            for (a, b) in mine.layers.iter_mut().zip(theirs.layers) {
                *a |= b;
            }
        }
        let (a, b) = (&mut self.stats, other.stats);
        a.entities += b.entities;
        a.unsupported += b.unsupported;
        a.index.add(&b.index);
        self
    }

    pub(crate) fn into_parts(mut self) -> BulkParts {
        self.flush();
        BulkParts {
            alive: self.alive,
            filters: self.filters,
            sorts: self.sorts,
            stats: self.stats.index,
        }
    }
}

/// A bitmap of ascending slots (repeats allowed), built by appending: roaring's own `try_push`
/// finds a bitmap container's maximum by scanning it from the top, once per value.
fn sorted_bitmap(slots: impl Iterator<Item = u32>) -> RoaringBitmap {
    let mut last = None;
    let distinct = slots.filter(move |&s| last.replace(s) != Some(s));
    RoaringBitmap::from_sorted_iter(distinct).expect("ascending slots, repeats removed")
}

/// Accumulates `items` on rayon's pool: one accumulator per task (`fold`), merged with OR
/// (`reduce`).
pub fn accumulate_par<I>(schema: Arc<Schema>, items: I) -> BulkAccumulator
where
    I: IntoParallelIterator<Item = EntityOps>,
{
    items
        .into_par_iter()
        .fold(
            || BulkAccumulator::new(schema.clone()),
            |mut acc, e| {
                acc.add(&e);
                acc
            },
        )
        .reduce(
            || BulkAccumulator::new(schema.clone()),
            BulkAccumulator::merge,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::ops::Value;
    use crate::schema::FilterKind;

    fn schema() -> Arc<Schema> {
        Arc::new(
            Schema::from_pairs(
                &[
                    ("type", FilterKind::Single),
                    ("tags", FilterKind::Multi),
                    ("flag", FilterKind::Bool),
                ],
                &[("at", 8)],
            )
            .unwrap(),
        )
    }

    #[test]
    fn unsupported_ops_are_counted_and_ignored() {
        let mut acc = BulkAccumulator::new(schema());
        acc.add(&EntityOps::alive(
            1,
            vec![
                Op::set("type", "image"),
                Op::remove("type", "image"),
                Op::Delete,
                Op::QueryOpSet {
                    query: Some("type eq image".into()),
                    ops: vec![],
                },
                Op::set("nope", 1),
                Op::set("flag", "maybe"),
                Op::set("at", 300),
            ],
        ));
        acc.add(&EntityOps::alive(-1, vec![Op::set("type", "x")]));
        let s = acc.stats();
        assert_eq!(s.unsupported, 3);
        assert_eq!(s.index.unknown_fields, 1);
        assert_eq!(s.index.bad_values, 1);
        assert_eq!(s.index.clamped_values, 1);
        assert_eq!(s.index.skipped_ids, 1);
        assert_eq!(acc.alive_count(), 1);
    }

    #[test]
    fn merge_bulk_gives_set_semantics_over_existing_values() {
        let mut index = Index::new(schema());
        index.apply(&EntityOps::alive(
            1,
            vec![
                Op::set("type", "video"),
                Op::add("tags", 5),
                Op::set("at", 200),
                Op::set("flag", true),
            ],
        ));
        index.apply(&EntityOps::alive(2, vec![Op::set("type", Value::Null)]));
        let items = vec![
            EntityOps::alive(
                1,
                vec![
                    Op::set("type", "image"),
                    Op::add("tags", 6),
                    Op::set("at", 3),
                ],
            ),
            EntityOps::alive(2, vec![Op::set("type", "image")]),
            EntityOps::alive(3, vec![Op::set("flag", false), Op::set("at", 0)]),
        ];
        let acc = accumulate_par(schema(), items);
        index.merge_bulk(acc);
        let snap = index.snapshot();
        assert_eq!(snap.count(Some("type eq image")).unwrap(), 2);
        assert_eq!(snap.count(Some("type eq video")).unwrap(), 0);
        assert_eq!(snap.count(Some("type eq null")).unwrap(), 0);
        assert_eq!(snap.count(Some("tags in [5, 6]")).unwrap(), 1);
        assert_eq!(snap.count(Some("tags eq 5 AND tags eq 6")).unwrap(), 1);
        assert_eq!(snap.count(Some("at eq 3")).unwrap(), 1);
        assert_eq!(snap.count(Some("at gt 3")).unwrap(), 0);
        assert_eq!(snap.count(Some("flag eq true")).unwrap(), 1);
        // The writer's columns follow: a later set moves slot 1 out of "image" and 3's sort bits.
        index.apply(&EntityOps::new(
            1,
            vec![Op::set("type", "gif"), Op::set("at", 1)],
        ));
        let snap = index.snapshot();
        assert_eq!(snap.count(Some("type eq image")).unwrap(), 1);
        assert_eq!(snap.count(Some("at eq 1")).unwrap(), 1);
        assert_eq!(snap.count(Some("at eq 3")).unwrap(), 0);
        assert_eq!(index.stats().applied_ops, 5 + 6 + 2);
    }
}
