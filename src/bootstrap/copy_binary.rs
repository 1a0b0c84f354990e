//! Rows of `COPY … TO STDOUT (FORMAT binary)`, read as tuples of binary values for the same
//! translate code as text rows. No I/O; every byte sequence is either rows or an error, never
//! a panic.
//!
//! The format: a header (the 11-byte signature, a 32-bit flags field, a 32-bit length of an
//! extension area and the area itself), then per row a 16-bit column count and per column a
//! 32-bit length (-1 for NULL) and that many bytes; a column count of -1 ends the data. All
//! integers are big-endian. Values are read where they lie in the buffer (no copy).

use super::copy_text::CopyRowError;
use crate::translate::{DatumRef, Tuple};

/// The first bytes of every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// The length of the header at the start of `buf`: `None` while `buf` does not hold all of it.
pub fn header_len(buf: &[u8]) -> Result<Option<usize>, CopyRowError> {
    let fixed = SIGNATURE.len() + 8;
    let have = buf.len().min(SIGNATURE.len());
    if buf[..have] != SIGNATURE[..have] {
        return Err(CopyRowError::Header);
    }
    if buf.len() < fixed {
        return Ok(None);
    }
    let flags = u32::from_be_bytes(buf[11..15].try_into().expect("4 bytes"));
    // Bit 16 says OIDs are included; bits 17-31 must be zero for a reader to go on.
    if flags & 0xFFFF_0000 != 0 {
        return Err(CopyRowError::Header);
    }
    let extension = u32::from_be_bytes(buf[15..19].try_into().expect("4 bytes")) as usize;
    let len = fixed + extension;
    Ok((buf.len() >= len).then_some(len))
}

/// One row's values as ranges of the buffer (`None`: NULL); its room is reused from row to row.
#[derive(Debug, Default)]
pub struct BinaryRow {
    fields: Vec<Option<(usize, usize)>>,
}

impl BinaryRow {
    /// Reads the row at `pos` in `buf` (which holds whole rows); it must have `columns` values.
    /// Gives the position after it, or `None` at the end-of-data marker.
    pub fn parse(
        &mut self,
        buf: &[u8],
        pos: usize,
        columns: usize,
    ) -> Result<Option<usize>, CopyRowError> {
        self.fields.clear();
        let count = read::<2>(buf, pos).map(i16::from_be_bytes)?;
        if count == -1 {
            return Ok(None);
        }
        let count = usize::try_from(count).map_err(|_| CopyRowError::Truncated)?;
        if count != columns {
            return Err(CopyRowError::Columns {
                expected: columns,
                found: count,
            });
        }
        let mut at = pos + 2;
        for _ in 0..count {
            let len = read::<4>(buf, at).map(i32::from_be_bytes)?;
            at += 4;
            if len == -1 {
                self.fields.push(None);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| CopyRowError::Truncated)?;
            let end = at.checked_add(len).filter(|&e| e <= buf.len());
            let end = end.ok_or(CopyRowError::Truncated)?;
            self.fields.push(Some((at, end)));
            at = end;
        }
        Ok(Some(at))
    }

    /// The values of the row last parsed from `buf`.
    pub fn tuple<'a>(&'a self, buf: &'a [u8]) -> BinaryTuple<'a> {
        BinaryTuple { row: self, buf }
    }
}

fn read<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], CopyRowError> {
    buf.get(at..at.saturating_add(N))
        .and_then(|b| b.try_into().ok())
        .ok_or(CopyRowError::Truncated)
}

/// A parsed row's values, as translate reads a row.
pub struct BinaryTuple<'a> {
    row: &'a BinaryRow,
    buf: &'a [u8],
}

impl Tuple for BinaryTuple<'_> {
    fn datum(&self, c: usize) -> Option<DatumRef<'_>> {
        Some(match *self.row.fields.get(c)? {
            None => DatumRef::Null,
            Some((a, b)) => DatumRef::Binary(&self.buf[a..b]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stream as Postgres writes it: header, rows, end marker.
    fn stream(rows: &[Vec<Option<Vec<u8>>>], extension: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(extension.len() as u32).to_be_bytes());
        out.extend_from_slice(extension);
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for v in row {
                match v {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// Every row of a stream, as a dump worker reads it (one row reused).
    fn rows(buf: &[u8], columns: usize) -> Result<Vec<Vec<Option<Vec<u8>>>>, CopyRowError> {
        let mut pos = header_len(buf)?.ok_or(CopyRowError::Truncated)?;
        let mut row = BinaryRow::default();
        let mut out = Vec::new();
        while let Some(next) = row.parse(buf, pos, columns)? {
            let t = row.tuple(buf);
            out.push(
                (0..columns)
                    .map(|c| match t.datum(c) {
                        Some(DatumRef::Binary(b)) => Some(b.to_vec()),
                        Some(DatumRef::Null) => None,
                        other => panic!("a binary COPY value, not {other:?}"),
                    })
                    .collect(),
            );
            pos = next;
        }
        Ok(out)
    }

    #[test]
    fn the_header_is_read_once_whole() {
        let s = stream(&[], b"ext");
        for cut in 0..=s.len() {
            let want = if cut >= 22 { Some(22) } else { None };
            assert_eq!(header_len(&s[..cut]), Ok(want), "cut at {cut}");
        }
        assert_eq!(header_len(b"PGCOPX"), Err(CopyRowError::Header));
        let mut flags = stream(&[], b"");
        flags[11] = 1;
        assert_eq!(header_len(&flags), Err(CopyRowError::Header));
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let s = stream(&[vec![Some(vec![1]), None]], b"");
        assert_eq!(
            rows(&s, 3),
            Err(CopyRowError::Columns {
                expected: 3,
                found: 2
            })
        );
        // Cut inside the last value.
        let s = stream(&[vec![Some(vec![1, 2, 3])]], b"");
        assert_eq!(rows(&s[..s.len() - 4], 1), Err(CopyRowError::Truncated));
    }

    proptest! {
        #[test]
        fn rows_round_trip(
            values in prop::collection::vec(
                prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..9)), 3),
                0..20,
            ),
        ) {
            let s = stream(&values, b"");
            prop_assert_eq!(rows(&s, 3).unwrap(), values);
        }

        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..80), cols in 1usize..4) {
            let mut s = stream(&[], b"");
            s.truncate(19);
            s.extend(bytes);
            let _ = rows(&s, cols);
        }
    }
}
