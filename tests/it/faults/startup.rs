//! Start-up: the stream resumes while the checkpoint loads, so a slow load (a big index) holds
//! neither the slot nor the changes made while pgroar was down; queries wait for the bitmaps
//! only, not for the index writer's columns, and the writes wait for those.

use std::time::{Duration, Instant};

use super::{assert_equals_sql, served_feed, stop};
use crate::it::support::feed::{Rng, assert_check_passes, http, insert_sql, statement};
use crate::it::support::follow::{current_lsn, nudge, slot_confirmed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_while_the_checkpoint_loads() {
    let (db, client, mut served) = served_feed("startup_early").await;
    let slot = format!("s_{}", db.name());
    stop(&mut served);
    // Changes while down; then a start whose checkpoint load takes 4 s (a failpoint).
    client
        .batch_execute(&insert_sql(3001, 3500, 7))
        .await
        .unwrap();
    let target = current_lsn(&client).await;
    served.runner.env = vec![("FAILPOINTS".into(), "checkpoint-load=sleep(4000)".into())];
    let logged = std::fs::read_to_string(&served.runner.log).unwrap().len();
    let started = Instant::now();
    served.child = served.runner.spawn(&["run"]);
    loop {
        if slot_confirmed(&client, &slot)
            .await
            .is_some_and(|c| c > target)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the slot did not confirm the changes made while down during the load:\n{}",
            served.runner.log_tail()
        );
        nudge(&client).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Confirmed while the index was still loading (its end is logged).
    let log = std::fs::read_to_string(&served.runner.log).unwrap()[logged..].to_owned();
    assert!(
        log.contains("streaming") && !log.contains("index ready"),
        "{log}"
    );
    served.runner.wait_ready(&mut served.child).await;
    assert_equals_sql(&served, &client, "after a slow checkpoint load").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_answered_while_the_writer_rebuilds_its_columns() {
    let (_db, client, mut served) = served_feed("startup_lazy").await;
    stop(&mut served);
    // Without old rows in the stream, a change finds a slot's previous values in the writer's
    // columns only.
    client
        .batch_execute(
            r#"ALTER TABLE "Image" REPLICA IDENTITY DEFAULT;
               ALTER TABLE "Post" REPLICA IDENTITY DEFAULT;"#,
        )
        .await
        .unwrap();
    let images: i64 = client
        .query_one(r#"SELECT count(*) FROM "Image""#, &[])
        .await
        .unwrap()
        .get(0);
    // The index writer's rebuild of its sort columns and link keys takes 4 s (a failpoint).
    served.runner.env = vec![("FAILPOINTS".into(), "checkpoint-finish=sleep(4000)".into())];
    let logged = std::fs::read_to_string(&served.runner.log).unwrap().len();
    let started = Instant::now();
    served.child = served.runner.spawn(&["run"]);
    let query = serde_json::json!({"limit": 1});
    loop {
        let url = format!("{}/query", served.runner.base);
        // (A request made before the server serves waits in the listener's backlog.)
        let answer = http(url, Some(query.clone())).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no answer while the writer rebuilds:\n{}",
            served.runner.log_tail()
        );
        if let Some((200, answer)) = answer {
            assert_eq!(answer["total"], images, "{answer}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(&served.runner.log).unwrap()[logged..].to_owned();
    assert!(
        log.contains("index ready") && !log.contains("link keys are rebuilt"),
        "{log}"
    );
    // Changes made meanwhile (moves between posts, a post's new publishedAt, flags, deletes)
    // wait for the rebuild, then apply as SQL says.
    let mut rng = Rng(0x5eed_1a2e);
    for _ in 0..40 {
        let sql = statement(&mut rng, 1, 3000);
        client.batch_execute(&sql).await.unwrap();
    }
    assert_equals_sql(&served, &client, "after a lazy load").await;
    // Sort values too (publishedAt, moved with the images' posts), as `pgroar check` compares.
    let config = served.runner.config.clone();
    tokio::task::spawn_blocking(move || assert_check_passes(&config))
        .await
        .unwrap();
    let log = std::fs::read_to_string(&served.runner.log).unwrap()[logged..].to_owned();
    assert!(log.contains("link keys are rebuilt"), "{log}");
}
