//! `Bits`: a copy-on-write bitmap over slot ids, in one of two forms.
//!
//! * Small: a sorted slot list in one `Arc<[u32]>` allocation (`[len, slots…, spare…]`), for
//!   bitmaps of at most [`SMALL_MAX`] slots (most keys of a high-cardinality field: a user's
//!   images, a tag's). A read is one pointer away; a copy is one allocation.
//! * Chunked: `Arc<Vec<(chunk id, Arc<RoaringBitmap>)>>`: the slot space is cut into chunks of
//!   2^[`CHUNK_BITS`] slots, each chunk a roaring bitmap holding the full slot values that fall
//!   in it. Invariants: chunk ids strictly increase, no chunk is empty, and every value of a
//!   chunk lies in that chunk's range.
//!
//! A small bitmap that would pass [`SMALL_MAX`] slots turns chunked; a chunked one that applied
//! writes shrink to [`SMALL_MIN`] slots or fewer turns small (the gap keeps a key near the
//! threshold from flipping back and forth). The form is invisible: every operation, equality
//! and [`Bits::chunks`] (what checkpoints store) mean the same set of slots either way.
//!
//! Cost model (n = slots in the bitmap, c = chunks present):
//! * `clone` (what a snapshot does): one refcount increment. A snapshot never changes: every
//!   write goes to a copy when the data is shared.
//! * The first write after a clone copies a small bitmap (≤ 16 KiB, one allocation), or the
//!   chunk list (c pointers, at 10^8 slots at most 96 entries) and the one touched chunk (at most
//!   2^20 bits = 128 KiB) of a chunked one; later writes before the next clone copy nothing (a
//!   small bitmap keeps spare room to grow in place). A write that changes nothing copies
//!   nothing. The writer's writes to a bitmap it alone owns skip the checks that avoid copies.
//! * Binary operations work chunk by chunk and share untouched chunks of an input by refcount
//!   (e.g. OR with a chunk present on one side only); a small operand is merged as a sorted
//!   list or probed slot by slot. The in-place variants (`or_assign`, `and_assign`,
//!   `andnot_assign`) update data the bitmap alone owns without copying (a query's intermediate
//!   results) and copy shared data only when it changes.

mod chunked;
mod size;

use std::ops::{BitOrAssign, Deref, RangeInclusive};
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::packed::{Write, sets, slot_of, winners};
use chunked::{chunks_of_sorted, roaring_of_sorted, roaring_of_words};
pub(crate) use size::roaring_bytes;

/// Bits of slot id that select the chunk: chunks hold 2^20 slots.
pub(crate) const CHUNK_BITS: u32 = 20;

/// Most slots a small bitmap holds; one more turns it chunked.
pub(crate) const SMALL_MAX: usize = 4096;

/// A chunked bitmap that applied writes shrink to this many slots or fewer turns small.
pub(crate) const SMALL_MIN: usize = SMALL_MAX / 2;

type Chunk = (u32, Arc<RoaringBitmap>);

/// Up to this many logged writes to one bitmap are applied one by one rather than merged.
pub(crate) const FEW_WRITES: usize = 8;

/// A copy-on-write bitmap of slots (see the module note for its forms and cost model).
#[derive(Clone)]
pub(crate) struct Bits {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Small(Small),
    Chunked(Arc<Vec<Chunk>>),
}

/// A sorted list of distinct slots in one allocation: `[len, slots…, spare…]`.
#[derive(Clone)]
struct Small(Arc<[u32]>);

impl Small {
    /// Room for `cap` slots, none set.
    fn with_capacity(cap: usize) -> Small {
        Small(std::iter::repeat_n(0, cap + 1).collect())
    }

    /// `slots` (sorted, distinct) with room for `spare` more.
    fn from_sorted(slots: &[u32], spare: usize) -> Small {
        let len = std::iter::once(slots.len() as u32);
        Small(
            len.chain(slots.iter().copied())
                .chain(std::iter::repeat_n(0, spare))
                .collect(),
        )
    }

