//! The evaluator's fast path for expressions over integers and booleans (join filters such as
//! `({attributes} >> 10) & 1 = 0`, flag tests such as `({flags} & 4) = 0`): the same tree, the
//! same order of evaluation, over a small copyable value instead of [`SqlValue`].
//!
//! It either gives exactly the value [`Node::eval`] gives, or gives up (`Err(())`): on any
//! value or node outside its subset, and on every error (overflow, division by zero). The
//! caller then evaluates the slow way, which also produces the error itself, so errors and
//! their messages stay the evaluator's.

use std::cmp::Ordering;

use super::ast::BinOp;
use super::eval::{Kind, Node};
use super::types::{SqlType, oid};
use crate::translate::value::SqlValue;

/// The type of a fast-path value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum T {
    Null,
    Bool,
    I2,
    I4,
    I8,
}

/// A value of the fast path: its type and, for booleans and integers, its value as `i64` (0 for
/// NULL). Two scalars, so it travels in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct V {
    t: T,
    x: i64,
}

impl V {
    const NULL: V = V { t: T::Null, x: 0 };

    fn bool(b: bool) -> V {
        V {
            t: T::Bool,
            x: i64::from(b),
        }
    }

    fn of(v: &SqlValue) -> Result<V, ()> {
        let (t, x) = match *v {
            SqlValue::Null => (T::Null, 0),
            SqlValue::Bool(b) => (T::Bool, i64::from(b)),
            SqlValue::Int2(x) => (T::I2, x.into()),
            SqlValue::Int4(x) => (T::I4, x.into()),
            SqlValue::Int8(x) => (T::I8, x),
            _ => return Err(()),
        };
        Ok(V { t, x })
    }

    /// The value as the evaluator's.
    pub(crate) fn sql(self) -> SqlValue {
        match self.t {
            T::Null => SqlValue::Null,
            T::Bool => SqlValue::Bool(self.x != 0),
            T::I2 => SqlValue::Int2(self.x as i16),
            T::I4 => SqlValue::Int4(self.x as i32),
            T::I8 => SqlValue::Int8(self.x),
        }
    }

    fn is_null(self) -> bool {
        self.t == T::Null
    }

    fn int(self) -> Option<i64> {
        matches!(self.t, T::I2 | T::I4 | T::I8).then_some(self.x)
    }

    /// `x` as an integer of type `t`, if it fits.
    fn int_of(t: T, x: i64) -> Result<V, ()> {
        let fits = match t {
            T::I2 => i16::try_from(x).is_ok(),
            T::I4 => i32::try_from(x).is_ok(),
            T::I8 => true,
            T::Null | T::Bool => false,
        };
        if fits { Ok(V { t, x }) } else { Err(()) }
    }
}

/// Whether columns of this type are read on the fast path.
pub(crate) fn column_type(type_oid: u32) -> bool {
    matches!(type_oid, oid::BOOL | oid::INT2 | oid::INT4 | oid::INT8)
}

/// Whether every node of `node` is in the fast path's subset (columns are checked per row).
pub(crate) fn supported(node: &Node) -> bool {
    let all = |nodes: &[Node]| nodes.iter().all(supported);
    match &node.kind {
        Kind::Const(v) => V::of(v).is_ok(),
        Kind::Column(_) | Kind::CaseTest => true,
        Kind::Cast { arg, from, to } => {
            let int = |t: &SqlType| matches!(t, SqlType::Int2 | SqlType::Int4 | SqlType::Int8);
            (from == to || (int(from) && int(to))) && supported(arg)
        }
        Kind::Neg(a) | Kind::BitNot(a) | Kind::Not(a) => supported(a),
        Kind::IsNull { arg, .. } | Kind::IsBool { arg, .. } => supported(arg),
        Kind::Arith { l, r, .. }
        | Kind::Bits { l, r, .. }
        | Kind::Compare { l, r, .. }
        | Kind::IsDistinct { l, r, .. } => supported(l) && supported(r),
        Kind::NullIf { l, r, bpchar } => !bpchar && supported(l) && supported(r),
        Kind::And(args) | Kind::Or(args) | Kind::Coalesce(args) => all(args),
        Kind::MinMax { args, bpchar, .. } => !bpchar && all(args),
        Kind::Case {
            operand,
            arms,
            default,
        } => {
            operand.as_deref().is_none_or(supported)
                && arms.iter().all(|(c, r)| supported(c) && supported(r))
                && supported(default)
        }
        Kind::ExtractEpoch(_) | Kind::EpochInt { .. } | Kind::DatePartEpoch(_) => false,
    }
}

