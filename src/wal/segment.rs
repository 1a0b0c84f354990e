//! Segment files: naming, listing, and a buffered reader that takes one record at a time.
//!
//! The reader never holds more than one record (at most [`MAX_RECORD_LEN`] bytes, and never more
//! than the file has left) plus its read buffer; skipping a record's payload is a seek.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{
    DecodeError, MAX_RECORD_LEN, RECORD_PREFIX_LEN, RecordHeader, RecordKind, RecordRef,
    SEGMENT_HEADER_LEN, SegmentHeader, check_record_len, decode_record, decode_record_header,
    le_u32,
};

/// Size of a segment reader's read buffer.
const READ_BUFFER: usize = 64 << 10;

/// A byte position in the WAL: a segment number and an offset in that segment's file.
/// Ordered by segment, then offset.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalPosition {
    /// Segment number.
    pub segment: u64,
    /// Byte offset in the segment file.
    pub offset: u64,
}

impl WalPosition {
    /// A position.
    pub fn new(segment: u64, offset: u64) -> Self {
        WalPosition { segment, offset }
    }
}

impl std::fmt::Display for WalPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// The file name of segment `number`.
pub fn segment_file_name(number: u64) -> String {
    format!("seg-{number:010}.wal")
}

/// The segment number a file name stands for, if it is exactly a name [`segment_file_name`]
/// makes (so `seg-1.wal` and `seg-0000000001.wal` cannot both count).
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".wal")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    (segment_file_name(n) == name).then_some(n)
}

/// The segment files in `dir`, by ascending number. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

/// What reading the segment header found.
pub(crate) enum HeaderRead {
    /// A valid header.
    Ok(SegmentHeader),
    /// The file is shorter than a header.
    Torn,
    /// The header is damaged (or of another version).
    Bad(DecodeError),
}

/// What reading the next record found.
pub(crate) enum Next<'a> {
    /// The position is at the limit: no more records.
    End,
    /// Fewer bytes than a whole record before the limit (a torn tail, or not yet written).
    Short,
    /// An invalid record at `start`; `skip_to` is where the next record would begin if its
    /// length field is to be believed (the length was in bounds and within the limit).
    Bad {
        /// Where the invalid record begins.
        start: u64,
        /// Why it is invalid.
        err: DecodeError,
        /// End of the invalid record by its length field, if plausible.
        skip_to: Option<u64>,
    },
    /// A whole, CRC-checked record starting at `start`.
    Record {
        /// Where the record begins.
        start: u64,
        /// The record.
        rec: RecordRef<'a>,
    },
}

/// What reading the next record's header (skipping its payload) found.
pub(crate) enum NextHeader {
    /// At the limit.
    End,
    /// Fewer bytes than a whole record before the limit.
    Short,
    /// An invalid record prefix at `start` (or, for non-Ops kinds, an invalid record).
    Bad {
        /// Where the invalid record begins.
        start: u64,
        /// Why it is invalid.
        err: DecodeError,
    },
    /// The record (starting where the reader was) ends within the limit. Non-Ops records (empty payload) are CRC-checked;
    /// an Ops record's payload was skipped unread and is checked when it is read in full.
    Header {
        /// Its prefix.
        header: RecordHeader,
    },
}

/// A buffered, record-at-a-time reader of one segment file.
pub(crate) struct SegmentReader {
    path: PathBuf,
    file: BufReader<File>,
    /// Offset of the next byte to consume.
    pos: u64,
    /// Scratch space for the current record.
    record: Vec<u8>,
}

