//! Unit tests: every message kind from hand-built bytes, every truncation, every error kind and
//! never-panic properties (`wire`), and the relation cache's change report (`cache`). This file
//! holds the hand-built samples both use.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::Lsn;

mod cache;
mod wire;

/// Writes pgoutput fields by hand, independently of [`encode_message`].
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn tag(t: u8) -> W {
        W(vec![t])
    }
    fn u8(mut self, v: u8) -> W {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> W {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn cstr(mut self, s: &str) -> W {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    fn raw(mut self, b: &[u8]) -> W {
        self.0.extend_from_slice(b);
        self
    }
    fn text(self, s: &str) -> W {
        self.u8(b't').i32(s.len() as i32).raw(s.as_bytes())
    }
    fn bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}

fn s(v: &str) -> Arc<str> {
    Arc::from(v)
}

fn text(v: &str) -> Datum {
    Datum::Text(Bytes::copy_from_slice(v.as_bytes()))
}

fn col(flags: u8, name: &str, type_oid: Oid, type_modifier: i32) -> Column {
    Column {
        flags,
        name: s(name),
        type_oid,
        type_modifier,
    }
}

/// One hand-built sample of every message kind (and tuple variant), with its expected value.
fn samples() -> Vec<(&'static str, Bytes, Message)> {
    vec![
        (
            "begin",
            W::tag(b'B')
                .u64(0x1_0000_0A00)
                .u64(770_000_000_000_000)
                .u32(745)
                .bytes(),
            Message::Begin(Begin {
                final_lsn: Lsn(0x1_0000_0A00),
                commit_time: PgTimestamp(770_000_000_000_000),
                xid: 745,
            }),
        ),
        (
            "commit",
            W::tag(b'C')
                .u8(0)
                .u64(0x1_0000_0A00)
                .u64(0x1_0000_0A38)
                .u64(770_000_000_000_001)
                .bytes(),
            Message::Commit(Commit {
                flags: 0,
                commit_lsn: Lsn(0x1_0000_0A00),
                end_lsn: Lsn(0x1_0000_0A38),
                commit_time: PgTimestamp(770_000_000_000_001),
            }),
        ),
        (
            "origin",
            W::tag(b'O').u64(0xABCDEF).cstr("upstream").bytes(),
            Message::Origin(Origin {
                commit_lsn: Lsn(0xABCDEF),
                name: s("upstream"),
            }),
        ),
        (
            "relation",
            W::tag(b'R')
                .u32(16_384)
                .cstr("public")
                .cstr("Image")
                .u8(b'd')
                .i16(3)
                .u8(1)
                .cstr("id")
                .u32(20)
                .i32(-1)
                .u8(0)
                .cstr("name")
                .u32(1043)
                .i32(36)
                .u8(0)
                .cstr("")
                .u32(25)
                .i32(-1)
                .bytes(),
            Message::Relation(Relation {
                oid: 16_384,
                namespace: s("public"),
                name: s("Image"),
                replica_identity: ReplicaIdentity::Default,
                columns: vec![
                    col(1, "id", 20, -1),
                    col(0, "name", 1043, 36),
                    col(0, "", 25, -1),
                ],
            }),
        ),
        (
            "relation-no-columns",
            W::tag(b'R')
                .u32(7)
                .cstr("")
                .cstr("bare")
                .u8(b'n')
                .i16(0)
                .bytes(),
            Message::Relation(Relation {
                oid: 7,
                namespace: s(""),
                name: s("bare"),
                replica_identity: ReplicaIdentity::Nothing,
                columns: vec![],
            }),
        ),
        (
            "type",
            W::tag(b'Y').u32(16_390).cstr("public").cstr("mood").bytes(),
            Message::Type(Type {
                oid: 16_390,
                namespace: s("public"),
                name: s("mood"),
            }),
        ),
        (
            "insert",
            W::tag(b'I')
                .u32(16_384)
                .u8(b'N')
                .i16(4)
                .text("42")
                .u8(b'n')
                .u8(b'b')
                .i32(2)
                .raw(&[0, 7])
                .text("")
                .bytes(),
            Message::Insert(Insert {
                relation: 16_384,
                new: TupleData {
                    columns: vec![
                        text("42"),
                        Datum::Null,
                        Datum::Binary(Bytes::from_static(&[0, 7])),
                        text(""),
                    ],
                },
            }),
        ),
        (
            "update-new-only",
            W::tag(b'U')
                .u32(16_384)
                .u8(b'N')
                .i16(2)
                .text("1")
                .u8(b'u')
                .bytes(),
            Message::Update(Update {
                relation: 16_384,
                old: None,
                new: TupleData {
                    columns: vec![text("1"), Datum::Unchanged],
                },
            }),
        ),
        (
            "update-key",
            W::tag(b'U')
                .u32(16_384)
                .u8(b'K')
                .i16(2)
                .text("1")
                .u8(b'n')
                .u8(b'N')
                .i16(2)
                .text("2")
                .text("x")
                .bytes(),
            Message::Update(Update {
                relation: 16_384,
                old: Some(OldTuple::Key(TupleData {
                    columns: vec![text("1"), Datum::Null],
                })),
                new: TupleData {
                    columns: vec![text("2"), text("x")],
                },
            }),
        ),
        (
            "update-full",
            W::tag(b'U')
                .u32(9)
                .u8(b'O')
                .i16(1)
                .text("old")
                .u8(b'N')
                .i16(1)
                .text("new")
                .bytes(),
            Message::Update(Update {
                relation: 9,
                old: Some(OldTuple::Full(TupleData {
                    columns: vec![text("old")],
                })),
                new: TupleData {
                    columns: vec![text("new")],
                },
            }),
        ),
        (
            "delete-key",
            W::tag(b'D')
                .u32(16_384)
                .u8(b'K')
                .i16(2)
                .text("5")
                .u8(b'n')
                .bytes(),
            Message::Delete(Delete {
                relation: 16_384,
                old: OldTuple::Key(TupleData {
                    columns: vec![text("5"), Datum::Null],
                }),
            }),
        ),
        (
            "delete-full",
            W::tag(b'D').u32(9).u8(b'O').i16(0).bytes(),
            Message::Delete(Delete {
                relation: 9,
                old: OldTuple::Full(TupleData { columns: vec![] }),
            }),
        ),
        (
            "truncate",
            W::tag(b'T').i32(2).u8(3).u32(16_384).u32(16_400).bytes(),
            Message::Truncate(Truncate {
                options: 3,
                relations: vec![16_384, 16_400],
            }),
        ),
        (
            "message",
            W::tag(b'M')
                .u8(1)
                .u64(0x2_0000_0010)
                .cstr("pgroar")
                .i32(5)
                .raw(b"hello")
                .bytes(),
            Message::Logical(LogicalMessage {
                flags: 1,
                lsn: Lsn(0x2_0000_0010),
                prefix: s("pgroar"),
                content: Bytes::from_static(b"hello"),
            }),
        ),
        (
            "message-nontransactional-empty",
            W::tag(b'M').u8(0).u64(1).cstr("p").i32(0).bytes(),
            Message::Logical(LogicalMessage {
                flags: 0,
                lsn: Lsn(1),
                prefix: s("p"),
                content: Bytes::new(),
            }),
        ),
    ]
}
