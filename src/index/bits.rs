//! `Bits`: a copy-on-write, chunked roaring bitmap over slot ids.
//!
//! A `Bits` is `Arc<Vec<(chunk id, Arc<RoaringBitmap>)>>`: the slot space is cut into chunks of
//! 2^[`CHUNK_BITS`] slots, each chunk a roaring bitmap holding the full slot values that fall in
//! it. Invariants: chunk ids strictly increase, no chunk is empty, and every value of a chunk lies
//! in that chunk's range.
//!
//! Cost model (n = slots in the bitmap, c = chunks present):
//! * `clone` (what a snapshot does): one refcount increment.
//! * The first write after a clone copies the chunk list (c pointers, at 10^8 slots at most
//!   96 entries) and the one touched chunk (at most 2^20 bits = 128 KiB); later writes to that
//!   chunk before the next clone copy nothing. A write that changes nothing copies nothing.
//!   The writer's writes to a bitmap it alone owns skip the checks that avoid those copies.
//! * Binary operations work chunk by chunk and share untouched chunks of an input by refcount
//!   (e.g. OR with a chunk present on one side only). The in-place variants (`or_assign`,
//!   `and_assign`, `andnot_assign`) update chunks the bitmap alone owns without copying (a
//!   query's intermediate results) and copy shared chunks only when they change.

use std::ops::RangeInclusive;
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::writes::{Write, sets, slot_of, winners};

/// Bits of slot id that select the chunk: chunks hold 2^20 slots.
pub(crate) const CHUNK_BITS: u32 = 20;

type Chunk = (u32, Arc<RoaringBitmap>);

/// Up to this many logged writes to one bitmap are applied one by one rather than merged.
pub(crate) const FEW_WRITES: usize = 8;

/// A copy-on-write chunked bitmap of slots (see the module note for the cost model).
#[derive(Clone)]
pub(crate) struct Bits {
    chunks: Arc<Vec<Chunk>>,
}

impl Default for Bits {
    fn default() -> Self {
        Bits::build(Vec::new())
    }
}

impl std::fmt::Debug for Bits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

fn chunk_of(slot: u32) -> u32 {
    slot >> CHUNK_BITS
}

/// The slots of chunk `id`.
pub(crate) fn chunk_range(id: u32) -> RangeInclusive<u32> {
    let lo = id << CHUNK_BITS;
    lo..=lo | ((1u32 << CHUNK_BITS) - 1)
}

impl Bits {
    /// An empty bitmap.
    pub(crate) fn new() -> Self {
        Bits::default()
    }

    fn build(chunks: Vec<Chunk>) -> Self {
        Bits {
            chunks: Arc::new(chunks),
        }
    }

    /// Moves the chunk list out for rebuilding (copying it first if a clone shares it, so its
    /// chunks then count as shared and are copied when changed).
    fn take_chunks(&mut self) -> Vec<Chunk> {
        std::mem::take(Arc::make_mut(&mut self.chunks))
    }

    /// Applies `f` to the chunk list (adding or dropping a chunk), copying it if shared.
    fn edit(&mut self, f: impl FnOnce(&mut Vec<Chunk>)) {
        f(Arc::make_mut(&mut self.chunks));
    }

    /// Splits a plain bitmap into chunks (moves it whole when it fits in one chunk).
    pub(crate) fn from_roaring(bm: RoaringBitmap) -> Self {
        let (Some(min), Some(max)) = (bm.min(), bm.max()) else {
            return Bits::new();
        };
        let (first, last) = (chunk_of(min), chunk_of(max));
        if first == last {
            return Bits::build(vec![(first, Arc::new(bm))]);
        }
        let mut chunks = Vec::new();
        for id in first..=last {
            let part = RoaringBitmap::from_sorted_iter(bm.range(chunk_range(id)))
                .expect("a range iterator yields sorted values");
            if !part.is_empty() {
                chunks.push((id, Arc::new(part)));
            }
        }
        Bits::build(chunks)
    }

    /// Builds from chunks; `None` when the chunk invariants (see the module note) do not hold.
    pub(crate) fn from_chunks(chunks: Vec<(u32, RoaringBitmap)>) -> Option<Self> {
        let mut out: Vec<Chunk> = Vec::with_capacity(chunks.len());
        for (id, bm) in chunks {
            if out.last().is_some_and(|(prev, _)| *prev >= id) || id > chunk_of(u32::MAX) {
                return None;
            }
            let range = chunk_range(id);
            match (bm.min(), bm.max()) {
                (Some(lo), Some(hi)) if range.contains(&lo) && range.contains(&hi) => {
                    out.push((id, Arc::new(bm)))
                }
                _ => return None,
            }
        }
        Some(Bits::build(out))
    }