impl SegmentReader {
    /// Opens a segment file, positioned at offset 0.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        Ok(SegmentReader {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(READ_BUFFER, file),
            pos: 0,
            record: Vec::new(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's current length.
    pub fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.get_ref().metadata()?.len())
    }

    /// Offset of the next byte to consume.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Moves to `pos`, keeping the read buffer when `pos` lies within it.
    pub fn seek(&mut self, pos: u64) -> io::Result<()> {
        let delta = i128::from(pos) - i128::from(self.pos);
        let delta = i64::try_from(delta).map_err(io::Error::other)?;
        self.file.seek_relative(delta)?;
        self.pos = pos;
        Ok(())
    }

    /// Drops the read buffer, so bytes are read from the file again. Needed when the bytes past
    /// an earlier limit may have been read while the writer was still writing them.
    pub fn invalidate(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(self.pos))?;
        Ok(())
    }

    /// Reads the segment header; the reader must be at offset 0.
    pub fn read_header(&mut self, file_len: u64) -> io::Result<HeaderRead> {
        debug_assert_eq!(self.pos, 0);
        if file_len < SEGMENT_HEADER_LEN as u64 {
            return Ok(HeaderRead::Torn);
        }
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        self.read_exact(&mut b)?;
        Ok(match SegmentHeader::decode(&b) {
            Ok(Some(h)) => HeaderRead::Ok(h),
            Ok(None) => HeaderRead::Torn,
            Err(e) => HeaderRead::Bad(e),
        })
    }

    /// Reads the next whole record if it ends at or before `limit` (which must not exceed the
    /// file's length). The CRC is checked; the payload is not decoded. On `Short` and `Bad` the
    /// position is unspecified: seek before reading on.
    pub fn next_record(&mut self, limit: u64) -> io::Result<Next<'_>> {
        let start = self.pos;
        let left = limit.saturating_sub(start);
        if left == 0 {
            return Ok(Next::End);
        }
        if left < 4 {
            return Ok(Next::Short);
        }
        let mut len_bytes = [0u8; 4];
        self.read_exact(&mut len_bytes)?;
        let len = le_u32(&len_bytes);
        if let Err(err) = check_record_len(len) {
            return Ok(Next::Bad {
                start,
                err,
                skip_to: None,
            });
        }
        let total = 4 + u64::from(len);
        if total > left {
            return Ok(Next::Short);
        }
        debug_assert!(len <= MAX_RECORD_LEN);
        self.record.clear();
        self.record.extend_from_slice(&len_bytes);
        self.record.resize(total as usize, 0);
        let (file, record) = (&mut self.file, &mut self.record);
        file.read_exact(&mut record[4..])?;
        self.pos = start + total;
        match decode_record(&self.record) {
            Ok(Some((rec, _))) => Ok(Next::Record { start, rec }),
            Ok(None) => Ok(Next::Short),
            Err(err) => Ok(Next::Bad {
                start,
                err,
                skip_to: Some(start + total),
            }),
        }
    }

    /// Reads the next record's prefix if the record ends at or before `limit`, and moves past the
    /// record without reading an Ops payload. Non-Ops records are read whole and CRC-checked.
    pub fn next_header(&mut self, limit: u64) -> io::Result<NextHeader> {
        let start = self.pos;
        let left = limit.saturating_sub(start);
        if left == 0 {
            return Ok(NextHeader::End);
        }
        if left < RECORD_PREFIX_LEN as u64 {
            return Ok(NextHeader::Short);
        }
        let mut prefix = [0u8; RECORD_PREFIX_LEN];
        self.read_exact(&mut prefix)?;
        let header = match decode_record_header(&prefix) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(NextHeader::Short),
            Err(err) => return Ok(NextHeader::Bad { start, err }),
        };
        if header.total_len() > left {
            return Ok(NextHeader::Short);
        }
        if header.kind == RecordKind::Ops {
            self.seek(start + header.total_len())?;
        } else {
            let mut crc = [0u8; 4];
            self.read_exact(&mut crc)?;
            let stored = le_u32(&crc);
            let computed = crc32fast::hash(&prefix);
            if stored != computed {
                return Ok(NextHeader::Bad {
                    start,
                    err: DecodeError::Checksum { stored, computed },
                });
            }
        }
        Ok(NextHeader::Header { header })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }
}

/// Fsyncs a directory, making file creations and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_reject_lookalikes() {
        assert_eq!(segment_file_name(7), "seg-0000000007.wal");
        assert_eq!(parse_segment_file_name("seg-0000000007.wal"), Some(7));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for bad in [
            "seg-7.wal",
            "seg-00000000007.wal",
            "seg-+000000007.wal",
            "seg-.wal",
            "seg-0000000007.wal.tmp",
            "xseg-0000000007.wal",
            "seg-99999999999999999999.wal",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn positions_order_by_segment_then_offset() {
        assert!(WalPosition::new(1, 900) < WalPosition::new(2, 0));
        assert!(WalPosition::new(2, 10) < WalPosition::new(2, 11));
        assert_eq!(WalPosition::new(3, 32).to_string(), "3:32");
    }
}
