//! Binding: resolves `{column}`s to row indexes, checks types and picks operators the way
//! Postgres's parse analysis does (inserting the implicit conversions, reading untyped
//! literals as the type they meet), then folds constant parts as its planner does
//! ([`super::fold`]).

use super::cast::{cast, text};
use super::eval::{Kind, Node};
use super::fold::{collect_columns, fold};
use super::numeric::Numeric;
use super::parser::{Ast, AstKind, BinOp, Func, UnOp};
use super::types::{
    self, Category, SqlType, arithmetic_type, bitwise_type, castable, common_type, modulo_type,
};
use super::{ColumnSlot, EvalError, ExprError, ExprErrorKind};
use crate::translate::value::SqlValue;

/// Binds and folds `ast`; returns the tree, its type and the row indexes it reads.
pub(crate) fn bind(
    ast: &Ast,
    resolve: &dyn Fn(&str) -> Option<ColumnSlot>,
) -> Result<(Node, SqlType, Vec<usize>), ExprError> {
    let binder = Binder { resolve };
    let (node, ty) = binder.bind(ast)?;
    // An untyped literal result is text, as in a SELECT list.
    let ty = if ty == SqlType::Unknown {
        SqlType::Text
    } else {
        ty
    };
    let node = fold(node, None)
        .map_err(|(offset, e)| ExprError::new(offset, ExprErrorKind::Constant(e)))?;
    let mut columns = Vec::new();
    collect_columns(&node, &mut columns);
    Ok((node, ty, columns))
}

struct Binder<'a> {
    resolve: &'a dyn Fn(&str) -> Option<ColumnSlot>,
}

fn err(offset: usize, kind: ExprErrorKind) -> ExprError {
    ExprError::new(offset, kind)
}

fn boxed(n: Node) -> Box<Node> {
    Box::new(n)
}

