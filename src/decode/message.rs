//! The decoded pgoutput messages (protocol version 1). Names and strings are validated UTF-8;
//! column values and logical message contents are zero-copy slices of the input buffer.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::Lsn;

/// A Postgres object identifier (relation or type OID).
pub type Oid = u32;

/// A Postgres transaction id.
pub type Xid = u32;

/// Microseconds since the Postgres epoch, 2000-01-01 00:00:00 UTC (`TimestampTz` on the wire).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// Microseconds between the Unix epoch and the Postgres epoch.
    pub const UNIX_OFFSET_MICROS: i64 = 946_684_800_000_000;

    /// The same instant as microseconds since the Unix epoch; `None` on overflow.
    pub fn unix_micros(self) -> Option<i64> {
        self.0.checked_add(Self::UNIX_OFFSET_MICROS)
    }
}

/// One pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `B`: a transaction starts.
    Begin(Begin),
    /// `C`: the transaction ends.
    Commit(Commit),
    /// `O`: the transaction was replayed from another node.
    Origin(Origin),
    /// `R`: describes a relation before its first change (and again after it changes).
    Relation(Relation),
    /// `Y`: describes a non-built-in type a relation's column uses.
    Type(Type),
    /// `I`: a row was inserted.
    Insert(Insert),
    /// `U`: a row was updated.
    Update(Update),
    /// `D`: a row was deleted.
    Delete(Delete),
    /// `T`: one or more relations were truncated.
    Truncate(Truncate),
    /// `M`: a logical decoding message (`pg_logical_emit_message`).
    Logical(LogicalMessage),
}

impl Message {
    /// The message's kind, for logs and errors (`"Insert"`, `"Relation"`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Begin(_) => "Begin",
            Message::Commit(_) => "Commit",
            Message::Origin(_) => "Origin",
            Message::Relation(_) => "Relation",
            Message::Type(_) => "Type",
            Message::Insert(_) => "Insert",
            Message::Update(_) => "Update",
            Message::Delete(_) => "Delete",
            Message::Truncate(_) => "Truncate",
            Message::Logical(_) => "Message",
        }
    }

    /// The relation a row change (Insert, Update, Delete) applies to.
    pub fn change_relation(&self) -> Option<Oid> {
        match self {
            Message::Insert(m) => Some(m.relation),
            Message::Update(m) => Some(m.relation),
            Message::Delete(m) => Some(m.relation),
            _ => None,
        }
    }
}

/// `B`: the start of a transaction; every change up to the next Commit belongs to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: PgTimestamp,
    /// The transaction id.
    pub xid: Xid,
}

/// `C`: the end of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// Flags; unused by Postgres so far (0).
    pub flags: u8,
    /// The LSN of the commit record (equal to [`Begin::final_lsn`]).
    pub commit_lsn: Lsn,
    /// The LSN just past the commit record: where streaming resumes after this transaction.
    pub end_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: PgTimestamp,
}

/// `O`: the transaction originated on another node (sent after Begin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN on the origin node.
    pub commit_lsn: Lsn,
    /// The replication origin's name.
    pub name: Arc<str>,
}

/// `relreplident`: what an UPDATE or DELETE carries of the old row.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key's columns.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: every column.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// The byte Postgres sends (`relreplident`).
    pub fn as_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }

    /// The setting for a `relreplident` byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }
}

impl fmt::Display for ReplicaIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicaIdentity::Default => "DEFAULT",
            ReplicaIdentity::Nothing => "NOTHING",
            ReplicaIdentity::Full => "FULL",
            ReplicaIdentity::Index => "USING INDEX",
        })
    }
}

/// `R`: a relation's published shape. Sent before the first change of a relation in a session
/// and again whenever Postgres invalidated it (DDL, TRUNCATE, cache flushes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    /// The relation's OID; changes refer to it.
    pub oid: Oid,
    /// The schema (empty for `pg_catalog`).
    pub namespace: Arc<str>,
    /// The table's name.
    pub name: Arc<str>,
    /// What old-row data UPDATE and DELETE carry.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in the order tuples list their values.
    pub columns: Vec<Column>,
}

