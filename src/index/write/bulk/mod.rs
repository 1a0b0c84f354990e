//! The bulk accumulator of the dump path: the dump's rows in columns and bitmaps, put into the
//! index once with [`Index::merge_bulk`](crate::index::Index::merge_bulk).
//!
//! It has insert-only semantics: `set`/`add` give the slot the value (filter) or the value's
//! bits (sort), and `creates_slot` makes the slot alive. `remove`, `delete`, `queryOpSet` and
//! `truncate` are not for this path: they are counted as `unsupported` and ignored. A fan-out
//! source's `queryOpSet` is resolved against a snapshot of the index the other tables loaded
//! ([`BulkAccumulator::add_fan_out`]) and its ops accumulated on each matching slot.
//!
//! Where things go: single/bool filter codes, sort values and alive bits go to columns that all
//! the accumulators of one dump share ([`BulkAccumulator::sibling`]; written with relaxed
//! atomics by the worker threads, see [`shared`]), so memory holds each once whatever the worker
//! count and the index takes whole pages over. A single-value field's keys get dump-wide codes
//! from a shared dictionary (each worker caches the codes it has used). Multi-value inserts are
//! per accumulator: buffered, sorted and ORed into per-key bitmaps, merged with OR.
//!
//! A dump gives each slot at most one value per single-value and sort field (one row per slot);
//! should a dump see two (or two fan-out rows' queries match one slot), the greater key (by
//! [`RawKey`]'s order) wins a single-value field and the greater value a sort field.
//!
//! No crash windows: accumulators live in memory and a crashed dump restarts from scratch.

mod shared;

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::filter::Literal;
use crate::hash::KeyHash;
use crate::index::store::keys::{self, BadValue, RawKey};
use crate::index::{IndexStats, Snapshot};
use crate::ops::{EntityOps, Op, Value, literal_value};
use crate::schema::{Field, FieldIds, FieldRef, FilterKind, Schema};
use crate::translate::{FieldOp, OpSink};
use shared::{SMALL_KEYS, Shared};

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

/// Pages of a column: (page number, 2^16 values), ascending.
pub(crate) type ValuePages = Vec<(u32, Box<[u32]>)>;
/// Pages of a slot set: (page number, 1024 words), ascending.
pub(crate) type BitPages = Vec<(u32, Box<[u64]>)>;

/// A single/bool filter field's part of what `Index::merge_bulk` consumes.
pub(crate) struct SingleParts {
    /// Code `c` (≥ 1) stands for `keys[c - 1]`.
    pub keys: Vec<RawKey>,
    /// Code per slot (0: no value).
    pub codes: ValuePages,
}

/// A sort field's part of what `Index::merge_bulk` consumes.
pub(crate) struct SortParts {
    /// Value per slot (0 where not touched).
    pub values: ValuePages,
    /// Slots given a value (the same pages as `values`: a slot's value and bit are written
    /// together).
    pub touched: BitPages,
}

/// A joined parent row a dump saw: its join, its key (the query's value) and, per target
/// position, its value.
pub(crate) type ParentRow = (usize, Value, Vec<(usize, Value)>);

/// What `Index::merge_bulk` consumes.
pub(crate) struct BulkParts {
    /// Joined parent rows, to load as the index's parent rows.
    pub parents: Vec<ParentRow>,
    pub alive: BitPages,
    /// Per filter field: `Some` for single/bool fields.
    pub singles: Vec<Option<SingleParts>>,
    /// Per filter field: raw key (NULL included) → slots (multi-value fields only).
    pub multi: Vec<HashMap<RawKey, RoaringBitmap>>,
    pub sorts: Vec<SortParts>,
    pub stats: IndexStats,
}

/// Insert-only columns and bitmaps accumulated from dump rows (see the module note).
pub struct BulkAccumulator {
    schema: Arc<Schema>,
    shared: Arc<Shared>,
    /// Per filter field, the codes this accumulator has used (single/bool fields).
    codes: Vec<HashMap<RawKey, u32, KeyHash>>,
    /// Per filter field, the same for keys in `0..SMALL_KEYS`, by key (0: not yet; codes start
    /// at 1).
    small_codes: Vec<Vec<u32>>,
    /// Per filter field, the same for the first few text keys (a field of few labels).
    text_codes: Vec<Vec<(Arc<str>, u32)>>,
    /// Per filter field, multi-value keys → slots.
    filters: Vec<HashMap<RawKey, RoaringBitmap>>,
    /// Per filter field, multi-value inserts of keys in `0..2^32` not yet in `filters`, as
    /// `key << 32 | slot` (see [`Self::PENDING`]).
    pending: Vec<Vec<u64>>,
    /// Per filter field, the other integer-keyed multi-value inserts not yet in `filters`.
    pending_wide: Vec<Vec<(i64, u32)>>,
    /// The schema's fields, numbered (the translator's ops carry these ids).
    ids: FieldIds,
    /// Room for sorting `pending`.
    scratch: Vec<u64>,
    /// The slot of the entity whose ops arrive through [`OpSink`] (`None`: its id does not fit).
    current: Option<u32>,
    /// Joined parent rows seen by [`BulkAccumulator::add_fan_out`].
    parents: Vec<ParentRow>,
    stats: BulkStats,
}

