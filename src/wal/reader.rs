//! The WAL reader: committed records in order, one at a time, never past the durable end.

use std::path::{Path, PathBuf};

use super::error::WalError;
use super::format::{DecodeError, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader};
use super::payload::decode_entity_ops_with;
use super::report::FramingError;
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

/// What one step of the reader's state machine decided.
enum Step {
    /// Hand this entry out.
    Yield(WalEntry),
    /// Nothing more within the limit yet.
    Wait,
    /// The sealed segment is read to its end: go on with the next one.
    NextSegment,
    /// The state changed; step again.
    Again,
}

/// How far the current segment may be read.
#[derive(Copy, Clone)]
struct End {
    /// The segment is sealed: its end is final, and a short record there is corrupt.
    sealed: bool,
    /// The offset no byte at or beyond which is read.
    offset: u64,
}

impl Cursor {
    /// How far this segment may be read under the writer's durable end `limit`; `None` when
    /// the segment lies beyond it.
    fn end(&mut self, limit: WalPosition) -> Result<Option<End>, WalError> {
        let sealed = self.number < limit.segment;
        let offset = if sealed {
            match self.sealed_len {
                Some(len) => len,
                None => {
                    let len = self
                        .reader
                        .file_len()
                        .map_err(WalError::io("stat", self.reader.path()))?;
                    self.sealed_len = Some(len);
                    len
                }
            }
        } else if self.number == limit.segment {
            limit.offset
        } else {
            return Ok(None);
        };
        Ok(Some(End { sealed, offset }))
    }

    /// Outside a transaction: a Mark is yielded, a Begin starts the scan for its end.
    fn between(&mut self, end: End, after: WalKey, state: &mut State) -> Result<Step, WalError> {
        let at = At(self.reader.path().to_path_buf());
        let start = self.reader.pos();
        let rec = match self.reader.next_record(end.offset).map_err(at.io("read"))? {
            Next::End if end.sealed => return Ok(Step::NextSegment),
            Next::End => return Ok(Step::Wait),
            Next::Short if end.sealed => {
                return Err(at.corrupt(start, DecodeError::Truncated("record")));
            }
            Next::Short => {
                self.reader.seek(start).map_err(at.io("seek"))?;
                return Ok(Step::Wait);
            }
            Next::Bad { start, err, .. } => return Err(at.corrupt(start, err)),
            Next::Record { start, rec } => (start, rec.kind, rec.lsn),
        };
        match rec {
            (_, RecordKind::Mark, lsn) if WalKey::end_of(lsn) > after => {
                Ok(Step::Yield(WalEntry::Mark { lsn }))
            }
            (_, RecordKind::Mark, _) => Ok(Step::Again),
            (_, RecordKind::Begin, lsn) => {
                let body = self.reader.pos();
                *state = State::Scanning {
                    lsn,
                    body,
                    scan_pos: body,
                    count: 0,
                };
                Ok(Step::Again)
            }
            (start, kind, _) => Err(at.framing(start, FramingError::OutsideTransaction(kind))),
        }
    }

    /// After a Begin: record headers only, up to the transaction's Commit (then its records are
    /// read) or Abort (skipped, as is a transaction wholly at or before `after`).
    fn scan(&mut self, end: End, after: WalKey, state: &mut State) -> Result<Step, WalError> {
        let at = At(self.reader.path().to_path_buf());
        let State::Scanning {
            lsn,
            body,
            scan_pos,
            mut count,
        } = *state
        else {
            return Ok(Step::Again);
        };
        self.reader.seek(scan_pos).map_err(at.io("seek"))?;
        loop {
            let start = self.reader.pos();
            let h = match self.reader.next_header(end.offset).map_err(at.io("read"))? {
                NextHeader::End | NextHeader::Short if end.sealed => {
                    let spans = FramingError::TransactionSpansSegments(lsn);
                    return Err(at.framing(start, spans));
                }
                NextHeader::End | NextHeader::Short => {
                    *state = State::Scanning {
                        lsn,
                        body,
                        scan_pos: start,
                        count,
                    };
                    return Ok(Step::Wait);
                }
                NextHeader::Bad { start, err } => return Err(at.corrupt(start, err)),
                NextHeader::Header { header } => header,
            };
            if let Some(e) = framing_error(h.kind, h.lsn, h.seq, lsn, count) {
                return Err(at.framing(start, e));
            }
            match h.kind {
                RecordKind::Ops => count = count.saturating_add(1),
                RecordKind::Commit if WalKey::end_of(lsn) > after => {
                    *state = State::Committed { lsn, commit: start };
                    self.reader.seek(body).map_err(at.io("seek"))?;
                    return Ok(Step::Again);
                }
                _ => {
                    *state = State::Between;
                    return Ok(Step::Again);
                }
            }
        }
    }