impl Binder<'_> {
    #[allow(
        clippy::too_many_lines,
        reason = "one arm per expression node kind, a few lines each: the dispatch reads best whole"
    )]
    fn bind(&self, ast: &Ast) -> Result<(Node, SqlType), ExprError> {
        let pos = ast.pos;
        Ok(match &ast.kind {
            AstKind::Column(name) => {
                let slot = (self.resolve)(name)
                    .ok_or_else(|| err(pos, ExprErrorKind::UnknownColumn(name.clone())))?;
                (
                    Node::new(pos, Kind::Column(slot.index)),
                    SqlType::from_oid(slot.type_oid),
                )
            }
            AstKind::Number(n) => {
                let v = number_literal(n).map_err(|e| err(pos, ExprErrorKind::Constant(e)))?;
                let ty = match v {
                    SqlValue::Int4(_) => SqlType::Int4,
                    SqlValue::Int8(_) => SqlType::Int8,
                    _ => SqlType::Numeric,
                };
                (Node::constant(pos, v), ty)
            }
            AstKind::Str(s) => (Node::constant(pos, text(s)), SqlType::Unknown),
            AstKind::Bool(b) => (Node::constant(pos, SqlValue::Bool(*b)), SqlType::Bool),
            AstKind::Null => (Node::constant(pos, SqlValue::Null), SqlType::Unknown),
            AstKind::Unary(op, arg) => self.unary(pos, *op, arg)?,
            AstKind::Binary(op, l, r) => self.binary(pos, *op, l, r)?,
            AstKind::And(..) | AstKind::Or(..) => {
                let is_and = matches!(ast.kind, AstKind::And(..));
                let mut operands = Vec::new();
                flatten(ast, is_and, &mut operands);
                let context = if is_and { "AND" } else { "OR" };
                let args = operands
                    .into_iter()
                    .map(|a| self.bool_arg(a, context))
                    .collect::<Result<Vec<_>, _>>()?;
                let kind = if is_and {
                    Kind::And(args)
                } else {
                    Kind::Or(args)
                };
                (Node::new(pos, kind), SqlType::Bool)
            }
            AstKind::Not(arg) => (
                Node::new(pos, Kind::Not(boxed(self.bool_arg(arg, "NOT")?))),
                SqlType::Bool,
            ),
            AstKind::IsNull { arg, negated } => {
                let (n, _) = self.bind(arg)?;
                (
                    Node::new(
                        pos,
                        Kind::IsNull {
                            negated: *negated,
                            arg: boxed(n),
                        },
                    ),
                    SqlType::Bool,
                )
            }
            AstKind::IsBool {
                arg,
                value,
                negated,
            } => {
                let context = match value {
                    Some(true) => "IS TRUE",
                    Some(false) => "IS FALSE",
                    None => "IS UNKNOWN",
                };
                let n = self.bool_arg(arg, context)?;
                (
                    Node::new(
                        pos,
                        Kind::IsBool {
                            value: *value,
                            negated: *negated,
                            arg: boxed(n),
                        },
                    ),
                    SqlType::Bool,
                )
            }
            AstKind::IsDistinct { l, r, negated } => {
                let (l, r) = self.comparison_operands(pos, "IS DISTINCT FROM", l, r, true)?;
                (
                    Node::new(
                        pos,
                        Kind::IsDistinct {
                            negated: *negated,
                            l: boxed(l),
                            r: boxed(r),
                        },
                    ),
                    SqlType::Bool,
                )
            }
            AstKind::Call(func, args) => self.call(pos, *func, args)?,
            AstKind::ExtractEpoch(arg) | AstKind::DatePartEpoch(arg) => {
                let extract = matches!(ast.kind, AstKind::ExtractEpoch(_));
                let name = if extract { "extract" } else { "date_part" };
                let (n, t) = self.bind(arg)?;
                match t.category() {
                    Category::DateTime => {}
                    Category::Unknown => {
                        return Err(err(
                            pos,
                            ExprErrorKind::Ambiguous(format!("{name}(unknown)")),
                        ));
                    }
                    _ => {
                        return Err(err(
                            pos,
                            ExprErrorKind::NoOperator(format!("{name}(epoch, {t})")),
                        ));
                    }
                }
                if extract {
                    (
                        Node::new(pos, Kind::ExtractEpoch(boxed(n))),
                        SqlType::Numeric,
                    )
                } else {
                    (
                        Node::new(pos, Kind::DatePartEpoch(boxed(n))),
                        SqlType::Float8,
                    )
                }
            }
            AstKind::Case {
                operand,
                whens,
                default,
            } => self.case(pos, operand.as_deref(), whens, default.as_deref())?,
            AstKind::Cast(arg, to) => {
                let (n, from) = self.bind(arg)?;
                self.cast(pos, n, from, *to)?
            }
        })
    }

    /// An explicit cast `n::to`.
    fn cast(
        &self,
        pos: usize,
        n: Node,
        from: SqlType,
        to: SqlType,
    ) -> Result<(Node, SqlType), ExprError> {
        if from == to {
            return Ok((n, to));
        }
        if from == SqlType::Unknown {
            return Ok((self.coerce(n, from, to)?, to));
        }
        if !castable(from, to) {
            return Err(err(pos, ExprErrorKind::CannotCast { from, to }));
        }
        let arg_pos = n.pos;
        let kind = match n.kind {
            // `extract(epoch from x)::bigint`, the common case, without a numeric.
            Kind::ExtractEpoch(inner) if to.is_integer() => Kind::EpochInt { arg: inner, to },
            kind => Kind::Cast {
                arg: boxed(Node::new(arg_pos, kind)),
                from,
                to,
            },
        };
        Ok((Node::new(pos, kind), to))
    }

    /// Converts `n` of type `from` to `to` implicitly; untyped literals are read now.
    fn coerce(&self, n: Node, from: SqlType, to: SqlType) -> Result<Node, ExprError> {
        if from == to {
            return Ok(n);
        }
        let pos = n.pos;
        if from != SqlType::Unknown {
            return Ok(Node::new(
                pos,
                Kind::Cast {
                    arg: boxed(n),
                    from,
                    to,
                },
            ));
        }
        let Some(v) = n.as_const() else {
            return Err(err(
                pos,
                ExprErrorKind::Unsupported("a non-constant untyped value".into()),
            ));
        };
        if let (SqlType::Other(_), false) = (to, v.is_null()) {
            return Err(err(
                pos,
                ExprErrorKind::Unsupported(format!(
                    "a string literal as a value of {to} (convert the column with ::text)"
                )),
            ));
        }
        let v = cast(v.clone(), SqlType::Unknown, to)
            .map_err(|e| err(pos, ExprErrorKind::Constant(e)))?;
        Ok(Node::constant(pos, v))
    }

    fn bool_arg(&self, ast: &Ast, context: &'static str) -> Result<Node, ExprError> {
        let (n, t) = self.bind(ast)?;
        match t {
            SqlType::Bool | SqlType::Unknown => self.coerce(n, t, SqlType::Bool),
            found => Err(err(
                ast.pos,
                ExprErrorKind::ArgumentType {
                    context,
                    expected: SqlType::Bool,
                    found,
                },
            )),
        }
    }

    fn unary(&self, pos: usize, op: UnOp, arg: &Ast) -> Result<(Node, SqlType), ExprError> {
        let (n, t) = self.bind(arg)?;
        let sym = match op {
            UnOp::Neg => "-",
            UnOp::Plus => "+",
            UnOp::BitNot => "~",
        };
        if t == SqlType::Unknown {
            // Only numeric types have a prefix `+`, so an untyped operand is read as the
            // category's preferred type; `-` and `~` also exist for other categories.
            if op == UnOp::Plus {
                return Ok((self.coerce(n, t, SqlType::Float8)?, SqlType::Float8));
            }
            return Err(err(pos, ExprErrorKind::Ambiguous(format!("{sym} unknown"))));
        }
        let ok = match op {
            UnOp::BitNot => t.is_integer(),
            UnOp::Neg | UnOp::Plus => t.category() == Category::Numeric,
        };
        if !ok {
            return Err(err(pos, ExprErrorKind::NoOperator(format!("{sym} {t}"))));
        }
        Ok(match op {
            UnOp::Plus => (n, t),
            UnOp::Neg => (Node::new(pos, Kind::Neg(boxed(n))), t),
            UnOp::BitNot => (Node::new(pos, Kind::BitNot(boxed(n))), t),
        })
    }

    fn binary(
        &self,
        pos: usize,
        op: BinOp,
        l: &Ast,
        r: &Ast,
    ) -> Result<(Node, SqlType), ExprError> {
        if matches!(
            op,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        ) {
            let (l, r) = self.comparison_operands(
                pos,
                op.symbol(),
                l,
                r,
                op == BinOp::Eq || op == BinOp::Ne,
            )?;
            return Ok((
                Node::new(
                    pos,
                    Kind::Compare {
                        op,
                        l: boxed(l),
                        r: boxed(r),
                    },
                ),
                SqlType::Bool,
            ));
        }
        let (ln, lt) = self.bind(l)?;
        let (rn, rt) = self.bind(r)?;
        let no_op = || {
            if lt == SqlType::Unknown && rt == SqlType::Unknown {
                err(
                    pos,
                    ExprErrorKind::Ambiguous(format!("unknown {} unknown", op.symbol())),
                )
            } else if lt.category() == Category::DateTime || rt.category() == Category::DateTime {
                err(
                    pos,
                    ExprErrorKind::Unsupported(format!(
                        "date/time arithmetic ({lt} {} {rt})",
                        op.symbol()
                    )),
                )
            } else {
                err(
                    pos,
                    ExprErrorKind::NoOperator(format!("{lt} {} {rt}", op.symbol())),
                )
            }
        };
        if matches!(op, BinOp::Shl | BinOp::Shr) {
            let lty = match (lt, rt) {
                (t, _) if t.is_integer() => t,
                (SqlType::Unknown, SqlType::Int4) => SqlType::Int4,
                _ => return Err(no_op()),
            };
            if !matches!(rt, SqlType::Int2 | SqlType::Int4 | SqlType::Unknown) {
                return Err(no_op());
            }
            let l = self.coerce(ln, lt, lty)?;
            let r = self.coerce(rn, rt, SqlType::Int4)?;
            return Ok((
                Node::new(
                    pos,
                    Kind::Bits {
                        op,
                        l: boxed(l),
                        r: boxed(r),
                    },
                ),
                lty,
            ));
        }
        let ty = match op {
            BinOp::Mod => modulo_type(lt, rt),
            BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor => bitwise_type(lt, rt),
            _ => arithmetic_type(lt, rt),
        }
        .ok_or_else(no_op)?;
        let l = boxed(self.coerce(ln, lt, ty)?);
        let r = boxed(self.coerce(rn, rt, ty)?);
        let kind = match op {
            BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor => Kind::Bits { op, l, r },
            _ => Kind::Arith { op, l, r },
        };
        Ok((Node::new(pos, kind), ty))
    }

    /// Binds two operands of `=`-like operators and converts them to the operator's
    /// argument types. `char(n)` operands are compared without their trailing spaces.
    fn comparison_operands(
        &self,
        pos: usize,
        op: &str,
        l: &Ast,
        r: &Ast,
        equality: bool,
    ) -> Result<(Node, Node), ExprError> {
        let (ln, lt) = self.bind(l)?;
        let (rn, rt) = self.bind(r)?;
        let (lty, rty) = self.operator_types(pos, op, lt, rt, equality)?;
        let (mut l, mut r) = (self.coerce(ln, lt, lty)?, self.coerce(rn, rt, rty)?);
        if lty == SqlType::Bpchar {
            l = self.coerce(l, SqlType::Bpchar, SqlType::Text)?;
            r = self.coerce(r, SqlType::Bpchar, SqlType::Text)?;
        }
        Ok((l, r))
    }

    /// The argument types of the comparison operator Postgres picks for `lt op rt`
    /// (cross-type operators exist among integers, among floats, among dates/timestamps).
    fn operator_types(
        &self,
        pos: usize,
        op: &str,
        lt: SqlType,
        rt: SqlType,
        equality: bool,
    ) -> Result<(SqlType, SqlType), ExprError> {
        let dom = types::comparison_type(lt, rt)
            .ok_or_else(|| err(pos, ExprErrorKind::NoOperator(format!("{lt} {op} {rt}"))))?;
        if let SqlType::Other(_) = dom {
            let what = if equality { "comparing" } else { "ordering" };
            return Err(err(
                pos,
                ExprErrorKind::Unsupported(format!(
                    "{what} values of {dom} (compare {{column}}::text instead)"
                )),
            ));
        }
        let (lt, rt) = match (lt, rt) {
            (SqlType::Unknown, t) | (t, SqlType::Unknown) if t != SqlType::Unknown => (t, t),
            pair => pair,
        };
        let cross = (lt.is_integer() && rt.is_integer())
            || (matches!(lt, SqlType::Float4 | SqlType::Float8)
                && matches!(rt, SqlType::Float4 | SqlType::Float8))
            || (lt.category() == Category::DateTime && rt.category() == Category::DateTime);
        Ok(if cross { (lt, rt) } else { (dom, dom) })
    }

    fn call(&self, pos: usize, func: Func, args: &[Ast]) -> Result<(Node, SqlType), ExprError> {
        if func == Func::NullIf {
            let (ln, lt) = self.bind(&args[0])?;
            let (rn, rt) = self.bind(&args[1])?;
            let (lty, rty) = self.operator_types(pos, "=", lt, rt, true)?;
            let l = self.coerce(ln, lt, lty)?;
            let r = self.coerce(rn, rt, rty)?;
            let kind = Kind::NullIf {
                l: boxed(l),
                r: boxed(r),
                bpchar: lty == SqlType::Bpchar,
            };
            return Ok((Node::new(pos, kind), lty));
        }
        let context = match func {
            Func::Greatest => "GREATEST",
            Func::Least => "LEAST",
            _ => "COALESCE",
        };
        let bound = args
            .iter()
            .map(|a| self.bind(a))
            .collect::<Result<Vec<_>, _>>()?;
        let tys: Vec<SqlType> = bound.iter().map(|(_, t)| *t).collect();
        let ty = common_type(&tys)
            .map_err(|(a, b)| err(pos, ExprErrorKind::NoCommonType { context, a, b }))?;
        if let (SqlType::Other(_), false) = (ty, func == Func::Coalesce) {
            return Err(err(
                pos,
                ExprErrorKind::Unsupported(format!("{context} over {ty}")),
            ));
        }
        let nodes = bound
            .into_iter()
            .map(|(n, t)| self.coerce(n, t, ty))
            .collect::<Result<Vec<_>, _>>()?;
        let kind = match func {
            Func::Coalesce => Kind::Coalesce(nodes),
            _ => Kind::MinMax {
                greatest: func == Func::Greatest,
                args: nodes,
                bpchar: ty == SqlType::Bpchar,
            },
        };
        Ok((Node::new(pos, kind), ty))
    }

    fn case(
        &self,
        pos: usize,
        operand: Option<&Ast>,
        whens: &[(Ast, Ast)],
        default: Option<&Ast>,
    ) -> Result<(Node, SqlType), ExprError> {
        let operand = match operand {
            Some(o) => {
                let (n, t) = self.bind(o)?;
                // An untyped CASE operand is text.
                if t == SqlType::Unknown {
                    Some((self.coerce(n, t, SqlType::Text)?, SqlType::Text))
                } else {
                    Some((n, t))
                }
            }
            None => None,
        };
        let mut conds = Vec::with_capacity(whens.len());
        let mut results = Vec::with_capacity(whens.len() + 1);
        // The ELSE result comes first in the choice of the result type.
        results.push(match default {
            Some(d) => self.bind(d)?,
            None => (Node::constant(pos, SqlValue::Null), SqlType::Unknown),
        });
        for (cond, result) in whens {
            let c = match &operand {
                None => self.bool_arg(cond, "CASE/WHEN")?,
                Some((_, ot)) => {
                    let (vn, vt) = self.bind(cond)?;
                    let (lty, rty) = self.operator_types(cond.pos, "=", *ot, vt, true)?;
                    let test = Node::new(cond.pos, Kind::CaseTest);
                    let (mut l, mut r) = (self.coerce(test, *ot, lty)?, self.coerce(vn, vt, rty)?);
                    if lty == SqlType::Bpchar {
                        l = self.coerce(l, SqlType::Bpchar, SqlType::Text)?;
                        r = self.coerce(r, SqlType::Bpchar, SqlType::Text)?;
                    }
                    Node::new(
                        cond.pos,
                        Kind::Compare {
                            op: BinOp::Eq,
                            l: boxed(l),
                            r: boxed(r),
                        },
                    )
                }
            };
            conds.push(c);
            results.push(self.bind(result)?);
        }
        let tys: Vec<SqlType> = results.iter().map(|(_, t)| *t).collect();
        let ty = common_type(&tys).map_err(|(a, b)| {
            err(
                pos,
                ExprErrorKind::NoCommonType {
                    context: "CASE",
                    a,
                    b,
                },
            )
        })?;
        let mut results = results
            .into_iter()
            .map(|(n, t)| self.coerce(n, t, ty))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let default = results
            .next()
            .unwrap_or_else(|| Node::constant(pos, SqlValue::Null));
        let arms = conds.into_iter().zip(results).collect();
        Ok((
            Node::new(
                pos,
                Kind::Case {
                    operand: operand.map(|(n, _)| boxed(n)),
                    arms,
                    default: boxed(default),
                },
            ),
            ty,
        ))
    }
}

/// Collects the operands of nested `AND`s (or `OR`s), left to right.
fn flatten<'a>(ast: &'a Ast, is_and: bool, out: &mut Vec<&'a Ast>) {
    match &ast.kind {
        AstKind::And(l, r) if is_and => {
            flatten(l, is_and, out);
            flatten(r, is_and, out);
        }
        AstKind::Or(l, r) if !is_and => {
            flatten(l, is_and, out);
            flatten(r, is_and, out);
        }
        _ => out.push(ast),
    }
}

/// Types a number literal as Postgres does: `integer` if it fits, else `bigint`, else
/// `numeric`; anything with a point or exponent is `numeric`.
fn number_literal(text: &str) -> Result<SqlValue, EvalError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        if let Ok(v) = text.parse::<i32>() {
            return Ok(SqlValue::Int4(v));
        }
        if let Ok(v) = text.parse::<i64>() {
            return Ok(SqlValue::Int8(v));
        }
    }
    Numeric::parse(text)
        .map(SqlValue::Numeric)
        .map_err(|_| EvalError::NumericOverflow)
}
