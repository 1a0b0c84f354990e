//! The filter grammar shared by queries and `queryOpSet`.
//!
//! ```text
//! filter  := or
//! or      := and ( OR and )*
//! and     := not ( AND not )*
//! not     := NOT not | '(' or ')' | clause
//! clause  := field (eq | gt | gte | lt | lte) value | field in '[' value (',' value)* ','? ']'
//! value   := integer | decimal | true | false | null | 'quoted' | "quoted" | bare-word
//! ```
//! Keywords are case-insensitive. Quoted strings take `\"`, `\'` and `\\` escapes. A bare word
//! that reads as an integer or decimal is a number; any other bare word is a string, so
//! `type eq image`, `postId eq 123` and `modelVersionIds in [101, 102]` parse as written.
//! Errors carry the byte position where parsing stopped.

use std::fmt;
use std::str::FromStr;

use crate::schema::Schema;

/// Nesting deeper than this is refused (it protects the parser's stack from hostile input).
pub const MAX_DEPTH: usize = 64;
/// Longest filter text, in bytes.
pub const MAX_FILTER_BYTES: usize = 64 << 10;
/// Most clauses (`field op value` or `field in [...]`) in one filter.
pub const MAX_CLAUSES: usize = 1024;
/// Most values in all the `in` lists of one filter together.
pub const MAX_IN_VALUES: usize = 10_000;

/// A comparison operator of a clause.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `eq`: the value equals.
    Eq,
    /// `gt`: greater than.
    Gt,
    /// `gte`: greater than or equal.
    Gte,
    /// `lt`: less than.
    Lt,
    /// `lte`: less than or equal.
    Lte,
}

impl CmpOp {
    fn word(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Gt => "gt",
            CmpOp::Gte => "gte",
            CmpOp::Lt => "lt",
            CmpOp::Lte => "lte",
        }
    }
}

/// A value written in a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer, with the text it was written as.
    Int {
        /// The number.
        value: i64,
        /// As written.
        text: String,
    },
    /// A number that is not an `i64`, with the text it was written as.
    Decimal {
        /// The number.
        value: f64,
        /// As written.
        text: String,
    },
    /// A quoted string or a bare word.
    Text(String),
}

impl Literal {
    /// An integer literal.
    pub fn int(value: i64) -> Literal {
        Literal::Int {
            value,
            text: value.to_string(),
        }
    }

    /// The literal a bare word reads as (what the parser makes of it).
    pub fn classify(word: &str) -> Literal {
        match word.to_ascii_lowercase().as_str() {
            "null" => return Literal::Null,
            "true" => return Literal::Bool(true),
            "false" => return Literal::Bool(false),
            _ => {}
        }
        let b = word.as_bytes();
        let numeric = match b {
            [b'-' | b'+', c, ..] => c.is_ascii_digit() || *c == b'.',
            [c, ..] => c.is_ascii_digit() || *c == b'.',
            [] => false,
        };
        if numeric {
            if let Ok(value) = word.parse::<i64>() {
                return Literal::Int {
                    value,
                    text: word.to_string(),
                };
            }
            if let Ok(value) = word.parse::<f64>() {
                return Literal::Decimal {
                    value,
                    text: word.to_string(),
                };
            }
        }
        Literal::Text(word.to_string())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int { text, .. } | Literal::Decimal { text, .. } => f.write_str(text),
            Literal::Text(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
        }
    }
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `field op value`.
    Cmp {
        /// Field name.
        field: String,
        /// Operator.
        op: CmpOp,
        /// Operand.
        value: Literal,
    },
    /// `field in [values]`.
    In {
        /// Field name.
        field: String,
        /// Any of these.
        values: Vec<Literal>,
    },
    /// Both.
    And(Box<Filter>, Box<Filter>),
    /// Either.
    Or(Box<Filter>, Box<Filter>),
    /// Live slots not matching.
    Not(Box<Filter>),
}

