//! The small languages inside the config: `{column}` placeholders in SQL expressions,
//! `track_fields` items (`column` or `<expression> as <target>`) and fan-out query templates
//! (`field eq {col} AND field in [{a}, {b}]`).
//!
//! Only the structure is checked here; evaluating the SQL expressions is the translator's job.
//! Positions in errors are 1-based character positions in the text as written.

use std::fmt;

/// A problem with the `{column}` placeholders of an expression.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    /// A `{` with no matching `}` before the end or the next `{`.
    #[error("\"{{\" at position {0} is not closed")]
    Unclosed(usize),
    /// A `}` with no `{` before it.
    #[error("\"}}\" at position {0} has no opening \"{{\"")]
    Unopened(usize),
    /// `{}`.
    #[error("empty placeholder \"{{}}\" at position {0}")]
    Empty(usize),
    /// A placeholder whose content is not a plain column name.
    #[error("placeholder {{{name}}} at position {position} is not a plain column name")]
    BadName {
        /// What was between the braces.
        name: String,
        /// Position of the `{`.
        position: usize,
    },
    /// A `'` string literal that does not end.
    #[error("the string literal starting at position {0} is not closed")]
    UnclosedString(usize),
}

/// Why a `track_fields` item is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrackFieldError {
    /// The item is empty.
    #[error("the item is empty")]
    Empty,
    /// No ` as <target>`, and the item is not a plain column name.
    #[error("neither a column name nor `<expression> as <target>`")]
    NotAColumn,
    /// The name after the last ` as ` is not a plain identifier.
    #[error("target {0:?} (after the last ` as `) is not a plain identifier")]
    BadTarget(String),
    /// Nothing before ` as `.
    #[error("the expression before ` as ` is empty")]
    EmptyExpression,
    /// The expression's placeholders are malformed.
    #[error(transparent)]
    Placeholder(#[from] PlaceholderError),
}

/// Why a fan-out query template is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryTemplateError {
    /// The template is empty.
    #[error("the query is empty")]
    Empty,
    /// A clause is not `field eq {col}` or `field in [{col}, …]`.
    #[error(
        "clause {clause} {text:?} is not `<field> eq {{column}}` or `<field> in [{{column}}, …]`"
    )]
    BadClause {
        /// 1-based clause number.
        clause: usize,
        /// The clause as written.
        text: String,
    },
    /// A value is not a single `{column}` placeholder.
    #[error("clause {clause}: value {value:?} is not a {{column}} placeholder")]
    BadValue {
        /// 1-based clause number.
        clause: usize,
        /// The value as written.
        value: String,
    },
}

/// One `track_fields` item: an SQL expression over `{column}` placeholders and the index
/// field it sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackField {
    /// The expression, e.g. `GREATEST({scannedAt}, {createdAt})`; a plain `col` item is `{col}`.
    pub expr: String,
    /// The index field the value goes to.
    pub target: String,
}

impl TrackField {
    /// Parses `col` or `<expression> as <target>` (split at the last case-insensitive `as`
    /// with whitespace on both sides) and checks the expression's placeholders.
    ///
    /// ```
    /// use pgroar::config::TrackField;
    ///
    /// let f = TrackField::parse("GREATEST({scannedAt}, {createdAt}) as existedAt").unwrap();
    /// assert_eq!(f.target, "existedAt");
    /// assert_eq!(f.columns(), ["scannedAt", "createdAt"]);
    /// assert_eq!(TrackField::parse("nsfwLevel").unwrap().expr, "{nsfwLevel}");
    /// ```
    pub fn parse(item: &str) -> Result<TrackField, TrackFieldError> {
        if item.trim().is_empty() {
            return Err(TrackFieldError::Empty);
        }
        let Some((as_start, as_end)) = last_as(item) else {
            let name = item.trim();
            return if is_identifier(name) {
                Ok(TrackField {
                    expr: format!("{{{name}}}"),
                    target: name.to_owned(),
                })
            } else {
                Err(TrackFieldError::NotAColumn)
            };
        };
        let target = item[as_end..].trim();
        if !is_identifier(target) {
            return Err(TrackFieldError::BadTarget(target.to_owned()));
        }
        let expr = &item[..as_start];
        if expr.trim().is_empty() {
            return Err(TrackFieldError::EmptyExpression);
        }
        // Scan the untrimmed prefix so positions count from the start of the item.
        placeholders(expr)?;
        Ok(TrackField {
            expr: expr.trim().to_owned(),
            target: target.to_owned(),
        })
    }

