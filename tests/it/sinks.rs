//! The coalescing sink: arrival-order application across batches, immutable snapshots for
//! readers, read-your-writes through the applied cursor.

use pgroar::fixtures::schema;
use pgroar::index::{Index, Query};
use pgroar::ops::{EntityOps, Op};
use pgroar::sink::coalescing::{CoalescingSink, SinkOptions};
use pgroar::{Lsn, WalKey};
use proptest::prelude::*;

fn key(n: u64) -> WalKey {
    WalKey::end_of(Lsn(n))
}

fn count(snapshot: &pgroar::index::Snapshot, filter: &str) -> u64 {
    snapshot.count(Some(filter)).unwrap()
}

/// The original writer applied, per flush cycle, all removes before all inserts — so an `add`
/// followed by a `remove` in the next batch could end with the value still set. Here batches
/// that land in the same cycle still apply in arrival order.
#[test]
fn a_remove_after_an_add_in_the_next_batch_wins() {
    let sink = CoalescingSink::spawn(Index::new(schema()), SinkOptions::default());
    for round in 0..200u64 {
        sink.send(
            vec![EntityOps::alive(
                1,
                vec![Op::add("tagIds", 5), Op::set("nsfwLevel", 1)],
            )],
            key(2 * round + 1),
        )
        .unwrap();
        sink.send(
            vec![EntityOps::new(
                1,
                vec![Op::remove("tagIds", 5), Op::remove("nsfwLevel", 1)],
            )],
            key(2 * round + 2),
        )
        .unwrap();
    }
    let snapshot = sink.sync().unwrap();
    assert_eq!(snapshot.applied(), key(400));
    assert_eq!(count(&snapshot, "tagIds eq 5"), 0);
    assert_eq!(count(&snapshot, "nsfwLevel eq 1"), 0);
    assert_eq!(snapshot.alive_count(), 1);
}

#[test]
fn snapshots_are_immutable_and_tagged_with_what_they_reflect() {
    let sink = CoalescingSink::spawn(Index::new(schema()), SinkOptions::default());
    let batch: Vec<EntityOps> = (0..100)
        .map(|i| EntityOps::alive(i, vec![Op::set("nsfwLevel", i % 2)]))
        .collect();
    sink.send(batch, key(10)).unwrap();
    let first = sink.sync().unwrap();
    assert_eq!(first.applied(), key(10));
    assert_eq!(count(&first, "nsfwLevel eq 1"), 50);

    // A reader keeps `first` (and the published Arc) while the writer moves on: the writer must
    // not wait for it, and what the reader sees must not change under it.
    let held = sink.snapshot();
    let deletes: Vec<EntityOps> = (0..100)
        .step_by(2)
        .map(|i| EntityOps::new(i, vec![Op::Delete]))
        .collect();
    sink.send(deletes, key(20)).unwrap();
    sink.send(
        vec![EntityOps::new(1, vec![Op::set("nsfwLevel", 0)])],
        key(30),
    )
    .unwrap();
    let second = sink.sync().unwrap();

    assert_eq!(second.applied(), key(30));
    assert_eq!(second.alive_count(), 50);
    assert_eq!(count(&second, "nsfwLevel eq 1"), 49);
    assert_eq!(count(&second, "nsfwLevel eq 0"), 1);
    for old in [&first, &*held] {
        assert_eq!(old.applied(), key(10));
        assert_eq!(old.alive_count(), 100);
        assert_eq!(count(old, "nsfwLevel eq 1"), 50);
        let page = old
            .query(&Query {
                filter: Some("nsfwLevel eq 0".into()),
                limit: 3,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(page.ids, vec![0, 2, 4]);
    }
}

#[test]
fn the_applied_cursor_is_published_for_waiters() {
    let sink = CoalescingSink::spawn(Index::new(schema()), SinkOptions::default());
    let mut applied = sink.applied();
    assert_eq!(*applied.borrow_and_update(), WalKey::ZERO);
    sink.send(vec![EntityOps::alive(7, vec![Op::set("id", 3)])], key(5))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let reached = runtime.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            applied.wait_for(|k| *k >= key(5)),
        )
        .await
    });
    assert_eq!(
        *reached.expect("the writer published within 10 s").unwrap(),
        key(5)
    );
    assert_eq!(sink.snapshot().applied(), key(5));
    let index = sink.shutdown().unwrap();
    assert_eq!(index.applied(), key(5));
    assert_eq!(index.alive_count(), 1);
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i64..3).prop_map(|v| Op::set("nsfwLevel", v)),
        (0i64..3).prop_map(|v| Op::remove("nsfwLevel", v)),
        (0i64..4).prop_map(|v| Op::add("tagIds", v)),
        (0i64..4).prop_map(|v| Op::remove("tagIds", v)),
        (0i64..70000).prop_map(|v| Op::set("id", v)),
        Just(Op::Delete),
    ]
}

fn batches() -> impl Strategy<Value = Vec<Vec<EntityOps>>> {
    let entity = (0i64..5, prop::collection::vec(op(), 0..4), any::<bool>()).prop_map(
        |(id, ops, creates_slot)| EntityOps {
            entity_id: id,
            ops,
            creates_slot,
        },
    );
    prop::collection::vec(prop::collection::vec(entity, 0..6), 1..30)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the writer coalesces into one cycle, the result is sequential application.
    #[test]
    fn the_sink_equals_sequential_application(batches in batches(), capacity in 1usize..4) {
        let mut sequential = Index::new(schema());
        let options = SinkOptions { capacity, max_publish_delay: std::time::Duration::from_millis(50) };
        let sink = CoalescingSink::spawn(Index::new(schema()), options);
        for (i, batch) in batches.iter().enumerate() {
            for e in batch {
                sequential.apply(e);
            }
            sink.send(batch.clone(), key(i as u64 + 1)).unwrap();
        }
        let index = sink.shutdown().unwrap();
        prop_assert_eq!(index.applied(), key(batches.len() as u64));
        sequential.set_applied(key(batches.len() as u64));
        prop_assert_eq!(index.debug_state(), sequential.debug_state());
    }
}
