//! The start-up check of what each source table's replica identity lets the stream carry. It
//! does no I/O: `source::catalog` reads the identities and hands them here.
//!
//! A DELETE (and an UPDATE that changes the key) carries only the replica identity's columns.
//! A direct table whose DELETE would not carry its `slot_field`, a join table whose DELETE
//! would not carry `slot_field` and `value_field`, or a joined fan-out table whose DELETE would
//! not carry the columns its query reads, cannot be kept in sync: that is an error whose message
//! gives the `ALTER TABLE … REPLICA IDENTITY …` fix. Everything else is reported as what
//! the identity allows (e.g. an UPDATE without old values becomes `set(new)`, and the index
//! moves the slot out of its old value itself).

use crate::config::{Config, Source, SourceKind};

/// What one source table's replica identity allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityReport {
    /// The table, as the config names it.
    pub table: String,
    /// `default`, `full`, `index` or `nothing`.
    pub identity: &'static str,
    /// The columns an old row carries (all of them under `full`).
    pub columns: Vec<String>,
    /// What that means for this source, one sentence each.
    pub notes: Vec<String>,
}

/// Why the start-up check fails.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The catalog query failed.
    #[error("reading replica identities: {0}")]
    Sql(#[from] tokio_postgres::Error),
    /// Tables whose identity cannot support their source, one line each with the fix.
    #[error("replica identity problems:\n{}", .0.join("\n"))]
    Problems(Vec<String>),
}

fn quote(table: &str) -> String {
    match table.split_once('.') {
        Some((ns, name)) => format!("\"{ns}\".\"{name}\""),
        None => format!("\"{table}\""),
    }
}

/// What a source table's replica identity is, as the catalog says (read by
/// `source::catalog::replica_identities`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableIdentity {
    /// `default`, `full`, `index` or `nothing`.
    pub identity: &'static str,
    /// The columns an old row carries (all of them under `full`).
    pub columns: Vec<String>,
}

/// Checks every source table's replica identity, given what the catalog says of each
/// (`identities[i]` for `config.sources[i]`, `None` when the table does not exist); `Err`
/// lists every table that cannot work. No I/O.
pub fn check_identities(
    config: &Config,
    identities: &[Option<TableIdentity>],
) -> Result<Vec<IdentityReport>, IdentityError> {
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    for (source, found) in config.sources.iter().zip(identities) {
        let Some(found) = found else {
            problems.push(format!("table {:?} does not exist", source.table));
            continue;
        };
        let (report, stops) = judge(source, found);
        reports.push(report);
        problems.extend(stops);
    }
    if problems.is_empty() {
        Ok(reports)
    } else {
        Err(IdentityError::Problems(problems))
    }
}

/// What `found` means for `source`: its report, and the problems that stop it (none if it works).
fn judge(source: &Source, found: &TableIdentity) -> (IdentityReport, Vec<String>) {
    let TableIdentity { identity, columns } = found;
    let identity = *identity;
    let carries = |c: &str| columns.iter().any(|k| k == c);
    let fix = format!(
        "fix: ALTER TABLE {t} REPLICA IDENTITY FULL; (or a unique index on the columns and ALTER TABLE {t} REPLICA IDENTITY USING INDEX …)",
        t = quote(&source.table)
    );
    let mut notes = vec![if identity == "full" {
        "UPDATEs carry old values: ops are remove(old) + set(new) for changed fields".to_string()
    } else {
        "UPDATEs carry no old values: ops are set(new); the index moves the slot out of its old value"
            .to_string()
    }];
    let mut problems: Vec<String> = Vec::new();
    match &source.kind {
        SourceKind::Direct {
            slot_field,
            on_delete,
            ..
        } => {
            if *on_delete && !carries(slot_field) {
                problems.push(format!(
                    "table {:?} (direct, on_delete): a DELETE would not carry slot_field {slot_field:?} (replica identity {identity}); {fix}",
                    source.table
                ));
            }
        }
        SourceKind::Join {
            slot_field,
            value_field,
            filter,
            ..
        } => {
            let missing: Vec<&str> = [slot_field, value_field]
                .into_iter()
                .filter(|c| !carries(c))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "table {:?} (join): a DELETE would not carry {} (replica identity {identity}); {fix}",
                    source.table,
                    missing.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(" and ")
                ));
            }
            if let Some(f) = filter
                && identity != "full"
            {
                notes.push(format!(
                    "a DELETE cannot evaluate the filter {f:?}: the value is removed regardless (a no-op when it was filtered out)"
                ));
            }
        }
        SourceKind::FanOut { query, join, .. } => {
            let missing: Vec<String> = query
                .columns()
                .into_iter()
                .filter(|c| !carries(c))
                .collect();
            let list = missing
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(" and ");
            if missing.is_empty() {
                notes.push(
                    "a DELETE sets the fields it gives NULL on the slots its query selects".into(),
                );
            } else if *join {
                problems.push(format!(
                    "table {:?} (fan-out, joined): a DELETE would not carry {list}, which its query {:?} reads (replica identity {identity}), so the slots joined to a deleted row would keep its values; {fix}",
                    source.table, query.text
                ));
            } else {
                notes.push(format!(
                    "a DELETE does not carry {list}: it produces no ops, and the matching slots keep the deleted row's values"
                ));
            }
        }
    }
    let report = IdentityReport {
        table: source.table.clone(),
        identity,
        columns: columns.clone(),
        notes,
    };
    (report, problems)
}
