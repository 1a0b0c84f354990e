//! The WAL's byte layout: segment headers and records. Pure functions over byte slices, no I/O,
//! so every decoder here can be fuzzed.
//!
//! # Format version 2
//!
//! Version 2 added the `truncate` op (payload tag 6); version 1 segments are still read.
//!
//! All integers are little-endian; there is no padding anywhere.
//!
//! A WAL is a directory of segment files named `seg-NNNNNNNNNN.wal` (the segment number in
//! decimal, zero-padded to at least 10 digits). Each segment is a header followed by records.
//!
//! **Segment header** (32 bytes):
//!
//! | offset | size | field      | meaning                                                        |
//! |-------:|-----:|------------|----------------------------------------------------------------|
//! | 0      | 8    | magic      | `b"PGROARWL"`                                                  |
//! | 8      | 4    | version    | `u32` format version, [`FORMAT_VERSION`]                       |
//! | 12     | 8    | number     | `u64` segment number; equals the number in the file name      |
//! | 20     | 8    | prev_lsn   | `u64` last Commit/Mark LSN written before this segment (0: none) |
//! | 28     | 4    | crc        | `u32` CRC-32 (IEEE, `crc32fast`) of bytes 0..28                |
//!
//! **Record** (21 + n bytes):
//!
//! | offset | size | field   | meaning                                                           |
//! |-------:|-----:|---------|-------------------------------------------------------------------|
//! | 0      | 4    | len     | `u32` bytes after this field: `17 + n`; at most [`MAX_RECORD_LEN`] |
//! | 4      | 1    | kind    | [`RecordKind`]: 1 Begin, 2 Ops, 3 Commit, 4 Abort, 5 Mark          |
//! | 5      | 8    | lsn     | `u64` the transaction's commit LSN (Mark: the marked LSN)         |
//! | 13     | 4    | seq     | `u32` see below                                                   |
//! | 17     | n    | payload | Ops: one encoded `EntityOps` (see [`super::payload`]); others: empty |
//! | 17 + n | 4    | crc     | `u32` CRC-32 of bytes `0 .. 17 + n`, the length prefix included   |
//!
//! | kind   | lsn                         | seq                                   | payload     |
//! |--------|-----------------------------|---------------------------------------|-------------|
//! | Begin  | commit LSN of the txn       | 0                                     | empty       |
//! | Ops    | commit LSN of the txn       | 0, 1, 2, … within the txn             | `EntityOps` |
//! | Commit | commit LSN of the txn       | number of Ops records in the txn      | empty       |
//! | Abort  | commit LSN of the txn       | number of Ops records written before  | empty       |
//! | Mark   | a durable position, no ops  | 0                                     | empty       |
//!
//! A transaction is `Begin, Ops*, (Commit | Abort)`, wholly inside one segment. Commit and Mark
//! LSNs strictly increase through the whole WAL; a Begin's LSN is greater than every Commit/Mark
//! LSN before it (an aborted transaction is resent with the same LSN).
//!
//! **Torn and corrupt records.** A record whose `len` is outside `17 ..= MAX_RECORD_LEN`, whose CRC
//! does not match, whose kind is unknown, or whose non-Ops payload is not empty is corrupt. A
//! record that runs past the end of the file is torn. Decoders never allocate from an unchecked
//! length: a length is checked against the bound and the bytes left first.
//!
//! **Versioning.** Any change to these tables, the file naming or the payload encoding bumps
//! [`FORMAT_VERSION`]. A segment whose header (CRC-valid) carries another version is never cut or
//! rewritten: opening the WAL fails instead.

use crate::lsn::{Lsn, WalKey};

/// The format version written into every segment header.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build reads (each version only adds to the one before).
pub const MIN_READ_VERSION: u32 = 1;

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"PGROARWL";

/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 32;

/// Bytes of a record before its payload: `len`, `kind`, `lsn`, `seq`.
pub const RECORD_PREFIX_LEN: usize = 17;

