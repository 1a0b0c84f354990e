//! `pgroar triggers` against a real Postgres: the generated SQL installs cleanly twice, and the
//! ops the triggers write equal, transaction by transaction, the ops pgroar decodes from a slot
//! on the same database (`REPLICA IDENTITY FULL`, before dedup, value types included).

mod differential;
mod forward;
mod served;
mod workload;

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use pgroar::cluster::TestDb;
use pgroar::config::Config;
use pgroar::dataset;
use pgroar::decode::{Message, RelationCache, decode_message};
use pgroar::ops::EntityOps;
use pgroar::translate::Translator;
use pgroar::triggers::{self, Options};
use tokio_postgres::Client;

/// The image-feed config pointed at `db` (slot named after it), with a join filter on
/// `ImageTool` so that the filter's rules are compared too.
pub fn feed_config(db: &TestDb) -> Config {
    let text = feed_config_text(db, std::path::Path::new("unused"), "127.0.0.1:0");
    Config::from_toml_str(&text, std::iter::empty()).expect("the example config loads")
}

/// [`feed_config`]'s text, with a data directory and a listen address.
pub fn feed_config_text(db: &TestDb, data_dir: &std::path::Path, listen: &str) -> String {
    let text = dataset::config_text(&db.url(), &format!("s_{}", db.name()), data_dir, listen);
    let filtered = text.replace(
        "value_field = \"toolId\"",
        "value_field = \"toolId\"\nfilter = \"{toolId} <> 2\"",
    );
    assert_ne!(filtered, text);
    filtered
}

/// The six tables (with keys, `REPLICA IDENTITY FULL`), the publication and the triggers.
pub async fn prepare(client: &Client, config: &Config) {
    prepare_with(client, config, true).await;
}

/// [`prepare`], with `REPLICA IDENTITY FULL` or the default (the primary key).
pub async fn prepare_with(client: &Client, config: &Config, full: bool) {
    client
        .batch_execute(&format!("{}{}", dataset::SCHEMA, dataset::KEYS))
        .await
        .expect("the dataset's tables");
    for t in dataset::TABLES.iter().filter(|_| full) {
        client
            .batch_execute(&format!("ALTER TABLE \"{t}\" REPLICA IDENTITY FULL"))
            .await
            .unwrap();
    }
    let tables: Vec<String> = dataset::TABLES.iter().map(|t| format!("\"{t}\"")).collect();
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            config.postgres.publication,
            tables.join(", ")
        ))
        .await
        .unwrap();
    client
        .batch_execute(&triggers::install_sql(config, &Options::default()))
        .await
        .expect("the trigger SQL installs");
}

/// A logical slot on pgoutput, made through SQL so that its changes can be read with
/// `pg_logical_slot_peek_binary_changes`, each message with its transaction id.
pub async fn create_slot(client: &Client, slot: &str) {
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .expect("a slot");
}

/// The ops of each committed transaction, by transaction id.
pub type OpsByTxn = BTreeMap<i64, Vec<EntityOps>>;

/// Decodes the slot's changes (without consuming them) and translates them as the pipeline
/// does, grouping the entity ops by the transaction that made them.
pub async fn stream_ops(client: &Client, config: &Config) -> OpsByTxn {
    // The form the source asks for: binary, unless a relation reads a column without a binary
    // form decoded here.
    let enums: HashSet<u32> = client
        .query("SELECT oid FROM pg_type WHERE typtype = 'e'", &[])
        .await
        .expect("enum types")
        .iter()
        .map(|r| r.get(0))
        .collect();
    match translate_peeked(client, config, Some(&enums)).await {
        Some(ops) => ops,
        None => translate_peeked(client, config, None)
            .await
            .expect("text form"),
    }
}

/// The slot's changes (peeked) translated by transaction; `binary_enums`: values in binary
/// form, `None` returned if a relation needs text.
async fn translate_peeked(
    client: &Client,
    config: &Config,
    binary_enums: Option<&HashSet<u32>>,
) -> Option<OpsByTxn> {
    let rows = client
        .query(
            "SELECT xid::text::bigint, data FROM pg_logical_slot_peek_binary_changes($1, NULL, \
             NULL, 'proto_version', '1', 'publication_names', $2, 'binary', $3)",
            &[
                &config.postgres.slot,
                &config.postgres.publication,
                &binary_enums.is_some().to_string(),
            ],
        )
        .await
        .expect("the slot's changes");
    let mut translator = Translator::new(config).expect("translator");
    let mut relations = RelationCache::new();
    let mut out = OpsByTxn::new();
    for row in rows {
        let xid: i64 = row.get(0);
        let data: Vec<u8> = row.get(1);
        let msg = decode_message(&Bytes::from(data)).expect("a pgoutput message");
        match &msg {
            Message::Relation(r) => {
                let change = relations.insert(r.clone());
                translator.relation(&change).expect("binds");
                if let Some(enums) = binary_enums
                    && !translator.reads_binary(r.oid, enums)
                {
                    return None;
                }
            }
            Message::Insert(_) | Message::Update(_) | Message::Delete(_) | Message::Truncate(_) => {
                let ops = out.entry(xid).or_default();
                translator
                    .change(&msg, &relations, ops)
                    .expect("translates");
            }
            _ => {}
        }
    }
    out.retain(|_, ops| !ops.is_empty());
    Some(out)
}

/// The rows the triggers wrote, by the transaction that wrote them (`xmin`), in id order.
pub async fn trigger_ops(client: &Client) -> OpsByTxn {
    let rows = client
        .query(
            "SELECT xmin::text::bigint, entity_id, ops::text, creates_slot FROM pgroar_ops ORDER BY id",
            &[],
        )
        .await
        .expect("the ops table");
    let mut out = OpsByTxn::new();
    for row in rows {
        let ops: String = row.get(2);
        out.entry(row.get(0)).or_default().push(EntityOps {
            entity_id: row.get(1),
            ops: serde_json::from_str(&ops).unwrap_or_else(|e| panic!("{ops}: {e}")),
            creates_slot: row.get(3),
        });
    }
    out
}

/// The first transaction whose ops differ as multisets, described; `None` when all agree.
pub fn first_difference(stream: &OpsByTxn, triggers: &OpsByTxn) -> Option<String> {
    let sorted = |ops: Option<&Vec<EntityOps>>| {
        let mut v: Vec<String> = ops
            .into_iter()
            .flatten()
            .map(|e| serde_json::to_string(e).expect("serializes"))
            .collect();
        v.sort();
        v
    };
    let xids: std::collections::BTreeSet<i64> =
        stream.keys().chain(triggers.keys()).copied().collect();
    for xid in xids {
        let (s, t) = (sorted(stream.get(&xid)), sorted(triggers.get(&xid)));
        if s != t {
            let only = |a: &[String], b: &[String]| -> Vec<String> {
                a.iter().filter(|x| !b.contains(x)).cloned().collect()
            };
            return Some(format!(
                "transaction {xid}:\n  decoded from the slot only:\n    {}\n  written by the triggers only:\n    {}",
                only(&s, &t).join("\n    "),
                only(&t, &s).join("\n    ")
            ));
        }
    }
    None
}

/// Total entity ops in a map.
pub fn count(ops: &OpsByTxn) -> usize {
    ops.values().map(Vec::len).sum()
}
