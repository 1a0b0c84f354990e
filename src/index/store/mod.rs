//! Where the index's data lives: bitmaps (`bits`), the per-field key maps (`keymap`), the
//! per-slot columns (`columns`), keys and dictionaries (`keys`), and the write log that batches
//! bitmap writes (`writes`); `size` estimates what they take. Nothing here knows about ops, queries or checkpoints.

pub(crate) mod bits;
pub(crate) mod columns;
pub(crate) mod keymap;
pub(crate) mod keys;
pub(crate) mod packed;
pub(crate) mod prefetch;
pub(crate) mod size;
pub(crate) mod writes;
