//! The hasher of the crate's integer-keyed maps: a seeded 64-bit finalizer, a leaf every stage
//! may use.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::OnceLock;

/// Hashes integer keys (index keys, entity ids, relation ids) with a seeded 64-bit finalizer instead
/// of SipHash, which cost more than the rest of a lookup. The seed is random per process, so
/// values the indexed tables hold cannot be chosen to pile onto one bucket.
#[derive(Clone, Copy)]
pub(crate) struct KeyHash {
    seed: u64,
}

/// The process's random hashing seed.
pub(crate) fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| RandomState::new().hash_one(0x6b65_7973_u64))
}

impl Default for KeyHash {
    fn default() -> Self {
        KeyHash { seed: seed() }
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

/// The hasher of [`KeyHash`]: folds written words into its state, mixes on `finish`.
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }

    fn finish(&self) -> u64 {
        // The murmur3 64-bit finalizer: every input bit reaches every output bit, so both the
        // bucket (low bits) and hashbrown's tag (top bits) are well spread.
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        z ^ (z >> 33)
    }
}
