//! End-to-end unit tests: parse, bind, fold, evaluate.

use super::*;
use crate::translate::value::parse_text;

/// Columns of the test row: (name, type OID, text or None for NULL).
const COLUMNS: &[(&str, u32, Option<&str>)] = &[
    ("i2", 21, Some("-32768")),
    ("i4", 23, Some("2147483647")),
    ("i8", 20, Some("-9223372036854775808")),
    ("flags", 23, Some("8192")),
    ("n", 1700, Some("2.50")),
    ("f", 701, Some("1.5")),
    ("b", 16, Some("t")),
    ("t", 25, Some("abc")),
    ("c", 1042, Some("ab  ")),
    ("ts", 1184, Some("2023-11-14 22:13:20.5+00")),
    ("d", 1082, Some("2024-01-02")),
    ("nul", 23, None),
    ("e", 99999, Some("happy")),
];

fn run(expr: &str) -> Result<SqlValue, String> {
    let columns: Vec<(&str, u32)> = COLUMNS.iter().map(|(n, o, _)| (*n, *o)).collect();
    let row: Vec<SqlValue> = COLUMNS
        .iter()
        .map(|(_, o, t)| t.map_or(SqlValue::Null, |t| parse_text(*o, t).unwrap()))
        .collect();
    let bound = Expr::parse(expr)
        .and_then(|e| e.bind_columns(&columns))
        .map_err(|e| format!("bind: {e}"))?;
    bound.eval(&row).map_err(|e| format!("eval: {e}"))
}

fn text(expr: &str) -> String {
    match run(expr) {
        Ok(v) => v.to_string(),
        Err(e) => e,
    }
}

#[test]
fn config_examples() {
    assert_eq!(text("GREATEST({ts}, {d})"), "2024-01-02 00:00:00+00");
    assert_eq!(
        text("({flags} & (1 << 13)) != 0 AND ({flags} & (1 << 2)) = 0"),
        "t"
    );
    assert_eq!(text("extract(epoch from {ts})::bigint"), "1700000001");
    assert_eq!(text("extract(epoch from {ts})"), "1700000000.500000");
    assert_eq!(text("({flags} >> 10) & 1 = 0"), "t");
    assert_eq!(text("{e}::text"), "happy");
}

#[test]
fn integer_semantics() {
    assert_eq!(text("{i4} + 1"), "eval: integer out of range");
    assert_eq!(text("{i2} - 1::int2"), "eval: smallint out of range");
    assert_eq!(text("-{i8}"), "eval: bigint out of range");
    assert_eq!(text("{i8} / -1"), "eval: bigint out of range");
    assert_eq!(text("{i8} % -1"), "0");
    assert_eq!(text("-7 / 2"), "-3");
    assert_eq!(text("-7 % 2"), "-1");
    assert_eq!(text("{i4} / 0"), "eval: division by zero");
    assert_eq!(text("1 << 33"), "2");
    assert_eq!(text("1::int2 << 15"), "-32768");
    assert_eq!(text("{i4} + 1::int8"), "2147483648");
    assert_eq!(text("-2147483648"), "-2147483648");
    assert_eq!(text("{flags} << 31"), "0");
    assert_eq!(
        text("1 / 0"),
        "bind: constant expression fails: division by zero (at byte 2)"
    );
}

#[test]
fn null_and_three_valued_logic() {
    assert_eq!(text("{nul} + 1"), "NULL");
    assert_eq!(text("{nul} > 1 AND false"), "f");
    assert_eq!(text("{nul} > 1 OR true"), "t");
    assert_eq!(text("{nul} > 1 AND true"), "NULL");
    assert_eq!(text("NOT ({nul} > 1)"), "NULL");
    assert_eq!(text("GREATEST({nul}, 3, {nul})"), "3");
    assert_eq!(text("GREATEST({nul}, {nul})"), "NULL");
    assert_eq!(text("COALESCE({nul}, {i2})"), "-32768");
    assert_eq!(text("{nul} IS DISTINCT FROM NULL"), "f");
    assert_eq!(text("{nul} IS NOT DISTINCT FROM 1"), "f");
    assert_eq!(text("{nul} > 0 IS UNKNOWN"), "t");
    assert_eq!(text("NULLIF({i4}, 2147483647)"), "NULL");
    assert_eq!(text("CASE WHEN {nul} > 0 THEN 'a' ELSE 'b' END"), "b");
    assert_eq!(text("CASE {i2} WHEN -32768 THEN 'min' END"), "min");
}

#[test]
fn folding_follows_the_planner() {
    assert_eq!(text("COALESCE(1, 1/0)"), "1");
    assert_eq!(text("CASE WHEN false THEN 1/0 ELSE 2 END"), "2");
    assert_eq!(text("false AND 1/0 = 1"), "f");
    assert!(text("CASE WHEN {b} THEN 1 ELSE 1/0 END").starts_with("bind:"));
    assert!(text("NULL + 1/0").starts_with("bind:"));
    assert_eq!(text("NULL + {i4} / 0"), "NULL");
    assert_eq!(text("CASE 0 WHEN 0 THEN 1 ELSE 1/0 END"), "1");
}

