//! Per slot, the keys a multi-value link holds ([`LinkKeys`]), kept exactly (the link's bitmaps
//! keep a deleted slot's bits until a lazy cleanup).
//!
//! Most slots hold one or two keys (an image and its model versions), so the first two keys live
//! in paged columns of codes (1 to 4 bytes a slot each), and only the slots with three or more
//! have an entry in a hash map (a list of their further codes). The slots with two or more keys are also a
//! bitmap, [`LinkKeys::several`]: a parent change rewrites the one-key slots with two bitmap
//! operations and checks only the others one by one. Not part of snapshots or checkpoints:
//! rebuilt from the link's bitmaps on load.
//!
//! Memory: a hash map entry per slot with several keys (a `Vec` of 16-byte keys) cost ≈ 49 bytes
//! per image of the image-feed dataset, a third of its index; the second column and codes
//! instead of keys cost ≈ 8.

use std::collections::HashMap;

use roaring::RoaringBitmap;

use crate::hash::KeyHash;
use crate::index::store::bits::roaring_bytes;
use crate::index::store::columns::{CodeTable, Column, ColumnBuilder, NONE};
use crate::index::store::keymap::KeyMap;
use crate::index::store::keys::Key;
use crate::index::store::size::{map_bytes, vec_bytes};

/// One multi-value link's keys per slot, as codes of one table.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkKeys {
    /// Key ↔ code.
    table: CodeTable,
    /// Per slot, the code of one key it holds ([`NONE`]: it holds none).
    first: Column,
    /// Per slot, the code of a second key ([`NONE`]: it holds at most one).
    second: Column,
    /// Per slot holding three keys or more, the codes besides the first two (never empty).
    rest: HashMap<u32, Vec<u32>, KeyHash>,
    /// The slots holding two keys or more.
    several: RoaringBitmap,
}

impl LinkKeys {
    /// The keys of every slot, from the link's bitmaps (no pending deleted slots in them).
    pub(crate) fn from_bitmaps(values: &KeyMap) -> LinkKeys {
        let mut links = LinkKeys::default();
        let (mut first, mut second) = (ColumnBuilder::default(), ColumnBuilder::default());
        let mut rest: HashMap<u32, Vec<u32>, KeyHash> = HashMap::default();
        for (k, bits) in values.iter() {
            let code = links.table.intern(*k);
            bits.for_each_slot(|slot| {
                let cell = first.cell(slot);
                if *cell == NONE {
                    *cell = code;
                    return;
                }
                let cell = second.cell(slot);
                if *cell == NONE {
                    *cell = code;
                    links.several.insert(slot);
                } else {
                    rest.entry(slot).or_default().push(code);
                }
            });
        }
        links.first = first.build();
        links.second = second.build();
        rest.values_mut().for_each(Vec::shrink_to_fit);
        links.rest = rest;
        links
    }

    /// Heap bytes: the code table, both columns, the further codes and the bitmap.
    pub(crate) fn heap_bytes(&self) -> u64 {
        let lists: u64 = self
            .rest
            .values()
            .map(|v| vec_bytes::<u32>(v.capacity()))
            .sum();
        self.table.heap_bytes()
            + self.first.heap_bytes()
            + self.second.heap_bytes()
            + map_bytes::<u32, Vec<u32>>(self.rest.capacity())
            + lists
            + roaring_bytes(&self.several)
    }

