//! The ops WAL: CRC-checked records of field-level ops, keyed by (commit LSN, seq), written with
//! group commit, cut back to the last whole transaction after a crash.
//!
//! # Guarantees
//!
//! * **Durable as a unit.** A transaction is `Begin, Ops…, Commit`. It is durable once its
//!   Commit record has been fsynced by [`Wal::sync`]; readers and recovery never see part of a
//!   transaction: a transaction without its Commit is invisible, an aborted one is skipped.
//! * **Group commit.** `begin`/`append`/`commit`/`mark` only fill one in-memory buffer; `sync`
//!   writes it and fdatasyncs once for all the transactions since the last sync. `sync` returns
//!   the durable LSN, the only LSN that may be acknowledged to Postgres as flushed: every Commit
//!   and Mark at or below it is on disk. Many transactions per fsync is what makes the WAL fast,
//!   and acknowledging only after it is what makes it safe.
//! * **Never behind what Postgres was told.** While idle, the keepalive `wal_end` we acknowledge
//!   is first written as a Mark and synced, so after a restart the durable LSN is at least every
//!   LSN ever acknowledged and Postgres is never asked for WAL it has already recycled.
//! * **Every byte checked.** Each record, length prefix included, is covered by a CRC-32, and each
//!   segment header by its own. Recovery validates every record (CRC, payload, framing, LSN
//!   order) and cuts at the first invalid one back to the end of the last whole transaction or
//!   Mark; it never panics or allocates from bytes it has not checked.
//! * **Keys.** Commit/Mark LSNs strictly increase; records are keyed `(commit LSN, seq)`, so a
//!   reader resuming after a durable cursor never yields a record twice.
//! * **One writer.** [`Wal::open`] takes an exclusive advisory lock on the directory, so a second
//!   writer (another process pointed at the same data directory) fails with
//!   [`WalError::Locked`] instead of interleaving records.
//! * **Bounded memory.** Neither the writer (which hands bytes to the OS past
//!   [`WalOptions::buffer_bytes`]), recovery nor the reader holds more than one record and a read
//!   buffer; a transaction of any size streams.
//!
//! # Crash windows
//!
//! * **Before or during `sync`.** Transactions appended since the last sync may be lost whole or
//!   torn. Postgres was never told they were flushed, so it resends them from our durable LSN;
//!   recovery cuts the torn tail (a half-written transaction included) and appends continue after
//!   the cut.
//! * **During rotation.** Rotation happens at a transaction boundary: the full segment's bytes go
//!   to the OS, the new segment file is created and its header buffered; at the next sync the old
//!   segment, the new one and the directory are fsynced, in that order. A crash in between can
//!   leave an empty or torn new segment (recovery removes it), or a torn old segment with a later
//!   segment after it (recovery cuts the old one and removes the later ones; their data was never
//!   acknowledged).
//! * **During recovery.** Recovery removes the segments after the cut newest first, fsyncs the
//!   directory, and only then truncates and fsyncs the cut segment. A crash at any point leaves
//!   a directory the next recovery cuts to the same place.
//! * **During `remove_segments_below`.** Segments are removed oldest first; if a crash leaves a
//!   gap in the numbering, recovery finishes removing the segments below the gap. A reader asked
//!   to resume from a key those segments would have served fails with [`WalError::Gap`] instead
//!   of skipping data.
//! * **Failed write or fsync.** What reached the disk is then unknown (a failed fsync may have
//!   dropped dirty pages), so the writer refuses everything with [`WalError::Failed`] until it is
//!   reopened, which re-validates the files.
//!
//! # Layout
//!
//! The byte layout is the table in [`mod@format`] (and `docs/wal-format.md`); the Ops payload is
//! in [`payload`]. [`Wal`] writes, [`WalReader`] reads committed transactions up to the durable
//! end, and [`recovery`] validates and cuts on open.

mod error;
pub mod format;
pub mod payload;
mod reader;
pub mod recovery;
mod report;
mod segment;
pub mod sync;
mod writer;

pub use self::sync::{PendingSync, SyncOutcome};
pub use error::WalError;
pub use format::{DecodeError, EncodeError, RecordKind, RecordRef, decode_record};
pub use payload::{decode_entity_ops, decode_entity_ops_with, encode_entity_ops};
pub use reader::{WalEntry, WalReader};
pub use report::{Cut, CutReason, FramingError, RecoveryMode, RecoveryReport, SegmentInfo};
pub use segment::{WalPosition, parse_segment_file_name, segment_file_name};
pub use writer::{Durable, DurableWatch, Wal, WalOptions};
