//! The `pgroar` binary on the streaming fixture: bootstrap on a fresh data directory, serve
//! queries and status over HTTP, and stop cleanly on SIGTERM.

use std::time::{Duration, Instant};

use pgroar::Lsn;

use super::{Fixture, PATIENCE, current_lsn, http, insert_sql, slot_confirmed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_streams_serves_and_stops_cleanly_on_sigterm() {
    let f = Fixture::new("stream_binary");
    let client = f.client().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config = f.dir.path().join("pgroar.toml");
    std::fs::write(&config, f.config_text(&format!("127.0.0.1:{port}"))).unwrap();
    let log = f.dir.path().join("pgroar.log");
    // A fresh data directory: `bootstrap` copies the (empty) table, then streams as `run` does.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgroar"))
        .arg("bootstrap")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited early:\n{}",
            log_text()
        );
        let ready = tokio::task::spawn_blocking({
            let url = format!("{base}/readyz");
            move || ureq::get(&url).call().is_ok()
        })
        .await
        .unwrap();
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "never ready:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    client.batch_execute(&insert_sql(1, 500)).await.unwrap();
    client
        .batch_execute("UPDATE items SET a = 6 WHERE id % 9 = 0")
        .await
        .unwrap();
    // Read-your-writes: the answer waits until the index reflects the commit.
    let after_commit = current_lsn(&client).await;
    let (code, answer) = http(
        "POST",
        format!("{base}/query"),
        Some(serde_json::json!({
            "filter": "a eq 6",
            "limit": 1000,
            "min_lsn": after_commit.to_string(),
            "timeout_ms": 30000,
        })),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let want: Vec<u32> = client
        .query("SELECT id FROM items WHERE a = 6 ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i32>(0) as u32)
        .collect();
    let ids: Vec<u32> = serde_json::from_value(answer["ids"].clone()).unwrap();
    assert_eq!(ids, want);

    let (code, status) = http("GET", format!("{base}/status"), None).await;
    assert_eq!(code, 200);
    assert_eq!(status["phase"], "streaming", "{status}");
    assert_eq!(status["alive_slots"], 500, "{status}");
    let durable: Lsn = status["lsn"]["durable"].as_str().unwrap().parse().unwrap();
    assert!(durable.0 + 1 >= after_commit.0, "{status}");

    // SIGTERM: sync, ack, drain, checkpoint, exit 0.
    // SAFETY: kill takes a pid and a signal number, no pointers.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}\n{}", log_text());
    assert!(log_text().contains("checkpoint written"), "{}", log_text());
    assert!(f.dir.path().join("index").join("index.ckpt").exists());
    // The final acknowledgement reached the server: everything committed before
    // `after_commit` (the commit-end Mark sits one byte below a commit's end).
    let confirmed = slot_confirmed(&client, &f.slot).await;
    assert!(
        confirmed.0 + 1 >= after_commit.0,
        "{confirmed} {after_commit}"
    );
    eprintln!("{}", log_text());
}
