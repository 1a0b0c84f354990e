//! Bound expression trees and their evaluation over one row, with Postgres semantics.
//!
//! Operands of every node have already been converted to the types its operator takes (by
//! [`super::bind`]), so evaluation only dispatches on values. Strict operators evaluate all
//! their operands, then return NULL if any is NULL; `AND`/`OR` stop at the first deciding
//! operand, `CASE`/`COALESCE` evaluate only what they need, as Postgres's executor does.

use std::cmp::Ordering;

use super::EvalError;
use super::cast::{cast, int_value, numeric_error};
use super::datetime::{self, UNIX_TO_PG_USECS};
use super::numeric::Numeric;
use super::parser::BinOp;
use super::types::SqlType;
use crate::translate::value::{SqlValue, int_parts};

/// A bound node; `pos` is the byte offset in the expression text (for errors at bind time).
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub pos: usize,
    pub kind: Kind,
}

/// What a bound node computes.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Const(SqlValue),
    Column(usize),
    /// The operand of the enclosing simple `CASE x WHEN …`.
    CaseTest,
    Cast {
        arg: Box<Node>,
        from: SqlType,
        to: SqlType,
    },
    Neg(Box<Node>),
    BitNot(Box<Node>),
    /// `+ - * / %` on operands of the result type.
    Arith {
        op: BinOp,
        l: Box<Node>,
        r: Box<Node>,
    },
    /// `& | # << >>`; the right operand of a shift is an `integer`.
    Bits {
        op: BinOp,
        l: Box<Node>,
        r: Box<Node>,
    },
    /// `= <> < <= > >=` on operands of one category.
    Compare {
        op: BinOp,
        l: Box<Node>,
        r: Box<Node>,
    },
    IsDistinct {
        negated: bool,
        l: Box<Node>,
        r: Box<Node>,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    IsNull {
        negated: bool,
        arg: Box<Node>,
    },
    IsBool {
        value: Option<bool>,
        negated: bool,
        arg: Box<Node>,
    },
    Coalesce(Vec<Node>),
    /// `GREATEST`/`LEAST`; `bpchar`: compare `char(n)` values without trailing spaces.
    MinMax {
        greatest: bool,
        args: Vec<Node>,
        bpchar: bool,
    },
    /// `NULLIF`; `bpchar` as for `MinMax`.
    NullIf {
        l: Box<Node>,
        r: Box<Node>,
        bpchar: bool,
    },
    Case {
        operand: Option<Box<Node>>,
        arms: Vec<(Node, Node)>,
        default: Box<Node>,
    },
    ExtractEpoch(Box<Node>),
    /// `extract(epoch from x)::<integer type>`, computed without a `numeric` when exact.
    EpochInt {
        arg: Box<Node>,
        to: SqlType,
    },
    DatePartEpoch(Box<Node>),
}

impl Node {
    pub fn new(pos: usize, kind: Kind) -> Node {
        Node { pos, kind }
    }

    pub fn constant(pos: usize, v: SqlValue) -> Node {
        Node::new(pos, Kind::Const(v))
    }

    pub fn as_const(&self) -> Option<&SqlValue> {
        match &self.kind {
            Kind::Const(v) => Some(v),
            _ => None,
        }
    }

