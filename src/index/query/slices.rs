//! Bit-sliced operations over a sort field's layers (layer b = slots whose value has bit b set).
//!
//! Everything works on whole bitmaps, a few operations per layer, never per slot: comparisons
//! with a constant (O'Neil & Quass), ranges, top-k selection by walking the layers from the
//! top bit, and reading the values of a few slots back from the layers.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::index::store::bits::Bits;

/// Sort direction.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// Which side of a comparison a caller keeps besides equality.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) enum Side {
    /// Values below the constant.
    Below,
    /// Values above the constant.
    Above,
}

/// The slots of `universe` on `side` of `c`, and those equal to it (`c` must fit the layers).
/// The other side is never materialized: each layer costs one or two bitmap operations.
pub(crate) fn compare(layers: &[Bits], universe: &Bits, c: u32, side: Side) -> (Bits, Bits) {
    let mut kept = Bits::new();
    let mut eq = universe.clone();
    for (b, layer) in layers.iter().enumerate().rev() {
        if eq.is_empty() {
            break;
        }
        // `eq` is owned by this call after its first change, so the in-place ops do not copy.
        match (c >> b & 1 == 1, side) {
            (true, Side::Below) => {
                kept.or_assign(&eq.andnot(layer));
                eq.and_assign(layer);
            }
            (true, Side::Above) => eq.and_assign(layer),
            (false, Side::Above) => {
                kept.or_assign(&eq.and(layer));
                eq.andnot_assign(layer);
            }
            (false, Side::Below) => eq.andnot_assign(layer),
        }
    }
    (kept, eq)
}

/// The slots of `universe` whose value lies in `range` (already clamped to the field's range).
pub(crate) fn in_range(
    layers: &[Bits],
    universe: &Bits,
    range: RangeInclusive<u32>,
    max: u32,
) -> Bits {
    let (lo, hi) = (*range.start(), *range.end());
    if lo > hi {
        return Bits::new();
    }
    let mut r = universe.clone();
    if lo > 0 {
        let (mut above, eq) = compare(layers, &r, lo, Side::Above);
        above.or_assign(&eq);
        r = above;
    }
    if hi < max {
        let (mut below, eq) = compare(layers, &r, hi, Side::Below);
        below.or_assign(&eq);
        r = below;
    }
    r
}

/// The slots of `candidates` strictly after `(value, slot)` in `order`.
pub(crate) fn after(
    layers: &[Bits],
    candidates: &Bits,
    value: u32,
    slot: u32,
    order: Order,
) -> Bits {
    let (side, ties) = match order {
        Order::Desc => (Side::Below, slot.checked_sub(1).map(|s| 0..=s)),
        Order::Asc => (Side::Above, slot.checked_add(1).map(|s| s..=u32::MAX)),
    };
    let (mut rest, eq) = compare(layers, candidates, value, side);
    if let Some(range) = ties {
        rest.or_assign(&eq.restrict(range));
    }
    rest
}

/// The first `k` slots of `candidates` in `(value, slot)` `order`, as an ascending slot list
/// (not yet in result order). Walks the layers from the top bit, narrowing the candidates; ties
/// at the boundary value are broken by slot id in the same direction.
pub(crate) fn top_k(layers: &[Bits], candidates: &Bits, k: usize, order: Order) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    if candidates.len() <= k as u64 {
        return candidates.iter().collect();
    }
    let k = k as u64;
    let mut taken = Bits::new();
    let mut n_taken = 0u64;
    let mut open = candidates.clone();
    for layer in layers.iter().rev() {
        // The better half of the still-open slots at this bit.
        let better = match order {
            Order::Desc => open.and(layer),
            Order::Asc => open.andnot(layer),
        };
        let n = better.len();
        if n == 0 {
            continue;
        }
        if n_taken + n > k {
            open = better;
        } else {
            n_taken += n;
            if n_taken == k {
                taken.or_assign(&better);
                open = Bits::new();
                break;
            }
            open.andnot_assign(&better);
            taken.or_assign(&better);
        }
    }
    // `open` now holds slots tied on the boundary value.
    let need = (k - n_taken) as usize;
    let boundary: Bits = match order {
        Order::Desc => open.iter().rev().take(need).collect(),
        Order::Asc => open.iter().take(need).collect(),
    };
    taken.or(&boundary).iter().collect()
}

