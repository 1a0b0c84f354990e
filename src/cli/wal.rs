//! `pgroar wal …`: read-only inspection of the ops WAL.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use pgroar::wal::{Wal, WalEntry, WalReader};
use pgroar::{Lsn, WalKey};

#[derive(Subcommand, Debug)]
pub enum WalCommand {
    /// Validate the WAL without changing it and print its committed records as JSON lines.
    Inspect {
        /// The WAL directory (`<data_dir>/wal`).
        #[arg(long)]
        dir: PathBuf,
        /// Only records of transactions committed after this LSN (e.g. 0/16B3748).
        #[arg(long)]
        after: Option<Lsn>,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// Print only the summary.
        #[arg(long)]
        summary: bool,
    },
}

pub fn run(command: WalCommand) -> anyhow::Result<()> {
    match command {
        WalCommand::Inspect {
            dir,
            after,
            limit,
            summary,
        } => inspect(dir, after, limit, summary),
    }
}

fn inspect(
    dir: PathBuf,
    after: Option<Lsn>,
    limit: Option<u64>,
    summary_only: bool,
) -> anyhow::Result<()> {
    let report =
        Wal::inspect(&dir).with_context(|| format!("reading the WAL in {}", dir.display()))?;
    eprintln!("{}", report.summary());
    if summary_only {
        return Ok(());
    }
    let after = after.map(WalKey::end_of).unwrap_or(WalKey::ZERO);
    let mut reader = WalReader::open(&dir, after)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    while let Some(entry) = reader.next(report.end)? {
        let line = match entry {
            WalEntry::Ops { key, ops } => serde_json::json!({ "key": key, "entity": ops }),
            WalEntry::Commit { lsn } => serde_json::json!({ "commit": lsn }),
            WalEntry::Mark { lsn } => serde_json::json!({ "mark": lsn }),
        };
        writeln!(out, "{line}")?;
        printed += 1;
        if limit.is_some_and(|l| printed >= l) {
            break;
        }
    }
    out.flush()?;
    Ok(())
}