    /// The chunks, in increasing id order.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = (u32, &RoaringBitmap)> {
        self.chunks.iter().map(|(id, bm)| (*id, &**bm))
    }

    /// Concatenates the chunks into one plain bitmap.
    #[cfg(test)]
    pub(crate) fn to_roaring(&self) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for (_, bm) in self.chunks.iter() {
            out |= &**bm;
        }
        out
    }

    /// True when no slot is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Number of slots set.
    pub(crate) fn len(&self) -> u64 {
        self.chunks.iter().map(|(_, bm)| bm.len()).sum()
    }

    fn find(&self, id: u32) -> Result<usize, usize> {
        self.chunks.binary_search_by_key(&id, |(c, _)| *c)
    }

    /// Whether `slot` is set.
    pub(crate) fn contains(&self, slot: u32) -> bool {
        match self.find(chunk_of(slot)) {
            Ok(i) => self.chunks[i].1.contains(slot),
            Err(_) => false,
        }
    }

    /// Sets `slot`; copies nothing when it was already set. Returns whether it was added.
    pub(crate) fn insert(&mut self, slot: u32) -> bool {
        let id = chunk_of(slot);
        let i = match self.find(id) {
            Ok(i) => i,
            Err(i) => {
                let chunk = Arc::new(RoaringBitmap::from_iter([slot]));
                self.edit(|chunks| chunks.insert(i, (id, chunk)));
                return true;
            }
        };
        if let Some(chunks) = Arc::get_mut(&mut self.chunks) {
            // The writer's common case: the chunk list is ours, so no copy can be triggered and
            // no pre-check is needed (roaring reports whether the slot was new).
            return match Arc::get_mut(&mut chunks[i].1) {
                Some(bm) => bm.insert(slot),
                None => !chunks[i].1.contains(slot) && Arc::make_mut(&mut chunks[i].1).insert(slot),
            };
        }
        if self.chunks[i].1.contains(slot) {
            return false;
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        Arc::make_mut(&mut chunks[i].1).insert(slot)
    }

    /// Clears `slot`; copies nothing when it was not set. Returns whether it was removed.
    pub(crate) fn remove(&mut self, slot: u32) -> bool {
        let Ok(i) = self.find(chunk_of(slot)) else {
            return false;
        };
        if let Some(chunks) = Arc::get_mut(&mut self.chunks) {
            // As in `insert`: an owned chunk list needs no pre-check.
            let removed = match Arc::get_mut(&mut chunks[i].1) {
                Some(bm) => bm.remove(slot),
                None => chunks[i].1.contains(slot) && Arc::make_mut(&mut chunks[i].1).remove(slot),
            };
            if removed && chunks[i].1.is_empty() {
                chunks.remove(i);
            }
            return removed;
        }
        if !self.chunks[i].1.contains(slot) {
            return false;
        }
        if self.chunks[i].1.len() == 1 {
            self.edit(|chunks| {
                chunks.remove(i);
            });
        } else {
            Arc::make_mut(&mut Arc::make_mut(&mut self.chunks)[i].1).remove(slot);
        }
        true
    }

    /// Applies logged writes (see [`writes`](super::writes)) sorted by slot and then op order:
    /// the last write of each slot wins. A few writes go one by one; more are merged in as two
    /// sorted sets, chunk by chunk (sequential access, roaring's container merges). A shared
    /// bitmap is copied only where the writes change it.
    pub(crate) fn apply_sorted(&mut self, writes: &[Write]) {
        if writes.len() <= FEW_WRITES {
            for w in winners(writes) {
                if sets(w) {
                    self.insert(slot_of(w));
                } else {
                    self.remove(slot_of(w));
                }
            }
            return;
        }
        let shared = Arc::strong_count(&self.chunks) > 1
            || self.chunks.iter().any(|(_, c)| Arc::strong_count(c) > 1);
        let (mut add, mut rem) = (Vec::new(), Vec::new());
        for w in winners(writes) {
            let slot = slot_of(w);
            // Writes that change nothing are dropped first when copying is at stake.
            if shared && self.contains(slot) == sets(w) {
                continue;
            }
            if sets(w) {
                add.push(slot);
            } else {
                rem.push(slot);
            }
        }
        let sorted = |slots: Vec<u32>| {
            Bits::from_roaring(
                RoaringBitmap::from_sorted_iter(slots).expect("slots are sorted and distinct"),
            )
        };
        if !add.is_empty() {
            self.or_assign(&sorted(add));
        }
        if !rem.is_empty() {
            self.andnot_assign(&sorted(rem));
        }
    }

    /// Ascending iterator over the slots.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.chunks.iter().flat_map(|(_, bm)| bm.iter())
    }

    /// `self ∩ other`.
    pub(crate) fn and(&self, other: &Bits) -> Bits {
        let (a, b) = (&self.chunks, &other.chunks);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    if Arc::ptr_eq(&a[i].1, &b[j].1) {
                        out.push(a[i].clone());
                    } else {
                        let r = &*a[i].1 & &*b[j].1;
                        if !r.is_empty() {
                            out.push((a[i].0, Arc::new(r)));
                        }
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Bits::build(out)
    }

    /// `|self ∩ other|` without building the intersection.
    pub(crate) fn and_len(&self, other: &Bits) -> u64 {
        let (a, b) = (&self.chunks, &other.chunks);
        let (mut i, mut j, mut n) = (0, 0, 0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    n += a[i].1.intersection_len(&b[j].1);
                    i += 1;
                    j += 1;
                }
            }
        }
        n
    }

    /// `self ∪ other`; chunks present on one side only are shared, not copied.
    pub(crate) fn or(&self, other: &Bits) -> Bits {
        if self.is_empty() {
            return other.clone();
        }
        if other.is_empty() {
            return self.clone();
        }
        let (a, b) = (&self.chunks, &other.chunks);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        while i < a.len() || j < b.len() {
            let ord = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.0.cmp(&y.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    out.push(a[i].clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j].clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if Arc::ptr_eq(&a[i].1, &b[j].1) {
                        out.push(a[i].clone());
                    } else {
                        out.push((a[i].0, Arc::new(&*a[i].1 | &*b[j].1)));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Bits::build(out)
    }

    /// `self − other`; chunks `other` lacks are shared, not copied.
    pub(crate) fn andnot(&self, other: &Bits) -> Bits {
        if other.is_empty() {
            return self.clone();
        }
        let b = &other.chunks;
        let mut j = 0;
        let mut out = Vec::with_capacity(self.chunks.len());
        for (id, bm) in self.chunks.iter() {
            while j < b.len() && b[j].0 < *id {
                j += 1;
            }
            if j < b.len() && b[j].0 == *id {
                if Arc::ptr_eq(bm, &b[j].1) {
                    continue;
                }
                let r = &**bm - &*b[j].1;
                if !r.is_empty() {
                    out.push((*id, Arc::new(r)));
                }
            } else {
                out.push((*id, bm.clone()));
            }
        }
        Bits::build(out)
    }

    /// In place `self ∪= other`. Chunks `self` lacks are shared; chunks only `self` owns are
    /// updated without copying (a query's intermediate results), shared ones are copied once.
    pub(crate) fn or_assign(&mut self, other: &Bits) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = other.clone();
            return;
        }
        let mine = self.take_chunks();
        let b = &other.chunks;
        let mut out = Vec::with_capacity(mine.len().max(b.len()));
        let mut j = 0;
        for (id, mut bm) in mine {
            while j < b.len() && b[j].0 < id {
                out.push(b[j].clone());
                j += 1;
            }
            if j < b.len() && b[j].0 == id {
                if !Arc::ptr_eq(&bm, &b[j].1) {
                    *Arc::make_mut(&mut bm) |= &*b[j].1;
                }
                j += 1;
            }
            out.push((id, bm));
        }
        out.extend(b[j..].iter().cloned());
        *Arc::make_mut(&mut self.chunks) = out;
    }

    /// In place `self ∩= other`; chunks only `self` owns are updated without copying.
    pub(crate) fn and_assign(&mut self, other: &Bits) {
        let mine = self.take_chunks();
        let b = &other.chunks;
        let mut out = Vec::with_capacity(mine.len().min(b.len()));
        let mut j = 0;
        for (id, mut bm) in mine {
            while j < b.len() && b[j].0 < id {
                j += 1;
            }
            if j < b.len() && b[j].0 == id {
                if !Arc::ptr_eq(&bm, &b[j].1) {
                    *Arc::make_mut(&mut bm) &= &*b[j].1;
                }
                if !bm.is_empty() {
                    out.push((id, bm));
                }
            }
        }
        *Arc::make_mut(&mut self.chunks) = out;
    }

    /// In place `self −= other`; copies only shared chunks that actually lose slots (the
    /// writer's pending cleanup relies on this), updates chunks only `self` owns in place.
    pub(crate) fn andnot_assign(&mut self, other: &Bits) {
        if other.is_empty() || self.is_empty() {
            return;
        }
        let b = &other.chunks;
        let hits = |id: u32, bm: &RoaringBitmap| {
            b.binary_search_by_key(&id, |(c, _)| *c)
                .ok()
                .filter(|&j| !bm.is_disjoint(&b[j].1))
        };
        if Arc::get_mut(&mut self.chunks).is_none()
            && !self.chunks.iter().any(|(id, bm)| hits(*id, bm).is_some())
        {
            return;
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        for (id, bm) in chunks.iter_mut() {
            if let Some(own) = Arc::get_mut(bm) {
                if let Ok(j) = b.binary_search_by_key(id, |(c, _)| *c) {
                    *own -= &*b[j].1;
                }
            } else if let Some(j) = hits(*id, bm) {
                *Arc::make_mut(bm) -= &*b[j].1;
            }
        }
        chunks.retain(|(_, bm)| !bm.is_empty());
    }

    /// The slots within `range`.
    pub(crate) fn restrict(&self, range: RangeInclusive<u32>) -> Bits {
        let (lo, hi) = (*range.start(), *range.end());
        if lo > hi {
            return Bits::new();
        }
        let mut out = Vec::new();
        for (id, bm) in self.chunks.iter() {
            let cr = chunk_range(*id);
            if *cr.end() < lo || *cr.start() > hi {
                continue;
            }
            if *cr.start() >= lo && *cr.end() <= hi {
                out.push((*id, bm.clone()));
                continue;
            }
            let mut part = (**bm).clone();
            if lo > *cr.start() {
                part.remove_range(..lo);
            }
            if hi < *cr.end() {
                part.remove_range(hi + 1..);
            }
            if !part.is_empty() {
                out.push((*id, Arc::new(part)));
            }
        }
        Bits::build(out)
    }
}

impl PartialEq for Bits {
    fn eq(&self, other: &Self) -> bool {
        self.chunks.len() == other.chunks.len()
            && self
                .chunks
                .iter()
                .zip(other.chunks.iter())
                .all(|(a, b)| a.0 == b.0 && (Arc::ptr_eq(&a.1, &b.1) || a.1 == b.1))
    }
}

impl FromIterator<u32> for Bits {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        Bits::from_roaring(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn far_slots() -> impl Strategy<Value = Vec<u32>> {
        // Values spread over a few chunks, including the last one.
        prop::collection::vec(
            prop_oneof![
                0u32..5000,
                (1u32 << 20)..(1u32 << 20) + 5000,
                (5u32 << 20)..(5u32 << 20) + 100,
                u32::MAX - 100..=u32::MAX,
            ],
            0..200,
        )
    }

    fn set(b: &Bits) -> BTreeSet<u32> {
        b.iter().collect()
    }

    proptest! {
        #[test]
        fn set_algebra_matches_btreeset(a in far_slots(), b in far_slots(), lo in any::<u32>(), hi in any::<u32>()) {
            let (ba, bb): (Bits, Bits) = (a.iter().copied().collect(), b.iter().copied().collect());
            let (sa, sb): (BTreeSet<u32>, BTreeSet<u32>) = (a.into_iter().collect(), b.into_iter().collect());
            prop_assert_eq!(set(&ba.and(&bb)), sa.intersection(&sb).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(ba.and_len(&bb), sa.intersection(&sb).count() as u64);
            prop_assert_eq!(set(&ba.or(&bb)), sa.union(&sb).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(set(&ba.andnot(&bb)), sa.difference(&sb).copied().collect::<BTreeSet<_>>());
            let mut c = ba.clone();
            c.andnot_assign(&bb);
            prop_assert_eq!(set(&c), sa.difference(&sb).copied().collect::<BTreeSet<_>>());
            let mut d = ba.clone();
            d.or_assign(&bb);
            prop_assert_eq!(set(&d), sa.union(&sb).copied().collect::<BTreeSet<_>>());
            let mut e = ba.clone();
            e.and_assign(&bb);
            prop_assert_eq!(set(&e), sa.intersection(&sb).copied().collect::<BTreeSet<_>>());
            // In-place ops on a clone never change the original.
            prop_assert_eq!(set(&ba), sa.clone());
            prop_assert_eq!(set(&ba.restrict(lo..=hi)), sa.iter().copied().filter(|v| (lo..=hi).contains(v)).collect::<BTreeSet<_>>());
            prop_assert_eq!(ba.len(), sa.len() as u64);
            prop_assert_eq!(ba.iter().rev().collect::<Vec<_>>(), sa.iter().rev().copied().collect::<Vec<_>>());
            prop_assert_eq!(ba.to_roaring(), sa.iter().copied().collect::<RoaringBitmap>());
            // The invariants hold for every result: no empty chunk, values in range.
            for r in [ba.and(&bb), ba.or(&bb), ba.andnot(&bb), c, d, e] {
                let chunks: Vec<(u32, RoaringBitmap)> = r.chunks().map(|(i, b)| (i, b.clone())).collect();
                prop_assert!(Bits::from_chunks(chunks).is_some());
            }
        }

        #[test]
        fn logged_writes_match_btreeset(
            start in far_slots(),
            writes in prop::collection::vec((far_slots(), any::<bool>()), 1..6),
            keep_snapshot in any::<bool>(),
        ) {
            let mut b: Bits = start.iter().copied().collect();
            let mut s: BTreeSet<u32> = start.into_iter().collect();
            let snap = keep_snapshot.then(|| (b.clone(), s.clone()));
            let mut log = Vec::new();
            for (slots, set) in writes {
                for v in slots {
                    log.push(u64::from(v) << 32 | (log.len() as u64) << 1 | u64::from(set));
                    if set {
                        s.insert(v);
                    } else {
                        s.remove(&v);
                    }
                }
            }
            log.sort_unstable();
            b.apply_sorted(&log);
            prop_assert_eq!(set(&b), s);
            let chunks: Vec<(u32, RoaringBitmap)> = b.chunks().map(|(i, c)| (i, c.clone())).collect();
            prop_assert!(Bits::from_chunks(chunks).is_some());
            if let Some((snap, before)) = snap {
                prop_assert_eq!(set(&snap), before);
            }
        }

        #[test]
        fn insert_remove_match_btreeset(ops in prop::collection::vec((any::<bool>(), far_slots()), 1..10)) {
            let mut b = Bits::new();
            let mut s = BTreeSet::new();
            for (ins, slots) in ops {
                for v in slots {
                    if ins {
                        prop_assert_eq!(b.insert(v), s.insert(v));
                    } else {
                        prop_assert_eq!(b.remove(v), s.remove(&v));
                    }
                    prop_assert_eq!(b.contains(v), s.contains(&v));
                }
            }
            prop_assert_eq!(set(&b), s);
        }
    }

    #[test]
    fn a_write_after_a_clone_copies_only_the_touched_chunk() {
        let mut w: Bits = [1u32, 2, (1 << 20) + 1, (3 << 20) + 7]
            .into_iter()
            .collect();
        let snap = w.clone();
        assert!(Arc::ptr_eq(&w.chunks, &snap.chunks));
        w.insert(3);
        assert!(!Arc::ptr_eq(&w.chunks, &snap.chunks));
        assert!(!Arc::ptr_eq(&w.chunks[0].1, &snap.chunks[0].1));
        assert!(Arc::ptr_eq(&w.chunks[1].1, &snap.chunks[1].1));
        assert!(Arc::ptr_eq(&w.chunks[2].1, &snap.chunks[2].1));
        assert!(!snap.contains(3) && w.contains(3));
        // A no-op write copies nothing.
        let snap2 = w.clone();
        w.insert(3);
        w.remove(999);
        assert!(Arc::ptr_eq(&w.chunks, &snap2.chunks));
    }

    #[test]
    fn from_chunks_rejects_broken_invariants() {
        let bm = |v: &[u32]| v.iter().copied().collect::<RoaringBitmap>();
        assert!(Bits::from_chunks(vec![(0, bm(&[1])), (1, bm(&[1 << 20]))]).is_some());
        assert!(Bits::from_chunks(vec![(1, bm(&[1 << 20])), (0, bm(&[1]))]).is_none());
        assert!(Bits::from_chunks(vec![(0, bm(&[1 << 20]))]).is_none());
        assert!(Bits::from_chunks(vec![(0, bm(&[]))]).is_none());
        assert!(Bits::from_chunks(vec![(0, bm(&[1])), (0, bm(&[2]))]).is_none());
    }
}
