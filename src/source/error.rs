//! Errors of the replication source, split into those a reconnect may cure and those it cannot.

use std::path::PathBuf;

use pgwire_replication::PgWireError;

use super::conninfo::ConnInfoError;
use crate::Lsn;
use crate::decode::DecodeError;
use crate::wal::WalError;

/// What stopped (or interrupted) the replication stream.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The connection string is not usable.
    #[error(transparent)]
    ConnInfo(#[from] ConnInfoError),
    /// Connecting, authenticating or starting replication failed.
    #[error("replication connection to {target} failed")]
    Connect {
        /// `user@host:port/db`.
        target: String,
        /// The cause.
        #[source]
        source: PgWireError,
    },
    /// Connecting, authenticating, the checks and the start took longer than `connect_timeout`.
    #[error(
        "replication connection to {target} timed out after {after:?} (connect_timeout in postgres.url)"
    )]
    ConnectTimeout {
        /// `user@host:port/db`.
        target: String,
        /// The timeout.
        after: std::time::Duration,
    },
    /// Nothing arrived on the stream for the receive timeout, a heartbeat asked for traffic
    /// half-way included: the connection is silent (a dropped NAT entry, a stalled network).
    #[error(
        "nothing received on the replication stream for {after:?} (postgres.receive_timeout_ms); the connection is presumed dead"
    )]
    ReceiveTimeout {
        /// The receive timeout.
        after: std::time::Duration,
    },
    /// A catalog query or replication command on the replication session failed.
    #[error("{what} failed")]
    Command {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: PgWireError,
    },
    /// The server answered a query with something unexpected.
    #[error("unexpected answer to {what}: {detail}")]
    Reply {
        /// The query.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The publication does not exist.
    #[error(
        "publication {publication:?} does not exist in database {database:?}; create it (see migrations/) or set postgres.publication"
    )]
    PublicationMissing {
        /// The publication's name.
        publication: String,
        /// The database.
        database: String,
    },
    /// The slot exists but is not a logical `pgoutput` slot of this database.
    #[error("replication slot {slot:?} cannot be used: {detail}")]
    SlotUnusable {
        /// The slot's name.
        slot: String,
        /// Why.
        detail: String,
    },
    /// Another session is streaming from the slot.
    #[error("replication slot {slot:?} is in use by the server process {pid}")]
    SlotActive {
        /// The slot's name.
        slot: String,
        /// The walsender holding it.
        pid: i32,
    },
    /// The slot is gone although this data directory has streamed from it.
    #[error(
        "replication slot {slot:?} does not exist, but {data_dir} holds changes up to {durable}: \
         the changes after that were lost with the slot (dropped by hand?). The index must be \
         re-bootstrapped: run `pgroar bootstrap --force`"
    )]
    SlotMissing {
        /// The slot's name.
        slot: String,
        /// Our durable LSN.
        durable: Lsn,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The server invalidated the slot (it removed WAL the slot still needed).
    #[error(
        "replication slot {slot:?} was invalidated by the server (wal_status = {wal_status}): \
         changes after {durable} were lost (max_slot_wal_keep_size let the server remove WAL the \
         slot still needed while {data_dir} was not streaming). The index must be \
         re-bootstrapped: run `pgroar bootstrap --force` (it drops the slot and starts over)"
    )]
    SlotInvalidated {
        /// The slot's name.
        slot: String,
        /// `pg_replication_slots.wal_status`.
        wal_status: String,
        /// Our durable LSN.
        durable: Lsn,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The slot has confirmed more than this data directory holds.
    #[error(
        "replication slot {slot:?} has confirmed changes up to {confirmed}, but {data_dir} holds \
         changes only up to {durable}: the changes in between were lost. The index must be \
         re-bootstrapped: drop the slot (SELECT pg_drop_replication_slot('{slot}')) and remove \
         {data_dir}, then run `pgroar bootstrap`"
    )]
    SlotAhead {
        /// The slot's name.
        slot: String,
        /// The slot's `confirmed_flush_lsn`.
        confirmed: Lsn,
        /// Our durable LSN.
        durable: Lsn,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The stream broke (connection lost, server restart, `wal_sender_timeout`, server error).
    #[error("the replication stream broke")]
    Stream(#[source] PgWireError),
    /// The server ended the stream.
    #[error("the server ended the replication stream")]
    StreamEnded,
    /// A table read in binary form has a column whose binary form is not decoded here: the
    /// session restarts with values in text form (not a fault; the source handles it).
    #[error("table {table} is read in text form: the stream restarts that way")]
    TextValuesNeeded {
        /// The table.
        table: String,
    },
    /// The stream broke the protocol's framing (a change outside a transaction, …).
    #[error("replication protocol violation at {lsn}: {detail}")]
    Protocol {
        /// Where.
        lsn: Lsn,
        /// What.
        detail: String,
    },
    /// A pgoutput message did not decode.
    #[error("undecodable pgoutput message at {lsn}")]
    Decode {
        /// The message's WAL position.
        lsn: Lsn,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// The translator refused a relation or change (e.g. a tracked column was dropped).
    #[error("translating the change at {lsn}")]
    Translate {
        /// Where.
        lsn: Lsn,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing our WAL failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The slot-creation intent file could not be written or removed.
    #[error(transparent)]
    Intent(#[from] MarkerError),
    /// The catalog watcher found a source table the stream can no longer follow.
    #[error("{0}")]
    Catalog(String),
    /// The relations last seen cannot be read or written.
    #[error(transparent)]
    RelationsFile(#[from] super::relations::RelationsFileError),
    /// The server asked for a cleartext password on an unencrypted connection.
    #[error(transparent)]
    Cleartext(#[from] super::auth_probe::CleartextRefused),
    /// A blocking WAL task could not be run.
    #[error("the WAL sync task failed: {0}")]
    Task(String),
}

impl SourceError {
    /// Whether reconnecting may cure it. Everything else stops the pipeline: retrying would
    /// either fail the same way or lose data.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Connect { source, .. }
            | SourceError::Command { source, .. }
            | SourceError::Stream(source) => !matches!(source, PgWireError::Auth(_)),
            SourceError::SlotActive { .. }
            | SourceError::StreamEnded
            | SourceError::TextValuesNeeded { .. }
            | SourceError::ConnectTimeout { .. }
            | SourceError::ReceiveTimeout { .. } => true,
            _ => false,
        }
    }
}

/// Why the slot-creation intent file could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} {}", path.display())]
pub struct MarkerError {
    pub(super) what: &'static str,
    pub(super) path: PathBuf,
    #[source]
    pub(super) source: std::io::Error,
}
