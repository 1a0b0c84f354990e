//! Estimates of heap bytes, for the index's memory report: what a container's allocation costs
//! by its capacity, counted the way the standard collections lay it out. Estimates, not
//! allocator figures: the process's resident memory adds the allocator's own overhead and what
//! is freed but not returned.

use std::mem::size_of;

/// Bytes of a `Vec<T>`'s buffer of capacity `cap`.
pub(crate) fn vec_bytes<T>(cap: usize) -> u64 {
    (cap * size_of::<T>()) as u64
}

/// Bytes of a `HashMap<K, V>`'s table holding up to `cap` entries: a power of two of buckets,
/// at most 7/8 full, each an entry plus one control byte.
pub(crate) fn map_bytes<K, V>(cap: usize) -> u64 {
    if cap == 0 {
        return 0;
    }
    let buckets = (cap.saturating_mul(8) / 7).next_power_of_two().max(4);
    (buckets * (size_of::<(K, V)>() + 1)) as u64
}

/// Bytes of an `Arc`'s allocation besides its value: the two reference counts.
pub(crate) const ARC: u64 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_their_buckets_up_to_a_power_of_two() {
        assert_eq!(map_bytes::<u32, u32>(0), 0);
        // 7 entries fit 8 buckets of 8 + 1 bytes.
        assert_eq!(map_bytes::<u32, u32>(7), 8 * 9);
        assert_eq!(map_bytes::<u64, u64>(100), 128 * 17);
        assert_eq!(vec_bytes::<u16>(10), 20);
    }
}
