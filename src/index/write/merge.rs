//! Merging a bulk accumulator (a bootstrap's columns and bitmaps) into the writer's state.
//!
//! The accumulator hands over pages of 2^16 slots. Into an empty index (a bootstrap) a page of
//! codes or sort values goes into the writer's column whole, and the bitmaps are built from the
//! pages in slot order: a single-value field's (code, slot) pairs sorted by code, a sort field's
//! layers by spreading each value's bits over per-layer words. Into a non-empty index each slot
//! given a value first leaves its old key / sort bits (`set` semantics). The work runs in groups
//! of about 2^20 slots, so the transient memory is bounded by the group, not by the table.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::apply::key_in;
use crate::index::store::bits::{Bits, ones};
use crate::index::store::columns::{Column, KeyColumn, NONE, NULL, PAGE, PAGE_BITS};
use crate::index::store::keys::{Key, RawKey};
use crate::index::write::bulk::{SingleParts, SortParts};
use crate::index::{FilterState, Index};

/// Pairs (code, slot) a single-value field sorts at a time.
const GROUP_PAIRS: usize = 1 << 20;
/// Pages a sort field's layers are built from at a time (one bitmap chunk).
const GROUP_PAGES: usize = 16;

/// Bitmaps of runs of `code << 32 | slot` pairs, sorted: (code, slots) per code.
fn runs(pairs: &mut Vec<u64>) -> impl Iterator<Item = (u32, Bits)> + '_ {
    sort_pairs(pairs);
    let mut slots = Vec::new();
    pairs.chunk_by(|a, b| a >> 32 == b >> 32).map(move |run| {
        slots.clear();
        slots.extend(run.iter().map(|&p| p as u32));
        ((run[0] >> 32) as u32, Bits::from_sorted(&slots))
    })
}

/// Sorts `code << 32 | slot` pairs. Pairs made page by page come with their slots ascending
/// and their codes dense (a field's codes count its keys): a stable counting sort by code then
/// sorts them in two passes; other pairs are sorted by comparison.
fn sort_pairs(pairs: &mut Vec<u64>) {
    let ascending = pairs.windows(2).all(|w| w[0] as u32 <= w[1] as u32);
    let top = pairs.iter().map(|&p| (p >> 32) as usize).max().unwrap_or(0);
    if !ascending || top > 4 * pairs.len() + 1024 {
        pairs.sort_unstable();
        return;
    }
    let mut at = vec![0usize; top + 2];
    for &p in pairs.iter() {
        at[(p >> 32) as usize + 1] += 1;
    }
    for c in 1..at.len() {
        at[c] += at[c - 1];
    }
    let mut sorted = vec![0u64; pairs.len()];
    for &p in pairs.iter() {
        let c = (p >> 32) as usize;
        sorted[at[c]] = p;
        at[c] += 1;
    }
    *pairs = sorted;
}

impl Index {
    /// Puts a bulk accumulator into the index. Single/bool filter and sort fields get `set`
    /// semantics even when the index is not empty: a slot the accumulator gives a value leaves
    /// its previous key / sort bits first. When the accumulator holds one slot under two keys of
    /// a single-value field, the greater key (integers before text, then by value) wins.
    pub fn merge_bulk(&mut self, acc: crate::index::write::bulk::BulkAccumulator) {
        self.finish_load();
        self.flush_pending();
        let parts = acc.into_parts();
        self.stats.add(&parts.stats);
        self.load_parents(parts.parents);
        self.state
            .alive
            .or_assign(&Bits::from_word_pages(&parts.alive));
        // Each field's state is its own: the fields merge in parallel.
        let mut tasks = Vec::new();
        let filters = self.state.filters.iter_mut().zip(self.key_cols.iter_mut());
        for (((fs, kc), single), multi) in filters.zip(parts.singles).zip(parts.multi) {
            match (single, kc) {
                (Some(single), Some(kc)) => tasks.push(Task::Single(fs, kc, single)),
                _ if !multi.is_empty() => tasks.push(Task::Multi(fs, multi)),
                _ => {}
            }
        }
        let sorts = self.sort_cols.iter_mut().zip(self.state.sorts.iter_mut());
        for ((col, layers), sort) in sorts.zip(parts.sorts) {
            if !sort.touched.is_empty() {
                tasks.push(Task::Sort(col, layers, sort));
            }
        }
        tasks.into_par_iter().for_each(|task| match task {
            Task::Single(fs, kc, single) => merge_single(fs, kc, single),
            Task::Multi(fs, map) => merge_multi(fs, map),
            Task::Sort(col, layers, sort) => {
                merge_sort(col, Arc::make_mut(layers).as_mut_slice(), sort);
            }
        });
    }
}

/// One field's share of a merge.
enum Task<'a> {
    Single(&'a mut FilterState, &'a mut KeyColumn, SingleParts),
    Multi(&'a mut FilterState, HashMap<RawKey, RoaringBitmap>),
    Sort(&'a mut Column, &'a mut Arc<Vec<Bits>>, SortParts),
}

