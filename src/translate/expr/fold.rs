//! Constant folding after binding, the way Postgres's planner does it
//! (`eval_const_expressions`).
//!
//! Folding matters for fidelity, not only speed: Postgres computes `1/0` in a `CASE` branch
//! that no row takes and fails the query, but never computes the arguments of a `COALESCE`
//! after a non-NULL constant, nor `AND`/`OR` operands after a deciding constant, nor the
//! result of a `WHEN` whose condition is constantly false, nor the other operand of a
//! `NULLIF` with a NULL one. A strict operator with a NULL constant operand is NULL without
//! computing the others. Functions that depend on the session's time zone or `DateStyle`
//! (`date`/`timestamp` ↔ `timestamptz`, date/time output, `extract` from `timestamptz`) are
//! only *stable*: they are left to run time, as there.

use super::EvalError;
use super::eval::{Kind, Node};
use super::types::SqlType;
use crate::translate::value::SqlValue;

/// A folded node, or the failure of a constant part and where it is.
pub(crate) type FoldResult = Result<Node, (usize, EvalError)>;

fn const_node(pos: usize, v: SqlValue) -> Node {
    Node::constant(pos, v)
}

/// Evaluates a node whose operands are all constants.
fn evaluate(node: Node) -> FoldResult {
    let pos = node.pos;
    node.eval(&[], None)
        .map(|v| const_node(pos, v))
        .map_err(|e| (pos, e))
}

/// Folds a boxed child in place.
fn fold_box(mut n: Box<Node>, cc: Option<&SqlValue>) -> Result<Box<Node>, (usize, EvalError)> {
    let child = std::mem::replace(&mut *n, Node::constant(0, SqlValue::Null));
    *n = fold(child, cc)?;
    Ok(n)
}

/// Whether Postgres computes this conversion at plan time: not those that depend on the
/// session's time zone or `DateStyle` (`date`/`timestamp` ↔ `timestamptz`, date/time
/// output as text), which are only *stable*.
fn immutable_cast(from: SqlType, to: SqlType) -> bool {
    !matches!(
        (from, to),
        (SqlType::Date | SqlType::Timestamp, SqlType::TimestampTz)
            | (SqlType::TimestampTz, SqlType::Date | SqlType::Timestamp)
            | (
                SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz,
                SqlType::Text | SqlType::Varchar
            )
    )
}

/// Whether a comparison of these constants is immutable (`date`/`timestamp` against
/// `timestamptz` depends on the time zone).
fn immutable_comparison(a: &Node, b: &Node) -> bool {
    let zoned = |n: &Node| matches!(n.as_const(), Some(SqlValue::TimestampTz(_)));
    let local = |n: &Node| {
        matches!(
            n.as_const(),
            Some(SqlValue::Date(_) | SqlValue::Timestamp(_))
        )
    };
    !((zoned(a) && local(b)) || (local(a) && zoned(b)))
}

/// Whether extracting from this constant is immutable (not from a `timestamptz`).
fn immutable_extract(a: &Node) -> bool {
    !matches!(a.as_const(), Some(SqlValue::TimestampTz(_)))
}

