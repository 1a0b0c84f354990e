//! Typed SQL values of replicated rows, read from Postgres's text output format.
//!
//! pgoutput (and `COPY … TO STDOUT`) send column values as text; [`parse_text`] turns that
//! text into a [`SqlValue`] given the column's type OID, and [`SqlValue::to_pg_text`] writes
//! it back exactly as Postgres's output function would. [`to_op_value`] gives the value an
//! op carries: what `to_jsonb(x)` emits in the trigger pipeline, read back as JSON.
//!
//! The text forms assumed are those of a session with `DateStyle = 'ISO, MDY'` (dates as
//! `2024-01-02`, BC years as `0044-03-15 BC`), `TimeZone = 'UTC'` (timestamptz output as
//! `2024-01-02 03:04:05.123456+00`; the output side — `::text`, `to_jsonb` — assumes UTC),
//! `extra_float_digits = 1` (the default: shortest round-trip floats; with 0 or less
//! Postgres prints `%.15g` and `::text` of a float would differ) and
//! `IntervalStyle = postgres` (no interval support yet); pgroar pins these on its
//! connections. Dates and timestamps
//! keep Postgres's representation (days / microseconds since 2000-01-01), so every value
//! Postgres can store — `infinity`, `-infinity`, `4714-11-24 BC`, `294276-12-31` — is
//! represented exactly. `timestamptz` text with any UTC offset is accepted (converted to
//! UTC); its output is always in UTC.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::ops::Value;

use super::expr::datetime::{self, DateTimeError, TsStyle};
use super::expr::float;
use super::expr::numeric::{Numeric, NumericError};
use super::expr::types::{SqlType, oid};

/// A typed SQL value.
///
/// `Text` holds `text`, `varchar`, `char(n)` (with its padding), `name`, enum labels and
/// the text form of every type without special support.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// `boolean`.
    Bool(bool),
    /// `smallint`.
    Int2(i16),
    /// `integer`.
    Int4(i32),
    /// `bigint`.
    Int8(i64),
    /// `numeric`, exact, with its display scale.
    Numeric(Numeric),
    /// `real`.
    Float4(f32),
    /// `double precision`.
    Float8(f64),
    /// Text-like values and types without special support.
    Text(Arc<str>),
    /// `date`: days since 2000-01-01; `i32::MIN`/`i32::MAX` are `-infinity`/`infinity`.
    Date(i32),
    /// `timestamp`: microseconds since 2000-01-01 00:00:00; `i64::MIN`/`MAX` are infinities.
    Timestamp(i64),
    /// `timestamptz`: microseconds since 2000-01-01 00:00:00 UTC; `i64::MIN`/`MAX` as above.
    TimestampTz(i64),
}

/// Why a column's text could not be read as its type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid {type_name} (type OID {type_oid})")]
pub struct ValueError {
    /// The column's type OID.
    pub type_oid: u32,
    /// The type's name.
    pub type_name: &'static str,
    /// The text (cut to 100 bytes).
    pub text: String,
}

/// Parses Postgres's text output for a column of type `type_oid` (see the module notes for
/// the session settings assumed). OIDs without special support (enums, `uuid`, …) give
/// [`SqlValue::Text`].
pub fn parse_text(type_oid: u32, text: &str) -> Result<SqlValue, ValueError> {
    let err = |type_name: &'static str| ValueError {
        type_oid,
        type_name,
        text: truncate(text, 100),
    };
    Ok(match type_oid {
        oid::BOOL => match text {
            "t" => SqlValue::Bool(true),
            "f" => SqlValue::Bool(false),
            _ => return Err(err("boolean")),
        },
        oid::INT2 => SqlValue::Int2(text.parse().map_err(|_| err("smallint"))?),
        oid::INT4 => SqlValue::Int4(text.parse().map_err(|_| err("integer"))?),
        oid::INT8 => SqlValue::Int8(text.parse().map_err(|_| err("bigint"))?),
        oid::NUMERIC => {
            SqlValue::Numeric(Numeric::parse(text).map_err(|_: NumericError| err("numeric"))?)
        }
        oid::FLOAT4 => SqlValue::Float4(float::parse_f32(text).map_err(|_| err("real"))?),
        oid::FLOAT8 => {
            SqlValue::Float8(float::parse_f64(text).map_err(|_| err("double precision"))?)
        }
        oid::DATE => SqlValue::Date(datetime::parse_date(text).map_err(|_| err("date"))?),
        oid::TIMESTAMP => SqlValue::Timestamp(
            datetime::parse_timestamp(text, false, false)
                .map_err(|_: DateTimeError| err("timestamp"))?,
        ),
        oid::TIMESTAMPTZ => SqlValue::TimestampTz(
            datetime::parse_timestamp(text, true, false).map_err(|_| err("timestamptz"))?,
        ),
        _ => SqlValue::Text(Arc::from(text)),
    })
}

