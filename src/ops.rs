//! Field-level Op deltas and their JSON wire form.
//!
//! The JSON is the trigger pipeline's format, byte for byte where it matters:
//! `{"op":"set","field":F,"value":V}`, `remove`, `add`, `{"op":"delete"}` and
//! `{"op":"queryOpSet","query":Q,"ops":[…]}`; an entity's ops are
//! `{"entity_id":N,"ops":[…],"creates_slot":bool}` and a batch is `{"ops":[…],"meta":{…}}`.
//!
//! pgroar adds one table-wide op the triggers never emit (a trigger cannot see a TRUNCATE):
//! `{"op":"truncate","field":F}` empties field F on every slot and `{"op":"truncate"}` deletes
//! every slot. It ignores its entity's `entity_id` (the translator uses 0).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::filter::{CmpOp, Filter, Literal, ParseError};
use crate::schema::{Field, FieldIds};

/// A value carried by an op: what a column or expression evaluated to.
///
/// Equality and hashing are structural (floats compare by bit pattern), so values can key maps.
#[derive(Clone, Debug)]
pub enum Value {
    /// SQL NULL / JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (any Postgres integer width).
    Int(i64),
    /// A non-integral or out-of-range number.
    Float(f64),
    /// Text (also what a JSON array or object arrives as, in its compact JSON form).
    Str(Arc<str>),
}

impl Value {
    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(h),
            Value::Int(i) => i.hash(h),
            Value::Float(f) => f.to_bits().hash(h),
            Value::Str(s) => s.hash(h),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::str(v)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(x) if x.is_finite() => s.serialize_f64(*x),
            // JSON has no NaN/Infinity; Postgres's text form is the least surprising carrier.
            Value::Float(x) => s.collect_str(&PgFloat(*x)),
            Value::Str(t) => s.serialize_str(t),
        }
    }
}

struct PgFloat(f64);

impl fmt::Display for PgFloat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_nan() {
            f.write_str("NaN")
        } else if self.0 > 0.0 {
            f.write_str("Infinity")
        } else {
            f.write_str("-Infinity")
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
                Ok(Value::Int(i))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
                Ok(i64::try_from(u)
                    .map(Value::Int)
                    .unwrap_or(Value::Float(u as f64)))
            }
            fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
                Ok(Value::Float(x))
            }
            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(Value::str(s))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
                let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Value::str(&v.to_string()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
                let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Value::str(&v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `queryOpSet` query: its text (the wire form, kept as sent) and its filter, parsed once when
/// the op is made or decoded, so that dedup and the index share it instead of parsing the text at
/// each stage. Equality and hashing go by the text; a text that does not parse is kept with its
/// error (the index counts and skips such a `queryOpSet`).
#[derive(Clone)]
pub struct OpQuery(Arc<ParsedQuery>);

struct ParsedQuery {
    text: Arc<str>,
    filter: Result<Filter, ParseError>,
}

impl OpQuery {
    /// Parses `text`.
    pub fn parse(text: impl Into<Arc<str>>) -> OpQuery {
        let text = text.into();
        let filter = Filter::parse(&text);
        OpQuery(Arc::new(ParsedQuery { text, filter }))
    }

    /// A query whose text is already known to parse to `filter` (the translator builds both).
    pub fn from_parts(text: Arc<str>, filter: Filter) -> OpQuery {
        OpQuery(Arc::new(ParsedQuery {
            text,
            filter: Ok(filter),
        }))
    }

    /// The text, as sent.
    pub fn text(&self) -> &Arc<str> {
        &self.0.text
    }

    /// The parsed filter, or why the text does not parse.
    pub fn filter(&self) -> Result<&Filter, &ParseError> {
        self.0.filter.as_ref()
    }

    /// For a query of one `field eq value` clause with a non-NULL value (the form whose slots a
    /// parent row's values follow, see the index's joins): the field and the value.
    pub fn join_key(&self) -> Option<(&str, &Literal)> {
        match self.filter() {
            Ok(Filter::Cmp {
                field,
                op: CmpOp::Eq,
                value,
            }) if *value != Literal::Null => Some((field, value)),
            _ => None,
        }
    }
}

impl PartialEq for OpQuery {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.text == other.0.text
    }
}

impl Eq for OpQuery {}

impl Hash for OpQuery {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.text.hash(h);
    }
}

