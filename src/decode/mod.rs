//! pgoutput decoding: the bytes of one logical replication message (protocol version 1) into
//! a typed [`Message`], and the [`RelationCache`] that gives row changes their column names.
//!
//! Design note.
//! * Pure and sans-I/O: no sockets, files, clocks or async. The transport hands us one
//!   message's bytes (`XLogData` payload, a `pg_logical_slot_*_binary_changes` row, a fuzz
//!   input) and gets back a value or a [`DecodeError`]. That is what makes it fuzzable.
//! * Guarantees: [`decode_message`] never panics and consumes exactly the whole buffer (left
//!   over bytes are an error). Every error names the field and its byte offset. Names are
//!   validated UTF-8; column values ([`Datum`]) and logical message contents are zero-copy
//!   [`bytes::Bytes`] slices of the input, so decoding a 100 kB value copies nothing.
//! * The hazard avoided: trusting wire counts. A length or count read from the wire is never
//!   used before it is checked: negative values are rejected, byte lengths must fit in the
//!   bytes left, and item counts must fit at the smallest encoding of an item (a tuple column
//!   is at least 1 byte, a Relation column 10, a truncated OID 4), so every `Vec` is sized by
//!   what the input can actually hold, never by a corrupt `i16`/`i32`.
//! * [`encode_message`] is the exact inverse: every message that decodes re-encodes to the
//!   same bytes (the fuzz target checks it), and tests use it to build streams.
//! * State: only [`RelationCache`], an in-memory map rebuilt from the stream (Postgres sends
//!   every relation's description again in each new replication session); nothing to crash.
//! * Scope: protocol version 1 (what `proto_version '1'` sends on PostgreSQL 15). Streamed
//!   and two-phase messages of later versions are unknown tags.

mod encode;
mod error;
mod message;
mod parse;
mod relation;

#[cfg(test)]
#[allow(clippy::too_many_lines, reason = "tables of hand-built cases")]
mod tests;

pub use encode::encode_message;
pub use error::{DecodeError, EncodeError};
pub use message::{
    Begin, Column, Commit, Datum, Delete, Insert, LogicalMessage, Message, Oid, OldTuple, Origin,
    PgTimestamp, Relation, ReplicaIdentity, Truncate, TupleData, Type, Update, Xid,
};
pub use parse::decode_message;
pub use relation::{
    ColumnChange, RelationCache, RelationChange, RelationError, Retyped, TrackedColumnChanged,
};
