//! The Postgres server fails under pgroar while a writer keeps committing: pgroar is paused
//! (SIGSTOP) past the server's `wal_sender_timeout`, which ends its session; the cluster is
//! restarted with `pg_ctl restart -m fast` and then `-m immediate` (a crash and recovery). After
//! each, pgroar reconnects with backoff and its index equals SQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgroar::cluster::{Cluster, ClusterOptions};

use super::{
    Served, Writer, assert_equals_sql, connect, counter, seed, seed_for, serve, wait_readyz,
};
use crate::it::support::feed::{SCHEMA, http};

/// Polls `/readyz` in the background and remembers whether it ever answered 503.
struct ReadyWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<bool>,
}

impl ReadyWatch {
    fn start(served: &Served) -> ReadyWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("{}/readyz", served.runner.base);
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let mut seen = false;
                while !stop.load(Ordering::Relaxed) {
                    seen |= matches!(http(url.clone(), None).await, Some((503, _)));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            }
        });
        ReadyWatch { stop, task }
    }

    async fn saw_503(self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

fn signal(served: &Served, sig: libc::c_int) {
    // SAFETY: kill takes a pid and a signal number, no pointers.
    let rc = unsafe { libc::kill(served.child.0.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_past_wal_sender_timeout_and_server_restarts_lose_nothing() {
    let cluster = Arc::new(
        Cluster::start(ClusterOptions::fast().setting("wal_sender_timeout", "2s")).unwrap(),
    );
    let db = cluster.create_database("faults_pg").unwrap();
    cluster.execute(&db, SCHEMA).unwrap();
    let url = cluster.url(&db);
    let client = connect(&url).await.unwrap();
    let served = serve(&url, "faults_pg", "").await;
    seed(&client).await;
    let writer = Writer::start(&url, seed_for("faults_pg"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Paused for three wal_sender_timeouts: the server ends the session meanwhile.
    let before = counter(&served.runner, "reconnects_total").await;
    signal(&served, libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(6)).await;
    signal(&served, libc::SIGCONT);
    wait_readyz(&served.runner, 200, Duration::from_secs(30)).await;
    {
        let _paused = writer.pause().await;
        assert_equals_sql(&served, &client, "after the pause").await;
    }
    assert!(
        counter(&served.runner, "reconnects_total").await > before,
        "the server's wal_sender_timeout did not end the paused session"
    );

    for (mode, restart) in [
        ("fast", Cluster::restart as fn(&Cluster) -> _),
        ("immediate", Cluster::restart_immediate),
    ] {
        let before = counter(&served.runner, "reconnects_total").await;
        let watch = ReadyWatch::start(&served);
        let c = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || restart(&c))
            .await
            .unwrap()
            .unwrap();
        wait_readyz(&served.runner, 200, Duration::from_secs(60)).await;
        assert!(watch.saw_503().await, "/readyz stayed 200 across -m {mode}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let client = connect(&url).await.unwrap();
        {
            let _paused = writer.pause().await;
            assert_equals_sql(&served, &client, &format!("after restart -m {mode}")).await;
        }
        assert!(counter(&served.runner, "reconnects_total").await > before);
    }

    let (committed, failed) = writer.finish().await;
    let client = connect(&url).await.unwrap();
    assert_equals_sql(&served, &client, "at the end").await;
    eprintln!("server faults: {committed} transactions committed, {failed} failed");
}
