//! The SQL types expressions are checked against, and Postgres's rules for choosing the
//! type an operator, `CASE`, `COALESCE`, `GREATEST`/`LEAST` works in.
//!
//! `name` behaves exactly like `text` for everything supported here, so it is folded into
//! [`SqlType::Text`]; `char(n)` ([`SqlType::Bpchar`]) differs (trailing spaces are
//! insignificant), and `varchar` keeps its own type because `varchar = char(n)` picks
//! `char(n)`'s operator where `text = char(n)` picks `text`'s. Types without special support (enums,
//! `uuid`, `jsonb`, …) are [`SqlType::Other`]: they can be tested for NULL, passed through
//! `COALESCE`/`CASE`, and cast to text.

use std::fmt;

/// Type OIDs of the built-in types with special support.
pub mod oid {
    /// `boolean`.
    pub const BOOL: u32 = 16;
    /// `name`.
    pub const NAME: u32 = 19;
    /// `bigint`.
    pub const INT8: u32 = 20;
    /// `smallint`.
    pub const INT2: u32 = 21;
    /// `integer`.
    pub const INT4: u32 = 23;
    /// `text`.
    pub const TEXT: u32 = 25;
    /// `real`.
    pub const FLOAT4: u32 = 700;
    /// `double precision`.
    pub const FLOAT8: u32 = 701;
    /// `unknown` (an untyped literal).
    pub const UNKNOWN: u32 = 705;
    /// `character(n)`.
    pub const BPCHAR: u32 = 1042;
    /// `character varying`.
    pub const VARCHAR: u32 = 1043;
    /// `date`.
    pub const DATE: u32 = 1082;
    /// `timestamp without time zone`.
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamp with time zone`.
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `numeric`.
    pub const NUMERIC: u32 = 1700;
}

/// The static type of an expression.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SqlType {
    /// An untyped string literal or `NULL` (becomes the type its context needs).
    Unknown,
    /// `boolean`.
    Bool,
    /// `smallint`.
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `numeric`.
    Numeric,
    /// `real`.
    Float4,
    /// `double precision`.
    Float8,
    /// `text` (also `name`).
    Text,
    /// `character varying`.
    Varchar,
    /// `character(n)`.
    Bpchar,
    /// `date`.
    Date,
    /// `timestamp without time zone`.
    Timestamp,
    /// `timestamp with time zone`.
    TimestampTz,
    /// Any other type, by OID (enums, `uuid`, …).
    Other(u32),
}

/// Postgres's type categories (`typcategory`): implicit conversions stay within one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    Unknown,
    Bool,
    Numeric,
    String,
    DateTime,
    Other(u32),
}

impl SqlType {
    /// The type of a column with this OID.
    pub fn from_oid(type_oid: u32) -> SqlType {
        match type_oid {
            oid::BOOL => SqlType::Bool,
            oid::INT2 => SqlType::Int2,
            oid::INT4 => SqlType::Int4,
            oid::INT8 => SqlType::Int8,
            oid::NUMERIC => SqlType::Numeric,
            oid::FLOAT4 => SqlType::Float4,
            oid::FLOAT8 => SqlType::Float8,
            oid::TEXT | oid::NAME | oid::UNKNOWN => SqlType::Text,
            oid::VARCHAR => SqlType::Varchar,
            oid::BPCHAR => SqlType::Bpchar,
            oid::DATE => SqlType::Date,
            oid::TIMESTAMP => SqlType::Timestamp,
            oid::TIMESTAMPTZ => SqlType::TimestampTz,
            other => SqlType::Other(other),
        }
    }

    /// The type's OID.
    pub fn oid(self) -> u32 {
        match self {
            SqlType::Unknown => oid::UNKNOWN,
            SqlType::Bool => oid::BOOL,
            SqlType::Int2 => oid::INT2,
            SqlType::Int4 => oid::INT4,
            SqlType::Int8 => oid::INT8,
            SqlType::Numeric => oid::NUMERIC,
            SqlType::Float4 => oid::FLOAT4,
            SqlType::Float8 => oid::FLOAT8,
            SqlType::Text => oid::TEXT,
            SqlType::Varchar => oid::VARCHAR,
            SqlType::Bpchar => oid::BPCHAR,
            SqlType::Date => oid::DATE,
            SqlType::Timestamp => oid::TIMESTAMP,
            SqlType::TimestampTz => oid::TIMESTAMPTZ,
            SqlType::Other(o) => o,
        }
    }

    /// The name `pg_typeof` prints (`integer`, `timestamp with time zone`, …).
    pub fn name(self) -> String {
        match self {
            SqlType::Other(o) => format!("type with OID {o}"),
            named => named.static_name().to_owned(),
        }
    }

    /// [`SqlType::name`] without allocating (`"other"` for [`SqlType::Other`]).
    pub(crate) fn static_name(self) -> &'static str {
        match self {
            SqlType::Unknown => "unknown",
            SqlType::Bool => "boolean",
            SqlType::Int2 => "smallint",
            SqlType::Int4 => "integer",
            SqlType::Int8 => "bigint",
            SqlType::Numeric => "numeric",
            SqlType::Float4 => "real",
            SqlType::Float8 => "double precision",
            SqlType::Text => "text",
            SqlType::Varchar => "character varying",
            SqlType::Bpchar => "character",
            SqlType::Date => "date",
            SqlType::Timestamp => "timestamp without time zone",
            SqlType::TimestampTz => "timestamp with time zone",
            SqlType::Other(_) => "other",
        }
    }

    pub(crate) fn category(self) -> Category {
        match self {
            SqlType::Unknown => Category::Unknown,
            SqlType::Bool => Category::Bool,
            SqlType::Int2
            | SqlType::Int4
            | SqlType::Int8
            | SqlType::Numeric
            | SqlType::Float4
            | SqlType::Float8 => Category::Numeric,
            SqlType::Text | SqlType::Varchar | SqlType::Bpchar => Category::String,
            SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz => Category::DateTime,
            SqlType::Other(o) => Category::Other(o),
        }
    }

    /// True for `smallint`, `integer`, `bigint`.
    pub fn is_integer(self) -> bool {
        matches!(self, SqlType::Int2 | SqlType::Int4 | SqlType::Int8)
    }

    /// Position in the numeric ladder `int2 < int4 < int8 < numeric < real < double`
    /// (each converts implicitly to every later one).
    fn numeric_rank(self) -> Option<u8> {
        Some(match self {
            SqlType::Int2 => 0,
            SqlType::Int4 => 1,
            SqlType::Int8 => 2,
            SqlType::Numeric => 3,
            SqlType::Float4 => 4,
            SqlType::Float8 => 5,
            _ => return None,
        })
    }

    fn datetime_rank(self) -> Option<u8> {
        Some(match self {
            SqlType::Date => 0,
            SqlType::Timestamp => 1,
            SqlType::TimestampTz => 2,
            _ => return None,
        })
    }

    /// The preferred type of its category (`double precision`, `text`, `timestamptz`, `bool`).
    fn is_preferred(self) -> bool {
        matches!(
            self,
            SqlType::Float8 | SqlType::Text | SqlType::TimestampTz | SqlType::Bool
        )
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Whether Postgres converts `from` to `to` implicitly (in operator arguments, `CASE`, …).
pub(crate) fn implicit(from: SqlType, to: SqlType) -> bool {
    if from == to || from == SqlType::Unknown {
        return true;
    }
    if let (Some(a), Some(b)) = (from.numeric_rank(), to.numeric_rank()) {
        return a < b;
    }
    if let (Some(a), Some(b)) = (from.datetime_rank(), to.datetime_rank()) {
        return a < b;
    }
    // text, varchar, name and char(n) convert implicitly in both directions.
    from.category() == Category::String && to.category() == Category::String
}

/// `select_common_type`: the type `CASE`, `COALESCE`, `GREATEST`, `LEAST` work in.
/// `Err((a, b))` names the first two types that cannot be matched.
pub(crate) fn common_type(types: &[SqlType]) -> Result<SqlType, (SqlType, SqlType)> {
    let mut known = types.iter().copied().filter(|t| *t != SqlType::Unknown);
    let Some(mut candidate) = known.next() else {
        return Ok(SqlType::Text);
    };
    for next in known {
        if next == candidate {
            continue;
        }
        if next.category() != candidate.category() {
            return Err((candidate, next));
        }
        if !candidate.is_preferred() && implicit(candidate, next) && !implicit(next, candidate) {
            candidate = next;
        }
    }
    // Every input must then convert to the candidate (two different enums do not).
    match types.iter().find(|t| !implicit(**t, candidate)) {
        Some(t) => Err((candidate, *t)),
        None => Ok(candidate),
    }
}

/// The type `+ - * /` compute in, for operands of types `l` and `r`
/// (`None`: no such operator).
pub(crate) fn arithmetic_type(l: SqlType, r: SqlType) -> Option<SqlType> {
    let (l, r) = resolve_unknown(l, r)?;
    let (a, b) = (l.numeric_rank()?, r.numeric_rank()?);
    Some(if l.is_integer() && r.is_integer() {
        if a >= b { l } else { r }
    } else if l == SqlType::Float4 && r == SqlType::Float4 {
        SqlType::Float4
    } else if a >= 4 || b >= 4 {
        // real mixed with anything else, or double precision: the float8 operators.
        SqlType::Float8
    } else {
        SqlType::Numeric
    })
}

/// The type `%` computes in (integers and numeric only).
pub(crate) fn modulo_type(l: SqlType, r: SqlType) -> Option<SqlType> {
    arithmetic_type(l, r).filter(|t| t.is_integer() || *t == SqlType::Numeric)
}

/// The type `& | #` compute in (integers only).
pub(crate) fn bitwise_type(l: SqlType, r: SqlType) -> Option<SqlType> {
    arithmetic_type(l, r).filter(|t| t.is_integer())
}

/// The type two operands are compared in (`=`, `<`, `IS DISTINCT FROM`, `NULLIF`, simple
/// `CASE`); `None` when Postgres has no such operator.
pub(crate) fn comparison_type(l: SqlType, r: SqlType) -> Option<SqlType> {
    if l == SqlType::Unknown && r == SqlType::Unknown {
        return Some(SqlType::Text);
    }
    let (l, r) = resolve_unknown(l, r)?;
    if l == r && l != SqlType::Varchar {
        return Some(l);
    }
    match (l.category(), r.category()) {
        (Category::Numeric, Category::Numeric) => {
            let (a, b) = (l.numeric_rank()?, r.numeric_rank()?);
            Some(if l.is_integer() && r.is_integer() {
                // Cross-width integer operators compare exactly; widen to the larger.
                if a >= b { l } else { r }
            } else if a >= 4 || b >= 4 {
                SqlType::Float8
            } else {
                SqlType::Numeric
            })
        }
        // char(n) = varchar uses char(n)'s operator (both lose trailing spaces); text =
        // char(n) uses text's (only the char(n) side loses them).
        (Category::String, Category::String) => Some(
            if matches!(
                (l, r),
                (SqlType::Bpchar, SqlType::Varchar) | (SqlType::Varchar, SqlType::Bpchar)
            ) {
                SqlType::Bpchar
            } else {
                SqlType::Text
            },
        ),
        (Category::DateTime, Category::DateTime) => {
            let (a, b) = (l.datetime_rank()?, r.datetime_rank()?);
            Some(if a >= b { l } else { r })
        }
        _ => None,
    }
}

/// An `unknown` operand takes the other operand's type; two are ambiguous.
fn resolve_unknown(l: SqlType, r: SqlType) -> Option<(SqlType, SqlType)> {
    match (l, r) {
        (SqlType::Unknown, SqlType::Unknown) => None,
        (SqlType::Unknown, t) | (t, SqlType::Unknown) => Some((t, t)),
        pair => Some(pair),
    }
}

/// Whether an explicit cast `from::to` exists among the supported types.
pub(crate) fn castable(from: SqlType, to: SqlType) -> bool {
    use SqlType::*;
    if from == to || from == Unknown {
        return true;
    }
    match to {
        // Every type has a text form.
        Text | Varchar => true,
        Int2 | Int4 | Int8 | Numeric | Float4 | Float8 => {
            from.category() == Category::Numeric
                || from.category() == Category::String
                || (from == Bool && to == Int4)
        }
        Bool => from == Int4 || from.category() == Category::String,
        // Text columns would need Postgres's full date/time input parser: not supported.
        Date | Timestamp | TimestampTz => from.category() == Category::DateTime,
        Unknown | Bpchar | Other(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::SqlType::*;
    use super::*;

    #[test]
    fn arithmetic_matches_postgres_operator_resolution() {
        let types = [Int2, Int4, Int8, Numeric, Float4, Float8];
        // Rows: left operand; columns: right operand (from `pg_typeof(1::a + 1::b)`).
        let want = [
            [Int2, Int4, Int8, Numeric, Float8, Float8],
            [Int4, Int4, Int8, Numeric, Float8, Float8],
            [Int8, Int8, Int8, Numeric, Float8, Float8],
            [Numeric, Numeric, Numeric, Numeric, Float8, Float8],
            [Float8, Float8, Float8, Float8, Float4, Float8],
            [Float8, Float8, Float8, Float8, Float8, Float8],
        ];
        for (i, l) in types.iter().enumerate() {
            for (j, r) in types.iter().enumerate() {
                assert_eq!(arithmetic_type(*l, *r), Some(want[i][j]), "{l} + {r}");
            }
        }
        assert_eq!(modulo_type(Float8, Int4), None);
        assert_eq!(bitwise_type(Numeric, Int4), None);
        assert_eq!(arithmetic_type(Unknown, Unknown), None);
        assert_eq!(arithmetic_type(Unknown, Int2), Some(Int2));
    }

    #[test]
    fn common_types_follow_select_common_type() {
        assert_eq!(common_type(&[Int4, Numeric, Int8]), Ok(Numeric));
        assert_eq!(common_type(&[Unknown, Unknown]), Ok(Text));
        assert_eq!(common_type(&[Bpchar, Text]), Ok(Bpchar));
        assert_eq!(common_type(&[Text, Bpchar]), Ok(Text));
        assert_eq!(common_type(&[Varchar, Text, Bpchar]), Ok(Varchar));
        assert_eq!(comparison_type(Varchar, Bpchar), Some(Bpchar));
        assert_eq!(comparison_type(Text, Bpchar), Some(Text));
        // varchar has no operators of its own: text's are used.
        assert_eq!(comparison_type(Varchar, Varchar), Some(Text));
        assert_eq!(comparison_type(Varchar, Unknown), Some(Text));
        assert_eq!(
            common_type(&[Date, TimestampTz, Timestamp]),
            Ok(TimestampTz)
        );
        assert_eq!(common_type(&[Int4, Text]), Err((Int4, Text)));
        assert_eq!(
            common_type(&[Other(9), Other(10)]),
            Err((Other(9), Other(10)))
        );
        assert_eq!(common_type(&[Other(9), Unknown]), Ok(Other(9)));
    }
}