    /// Evaluates over `row`; `case_val` is the operand of the innermost simple `CASE`.
    #[allow(
        clippy::too_many_lines,
        reason = "one arm per expression node kind, a few lines each: the dispatch reads best whole"
    )]
    pub fn eval(
        &self,
        row: &[SqlValue],
        case_val: Option<&SqlValue>,
    ) -> Result<SqlValue, EvalError> {
        match &self.kind {
            Kind::Const(v) => Ok(v.clone()),
            Kind::Column(i) => row.get(*i).cloned().ok_or(EvalError::MissingColumn {
                index: *i,
                len: row.len(),
            }),
            Kind::CaseTest => Ok(case_val.cloned().unwrap_or(SqlValue::Null)),
            Kind::Cast { arg, from, to } => cast(arg.eval(row, case_val)?, *from, *to),
            Kind::Neg(arg) => negate(arg.eval(row, case_val)?),
            Kind::BitNot(arg) => bit_not(arg.eval(row, case_val)?),
            Kind::Arith { op, l, r } => {
                let (a, b) = (l.eval(row, case_val)?, r.eval(row, case_val)?);
                arith(*op, a, b)
            }
            Kind::Bits { op, l, r } => {
                let (a, b) = (l.eval(row, case_val)?, r.eval(row, case_val)?);
                bits(*op, a, b)
            }
            Kind::Compare { op, l, r } => {
                let (a, b) = (l.eval(row, case_val)?, r.eval(row, case_val)?);
                if a.is_null() || b.is_null() {
                    return Ok(SqlValue::Null);
                }
                let ord = compare(&a, &b)?;
                op.compares(ord)
                    .map(SqlValue::Bool)
                    .ok_or(EvalError::Internal(
                        "comparison with a non-comparison operator",
                    ))
            }
            Kind::IsDistinct { negated, l, r } => {
                let (a, b) = (l.eval(row, case_val)?, r.eval(row, case_val)?);
                let distinct = match (a.is_null(), b.is_null()) {
                    (true, true) => false,
                    (true, false) | (false, true) => true,
                    (false, false) => compare(&a, &b)? != Ordering::Equal,
                };
                Ok(SqlValue::Bool(distinct != *negated))
            }
            Kind::And(args) => {
                let mut saw_null = false;
                for arg in args {
                    match arg.eval(row, case_val)? {
                        SqlValue::Bool(false) => return Ok(SqlValue::Bool(false)),
                        SqlValue::Null => saw_null = true,
                        SqlValue::Bool(true) => {}
                        _ => return Err(EvalError::Internal("AND of a non-boolean")),
                    }
                }
                Ok(if saw_null {
                    SqlValue::Null
                } else {
                    SqlValue::Bool(true)
                })
            }
            Kind::Or(args) => {
                let mut saw_null = false;
                for arg in args {
                    match arg.eval(row, case_val)? {
                        SqlValue::Bool(true) => return Ok(SqlValue::Bool(true)),
                        SqlValue::Null => saw_null = true,
                        SqlValue::Bool(false) => {}
                        _ => return Err(EvalError::Internal("OR of a non-boolean")),
                    }
                }
                Ok(if saw_null {
                    SqlValue::Null
                } else {
                    SqlValue::Bool(false)
                })
            }
            Kind::Not(arg) => match arg.eval(row, case_val)? {
                SqlValue::Bool(b) => Ok(SqlValue::Bool(!b)),
                SqlValue::Null => Ok(SqlValue::Null),
                _ => Err(EvalError::Internal("NOT of a non-boolean")),
            },
            Kind::IsNull { negated, arg } => Ok(SqlValue::Bool(
                arg.eval(row, case_val)?.is_null() != *negated,
            )),
            Kind::IsBool {
                value,
                negated,
                arg,
            } => {
                let v = match arg.eval(row, case_val)? {
                    SqlValue::Bool(b) => Some(b),
                    SqlValue::Null => None,
                    _ => return Err(EvalError::Internal("IS TRUE of a non-boolean")),
                };
                Ok(SqlValue::Bool((v == *value) != *negated))
            }
            Kind::Coalesce(args) => {
                for arg in args {
                    let v = arg.eval(row, case_val)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Ok(SqlValue::Null)
            }
            Kind::MinMax {
                greatest,
                args,
                bpchar,
            } => {
                let mut best = SqlValue::Null;
                for arg in args {
                    best = min_max(*greatest, best, arg.eval(row, case_val)?, *bpchar)?;
                }
                Ok(best)
            }
            Kind::NullIf { l, r, bpchar } => {
                let (a, b) = (l.eval(row, case_val)?, r.eval(row, case_val)?);
                if !a.is_null() && !b.is_null() && compare_as(&a, &b, *bpchar)? == Ordering::Equal {
                    Ok(SqlValue::Null)
                } else {
                    Ok(a)
                }
            }
            Kind::Case {
                operand,
                arms,
                default,
            } => {
                let operand_val = match operand {
                    Some(o) => Some(o.eval(row, case_val)?),
                    None => None,
                };
                let inner = operand_val.as_ref().or(case_val);
                for (cond, result) in arms {
                    if let SqlValue::Bool(true) = cond.eval(row, inner)? {
                        return result.eval(row, case_val);
                    }
                }
                default.eval(row, case_val)
            }
            Kind::ExtractEpoch(arg) => Ok(extract_epoch(arg.eval(row, case_val)?)),
            Kind::EpochInt { arg, to } => epoch_int(arg.eval(row, case_val)?, *to),
            Kind::DatePartEpoch(arg) => date_part_epoch(arg.eval(row, case_val)?),
        }
    }
}

