//! The network between pgroar and Postgres fails while a writer keeps committing (directly, not
//! through the proxy): every connection goes silent (blackhole), then every connection is cut.
//! pgroar must notice the silence by its receive timeout, say so on `/readyz`, reconnect by
//! itself once the network is back (ending its abandoned server session instead of waiting for
//! the server's `wal_sender_timeout`), and lose nothing.

use std::time::{Duration, Instant};

use pgroar::cluster::{Cluster, ClusterOptions};

use super::{Writer, assert_equals_sql, connect, counter, seed, seed_for, serve, wait_readyz};
use crate::it::support::feed::SCHEMA;
use crate::it::support::proxy::Proxy;

/// The receive timeout the test configures (the default is twice `wal_sender_timeout`).
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_or_cut_network_is_noticed_reported_and_survived() {
    // The server lets go of a session blocked writing to a silent peer only at its
    // wal_sender_timeout (pgroar ends an idle abandoned session itself): keep it short.
    let cluster =
        Cluster::start(ClusterOptions::fast().setting("wal_sender_timeout", "10s")).unwrap();
    let db = cluster.create_database("faults_net").unwrap();
    cluster.execute(&db, SCHEMA).unwrap();
    let direct = cluster.url(&db);
    let client = connect(&direct).await.unwrap();
    let upstream = format!("{}:{}", cluster.host(), cluster.port())
        .parse()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/{db}?connect_timeout=2",
        proxy.port()
    );
    let extra = format!("receive_timeout_ms = {}", RECEIVE_TIMEOUT.as_millis());
    let served = serve(&url, "faults_net", &extra).await;
    seed(&client).await;
    let writer = Writer::start(&direct, seed_for("faults_net"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Blackhole: nothing is closed, nothing arrives. The receive timeout notices, /readyz goes
    // 503, and it stays 503 while new connections hang too (the connect timeout ends each).
    let before = counter(&served.runner, "reconnects_total").await;
    proxy.blackhole();
    let noticed = wait_readyz(&served.runner, 503, RECEIVE_TIMEOUT * 4).await;
    eprintln!("blackhole noticed after {noticed:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        crate::it::support::feed::http(format!("{}/readyz", served.runner.base), None)
            .await
            .map(|(c, _)| c),
        Some(503),
        "ready while every connection is silent"
    );
    let log = super::log_text(served.dir.path());
    assert!(
        log.contains("nothing received on the replication stream"),
        "{log}"
    );
    // The network comes back; the server may still hold the abandoned session: pgroar ends it
    // (or waits for the server's wal_sender_timeout if it is blocked writing) and streams again.
    proxy.resume();
    let back = Instant::now();
    wait_readyz(&served.runner, 200, Duration::from_secs(30)).await;
    eprintln!(
        "streaming again {:?} after the network came back",
        back.elapsed()
    );
    assert!(
        back.elapsed() < Duration::from_secs(30),
        "waited for the server's wal_sender_timeout"
    );
    assert!(counter(&served.runner, "reconnects_total").await > before);
    {
        let _paused = writer.pause().await;
        assert_equals_sql(&served, &client, "after the blackhole").await;
    }

    // Cut: every connection closed, new ones refused for a while.
    let before = counter(&served.runner, "reconnects_total").await;
    proxy.cut();
    wait_readyz(&served.runner, 503, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.resume();
    wait_readyz(&served.runner, 200, Duration::from_secs(30)).await;
    assert!(counter(&served.runner, "reconnects_total").await > before);

    let (committed, failed) = writer.finish().await;
    assert_equals_sql(&served, &client, "after the cut").await;
    // No duplicate: the WAL refuses a transaction at or below the last one it holds, so a
    // duplicate would have stopped the source; it is still streaming.
    let status = served.runner.status().await;
    assert_eq!(status["phase"], "streaming", "{status}");
    eprintln!(
        "network faults: {committed} transactions committed ({failed} failed), {} connections \
         through the proxy",
        proxy.accepted()
    );
}
