//! The inverse of the decoder: a [`Message`] back to pgoutput bytes, exactly as Postgres lays
//! them out. Used to build test streams and to check in the fuzzer that decoding is lossless
//! (every message that decodes re-encodes to the very same bytes).

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::message::{Datum, Message, OldTuple, TupleData};

/// Appends the pgoutput (protocol version 1) encoding of `msg` to `out`.
///
/// Fails, leaving `out` as it was, when a count does not fit its wire field or a name holds a
/// NUL byte (which the decoder never produces).
pub fn encode_message(msg: &Message, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_into(msg, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_into(msg: &Message, out: &mut BytesMut) -> Result<(), EncodeError> {
    match msg {
        Message::Begin(m) => {
            out.put_u8(b'B');
            out.put_u64(m.final_lsn.0);
            out.put_i64(m.commit_time.0);
            out.put_u32(m.xid);
        }
        Message::Commit(m) => {
            out.put_u8(b'C');
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_time.0);
        }
        Message::Origin(m) => {
            out.put_u8(b'O');
            out.put_u64(m.commit_lsn.0);
            cstr(out, "origin name", &m.name)?;
        }
        Message::Relation(m) => {
            out.put_u8(b'R');
            out.put_u32(m.oid);
            cstr(out, "relation namespace", &m.namespace)?;
            cstr(out, "relation name", &m.name)?;
            out.put_u8(m.replica_identity.as_byte());
            out.put_i16(count_i16("column count", m.columns.len())?);
            for c in &m.columns {
                out.put_u8(c.flags);
                cstr(out, "column name", &c.name)?;
                out.put_u32(c.type_oid);
                out.put_i32(c.type_modifier);
            }
        }
        Message::Type(m) => {
            out.put_u8(b'Y');
            out.put_u32(m.oid);
            cstr(out, "type namespace", &m.namespace)?;
            cstr(out, "type name", &m.name)?;
        }
        Message::Insert(m) => {
            out.put_u8(b'I');
            out.put_u32(m.relation);
            out.put_u8(b'N');
            tuple(out, &m.new)?;
        }
        Message::Update(m) => {
            out.put_u8(b'U');
            out.put_u32(m.relation);
            if let Some(old) = &m.old {
                old_tuple(out, old)?;
            }
            out.put_u8(b'N');
            tuple(out, &m.new)?;
        }
        Message::Delete(m) => {
            out.put_u8(b'D');
            out.put_u32(m.relation);
            old_tuple(out, &m.old)?;
        }
        Message::Truncate(m) => {
            out.put_u8(b'T');
            out.put_i32(len_i32("relation count", m.relations.len())?);
            out.put_u8(m.options);
            for &oid in &m.relations {
                out.put_u32(oid);
            }
        }
        Message::Logical(m) => {
            out.put_u8(b'M');
            out.put_u8(m.flags);
            out.put_u64(m.lsn.0);
            cstr(out, "message prefix", &m.prefix)?;
            out.put_i32(len_i32("message content length", m.content.len())?);
            out.put_slice(&m.content);
        }
    }
    Ok(())
}

fn old_tuple(out: &mut BytesMut, old: &OldTuple) -> Result<(), EncodeError> {
    let (marker, t) = match old {
        OldTuple::Key(t) => (b'K', t),
        OldTuple::Full(t) => (b'O', t),
    };
    out.put_u8(marker);
    tuple(out, t)
}

fn tuple(out: &mut BytesMut, t: &TupleData) -> Result<(), EncodeError> {
    out.put_i16(count_i16("tuple column count", t.columns.len())?);
    for d in &t.columns {
        match d {
            Datum::Null => out.put_u8(b'n'),
            Datum::Unchanged => out.put_u8(b'u'),
            Datum::Text(b) | Datum::Binary(b) => {
                out.put_u8(if matches!(d, Datum::Text(_)) {
                    b't'
                } else {
                    b'b'
                });
                out.put_i32(len_i32("value length", b.len())?);
                out.put_slice(b);
            }
        }
    }
    Ok(())
}

fn cstr(out: &mut BytesMut, what: &'static str, s: &str) -> Result<(), EncodeError> {
    if s.as_bytes().contains(&0) {
        return Err(EncodeError::NulInString {
            what,
            value: s.to_owned(),
        });
    }
    out.put_slice(s.as_bytes());
    out.put_u8(0);
    Ok(())
}

fn count_i16(what: &'static str, count: usize) -> Result<i16, EncodeError> {
    i16::try_from(count).map_err(|_| EncodeError::TooMany {
        what,
        count,
        max: i16::MAX as usize,
    })
}

fn len_i32(what: &'static str, count: usize) -> Result<i32, EncodeError> {
    i32::try_from(count).map_err(|_| EncodeError::TooMany {
        what,
        count,
        max: i32::MAX as usize,
    })
}