    /// The codes `slot` holds.
    fn codes(&self, slot: u32) -> impl Iterator<Item = u32> + '_ {
        let first = self.first.get(slot);
        let second = if first == NONE {
            NONE
        } else {
            self.second.get(slot)
        };
        let rest = (second != NONE)
            .then(|| self.rest.get(&slot))
            .flatten()
            .map_or(&[][..], |r| &r[..]);
        [first, second]
            .into_iter()
            .filter(|&c| c != NONE)
            .chain(rest.iter().copied())
    }

    /// Whether `slot` holds `k`.
    pub(crate) fn contains(&self, slot: u32, k: Key) -> bool {
        self.table
            .code(&k)
            .is_some_and(|c| self.codes(slot).any(|x| x == c))
    }

    /// The keys `slot` holds, in no particular order.
    pub(crate) fn keys(&self, slot: u32) -> impl Iterator<Item = Key> + '_ {
        self.codes(slot).filter_map(|c| self.table.key(c))
    }

    /// The slots holding more than one key.
    pub(crate) fn several(&self) -> &RoaringBitmap {
        &self.several
    }

    /// Records that `slot` holds `k` (`holds`) or not; `true` when that changed something.
    pub(crate) fn note(&mut self, slot: u32, k: Key, holds: bool) -> bool {
        if holds {
            if self.contains(slot, k) {
                return false;
            }
            let code = self.table.intern(k);
            if self.first.get(slot) == NONE {
                self.first.set(slot, code);
            } else if self.second.get(slot) == NONE {
                self.second.set(slot, code);
                self.several.insert(slot);
            } else {
                self.rest.entry(slot).or_default().push(code);
            }
            return true;
        }
        let Some(code) = self.table.code(&k) else {
            return false;
        };
        if self.first.get(slot) == code {
            let next = self.second.get(slot);
            self.first.set(slot, next);
            if next != NONE {
                self.drop_second(slot);
            }
            true
        } else if self.second.get(slot) == code {
            self.drop_second(slot);
            true
        } else {
            self.drop_rest(slot, code)
        }
    }

    /// `slot` no longer holds its second key: a further one takes its place, if any.
    fn drop_second(&mut self, slot: u32) {
        let next = match self.rest.get_mut(&slot) {
            None => NONE,
            Some(rest) => {
                let last = rest.pop().expect("never empty");
                if rest.is_empty() {
                    self.rest.remove(&slot);
                }
                last
            }
        };
        self.second.set(slot, next);
        if next == NONE {
            self.several.remove(slot);
        }
    }

    /// Takes `code` out of `slot`'s further codes; `true` when it was there.
    fn drop_rest(&mut self, slot: u32, code: u32) -> bool {
        let Some(rest) = self.rest.get_mut(&slot) else {
            return false;
        };
        let Some(at) = rest.iter().position(|&c| c == code) else {
            return false;
        };
        rest.swap_remove(at);
        if rest.is_empty() {
            self.rest.remove(&slot);
        }
        true
    }

    /// `slot` holds no key any more.
    pub(crate) fn remove_slot(&mut self, slot: u32) {
        self.first.set(slot, NONE);
        if self.several.remove(slot) {
            self.second.set(slot, NONE);
            self.rest.remove(&slot);
        }
    }

    /// No slot holds a key any more.
    pub(crate) fn clear(&mut self) {
        *self = LinkKeys::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_keeps_every_key_it_was_given_and_loses_them_one_at_a_time() {
        let mut l = LinkKeys::default();
        let (a, b, c) = (Key::Int(1), Key::Int(2), Key::Int(3));
        assert!(l.note(7, a, true));
        assert!(!l.note(7, a, true));
        assert!(l.note(7, b, true));
        assert!(l.note(7, c, true));
        assert!(l.several().contains(7));
        let mut keys: Vec<Key> = l.keys(7).collect();
        keys.sort_by_key(|k| k.word());
        assert_eq!(keys, vec![a, b, c]);
        // The first key goes: another takes its place.
        assert!(l.note(7, a, false));
        assert!(!l.contains(7, a) && l.contains(7, b) && l.contains(7, c));
        assert!(l.note(7, c, false));
        assert!(!l.several().contains(7), "one key left");
        assert_eq!(l.keys(7).collect::<Vec<_>>(), vec![b]);
        assert!(!l.note(7, c, false));
        assert!(l.note(7, b, false));
        assert_eq!(l.keys(7).count(), 0);
        assert!(l.note(7, c, true));
        l.remove_slot(7);
        assert_eq!(l.keys(7).count(), 0);
    }

    /// The integer keys `slot` holds.
    fn ints(l: &LinkKeys, slot: u32) -> std::collections::BTreeSet<i64> {
        l.keys(slot)
            .map(|k| match k {
                Key::Int(i) => i,
                Key::Str(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn random_notes_and_removals_agree_with_a_set_per_slot() {
        use std::collections::{BTreeSet, HashMap};
        let mut l = LinkKeys::default();
        let mut model: HashMap<u32, BTreeSet<i64>> = HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for step in 0..20_000 {
            let slot = next(40) as u32 * 9_000;
            let k = next(6) as i64;
            match next(10) {
                0 => {
                    l.remove_slot(slot);
                    model.remove(&slot);
                }
                n => {
                    let holds = n < 6;
                    let set = model.entry(slot).or_default();
                    let changed = if holds { set.insert(k) } else { set.remove(&k) };
                    assert_eq!(l.note(slot, Key::Int(k), holds), changed, "step {step}");
                }
            }
            let want = model.get(&slot).cloned().unwrap_or_default();
            let got = ints(&l, slot);
            assert_eq!(got, want, "step {step}, slot {slot}");
            assert_eq!(l.keys(slot).count(), want.len(), "no key twice");
            assert_eq!(l.several().contains(slot), want.len() > 1, "step {step}");
            assert!((0..6).all(|k| l.contains(slot, Key::Int(k)) == want.contains(&k)));
        }
        // A rebuild from bitmaps holds the same keys.
        let mut values = KeyMap::default();
        for (&slot, keys) in &model {
            for &k in keys {
                values.insert(Key::Int(k), slot);
            }
        }
        let rebuilt = LinkKeys::from_bitmaps(&values);
        for (&slot, keys) in &model {
            let got = ints(&rebuilt, slot);
            assert_eq!(&got, keys);
            assert_eq!(rebuilt.several().contains(slot), keys.len() > 1);
        }
    }
}