impl fmt::Debug for OpQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0.text, f)
    }
}

impl fmt::Display for OpQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl From<&str> for OpQuery {
    fn from(text: &str) -> Self {
        OpQuery::parse(text)
    }
}

impl From<String> for OpQuery {
    fn from(text: String) -> Self {
        OpQuery::parse(text)
    }
}

impl From<Arc<str>> for OpQuery {
    fn from(text: Arc<str>) -> Self {
        OpQuery::parse(text)
    }
}

impl Serialize for OpQuery {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.text)
    }
}

impl<'de> Deserialize<'de> for OpQuery {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(OpQuery::parse)
    }
}

/// The op value a filter literal stands for (what a translator would have put in a `set`).
pub fn literal_value(l: &Literal) -> Value {
    match l {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int { value, .. } => Value::Int(*value),
        Literal::Decimal { value, .. } => Value::Float(*value),
        Literal::Text(t) => Value::str(t),
    }
}

/// One field-level delta.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Op {
    /// Give a field a value (single-value filters move the slot out of the old value).
    #[serde(rename = "set")]
    Set {
        /// Index field.
        field: Field,
        /// New value.
        #[serde(default = "null")]
        value: Value,
    },
    /// Take a value away from a field (the old value of an update, or a join-table row's value).
    #[serde(rename = "remove")]
    Remove {
        /// Index field.
        field: Field,
        /// Value to take away.
        #[serde(default = "null")]
        value: Value,
    },
    /// Add a value to a multi-value field.
    #[serde(rename = "add")]
    Add {
        /// Index field.
        field: Field,
        /// Value to add.
        #[serde(default = "null")]
        value: Value,
    },
    /// Delete the entity: the slot leaves every bitmap and `alive`.
    #[serde(rename = "delete")]
    Delete,
    /// Apply `ops` to every live slot matching `query`; a null query is a no-op. Where the
    /// query is a join's `link eq key`, the ops on the join's fields set the parent row's values
    /// instead, which every slot linked to that key follows (see `index::join`).
    #[serde(rename = "queryOpSet")]
    QueryOpSet {
        /// A filter such as `postId eq 5` or `modelVersionIds in [1, 2]`.
        query: Option<OpQuery>,
        /// The ops applied to each matching slot.
        ops: Vec<Op>,
    },
    /// Table-wide, for a TRUNCATE: with a field, every slot loses every value of that field;
    /// without one, every slot is deleted (as by `delete`). The entity's `entity_id` is not
    /// read. Never nested in a `queryOpSet` (the index ignores it there).
    #[serde(rename = "truncate")]
    Truncate {
        /// The index field to empty; `None` deletes every slot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<Field>,
    },
}

fn null() -> Value {
    Value::Null
}

impl Op {
    /// `set` op.
    pub fn set(field: &str, value: impl Into<Value>) -> Op {
        Op::Set {
            field: Field::new(field),
            value: value.into(),
        }
    }

    /// `remove` op.
    pub fn remove(field: &str, value: impl Into<Value>) -> Op {
        Op::Remove {
            field: Field::new(field),
            value: value.into(),
        }
    }

    /// `add` op.
    pub fn add(field: &str, value: impl Into<Value>) -> Op {
        Op::Add {
            field: Field::new(field),
            value: value.into(),
        }
    }

    /// `truncate` op: empties `field` on every slot, or deletes every slot when `None`.
    pub fn truncate(field: Option<&str>) -> Op {
        Op::Truncate {
            field: field.map(Field::new),
        }
    }

    /// The field a slot op touches (none for `delete`, `queryOpSet` and the table-wide
    /// `truncate`).
    pub fn field(&self) -> Option<&Field> {
        match self {
            Op::Set { field, .. } | Op::Remove { field, .. } | Op::Add { field, .. } => Some(field),
            Op::Delete | Op::QueryOpSet { .. } | Op::Truncate { .. } => None,
        }
    }

