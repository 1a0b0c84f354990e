//! A randomized soak: the generator's writer commits without pause while, at random, pgroar is
//! SIGKILLed and restarted, Postgres is restarted (`-m fast` or `-m immediate`), and the
//! network between them is cut or blackholed (a proxy). After every fault pgroar must be ready
//! again by itself; at the end the served index equals SQL. `PGROAR_SOAK_SECS` sets the length
//! (CI: 45 s; the seed is printed, `PGROAR_SOAK_SEED` replays one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgroar::cluster::{Cluster, ClusterOptions};

use super::{Writer, assert_equals_sql, connect, counter, seed, serve, wait_readyz};
use crate::it::support::feed::{Rng, SCHEMA};
use crate::it::support::proxy::Proxy;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fault {
    Kill,
    RestartFast,
    RestartImmediate,
    Cut,
    Blackhole,
}

const FAULTS: [Fault; 5] = [
    Fault::Kill,
    Fault::RestartFast,
    Fault::RestartImmediate,
    Fault::Cut,
    Fault::Blackhole,
];

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_under_a_writer_lose_nothing() {
    let length = Duration::from_secs(env_u64("PGROAR_SOAK_SECS").unwrap_or(45));
    let rng_seed = env_u64("PGROAR_SOAK_SEED").unwrap_or_else(|| super::seed_for("soak"));
    eprintln!("soak: seed {rng_seed}, {length:?}");
    let mut rng = Rng(rng_seed | 1);
    let cluster = Arc::new(
        Cluster::start(ClusterOptions::fast().setting("wal_sender_timeout", "10s")).unwrap(),
    );
    let db = cluster.create_database("soak").unwrap();
    cluster.execute(&db, SCHEMA).unwrap();
    let direct = cluster.url(&db);
    let proxy = Proxy::start(format!("127.0.0.1:{}", cluster.port()).parse().unwrap()).await;
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/{db}?connect_timeout=2",
        proxy.port()
    );
    let mut served = serve(&url, "soak", "receive_timeout_ms = 3000").await;
    seed(&connect(&direct).await.unwrap()).await;
    let writer = Writer::start(&direct, rng.next());

    let started = Instant::now();
    let mut survived: Vec<(Fault, Duration)> = Vec::new();
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(rng.range(500, 2500))).await;
        let fault = FAULTS[rng.range(0, FAULTS.len() as u64 - 1) as usize];
        let at = Instant::now();
        match fault {
            Fault::Kill => {
                served.child.0.kill().unwrap();
                served.child.0.wait().unwrap();
                served.child = served.runner.spawn(&["run"]);
            }
            Fault::RestartFast | Fault::RestartImmediate => {
                let c = Arc::clone(&cluster);
                tokio::task::spawn_blocking(move || {
                    if fault == Fault::RestartFast {
                        c.restart()
                    } else {
                        c.restart_immediate()
                    }
                })
                .await
                .unwrap()
                .unwrap();
            }
            Fault::Cut => {
                proxy.cut();
                tokio::time::sleep(Duration::from_millis(rng.range(200, 2000))).await;
                proxy.resume();
            }
            Fault::Blackhole => {
                proxy.blackhole();
                tokio::time::sleep(Duration::from_millis(rng.range(500, 5000))).await;
                proxy.resume();
            }
        }
        if fault == Fault::Kill {
            served.runner.wait_ready(&mut served.child).await;
        } else {
            wait_readyz(&served.runner, 200, Duration::from_secs(60)).await;
        }
        eprintln!(
            "soak: {fault:?} at {:.1} s, ready again after {:.1} s",
            (at - started).as_secs_f64(),
            at.elapsed().as_secs_f64()
        );
        survived.push((fault, at.elapsed()));
    }
    let (committed, failed) = writer.finish().await;
    let client = connect(&direct).await.unwrap();
    assert_equals_sql(&served, &client, "after the soak").await;
    let status = served.runner.status().await;
    assert_eq!(status["phase"], "streaming", "{status}");
    let ops = counter(&served.runner, "ops_applied_total").await;
    let count = |f: Fault| survived.iter().filter(|(g, _)| *g == f).count();
    let slowest = survived.iter().map(|(_, d)| *d).max().unwrap_or_default();
    eprintln!(
        "soak: {} faults survived in {:.0} s (kill {}, restart fast {}, restart immediate {}, \
         cut {}, blackhole {}; slowest back to ready {slowest:?}); {committed} writer \
         transactions committed ({failed} failed), {ops} ops applied since the last start; \
         index equal to SQL",
        survived.len(),
        started.elapsed().as_secs_f64(),
        count(Fault::Kill),
        count(Fault::RestartFast),
        count(Fault::RestartImmediate),
        count(Fault::Cut),
        count(Fault::Blackhole),
    );
    assert!(survived.len() >= 3, "too few faults: {survived:?}");
}
