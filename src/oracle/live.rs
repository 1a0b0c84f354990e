//! A check of a live index against SQL at one LSN.
//!
//! [`SqlSnapshot::take`] creates a temporary replication slot whose snapshot it imports into an
//! ordinary session: that session sees exactly the transactions that commit before the slot's
//! consistent point. The index side is then pinned at that LSN (the pipeline's pinned snapshot,
//! see `pipeline::pin`), and [`compare`] walks the slots range by range, SQL's expected state
//! against the index's, merging the differences.
//!
//! Crash windows: none. The temporary slot disappears with its session (also when the check is
//! killed); nothing is written.

use std::future::Future;
use std::ops::RangeInclusive;

use tokio_postgres::Client;

use super::{Diff, Oracle, OracleError, diff};
use crate::Lsn;
use crate::bootstrap::BootstrapError;
use crate::bootstrap::snapshot::{ExportedSlot, create_temporary};
use crate::index::IndexState;
use crate::source::{ConnInfo, SqlConnectError, connect_sql};

/// Slots compared per range by default. A range costs about 4 KiB of memory per live slot (the
/// SQL rows as text, the expected and the actual dump, the comparison's sets): about 0.5 GiB.
pub const CHUNK_SLOTS: u32 = 1 << 17;

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No SQL session.
    #[error(transparent)]
    Connect(#[from] SqlConnectError),
    /// The temporary slot or its snapshot.
    #[error("cannot take a SQL snapshot at a consistent point")]
    Snapshot(#[source] Box<BootstrapError>),
    /// A statement of the check itself.
    #[error("{what} failed")]
    Sql {
        /// What was being done.
        what: &'static str,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The oracle's queries.
    #[error(transparent)]
    Oracle(#[from] OracleError),
    /// The index side.
    #[error("the index could not be read at LSN {lsn}: {detail}")]
    Index {
        /// The LSN.
        lsn: Lsn,
        /// What went wrong.
        detail: String,
    },
}

/// A SQL session on the snapshot of a temporary slot's consistent point.
pub struct SqlSnapshot {
    slot: ExportedSlot,
    client: Client,
    /// An ordinary session outside the snapshot, for [`SqlSnapshot::nudge`].
    plain: Client,
}

impl SqlSnapshot {
    /// Takes the snapshot (the role needs `REPLICATION`, and the server a free replication slot).
    pub async fn take(conn: &ConnInfo, publication: &str) -> Result<SqlSnapshot, CheckError> {
        static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Unique per take: a closed session's temporary slot may linger for a moment.
        let name = format!("pgroar_check_{}_{n}", std::process::id());
        let slot = create_temporary(conn, &name, publication)
            .await
            .map_err(|e| CheckError::Snapshot(Box::new(e)))?;
        let client = connect_sql(conn).await?;
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
                slot.snapshot
            ))
            .await
            .map_err(|source| CheckError::Sql {
                what: "importing the slot's snapshot",
                source,
            })?;
        let plain = connect_sql(conn).await?;
        Ok(SqlSnapshot {
            slot,
            client,
            plain,
        })
    }

    /// Writes a tiny non-transactional logical message, so that the replication stream moves
    /// past the snapshot's LSN even on an idle database (the index is pinned there only once it
    /// sees a position at or after it).
    pub async fn nudge(&self) -> Result<(), CheckError> {
        self.plain
            .execute(
                "SELECT pg_logical_emit_message(false, 'pgroar-check', '')",
                &[],
            )
            .await
            .map_err(|source| CheckError::Sql {
                what: "nudging the replication stream",
                source,
            })?;
        Ok(())
    }

    /// The LSN the snapshot is at: it holds every transaction that commits before it.
    pub fn lsn(&self) -> Lsn {
        self.slot.consistent_point
    }

    /// The session, inside the snapshot's transaction.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// The LSN both sides were read at.
    pub lsn: Lsn,
    /// Live slots compared.
    pub slots: u64,
    /// Everything that differs.
    pub diff: Diff,
}

/// Compares, range by range of `chunk` slots up to `max_slot` (the largest slot SQL knows), SQL's
/// state in `sql` with the index state `index` gives for each range; a last range reaches to
/// `u32::MAX`, for slots only the index has.
pub async fn compare<F, Fut>(
    oracle: &Oracle,
    sql: &SqlSnapshot,
    max_slot: u32,
    chunk: u32,
    mut index: F,
) -> Result<CheckReport, CheckError>
where
    F: FnMut(RangeInclusive<u32>) -> Fut,
    Fut: Future<Output = Result<IndexState, CheckError>>,
{
    let mut report = CheckReport {
        lsn: sql.lsn(),
        ..CheckReport::default()
    };
    let chunk = chunk.max(1);
    let parents = oracle.parents(sql.client()).await?;
    let mut lo = 0u32;
    loop {
        let hi = lo.saturating_add(chunk - 1).min(max_slot);
        let want = oracle
            .expected_with(sql.client(), lo..=hi, &parents)
            .await?;
        let have = index(lo..=hi).await?;
        report.slots += want.alive.len() as u64;
        report.diff.merge(diff(&want, &have, oracle.skipped()));
        if hi == u32::MAX {
            return Ok(report);
        }
        lo = hi + 1;
        if lo > max_slot {
            // Beyond every slot SQL has: one range for whatever the index has there.
            let want = oracle
                .expected_with(sql.client(), lo..=u32::MAX, &parents)
                .await?;
            let have = index(lo..=u32::MAX).await?;
            report.diff.merge(diff(&want, &have, oracle.skipped()));
            return Ok(report);
        }
    }
}
