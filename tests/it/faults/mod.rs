//! Faults outside pgroar's own process: the network between it and Postgres (a proxy that cuts
//! and blackholes connections), the Postgres server (restarts, `wal_sender_timeout`), and what
//! they must never cost: after each, the served index equals SQL.

mod backpressure;
mod disk;
mod io_errors;
mod network;
mod schema;
mod security;
mod server;
mod soak;
mod startup;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgroar::cluster::TestDb;
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

use super::support::feed::{self, Guard, IDS, Rng, Runner, SCHEMA, config_text, http};

/// A feed served by the binary: its directory, runner and child.
pub struct Served {
    pub dir: TempDir,
    pub runner: Runner,
    pub child: Guard,
}

/// Writes the feed's config (pgroar connecting with `url`, `extra` lines added to
/// `[postgres]`), bootstraps the empty tables with the binary and waits until it is ready.
pub async fn serve(url: &str, slot: &str, extra: &str) -> Served {
    serve_with(url, slot, extra, |text| text).await
}

/// [`serve`] with the config text passed through `edit` first.
pub async fn serve_with(
    url: &str,
    slot: &str,
    extra: &str,
    edit: impl Fn(String) -> String,
) -> Served {
    serve_env(url, slot, extra, edit, &[]).await
}

/// [`serve_with`], the child running with `env` added (e.g. `FAILPOINTS`).
pub async fn serve_env(
    url: &str,
    slot: &str,
    extra: &str,
    edit: impl Fn(String) -> String,
    env: &[(&str, &str)],
) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (mut runner, port) = Runner::in_dir(dir.path());
    runner.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let text = config_text(url, slot, &dir.path().join("data"), port, 1 << 20);
    let slot_line = format!("slot = \"{slot}\"\n");
    let text = text.replacen(&slot_line, &format!("{slot_line}{extra}\n"), 1);
    std::fs::write(&runner.config, edit(text)).unwrap();
    let mut child = runner.spawn(&["bootstrap"]);
    runner.wait_ready(&mut child).await;
    Served { dir, runner, child }
}

/// Posts and the first half of the images.
pub async fn seed(client: &Client) {
    feed::load_feed(client, IDS as u64 / 2).await;
}

/// Connects an ordinary client (its connection driven in the background).
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A writer that survives the server going away: random transactions until `stop`, reconnecting
/// after errors. Returns (committed, failed).
pub async fn resilient_workload(
    url: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    gate: Arc<tokio::sync::Mutex<()>>,
) -> (u64, u64) {
    let mut rng = Rng(seed | 1);
    let (mut committed, mut failed) = (0, 0);
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = client.as_ref().filter(|c| !c.is_closed()) else {
            client = connect(&url).await.ok();
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let mut sql = String::from("BEGIN;\n");
        for _ in 0..rng.range(1, 3) {
            let width = [0, 3, 40, 300][rng.range(0, 3) as usize];
            let a = rng.range(1, IDS as u64 - width);
            sql.push_str(&feed::statement(&mut rng, a, a + width));
            sql.push_str(";\n");
        }
        sql.push_str("COMMIT;");
        let _turn = gate.lock().await;
        match c.batch_execute(&sql).await {
            Ok(()) => committed += 1,
            Err(_) => {
                failed += 1;
                let _ = c.batch_execute("ROLLBACK").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.range(2, 15))).await;
    }
    (committed, failed)
}

/// Starts [`resilient_workload`] in the background; `finish` stops it and returns its counts.
pub struct Writer {
    stop: Arc<AtomicBool>,
    gate: Arc<tokio::sync::Mutex<()>>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Writer {
    pub fn start(url: &str, seed: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let task = tokio::spawn(resilient_workload(
            url.to_owned(),
            seed,
            Arc::clone(&stop),
            Arc::clone(&gate),
        ));
        Writer { stop, gate, task }
    }

    /// Pauses the writer between two transactions until the guard is dropped.
    pub async fn pause(&self) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.gate).lock_owned().await
    }

    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Waits until `/readyz` answers `code`; returns how long that took.
pub async fn wait_readyz(runner: &Runner, code: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if let Some((c, _)) = http(format!("{}/readyz", runner.base), None).await
            && c == code
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "/readyz never answered {code} within {within:?}:\n{}",
            runner.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A counter of the `/status` document.
pub async fn counter(runner: &Runner, name: &str) -> u64 {
    let status = runner.status().await;
    status[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {status}"))
}

/// A seed for the workload, printed so a failure can be replayed.
pub fn seed_for(test: &str) -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("{test} seed {seed}");
    seed
}

/// The log of the child so far.
pub fn log_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("pgroar.log")).unwrap_or_default()
}

/// Waits until the served index has caught up with `client`'s server, then compares every
/// filter value with SQL.
pub async fn assert_equals_sql(served: &Served, client: &Client, context: &str) {
    served.runner.wait_caught_up(client).await;
    feed::assert_server_matches(client, &served.runner.base, context).await;
}

/// A served feed on its own database of the shared cluster, seeded and caught up.
pub async fn served_feed(topic: &str) -> (TestDb, tokio_postgres::Client, Served) {
    let db = TestDb::new(topic);
    db.execute(SCHEMA).unwrap();
    let client = db.client().await.unwrap();
    let served = serve(&db.url(), &format!("s_{}", db.name()), "").await;
    seed(&client).await;
    served.runner.wait_caught_up(&client).await;
    (db, client, served)
}

/// Waits for the child to exit; returns its log. Fails if it exits 0 or keeps running.
pub async fn wait_failed(served: &mut Served, within: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Some(exit) = served.child.0.try_wait().unwrap() {
            let log = log_text(served.dir.path());
            assert!(!exit.success(), "exited 0:\n{log}");
            return log;
        }
        assert!(
            started.elapsed() < within,
            "still running:\n{}",
            served.runner.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, and the clean exit it must give.
pub fn stop(served: &mut Served) {
    // SAFETY: kill takes a pid and a signal number, no pointers.
    let rc = unsafe { libc::kill(served.child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert!(served.child.0.wait().unwrap().success());
}
