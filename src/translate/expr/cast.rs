//! Conversions between the supported types, as Postgres's casts do them: integers narrow
//! with range errors; `numeric` rounds half away from zero and floats half to even
//! (`rint`) when converted to integers; floats become `numeric` through 15 (`real`: 6)
//! significant digits; text is read with the type's input function (`int4in`, `numeric_in`,
//! `float8in`, `boolin`) and written with its output function, except `boolean::text`,
//! which is `true`/`false`, and `char(n)::text`, which drops trailing spaces.

use std::sync::Arc;

use super::EvalError;
use super::datetime;
use super::float::{self, FloatParseError};
use super::numeric::{self, Numeric, NumericError};
use super::types::SqlType;
use crate::translate::value::SqlValue;

/// Converts `v` (of type `from`) to `to`; NULL stays NULL.
pub(crate) fn cast(v: SqlValue, from: SqlType, to: SqlType) -> Result<SqlValue, EvalError> {
    if v.is_null() || from == to {
        return Ok(v);
    }
    match to {
        SqlType::Int2 => to_int(v, "smallint"),
        SqlType::Int4 => to_int(v, "integer"),
        SqlType::Int8 => to_int(v, "bigint"),
        SqlType::Numeric => to_numeric(v),
        SqlType::Float4 => to_float4(v),
        SqlType::Float8 => to_float8(v),
        SqlType::Text | SqlType::Varchar => Ok(to_text(v, from)),
        SqlType::Bpchar => Ok(v),
        SqlType::Bool => to_bool(v),
        SqlType::Date => match v {
            SqlValue::Timestamp(t) | SqlValue::TimestampTz(t) => {
                Ok(SqlValue::Date(datetime::timestamp_to_date(t)))
            }
            SqlValue::Text(s) => datetime::parse_date(literal(&s))
                .map(SqlValue::Date)
                .map_err(|e| datetime_input("date", &s, e)),
            _ => Err(mismatch(from, to)),
        },
        SqlType::Timestamp | SqlType::TimestampTz => {
            let zoned = to == SqlType::TimestampTz;
            let us = match v {
                SqlValue::Timestamp(t) | SqlValue::TimestampTz(t) => t,
                SqlValue::Date(d) => {
                    datetime::date_to_timestamp(d).ok_or(EvalError::DateOutOfRange)?
                }
                SqlValue::Text(s) => {
                    datetime::parse_timestamp(literal(&s), zoned, true).map_err(|e| {
                        datetime_input(
                            if zoned {
                                "timestamp with time zone"
                            } else {
                                "timestamp"
                            },
                            &s,
                            e,
                        )
                    })?
                }
                _ => return Err(mismatch(from, to)),
            };
            Ok(if zoned {
                SqlValue::TimestampTz(us)
            } else {
                SqlValue::Timestamp(us)
            })
        }
        SqlType::Unknown | SqlType::Other(_) => match v {
            SqlValue::Text(_) => Ok(v),
            _ => Err(mismatch(from, to)),
        },
    }
}

fn mismatch(from: SqlType, to: SqlType) -> EvalError {
    EvalError::Unsupported(format!("conversion from {from} to {to}"))
}

/// Trims the whitespace a date/time literal may carry.
fn literal(s: &str) -> &str {
    s.trim_matches(numeric::is_pg_space)
}

fn datetime_input(ty: &'static str, s: &str, e: datetime::DateTimeError) -> EvalError {
    match e {
        datetime::DateTimeError::OutOfRange => EvalError::TextOutOfRange {
            ty,
            text: s.to_owned(),
        },
        datetime::DateTimeError::Invalid => EvalError::Unsupported(format!(
            "the {ty} literal {s:?} (write ISO 8601: 'YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]')"
        )),
    }
}

