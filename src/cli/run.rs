//! `pgroar run`: stream from the durable LSN, serve HTTP, stop cleanly on SIGTERM/SIGINT.
//!
//! It needs a bootstrapped data directory: an empty one is refused (bootstrap first), and one
//! an unfinished bootstrap left behind is bootstrapped again from scratch before streaming.

use std::path::Path;

use anyhow::Context;
use pgroar::bootstrap::{self, BootstrapOptions, DataDir};
use pgroar::config::Config;
use tracing::warn;

pub fn run(path: &Path) -> anyhow::Result<()> {
    let config =
        Config::load(path).with_context(|| format!("config {} is not valid", path.display()))?;
    let data_dir = &config.storage.data_dir;
    if config.replication.is_some() {
        // A standby (or a leader whose data directory is behind the stream) starts from the
        // bucket's newest checkpoint; the first leader bootstraps.
        let runtime = super::runtime()?;
        runtime.block_on(super::follow::seed(&config))?;
    }
    match bootstrap::marker::state(data_dir)? {
        DataDir::Empty => anyhow::bail!(
            "{} holds no index yet: run `pgroar bootstrap --config {}` first (it copies the \
             tables, then streams)",
            data_dir.display(),
            path.display()
        ),
        DataDir::Incomplete { .. } => {
            warn!(
                data_dir = %data_dir.display(),
                "the last bootstrap did not finish: bootstrapping again from scratch"
            );
            let runtime = super::runtime()?;
            return runtime.block_on(super::bootstrap::bootstrap_then_stream(
                config,
                BootstrapOptions::default(),
                true,
            ));
        }
        DataDir::Complete(_) => {}
    }
    let runtime = super::runtime()?;
    runtime.block_on(super::serve::stream(config))
}