fn negate(v: SqlValue) -> Result<SqlValue, EvalError> {
    Ok(match v {
        SqlValue::Null => SqlValue::Null,
        SqlValue::Numeric(n) => SqlValue::Numeric(n.neg()),
        SqlValue::Float4(x) => SqlValue::Float4(-x),
        SqlValue::Float8(x) => SqlValue::Float8(-x),
        other => {
            let (x, ty) =
                int_parts(&other).ok_or(EvalError::Internal("negation of a non-number"))?;
            int_value(x.checked_neg().ok_or(EvalError::OutOfRange(ty))?, ty)?
        }
    })
}

fn bit_not(v: SqlValue) -> Result<SqlValue, EvalError> {
    Ok(match v {
        SqlValue::Null => SqlValue::Null,
        SqlValue::Int2(x) => SqlValue::Int2(!x),
        SqlValue::Int4(x) => SqlValue::Int4(!x),
        SqlValue::Int8(x) => SqlValue::Int8(!x),
        _ => return Err(EvalError::Internal("~ of a non-integer")),
    })
}

fn arith(op: BinOp, a: SqlValue, b: SqlValue) -> Result<SqlValue, EvalError> {
    Ok(match (a, b) {
        (SqlValue::Null, _) | (_, SqlValue::Null) => SqlValue::Null,
        (SqlValue::Numeric(x), SqlValue::Numeric(y)) => SqlValue::Numeric(
            match op {
                BinOp::Add => x.add(&y),
                BinOp::Sub => x.sub(&y),
                BinOp::Mul => x.mul(&y),
                BinOp::Div => x.div(&y),
                BinOp::Mod => x.rem(&y),
                _ => return Err(EvalError::Internal("bad numeric operator")),
            }
            .map_err(numeric_error)?,
        ),
        (SqlValue::Float8(x), SqlValue::Float8(y)) => SqlValue::Float8(float_arith(op, x, y)?),
        (SqlValue::Float4(x), SqlValue::Float4(y)) => SqlValue::Float4(float_arith(op, x, y)?),
        (a, b) => {
            let ((x, ty), (y, _)) = int_parts(&a)
                .zip(int_parts(&b))
                .ok_or(EvalError::Internal("arithmetic on mismatched operands"))?;
            let overflow = EvalError::OutOfRange(ty);
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div => {
                    if y == 0 {
                        return Err(EvalError::DivisionByZero);
                    }
                    x.checked_div(y)
                }
                BinOp::Mod => {
                    if y == 0 {
                        return Err(EvalError::DivisionByZero);
                    }
                    // INT_MIN % -1 is 0 in Postgres, not an error.
                    Some(if y == -1 { 0 } else { x % y })
                }
                _ => return Err(EvalError::Internal("bad integer operator")),
            };
            int_value(r.ok_or(overflow)?, ty)?
        }
    })
}

/// The float operators of `float.h`: overflow and underflow are errors, as is `x / 0`.
fn float_arith<F: Float>(op: BinOp, x: F, y: F) -> Result<F, EvalError> {
    let r = match op {
        BinOp::Add => x.add(y),
        BinOp::Sub => x.sub(y),
        BinOp::Mul => x.mul(y),
        BinOp::Div => {
            if y.is_zero() && !x.is_nan() {
                return Err(EvalError::DivisionByZero);
            }
            x.div(y)
        }
        _ => return Err(EvalError::Internal("bad float operator")),
    };
    if r.is_inf() && !x.is_inf() && (op == BinOp::Div || !y.is_inf()) {
        return Err(EvalError::FloatOverflow);
    }
    let underflow = match op {
        BinOp::Mul => !x.is_zero() && !y.is_zero(),
        BinOp::Div => !x.is_zero() && !y.is_inf(),
        _ => false,
    };
    if r.is_zero() && underflow {
        return Err(EvalError::FloatUnderflow);
    }
    Ok(r)
}

