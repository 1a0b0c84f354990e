//! The index: alive, filter and sort bitmaps over slots (entity ids as `u32`), the writer that
//! applies ops to them, immutable snapshots that readers query, and checkpoints.
//!
//! Guarantees:
//! * Ops of an entity apply in order, then `creates_slot` makes the slot alive. There is no alive
//!   gating: ops on a dead slot still change its bits, but every query result is ⊆ `alive`, and a
//!   delete wipes the slot's own values so a re-created slot inherits none of them. The
//!   multi-value fields that join tables feed are not the entity's: a delete leaves them, as
//!   SQL leaves the join rows, so a row re-inserted under the same id joins them again (see
//!   [`Schema::deleted_with_slot`]; a foreign key with `ON DELETE CASCADE` sends their removal).
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
//! * A deleted slot leaves the multi-value bitmaps a delete empties lazily. Finding a slot's multi values means
//!   scanning every key of the field, so deleted slots are collected in a pending set and cleaned
//!   out in one pass, which runs only when it must: when a pending slot is made alive again
//!   (then only that slot's values go; before the next snapshot or writer query), before a bulk
//!   merge or a field truncate, and when the pending set passes [`Index::FULL_CLEANUP`] slots or
//!   1/64 of the live ones. Meanwhile a dead pending slot's stale bits stay in the bitmaps, where
//!   no query sees them (every result is ⊆ alive); snapshots carry the pending set, and the dump
//!   and checkpoints are taken from the cleaned view. Multi values a pending slot is given after
//!   its delete are recorded and put back by the cleanup. The difference is not observable.
//!
//! Crash windows: the index lives in memory; [`Snapshot::write_checkpoint`] replaces the
//! checkpoint file atomically (see [`checkpoint`]), so a crash leaves the old or the new one.

pub mod checkpoint;
mod dump;
pub mod huge_pages;
mod memory;
pub mod query;
pub(crate) mod store;
pub mod write;

/// The page size of the writer's columns, which a dump's shared columns use too (the index takes
/// their pages over whole).
pub(crate) use store::columns::{PAGE, PAGE_BITS};
/// The dump path's accumulator (see [`write::bulk`]).
pub use write::bulk;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use roaring::RoaringBitmap;

use crate::WalKey;
use crate::schema::{FilterKind, Schema};
use crate::status::Counter;

use store::bits::Bits;
use store::columns::{Column, KeyColumn};
use store::keymap::KeyMap;
use store::keys::{Dict, Key};
use store::writes::WriteLog;
use write::apply::FieldTable;

/// Per pending slot, the multi values (filter field, key or `None` for NULL) it was given after
/// its delete.
type Revived = HashMap<u32, Vec<(usize, Option<Key>)>>;