/// Whether [`parse_binary`] reads a column of type `type_oid` (`is_enum`: the type is an enum,
/// whose binary form is its label): what a dump checks before it asks for binary COPY.
pub fn reads_binary(type_oid: u32, is_enum: bool) -> bool {
    // Every type with support of its own except numeric (its binary form is not decoded here).
    is_enum
        || !matches!(
            SqlType::from_oid(type_oid),
            SqlType::Numeric | SqlType::Other(_)
        )
}

/// Parses Postgres's binary send form (binary `COPY`) of a column of type `type_oid`. Types
/// without a decoder here are read as UTF-8 text: right for enums and text types, whose send
/// form is their text; callers send only the types [`reads_binary`] accepts.
pub fn parse_binary(type_oid: u32, bytes: &[u8]) -> Result<SqlValue, ValueError> {
    decode_binary(type_oid, bytes).ok_or_else(|| ValueError {
        type_oid,
        type_name: match SqlType::from_oid(type_oid) {
            SqlType::Other(_) => "text",
            known => known.static_name(),
        },
        text: format!("{:02x?}", &bytes[..bytes.len().min(32)]),
    })
}

/// [`parse_binary`] without the error's details: what a dump calls per value (a small result
/// that comes back in registers; the caller asks `parse_binary` for the error when it fails).
#[inline]
pub(crate) fn decode_binary(type_oid: u32, bytes: &[u8]) -> Option<SqlValue> {
    fn be<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
        bytes.try_into().ok()
    }
    Some(match type_oid {
        oid::BOOL => match bytes {
            [0] => SqlValue::Bool(false),
            [1] => SqlValue::Bool(true),
            _ => return None,
        },
        oid::INT2 => SqlValue::Int2(i16::from_be_bytes(be(bytes)?)),
        oid::INT4 => SqlValue::Int4(i32::from_be_bytes(be(bytes)?)),
        oid::INT8 => SqlValue::Int8(i64::from_be_bytes(be(bytes)?)),
        oid::FLOAT4 => SqlValue::Float4(f32::from_be_bytes(be(bytes)?)),
        oid::FLOAT8 => SqlValue::Float8(f64::from_be_bytes(be(bytes)?)),
        // Days and microseconds since 2000-01-01, the infinities at the extremes: the same
        // representation as `SqlValue`'s.
        oid::DATE => SqlValue::Date(i32::from_be_bytes(be(bytes)?)),
        oid::TIMESTAMP => SqlValue::Timestamp(i64::from_be_bytes(be(bytes)?)),
        oid::TIMESTAMPTZ => SqlValue::TimestampTz(i64::from_be_bytes(be(bytes)?)),
        oid::NUMERIC => return None,
        _ => SqlValue::Text(Arc::from(std::str::from_utf8(bytes).ok()?)),
    })
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl SqlValue {
    /// True for [`SqlValue::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, SqlValue::Null)
    }

    /// Postgres's ordering of two non-NULL values of one category (mixed integer widths, `real`
    /// with `double precision`, dates with timestamps); `None` across categories.
    pub fn pg_cmp(&self, other: &SqlValue) -> Option<Ordering> {
        pg_cmp(self, other)
    }

    /// SQL `IS DISTINCT FROM` between two values of one expression (so of one type): NULL
    /// is not distinct from NULL; numbers compare by value (`1.0` and `1.00` are not
    /// distinct, nor `NaN` and `NaN`, nor `0` and `-0`); text byte by byte (a `char(n)`'s
    /// trailing spaces count here). Values of different types are distinct.
    pub fn is_distinct_from(&self, other: &SqlValue) -> bool {
        match (self.is_null(), other.is_null()) {
            (true, true) => false,
            (true, false) | (false, true) => true,
            (false, false) => !matches!(pg_cmp(self, other), Some(Ordering::Equal)),
        }
    }

    /// The text Postgres's output function writes (`t`/`f` for booleans, `NaN`, `infinity`,
    /// `2024-01-02 03:04:05+00`); `None` for NULL.
    pub fn to_pg_text(&self) -> Option<String> {
        Some(match self {
            SqlValue::Null => return None,
            SqlValue::Bool(b) => if *b { "t" } else { "f" }.to_owned(),
            SqlValue::Int2(v) => v.to_string(),
            SqlValue::Int4(v) => v.to_string(),
            SqlValue::Int8(v) => v.to_string(),
            SqlValue::Numeric(n) => n.to_string(),
            SqlValue::Float4(x) => float::format_f32(*x),
            SqlValue::Float8(x) => float::format_f64(*x),
            SqlValue::Text(s) => s.to_string(),
            SqlValue::Date(d) => datetime::format_date(*d),
            SqlValue::Timestamp(t) => datetime::format_timestamp(*t, TsStyle::Plain),
            SqlValue::TimestampTz(t) => datetime::format_timestamp(*t, TsStyle::Zoned),
        })
    }
}

