//! What recovery reports: the mode it runs in, what it found per segment, why and where it cut.
//! Plain data, shared by the recovery scan, the writer and the WAL's errors.

use super::format::{DecodeError, RecordKind};
use super::segment::WalPosition;
use crate::lsn::Lsn;

/// What recovery may do when it finds damage.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Cut back to the last whole transaction before the first invalid record, whatever lies
    /// after it. A torn tail after a crash is always cut this way.
    #[default]
    CutTail,
    /// Cut a tail only if no Commit or Mark record can be seen after the damage; otherwise fail
    /// with [`WalError::WouldCutCommitted`](super::WalError::WouldCutCommitted) and change nothing.
    RefuseCommittedCut,
}

/// What is known about one segment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Segment number.
    pub number: u64,
    /// The last Commit/Mark LSN before this segment (from its header).
    pub prev_lsn: Lsn,
    /// The highest LSN of any record in the segment; `None` if it has no records.
    pub max_lsn: Option<Lsn>,
    /// Bytes in the segment, header included (buffered bytes included for the active segment).
    pub len: u64,
}

/// A CRC-valid record in a place the format does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A Begin while a transaction is open.
    #[error("Begin inside the open transaction {open}")]
    BeginInsideTransaction {
        /// The open transaction's LSN.
        open: Lsn,
    },
    /// A Mark while a transaction is open.
    #[error("Mark inside the open transaction {open}")]
    MarkInsideTransaction {
        /// The open transaction's LSN.
        open: Lsn,
    },
    /// An Ops, Commit or Abort record with no open transaction.
    #[error("{0:?} record outside a transaction")]
    OutsideTransaction(RecordKind),
    /// A record whose LSN is not its transaction's.
    #[error("{kind:?} record has LSN {found}, its transaction {txn}")]
    LsnMismatch {
        /// The record's kind.
        kind: RecordKind,
        /// The open transaction's LSN.
        txn: Lsn,
        /// The record's LSN.
        found: Lsn,
    },
    /// An Ops record out of sequence, or a Commit/Abort whose count is wrong.
    #[error("{kind:?} record has seq {found}, expected {expected}")]
    Seq {
        /// The record's kind.
        kind: RecordKind,
        /// What the sequence requires.
        expected: u32,
        /// What the record says.
        found: u32,
    },
    /// A Begin or Mark LSN not above the last Commit/Mark LSN.
    #[error("LSN {lsn} is not above the previous {last}")]
    LsnNotIncreasing {
        /// The record's LSN.
        lsn: Lsn,
        /// The last Commit/Mark LSN before it.
        last: Lsn,
    },
    /// A segment ends inside a transaction although a later segment exists.
    #[error("transaction {0} runs past the end of its segment")]
    TransactionSpansSegments(Lsn),
    /// A segment header names another segment.
    #[error("segment header says number {found}, file name says {expected}")]
    SegmentNumber {
        /// From the file name.
        expected: u64,
        /// From the header.
        found: u64,
    },
    /// A segment's `prev_lsn` does not continue the previous segment.
    #[error("segment header says previous LSN {found}, the previous segment ends at {expected}")]
    PrevLsn {
        /// The previous segment's last Commit/Mark LSN.
        expected: Lsn,
        /// The header's `prev_lsn`.
        found: Lsn,
    },
}

/// Why recovery cut the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutReason {
    /// A segment file shorter than its header (a crash while creating it).
    TornSegmentHeader,
    /// A damaged segment header.
    BadSegmentHeader(DecodeError),
    /// A record running past the end of its file (a crash while writing it).
    TornRecord,
    /// A damaged record (length, CRC, kind or payload).
    BadRecord(DecodeError),
    /// A valid record in an invalid place.
    Framing(FramingError),
    /// The WAL ends inside a transaction (a crash before its Commit was written).
    OpenTransaction,
}

/// What recovery cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Where the first invalid data begins.
    pub damage: WalPosition,
    /// What was wrong there.
    pub reason: CutReason,
    /// The new end of the WAL: the end of the last whole transaction or Mark. `None` if no
    /// segment could be kept.
    pub truncated_to: Option<WalPosition>,
    /// Bytes removed, from the cut segment and the segments after it.
    pub bytes_removed: u64,
    /// Segments removed whole.
    pub segments_removed: Vec<u64>,
    /// A Commit or Mark record was seen after the damage: the cut dropped committed data.
    /// (A crash never causes this; damage to written data does. The dropped data may still
    /// never have been acknowledged, if it had not been synced.)
    pub committed_cut: bool,
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Segments kept.
    pub segments: usize,
    /// Records kept.
    pub records: u64,
    /// Committed transactions kept.
    pub transactions: u64,
    /// Marks kept.
    pub marks: u64,
    /// Aborted transactions kept (they stay in the file; readers skip them).
    pub aborted: u64,
    /// The last Commit/Mark LSN kept: the WAL's durable LSN.
    pub durable_lsn: Lsn,
    /// Where appends continue.
    pub end: WalPosition,
    /// The cut, if anything was invalid.
    pub cut: Option<Cut>,
    /// Segments removed because they lay below a gap in the numbering (left behind by an
    /// interrupted `remove_segments_below`).
    pub stale_segments_removed: Vec<u64>,
    /// A new, empty segment was created (the directory had none left).
    pub created_segment: bool,
}

impl RecoveryReport {
    /// A one-line summary for logs.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} segments, {} transactions, {} marks, durable LSN {}, end {}",
            self.segments, self.transactions, self.marks, self.durable_lsn, self.end
        );
        if let Some(cut) = &self.cut {
            s.push_str(&format!(
                "; cut {} bytes and {} whole segments at {} ({:?}){}",
                cut.bytes_removed,
                cut.segments_removed.len(),
                cut.damage,
                cut.reason,
                if cut.committed_cut {
                    ", committed data was cut"
                } else {
                    ""
                }
            ));
        }
        if !self.stale_segments_removed.is_empty() {
            s.push_str(&format!(
                "; removed stale segments {:?}",
                self.stale_segments_removed
            ));
        }
        s
    }
}