    /// A list of at most `cap` slots written by `f`, which gets the room and returns how many
    /// ascending slots it wrote.
    fn build(cap: usize, f: impl FnOnce(&mut [u32]) -> usize) -> Small {
        let mut s = Small::with_capacity(cap);
        let buf = Arc::get_mut(&mut s.0).expect("a new list is not shared");
        let n = f(&mut buf[1..]);
        buf[0] = n as u32;
        s
    }

    fn len(&self) -> usize {
        self.0[0] as usize
    }

    fn capacity(&self) -> usize {
        self.0.len() - 1
    }

    fn slots(&self) -> &[u32] {
        &self.0[1..=self.len()]
    }
}

/// Starts loading every cache line of `slots` at once, so a binary search over a list that is
/// not in cache waits for memory about once rather than once per probe (a key's first write in a
/// flush usually finds its list cold).
#[inline]
fn prefetch(slots: &[u32]) {
    if slots.len() > 16 {
        // Independent loads, one per line: the CPU has them all in flight together.
        let touched = slots.chunks(16).fold(0, |acc, line| acc ^ line[0]);
        std::hint::black_box(touched);
    }
}

/// Spare room a small list of `len` slots gets when a write copies it.
fn spare(len: usize) -> usize {
    (len / 4 + 4).min(SMALL_MAX.saturating_sub(len))
}

/// The positions of `word`'s set bits, ascending.
pub(crate) fn ones(word: u64) -> impl Iterator<Item = u32> {
    let mut x = word;
    std::iter::from_fn(move || {
        (x != 0).then(|| {
            let b = x.trailing_zeros();
            x &= x - 1;
            b
        })
    })
}

/// Which parts of two sorted lists a merge keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// `a ∪ b`.
    Union,
    /// `a ∩ b`.
    Both,
    /// `a − b`.
    OnlyA,
    /// `a ∪ b − a ∩ b` (symmetric difference).
    Either,
}

/// Merges sorted lists `a` and `b` into `out` (which has room for the result); returns the
/// number of slots written.
fn merge(a: &[u32], b: &[u32], keep: Keep, out: &mut [u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        let (take, v) = match x.cmp(&y) {
            std::cmp::Ordering::Less => {
                i += 1;
                (keep != Keep::Both, x)
            }
            std::cmp::Ordering::Greater => {
                j += 1;
                (matches!(keep, Keep::Union | Keep::Either), y)
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
                (matches!(keep, Keep::Union | Keep::Both), x)
            }
        };
        if take {
            out[n] = v;
            n += 1;
        }
    }
    let rest: &[u32] = match keep {
        Keep::Both => &[],
        Keep::OnlyA => &a[i..],
        Keep::Union | Keep::Either if i < a.len() => &a[i..],
        Keep::Union | Keep::Either => &b[j..],
    };
    out[n..n + rest.len()].copy_from_slice(rest);
    n + rest.len()
}

/// `|a ∩ b|` of two sorted lists.
fn merge_len(a: &[u32], b: &[u32]) -> u64 {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Each of `slots` (ascending) with whether `chunks` holds it, walking the chunk list once.
fn probe<'a>(chunks: &'a [Chunk], slots: &'a [u32]) -> impl Iterator<Item = (u32, bool)> + 'a {
    let mut c = 0;
    slots.iter().map(move |&v| {
        let id = chunk_of(v);
        while c < chunks.len() && chunks[c].0 < id {
            c += 1;
        }
        (
            v,
            c < chunks.len() && chunks[c].0 == id && chunks[c].1.contains(v),
        )
    })
}

/// The slots of `slots` that `chunks` holds (`inside`) or lacks (`!inside`), as a small list.
fn filter(chunks: &[Chunk], slots: &[u32], inside: bool) -> Small {
    Small::build(slots.len(), |out| {
        let mut n = 0;
        for (v, hit) in probe(chunks, slots) {
            if hit == inside {
                out[n] = v;
                n += 1;
            }
        }
        n
    })
}

/// One chunk as [`Bits::chunks`] yields it: borrowed from a chunked bitmap, or built from a
/// small one.
pub(crate) enum ChunkRef<'a> {
    /// A chunk of a chunked bitmap.
    Borrowed(&'a RoaringBitmap),
    /// The slots of a small bitmap that fall in the chunk.
    Built(RoaringBitmap),
}

impl Deref for ChunkRef<'_> {
    type Target = RoaringBitmap;

    fn deref(&self) -> &RoaringBitmap {
        match self {
            ChunkRef::Borrowed(b) => b,
            ChunkRef::Built(b) => b,
        }
    }
}

