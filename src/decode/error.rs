//! Why a pgoutput message could not be decoded, and where.

use std::str::Utf8Error;

/// A malformed pgoutput message. `offset` is the byte position in the message (the tag is
/// byte 0) where the offending field starts; `what` names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer holds no bytes at all.
    #[error("empty pgoutput message")]
    Empty,
    /// The first byte is not the tag of a protocol version 1 message.
    #[error(
        "unknown pgoutput message tag {tag:#04x} ({}) at byte 0; only protocol version 1 is decoded",
        printable(*tag)
    )]
    UnknownTag {
        /// The tag byte.
        tag: u8,
    },
    /// A fixed-size field runs past the end of the message.
    #[error("truncated {what} at byte {offset}: needs {need} bytes, {left} left")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Its size.
        need: usize,
        /// Bytes left from `offset`.
        left: usize,
    },
    /// A length or count field holds a negative number.
    #[error("negative {what} {value} at byte {offset}")]
    Negative {
        /// The field.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// The value read.
        value: i64,
    },
    /// A length field claims more bytes than the message has left.
    #[error("{what} {len} at byte {offset} exceeds the {left} bytes left")]
    LengthTooLarge {
        /// The field.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// The length read.
        len: usize,
        /// Bytes left after the field.
        left: usize,
    },
    /// A count field claims more items than the bytes left could hold even at their smallest.
    #[error(
        "{what} {count} at byte {offset} needs at least {min_bytes} bytes per item, \
         only {left} bytes left"
    )]
    CountTooLarge {
        /// The field.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// The count read.
        count: usize,
        /// The smallest encoding of one item.
        min_bytes: usize,
        /// Bytes left after the field.
        left: usize,
    },
    /// A C string has no terminating NUL before the end of the message.
    #[error("unterminated {what} at byte {offset}: no NUL before the end of the message")]
    UnterminatedString {
        /// The field.
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// A C string is not valid UTF-8.
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        what: &'static str,
        /// Where the string starts.
        offset: usize,
        /// The first invalid sequence, relative to `offset`.
        #[source]
        source: Utf8Error,
    },
    /// A tuple column kind is none of `n`, `u`, `t`, `b`.
    #[error("unknown tuple column kind {kind:#04x} ({}) at byte {offset}", printable(*kind))]
    UnknownDatumKind {
        /// The kind byte.
        kind: u8,
        /// Where it is.
        offset: usize,
    },
    /// A tuple marker is not one the message allows here (`N`, `K`, `O`).
    #[error(
        "{message} message: expected {expected} at byte {offset}, found {found:#04x} ({})",
        printable(*found)
    )]
    UnexpectedTupleMarker {
        /// The message kind.
        message: &'static str,
        /// The markers allowed here.
        expected: &'static str,
        /// The byte found.
        found: u8,
        /// Where it is.
        offset: usize,
    },
    /// The replica identity byte is none of `d`, `n`, `f`, `i`.
    #[error(
        "unknown replica identity setting {found:#04x} ({}) at byte {offset}",
        printable(*found)
    )]
    UnknownReplicaIdentity {
        /// The byte found.
        found: u8,
        /// Where it is.
        offset: usize,
    },
    /// Bytes remain after a complete message.
    #[error("{len} trailing bytes after a complete {message} message, from byte {offset}")]
    TrailingBytes {
        /// The message kind.
        message: &'static str,
        /// Where the garbage starts.
        offset: usize,
        /// How many bytes follow.
        len: usize,
    },
}

impl DecodeError {
    /// The byte offset the error points at (0 for whole-message errors).
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::Empty | DecodeError::UnknownTag { .. } => 0,
            DecodeError::Truncated { offset, .. }
            | DecodeError::Negative { offset, .. }
            | DecodeError::LengthTooLarge { offset, .. }
            | DecodeError::CountTooLarge { offset, .. }
            | DecodeError::UnterminatedString { offset, .. }
            | DecodeError::InvalidUtf8 { offset, .. }
            | DecodeError::UnknownDatumKind { offset, .. }
            | DecodeError::UnexpectedTupleMarker { offset, .. }
            | DecodeError::UnknownReplicaIdentity { offset, .. }
            | DecodeError::TrailingBytes { offset, .. } => *offset,
        }
    }
}

/// A byte as `'c'` when it is printable ASCII, else `?`.
fn printable(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        "?".to_owned()
    }
}

/// Why a message could not be encoded: a value does not fit its wire field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// More items than the count field can hold.
    #[error("{what} {count} does not fit its {max}-item wire field")]
    TooMany {
        /// The field.
        what: &'static str,
        /// The number of items.
        count: usize,
        /// The largest count the field holds.
        max: usize,
    },
    /// A string that must become a C string contains a NUL byte.
    #[error("{what} {value:?} contains a NUL byte")]
    NulInString {
        /// The field.
        what: &'static str,
        /// The string.
        value: String,
    },
}
