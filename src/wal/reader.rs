//! The WAL reader: committed records in order, one at a time, never past the durable end.

use std::path::{Path, PathBuf};

use super::error::WalError;
use super::format::{DecodeError, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader};
use super::payload::decode_entity_ops_with;
use super::recovery::FramingError;
use super::segment::{
    HeaderRead, Next, NextHeader, SegmentReader, WalPosition, list_segments, segment_file_name,
};
use crate::lsn::{Lsn, WalKey};
use crate::ops::EntityOps;
use crate::schema::FieldIds;

/// One event read from the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEntry {
    /// One entity's ops of a committed transaction.
    Ops {
        /// The record's cursor key.
        key: WalKey,
        /// The ops.
        ops: EntityOps,
    },
    /// The end of a committed transaction: every record of it has been yielded.
    Commit {
        /// Its commit LSN.
        lsn: Lsn,
    },
    /// A durable position with no ops.
    Mark {
        /// The marked LSN.
        lsn: Lsn,
    },
}

/// Where the reader is relative to transaction framing.
#[derive(Copy, Clone, Debug)]
enum State {
    /// At a record boundary outside any transaction.
    Between,
    /// After a Begin, looking (headers only) for its Commit or Abort.
    Scanning {
        lsn: Lsn,
        /// Offset just after the Begin record.
        body: u64,
        /// Where the header scan continues.
        scan_pos: u64,
        /// Ops records seen so far.
        count: u32,
    },
    /// Inside a transaction whose Commit is at offset `commit`.
    Committed { lsn: Lsn, commit: u64 },
}

/// The segment being read.
struct Cursor {
    number: u64,
    reader: SegmentReader,
    /// The file's final length once the segment is known to be sealed.
    sealed_len: Option<u64>,
}

/// Reads the records of committed transactions with key > `after`, plus Commit and Mark events,
/// in WAL order.
///
/// Memory is one record and a read buffer whatever the transaction size: on a Begin the reader
/// scans ahead over record headers only (seeking past payloads) to the matching Commit or Abort,
/// then reads the records one at a time. Aborted transactions are skipped. Bytes at or beyond
/// the `limit` passed to [`WalReader::next`] are never used, so a reader given the writer's
/// durable end sees only fsynced, whole transactions.
pub struct WalReader {
    dir: PathBuf,
    after: WalKey,
    cur: Option<Cursor>,
    /// The segment to open next when `cur` is `None`.
    next_number: u64,
    state: State,
    last_limit: Option<WalPosition>,
    /// The schema's fields, which decoded ops' field names resolve to.
    ids: FieldIds,
}

impl WalReader {
    /// Opens a reader of the WAL in `dir` that yields what comes after `after` (use
    /// [`WalKey::ZERO`] for everything, `WalKey::end_of(lsn)` to resume after a transaction).
    /// Fails with [`WalError::Gap`] if segments holding records after `after` were removed.
    pub fn open(dir: impl AsRef<Path>, after: WalKey) -> Result<WalReader, WalError> {
        let dir = dir.as_ref().to_path_buf();
        let segments = list_segments(&dir).map_err(WalError::io("list", &dir))?;
        let mut start = segments.first().map(|(n, _)| *n).unwrap_or(1);
        if let Some((_, oldest)) = segments.first() {
            let first = read_header(oldest)?.prev_lsn;
            if first > Lsn::ZERO && WalKey::end_of(first) > after {
                return Err(WalError::Gap { after, first });
            }
        }
        // Every committed record before a segment has an LSN at or below its `prev_lsn`: start at
        // the newest segment whose `prev_lsn` is below `after.lsn`.
        for (n, path) in segments.iter().rev() {
            if read_header(path)?.prev_lsn < after.lsn {
                start = *n;
                break;
            }
        }
        Ok(WalReader {
            dir,
            after,
            cur: None,
            next_number: start,
            state: State::Between,
            last_limit: None,
            ids: FieldIds::default(),
        })
    }

