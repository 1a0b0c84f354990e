//! Feeds arbitrary bytes to the pgoutput decoder as one message. Nothing may panic; a message
//! that decodes must re-encode to exactly its bytes (decoding is lossless), a Relation must go
//! through the relation cache (first as new, then unchanged, then diffed against a changed
//! copy of itself), and a row change must be placed by the cache or refused with a typed error.
//!
//! Run from the repository root (cargo-fuzz needs a nightly compiler, or `RUSTC_BOOTSTRAP=1`):
//!
//! ```text
//! cargo install cargo-fuzz
//! cp -r fuzz/corpus/pgoutput /tmp/pgoutput_corpus   # keep the checked-in seeds small
//! RUSTC_BOOTSTRAP=1 cargo fuzz run pgoutput /tmp/pgoutput_corpus fuzz/corpus/pgoutput -- -max_total_time=60
//! ```
//!
//! The seeds in `fuzz/corpus/pgoutput/` are real messages captured from PostgreSQL 15;
//! regenerate them with
//! `cargo test --test main pgoutput_capture::regenerate_fuzz_seed_corpus -- --ignored`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgroar::decode::{Message, RelationCache, decode_message, encode_message};

fn check_relation(cache: &mut RelationCache, msg: &Message) {
    let Message::Relation(r) = msg else { return };
    assert!(cache.insert(r.clone()).is_new());
    assert!(cache.insert(r.clone()).is_unchanged());
    let mut changed = r.clone();
    changed.columns.pop();
    if let Some(first) = changed.columns.first_mut() {
        first.type_modifier = first.type_modifier.wrapping_add(1);
        first.flags ^= 1;
    }
    let change = cache.insert(changed);
    assert!(change.added.len() <= change.current.columns.len());
    assert!(change.dropped.len() <= r.columns.len());
    assert!(change.retyped.len() <= r.columns.len());
    let _ = change.to_string();
    let names: Vec<&str> = r.columns.iter().map(|c| &*c.name).collect();
    let _ = change.check_tracked(names);
}

fuzz_target!(|data: &[u8]| {
    // `Bytes` and `BytesMut` by inference: the fuzz crate depends on pgroar alone.
    let msg = match decode_message(&data.to_vec().into()) {
        Ok(msg) => msg,
        Err(e) => {
            assert!(e.offset() <= data.len());
            let _ = e.to_string();
            return;
        }
    };
    let mut out = Default::default();
    encode_message(&msg, &mut out).expect("a decoded message re-encodes");
    assert_eq!(&out[..], data, "decoding is lossless");

    let mut cache = RelationCache::new();
    check_relation(&mut cache, &msg);
    if let Some(oid) = msg.change_relation() {
        match cache.resolve(&msg) {
            Ok(Some(rel)) => assert_eq!(rel.oid, oid),
            Ok(None) => unreachable!("a row change resolves to a relation or an error"),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