impl Relation {
    /// `namespace.name` (just `name` when the namespace is empty), for messages.
    pub fn qualified_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.to_string()
        } else {
            format!("{}.{}", self.namespace, self.name)
        }
    }

    /// The position of the column called `name` (tuples list values in this order).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| &*c.name == name)
    }
}

/// One column of a [`Relation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Flags; bit 0 ([`Column::KEY_FLAG`]) marks a replica identity (key) column.
    pub flags: u8,
    /// The column's name.
    pub name: Arc<str>,
    /// The OID of the column's type.
    pub type_oid: Oid,
    /// The type modifier (`atttypmod`; -1 when none).
    pub type_modifier: i32,
}

impl Column {
    /// The flag bit marking a column that is part of the replica identity key.
    pub const KEY_FLAG: u8 = 1;

    /// Whether the column is part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & Self::KEY_FLAG != 0
    }
}

/// `Y`: a type (sent before a Relation that uses a non-built-in type, e.g. an enum).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    /// The type's OID.
    pub oid: Oid,
    /// The type's schema (empty for `pg_catalog`).
    pub namespace: Arc<str>,
    /// The type's name.
    pub name: Arc<str>,
}

/// One column value of a tuple.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Datum {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value that was not sent; the column did not change.
    Unchanged,
    /// `t`: the value in Postgres's text output form.
    Text(Bytes),
    /// `b`: the value in Postgres's binary send form (only with the `binary` option).
    Binary(Bytes),
}

impl Datum {
    /// The bytes of a text value.
    pub fn text(&self) -> Option<&Bytes> {
        match self {
            Datum::Text(b) => Some(b),
            _ => None,
        }
    }

    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }
}

/// The column values of one row, in the order of its [`Relation`]'s columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TupleData {
    /// One value per column.
    pub columns: Vec<Datum>,
}

/// The old row of an UPDATE or DELETE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity key's columns are set; the others are NULL.
    Key(TupleData),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData),
}

impl OldTuple {
    /// The tuple, whichever kind it is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// `I`: a new row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insert {
    /// The relation's OID.
    pub relation: Oid,
    /// The new row.
    pub new: TupleData,
}

/// `U`: a changed row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The relation's OID.
    pub relation: Oid,
    /// The old row: the key when it changed (`K`), the whole row under `REPLICA IDENTITY FULL`
    /// (`O`), otherwise absent.
    pub old: Option<OldTuple>,
    /// The new row; unchanged TOASTed columns are [`Datum::Unchanged`].
    pub new: TupleData,
}

/// `D`: a removed row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    /// The relation's OID.
    pub relation: Oid,
    /// The removed row's key (`K`) or, under `REPLICA IDENTITY FULL`, whole row (`O`).
    pub old: OldTuple,
}

/// `T`: relations emptied by one TRUNCATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncate {
    /// Option bits: [`Truncate::CASCADE`], [`Truncate::RESTART_IDENTITY`].
    pub options: u8,
    /// The truncated relations' OIDs.
    pub relations: Vec<Oid>,
}

impl Truncate {
    /// Option bit: `TRUNCATE … CASCADE`.
    pub const CASCADE: u8 = 1;
    /// Option bit: `TRUNCATE … RESTART IDENTITY`.
    pub const RESTART_IDENTITY: u8 = 2;

    /// Whether the TRUNCATE said `CASCADE`.
    pub fn cascade(&self) -> bool {
        self.options & Self::CASCADE != 0
    }

    /// Whether the TRUNCATE said `RESTART IDENTITY`.
    pub fn restart_identity(&self) -> bool {
        self.options & Self::RESTART_IDENTITY != 0
    }
}

/// `M`: a message written with `pg_logical_emit_message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Flags; bit 0 ([`LogicalMessage::TRANSACTIONAL`]) marks a transactional message.
    pub flags: u8,
    /// The LSN of the message.
    pub lsn: Lsn,
    /// The prefix it was emitted with.
    pub prefix: Arc<str>,
    /// The content, as sent.
    pub content: Bytes,
}

impl LogicalMessage {
    /// The flag bit of a transactional message (sent between Begin and Commit).
    pub const TRANSACTIONAL: u8 = 1;

    /// Whether the message belongs to a transaction (sent between its Begin and Commit).
    pub fn transactional(&self) -> bool {
        self.flags & Self::TRANSACTIONAL != 0
    }
}
