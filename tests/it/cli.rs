//! The `pgroar` binary: config checking and WAL inspection, run as a user would.

use std::process::Command;

use pgroar::Lsn;
use pgroar::ops::{EntityOps, Op};
use pgroar::wal::{Wal, WalOptions};

fn pgroar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgroar"))
}

#[test]
fn check_accepts_the_example_and_names_the_bad_key() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/pgroar.example.toml");
    let out = pgroar()
        .args(["check", "--config-only", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("TagsOnImage"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(example).unwrap().replace(
        "\"tagIds\", kind = \"multi\"",
        "\"tagIds\", kind = \"single\"",
    );
    std::fs::write(&bad, text).unwrap();
    let out = pgroar()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tagIds") && stderr.contains("TagsOnImage"),
        "{stderr}"
    );
}

#[test]
fn wal_inspect_prints_committed_records_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.begin(Lsn(0x100)).unwrap();
        wal.append(&EntityOps::alive(7, vec![Op::set("nsfwLevel", 4)]))
            .unwrap();
        wal.commit().unwrap();
        wal.begin(Lsn(0x200)).unwrap();
        wal.append(&EntityOps::new(8, vec![Op::Delete])).unwrap();
        wal.sync().unwrap();
        // The second transaction never commits: inspection must not show it.
    }
    let out = pgroar()
        .args(["wal", "inspect", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["key"]["lsn"], "0/100");
    assert_eq!(lines[0]["entity"]["ops"][0]["field"], "nsfwLevel");
    assert_eq!(lines[0]["entity"]["creates_slot"], true);
    assert_eq!(lines[1]["commit"], "0/100");
    assert!(String::from_utf8_lossy(&out.stderr).contains("durable LSN 0/100"));
}

#[test]
fn run_on_an_empty_data_dir_says_to_bootstrap_first() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/pgroar.example.toml");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = pgroar()
        .args(["run", "--config", example])
        .env("PGROAR_STORAGE_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds no index yet") && stderr.contains("pgroar bootstrap --config"),
        "{stderr}"
    );
    // Nothing was created, and no connection was needed to say so.
    assert!(!data.join("wal").exists());
}

/// Logs carry no escape codes when stderr is not a terminal, come as JSON lines with
/// `--log-format json`, and never show the password of the connection string.
#[test]
fn logs_are_plain_or_json_and_keep_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("feed.toml");
    let text = pgroar::dataset::config_text(
        "postgresql://alice:s3cret-pw@127.0.0.1:1/feed",
        "pgroar",
        &dir.path().join("data"),
        "127.0.0.1:7070",
    );
    std::fs::write(&config, text).unwrap();
    for json in [false, true] {
        let mut cmd = pgroar();
        if json {
            cmd.args(["--log-format", "json"]);
        }
        let out = cmd
            .args(["bootstrap", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("s3cret"), "{stderr}");
        assert!(!stderr.contains('\x1b'), "{stderr}");
        assert!(stderr.contains("alice@127.0.0.1:1/feed"), "{stderr}");
        let log_lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("error:"))
            .collect();
        assert!(!log_lines.is_empty(), "{stderr}");
        for line in log_lines {
            let parsed = serde_json::from_str::<serde_json::Value>(line);
            assert_eq!(parsed.is_ok(), json, "{line}");
        }
    }
    // `check` without a server on a directory with no index says what to do.
    let out = pgroar()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("holds no complete index"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
