//! The decoder: one pgoutput message (protocol version 1) from its bytes.
//!
//! Every read goes through [`Reader`], which checks the bytes left before it reads, slices or
//! allocates; counts are checked against the smallest encoding of their items, so no `Vec` is
//! ever sized by a wire value larger than the input could justify.

use std::sync::Arc;

use bytes::Bytes;

use super::error::DecodeError;
use super::message::{
    Begin, Column, Commit, Datum, Delete, Insert, LogicalMessage, Message, OldTuple, Origin,
    PgTimestamp, Relation, ReplicaIdentity, Truncate, TupleData, Type, Update,
};
use crate::Lsn;

/// Smallest encoding of a tuple column: its kind byte (`n` or `u`).
const MIN_DATUM_BYTES: usize = 1;
/// Smallest encoding of a Relation column: flags, empty name + NUL, type OID, type modifier.
const MIN_COLUMN_BYTES: usize = 1 + 1 + 4 + 4;
/// Size of one OID in a Truncate message.
const OID_BYTES: usize = 4;

/// Decodes one pgoutput message (protocol version 1), the whole of `buf`.
///
/// Column values and logical message contents are slices of `buf` (no copy); names are
/// checked to be UTF-8. Any malformation, including bytes left over after the message, is a
/// [`DecodeError`] naming the field and its byte offset. Never panics.
pub fn decode_message(buf: &Bytes) -> Result<Message, DecodeError> {
    let Some(&tag) = buf.first() else {
        return Err(DecodeError::Empty);
    };
    let mut r = Reader { buf, pos: 1 };
    let message = match tag {
        b'B' => Message::Begin(Begin {
            final_lsn: r.lsn("final LSN")?,
            commit_time: r.timestamp("commit timestamp")?,
            xid: r.u32("xid")?,
        }),
        b'C' => Message::Commit(Commit {
            flags: r.u8("commit flags")?,
            commit_lsn: r.lsn("commit LSN")?,
            end_lsn: r.lsn("end LSN")?,
            commit_time: r.timestamp("commit timestamp")?,
        }),
        b'O' => Message::Origin(Origin {
            commit_lsn: r.lsn("origin commit LSN")?,
            name: r.cstr("origin name")?,
        }),
        b'R' => Message::Relation(relation(&mut r)?),
        b'Y' => Message::Type(Type {
            oid: r.u32("type OID")?,
            namespace: r.cstr("type namespace")?,
            name: r.cstr("type name")?,
        }),
        b'I' => {
            let relation = r.u32("relation OID")?;
            r.marker("Insert", "'N'", |m| m == b'N')?;
            Message::Insert(Insert {
                relation,
                new: tuple(&mut r)?,
            })
        }
        b'U' => {
            let relation = r.u32("relation OID")?;
            let marker = r.marker("Update", "'K', 'O' or 'N'", |m| {
                matches!(m, b'K' | b'O' | b'N')
            })?;
            let old = match marker {
                b'N' => None,
                _ => {
                    let old = old_tuple(marker, tuple(&mut r)?);
                    r.marker("Update", "'N'", |m| m == b'N')?;
                    Some(old)
                }
            };
            Message::Update(Update {
                relation,
                old,
                new: tuple(&mut r)?,
            })
        }
        b'D' => {
            let relation = r.u32("relation OID")?;
            let marker = r.marker("Delete", "'K' or 'O'", |m| matches!(m, b'K' | b'O'))?;
            Message::Delete(Delete {
                relation,
                old: old_tuple(marker, tuple(&mut r)?),
            })
        }
        b'T' => {
            let count = r.count_i32("relation count", OID_BYTES)?;
            let options = r.u8("truncate options")?;
            let mut relations = Vec::with_capacity(count);
            for _ in 0..count {
                relations.push(r.u32("truncated relation OID")?);
            }
            Message::Truncate(Truncate { options, relations })
        }
        b'M' => {
            let flags = r.u8("message flags")?;
            let lsn = r.lsn("message LSN")?;
            let prefix = r.cstr("message prefix")?;
            Message::Logical(LogicalMessage {
                flags,
                lsn,
                prefix,
                content: r.prefixed_bytes("message content length")?,
            })
        }
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    r.finish(message.kind())?;
    Ok(message)
}

/// The body of a Relation message.
fn relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let oid = r.u32("relation OID")?;
    let namespace = r.cstr("relation namespace")?;
    let name = r.cstr("relation name")?;
    let identity_at = r.pos;
    let identity = r.u8("replica identity setting")?;
    let replica_identity =
        ReplicaIdentity::from_byte(identity).ok_or(DecodeError::UnknownReplicaIdentity {
            found: identity,
            offset: identity_at,
        })?;
    let count = r.count_i16("column count", MIN_COLUMN_BYTES)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        columns.push(Column {
            flags: r.u8("column flags")?,
            name: r.cstr("column name")?,
            type_oid: r.u32("column type OID")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

/// A TupleData block: column count, then one value per column.
fn tuple(r: &mut Reader<'_>) -> Result<TupleData, DecodeError> {
    let count = r.count_i16("tuple column count", MIN_DATUM_BYTES)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.pos;
        let datum = match r.u8("tuple column kind")? {
            b'n' => Datum::Null,
            b'u' => Datum::Unchanged,
            b't' => Datum::Text(r.prefixed_bytes("text value length")?),
            b'b' => Datum::Binary(r.prefixed_bytes("binary value length")?),
            kind => return Err(DecodeError::UnknownDatumKind { kind, offset: at }),
        };
        columns.push(datum);
    }
    Ok(TupleData { columns })
}

/// The old tuple for a `K` or `O` marker (callers have checked it is one of the two).
fn old_tuple(marker: u8, tuple: TupleData) -> OldTuple {
    if marker == b'O' {
        OldTuple::Full(tuple)
    } else {
        OldTuple::Key(tuple)
    }
}

/// A cursor over one message that checks every read against the bytes left.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    /// Bytes not read yet.
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `N` bytes, or a [`DecodeError::Truncated`] naming `what`.
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let end = self.pos + N;
        match self.buf.get(self.pos..end) {
            Some(bytes) => {
                let mut out = [0; N];
                out.copy_from_slice(bytes);
                self.pos = end;
                Ok(out)
            }
            None => Err(DecodeError::Truncated {
                what,
                offset: self.pos,
                need: N,
                left: self.left(),
            }),
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.array(what).map(i16::from_be_bytes)
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.array(what).map(i32::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        self.array(what).map(|b| Lsn(u64::from_be_bytes(b)))
    }

    fn timestamp(&mut self, what: &'static str) -> Result<PgTimestamp, DecodeError> {
        self.array(what).map(|b| PgTimestamp(i64::from_be_bytes(b)))
    }

    /// A tuple marker byte accepted by `allowed`.
    fn marker(
        &mut self,
        message: &'static str,
        expected: &'static str,
        allowed: impl Fn(u8) -> bool,
    ) -> Result<u8, DecodeError> {
        let offset = self.pos;
        let found = self.u8("tuple marker")?;
        if allowed(found) {
            Ok(found)
        } else {
            Err(DecodeError::UnexpectedTupleMarker {
                message,
                expected,
                found,
                offset,
            })
        }
    }

    /// A NUL-terminated UTF-8 string (the NUL is consumed, not returned).
    fn cstr(&mut self, what: &'static str) -> Result<Arc<str>, DecodeError> {
        let offset = self.pos;
        let rest = &self.buf[offset..];
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(DecodeError::UnterminatedString { what, offset });
        };
        let s = std::str::from_utf8(&rest[..nul]).map_err(|source| DecodeError::InvalidUtf8 {
            what,
            offset,
            source,
        })?;
        self.pos = offset + nul + 1;
        Ok(Arc::from(s))
    }

    /// An Int32 byte length (checked to be non-negative and to fit in the bytes left), then
    /// that many bytes as a zero-copy slice.
    fn prefixed_bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let offset = self.pos;
        let value = self.i32(what)?;
        let len = usize::try_from(value).map_err(|_| DecodeError::Negative {
            what,
            offset,
            value: value.into(),
        })?;
        if len > self.left() {
            return Err(DecodeError::LengthTooLarge {
                what,
                offset,
                len,
                left: self.left(),
            });
        }
        let start = self.pos;
        self.pos += len;
        Ok(self.buf.slice(start..self.pos))
    }

    /// An Int16 item count, checked against the bytes left at `min_bytes` per item.
    fn count_i16(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let value = self.i16(what)?;
        self.check_count(what, offset, value.into(), min_bytes)
    }

    /// An Int32 item count, checked against the bytes left at `min_bytes` per item.
    fn count_i32(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let value = self.i32(what)?;
        self.check_count(what, offset, value.into(), min_bytes)
    }

    fn check_count(
        &self,
        what: &'static str,
        offset: usize,
        value: i64,
        min_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let count = usize::try_from(value).map_err(|_| DecodeError::Negative {
            what,
            offset,
            value,
        })?;
        if count > self.left() / min_bytes {
            return Err(DecodeError::CountTooLarge {
                what,
                offset,
                count,
                min_bytes,
                left: self.left(),
            });
        }
        Ok(count)
    }

    /// Errors when bytes remain after the message.
    fn finish(self, message: &'static str) -> Result<(), DecodeError> {
        match self.left() {
            0 => Ok(()),
            len => Err(DecodeError::TrailingBytes {
                message,
                offset: self.pos,
                len,
            }),
        }
    }
}
