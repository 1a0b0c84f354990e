//! Merging a bulk accumulator (a bootstrap's per-thread bitmaps) into the writer's state.

use std::collections::HashMap;
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::Index;
use super::bits::Bits;
use super::columns::{NONE, NULL};
use super::keys::RawKey;

impl Index {
    /// ORs a bulk accumulator into the index. Single/bool filter and sort fields get `set`
    /// semantics even when the index is not empty: a slot the accumulator gives a value leaves
    /// its previous key / sort bits first. When the accumulator holds one slot under two keys of
    /// a single-value field, the greater key (integers before text, then by value) wins.
    pub fn merge_bulk(&mut self, acc: crate::sink::bulk::BulkAccumulator) {
        self.flush_pending();
        let parts = acc.into_parts();
        self.stats.add(&parts.stats);
        self.state.alive.or_assign(&Bits::from_roaring(parts.alive));
        for (fi, map) in parts.filters.into_iter().enumerate() {
            let mut entries: Vec<(RawKey, RoaringBitmap)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (raw, bm) in entries {
                let key = self.key_of(fi, &raw);
                if key.is_none() && raw != RawKey::Null {
                    continue;
                }
                if let Some(kc) = self.key_cols[fi].as_mut() {
                    let new = key.map_or(NULL, |k| kc.table.intern(k));
                    let mut leaving: HashMap<u32, RoaringBitmap> = HashMap::new();
                    for slot in &bm {
                        let old = kc.col.get(slot);
                        if old != NONE && old != new {
                            leaving.entry(old).or_default().insert(slot);
                        }
                        kc.col.set(slot, new);
                    }
                    let fs = &mut self.state.filters[fi];
                    for (code, gone) in leaving {
                        let gone = Bits::from_roaring(gone);
                        match kc.table.key(code) {
                            None => fs.null.andnot_assign(&gone),
                            Some(k) => fs.values.subtract(&k, &gone),
                        }
                    }
                }
                let bits = Bits::from_roaring(bm);
                let fs = &mut self.state.filters[fi];
                match key {
                    None => fs.null.or_assign(&bits),
                    Some(k) => fs.values.or_into(k, &bits),
                }
            }
        }
        for (si, sort) in parts.sorts.into_iter().enumerate() {
            if sort.touched.is_empty() {
                continue;
            }
            let col = &mut self.sort_cols[si];
            for slot in &sort.touched {
                col.set(slot, 0);
            }
            let touched = Bits::from_roaring(sort.touched);
            let layers = Arc::make_mut(&mut self.state.sorts[si]);
            for (b, (layer, add)) in layers.iter_mut().zip(sort.layers).enumerate() {
                layer.andnot_assign(&touched);
                for slot in &add {
                    col.set(slot, col.get(slot) | 1 << b);
                }
                layer.or_assign(&Bits::from_roaring(add));
            }
        }
    }
}
