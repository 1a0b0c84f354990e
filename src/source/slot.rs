//! Start-up checks on the replication session, before `START_REPLICATION`: the publication
//! exists; the slot exists (or is created, for a fresh data directory), is a logical `pgoutput`
//! slot of this database, is not invalidated, and has not confirmed more than our WAL holds
//! (its `confirmed_flush_lsn` at most one byte past our durable LSN: see the note on positions
//! in [`super`]).
//!
//! The checks run on the same authenticated session that then starts streaming, so what they
//! saw is what the stream opens on. Names are validated by the config (slot) or quoted as SQL
//! literals (publication), never spliced raw.
//!
//! Creating the slot is bracketed by an intent file, `<data_dir>/creating-slot` (written and
//! fsynced before `CREATE_REPLICATION_SLOT`, removed once the consistent point is a durable WAL
//! Mark). A crash in between leaves the file next to an empty WAL; the next start then adopts
//! the slot at its `confirmed_flush_lsn` — still the consistent point, since nothing was ever
//! acknowledged on it — instead of refusing it as ahead of the WAL.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use bytes::Bytes;
use pgwire_replication::{QueryRow, ReplicationClient};

use super::error::{MarkerError, SourceError};
use crate::Lsn;

/// What the slot check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotCheck {
    /// The slot is usable from our durable LSN.
    Ready {
        /// Its `confirmed_flush_lsn`.
        confirmed: Lsn,
    },
    /// The slot does not exist and the data directory has never streamed: create it.
    Missing,
    /// The slot was created by this data directory just before a crash: streaming starts at
    /// its `confirmed_flush_lsn` (the consistent point).
    Orphaned {
        /// Its `confirmed_flush_lsn`.
        confirmed: Lsn,
    },
}

/// The names and positions a check needs.
pub(crate) struct CheckInput<'a> {
    pub slot: &'a str,
    pub publication: &'a str,
    pub durable: Lsn,
    /// The WAL has never been written: a missing slot may be created.
    pub may_create: bool,
    /// The intent file names this slot and the WAL is empty: a slot ahead may be adopted.
    pub may_adopt: bool,
    pub data_dir: &'a Path,
}

/// The intent file's name inside the data directory.
pub const CREATING_SLOT_FILE: &str = "creating-slot";

/// Whether the intent file in `data_dir` names `slot`.
pub(crate) fn intent_names(data_dir: &Path, slot: &str) -> bool {
    std::fs::read_to_string(data_dir.join(CREATING_SLOT_FILE)).is_ok_and(|s| s.trim() == slot)
}

/// Writes and fsyncs the intent file (and its directory).
pub(crate) fn write_intent(data_dir: &Path, slot: &str) -> Result<(), MarkerError> {
    let path = data_dir.join(CREATING_SLOT_FILE);
    let err = |what| {
        let path = path.clone();
        move |source| MarkerError { what, path, source }
    };
    let mut f = File::create(&path).map_err(err("create"))?;
    f.write_all(slot.as_bytes()).map_err(err("write"))?;
    f.sync_all().map_err(err("fsync"))?;
    File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(err("fsync the directory of"))
}

/// Removes the intent file (a missing one is fine).
pub(crate) fn remove_intent(data_dir: &Path) -> Result<(), MarkerError> {
    let path = data_dir.join(CREATING_SLOT_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MarkerError {
            what: "remove",
            path,
            source,
        }),
    }
}

/// `'text'` as an SQL string literal.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs every check on a gated session; creates the slot when allowed.
pub(crate) async fn check(
    client: &mut ReplicationClient,
    input: &CheckInput<'_>,
) -> Result<SlotCheck, SourceError> {
    let rows = query(
        client,
        "the publication check",
        &format!(
            "SELECT current_database(), EXISTS (SELECT 1 FROM pg_publication WHERE pubname = {})",
            literal(input.publication)
        ),
    )
    .await?;
    let row = one_row(rows, "the publication check", 2)?;
    let database = text(&row[0]).unwrap_or_default();
    if text(&row[1]).as_deref() != Some("t") {
        return Err(SourceError::PublicationMissing {
            publication: input.publication.to_owned(),
            database,
        });
    }

    let rows = query(
        client,
        "the slot check",
        &format!(
            "SELECT slot_type, plugin, database = current_database(), confirmed_flush_lsn, \
             wal_status, active_pid FROM pg_replication_slots WHERE slot_name = {}",
            literal(input.slot)
        ),
    )
    .await?;
    let Some(row) = rows.into_iter().next() else {
        if !input.may_create {
            return Err(SourceError::SlotMissing {
                slot: input.slot.to_owned(),
                durable: input.durable,
                data_dir: input.data_dir.to_path_buf(),
            });
        }
        return Ok(SlotCheck::Missing);
    };
    if row.len() < 6 {
        return Err(reply("the slot check", "too few columns"));
    }
    let unusable = |detail: String| SourceError::SlotUnusable {
        slot: input.slot.to_owned(),
        detail,
    };
    let slot_type = text(&row[0]).unwrap_or_default();
    if slot_type != "logical" {
        return Err(unusable(format!(
            "it is a {slot_type} slot, not a logical one"
        )));
    }
    let plugin = text(&row[1]).unwrap_or_default();
    if plugin != "pgoutput" {
        return Err(unusable(format!(
            "it uses the output plugin {plugin:?}, not pgoutput"
        )));
    }
    if text(&row[2]).as_deref() != Some("t") {
        return Err(unusable(format!(
            "it belongs to another database than {database:?}"
        )));
    }
    let confirmed = match text(&row[3]) {
        Some(s) => s
            .parse::<Lsn>()
            .map_err(|e| reply("the slot check", &e.to_string()))?,
        None => Lsn::ZERO,
    };
    if let Some(status) = text(&row[4])
        && status == "lost"
    {
        return Err(SourceError::SlotInvalidated {
            slot: input.slot.to_owned(),
            wal_status: status,
            durable: input.durable,
            data_dir: input.data_dir.to_path_buf(),
        });
    }
    if let Some(pid) = text(&row[5]).and_then(|p| p.parse::<i32>().ok()) {
        return Err(SourceError::SlotActive {
            slot: input.slot.to_owned(),
            pid,
        });
    }
    // The slot's position is where the next record starts: everything committed *before* it
    // was confirmed. Our durable LSN covers everything committed *at or before* it. So the
    // slot is ahead only past `durable + 1` (a Mark one below a consistent point or keepalive
    // position is exactly in step with it).
    let ahead = confirmed.0 > input.durable.0.saturating_add(1);
    if ahead && input.may_adopt {
        return Ok(SlotCheck::Orphaned { confirmed });
    }
    if ahead {
        return Err(SourceError::SlotAhead {
            slot: input.slot.to_owned(),
            confirmed,
            durable: input.durable,
            data_dir: input.data_dir.to_path_buf(),
        });
    }
    Ok(SlotCheck::Ready { confirmed })
}

