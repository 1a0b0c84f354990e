//! The source tables and the slot change under pgroar: a table renamed, removed from the
//! publication, a tracked column retyped while pgroar was stopped, a replica identity changed,
//! the slot dropped by hand or invalidated by `max_slot_wal_keep_size`. Each either stops
//! pgroar with an error naming the table or slot and the fix, or is reported; none is silent.

use std::time::{Duration, Instant};

use super::{seed, serve, served_feed, stop, wait_failed};
use crate::it::support::feed::SCHEMA;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_table_renamed_while_streaming_stops_pgroar_naming_it() {
    let (_db, client, mut served) = served_feed("schema_rename").await;
    client
        .batch_execute(r#"ALTER TABLE "Post" RENAME TO "Article"; UPDATE "Article" SET id = id"#)
        .await
        .unwrap();
    let log = wait_failed(&mut served, Duration::from_secs(30)).await;
    assert!(
        log.contains(r#"source table "public.Post" was renamed to "public.Article""#)
            || log.contains(r#"source table "Post" is not in publication"#),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_table_removed_from_the_publication_stops_pgroar_naming_it() {
    let (_db, client, mut served) = served_feed("schema_unpublish").await;
    client
        .batch_execute(r#"ALTER PUBLICATION pgroar_feed DROP TABLE "TagsOnImage""#)
        .await
        .unwrap();
    let log = wait_failed(&mut served, Duration::from_secs(30)).await;
    assert!(
        log.contains(r#"source table "TagsOnImage" is not in publication "pgroar_feed""#)
            && log.contains("bootstrap --force"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_column_retyped_while_stopped_is_refused_at_restart() {
    let (_db, client, mut served) = served_feed("schema_retype").await;
    stop(&mut served);
    assert!(served.dir.path().join("data/relations").exists());
    client
        .batch_execute(
            r#"ALTER TABLE "Image" ALTER COLUMN "nsfwLevel" TYPE text;
               UPDATE "Image" SET "nsfwLevel" = 'x' || "nsfwLevel" WHERE id = 1"#,
        )
        .await
        .unwrap();
    served.child = served.runner.spawn(&["run"]);
    let log = wait_failed(&mut served, Duration::from_secs(30)).await;
    assert!(
        log.contains("public.Image") && log.contains("nsfwLevel") && log.contains("type"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_identity_changes_are_reported_and_stop_when_they_no_longer_work() {
    let (_db, client, mut served) = served_feed("schema_identity").await;
    // FULL → DEFAULT on the images (the key still carries the slot id): reported.
    client
        .batch_execute(
            r#"ALTER TABLE "Image" REPLICA IDENTITY DEFAULT;
               UPDATE "Image" SET flags = flags + 1 WHERE id = 1"#,
        )
        .await
        .unwrap();
    served.runner.wait_caught_up(&client).await;
    let status = served.runner.status().await;
    let error = status["last_error"].to_string();
    assert!(
        error.contains("replica identity of public.Image changed from Full to Default"),
        "{status}"
    );
    // The join table's identity to NOTHING: its DELETEs could no longer say which link goes.
    client
        .batch_execute(r#"ALTER TABLE "TagsOnImage" REPLICA IDENTITY NOTHING"#)
        .await
        .unwrap();
    let log = wait_failed(&mut served, Duration::from_secs(30)).await;
    assert!(
        log.contains("TagsOnImage") && log.contains("REPLICA IDENTITY"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_dropped_by_hand_is_refused_naming_bootstrap_force() {
    let (db, client, mut served) = served_feed("slot_dropped").await;
    stop(&mut served);
    let slot = format!("s_{}", db.name());
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
    served.child = served.runner.spawn(&["run"]);
    let log = wait_failed(&mut served, Duration::from_secs(30)).await;
    assert!(
        log.contains("does not exist") && log.contains("pgroar bootstrap --force"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_invalidated_while_stopped_is_refused_naming_bootstrap_force() {
    let cluster = pgroar::cluster::Cluster::start(
        pgroar::cluster::ClusterOptions::fast()
            .setting("max_slot_wal_keep_size", "1MB")
            .setting("wal_keep_size", "0"),
    )
    .unwrap();
    let db = cluster.create_database("slot_lost").unwrap();
    cluster.execute(&db, SCHEMA).unwrap();
    let url = cluster.url(&db);
    let client = super::connect(&url).await.unwrap();
    let mut served = serve(&url, "slot_lost", "").await;
    seed(&client).await;
    served.runner.wait_caught_up(&client).await;
    stop(&mut served);
    // Far more WAL than the slot may keep, then checkpoints: the server invalidates it.
    let started = Instant::now();
    loop {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS junk(x int); \
                 INSERT INTO junk SELECT generate_series(1, 200000); \
                 SELECT pg_switch_wal(); CHECKPOINT;",
            )
            .await
            .unwrap();
        let status: Option<String> = client
            .query_one(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'slot_lost'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if status.as_deref() == Some("lost") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{status:?}");
    }
    served.child = served.runner.spawn(&["run"]);
    let log = wait_failed(&mut served, Duration::from_secs(30)).await;
    assert!(
        log.contains("was invalidated by the server")
            && log.contains("max_slot_wal_keep_size")
            && log.contains("pgroar bootstrap --force"),
        "{log}"
    );
}
