//! A filter field's value map (key → slots), sharded for cheap copy-on-write.
//!
//! The map is a vector of shards, each one `Arc<[(Key, Bits)]>` sorted by key (a lookup is a
//! binary search one memory access from the shard vector; a key added or dropped rebuilds its
//! shard, a few dozen entries at most until a field passes ~10^6 keys). A snapshot bumps one
//! refcount. The first write after it copies the shard vector (one refcount per shard) and the
//! touched shard (one refcount per key in it, each on that key's own bitmap: a cache miss
//! apiece), never the whole map. A batch touching `t` keys of `K` after a snapshot so costs
//! about `N + t·K/N` refcounts with `N` shards: few shards suit a field of few keys, many shards
//! a `userId`-like field of millions. The map keeps `N` between 16·√K and 32·√K (at least 2^8,
//! at most 2^16 shards) and re-shards as keys arrive: each doubling rebuilds the map once, when
//! `K` has grown fourfold, so growth costs O(1) per key amortized. It never shrinks.

use std::collections::HashMap;
use std::sync::Arc;

use super::bits::Bits;
use super::keys::Key;
use super::packed::{Write, sets, slot_of, winners};
use super::size::{ARC, vec_bytes};
use crate::hash::{KeyHash, seed};

/// A map keyed by [`Key`] with the fast [`KeyHash`].
pub(crate) type KeyHashMap<V> = HashMap<Key, V, KeyHash>;

/// Fewest and most shard bits.
const MIN_BITS: u32 = 8;
const MAX_BITS: u32 = 16;

/// Whether a map of `keys` keys wants more than `bits` shard bits (more than 16·√keys shards).
fn wants_more(bits: u32, keys: usize) -> bool {
    bits < MAX_BITS && keys as u64 > 1 << (2 * bits - 8)
}

/// The shard of `k` among `1 << bits` (the top bits of a seeded mix of the key, independent of
/// the in-shard hash).
fn shard_of(k: &Key, bits: u32) -> usize {
    let x = k.word() ^ seed().rotate_left(32);
    // splitmix64 finalizer: spreads sequential ids across shards.
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> (64 - bits)) as usize
}

/// A shard: its (key, slots) entries sorted by key, in one allocation with the refcount, so a
/// lookup is one memory access away from the shard vector (which stays in cache), and that
/// access can be prefetched without looking anything up.
type Shard = Arc<[(Key, Bits)]>;

/// The position of `k` in a shard, or where it would go.
fn find(shard: &[(Key, Bits)], k: &Key) -> Result<usize, usize> {
    shard.binary_search_by(|(x, _)| x.cmp(k))
}

/// A field's key → slots map, sharded for cheap copy-on-write (see the module note).
#[derive(Clone)]
pub(crate) struct KeyMap {
    shards: Arc<Vec<Shard>>,
    /// `shards.len() == 1 << bits`.
    bits: u32,
    /// Number of keys (each with at least one slot).
    len: usize,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap::with_bits(MIN_BITS)
    }
}

impl KeyMap {
    fn with_bits(bits: u32) -> KeyMap {
        let empty: Shard = Arc::from(Vec::new());
        KeyMap {
            shards: Arc::new(vec![empty; 1 << bits]),
            bits,
            len: 0,
        }
    }

    fn shard_of(&self, k: &Key) -> usize {
        shard_of(k, self.bits)
    }

    /// The slots keyed by `k`.
    pub(crate) fn get(&self, k: &Key) -> Option<&Bits> {
        let shard = &self.shards[self.shard_of(k)];
        find(shard, k).ok().map(|j| &shard[j].1)
    }

