//! Rows of `COPY … TO STDOUT` in text format, read as the tuples pgoutput would send for the
//! same rows. No I/O; every byte sequence is either a row or an error, never a panic.
//!
//! The format: one row per line (`\n`), columns separated by a tab, `\N` for NULL, and
//! backslash escapes inside values (`\\`, `\b`, `\f`, `\n`, `\r`, `\t`, `\v`, `\ddd` octal,
//! `\xhh` hex; any other escaped byte stands for itself). Unescaped, a value is its type's text
//! output form — exactly pgoutput's `t` form — so dump rows go through the same translate code
//! as streamed INSERTs. Values without escapes are read where they lie in the line (no copy).

use std::ops::Range;

use crate::translate::{DatumRef, Tuple};

/// A COPY row (text line or binary row) that is not of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyRowError {
    /// The line has another number of columns than the COPY asked for.
    #[error("a COPY row has {found} columns, expected {expected}")]
    Columns {
        /// Columns asked for.
        expected: usize,
        /// Columns found.
        found: usize,
    },
    /// A backslash ends the line.
    #[error("a COPY row ends in a lone backslash")]
    TrailingBackslash,
    /// A binary COPY row is cut short, or a length in it is negative.
    #[error("a binary COPY row is cut short")]
    Truncated,
    /// A binary COPY stream does not start with its header.
    #[error("the binary COPY data does not start with its header")]
    Header,
}

/// The byte ranges of the lines of a buffer of whole lines (without their `\n`; a last line
/// without one counts too).
pub fn lines(buf: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= buf.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i);
        let line = start..end;
        start = end + 1;
        Some(line)
    })
}

/// Where one value of a line is.
#[derive(Clone, Copy, Debug)]
enum Field {
    Null,
    /// A range of the line.
    Plain(usize, usize),
    /// A range of the row's unescaped bytes.
    Escaped(usize, usize),
}

/// One line split into its values; its buffers are reused from line to line.
#[derive(Debug, Default)]
pub struct CopyRow {
    fields: Vec<Field>,
    unescaped: Vec<u8>,
}

impl CopyRow {
    /// Splits `line` (without its `\n`) into its values; it must have `columns` of them.
    pub fn parse(&mut self, line: &[u8], columns: usize) -> Result<(), CopyRowError> {
        self.fields.clear();
        self.unescaped.clear();
        // Without a backslash in the line there is neither an escape nor a NULL.
        let plain = memchr::memchr(b'\\', line).is_none();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\t', line).chain(std::iter::once(line.len())) {
            let field = if plain {
                Field::Plain(start, end)
            } else {
                self.value(line, start, end)?
            };
            self.fields.push(field);
            start = end + 1;
        }
        if self.fields.len() != columns {
            return Err(CopyRowError::Columns {
                expected: columns,
                found: self.fields.len(),
            });
        }
        Ok(())
    }

    fn value(&mut self, line: &[u8], start: usize, end: usize) -> Result<Field, CopyRowError> {
        let raw = &line[start..end];
        if raw == b"\\N" {
            return Ok(Field::Null);
        }
        if memchr::memchr(b'\\', raw).is_none() {
            return Ok(Field::Plain(start, end));
        }
        let from = self.unescaped.len();
        unescape(raw, &mut self.unescaped)?;
        Ok(Field::Escaped(from, self.unescaped.len()))
    }

    /// The values of `line`, the line last parsed.
    pub fn tuple<'a>(&'a self, line: &'a [u8]) -> CopyTuple<'a> {
        CopyTuple { row: self, line }
    }
}

/// A parsed line's values, as translate reads a row.
pub struct CopyTuple<'a> {
    row: &'a CopyRow,
    line: &'a [u8],
}

impl Tuple for CopyTuple<'_> {
    fn datum(&self, c: usize) -> Option<DatumRef<'_>> {
        Some(match *self.row.fields.get(c)? {
            Field::Null => DatumRef::Null,
            Field::Plain(a, b) => DatumRef::Text(&self.line[a..b]),
            Field::Escaped(a, b) => DatumRef::Text(&self.row.unescaped[a..b]),
        })
    }
}

