//! The index: alive, filter and sort bitmaps over slots (entity ids as `u32`), the writer that
//! applies ops to them, immutable snapshots that readers query, and checkpoints.
//!
//! Guarantees:
//! * Ops of an entity apply in order, then `creates_slot` makes the slot alive. There is no alive
//!   gating: ops on a dead slot still change its bits, but every query result is ⊆ `alive`, and a
//!   delete wipes the slot so a re-created slot inherits nothing.
//! * A `truncate` (whatever its entity id) deletes every slot as `delete` would, or empties one
//!   field on every slot, live or not (see `truncate`); dictionaries stay.
//! * A single/bool filter field holds at most one key per slot: `set` moves the slot out of its
//!   previous key (the writer's per-slot columns know it, so old values need not be in the
//!   stream). Sort fields hold one `u32` per slot as bit layers.
//! * Readers never block the writer. [`Index::snapshot`] clones a handful of `Arc`s: every
//!   bitmap is a copy-on-write `bits` bitmap (a sorted list up to 4096 slots, chunked roaring
//!   above), each field's value map is sharded behind `Arc`s, so the first write after a
//!   snapshot copies only the touched list or chunk (≤ 128 KiB) of the touched bitmap, the
//!   touched map shard, and a few pointer vectors; never a whole field.
//! * The writer logs filter and sort bitmap writes and applies them in bulk, bitmap by bitmap
//!   (see `writes`): when the applied cursor advances ([`Index::set_applied`]), before its state
//!   is queried or merged into, when the log is full, or, on a copy, when a snapshot is taken
//!   in between. The difference is not observable.
//! * A deleted slot leaves multi-value bitmaps lazily: it is collected in a pending set and one
//!   cleanup pass runs before a snapshot is taken (or the writer's state is queried, or a bulk
//!   merge). Multi values a pending slot is given after its delete are recorded and put back
//!   after the cleanup. The difference is not observable.
//!
//! Crash windows: the index lives in memory; [`Snapshot::write_checkpoint`] replaces the
//! checkpoint file atomically (see [`checkpoint`]), so a crash leaves the old or the new one.

mod apply;
pub(crate) mod bits;
pub mod checkpoint;
mod columns;
mod dump;
mod eval;
pub mod filter;
pub(crate) mod keymap;
pub(crate) mod keys;
mod merge;
mod prefetch;
pub mod search;
mod slices;
mod truncate;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use roaring::RoaringBitmap;

use crate::WalKey;
use crate::schema::{FilterKind, Schema};

use apply::FieldTable;
use bits::Bits;
use columns::{Column, KeyColumn};
use keymap::KeyMap;
use keys::{Dict, Key};
use writes::WriteLog;

/// Per pending slot, the multi values (filter field, key or `None` for NULL) it was given after
/// its delete.
type Revived = HashMap<u32, Vec<(usize, Option<Key>)>>;

pub use checkpoint::CheckpointError;
pub use dump::{DumpKey, FieldDump, IndexState};
pub use filter::{CmpOp, Filter, FilterError, Literal, ParseError, ParseErrorKind};
pub use keys::{CanonicalValue, canonical_filter, canonical_sort};
pub use search::{CursorError, MAX_LIMIT, Order, Query, QueryError, QueryResult, Sort};

/// Counters of what the writer did and what bad data it skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Ops applied (a `queryOpSet`'s nested ops count once per matching slot).
    pub applied_ops: u64,
    /// Entities whose id does not fit a slot (`0..=u32::MAX`); their slot ops were skipped.
    pub skipped_ids: u64,
    /// Sort values clamped into the field's range.
    pub clamped_values: u64,
    /// Values a field cannot hold (e.g. `"maybe"` for a boolean), skipped.
    pub bad_values: u64,
    /// Ops naming a field the index does not have, skipped.
    pub unknown_fields: u64,
    /// `queryOpSet` queries that did not parse or named an unknown field, skipped.
    pub bad_queries: u64,
    /// `queryOpSet`s and `truncate`s nested inside a `queryOpSet`, ignored.
    pub nested_query_op_sets: u64,
}

impl IndexStats {
    /// Adds `o`'s counts to these.
    pub(crate) fn add(&mut self, o: &IndexStats) {
        self.applied_ops += o.applied_ops;
        self.skipped_ids += o.skipped_ids;
        self.clamped_values += o.clamped_values;
        self.bad_values += o.bad_values;
        self.unknown_fields += o.unknown_fields;
        self.bad_queries += o.bad_queries;
        self.nested_query_op_sets += o.nested_query_op_sets;
    }
}