impl Filter {
    /// Parses a filter (see the module note for the grammar).
    ///
    /// Limits ([`MAX_FILTER_BYTES`], [`MAX_CLAUSES`], [`MAX_IN_VALUES`], [`MAX_DEPTH`]) bound
    /// the work and the stack any filter can take; chains of `AND`/`OR` are built as balanced
    /// trees, so the tree is never deeper than a few times the nesting of the text.
    pub fn parse(text: &str) -> Result<Filter, ParseError> {
        if text.len() > MAX_FILTER_BYTES {
            return Err(ParseError {
                pos: MAX_FILTER_BYTES,
                kind: ParseErrorKind::TooLong { len: text.len() },
            });
        }
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            end: text.len(),
            depth: 0,
            clauses: 0,
            values: 0,
        };
        let f = p.or()?;
        match p.peek() {
            None => Ok(f),
            Some(t) => Err(p.unexpected(t.clone(), "AND, OR or the end of the filter")),
        }
    }

    /// The field names the filter mentions, in order of appearance (with repeats).
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.walk(&mut |f| out.push(f));
        out
    }

    fn walk<'a>(&'a self, visit: &mut impl FnMut(&'a str)) {
        match self {
            Filter::Cmp { field, .. } | Filter::In { field, .. } => visit(field),
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.walk(visit);
                b.walk(visit);
            }
            Filter::Not(a) => a.walk(visit),
        }
    }

    /// Checks that every field the filter names exists in `schema`.
    pub fn check(&self, schema: &Schema) -> Result<(), FilterError> {
        match self
            .fields()
            .into_iter()
            .find(|f| schema.field(f).is_unknown())
        {
            Some(f) => Err(FilterError::UnknownField(f.to_string())),
            None => Ok(()),
        }
    }
}

impl FromStr for Filter {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Cmp { field, op, value } => write!(f, "{field} {} {value}", op.word()),
            Filter::In { field, values } => {
                write!(f, "{field} in [")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Filter::And(a, b) => write!(f, "({a} AND {b})"),
            Filter::Or(a, b) => write!(f, "({a} OR {b})"),
            Filter::Not(a) => write!(f, "NOT ({a})"),
        }
    }
}

/// Why a filter did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter does not parse at byte {pos}: {kind}")]
pub struct ParseError {
    /// Byte offset in the filter text.
    pub pos: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// The kinds of filter parse errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The text ended early.
    #[error("unexpected end, expected {expected}")]
    UnexpectedEnd {
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A token that does not fit.
    #[error("unexpected {found:?}, expected {expected}")]
    Unexpected {
        /// The token found.
        found: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A quoted string without its closing quote.
    #[error("unterminated string")]
    UnterminatedString,
    /// A backslash followed by something other than `"`, `'` or `\`.
    #[error("unknown escape \\{0}")]
    BadEscape(char),
    /// Parentheses or NOTs nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// The text is longer than [`MAX_FILTER_BYTES`].
    #[error("the filter is {len} bytes long; the limit is {MAX_FILTER_BYTES}")]
    TooLong {
        /// The text's length.
        len: usize,
    },
    /// More than [`MAX_CLAUSES`] clauses.
    #[error("more than {MAX_CLAUSES} clauses")]
    TooManyClauses,
    /// More than [`MAX_IN_VALUES`] values in `in` lists.
    #[error("more than {MAX_IN_VALUES} values in in-lists")]
    TooManyValues,
}

/// A filter that cannot be evaluated against the index's schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// The text does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The filter names a field the index does not have.
    #[error("unknown field {0:?} in filter")]
    UnknownField(String),
    /// A value the field cannot be compared with (e.g. text against a sort field).
    #[error("field {field:?} cannot be compared with {value}: {reason}")]
    BadValue {
        /// The field.
        field: String,
        /// The value as written.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// The evaluation passed the query's deadline (and was abandoned).
    #[error("the query ran past its deadline")]
    Deadline,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Open,
    Close,
    LBracket,
    RBracket,
    Comma,
    Word(String),
    Quoted(String),
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::LBracket => "[".into(),
            Tok::RBracket => "]".into(),
            Tok::Comma => ",".into(),
            Tok::Word(w) => w.clone(),
            Tok::Quoted(s) => format!("{:?}", s),
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some(&(pos, c)) = it.peek() {
        let single = match c {
            '(' => Some(Tok::Open),
            ')' => Some(Tok::Close),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(t) = single {
            it.next();
            out.push((pos, t));
        } else if c.is_whitespace() {
            it.next();
        } else if c == '"' || c == '\'' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    None => {
                        return Err(ParseError {
                            pos,
                            kind: ParseErrorKind::UnterminatedString,
                        });
                    }
                    Some((_, q)) if q == c => break,
                    Some((at, '\\')) => match it.next() {
                        Some((_, e @ ('"' | '\'' | '\\'))) => s.push(e),
                        Some((_, e)) => {
                            return Err(ParseError {
                                pos: at,
                                kind: ParseErrorKind::BadEscape(e),
                            });
                        }
                        None => {
                            return Err(ParseError {
                                pos,
                                kind: ParseErrorKind::UnterminatedString,
                            });
                        }
                    },
                    Some((_, ch)) => s.push(ch),
                }
            }
            out.push((pos, Tok::Quoted(s)));
        } else {
            let mut w = String::new();
            while let Some(&(_, ch)) = it.peek() {
                if ch.is_whitespace() || "()[],\"'".contains(ch) {
                    break;
                }
                w.push(ch);
                it.next();
            }
            out.push((pos, Tok::Word(w)));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    at: usize,
    end: usize,
    depth: usize,
    clauses: usize,
    values: usize,
}

/// `a op b op c …` as a balanced tree (the first half on the left), so that a long chain
/// costs logarithmic depth; two terms give the usual `a op b`.
fn balanced(mut terms: Vec<Filter>, op: &dyn Fn(Box<Filter>, Box<Filter>) -> Filter) -> Filter {
    if terms.len() == 1 {
        return terms.pop().expect("one term");
    }
    let right = terms.split_off(terms.len().div_ceil(2));
    op(Box::new(balanced(terms, op)), Box::new(balanced(right, op)))
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(p, _)| *p)
    }

