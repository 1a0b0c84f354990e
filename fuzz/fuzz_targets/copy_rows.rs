//! Feeds arbitrary bytes to the bootstrap's COPY row parsers: as text lines (first byte: the
//! column count) and as a binary COPY stream (header, rows, end marker). Rows parse or are
//! refused with a typed error; every parsed value lies within the input. The bounded version
//! runs in CI (`fuzz_inputs::copy_…`).
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run copy_rows -- -max_total_time=60
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgroar::bootstrap::copy_binary::{BinaryRow, header_len};
use pgroar::bootstrap::copy_text::{CopyRow, lines};
use pgroar::translate::Tuple;

fuzz_target!(|data: &[u8]| {
    let Some((&columns, rest)) = data.split_first() else {
        return;
    };
    let columns = usize::from(columns % 8);
    let mut row = CopyRow::default();
    for range in lines(rest) {
        let line = &rest[range];
        if row.parse(line, columns).is_ok() {
            let tuple = row.tuple(line);
            for c in 0..=columns {
                let _ = tuple.datum(c);
            }
        }
    }
    let mut pos = match header_len(rest) {
        Ok(Some(n)) => n,
        _ => 0,
    };
    let mut row = BinaryRow::default();
    while let Ok(Some(next)) = row.parse(rest, pos, columns) {
        assert!(next > pos && next <= rest.len());
        let tuple = row.tuple(rest);
        for c in 0..=columns {
            let _ = tuple.datum(c);
        }
        pos = next;
    }
});