/// `eval_const_expressions`, for the node kinds we have (`cc`: the constant operand of the
/// enclosing simple `CASE`, if it is constant).
#[allow(
    clippy::too_many_lines,
    reason = "one arm per expression node kind, a few lines each: the dispatch reads best whole"
)]
pub(crate) fn fold(node: Node, cc: Option<&SqlValue>) -> FoldResult {
    let pos = node.pos;
    let is_null = |n: &Node| matches!(n.as_const(), Some(SqlValue::Null));
    let is_const = |n: &Node| n.as_const().is_some();
    // Strict operators: NULL if any operand is a NULL constant; computed if all are constant.
    let strict = |kind: Kind, operands: &[&Node], immutable: bool| -> FoldResult {
        if operands.iter().any(|n| is_null(n)) {
            return Ok(const_node(pos, SqlValue::Null));
        }
        let node = Node::new(pos, kind);
        if immutable && operands.iter().all(|n| is_const(n)) {
            evaluate(node)
        } else {
            Ok(node)
        }
    };
    let plain = |kind: Kind, all_const: bool| -> FoldResult {
        let node = Node::new(pos, kind);
        if all_const { evaluate(node) } else { Ok(node) }
    };
    match node.kind {
        Kind::Const(_) | Kind::Column(_) => Ok(node),
        Kind::CaseTest => Ok(match cc {
            Some(v) => const_node(pos, v.clone()),
            None => node,
        }),
        Kind::Cast { arg, from, to } => {
            let arg = fold_box(arg, cc)?;
            let a = (*arg).clone();
            strict(
                Kind::Cast { arg, from, to },
                &[&a],
                immutable_cast(from, to),
            )
        }
        Kind::Neg(arg) => {
            let arg = fold_box(arg, cc)?;
            let a = (*arg).clone();
            strict(Kind::Neg(arg), &[&a], true)
        }
        Kind::BitNot(arg) => {
            let arg = fold_box(arg, cc)?;
            let a = (*arg).clone();
            strict(Kind::BitNot(arg), &[&a], true)
        }
        Kind::ExtractEpoch(arg) => {
            let arg = fold_box(arg, cc)?;
            let a = (*arg).clone();
            strict(Kind::ExtractEpoch(arg), &[&a], immutable_extract(&a))
        }
        Kind::EpochInt { arg, to } => {
            let arg = fold_box(arg, cc)?;
            let a = (*arg).clone();
            strict(Kind::EpochInt { arg, to }, &[&a], immutable_extract(&a))
        }
        Kind::DatePartEpoch(arg) => {
            let arg = fold_box(arg, cc)?;
            let a = (*arg).clone();
            strict(Kind::DatePartEpoch(arg), &[&a], immutable_extract(&a))
        }
        Kind::Arith { op, l, r } => {
            let (l, r) = (fold_box(l, cc)?, fold_box(r, cc)?);
            let (a, b) = ((*l).clone(), (*r).clone());
            strict(Kind::Arith { op, l, r }, &[&a, &b], true)
        }
        Kind::Bits { op, l, r } => {
            let (l, r) = (fold_box(l, cc)?, fold_box(r, cc)?);
            let (a, b) = ((*l).clone(), (*r).clone());
            strict(Kind::Bits { op, l, r }, &[&a, &b], true)
        }
        Kind::Compare { op, l, r } => {
            let (l, r) = (fold_box(l, cc)?, fold_box(r, cc)?);
            let (a, b) = ((*l).clone(), (*r).clone());
            let immutable = immutable_comparison(&a, &b);
            strict(Kind::Compare { op, l, r }, &[&a, &b], immutable)
        }
        Kind::IsDistinct { negated, l, r } => {
            let (l, r) = (fold_box(l, cc)?, fold_box(r, cc)?);
            // A NULL operand decides it whatever the operator's volatility.
            let any_null = is_null(&l) || is_null(&r);
            let all = is_const(&l) && is_const(&r) && (any_null || immutable_comparison(&l, &r));
            plain(Kind::IsDistinct { negated, l, r }, all)
        }
        Kind::NullIf { l, r, bpchar } => {
            let (l, r) = (fold_box(l, cc)?, fold_box(r, cc)?);
            // With a NULL operand the values cannot be equal: the first one, not computed
            // further (Postgres drops the other operand, so it never fails).
            if is_null(&l) || is_null(&r) {
                return Ok(*l);
            }
            let all = is_const(&l) && is_const(&r) && immutable_comparison(&l, &r);
            plain(Kind::NullIf { l, r, bpchar }, all)
        }
        Kind::IsNull { negated, arg } => {
            let arg = fold_box(arg, cc)?;
            let all = is_const(&arg);
            plain(Kind::IsNull { negated, arg }, all)
        }
        Kind::IsBool {
            value,
            negated,
            arg,
        } => {
            let arg = fold_box(arg, cc)?;
            let all = is_const(&arg);
            plain(
                Kind::IsBool {
                    value,
                    negated,
                    arg,
                },
                all,
            )
        }
        Kind::Not(arg) => {
            let arg = fold_box(arg, cc)?;
            let all = is_const(&arg);
            plain(Kind::Not(arg), all)
        }
        Kind::MinMax {
            greatest,
            args,
            bpchar,
        } => {
            let args = args
                .into_iter()
                .map(|a| fold(a, cc))
                .collect::<Result<Vec<_>, _>>()?;
            let all = args.iter().all(is_const);
            plain(
                Kind::MinMax {
                    greatest,
                    args,
                    bpchar,
                },
                all,
            )
        }
        Kind::And(args) | Kind::Or(args) if args.is_empty() => Ok(const_node(pos, SqlValue::Null)),
        Kind::And(args) => fold_bool(pos, args, cc, false),
        Kind::Or(args) => fold_bool(pos, args, cc, true),
        Kind::Coalesce(args) => fold_coalesce(pos, args, cc),
        Kind::Case {
            operand,
            arms,
            default,
        } => fold_case(pos, operand, arms, *default, cc),
    }
}

