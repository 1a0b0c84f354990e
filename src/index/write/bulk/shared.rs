//! The columns the accumulators of one dump share: written concurrently by the worker threads
//! with relaxed atomics (each slot normally by one row of one worker), read once the dump is
//! over; and the dump-wide dictionary of each single-value field (behind a lock: each worker
//! asks it once per key and caches the answer). Paged like the index's own columns (2^16 slots a page, allocated on first write), so a
//! dump holds each single-value code, sort value and alive bit once, whatever the number of
//! workers, and the index takes the pages over instead of rebuilding them slot by slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::{BitPages, SingleParts, SortParts};
use crate::hash::KeyHash;
use crate::index::store::bits::ones;
use crate::index::store::keys::RawKey;
use crate::index::{PAGE, PAGE_BITS};
use crate::schema::{FilterKind, Schema};

/// Pages of the whole `u32` slot space.
const PAGES: usize = 1 << (32 - PAGE_BITS);

fn split(slot: u32) -> (usize, usize) {
    ((slot >> PAGE_BITS) as usize, slot as usize & (PAGE - 1))
}

/// Pages per group: the page table has two levels, so an empty column costs a few KiB.
const GROUP: usize = 256;

type Group<T> = Box<[OnceLock<Box<[T]>>]>;

/// A table of lazily allocated pages over the whole slot space.
struct Pages<T> {
    groups: Box<[OnceLock<Group<T>>]>,
}

impl<T: Default> Pages<T> {
    fn new() -> Self {
        Pages {
            groups: (0..PAGES / GROUP).map(|_| OnceLock::new()).collect(),
        }
    }

    fn page(&self, p: usize, len: usize) -> &[T] {
        let group =
            self.groups[p / GROUP].get_or_init(|| (0..GROUP).map(|_| OnceLock::new()).collect());
        group[p % GROUP].get_or_init(|| (0..len).map(|_| T::default()).collect())
    }

    fn get(&self, p: usize) -> Option<&[T]> {
        self.groups[p / GROUP].get()?[p % GROUP]
            .get()
            .map(|b| &b[..])
    }

    /// The allocated pages with their numbers, ascending.
    fn iter(&self) -> impl Iterator<Item = (u32, &[T])> {
        self.groups
            .iter()
            .enumerate()
            .filter_map(|(g, group)| group.get().map(|pages| (g, pages)))
            .flat_map(|(g, pages)| {
                pages.iter().enumerate().filter_map(move |(i, page)| {
                    page.get().map(|b| ((g * GROUP + i) as u32, &b[..]))
                })
            })
    }

    /// The allocated pages with their numbers, ascending, each cell taken out by `inner`.
    fn into_pages<U>(self, inner: fn(T) -> U) -> Vec<(u32, Box<[U]>)> {
        let groups = self.groups.into_vec().into_iter().enumerate();
        let groups = groups.filter_map(|(g, group)| group.into_inner().map(|pages| (g, pages)));
        groups
            .flat_map(|(g, pages)| {
                let pages = pages.into_vec().into_iter().enumerate();
                pages.filter_map(move |(i, page)| {
                    let page = page.into_inner()?;
                    Some((
                        (g * GROUP + i) as u32,
                        page.into_vec().into_iter().map(inner).collect(),
                    ))
                })
            })
            .collect()
    }
}

/// A `u32` per slot, 0 by default.
pub(crate) struct AtomicColumn(Pages<AtomicU32>);

impl AtomicColumn {
    pub(crate) fn new() -> Self {
        AtomicColumn(Pages::new())
    }

    fn cell(&self, slot: u32) -> &AtomicU32 {
        let (p, o) = split(slot);
        &self.0.page(p, PAGE)[o]
    }

    /// The slot's value (0 when never written).
    pub(crate) fn load(&self, slot: u32) -> u32 {
        let (p, o) = split(slot);
        self.0.get(p).map_or(0, |page| page[o].load(Relaxed))
    }

    /// Raises the slot's value to `v` if it is lower.
    pub(crate) fn max(&self, slot: u32, v: u32) {
        let cell = self.cell(slot);
        if cell.load(Relaxed) < v {
            cell.fetch_max(v, Relaxed);
        }
    }

