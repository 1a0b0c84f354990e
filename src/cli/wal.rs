//! `pgroar wal …`: inspection of the ops WAL, and its repair after damage.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use pgroar::wal::{RecoveryMode, Wal, WalEntry, WalOptions, WalReader};
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
    /// Show what recovery would cut from a damaged WAL, and with --yes cut it. pgroar refuses to
    /// start on damage that lies before committed records (a disk fault, not a crash).
    Repair {
        /// The WAL directory (`<data_dir>/wal`). pgroar must not be running.
        #[arg(long)]
        dir: PathBuf,
        /// Cut it (without it, only say what would be cut).
        #[arg(long)]
        yes: bool,
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
        WalCommand::Repair { dir, yes } => repair(dir, yes),
    }
}

fn repair(dir: PathBuf, yes: bool) -> anyhow::Result<()> {
    let report =
        Wal::inspect(&dir).with_context(|| format!("reading the WAL in {}", dir.display()))?;
    let Some(cut) = &report.cut else {
        println!("the WAL is whole; nothing to cut ({})", report.summary());
        return Ok(());
    };
    println!(
        "damage at {} ({:?}); the WAL would be cut back to {} (the last whole transaction before \
         it): {} bytes and {} whole segments removed",
        cut.damage,
        cut.reason,
        cut.truncated_to
            .map_or_else(|| "nothing".to_owned(), |p| p.to_string()),
        cut.bytes_removed,
        cut.segments_removed.len(),
    );
    if cut.committed_cut {
        println!(
            "committed transactions after the damage would be lost. If the index checkpoint \
             covers them nothing is lost; otherwise `pgroar run` will then refuse (the slot has \
             confirmed them) and `pgroar bootstrap --force` rebuilds the index"
        );
    }
    if !yes {
        anyhow::bail!("nothing changed; run again with --yes to cut");
    }
    let options = WalOptions {
        recovery: RecoveryMode::CutTail,
        ..WalOptions::default()
    };
    let (_, report) = Wal::open(&dir, options)
        .with_context(|| format!("repairing the WAL in {}", dir.display()))?;
    println!("cut: {}", report.summary());
    Ok(())
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
