//! Rows of `COPY … TO STDOUT` in text format, turned into the tuples pgoutput would send for the
//! same rows. No I/O; every byte sequence is either a row or an error, never a panic.
//!
//! The format: one row per line (`\n`), columns separated by a tab, `\N` for NULL, and
//! backslash escapes inside values (`\\`, `\b`, `\f`, `\n`, `\r`, `\t`, `\v`, `\ddd` octal,
//! `\xhh` hex; any other escaped byte stands for itself). Unescaped, a value is its type's text
//! output form — exactly pgoutput's `t` form — so dump rows go through the same translate code
//! as streamed INSERTs. Values without escapes are slices of the received buffer (no copy).

use std::ops::Range;

use bytes::Bytes;

use crate::decode::Datum;

/// A line that is not a row of the expected shape.
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
}

/// The byte ranges of the lines of a buffer of whole lines (without their `\n`; a last line
/// without one counts too).
pub fn lines(buf: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= buf.len() {
            return None;
        }
        let end = buf[start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(buf.len(), |i| start + i);
        let line = start..end;
        start = end + 1;
        Some(line)
    })
}

/// Parses the line at `range` of `buf` into `out` (cleared first; its room reused). Values
/// without escapes are slices of `buf`.
pub fn parse_row_at(
    buf: &Bytes,
    range: Range<usize>,
    columns: usize,
    out: &mut Vec<Datum>,
) -> Result<(), CopyRowError> {
    out.clear();
    let line = &buf[range.clone()];
    let mut start = 0;
    loop {
        let end = line[start..]
            .iter()
            .position(|&c| c == b'\t')
            .map_or(line.len(), |i| start + i);
        out.push(value(buf, range.start + start, range.start + end)?);
        if end == line.len() {
            break;
        }
        start = end + 1;
    }
    if out.len() != columns {
        return Err(CopyRowError::Columns {
            expected: columns,
            found: out.len(),
        });
    }
    Ok(())
}

fn value(line: &Bytes, start: usize, end: usize) -> Result<Datum, CopyRowError> {
    let raw = &line[start..end];
    if raw == b"\\N" {
        return Ok(Datum::Null);
    }
    if !raw.contains(&b'\\') {
        return Ok(Datum::Text(line.slice(start..end)));
    }
    unescape(raw).map(|v| Datum::Text(Bytes::from(v)))
}

fn unescape(raw: &[u8]) -> Result<Vec<u8>, CopyRowError> {
    let mut out = Vec::with_capacity(raw.len());
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TupleData;
    use proptest::prelude::*;

    fn text(d: &Datum) -> Option<&[u8]> {
        d.text().map(|b| &b[..])
    }

    /// Every line of `buf` parsed as a dump worker does.
    fn parse_rows(buf: &Bytes, columns: usize) -> Result<Vec<TupleData>, CopyRowError> {
        lines(buf)
            .map(|line| {
                let mut values = Vec::new();
                parse_row_at(buf, line, columns, &mut values)?;
                Ok(TupleData { columns: values })
            })
            .collect()
    }

    /// One line (without its `\n`).
    fn parse_row(line: &Bytes, columns: usize) -> Result<TupleData, CopyRowError> {
        let mut values = vec![Datum::Null; 9];
        parse_row_at(line, 0..line.len(), columns, &mut values)?;
        Ok(TupleData { columns: values })
    }

    #[test]
    fn plain_null_and_escaped_values() {
        let line = Bytes::from_static(b"12\t\\N\ta\\tb\\\\c\\n\t\\101\\x41\\q\t");
        let row = parse_row(&line, 5).unwrap();
        assert_eq!(text(&row.columns[0]), Some(&b"12"[..]));
        assert!(row.columns[1].is_null());
        assert_eq!(text(&row.columns[2]), Some(&b"a\tb\\c\n"[..]));
        assert_eq!(text(&row.columns[3]), Some(&b"AAq"[..]));
        assert_eq!(text(&row.columns[4]), Some(&b""[..]));
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let line = Bytes::from_static(b"1\t2");
        assert_eq!(
            parse_row(&line, 3),
            Err(CopyRowError::Columns {
                expected: 3,
                found: 2
            })
        );
        assert_eq!(
            parse_row(&Bytes::from_static(b"a\\"), 1),
            Err(CopyRowError::TrailingBackslash)
        );
    }

    #[test]
    fn several_lines_in_one_buffer() {
        let buf = Bytes::from_static(b"1\ta\n2\t\\N\n");
        let rows = parse_rows(&buf, 2).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[1].columns[1].is_null());
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
            let row = parse_row(&Bytes::from(line), values.len()).unwrap();
            for (d, v) in row.columns.iter().zip(&values) {
                match v {
                    None => prop_assert!(d.is_null()),
                    Some(v) => prop_assert_eq!(text(d), Some(&v[..])),
                }
            }
        }

        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..64), cols in 1usize..5) {
            let _ = parse_rows(&Bytes::from(bytes), cols);
        }
    }
}