fn merge_single(fs: &mut FilterState, kc: &mut KeyColumn, single: SingleParts) {
    // The index code of each dump code (NONE: a text key the dictionary has no room for).
    let keys: Vec<Option<Key>> = single.keys.iter().map(|raw| key_in(fs, raw)).collect();
    let mut remap = vec![NONE];
    for (raw, key) in single.keys.iter().zip(&keys) {
        remap.push(match key {
            Some(k) => kc.table.intern(*k),
            None if *raw == RawKey::Null => NULL,
            None => NONE,
        });
    }
    let mut pairs: Vec<u64> = Vec::new();
    let mut leaving: Vec<u64> = Vec::new();
    let mut put = |pairs: &mut Vec<u64>, leaving: &mut Vec<u64>| {
        let mut entries = Vec::new();
        for (code, bits) in runs(pairs) {
            match kc.table.key(code) {
                None => fs.null.or_assign(&bits),
                Some(k) => entries.push((k, bits)),
            }
        }
        fs.values.or_many(entries);
        for (code, gone) in runs(leaving) {
            match kc.table.key(code) {
                None => fs.null.andnot_assign(&gone),
                Some(k) => fs.values.subtract(&k, &gone),
            }
        }
        pairs.clear();
        leaving.clear();
    };
    let mut page_codes = vec![NONE; PAGE];
    for (p, codes) in single.codes {
        let base = p << PAGE_BITS;
        let fresh = kc.col.page_is_empty(p);
        for (o, &c) in codes.iter().enumerate() {
            let new = if c == 0 { NONE } else { remap[c as usize] };
            page_codes[o] = new;
            if new == NONE {
                continue;
            }
            let slot = base | o as u32;
            pairs.push(u64::from(new) << 32 | u64::from(slot));
            if !fresh {
                let old = kc.col.get(slot);
                if old != NONE && old != new {
                    leaving.push(u64::from(old) << 32 | u64::from(slot));
                }
                kc.col.set(slot, new);
            }
        }
        if fresh {
            kc.col.put_page(p, &page_codes);
        }
        if pairs.len() >= GROUP_PAIRS {
            put(&mut pairs, &mut leaving);
        }
    }
    put(&mut pairs, &mut leaving);
}

fn merge_multi(fs: &mut FilterState, map: HashMap<RawKey, RoaringBitmap>) {
    let mut entries = Vec::with_capacity(map.len());
    for (raw, bm) in map {
        let bits = Bits::from_roaring(bm);
        match key_in(fs, &raw) {
            Some(k) => entries.push((k, bits)),
            None if raw == RawKey::Null => fs.null.or_assign(&bits),
            None => {}
        }
    }
    fs.values.or_many(entries);
}

fn merge_sort(col: &mut Column, layers: &mut [Bits], sort: SortParts) {
    let touched = Bits::from_word_pages(&sort.touched);
    for layer in layers.iter_mut().filter(|l| !l.is_empty()) {
        layer.andnot_assign(&touched);
    }
    let nbits = layers.len();
    // A touched slot's value and touched bit are written together: the pages pair up.
    let pages: Vec<_> = sort.values.into_iter().zip(sort.touched).collect();
    // Groups are spread in parallel, a few per thread at a time (memory stays bounded).
    let window = GROUP_PAGES * 2 * rayon::current_num_threads();
    for groups in pages.chunks(window) {
        let spread: Vec<LayerPages> = groups
            .par_chunks(GROUP_PAGES)
            .map(|group| spread_layers(group.iter().map(|((p, v), _)| (*p, &v[..])), nbits))
            .collect();
        for ((p, values), (tp, words)) in groups {
            debug_assert_eq!(p, tp, "values and touched bits share their pages");
            if col.page_is_empty(*p) {
                col.put_page(*p, values);
                continue;
            }
            let base = p << PAGE_BITS;
            for (i, &w) in words.iter().enumerate() {
                for b in ones(w) {
                    let o = i * 64 + b as usize;
                    col.set(base | o as u32, values[o]);
                }
            }
        }
        for new_layers in spread {
            for (layer, pages) in layers.iter_mut().zip(&new_layers) {
                layer.or_assign(&Bits::from_word_pages(pages));
            }
        }
    }
}

/// Per sort layer, its non-empty pages of words.
type LayerPages = Vec<Vec<(u32, Vec<u64>)>>;

/// The pages of each of `nbits` layers for some pages of sort values: bit `b` of slot `o`'s
/// value as bit `o` of layer `b` (all-zero pages left out).
fn spread_layers<'a>(pages: impl Iterator<Item = (u32, &'a [u32])>, nbits: usize) -> LayerPages {
    const WORDS: usize = PAGE / 64;
    let mut out: LayerPages = vec![Vec::new(); nbits];
    let mut buf = vec![0u64; nbits * WORDS];
    for (p, values) in pages {
        if values.len() < PAGE {
            buf.fill(0);
        }
        for (w, chunk) in values.chunks(64).enumerate() {
            // A 64 × nbits bit transposition, without a branch per set bit.
            for b in 0..nbits.min(32) {
                let mut word = 0u64;
                for (i, &v) in chunk.iter().enumerate() {
                    word |= u64::from((v >> b) & 1) << i;
                }
                buf[b * WORDS + w] = word;
            }
        }
        for (b, layer) in out.iter_mut().enumerate() {
            let words = &buf[b * WORDS..(b + 1) * WORDS];
            if words.iter().any(|&w| w != 0) {
                layer.push((p, words.to_vec()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Pairs made page by page (slots ascending, few codes) and any other pairs sort as a
        /// comparison sort sorts them.
        #[test]
        fn pairs_sort_by_code_then_slot(
            codes in prop::collection::vec(0u64..40, 0..3000),
            start in 0u32..1000,
            any_pairs in prop::collection::vec(any::<u64>(), 0..300),
        ) {
            let mut paged: Vec<u64> = codes
                .iter()
                .enumerate()
                .map(|(i, &c)| c << 32 | u64::from(start + 3 * i as u32))
                .collect();
            for pairs in [&mut paged, &mut any_pairs.clone()] {
                let mut want = pairs.clone();
                want.sort_unstable();
                sort_pairs(pairs);
                prop_assert_eq!(&*pairs, &want);
            }
        }
    }
}
