//! The slot and the snapshot the dump reads.
//!
//! On a replication session: `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`,
//! `CREATE_REPLICATION_SLOT … LOGICAL pgoutput (SNAPSHOT 'use')` (the transaction now runs on
//! the slot's snapshot: it sees exactly the transactions committed before the consistent
//! point), then `SELECT pg_export_snapshot()`. The COPY sessions import that snapshot with
//! `SET TRANSACTION SNAPSHOT` while the transaction is still open; only then is it committed
//! ([`ExportedSlot::release`]). (With `SNAPSHOT 'export'` the snapshot would die at the next
//! command on the replication session, racing the importers.) Streaming later starts from the
//! slot's `confirmed_flush_lsn`, which is the consistent point: no gap, no duplicate.

use bytes::Bytes;
use pgwire_replication::ReplicationClient;
use tokio_postgres::Client;

use super::BootstrapError;
use crate::Lsn;
use crate::source::ConnInfo;

/// A slot just created, whose snapshot is held open for importers.
pub struct ExportedSlot {
    client: ReplicationClient,
    /// The slot's consistent point.
    pub consistent_point: Lsn,
    /// The exported snapshot's name, for `SET TRANSACTION SNAPSHOT`.
    pub snapshot: String,
}

fn wire(what: &'static str) -> impl FnOnce(pgwire_replication::PgWireError) -> BootstrapError {
    move |source| BootstrapError::Replication { what, source }
}

fn cell(row: &[Option<Bytes>], i: usize) -> Option<String> {
    row.get(i).and_then(crate::source::slot::text)
}

/// Creates `slot` on a new replication session and exports its snapshot.
pub async fn create(
    conn: &ConnInfo,
    slot: &str,
    publication: &str,
) -> Result<ExportedSlot, BootstrapError> {
    create_slot(conn, slot, publication, false).await
}

/// A temporary slot (dropped when its session ends) with its snapshot exported: a consistent
/// point and the exact SQL state there, for a check that compares an index with SQL.
pub async fn create_temporary(
    conn: &ConnInfo,
    slot: &str,
    publication: &str,
) -> Result<ExportedSlot, BootstrapError> {
    create_slot(conn, slot, publication, true).await
}

async fn create_slot(
    conn: &ConnInfo,
    slot: &str,
    publication: &str,
    temporary: bool,
) -> Result<ExportedSlot, BootstrapError> {
    let temporary = if temporary { " TEMPORARY" } else { "" };
    let cfg = conn.replication_config(slot, publication);
    crate::source::auth_probe::refuse_cleartext(conn, true)
        .await
        .map_err(|e| BootstrapError::Connect(Box::new(e.into())))?;
    let mut client = ReplicationClient::connect_gated(cfg)
        .await
        .map_err(wire("opening the replication session"))?;
    client
        .simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(wire("opening the snapshot transaction"))?;
    // The config allows only [a-z0-9_] in slot names, so the name needs no quoting.
    let rows = client
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {slot}{temporary} LOGICAL pgoutput (SNAPSHOT 'use')"
        ))
        .await
        .map_err(wire("creating the replication slot"))?;
    let consistent_point = rows
        .first()
        .and_then(|r| cell(r, 1))
        .ok_or(BootstrapError::Reply {
            what: "creating the replication slot",
            detail: "no consistent point".into(),
        })?;
    let consistent_point: Lsn = consistent_point
        .parse()
        .map_err(|e| BootstrapError::Reply {
            what: "creating the replication slot",
            detail: format!("{e}"),
        })?;
    let rows = client
        .simple_query("SELECT pg_export_snapshot()")
        .await
        .map_err(wire("exporting the snapshot"))?;
    let snapshot = rows
        .first()
        .and_then(|r| cell(r, 0))
        .ok_or(BootstrapError::Reply {
            what: "exporting the snapshot",
            detail: "no snapshot name".into(),
        })?;
    Ok(ExportedSlot {
        client,
        consistent_point,
        snapshot,
    })
}

impl ExportedSlot {
    /// Ends the snapshot transaction (every importer must hold the snapshot by now) and closes
    /// the replication session; the slot stays.
    pub async fn release(mut self) -> Result<(), BootstrapError> {
        self.client
            .simple_query("COMMIT")
            .await
            .map_err(wire("ending the snapshot transaction"))?;
        Ok(())
    }
}

/// Whether `slot` exists, and the pid of the session holding it.
pub async fn slot_state(
    client: &Client,
    slot: &str,
) -> Result<Option<Option<i32>>, BootstrapError> {
    let row = client
        .query_opt(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|source| BootstrapError::Sql {
            what: "looking up the replication slot",
            source,
        })?;
    Ok(row.map(|r| r.get::<_, Option<i32>>(0)))
}

/// Drops `slot` if it exists and no session holds it; returns whether it was there.
pub async fn drop_slot(client: &Client, slot: &str) -> Result<bool, BootstrapError> {
    match slot_state(client, slot).await? {
        None => Ok(false),
        Some(Some(pid)) => Err(BootstrapError::SlotActive {
            slot: slot.to_owned(),
            pid,
        }),
        Some(None) => {
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                .await
                .map_err(|source| BootstrapError::Sql {
                    what: "dropping the stale replication slot",
                    source,
                })?;
            Ok(true)
        }
    }
}
