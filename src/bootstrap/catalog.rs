//! What the dump reads from the catalog before it starts: that the publication covers every
//! source table (and the columns the sources read, under a PG15 column list), and for each
//! source table its OID, the columns to copy with their types, its publication row filter
//! (the dump applies it, so the dump and the stream see the same rows), and its size.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use super::BootstrapError;
use crate::config::{Config, SourceKind};
use crate::decode::{Column, Relation, ReplicaIdentity};
use crate::translate::Translator;

/// One source table, as the dump will copy it.
#[derive(Clone, Debug)]
pub struct TablePlan {
    /// The table's name as the config spells it.
    pub table: String,
    /// Its OID.
    pub oid: u32,
    /// Its schema.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The columns copied (those the sources read), with their type OIDs and modifiers.
    pub columns: Vec<(String, u32, i32)>,
    /// COPY in binary: the translator reads every copied column's binary form (cheaper to
    /// produce and to read than text for timestamps and numbers).
    pub binary: bool,
    /// The publication's row filter for the table, if any.
    pub row_filter: Option<String>,
    /// A fan-out source reads it: it loads after the other tables, through the index.
    pub fan_out: bool,
    /// Its size in pages when the snapshot was taken (set by [`measure`]).
    pub pages: u64,
    /// The planner's row estimate (for progress only).
    pub est_rows: u64,
}

impl TablePlan {
    /// `"schema"."name"`, quoted for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", ident(&self.namespace), ident(&self.name))
    }

    /// `schema.name` for messages.
    pub fn display(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The relation the translator binds dump rows to: the copied columns in COPY order.
    pub fn relation(&self) -> Relation {
        Relation {
            oid: self.oid,
            namespace: self.namespace.as_str().into(),
            name: self.name.as_str().into(),
            replica_identity: ReplicaIdentity::Default,
            columns: self
                .columns
                .iter()
                .map(|(name, type_oid, type_modifier)| Column {
                    flags: 0,
                    name: name.as_str().into(),
                    type_oid: *type_oid,
                    type_modifier: *type_modifier,
                })
                .collect(),
        }
    }
}

/// `name` as a quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A config table name (`table` or `schema.table`) as a quoted, qualified identifier.
fn quoted_config_name(table: &str) -> String {
    match table.split_once('.') {
        Some((ns, name)) => format!("{}.{}", ident(ns), ident(name)),
        None => ident(table),
    }
}