    /// Stores `v` when the slot holds 0 or a value `wins` says `v` beats; returns the value the
    /// slot held.
    pub(crate) fn store_if(&self, slot: u32, v: u32, wins: impl Fn(u32) -> bool) -> u32 {
        let cell = self.cell(slot);
        let mut cur = cell.load(Relaxed);
        loop {
            if cur == v || (cur != 0 && !wins(cur)) {
                return cur;
            }
            match cell.compare_exchange_weak(cur, v, Relaxed, Relaxed) {
                Ok(_) => return cur,
                Err(now) => cur = now,
            }
        }
    }

    /// Every (slot, value) with a value other than 0, slots ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.0.iter().flat_map(|(p, page)| {
            page.iter().enumerate().filter_map(move |(o, v)| {
                let v = v.load(Relaxed);
                (v != 0).then_some((p << PAGE_BITS | o as u32, v))
            })
        })
    }

    /// The written pages (page number, 2^16 values), ascending.
    pub(crate) fn into_pages(self) -> Vec<(u32, Box<[u32]>)> {
        self.0.into_pages(AtomicU32::into_inner)
    }
}

/// A set of slots.
pub(crate) struct AtomicBits(Pages<AtomicU64>);

impl AtomicBits {
    pub(crate) fn new() -> Self {
        AtomicBits(Pages::new())
    }

    /// Adds `slot`.
    pub(crate) fn insert(&self, slot: u32) {
        let (p, o) = split(slot);
        let word = &self.0.page(p, PAGE / 64)[o / 64];
        let bit = 1u64 << (o % 64);
        // Most inserts find the bit clear and their word written by no one else: a plain load
        // first keeps a repeated insert from taking the cache line exclusively.
        if word.load(Relaxed) & bit == 0 {
            word.fetch_or(bit, Relaxed);
        }
    }

    /// Whether `slot` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, slot: u32) -> bool {
        let (p, o) = split(slot);
        self.0
            .get(p)
            .is_some_and(|page| page[o / 64].load(Relaxed) >> (o % 64) & 1 == 1)
    }

    /// The slots in the set, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|(p, page)| {
            page.iter().enumerate().flat_map(move |(i, w)| {
                ones(w.load(Relaxed)).map(move |b| p << PAGE_BITS | (i as u32 * 64 + b))
            })
        })
    }

    /// The written pages (page number, 1024 words of 64 slots), ascending.
    pub(crate) fn into_pages(self) -> Vec<(u32, Box<[u64]>)> {
        self.0.into_pages(AtomicU64::into_inner)
    }
}

/// Integer keys below this get their codes by position, in the dictionary and in each worker's
/// cache (at most 4 MiB per field and cache).
pub(super) const SMALL_KEYS: i64 = 1 << 20;

/// A single/bool field's shared dictionary and code column.
pub(super) struct SingleColumn {
    dict: Mutex<Dictionary>,
    codes: AtomicColumn,
}

/// Raw key ↔ code (codes from 1).
#[derive(Default)]
struct Dictionary {
    /// Codes of keys in `0..SMALL_KEYS`, by key (0: none yet).
    small: Vec<u32>,
    /// Codes of the other keys.
    other: HashMap<RawKey, u32, KeyHash>,
    /// Key of each code (code `c` at `c - 1`).
    keys: Vec<RawKey>,
}

impl SingleColumn {
    /// The dump-wide code of `raw`, given on first sight.
    pub(super) fn code(&self, raw: RawKey) -> u32 {
        let mut d = self.dict.lock().unwrap_or_else(PoisonError::into_inner);
        let Dictionary { small, other, keys } = &mut *d;
        let mut next = |raw: &RawKey| {
            keys.push(raw.clone());
            u32::try_from(keys.len()).expect("fewer than 2^32 distinct keys")
        };
        match raw {
            RawKey::Int(k) if (0..SMALL_KEYS).contains(&k) => {
                let k = k as usize;
                if small.len() <= k {
                    small.resize((k + 1).next_power_of_two(), 0);
                }
                if small[k] == 0 {
                    small[k] = next(&raw);
                }
                small[k]
            }
            raw => *other.entry(raw).or_insert_with_key(next),
        }
    }