impl BulkAccumulator {
    /// Integer-keyed multi-value inserts buffered per field before they go into the bitmaps,
    /// sorted by key and slot: each key's bitmap is then reached once per run instead of once
    /// per row (with thousands of keys, each reach is a cache miss). 1M pairs: 16 MiB per field.
    pub const PENDING: usize = 1 << 20;

    /// An empty accumulator for `schema`, with columns of its own.
    pub fn new(schema: Arc<Schema>) -> Self {
        let shared = Arc::new(Shared::new(&schema));
        Self::with_shared(schema, shared)
    }

    fn with_shared(schema: Arc<Schema>, shared: Arc<Shared>) -> Self {
        let n = schema.filters.len();
        BulkAccumulator {
            codes: vec![HashMap::default(); n],
            small_codes: vec![Vec::new(); n],
            text_codes: vec![Vec::new(); n],
            filters: vec![HashMap::new(); n],
            pending: vec![Vec::new(); n],
            pending_wide: vec![Vec::new(); n],
            ids: schema.field_ids(),
            scratch: Vec::new(),
            current: None,
            parents: Vec::new(),
            stats: BulkStats::default(),
            shared,
            schema,
        }
    }

    /// An empty accumulator that shares this one's columns: what a dump gives each worker
    /// thread (merging siblings only merges their multi-value bitmaps and counters).
    pub fn sibling(&self) -> Self {
        Self::with_shared(Arc::clone(&self.schema), Arc::clone(&self.shared))
    }

    /// Counters so far.
    pub fn stats(&self) -> BulkStats {
        self.stats
    }

    /// Number of slots made alive so far (by this accumulator and its siblings).
    pub fn alive_count(&self) -> u64 {
        self.shared.alive.iter().count() as u64
    }

    /// The code of `raw` in single/bool field `fi`: from this accumulator's caches, else from
    /// the dump-wide dictionary.
    fn code(&mut self, fi: usize, raw: RawKey) -> u32 {
        match &raw {
            RawKey::Int(k) if (0..SMALL_KEYS).contains(k) => {
                let k = *k as usize;
                if let Some(&c) = self.small_codes[fi].get(k).filter(|&&c| c != 0) {
                    return c;
                }
                let c = self.dictionary_code(fi, raw);
                let small = &mut self.small_codes[fi];
                if small.len() <= k {
                    small.resize((k + 1).next_power_of_two(), 0);
                }
                small[k] = c;
                c
            }
            RawKey::Str(t) => {
                let texts = &self.text_codes[fi];
                if let Some((_, c)) = texts.iter().find(|(s, _)| s == t) {
                    return *c;
                }
                if texts.len() == Self::TEXT_CODES {
                    return self.hashed_code(fi, raw);
                }
                let t = Arc::clone(t);
                let c = self.dictionary_code(fi, raw);
                self.text_codes[fi].push((t, c));
                c
            }
            _ => self.hashed_code(fi, raw),
        }
    }

    /// Text keys cached in a list, compared in order (the labels of a field of few values).
    const TEXT_CODES: usize = 8;

    /// The code of `raw` from the hash cache, else from the dictionary (then cached).
    fn hashed_code(&mut self, fi: usize, raw: RawKey) -> u32 {
        if let Some(&c) = self.codes[fi].get(&raw) {
            return c;
        }
        let c = self.dictionary_code(fi, raw.clone());
        self.codes[fi].insert(raw, c);
        c
    }

    /// The code of `raw` from the dump-wide dictionary.
    fn dictionary_code(&self, fi: usize, raw: RawKey) -> u32 {
        let single = self.shared.singles[fi]
            .as_ref()
            .expect("single/bool fields have a column");
        single.code(raw)
    }