pub use crate::filter::{CmpOp, Filter, FilterError, Literal, ParseError, ParseErrorKind};
pub use checkpoint::CheckpointError;
pub use dump::{DumpKey, FieldDump, IndexState, ParentsDump};
pub use memory::{FieldMemory, MemoryReport};
pub use query::search::{CursorError, MAX_LIMIT, Order, Query, QueryError, QueryResult, Sort};
pub use store::keys::{CanonicalValue, canonical_filter, canonical_sort};

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
    /// Ops that wrote a field which follows a join other than through its join, skipped.
    pub joined_field_writes: u64,
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
        self.joined_field_writes += o.joined_field_writes;
    }

    /// The bad-data counters as the status table names them (`applied_ops` is counted by the
    /// apply loop as ops handed over).
    pub fn counts(&self) -> [(Counter, u64); 7] {
        [
            (Counter::SkippedIds, self.skipped_ids),
            (Counter::ClampedValues, self.clamped_values),
            (Counter::BadValues, self.bad_values),
            (Counter::UnknownFields, self.unknown_fields),
            (Counter::BadQueries, self.bad_queries),
            (Counter::NestedQueryOpSets, self.nested_query_op_sets),
            (Counter::JoinedFieldWrites, self.joined_field_writes),
        ]
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
    /// Per join, in schema order: the parent rows (see `join`).
    pub joins: Vec<write::join::Parents>,
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
            joins: vec![write::join::Parents::default(); schema.joins.len()],
            applied: WalKey::ZERO,
            schema,
        }
    }

    /// Takes `gone` out of every multi-value field a delete empties (see
    /// [`Schema::deleted_with_slot`]), then puts back the values `revived` gave some of those
    /// slots after their delete.
    fn clean_multi(&mut self, gone: &Bits, revived: &Revived) {
        let wiped = self.schema.deleted_with_slot();
        for ((fs, f), wiped) in self.filters.iter_mut().zip(&self.schema.filters).zip(wiped) {
            if f.kind == FilterKind::Multi && wiped {
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
    /// Which fields link or follow joins, and each multi-value link's keys per slot.
    joins: write::join::Joins,
    /// Bitmap writes not yet applied (see [`writes`]).
    log: WriteLog,
    /// Deleted slots not yet taken out of multi-value bitmaps.
    pending: RoaringBitmap,
    /// Multi values given to pending slots since their delete, put back after the cleanup.
    revived: Revived,
    /// Pending slots made alive again: cleaned before anyone looks.
    resurrected: RoaringBitmap,
    /// A settled copy of `state` (write log applied, pending slots cleaned) made by
    /// [`Index::snapshot`] while there was something to settle; the next write adopts it.
    cleaned: Mutex<Option<Arc<State>>>,
    stats: IndexStats,
    /// Per filter field: whether a `delete` takes the slot out of it
    /// ([`Schema::deleted_with_slot`]).
    wiped: Arc<[bool]>,
    /// The sort columns and link keys are still to be rebuilt ([`Index::finish_load`]).
    unfinished: bool,
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
            joins: self.joins.clone(),
            log: self.log.emptied(),
            pending: settled
                .stale
                .as_ref()
                .map_or_else(RoaringBitmap::new, |s| s.slots.iter().collect()),
            revived: settled
                .stale
                .as_ref()
                .map_or_else(Revived::default, |s| s.revived.clone()),
            resurrected: RoaringBitmap::new(),
            cleaned: Mutex::new(None),
            stats: self.stats,
            wiped: Arc::clone(&self.wiped),
            unfinished: self.unfinished,
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
        let schema_wiped = schema.deleted_with_slot();
        Index {
            fields: FieldTable::new(&schema),
            joins: write::join::Joins::new(&schema),
            log: WriteLog::new(
                schema.filters.len(),
                schema.sorts.iter().map(|s| usize::from(s.bits)),
            ),
            state: State::new(schema),
            key_cols,
            sort_cols,
            pending: RoaringBitmap::new(),
            revived: Revived::default(),
            resurrected: RoaringBitmap::new(),
            cleaned: Mutex::new(None),
            stats: IndexStats::default(),
            wiped: schema_wiped.into(),
            unfinished: false,
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
        if self.pending.len() > Self::FULL_CLEANUP.max(self.state.alive.len() / 64) {
            self.flush_pending();
        }
        self.state.applied = key;
    }

    /// Pending deleted slots (see the module note) beyond which the cleanup runs by itself,
    /// when they are also more than 1/64 of the live slots.
    pub const FULL_CLEANUP: u64 = 1 << 16;

    /// Counters of applied ops and skipped bad data.
    pub fn stats(&self) -> IndexStats {
        self.stats
    }

    /// Number of live slots.
    pub fn alive_count(&self) -> u64 {
        self.state.alive.len()
    }

    /// An immutable snapshot of the current state for readers: a handful of `Arc` clones and a
    /// copy of the pending deleted slots (plus, on a copy, the logged writes and the cleanup of
    /// revived slots when there are any; none right after [`Index::set_applied`] unless a
    /// deleted slot was made alive again).
    pub fn snapshot(&self) -> Snapshot {
        if self.resurrected.is_empty() && self.log.is_empty() {
            return Snapshot {
                state: Arc::new(self.state.clone()),
                stale: self.stale(&RoaringBitmap::new()),
            };
        }
        let mut cleaned = self.cleaned.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = &*cleaned {
            return Snapshot {
                state: s.clone(),
                stale: self.stale(&self.resurrected),
            };
        }
        let mut state = self.state.clone();
        self.log
            .clone()
            .apply_to(&mut state.filters, &mut state.sorts, &self.sort_cols);
        if !self.resurrected.is_empty() {
            let revived = self
                .revived
                .iter()
                .filter(|(slot, _)| self.resurrected.contains(**slot))
                .map(|(slot, v)| (*slot, v.clone()))
                .collect();
            state.clean_multi(&Bits::from_roaring(self.resurrected.clone()), &revived);
        }
        let state = Arc::new(state);
        *cleaned = Some(state.clone());
        Snapshot {
            state,
            stale: self.stale(&self.resurrected),
        }
    }

    /// The pending slots other than `cleaned`, with their revived values, for a snapshot.
    fn stale(&self, cleaned: &RoaringBitmap) -> Option<Arc<Stale>> {
        let slots = &self.pending - cleaned;
        if slots.is_empty() {
            return None;
        }
        let revived = self
            .revived
            .iter()
            .filter(|(slot, _)| slots.contains(**slot))
            .map(|(slot, v)| (*slot, v.clone()))
            .collect();
        Some(Arc::new(Stale {
            slots: Bits::from_roaring(slots),
            revived,
        }))
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
            self.pending -= &self.resurrected;
            let resurrected = std::mem::take(&mut self.resurrected);
            self.revived.retain(|slot, _| !resurrected.contains(*slot));
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

    /// Runs the whole pending multi-value cleanup now.
    fn flush_pending(&mut self) {
        self.settle();
        self.flush_log();
        self.resurrected.clear();
        if self.pending.is_empty() {
            return;
        }
        let gone = Bits::from_roaring(std::mem::take(&mut self.pending));
        let revived = std::mem::take(&mut self.revived);
        self.state.clean_multi(&gone, &revived);
    }

    /// Applies the logged writes and cleans the pending slots that were made alive again, so
    /// the writer's state is what queries must see (dead pending slots are never matched).
    fn settle_for_query(&mut self) {
        self.settle();
        self.flush_log();
        if self.resurrected.is_empty() {
            return;
        }
        let slots = std::mem::take(&mut self.resurrected);
        let mut revived = Revived::default();
        for slot in &slots {
            if let Some(v) = self.revived.remove(&slot) {
                revived.insert(slot, v);
            }
        }
        self.pending -= &slots;
        self.state.clean_multi(&Bits::from_roaring(slots), &revived);
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

    /// The writer around a loaded state; the caller rebuilds the per-slot columns and link keys.
    fn from_state(state: State) -> Index {
        let mut index = Index::new(state.schema.clone());
        index.state = state;
        index
    }
}

/// Deleted slots whose multi-value bits a snapshot still holds (dead, so no query sees them),
/// with the multi values some of them were given after their delete.
pub(crate) struct Stale {
    slots: Bits,
    revived: Revived,
}

/// An immutable view of the index at one applied cursor. Cheap to clone; safe to share.
#[derive(Clone)]
pub struct Snapshot {
    state: Arc<State>,
    /// Pending deleted slots (see the module note); `None` when there are none.
    stale: Option<Arc<Stale>>,
}

impl Snapshot {
    /// The state with the pending cleanup done, for views that list bitmaps whole (the dump,
    /// checkpoints). Costs a pass over the multi-value fields when slots are pending.
    fn cleaned(&self) -> Cow<'_, State> {
        match &self.stale {
            None => Cow::Borrowed(&*self.state),
            Some(stale) => {
                let mut state = (*self.state).clone();
                state.clean_multi(&stale.slots, &stale.revived);
                Cow::Owned(state)
            }
        }
    }

    /// This snapshot with its pending cleanup done once (see [`Snapshot::state_in`]: a check
    /// that dumps many slot ranges settles first).
    pub fn settled(&self) -> Snapshot {
        match self.cleaned() {
            Cow::Borrowed(_) => self.clone(),
            Cow::Owned(state) => Snapshot {
                state: Arc::new(state),
                stale: None,
            },
        }
    }

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

    use crate::ops::{EntityOps, Op};

    fn tagged() -> Index {
        let schema = Schema::from_pairs(
            &[("tags", FilterKind::Multi), ("kind", FilterKind::Single)],
            &[("at", 8)],
        )
        .unwrap();
        let mut ix = Index::new(Arc::new(schema));
        for slot in 0..10 {
            ix.apply(&EntityOps::alive(
                slot,
                vec![
                    Op::add("tags", 1),
                    Op::add("tags", slot),
                    Op::set("kind", 1),
                ],
            ));
        }
        ix.set_applied(WalKey::new(crate::Lsn(1), 0));
        ix
    }

    fn count(s: &Snapshot, f: &str) -> u64 {
        s.count(Some(f)).unwrap()
    }

    #[test]
    fn snapshots_leave_dead_slots_pending_and_hide_them() {
        let mut ix = tagged();
        ix.apply(&EntityOps::new(3, vec![Op::Delete]));
        ix.apply(&EntityOps::new(4, vec![Op::Delete, Op::add("tags", 7)]));
        ix.set_applied(WalKey::new(crate::Lsn(2), 0));
        let snap = ix.snapshot();
        // Publishing did not scan the tags: the deleted slots are still pending...
        assert_eq!(ix.pending.len(), 2);
        assert!(ix.cleaned.lock().unwrap().is_none());
        // ...and no query, dump or checkpoint sees their old values.
        assert_eq!(count(&snap, "tags eq 1"), 8);
        assert_eq!(count(&snap, "tags eq 3 OR tags eq 4"), 0);
        let dump = snap.debug_state();
        let tags = &dump.filters["tags"].values;
        assert!(!tags[&DumpKey::Int(1)].contains(&3));
        assert!(!tags.contains_key(&DumpKey::Int(3)));
        assert_eq!(
            tags[&DumpKey::Int(7)],
            vec![4, 7],
            "4 was given 7 after its delete"
        );
        let dir = tempfile::tempdir().unwrap();
        snap.write_checkpoint(dir.path()).unwrap();
        let loaded = Index::load_checkpoint(dir.path(), ix.schema().clone())
            .unwrap()
            .unwrap();
        assert_eq!(loaded.debug_state(), dump);
        // A fork carries the pending slots on.
        assert_eq!(ix.clone().debug_state(), dump);
    }

    #[test]
    fn a_deleted_slot_made_alive_again_is_cleaned_before_anyone_looks() {
        let mut ix = tagged();
        ix.apply(&EntityOps::new(3, vec![Op::Delete]));
        ix.apply(&EntityOps::new(5, vec![Op::Delete]));
        ix.apply(&EntityOps::alive(3, vec![Op::add("tags", 8)]));
        // A queryOpSet reading the tags does not match slot 3's old tag...
        ix.apply(&EntityOps::new(
            1,
            vec![Op::QueryOpSet {
                query: Some("tags eq 1".into()),
                ops: vec![Op::set("at", 9)],
            }],
        ));
        let snap = ix.snapshot();
        assert_eq!(count(&snap, "at eq 9"), 8, "slots 0-9 but 3 and 5");
        assert_eq!(count(&snap, "tags eq 1"), 8);
        assert_eq!(count(&snap, "tags eq 8"), 2);
        assert_eq!(count(&snap, "tags eq 3"), 0);
        // ...and only the revived slot was cleaned; the dead one still waits.
        assert_eq!(ix.pending.iter().collect::<Vec<_>>(), vec![5]);
        // Made alive again after a snapshot: cleaned in the next one.
        ix.apply(&EntityOps::alive(5, vec![]));
        let snap = ix.snapshot();
        assert_eq!(count(&snap, "tags eq 5 OR tags eq 1"), 8);
        assert_eq!(
            count(&snap, "kind eq 1"),
            8,
            "single fields were cleared at the delete"
        );
        ix.apply(&EntityOps::new(0, vec![]));
        assert!(ix.pending.is_empty() && ix.revived.is_empty() && ix.resurrected.is_empty());
    }

    #[test]
    fn many_pending_slots_are_cleaned_by_themselves() {
        let mut ix = tagged();
        let n = Index::FULL_CLEANUP as i64 + 1;
        for slot in 100..100 + n {
            ix.apply(&EntityOps::alive(slot, vec![Op::add("tags", 1)]));
        }
        ix.set_applied(WalKey::new(crate::Lsn(2), 0));
        for slot in 100..100 + n - 1 {
            ix.apply(&EntityOps::new(slot, vec![Op::Delete]));
        }
        ix.set_applied(WalKey::new(crate::Lsn(3), 0));
        assert_eq!(ix.pending.len(), n as u64 - 1, "at the threshold: kept");
        ix.apply(&EntityOps::new(100 + n - 1, vec![Op::Delete]));
        ix.set_applied(WalKey::new(crate::Lsn(4), 0));
        assert!(ix.pending.is_empty(), "past it: cleaned");
        let st = ix.debug_state();
        assert_eq!(st.filters["tags"].values[&DumpKey::Int(1)].len(), 10);
    }

    #[test]
    fn snapshots_and_the_index_cross_threads() {
        assert_send_sync::<Snapshot>();
        assert_send_sync::<Index>();
    }
}