/// `COALESCE`: leading NULL constants dropped, everything after the first other constant too.
fn fold_coalesce(pos: usize, args: Vec<Node>, cc: Option<&SqlValue>) -> FoldResult {
    let mut out: Vec<Node> = Vec::new();
    for a in args {
        let a = fold(a, cc)?;
        match a.as_const() {
            Some(SqlValue::Null) => continue,
            Some(_) if out.is_empty() => return Ok(a),
            Some(_) => {
                out.push(a);
                break;
            }
            None => out.push(a),
        }
    }
    Ok(if out.is_empty() {
        const_node(pos, SqlValue::Null)
    } else {
        Node::new(pos, Kind::Coalesce(out))
    })
}

/// `CASE`: arms whose condition is a constant FALSE or NULL dropped, a constant TRUE arm ends
/// it (its result becomes the default), and a constant simple-`CASE` operand folded into the
/// conditions.
fn fold_case(
    pos: usize,
    operand: Option<Box<Node>>,
    arms: Vec<(Node, Node)>,
    default: Node,
    cc: Option<&SqlValue>,
) -> FoldResult {
    let operand = match operand {
        Some(o) => Some(fold(*o, cc)?),
        None => None,
    };
    let operand_const = operand.as_ref().and_then(|o| o.as_const().cloned());
    let inner = if operand.is_some() {
        operand_const.as_ref()
    } else {
        cc
    };
    let mut out = Vec::new();
    let mut default_folded = None;
    for (cond, result) in arms {
        let cond = fold(cond, inner)?;
        match cond.as_const() {
            Some(SqlValue::Bool(true)) => {
                default_folded = Some(fold(result, cc)?);
                break;
            }
            // FALSE or NULL: the branch is dropped without looking at its result.
            Some(_) => continue,
            None => out.push((cond, fold(result, cc)?)),
        }
    }
    let default = match default_folded {
        Some(d) => d,
        None => fold(default, cc)?,
    };
    if out.is_empty() {
        return Ok(default);
    }
    let operand = if operand_const.is_some() {
        None
    } else {
        operand.map(Box::new)
    };
    Ok(Node::new(
        pos,
        Kind::Case {
            operand,
            arms: out,
            default: Box::new(default),
        },
    ))
}

/// `AND` (`decider = false`) or `OR` (`decider = true`): a constant decider ends it, the
/// neutral constant is dropped, a NULL constant is kept once at the end.
fn fold_bool(pos: usize, args: Vec<Node>, cc: Option<&SqlValue>, decider: bool) -> FoldResult {
    let mut out = Vec::new();
    let mut saw_null = false;
    for a in args {
        let a = fold(a, cc)?;
        match a.as_const() {
            Some(SqlValue::Bool(b)) if *b == decider => return Ok(a),
            Some(SqlValue::Bool(_)) => {}
            Some(_) => saw_null = true,
            None => out.push(a),
        }
    }
    if out.is_empty() {
        return Ok(const_node(
            pos,
            if saw_null {
                SqlValue::Null
            } else {
                SqlValue::Bool(!decider)
            },
        ));
    }
    if saw_null {
        out.push(const_node(pos, SqlValue::Null));
    }
    if out.len() == 1 {
        return Ok(out.pop().unwrap_or_else(|| const_node(pos, SqlValue::Null)));
    }
    Ok(Node::new(
        pos,
        if decider {
            Kind::Or(out)
        } else {
            Kind::And(out)
        },
    ))
}

/// The row indexes a bound tree reads, in order of first use, without duplicates.
pub(crate) fn collect_columns(node: &Node, out: &mut Vec<usize>) {
    let mut visit = |n: &Node| collect_columns(n, out);
    match &node.kind {
        Kind::Const(_) | Kind::CaseTest => {}
        Kind::Column(i) => {
            if !out.contains(i) {
                out.push(*i);
            }
        }
        Kind::Cast { arg, .. }
        | Kind::Neg(arg)
        | Kind::BitNot(arg)
        | Kind::Not(arg)
        | Kind::IsNull { arg, .. }
        | Kind::IsBool { arg, .. }
        | Kind::ExtractEpoch(arg)
        | Kind::EpochInt { arg, .. }
        | Kind::DatePartEpoch(arg) => visit(arg),
        Kind::Arith { l, r, .. }
        | Kind::Bits { l, r, .. }
        | Kind::Compare { l, r, .. }
        | Kind::IsDistinct { l, r, .. }
        | Kind::NullIf { l, r, .. } => {
            visit(l);
            visit(r);
        }
        Kind::And(args) | Kind::Or(args) | Kind::Coalesce(args) | Kind::MinMax { args, .. } => {
            args.iter().for_each(visit);
        }
        Kind::Case {
            operand,
            arms,
            default,
        } => {
            if let Some(o) = operand {
                visit(o);
            }
            for (c, r) in arms {
                visit(c);
                visit(r);
            }
            visit(default);
        }
    }
}