    /// Adds one entity's `set`/`add` ops and `creates_slot`; other ops are counted and ignored.
    pub fn add(&mut self, e: &EntityOps) {
        self.entity(e.entity_id, e.creates_slot);
        if let Some(slot) = self.current {
            self.add_ops(slot, &e.ops);
        }
    }

    /// Adds a fan-out row's ops: each `queryOpSet`'s ops go to every live slot its query
    /// matches in `snapshot` (the index the other tables loaded); other ops are counted and
    /// ignored, as are queries that do not parse or evaluate. A join's `link eq key` query is a
    /// parent row: it is kept (the index loads it as the join's parent row), and its values go to
    /// every slot whose link holds the key, live or not, NULL values of multi-value targets
    /// excepted (they contribute nothing to the union).
    pub fn add_fan_out(&mut self, snapshot: &Snapshot, e: &EntityOps) {
        self.stats.entities += 1;
        for op in &e.ops {
            let Op::QueryOpSet { query, ops } = op else {
                self.stats.unsupported += 1;
                continue;
            };
            let Some(query) = query else {
                continue;
            };
            if let Some((link, value)) = query.join_key()
                && let Some(j) = self.schema.joins.iter().position(|j| &*j.link == link)
            {
                self.add_parent(snapshot, j, value, ops);
                continue;
            }
            let matched = query
                .filter()
                .map_err(|e| crate::filter::FilterError::Parse(e.clone()))
                .and_then(|f| snapshot.matching_filter(f));
            match matched {
                Ok(slots) => {
                    for slot in slots.iter() {
                        self.add_ops(slot, ops);
                    }
                }
                Err(error) => {
                    self.stats.index.bad_queries += 1;
                    tracing::debug!(source_id = e.entity_id, %query, %error, "queryOpSet query failed; skipped");
                }
            }
        }
    }

    /// A parent row of join `j` with key `value`: kept, and its values given to the linked slots.
    fn add_parent(&mut self, snapshot: &Snapshot, j: usize, value: &Literal, ops: &[Op]) {
        let join = &self.schema.joins[j];
        let mut cells = Vec::with_capacity(ops.len());
        let mut given = Vec::with_capacity(ops.len());
        for op in ops {
            let (Op::Set { field, value } | Op::Add { field, value }) = op else {
                self.stats.unsupported += 1;
                continue;
            };
            let Some(t) = join.targets.iter().position(|t| field == t) else {
                self.stats.index.joined_field_writes += 1;
                continue;
            };
            cells.push((t, value.clone()));
            let multi = self
                .schema
                .filter(field)
                .map(|fi| self.schema.filters[fi].kind)
                == Some(FilterKind::Multi);
            if !(multi && value.is_null()) {
                given.push((field, value));
            }
        }
        let link = self
            .schema
            .filter(&join.link)
            .expect("a join's link is a filter field");
        for slot in snapshot.linked(link, value).iter() {
            for (field, value) in &given {
                self.add_value(slot, field, value);
            }
        }
        self.parents.push((j, literal_value(value), cells));
    }