    fn unexpected(&self, t: Tok, expected: &'static str) -> ParseError {
        ParseError {
            pos: self.pos(),
            kind: ParseErrorKind::Unexpected {
                found: t.text(),
                expected,
            },
        }
    }

    fn next(&mut self, expected: &'static str) -> Result<Tok, ParseError> {
        match self.tokens.get(self.at) {
            Some((_, t)) => {
                self.at += 1;
                Ok(t.clone())
            }
            None => Err(ParseError {
                pos: self.end,
                kind: ParseErrorKind::UnexpectedEnd { expected },
            }),
        }
    }

    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError {
                pos: self.pos(),
                kind: ParseErrorKind::TooDeep,
            });
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, ParseError> {
        let mut terms = vec![self.and()?];
        while self.peek().is_some_and(|t| t.keyword("or")) {
            self.at += 1;
            terms.push(self.and()?);
        }
        Ok(balanced(terms, &Filter::Or))
    }

    fn and(&mut self) -> Result<Filter, ParseError> {
        let mut terms = vec![self.not()?];
        while self.peek().is_some_and(|t| t.keyword("and")) {
            self.at += 1;
            terms.push(self.not()?);
        }
        Ok(balanced(terms, &Filter::And))
    }

    /// Counts a clause (and its `in` values) against the limits.
    fn count(&mut self, values: usize) -> Result<(), ParseError> {
        self.clauses += 1;
        self.values += values;
        let kind = if self.clauses > MAX_CLAUSES {
            ParseErrorKind::TooManyClauses
        } else if self.values > MAX_IN_VALUES {
            ParseErrorKind::TooManyValues
        } else {
            return Ok(());
        };
        Err(ParseError {
            pos: self.pos(),
            kind,
        })
    }

    fn not(&mut self) -> Result<Filter, ParseError> {
        const EXPECTED: &str = "NOT, '(' or a field name";
        match self.peek() {
            Some(t) if t.keyword("not") => {
                self.at += 1;
                self.deeper()?;
                let inner = self.not()?;
                self.depth -= 1;
                Ok(Filter::Not(Box::new(inner)))
            }
            Some(Tok::Open) => {
                self.at += 1;
                self.deeper()?;
                let inner = self.or()?;
                self.depth -= 1;
                match self.next("')'")? {
                    Tok::Close => Ok(inner),
                    t => {
                        self.at -= 1;
                        Err(self.unexpected(t, "AND, OR or ')'"))
                    }
                }
            }
            Some(Tok::Word(_)) => self.clause(),
            Some(t) => Err(self.unexpected(t.clone(), EXPECTED)),
            None => Err(ParseError {
                pos: self.end,
                kind: ParseErrorKind::UnexpectedEnd { expected: EXPECTED },
            }),
        }
    }

    fn clause(&mut self) -> Result<Filter, ParseError> {
        let Tok::Word(field) = self.next("a field name")? else {
            unreachable!("clause() is entered on a word")
        };
        const OPS: &str = "eq, in, gt, gte, lt or lte";
        let op = self.next(OPS)?;
        let op = match &op {
            Tok::Word(w) => match w.to_ascii_lowercase().as_str() {
                "eq" => Some(CmpOp::Eq),
                "gt" => Some(CmpOp::Gt),
                "gte" => Some(CmpOp::Gte),
                "lt" => Some(CmpOp::Lt),
                "lte" => Some(CmpOp::Lte),
                "in" => None,
                _ => {
                    self.at -= 1;
                    return Err(self.unexpected(op.clone(), OPS));
                }
            },
            t => {
                self.at -= 1;
                return Err(self.unexpected(t.clone(), OPS));
            }
        };
        match op {
            Some(op) => {
                self.count(0)?;
                Ok(Filter::Cmp {
                    field,
                    op,
                    value: self.value()?,
                })
            }
            None => {
                match self.next("'['")? {
                    Tok::LBracket => {}
                    t => {
                        self.at -= 1;
                        return Err(self.unexpected(t, "'['"));
                    }
                }
                let mut values = Vec::new();
                loop {
                    if self.peek() == Some(&Tok::RBracket) {
                        self.at += 1;
                        break;
                    }
                    values.push(self.value()?);
                    if self.values + values.len() > MAX_IN_VALUES {
                        return Err(ParseError {
                            pos: self.pos(),
                            kind: ParseErrorKind::TooManyValues,
                        });
                    }
                    match self.next("',' or ']'")? {
                        Tok::Comma => {}
                        Tok::RBracket => break,
                        t => {
                            self.at -= 1;
                            return Err(self.unexpected(t, "',' or ']'"));
                        }
                    }
                }
                self.count(values.len())?;
                Ok(Filter::In { field, values })
            }
        }
    }

    fn value(&mut self) -> Result<Literal, ParseError> {
        const EXPECTED: &str = "a value";
        match self.next(EXPECTED)? {
            Tok::Quoted(s) => Ok(Literal::Text(s)),
            Tok::Word(w) => Ok(Literal::classify(&w)),
            t => {
                self.at -= 1;
                Err(self.unexpected(t, EXPECTED))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: &str, op: CmpOp, value: Literal) -> Filter {
        Filter::Cmp {
            field: field.into(),
            op,
            value,
        }
    }

    #[test]
    fn seed_queries_parse_unchanged() {
        assert_eq!(
            Filter::parse("postId eq 123").unwrap(),
            cmp("postId", CmpOp::Eq, Literal::int(123))
        );
        assert_eq!(
            Filter::parse("modelVersionIds in [101, 102]").unwrap(),
            Filter::In {
                field: "modelVersionIds".into(),
                values: vec![Literal::int(101), Literal::int(102)]
            }
        );
        assert_eq!(
            Filter::parse("type eq image AND postId eq 5").unwrap(),
            Filter::And(
                Box::new(cmp("type", CmpOp::Eq, Literal::Text("image".into()))),
                Box::new(cmp("postId", CmpOp::Eq, Literal::int(5)))
            )
        );
    }

    #[test]
    fn precedence_is_not_and_or() {
        let f = Filter::parse("a eq 1 or NOT b eq 2 AnD c eq 3").unwrap();
        let a = cmp("a", CmpOp::Eq, Literal::int(1));
        let b = cmp("b", CmpOp::Eq, Literal::int(2));
        let c = cmp("c", CmpOp::Eq, Literal::int(3));
        assert_eq!(
            f,
            Filter::Or(
                Box::new(a.clone()),
                Box::new(Filter::And(
                    Box::new(Filter::Not(Box::new(b.clone()))),
                    Box::new(c.clone())
                ))
            )
        );
        let g = Filter::parse("(a eq 1 OR b eq 2) AND c eq 3").unwrap();
        assert_eq!(
            g,
            Filter::And(Box::new(Filter::Or(Box::new(a), Box::new(b))), Box::new(c))
        );
    }

    #[test]
    fn values_of_every_form() {
        let v = |s: &str| match Filter::parse(&format!("f eq {s}")).unwrap() {
            Filter::Cmp { value, .. } => value,
            _ => unreachable!(),
        };
        assert_eq!(v("-7"), Literal::int(-7));
        assert_eq!(
            v("2.50"),
            Literal::Decimal {
                value: 2.5,
                text: "2.50".into()
            }
        );
        assert_eq!(v("TRUE"), Literal::Bool(true));
        assert_eq!(v("Null"), Literal::Null);
        assert_eq!(v("'it\\'s'"), Literal::Text("it's".into()));
        assert_eq!(v(r#""a \"b\" \\ c""#), Literal::Text(r#"a "b" \ c"#.into()));
        assert_eq!(v("\"null\""), Literal::Text("null".into()));
        assert_eq!(v("2024-01-01"), Literal::Text("2024-01-01".into()));
        assert_eq!(v("SD_1.5"), Literal::Text("SD_1.5".into()));
        assert_eq!(
            Filter::parse("f in []").unwrap(),
            Filter::In {
                field: "f".into(),
                values: vec![]
            }
        );
        assert!(Filter::parse("f in [1, 2,]").is_ok());
    }

    #[test]
    fn errors_carry_position_and_kind() {
        let e = |s: &str| Filter::parse(s).unwrap_err();
        assert_eq!(
            e("a eq"),
            ParseError {
                pos: 4,
                kind: ParseErrorKind::UnexpectedEnd {
                    expected: "a value"
                }
            }
        );
        assert_eq!(e("a foo 1").pos, 2);
        assert!(matches!(
            e("a foo 1").kind,
            ParseErrorKind::Unexpected { .. }
        ));
        assert_eq!(e("a eq 'x").kind, ParseErrorKind::UnterminatedString);
        assert_eq!(e("a eq 'x\\n'").kind, ParseErrorKind::BadEscape('n'));
        assert_eq!(e("a eq 1 b eq 2").pos, 7);
        assert_eq!(
            e("(a eq 1").kind,
            ParseErrorKind::UnexpectedEnd { expected: "')'" }
        );
        assert_eq!(e("a in 1").pos, 5);
        assert_eq!(
            e("").kind,
            ParseErrorKind::UnexpectedEnd {
                expected: "NOT, '(' or a field name"
            }
        );
        let deep = format!("{}a eq 1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(e(&deep).kind, ParseErrorKind::TooDeep);
        assert_eq!(e(&"NOT ".repeat(100)).kind, ParseErrorKind::TooDeep);
    }

    #[test]
    fn hostile_sizes_are_refused_and_long_chains_stay_shallow() {
        fn depth(f: &Filter) -> usize {
            match f {
                Filter::Cmp { .. } | Filter::In { .. } => 1,
                Filter::And(a, b) | Filter::Or(a, b) => 1 + depth(a).max(depth(b)),
                Filter::Not(a) => 1 + depth(a),
            }
        }
        let chain = |n: usize, op: &str| {
            (0..n)
                .map(|i| format!("a eq {i}"))
                .collect::<Vec<_>>()
                .join(op)
        };
        let f = Filter::parse(&chain(MAX_CLAUSES, " OR ")).unwrap();
        assert_eq!(depth(&f), 11);
        assert_eq!(f.fields().len(), MAX_CLAUSES);
        let f = Filter::parse(&chain(3, " AND ")).unwrap();
        assert!(matches!(f, Filter::And(ref l, _) if matches!(**l, Filter::And(..))));
        let e = |s: &str| Filter::parse(s).unwrap_err().kind;
        assert_eq!(
            e(&chain(MAX_CLAUSES + 1, " or ")),
            ParseErrorKind::TooManyClauses
        );
        assert_eq!(
            e(&format!("f eq '{}'", "x".repeat(MAX_FILTER_BYTES))),
            ParseErrorKind::TooLong {
                len: MAX_FILTER_BYTES + 7
            }
        );
        let list = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert!(Filter::parse(&format!("f in [{}]", list(MAX_IN_VALUES))).is_ok());
        assert_eq!(
            e(&format!("f in [{}]", list(MAX_IN_VALUES + 1))),
            ParseErrorKind::TooManyValues
        );
        assert_eq!(
            e(&format!(
                "f in [{}] or g in [1, 2]",
                list(MAX_IN_VALUES - 1)
            )),
            ParseErrorKind::TooManyValues
        );
        // Fifty thousand ORs: refused by size, not a crash; as many as fit in the size limit
        // are refused by count.
        assert!(matches!(
            e(&chain(50_000, " OR ")),
            ParseErrorKind::TooLong { .. }
        ));
        assert_eq!(
            e(&"a eq 1 OR ".repeat(6000)),
            ParseErrorKind::TooManyClauses
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "a eq 1 OR NOT b eq 'x\"y' AND c in [1, -2.5, null, true, \"w\"]",
            "NOT NOT (a gte 3 AND a lt 9)",
        ] {
            let f = Filter::parse(s).unwrap();
            assert_eq!(Filter::parse(&f.to_string()).unwrap(), f);
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let schema =
            Schema::from_pairs(&[("a", crate::schema::FilterKind::Single)], &[("s", 8)]).unwrap();
        let f = Filter::parse("a eq 1 AND s gt 2 OR zz eq 3").unwrap();
        assert_eq!(f.fields(), vec!["a", "s", "zz"]);
        assert_eq!(
            f.check(&schema),
            Err(FilterError::UnknownField("zz".into()))
        );
    }
}