    /// Gives `slot` code `code` unless it holds a code of a greater key.
    pub(super) fn store(&self, slot: u32, code: u32) {
        self.codes.store_if(slot, code, |cur| {
            let d = self.dict.lock().unwrap_or_else(PoisonError::into_inner);
            d.keys[code as usize - 1] > d.keys[cur as usize - 1]
        });
    }

    fn key(&self, code: u32) -> RawKey {
        let d = self.dict.lock().unwrap_or_else(PoisonError::into_inner);
        d.keys[code as usize - 1].clone()
    }
}

/// A sort field's shared columns.
pub(super) struct SortColumn {
    pub(super) values: AtomicColumn,
    pub(super) touched: AtomicBits,
}

/// The columns the accumulators of one dump share.
pub(super) struct Shared {
    pub(super) alive: AtomicBits,
    pub(super) singles: Vec<Option<SingleColumn>>,
    pub(super) sorts: Vec<SortColumn>,
}

impl Shared {
    pub(super) fn new(schema: &Schema) -> Shared {
        Shared {
            alive: AtomicBits::new(),
            singles: schema
                .filters
                .iter()
                .map(|f| {
                    (f.kind != FilterKind::Multi).then(|| SingleColumn {
                        dict: Mutex::default(),
                        codes: AtomicColumn::new(),
                    })
                })
                .collect(),
            sorts: schema
                .sorts
                .iter()
                .map(|_| SortColumn {
                    values: AtomicColumn::new(),
                    touched: AtomicBits::new(),
                })
                .collect(),
        }
    }

    /// Adds what `other` holds (an accumulator of another dump) to these columns.
    pub(super) fn absorb(&self, other: &Shared) {
        for slot in other.alive.iter() {
            self.alive.insert(slot);
        }
        for (mine, theirs) in self.singles.iter().zip(&other.singles) {
            let (Some(mine), Some(theirs)) = (mine, theirs) else {
                continue;
            };
            for (slot, code) in theirs.codes.iter() {
                mine.store(slot, mine.code(theirs.key(code)));
            }
        }
        for (mine, theirs) in self.sorts.iter().zip(&other.sorts) {
            for slot in theirs.touched.iter() {
                mine.values.max(slot, theirs.values.load(slot));
                mine.touched.insert(slot);
            }
        }
    }

    /// The columns as the pages and dictionaries `Index::merge_bulk` takes.
    pub(super) fn into_parts(self) -> (BitPages, Vec<Option<SingleParts>>, Vec<SortParts>) {
        let singles = self
            .singles
            .into_iter()
            .map(|s| {
                s.map(|s| SingleParts {
                    keys: s
                        .dict
                        .into_inner()
                        .unwrap_or_else(PoisonError::into_inner)
                        .keys,
                    codes: s.codes.into_pages(),
                })
            })
            .collect();
        let sorts = self
            .sorts
            .into_iter()
            .map(|s| SortParts {
                values: s.values.into_pages(),
                touched: s.touched.into_pages(),
            })
            .collect();
        (self.alive.into_pages(), singles, sorts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_bits_keep_what_threads_write() {
        let col = AtomicColumn::new();
        let bits = AtomicBits::new();
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let (col, bits) = (&col, &bits);
                s.spawn(move || {
                    for i in (t..200_000).step_by(4) {
                        col.max(i * 3, i + 1);
                        bits.insert(i * 3);
                    }
                });
            }
        });
        assert_eq!((col.load(3), col.load(4), col.load(u32::MAX)), (2, 0, 0));
        assert!(bits.contains(599_997) && !bits.contains(599_998));
        assert_eq!(col.store_if(3, 9, |cur| cur < 9), 2);
        assert_eq!(
            col.store_if(3, 1, |cur| cur < 1),
            9,
            "a losing value is not stored"
        );
        assert_eq!(col.load(3), 9);
        let pages = bits.into_pages();
        let ones: u32 = pages
            .iter()
            .flat_map(|(_, w)| w.iter())
            .map(|w| w.count_ones())
            .sum();
        assert_eq!(ones, 200_000);
        assert!(pages.windows(2).all(|w| w[0].0 < w[1].0));
        let cols = col.into_pages();
        assert_eq!(cols.len(), pages.len());
        assert_eq!(cols[0].1[3], 9);
    }
}