    fn add_ops(&mut self, slot: u32, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Set { field, value } | Op::Add { field, value } => {
                    self.add_value(slot, field, value);
                }
                Op::Remove { .. } | Op::Delete | Op::QueryOpSet { .. } | Op::Truncate { .. } => {
                    self.stats.unsupported += 1;
                }
            }
        }
    }

    /// A `set` or `add` of `value` on `field` for `slot`.
    fn add_value(&mut self, slot: u32, field: &Field, value: &Value) {
        let at = self.field(field);
        if at.is_unknown() {
            self.stats.index.unknown_fields += 1;
            tracing::debug!(field = &**field, slot, "unknown field; skipped");
            return;
        }
        let mut applied = false;
        if let Some(fi) = at.filter {
            let kind = self.schema.filters[fi].kind;
            match (kind, keys::filter_key(kind, value)) {
                (_, Err(BadValue)) => self.stats.index.bad_values += 1,
                (FilterKind::Multi, Ok(RawKey::Int(k))) => {
                    applied = true;
                    match u32::try_from(k) {
                        Ok(k) => self.pending[fi].push(u64::from(k) << 32 | u64::from(slot)),
                        Err(_) => self.pending_wide[fi].push((k, slot)),
                    }
                    if self.pending[fi].len() + self.pending_wide[fi].len() >= Self::PENDING {
                        self.flush_field(fi);
                    }
                }
                (FilterKind::Multi, Ok(raw)) => {
                    applied = true;
                    self.filters[fi].entry(raw).or_default().insert(slot);
                }
                (_, Ok(raw)) => {
                    applied = true;
                    let code = self.code(fi, raw);
                    let single = self.shared.singles[fi].as_ref();
                    single
                        .expect("single/bool fields have a column")
                        .store(slot, code);
                }
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
                    let sort = &self.shared.sorts[si];
                    sort.values.max(slot, v.value);
                    sort.touched.insert(slot);
                }
                Err(BadValue) => self.stats.index.bad_values += 1,
            }
        }
        if applied {
            self.stats.index.applied_ops += 1;
        }
    }

    /// The schema field an op's field refers to (by its id when it carries one).
    fn field(&self, field: &Field) -> FieldRef {
        self.ids
            .id(field)
            .map_or_else(FieldRef::default, |id| self.ids.roles(id))
    }

    /// Moves field `fi`'s buffered inserts into its bitmaps, key by key, slots ascending.
    fn flush_field(&mut self, fi: usize) {
        let map = &mut self.filters[fi];
        let pending = &mut self.pending[fi];
        radix_sort(pending, &mut self.scratch);
        for run in pending.chunk_by(|a, b| a >> 32 == b >> 32) {
            let slots = sorted_bitmap(run.iter().map(|&p| p as u32));
            *map.entry(RawKey::Int((run[0] >> 32) as i64)).or_default() |= slots;
        }
        pending.clear();
        let wide = &mut self.pending_wide[fi];
        wide.sort_unstable();
        for run in wide.chunk_by(|a, b| a.0 == b.0) {
            let slots = sorted_bitmap(run.iter().map(|&(_, slot)| slot));
            *map.entry(RawKey::Int(run[0].0)).or_default() |= slots;
        }
        wide.clear();
    }

    /// Moves every buffered insert into the bitmaps (a dump's workers do it as they end, in
    /// parallel, so that merging them has less to do).
    pub fn flush(&mut self) {
        for fi in 0..self.pending.len() {
            if !self.pending[fi].is_empty() || !self.pending_wide[fi].is_empty() {
                self.flush_field(fi);
            }
        }
    }

    /// The union of two accumulators of the same schema (siblings or not).
    pub fn merge(mut self, mut other: Self) -> Self {
        self.flush();
        other.flush();
        if !Arc::ptr_eq(&self.shared, &other.shared) {
            self.shared.absorb(&other.shared);
        }
        for (mine, theirs) in self.filters.iter_mut().zip(other.filters) {
            if mine.len() < theirs.len() {
                let small = std::mem::replace(mine, theirs);
                or_map(mine, small);
            } else {
                or_map(mine, theirs);
            }
        }
        self.parents.append(&mut other.parents);
        let (a, b) = (&mut self.stats, other.stats);
        a.entities += b.entities;
        a.unsupported += b.unsupported;
        a.index.add(&b.index);
        self
    }

    pub(crate) fn into_parts(mut self) -> BulkParts {
        self.flush();
        let shared = Arc::try_unwrap(self.shared).unwrap_or_else(|shared| {
            // Siblings are still around: copy the columns out.
            let copy = Shared::new(&self.schema);
            copy.absorb(&shared);
            copy
        });
        let (alive, singles, sorts) = shared.into_parts();
        BulkParts {
            parents: self.parents,
            alive,
            singles,
            multi: self.filters,
            sorts,
            stats: self.stats.index,
        }
    }
}

impl OpSink for BulkAccumulator {
    fn entity(&mut self, id: i64, creates_slot: bool) {
        self.stats.entities += 1;
        self.current = u32::try_from(id).ok();
        match self.current {
            None => {
                self.stats.index.skipped_ids += 1;
                tracing::debug!(entity_id = id, "entity id does not fit a slot; skipped");
            }
            Some(slot) if creates_slot => self.shared.alive.insert(slot),
            Some(_) => {}
        }
    }

    fn field_op(&mut self, op: FieldOp, field: &Field, value: Value) {
        let Some(slot) = self.current else {
            return;
        };
        match op {
            FieldOp::Set | FieldOp::Add => self.add_value(slot, field, &value),
            FieldOp::Remove => self.stats.unsupported += 1,
        }
    }

    fn op(&mut self, _: Op) {
        if self.current.is_some() {
            self.stats.unsupported += 1;
        }
    }
}

fn or_map(into: &mut HashMap<RawKey, RoaringBitmap>, from: HashMap<RawKey, RoaringBitmap>) {
    // The keys both have, in parallel; then the keys only `from` has.
    into.par_iter_mut().for_each(|(k, bm)| {
        if let Some(other) = from.get(k) {
            *bm |= other;
        }
    });
    for (k, bm) in from {
        into.entry(k).or_insert(bm);
    }
}