impl BitOrAssign<ChunkRef<'_>> for RoaringBitmap {
    fn bitor_assign(&mut self, rhs: ChunkRef<'_>) {
        match rhs {
            ChunkRef::Borrowed(b) => *self |= b,
            ChunkRef::Built(b) => *self |= b,
        }
    }
}

impl Default for Bits {
    fn default() -> Self {
        Bits::small(Small::with_capacity(0))
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

    fn small(s: Small) -> Self {
        Bits {
            repr: Repr::Small(s),
        }
    }

    fn chunked(chunks: Vec<Chunk>) -> Self {
        Bits {
            repr: Repr::Chunked(Arc::new(chunks)),
        }
    }

    /// A freshly built list as a bitmap: chunked when it is too long to stay small.
    fn settle(s: Small) -> Self {
        if s.len() <= SMALL_MAX {
            Bits::small(s)
        } else {
            Bits::chunked(chunks_of_sorted(s.slots()))
        }
    }

    /// The small list's slots and the chunk list (one of them empty).
    fn parts(&self) -> (&[u32], &[Chunk]) {
        match &self.repr {
            Repr::Small(s) => (s.slots(), &[]),
            Repr::Chunked(c) => (&[], c),
        }
    }

    /// A bitmap of roaring bitmap `bm` (moved whole when it is chunked and fits in one chunk).
    pub(crate) fn from_roaring(bm: RoaringBitmap) -> Self {
        let n = bm.len();
        if n <= SMALL_MAX as u64 {
            return Bits::small(Small::build(n as usize, |out| {
                for (o, v) in out.iter_mut().zip(bm.iter()) {
                    *o = v;
                }
                n as usize
            }));
        }
        let (Some(min), Some(max)) = (bm.min(), bm.max()) else {
            return Bits::new();
        };
        let (first, last) = (chunk_of(min), chunk_of(max));
        if first == last {
            return Bits::chunked(vec![(first, Arc::new(bm))]);
        }
        let mut chunks = Vec::new();
        for id in first..=last {
            let part = RoaringBitmap::from_sorted_iter(bm.range(chunk_range(id)))
                .expect("a range iterator yields sorted values");
            if !part.is_empty() {
                chunks.push((id, Arc::new(part)));
            }
        }
        Bits::chunked(chunks)
    }

    /// A bitmap of sorted, distinct slots.
    pub(crate) fn from_sorted(slots: &[u32]) -> Self {
        if slots.len() <= SMALL_MAX {
            Bits::small(Small::from_sorted(slots, 0))
        } else {
            Bits::chunked(chunks_of_sorted(slots))
        }
    }

    /// A bitmap of 2^16-slot pages of 1024 words each (`(page, words)`, pages ascending; bit
    /// `o` of a page is slot `page << 16 | o`).
    pub(crate) fn from_word_pages<W: AsRef<[u64]>>(pages: &[(u32, W)]) -> Self {
        let chunks: Vec<Chunk> = pages
            .chunk_by(|a, b| a.0 >> (CHUNK_BITS - 16) == b.0 >> (CHUNK_BITS - 16))
            .map(|run| (run[0].0 >> (CHUNK_BITS - 16), roaring_of_words(run)))
            .filter(|(_, bm)| !bm.is_empty())
            .map(|(id, bm)| (id, Arc::new(bm)))
            .collect();
        let n: u64 = chunks.iter().map(|(_, bm)| bm.len()).sum();
        if n <= SMALL_MAX as u64 {
            let slots: Vec<u32> = chunks.iter().flat_map(|(_, bm)| bm.iter()).collect();
            return Bits::small(Small::from_sorted(&slots, 0));
        }
        Bits::chunked(chunks)
    }

    /// Builds from chunks; `None` when the chunk invariants (see the module note) do not hold.
    /// Few slots in all come back as a small bitmap.
    pub(crate) fn from_chunks(chunks: Vec<(u32, RoaringBitmap)>) -> Option<Self> {
        let mut out: Vec<Chunk> = Vec::with_capacity(chunks.len());
        let mut n = 0u64;
        for (id, bm) in chunks {
            if out.last().is_some_and(|(prev, _)| *prev >= id) || id > chunk_of(u32::MAX) {
                return None;
            }
            let range = chunk_range(id);
            match (bm.min(), bm.max()) {
                (Some(lo), Some(hi)) if range.contains(&lo) && range.contains(&hi) => {
                    n += bm.len();
                    out.push((id, Arc::new(bm)));
                }
                _ => return None,
            }
        }
        if n <= SMALL_MAX as u64 {
            return Some(Bits::small(Small::build(n as usize, |o| {
                let slots = out.iter().flat_map(|(_, bm)| bm.iter());
                for (o, v) in o.iter_mut().zip(slots) {
                    *o = v;
                }
                n as usize
            })));
        }
        Some(Bits::chunked(out))
    }

    /// The chunks, in increasing id order (a small bitmap builds them on the fly).
    pub(crate) fn chunks(&self) -> impl Iterator<Item = (u32, ChunkRef<'_>)> {
        let (small, chunked) = self.parts();
        small
            .chunk_by(|a, b| chunk_of(*a) == chunk_of(*b))
            .map(|run| (chunk_of(run[0]), ChunkRef::Built(roaring_of_sorted(run))))
            .chain(chunked.iter().map(|(id, bm)| (*id, ChunkRef::Borrowed(bm))))
    }

    /// All slots as one plain bitmap.
    pub(crate) fn to_roaring(&self) -> RoaringBitmap {
        let (small, chunked) = self.parts();
        let mut bm =
            RoaringBitmap::from_sorted_iter(small.iter().copied()).expect("a small list is sorted");
        for (_, chunk) in chunked {
            bm |= &**chunk;
        }
        bm
    }

    /// True when no slot is set.
    pub(crate) fn is_empty(&self) -> bool {
        match &self.repr {
            Repr::Small(s) => s.len() == 0,
            Repr::Chunked(c) => c.is_empty(),
        }
    }

    /// Number of slots set.
    pub(crate) fn len(&self) -> u64 {
        match &self.repr {
            Repr::Small(s) => s.len() as u64,
            Repr::Chunked(c) => c.iter().map(|(_, bm)| bm.len()).sum(),
        }
    }

    /// Whether `slot` is set.
    pub(crate) fn contains(&self, slot: u32) -> bool {
        match &self.repr {
            Repr::Small(s) => {
                prefetch(s.slots());
                s.slots().binary_search(&slot).is_ok()
            }
            Repr::Chunked(c) => chunked::contains(c, slot),
        }
    }

    /// Sets `slot`; copies nothing when it was already set. Returns whether it was added.
    pub(crate) fn insert(&mut self, slot: u32) -> bool {
        let s = match &mut self.repr {
            Repr::Chunked(c) => return chunked::insert(c, slot),
            Repr::Small(s) => s,
        };
        prefetch(s.slots());
        let Err(i) = s.slots().binary_search(&slot) else {
            return false;
        };
        let len = s.len();
        if len < s.capacity().min(SMALL_MAX)
            && let Some(buf) = Arc::get_mut(&mut s.0)
        {
            buf.copy_within(1 + i..1 + len, 2 + i);
            buf[1 + i] = slot;
            buf[0] += 1;
            return true;
        }
        let old = s.slots();
        let grown = Small::build(len + 1 + spare(len + 1), |out| {
            out[..i].copy_from_slice(&old[..i]);
            out[i] = slot;
            out[i + 1..=len].copy_from_slice(&old[i..]);
            len + 1
        });
        *self = Bits::settle(grown);
        true
    }

    /// Starts loading the bitmap's data into cache: a small list whole (its length, then every
    /// line of its slots), a chunked one's chunk list.
    pub(crate) fn prefetch(&self) {
        match &self.repr {
            Repr::Small(s) => {
                // The reference counts sit just before the data: the first write touches them.
                let at = Arc::as_ptr(&s.0).cast::<u32>();
                super::prefetch::line(at.wrapping_sub(4));
                let lines = (s.len() + 1).div_ceil(16);
                for line in 0..lines {
                    super::prefetch::line(at.wrapping_add(16 * line));
                }
            }
            Repr::Chunked(c) => super::prefetch::line(Arc::as_ptr(c)),
        }
    }

    /// Clears `slot`; copies nothing when it was not set. Returns whether it was removed.
    pub(crate) fn remove(&mut self, slot: u32) -> bool {
        let s = match &mut self.repr {
            Repr::Chunked(c) => return chunked::remove(c, slot),
            Repr::Small(s) => s,
        };
        prefetch(s.slots());
        let Ok(i) = s.slots().binary_search(&slot) else {
            return false;
        };
        let len = s.len();
        if let Some(buf) = Arc::get_mut(&mut s.0) {
            buf.copy_within(2 + i..1 + len, 1 + i);
            buf[0] -= 1;
            return true;
        }
        let old = s.slots();
        *s = Small::build(len - 1 + spare(len - 1), |out| {
            out[..i].copy_from_slice(&old[..i]);
            out[i..len - 1].copy_from_slice(&old[i + 1..]);
            len - 1
        });
        true
    }

    /// Applies logged writes (see [`writes`](super::writes)) sorted by slot and then op order:
    /// the last write of each slot wins. A small bitmap merges them into a new list (in place
    /// for a few writes to a list it owns); a chunked one takes a few one by one and merges more
    /// in as two sorted sets, chunk by chunk. A shared bitmap is copied only where the writes
    /// change it.
    pub(crate) fn apply_sorted(&mut self, writes: &[Write]) {
        match &mut self.repr {
            Repr::Small(s) => {
                let owned = Arc::get_mut(&mut s.0).is_some();
                if owned && writes.len() <= FEW_WRITES {
                    self.apply_one_by_one(writes);
                    return;
                }
                let old = s.slots();
                let has = |slot| old.binary_search(&slot).is_ok();
                if !owned && winners(writes).all(|w| has(slot_of(w)) == sets(w)) {
                    return;
                }
                let adds = winners(writes).filter(|&w| sets(w)).count();
                let merged = Small::build(old.len() + adds + spare(old.len() + adds), |out| {
                    let (mut j, mut n) = (0, 0);
                    for w in winners(writes) {
                        let slot = slot_of(w);
                        let k = j + old[j..].partition_point(|&v| v < slot);
                        out[n..n + k - j].copy_from_slice(&old[j..k]);
                        n += k - j;
                        j = k + usize::from(old.get(k) == Some(&slot));
                        if sets(w) {
                            out[n] = slot;
                            n += 1;
                        }
                    }
                    out[n..n + old.len() - j].copy_from_slice(&old[j..]);
                    n + old.len() - j
                });
                *self = Bits::settle(merged);
            }
            Repr::Chunked(c) => {
                let shrunk = if writes.len() <= FEW_WRITES {
                    self.apply_one_by_one(writes)
                } else {
                    chunked::apply_sorted(c, writes)
                };
                if shrunk && self.len() <= SMALL_MIN as u64 {
                    let slots: Vec<u32> = self.iter().collect();
                    *self = Bits::small(Small::from_sorted(&slots, spare(slots.len())));
                }
            }
        }
    }

    /// Flips `slots` (sorted, distinct): each one set is cleared, each one clear is set. A
    /// shared bitmap is copied (only the touched chunks of a chunked one). It rebuilds a small
    /// list or a chunk's containers, so a handful of changes go through `apply_sorted` instead.
    pub(crate) fn flip_sorted(&mut self, slots: &[u32]) {
        if slots.is_empty() {
            return;
        }
        match &mut self.repr {
            Repr::Small(s) => {
                let old = s.slots();
                let cap = old.len() + slots.len();
                let flipped =
                    Small::build(cap + spare(cap), |out| merge(old, slots, Keep::Either, out));
                *self = Bits::settle(flipped);
            }
            Repr::Chunked(c) => {
                chunked::flip_sorted(c, slots);
                if self.len() <= SMALL_MIN as u64 {
                    let slots: Vec<u32> = self.iter().collect();
                    *self = Bits::small(Small::from_sorted(&slots, spare(slots.len())));
                }
            }
        }
    }

    /// Applies the winning writes one at a time; returns whether a slot was removed.
    fn apply_one_by_one(&mut self, writes: &[Write]) -> bool {
        let mut removed = false;
        for w in winners(writes) {
            if sets(w) {
                self.insert(slot_of(w));
            } else {
                removed |= self.remove(slot_of(w));
            }
        }
        removed
    }

    /// Ascending iterator over the slots.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        let (small, chunked) = self.parts();
        small
            .iter()
            .copied()
            .chain(chunked.iter().flat_map(|(_, bm)| bm.iter()))
    }

