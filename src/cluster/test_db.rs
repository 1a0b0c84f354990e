//! A fresh database on the shared cluster, for one test.

use std::time::{Duration, Instant};

use super::{Cluster, ClusterError, block_on, connect, quote_ident};

/// A database of its own on [`Cluster::shared`], for one test.
///
/// Dropping it terminates the sessions and walsenders still attached to it, drops its
/// logical replication slots (so tests do not exhaust `max_replication_slots` or pin WAL)
/// and drops the database. That clean-up is best effort: the whole cluster goes away at
/// process exit anyway.
#[derive(Debug)]
pub struct TestDb {
    cluster: &'static Cluster,
    name: String,
}

impl TestDb {
    /// Creates a database named after `topic` on the shared cluster.
    ///
    /// # Panics
    /// When the shared cluster cannot be started or the database cannot be created: this is
    /// test scaffolding, and the message says why.
    ///
    /// ```no_run
    /// # async fn example() {
    /// use pgroar::cluster::TestDb;
    ///
    /// let db = TestDb::new("my_topic");
    /// let client = db.client().await.unwrap();
    /// client.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    /// # }
    /// ```
    #[track_caller]
    pub fn new(topic: &str) -> TestDb {
        let cluster = Cluster::shared();
        match cluster.create_database(topic) {
            Ok(name) => TestDb { cluster, name },
            Err(e) => panic!("cannot create a test database for {topic:?}: {e:?}"),
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A libpq URI for this database (user `postgres`, no password).
    pub fn url(&self) -> String {
        self.cluster.url(&self.name)
    }

    /// The cluster the database lives on.
    pub fn cluster(&self) -> &'static Cluster {
        self.cluster
    }

    /// A connected client; its connection is driven by a task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn client(&self) -> Result<tokio_postgres::Client, ClusterError> {
        connect(&self.url())
            .await
            .map_err(|source| ClusterError::Sql {
                db: self.name.clone(),
                source,
            })
    }

    /// Runs `sql` (one or more statements) in this database; blocking, usable anywhere.
    pub fn execute(&self, sql: &str) -> Result<(), ClusterError> {
        self.cluster.execute(&self.name, sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.cluster.ensure_running().is_err() {
            return;
        }
        let url = self.cluster.url("postgres");
        let name = self.name.clone();
        let outcome: Result<(), tokio_postgres::Error> = block_on(async move {
            let client = connect(&url).await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                client
                    .execute(
                        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                         WHERE database = $1 AND active_pid IS NOT NULL",
                        &[&name],
                    )
                    .await?;
                let dropped = client
                    .execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                         WHERE database = $1 AND NOT active",
                        &[&name],
                    )
                    .await;
                let left: i64 = client
                    .query_one(
                        "SELECT count(*) FROM pg_replication_slots WHERE database = $1",
                        &[&name],
                    )
                    .await?
                    .get(0);
                // A slot may turn active again between the two statements; retry briefly.
                if left == 0 || Instant::now() > deadline {
                    dropped?;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                ))
                .await
        });
        if let Err(e) = outcome {
            tracing::debug!(db = %self.name, error = ?e, "dropping a test database");
        }
    }
}
