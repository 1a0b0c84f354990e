//! A live pipeline behind the HTTP server, as `pgroar run` serves it: bad data shows in
//! `/status` and `/metrics` while the stream goes on, and a read-your-writes wait ends as soon as
//! the write is durable, whichever group commit trigger made it so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgroar::pipeline::{Pipeline, PipelineOptions};
use pgroar::server::{ServerOptions, ServerState, serve};
use pgroar::wal::WalEntry;
use serde_json::{Value, json};

use super::{Fixture, PATIENCE, StopJoin, current_lsn, http, insert_sql, wait_caught_up};
use super::{wait_streaming, wal_entries};

/// The HTTP server over a running pipeline, on 127.0.0.1:0.
struct Served {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start(p: &Pipeline) -> Served {
        let state = ServerState::new(
            Arc::clone(p.status()),
            p.published(),
            p.applied(),
            ServerOptions::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Served {
            base,
            stop: Some(stop),
            task,
        }
    }

    async fn status(&self) -> Value {
        let (code, status) = http("GET", format!("{}/status", self.base), None).await;
        assert_eq!(code, 200, "{status}");
        status
    }

    /// `/metrics` as `name{labels}` → value.
    async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        let (code, text) = http("GET", format!("{}/metrics", self.base), None).await;
        assert_eq!(code, 200);
        text.as_str()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_owned(), value.parse().unwrap())
            })
            .collect()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("the server stops")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_is_counted_in_status_and_metrics_while_streaming() {
    let f = Fixture::new("stream_bad_data");
    let client = f.client().await;
    // Ids past u32::MAX need a bigint column.
    client
        .batch_execute("ALTER TABLE items ALTER COLUMN id TYPE bigint")
        .await
        .unwrap();
    let p = f.start().await;
    wait_streaming(&p).await;
    let server = Served::start(&p).await;
    client
        .batch_execute(
            "INSERT INTO items VALUES (1, 1, 1, 10);
             INSERT INTO items VALUES (2, 2, 2, -5);
             INSERT INTO items VALUES (5000000000, 3, 3, 7);
             UPDATE items SET s = -1 WHERE id = 1;",
        )
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    // Counted while the pipeline runs, not only at shutdown.
    let status = server.status().await;
    assert_eq!(status["phase"], "streaming", "{status}");
    let bad = &status["bad_data"];
    assert_eq!(bad["clamped_values"], 2, "{status}");
    assert_eq!(bad["skipped_ids"], 1, "{status}");
    assert_eq!(bad["bad_slot_ids"], 0, "{status}");
    assert_eq!(status["rows_translated_total"], 4, "{status}");
    let m = server.metrics().await;
    let g = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:?}"));
    assert_eq!(g(r#"pgroar_bad_data_total{kind="clamped_value"}"#), 2.0);
    assert_eq!(g(r#"pgroar_bad_data_total{kind="skipped_id"}"#), 1.0);
    assert_eq!(g(r#"pgroar_bad_data_total{kind="bad_slot_id"}"#), 0.0);
    assert_eq!(g("pgroar_rows_translated_total"), 4.0);
    // The clamped rows are in the index (sorted as 0), the one without a slot is not, and the
    // stream goes on.
    assert_eq!(p.snapshot().alive_count(), 2);
    client
        .batch_execute("INSERT INTO items VALUES (3, 1, 1, 30)")
        .await
        .unwrap();
    wait_caught_up(&p, &client).await;
    assert_eq!(p.snapshot().alive_count(), 3);
    let status = server.status().await;
    assert_eq!(status["rows_translated_total"], 5, "{status}");
    assert_eq!(status["bad_data"]["clamped_values"], 2, "{status}");
    server.stop().await;
    p.join_after_stop().await;
}

/// Single-row transactions on their own connection until `stop`; each takes `gate` for its
/// duration, so whoever holds the gate knows no load transaction is in flight.
async fn load(
    client: tokio_postgres::Client,
    gate: Arc<tokio::sync::Mutex<()>>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) {
    let mut id = 0;
    while !stop.load(Ordering::Relaxed) {
        let turn = gate.lock().await;
        client
            .execute(
                "UPDATE items SET s = s + 1 WHERE id = $1",
                &[&(id % 100 + 1)],
            )
            .await
            .unwrap();
        done.fetch_add(1, Ordering::Relaxed);
        id += 1;
        drop(turn);
        // A load pgroar keeps up with (one fsync per transaction here), so the waits below
        // measure the Mark, not a backlog.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Adjusts the pipeline's options.
type Tune = fn(&mut PipelineOptions);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_min_lsn_wait_ends_promptly_when_group_commit_fires_on_delay_or_bytes() {
    let f = Fixture::new("stream_min_lsn");
    let client = f.client().await;
    // An hour between keepalive Marks: a wait that needs one never ends in time. No Mark at
    // idle commits (which would prove the commit's end anyway), and each variant makes syncs
    // fire on one trigger.
    let variants: [(&str, Tune); 2] = [
        ("max delay", |o| {
            o.source.group_commit_max_delay = Duration::ZERO;
        }),
        ("max bytes", |o| {
            o.source.group_commit_max_delay = Duration::from_secs(3600);
            o.source.group_commit_max_bytes = 1;
        }),
    ];
    for (round, (trigger, tune)) in variants.into_iter().enumerate() {
        let p = f
            .start_with(|o| {
                o.source.keepalive_mark_interval = Duration::from_secs(3600);
                o.source.mark_idle_commits = false;
                tune(o);
            })
            .await;
        wait_streaming(&p).await;
        if round == 0 {
            // Inserted once the slot exists, so the stream carries them. (No keepalive Marks:
            // wait for the rows themselves, not for a position.)
            client.batch_execute(&insert_sql(1, 100)).await.unwrap();
            let deadline = Instant::now() + PATIENCE;
            while p.snapshot().alive_count() < 100 {
                assert!(Instant::now() < deadline, "the rows were not applied");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let server = Served::start(&p).await;
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let work = tokio::spawn(load(
            f.client().await,
            Arc::clone(&gate),
            Arc::clone(&stop),
            Arc::clone(&done),
        ));
        let mut waits = Vec::new();
        for i in 0..5i32 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            // The app's write is the last commit of the burst: nothing committed after it can
            // carry the index past the position read below.
            let turn = gate.lock().await;
            let b = 10 + (round as i32) * 10 + i;
            let id = i + 1;
            client
                .execute("UPDATE items SET b = $1 WHERE id = $2", &[&b, &id])
                .await
                .unwrap();
            let after_commit = current_lsn(&client).await;
            let started = Instant::now();
            let (code, answer) = http(
                "POST",
                format!("{}/query", server.base),
                Some(json!({
                    "filter": format!("b eq {b}"),
                    "min_lsn": after_commit.to_string(),
                    "timeout_ms": 10_000,
                })),
            )
            .await;
            let waited = started.elapsed();
            assert_eq!(code, 200, "{trigger}: {answer} after {waited:?}");
            assert_eq!(answer["ids"], json!([id]), "{trigger}: {answer}");
            drop(turn);
            waits.push(waited);
        }
        stop.store(true, Ordering::Relaxed);
        work.await.unwrap();
        let slowest = *waits.iter().max().unwrap();
        eprintln!(
            "min_lsn waits with syncs on {trigger} ({} load transactions): {waits:?}",
            done.load(Ordering::Relaxed)
        );
        // Well under any keepalive Mark (an hour away) and Postgres's keepalive cadence.
        assert!(slowest < Duration::from_secs(2), "{trigger}: {waits:?}");
        assert!(done.load(Ordering::Relaxed) > 10, "the load did not run");
        server.stop().await;
        p.join_after_stop().await;
    }
    // Without a waiting query no Mark follows a commit synced on delay or bytes: the WAL may
    // end exactly at a commit, as the resend test needs.
    let entries = wal_entries(&f);
    assert!(
        entries
            .windows(2)
            .any(|w| matches!(w, [WalEntry::Commit { .. }, WalEntry::Ops { .. }])),
        "every commit was followed by a Mark"
    );
}
