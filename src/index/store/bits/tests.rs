//! Bits against a `BTreeSet` model, across both forms and the threshold, and the copy-on-write
//! guarantees (a snapshot never changes; a write that changes nothing copies nothing).

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

/// Far slots plus, often, a dense run long enough to pass `SMALL_MAX` (sometimes across a
/// chunk boundary), so both forms and mixed operands occur.
fn slots() -> impl Strategy<Value = Vec<u32>> {
    let run = prop_oneof![Just(0u32), 0u32..(SMALL_MAX as u32 * 3 / 2)];
    (far_slots(), run, 0u32..3 << 20).prop_map(|(mut v, n, at)| {
        v.extend(at..at + n);
        v
    })
}

fn set(b: &Bits) -> BTreeSet<u32> {
    b.iter().collect()
}

fn chunk_list(b: &Bits) -> Vec<(u32, RoaringBitmap)> {
    b.chunks().map(|(i, c)| (i, c.clone())).collect()
}

fn is_small(b: &Bits) -> bool {
    matches!(b.repr, Repr::Small(_))
}

/// Each form's invariants: a small list is short, sorted and distinct; chunks are valid.
fn check(b: &Bits) -> Result<(), TestCaseError> {
    match &b.repr {
        Repr::Small(s) => {
            prop_assert!(s.len() <= SMALL_MAX && s.len() <= s.capacity());
            prop_assert!(s.slots().windows(2).all(|w| w[0] < w[1]));
        }
        Repr::Chunked(_) => prop_assert!(Bits::from_chunks(chunk_list(b)).is_some()),
    }
    // Both forms present the same chunks, and they rebuild the same set.
    let rebuilt = Bits::from_chunks(chunk_list(b)).expect("valid chunks");
    prop_assert!(rebuilt == *b);
    prop_assert_eq!(is_small(&rebuilt), b.len() <= SMALL_MAX as u64);
    Ok(())
}