/// What a session reads about its server before it starts.
pub(crate) struct SessionFacts {
    /// The server's `wal_sender_timeout` (zero: off).
    pub sender_timeout: std::time::Duration,
    /// The session's backend pid.
    pub pid: i32,
    /// The OIDs of the server's enum types.
    pub enum_types: std::collections::HashSet<u32>,
}

/// Reads [`SessionFacts`] in one round trip.
pub(crate) async fn session_facts(
    client: &mut ReplicationClient,
) -> Result<SessionFacts, SourceError> {
    const WHAT: &str = "reading wal_sender_timeout";
    let rows = query(
        client,
        WHAT,
        "SELECT setting, pg_backend_pid(), \
         (SELECT string_agg(oid::text, ',') FROM pg_catalog.pg_type WHERE typtype = 'e') \
         FROM pg_settings WHERE name = 'wal_sender_timeout'",
    )
    .await?;
    let row = one_row(rows, WHAT, 3)?;
    let ms = text(&row[0])
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| reply(WHAT, "not a number of milliseconds"))?;
    let pid = text(&row[1])
        .and_then(|t| t.parse::<i32>().ok())
        .ok_or_else(|| reply(WHAT, "no backend pid"))?;
    let enum_types = text(&row[2])
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| reply(WHAT, "an enum type OID"))
        })
        .collect::<Result<_, _>>()?;
    Ok(SessionFacts {
        sender_timeout: std::time::Duration::from_millis(ms),
        pid,
        enum_types,
    })
}

/// Ends the server process `pid` (one of our own abandoned sessions still holding the slot),
/// unless it is blocked writing to its dead connection: such a process would hang in sending
/// its termination notice until TCP gives up, far longer than its own `wal_sender_timeout`,
/// which still applies while it waits to write. Returns whether it was signalled.
pub(crate) async fn terminate(
    client: &mut ReplicationClient,
    pid: i32,
) -> Result<bool, SourceError> {
    const WHAT: &str = "ending our abandoned replication session";
    let rows = query(
        client,
        WHAT,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = {pid} \
             AND wait_event IS DISTINCT FROM 'WalSenderWriteData'"
        ),
    )
    .await?;
    Ok(rows
        .first()
        .is_some_and(|r| text(&r[0]).as_deref() == Some("t")))
}

/// `CREATE_REPLICATION_SLOT … LOGICAL pgoutput NOEXPORT_SNAPSHOT`; returns the consistent point.
pub(crate) async fn create(client: &mut ReplicationClient, slot: &str) -> Result<Lsn, SourceError> {
    const WHAT: &str = "creating the replication slot";
    // The config allows only [a-z0-9_] in slot names, so the name needs no quoting.
    let rows = query(
        client,
        WHAT,
        &format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput NOEXPORT_SNAPSHOT"),
    )
    .await?;
    let row = one_row(rows, WHAT, 2)?;
    let consistent_point = text(&row[1])
        .ok_or_else(|| reply(WHAT, "no consistent point"))?
        .parse::<Lsn>()
        .map_err(|e| reply(WHAT, &e.to_string()))?;
    Ok(consistent_point)
}

async fn query(
    client: &mut ReplicationClient,
    what: &'static str,
    sql: &str,
) -> Result<Vec<QueryRow>, SourceError> {
    client
        .simple_query(sql)
        .await
        .map_err(|source| SourceError::Command { what, source })
}

fn one_row(
    rows: Vec<QueryRow>,
    what: &'static str,
    columns: usize,
) -> Result<QueryRow, SourceError> {
    let mut rows = rows.into_iter();
    match (rows.next(), rows.next()) {
        (Some(row), None) if row.len() >= columns => Ok(row),
        _ => Err(reply(
            what,
            &format!("expected one row of {columns} columns"),
        )),
    }
}

pub(crate) fn text(cell: &Option<Bytes>) -> Option<String> {
    cell.as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn reply(what: &'static str, detail: &str) -> SourceError {
    SourceError::Reply {
        what,
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_quotes() {
        assert_eq!(literal("pub"), "'pub'");
        assert_eq!(literal("o'brien"), "'o''brien'");
    }
}