/// [`Node::eval`] on the fast path (see the module docs).
#[allow(
    clippy::too_many_lines,
    reason = "one arm per expression node kind, a few lines each: the dispatch reads best whole"
)]
pub(crate) fn eval(node: &Node, row: &[SqlValue], case_val: Option<V>) -> Result<V, ()> {
    Ok(match &node.kind {
        Kind::Const(v) => V::of(v)?,
        Kind::Column(i) => V::of(row.get(*i).ok_or(())?)?,
        Kind::CaseTest => case_val.unwrap_or(V::NULL),
        Kind::Cast { arg, from, to } => {
            let v = eval(arg, row, case_val)?;
            if v.is_null() || from == to {
                return Ok(v);
            }
            let x = v.int().ok_or(())?;
            match to {
                SqlType::Int2 => V::int_of(T::I2, x)?,
                SqlType::Int4 => V::int_of(T::I4, x)?,
                SqlType::Int8 => V::int_of(T::I8, x)?,
                _ => return Err(()),
            }
        }
        Kind::Neg(a) => match eval(a, row, case_val)? {
            v if v.is_null() => v,
            v => V::int_of(v.t, v.int().ok_or(())?.checked_neg().ok_or(())?)?,
        },
        Kind::BitNot(a) => match eval(a, row, case_val)? {
            v if v.is_null() => v,
            // The complement of a sign-extended value stays in its type's range.
            v if v.int().is_some() => V { t: v.t, x: !v.x },
            _ => return Err(()),
        },
        Kind::Arith { op, l, r } => {
            let (a, b) = (eval(l, row, case_val)?, eval(r, row, case_val)?);
            if a.is_null() || b.is_null() {
                return Ok(V::NULL);
            }
            let (x, y) = (a.int().ok_or(())?, b.int().ok_or(())?);
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div if y != 0 => x.checked_div(y),
                BinOp::Mod if y != 0 => Some(if y == -1 { 0 } else { x % y }),
                _ => None,
            };
            V::int_of(a.t, r.ok_or(())?)?
        }
        Kind::Bits { op, l, r } => {
            let (a, b) = (eval(l, row, case_val)?, eval(r, row, case_val)?);
            bits(*op, a, b)?
        }
        Kind::Compare { op, l, r } => {
            let (a, b) = (eval(l, row, case_val)?, eval(r, row, case_val)?);
            if a.is_null() || b.is_null() {
                return Ok(V::NULL);
            }
            V::bool(op.compares(compare(a, b)?).ok_or(())?)
        }
        Kind::IsDistinct { negated, l, r } => {
            let (a, b) = (eval(l, row, case_val)?, eval(r, row, case_val)?);
            let distinct = match (a.is_null(), b.is_null()) {
                (true, true) => false,
                (true, false) | (false, true) => true,
                (false, false) => compare(a, b)? != Ordering::Equal,
            };
            V::bool(distinct != *negated)
        }
        Kind::And(args) => {
            let mut saw_null = false;
            for arg in args {
                match eval(arg, row, case_val)? {
                    V { t: T::Bool, x: 0 } => return Ok(V::bool(false)),
                    V { t: T::Null, .. } => saw_null = true,
                    V { t: T::Bool, .. } => {}
                    _ => return Err(()),
                }
            }
            if saw_null { V::NULL } else { V::bool(true) }
        }
        Kind::Or(args) => {
            let mut saw_null = false;
            for arg in args {
                match eval(arg, row, case_val)? {
                    V { t: T::Bool, x: 0 } => {}
                    V { t: T::Bool, .. } => return Ok(V::bool(true)),
                    V { t: T::Null, .. } => saw_null = true,
                    _ => return Err(()),
                }
            }
            if saw_null { V::NULL } else { V::bool(false) }
        }
        Kind::Not(a) => match eval(a, row, case_val)? {
            V { t: T::Bool, x } => V::bool(x == 0),
            v if v.is_null() => v,
            _ => return Err(()),
        },
        Kind::IsNull { negated, arg } => V::bool(eval(arg, row, case_val)?.is_null() != *negated),
        Kind::IsBool {
            value,
            negated,
            arg,
        } => {
            let v = match eval(arg, row, case_val)? {
                V { t: T::Bool, x } => Some(x != 0),
                V { t: T::Null, .. } => None,
                _ => return Err(()),
            };
            V::bool((v == *value) != *negated)
        }
        Kind::Coalesce(args) => {
            for arg in args {
                let v = eval(arg, row, case_val)?;
                if !v.is_null() {
                    return Ok(v);
                }
            }
            V::NULL
        }
        Kind::MinMax { greatest, args, .. } => {
            let mut best = V::NULL;
            for arg in args {
                let v = eval(arg, row, case_val)?;
                if v.is_null() {
                    continue;
                }
                if best.is_null() {
                    best = v;
                    continue;
                }
                let ord = compare(v, best)?;
                if (*greatest && ord == Ordering::Greater) || (!*greatest && ord == Ordering::Less)
                {
                    best = v;
                }
            }
            best
        }
        Kind::NullIf { l, r, .. } => {
            let (a, b) = (eval(l, row, case_val)?, eval(r, row, case_val)?);
            if !a.is_null() && !b.is_null() && compare(a, b)? == Ordering::Equal {
                V::NULL
            } else {
                a
            }
        }
        Kind::Case {
            operand,
            arms,
            default,
        } => {
            let operand_val = match operand {
                Some(o) => Some(eval(o, row, case_val)?),
                None => None,
            };
            let inner = operand_val.or(case_val);
            for (cond, result) in arms {
                if eval(cond, row, inner)? == V::bool(true) {
                    return eval(result, row, case_val);
                }
            }
            eval(default, row, case_val)?
        }
        Kind::ExtractEpoch(_) | Kind::EpochInt { .. } | Kind::DatePartEpoch(_) => return Err(()),
    })
}

