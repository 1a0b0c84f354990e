//! The throwaway-Postgres harness: logical decoding works on it, and it never outlives its
//! process (drop, panicking test, SIGKILL).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgroar::cluster::{Cluster, ClusterError, ClusterOptions, TestDb};

/// Tells a child test process where to write its cluster's data dir and port.
const REPORT_ENV: &str = "PGROAR_TEST_CLUSTER_REPORT";

#[tokio::test]
async fn logical_decoding_works_on_a_fresh_database() {
    let db = TestDb::new("pg_smoke");
    let client = db.client().await.unwrap();
    let slot = format!("slot_{}", db.name());
    client
        .batch_execute(
            "CREATE TABLE smoke (id bigint PRIMARY KEY, name text NOT NULL);
             CREATE PUBLICATION smoke_pub FOR TABLE smoke;",
        )
        .await
        .unwrap();
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();

    let row = client
        .query_one(
            "SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pgoutput");
    assert_eq!(row.get::<_, String>(1), "logical");
    assert_eq!(row.get::<_, String>(2), db.name());

    let show = |name: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .unwrap();
            row.get::<_, String>(0)
        }
    };
    assert_eq!(show("wal_level").await, "logical");
    assert!(show("max_replication_slots").await.parse::<u32>().unwrap() >= 20);
    assert!(show("max_wal_senders").await.parse::<u32>().unwrap() >= 20);

    client
        .execute(
            "INSERT INTO smoke (id, name) VALUES (1, 'decoded-by-pgoutput')",
            &[],
        )
        .await
        .unwrap();
    let messages: Vec<Vec<u8>> = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, \
             'proto_version', '1', 'publication_names', 'smoke_pub')",
            &[&slot],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!messages.is_empty(), "no changes decoded");
    let insert = messages.iter().find(|m| m.first() == Some(&b'I'));
    let insert = insert.unwrap_or_else(|| panic!("no Insert message in {messages:?}"));
    assert!(
        insert
            .windows(b"decoded-by-pgoutput".len())
            .any(|w| w == b"decoded-by-pgoutput"),
        "the Insert message does not carry the row: {insert:?}"
    );
}

#[test]
fn two_clusters_run_side_by_side_and_go_away_when_dropped() {
    let a = Cluster::start(ClusterOptions::fast()).unwrap();
    let mut b = Cluster::start(ClusterOptions::fast().setting("wal_sender_timeout", "2s")).unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    assert!(a.data_dir().join("PG_VERSION").is_file());

    // Really two servers: a table made in one is not in the other.
    a.execute("postgres", "CREATE TABLE only_in_a (i int)")
        .unwrap();
    let err = b
        .execute("postgres", "SELECT * FROM only_in_a")
        .unwrap_err();
    assert!(matches!(err, ClusterError::Sql { .. }), "{err:?}");
    // Extra settings reach the server.
    b.execute(
        "postgres",
        "DO $$ BEGIN IF current_setting('wal_sender_timeout') <> '2s' THEN \
         RAISE EXCEPTION 'wal_sender_timeout is %', current_setting('wal_sender_timeout'); \
         END IF; END $$",
    )
    .unwrap();

    let (a_dir, a_port) = (a.data_dir().to_path_buf(), a.port());
    drop(a);
    assert!(!a_dir.exists(), "{} survived the drop", a_dir.display());
    assert_gone(&a_dir, a_port, Duration::from_secs(5));

    // The other one is unaffected, survives a restart on the same port, and stops cleanly.
    b.restart().unwrap();
    b.execute("postgres", "SELECT 1").unwrap();
    let b_dir = b.data_dir().to_path_buf();
    b.stop().unwrap();
    assert!(!b_dir.exists());
    assert!(matches!(
        b.execute("postgres", "SELECT 1"),
        Err(ClusterError::Stopped)
    ));
    b.stop().unwrap();
}

#[test]
fn the_shared_cluster_is_removed_after_a_panicking_test() {
    let report = tempfile::tempdir().unwrap();
    let report_file = report.path().join("cluster");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "it::pg_smoke::child_panics_with_cluster",
        ])
        .env(REPORT_ENV, &report_file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the child test should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (data_dir, port) = read_report(&report_file).unwrap_or_else(|| {
        panic!(
            "the child wrote no report; stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // The atexit handler stops the server and removes the directory before the child exits;
    // the watchdog (which only acts once the child is gone) would be later than this check.
    assert!(
        !data_dir.exists(),
        "{} still exists when the child has exited",
        data_dir.display()
    );
    assert_gone(&data_dir, port, Duration::from_secs(10));
}

#[test]
fn the_shared_cluster_is_removed_after_sigkill() {
    let report = tempfile::tempdir().unwrap();
    let report_file = report.path().join("cluster");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "it::pg_smoke::child_waits_with_cluster",
        ])
        .env(REPORT_ENV, &report_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (data_dir, port) = loop {
        if let Some(found) = read_report(&report_file) {
            break found;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited ({status}) before starting its cluster");
        }
        assert!(
            Instant::now() < deadline,
            "the child never started its cluster"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(data_dir.exists());
    child.kill().unwrap(); // SIGKILL: no unwinding, no atexit; only the watchdog is left.
    child.wait().unwrap();
    assert_gone(&data_dir, port, Duration::from_secs(20));
}

/// Run by `the_shared_cluster_is_removed_after_a_panicking_test` in a child process.
#[test]
#[ignore = "run in a child process by the_shared_cluster_is_removed_after_a_panicking_test"]
fn child_panics_with_cluster() {
    let Some(report) = std::env::var_os(REPORT_ENV) else {
        return;
    };
    write_report(Path::new(&report), Cluster::shared());
    panic!("deliberate panic while the shared cluster runs");
}

/// Run by `the_shared_cluster_is_removed_after_sigkill` in a child process.
#[test]
#[ignore = "run in a child process by the_shared_cluster_is_removed_after_sigkill"]
fn child_waits_with_cluster() {
    let Some(report) = std::env::var_os(REPORT_ENV) else {
        return;
    };
    write_report(Path::new(&report), Cluster::shared());
    // The parent SIGKILLs us long before this ends.
    std::thread::sleep(Duration::from_secs(120));
}

/// Writes "data dir\nport\n" atomically (write, then rename).
fn write_report(path: &Path, cluster: &Cluster) {
    let tmp = path.with_extension("tmp");
    let text = format!("{}\n{}\n", cluster.data_dir().display(), cluster.port());
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn read_report(path: &Path) -> Option<(PathBuf, u16)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let dir = PathBuf::from(lines.next()?);
    let port = lines.next()?.parse().ok()?;
    Some((dir, port))
}

/// Polls until the data dir is gone and nothing accepts connections on the port.
fn assert_gone(data_dir: &Path, port: u16, within: Duration) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + within;
    loop {
        let dir_gone = !data_dir.exists();
        let port_closed = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err();
        if dir_gone && port_closed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {within:?}: data dir {} exists: {}, port {port} accepts connections: {}",
            data_dir.display(),
            !dir_gone,
            !port_closed
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
