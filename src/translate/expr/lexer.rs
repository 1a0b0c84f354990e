//! Tokens of the expression language, cut the way Postgres's lexer (`scan.l`) cuts them.
//!
//! Operators are the longest run of operator characters, stopped before `--` or `/*`; a
//! multi-character operator loses trailing `+`/`-` unless it contains one of
//! `~ ! @ # % ^ & | ` ?` (so `5*-2` is `5 * -2` but `5 %- 2` is the unknown operator `%-`).
//! `!=` is `<>`. Comments (`--`, nested `/* */`) are skipped; adjacent string literals
//! separated by a newline are concatenated.

use super::{ExprError, ExprErrorKind};

/// A token and the byte offset where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub kind: Tok,
    pub pos: usize,
}

/// Token kinds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// `{column}`.
    Column(String),
    /// A bare word: keyword, function or type name (as written).
    Word(String),
    /// An integer literal (digits only).
    Integer(String),
    /// A literal with a point or exponent.
    Decimal(String),
    /// A `'…'` string literal, unescaped.
    Str(String),
    /// An operator (`!=` is reported as `<>`).
    Op(String),
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
    /// `::`.
    Cast,
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token is described in "expected …, found …" errors.
    pub fn describe(&self) -> String {
        match self {
            Tok::Column(c) => format!("{{{c}}}"),
            Tok::Word(w) => format!("\"{w}\""),
            Tok::Integer(s) | Tok::Decimal(s) => format!("number {s}"),
            Tok::Str(_) => "a string literal".to_owned(),
            Tok::Op(op) => format!("\"{op}\""),
            Tok::LParen => "\"(\"".to_owned(),
            Tok::RParen => "\")\"".to_owned(),
            Tok::Comma => "\",\"".to_owned(),
            Tok::Cast => "\"::\"".to_owned(),
            Tok::Eof => "the end of the expression".to_owned(),
        }
    }
}

const OP_CHARS: &[u8] = b"~!@#^&|`?+-*/%<>=";
const NON_SQL_OP_CHARS: &[u8] = b"~!@#^&|`?%";

/// Splits `text` into tokens, ending with [`Tok::Eof`].
#[allow(
    clippy::too_many_lines,
    reason = "one arm per token class, in the order the grammar documents them"
)]
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, ExprError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |pos: usize, kind: ExprErrorKind| Err(ExprError::new(pos, kind));
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() || c == 0x0b {
            i += 1;
            continue;
        }
        if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if b[i..].starts_with(b"/*") {
            i = skip_block_comment(b, i).ok_or(ExprError::new(
                start,
                ExprErrorKind::Syntax {
                    expected: "the end of the comment \"*/\"".to_owned(),
                    found: Tok::Eof.describe(),
                },
            ))?;
            continue;
        }
        let kind = match c {
            b'{' => {
                let close = b[i..].iter().position(|&c| c == b'}').map(|p| p + i);
                let Some(close) = close else {
                    return err(
                        start,
                        syntax("\"}\" closing the column reference", "the end"),
                    );
                };
                let name = &text[i + 1..close];
                if !is_identifier(name) {
                    return err(
                        start,
                        ExprErrorKind::Syntax {
                            expected: "a column name [A-Za-z_][A-Za-z0-9_]* in {…}".to_owned(),
                            found: format!("{{{name}}}"),
                        },
                    );
                }
                i = close + 1;
                Tok::Column(name.to_owned())
            }
            b'\'' => {
                let (s, end) = string_literal(text, i)?;
                i = end;
                Tok::Str(s)
            }
            b'"' => {
                return err(
                    start,
                    ExprErrorKind::Unsupported(
                        "quoted identifiers (write column references as {column})".to_owned(),
                    ),
                );
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                i += 2;
                Tok::Cast
            }
            b'0'..=b'9' => {
                let (tok, end) = number(b, i);
                i = end;
                tok
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let (tok, end) = number(b, i);
                i = end;
                tok
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                Tok::Word(text[start..i].to_owned())
            }
            c if OP_CHARS.contains(&c) => {
                let len = operator_len(&b[i..]);
                i += len;
                let op = &text[start..i];
                Tok::Op(if op == "!=" {
                    "<>".to_owned()
                } else {
                    op.to_owned()
                })
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return err(
                    start,
                    ExprErrorKind::Syntax {
                        expected: "an expression".to_owned(),
                        found: format!("{ch:?}"),
                    },
                );
            }
        };
        out.push(Token { kind, pos: start });
    }
    out.push(Token {
        kind: Tok::Eof,
        pos: b.len(),
    });
    Ok(out)
}