/// Sorts `v` ascending: least-significant-digit radix sort in 16-bit digits, skipping digits
/// all values share (with keys below 2^16, two of the four passes). `scratch` is its room.
fn radix_sort(v: &mut Vec<u64>, scratch: &mut Vec<u64>) {
    if v.len() < 256 {
        v.sort_unstable();
        return;
    }
    scratch.clear();
    scratch.resize(v.len(), 0);
    for shift in [0u32, 16, 32, 48] {
        let digit = |x: u64| (x >> shift) as usize & 0xffff;
        let mut counts = vec![0usize; 1 << 16];
        for &x in v.iter() {
            counts[digit(x)] += 1;
        }
        if counts[digit(v[0])] == v.len() {
            continue;
        }
        let mut at = 0;
        for c in &mut counts {
            let n = *c;
            *c = at;
            at += n;
        }
        for &x in v.iter() {
            let d = digit(x);
            scratch[counts[d]] = x;
            counts[d] += 1;
        }
        std::mem::swap(v, scratch);
    }
}

/// A bitmap of ascending slots (repeats allowed), built by appending: roaring's own `try_push`
/// finds a bitmap container's maximum by scanning it from the top, once per value.
fn sorted_bitmap(slots: impl Iterator<Item = u32>) -> RoaringBitmap {
    let mut last = None;
    let distinct = slots.filter(move |&s| last.replace(s) != Some(s));
    RoaringBitmap::from_sorted_iter(distinct).expect("ascending slots, repeats removed")
}

/// Accumulates `items` on rayon's pool: one accumulator per task (`fold`, siblings sharing the
/// columns), merged (`reduce`).
pub fn accumulate_par<I>(schema: Arc<Schema>, items: I) -> BulkAccumulator
where
    I: IntoParallelIterator<Item = EntityOps>,
{
    let root = BulkAccumulator::new(schema);
    items
        .into_par_iter()
        .fold(
            || root.sibling(),
            |mut acc, e| {
                acc.add(&e);
                acc
            },
        )
        .reduce(|| root.sibling(), BulkAccumulator::merge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::ops::Value;
    use crate::schema::FilterKind;

    /// Not the shared image-feed fixture: an 8-bit sort, to see values clamped.
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

    proptest::proptest! {
        #[test]
        fn radix_sort_sorts(mut v in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..2000), narrow in proptest::prelude::any::<bool>()) {
            if narrow {
                for x in &mut v {
                    *x &= 0x0000_00ff_0000_ffff;
                }
            }
            let mut want = v.clone();
            want.sort_unstable();
            radix_sort(&mut v, &mut Vec::new());
            proptest::prop_assert_eq!(v, want);
        }
    }

    #[test]
    fn fan_out_rows_in_bulk_equal_applying_them() {
        let mut index = Index::new(schema());
        for slot in 0..40i64 {
            index.apply(&EntityOps::alive(
                slot,
                vec![
                    Op::set("type", ["image", "video"][slot as usize % 2]),
                    Op::set("at", 1),
                ],
            ));
        }
        let fan = |source: i64, query: Option<&str>, at: i64| {
            EntityOps::new(
                source,
                vec![Op::QueryOpSet {
                    query: query.map(Into::into),
                    ops: vec![
                        Op::set("at", at),
                        Op::set("flag", true),
                        Op::add("tags", source),
                    ],
                }],
            )
        };
        let rows = vec![
            fan(1, Some("type eq video"), 7),
            fan(2, None, 9),
            fan(3, Some("nope eq 1"), 9),
            fan(4, Some("type eq gif"), 9),
        ];
        let mut sequential = index.clone();
        for e in &rows {
            sequential.apply(e);
        }
        let snapshot = index.snapshot();
        let root = BulkAccumulator::new(schema());
        let mut acc = root.sibling();
        for e in &rows {
            acc.add_fan_out(&snapshot, e);
        }
        drop(root);
        assert_eq!(acc.stats().index.bad_queries, 1);
        index.merge_bulk(acc);
        assert_eq!(index.debug_state(), sequential.debug_state());
        let snap = index.snapshot();
        assert_eq!(
            snap.count(Some("at eq 7 AND flag eq true AND tags eq 1"))
                .unwrap(),
            20
        );
        assert_eq!(snap.count(Some("at eq 1")).unwrap(), 20);
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