proptest! {
    #[test]
    fn flipping_is_a_symmetric_difference_and_leaves_snapshots_alone(
        start in slots(),
        flips in slots(),
    ) {
        let start: BTreeSet<u32> = start.into_iter().collect();
        let flips: BTreeSet<u32> = flips.into_iter().collect();
        let mut b = Bits::from_roaring(start.iter().copied().collect());
        let snapshot = b.clone();
        b.flip_sorted(&flips.iter().copied().collect::<Vec<_>>());
        check(&b)?;
        let want: BTreeSet<u32> = start.symmetric_difference(&flips).copied().collect();
        prop_assert_eq!(set(&b), want);
        prop_assert_eq!(set(&snapshot), start);
    }

    #[test]
    fn roaring_of_sorted_equals_pushing_the_slots(
        mut slots in prop::collection::vec(0u32..600_000, 0..3000),
        dense in 0u32..8,
    ) {
        // Some inputs hold a whole container's worth of values (a bitmap container).
        if dense == 0 {
            slots.extend(200_000..200_000 + 5000);
        }
        slots.sort_unstable();
        slots.dedup();
        let want = RoaringBitmap::from_sorted_iter(slots.iter().copied()).unwrap();
        let got = super::roaring_of_sorted(&slots);
        prop_assert_eq!(got.len(), want.len());
        prop_assert_eq!(got, want);
    }

    #[test]
    fn bitmaps_built_from_sorted_slots_and_word_pages_hold_those_slots(
        mut slots in prop::collection::vec(0u32..3_000_000, 0..6000),
        dense in 0u32..4,
    ) {
        if dense == 0 {
            slots.extend(1_100_000..1_100_000 + 5000);
        }
        slots.sort_unstable();
        slots.dedup();
        let sorted = Bits::from_sorted(&slots);
        check(&sorted)?;
        let mut pages: Vec<(u32, Vec<u64>)> = Vec::new();
        for &s in &slots {
            if pages.last().is_none_or(|(p, _)| *p != s >> 16) {
                pages.push((s >> 16, vec![0; 1024]));
            }
            let words = &mut pages.last_mut().unwrap().1;
            words[(s as usize & 0xffff) / 64] |= 1 << (s % 64);
        }
        // An all-zero page is allowed and holds nothing.
        pages.push((4000, vec![0; 1024]));
        let words = Bits::from_word_pages(&pages);
        check(&words)?;
        let want: BTreeSet<u32> = slots.iter().copied().collect();
        prop_assert_eq!(set(&sorted), want.clone());
        prop_assert_eq!(set(&words), want);
    }

    #[test]
    fn set_algebra_matches_btreeset(a in slots(), b in slots(), lo in any::<u32>(), hi in any::<u32>()) {
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
        prop_assert_eq!(ba.is_empty(), sa.is_empty());
        prop_assert_eq!(ba.iter().rev().collect::<Vec<_>>(), sa.iter().rev().copied().collect::<Vec<_>>());
        prop_assert_eq!(ba.to_roaring(), sa.iter().copied().collect::<RoaringBitmap>());
        prop_assert_eq!(ba == bb, sa == sb);
        for v in sb.iter().take(20) {
            prop_assert_eq!(ba.contains(*v), sa.contains(v));
        }
        // The invariants hold for every result.
        for r in [ba.and(&bb), ba.or(&bb), ba.andnot(&bb), c, d, e, ba.restrict(lo..=hi)] {
            check(&r)?;
        }
    }

    #[test]
    fn logged_writes_match_btreeset(
        start in slots(),
        writes in prop::collection::vec((slots(), any::<bool>(), 0usize..SMALL_MAX * 2), 1..6),
        keep_snapshot in any::<bool>(),
    ) {
        let mut b: Bits = start.iter().copied().collect();
        let mut s: BTreeSet<u32> = start.into_iter().collect();
        let snap = keep_snapshot.then(|| (b.clone(), s.clone()));
        let mut log = Vec::new();
        let push = |log: &mut Vec<Write>, v: u32, set: bool| {
            log.push(u64::from(v) << 32 | (log.len() as u64) << 1 | u64::from(set));
        };
        for (slots, set, drop_first) in writes {
            for v in slots {
                push(&mut log, v, set);
                if set {
                    s.insert(v);
                } else {
                    s.remove(&v);
                }
            }
            // Clearing many present slots takes a chunked bitmap back below the threshold.
            let gone: Vec<u32> = s.iter().copied().take(drop_first).collect();
            for v in gone {
                push(&mut log, v, false);
                s.remove(&v);
            }
        }
        log.sort_unstable();
        b.apply_sorted(&log);
        prop_assert_eq!(set(&b), s.clone());
        check(&b)?;
        // Hysteresis: a chunked bitmap that writes leave holds more than SMALL_MIN slots.
        prop_assert!(is_small(&b) || b.len() > SMALL_MIN as u64);
        if let Some((snap, before)) = snap {
            prop_assert_eq!(set(&snap), before);
        }
    }

    #[test]
    fn insert_remove_match_btreeset(ops in prop::collection::vec((any::<bool>(), slots()), 1..10)) {
        let mut b = Bits::new();
        let mut s = BTreeSet::new();
        let mut snaps = Vec::new();
        for (ins, slots) in ops {
            snaps.push((b.clone(), s.clone()));
            for v in slots {
                if ins {
                    prop_assert_eq!(b.insert(v), s.insert(v));
                } else {
                    prop_assert_eq!(b.remove(v), s.remove(&v));
                }
                prop_assert_eq!(b.contains(v), s.contains(&v));
            }
            check(&b)?;
        }
        prop_assert_eq!(set(&b), s);
        for (snap, before) in snaps {
            prop_assert_eq!(set(&snap), before, "a snapshot never changes");
        }
    }
}

fn list(b: &Bits) -> &Arc<Vec<Chunk>> {
    match &b.repr {
        Repr::Chunked(c) => c,
        Repr::Small(_) => panic!("expected the chunked form"),
    }
}

fn small_buf(b: &Bits) -> &Arc<[u32]> {
    match &b.repr {
        Repr::Small(s) => &s.0,
        Repr::Chunked(_) => panic!("expected the small form"),
    }
}

