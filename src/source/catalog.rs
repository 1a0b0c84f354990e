//! Catalog reads: what each source table's replica identity lets a DELETE carry (the start-up
//! checks), and the slot's row in `pg_replication_slots` (the status). The judgement of what that means for each source is the translator's
//! ([`crate::translate::check_identities`]), which does no I/O.

use tokio_postgres::Client;

use crate::config::Config;
use crate::translate::{IdentityError, IdentityReport, TableIdentity, check_identities};

const QUERY: &str = r#"
SELECT c.relreplident::text, n.nspname::text,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = c.oid
               AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident)))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = $1 AND ($2::text IS NULL OR n.nspname = $2) AND c.relkind IN ('r', 'p')
ORDER BY n.nspname = 'public' DESC
LIMIT 1"#;

/// What the catalog says of each source table's replica identity, in `config.sources` order
/// (`None`: no such table).
pub async fn replica_identities(
    client: &tokio_postgres::Client,
    config: &Config,
) -> Result<Vec<Option<TableIdentity>>, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(config.sources.len());
    for source in &config.sources {
        let (ns, name) = match source.table.split_once('.') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, source.table.as_str()),
        };
        let Some(row) = client.query_opt(QUERY, &[&name, &ns]).await? else {
            out.push(None);
            continue;
        };
        let mode: String = row.get(0);
        let all: Vec<String> = row.get(2);
        let key: Vec<String> = row.get(3);
        let (identity, columns) = match mode.as_str() {
            "f" => ("full", all),
            "i" => ("index", key),
            "n" => ("nothing", Vec::new()),
            _ => ("default", key),
        };
        out.push(Some(TableIdentity { identity, columns }));
    }
    Ok(out)
}

/// Reads every source table's replica identity and checks it; `Err` lists every table that
/// cannot work (or the catalog read's failure).
pub async fn check_replica_identity(
    client: &tokio_postgres::Client,
    config: &Config,
) -> Result<Vec<IdentityReport>, IdentityError> {
    let identities = replica_identities(client, config).await?;
    check_identities(config, &identities)
}

/// The source tables of `config` that are not (or no longer) in its publication: renamed,
/// dropped, or removed from it. Their changes are not streamed.
pub async fn missing_from_publication(
    client: &Client,
    config: &Config,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let tables: Vec<String> = config.sources.iter().map(|s| s.table.clone()).collect();
    let rows = client
        .query(
            "SELECT t FROM unnest($2::text[]) t WHERE NOT EXISTS ( \
               SELECT 1 FROM pg_publication_tables p WHERE p.pubname = $1 \
               AND (p.schemaname || '.' || p.tablename = t \
                    OR (strpos(t, '.') = 0 AND p.tablename = t)))",
            &[&config.postgres.publication, &tables],
        )
        .await?;
    let mut missing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    missing.dedup();
    Ok(missing)
}

/// What is wrong with the source tables now, if anything: tables missing from the
/// publication, replica identities that no longer work. Read by the catalog watcher.
pub async fn source_faults(client: &Client, config: &Config) -> Result<Option<String>, String> {
    let missing = missing_from_publication(client, config)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(table) = missing.first() {
        let publication = &config.postgres.publication;
        return Ok(Some(format!(
            "source table {table:?} is not in publication {publication:?} (renamed, dropped or removed from it): its changes are no longer streamed. Put it back (ALTER PUBLICATION {publication} ADD TABLE …) or change [[sources]], then re-bootstrap (pgroar bootstrap --force): changes made meanwhile were never sent"
        )));
    }
    match check_replica_identity(client, config).await {
        Ok(_) => Ok(None),
        Err(IdentityError::Sql(e)) => Err(e.to_string()),
        Err(e) => Ok(Some(format!(
            "{e}\nthen re-bootstrap (pgroar bootstrap --force): changes made meanwhile may not have identified their rows"
        ))),
    }
}

/// `pg_replication_slots`' row for `slot`, if the slot exists.
pub async fn slot_state(
    client: &Client,
    slot: &str,
) -> Result<Option<crate::status::SlotState>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT active, coalesce(wal_status, 'unknown'), \
                    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, \
                    safe_wal_size \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| crate::status::SlotState {
        active: r.get(0),
        wal_status: r.get(1),
        retained_bytes: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
        safe_wal_bytes: r.get(3),
        age_seconds: 0.0,
    }))
}
