//! The writer's log of bitmap writes not yet applied to the bitmaps.
//!
//! Each op sets or clears a slot's bit in a few bitmaps: a sort value change flips one bit in
//! every layer where the old and new values differ, a single-value `set` moves the slot from one
//! key's bitmap to another's. Done at once, each write is a random access into a different large
//! bitmap (a cache miss) behind copy-on-write's atomic uniqueness checks. The writer logs them
//! instead (its per-slot columns stay the truth for "what is this slot's value"), and applies the
//! log bitmap by bitmap: the writes of one bitmap sorted by slot and merged in together, while
//! the bitmap is in cache. For each (bitmap, slot) the last logged write wins, exactly as if each
//! had been applied at once.
//!
//! Filter writes are logged as (key, slot, set/clear). A sort field logs only the slot and its
//! value before the change: when the log is applied, the layers to flip for a slot are the bits
//! where its first logged old value and its column's current value differ. (The layers agree
//! with the column whenever the log is empty, so they hold the first old value, and the flips
//! leave the current one.) One sort per field instead of one per layer, a slot written many
//! times costs its layers once, and each layer takes one XOR with the set of its flips.
//!
//! Nothing observes the bitmaps before the log is applied: it is applied before a snapshot or a
//! checkpoint is taken (to the snapshot's copy when the writer cannot be changed), before a
//! `queryOpSet` query, the multi-value cleanup or a bulk merge reads the writer's state, when the
//! applied cursor advances, and whenever it grows past [`WriteLog::LIMIT`] writes. The `alive`
//! bitmap is written at once (it is read directly).

use std::sync::Arc;

use super::bits::{Bits, FEW_WRITES, ones};
use super::columns::Column;
use super::keys::Key;
use super::packed::{Write, pack, sets, slot_of};
use crate::index::FilterState;

/// A logged filter write as one integer, so a plain integer sort orders the writes by key, then
/// slot, then op order: from the top, the key's kind (2 bits: NULL, `Int`, `Str`), its value
/// (64 bits), the slot (32), the write's position in its field's log (20) and set/clear (1).
type FilterWrite = u128;

/// Bits of a filter write's position in its log: the log stays far below 2^20 writes.
const SEQ_BITS: u32 = 20;

fn pack_filter(key: Option<Key>, slot: u32, seq: usize, set: bool) -> FilterWrite {
    let key = match key {
        None => 0,
        Some(Key::Int(i)) => 1 << 64 | u128::from(i as u64),
        Some(Key::Str(id)) => 2 << 64 | u128::from(id),
    };
    debug_assert!(seq < 1 << SEQ_BITS);
    key << (32 + SEQ_BITS + 1)
        | u128::from(slot) << (SEQ_BITS + 1)
        | (seq as u128) << 1
        | u128::from(set)
}

/// The key bits of a filter write (equal for writes to the same bitmap).
fn key_bits(w: FilterWrite) -> u128 {
    w >> (32 + SEQ_BITS + 1)
}

fn unpack_key(w: FilterWrite) -> Option<Key> {
    let k = key_bits(w);
    match k >> 64 {
        0 => None,
        1 => Some(Key::Int(k as u64 as i64)),
        _ => Some(Key::Str(k as u32)),
    }
}

/// A filter write as a bitmap write (slot, position, set/clear), ordered alike.
fn bitmap_write(w: FilterWrite) -> Write {
    let low = w as u64 & ((1 << (32 + SEQ_BITS + 1)) - 1);
    pack(
        (low >> (SEQ_BITS + 1)) as u32,
        (low >> 1) as usize & ((1 << SEQ_BITS) - 1),
        low & 1 == 1,
    )
}

/// One sort field's logged changes.
#[derive(Clone, Debug, Default)]
struct SortLog {
    /// `slot << 32 | seq`, in op order (`seq` indexes `olds`).
    changes: Vec<u64>,
    /// The slot's value before each change.
    olds: Vec<u32>,
}

/// Bitmap writes not yet applied.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteLog {
    /// Per sort field: its value changes, and its width in layers.
    sorts: Vec<(SortLog, usize)>,
    /// Per filter field, its writes in op order.
    filters: Vec<Vec<FilterWrite>>,
    /// Per layer of the widest sort field: the slots whose bit flips while a sort log is
    /// applied, as writes (set or cleared), kept to reuse the buffers.
    scratch: Vec<Vec<Write>>,
    len: usize,
}