/// Bytes of a record besides its payload: the prefix and the trailing CRC.
pub const RECORD_OVERHEAD: usize = RECORD_PREFIX_LEN + 4;

/// Smallest valid `len` field: a record with an empty payload.
pub const MIN_RECORD_LEN: u32 = (RECORD_OVERHEAD - 4) as u32;

/// Largest valid `len` field (256 MiB). Anything larger is corruption, never an allocation.
pub const MAX_RECORD_LEN: u32 = 256 << 20;

/// Why bytes are not a valid header, record or payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The segment header does not start with [`SEGMENT_MAGIC`].
    #[error("bad segment magic")]
    BadMagic,
    /// A CRC-valid segment header of another format version.
    #[error(
        "unsupported WAL format version {0} (this build reads versions {MIN_READ_VERSION} to {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// A record's length field is outside `17 ..= MAX_RECORD_LEN`.
    #[error("record length {0} is out of bounds")]
    Length(u32),
    /// The stored CRC does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC found in the bytes.
        stored: u32,
        /// CRC of the covered bytes.
        computed: u32,
    },
    /// A record kind this version does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// A Begin, Commit, Abort or Mark record with a payload.
    #[error("{kind:?} record carries a {len}-byte payload")]
    UnexpectedPayload {
        /// The record's kind.
        kind: RecordKind,
        /// Payload length found.
        len: usize,
    },
    /// A payload field needs more bytes than are left.
    #[error("payload truncated reading {0}")]
    Truncated(&'static str),
    /// A field name, value or query is not UTF-8.
    #[error("invalid UTF-8 in {what}")]
    InvalidUtf8 {
        /// Which string.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::str::Utf8Error,
    },
    /// A tag byte (op, value, query presence, flags) with no meaning.
    #[error("invalid {what} tag {tag}")]
    BadTag {
        /// Which tag.
        what: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// `queryOpSet` nested deeper than [`super::payload::MAX_OP_DEPTH`].
    #[error("queryOpSet nested too deeply")]
    TooDeep,
    /// Bytes left over after a complete payload.
    #[error("{0} trailing bytes after the payload")]
    TrailingBytes(usize),
}

/// Why a record cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// `queryOpSet` nested deeper than the format allows.
    #[error("queryOpSet nested deeper than {max} levels")]
    TooDeep {
        /// The bound.
        max: usize,
    },
    /// A string or list longer than a `u32` length can say.
    #[error("{what} of {len} items does not fit a u32 length")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The record would exceed [`MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the {MAX_RECORD_LEN}-byte maximum")]
    RecordTooLarge {
        /// The record's `len` field as it would be.
        len: usize,
    },
}

/// What a record says.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// Start of a transaction; `lsn` is its commit LSN.
    Begin = 1,
    /// One `EntityOps` of the open transaction.
    Ops = 2,
    /// The open transaction is complete; `seq` is its Ops record count.
    Commit = 3,
    /// The open transaction is discarded (it will be resent).
    Abort = 4,
    /// A durable position with no ops (an acknowledged keepalive while idle).
    Mark = 5,
}

impl RecordKind {
    /// The kind for a byte, if any.
    pub fn from_u8(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::Begin,
            2 => RecordKind::Ops,
            3 => RecordKind::Commit,
            4 => RecordKind::Abort,
            5 => RecordKind::Mark,
            _ => return None,
        })
    }
}

