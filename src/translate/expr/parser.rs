//! The expression grammar, with Postgres's operator precedence (PostgreSQL docs §4.1.6).
//!
//! From loosest to tightest: `OR`; `AND`; `NOT` (prefix); `IS …`, `ISNULL`, `NOTNULL`;
//! comparison `< > = <= >= <>` (non-associative: `a = b = c` is a syntax error); every other
//! operator (`& | # << >>`, prefix `~`), left-associative at one level; `+ -`; `* / %`; `^`;
//! unary `+ -`; `::`. A prefix operator takes as its operand everything that binds tighter
//! than itself (`~ 5 + 1` is `~(5 + 1)`, `- 5 & 1` is `(-5) & 1`), as in `gram.y`. A minus
//! directly before a number literal becomes part of the literal (`-2147483648` is an
//! `integer`), as Postgres's `doNegate` does.

pub(crate) use super::ast::{Ast, AstKind, BinOp, Func, UnOp};
use super::lexer::{Tok, Token, tokenize};
use super::types::SqlType;
use super::{ExprError, ExprErrorKind};

const OR: u8 = 1;
const AND: u8 = 2;
const NOT: u8 = 3;
const IS: u8 = 4;
const CMP: u8 = 5;
const MISC: u8 = 6; // BETWEEN IN LIKE ILIKE SIMILAR
const OTHER_OP: u8 = 7;
const ADD: u8 = 8;
const MUL: u8 = 9;
const POW: u8 = 10;
const UNARY: u8 = 11;
const CAST: u8 = 12;

/// Parses a whole expression.
pub(crate) fn parse(text: &str) -> Result<Ast, ExprError> {
    let tokens = tokenize(text)?;
    let mut p = Parser { tokens, i: 0 };
    let ast = p.expr(0)?;
    match p.peek() {
        Tok::Eof => Ok(ast),
        _ => Err(p.expected("an operator or the end of the expression")),
    }
}

struct Parser {
    tokens: Vec<Token>,
    i: usize,
}

