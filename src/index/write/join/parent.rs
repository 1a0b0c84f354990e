//! Parent → children: a parent row's change rewrites the targets of the slots linked to it
//! (see the module note of [`super`]). On a multi-value link the children move in bulk: one
//! bitmap union into each new value and one subtraction from each old one, whatever their
//! number; of the children with several links, those another parent still gives the old value
//! keep it. No state of its own; no crash window.

use roaring::RoaringBitmap;

use super::Cell;
use crate::hash::KeyHash;
use crate::index::Index;
use crate::index::store::bits::Bits;
use crate::index::store::keys::Key;
use crate::ops::Op;

/// Logged writes of a link field beyond which setting a parent applies them before reading
/// its children (instead of replaying them).
pub(super) const LINK_REPLAY_MAX: usize = 4096;

/// A parent's children cost about this many slots' own checks to intersect: with fewer
/// parents giving a value than the slots to check over this, the children are intersected.
const GIVER_COST: u64 = 4;

/// An old value of a target and the slots that leave it.
type Leaving = (Key, Bits);

/// Slots with several links at most which a parent change checks one by one (beyond, it
/// gathers the parents giving the old value first).
const FEW_SEVERAL: u64 = 64;

impl Index {
    /// Applies ops to parent `key`'s row of join `j`, then rewrites the linked slots' targets
    /// whose cell changed.
    pub(super) fn set_parent(&mut self, j: usize, key: Key, ops: &[(usize, &Op)]) {
        let n = self.joins.specs[j].targets.len();
        let old: Vec<Cell> = match self.state.joins[j].get(&key) {
            Some(r) => r.to_vec(),
            None => vec![Cell::NULL; n],
        };
        let mut new = old.clone();
        for &(t, op) in ops {
            let spec = self.joins.specs[j].targets[t];
            let (value, field) = match op {
                Op::Set { value, field }
                | Op::Add { value, field }
                | Op::Remove { value, field } => (value, field),
                _ => continue,
            };
            let Some(cell) = self.cell_of(spec, field, value) else {
                continue;
            };
            self.stats.applied_ops += 1;
            match op {
                Op::Remove { .. } => {
                    if new[t] == cell {
                        new[t] = Cell::NULL;
                    }
                }
                _ => new[t] = cell,
            }
        }
        let changed: Vec<usize> = (0..n).filter(|&t| old[t] != new[t]).collect();
        if changed.is_empty() {
            return;
        }
        self.state.joins[j].set(key, Some(new.clone().into()));
        let link = self.joins.specs[j].link;
        // The linked slots: the link's bitmap of the key with the key's logged writes replayed
        // over it (the log keeps its batching; applying it here, per parent, cost more than the
        // rest of the join). A long log of the link is applied first, alone, so that the
        // replay stays short whatever the number of parents a batch sets.
        if self.log.filter_len(link) > LINK_REPLAY_MAX {
            self.settle();
            self.log.apply_filter(link, &mut self.state.filters[link]);
        }
        let mut linked = self.state.filters[link]
            .values
            .get(&key)
            .cloned()
            .unwrap_or_default();
        for (slot, set) in self.log.filter_writes(link, Some(key)) {
            if set {
                linked.insert(slot);
            } else {
                linked.remove(slot);
            }
        }
        if self.joins.specs[j].link_multi {
            self.move_multi_children(j, key, &old, &new, &changed, &linked);
        } else {
            for slot in linked.iter() {
                for &t in &changed {
                    let spec = self.joins.specs[j].targets[t];
                    self.put_cell(spec, slot, Some(old[t]), Some(new[t]));
                }
            }
        }
    }