/// A decoded segment header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's number.
    pub number: u64,
    /// The last Commit/Mark LSN written before this segment (`Lsn::ZERO` if none).
    pub prev_lsn: Lsn,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.number.to_le_bytes());
        b[20..28].copy_from_slice(&self.prev_lsn.0.to_le_bytes());
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header from the start of `buf`; `Ok(None)` if `buf` is shorter than a header.
    /// The CRC is checked before the version, so a damaged version field reads as corruption.
    pub fn decode(buf: &[u8]) -> Result<Option<SegmentHeader>, DecodeError> {
        let Some(b) = buf.get(..SEGMENT_HEADER_LEN) else {
            return Ok(None);
        };
        if b[0..8] != SEGMENT_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let stored = le_u32(&b[28..32]);
        let computed = crc32fast::hash(&b[0..28]);
        if stored != computed {
            return Err(DecodeError::Checksum { stored, computed });
        }
        let version = le_u32(&b[8..12]);
        if !(MIN_READ_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        Ok(Some(SegmentHeader {
            number: le_u64(&b[12..20]),
            prev_lsn: Lsn(le_u64(&b[20..28])),
        }))
    }
}

/// The fixed prefix of a record, decodable without reading (or trusting) the payload.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// The `len` field: bytes after it.
    pub len: u32,
    /// The record kind.
    pub kind: RecordKind,
    /// The record's LSN.
    pub lsn: Lsn,
    /// The record's sequence number (meaning depends on the kind).
    pub seq: u32,
}

impl RecordHeader {
    /// Bytes of the whole record, length prefix and CRC included.
    pub fn total_len(&self) -> u64 {
        4 + u64::from(self.len)
    }

    /// Bytes of the payload.
    pub fn payload_len(&self) -> usize {
        (self.len - MIN_RECORD_LEN) as usize
    }
}

/// Checks a `len` field against the format's bounds.
pub fn check_record_len(len: u32) -> Result<(), DecodeError> {
    if (MIN_RECORD_LEN..=MAX_RECORD_LEN).contains(&len) {
        Ok(())
    } else {
        Err(DecodeError::Length(len))
    }
}

/// Decodes a record's prefix (not CRC-checked: the payload and CRC follow). `Ok(None)` if `buf`
/// holds fewer than [`RECORD_PREFIX_LEN`] bytes. Checks the length bounds, the kind, and that
/// only Ops records have a payload.
pub fn decode_record_header(buf: &[u8]) -> Result<Option<RecordHeader>, DecodeError> {
    if buf.len() >= 4 {
        check_record_len(le_u32(&buf[0..4]))?;
    }
    let Some(b) = buf.get(..RECORD_PREFIX_LEN) else {
        return Ok(None);
    };
    let len = le_u32(&b[0..4]);
    let kind = RecordKind::from_u8(b[4]).ok_or(DecodeError::UnknownKind(b[4]))?;
    let header = RecordHeader {
        len,
        kind,
        lsn: Lsn(le_u64(&b[5..13])),
        seq: le_u32(&b[13..17]),
    };
    if kind != RecordKind::Ops && len != MIN_RECORD_LEN {
        return Err(DecodeError::UnexpectedPayload {
            kind,
            len: header.payload_len(),
        });
    }
    Ok(Some(header))
}

/// A whole, CRC-checked record borrowed from a buffer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record kind.
    pub kind: RecordKind,
    /// The record's LSN.
    pub lsn: Lsn,
    /// The record's sequence number.
    pub seq: u32,
    /// The payload bytes (empty except for Ops).
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// The record's cursor key `(lsn, seq)`.
    pub fn key(&self) -> WalKey {
        WalKey::new(self.lsn, self.seq)
    }
}