/// Appends the unescaped `raw` to `out`.
fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), CopyRowError> {
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = raw.get(i) else {
            return Err(CopyRowError::TrailingBackslash);
        };
        i += 1;
        match e {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match raw.get(i).and_then(|&c| hex(c)) {
                    Some(h) => {
                        i += 1;
                        let mut v = h;
                        if let Some(l) = raw.get(i).and_then(|&c| hex(c)) {
                            v = v * 16 + l;
                            i += 1;
                        }
                        out.push(v as u8);
                    }
                    None => out.push(b'x'),
                }
            }
            other => out.push(other),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A row's values, owned: `None` for NULL.
    type Values = Vec<Option<Vec<u8>>>;

    fn values(row: &CopyRow, line: &[u8]) -> Values {
        let t = row.tuple(line);
        (0..)
            .map_while(|c| t.datum(c))
            .map(|d| match d {
                DatumRef::Text(b) => Some(b.to_vec()),
                DatumRef::Null => None,
                other => panic!("a COPY value is text or NULL, not {other:?}"),
            })
            .collect()
    }

    /// Every line of `buf` parsed as a dump worker does (one row reused).
    fn parse_rows(buf: &[u8], columns: usize) -> Result<Vec<Values>, CopyRowError> {
        let mut row = CopyRow::default();
        lines(buf)
            .map(|line| {
                row.parse(&buf[line.clone()], columns)?;
                Ok(values(&row, &buf[line]))
            })
            .collect()
    }

    /// One line (without its `\n`), parsed by a row that held another line before.
    fn parse_row(line: &[u8], columns: usize) -> Result<Values, CopyRowError> {
        let mut row = CopyRow::default();
        row.parse(b"x\\ty\t\\N\tz", 3).unwrap();
        row.parse(line, columns)?;
        Ok(values(&row, line))
    }

    fn text(v: &Option<Vec<u8>>) -> Option<&[u8]> {
        v.as_deref()
    }

    #[test]
    fn plain_null_and_escaped_values() {
        let line = b"12\t\\N\ta\\tb\\\\c\\n\t\\101\\x41\\q\t";
        let row = parse_row(line, 5).unwrap();
        assert_eq!(text(&row[0]), Some(&b"12"[..]));
        assert!(row[1].is_none());
        assert_eq!(text(&row[2]), Some(&b"a\tb\\c\n"[..]));
        assert_eq!(text(&row[3]), Some(&b"AAq"[..]));
        assert_eq!(text(&row[4]), Some(&b""[..]));
        // Without any backslash every value lies in the line.
        let row = parse_row(b"1\t\t3", 3).unwrap();
        assert_eq!(
            row,
            vec![Some(b"1".to_vec()), Some(Vec::new()), Some(b"3".to_vec())]
        );
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert_eq!(
            parse_row(b"1\t2", 3),
            Err(CopyRowError::Columns {
                expected: 3,
                found: 2
            })
        );
        assert_eq!(parse_row(b"a\\", 1), Err(CopyRowError::TrailingBackslash));
    }

    #[test]
    fn several_lines_in_one_buffer() {
        let rows = parse_rows(b"1\ta\n2\t\\N\n3\tc", 2).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows[1][1].is_none());
        assert_eq!(text(&rows[2][1]), Some(&b"c"[..]));
    }

    /// What COPY's text output does to a value (the inverse of `unescape`).
    fn escape(v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &c in v {
            match c {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                8 => out.extend_from_slice(b"\\b"),
                12 => out.extend_from_slice(b"\\f"),
                11 => out.extend_from_slice(b"\\v"),
                c => out.push(c),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn escaped_rows_round_trip(values in prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..12)), 1..6)) {
            let mut line = Vec::new();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    line.push(b'\t');
                }
                match v {
                    None => line.extend_from_slice(b"\\N"),
                    Some(v) => line.extend(escape(v)),
                }
            }
            let row = parse_row(&line, values.len()).unwrap();
            prop_assert_eq!(row, values);
        }

        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..64), cols in 1usize..5) {
            let _ = parse_rows(&bytes, cols);
        }
    }
}
