//! The chunked form's algorithms: a sorted list of `(chunk id, Arc<RoaringBitmap>)` (see the
//! parent module's note for the invariants). Unchanged chunks are shared by refcount; a chunk or
//! list is copied only when shared and about to change.

use std::cmp::Ordering;
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::{Chunk, chunk_of, chunk_range, ones};
use crate::index::store::packed::{Write, sets, slot_of, winners};

/// Sorted, distinct slots cut into chunks.
pub(super) fn chunks_of_sorted(slots: &[u32]) -> Vec<Chunk> {
    slots
        .chunk_by(|a, b| chunk_of(*a) == chunk_of(*b))
        .map(|run| (chunk_of(run[0]), Arc::new(roaring_of_sorted(run))))
        .collect()
}

/// A roaring bitmap of sorted, distinct slots. Built through roaring's portable serialized
/// form, which allocates each container once at its size: pushing values one by one (what
/// `from_sorted_iter` does) grows each array container by reallocation, which cost a third of
/// applying a flush's writes to large bitmaps.
pub(super) fn roaring_of_sorted(slots: &[u32]) -> RoaringBitmap {
    if slots.len() < 64 {
        return RoaringBitmap::from_sorted_iter(slots.iter().copied())
            .expect("slots are sorted and distinct");
    }
    let containers: Vec<(u16, Body)> = slots
        .chunk_by(|a, b| a >> 16 == b >> 16)
        .map(|c| ((c[0] >> 16) as u16, Body::Sorted(c)))
        .collect();
    serialized(&containers)
}

/// A roaring bitmap of 2^16-slot pages given as 1024 words each (`(page, words)`, pages
/// ascending; bit `o` of the page is slot `page << 16 | o`). Empty pages are skipped.
pub(super) fn roaring_of_words<W: AsRef<[u64]>>(pages: &[(u32, W)]) -> RoaringBitmap {
    let containers: Vec<(u16, Body)> = pages
        .iter()
        .map(|(p, w)| (*p as u16, w.as_ref()))
        .filter(|(_, w)| w.iter().any(|&x| x != 0))
        .map(|(p, w)| (p, Body::Words(w)))
        .collect();
    serialized(&containers)
}

/// A container's values: sorted slots (only their low 16 bits are stored) or a page of words.
enum Body<'a> {
    Sorted(&'a [u32]),
    Words(&'a [u64]),
}

impl Body<'_> {
    fn len(&self) -> usize {
        match self {
            Body::Sorted(s) => s.len(),
            Body::Words(w) => w.iter().map(|x| x.count_ones() as usize).sum(),
        }
    }
}

