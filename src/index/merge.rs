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

use roaring::RoaringBitmap;

use super::Index;
use super::bits::{Bits, ones};
use super::columns::{NONE, NULL, PAGE, PAGE_BITS};
use super::keys::{Key, RawKey};
use crate::sink::bulk::{SingleParts, SortParts};

/// Pairs (code, slot) a single-value field sorts at a time.
const GROUP_PAIRS: usize = 1 << 20;
/// Pages a sort field's layers are built from at a time (one bitmap chunk).
const GROUP_PAGES: usize = 16;

/// Bitmaps of runs of `code << 32 | slot` pairs, sorted: (code, slots) per code.
fn runs(pairs: &mut [u64]) -> impl Iterator<Item = (u32, Bits)> + '_ {
    pairs.sort_unstable();
    let mut slots = Vec::new();
    pairs.chunk_by(|a, b| a >> 32 == b >> 32).map(move |run| {
        slots.clear();
        slots.extend(run.iter().map(|&p| p as u32));
        ((run[0] >> 32) as u32, Bits::from_sorted(&slots))
    })
}

impl Index {
    /// Puts a bulk accumulator into the index. Single/bool filter and sort fields get `set`
    /// semantics even when the index is not empty: a slot the accumulator gives a value leaves
    /// its previous key / sort bits first. When the accumulator holds one slot under two keys of
    /// a single-value field, the greater key (integers before text, then by value) wins.
    pub fn merge_bulk(&mut self, acc: crate::sink::bulk::BulkAccumulator) {
        self.flush_pending();
        let parts = acc.into_parts();
        self.stats.add(&parts.stats);
        self.state
            .alive
            .or_assign(&Bits::from_word_pages(&parts.alive));
        for (fi, single) in parts.singles.into_iter().enumerate() {
            if let Some(single) = single {
                self.merge_single(fi, single);
            }
        }
        for (fi, map) in parts.multi.into_iter().enumerate() {
            if !map.is_empty() {
                self.merge_multi(fi, map);
            }
        }
        for (si, sort) in parts.sorts.into_iter().enumerate() {
            self.merge_sort(si, sort);
        }
    }

    fn merge_single(&mut self, fi: usize, single: SingleParts) {
        // The index code of each dump code (NONE: a text key the dictionary has no room for).
        let keys: Vec<Option<Key>> = single.keys.iter().map(|raw| self.key_of(fi, raw)).collect();
        let kc = self.key_cols[fi]
            .as_mut()
            .expect("single/bool fields have a column");
        let mut remap = vec![NONE];
        for (raw, key) in single.keys.iter().zip(&keys) {
            remap.push(match key {
                Some(k) => kc.table.intern(*k),
                None if *raw == RawKey::Null => NULL,
                None => NONE,
            });
        }
        let fs = &mut self.state.filters[fi];
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

    fn merge_multi(&mut self, fi: usize, map: HashMap<RawKey, RoaringBitmap>) {
        let mut entries = Vec::with_capacity(map.len());
        for (raw, bm) in map {
            let bits = Bits::from_roaring(bm);
            match self.key_of(fi, &raw) {
                Some(k) => entries.push((k, bits)),
                None if raw == RawKey::Null => self.state.filters[fi].null.or_assign(&bits),
                None => {}
            }
        }
        self.state.filters[fi].values.or_many(entries);
    }

    fn merge_sort(&mut self, si: usize, sort: SortParts) {
        if sort.touched.is_empty() {
            return;
        }
        let col = &mut self.sort_cols[si];
        let layers = Arc::make_mut(&mut self.state.sorts[si]);
        let touched = Bits::from_word_pages(&sort.touched);
        for layer in layers.iter_mut().filter(|l| !l.is_empty()) {
            layer.andnot_assign(&touched);
        }
        const WORDS: usize = PAGE / 64;
        let nbits = layers.len();
        let mut buf = vec![0u64; nbits * WORDS];
        // A touched slot's value and touched bit are written together: the pages pair up.
        let pages: Vec<_> = sort.values.into_iter().zip(sort.touched).collect();
        for group in pages.chunks(GROUP_PAGES) {
            let mut new_layers: Vec<Vec<(u32, Vec<u64>)>> = vec![Vec::new(); nbits];
            for ((p, values), (tp, words)) in group {
                debug_assert_eq!(p, tp, "values and touched bits share their pages");
                let base = p << PAGE_BITS;
                if col.page_is_empty(*p) {
                    col.put_page(*p, values);
                } else {
                    for (i, &w) in words.iter().enumerate() {
                        for b in ones(w) {
                            let o = i * 64 + b as usize;
                            col.set(base | o as u32, values[o]);
                        }
                    }
                }
                // Spread each value's bits over the layers' words for this page.
                for (o, &v) in values.iter().enumerate() {
                    for b in ones(u64::from(v))
                        .map(|b| b as usize)
                        .filter(|&b| b < nbits)
                    {
                        buf[b * WORDS + o / 64] |= 1 << (o % 64);
                    }
                }
                for (b, pages) in new_layers.iter_mut().enumerate() {
                    let words = &mut buf[b * WORDS..(b + 1) * WORDS];
                    if words.iter().any(|&w| w != 0) {
                        pages.push((*p, words.to_vec()));
                        words.fill(0);
                    }
                }
            }
            for (layer, pages) in layers.iter_mut().zip(&new_layers) {
                layer.or_assign(&Bits::from_word_pages(pages));
            }
        }
    }
}