fn to_int(v: SqlValue, ty: &'static str) -> Result<SqlValue, EvalError> {
    let (min, max) = match ty {
        "smallint" => (i16::MIN as i64, i16::MAX as i64),
        "integer" => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    };
    let x = match v {
        SqlValue::Int2(x) => x as i64,
        SqlValue::Int4(x) => x as i64,
        SqlValue::Int8(x) => x,
        SqlValue::Bool(b) => b as i64,
        SqlValue::Numeric(n) => match n.round_to_i64() {
            Ok(Some(x)) => x,
            Ok(None) => return Err(EvalError::OutOfRange(ty)),
            Err(None) => {
                return Err(EvalError::CannotConvert {
                    what: "NaN",
                    to: ty,
                });
            }
            Err(Some(_)) => {
                return Err(EvalError::CannotConvert {
                    what: "infinity",
                    to: ty,
                });
            }
        },
        SqlValue::Float4(x) => {
            float::float_to_int(x as f64, min, max).ok_or(EvalError::OutOfRange(ty))?
        }
        SqlValue::Float8(x) => float::float_to_int(x, min, max).ok_or(EvalError::OutOfRange(ty))?,
        SqlValue::Text(s) => parse_int(&s, ty, min, max)?,
        _ => return Err(EvalError::Internal("integer cast of an unsupported value")),
    };
    int_value(x, ty)
}

/// `pg_strtoint16/32/64` (Postgres 15): whitespace, sign, at least one digit, digits (an
/// overflow while reading them is an out-of-range error even if junk follows),
/// whitespace, nothing else.
fn parse_int(s: &str, ty: &'static str, min: i64, max: i64) -> Result<i64, EvalError> {
    let invalid = || EvalError::InvalidText {
        ty,
        text: s.to_owned(),
    };
    let out_of_range = || EvalError::TextOutOfRange {
        ty,
        text: s.to_owned(),
    };
    let b = s.as_bytes();
    let space = |c: u8| numeric::is_pg_space(c as char);
    let mut i = 0;
    while i < b.len() && space(b[i]) {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return Err(invalid());
    }
    // Accumulated as a negative number, like Postgres, so the minimum fits.
    let mut acc: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        acc = acc
            .checked_mul(10)
            .and_then(|v| v.checked_sub((b[i] - b'0') as i64))
            .filter(|v| *v >= min)
            .ok_or_else(out_of_range)?;
        i += 1;
    }
    while i < b.len() && space(b[i]) {
        i += 1;
    }
    if i != b.len() {
        return Err(invalid());
    }
    if neg {
        Ok(acc)
    } else {
        acc.checked_neg()
            .filter(|v| *v <= max)
            .ok_or_else(out_of_range)
    }
}

fn to_numeric(v: SqlValue) -> Result<SqlValue, EvalError> {
    Ok(SqlValue::Numeric(match v {
        SqlValue::Int2(x) => Numeric::from_i64(x as i64),
        SqlValue::Int4(x) => Numeric::from_i64(x as i64),
        SqlValue::Int8(x) => Numeric::from_i64(x),
        SqlValue::Float4(x) => float::f32_to_numeric(x),
        SqlValue::Float8(x) => float::f64_to_numeric(x),
        SqlValue::Numeric(n) => n,
        SqlValue::Text(s) => Numeric::parse(&s).map_err(|e| match e {
            NumericError::InvalidInput => EvalError::InvalidText {
                ty: "numeric",
                text: s.to_string(),
            },
            other => numeric_error(other),
        })?,
        _ => return Err(EvalError::Internal("numeric cast of an unsupported value")),
    }))
}

fn float_input(ty: &'static str, s: &str, e: FloatParseError) -> EvalError {
    match e {
        FloatParseError::Invalid => EvalError::InvalidText {
            ty,
            text: s.to_owned(),
        },
        FloatParseError::OutOfRange => EvalError::TextOutOfRange {
            ty,
            text: s.to_owned(),
        },
    }
}

