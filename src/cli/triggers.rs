//! `pgroar triggers`: print the SQL of the trigger pipeline for a config (see
//! `pgroar::triggers`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pgroar::config::Config;
use pgroar::triggers::{self, Options};

/// Options of `pgroar triggers`.
#[derive(Args, Debug)]
pub struct TriggersArgs {
    /// The TOML config file whose sources the triggers implement.
    #[arg(long, short, env = "PGROAR_CONFIG")]
    config: PathBuf,
    /// Print the SQL that removes the triggers instead (the ops table is kept).
    #[arg(long)]
    drop: bool,
    /// The schema of the ops table and of the helper functions.
    #[arg(long, default_value = "public")]
    schema: String,
}

/// Prints the install (or removal) script on stdout, e.g. for `| psql -v ON_ERROR_STOP=1`.
pub fn run(args: &TriggersArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)
        .with_context(|| format!("config {} is not valid", args.config.display()))?;
    let options = Options {
        schema: args.schema.clone(),
    };
    let sql = if args.drop {
        triggers::drop_sql(&config, &options)
    } else {
        triggers::install_sql(&config, &options)
    };
    print!("{sql}");
    Ok(())
}
