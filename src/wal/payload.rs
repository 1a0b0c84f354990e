//! The binary encoding of one [`EntityOps`], the payload of an Ops record. No I/O; fuzzable.
//!
//! Layout (format version 2, little-endian; tag 6 is new in version 2):
//!
//! | item        | encoding                                                                    |
//! |-------------|-----------------------------------------------------------------------------|
//! | EntityOps   | `i64 entity_id`, `u8 flags` (bit 0 = creates_slot, others 0), `u32 count`, `count × op` |
//! | op          | `u8 tag`, then by tag:                                                       |
//! | 1 set       | `str field`, `value`                                                         |
//! | 2 remove    | `str field`, `value`                                                         |
//! | 3 add       | `str field`, `value`                                                         |
//! | 4 delete    | nothing                                                                      |
//! | 5 queryOpSet| `u8 has_query` (0 or 1), `str query` if 1, `u32 count`, `count × op` (one level deeper) |
//! | 6 truncate  | `u8 has_field` (0 or 1), `str field` if 1                                    |
//! | value       | `u8 tag`: 0 null, 1 false, 2 true, 3 int (`i64`), 4 float (`u64` IEEE-754 bits), 5 string (`str`) |
//! | str         | `u32 byte length`, UTF-8 bytes                                               |
//!
//! `queryOpSet` may nest at most [`MAX_OP_DEPTH`] levels. The encoding is canonical: every
//! `EntityOps` has exactly one encoding and the decoder accepts nothing else (unknown tags or
//! flag bits, trailing bytes and invalid UTF-8 are errors), so `encode(decode(b)) == b`.

use std::sync::Arc;

use super::format::{DecodeError, EncodeError, le_u32, le_u64};
use crate::ops::{EntityOps, Op, OpQuery, Value};
use crate::schema::{Field, FieldIds};

/// How deeply `queryOpSet` may nest (a top-level `queryOpSet` is depth 1).
pub const MAX_OP_DEPTH: usize = 8;

const OP_SET: u8 = 1;
const OP_REMOVE: u8 = 2;
const OP_ADD: u8 = 3;
const OP_DELETE: u8 = 4;
const OP_QUERY_OP_SET: u8 = 5;
const OP_TRUNCATE: u8 = 6;

const VAL_NULL: u8 = 0;
const VAL_FALSE: u8 = 1;
const VAL_TRUE: u8 = 2;
const VAL_INT: u8 = 3;
const VAL_FLOAT: u8 = 4;
const VAL_STR: u8 = 5;

const FLAG_CREATES_SLOT: u8 = 1;

/// Appends the encoding of `ops` to `out`. Fails (leaving `out` partly written; callers going
/// through [`super::format::encode_record`] get it rolled back) if `queryOpSet` nests deeper than
/// [`MAX_OP_DEPTH`] or a length does not fit a `u32`.
pub fn encode_entity_ops(ops: &EntityOps, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(&ops.entity_id.to_le_bytes());
    out.push(if ops.creates_slot {
        FLAG_CREATES_SLOT
    } else {
        0
    });
    encode_ops(&ops.ops, 0, out)
}