/// The values of `slots` (ascending) read back from the layers.
pub(crate) fn values_of(layers: &[Bits], slots: &[u32]) -> Vec<u32> {
    let mut values = vec![0u32; slots.len()];
    let set: Bits = slots.iter().copied().collect();
    for (b, layer) in layers.iter().enumerate() {
        let mut i = 0;
        for s in set.and(layer).iter() {
            while slots[i] < s {
                i += 1;
            }
            values[i] |= 1 << b;
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layers_of(values: &[(u32, u32)], bits: usize) -> Vec<Bits> {
        (0..bits)
            .map(|b| {
                values
                    .iter()
                    .filter(|(_, v)| v >> b & 1 == 1)
                    .map(|(s, _)| *s)
                    .collect()
            })
            .collect()
    }

    fn sample() -> impl Strategy<Value = (Vec<(u32, u32)>, u32, usize)> {
        (
            prop::collection::btree_map(
                prop_oneof![0u32..300, (1u32 << 20)..(1u32 << 20) + 50],
                0u32..16,
                0..120,
            ),
            0u32..16,
            0usize..40,
        )
            .prop_map(|(m, c, k)| (m.into_iter().collect(), c, k))
    }

    proptest! {
        #[test]
        fn bit_sliced_ops_match_a_sort((values, c, k) in sample()) {
            let layers = layers_of(&values, 4);
            let universe: Bits = values.iter().map(|(s, _)| *s).collect();
            let (lt, eq) = compare(&layers, &universe, c, Side::Below);
            let (gt, eq2) = compare(&layers, &universe, c, Side::Above);
            let pick = |f: &dyn Fn(u32) -> bool| -> Vec<u32> {
                values.iter().filter(|(_, v)| f(*v)).map(|(s, _)| *s).collect()
            };
            prop_assert_eq!(lt.iter().collect::<Vec<_>>(), pick(&|v| v < c));
            prop_assert_eq!(eq.iter().collect::<Vec<_>>(), pick(&|v| v == c));
            prop_assert_eq!(eq2.iter().collect::<Vec<_>>(), pick(&|v| v == c));
            prop_assert_eq!(gt.iter().collect::<Vec<_>>(), pick(&|v| v > c));
            let r = in_range(&layers, &universe, c / 2..=c, 15);
            prop_assert_eq!(r.iter().collect::<Vec<_>>(), pick(&|v| (c / 2..=c).contains(&v)));

            for order in [Order::Asc, Order::Desc] {
                let mut sorted = values.clone();
                sorted.sort_by_key(|&(s, v)| (v, s));
                if order == Order::Desc {
                    sorted.reverse();
                }
                let mut want: Vec<u32> = sorted.iter().take(k).map(|(s, _)| *s).collect();
                want.sort();
                let got = top_k(&layers, &universe, k, order);
                prop_assert_eq!(&got, &want);
                let vals = values_of(&layers, &got);
                for (s, v) in got.iter().zip(vals) {
                    prop_assert_eq!(values.iter().find(|(x, _)| x == s).map(|p| p.1), Some(v));
                }
                // Everything strictly after the k-th in order.
                if let Some(&(ls, lv)) = sorted.get(k) {
                    let rest: Vec<u32> = {
                        let mut r: Vec<u32> = sorted[k + 1..].iter().map(|(s, _)| *s).collect();
                        r.sort();
                        r
                    };
                    let a = after(&layers, &universe, lv, ls, order);
                    prop_assert_eq!(a.iter().collect::<Vec<_>>(), rest);
                }
            }
        }
    }
}
