//! `pgroar check`: load and validate a config, print what it defines, then compare the live index
//! with SQL over the source tables at one LSN (see `pgroar::oracle`).

pub(super) mod live;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use pgroar::config::{Config, SourceKind};

/// Options of `pgroar check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The TOML config file (every key can be overridden as PGROAR_<SECTION>_<KEY>).
    #[arg(long, short, env = "PGROAR_CONFIG")]
    config: PathBuf,
    /// Only validate the config; do not compare the index with SQL.
    #[arg(long)]
    config_only: bool,
    /// The running server whose index to compare (`host:port` or URL; default: the config's
    /// `[http].listen`). Without a server there, the index in the data directory is brought up
    /// to date in this process and compared.
    #[arg(long)]
    server: Option<String>,
    /// Slots compared per round (memory: about 4 KiB per live slot of a round).
    #[arg(long, default_value_t = pgroar::oracle::CHUNK_SLOTS)]
    chunk: u32,
}

pub fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let config = validate(&args.config)?;
    if args.config_only {
        return Ok(());
    }
    live::run(config, args)
}

fn validate(path: &Path) -> anyhow::Result<Config> {
    let config =
        Config::load(path).with_context(|| format!("config {} is not valid", path.display()))?;
    print_config(path, &config);
    Ok(config)
}

fn print_config(path: &Path, config: &Config) {
    let schema = config.schema();
    println!("config {} is valid", path.display());
    println!("index fields:");
    for f in &schema.filters {
        println!("  filter {:<24} {:?}", f.name, f.kind);
    }
    for s in &schema.sorts {
        println!("  sort   {:<24} {} bits", s.name, s.bits);
    }
    println!("sources:");
    for s in &config.sources {
        match &s.kind {
            SourceKind::Direct {
                slot_field,
                track,
                sets_alive,
                on_delete,
            } => println!(
                "  {:<24} direct  slot={slot_field} tracks {}, sets_alive={sets_alive}, on_delete={on_delete}",
                s.table,
                fields(track.len())
            ),
            SourceKind::Join {
                slot_field,
                field,
                value_field,
                filter,
            } => println!(
                "  {:<24} join    slot={slot_field} {field} <- {value_field}{}",
                s.table,
                filter
                    .as_deref()
                    .map(|f| format!(" where {f}"))
                    .unwrap_or_default()
            ),
            SourceKind::FanOut { query, track, join } => {
                let how = if *join {
                    "joined (LEFT JOIN semantics)"
                } else {
                    "applied to the matching slots"
                };
                println!(
                    "  {:<24} fan-out {} tracks {}, {how}",
                    s.table,
                    query.text,
                    fields(track.len())
                );
            }
        }
    }
}

fn fields(n: usize) -> String {
    if n == 1 {
        "1 field".into()
    } else {
        format!("{n} fields")
    }
}