fn encode_ops(ops: &[Op], depth: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    put_len(out, ops.len(), "op list")?;
    for op in ops {
        match op {
            Op::Set { field, value } => encode_field_op(OP_SET, field, value, out)?,
            Op::Remove { field, value } => encode_field_op(OP_REMOVE, field, value, out)?,
            Op::Add { field, value } => encode_field_op(OP_ADD, field, value, out)?,
            Op::Delete => out.push(OP_DELETE),
            Op::QueryOpSet { query, ops } => {
                if depth + 1 > MAX_OP_DEPTH {
                    return Err(EncodeError::TooDeep { max: MAX_OP_DEPTH });
                }
                out.push(OP_QUERY_OP_SET);
                match query {
                    None => out.push(0),
                    Some(q) => {
                        out.push(1);
                        put_str(out, q.text(), "query")?;
                    }
                }
                encode_ops(ops, depth + 1, out)?;
            }
            Op::Truncate { field } => {
                out.push(OP_TRUNCATE);
                match field {
                    None => out.push(0),
                    Some(f) => {
                        out.push(1);
                        put_str(out, f, "field name")?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn encode_field_op(
    tag: u8,
    field: &str,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.push(tag);
    put_str(out, field, "field name")?;
    match value {
        Value::Null => out.push(VAL_NULL),
        Value::Bool(false) => out.push(VAL_FALSE),
        Value::Bool(true) => out.push(VAL_TRUE),
        Value::Int(i) => {
            out.push(VAL_INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(x) => {
            out.push(VAL_FLOAT);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        Value::Str(s) => {
            out.push(VAL_STR);
            put_str(out, s, "string value")?;
        }
    }
    Ok(())
}

fn put_len(out: &mut Vec<u8>, len: usize, what: &'static str) -> Result<(), EncodeError> {
    let n = u32::try_from(len).map_err(|_| EncodeError::TooLong { what, len })?;
    out.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), EncodeError> {
    put_len(out, s.len(), what)?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Decodes a whole payload into an [`EntityOps`]. Every count and length is checked against the
/// bytes left before anything is allocated; nothing may follow the last op.
pub fn decode_entity_ops(buf: &[u8]) -> Result<EntityOps, DecodeError> {
    decode_entity_ops_with(buf, &FieldIds::default())
}

/// [`decode_entity_ops`], resolving field names (of set/remove/add/truncate ops, nested ones
/// included) against `ids`: a schema's field comes out as its shared, id-carrying [`Field`]
/// (no allocation), any other name as an unresolved one.
pub fn decode_entity_ops_with(buf: &[u8], ids: &FieldIds) -> Result<EntityOps, DecodeError> {
    let mut r = Reader { buf, ids };
    let entity_id = r.u64("entity id")? as i64;
    let flags = r.u8("flags")?;
    if flags & !FLAG_CREATES_SLOT != 0 {
        return Err(DecodeError::BadTag {
            what: "flags",
            tag: flags,
        });
    }
    let ops = r.ops(0)?;
    if !r.buf.is_empty() {
        return Err(DecodeError::TrailingBytes(r.buf.len()));
    }
    Ok(EntityOps {
        entity_id,
        ops,
        creates_slot: flags & FLAG_CREATES_SLOT != 0,
    })
}

/// A cursor over the bytes left.
struct Reader<'a, 'n> {
    buf: &'a [u8],
    ids: &'n FieldIds,
}

impl<'a> Reader<'a, '_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(le_u32(self.take(4, what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(le_u64(self.take(8, what)?))
    }

    fn text(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.u32(what)? as usize;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|source| DecodeError::InvalidUtf8 { what, source })
    }

    fn str(&mut self, what: &'static str) -> Result<Arc<str>, DecodeError> {
        Ok(Arc::from(self.text(what)?))
    }

    fn field(&mut self) -> Result<Field, DecodeError> {
        let name = self.text("field name")?;
        Ok(self.ids.resolve(name))
    }

    fn ops(&mut self, depth: usize) -> Result<Vec<Op>, DecodeError> {
        let count = self.u32("op count")? as usize;
        // Each op takes at least one byte, so a count beyond the bytes left is corrupt.
        if count > self.buf.len() {
            return Err(DecodeError::Truncated("ops"));
        }
        let mut ops = Vec::with_capacity(count);
        for _ in 0..count {
            ops.push(self.op(depth)?);
        }
        Ok(ops)
    }

    fn op(&mut self, depth: usize) -> Result<Op, DecodeError> {
        let tag = self.u8("op tag")?;
        Ok(match tag {
            OP_SET => Op::Set {
                field: self.field()?,
                value: self.value()?,
            },
            OP_REMOVE => Op::Remove {
                field: self.field()?,
                value: self.value()?,
            },
            OP_ADD => Op::Add {
                field: self.field()?,
                value: self.value()?,
            },
            OP_DELETE => Op::Delete,
            OP_QUERY_OP_SET => {
                if depth + 1 > MAX_OP_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                let query = match self.u8("query presence")? {
                    0 => None,
                    // Parsed here, once: dedup and the index share the filter.
                    1 => Some(OpQuery::parse(self.str("query")?)),
                    tag => {
                        return Err(DecodeError::BadTag {
                            what: "query presence",
                            tag,
                        });
                    }
                };
                Op::QueryOpSet {
                    query,
                    ops: self.ops(depth + 1)?,
                }
            }
            OP_TRUNCATE => Op::Truncate {
                field: match self.u8("field presence")? {
                    0 => None,
                    1 => Some(self.field()?),
                    tag => {
                        return Err(DecodeError::BadTag {
                            what: "field presence",
                            tag,
                        });
                    }
                },
            },
            tag => return Err(DecodeError::BadTag { what: "op", tag }),
        })
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        Ok(match self.u8("value tag")? {
            VAL_NULL => Value::Null,
            VAL_FALSE => Value::Bool(false),
            VAL_TRUE => Value::Bool(true),
            VAL_INT => Value::Int(self.u64("int value")? as i64),
            VAL_FLOAT => Value::Float(f64::from_bits(self.u64("float value")?)),
            VAL_STR => Value::Str(self.str("string value")?),
            tag => return Err(DecodeError::BadTag { what: "value", tag }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(e: &EntityOps) -> Vec<u8> {
        let mut v = Vec::new();
        encode_entity_ops(e, &mut v).unwrap();
        v
    }

    /// One EntityOps using every op kind and every value kind.
    fn every_kind() -> EntityOps {
        EntityOps::alive(
            -42,
            vec![
                Op::set("nsfwLevel", 16),
                Op::set("publishedAt", Value::Null),
                Op::remove("hasMeta", false),
                Op::set("hasMeta", true),
                Op::add("tagIds", i64::MIN),
                Op::set("score", Value::Float(-0.5)),
                Op::set("nan", Value::Float(f64::NAN)),
                Op::remove("type", "image"),
                Op::set("emoji", "ünïcødé ✓"),
                Op::set("", ""),
                Op::Delete,
                Op::truncate(Some("tagIds")),
                Op::truncate(None),
                Op::QueryOpSet {
                    query: Some("postId eq 7".into()),
                    ops: vec![
                        Op::remove("baseModel", "SD 1.5"),
                        Op::set("baseModel", "SDXL"),
                        Op::QueryOpSet {
                            query: None,
                            ops: vec![],
                        },
                    ],
                },
            ],
        )
    }

    #[test]
    fn every_op_and_value_kind_round_trips() {
        let e = every_kind();
        let b = encode(&e);
        assert_eq!(decode_entity_ops(&b).unwrap(), e);
        let plain = EntityOps::new(i64::MAX, vec![]);
        assert_eq!(decode_entity_ops(&encode(&plain)).unwrap(), plain);
    }

    #[test]
    fn decoded_fields_come_out_resolved_against_the_schema() {
        let e = every_kind();
        let b = encode(&e);
        let schema = crate::schema::Schema::from_pairs(
            &[("tagIds", crate::schema::FilterKind::Multi)],
            &[("baseModel", 8)],
        )
        .unwrap();
        let ids = schema.field_ids();
        let d = decode_entity_ops_with(&b, &ids).unwrap();
        assert_eq!(d, e);
        let id = |op: &Op| op.field().and_then(Field::id);
        let (tags, base) = (ids.lookup("tagIds"), ids.lookup("baseModel"));
        assert!(tags.is_some() && base.is_some());
        // A schema name, top level (add, truncate) and nested in a queryOpSet.
        assert_eq!(id(&d.ops[4]), tags);
        let Op::Truncate { field: Some(t) } = &d.ops[11] else {
            panic!("{:?}", d.ops[11]);
        };
        assert_eq!(t.id(), tags);
        let Op::QueryOpSet { ops, .. } = &d.ops[13] else {
            panic!("{:?}", d.ops[13]);
        };
        assert_eq!((id(&ops[0]), id(&ops[1])), (base, base));
        // A name the schema does not have comes out unresolved, and unresolved without a schema.
        assert_eq!(&**d.ops[2].field().unwrap(), "hasMeta");
        assert_eq!(id(&d.ops[2]), None);
        assert_eq!(id(&decode_entity_ops(&b).unwrap().ops[4]), None);
    }

    #[test]
    fn layout_of_a_small_entity_is_as_documented() {
        let b = encode(&EntityOps::alive(5, vec![Op::set("f", 1), Op::Delete]));
        let mut want = Vec::new();
        want.extend_from_slice(&5i64.to_le_bytes());
        want.push(1);
        want.extend_from_slice(&2u32.to_le_bytes());
        want.push(1);
        want.extend_from_slice(&1u32.to_le_bytes());
        want.push(b'f');
        want.push(3);
        want.extend_from_slice(&1i64.to_le_bytes());
        want.push(4);
        assert_eq!(b, want);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = encode(&every_kind());
        for cut in 0..b.len() {
            assert!(decode_entity_ops(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn trailing_bytes_unknown_tags_and_bad_utf8_are_errors() {
        let mut b = encode(&EntityOps::new(1, vec![Op::set("f", "x")]));
        b.push(0);
        assert_eq!(decode_entity_ops(&b), Err(DecodeError::TrailingBytes(1)));
        b.pop();

        let mut flags = b.clone();
        flags[8] = 2;
        assert!(matches!(
            decode_entity_ops(&flags),
            Err(DecodeError::BadTag {
                what: "flags",
                tag: 2
            })
        ));

        let mut op = b.clone();
        op[13] = 9;
        assert!(matches!(
            decode_entity_ops(&op),
            Err(DecodeError::BadTag { what: "op", tag: 9 })
        ));

        let mut utf8 = b.clone();
        let last = utf8.len() - 1; // the string value's single byte
        utf8[last] = 0xFF;
        assert!(matches!(
            decode_entity_ops(&utf8),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn huge_counts_are_errors_not_allocations() {
        let mut b = Vec::new();
        b.extend_from_slice(&1i64.to_le_bytes());
        b.push(0);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_entity_ops(&b), Err(DecodeError::Truncated("ops")));
        // A string length beyond the bytes left.
        let mut s = Vec::new();
        s.extend_from_slice(&1i64.to_le_bytes());
        s.push(0);
        s.extend_from_slice(&1u32.to_le_bytes());
        s.push(OP_SET);
        s.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_entity_ops(&s),
            Err(DecodeError::Truncated("field name"))
        );
    }

    #[test]
    fn truncate_layout_is_as_documented() {
        let b = encode(&EntityOps::new(
            0,
            vec![Op::truncate(Some("m")), Op::truncate(None)],
        ));
        let mut want = Vec::new();
        want.extend_from_slice(&0i64.to_le_bytes());
        want.push(0);
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(&[OP_TRUNCATE, 1]);
        want.extend_from_slice(&1u32.to_le_bytes());
        want.push(b'm');
        want.extend_from_slice(&[OP_TRUNCATE, 0]);
        assert_eq!(b, want);
        // A presence byte other than 0 or 1 is refused (canonical encoding).
        let mut bad = want.clone();
        bad[14] = 2;
        assert_eq!(
            decode_entity_ops(&bad),
            Err(DecodeError::BadTag {
                what: "field presence",
                tag: 2
            })
        );
        // Every byte flipped: an error or a canonical re-encoding, never a panic.
        for i in 0..want.len() {
            for bit in 0..8 {
                let mut flipped = want.clone();
                flipped[i] ^= 1 << bit;
                if let Ok(e) = decode_entity_ops(&flipped) {
                    assert_eq!(encode(&e), flipped, "byte {i} bit {bit}");
                }
            }
        }
    }

    fn nested(depth: usize) -> Op {
        let mut op = Op::Delete;
        for _ in 0..depth {
            op = Op::QueryOpSet {
                query: None,
                ops: vec![op],
            };
        }
        op
    }

    #[test]
    fn nesting_is_bounded_both_ways() {
        let ok = EntityOps::new(1, vec![nested(MAX_OP_DEPTH)]);
        assert_eq!(decode_entity_ops(&encode(&ok)).unwrap(), ok);
        let mut out = Vec::new();
        let deep = EntityOps::new(1, vec![nested(MAX_OP_DEPTH + 1)]);
        assert_eq!(
            encode_entity_ops(&deep, &mut out),
            Err(EncodeError::TooDeep { max: MAX_OP_DEPTH })
        );
        // Hand-made bytes nested one level too deep are refused by the decoder.
        let mut b = Vec::new();
        b.extend_from_slice(&1i64.to_le_bytes());
        b.push(0);
        for _ in 0..=MAX_OP_DEPTH {
            b.extend_from_slice(&1u32.to_le_bytes());
            b.push(OP_QUERY_OP_SET);
            b.push(0);
        }
        b.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode_entity_ops(&b), Err(DecodeError::TooDeep));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(|b| Value::Float(f64::from_bits(b))),
            ".{0,6}".prop_map(|s| Value::str(&s)),
        ]
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let leaf = prop_oneof![
            ("[a-z]{0,4}", arb_value()).prop_map(|(f, v)| Op::Set {
                field: Field::new(&f),
                value: v
            }),
            ("[a-z]{0,4}", arb_value()).prop_map(|(f, v)| Op::Remove {
                field: Field::new(&f),
                value: v
            }),
            ("[a-z]{0,4}", arb_value()).prop_map(|(f, v)| Op::Add {
                field: Field::new(&f),
                value: v
            }),
            Just(Op::Delete),
            proptest::option::of("[a-z]{0,4}").prop_map(|f| Op::truncate(f.as_deref())),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            (
                proptest::option::of(".{0,8}"),
                proptest::collection::vec(inner, 0..4),
            )
                .prop_map(|(q, ops)| Op::QueryOpSet {
                    query: q.map(OpQuery::from),
                    ops,
                })
        })
    }

    proptest! {
        #[test]
        fn arbitrary_entity_ops_round_trip(id: i64, alive: bool, ops in proptest::collection::vec(arb_op(), 0..6)) {
            let e = EntityOps { entity_id: id, ops, creates_slot: alive };
            let b = encode(&e);
            prop_assert_eq!(decode_entity_ops(&b).unwrap(), e);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_decode_canonically(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(e) = decode_entity_ops(&bytes) {
                prop_assert_eq!(encode(&e), bytes);
            }
        }

        #[test]
        fn mutated_encodings_never_panic_and_decode_canonically(
            ops in proptest::collection::vec(arb_op(), 0..4),
            at in any::<prop::sample::Index>(),
            byte: u8,
        ) {
            let mut b = encode(&EntityOps::new(7, ops));
            let i = at.index(b.len());
            b[i] = byte;
            if let Ok(e) = decode_entity_ops(&b) {
                prop_assert_eq!(encode(&e), b);
            }
        }
    }
}