/// One filter field's bitmaps.
#[derive(Clone, Default)]
pub(crate) struct FilterState {
    /// Key → slots.
    pub values: KeyMap,
    /// Slots whose value is NULL.
    pub null: Bits,
    /// The field's text dictionary.
    pub dict: Arc<Dict>,
}

/// Everything a snapshot holds: cheap to clone (see the module note).
#[derive(Clone)]
pub(crate) struct State {
    pub schema: Arc<Schema>,
    pub alive: Bits,
    /// Per filter field, in schema order.
    pub filters: Vec<FilterState>,
    /// Per sort field, in schema order: layer b holds the slots whose value has bit b set.
    pub sorts: Vec<Arc<Vec<Bits>>>,
    pub applied: WalKey,
}

impl State {
    fn new(schema: Arc<Schema>) -> State {
        State {
            alive: Bits::new(),
            filters: vec![FilterState::default(); schema.filters.len()],
            sorts: schema
                .sorts
                .iter()
                .map(|s| Arc::new(vec![Bits::new(); usize::from(s.bits)]))
                .collect(),
            applied: WalKey::ZERO,
            schema,
        }
    }

    /// Takes `gone` out of every multi-value field, then puts back the values `revived` gave
    /// some of those slots after their delete.
    fn clean_multi(&mut self, gone: &Bits, revived: &Revived) {
        for (fs, f) in self.filters.iter_mut().zip(&self.schema.filters) {
            if f.kind == FilterKind::Multi {
                fs.values.subtract_all(gone);
                fs.null.andnot_assign(gone);
            }
        }
        for (&slot, values) in revived {
            for &(fi, key) in values {
                let fs = &mut self.filters[fi];
                match key {
                    Some(k) => fs.values.insert(k, slot),
                    None => {
                        fs.null.insert(slot);
                    }
                }
            }
        }
    }
}

/// The writer's index: applies ops, hands out snapshots. One writer owns it.
pub struct Index {
    state: State,
    /// Per filter field: the slot → key column (`None` for multi-value fields).
    key_cols: Vec<Option<KeyColumn>>,
    /// Per sort field: the slot → value column.
    sort_cols: Vec<Column>,
    /// Op field name → filter/sort field.
    fields: FieldTable,
    /// Bitmap writes not yet applied (see [`writes`]).
    log: WriteLog,
    /// Deleted slots not yet taken out of multi-value bitmaps.
    pending: RoaringBitmap,
    /// Multi values given to pending slots since their delete, put back after the cleanup.
    revived: Revived,
    /// A settled copy of `state` (write log applied, pending slots cleaned) made by
    /// [`Index::snapshot`] while there was something to settle; the next write adopts it.
    cleaned: Mutex<Option<Arc<State>>>,
    stats: IndexStats,
}

/// A clone shares every bitmap with the original (copy-on-write), so it is cheap; the writer
/// columns are copied. Used to fork an index, e.g. to compare two ways of applying the same ops.
/// The clone starts settled: what the original has not applied yet (logged writes, the pending
/// cleanup) is applied to the state they share, as [`Index::snapshot`] does, and the original
/// adopts that state on its next write.
impl Clone for Index {
    fn clone(&self) -> Self {
        let settled = self.snapshot();
        Index {
            state: (*settled.state).clone(),
            key_cols: self.key_cols.clone(),
            sort_cols: self.sort_cols.clone(),
            fields: self.fields.clone(),
            log: self.log.emptied(),
            pending: RoaringBitmap::new(),
            revived: Revived::default(),
            cleaned: Mutex::new(None),
            stats: self.stats,
        }
    }
}

impl Index {
    /// An empty index over `schema`.
    pub fn new(schema: Arc<Schema>) -> Index {
        let key_cols = schema
            .filters
            .iter()
            .map(|f| (f.kind != FilterKind::Multi).then(KeyColumn::default))
            .collect();
        let sort_cols = vec![Column::default(); schema.sorts.len()];
        Index {
            fields: FieldTable::new(&schema),
            log: WriteLog::new(
                schema.filters.len(),
                schema.sorts.iter().map(|s| usize::from(s.bits)),
            ),
            state: State::new(schema),
            key_cols,
            sort_cols,
            pending: RoaringBitmap::new(),
            revived: Revived::default(),
            cleaned: Mutex::new(None),
            stats: IndexStats::default(),
        }
    }