/// Writes the output-function text (`NULL` for NULL).
impl fmt::Display for SqlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_pg_text() {
            Some(text) => f.write_str(&text),
            None => f.write_str("NULL"),
        }
    }
}

/// The op value of `x`: what `to_jsonb(x)` emits, read back as [`Value`] JSON.
///
/// Numbers go through `jsonb`'s numeric form: a number whose JSON text has no point (an
/// integer, a `numeric` of scale 0, a `double precision` such as `2` or `1e+16`) is
/// [`Value::Int`] when it fits `i64`, anything else [`Value::Float`] (so `2.00::numeric` is
/// `Float(2.0)`, like the JSON `2.00`). `NaN` and the infinities are the strings `"NaN"`,
/// `"Infinity"`, `"-Infinity"`. Booleans are [`Value::Bool`]; text is [`Value::Str`] (a
/// `char(n)` keeps its padding); `date` is `"2024-01-02"`, `timestamp`
/// `"2024-01-02T03:04:05.5"`, `timestamptz` `"2024-01-02T03:04:05.5+00:00"` (BC years end in
/// `" BC"`; infinite ones are `"infinity"` / `"-infinity"`).
pub fn to_op_value(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Bool(b) => Value::Bool(*b),
        SqlValue::Int2(i) => Value::Int(*i as i64),
        SqlValue::Int4(i) => Value::Int(*i as i64),
        SqlValue::Int8(i) => Value::Int(*i),
        SqlValue::Numeric(n) => json_number(&n.to_string()),
        SqlValue::Float4(x) => float_json(*x as f64, || float::f32_text_as_numeric(*x)),
        SqlValue::Float8(x) => float_json(*x, || float::f64_text_as_numeric(*x)),
        SqlValue::Text(s) => Value::Str(s.clone()),
        SqlValue::Date(d) => Value::str(&datetime::format_date(*d)),
        SqlValue::Timestamp(t) => Value::str(&datetime::format_timestamp(*t, TsStyle::JsonPlain)),
        SqlValue::TimestampTz(t) => Value::str(&datetime::format_timestamp(*t, TsStyle::JsonZoned)),
    }
}

/// `to_jsonb` of a float: the output text, if it is a JSON number, becomes a `numeric`.
fn float_json(x: f64, as_numeric: impl FnOnce() -> Numeric) -> Value {
    if x.is_finite() {
        json_number(&as_numeric().to_string())
    } else {
        Value::str(&float::format_f64(x))
    }
}

/// Reads a number the way the op JSON is read: integers that fit `i64` stay integers.
fn json_number(text: &str) -> Value {
    if text.bytes().all(|c| c.is_ascii_digit() || c == b'-')
        && let Ok(i) = text.parse::<i64>()
    {
        return Value::Int(i);
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Value::Float(x),
        // NaN / Infinity are not JSON numbers: jsonb keeps them as strings.
        _ => Value::str(text),
    }
}

