//! Errors of the WAL layer.

use std::io;
use std::path::PathBuf;

use super::format::{DecodeError, EncodeError};
use super::report::{FramingError, RecoveryReport};
use crate::lsn::{Lsn, WalKey};

/// What went wrong writing, recovering or reading the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file-system call failed.
    #[error("WAL I/O failed: {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing or fsyncing the log failed. Nothing past the last durable LSN was acknowledged to
    /// Postgres, so a restart reads the rest from the slot again.
    #[error(
        "WAL {op} failed on {}: fix the disk (space, permissions, hardware) and restart pgroar; \
         nothing past {durable} (the last durable LSN) was acknowledged, so the slot sends it again",
        path.display()
    )]
    WriteFailed {
        /// `write` or `fsync`.
        op: &'static str,
        /// The durable LSN when it failed.
        durable: Lsn,
        /// The segment or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another writer (in this or another process) has the WAL directory open.
    #[error("the WAL in {} is locked by another writer", .0.display())]
    Locked(PathBuf),
    /// An earlier write or fsync failed, so what reached the disk is unknown; the WAL refuses
    /// further writes until it is reopened (which runs recovery).
    #[error("the WAL failed earlier and must be reopened")]
    Failed,
    /// `begin` or `mark` while a transaction is open.
    #[error("a transaction (commit LSN {0}) is already open")]
    TransactionOpen(Lsn),
    /// `append`, `commit` or `abort` with no open transaction.
    #[error("no transaction is open")]
    NoTransaction,
    /// A Begin or Mark LSN not above the last committed or marked LSN.
    #[error("LSN {lsn} is not above the last committed or marked LSN {last}")]
    LsnNotIncreasing {
        /// The LSN given.
        lsn: Lsn,
        /// The last committed or marked LSN.
        last: Lsn,
    },
    /// A transaction with more records than a `u32` sequence number can count.
    #[error("transaction {0} has too many records")]
    TooManyRecords(Lsn),
    /// The ops cannot be encoded (too deep, too large).
    #[error("ops cannot be written to the WAL")]
    Encode(#[from] EncodeError),
    /// A segment of a format version this build does not read. Nothing was cut or changed.
    #[error("segment {} has WAL format version {version}; this build reads versions {} to {}", path.display(), super::format::MIN_READ_VERSION, super::format::FORMAT_VERSION)]
    UnsupportedVersion {
        /// The segment file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// Recovery would cut records of committed transactions and the recovery mode forbids it.
    /// Nothing was changed on disk; the report says what would have been cut.
    #[error(
        "the WAL is damaged before records of committed transactions ({}); they may have been acknowledged to Postgres, so pgroar will not cut them silently: `pgroar wal repair --dir <data_dir>/wal` shows what it would cut and cuts it with --yes",
        .0.summary()
    )]
    WouldCutCommitted(Box<RecoveryReport>),
    /// A reader found a damaged record in bytes recovery had accepted or the writer wrote.
    #[error("corrupt WAL record in {} at offset {offset}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the record begins.
        offset: u64,
        /// What is wrong.
        #[source]
        source: DecodeError,
    },
    /// A reader found valid records in an impossible order.
    #[error("invalid WAL record order in {} at offset {offset}", path.display())]
    Framing {
        /// The segment file.
        path: PathBuf,
        /// Where the record begins.
        offset: u64,
        /// What is wrong.
        #[source]
        source: FramingError,
    },
    /// A reader was asked to resume after `after`, but segments holding records after it have
    /// been removed: the oldest remaining segment starts after LSN `first`.
    #[error("WAL records after {after:?} were removed; the oldest segment starts after {first}")]
    Gap {
        /// Where the reader was asked to resume.
        after: WalKey,
        /// The `prev_lsn` of the oldest segment.
        first: Lsn,
    },
    /// A segment the durable position says exists is missing.
    #[error("WAL segment {number} is missing from {}", dir.display())]
    MissingSegment {
        /// The WAL directory.
        dir: PathBuf,
        /// The segment number.
        number: u64,
    },
}

impl WalError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }
}