/// Filter key groups whose bitmaps are looked up and prefetched together before their writes
/// are applied: independent lookups overlap their cache misses.
const PREFETCH_GROUPS: usize = 16;

impl WriteLog {
    /// Logged writes beyond which the writer applies the log at once (bounds its memory).
    pub(crate) const LIMIT: usize = 1 << 18;

    /// An empty log for `filters` filter fields and sort fields of the given widths.
    pub(crate) fn new(filters: usize, widths: impl Iterator<Item = usize>) -> WriteLog {
        WriteLog {
            sorts: widths.map(|w| (SortLog::default(), w)).collect(),
            filters: vec![Vec::new(); filters],
            scratch: Vec::new(),
            len: 0,
        }
    }

    /// An empty log for the same fields.
    pub(crate) fn emptied(&self) -> WriteLog {
        WriteLog::new(self.filters.len(), self.sorts.iter().map(|(_, w)| *w))
    }

    /// Number of logged writes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is logged.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Logs that sort field `si` of `slot` changes from `old` (the column then holds the new
    /// value).
    pub(crate) fn sort_change(&mut self, si: usize, slot: u32, old: u32) {
        let log = &mut self.sorts[si].0;
        log.changes
            .push(u64::from(slot) << 32 | log.olds.len() as u64);
        log.olds.push(old);
        self.len += 1;
    }

    /// Logs that `slot` enters (`set`) or leaves key `key` (`None`: NULL) of filter field `fi`.
    pub(crate) fn filter(&mut self, fi: usize, key: Option<Key>, slot: u32, set: bool) {
        let writes = &mut self.filters[fi];
        writes.push(pack_filter(key, slot, writes.len(), set));
        self.len += 1;
    }

    /// Forgets every logged write (a snapshot's settled copy already holds them).
    pub(crate) fn clear(&mut self) {
        for (log, _) in &mut self.sorts {
            log.changes.clear();
            log.olds.clear();
        }
        for writes in &mut self.filters {
            writes.clear();
        }
        self.len = 0;
    }

    /// Applies the logged writes to `filters` and `sorts` (the writer's or a snapshot's copy;
    /// `sort_cols` are the writer's sort columns, which hold every slot's current value) and
    /// empties the log (keeping its buffers for reuse).
    pub(crate) fn apply_to(
        &mut self,
        filters: &mut [FilterState],
        sorts: &mut [Arc<Vec<Bits>>],
        sort_cols: &[Column],
    ) {
        if self.is_empty() {
            return;
        }
        for (((log, width), layers), col) in self.sorts.iter_mut().zip(sorts).zip(sort_cols) {
            if log.changes.is_empty() {
                continue;
            }
            if self.scratch.len() < *width {
                self.scratch.resize_with(*width, Vec::new);
            }
            log.changes.sort_unstable();
            // The first change of each slot has its value before the log began, which is what
            // the layers hold: each layer flips where that value and the current one differ.
            let mut prev = None;
            for &c in &log.changes {
                let slot = (c >> 32) as u32;
                if prev == Some(slot) {
                    continue;
                }
                prev = Some(slot);
                let old = log.olds[c as u32 as usize];
                let new = col.get(slot);
                for b in ones(u64::from(old ^ new)) {
                    self.scratch[b as usize].push(pack(slot, 0, new >> b & 1 == 1));
                }
            }
            log.changes.clear();
            log.olds.clear();
            if self.scratch.iter().all(Vec::is_empty) {
                continue;
            }
            let layers = Arc::make_mut(layers);
            let mut flips = Vec::new();
            for (writes, layer) in self.scratch.iter_mut().zip(layers.iter_mut()) {
                if writes.len() <= FEW_WRITES {
                    // A handful (a fan-out's few slots): each set or cleared in place.
                    layer.apply_sorted(writes);
                } else {
                    flips.clear();
                    flips.extend(writes.iter().map(|&w| slot_of(w)));
                    layer.flip_sorted(&flips);
                }
                writes.clear();
            }
        }
        for (log, fs) in self.filters.iter_mut().zip(filters.iter_mut()) {
            apply_filter_log(log, fs);
        }
        self.len = 0;
    }