    /// The columns the expression reads (its `{name}` placeholders), in order of first use.
    /// A `TrackField` made by [`TrackField::parse`] always scans cleanly; for a hand-made one
    /// with malformed braces this is the placeholders before the first error.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        let _ = scan(&self.expr, &mut out);
        out
    }
}

/// The `{name}` placeholders of an SQL expression, in order of first use, without duplicates.
/// Text inside `'…'` string literals and `"…"` quoted identifiers is not scanned.
pub fn placeholders(expr: &str) -> Result<Vec<String>, PlaceholderError> {
    let mut out = Vec::new();
    scan(expr, &mut out)?;
    Ok(out)
}

fn scan(expr: &str, out: &mut Vec<String>) -> Result<(), PlaceholderError> {
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            quote @ ('\'' | '"') => {
                let start = i;
                i += 1;
                loop {
                    match chars.get(i) {
                        None if quote == '\'' => {
                            return Err(PlaceholderError::UnclosedString(start + 1));
                        }
                        None => break, // an unclosed "identifier" is the SQL parser's business
                        Some(&c) if c == quote => {
                            // A doubled quote is an escaped quote inside the literal.
                            if chars.get(i + 1) == Some(&quote) {
                                i += 2;
                                continue;
                            }
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            '{' => {
                let open = i;
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '}' && chars[j] != '{' {
                    j += 1;
                }
                if j == chars.len() || chars[j] == '{' {
                    return Err(PlaceholderError::Unclosed(open + 1));
                }
                let name: String = chars[open + 1..j].iter().collect();
                if name.is_empty() {
                    return Err(PlaceholderError::Empty(open + 1));
                }
                if !is_identifier(&name) {
                    return Err(PlaceholderError::BadName {
                        name,
                        position: open + 1,
                    });
                }
                if !out.contains(&name) {
                    out.push(name);
                }
                i = j;
            }
            '}' => return Err(PlaceholderError::Unopened(i + 1)),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// `expr` with each `{name}` placeholder (outside `'…'` and `"…"`, as [`placeholders`] scans)
/// replaced by `column(name)`: how an expression becomes SQL over a row, e.g. `NEW."name"`.
/// Meant for expressions that scan cleanly; malformed braces are copied as they are.
pub fn substitute(expr: &str, mut column: impl FnMut(&str) -> String) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            quote @ ('\'' | '"') => {
                out.push(quote);
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    if chars[i] == quote {
                        if chars.get(i + 1) == Some(&quote) {
                            out.push(quote);
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            '{' => {
                let end = chars[i + 1..].iter().position(|&c| c == '}' || c == '{');
                match end.map(|e| i + 1 + e) {
                    Some(j) if chars[j] == '}' => {
                        let name: String = chars[i + 1..j].iter().collect();
                        out.push_str(&column(&name));
                        i = j;
                    }
                    _ => out.push('{'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Byte range of the last `as` (any case) with whitespace on both sides.
fn last_as(item: &str) -> Option<(usize, usize)> {
    let b = item.as_bytes();
    (1..b.len().saturating_sub(2)).rev().find_map(|i| {
        let word = b[i].eq_ignore_ascii_case(&b'a') && b[i + 1].eq_ignore_ascii_case(&b's');
        (word && b[i - 1].is_ascii_whitespace() && b[i + 2].is_ascii_whitespace())
            .then_some((i - 1, i + 2))
    })
}

/// `[A-Za-z_][A-Za-z0-9_]*`: a column or field name that needs no quoting in our templates.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The operator of one fan-out query clause.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QueryOp {
    /// `field eq {col}`.
    Eq,
    /// `field in [{a}, {b}]`.
    In,
}

/// One clause of a fan-out query template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryClause {
    /// The index filter field the clause tests.
    pub field: String,
    /// `eq` or `in`.
    pub op: QueryOp,
    /// The row's columns whose values fill the clause (one for `eq`).
    pub columns: Vec<String>,
}

/// A fan-out source's query template: `field eq {col}` / `field in [{col}, …]` clauses joined
/// by ` AND `; filled with a changed row's values it selects the slots a change fans out to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryTemplate {
    /// The template as written.
    pub text: String,
    /// Its clauses, in order.
    pub clauses: Vec<QueryClause>,
}

impl QueryTemplate {
    /// Parses a template. Keywords are `eq`, `in` and `AND` as written here.
    pub fn parse(text: &str) -> Result<QueryTemplate, QueryTemplateError> {
        if text.trim().is_empty() {
            return Err(QueryTemplateError::Empty);
        }
        let clauses = split_and(text)
            .into_iter()
            .enumerate()
            .map(|(i, clause)| parse_clause(i + 1, clause))
            .collect::<Result<_, _>>()?;
        Ok(QueryTemplate {
            text: text.to_owned(),
            clauses,
        })
    }

    /// Every column the template reads, in order of first use.
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self.clauses.iter().flat_map(|c| &c.columns) {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }
}

impl fmt::Display for QueryTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits on whitespace-delimited `AND`.
fn split_and(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(pos) = find_and(rest) {
        parts.push(&rest[..pos]);
        rest = &rest[pos + 3..];
    }
    parts.push(rest);
    parts
}

fn find_and(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    (1..b.len().saturating_sub(3)).find(|&i| {
        &b[i..i + 3] == b"AND" && b[i - 1].is_ascii_whitespace() && b[i + 3].is_ascii_whitespace()
    })
}

fn parse_clause(clause: usize, text: &str) -> Result<QueryClause, QueryTemplateError> {
    let bad = || QueryTemplateError::BadClause {
        clause,
        text: text.trim().to_owned(),
    };
    let trimmed = text.trim();
    let (field, rest) = trimmed.split_once(char::is_whitespace).ok_or_else(bad)?;
    let rest = rest.trim_start();
    let (op, value) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
    let value = value.trim();
    if !is_identifier(field) {
        return Err(bad());
    }
    let placeholder = |v: &str| {
        let v = v.trim();
        v.strip_prefix('{')
            .and_then(|v| v.strip_suffix('}'))
            .filter(|name| is_identifier(name))
            .map(str::to_owned)
            .ok_or_else(|| QueryTemplateError::BadValue {
                clause,
                value: v.to_owned(),
            })
    };
    let (op, columns) = match op {
        "eq" => (QueryOp::Eq, vec![placeholder(value)?]),
        "in" => {
            let inner = value
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .ok_or_else(bad)?;
            let columns = inner
                .split(',')
                .map(placeholder)
                .collect::<Result<Vec<_>, _>>()?;
            (QueryOp::In, columns)
        }
        _ => return Err(bad()),
    };
    Ok(QueryClause {
        field: field.to_owned(),
        op,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_items_and_aliased_expressions() {
        let f = TrackField::parse("nsfwLevel").unwrap();
        assert_eq!(
            (f.expr.as_str(), f.target.as_str()),
            ("{nsfwLevel}", "nsfwLevel")
        );
        assert_eq!(f.columns(), ["nsfwLevel"]);

        let f = TrackField::parse("GREATEST({scannedAt}, {createdAt}) as existedAt").unwrap();
        assert_eq!(f.expr, "GREATEST({scannedAt}, {createdAt})");
        assert_eq!(f.target, "existedAt");
        assert_eq!(f.columns(), ["scannedAt", "createdAt"]);

        // The split is at the LAST ` as `, in any case.
        let f = TrackField::parse("CAST({a} AS bigint) AS b").unwrap();
        assert_eq!(
            (f.expr.as_str(), f.target.as_str()),
            ("CAST({a} AS bigint)", "b")
        );
        let f = TrackField::parse("{type}::text\tas\ttype").unwrap();
        assert_eq!(
            (f.expr.as_str(), f.target.as_str()),
            ("{type}::text", "type")
        );
        // Repeated columns are listed once; literals are not scanned.
        let f = TrackField::parse("({flags} & 4) = 0 AND {flags} <> '{x}' as ok").unwrap();
        assert_eq!(f.columns(), ["flags"]);
        // "as" inside a word is not a separator.
        assert_eq!(
            TrackField::parse("{hasMeta} AND {alias}"),
            Err(TrackFieldError::NotAColumn)
        );
    }

    #[test]
    fn malformed_items_name_the_problem_and_position() {
        assert_eq!(TrackField::parse("  "), Err(TrackFieldError::Empty));
        assert_eq!(TrackField::parse("a + 1"), Err(TrackFieldError::NotAColumn));
        assert_eq!(
            TrackField::parse("CAST({a} AS int)"),
            Err(TrackFieldError::BadTarget("int)".into()))
        );
        assert_eq!(
            TrackField::parse(" as x"),
            Err(TrackFieldError::EmptyExpression)
        );
        assert_eq!(
            TrackField::parse("({flags} & 4 as x"),
            Ok(TrackField {
                expr: "({flags} & 4".into(),
                target: "x".into()
            }),
            "parentheses are the SQL parser's business"
        );
        assert_eq!(
            TrackField::parse("GREATEST({a, {b}) as x"),
            Err(PlaceholderError::Unclosed(10).into())
        );
        assert_eq!(
            TrackField::parse("{a}} as x"),
            Err(PlaceholderError::Unopened(4).into())
        );
        assert_eq!(
            TrackField::parse("1 + {} as x"),
            Err(PlaceholderError::Empty(5).into())
        );
        assert_eq!(
            TrackField::parse("{a b} as x"),
            Err(PlaceholderError::BadName {
                name: "a b".into(),
                position: 1
            }
            .into())
        );
        assert_eq!(
            placeholders("{a} = 'it''s {b}"),
            Err(PlaceholderError::UnclosedString(7))
        );
        assert_eq!(placeholders("{a} = 'it''s {b}'"), Ok(vec!["a".into()]));
    }

    #[test]
    fn query_templates() {
        let q = QueryTemplate::parse("postId eq {id}").unwrap();
        assert_eq!(
            q.clauses,
            [QueryClause {
                field: "postId".into(),
                op: QueryOp::Eq,
                columns: vec!["id".into()]
            }]
        );
        let q = QueryTemplate::parse("a in [{x}, {y}] AND b eq {x}").unwrap();
        assert_eq!(q.clauses.len(), 2);
        assert_eq!(q.clauses[0].op, QueryOp::In);
        assert_eq!(q.columns(), ["x", "y"]);
        assert_eq!(q.to_string(), "a in [{x}, {y}] AND b eq {x}");

        assert_eq!(QueryTemplate::parse(" "), Err(QueryTemplateError::Empty));
        assert!(matches!(
            QueryTemplate::parse("postId = {id}"),
            Err(QueryTemplateError::BadClause { clause: 1, .. })
        ));
        assert!(matches!(
            QueryTemplate::parse("a eq {x} and b eq {y}"),
            Err(QueryTemplateError::BadValue { clause: 1, .. })
        ));
        assert!(matches!(
            QueryTemplate::parse("a eq {x} AND b eq 5"),
            Err(QueryTemplateError::BadValue { clause: 2, .. })
        ));
        assert!(matches!(
            QueryTemplate::parse("a in {x}"),
            Err(QueryTemplateError::BadClause { clause: 1, .. })
        ));
    }
}
