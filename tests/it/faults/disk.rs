//! The WAL on disk is damaged while pgroar is stopped. Damage in the middle of the WAL, with
//! records of committed (and acknowledged) transactions after it, is a disk fault: pgroar
//! refuses to start and names `pgroar wal repair`, which says what it would cut and cuts only
//! with `--yes`. A torn tail (a partial record at the end, as a crash leaves) is still cut
//! automatically.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{assert_equals_sql, served_feed, stop, wait_failed};

/// The newest WAL segment of a data directory.
fn active_segment(wal: &Path) -> PathBuf {
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(wal)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let n = pgroar::wal::parse_segment_file_name(path.file_name()?.to_str()?)?;
            Some((n, path))
        })
        .collect();
    segments.sort();
    segments.pop().expect("a segment").1
}

fn repair(wal: &Path, yes: bool) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgroar"));
    cmd.args(["wal", "repair", "--dir"]).arg(wal);
    if yes {
        cmd.arg("--yes");
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_file_damage_is_refused_until_repaired_and_a_torn_tail_is_cut() {
    let (_db, client, mut served) = served_feed("disk_wal").await;
    stop(&mut served);
    let wal = served.dir.path().join("data/wal");
    let segment = active_segment(&wal);
    let mut bytes = std::fs::read(&segment).unwrap();
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    let at = bytes.len() / 3;
    bytes[at] ^= 0x5A;
    std::fs::write(&segment, &bytes).unwrap();

    served.child = served.runner.spawn(&["run"]);
    let log = wait_failed(&mut served, Duration::from_secs(30)).await;
    assert!(
        log.contains("damaged before records of committed transactions")
            && log.contains("pgroar wal repair"),
        "{log}"
    );
    // Without --yes nothing changes.
    let (ok, text) = repair(&wal, false);
    assert!(
        !ok && text.contains("would be cut") && text.contains("--yes"),
        "{text}"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);
    let (ok, text) = repair(&wal, true);
    assert!(ok, "{text}");
    assert!(std::fs::metadata(&segment).unwrap().len() <= at as u64);

    // The checkpoint written at the stop covers what was cut: the index is whole.
    served.child = served.runner.spawn(&["run"]);
    served.runner.wait_ready(&mut served.child).await;
    assert_equals_sql(&served, &client, "after the repair").await;
    stop(&mut served);

    // A torn tail: half a record at the end, as a crash mid-write leaves. Cut on its own.
    let segment = active_segment(&wal);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0x01, 0x00, 0x00, 0x40, 0x13, 0x37]).unwrap();
    drop(f);
    served.child = served.runner.spawn(&["run"]);
    served.runner.wait_ready(&mut served.child).await;
    assert_equals_sql(&served, &client, "after the torn tail").await;
    assert!(super::log_text(served.dir.path()).contains("cut"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_checkpoint_falls_back_to_the_previous_one_and_the_wal() {
    let db = pgroar::cluster::TestDb::new("disk_ckpt");
    db.execute(crate::it::support::feed::SCHEMA).unwrap();
    let client = db.client().await.unwrap();
    // Small segments, and no periodic checkpoint: the bootstrap's (empty) checkpoint becomes
    // the previous one when the stop writes the newest, and every change is in the WAL after
    // it, in many segments the newest checkpoint alone would let go.
    let mut served = super::serve_with(&db.url(), &format!("s_{}", db.name()), "", |text| {
        text.replace("segment_bytes = 1048576", "segment_bytes = 16384")
            .replace(
                "checkpoint_interval_secs = 1",
                "checkpoint_interval_secs = 3600",
            )
    })
    .await;
    for from in [1, 1001, 2001, 3001] {
        client
            .batch_execute(&crate::it::support::feed::insert_sql(from, from + 999, 7))
            .await
            .unwrap();
    }
    served.runner.wait_caught_up(&client).await;
    stop(&mut served);
    let index = served.dir.path().join("data/index");
    let newest = index.join("index.ckpt");
    assert!(index.join("index.ckpt.prev").exists());
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&newest, &bytes).unwrap();

    served.child = served.runner.spawn(&["run"]);
    served.runner.wait_ready(&mut served.child).await;
    assert_equals_sql(&served, &client, "after falling back").await;
    assert!(
        super::log_text(served.dir.path()).contains("loading the previous one"),
        "{}",
        served.runner.log_tail()
    );
    assert!(index.join("index.ckpt.damaged").exists());
}