/// Decodes the record at the start of `buf`. `Ok(None)` means `buf` ends before the record does
/// (a torn tail, or more bytes are needed); otherwise returns the record and its total length.
/// The CRC is verified before anything else in the record is trusted beyond its length.
pub fn decode_record(buf: &[u8]) -> Result<Option<(RecordRef<'_>, usize)>, DecodeError> {
    let Some(len_bytes) = buf.get(..4) else {
        return Ok(None);
    };
    let len = le_u32(len_bytes);
    check_record_len(len)?;
    let total = 4 + len as usize;
    let Some(rec) = buf.get(..total) else {
        return Ok(None);
    };
    let body_end = total - 4;
    let stored = le_u32(&rec[body_end..]);
    let computed = crc32fast::hash(&rec[..body_end]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let header = decode_record_header(rec)?.ok_or(DecodeError::Length(len))?;
    Ok(Some((
        RecordRef {
            kind: header.kind,
            lsn: header.lsn,
            seq: header.seq,
            payload: &rec[RECORD_PREFIX_LEN..body_end],
        },
        total,
    )))
}

/// Appends one record to `out`; `payload` writes the payload bytes (nothing for non-Ops kinds).
/// On error `out` is left as it was. Returns the record's total length.
pub fn encode_record(
    out: &mut Vec<u8>,
    kind: RecordKind,
    lsn: Lsn,
    seq: u32,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.push(kind as u8);
    out.extend_from_slice(&lsn.0.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    if let Err(e) = payload(out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start; // bytes after the len field, before the CRC: + 4 - 4
    if len > MAX_RECORD_LEN as usize {
        out.truncate(start);
        return Err(EncodeError::RecordTooLarge { len });
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out.len() - start)
}

/// Appends a record with an empty payload (Begin, Commit, Abort, Mark).
pub fn encode_marker(out: &mut Vec<u8>, kind: RecordKind, lsn: Lsn, seq: u32) -> usize {
    // An empty payload never fails to encode and is always within bounds.
    encode_record(out, kind, lsn, seq, |_| Ok(())).unwrap_or(0)
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn marker(kind: RecordKind, lsn: u64, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        encode_marker(&mut v, kind, Lsn(lsn), seq);
        v
    }

    #[test]
    fn marker_records_have_the_documented_layout() {
        let b = marker(RecordKind::Commit, 0x0102_0304_0506_0708, 7);
        assert_eq!(b.len(), RECORD_OVERHEAD);
        assert_eq!(&b[0..4], &17u32.to_le_bytes());
        assert_eq!(b[4], 3);
        assert_eq!(&b[5..13], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[13..17], &7u32.to_le_bytes());
        assert_eq!(&b[17..21], &crc32fast::hash(&b[..17]).to_le_bytes());
        let (rec, n) = decode_record(&b).unwrap().unwrap();
        assert_eq!(n, b.len());
        assert_eq!(
            (rec.kind, rec.lsn, rec.seq, rec.payload),
            (RecordKind::Commit, Lsn(0x0102_0304_0506_0708), 7, &[][..])
        );
    }

    #[test]
    fn every_record_kind_round_trips() {
        for kind in [
            RecordKind::Begin,
            RecordKind::Ops,
            RecordKind::Commit,
            RecordKind::Abort,
            RecordKind::Mark,
        ] {
            let mut b = Vec::new();
            let payload: &[u8] = if kind == RecordKind::Ops { b"xyz" } else { b"" };
            encode_record(&mut b, kind, Lsn(42), 3, |o| {
                o.extend_from_slice(payload);
                Ok(())
            })
            .unwrap();
            let (rec, n) = decode_record(&b).unwrap().unwrap();
            assert_eq!(n, b.len());
            assert_eq!(rec.kind, kind);
            assert_eq!(rec.key(), WalKey::new(Lsn(42), 3));
            assert_eq!(rec.payload, payload);
            let h = decode_record_header(&b).unwrap().unwrap();
            assert_eq!(h.total_len(), b.len() as u64);
            assert_eq!(h.payload_len(), payload.len());
        }
    }

    #[test]
    fn every_prefix_of_a_record_needs_more_bytes() {
        let b = marker(RecordKind::Mark, 9, 0);
        for cut in 0..b.len() {
            assert_eq!(decode_record(&b[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn every_bit_flip_of_a_record_is_an_error() {
        let mut b = Vec::new();
        encode_record(&mut b, RecordKind::Ops, Lsn(5), 1, |o| {
            o.extend_from_slice(b"payload");
            Ok(())
        })
        .unwrap();
        for bit in 0..b.len() * 8 {
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            // A flipped length either needs more bytes (a torn tail) or fails; never decodes.
            assert!(
                !matches!(decode_record(&c), Ok(Some(_))),
                "bit {bit} flipped and the record still decoded"
            );
        }
    }

    #[test]
    fn lengths_out_of_bounds_are_errors_not_allocations() {
        let mut b = vec![0u8; 8];
        b[0..4].copy_from_slice(&(MAX_RECORD_LEN + 1).to_le_bytes());
        assert_eq!(
            decode_record(&b),
            Err(DecodeError::Length(MAX_RECORD_LEN + 1))
        );
        b[0..4].copy_from_slice(&16u32.to_le_bytes());
        assert_eq!(decode_record(&b), Err(DecodeError::Length(16)));
        b[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_record_header(&b), Err(DecodeError::Length(u32::MAX)));
    }

    #[test]
    fn marker_kinds_with_a_payload_are_rejected() {
        let mut b = Vec::new();
        encode_record(&mut b, RecordKind::Commit, Lsn(1), 0, |o| {
            o.push(0);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            decode_record(&b),
            Err(DecodeError::UnexpectedPayload {
                kind: RecordKind::Commit,
                len: 1
            })
        );
    }

    #[test]
    fn unknown_kind_with_a_valid_crc_is_rejected() {
        let mut b = marker(RecordKind::Mark, 1, 0);
        b[4] = 9;
        let crc = crc32fast::hash(&b[..17]);
        b[17..21].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_record(&b), Err(DecodeError::UnknownKind(9)));
    }

    #[test]
    fn oversized_payload_is_refused_and_leaves_the_buffer_alone() {
        let mut b = vec![7u8; 3];
        let err = encode_record(&mut b, RecordKind::Ops, Lsn(1), 0, |o| {
            o.resize(o.len() + MAX_RECORD_LEN as usize, 0);
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, EncodeError::RecordTooLarge { .. }));
        assert_eq!(b, vec![7u8; 3]);
    }

    #[test]
    fn segment_header_round_trips_and_detects_damage() {
        let h = SegmentHeader {
            number: 12,
            prev_lsn: Lsn(0xABCD),
        };
        let b = h.encode();
        assert_eq!(&b[0..8], b"PGROARWL");
        assert_eq!(SegmentHeader::decode(&b), Ok(Some(h)));
        for cut in 0..b.len() {
            assert_eq!(SegmentHeader::decode(&b[..cut]), Ok(None));
        }
        for bit in 0..b.len() * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&c).is_err(), "bit {bit}");
        }
        // A CRC-valid header of another version is "unsupported", not corrupt.
        let mut c = b;
        c[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32fast::hash(&c[..28]);
        c[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&c),
            Err(DecodeError::UnsupportedVersion(3))
        );
        // Version 1 (before the truncate op) is still read.
        let mut c = b;
        c[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32fast::hash(&c[..28]);
        c[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(SegmentHeader::decode(&c).is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_record_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_record(&bytes);
            let _ = decode_record_header(&bytes);
            let _ = SegmentHeader::decode(&bytes);
        }

        #[test]
        fn arbitrary_bodies_behind_a_valid_frame_never_panic(kind in 0u8..8, lsn: u64, seq: u32, body in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Frame arbitrary bytes with a correct length and CRC so the decoder gets past them.
            let mut b = Vec::new();
            b.extend_from_slice(&((13 + body.len() + 4) as u32).to_le_bytes());
            b.push(kind);
            b.extend_from_slice(&lsn.to_le_bytes());
            b.extend_from_slice(&seq.to_le_bytes());
            b.extend_from_slice(&body);
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            match decode_record(&b) {
                Ok(Some((rec, n))) => {
                    prop_assert_eq!(n, b.len());
                    prop_assert_eq!(rec.payload, &body[..]);
                }
                Ok(None) => prop_assert!(false, "a whole record needs no more bytes"),
                Err(_) => prop_assert!(kind == 0 || kind > 5 || (kind != 2 && !body.is_empty())),
            }
        }
    }
}