#[test]
fn a_write_after_a_clone_copies_only_the_touched_chunk() {
    let dense = 100..100 + SMALL_MAX as u32;
    let mut w: Bits = dense.chain([(1 << 20) + 1, (3 << 20) + 7]).collect();
    let snap = w.clone();
    assert!(Arc::ptr_eq(list(&w), list(&snap)));
    w.insert(3);
    assert!(!Arc::ptr_eq(list(&w), list(&snap)));
    assert!(!Arc::ptr_eq(&list(&w)[0].1, &list(&snap)[0].1));
    assert!(Arc::ptr_eq(&list(&w)[1].1, &list(&snap)[1].1));
    assert!(Arc::ptr_eq(&list(&w)[2].1, &list(&snap)[2].1));
    assert!(!snap.contains(3) && w.contains(3));
    // A no-op write copies nothing.
    let snap2 = w.clone();
    w.insert(3);
    w.remove(999_999);
    assert!(Arc::ptr_eq(list(&w), list(&snap2)));
}

#[test]
fn a_small_bitmap_copies_once_then_writes_in_place() {
    let mut w: Bits = [5u32, 9, 1 << 20].into_iter().collect();
    assert!(is_small(&w));
    let snap = w.clone();
    // No-op writes copy nothing.
    assert!(!w.insert(9) && !w.remove(6));
    w.apply_sorted(&[9u64 << 32 | 1, 6u64 << 32]);
    assert!(Arc::ptr_eq(small_buf(&w), small_buf(&snap)));
    // The first real write copies the list (with room to grow); the next ones do not.
    assert!(w.insert(7));
    let copied = small_buf(&w).clone();
    assert!(!Arc::ptr_eq(&copied, small_buf(&snap)));
    drop(copied);
    let before = Arc::as_ptr(small_buf(&w));
    assert!(w.insert(1) && w.remove(9));
    assert_eq!(Arc::as_ptr(small_buf(&w)), before);
    assert_eq!(set(&w), BTreeSet::from([1, 5, 7, 1 << 20]));
    assert_eq!(set(&snap), BTreeSet::from([5, 9, 1 << 20]));
}

#[test]
fn the_form_follows_the_size_with_hysteresis() {
    let max = SMALL_MAX as u32;
    let mut b = Bits::new();
    for v in 0..max {
        b.insert(v * 3);
    }
    assert!(is_small(&b) && b.len() == u64::from(max));
    let small = b.clone();
    b.insert(1);
    assert!(!is_small(&b), "one slot past SMALL_MAX turns chunked");
    assert!(is_small(&small) && small.len() == u64::from(max));
    assert!(b.remove(1) && !is_small(&b), "one slot back stays chunked");
    assert_eq!(b, small);
    assert_eq!(chunk_list(&b), chunk_list(&small));
    // Logged removals down to SMALL_MIN turn it small again.
    let mut log: Vec<Write> = (SMALL_MIN as u32..max)
        .enumerate()
        .map(|(i, v)| u64::from(v * 3) << 32 | (i as u64) << 1)
        .collect();
    log.sort_unstable();
    let mut above = b.clone();
    above.apply_sorted(&log[1..]);
    assert!(!is_small(&above) && above.len() == SMALL_MIN as u64 + 1);
    b.apply_sorted(&log);
    assert!(is_small(&b) && b.len() == SMALL_MIN as u64);
    assert_eq!(set(&b), (0..SMALL_MIN as u32).map(|v| v * 3).collect());
    // Logged adds past SMALL_MAX turn a small bitmap chunked.
    let mut log: Vec<Write> = (0..max).map(|v| u64::from(v * 3 + 1) << 32 | 1).collect();
    log.sort_unstable();
    b.apply_sorted(&log);
    assert!(!is_small(&b) && b.len() == u64::from(max) + SMALL_MIN as u64);
    // Loading few slots from chunks gives the small form, many the chunked one.
    assert!(is_small(&Bits::from_chunks(chunk_list(&small)).unwrap()));
    assert!(!is_small(&Bits::from_chunks(chunk_list(&b)).unwrap()));
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