    /// Calls `f` with each slot, ascending: [`Bits::iter`] through roaring's internal
    /// iteration (a fold per container), several times faster than pulling element by element.
    pub(crate) fn for_each_slot(&self, mut f: impl FnMut(u32)) {
        let (small, chunked) = self.parts();
        small.iter().for_each(|&slot| f(slot));
        for (_, bm) in chunked {
            bm.iter().for_each(&mut f);
        }
    }

    /// `self ∩ other`.
    pub(crate) fn and(&self, other: &Bits) -> Bits {
        match (&self.repr, &other.repr) {
            (Repr::Chunked(a), Repr::Chunked(b)) => Bits::chunked(chunked::and(a, b)),
            (Repr::Small(a), Repr::Small(b)) => {
                if Arc::ptr_eq(&a.0, &b.0) {
                    return self.clone();
                }
                Bits::small(Small::build(a.len().min(b.len()), |out| {
                    merge(a.slots(), b.slots(), Keep::Both, out)
                }))
            }
            (Repr::Small(s), Repr::Chunked(c)) | (Repr::Chunked(c), Repr::Small(s)) => {
                Bits::small(filter(c, s.slots(), true))
            }
        }
    }

    /// `|self ∩ other|` without building the intersection.
    pub(crate) fn and_len(&self, other: &Bits) -> u64 {
        match (&self.repr, &other.repr) {
            (Repr::Chunked(a), Repr::Chunked(b)) => chunked::and_len(a, b),
            (Repr::Small(a), Repr::Small(b)) => merge_len(a.slots(), b.slots()),
            (Repr::Small(s), Repr::Chunked(c)) | (Repr::Chunked(c), Repr::Small(s)) => {
                probe(c, s.slots()).filter(|&(_, hit)| hit).count() as u64
            }
        }
    }