    /// Number of logged writes of filter field `fi`.
    pub(crate) fn filter_len(&self, fi: usize) -> usize {
        self.filters[fi].len()
    }

    /// Applies the logged writes of filter field `fi` alone to its state `fs` (the writer's).
    pub(crate) fn apply_filter(&mut self, fi: usize, fs: &mut FilterState) {
        self.len -= self.filters[fi].len();
        apply_filter_log(&mut self.filters[fi], fs);
    }

    /// The logged writes of filter field `fi` to key `key` (`None`: NULL), in op order, as
    /// (slot, set): replayed over that key's bitmap, they give what it holds once the log is
    /// applied (a join's children, read without applying the rest of the log).
    pub(crate) fn filter_writes(
        &self,
        fi: usize,
        key: Option<Key>,
    ) -> impl Iterator<Item = (u32, bool)> + '_ {
        let bits = key_bits(pack_filter(key, 0, 0, false));
        self.filters[fi]
            .iter()
            .filter(move |&&w| key_bits(w) == bits)
            .map(|&w| {
                let b = bitmap_write(w);
                (slot_of(b), sets(b))
            })
    }
}

/// Applies one filter field's logged writes to its state and empties the log.
fn apply_filter_log(log: &mut Vec<FilterWrite>, fs: &mut FilterState) {
    if log.is_empty() {
        return;
    }
    let mut group = Vec::new();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    // By key, then slot, then op order.
    log.sort_unstable();
    let mut start = 0;
    for run in log.chunk_by(|a, b| key_bits(*a) == key_bits(*b)) {
        runs.push((start, start + run.len()));
        start += run.len();
    }
    // Three stages, a window of keys apart: start loading the shard entries of the
    // next window (their address needs no lookup), look up this window's keys in their
    // shards (now in cache) and start loading their bitmaps, then apply this window.
    let key_at = |a: usize| unpack_key(log[a]);
    let windows: Vec<&[(usize, usize)]> = runs.chunks(PREFETCH_GROUPS).collect();
    if let Some(first) = windows.first() {
        first
            .iter()
            .filter_map(|&(a, _)| key_at(a))
            .for_each(|k| fs.values.prefetch_shard(&k));
    }
    for (n, window) in windows.iter().enumerate() {
        if let Some(next) = windows.get(n + 1) {
            next.iter()
                .filter_map(|&(a, _)| key_at(a))
                .for_each(|k| fs.values.prefetch_shard(&k));
        }
        for &(a, _) in *window {
            if let Some(k) = key_at(a) {
                fs.values.prefetch(&k);
            }
        }
        for &(a, b) in *window {
            let run = &log[a..b];
            group.clear();
            group.extend(run.iter().map(|&w| bitmap_write(w)));
            match unpack_key(run[0]) {
                None => fs.null.apply_sorted(&group),
                Some(k) => fs.values.apply_sorted(k, &group),
            }
        }
    }
    log.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_layer_changes_are_written_in_place() {
        // A fan-out flushes a handful of sort changes at a time: owned layers, a small list and
        // a chunk, take them in place (same allocation) rather than being rebuilt.
        let mut small: Bits = (0..1000u32).map(|i| i * 3).collect();
        small.insert(1); // owned from here on, with spare room
        let mut chunked: Bits = (0..10_000u32).collect();
        chunked.insert(1 << 20);
        let (small_at, chunk_at) = (small.data_ptr(), chunked.data_ptr());
        let mut sorts = vec![Arc::new(vec![small, chunked])];
        // Slots 2 and 5 go from 0 to 3 (both layers set); slot 3 from 3 to 0 (both cleared).
        let mut col = Column::default();
        col.set(2, 3);
        col.set(5, 3);
        let mut log = WriteLog::new(0, [2].into_iter());
        log.sort_change(0, 2, 0);
        log.sort_change(0, 5, 0);
        log.sort_change(0, 3, 3);
        log.apply_to(&mut [], &mut sorts, &[col]);
        let layers = &sorts[0];
        assert_eq!(layers[0].data_ptr(), small_at);
        assert_eq!(layers[1].data_ptr(), chunk_at);
        for layer in layers.iter() {
            assert!(layer.contains(2) && !layer.contains(3) && layer.contains(5));
        }
        assert!(layers[0].contains(1) && layers[1].contains(1 << 20));
    }
}