    /// Every (key, slots) pair, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &Bits)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, b)| (k, b)))
    }

    /// Number of keys with at least one slot.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes of the map: its shards and every key's bitmap (see [`super::size`]).
    pub(crate) fn heap_bytes(&self) -> u64 {
        let shards = vec_bytes::<Shard>(self.shards.len());
        let entries: u64 = self
            .shards
            .iter()
            .map(|s| ARC + vec_bytes::<(Key, Bits)>(s.len()))
            .sum();
        shards + entries + self.iter().map(|(_, b)| b.heap_bytes()).sum::<u64>()
    }

    /// Whether this map alone owns shard `i` (and so may change it without copying).
    fn owns_shard(&mut self, i: usize) -> bool {
        Arc::get_mut(&mut self.shards).is_some_and(|v| Arc::get_mut(&mut v[i]).is_some())
    }

    /// Shard `i`'s entries, copied first if shared.
    fn shard_mut(&mut self, i: usize) -> &mut [(Key, Bits)] {
        Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[i])
    }

    /// Replaces shard `i` by its entries as `edit` leaves them (moved out when the map owns the
    /// shard, cloned when it is shared).
    fn rebuild_shard(&mut self, i: usize, edit: impl FnOnce(&mut Vec<(Key, Bits)>)) {
        let shards = Arc::make_mut(&mut self.shards);
        let mut entries: Vec<(Key, Bits)> = match Arc::get_mut(&mut shards[i]) {
            Some(owned) => owned
                .iter_mut()
                .map(|(k, b)| (*k, std::mem::take(b)))
                .collect(),
            None => shards[i].to_vec(),
        };
        edit(&mut entries);
        shards[i] = Arc::from(entries);
    }

    /// Adds key `k` with `bits` at position `j` of shard `i`.
    fn add_key(&mut self, i: usize, j: usize, k: Key, bits: Bits) {
        self.rebuild_shard(i, |e| e.insert(j, (k, bits)));
        self.len += 1;
        if wants_more(self.bits, self.len) {
            self.reshard(self.bits + 1);
        }
    }

    /// Drops the entries of shard `i` whose bitmap is empty.
    fn drop_empty(&mut self, i: usize) {
        let before = self.shards[i].len();
        self.rebuild_shard(i, |e| e.retain(|(_, b)| !b.is_empty()));
        self.len -= before - self.shards[i].len();
    }

    /// Rebuilds the map with `1 << bits` shards (bitmaps are shared, not copied).
    fn reshard(&mut self, bits: u32) {
        let mut shards: Vec<Vec<(Key, Bits)>> = vec![Vec::new(); 1 << bits];
        for (k, b) in self.iter() {
            shards[shard_of(k, bits)].push((*k, b.clone()));
        }
        self.shards = Arc::new(
            shards
                .into_iter()
                .map(|mut e| {
                    e.sort_unstable_by_key(|(k, _)| *k);
                    Arc::from(e)
                })
                .collect(),
        );
        self.bits = bits;
    }

    /// Adds `slot` under `k`; copies nothing when it is already there.
    pub(crate) fn insert(&mut self, k: Key, slot: u32) {
        let i = self.shard_of(&k);
        match find(&self.shards[i], &k) {
            Ok(j) => {
                if self.owns_shard(i) || !self.shards[i][j].1.contains(slot) {
                    self.shard_mut(i)[j].1.insert(slot);
                }
            }
            Err(j) => {
                let mut bits = Bits::default();
                bits.insert(slot);
                self.add_key(i, j, k, bits);
            }
        }
    }

    /// Starts loading the entries of key `k`'s shard into cache, without waiting for anything
    /// (their address and count are in the shard vector).
    pub(crate) fn prefetch_shard(&self, k: &Key) {
        let shard = &self.shards[self.shard_of(k)];
        let at = shard.as_ptr().cast::<u8>();
        // The refcounts sit just before the entries.
        super::prefetch::line(at.wrapping_sub(16));
        let bytes = std::mem::size_of_val::<[(Key, Bits)]>(shard);
        for line in (64..bytes.min(512)).step_by(64) {
            super::prefetch::line(at.wrapping_add(line));
        }
    }

    /// Starts loading key `k`'s bitmap into cache (its shard entries should be in cache).
    pub(crate) fn prefetch(&self, k: &Key) {
        if let Some(bits) = self.get(k) {
            bits.prefetch();
        }
    }

    /// Applies logged writes to key `k` (see [`Bits::apply_sorted`]), creating or dropping the
    /// key as it fills or empties; copies the shard only when the writes change the key.
    pub(crate) fn apply_sorted(&mut self, k: Key, writes: &[Write]) {
        let i = self.shard_of(&k);
        let at = find(&self.shards[i], &k);
        if !self.owns_shard(i) {
            let current = at.ok().map(|j| &self.shards[i][j].1);
            let has = |slot| current.is_some_and(|b| b.contains(slot));
            if winners(writes).all(|w| has(slot_of(w)) == sets(w)) {
                return;
            }
        }
        match at {
            Ok(j) => {
                let bits = &mut self.shard_mut(i)[j].1;
                bits.apply_sorted(writes);
                if bits.is_empty() {
                    self.drop_empty(i);
                }
            }
            // A key that is absent is created only when a write sets a bit.
            Err(j) if winners(writes).any(sets) => {
                let mut bits = Bits::default();
                bits.apply_sorted(writes);
                self.add_key(i, j, k, bits);
            }
            Err(_) => {}
        }
    }

    /// ORs many keys' bitmaps in at once (a bulk load): keys already present are ORed in place,
    /// the new ones go in with one re-shard at most and one rebuild per touched shard, instead of
    /// a shard rebuild per key.
    pub(crate) fn or_many(&mut self, entries: Vec<(Key, Bits)>) {
        let mut new = Vec::new();
        for (k, bits) in entries {
            if bits.is_empty() {
                continue;
            }
            let i = self.shard_of(&k);
            match find(&self.shards[i], &k) {
                Ok(j) => self.shard_mut(i)[j].1.or_assign(&bits),
                Err(_) => new.push((k, bits)),
            }
        }
        if new.is_empty() {
            return;
        }
        new.sort_unstable_by_key(|(k, _)| *k);
        // Keys are distinct within one call only if the caller says so: fold repeats.
        let mut distinct: Vec<(Key, Bits)> = Vec::with_capacity(new.len());
        for (k, bits) in new {
            match distinct.last_mut() {
                Some((last, b)) if *last == k => b.or_assign(&bits),
                _ => distinct.push((k, bits)),
            }
        }
        let len = self.len + distinct.len();
        let mut bits = self.bits;
        while wants_more(bits, len) {
            bits += 1;
        }
        if bits != self.bits {
            self.reshard(bits);
        }
        let mut by_shard: Vec<(usize, Key, Bits)> = distinct
            .into_iter()
            .map(|(k, b)| (self.shard_of(&k), k, b))
            .collect();
        by_shard.sort_unstable_by_key(|(i, k, _)| (*i, *k));
        let mut rest = by_shard.into_iter().peekable();
        while let Some((i, k, b)) = rest.next() {
            let mut group = vec![(k, b)];
            while let Some((_, k, b)) = rest.next_if(|(j, _, _)| *j == i) {
                group.push((k, b));
            }
            self.rebuild_shard(i, |e| {
                e.extend(group);
                e.sort_unstable_by_key(|(k, _)| *k);
            });
        }
        self.len = len;
    }

    /// Removes `gone` from every key, copying only shards and chunks that change.
    pub(crate) fn subtract_all(&mut self, gone: &Bits) {
        for i in 0..self.shards.len() {
            let hit = self.shards[i].iter().any(|(_, b)| b.and_len(gone) > 0);
            if !hit {
                continue;
            }
            let mut emptied = false;
            for (_, b) in self.shard_mut(i) {
                b.andnot_assign(gone);
                emptied |= b.is_empty();
            }
            if emptied {
                self.drop_empty(i);
            }
        }
    }

    /// Removes `gone` from key `k` only.
    pub(crate) fn subtract(&mut self, k: &Key, gone: &Bits) {
        let i = self.shard_of(k);
        let Ok(j) = find(&self.shards[i], k) else {
            return;
        };
        if self.shards[i][j].1.and_len(gone) == 0 {
            return;
        }
        let b = &mut self.shard_mut(i)[j].1;
        b.andnot_assign(gone);
        if b.is_empty() {
            self.drop_empty(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_writes_fill_and_drop_keys() {
        let log = |writes: &[(u32, bool)]| -> Vec<Write> {
            let mut w: Vec<Write> = writes
                .iter()
                .enumerate()
                .map(|(i, &(s, set))| u64::from(s) << 32 | (i as u64) << 1 | u64::from(set))
                .collect();
            w.sort_unstable();
            w
        };
        let mut m = KeyMap::default();
        let many: Vec<(u32, bool)> = (0..20).map(|s| (s, true)).collect();
        m.apply_sorted(Key::Int(1), &log(&many));
        assert_eq!(m.get(&Key::Int(1)).unwrap().len(), 20);
        let snap = m.clone();
        // The last write of a slot wins; emptying the key drops it; the snapshot keeps its view.
        let mut out: Vec<(u32, bool)> = (0..20).map(|s| (s, false)).collect();
        out.push((3, true));
        out.push((3, false));
        m.apply_sorted(Key::Int(1), &log(&out));
        assert!(m.get(&Key::Int(1)).is_none());
        assert_eq!(snap.get(&Key::Int(1)).unwrap().len(), 20);
        // Writes that change nothing copy nothing.
        let mut m2 = snap.clone();
        m2.apply_sorted(Key::Int(1), &log(&many));
        assert!(Arc::ptr_eq(&m2.shards, &snap.shards));
        m2.apply_sorted(Key::Int(2), &log(&out));
        assert!(Arc::ptr_eq(&m2.shards, &snap.shards));
    }

    #[test]
    fn key_map_copies_one_shard_per_write() {
        let mut m = KeyMap::default();
        for i in 0..1000 {
            m.insert(Key::Int(i), i as u32);
        }
        let snap = m.clone();
        m.insert(Key::Int(5), 77);
        let changed = (0..m.shards.len())
            .filter(|&i| !Arc::ptr_eq(&m.shards[i], &snap.shards[i]))
            .count();
        assert_eq!(changed, 1);
        assert!(!snap.get(&Key::Int(5)).unwrap().contains(77));
        // A cleared key is dropped; a clear of an absent key creates none.
        m.apply_sorted(
            Key::Int(5),
            &[u64::from(5u32) << 32, u64::from(77u32) << 32 | 2],
        );
        assert!(m.get(&Key::Int(5)).is_none(), "empty keys are dropped");
        m.apply_sorted(Key::Int(5000), &[u64::from(5u32) << 32]);
        assert!(m.get(&Key::Int(5000)).is_none());
        assert_eq!(m.len(), 999);
    }

    #[test]
    fn or_many_equals_inserting_one_by_one() {
        let mut one = KeyMap::default();
        let mut many = KeyMap::default();
        for i in 0..500u32 {
            one.insert(Key::Int(i64::from(i % 300)), i);
        }
        many.or_many(
            (0..300u32)
                .map(|k| (Key::Int(i64::from(k)), Bits::from_sorted(&[k])))
                .collect(),
        );
        let snap = many.clone();
        // Present keys are ORed, new ones added (repeats folded), empty bitmaps ignored.
        let mut entries: Vec<(Key, Bits)> = (300..500u32)
            .map(|s| (Key::Int(i64::from(s % 300)), Bits::from_sorted(&[s])))
            .collect();
        for k in 0..20_000u32 {
            one.insert(Key::Int(1_000_000 + i64::from(k / 2)), k);
            entries.push((
                Key::Int(1_000_000 + i64::from(k / 2)),
                Bits::from_sorted(&[k]),
            ));
        }
        entries.push((Key::Int(-1), Bits::new()));
        many.or_many(entries);
        assert_eq!(many.len(), one.len());
        assert_eq!(many.len(), 10_300);
        assert_eq!(many.shards.len(), one.shards.len());
        let sorted = |m: &KeyMap| {
            let mut v: Vec<(Key, Vec<u32>)> =
                m.iter().map(|(k, b)| (*k, b.iter().collect())).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&many), sorted(&one));
        for (k, _) in many.iter() {
            assert!(many.get(k).is_some(), "every key is found in its shard");
        }
        assert_eq!(snap.len(), 300, "a snapshot keeps its view");
        assert_eq!(snap.get(&Key::Int(5)).unwrap().len(), 1);
    }

    #[test]
    fn the_map_reshards_as_keys_arrive_and_keeps_every_key() {
        let mut m = KeyMap::default();
        assert_eq!(m.shards.len(), 256);
        let n = 100_000u32;
        for i in 0..n {
            m.insert(Key::Int(i64::from(i) * 7), i);
            if i % 3 == 0 {
                m.insert(Key::Str(i), i);
            }
        }
        let keys = n as usize + n.div_ceil(3) as usize;
        assert_eq!((m.len(), m.iter().count()), (keys, keys));
        // Between 16·√K and 32·√K shards.
        let root = (keys as f64).sqrt();
        let shards = m.shards.len() as f64;
        assert!(
            16.0 * root <= shards && shards <= 32.0 * root,
            "{shards} shards"
        );
        for i in (0..n).step_by(997) {
            assert!(m.get(&Key::Int(i64::from(i) * 7)).unwrap().contains(i));
        }
        // Keys dropped by writes, subtraction or clearing are uncounted.
        let snap = m.clone();
        m.apply_sorted(Key::Int(0), &[0]);
        m.subtract(&Key::Int(7), &Bits::from_roaring([1].into_iter().collect()));
        m.subtract_all(&Bits::from_roaring([3, 6].into_iter().collect()));
        assert_eq!(m.len(), keys - 6, "keys 0, 7, 21, 42 and texts 3, 6");
        assert_eq!(m.iter().count(), keys - 6);
        assert_eq!(snap.len(), keys, "a snapshot keeps its keys");
        assert!(snap.get(&Key::Str(3)).is_some());
    }
}
