//! A bitmap's heap bytes (see [`super::super::size`]).

use std::mem::size_of;

use roaring::RoaringBitmap;

use super::{Bits, Chunk, Repr};
use crate::index::store::size::{ARC, vec_bytes};

/// Bytes of one container besides its values: its key and its store's pointer and lengths.
const CONTAINER: u64 = 32;

/// Heap bytes of a roaring bitmap: its containers and their values (arrays by capacity, 8 KiB a
/// bitset, runs as stored).
pub(crate) fn roaring_bytes(bm: &RoaringBitmap) -> u64 {
    let s = bm.statistics();
    // The library counts an array's capacity in 4-byte units and a bitset in bits.
    s.n_bytes_array_containers / 2
        + u64::from(s.n_bitset_containers) * 8192
        + s.n_bytes_run_containers
        + u64::from(s.n_containers) * CONTAINER
}

impl Bits {
    /// Heap bytes of this bitmap (shared chunks counted in full).
    pub(crate) fn heap_bytes(&self) -> u64 {
        match &self.repr {
            Repr::Small(s) => ARC + vec_bytes::<u32>(s.0.len()),
            Repr::Chunked(chunks) => {
                let list =
                    ARC + size_of::<Vec<Chunk>>() as u64 + vec_bytes::<Chunk>(chunks.capacity());
                let each = ARC + size_of::<RoaringBitmap>() as u64;
                list + chunks
                    .iter()
                    .map(|(_, c)| each + roaring_bytes(c))
                    .sum::<u64>()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_lists_cost_their_room_and_chunks_their_containers() {
        let small: Bits = (0..100).collect();
        assert!(
            (400..=600).contains(&small.heap_bytes()),
            "{}",
            small.heap_bytes()
        );
        // Every other slot of one 2^16 container: a bitset of 8 KiB.
        let dense: Bits = (0..1 << 16).step_by(2).collect();
        let b = dense.heap_bytes();
        assert!((8192..9000).contains(&b), "{b}");
        // 10k slots spread over 10k containers: one value each.
        let sparse: Bits = (0..10_000u32).map(|i| i << 16).collect();
        let b = sparse.heap_bytes();
        assert!((10_000 * 34..10_000 * 45).contains(&b), "{b}");
    }
}