/// Builds a bitmap from non-empty containers with ascending keys, through the portable format.
fn serialized(containers: &[(u16, Body)]) -> RoaringBitmap {
    /// Portable format without run containers: cookie, container count, then per container
    /// (key, cardinality − 1), per container its byte offset, then the containers.
    const COOKIE_NO_RUNS: u32 = 12346;
    /// Above this many values a container is a 2^16-bit bitmap, at or below a `u16` array.
    const ARRAY_MAX: usize = 4096;
    let n = containers.len();
    let lens: Vec<usize> = containers.iter().map(|(_, b)| b.len()).collect();
    let total: usize = lens.iter().sum();
    let mut buf = Vec::with_capacity(8 + 8 * n + 2 * total.min(n * ARRAY_MAX) + 8192);
    buf.extend_from_slice(&COOKIE_NO_RUNS.to_le_bytes());
    buf.extend_from_slice(&(n as u32).to_le_bytes());
    for ((key, _), &len) in containers.iter().zip(&lens) {
        buf.extend_from_slice(&key.to_le_bytes());
        buf.extend_from_slice(&((len - 1) as u16).to_le_bytes());
    }
    let mut offset = 8 + 8 * n;
    for &len in &lens {
        buf.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += if len <= ARRAY_MAX { 2 * len } else { 8192 };
    }
    for ((_, body), &len) in containers.iter().zip(&lens) {
        match (body, len <= ARRAY_MAX) {
            (Body::Sorted(c), true) => {
                for &v in *c {
                    buf.extend_from_slice(&(v as u16).to_le_bytes());
                }
            }
            (Body::Sorted(c), false) => {
                let mut words = [0u64; 1024];
                for &v in *c {
                    let v = v as u16 as usize;
                    words[v / 64] |= 1 << (v % 64);
                }
                for w in words {
                    buf.extend_from_slice(&w.to_le_bytes());
                }
            }
            (Body::Words(words), true) => {
                for (i, &w) in words.iter().enumerate() {
                    for b in ones(w) {
                        let v = (i * 64) as u16 + b as u16;
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            (Body::Words(words), false) => {
                for &w in *words {
                    buf.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
    }
    RoaringBitmap::deserialize_unchecked_from(&buf[..]).unwrap_or_else(|_| {
        // Unreachable with the format above; rebuild value by value rather than fail.
        let mut bm = RoaringBitmap::new();
        for (key, body) in containers {
            let base = u32::from(*key) << 16;
            match body {
                Body::Sorted(c) => bm.extend(c.iter().copied()),
                Body::Words(w) => {
                    for (i, &x) in w.iter().enumerate() {
                        for b in 0..64 {
                            if x >> b & 1 == 1 {
                                bm.insert(base + (i * 64 + b) as u32);
                            }
                        }
                    }
                }
            }
        }
        bm
    })
}

fn find(chunks: &[Chunk], id: u32) -> Result<usize, usize> {
    chunks.binary_search_by_key(&id, |(c, _)| *c)
}

/// Whether `slot` is set.
pub(super) fn contains(chunks: &[Chunk], slot: u32) -> bool {
    match find(chunks, chunk_of(slot)) {
        Ok(i) => chunks[i].1.contains(slot),
        Err(_) => false,
    }
}

/// Sets `slot`; copies nothing when it was already set. Returns whether it was added.
pub(super) fn insert(list: &mut Arc<Vec<Chunk>>, slot: u32) -> bool {
    let id = chunk_of(slot);
    let i = match find(list, id) {
        Ok(i) => i,
        Err(i) => {
            let chunk = Arc::new(RoaringBitmap::from_iter([slot]));
            Arc::make_mut(list).insert(i, (id, chunk));
            return true;
        }
    };
    if let Some(chunks) = Arc::get_mut(list) {
        // The writer's common case: the chunk list is ours, so no copy can be triggered and
        // no pre-check is needed (roaring reports whether the slot was new).
        return match Arc::get_mut(&mut chunks[i].1) {
            Some(bm) => bm.insert(slot),
            None => !chunks[i].1.contains(slot) && Arc::make_mut(&mut chunks[i].1).insert(slot),
        };
    }
    if list[i].1.contains(slot) {
        return false;
    }
    Arc::make_mut(&mut Arc::make_mut(list)[i].1).insert(slot)
}

/// Clears `slot`; copies nothing when it was not set. Returns whether it was removed.
pub(super) fn remove(list: &mut Arc<Vec<Chunk>>, slot: u32) -> bool {
    let Ok(i) = find(list, chunk_of(slot)) else {
        return false;
    };
    if let Some(chunks) = Arc::get_mut(list) {
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
    if !list[i].1.contains(slot) {
        return false;
    }
    if list[i].1.len() == 1 {
        Arc::make_mut(list).remove(i);
    } else {
        Arc::make_mut(&mut Arc::make_mut(list)[i].1).remove(slot);
    }
    true
}

/// Merges more than a few logged writes in as two sorted sets (see `Bits::apply_sorted`);
/// returns whether any slot may have been removed.
pub(super) fn apply_sorted(list: &mut Arc<Vec<Chunk>>, writes: &[Write]) -> bool {
    let shared = Arc::strong_count(list) > 1 || list.iter().any(|(_, c)| Arc::strong_count(c) > 1);
    let (mut add, mut rem) = (Vec::new(), Vec::new());
    for w in winners(writes) {
        let slot = slot_of(w);
        // Writes that change nothing are dropped first when copying is at stake.
        if shared && contains(list, slot) == sets(w) {
            continue;
        }
        if sets(w) {
            add.push(slot);
        } else {
            rem.push(slot);
        }
    }
    if !add.is_empty() {
        or_assign(list, &chunks_of_sorted(&add));
    }
    if !rem.is_empty() {
        andnot_assign(list, &chunks_of_sorted(&rem));
    }
    !rem.is_empty()
}

/// Flips sorted, distinct `slots`, chunk by chunk (one XOR with a bitmap of the chunk's slots).
pub(super) fn flip_sorted(list: &mut Arc<Vec<Chunk>>, slots: &[u32]) {
    for run in slots.chunk_by(|a, b| chunk_of(*a) == chunk_of(*b)) {
        let id = chunk_of(run[0]);
        let flips = roaring_of_sorted(run);
        match find(list, id) {
            Ok(i) => {
                let chunks = Arc::make_mut(list);
                let bm = Arc::make_mut(&mut chunks[i].1);
                *bm ^= flips;
                if bm.is_empty() {
                    chunks.remove(i);
                }
            }
            Err(i) => Arc::make_mut(list).insert(i, (id, Arc::new(flips))),
        }
    }
}

/// `a ∩ b`.
pub(super) fn and(a: &[Chunk], b: &[Chunk]) -> Vec<Chunk> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
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
    out
}

/// `|a ∩ b|`.
pub(super) fn and_len(a: &[Chunk], b: &[Chunk]) -> u64 {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                n += a[i].1.intersection_len(&b[j].1);
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// `a ∪ b`; chunks present on one side only are shared.
pub(super) fn or(a: &[Chunk], b: &[Chunk]) -> Vec<Chunk> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match ord {
            Ordering::Less => {
                out.push(a[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j].clone());
                j += 1;
            }
            Ordering::Equal => {
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
    out
}

/// `a − b`; chunks `b` lacks are shared.
pub(super) fn andnot(a: &[Chunk], b: &[Chunk]) -> Vec<Chunk> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for (id, bm) in a {
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
    out
}

/// In place `list ∪= b`: chunks `list` lacks are shared; chunks only `list` owns are updated
/// without copying, shared ones are copied once.
pub(super) fn or_assign(list: &mut Arc<Vec<Chunk>>, b: &[Chunk]) {
    let mine = std::mem::take(Arc::make_mut(list));
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
    *Arc::make_mut(list) = out;
}

/// In place `list ∩= b`; chunks only `list` owns are updated without copying.
pub(super) fn and_assign(list: &mut Arc<Vec<Chunk>>, b: &[Chunk]) {
    let mine = std::mem::take(Arc::make_mut(list));
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
    *Arc::make_mut(list) = out;
}

/// In place `list −= b`; copies only shared chunks that actually lose slots, updates chunks
/// only `list` owns in place.
pub(super) fn andnot_assign(list: &mut Arc<Vec<Chunk>>, b: &[Chunk]) {
    if b.is_empty() || list.is_empty() {
        return;
    }
    let hits = |id: u32, bm: &RoaringBitmap| find(b, id).ok().filter(|&j| !bm.is_disjoint(&b[j].1));
    if Arc::get_mut(list).is_none() && !list.iter().any(|(id, bm)| hits(*id, bm).is_some()) {
        return;
    }
    let chunks = Arc::make_mut(list);
    for (id, bm) in chunks.iter_mut() {
        if let Some(own) = Arc::get_mut(bm) {
            if let Ok(j) = find(b, *id) {
                *own -= &*b[j].1;
            }
        } else if let Some(j) = hits(*id, bm) {
            *Arc::make_mut(bm) -= &*b[j].1;
        }
    }
    chunks.retain(|(_, bm)| !bm.is_empty());
}

/// The slots within `lo..=hi` (`lo ≤ hi`).
pub(super) fn restrict(chunks: &[Chunk], lo: u32, hi: u32) -> Vec<Chunk> {
    let mut out = Vec::new();
    for (id, bm) in chunks {
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
    out
}

/// Equal chunk lists (shared chunks compare by pointer).
pub(super) fn eq(a: &[Chunk], b: &[Chunk]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && (Arc::ptr_eq(&x.1, &y.1) || x.1 == y.1))
}