/// `& | # << >>` as the evaluator computes them.
fn bits(op: BinOp, a: V, b: V) -> Result<V, ()> {
    if a.is_null() || b.is_null() {
        return Ok(V::NULL);
    }
    let (x, n) = (a.x, b.x as u32);
    let x = match (op, a.t, b.t) {
        (BinOp::Shl, T::I2, T::I4) => i64::from((x as i32).wrapping_shl(n) as i16),
        (BinOp::Shr, T::I2, T::I4) => i64::from((x as i32).wrapping_shr(n) as i16),
        (BinOp::Shl, T::I4, T::I4) => i64::from((x as i32).wrapping_shl(n)),
        (BinOp::Shr, T::I4, T::I4) => i64::from((x as i32).wrapping_shr(n)),
        (BinOp::Shl, T::I8, T::I4) => x.wrapping_shl(n),
        (BinOp::Shr, T::I8, T::I4) => x.wrapping_shr(n),
        // Both sign-extended from one width: so is the result.
        (BinOp::BitAnd, ta, tb) if ta == tb && a.int().is_some() => x & b.x,
        (BinOp::BitOr, ta, tb) if ta == tb && a.int().is_some() => x | b.x,
        (BinOp::BitXor, ta, tb) if ta == tb && a.int().is_some() => x ^ b.x,
        _ => return Err(()),
    };
    Ok(V { t: a.t, x })
}

