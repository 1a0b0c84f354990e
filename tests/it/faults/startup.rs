//! Start-up: the stream resumes while the checkpoint loads, so a slow load (a big index) holds
//! neither the slot nor the changes made while pgroar was down; queries wait for the load.

use std::time::{Duration, Instant};

use super::{assert_equals_sql, served_feed, stop};
use crate::it::support::feed::insert_sql;
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