    /// `self ∪ other`; chunks present on one side only are shared, not copied.
    pub(crate) fn or(&self, other: &Bits) -> Bits {
        if self.is_empty() {
            return other.clone();
        }
        if other.is_empty() {
            return self.clone();
        }
        match (&self.repr, &other.repr) {
            (Repr::Chunked(a), Repr::Chunked(b)) => Bits::chunked(chunked::or(a, b)),
            (Repr::Small(a), Repr::Small(b)) => {
                if Arc::ptr_eq(&a.0, &b.0) {
                    return self.clone();
                }
                Bits::settle(Small::build(a.len() + b.len(), |out| {
                    merge(a.slots(), b.slots(), Keep::Union, out)
                }))
            }
            (Repr::Small(s), Repr::Chunked(c)) | (Repr::Chunked(c), Repr::Small(s)) => {
                Bits::chunked(chunked::or(&chunks_of_sorted(s.slots()), c))
            }
        }
    }

    /// `self − other`; chunks `other` lacks are shared, not copied.
    pub(crate) fn andnot(&self, other: &Bits) -> Bits {
        if other.is_empty() {
            return self.clone();
        }
        match (&self.repr, &other.repr) {
            (Repr::Chunked(a), Repr::Chunked(b)) => Bits::chunked(chunked::andnot(a, b)),
            (Repr::Small(a), Repr::Small(b)) => {
                if Arc::ptr_eq(&a.0, &b.0) {
                    return Bits::new();
                }
                Bits::small(Small::build(a.len(), |out| {
                    merge(a.slots(), b.slots(), Keep::OnlyA, out)
                }))
            }
            (Repr::Small(s), Repr::Chunked(c)) => Bits::small(filter(c, s.slots(), false)),
            (Repr::Chunked(c), Repr::Small(s)) => {
                Bits::chunked(chunked::andnot(c, &chunks_of_sorted(s.slots())))
            }
        }
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
        match (&mut self.repr, &other.repr) {
            (Repr::Chunked(mine), Repr::Chunked(b)) => chunked::or_assign(mine, b),
            (Repr::Chunked(mine), Repr::Small(s)) => {
                chunked::or_assign(mine, &chunks_of_sorted(s.slots()));
            }
            (Repr::Small(_), _) => {
                let union = self.or(other);
                if union.len() != self.len() {
                    *self = union;
                }
            }
        }
    }