    /// The index's fields.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.state.schema
    }

    /// The cursor of the last applied WAL record.
    pub fn applied(&self) -> WalKey {
        self.state.applied
    }

    /// Records that everything up to `key` is applied; snapshots and checkpoints carry it. Also
    /// applies the writer's logged bitmap writes, so the snapshot that follows is cheap.
    pub fn set_applied(&mut self, key: WalKey) {
        self.settle();
        self.flush_log();
        self.state.applied = key;
    }

    /// Counters of applied ops and skipped bad data.
    pub fn stats(&self) -> IndexStats {
        self.stats
    }

    /// Number of live slots.
    pub fn alive_count(&self) -> u64 {
        self.state.alive.len()
    }

    /// An immutable snapshot of the current state for readers: a handful of `Arc` clones (plus,
    /// on a copy, the logged writes and pending cleanup when there are any; none right after
    /// [`Index::set_applied`] unless slots were deleted).
    pub fn snapshot(&self) -> Snapshot {
        if self.pending.is_empty() && self.log.is_empty() {
            return Snapshot {
                state: Arc::new(self.state.clone()),
            };
        }
        let mut cleaned = self.cleaned.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = &*cleaned {
            return Snapshot { state: s.clone() };
        }
        let mut state = self.state.clone();
        self.log
            .clone()
            .apply_to(&mut state.filters, &mut state.sorts, &self.sort_cols);
        if !self.pending.is_empty() {
            state.clean_multi(&Bits::from_roaring(self.pending.clone()), &self.revived);
        }
        let state = Arc::new(state);
        *cleaned = Some(state.clone());
        Snapshot { state }
    }

    /// A canonical dump of everything observable, for comparing two indexes in tests.
    pub fn debug_state(&self) -> IndexState {
        self.snapshot().debug_state()
    }

    /// Adopts the cleaned state a snapshot computed, if any (called before every write).
    fn settle(&mut self) {
        let cleaned = self
            .cleaned
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = cleaned.take() {
            self.state = (*s).clone();
            self.pending.clear();
            self.revived.clear();
            self.log.clear();
        }
    }

    /// Applies the logged bitmap writes now.
    fn flush_log(&mut self) {
        self.log.apply_to(
            &mut self.state.filters,
            &mut self.state.sorts,
            &self.sort_cols,
        );
    }

    /// Runs the pending multi-value cleanup now.
    fn flush_pending(&mut self) {
        self.settle();
        self.flush_log();
        if self.pending.is_empty() {
            return;
        }
        let gone = Bits::from_roaring(std::mem::take(&mut self.pending));
        let revived = std::mem::take(&mut self.revived);
        self.state.clean_multi(&gone, &revived);
    }

    /// Records that a multi-value op on a pending slot gave it (`add`) or took away (`!add`) the
    /// value `key` of filter `fi`, so the cleanup, which takes the slot out of every multi-value
    /// bitmap, puts the values it has since its delete back.
    fn revive(&mut self, slot: u32, fi: usize, key: Option<Key>, add: bool) {
        let values = self.revived.entry(slot).or_default();
        values.retain(|&v| v != (fi, key));
        if add {
            values.push((fi, key));
        }
    }

    fn from_state(state: State) -> Index {
        let mut index = Index::new(state.schema.clone());
        index.state = state;
        index
    }
}

/// An immutable view of the index at one applied cursor. Cheap to clone; safe to share.
#[derive(Clone)]
pub struct Snapshot {
    state: Arc<State>,
}

impl Snapshot {
    /// The cursor of the last WAL record this snapshot reflects.
    pub fn applied(&self) -> WalKey {
        self.state.applied
    }

    /// Number of live slots.
    pub fn alive_count(&self) -> u64 {
        self.state.alive.len()
    }

    /// The index's fields.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.state.schema
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("applied", &self.state.applied)
            .field("alive", &self.state.alive.len())
            .field("pending_deletes", &self.pending.len())
            .field("logged_writes", &self.log.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("applied", &self.state.applied)
            .field("alive", &self.state.alive.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn snapshots_and_the_index_cross_threads() {
        assert_send_sync::<Snapshot>();
        assert_send_sync::<Index>();
    }
}