/// The operations `float_arith` needs from `f32` and `f64`.
trait Float: Copy {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn is_zero(self) -> bool;
    fn is_nan(self) -> bool;
    fn is_inf(self) -> bool;
}

macro_rules! impl_float {
    ($t:ty) => {
        impl Float for $t {
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn is_zero(self) -> bool {
                self == 0.0
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn is_inf(self) -> bool {
                <$t>::is_infinite(self)
            }
        }
    };
}
impl_float!(f32);
impl_float!(f64);

/// `& | #` on same-width integers; `<< >>` with an `integer` count, which the hardware
/// masks to the operand's width (Postgres does not check it): `1 << 33` is 2 for
/// `integer`, and `smallint` shifts in 32 bits then truncates.
fn bits(op: BinOp, a: SqlValue, b: SqlValue) -> Result<SqlValue, EvalError> {
    use SqlValue::{Int2, Int4, Int8, Null};
    Ok(match (op, a, b) {
        (_, Null, _) | (_, _, Null) => Null,
        (BinOp::Shl, Int2(x), Int4(n)) => Int2((x as i32).wrapping_shl(n as u32) as i16),
        (BinOp::Shr, Int2(x), Int4(n)) => Int2((x as i32).wrapping_shr(n as u32) as i16),
        (BinOp::Shl, Int4(x), Int4(n)) => Int4(x.wrapping_shl(n as u32)),
        (BinOp::Shr, Int4(x), Int4(n)) => Int4(x.wrapping_shr(n as u32)),
        (BinOp::Shl, Int8(x), Int4(n)) => Int8(x.wrapping_shl(n as u32)),
        (BinOp::Shr, Int8(x), Int4(n)) => Int8(x.wrapping_shr(n as u32)),
        (op, Int2(x), Int2(y)) => Int2(bitwise(op, x as i64, y as i64)? as i16),
        (op, Int4(x), Int4(y)) => Int4(bitwise(op, x as i64, y as i64)? as i32),
        (op, Int8(x), Int8(y)) => Int8(bitwise(op, x, y)?),
        _ => {
            return Err(EvalError::Internal(
                "bitwise operation on mismatched operands",
            ));
        }
    })
}

fn bitwise(op: BinOp, x: i64, y: i64) -> Result<i64, EvalError> {
    Ok(match op {
        BinOp::BitAnd => x & y,
        BinOp::BitOr => x | y,
        BinOp::BitXor => x ^ y,
        _ => return Err(EvalError::Internal("bad bitwise operator")),
    })
}

/// Postgres's float order: `NaN` equals `NaN` and is above everything; `-0 = 0`.
/// Compares two non-NULL values of one category (see [`SqlValue::pg_cmp`]).
pub(crate) fn compare(a: &SqlValue, b: &SqlValue) -> Result<Ordering, EvalError> {
    a.pg_cmp(b)
        .ok_or(EvalError::Internal("comparison of mismatched values"))
}

/// [`compare`], or for `char(n)` (`bpchar`) the texts without trailing spaces.
fn compare_as(a: &SqlValue, b: &SqlValue, bpchar: bool) -> Result<Ordering, EvalError> {
    match (a, b) {
        (SqlValue::Text(x), SqlValue::Text(y)) if bpchar => Ok(x
            .trim_end_matches(' ')
            .as_bytes()
            .cmp(y.trim_end_matches(' ').as_bytes())),
        _ => compare(a, b),
    }
}

/// One step of `GREATEST`/`LEAST`: `best` so far against the next value `v`. NULLs are ignored;
/// the first of equal values wins.
fn min_max(
    greatest: bool,
    best: SqlValue,
    v: SqlValue,
    bpchar: bool,
) -> Result<SqlValue, EvalError> {
    if v.is_null() {
        return Ok(best);
    }
    if best.is_null() {
        return Ok(v);
    }
    let ord = compare_as(&v, &best, bpchar)?;
    Ok(
        if (greatest && ord == Ordering::Greater) || (!greatest && ord == Ordering::Less) {
            v
        } else {
            best
        },
    )
}

/// `extract(epoch from x)`: `numeric` seconds since 1970, exact to the microsecond (scale 6
/// for timestamps, 0 for dates); `±Infinity` for infinite values.
fn extract_epoch(v: SqlValue) -> SqlValue {
    let n = match v {
        SqlValue::Timestamp(t) | SqlValue::TimestampTz(t) => match t {
            datetime::TS_POS_INF => Numeric::infinity(false),
            datetime::TS_NEG_INF => Numeric::infinity(true),
            t if t < i64::MAX - UNIX_TO_PG_USECS => {
                Numeric::from_i128(t as i128 + UNIX_TO_PG_USECS as i128, 6)
            }
            // Postgres's overflow path divides with numeric's own result scale (here 4
            // digits) and then rounds to 6: the last digits are lost.
            t => {
                let us = Numeric::from_i128(t as i128 + UNIX_TO_PG_USECS as i128, 0);
                match us.div(&Numeric::from_i64(1_000_000)) {
                    Ok(secs) => secs.with_scale(6),
                    Err(_) => return SqlValue::Null,
                }
            }
        },
        SqlValue::Date(d) => match d {
            datetime::DATE_POS_INF => Numeric::infinity(false),
            datetime::DATE_NEG_INF => Numeric::infinity(true),
            d => Numeric::from_i128((d as i128 + 10_957) * 86_400, 0),
        },
        _ => return SqlValue::Null,
    };
    SqlValue::Numeric(n)
}

/// `extract(epoch from x)::int…`: the seconds rounded half away from zero, as the numeric
/// would be, computed in integers where that path is exact (the far-future overflow path
/// and the infinities go through the numeric).
fn epoch_int(v: SqlValue, to: SqlType) -> Result<SqlValue, EvalError> {
    let ty = match to {
        SqlType::Int2 => "smallint",
        SqlType::Int4 => "integer",
        _ => "bigint",
    };
    match v {
        SqlValue::Null => Ok(SqlValue::Null),
        SqlValue::Timestamp(t) | SqlValue::TimestampTz(t)
            if t != datetime::TS_NEG_INF && t < i64::MAX - UNIX_TO_PG_USECS =>
        {
            let us = t + UNIX_TO_PG_USECS;
            let (q, r) = (us / 1_000_000, us % 1_000_000);
            let secs = match r {
                500_000.. => q + 1,
                ..=-500_000 => q - 1,
                _ => q,
            };
            int_value(secs, ty)
        }
        SqlValue::Date(d) if d != datetime::DATE_NEG_INF && d != datetime::DATE_POS_INF => {
            int_value((d as i64 + 10_957) * 86_400, ty)
        }
        other => cast(extract_epoch(other), SqlType::Numeric, to),
    }
}

/// `date_part('epoch', x)`: `double precision` seconds since 1970.
fn date_part_epoch(v: SqlValue) -> Result<SqlValue, EvalError> {
    let t = match v {
        SqlValue::Timestamp(t) | SqlValue::TimestampTz(t) => t,
        SqlValue::Date(d) => datetime::date_to_timestamp(d).ok_or(EvalError::DateOutOfRange)?,
        _ => return Ok(SqlValue::Null),
    };
    Ok(SqlValue::Float8(match t {
        datetime::TS_POS_INF => f64::INFINITY,
        datetime::TS_NEG_INF => f64::NEG_INFINITY,
        // (timestamp - epoch) / 1e6, subtracting in integers when that cannot overflow.
        t if t < i64::MAX - UNIX_TO_PG_USECS => (t + UNIX_TO_PG_USECS) as f64 / 1_000_000.0,
        t => (t as f64 + UNIX_TO_PG_USECS as f64) / 1_000_000.0,
    }))
}