    /// Resolves the fields of this op (and of the ops nested in it) against `ids` (see
    /// [`FieldIds`]): each name is looked up once, here, instead of at every later stage.
    pub fn resolve(&mut self, ids: &FieldIds) {
        let resolve = |field: &mut Field| {
            if let Some(id) = ids.lookup(field) {
                *field = ids.field(id).clone();
            }
        };
        match self {
            Op::Set { field, .. } | Op::Remove { field, .. } | Op::Add { field, .. } => {
                resolve(field);
            }
            Op::Truncate { field: Some(field) } => resolve(field),
            Op::QueryOpSet { ops, .. } => ops.iter_mut().for_each(|op| op.resolve(ids)),
            Op::Delete | Op::Truncate { field: None } => {}
        }
    }

    /// True for the table-wide `truncate`.
    pub fn is_truncate(&self) -> bool {
        matches!(self, Op::Truncate { .. })
    }
}

/// All ops for one entity (slot) from one row change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityOps {
    /// The slot: the row's id (or, for fan-out sources, the source row's id, used only to group).
    pub entity_id: i64,
    /// The deltas, applied in order.
    pub ops: Vec<Op>,
    /// The entity becomes alive (an INSERT on a `sets_alive` table).
    #[serde(default)]
    pub creates_slot: bool,
}

impl EntityOps {
    /// Ops for an existing entity.
    pub fn new(entity_id: i64, ops: Vec<Op>) -> Self {
        EntityOps {
            entity_id,
            ops,
            creates_slot: false,
        }
    }

    /// Resolves every op's fields against `ids` (see [`Op::resolve`]).
    pub fn resolve(&mut self, ids: &FieldIds) {
        self.ops.iter_mut().for_each(|op| op.resolve(ids));
    }

    /// Ops that also create the slot.
    pub fn alive(entity_id: i64, ops: Vec<Op>) -> Self {
        EntityOps {
            entity_id,
            ops,
            creates_slot: true,
        }
    }
}

/// Where a batch came from, for lag monitoring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncMeta {
    /// Producer name.
    pub source: String,
    /// The producer's position (a number for outbox pollers, an LSN string for pgroar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<serde_json::Value>,
    /// The newest position the producer knows of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_id: Option<i64>,
    /// How far behind the producer is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_rows: Option<i64>,
}

