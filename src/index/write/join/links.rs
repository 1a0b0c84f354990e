//! Per slot, the keys a multi-value link holds ([`LinkKeys`]), kept exactly (the link's bitmaps
//! keep a deleted slot's bits until a lazy cleanup).
//!
//! Most slots hold one key (an image and its model version), so the first key lives in a paged
//! column of codes (1 to 4 bytes a slot) and only the slots with several keys have an entry in a
//! hash map, and a bit in [`LinkKeys::several`]: a parent change rewrites the one-key slots with
//! two bitmap operations and checks only the others one by one. Not part of snapshots or
//! checkpoints: rebuilt from the link's bitmaps on load.

use std::collections::HashMap;

use roaring::RoaringBitmap;

use crate::hash::KeyHash;
use crate::index::store::columns::{ColumnBuilder, KeyColumn, NONE};
use crate::index::store::keymap::KeyMap;
use crate::index::store::keys::Key;

/// One multi-value link's keys per slot.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkKeys {
    /// Per slot, the code of one key it holds ([`NONE`]: it holds none).
    first: KeyColumn,
    /// Per slot holding several keys, the keys besides `first` (never empty).
    more: HashMap<u32, Vec<Key>, KeyHash>,
    /// The slots of `more`.
    several: RoaringBitmap,
}

impl LinkKeys {
    /// The keys of every slot, from the link's bitmaps (no pending deleted slots in them).
    pub(crate) fn from_bitmaps(values: &KeyMap) -> LinkKeys {
        let mut links = LinkKeys::default();
        let mut first = ColumnBuilder::default();
        for (k, bits) in values.iter() {
            let code = links.first.table.intern(*k);
            bits.for_each_slot(|slot| {
                let cell = first.cell(slot);
                if *cell == NONE {
                    *cell = code;
                } else {
                    links.more.entry(slot).or_default().push(*k);
                    links.several.insert(slot);
                }
            });
        }
        links.first.col = first.build();
        links
    }

    fn first(&self, slot: u32) -> Option<Key> {
        match self.first.col.get(slot) {
            NONE => None,
            c => self.first.table.key(c),
        }
    }

    /// Whether `slot` holds `k`.
    pub(crate) fn contains(&self, slot: u32, k: Key) -> bool {
        match self.first(slot) {
            None => false,
            Some(f) if f == k => true,
            Some(_) => self.more.get(&slot).is_some_and(|m| m.contains(&k)),
        }
    }

    /// The keys `slot` holds, in no particular order.
    pub(crate) fn keys(&self, slot: u32) -> impl Iterator<Item = Key> + '_ {
        let first = self.first(slot);
        let more = first
            .and_then(|_| self.more.get(&slot))
            .map_or(&[][..], Vec::as_slice);
        first.into_iter().chain(more.iter().copied())
    }

    /// The slots holding more than one key.
    pub(crate) fn several(&self) -> &RoaringBitmap {
        &self.several
    }

    /// Records that `slot` holds `k` (`holds`) or not; `true` when that changed something.
    pub(crate) fn note(&mut self, slot: u32, k: Key, holds: bool) -> bool {
        let Some(first) = self.first(slot) else {
            if holds {
                let code = self.first.table.intern(k);
                self.first.col.set(slot, code);
            }
            return holds;
        };
        if first == k {
            if !holds {
                self.drop_first(slot);
            }
            return !holds;
        }
        if !holds && !self.several.contains(slot) {
            return false;
        }
        let more = self.more.entry(slot).or_default();
        let at = more.iter().position(|&x| x == k);
        let changed = match (at, holds) {
            (None, true) => {
                more.push(k);
                true
            }
            (Some(i), false) => {
                more.swap_remove(i);
                true
            }
            _ => false,
        };
        if more.is_empty() {
            self.more.remove(&slot);
            self.several.remove(slot);
        } else {
            self.several.insert(slot);
        }
        changed
    }

    /// `slot` no longer holds its first key: another of its keys takes the place.
    fn drop_first(&mut self, slot: u32) {
        let next = self.more.get_mut(&slot).and_then(Vec::pop);
        let code = next.map_or(NONE, |k| self.first.table.intern(k));
        self.first.col.set(slot, code);
        if self.more.get(&slot).is_some_and(Vec::is_empty) {
            self.more.remove(&slot);
            self.several.remove(slot);
        }
    }

    /// `slot` holds no key any more.
    pub(crate) fn remove_slot(&mut self, slot: u32) {
        self.first.col.set(slot, NONE);
        if self.more.remove(&slot).is_some() {
            self.several.remove(slot);
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
}
