//! The form values stream in: binary when every column the index reads has a binary form
//! pgroar decodes (less work for the walsender and for pgroar), text otherwise — switched before
//! any row of such a table is read, and the index equals SQL either way.

use pgroar::config::Config;
use pgroar::status::Counter;
use tokio_postgres::Client;

use super::{Fixture, StopJoin, assert_matches_sql, mixed_workload};
use super::{wait_caught_up, wait_streaming};

/// The options of the `START_REPLICATION` command the walsender holding `slot` runs.
async fn start_replication_command(client: &Client, slot: &str) -> String {
    client
        .query_one(
            "SELECT a.query FROM pg_replication_slots s \
             JOIN pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = $1",
            &[&slot],
        )
        .await
        .expect("the slot's walsender")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_columns_stream_in_binary_form() {
    let f = Fixture::new("stream_values_binary");
    let client = f.client().await;
    let p = f.start().await;
    wait_streaming(&p).await;
    mixed_workload(&client, 1, 2000).await;
    wait_caught_up(&p, &client).await;
    let command = start_replication_command(&client, &f.slot).await;
    assert!(command.contains("binary 'true'"), "{command}");
    assert_matches_sql(&client, &p.snapshot()).await;
    p.join_after_stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numeric_column_switches_the_stream_to_text_before_its_rows() {
    let f = Fixture::new("stream_values_text");
    let client = f.client().await;
    // `n` mirrors `b` plus a quarter (set by a trigger, so the stream carries it); the index
    // computes `b` from `n` alone, so only a correctly read numeric gives SQL's answers.
    client
        .batch_execute(
            "ALTER TABLE items ADD COLUMN n numeric;
             CREATE FUNCTION items_n() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.n := NEW.b + 0.25; RETURN NEW; END $$;
             CREATE TRIGGER items_n BEFORE INSERT OR UPDATE ON items
               FOR EACH ROW EXECUTE FUNCTION items_n();",
        )
        .await
        .unwrap();
    let text = f.config_text("127.0.0.1:0").replace(
        r#"track_fields = ["a", "b", "s"]"#,
        r#"track_fields = ["a", "({n} - 0.25)::int as b", "s"]"#,
    );
    assert!(text.contains("{n}"), "the fixture's config changed");
    let config = Config::from_toml_str(&text, std::iter::empty()).unwrap();
    let p = f.start_config(config, |_| {}).await;
    wait_streaming(&p).await;
    mixed_workload(&client, 1, 2000).await;
    wait_caught_up(&p, &client).await;
    assert_matches_sql(&client, &p.snapshot()).await;
    let status = p.status();
    assert_eq!(status.count(Counter::UnparsableValues), 0);
    assert_eq!(status.count(Counter::EvalErrors), 0);
    assert_eq!(
        status.count(Counter::Reconnects),
        0,
        "the switch is no reconnect"
    );
    let command = start_replication_command(&client, &f.slot).await;
    assert!(!command.contains("binary"), "{command}");
    p.join_after_stop().await;
}
