//! `pgroar follow`: a read replica fed by a leader's stream over NATS JetStream. It starts from
//! the newest checkpoint (the bucket's, or its own when that is newer), replays the stream, and
//! serves the same HTTP API as `pgroar run`; it never connects to Postgres.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use pgroar::bootstrap::{DataDir, marker};
use pgroar::config::Config;
use pgroar::pipeline::replication::seed_from_bucket;
use tracing::info;

pub fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load_for_follower(path)
        .with_context(|| format!("config {} is not valid", path.display()))?;
    if config.replication.is_none() {
        anyhow::bail!(
            "{} has no [replication] section: set replication.url (or PGROAR_REPLICATION_URL) to \
             the NATS server the leader publishes to",
            path.display()
        );
    }
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let shutdown = super::serve::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            if seed(&config).await? {
                break;
            }
            info!("the stream has no checkpoint yet (is the leader running?): waiting");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = &mut shutdown => return Ok(()),
            }
        }
        let summary = pgroar::server::run_follower(config, shutdown).await?;
        super::serve::log_stopped(&summary);
        Ok(())
    })
}

/// Makes the data directory a complete one to follow from: its own, or the bucket's newest
/// checkpoint when that is ahead. `false`: there is nothing to start from yet.
pub(crate) async fn seed(config: &Config) -> anyhow::Result<bool> {
    let data_dir = &config.storage.data_dir;
    let state = marker::state(data_dir)?;
    if let DataDir::Incomplete { slot: Some(slot) } = &state {
        anyhow::bail!(
            "{} holds an unfinished bootstrap of slot {slot}: a follower or standby needs a \
             data directory of its own (remove it, or use another storage.data_dir)",
            data_dir.display()
        );
    }
    let seeded = seed_from_bucket(config).await?;
    match (state, seeded) {
        (DataDir::Complete(_), _) => Ok(true),
        (_, Some(lsn)) => {
            marker::write_marker(
                data_dir,
                &marker::Marker {
                    slot: config.postgres.slot.clone(),
                    consistent_point: lsn,
                    rows: 0,
                    finished_unix: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                },
            )?;
            Ok(true)
        }
        (_, None) => Ok(false),
    }
}