    /// The multi-value targets `changed` of parent `key` of join `j` went from `old` to `new`:
    /// the slots whose link holds `key` (`linked`, after the log) follow, in bulk: every one
    /// joins the new value's bitmap in one union, and leaves the old value's in one subtraction
    /// unless another of its parents gives the old value too (see [`Index::keeping`]). Pending
    /// slots (their writes are recorded for the cleanup) and targets that link another join (the
    /// write cascades) go one by one.
    fn move_multi_children(
        &mut self,
        j: usize,
        key: Key,
        old: &[Cell],
        new: &[Cell],
        changed: &[usize],
        linked: &Bits,
    ) {
        let link = self.joins.specs[j].link;
        let Some(links) = self.joins.links[link].as_ref() else {
            return;
        };
        let linked = linked.to_roaring();
        let pending = &linked & &self.pending;
        let bulk = &linked - &pending;
        let several = &bulk & links.several();
        #[cfg(debug_assertions)]
        for slot in &bulk {
            debug_assert!(links.contains(slot, key), "slot {slot} links {key:?}");
        }
        if !several.is_empty() && self.log.filter_len(link) > 0 {
            // The other parents' bitmaps are read whole below: the link's writes go in first.
            self.settle();
            self.log.apply_filter(link, &mut self.state.filters[link]);
        }
        let targets: Vec<(usize, usize)> = changed
            .iter()
            .filter_map(|&t| Some((t, self.joins.specs[j].targets[t].multi()?)))
            .collect();
        let (cascading, plain): (Vec<_>, Vec<_>) = targets
            .into_iter()
            .partition(|&(_, tfi)| self.joins.is_link(tfi));
        // Per target: its field, the old value with the slots leaving it, the new value.
        let mut moves: Vec<(usize, Option<Leaving>, Option<Key>)> = Vec::new();
        for &(t, tfi) in &plain {
            let (was, now) = (old[t].key, new[t].key);
            if was == now || bulk.is_empty() {
                continue;
            }
            let leave = was.map(|v| {
                let keep = self.keeping(j, key, t, v, &several);
                (v, Bits::from_roaring(&bulk - &keep))
            });
            moves.push((tfi, leave, now));
        }
        if !moves.is_empty() {
            self.settle();
            let joining = Bits::from_roaring(bulk.clone());
            for (tfi, leave, now) in moves {
                self.log.apply_filter(tfi, &mut self.state.filters[tfi]);
                let values = &mut self.state.filters[tfi].values;
                if let Some((v, leaving)) = leave {
                    values.subtract(&v, &leaving);
                }
                if let Some(v) = now {
                    values.or_many(vec![(v, joining.clone())]);
                }
            }
        }
        for slot in &pending {
            let holds = self.joins.links[link]
                .as_ref()
                .is_some_and(|l| l.contains(slot, key));
            if holds {
                self.move_child(j, key, slot, old, new, plain.iter().chain(&cascading));
            }
        }
        if !cascading.is_empty() {
            for slot in &bulk {
                self.move_child(j, key, slot, old, new, cascading.iter());
            }
        }
    }

    /// The slots of `several` (slots linked to parent `key` of join `j` and to others) that
    /// another of their parents gives value `v` in target `t`: those parents' children
    /// intersected with them when the parents are few, else each slot's keys checked.
    fn keeping(
        &self,
        j: usize,
        key: Key,
        t: usize,
        v: Key,
        several: &RoaringBitmap,
    ) -> RoaringBitmap {
        let one_by_one = || -> RoaringBitmap {
            several
                .iter()
                .filter(|&slot| self.linked_value(j, slot, t, v, key))
                .collect()
        };
        // A few: each checks its own parents, cheaper than gathering the givers.
        if several.len() <= FEW_SEVERAL && !cfg!(debug_assertions) {
            return one_by_one();
        }
        let givers: Vec<Key> = self.state.joins[j]
            .iter()
            .filter(|(g, row)| **g != key && row[t].key == Some(v))
            .map(|(g, _)| *g)
            .collect();
        let keep = if (givers.len() as u64).saturating_mul(GIVER_COST) <= several.len() {
            self.children_of(j, &givers, several)
        } else {
            self.linked_to_any(j, &givers, several)
        };
        #[cfg(debug_assertions)]
        {
            // Debug builds take every way and compare them.
            let by_slot = one_by_one();
            debug_assert_eq!(keep, by_slot, "the slots keeping {v:?}");
            debug_assert_eq!(self.children_of(j, &givers, several), by_slot);
            debug_assert_eq!(self.linked_to_any(j, &givers, several), by_slot);
        }
        keep
    }

    /// The slots of `among` that are children of one of `parents` of join `j`: the union of
    /// each parent's children intersected with them (the link's bitmaps are exact for slots
    /// not pending a cleanup, and its log is applied).
    fn children_of(&self, j: usize, parents: &[Key], among: &RoaringBitmap) -> RoaringBitmap {
        let values = &self.state.filters[self.joins.specs[j].link].values;
        let among = Bits::from_roaring(among.clone());
        let mut keep = Bits::new();
        for g in parents {
            if let Some(children) = values.get(g)
                && children.and_len(&among) > 0
            {
                keep.or_assign(&children.and(&among));
            }
        }
        keep.to_roaring()
    }

    /// The slots of `among` that link one of `parents` of join `j`: each slot's keys checked
    /// against them.
    fn linked_to_any(&self, j: usize, parents: &[Key], among: &RoaringBitmap) -> RoaringBitmap {
        let Some(links) = self.joins.links[self.joins.specs[j].link].as_ref() else {
            return RoaringBitmap::new();
        };
        let parents: std::collections::HashSet<Key, KeyHash> = parents.iter().copied().collect();
        among
            .iter()
            .filter(|&slot| links.keys(slot).any(|k| parents.contains(&k)))
            .collect()
    }

    /// One slot linked to parent `key` of join `j` follows its targets' change from `old` to
    /// `new`, keeping an old value another of its parents gives.
    fn move_child<'t>(
        &mut self,
        j: usize,
        key: Key,
        slot: u32,
        old: &[Cell],
        new: &[Cell],
        targets: impl Iterator<Item = &'t (usize, usize)>,
    ) {
        for &(t, tfi) in targets {
            if let Some(v) = old[t].key
                && !self.linked_value(j, slot, t, v, key)
            {
                self.multi_remove_key(tfi, slot, Some(v));
            }
            if let Some(v) = new[t].key {
                self.multi_insert_key(tfi, slot, Some(v));
            }
        }
    }
}