fn to_float8(v: SqlValue) -> Result<SqlValue, EvalError> {
    const TY: &str = "double precision";
    Ok(SqlValue::Float8(match v {
        SqlValue::Int2(x) => x as f64,
        SqlValue::Int4(x) => x as f64,
        SqlValue::Int8(x) => x as f64,
        SqlValue::Float4(x) => x as f64,
        SqlValue::Float8(x) => x,
        // numeric_float8 reads numeric_out's text with float8in.
        SqlValue::Numeric(n) => {
            let t = n.to_string();
            float::parse_f64(&t).map_err(|e| float_input(TY, &t, e))?
        }
        SqlValue::Text(s) => float::parse_f64(&s).map_err(|e| float_input(TY, &s, e))?,
        _ => return Err(EvalError::Internal("float cast of an unsupported value")),
    }))
}

fn to_float4(v: SqlValue) -> Result<SqlValue, EvalError> {
    const TY: &str = "real";
    Ok(SqlValue::Float4(match v {
        SqlValue::Int2(x) => x as f32,
        SqlValue::Int4(x) => x as f32,
        SqlValue::Int8(x) => x as f32,
        SqlValue::Float4(x) => x,
        SqlValue::Float8(x) => {
            let r = x as f32;
            if r.is_infinite() && !x.is_infinite() {
                return Err(EvalError::FloatOverflow);
            }
            if r == 0.0 && x != 0.0 {
                return Err(EvalError::FloatUnderflow);
            }
            r
        }
        SqlValue::Numeric(n) => {
            let t = n.to_string();
            float::parse_f32(&t).map_err(|e| float_input(TY, &t, e))?
        }
        SqlValue::Text(s) => float::parse_f32(&s).map_err(|e| float_input(TY, &s, e))?,
        _ => return Err(EvalError::Internal("float cast of an unsupported value")),
    }))
}

/// `::text`: the output function, except for `boolean` and `char(n)`.
fn to_text(v: SqlValue, from: SqlType) -> SqlValue {
    match v {
        SqlValue::Bool(b) => text(if b { "true" } else { "false" }),
        SqlValue::Text(s) if from == SqlType::Bpchar => {
            let trimmed = s.trim_end_matches(' ');
            if trimmed.len() == s.len() {
                SqlValue::Text(s)
            } else {
                SqlValue::Text(Arc::from(trimmed))
            }
        }
        SqlValue::Text(s) => SqlValue::Text(s),
        other => match other.to_pg_text() {
            Some(t) => SqlValue::Text(Arc::from(t)),
            None => SqlValue::Null,
        },
    }
}