/// An integer operand as `i64` with the name of its type, for range errors.
pub(crate) fn int_parts(v: &SqlValue) -> Option<(i64, &'static str)> {
    match v {
        SqlValue::Int2(x) => Some((*x as i64, "smallint")),
        SqlValue::Int4(x) => Some((*x as i64, "integer")),
        SqlValue::Int8(x) => Some((*x, "bigint")),
        _ => None,
    }
}

fn float_cmp(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// A date or timestamp on one exact scale (microseconds, with the infinities outside every
/// finite value), so `date` compares with `timestamp` without the range error of a cast.
fn datetime_key(v: &SqlValue) -> Option<i128> {
    Some(match *v {
        SqlValue::Date(datetime::DATE_POS_INF) => i128::MAX,
        SqlValue::Date(datetime::DATE_NEG_INF) => i128::MIN,
        SqlValue::Date(d) => d as i128 * datetime::USECS_PER_DAY as i128,
        SqlValue::Timestamp(datetime::TS_POS_INF) | SqlValue::TimestampTz(datetime::TS_POS_INF) => {
            i128::MAX
        }
        SqlValue::Timestamp(datetime::TS_NEG_INF) | SqlValue::TimestampTz(datetime::TS_NEG_INF) => {
            i128::MIN
        }
        SqlValue::Timestamp(t) | SqlValue::TimestampTz(t) => t as i128,
        _ => return None,
    })
}

/// Compares two non-NULL values of one category (mixed integer widths, `real` with `double
/// precision`, dates with timestamps); `None` for values of different categories.
fn pg_cmp(a: &SqlValue, b: &SqlValue) -> Option<Ordering> {
    use SqlValue::*;
    if let (Some((x, _)), Some((y, _))) = (int_parts(a), int_parts(b)) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (datetime_key(a), datetime_key(b)) {
        return Some(x.cmp(&y));
    }
    Some(match (a, b) {
        (Numeric(x), Numeric(y)) => x.pg_cmp(y),
        (Float4(_) | Float8(_), Float4(_) | Float8(_)) => {
            let f = |v: &SqlValue| match v {
                Float4(x) => *x as f64,
                Float8(x) => *x,
                _ => 0.0,
            };
            float_cmp(f(a), f(b))
        }
        (Bool(x), Bool(y)) => x.cmp(y),
        (Text(x), Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_decode_or_are_errors() {
        assert_eq!(parse_binary(oid::BOOL, &[1]), Ok(SqlValue::Bool(true)));
        assert_eq!(
            parse_binary(oid::INT2, &[0x80, 0]),
            Ok(SqlValue::Int2(i16::MIN))
        );
        assert_eq!(
            parse_binary(oid::INT4, &7i32.to_be_bytes()),
            Ok(SqlValue::Int4(7))
        );
        assert_eq!(
            parse_binary(oid::TIMESTAMPTZ, &i64::MAX.to_be_bytes()),
            Ok(SqlValue::TimestampTz(i64::MAX))
        );
        assert_eq!(parse_binary(oid::DATE, &[0; 4]), Ok(SqlValue::Date(0)));
        // An enum (any OID without a decoder) is its label.
        assert_eq!(
            parse_binary(99_999, b"happy"),
            Ok(SqlValue::Text("happy".into()))
        );
        for (ty, bytes) in [
            (oid::BOOL, &[2][..]),
            (oid::INT4, &[0, 0, 7][..]),
            (oid::INT8, &[0; 4][..]),
            (oid::FLOAT8, &[0; 9][..]),
            (oid::TEXT, &[0xff, 0xfe][..]),
            (oid::NUMERIC, &[0; 8][..]),
        ] {
            assert!(parse_binary(ty, bytes).is_err(), "{ty} {bytes:?}");
        }
        assert!(reads_binary(oid::TIMESTAMPTZ, false) && reads_binary(99_999, true));
        assert!(!reads_binary(oid::NUMERIC, false) && !reads_binary(99_999, false));
    }

    #[test]
    fn parses_each_supported_type() {
        assert_eq!(parse_text(16, "t"), Ok(SqlValue::Bool(true)));
        assert_eq!(parse_text(21, "-32768"), Ok(SqlValue::Int2(i16::MIN)));
        assert_eq!(parse_text(23, "7"), Ok(SqlValue::Int4(7)));
        assert_eq!(
            parse_text(20, "-9223372036854775808"),
            Ok(SqlValue::Int8(i64::MIN))
        );
        assert!(
            matches!(parse_text(701, "-Infinity"), Ok(SqlValue::Float8(x)) if x == f64::NEG_INFINITY)
        );
        assert_eq!(parse_text(1043, "x"), Ok(SqlValue::Text(Arc::from("x"))));
        assert_eq!(
            parse_text(99999, "happy"),
            Ok(SqlValue::Text(Arc::from("happy")))
        );
        assert_eq!(parse_text(1082, "2000-01-02"), Ok(SqlValue::Date(1)));
        assert_eq!(
            parse_text(1114, "2000-01-01 00:00:01"),
            Ok(SqlValue::Timestamp(1_000_000))
        );
        assert_eq!(
            parse_text(1184, "2000-01-01 01:00:00+01"),
            Ok(SqlValue::TimestampTz(0))
        );
        assert!(parse_text(23, "x").is_err());
        assert!(parse_text(16, "true").is_err());
        assert!(parse_text(1184, "2000-01-01").is_err());
    }

    #[test]
    fn distinctness_is_by_sql_value() {
        let v = |oid, text| parse_text(oid, text).unwrap();
        assert!(!v(1700, "1.0").is_distinct_from(&v(1700, "1.00")));
        assert!(!v(701, "NaN").is_distinct_from(&v(701, "NaN")));
        assert!(!v(701, "-0").is_distinct_from(&v(701, "0")));
        assert!(v(25, "a").is_distinct_from(&v(25, "a ")));
        assert!(v(23, "1").is_distinct_from(&SqlValue::Null));
        assert!(!SqlValue::Null.is_distinct_from(&SqlValue::Null));
        assert!(v(23, "1").is_distinct_from(&v(25, "1")));
        assert!(
            !v(1184, "2024-01-01 00:00:00+00").is_distinct_from(&v(1184, "2024-01-01 01:00:00+01"))
        );
    }

    #[test]
    fn text_round_trips() {
        for (oid, text) in [
            (16, "f"),
            (1700, "-12.3400"),
            (1700, "NaN"),
            (701, "1e+300"),
            (700, "0.1"),
            (1082, "0044-03-15 BC"),
            (1114, "infinity"),
            (1184, "2024-01-02 03:04:05.123456+00"),
        ] {
            assert_eq!(parse_text(oid, text).unwrap().to_pg_text().unwrap(), text);
        }
    }

    #[test]
    fn op_values_follow_to_jsonb() {
        let v = |oid, text| to_op_value(&parse_text(oid, text).unwrap());
        assert_eq!(v(1700, "2"), Value::Int(2));
        assert_eq!(v(1700, "2.00"), Value::Float(2.0));
        assert_eq!(v(1700, "-Infinity"), Value::str("-Infinity"));
        assert_eq!(
            v(1700, "123456789012345678901234567890"),
            Value::Float(1.2345678901234568e29)
        );
        assert_eq!(v(701, "2"), Value::Int(2));
        assert_eq!(v(701, "1e+16"), Value::Int(10_000_000_000_000_000));
        assert_eq!(v(701, "1.5e-05"), Value::Float(1.5e-5));
        assert_eq!(v(701, "NaN"), Value::str("NaN"));
        assert_eq!(v(700, "1.5"), Value::Float(1.5));
        assert_eq!(v(1082, "2024-01-02"), Value::str("2024-01-02"));
        assert_eq!(
            v(1114, "2024-01-02 03:04:05"),
            Value::str("2024-01-02T03:04:05")
        );
        assert_eq!(
            v(1184, "0044-03-15 12:00:00+00 BC"),
            Value::str("0044-03-15T12:00:00+00:00 BC")
        );
        assert_eq!(v(1184, "infinity"), Value::str("infinity"));
        assert_eq!(v(1042, "a  "), Value::str("a  "));
    }
}
