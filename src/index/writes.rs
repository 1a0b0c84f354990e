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
//! Nothing observes the bitmaps before the log is applied: it is applied before a snapshot or a
//! checkpoint is taken (to the snapshot's copy when the writer cannot be changed), before a
//! `queryOpSet` query, the multi-value cleanup or a bulk merge reads the writer's state, when the
//! applied cursor advances, and whenever it grows past [`WriteLog::LIMIT`] writes. The `alive`
//! bitmap is written at once (it is read directly).

use std::sync::Arc;

use super::FilterState;
use super::bits::Bits;
use super::keys::Key;

/// A logged write: `slot << 32 | seq << 1 | set`, where `seq` is the write's position in its
/// log, so a plain integer sort orders writes by slot and then by op order.
pub(crate) type Write = u64;

fn pack(slot: u32, seq: usize, set: bool) -> Write {
    // `seq` < the log's length, which the writer keeps below LIMIT + a few dozen, far below 2^31.
    u64::from(slot) << 32 | (seq as u64) << 1 | u64::from(set)
}

/// The slot of a logged write.
pub(crate) fn slot_of(w: Write) -> u32 {
    (w >> 32) as u32
}

/// Whether a logged write sets its bit.
pub(crate) fn sets(w: Write) -> bool {
    w & 1 == 1
}

/// Of writes sorted by slot then op order, the last write of each slot.
pub(crate) fn winners(writes: &[Write]) -> impl Iterator<Item = Write> + '_ {
    writes.iter().enumerate().filter_map(|(i, &w)| {
        let last = writes
            .get(i + 1)
            .is_none_or(|&next| slot_of(next) != slot_of(w));
        last.then_some(w)
    })
}

/// Bitmap writes not yet applied.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteLog {
    /// Per sort field, per layer, in op order.
    layers: Vec<Vec<Vec<Write>>>,
    /// Per filter field: the key (`None`: the NULL bitmap) and the write, in op order.
    filters: Vec<Vec<(Option<Key>, Write)>>,
    len: usize,
}

impl WriteLog {
    /// Logged writes beyond which the writer applies the log at once (bounds its memory).
    pub(crate) const LIMIT: usize = 1 << 18;

    /// An empty log for `filters` filter fields and sort fields of the given widths.
    pub(crate) fn new(filters: usize, widths: impl Iterator<Item = usize>) -> WriteLog {
        WriteLog {
            layers: widths.map(|w| vec![Vec::new(); w]).collect(),
            filters: vec![Vec::new(); filters],
            len: 0,
        }
    }

    /// An empty log for the same fields.
    pub(crate) fn emptied(&self) -> WriteLog {
        WriteLog {
            layers: self
                .layers
                .iter()
                .map(|l| vec![Vec::new(); l.len()])
                .collect(),
            filters: vec![Vec::new(); self.filters.len()],
            len: 0,
        }
    }

    /// Number of logged writes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is logged.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Logs that `slot` gets (`set`) or loses bit `b` of sort field `si`.
    pub(crate) fn layer(&mut self, si: usize, b: usize, slot: u32, set: bool) {
        let writes = &mut self.layers[si][b];
        writes.push(pack(slot, writes.len(), set));
        self.len += 1;
    }

    /// Logs that `slot` enters (`set`) or leaves key `key` (`None`: NULL) of filter field `fi`.
    pub(crate) fn filter(&mut self, fi: usize, key: Option<Key>, slot: u32, set: bool) {
        let writes = &mut self.filters[fi];
        writes.push((key, pack(slot, writes.len(), set)));
        self.len += 1;
    }

    /// Forgets every logged write (a snapshot's settled copy already holds them).
    pub(crate) fn clear(&mut self) {
        for writes in self.layers.iter_mut().flatten() {
            writes.clear();
        }
        for writes in &mut self.filters {
            writes.clear();
        }
        self.len = 0;
    }

    /// Applies the logged writes to `filters` and `sorts` (the writer's or a snapshot's copy)
    /// and empties the log (keeping its buffers for reuse).
    pub(crate) fn apply_to(&mut self, filters: &mut [FilterState], sorts: &mut [Arc<Vec<Bits>>]) {
        if self.is_empty() {
            return;
        }
        for (log, layers) in self.layers.iter_mut().zip(sorts.iter_mut()) {
            if log.iter().all(Vec::is_empty) {
                continue;
            }
            let layers = Arc::make_mut(layers);
            for (writes, layer) in log.iter_mut().zip(layers.iter_mut()) {
                writes.sort_unstable();
                layer.apply_sorted(writes);
                writes.clear();
            }
        }
        let mut group = Vec::new();
        for (log, fs) in self.filters.iter_mut().zip(filters.iter_mut()) {
            // By key, then slot, then op order.
            log.sort_unstable();
            for run in log.chunk_by(|a, b| a.0 == b.0) {
                group.clear();
                group.extend(run.iter().map(|&(_, w)| w));
                match run[0].0 {
                    None => fs.null.apply_sorted(&group),
                    Some(k) => fs.values.apply_sorted(k, &group),
                }
            }
            log.clear();
        }
        self.len = 0;
    }
}