#[test]
fn casts_and_text() {
    assert_eq!(text("{b}::text"), "true");
    assert_eq!(text("{b}"), "t");
    assert!(text("{c}::text || 'x'").starts_with("bind:"));
    assert_eq!(text("{c} = 'ab'"), "t");
    assert_eq!(text("{c}::text = 'ab'"), "t");
    assert_eq!(text("{c} = 'ab '::text"), "f");
    assert_eq!(text("{n}::int"), "3");
    assert_eq!(text("(-{n})::int"), "-3");
    assert_eq!(text("2.5::float8::int"), "2");
    assert_eq!(text("{n} / 3"), "0.83333333333333333333");
    assert_eq!(text("{f} * 2"), "3");
    assert_eq!(
        text("{t}::int"),
        "eval: invalid input syntax for type integer: \"abc\""
    );
    assert_eq!(text("'yes'::bool"), "t");
    assert_eq!(text("{ts}::date"), "2023-11-14");
    assert_eq!(text("'2024-01-01'::timestamptz > {ts}"), "t");
    assert_eq!(text("{d} < {ts}"), "f");
    assert_eq!(text("{i4}::numeric * {i4}"), "4611686014132420609");
}

#[test]
fn type_errors_are_found_at_bind_time() {
    for expr in [
        "{t} & 1",
        "{missing} + 1",
        "{b} AND 1",
        "COALESCE({i4}, {t})",
        "{e} = 'happy'",
        "{e} < {e}",
        "- '5'",
        "{f} % 2",
        "{d} + 1",
        "true::int8",
        "{i8} << {i8}",
        "{i4} = 'x'",
        "{t}::date",
        "extract(epoch from {i4})",
        "CASE WHEN 1 THEN 2 END",
    ] {
        assert!(text(expr).starts_with("bind:"), "{expr}: {}", text(expr));
    }
}

#[test]
fn result_types_and_columns() {
    let columns: Vec<(&str, u32)> = COLUMNS.iter().map(|(n, o, _)| (*n, *o)).collect();
    let bind = |e: &str| Expr::parse(e).unwrap().bind_columns(&columns).unwrap();
    assert_eq!(bind("{i2} + {i2}").result_type(), SqlType::Int2);
    assert_eq!(bind("{i2} + 1").result_type(), SqlType::Int4);
    assert_eq!(bind("{i4} + {n}").result_type(), SqlType::Numeric);
    assert_eq!(
        bind("extract(epoch from {d})").result_type(),
        SqlType::Numeric
    );
    assert_eq!(bind("NULLIF({i2}, {i8})").result_type(), SqlType::Int2);
    assert_eq!(bind("'x'").result_type(), SqlType::Text);
    assert_eq!(
        bind("GREATEST({ts}, {d}) < {ts} OR {i2} > 0").columns(),
        [9, 10, 0]
    );
    assert_eq!(bind("COALESCE(1, {i2})").columns(), [] as [usize; 0]);
    assert_eq!(bind("2 * 3").constant(), Some(&SqlValue::Int4(6)));
}

#[test]
fn error_positions() {
    let e = Expr::parse("{a} +").unwrap_err();
    assert_eq!(e.offset, 5);
    let e = Expr::parse("'é' = {a} = 1").unwrap_err();
    assert_eq!((e.offset, e.char_position("'é' = {a} = 1")), (11, 11));
    let e = Expr::parse("1 + {x}")
        .unwrap()
        .bind_columns(&[])
        .unwrap_err();
    assert_eq!(e.offset, 4);
    assert_eq!(e.to_string(), "column {x} does not exist (at byte 4)");
}

#[test]
fn short_rows_are_errors_not_panics() {
    let bound = Expr::parse("{a} + 1")
        .unwrap()
        .bind_columns(&[("a", 23)])
        .unwrap();
    assert!(matches!(
        bound.eval(&[]),
        Err(EvalError::MissingColumn { .. })
    ));
    assert!(matches!(
        bound.eval(&[SqlValue::Bool(true)]),
        Err(EvalError::Internal(_))
    ));
}

#[test]
fn time_zone_dependent_parts_are_left_to_run_time() {
    // Postgres does not compute stable functions when planning, so these fail as it does.
    assert!(
        text("COALESCE(extract(epoch from '2020-01-01'::timestamptz), 1/0)").starts_with("bind:")
    );
    assert!(
        text("COALESCE(('2020-01-01'::date < '2020-01-01'::timestamptz)::int, 1/0)")
            .starts_with("bind:")
    );
    assert_eq!(
        text("COALESCE(extract(epoch from '2020-01-01'::date), 1/0)"),
        "1577836800"
    );
    assert_eq!(text("COALESCE(GREATEST(1, 2), 1/0)"), "2");
    assert_eq!(text("NULLIF(NULL, {i4} / 0)"), "NULL");
}

#[test]
fn integer_epochs_round_like_the_numeric() {
    for (ts, want) in [
        ("1970-01-01 00:00:00.5+00", "1"),
        ("1969-12-31 23:59:59.5+00", "-1"),
        ("1969-12-31 23:59:59.6+00", "0"),
        ("1969-12-31 23:59:59.4+00", "-1"),
        ("2023-11-14 22:13:19.5+00", "1700000000"),
        ("294276-12-31 23:59:59.999999+00", "9224318016000"),
    ] {
        let columns = [("ts", 1184)];
        let row = [parse_text(1184, ts).unwrap()];
        let fast = Expr::parse("extract(epoch from {ts})::bigint").unwrap();
        let slow = Expr::parse("(extract(epoch from {ts}) + 0)::bigint").unwrap();
        for e in [fast, slow] {
            let v = e.bind_columns(&columns).unwrap().eval(&row).unwrap();
            assert_eq!(v.to_string(), want, "{ts}");
        }
    }
    assert_eq!(
        text("extract(epoch from 'infinity'::timestamp)::int8"),
        "bind: constant expression fails: cannot convert infinity to bigint (at byte 41)"
    );
    assert_eq!(
        text("extract(epoch from {d})::int2"),
        "eval: smallint out of range"
    );
}