/// How an operator token continues an expression.
enum Continue {
    Binary(BinOp, u8),
    And,
    Or,
    Is,
    IsNullWord(bool),
    Cast,
    Unsupported(String, u8),
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.i.min(self.tokens.len() - 1)].kind
    }

    fn peek_at(&self, k: usize) -> &Tok {
        &self.tokens[(self.i + k).min(self.tokens.len() - 1)].kind
    }

    fn pos(&self) -> usize {
        self.tokens[self.i.min(self.tokens.len() - 1)].pos
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens[self.i.min(self.tokens.len() - 1)].clone();
        if self.i < self.tokens.len() {
            self.i += 1;
        }
        t
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(word))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let yes = self.is_word(word);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn expected(&self, what: &str) -> ExprError {
        ExprError::new(
            self.pos(),
            ExprErrorKind::Syntax {
                expected: what.to_owned(),
                found: self.peek().describe(),
            },
        )
    }

    fn expect_word(&mut self, word: &str) -> Result<(), ExprError> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.expected(&word.to_ascii_uppercase()))
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<(), ExprError> {
        if *self.peek() == tok {
            self.i += 1;
            Ok(())
        } else {
            Err(self.expected(&tok.describe()))
        }
    }

    fn unsupported(&self, what: String) -> ExprError {
        ExprError::new(self.pos(), ExprErrorKind::Unsupported(what))
    }

    /// What the next token does after an operand, if it continues the expression.
    fn continuation(&self) -> Option<Continue> {
        Some(match self.peek() {
            Tok::Op(op) => match BinOp::from_symbol(op) {
                Some(b) => {
                    let level = match b {
                        BinOp::Add | BinOp::Sub => ADD,
                        BinOp::Mul | BinOp::Div | BinOp::Mod => MUL,
                        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                            CMP
                        }
                        _ => OTHER_OP,
                    };
                    Continue::Binary(b, level)
                }
                None if op == "^" => Continue::Unsupported("the ^ operator".to_owned(), POW),
                None => Continue::Unsupported(format!("the operator {op}"), OTHER_OP),
            },
            Tok::Cast => Continue::Cast,
            Tok::Word(w) => match w.to_ascii_lowercase().as_str() {
                "and" => Continue::And,
                "or" => Continue::Or,
                "is" => Continue::Is,
                "isnull" => Continue::IsNullWord(false),
                "notnull" => Continue::IsNullWord(true),
                kw @ ("between" | "in" | "like" | "ilike" | "similar" | "not") => {
                    Continue::Unsupported(kw.to_ascii_uppercase(), MISC)
                }
                kw @ ("collate" | "at") => Continue::Unsupported(kw.to_ascii_uppercase(), UNARY),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn expr(&mut self, min: u8) -> Result<Ast, ExprError> {
        let mut lhs = self.prefix()?;
        // The level of the previous operator if it was a non-associative infix one.
        let mut nonassoc: Option<u8> = None;
        while let Some(cont) = self.continuation() {
            let level = match &cont {
                Continue::Binary(_, level) | Continue::Unsupported(_, level) => *level,
                Continue::And => AND,
                Continue::Or => OR,
                Continue::Is | Continue::IsNullWord(_) => IS,
                Continue::Cast => CAST,
            };
            if level < min {
                break;
            }
            if nonassoc == Some(level) {
                return Err(self.expected("an operator that can follow this comparison"));
            }
            let pos = self.pos();
            nonassoc = None;
            lhs = match cont {
                Continue::Unsupported(what, _) => return Err(self.unsupported(what)),
                Continue::Binary(op, level) => {
                    self.bump();
                    let rhs = self.expr(level + 1)?;
                    if level == CMP {
                        nonassoc = Some(CMP);
                    }
                    node(pos, AstKind::Binary(op, Box::new(lhs), Box::new(rhs)))
                }
                Continue::And => {
                    self.bump();
                    let rhs = self.expr(AND + 1)?;
                    node(pos, AstKind::And(Box::new(lhs), Box::new(rhs)))
                }
                Continue::Or => {
                    self.bump();
                    let rhs = self.expr(OR + 1)?;
                    node(pos, AstKind::Or(Box::new(lhs), Box::new(rhs)))
                }
                Continue::IsNullWord(negated) => {
                    self.bump();
                    node(
                        pos,
                        AstKind::IsNull {
                            arg: Box::new(lhs),
                            negated,
                        },
                    )
                }
                Continue::Is => {
                    self.bump();
                    let (ast, infix) = self.is_tail(pos, lhs)?;
                    if infix {
                        nonassoc = Some(IS);
                    }
                    ast
                }
                Continue::Cast => {
                    self.bump();
                    let ty = self.type_name()?;
                    node(pos, AstKind::Cast(Box::new(lhs), ty))
                }
            };
        }
        Ok(lhs)
    }

    /// After `x IS`: returns the node and whether it was the infix `IS DISTINCT FROM`.
    fn is_tail(&mut self, pos: usize, lhs: Ast) -> Result<(Ast, bool), ExprError> {
        let negated = self.eat_word("not");
        let arg = Box::new(lhs);
        let kind = if self.eat_word("null") {
            AstKind::IsNull { arg, negated }
        } else if self.eat_word("true") {
            AstKind::IsBool {
                arg,
                value: Some(true),
                negated,
            }
        } else if self.eat_word("false") {
            AstKind::IsBool {
                arg,
                value: Some(false),
                negated,
            }
        } else if self.eat_word("unknown") {
            AstKind::IsBool {
                arg,
                value: None,
                negated,
            }
        } else if self.eat_word("distinct") {
            self.expect_word("from")?;
            let r = self.expr(IS + 1)?;
            return Ok((
                node(
                    pos,
                    AstKind::IsDistinct {
                        l: arg,
                        r: Box::new(r),
                        negated,
                    },
                ),
                true,
            ));
        } else {
            return Err(self.expected("NULL, TRUE, FALSE, UNKNOWN or DISTINCT FROM after IS"));
        };
        Ok((node(pos, kind), false))
    }

    fn prefix(&mut self) -> Result<Ast, ExprError> {
        let pos = self.pos();
        let tok = self.peek().clone();
        match tok {
            Tok::Op(op) => {
                self.bump();
                match op.as_str() {
                    "-" => {
                        let arg = self.expr(UNARY)?;
                        Ok(match arg.kind {
                            AstKind::Number(n) => node(pos, AstKind::Number(negate_literal(&n))),
                            _ => node(pos, AstKind::Unary(UnOp::Neg, Box::new(arg))),
                        })
                    }
                    "+" => {
                        let arg = self.expr(UNARY)?;
                        Ok(node(pos, AstKind::Unary(UnOp::Plus, Box::new(arg))))
                    }
                    "~" => {
                        let arg = self.expr(OTHER_OP + 1)?;
                        Ok(node(pos, AstKind::Unary(UnOp::BitNot, Box::new(arg))))
                    }
                    other => Err(ExprError::new(
                        pos,
                        ExprErrorKind::Unsupported(format!("the prefix operator {other}")),
                    )),
                }
            }
            Tok::Column(name) => {
                self.bump();
                Ok(node(pos, AstKind::Column(name)))
            }
            Tok::Integer(n) | Tok::Decimal(n) => {
                self.bump();
                Ok(node(pos, AstKind::Number(n)))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(node(pos, AstKind::Str(s)))
            }
            Tok::LParen => {
                self.bump();
                let inner = self.expr(0)?;
                self.expect(Tok::RParen)?;
                Ok(inner)
            }
            Tok::Word(w) => self.word(pos, &w),
            Tok::RParen | Tok::Comma | Tok::Cast | Tok::Eof => Err(self.expected("an expression")),
        }
    }

    fn word(&mut self, pos: usize, w: &str) -> Result<Ast, ExprError> {
        let lower = w.to_ascii_lowercase();
        match lower.as_str() {
            "true" | "false" | "null" => {
                self.bump();
                Ok(node(
                    pos,
                    match lower.as_str() {
                        "true" => AstKind::Bool(true),
                        "false" => AstKind::Bool(false),
                        _ => AstKind::Null,
                    },
                ))
            }
            "not" => {
                self.bump();
                let arg = self.expr(NOT + 1)?;
                Ok(node(pos, AstKind::Not(Box::new(arg))))
            }
            "case" => {
                self.bump();
                self.case(pos)
            }
            "cast" => {
                self.bump();
                self.expect(Tok::LParen)?;
                let arg = self.expr(0)?;
                self.expect_word("as")?;
                let ty = self.type_name()?;
                self.expect(Tok::RParen)?;
                Ok(node(pos, AstKind::Cast(Box::new(arg), ty)))
            }
            _ if *self.peek_at(1) == Tok::LParen => {
                self.bump();
                self.bump();
                self.call(pos, &lower)
            }
            _ => {
                // `date '2024-01-01'`: a typed literal.
                let save = self.i;
                if let Ok(ty) = self.type_name()
                    && let Tok::Str(s) = self.peek().clone()
                {
                    let lit_pos = self.pos();
                    self.bump();
                    return Ok(node(
                        pos,
                        AstKind::Cast(Box::new(node(lit_pos, AstKind::Str(s))), ty),
                    ));
                }
                self.i = save;
                Err(ExprError::new(
                    pos,
                    ExprErrorKind::Syntax {
                        expected: "an expression (columns are written {column})".to_owned(),
                        found: format!("\"{w}\""),
                    },
                ))
            }
        }
    }

    fn call(&mut self, pos: usize, name: &str) -> Result<Ast, ExprError> {
        match name {
            "extract" => {
                let field = match self.peek().clone() {
                    Tok::Word(f) | Tok::Str(f) => f,
                    _ => return Err(self.expected("a field name such as EPOCH")),
                };
                if !field.eq_ignore_ascii_case("epoch") {
                    return Err(
                        self.unsupported(format!("extract({field} …): only EPOCH is supported"))
                    );
                }
                self.bump();
                self.expect_word("from")?;
                let arg = self.expr(0)?;
                self.expect(Tok::RParen)?;
                Ok(node(pos, AstKind::ExtractEpoch(Box::new(arg))))
            }
            "date_part" => {
                match self.peek().clone() {
                    Tok::Str(f) if f.eq_ignore_ascii_case("epoch") => {}
                    Tok::Str(f) => {
                        return Err(self.unsupported(format!(
                            "date_part('{f}', …): only 'epoch' is supported"
                        )));
                    }
                    _ => return Err(self.expected("'epoch'")),
                }
                self.bump();
                self.expect(Tok::Comma)?;
                let arg = self.expr(0)?;
                self.expect(Tok::RParen)?;
                Ok(node(pos, AstKind::DatePartEpoch(Box::new(arg))))
            }
            "greatest" | "least" | "coalesce" | "nullif" => {
                let func = match name {
                    "greatest" => Func::Greatest,
                    "least" => Func::Least,
                    "coalesce" => Func::Coalesce,
                    _ => Func::NullIf,
                };
                let mut args = vec![self.expr(0)?];
                while *self.peek() == Tok::Comma {
                    self.bump();
                    args.push(self.expr(0)?);
                }
                if func == Func::NullIf && args.len() != 2 {
                    return Err(ExprError::new(
                        pos,
                        ExprErrorKind::Syntax {
                            expected: "NULLIF with exactly two arguments".to_owned(),
                            found: format!("{} arguments", args.len()),
                        },
                    ));
                }
                self.expect(Tok::RParen)?;
                Ok(node(pos, AstKind::Call(func, args)))
            }
            other => Err(ExprError::new(
                pos,
                ExprErrorKind::UnknownFunction(other.to_owned()),
            )),
        }
    }

    fn case(&mut self, pos: usize) -> Result<Ast, ExprError> {
        let operand = if self.is_word("when") {
            None
        } else {
            Some(Box::new(self.expr(0)?))
        };
        let mut whens = Vec::new();
        while self.eat_word("when") {
            let cond = self.expr(0)?;
            self.expect_word("then")?;
            let result = self.expr(0)?;
            whens.push((cond, result));
        }
        if whens.is_empty() {
            return Err(self.expected("WHEN"));
        }
        let default = if self.eat_word("else") {
            Some(Box::new(self.expr(0)?))
        } else {
            None
        };
        self.expect_word("end")?;
        Ok(node(
            pos,
            AstKind::Case {
                operand,
                whens,
                default,
            },
        ))
    }

    /// A type name after `::` or `AS`.
    fn type_name(&mut self) -> Result<SqlType, ExprError> {
        let pos = self.pos();
        let Tok::Word(w) = self.peek().clone() else {
            return Err(self.expected("a type name"));
        };
        self.bump();
        let ty = match w.to_ascii_lowercase().as_str() {
            "bigint" | "int8" => SqlType::Int8,
            "int" | "integer" | "int4" => SqlType::Int4,
            "smallint" | "int2" => SqlType::Int2,
            "numeric" | "decimal" => SqlType::Numeric,
            "real" | "float4" => SqlType::Float4,
            "float8" | "float" => SqlType::Float8,
            "double" => {
                self.expect_word("precision")?;
                SqlType::Float8
            }
            "text" => SqlType::Text,
            "varchar" => SqlType::Varchar,
            "character" if self.eat_word("varying") => SqlType::Varchar,
            "boolean" | "bool" => SqlType::Bool,
            "date" => SqlType::Date,
            "timestamptz" => SqlType::TimestampTz,
            "timestamp" => {
                if self.eat_word("with") {
                    self.expect_word("time")?;
                    self.expect_word("zone")?;
                    SqlType::TimestampTz
                } else if self.eat_word("without") {
                    self.expect_word("time")?;
                    self.expect_word("zone")?;
                    SqlType::Timestamp
                } else {
                    SqlType::Timestamp
                }
            }
            _ => {
                return Err(ExprError::new(pos, ExprErrorKind::UnknownType(w)));
            }
        };
        if *self.peek() == Tok::LParen {
            return Err(
                self.unsupported("type modifiers such as numeric(10,2) or varchar(n)".to_owned())
            );
        }
        Ok(ty)
    }
}

fn node(pos: usize, kind: AstKind) -> Ast {
    Ast { pos, kind }
}

/// `doNegate`: `-` before a number literal becomes part of it (twice cancels).
fn negate_literal(n: &str) -> String {
    match n.strip_prefix('-') {
        Some(rest) => rest.to_owned(),
        None => format!("-{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fully parenthesised rendering, to check grouping.
    fn show(a: &Ast) -> String {
        match &a.kind {
            AstKind::Column(c) => format!("{{{c}}}"),
            AstKind::Number(n) => n.clone(),
            AstKind::Str(s) => format!("'{s}'"),
            AstKind::Bool(b) => b.to_string(),
            AstKind::Null => "null".into(),
            AstKind::Unary(op, x) => format!("({op:?} {})", show(x)),
            AstKind::Binary(op, l, r) => format!("({} {} {})", show(l), op.symbol(), show(r)),
            AstKind::And(l, r) => format!("({} and {})", show(l), show(r)),
            AstKind::Or(l, r) => format!("({} or {})", show(l), show(r)),
            AstKind::Not(x) => format!("(not {})", show(x)),
            AstKind::IsNull { arg, negated } => format!(
                "({} is{} null)",
                show(arg),
                if *negated { " not" } else { "" }
            ),
            AstKind::IsBool {
                arg,
                value,
                negated,
            } => {
                format!(
                    "({} is{} {value:?})",
                    show(arg),
                    if *negated { " not" } else { "" }
                )
            }
            AstKind::IsDistinct { l, r, negated } => {
                format!(
                    "({} is{} distinct {})",
                    show(l),
                    if *negated { " not" } else { "" },
                    show(r)
                )
            }
            AstKind::Call(f, args) => format!(
                "{f:?}({})",
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            AstKind::ExtractEpoch(x) => format!("epoch({})", show(x)),
            AstKind::DatePartEpoch(x) => format!("date_part_epoch({})", show(x)),
            AstKind::Case {
                operand,
                whens,
                default,
            } => {
                let mut s = "case".to_owned();
                if let Some(o) = operand {
                    s += &format!(" {}", show(o));
                }
                for (c, r) in whens {
                    s += &format!(" when {} then {}", show(c), show(r));
                }
                if let Some(d) = default {
                    s += &format!(" else {}", show(d));
                }
                s + " end"
            }
            AstKind::Cast(x, ty) => format!("({})::{}", show(x), ty.name()),
        }
    }

    fn p(text: &str) -> String {
        show(&parse(text).unwrap_or_else(|e| panic!("{text}: {e}")))
    }

    #[test]
    fn precedence_matches_postgres() {
        assert_eq!(p("~5+1"), "(BitNot (5 + 1))");
        assert_eq!(p("~5&1"), "((BitNot 5) & 1)");
        assert_eq!(p("- 5 & 1"), "(-5 & 1)");
        assert_eq!(p("-{a} & 1"), "((Neg {a}) & 1)");
        assert_eq!(p("1 is null is null"), "((1 is null) is null)");
        assert_eq!(
            p("null is distinct from 1 = 2"),
            "(null is distinct (1 = 2))"
        );
        assert_eq!(p("not 1 = 2 is null"), "(not ((1 = 2) is null))");
        assert_eq!(p("not true and false"), "((not true) and false)");
        assert_eq!(p("true or true and false"), "(true or (true and false))");
        assert_eq!(p("2 * 3 % 4"), "((2 * 3) % 4)");
        assert_eq!(p("1 + 2 << 1"), "((1 + 2) << 1)");
        assert_eq!(p("1 << 1 + 2"), "(1 << (1 + 2))");
        assert_eq!(p("5 # 3 & 1"), "((5 # 3) & 1)");
        assert_eq!(p("1 is not null = true"), "((1 is not null) = true)");
        assert_eq!(p("-1::int2"), "(Neg (1)::smallint)");
        assert_eq!(p("- -5"), "5");
        assert_eq!(p("-(-2147483648)"), "2147483648");
        assert_eq!(p("{a} isnull"), "({a} is null)");
        assert_eq!(
            p("({flags} & (1 << 13)) != 0 AND ({flags} & (1 << 2)) = 0"),
            "((({flags} & (1 << 13)) <> 0) and (({flags} & (1 << 2)) = 0))"
        );
        assert_eq!(
            p("({attributes} >> 10) & 1 = 0"),
            "((({attributes} >> 10) & 1) = 0)"
        );
        assert_eq!(
            p("extract(epoch from {publishedAt})::bigint"),
            "(epoch({publishedAt}))::bigint"
        );
        assert_eq!(
            p("1 + 2 = 3 and not {a} or {b}"),
            "((((1 + 2) = 3) and (not {a})) or {b})"
        );
        assert_eq!(p("{a} = not {b}"), "({a} = (not {b}))");
        assert_eq!(p("2 * ~ 3 + 1"), "(2 * (BitNot (3 + 1)))");
    }

    #[test]
    fn functions_case_and_casts() {
        assert_eq!(p("GREATEST({a}, {b})"), "Greatest({a}, {b})");
        assert_eq!(p("coalesce({a}, 0)"), "Coalesce({a}, 0)");
        assert_eq!(
            p("CAST({a} AS double precision)"),
            "({a})::double precision"
        );
        assert_eq!(
            p("{a}::timestamp with time zone"),
            "({a})::timestamp with time zone"
        );
        assert_eq!(p("date '2024-01-01'"), "('2024-01-01')::date");
        assert_eq!(
            p("CASE {a} WHEN 1 THEN 'x' WHEN 2 THEN 'y' ELSE 'z' END"),
            "case {a} when 1 then 'x' when 2 then 'y' else 'z' end"
        );
        assert_eq!(p("case when {a} then 1 end"), "case when {a} then 1 end");
        assert_eq!(p("date_part('EPOCH', {t})"), "date_part_epoch({t})");
        assert_eq!(
            p("{a} is not distinct from {b}"),
            "({a} is not distinct {b})"
        );
        assert_eq!(p("{a} IS NOT TRUE"), "({a} is not Some(true))");
    }

    fn err(text: &str) -> (usize, String) {
        let e = parse(text).unwrap_err();
        (e.offset, e.kind.to_string())
    }

    #[test]
    fn errors_name_the_position_and_what_was_expected() {
        assert_eq!(err("1 = 1 = true").0, 6);
        assert_eq!(err("1 < 2 < 3").0, 6);
        assert_eq!(err("1 is distinct from 2 is null").0, 21);
        assert_eq!(err("(1 + 2").0, 6);
        assert!(err("(1 + 2").1.contains("\")\""), "{}", err("(1 + 2").1);
        assert_eq!(err("1 +").0, 3);
        assert_eq!(err("{a} + b").0, 6);
        assert_eq!(err("abs({a})").0, 0);
        assert_eq!(err("{a}::money").0, 5);
        assert_eq!(err("{a}::numeric(10,2)").0, 12);
        assert_eq!(err("{a} ^ 2").0, 4);
        assert_eq!(err("5 %- 2").0, 2);
        assert_eq!(err("{a} in (1, 2)").0, 4);
        assert_eq!(err("extract(year from {a})").0, 8);
        assert_eq!(err("nullif({a})").0, 0);
        assert_eq!(err("case end").0, 5);
        assert_eq!(err("1 2").0, 2);
        assert_eq!(err("").0, 0);
    }
}
