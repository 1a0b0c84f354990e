//! `pgroar ops tail`: the ops of a data directory's WAL as the trigger pipeline's JSON, one
//! committed transaction per line, to diff by eye against an ops table.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use pgroar::ops::{EntityOps, OpsBatch, SyncMeta};
use pgroar::wal::{Wal, WalEntry, WalReader};
use pgroar::{Lsn, WalKey};

#[derive(Subcommand, Debug)]
pub enum OpsCommand {
    /// Print each committed transaction of the WAL as one line of the seed's batch JSON
    /// (`{"ops":[{"entity_id":…,"ops":[…],"creates_slot":…}],"meta":{"source":"pgroar","cursor":"<commit LSN>"}}`).
    /// Read-only; safe while pgroar runs.
    Tail {
        /// The data directory (or its `wal` directory).
        #[arg(long)]
        dir: PathBuf,
        /// Only transactions committed after this LSN (e.g. 0/16B3748).
        #[arg(long)]
        after: Option<Lsn>,
        /// Stop after this many transactions.
        #[arg(long)]
        limit: Option<u64>,
        /// Keep printing transactions as they become durable (re-reads the WAL's end every
        /// second) until interrupted.
        #[arg(long)]
        follow: bool,
    },
}

pub fn run(command: OpsCommand) -> anyhow::Result<()> {
    match command {
        OpsCommand::Tail {
            dir,
            after,
            limit,
            follow,
        } => tail(&wal_dir(&dir), after, limit, follow),
    }
}

/// `dir/wal` when it exists, else `dir`.
fn wal_dir(dir: &Path) -> PathBuf {
    let wal = dir.join("wal");
    if wal.is_dir() { wal } else { dir.to_path_buf() }
}

fn tail(dir: &Path, after: Option<Lsn>, limit: Option<u64>, follow: bool) -> anyhow::Result<()> {
    let inspect =
        || Wal::inspect(dir).with_context(|| format!("reading the WAL in {}", dir.display()));
    let mut end = inspect()?.end;
    let mut reader = WalReader::open(dir, after.map_or(WalKey::ZERO, WalKey::end_of))?;
    let stdout = std::io::stdout();
    let mut out = std::io::LineWriter::new(stdout.lock());
    let mut txn: Vec<EntityOps> = Vec::new();
    let mut printed = 0u64;
    loop {
        while let Some(entry) = reader.next(end)? {
            match entry {
                WalEntry::Ops { ops, .. } => txn.push(ops),
                WalEntry::Commit { lsn } => {
                    let batch = OpsBatch {
                        ops: std::mem::take(&mut txn),
                        meta: Some(SyncMeta {
                            source: "pgroar".into(),
                            cursor: Some(serde_json::Value::String(lsn.to_string())),
                            max_id: None,
                            lag_rows: None,
                        }),
                    };
                    writeln!(out, "{}", serde_json::to_string(&batch)?)?;
                    printed += 1;
                    if limit.is_some_and(|l| printed >= l) {
                        return Ok(());
                    }
                }
                WalEntry::Mark { .. } => {}
            }
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
        end = inspect()?.end;
    }
}
