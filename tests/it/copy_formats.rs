//! The two COPY formats a dump reads give the same values: a table of every type the dump copies
//! in binary, edge values included, is copied from a real Postgres as text and as binary, each
//! read by its parser and decoder, and compared value by value.

use futures_util::StreamExt;
use pgroar::bootstrap::copy_binary::{BinaryRow, header_len};
use pgroar::bootstrap::copy_text::{CopyRow, lines};
use pgroar::cluster::TestDb;
use pgroar::translate::{DatumRef, SqlValue, Tuple, parse_binary, parse_text, reads_binary};
use tokio_postgres::Client;

const SETUP: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE every (
    i2 int2, i4 int4, i8 int8, b bool, f4 float4, f8 float8, d date, ts timestamp,
    tz timestamptz, t text, v varchar(12), c char(4), n name, m mood);
INSERT INTO every VALUES
    (-32768, -2147483648, -9223372036854775808, false, '-Infinity', 'NaN', '-infinity',
     '-infinity', '-infinity', '', '', '', '', 'sad'),
    (32767, 2147483647, 9223372036854775807, true, 'Infinity', '-Infinity', 'infinity',
     'infinity', 'infinity', E'tab\there\nnew line \\ back é ☃', 'x', 'ab', 'a name', 'happy'),
    (0, 0, 0, true, '-0', '-0', '4714-11-24 BC', '4714-11-24 00:00:00 BC',
     '294276-12-31 23:59:59.999999+00', E'\\N', 'NULL', 'a', '', 'ok'),
    (1, -1, 1, false, 1e-45, 5e-324, '0044-03-15 BC', '2000-01-01 00:00:00',
     '1999-12-31 23:59:59.999999+00', ' lead', 'trail ', '    ', 'x', 'ok'),
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT setseed(0.25);
INSERT INTO every SELECT
    (random() * 65535 - 32768)::int2, (random() * 4e9 - 2e9)::int4, (random() * 9e18)::int8,
    random() < 0.5, (random() * 1e6)::float4 / 7, random() * 1e300 - 5e299,
    date '2000-01-01' + (random() * 1e6 - 5e5)::int,
    timestamp '2000-01-01' + random() * interval '100000 days' - interval '50000 days',
    timestamptz '1970-01-01 00:00:00+00' + random() * interval '40000 days',
    md5(random()::text), left(md5(random()::text), 12), left(md5(random()::text), 3),
    md5(random()::text), (ARRAY['sad', 'ok', 'happy']::mood[])[1 + (random() * 2)::int]
  FROM generate_series(1, 2000);
"#;

async fn copy(client: &Client, sql: &str) -> Vec<u8> {
    let stream = client.copy_out(sql).await.expect("COPY starts");
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(buf) = stream.next().await {
        out.extend_from_slice(&buf.expect("COPY data"));
    }
    out
}

/// A tuple's values decoded by `decode` (NULLs as NULL).
fn decode(
    tuple: &dyn Tuple,
    types: &[u32],
    decode: impl Fn(u32, &[u8]) -> SqlValue,
) -> Vec<SqlValue> {
    types
        .iter()
        .enumerate()
        .map(|(c, &ty)| match tuple.datum(c).expect("every column") {
            DatumRef::Null => SqlValue::Null,
            DatumRef::Text(b) | DatumRef::Binary(b) => decode(ty, b),
            DatumRef::Unchanged => panic!("COPY sends every value"),
        })
        .collect()
}

/// Equal values; floats by their bits (NaN is one value, `-0` is not `0`).
fn same(a: &SqlValue, b: &SqlValue) -> bool {
    match (a, b) {
        (SqlValue::Float4(x), SqlValue::Float4(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (SqlValue::Float8(x), SqlValue::Float8(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        _ => a == b,
    }
}

#[tokio::test]
async fn text_and_binary_copies_decode_to_the_same_values() {
    let db = TestDb::new("copy_formats");
    db.execute(SETUP).expect("setup");
    let client = db.client().await.expect("connect");
    // The text forms the decoder reads (pgroar pins the same settings on its sessions).
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1",
        )
        .await
        .unwrap();
    let types: Vec<(u32, bool)> = client
        .query(
            "SELECT a.atttypid, t.typtype = 'e' FROM pg_attribute a \
             JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = 'every'::regclass AND a.attnum > 0 ORDER BY a.attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(types.iter().all(|&(ty, is_enum)| reads_binary(ty, is_enum)));
    let types: Vec<u32> = types.into_iter().map(|(ty, _)| ty).collect();

    let text = copy(&client, "COPY every TO STDOUT").await;
    let mut row = CopyRow::default();
    let mut from_text = Vec::new();
    for line in lines(&text) {
        let line = &text[line];
        row.parse(line, types.len()).expect("a text row");
        from_text.push(decode(&row.tuple(line), &types, |ty, b| {
            parse_text(ty, std::str::from_utf8(b).unwrap()).expect("text decodes")
        }));
    }

    let binary = copy(&client, "COPY every TO STDOUT (FORMAT binary)").await;
    let mut pos = header_len(&binary).unwrap().expect("a whole header");
    let mut row = BinaryRow::default();
    let mut from_binary = Vec::new();
    while let Some(next) = row.parse(&binary, pos, types.len()).expect("a binary row") {
        from_binary.push(decode(&row.tuple(&binary), &types, |ty, b| {
            parse_binary(ty, b).expect("binary decodes")
        }));
        pos = next;
    }
    assert_eq!(pos + 2, binary.len(), "the end marker ends the data");

    assert_eq!(from_text.len(), 2005);
    assert_eq!(from_binary.len(), from_text.len());
    for (i, (t, b)) in from_text.iter().zip(&from_binary).enumerate() {
        for (c, (x, y)) in t.iter().zip(b).enumerate() {
            assert!(same(x, y), "row {i} column {c}: text {x:?}, binary {y:?}");
        }
    }
    // The edge rows are what the table says.
    assert_eq!(from_binary[0][2], SqlValue::Int8(i64::MIN));
    assert_eq!(from_binary[1][8], SqlValue::TimestampTz(i64::MAX));
    assert_eq!(from_binary[2][11], SqlValue::Text("a   ".into()));
    assert_eq!(from_binary[3][11], SqlValue::Text("    ".into()));
    assert!(from_binary[4].iter().all(SqlValue::is_null));
}