/// `boolin`: `t`, `true`, `yes`, `on`, `1` and their prefixes / opposites, any case.
fn to_bool(v: SqlValue) -> Result<SqlValue, EvalError> {
    match v {
        SqlValue::Bool(b) => Ok(SqlValue::Bool(b)),
        SqlValue::Int4(x) => Ok(SqlValue::Bool(x != 0)),
        SqlValue::Text(s) => parse_bool(&s)
            .map(SqlValue::Bool)
            .ok_or(EvalError::InvalidText {
                ty: "boolean",
                text: s.to_string(),
            }),
        _ => Err(EvalError::Internal("boolean cast of an unsupported value")),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim_matches(numeric::is_pg_space).to_ascii_lowercase();
    let is_prefix = |word: &str| !t.is_empty() && word.starts_with(t.as_str());
    match t.as_bytes().first()? {
        b't' if is_prefix("true") => Some(true),
        b'f' if is_prefix("false") => Some(false),
        b'y' if is_prefix("yes") => Some(true),
        b'n' if is_prefix("no") => Some(false),
        // "o" alone is ambiguous.
        b'o' if t.len() >= 2 && "on".starts_with(t.as_str()) => Some(true),
        b'o' if t.len() >= 2 && "off".starts_with(t.as_str()) => Some(false),
        b'1' if t == "1" => Some(true),
        b'0' if t == "0" => Some(false),
        _ => None,
    }
}

/// The range of the integer type named `ty`.
fn int_range(ty: &'static str) -> (i64, i64) {
    match ty {
        "smallint" => (i16::MIN as i64, i16::MAX as i64),
        "integer" => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// An `i64` back in the integer type named `ty`, or that type's range error.
pub(crate) fn int_value(v: i64, ty: &'static str) -> Result<SqlValue, EvalError> {
    let (min, max) = int_range(ty);
    if v < min || v > max {
        return Err(EvalError::OutOfRange(ty));
    }
    Ok(match ty {
        "smallint" => SqlValue::Int2(v as i16),
        "integer" => SqlValue::Int4(v as i32),
        _ => SqlValue::Int8(v),
    })
}

/// The evaluation error of a failed `numeric` operation.
pub(crate) fn numeric_error(e: NumericError) -> EvalError {
    match e {
        NumericError::DivisionByZero => EvalError::DivisionByZero,
        NumericError::Overflow => EvalError::NumericOverflow,
        NumericError::InvalidInput => EvalError::Internal("numeric input in arithmetic"),
    }
}

/// A text value.
pub(crate) fn text(s: &str) -> SqlValue {
    SqlValue::Text(Arc::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SqlValue {
        text(s)
    }

    #[test]
    fn integer_casts_round_like_postgres() {
        let n = |s: &str| SqlValue::Numeric(Numeric::parse(s).unwrap());
        assert_eq!(
            cast(n("2.5"), SqlType::Numeric, SqlType::Int8),
            Ok(SqlValue::Int8(3))
        );
        assert_eq!(
            cast(n("-2.5"), SqlType::Numeric, SqlType::Int4),
            Ok(SqlValue::Int4(-3))
        );
        assert_eq!(
            cast(SqlValue::Float8(2.5), SqlType::Float8, SqlType::Int4),
            Ok(SqlValue::Int4(2))
        );
        assert_eq!(
            cast(SqlValue::Float8(3.5), SqlType::Float8, SqlType::Int2),
            Ok(SqlValue::Int2(4))
        );
        assert_eq!(
            cast(SqlValue::Int8(1 << 40), SqlType::Int8, SqlType::Int4),
            Err(EvalError::OutOfRange("integer"))
        );
        assert_eq!(
            cast(n("NaN"), SqlType::Numeric, SqlType::Int8),
            Err(EvalError::CannotConvert {
                what: "NaN",
                to: "bigint"
            })
        );
        assert_eq!(
            cast(t(" +12 "), SqlType::Text, SqlType::Int2),
            Ok(SqlValue::Int2(12))
        );
        assert!(matches!(
            cast(t("1_0"), SqlType::Text, SqlType::Int4),
            Err(EvalError::InvalidText { .. })
        ));
        assert!(matches!(
            cast(t("2147483648"), SqlType::Text, SqlType::Int4),
            Err(EvalError::TextOutOfRange { .. })
        ));
        assert_eq!(
            cast(t("-9223372036854775808"), SqlType::Text, SqlType::Int8),
            Ok(SqlValue::Int8(i64::MIN))
        );
        assert_eq!(
            cast(t("-32768"), SqlType::Text, SqlType::Int2),
            Ok(SqlValue::Int2(i16::MIN))
        );
        assert!(matches!(
            cast(t("9223372036854775807.5"), SqlType::Text, SqlType::Int4),
            Err(EvalError::TextOutOfRange { .. })
        ));
        assert!(matches!(
            cast(t("2147483648x"), SqlType::Text, SqlType::Int4),
            Err(EvalError::InvalidText { .. })
        ));
    }

    #[test]
    fn text_and_bool_casts() {
        assert_eq!(
            cast(SqlValue::Bool(true), SqlType::Bool, SqlType::Text),
            Ok(t("true"))
        );
        assert_eq!(cast(t("a  "), SqlType::Bpchar, SqlType::Text), Ok(t("a")));
        for (s, want) in [
            ("yes", true),
            (" t ", true),
            ("OFF", false),
            ("of", false),
            ("1", true),
            ("fa", false),
        ] {
            assert_eq!(parse_bool(s), Some(want), "{s}");
        }
        for s in ["o", "", "2", "truex", "nope"] {
            assert_eq!(parse_bool(s), None, "{s}");
        }
    }
}