fn sql(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> BootstrapError {
    move |source| BootstrapError::Sql { what, source }
}

/// Resolves every source table, checks the publication covers them, and plans their copies.
pub async fn plan(
    client: &Client,
    config: &Config,
    translator: &Translator,
) -> Result<Vec<TablePlan>, BootstrapError> {
    let publication = &config.postgres.publication;
    let tables: BTreeSet<&str> = config.sources.iter().map(|s| s.table.as_str()).collect();
    let mut plans = Vec::new();
    for table in tables {
        let row = client
            .query_opt(
                "SELECT c.oid, n.nspname::text, c.relname::text, c.reltuples::float8 \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = to_regclass($1)",
                &[&quoted_config_name(table)],
            )
            .await
            .map_err(sql("resolving the source tables"))?;
        let Some(row) = row else {
            return Err(BootstrapError::TableMissing {
                table: table.to_owned(),
            });
        };
        let oid: u32 = row.get(0);
        let namespace: String = row.get(1);
        let name: String = row.get(2);
        let est_rows = row.get::<_, f64>(3).max(0.0) as u64;
        let wanted = translator.columns_read(&namespace, &name);
        let mut columns = Vec::with_capacity(wanted.len());
        let mut binary = true;
        for col in &wanted {
            let row = client
                .query_opt(
                    "SELECT a.atttypid, a.atttypmod, t.typtype = 'e' \
                     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                     WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 \
                     AND NOT a.attisdropped",
                    &[&oid, col],
                )
                .await
                .map_err(sql("reading the source tables' columns"))?;
            let Some(row) = row else {
                return Err(BootstrapError::ColumnMissing {
                    table: format!("{namespace}.{name}"),
                    column: col.clone(),
                });
            };
            let type_oid: u32 = row.get(0);
            binary &= crate::translate::reads_binary(type_oid, row.get(2));
            columns.push((col.clone(), type_oid, row.get::<_, i32>(1)));
        }
        let fan_out = config
            .sources
            .iter()
            .any(|s| s.table == table && matches!(s.kind, SourceKind::FanOut { .. }));
        plans.push(TablePlan {
            table: table.to_owned(),
            oid,
            namespace,
            name,
            columns,
            binary,
            row_filter: None,
            fan_out,
            pages: 0,
            est_rows,
        });
    }
    check_publication(client, publication, &mut plans).await?;
    Ok(plans)
}

/// The publication exists, publishes every planned table and every column copied; records each
/// table's row filter.
async fn check_publication(
    client: &Client,
    publication: &str,
    plans: &mut [TablePlan],
) -> Result<(), BootstrapError> {
    let list = plans
        .iter()
        .map(TablePlan::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(sql("checking the publication"))?
        .is_some();
    if !exists {
        return Err(BootstrapError::PublicationMissing {
            publication: publication.to_owned(),
            fix: format!(
                "CREATE PUBLICATION {} FOR TABLE {list};",
                ident(publication)
            ),
        });
    }
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text, attnames::text[], rowfilter \
             FROM pg_publication_tables WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(sql("checking the publication's tables"))?;
    let mut missing = Vec::new();
    let mut missing_columns = Vec::new();
    for plan in plans.iter_mut() {
        let row = rows.iter().find(|r| {
            r.get::<_, String>(0) == plan.namespace && r.get::<_, String>(1) == plan.name
        });
        let Some(row) = row else {
            missing.push(plan.quoted());
            continue;
        };
        let published: Option<Vec<String>> = row.get(2);
        if let Some(published) = published {
            for (col, _, _) in &plan.columns {
                if !published.contains(col) {
                    missing_columns.push(format!("{}.{col}", plan.display()));
                }
            }
        }
        plan.row_filter = row.get(3);
    }
    if !missing.is_empty() {
        return Err(BootstrapError::PublicationIncomplete {
            publication: publication.to_owned(),
            missing: missing.join(", "),
            fix: format!(
                "ALTER PUBLICATION {} ADD TABLE {};",
                ident(publication),
                missing.join(", ")
            ),
        });
    }
    if !missing_columns.is_empty() {
        return Err(BootstrapError::PublicationColumns {
            publication: publication.to_owned(),
            columns: missing_columns.join(", "),
        });
    }
    Ok(())
}

/// Records each table's size in pages, read inside the dump's snapshot (every row version the
/// snapshot sees lies in a page that existed when it was taken).
pub async fn measure(client: &Client, plans: &mut [TablePlan]) -> Result<(), BootstrapError> {
    for plan in plans.iter_mut() {
        let row = client
            .query_one(
                "SELECT pg_relation_size($1::oid) / current_setting('block_size')::bigint",
                &[&plan.oid],
            )
            .await
            .map_err(sql("measuring the source tables"))?;
        plan.pages = row.get::<_, i64>(0).max(0) as u64;
    }
    Ok(())
}

/// One COPY: a table, or a range of its pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Index into the plans.
    pub table: usize,
    /// First page (inclusive), if bounded below.
    pub from_page: Option<u64>,
    /// Last page (exclusive), if bounded above.
    pub to_page: Option<u64>,
}

impl Job {
    /// The COPY statement for this job.
    pub fn copy_sql(&self, plan: &TablePlan) -> String {
        let cols = plan
            .columns
            .iter()
            .map(|(c, _, _)| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let mut conds = Vec::new();
        if let Some(p) = self.from_page {
            conds.push(format!("ctid >= '({p},0)'::tid"));
        }
        if let Some(p) = self.to_page {
            conds.push(format!("ctid < '({p},0)'::tid"));
        }
        if let Some(f) = &plan.row_filter {
            conds.push(format!("({f})"));
        }
        let format = if plan.binary { " (FORMAT binary)" } else { "" };
        if conds.is_empty() {
            // A whole table: COPY reads the heap itself, without the executor.
            return format!("COPY {} ({cols}) TO STDOUT{format}", plan.quoted());
        }
        format!(
            "COPY (SELECT {cols} FROM {} WHERE {}) TO STDOUT{format}",
            plan.quoted(),
            conds.join(" AND ")
        )
    }
}

/// Splits the tables into jobs of about `chunk_pages` pages (the last one of a table is open
/// ended). `only` selects tables (by index); jobs of the largest tables come first.
pub fn jobs(plans: &[TablePlan], only: &[usize], chunk_pages: u64) -> Vec<Job> {
    let chunk = chunk_pages.max(1);
    let mut order: Vec<usize> = only.to_vec();
    order.sort_by_key(|&i| std::cmp::Reverse(plans[i].pages));
    let mut out = Vec::new();
    for i in order {
        let pages = plans[i].pages;
        if pages <= chunk {
            out.push(Job {
                table: i,
                from_page: None,
                to_page: None,
            });
            continue;
        }
        let mut from = 0;
        while from < pages {
            let to = from + chunk;
            out.push(Job {
                table: i,
                from_page: (from > 0).then_some(from),
                to_page: (to < pages).then_some(to),
            });
            from = to;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(pages: u64) -> TablePlan {
        TablePlan {
            table: "Image".into(),
            oid: 1,
            namespace: "public".into(),
            name: "Image".into(),
            columns: vec![("id".into(), 23, -1), ("we\"ird".into(), 25, -1)],
            binary: false,
            row_filter: Some("id > 0".into()),
            fan_out: false,
            pages,
            est_rows: 0,
        }
    }

    #[test]
    fn jobs_cover_every_page_once() {
        let plans = vec![plan(10), plan(2500), plan(0)];
        let jobs = jobs(&plans, &[0, 1, 2], 1000);
        assert_eq!(jobs.len(), 5);
        assert_eq!(jobs[0].table, 1);
        let t1: Vec<_> = jobs
            .iter()
            .filter(|j| j.table == 1)
            .map(|j| (j.from_page, j.to_page))
            .collect();
        assert_eq!(
            t1,
            vec![
                (None, Some(1000)),
                (Some(1000), Some(2000)),
                (Some(2000), None)
            ]
        );
        assert!(jobs.iter().any(|j| j.table == 2 && j.from_page.is_none()));
    }

    #[test]
    fn copy_sql_quotes_and_filters() {
        let p = plan(10);
        let j = Job {
            table: 0,
            from_page: Some(5),
            to_page: None,
        };
        assert_eq!(
            j.copy_sql(&p),
            "COPY (SELECT \"id\", \"we\"\"ird\" FROM \"public\".\"Image\" WHERE \
             ctid >= '(5,0)'::tid AND (id > 0)) TO STDOUT"
        );
        // A whole table without a row filter is copied directly; binary when planned so.
        let mut p = plan(10);
        p.row_filter = None;
        p.binary = true;
        let j = Job {
            table: 0,
            from_page: None,
            to_page: None,
        };
        assert_eq!(
            j.copy_sql(&p),
            "COPY \"public\".\"Image\" (\"id\", \"we\"\"ird\") TO STDOUT (FORMAT binary)"
        );
    }
}
