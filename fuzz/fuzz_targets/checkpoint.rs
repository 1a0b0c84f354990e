//! Feeds arbitrary bytes to the checkpoint loader as the body of `index.ckpt`, with a correct
//! CRC appended so the decoder behind the CRC check is reached: it loads or is refused with a
//! typed error, never panics or allocates past what the file can hold. Seed it with a real
//! checkpoint (any `<data_dir>/index/index.ckpt` of the image-feed config, its last four bytes
//! removed). The bounded version runs in CI (`fuzz_inputs::damaged_checkpoints_…`).
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run checkpoint -- -max_total_time=60
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgroar::fixtures::schema;
use pgroar::index::Index;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let mut file = data.to_vec();
    file.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    std::fs::write(dir.path().join("index.ckpt"), &file).unwrap();
    if let Ok(Some(index)) = Index::load_checkpoint(dir.path(), schema()) {
        let _ = index.snapshot().count(Some("nsfwLevel eq 1 OR tagIds in [1, 2]"));
    }
});