/// A batch of entity ops, the body of `POST /ops`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpsBatch {
    /// Entity ops in order.
    pub ops: Vec<EntityOps>,
    /// Producer metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<SyncMeta>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The POST /ops example of the trigger pipeline, verbatim.
    const SEED_BATCH: &str = r#"{"ops":[{"entity_id":123,"ops":[{"op":"remove","field":"nsfwLevel","value":8},
                                 {"op":"set","field":"nsfwLevel","value":16}],"creates_slot":false},
        {"entity_id":456,"ops":[{"op":"queryOpSet","query":"modelVersionIds eq 456",
          "ops":[{"op":"remove","field":"baseModel","value":"SD 1.5"},
                 {"op":"set","field":"baseModel","value":"SDXL"}]}]}],
 "meta":{"source":"pg-sync-default","cursor":420000000,"max_id":500000000,"lag_rows":80000000}}"#;

    #[test]
    fn seed_batch_parses_to_the_expected_ops() {
        let batch: OpsBatch = serde_json::from_str(SEED_BATCH).unwrap();
        assert_eq!(batch.ops.len(), 2);
        assert_eq!(
            batch.ops[0],
            EntityOps::new(
                123,
                vec![Op::remove("nsfwLevel", 8), Op::set("nsfwLevel", 16)]
            )
        );
        assert_eq!(
            batch.ops[1],
            EntityOps::new(
                456,
                vec![Op::QueryOpSet {
                    query: Some("modelVersionIds eq 456".into()),
                    ops: vec![
                        Op::remove("baseModel", "SD 1.5"),
                        Op::set("baseModel", "SDXL")
                    ],
                }]
            )
        );
        let meta = batch.meta.as_ref().unwrap();
        assert_eq!(meta.source, "pg-sync-default");
        assert_eq!(meta.cursor, Some(serde_json::json!(420000000)));
        assert_eq!(meta.lag_rows, Some(80000000));
    }

    #[test]
    fn seed_batch_round_trips_to_the_same_json() {
        let batch: OpsBatch = serde_json::from_str(SEED_BATCH).unwrap();
        let ours: serde_json::Value = serde_json::to_value(&batch).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(SEED_BATCH).unwrap();
        // The seed omits creates_slot on the second entity (serde default false); we always write it.
        let mut theirs = theirs;
        theirs["ops"][1]["creates_slot"] = serde_json::json!(false);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn op_wire_forms_are_exact() {
        let cases: &[(Op, &str)] = &[
            (
                Op::set("nsfwLevel", 16),
                r#"{"op":"set","field":"nsfwLevel","value":16}"#,
            ),
            (
                Op::remove("type", "image"),
                r#"{"op":"remove","field":"type","value":"image"}"#,
            ),
            (
                Op::add("tagIds", 42),
                r#"{"op":"add","field":"tagIds","value":42}"#,
            ),
            (
                Op::set("hasMeta", true),
                r#"{"op":"set","field":"hasMeta","value":true}"#,
            ),
            (
                Op::set("publishedAt", Value::Null),
                r#"{"op":"set","field":"publishedAt","value":null}"#,
            ),
            (Op::Delete, r#"{"op":"delete"}"#),
            (
                Op::QueryOpSet {
                    query: Some("postId eq 7".into()),
                    ops: vec![Op::set("publishedAt", 1700000000)],
                },
                r#"{"op":"queryOpSet","query":"postId eq 7","ops":[{"op":"set","field":"publishedAt","value":1700000000}]}"#,
            ),
            (
                Op::QueryOpSet {
                    query: None,
                    ops: vec![],
                },
                r#"{"op":"queryOpSet","query":null,"ops":[]}"#,
            ),
            (
                Op::truncate(Some("tagIds")),
                r#"{"op":"truncate","field":"tagIds"}"#,
            ),
            (Op::truncate(None), r#"{"op":"truncate"}"#),
        ];
        for (op, json) in cases {
            assert_eq!(&serde_json::to_string(op).unwrap(), json);
            assert_eq!(&serde_json::from_str::<Op>(json).unwrap(), op);
        }
        let e = EntityOps::alive(9, vec![Op::set("nsfwLevel", 1)]);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"entity_id":9,"ops":[{"op":"set","field":"nsfwLevel","value":1}],"creates_slot":true}"#
        );
    }

    #[test]
    fn values_of_every_json_kind_parse() {
        let v: Vec<Value> = serde_json::from_str(
            r#"[null, true, -3, 2.5, "x", 18446744073709551615, [1,2], {"a":1}]"#,
        )
        .unwrap();
        assert_eq!(
            v,
            vec![
                Value::Null,
                Value::Bool(true),
                Value::Int(-3),
                Value::Float(2.5),
                Value::str("x"),
                Value::Float(18446744073709551615.0),
                Value::str("[1,2]"),
                Value::str(r#"{"a":1}"#),
            ]
        );
        // creates_slot defaults to false; a missing value reads as null.
        let e: EntityOps =
            serde_json::from_str(r#"{"entity_id":1,"ops":[{"op":"set","field":"f"}]}"#).unwrap();
        assert_eq!(e, EntityOps::new(1, vec![Op::set("f", Value::Null)]));
        assert!(serde_json::from_str::<Op>(r#"{"op":"bogus"}"#).is_err());
    }

    #[test]
    fn truncate_round_trips_inside_a_batch() {
        let json = r#"{"ops":[{"entity_id":0,"ops":[{"op":"truncate","field":"tagIds"}],"creates_slot":false},{"entity_id":0,"ops":[{"op":"truncate"}],"creates_slot":false}]}"#;
        let batch: OpsBatch = serde_json::from_str(json).unwrap();
        assert_eq!(
            batch.ops,
            vec![
                EntityOps::new(0, vec![Op::truncate(Some("tagIds"))]),
                EntityOps::new(0, vec![Op::truncate(None)]),
            ]
        );
        assert_eq!(serde_json::to_string(&batch).unwrap(), json);
        // An explicit null field is the table-wide form.
        let op: Op = serde_json::from_str(r#"{"op":"truncate","field":null}"#).unwrap();
        assert_eq!(op, Op::truncate(None));
        assert!(op.is_truncate() && op.field().is_none());
        assert!(serde_json::from_str::<Op>(r#"{"op":"truncate","field":7}"#).is_err());
    }
}