    /// Inside a committed transaction: its records with key > `after`, one at a time, then its
    /// Commit.
    fn committed(
        &mut self,
        end: End,
        after: WalKey,
        ids: &FieldIds,
        state: &mut State,
    ) -> Result<Step, WalError> {
        let at = At(self.reader.path().to_path_buf());
        let State::Committed { lsn, commit } = *state else {
            return Ok(Step::Again);
        };
        let start = self.reader.pos();
        match self.reader.next_record(end.offset).map_err(at.io("read"))? {
            Next::Record { rec, .. } if start == commit => {
                debug_assert_eq!(rec.kind, RecordKind::Commit);
                *state = State::Between;
                Ok(Step::Yield(WalEntry::Commit { lsn }))
            }
            Next::Record { rec, .. } => {
                let key = rec.key();
                if key <= after {
                    return Ok(Step::Again);
                }
                let ops =
                    decode_entity_ops_with(rec.payload, ids).map_err(|e| at.corrupt(start, e))?;
                Ok(Step::Yield(WalEntry::Ops { key, ops }))
            }
            Next::Bad { start, err, .. } => Err(at.corrupt(start, err)),
            // Only if a smaller limit than before was passed: wait for it to grow.
            Next::End | Next::Short => {
                self.reader.seek(start).map_err(at.io("seek"))?;
                Ok(Step::Wait)
            }
        }
    }
}

/// The segment file errors name.
struct At(PathBuf);

impl At {
    fn io(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> WalError + '_ {
        move |source| WalError::Io {
            op,
            path: self.0.clone(),
            source,
        }
    }

    fn corrupt(&self, offset: u64, source: DecodeError) -> WalError {
        WalError::Corrupt {
            path: self.0.clone(),
            offset,
            source,
        }
    }

    fn framing(&self, offset: u64, source: FramingError) -> WalError {
        WalError::Framing {
            path: self.0.clone(),
            offset,
            source,
        }
    }
}

/// What is wrong with a record header met while scanning transaction `lsn` after `count` Ops
/// records, if anything.
fn framing_error(
    kind: RecordKind,
    at: Lsn,
    seq: u32,
    lsn: Lsn,
    count: u32,
) -> Option<FramingError> {
    match kind {
        RecordKind::Begin => Some(FramingError::BeginInsideTransaction { open: lsn }),
        RecordKind::Mark => Some(FramingError::MarkInsideTransaction { open: lsn }),
        kind if at != lsn => Some(FramingError::LsnMismatch {
            kind,
            txn: lsn,
            found: at,
        }),
        kind if seq != count => Some(FramingError::Seq {
            kind,
            expected: count,
            found: seq,
        }),
        _ => None,
    }
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
        let newest = segments.last().map(|(n, _)| *n);
        // The newest segment may have just been created by the writer, its header not yet
        // written: it holds no record yet, and is read once the durable end reaches it.
        let header = |n: u64, path: &Path| -> Result<Option<SegmentHeader>, WalError> {
            match read_header(path) {
                Err(WalError::Corrupt {
                    source: DecodeError::Truncated("segment header"),
                    ..
                }) if Some(n) == newest => Ok(None),
                other => other.map(Some),
            }
        };
        if let Some((n, oldest)) = segments.first()
            && let Some(h) = header(*n, oldest)?
        {
            let first = h.prev_lsn;
            if first > Lsn::ZERO && WalKey::end_of(first) > after {
                return Err(WalError::Gap { after, first });
            }
        }
        // Every committed record before a segment has an LSN at or below its `prev_lsn`: start at
        // the newest segment whose `prev_lsn` is below `after.lsn`.
        for (n, path) in segments.iter().rev() {
            if header(*n, path)?.is_some_and(|h| h.prev_lsn < after.lsn) {
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
            let Some(end) = c.end(limit)? else {
                return Ok(None);
            };
            let step = match self.state {
                State::Between => c.between(end, self.after, &mut self.state)?,
                State::Scanning { .. } => c.scan(end, self.after, &mut self.state)?,
                State::Committed { .. } => {
                    c.committed(end, self.after, &self.ids, &mut self.state)?
                }
            };
            match step {
                Step::Yield(entry) => return Ok(Some(entry)),
                Step::Wait => return Ok(None),
                Step::NextSegment => {
                    self.next_number = c.number + 1;
                    self.cur = None;
                }
                Step::Again => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{EntityOps, Op};
    use crate::wal::{Wal, WalOptions};

    #[test]
    fn a_reader_opens_beside_a_segment_the_writer_has_just_created() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.begin(Lsn(0x1000)).unwrap();
        wal.append(&EntityOps::new(1, vec![Op::set("nsfwLevel", 1)]))
            .unwrap();
        wal.commit().unwrap();
        wal.sync().unwrap();
        // A rotation creates the next file before its header is written out.
        let next = wal.segments().last().unwrap().number + 1;
        std::fs::File::create(dir.path().join(segment_file_name(next))).unwrap();
        let mut r = WalReader::open(dir.path(), WalKey::ZERO).unwrap();
        let mut read = Vec::new();
        while let Some(e) = r.next(wal.durable_end()).unwrap() {
            read.push(e);
        }
        assert_eq!(read.last(), Some(&WalEntry::Commit { lsn: Lsn(0x1000) }));
    }
}
