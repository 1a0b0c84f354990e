//! Postgres is the oracle for pgroar's expression evaluator: every expression is run both
//! ways over the same stored row — `SELECT e, to_jsonb(e), pg_typeof(e) FROM r WHERE id = …`
//! against [`pgroar::translate::Expr`] evaluated on the row read back through
//! [`pgroar::translate::parse_text`] — and must give the same text, the same op value, the
//! same type, or fail on both sides (with the same SQLSTATE when ours fails per row).
//!
//! Queries of one case are pipelined on one connection (each a separate statement, so one
//! failing expression does not hide the others).

use std::fmt::Write as _;
use std::sync::Arc;

use pgroar::cluster::TestDb;
use pgroar::ops::Value;
use pgroar::translate::{Expr, SqlType, SqlValue, parse_text, to_op_value};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio_postgres::{Client, SimpleQueryMessage};

mod generate;

use generate::{Gen, expressions, row_strategy};

/// The test table's columns and SQL types (`e` is an enum, i.e. a type without support).
const COLUMNS: &[(&str, &str)] = &[
    ("i2", "int2"),
    ("i4", "int4"),
    ("i8", "int8"),
    ("fl", "int4"),
    ("n", "numeric"),
    ("f8", "float8"),
    ("f4", "real"),
    ("b", "bool"),
    ("t", "text"),
    ("c", "char(4)"),
    ("ts", "timestamptz"),
    ("tsn", "timestamp"),
    ("d", "date"),
    ("e", "mood"),
];

/// The session settings the text forms rely on (pgroar pins the same ones).
const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; \
                       SET IntervalStyle = 'postgres'; SET extra_float_digits = 1";

struct Oracle {
    client: Arc<Client>,
    /// `(column, type OID)`, in table order (the row index is the position).
    columns: Vec<(String, u32)>,
    next_id: std::sync::atomic::AtomicI64,
    /// Outcomes seen: both gave a value, both failed per row, both failed before any row.
    agreed: [std::sync::atomic::AtomicUsize; 3],
}

