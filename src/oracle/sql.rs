//! The oracle's queries: the config's expressions as SQL, results read as the stream reads them.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{OracleError, dump_key};
use crate::config::TrackField;
use crate::index::{DumpKey, canonical_filter};
use crate::ops::Value;
use crate::schema::FilterKind;
use crate::translate::{parse_text, to_op_value};

/// A config expression as SQL: each `{col}` becomes the quoted identifier `"col"`.
pub(super) fn expr_sql(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len() + 8);
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&ident(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name as the config writes it (`name` or `schema.name`), quoted.
fn table_sql(table: &str) -> String {
    match table.split_once('.') {
        Some((ns, name)) => format!("{}.{}", ident(ns), ident(name)),
        None => ident(table),
    }
}

/// Runs `select` (a list of expressions) over `from`, returning each row's values converted as
/// the stream converts them: the result types come from a `LIMIT 0` prepare, the values as text
/// (their output functions').
async fn typed_rows(
    client: &Client,
    table: &str,
    select: &[String],
    rest: &str,
) -> Result<Vec<Vec<Value>>, OracleError> {
    let err = |sql: &str| {
        let (table, sql) = (table.to_string(), sql.to_string());
        move |source| OracleError::Sql { table, sql, source }
    };
    let from = table_sql(table);
    let typed = format!("SELECT {} FROM {from} LIMIT 0", select.join(", "));
    let statement = client.prepare(&typed).await.map_err(err(&typed))?;
    let oids: Vec<u32> = statement
        .columns()
        .iter()
        .map(|c| c.type_().oid())
        .collect();
    // The simple protocol sends each value in its type's text output form.
    let sql = format!("SELECT {} FROM {from} {rest}", select.join(", "));
    let messages = client.simple_query(&sql).await.map_err(err(&sql))?;
    let mut rows = Vec::new();
    for m in messages {
        let SimpleQueryMessage::Row(row) = m else {
            continue;
        };
        let mut values = Vec::with_capacity(oids.len());
        for (i, oid) in oids.iter().enumerate() {
            values.push(match row.get(i) {
                None => Value::Null,
                Some(text) => {
                    to_op_value(&parse_text(*oid, text).map_err(|e| OracleError::Value {
                        table: table.to_string(),
                        detail: e.to_string(),
                    })?)
                }
            });
        }
        rows.push(values);
    }
    Ok(rows)
}

/// The slot a row's slot value names, as the translator reads it (an integer in `0..=u32::MAX`).
fn slot_of(v: &Value) -> Option<u32> {
    match v {
        Value::Int(i) => u32::try_from(*i).ok(),
        _ => None,
    }
}

/// `WHERE` the slot column is within `slots`.
fn in_range(slot: &str, slots: &RangeInclusive<u32>) -> String {
    format!(
        "({slot})::bigint BETWEEN {} AND {}",
        slots.start(),
        slots.end()
    )
}

/// A direct source's query.
pub(super) struct DirectQuery {
    table: String,
    slot: String,
    exprs: Vec<String>,
    targets: Vec<String>,
    pub(super) sets_alive: bool,
}

impl DirectQuery {
    pub(super) fn new(table: &str, slot: &str, track: &[TrackField], sets_alive: bool) -> Self {
        DirectQuery {
            table: table.to_string(),
            slot: ident(slot),
            exprs: track
                .iter()
                .map(|t| format!("({})", expr_sql(&t.expr)))
                .collect(),
            targets: track.iter().map(|t| t.target.clone()).collect(),
            sets_alive,
        }
    }

    /// The largest slot of the table (0 when empty).
    pub(super) async fn max_slot(&self, client: &Client) -> Result<u32, OracleError> {
        let sql = format!(
            "SELECT coalesce(max(({})::bigint), 0) FROM {} WHERE ({})::bigint <= {}",
            self.slot,
            table_sql(&self.table),
            self.slot,
            u32::MAX
        );
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(|source| OracleError::Sql {
                table: self.table.clone(),
                sql,
                source,
            })?;
        Ok(u32::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    pub(super) fn targets(&self) -> impl Iterator<Item = &String> {
        self.targets.iter()
    }

    /// (slot, tracked values) of the rows whose slot is in `slots`.
    pub(super) async fn rows(
        &self,
        client: &Client,
        slots: &RangeInclusive<u32>,
    ) -> Result<Vec<(u32, Vec<Value>)>, OracleError> {
        let mut select = vec![self.slot.clone()];
        select.extend(self.exprs.iter().cloned());
        let rest = format!("WHERE {}", in_range(&self.slot, slots));
        let rows = typed_rows(client, &self.table, &select, &rest).await?;
        Ok(rows
            .into_iter()
            .filter_map(|mut r| {
                let slot = slot_of(&r[0])?;
                r.remove(0);
                Some((slot, r))
            })
            .collect())
    }
}

/// A join table's query.
pub(super) struct JoinQuery {
    table: String,
    slot: String,
    value: String,
    filter: Option<String>,
    pub(super) field: String,
}

impl JoinQuery {
    pub(super) fn new(
        table: &str,
        slot: &str,
        field: &str,
        value: &str,
        filter: Option<&str>,
    ) -> Self {
        JoinQuery {
            table: table.to_string(),
            slot: ident(slot),
            value: ident(value),
            filter: filter.map(|f| format!("({})", expr_sql(f))),
            field: field.to_string(),
        }
    }

    /// (slot, value) of the rows whose slot is in `slots` and whose filter holds.
    pub(super) async fn rows(
        &self,
        client: &Client,
        slots: &RangeInclusive<u32>,
    ) -> Result<Vec<(u32, Value)>, OracleError> {
        let mut rest = format!("WHERE {}", in_range(&self.slot, slots));
        if let Some(f) = &self.filter {
            rest.push_str(&format!(" AND {f} IS TRUE"));
        }
        let select = [self.slot.clone(), self.value.clone()];
        let rows = typed_rows(client, &self.table, &select, &rest).await?;
        Ok(rows
            .into_iter()
            .filter_map(|mut r| {
                let value = r.pop()?;
                Some((slot_of(&r[0])?, value))
            })
            .collect())
    }
}

/// A joined parent table's query: its key column and tracked expressions.
#[derive(Clone)]
pub(super) struct ParentQuery {
    table: String,
    key: String,
    exprs: Vec<String>,
}

impl ParentQuery {
    pub(super) fn new(table: &str, key: &str, track: &[TrackField]) -> Self {
        ParentQuery {
            table: table.to_string(),
            key: ident(key),
            exprs: track
                .iter()
                .map(|t| format!("({})", expr_sql(&t.expr)))
                .collect(),
        }
    }

    /// Every parent row: its key as the link field (of `link_kind`) files it → its values.
    /// Rows with a NULL key (no child can link to them) are left out.
    pub(super) async fn rows(
        &self,
        client: &Client,
        link_kind: FilterKind,
    ) -> Result<BTreeMap<DumpKey, Vec<Value>>, OracleError> {
        let mut select = vec![self.key.clone()];
        select.extend(self.exprs.iter().cloned());
        let rows = typed_rows(client, &self.table, &select, "").await?;
        let mut out = BTreeMap::new();
        for mut r in rows {
            let key = r.remove(0);
            let kind = if link_kind == FilterKind::Multi {
                FilterKind::Single
            } else {
                link_kind
            };
            if let Some(Some(k)) = canonical_filter(kind, &key).map(dump_key) {
                out.insert(k, r);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_quoted_identifiers() {
        assert_eq!(
            expr_sql("GREATEST({scannedAt}, {createdAt}) + 1"),
            r#"GREATEST("scannedAt", "createdAt") + 1"#
        );
        assert_eq!(expr_sql(r#"{we"ird}"#), r#""we""ird""#);
        assert_eq!(table_sql("public.Image"), r#""public"."Image""#);
    }
}