    /// Resolves decoded ops' field names against `ids` (the schema's), so that later stages
    /// find each field by its id.
    pub fn with_field_ids(mut self, ids: FieldIds) -> WalReader {
        self.ids = ids;
        self
    }

    /// Where the reader is: records before this position have been consumed.
    pub fn position(&self) -> WalPosition {
        match &self.cur {
            Some(c) => WalPosition::new(c.number, c.reader.pos()),
            None => WalPosition::new(self.next_number, 0),
        }
    }

    /// The next entry, reading no byte at or after `limit` (the writer's durable end).
    /// `Ok(None)` means nothing more yet: call again with a later limit. A transaction whose
    /// Commit is not yet within the limit is not started; the reader resumes from it later.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self, limit: WalPosition) -> Result<Option<WalEntry>, WalError> {
        if self.last_limit != Some(limit) {
            // Bytes buffered past the old limit may have been read mid-write: read them again.
            if let Some(c) = &mut self.cur {
                c.reader
                    .invalidate()
                    .map_err(WalError::io("seek", c.reader.path()))?;
            }
            self.last_limit = Some(limit);
        }
        loop {
            if self.cur.is_none() {
                if self.next_number > limit.segment {
                    return Ok(None);
                }
                self.cur = Some(self.open_segment(self.next_number)?);
            }
            let Some(c) = self.cur.as_mut() else {
                return Ok(None);
            };
            let sealed = c.number < limit.segment;
            let seg_limit = if sealed {
                match c.sealed_len {
                    Some(len) => len,
                    None => {
                        let len = c
                            .reader
                            .file_len()
                            .map_err(WalError::io("stat", c.reader.path()))?;
                        c.sealed_len = Some(len);
                        len
                    }
                }
            } else if c.number == limit.segment {
                limit.offset
            } else {
                return Ok(None);
            };
            let path = c.reader.path().to_path_buf();
            let io = |op| WalError::io(op, path.clone());
            let corrupt = |offset, source| WalError::Corrupt {
                path: path.clone(),
                offset,
                source,
            };
            let framing = |offset, source| WalError::Framing {
                path: path.clone(),
                offset,
                source,
            };
            match self.state {
                State::Between => {
                    let start = c.reader.pos();
                    match c.reader.next_record(seg_limit).map_err(io("read"))? {
                        Next::End if sealed => {
                            self.next_number = c.number + 1;
                            self.cur = None;
                        }
                        Next::End => return Ok(None),
                        Next::Short if sealed => {
                            return Err(corrupt(start, DecodeError::Truncated("record")));
                        }
                        Next::Short => {
                            c.reader.seek(start).map_err(io("seek"))?;
                            return Ok(None);
                        }
                        Next::Bad { start, err, .. } => return Err(corrupt(start, err)),
                        Next::Record { start, rec } => match rec.kind {
                            RecordKind::Mark => {
                                if WalKey::end_of(rec.lsn) > self.after {
                                    return Ok(Some(WalEntry::Mark { lsn: rec.lsn }));
                                }
                            }
                            RecordKind::Begin => {
                                let lsn = rec.lsn;
                                let body = c.reader.pos();
                                self.state = State::Scanning {
                                    lsn,
                                    body,
                                    scan_pos: body,
                                    count: 0,
                                };
                            }
                            kind => {
                                return Err(framing(start, FramingError::OutsideTransaction(kind)));
                            }
                        },
                    }
                }
                State::Scanning {
                    lsn,
                    body,
                    scan_pos,
                    mut count,
                } => {
                    c.reader.seek(scan_pos).map_err(io("seek"))?;
                    loop {
                        let start = c.reader.pos();
                        let h = match c.reader.next_header(seg_limit).map_err(io("read"))? {
                            NextHeader::End | NextHeader::Short if sealed => {
                                return Err(framing(
                                    start,
                                    FramingError::TransactionSpansSegments(lsn),
                                ));
                            }
                            NextHeader::End | NextHeader::Short => {
                                self.state = State::Scanning {
                                    lsn,
                                    body,
                                    scan_pos: start,
                                    count,
                                };
                                return Ok(None);
                            }
                            NextHeader::Bad { start, err } => return Err(corrupt(start, err)),
                            NextHeader::Header { header } => header,
                        };
                        let err = match h.kind {
                            RecordKind::Begin => {
                                Some(FramingError::BeginInsideTransaction { open: lsn })
                            }
                            RecordKind::Mark => {
                                Some(FramingError::MarkInsideTransaction { open: lsn })
                            }
                            kind if h.lsn != lsn => Some(FramingError::LsnMismatch {
                                kind,
                                txn: lsn,
                                found: h.lsn,
                            }),
                            kind if h.seq != count => Some(FramingError::Seq {
                                kind,
                                expected: count,
                                found: h.seq,
                            }),
                            _ => None,
                        };
                        if let Some(e) = err {
                            return Err(framing(start, e));
                        }
                        match h.kind {
                            RecordKind::Ops => count = count.saturating_add(1),
                            RecordKind::Commit if WalKey::end_of(lsn) > self.after => {
                                self.state = State::Committed { lsn, commit: start };
                                c.reader.seek(body).map_err(io("seek"))?;
                                break;
                            }
                            // An Abort, or a Commit of a transaction wholly at or before `after`:
                            // skip it; the reader is already past it.
                            _ => {
                                self.state = State::Between;
                                break;
                            }
                        }
                    }
                }
                State::Committed { lsn, commit } => {
                    let start = c.reader.pos();
                    match c.reader.next_record(seg_limit).map_err(io("read"))? {
                        Next::Record { rec, .. } if start == commit => {
                            debug_assert_eq!(rec.kind, RecordKind::Commit);
                            self.state = State::Between;
                            return Ok(Some(WalEntry::Commit { lsn }));
                        }
                        Next::Record { rec, .. } => {
                            let key = rec.key();
                            if key > self.after {
                                let ops = decode_entity_ops_with(rec.payload, &self.ids)
                                    .map_err(|e| corrupt(start, e))?;
                                return Ok(Some(WalEntry::Ops { key, ops }));
                            }
                        }
                        Next::Bad { start, err, .. } => return Err(corrupt(start, err)),
                        // Only if a smaller limit than before was passed: wait for it to grow.
                        Next::End | Next::Short => {
                            c.reader.seek(start).map_err(io("seek"))?;
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    fn open_segment(&self, number: u64) -> Result<Cursor, WalError> {
        let path = self.dir.join(segment_file_name(number));
        if !path.exists() {
            return Err(WalError::MissingSegment {
                dir: self.dir.clone(),
                number,
            });
        }
        let mut reader = SegmentReader::open(&path).map_err(WalError::io("open", &path))?;
        let header = header_of(&mut reader)?;
        if header.number != number {
            return Err(WalError::Framing {
                path,
                offset: 0,
                source: FramingError::SegmentNumber {
                    expected: number,
                    found: header.number,
                },
            });
        }
        debug_assert_eq!(reader.pos(), SEGMENT_HEADER_LEN as u64);
        Ok(Cursor {
            number,
            reader,
            sealed_len: None,
        })
    }
}

fn read_header(path: &Path) -> Result<SegmentHeader, WalError> {
    let mut reader = SegmentReader::open(path).map_err(WalError::io("open", path))?;
    header_of(&mut reader)
}

fn header_of(reader: &mut SegmentReader) -> Result<SegmentHeader, WalError> {
    let path = reader.path().to_path_buf();
    let len = reader.file_len().map_err(WalError::io("stat", &path))?;
    let corrupt = |source| WalError::Corrupt {
        path: path.clone(),
        offset: 0,
        source,
    };
    match reader
        .read_header(len)
        .map_err(WalError::io("read", &path))?
    {
        HeaderRead::Ok(h) => Ok(h),
        HeaderRead::Torn => Err(corrupt(DecodeError::Truncated("segment header"))),
        HeaderRead::Bad(e) => Err(corrupt(e)),
    }
}
