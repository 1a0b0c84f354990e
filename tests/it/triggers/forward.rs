//! The forwarding sink against a second `pgroar` as the remote (its `POST
//! /api/indexes/{name}/ops`, behind a bearer token): a workload on the source, the forwarding
//! side killed mid-stream and restarted, then the remote killed and left down while the workload
//! goes on, then restarted — and the remote's index equals SQL over the source tables.

use std::time::{Duration, Instant};

use pgroar::cluster::TestDb;
use pgroar::oracle::{Oracle, diff};

use super::served::{TOKEN, call, dump, runner};
use super::workload::{fixed, run};
use super::{feed_config, prepare};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_ops_survive_kills_of_either_side() {
    let (src, twin) = (TestDb::new("fwd_src"), TestDb::new("fwd_remote"));
    let dir = tempfile::tempdir().unwrap();
    let remote = runner(&twin, dir.path(), "remote", Some(TOKEN), "");
    let forward = format!(
        "\n[forward]\nurl = \"{}/api/indexes/feed/ops\"\ntoken = \"{TOKEN}\"\nbatch_entities = 40\n\
         [wal]\nsegment_bytes = 16384\n",
        remote.base
    );
    let local = runner(&src, dir.path(), "local", None, &forward);
    // Checkpoints every second and small segments: the WAL is truncated as it goes, except what
    // the forwarder still needs.
    let text = std::fs::read_to_string(&local.config).unwrap();
    std::fs::write(
        &local.config,
        text.replace("[index]\n", "[index]\ncheckpoint_interval_secs = 1\n"),
    )
    .unwrap();
    let (sc, tc) = (src.client().await.unwrap(), twin.client().await.unwrap());
    prepare(&sc, &feed_config(&src)).await;
    prepare(&tc, &feed_config(&twin)).await;
    let mut r_child = remote.spawn(&["bootstrap"]);
    remote.wait_ready(&mut r_child).await;
    let mut l_child = local.spawn(&["bootstrap"]);
    local.wait_ready(&mut l_child).await;

    let txns = fixed(600);
    // The forwarding side dies while it forwards, and comes back.
    run(&sc, &txns[..200]).await;
    l_child.0.kill().unwrap();
    l_child.0.wait().unwrap();
    let mut l_child = local.spawn(&["run"]);
    local.wait_ready(&mut l_child).await;
    run(&sc, &txns[200..350]).await;
    // The remote dies and stays down while the source keeps changing.
    r_child.0.kill().unwrap();
    r_child.0.wait().unwrap();
    run(&sc, &txns[350..]).await;
    local.wait_caught_up(&sc).await;
    // Checkpoints pass while the remote is down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = local.status().await;
    assert!(
        status["forward_retries_total"].as_u64().unwrap() > 0,
        "the forwarder never had to retry: {status}"
    );
    let mut r_child = remote.spawn(&["run"]);
    remote.wait_ready(&mut r_child).await;

    // The remote catches up and equals SQL over the source tables.
    let oracle = Oracle::new(&feed_config(&src));
    let expected = oracle.expected(&sc, 0..=u32::MAX).await.unwrap();
    assert!(!expected.alive.is_empty());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = dump(&remote.base, Some(TOKEN), &tc).await;
        let d = diff(&expected, &state, oracle.skipped());
        if d.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the remote's index differs from SQL:\n{d}\nlocal log:\n{}",
            local.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = local.status().await;
    assert!(
        status["forwarded_batches_total"].as_u64().unwrap() > 0,
        "{status}"
    );
    assert!(
        status["lsn"]["forwarded"].as_str().unwrap() != "0/0",
        "{status}"
    );
    let (code, _) = call("GET", format!("{}/status", local.base), None, None).await;
    assert_eq!(code, 200);
    drop((l_child, r_child));
}

/// A remote that stays away: once the backlog passes `forward.max_backlog_bytes`, forwarding
/// stops with an error that names the bound and the fix, and the index keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_stops_clearly_when_the_backlog_passes_its_bound() {
    let src = TestDb::new("fwd_bound");
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let forward =
        format!("\n[forward]\nurl = \"http://127.0.0.1:{closed}/ops\"\nmax_backlog_bytes = 1000\n");
    let local = runner(&src, dir.path(), "local", None, &forward);
    let sc = src.client().await.unwrap();
    prepare(&sc, &feed_config(&src)).await;
    let mut child = local.spawn(&["bootstrap"]);
    local.wait_ready(&mut child).await;
    let txns = fixed(100);
    run(&sc, &txns).await;
    local.wait_caught_up(&sc).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = local.status().await;
        let error = status["last_error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if error.contains("forwarding to") {
            assert!(error.contains("forward.max_backlog_bytes"), "{error}");
            assert!(
                error.contains("forward.cursor"),
                "the fix is named: {error}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "forwarding never stopped: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, _) = call("GET", format!("{}/readyz", local.base), None, None).await;
    assert_eq!(code, 200, "the index keeps running");
    drop(child);
}