impl Oracle {
    async fn new(db: &TestDb) -> Oracle {
        let client = db.client().await.expect("connect");
        let mut ddl = String::from(
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE TABLE r (id bigint PRIMARY KEY",
        );
        for (name, ty) in COLUMNS {
            write!(ddl, ", \"{name}\" {ty}").unwrap();
        }
        ddl.push_str(");");
        client.batch_execute(&ddl).await.expect("create the table");
        client
            .batch_execute(SESSION)
            .await
            .expect("session settings");
        let rows = client
            .query(
                "SELECT attname::text, atttypid::int8 FROM pg_attribute \
                 WHERE attrelid = 'r'::regclass AND attnum > 1 ORDER BY attnum",
                &[],
            )
            .await
            .expect("column types");
        let columns = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u32))
            .collect();
        Oracle {
            client: Arc::new(client),
            columns,
            next_id: std::sync::atomic::AtomicI64::new(1),
            agreed: Default::default(),
        }
    }

    /// Inserts a row (`None` = NULL, else a literal in the column type's input syntax) and
    /// reads it back, typed, through `parse_text`.
    async fn insert(&self, row: &[Option<String>]) -> (i64, Vec<SqlValue>) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut sql = format!("INSERT INTO r VALUES ({id}");
        for (v, (_, ty)) in row.iter().zip(COLUMNS) {
            match v {
                None => sql.push_str(", NULL"),
                Some(text) => write!(sql, ", '{}'::{ty}", text.replace('\'', "''")).unwrap(),
            }
        }
        sql.push(')');
        self.client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let list: Vec<String> = COLUMNS.iter().map(|(c, _)| format!("\"{c}\"")).collect();
        let texts = first_row(
            self.client
                .simple_query(&format!(
                    "SELECT {} FROM r WHERE id = {id}",
                    list.join(", ")
                ))
                .await
                .expect("read the row back"),
        )
        .expect("the row");
        let values = texts
            .iter()
            .zip(&self.columns)
            .map(|(t, (name, oid))| match t {
                None => SqlValue::Null,
                Some(t) => parse_text(*oid, t).unwrap_or_else(|e| panic!("column {name}: {e}")),
            })
            .collect();
        (id, values)
    }

    /// Checks every expression against row `id`; returns the disagreements.
    async fn check(&self, id: i64, row: &[SqlValue], exprs: &[String]) -> Vec<String> {
        let handles: Vec<_> = exprs
            .iter()
            .map(|e| {
                let client = Arc::clone(&self.client);
                let sql_expr = to_sql(e);
                // Newlines end any line comment the expression has.
                let sql = format!(
                    "SELECT {sql_expr}\n, to_jsonb({sql_expr}\n), pg_typeof({sql_expr}\n)::text \
                     FROM r WHERE id = {id}"
                );
                tokio::spawn(async move { client.simple_query(&sql).await })
            })
            .collect();
        let mut problems = Vec::new();
        for (expr, handle) in exprs.iter().zip(handles) {
            let pg = handle.await.expect("query task");
            if let Err(p) = self.compare(expr, row, pg) {
                problems.push(format!("{expr}\n    {p}"));
            }
        }
        problems
    }

    fn compare(
        &self,
        expr: &str,
        row: &[SqlValue],
        pg: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>,
    ) -> Result<(), String> {
        let columns: Vec<(&str, u32)> =
            self.columns.iter().map(|(n, o)| (n.as_str(), *o)).collect();
        let bound = Expr::parse(expr).and_then(|e| e.bind_columns(&columns));
        let ours = bound
            .as_ref()
            .map_err(std::string::ToString::to_string)
            .and_then(|b| {
                b.eval(row)
                    .map(|v| (v, b.result_type()))
                    .map_err(|e| format!("{e} [{}]", e.sqlstate()))
            });
        let pg = pg.map(first_row);
        let outcome = match (&ours, &pg, bound.is_ok()) {
            (Ok(_), _, _) => 0,
            (Err(_), _, true) => 1,
            (Err(_), _, false) => 2,
        };
        let result = self.judge(ours, pg, bound.is_ok());
        if result.is_ok() {
            self.agreed[outcome].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// The outcome counts: `[values, per-row failures, bind-time failures]`.
    fn outcomes(&self) -> [usize; 3] {
        self.agreed
            .each_ref()
            .map(|a| a.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn judge(
        &self,
        ours: Result<(SqlValue, SqlType), String>,
        pg: Result<Option<Vec<Option<String>>>, tokio_postgres::Error>,
        bound: bool,
    ) -> Result<(), String> {
        match (ours, pg) {
            (Ok((value, ty)), Ok(Some(cols))) => {
                let [text, json, pg_type] = cols.as_slice() else {
                    return Err(format!("postgres returned {} columns", cols.len()));
                };
                if value.to_pg_text() != *text {
                    return Err(format!(
                        "value: ours {:?}, postgres {text:?}",
                        value.to_pg_text()
                    ));
                }
                let want = match json {
                    None => Value::Null,
                    Some(j) => json_value(j).map_err(|e| format!("to_jsonb {j}: {e}"))?,
                };
                let got = to_op_value(&value);
                if !same_op_value(&got, &want) {
                    return Err(format!("op value: ours {got:?}, to_jsonb {json:?}"));
                }
                let pg_type = pg_type.as_deref().unwrap_or("");
                if !matches!(ty, SqlType::Other(_)) && ty.name() != pg_type {
                    return Err(format!("type: ours {ty}, postgres {pg_type}"));
                }
                Ok(())
            }
            (Ok((value, _)), Err(e)) => {
                Err(format!("ours {value}, postgres fails: {}", pg_error(&e)))
            }
            (Ok(_), Ok(None)) => Err("postgres returned no row".to_owned()),
            (Err(ours), Ok(cols)) => Err(format!("ours fails ({ours}), postgres gives {cols:?}")),
            (Err(ours), Err(e)) => {
                // Per-row failures must be the same failure; bind-time ones just failures.
                let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
                match ours.rsplit_once(" [") {
                    Some((_, state)) if bound && state.trim_end_matches(']') != code => {
                        Err(format!(
                            "both fail, differently: ours {ours}, postgres {}",
                            pg_error(&e)
                        ))
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} [{}]", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// The text of each column of the first row of a simple query.
fn first_row(messages: Vec<SimpleQueryMessage>) -> Option<Vec<Option<String>>> {
    messages.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(
            (0..row.len())
                .map(|i| row.get(i).map(str::to_owned))
                .collect(),
        ),
        _ => None,
    })
}

/// `{col}` → `"col"`.
fn to_sql(expr: &str) -> String {
    expr.replace(['{', '}'], "\"")
}

/// The op value of a `to_jsonb` text, read as the op JSON is read (`ops::Value`): strings,
/// booleans and null through serde_json; numbers as `Int` when they are an integer that fits
/// `i64`, else as the *correctly rounded* `f64`. (serde_json without `float_roundtrip` is
/// several units in the last place off for long numbers with large exponents, e.g. the
/// 229-digit integer `to_jsonb` writes for `2.617472225131257e+228`, and rejects those near
/// `f64::MAX`; exactness is what `to_op_value` promises.)
fn json_value(json: &str) -> Result<Value, serde_json::Error> {
    let number = json.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    if !number {
        return serde_json::from_str(json);
    }
    if let Ok(i) = json.parse::<i64>() {
        return Ok(Value::Int(i));
    }
    match json.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Value::Float(x)),
        Ok(_) => Ok(Value::str(json)),
        Err(_) => serde_json::from_str(json),
    }
}

/// Equal op values (floats by bit pattern).
fn same_op_value(a: &Value, b: &Value) -> bool {
    a == b
}

use crate::it::support::runtime;

/// Rows per run (each with [`EXPRS_PER_CASE`] expressions); `PGROAR_EXPR_ORACLE_CASES`
/// overrides it for longer hunts.
const CASES: u32 = 1500;
const EXPRS_PER_CASE: usize = 16;

fn cases() -> u32 {
    std::env::var("PGROAR_EXPR_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

#[test]
fn random_expressions_agree_with_postgres() {
    let rt = runtime();
    let db = TestDb::new("expr_oracle");
    let oracle = rt.block_on(Oracle::new(&db));
    let started = std::time::Instant::now();
    let cases = cases();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(row_strategy(), any::<u64>()), |(row, seed)| {
        let exprs = expressions(seed, EXPRS_PER_CASE);
        let problems = rt.block_on(async {
            let (id, values) = oracle.insert(&row).await;
            oracle.check(id, &values, &exprs).await
        });
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "row {row:?}:\n  {}",
                problems.join("\n  ")
            )))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let [values, row_errors, bind_errors] = oracle.outcomes();
    eprintln!(
        "expr oracle: {} expressions over {cases} rows in {:?}: {values} values, \
         {row_errors} per-row failures, {bind_errors} bind-time failures, all as Postgres",
        cases as usize * EXPRS_PER_CASE,
        started.elapsed()
    );
    // The generator must mostly produce expressions that compute something.
    assert!(
        values * 2 > values + row_errors + bind_errors,
        "too few values: {values}"
    );
}

// ---------------------------------------------------------------------------------------
// Fixed cases.

/// A row given as `(column, literal)` pairs; other columns are NULL.
fn row(values: &[(&str, &str)]) -> Vec<Option<String>> {
    COLUMNS
        .iter()
        .map(|(name, _)| {
            values
                .iter()
                .find(|(c, _)| c == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .collect()
}

/// The expressions of the configuration examples, on their edge rows, plus the rounding,
/// overflow, NULL and division cases worth pinning; all checked against Postgres.
#[test]
fn edge_cases_agree_with_postgres() {
    let rt = runtime();
    let db = TestDb::new("expr_edges");
    let oracle = rt.block_on(Oracle::new(&db));
    let exprs: Vec<String> = [
        // The configuration examples.
        "{i4}",
        "{e}::text",
        "GREATEST({ts}, {tsn})",
        "GREATEST({ts}, {d})",
        "LEAST({ts}, {d}, {tsn})",
        "({fl} & (1 << 13)) != 0 AND ({fl} & (1 << 2)) = 0",
        "extract(epoch from {ts})::bigint",
        "extract(epoch from {tsn})::bigint",
        "extract(epoch from {d})::bigint",
        "extract(epoch from {ts})",
        "GREATEST(extract(epoch from {ts})::bigint, extract(epoch from {tsn})::bigint)",
        "({fl} >> 10) & 1 = 0",
        "({fl} >> 2) & 1 = 0",
        // Shifts and overflow.
        "{fl} << 31",
        "{fl} << 32",
        "1 << {i4}",
        "{i2} << {i4}",
        "{i8} << {i4}",
        "{i8} >> {i4}",
        "{i4} + 1",
        "{i4} * 2",
        "{i2} + {i2}",
        "- {i2}",
        "{i8} - 1",
        "{i8} / -1",
        "{i8} % -1",
        "{i4}::int2",
        "{n}::bigint",
        "{n}::int",
        "{n}::smallint",
        "{f8}::bigint",
        "{f8}::int",
        // Division.
        "{i4} / {i2}",
        "{i4} % {i2}",
        "{n} / {i2}",
        "{n} % {i2}",
        "{f8} / {i2}",
        "{n} / 3",
        "1 / {n}",
        // NULLs.
        "GREATEST({ts}, NULL)",
        "GREATEST(NULL::timestamptz, NULL)",
        "COALESCE({ts}, {d})",
        "NULLIF({i4}, 0)",
        "{b} AND {i4} > 0",
        "{b} OR {i4} > 0",
        "{i4} IS DISTINCT FROM {i2}",
        "{t} = 'abc'",
        "{c} = 'ab'",
        "{c}::text",
        "{c}",
        "{b}::text",
        "{f8}",
        "{f4}",
        "{n}",
        "{d}",
        "{tsn}",
        "{f4}::float8",
        "{f8}::numeric",
        "{f8}::real",
        "date_part('epoch', {ts})",
        "date_part('epoch', {d})",
        "CASE {i2} WHEN 0 THEN 'zero' WHEN 1 THEN 'one' ELSE 'many' END",
        "CASE WHEN {i4} > 0 THEN {n} ELSE {i8} END",
        "-2147483648",
        "-9223372036854775808",
        "- -9223372036854775808",
        // Syntax Postgres rejects too.
        "1 = 1 = true",
        "1 is distinct from 2 is null",
        "5 %- 2",
        "CASE WHEN {b} THEN 1 ELSE 1/0 END",
        // Types without special support pass through; comments; literal continuation.
        "{e}",
        "COALESCE({e}, NULL)",
        "CASE WHEN {b} THEN {e} END",
        "{e} IS NULL",
        "1 + /* a /* nested */ comment */ 2 -- and a line comment",
        "('ab'\n  'cd') = 'abcd'",
        "{c}::varchar = {c}",
        "NULLIF({c}::varchar, 'ab')",
        "{c} = 'ab '::text",
        "date_part('epoch', {d})",
        "{d}::timestamptz",
        "{ts}::date",
        "{d}::text",
        "{f8}::text",
        "- {i2}::int8",
        "~ {fl} & 255",
        "{i4} IS NOT DISTINCT FROM {i2} OR {b} IS UNKNOWN",
        "NOT {b} = {i4} > 0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let rows = [
        row(&[
            ("i2", "0"),
            ("i4", "2147483647"),
            ("i8", "-9223372036854775808"),
            ("fl", "8192"),
            ("n", "2.5"),
            ("f8", "2.5"),
            ("f4", "0.1"),
            ("b", "t"),
            ("t", "abc"),
            ("c", "ab"),
            ("ts", "2023-11-14 22:13:20.5+00"),
            ("tsn", "2023-11-14 22:13:19.5"),
            ("d", "2023-11-15"),
            ("e", "happy"),
        ]),
        row(&[
            ("i2", "-1"),
            ("i4", "31"),
            ("i8", "1"),
            ("fl", "8196"),
            ("n", "-2.5"),
            ("f8", "-2.5"),
            ("b", "f"),
            ("ts", "1969-12-31 23:59:59.5+00"),
            ("tsn", "1970-01-01 00:00:00.5"),
            ("d", "infinity"),
        ]),
        row(&[
            ("i2", "-32768"),
            ("i4", "32"),
            ("i8", "9223372036854775807"),
            ("fl", "-2147483648"),
            ("n", "NaN"),
            ("f8", "NaN"),
            ("ts", "infinity"),
            ("tsn", "-infinity"),
            ("d", "5874897-12-31"),
        ]),
        row(&[
            ("i2", "2"),
            ("i4", "-1"),
            ("fl", "1023"),
            ("n", "9223372036854775807.5"),
            ("f8", "9.3e18"),
            ("ts", "0044-03-15 12:00:00.25+00 BC"),
            ("tsn", "294276-12-31 23:59:59.999999"),
            ("d", "4714-11-24 BC"),
        ]),
        row(&[]),
    ];
    let problems: Vec<String> = rt.block_on(async {
        let mut all = Vec::new();
        for r in &rows {
            let (id, values) = oracle.insert(r).await;
            all.extend(oracle.check(id, &values, &exprs).await);
        }
        all
    });
    assert!(
        problems.is_empty(),
        "{} disagreements:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );

    // A few outcomes spelled out (Postgres agreed with these above).
    let columns: Vec<(&str, u32)> = oracle
        .columns
        .iter()
        .map(|(n, o)| (n.as_str(), *o))
        .collect();
    let eval = |expr: &str, values: &[SqlValue]| {
        Expr::parse(expr)
            .unwrap()
            .bind_columns(&columns)
            .unwrap()
            .eval(values)
            .map(|v| v.to_string())
            .map_err(|e| e.to_string())
    };
    rt.block_on(async {
        let (_, first) = oracle.insert(&rows[0]).await;
        let (_, second) = oracle.insert(&rows[1]).await;
        assert_eq!(
            eval("extract(epoch from {ts})::bigint", &first),
            Ok("1700000001".into())
        );
        assert_eq!(
            eval("extract(epoch from {ts})::bigint", &second),
            Ok("-1".into())
        );
        assert_eq!(eval("{f8}::int", &first), Ok("2".into()));
        assert_eq!(eval("{n}::int", &first), Ok("3".into()));
        assert_eq!(eval("1 << {i4}", &second), Ok("-2147483648".into()));
        assert_eq!(eval("{fl} << 31", &first), Ok("0".into()));
        assert_eq!(eval("{i4} + 1", &first), Err("integer out of range".into()));
        assert_eq!(eval("{i4} / {i2}", &first), Err("division by zero".into()));
        assert_eq!(
            eval("GREATEST({ts}, NULL)", &first),
            Ok("2023-11-14 22:13:20.5+00".into())
        );
    });
}

// ---------------------------------------------------------------------------------------
// Float output, in bulk.

/// Doubles worth printing: random bit patterns, short decimals across the whole exponent
/// range (where Postgres's output avoids values halfway between two floats), powers of two.
fn sample_floats() -> Vec<f64> {
    let mut g = Gen(0x5eed_f10a7);
    let mut xs = Vec::new();
    while xs.len() < 6000 {
        let x = f64::from_bits(g.next());
        if x.is_finite() {
            xs.push(x);
        }
    }
    for _ in 0..6000 {
        let digits = 1 + g.below(999_999);
        let exp = g.below(360) as i32 - 40;
        xs.push(format!("{digits}e{exp}").parse().unwrap_or(0.0));
    }
    // Dyadic values with short exact expansions, where two candidates can tie.
    for _ in 0..4000 {
        let m = (g.next() >> (11 + g.below(40))) as f64;
        xs.push(m / 2f64.powi(g.below(30) as i32));
    }
    xs.extend((-1074..=1023).map(|i| 2f64.powi(i)));
    xs.extend([
        0.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN_POSITIVE,
    ]);
    xs
}

#[test]
fn float_output_agrees_with_postgres() {
    let rt = runtime();
    let db = TestDb::new("expr_floats");
    rt.block_on(async {
        let client = db.client().await.expect("connect");
        client.batch_execute(SESSION).await.expect("session settings");
        let doubles = sample_floats();
        let rows = client
            .query(
                "SELECT x::text, to_jsonb(x)::text FROM unnest($1::float8[]) WITH ORDINALITY AS t(x, i) ORDER BY i",
                &[&doubles],
            )
            .await
            .expect("float8 query");
        let mut bad = Vec::new();
        for (x, row) in doubles.iter().zip(&rows) {
            let (text, json): (String, String) = (row.get(0), row.get(1));
            let v = SqlValue::Float8(*x);
            let want = json_value(&json).expect("json");
            if v.to_pg_text().as_deref() != Some(text.as_str()) || !same_op_value(&to_op_value(&v), &want) {
                bad.push(format!("{x:e}: postgres {text} / {json}, ours {v} / {:?}", to_op_value(&v)));
            }
        }
        let singles: Vec<f32> = doubles.iter().map(|x| *x as f32).filter(|x| x.is_finite()).collect();
        let rows = client
            .query(
                "SELECT x::text, to_jsonb(x)::text FROM unnest($1::real[]) WITH ORDINALITY AS t(x, i) ORDER BY i",
                &[&singles],
            )
            .await
            .expect("real query");
        for (x, row) in singles.iter().zip(&rows) {
            let (text, json): (String, String) = (row.get(0), row.get(1));
            let v = SqlValue::Float4(*x);
            let want = json_value(&json).expect("json");
            if v.to_pg_text().as_deref() != Some(text.as_str()) || !same_op_value(&to_op_value(&v), &want) {
                bad.push(format!("real {x:e}: postgres {text} / {json}, ours {v} / {:?}", to_op_value(&v)));
            }
        }
        assert_eq!(rows.len(), singles.len());
        assert!(bad.is_empty(), "{} of {} floats differ:\n  {}", bad.len(), doubles.len() + singles.len(), bad[..bad.len().min(30)].join("\n  "));
    });
}