    /// In place `self ∩= other`; chunks only `self` owns are updated without copying.
    pub(crate) fn and_assign(&mut self, other: &Bits) {
        match (&mut self.repr, &other.repr) {
            (Repr::Chunked(mine), Repr::Chunked(b)) => chunked::and_assign(mine, b),
            _ => {
                let both = self.and(other);
                if both.len() != self.len() {
                    *self = both;
                }
            }
        }
    }

    /// In place `self −= other`; copies only shared data that actually loses slots (the
    /// writer's pending cleanup relies on this), updates chunks only `self` owns in place.
    pub(crate) fn andnot_assign(&mut self, other: &Bits) {
        if other.is_empty() || self.is_empty() {
            return;
        }
        match (&mut self.repr, &other.repr) {
            (Repr::Chunked(mine), Repr::Chunked(b)) => chunked::andnot_assign(mine, b),
            (Repr::Chunked(mine), Repr::Small(s)) => {
                chunked::andnot_assign(mine, &chunks_of_sorted(s.slots()));
            }
            (Repr::Small(_), _) => {
                let rest = self.andnot(other);
                if rest.len() != self.len() {
                    *self = rest;
                }
            }
        }
    }

    /// The slots within `range`.
    pub(crate) fn restrict(&self, range: RangeInclusive<u32>) -> Bits {
        let (lo, hi) = (*range.start(), *range.end());
        if lo > hi {
            return Bits::new();
        }
        match &self.repr {
            Repr::Small(s) => {
                let slots = s.slots();
                let (a, b) = (
                    slots.partition_point(|&v| v < lo),
                    slots.partition_point(|&v| v <= hi),
                );
                if a == 0 && b == slots.len() {
                    return self.clone();
                }
                Bits::small(Small::from_sorted(&slots[a..b], 0))
            }
            Repr::Chunked(c) => Bits::chunked(chunked::restrict(c, lo, hi)),
        }
    }
}

impl PartialEq for Bits {
    fn eq(&self, other: &Self) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::Chunked(a), Repr::Chunked(b)) => chunked::eq(a, b),
            (Repr::Small(a), Repr::Small(b)) => a.slots() == b.slots(),
            _ => self.len() == other.len() && self.iter().eq(other.iter()),
        }
    }
}

#[cfg(test)]
impl Bits {
    /// The address of the bitmap's data (a small list's, or the chunk list's), to tell a write in
    /// place from a copy.
    pub(crate) fn data_ptr(&self) -> *const () {
        match &self.repr {
            Repr::Small(s) => Arc::as_ptr(&s.0).cast(),
            Repr::Chunked(c) => Arc::as_ptr(&c[0].1).cast(),
        }
    }
}

impl FromIterator<u32> for Bits {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        Bits::from_roaring(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
