//! Feeds arbitrary text to the filter language: a filter either parses or is refused with a
//! typed error; what parses prints back to the same tree and evaluates on a small index without
//! panicking. The bounded version runs in CI (`fuzz_inputs::filters_…`).
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run filter -- -max_total_time=60
//! ```
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgroar::filter::Filter;
use pgroar::fixtures::schema;
use pgroar::index::{Index, Snapshot};
use pgroar::ops::{EntityOps, Op};

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let mut index = Index::new(schema());
        let batch: Vec<EntityOps> = (1..=50i64)
            .map(|id| {
                EntityOps::alive(
                    id,
                    vec![
                        Op::set("nsfwLevel", id % 4),
                        Op::set("existedAt", 1_700_000_000 + id),
                        Op::add("tagIds", id % 7),
                    ],
                )
            })
            .collect();
        index.apply_batch(&batch);
        index.snapshot()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = Filter::parse(text) {
        assert_eq!(Filter::parse(&f.to_string()).ok(), Some(f));
    }
    let _ = snapshot().count(Some(text));
});
