//! Feeds arbitrary bytes to the WAL's decoders: as a segment (header, then records), as a
//! stream of records, and as a bare Ops payload. Nothing may panic, every decoded record must lie
//! within the input, and every decoded payload must re-encode to exactly its bytes (the encoding
//! is canonical).
//!
//! Run from the repository root (cargo-fuzz needs a nightly compiler, or `RUSTC_BOOTSTRAP=1`):
//!
//! ```text
//! cargo install cargo-fuzz
//! cp -r fuzz/corpus/wal_record /tmp/wal_record_corpus   # keep the checked-in seeds small
//! cargo fuzz run wal_record /tmp/wal_record_corpus fuzz/corpus/wal_record -- -max_total_time=60
//! ```
//!
//! The seeds in `fuzz/corpus/wal_record/` are real encoded records; regenerate them after a
//! format change with `cargo test --test main wal_recovery::regenerate_fuzz_seed_corpus -- --ignored`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgroar::wal::format::{RecordKind, SEGMENT_HEADER_LEN, SegmentHeader, decode_record_header};
use pgroar::wal::{decode_entity_ops, decode_record, encode_entity_ops};

fn check_payload(payload: &[u8]) {
    if let Ok(ops) = decode_entity_ops(payload) {
        let mut again = Vec::new();
        encode_entity_ops(&ops, &mut again).expect("a decoded payload re-encodes");
        assert_eq!(again, payload, "the payload encoding is canonical");
    }
}

fn check_records(mut buf: &[u8]) {
    while let Ok(Some((rec, n))) = decode_record(buf) {
        assert!(n >= 21 && n <= buf.len());
        let header = decode_record_header(buf).unwrap().unwrap();
        assert_eq!(header.total_len(), n as u64);
        assert_eq!(
            (header.kind, header.lsn, header.seq),
            (rec.kind, rec.lsn, rec.seq)
        );
        if rec.kind == RecordKind::Ops {
            check_payload(rec.payload);
        } else {
            assert!(rec.payload.is_empty());
        }
        buf = &buf[n..];
    }
}

fuzz_target!(|data: &[u8]| {
    match SegmentHeader::decode(data) {
        Ok(Some(h)) => {
            assert_eq!(h.encode()[..], data[..SEGMENT_HEADER_LEN]);
            check_records(&data[SEGMENT_HEADER_LEN..]);
        }
        _ => check_records(data),
    }
    check_payload(data);
});