fn syntax(expected: &str, found: &str) -> ExprErrorKind {
    ExprErrorKind::Syntax {
        expected: expected.to_owned(),
        found: found.to_owned(),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.bytes();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The end of a (nested) block comment starting at `i`, or `None` if it is not closed.
fn skip_block_comment(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// A `'…'` literal starting at `start` (with `''` escapes and newline-separated
/// continuation literals); returns its value and the offset after it.
fn string_literal(text: &str, start: usize) -> Result<(String, usize), ExprError> {
    let b = text.as_bytes();
    let mut value = String::new();
    let mut i = start;
    loop {
        // b[i] is an opening quote.
        i += 1;
        let mut seg = i;
        loop {
            match b.get(i) {
                None => {
                    return Err(ExprError::new(
                        start,
                        syntax("a closing quote for the string literal", "the end"),
                    ));
                }
                Some(b'\'') if b.get(i + 1) == Some(&b'\'') => {
                    value.push_str(&text[seg..=i]);
                    i += 2;
                    seg = i;
                }
                Some(b'\'') => {
                    value.push_str(&text[seg..i]);
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
        // Postgres joins 'a'<whitespace with a newline>'b' into one literal.
        let mut j = i;
        let mut newline = false;
        while j < b.len() && (b[j].is_ascii_whitespace() || b[j] == 0x0b) {
            newline |= b[j] == b'\n' || b[j] == b'\r';
            j += 1;
        }
        if newline && b.get(j) == Some(&b'\'') {
            i = j;
            continue;
        }
        return Ok((value, i));
    }
}

/// A numeric literal at `i`: `digits`, `digits.digits`, `.digits`, with `e[+-]digits`.
fn number(b: &[u8], start: usize) -> (Tok, usize) {
    let mut i = start;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut decimal = false;
    // `1..2` is the integer 1 followed by `..` in Postgres.
    if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
        decimal = true;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            decimal = true;
            i = j;
        }
    }
    let text = String::from_utf8_lossy(&b[start..i]).into_owned();
    let tok = if decimal {
        Tok::Decimal(text)
    } else {
        Tok::Integer(text)
    };
    (tok, i)
}

/// Length of the operator at the start of `b` (which starts with an operator character).
fn operator_len(b: &[u8]) -> usize {
    let mut n = 0;
    while n < b.len() && OP_CHARS.contains(&b[n]) {
        // A comment start ends the operator (it cannot be the first character here).
        if n > 0 && (b[n..].starts_with(b"--") || b[n..].starts_with(b"/*")) {
            break;
        }
        n += 1;
    }
    if n > 1
        && matches!(b[n - 1], b'+' | b'-')
        && !b[..n - 1].iter().any(|c| NON_SQL_OP_CHARS.contains(c))
    {
        while n > 1 && matches!(b[n - 1], b'+' | b'-') {
            n -= 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Tok> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    fn op(s: &str) -> Tok {
        Tok::Op(s.to_owned())
    }

    #[test]
    fn operators_are_cut_like_postgres() {
        assert_eq!(kinds("5*-2")[1..3], [op("*"), op("-")]);
        assert_eq!(kinds("5 %- 2")[1], op("%-"));
        assert_eq!(kinds("5 &- 2")[1], op("&-"));
        assert_eq!(kinds("5 <>- 2")[1..3], [op("<>"), op("-")]);
        assert_eq!(kinds("5 != 2")[1], op("<>"));
        assert_eq!(kinds("5<-1")[1..3], [op("<"), op("-")]);
        assert_eq!(kinds("1 << 2")[1], op("<<"));
        assert_eq!(
            kinds("1 --1\n+ 2"),
            [
                Tok::Integer("1".into()),
                op("+"),
                Tok::Integer("2".into()),
                Tok::Eof
            ]
        );
        assert_eq!(kinds("1 +/* c /* d */ */2").len(), 4);
    }

    #[test]
    fn literals_and_columns() {
        assert_eq!(
            kinds("{a_1}::int 'it''s' 1.5 .5 1e3 1e 2."),
            [
                Tok::Column("a_1".into()),
                Tok::Cast,
                Tok::Word("int".into()),
                Tok::Str("it's".into()),
                Tok::Decimal("1.5".into()),
                Tok::Decimal(".5".into()),
                Tok::Decimal("1e3".into()),
                Tok::Integer("1".into()),
                Tok::Word("e".into()),
                Tok::Decimal("2.".into()),
                Tok::Eof
            ]
        );
        assert_eq!(kinds("'a'\n 'b'")[0], Tok::Str("ab".into()));
        assert_eq!(kinds("'a' 'b'").len(), 3);
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(tokenize("1 + 'abc").unwrap_err().offset, 4);
        assert_eq!(tokenize("{a b}").unwrap_err().offset, 0);
        assert_eq!(tokenize("1 + \"x\"").unwrap_err().offset, 4);
        assert_eq!(tokenize("1 /* x").unwrap_err().offset, 2);
        assert_eq!(tokenize("{x").unwrap_err().offset, 0);
        assert_eq!(tokenize("1 ; 2").unwrap_err().offset, 2);
    }
}
