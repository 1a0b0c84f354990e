//! Decoding and encoding: exact values, truncations, errors, never-panic properties.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

#[test]
fn every_message_kind_decodes_to_the_expected_value() {
    let samples = samples();
    let mut kinds: Vec<&str> = samples.iter().map(|(_, _, m)| m.kind()).collect();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "Begin", "Commit", "Origin", "Relation", "Type", "Insert", "Update", "Delete",
            "Truncate", "Message"
        ]
    );
    for (name, bytes, expected) in samples {
        let got = decode_message(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn encoding_reproduces_the_hand_built_bytes() {
    for (name, bytes, msg) in samples() {
        let mut out = BytesMut::new();
        encode_message(&msg, &mut out).unwrap();
        assert_eq!(out.freeze(), bytes, "{name}");
    }
}

#[test]
fn accessors_report_the_flags() {
    let by_name = |n: &str| samples().into_iter().find(|s| s.0 == n).unwrap().2;
    let Message::Truncate(t) = by_name("truncate") else {
        unreachable!()
    };
    assert!(t.cascade() && t.restart_identity());
    let t = Truncate {
        options: 2,
        relations: vec![],
    };
    assert!(!t.cascade() && t.restart_identity());
    let Message::Logical(m) = by_name("message") else {
        unreachable!()
    };
    assert!(m.transactional());
    let Message::Logical(m) = by_name("message-nontransactional-empty") else {
        unreachable!()
    };
    assert!(!m.transactional());
    let Message::Relation(r) = by_name("relation") else {
        unreachable!()
    };
    assert_eq!(
        r.columns.iter().map(Column::is_key).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert_eq!(r.qualified_name(), "public.Image");
    assert_eq!(r.column_index("name"), Some(1));
    assert_eq!(by_name("insert").change_relation(), Some(16_384));
    assert_eq!(by_name("begin").change_relation(), None);
    assert_eq!(PgTimestamp(0).unix_micros(), Some(946_684_800_000_000));
    assert_eq!(PgTimestamp(i64::MAX).unix_micros(), None);
    for b in *b"dnfi" {
        assert_eq!(ReplicaIdentity::from_byte(b).unwrap().as_byte(), b);
    }
    assert_eq!(ReplicaIdentity::from_byte(b'x'), None);
}

#[test]
fn column_values_are_slices_of_the_input() {
    let bytes = samples().into_iter().find(|s| s.0 == "insert").unwrap().1;
    let Message::Insert(ins) = decode_message(&bytes).unwrap() else {
        unreachable!()
    };
    let range = bytes.as_ptr_range();
    for d in &ins.new.columns {
        if let Datum::Text(b) | Datum::Binary(b) = d
            && !b.is_empty()
        {
            assert!(range.contains(&b.as_ptr()), "{d:?} was copied");
        }
    }
}

#[test]
fn every_truncation_of_every_sample_is_an_error() {
    for (name, bytes, _) in samples() {
        for len in 0..bytes.len() {
            let cut = bytes.slice(..len);
            assert!(
                decode_message(&cut).is_err(),
                "{name} cut to {len} of {} bytes decoded",
                bytes.len()
            );
        }
    }
}

#[test]
fn trailing_bytes_after_every_sample_are_an_error() {
    for (name, bytes, msg) in samples() {
        let mut long = bytes.to_vec();
        long.push(0);
        let err = decode_message(&Bytes::from(long)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TrailingBytes {
                message: msg.kind(),
                offset: bytes.len(),
                len: 1
            },
            "{name}"
        );
    }
}

#[test]
fn errors_name_the_field_and_its_offset() {
    let cases: Vec<(&str, Bytes, DecodeError)> = vec![
        ("empty", Bytes::new(), DecodeError::Empty),
        (
            "unknown tag",
            W::tag(b'S').u32(1).bytes(),
            DecodeError::UnknownTag { tag: b'S' },
        ),
        (
            "short begin",
            W::tag(b'B').u64(1).u32(0).bytes(),
            DecodeError::Truncated {
                what: "commit timestamp",
                offset: 9,
                need: 8,
                left: 4,
            },
        ),
        (
            "negative text length",
            W::tag(b'I').u32(1).u8(b'N').i16(1).u8(b't').i32(-1).bytes(),
            DecodeError::Negative {
                what: "text value length",
                offset: 9,
                value: -1,
            },
        ),
        (
            "oversized binary length",
            W::tag(b'I')
                .u32(1)
                .u8(b'N')
                .i16(1)
                .u8(b'b')
                .i32(4)
                .raw(b"abc")
                .bytes(),
            DecodeError::LengthTooLarge {
                what: "binary value length",
                offset: 9,
                len: 4,
                left: 3,
            },
        ),
        (
            "huge text length",
            W::tag(b'I')
                .u32(1)
                .u8(b'N')
                .i16(1)
                .u8(b't')
                .i32(i32::MAX)
                .bytes(),
            DecodeError::LengthTooLarge {
                what: "text value length",
                offset: 9,
                len: i32::MAX as usize,
                left: 0,
            },
        ),
        (
            "negative column count",
            W::tag(b'I').u32(1).u8(b'N').i16(-2).bytes(),
            DecodeError::Negative {
                what: "tuple column count",
                offset: 6,
                value: -2,
            },
        ),
        (
            "column count beyond the bytes left",
            W::tag(b'I').u32(1).u8(b'N').i16(i16::MAX).u8(b'n').bytes(),
            DecodeError::CountTooLarge {
                what: "tuple column count",
                offset: 6,
                count: i16::MAX as usize,
                min_bytes: 1,
                left: 1,
            },
        ),
        (
            "relation column count beyond the bytes left",
            W::tag(b'R')
                .u32(1)
                .cstr("")
                .cstr("t")
                .u8(b'f')
                .i16(2)
                .u8(0)
                .cstr("a")
                .u32(23)
                .i32(-1)
                .bytes(),
            DecodeError::CountTooLarge {
                what: "column count",
                offset: 9,
                count: 2,
                min_bytes: 10,
                left: 11,
            },
        ),
        (
            "negative truncate count",
            W::tag(b'T').i32(-1).u8(0).bytes(),
            DecodeError::Negative {
                what: "relation count",
                offset: 1,
                value: -1,
            },
        ),
        (
            "truncate count beyond the bytes left",
            W::tag(b'T').i32(i32::MAX).u8(0).u32(1).bytes(),
            DecodeError::CountTooLarge {
                what: "relation count",
                offset: 1,
                count: i32::MAX as usize,
                min_bytes: 4,
                left: 5,
            },
        ),
        (
            "unterminated name",
            W::tag(b'Y').u32(1).cstr("public").raw(b"mood").bytes(),
            DecodeError::UnterminatedString {
                what: "type name",
                offset: 12,
            },
        ),
        (
            "unknown datum kind",
            W::tag(b'I')
                .u32(1)
                .u8(b'N')
                .i16(2)
                .u8(b'n')
                .u8(b'x')
                .bytes(),
            DecodeError::UnknownDatumKind {
                kind: b'x',
                offset: 9,
            },
        ),
        (
            "insert without N",
            W::tag(b'I').u32(1).u8(b'K').i16(0).bytes(),
            DecodeError::UnexpectedTupleMarker {
                message: "Insert",
                expected: "'N'",
                found: b'K',
                offset: 5,
            },
        ),
        (
            "update old tuple then no N",
            W::tag(b'U').u32(1).u8(b'O').i16(0).u8(b'O').i16(0).bytes(),
            DecodeError::UnexpectedTupleMarker {
                message: "Update",
                expected: "'N'",
                found: b'O',
                offset: 8,
            },
        ),
        (
            "delete with N",
            W::tag(b'D').u32(1).u8(b'N').i16(0).bytes(),
            DecodeError::UnexpectedTupleMarker {
                message: "Delete",
                expected: "'K' or 'O'",
                found: b'N',
                offset: 5,
            },
        ),
        (
            "unknown replica identity",
            W::tag(b'R')
                .u32(1)
                .cstr("")
                .cstr("t")
                .u8(b'x')
                .i16(0)
                .bytes(),
            DecodeError::UnknownReplicaIdentity {
                found: b'x',
                offset: 8,
            },
        ),
    ];
    for (name, bytes, expected) in cases {
        let err = decode_message(&bytes).unwrap_err();
        assert_eq!(err, expected, "{name}");
        assert_eq!(err.offset(), expected.offset(), "{name}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn invalid_utf8_names_are_an_error_with_the_offset() {
    let bytes = W::tag(b'O').u64(1).raw(&[b'a', 0xC3, 0x28, 0]).bytes();
    match decode_message(&bytes).unwrap_err() {
        DecodeError::InvalidUtf8 {
            what,
            offset,
            source,
        } => {
            assert_eq!((what, offset), ("origin name", 9));
            assert_eq!(source.valid_up_to(), 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_tag_message_shows_the_character() {
    let err = decode_message(&Bytes::from_static(b"S")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown pgoutput message tag 0x53 ('S') at byte 0; only protocol version 1 is decoded"
    );
}

#[test]
fn encoding_rejects_what_the_wire_cannot_hold() {
    let mut out = BytesMut::from(&b"keep"[..]);
    let bad = Message::Origin(Origin {
        commit_lsn: Lsn(1),
        name: s("a\0b"),
    });
    assert!(matches!(
        encode_message(&bad, &mut out),
        Err(EncodeError::NulInString {
            what: "origin name",
            ..
        })
    ));
    let wide = Message::Insert(Insert {
        relation: 1,
        new: TupleData {
            columns: vec![Datum::Null; 40_000],
        },
    });
    assert!(matches!(
        encode_message(&wide, &mut out),
        Err(EncodeError::TooMany { count: 40_000, .. })
    ));
    assert_eq!(
        &out[..],
        b"keep",
        "a failed encode leaves the buffer as it was"
    );
}

// ---- never panic ----

fn check_no_panic_and_canonical(bytes: &[u8]) {
    let buf = Bytes::copy_from_slice(bytes);
    if let Ok(msg) = decode_message(&buf) {
        let mut out = BytesMut::new();
        encode_message(&msg, &mut out).expect("a decoded message re-encodes");
        assert_eq!(&out[..], bytes, "decoding is lossless");
        if let Message::Relation(r) = msg {
            let mut cache = RelationCache::new();
            assert!(cache.insert(r.clone()).is_new());
            assert!(cache.insert(r).is_unchanged());
        }
    } else {
        let err = decode_message(&buf).unwrap_err();
        assert!(err.offset() <= bytes.len());
    }
}

/// A sample message with one of a few mutations applied.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let n = samples().len();
    (
        0..n,
        any::<prop::sample::Index>(),
        any::<u8>(),
        0..4u8,
        any::<i32>(),
    )
        .prop_map(|(which, at, byte, how, word)| {
            let mut b = samples()[which].1.to_vec();
            let i = at.index(b.len());
            match how {
                0 => b[i] = byte,
                1 => b.truncate(i),
                2 => b.insert(i, byte),
                _ => {
                    let end = (i + 4).min(b.len());
                    let word = word.to_be_bytes();
                    b[i..end].copy_from_slice(&word[..end - i]);
                }
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        check_no_panic_and_canonical(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_tag_never_panic(
        tag in prop::sample::select(b"BCORYIUDTM".to_vec()),
        rest in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![tag];
        bytes.extend(rest);
        check_no_panic_and_canonical(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(bytes in mutated()) {
        check_no_panic_and_canonical(&bytes);
    }
}