/// The order of two non-NULL values: integers by value whatever their widths, booleans.
fn compare(a: V, b: V) -> Result<Ordering, ()> {
    match (a.t, b.t) {
        (T::Bool, T::Bool) => Ok(a.x.cmp(&b.x)),
        _ => Ok(a.int().ok_or(())?.cmp(&b.int().ok_or(())?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::expr::Expr;
    use proptest::prelude::*;

    const COLUMNS: &[(&str, u32)] = &[
        ("i2", oid::INT2),
        ("i4", oid::INT4),
        ("i8", oid::INT8),
        ("b", oid::BOOL),
    ];

    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("{i2}".to_owned()),
            Just("{i4}".to_owned()),
            Just("{i8}".to_owned()),
            Just("{b}".to_owned()),
            Just("NULL".to_owned()),
            Just("true".to_owned()),
            prop::sample::select(vec![
                "0",
                "1",
                "-1",
                "2",
                "10",
                "31",
                "32",
                "64",
                "32767",
                "-32768",
                "2147483647",
                "-2147483648",
                "9223372036854775807",
                "1::int2",
                "3::int8"
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn expr() -> impl Strategy<Value = String> {
        leaf().prop_recursive(4, 24, 3, |inner| {
            let binary = prop::sample::select(vec![
                "+",
                "-",
                "*",
                "/",
                "%",
                "&",
                "|",
                "#",
                "<<",
                ">>",
                "=",
                "<>",
                "<",
                "<=",
                ">",
                ">=",
                "AND",
                "OR",
                "IS DISTINCT FROM",
                "IS NOT DISTINCT FROM",
            ]);
            prop_oneof![
                (inner.clone(), binary, inner.clone())
                    .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
                inner.clone().prop_map(|a| format!("(NOT {a})")),
                inner.clone().prop_map(|a| format!("(- {a})")),
                inner.clone().prop_map(|a| format!("(~ {a})")),
                inner.clone().prop_map(|a| format!("({a} IS NULL)")),
                inner.clone().prop_map(|a| format!("({a} IS NOT TRUE)")),
                inner.clone().prop_map(|a| format!("({a})::int2")),
                inner.clone().prop_map(|a| format!("({a})::int8")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("COALESCE({a}, {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("GREATEST({a}, {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("LEAST({a}, {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("NULLIF({a}, {b})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(c, a, b)| format!("CASE WHEN {c} THEN {a} ELSE {b} END")),
                (inner.clone(), inner.clone(), inner.clone(), inner)
                    .prop_map(|(o, w, a, b)| format!("CASE {o} WHEN {w} THEN {a} ELSE {b} END")),
            ]
        })
    }

    fn row() -> impl Strategy<Value = Vec<SqlValue>> {
        let i2 = prop_oneof![Just(SqlValue::Null), any::<i16>().prop_map(SqlValue::Int2)];
        let i4 = prop_oneof![
            Just(SqlValue::Null),
            prop::sample::select(vec![0, 1, -1, 1024, 1025, i32::MAX, i32::MIN])
                .prop_map(SqlValue::Int4),
            any::<i32>().prop_map(SqlValue::Int4),
        ];
        let i8 = prop_oneof![Just(SqlValue::Null), any::<i64>().prop_map(SqlValue::Int8)];
        let b = prop_oneof![Just(SqlValue::Null), any::<bool>().prop_map(SqlValue::Bool)];
        (i2, i4, i8, b).prop_map(|(a, b, c, d)| vec![a, b, c, d])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The fast path gives the evaluator's value or gives up; it never gives another value,
        /// and never a value where the evaluator fails.
        #[test]
        fn fast_path_agrees_with_the_evaluator(text in expr(), rows in prop::collection::vec(row(), 4)) {
            let Ok(e) = Expr::parse(&text) else { return Ok(()) };
            let Ok(bound) = e.bind_columns(COLUMNS) else { return Ok(()) };
            prop_assert!(bound.fast || !supported(&bound.root));
            for r in &rows {
                let slow = bound.root.eval(r, None);
                if let Ok(v) = eval(&bound.root, r, None) {
                    prop_assert_eq!(Ok(v.sql()), slow.map_err(|e| e.to_string()), "{}", text);
                }
            }
        }
    }

    #[test]
    fn filters_and_flag_tests_take_the_fast_path() {
        for (text, row, want) in [
            (
                "({i4} >> 10) & 1 = 0",
                vec![SqlValue::Int4(1024)],
                SqlValue::Bool(false),
            ),
            (
                "({i4} >> 10) & 1 = 0",
                vec![SqlValue::Int4(5)],
                SqlValue::Bool(true),
            ),
            ("({i4} >> 10) & 1 = 0", vec![SqlValue::Null], SqlValue::Null),
            (
                "({i4} & (1 << 13)) != 0 AND ({i4} & (1 << 2)) = 0",
                vec![SqlValue::Int4(8192)],
                SqlValue::Bool(true),
            ),
            ("{i4} + 1", vec![SqlValue::Int4(7)], SqlValue::Int4(8)),
        ] {
            let bound = Expr::parse(text)
                .unwrap()
                .bind_columns(&COLUMNS[1..2])
                .unwrap();
            assert!(bound.fast, "{text}");
            assert_eq!(
                eval(&bound.root, &row, None).map(V::sql),
                Ok(want.clone()),
                "{text}"
            );
            assert_eq!(bound.eval(&row), Ok(want), "{text}");
        }
        // Overflow gives up on the fast path; the evaluator reports it.
        let bound = Expr::parse("{i4} + 1")
            .unwrap()
            .bind_columns(&COLUMNS[1..2])
            .unwrap();
        let max = [SqlValue::Int4(i32::MAX)];
        assert_eq!(eval(&bound.root, &max, None), Err(()));
        assert_eq!(
            bound.eval(&max).unwrap_err().to_string(),
            "integer out of range"
        );
        // Text and timestamps are not on it.
        let bound = Expr::parse("{t}::text")
            .unwrap()
            .bind_columns(&[("t", oid::TEXT)])
            .unwrap();
        assert!(!bound.fast);
    }
}
