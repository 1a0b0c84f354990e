//! TRUNCATE → table-wide ops, per source kind (the rules are in the parent module's docs).

use std::sync::Arc;

use crate::config::Config;
use crate::decode::{Column, Message, Oid, Relation, RelationCache, ReplicaIdentity, Truncate};
use crate::ops::{EntityOps, Op};

use super::Translator;

const INT4: Oid = 23;

fn config() -> Config {
    let text = r#"
[postgres]
url = "postgres://localhost/db"
[index]
filters = [
  { name = "a", kind = "single" }, { name = "c", kind = "single" }, { name = "p", kind = "single" },
  { name = "tagIds", kind = "multi" }, { name = "toolIds", kind = "multi" },
  { name = "pc", kind = "single" }, { name = "pd", kind = "single" },
]
[[sources]]
table = "items"
track_fields = ["a"]
sets_alive = true
on_delete = true
[[sources]]
table = "plain"
track_fields = ["c"]
[[sources]]
table = "tags"
slot_field = "item"
field = "tagIds"
value_field = "v"
[[sources]]
table = "tools"
slot_field = "item"
field = "toolIds"
value_field = "v"
[[sources]]
table = "public.more_tools"
slot_field = "item"
field = "toolIds"
value_field = "v"
[[sources]]
table = "posts"
query = "p eq {id}"
track_fields = ["{c} as pc", "{d} as pd"]
[[sources]]
table = "lists"
query = "p eq {id}"
track_fields = ["c"]
join = false
"#;
    Config::from_toml_str(text, std::iter::empty()).expect("test config")
}

/// (oid, table, columns) of every table the config reads, plus one it does not.
const TABLES: &[(Oid, &str, &[&str])] = &[
    (1, "items", &["id", "a"]),
    (2, "plain", &["id", "c"]),
    (3, "tags", &["item", "v"]),
    (4, "tools", &["item", "v"]),
    (5, "more_tools", &["item", "v"]),
    (6, "posts", &["id", "c", "d"]),
    (7, "unrelated", &["id"]),
    (8, "lists", &["id", "c"]),
];

fn translator() -> (Translator, RelationCache) {
    let mut t = Translator::new(&config()).unwrap();
    let mut cache = RelationCache::new();
    for &(oid, name, cols) in TABLES {
        let change = cache.insert(Relation {
            oid,
            namespace: Arc::from("public"),
            name: Arc::from(name),
            replica_identity: ReplicaIdentity::Default,
            columns: cols
                .iter()
                .map(|c| Column {
                    flags: 0,
                    name: Arc::from(*c),
                    type_oid: INT4,
                    type_modifier: -1,
                })
                .collect(),
        });
        t.relation(&change).unwrap();
    }
    (t, cache)
}

/// The ops a TRUNCATE of `oids` (with every option set) translates to, and the stats after.
fn truncate(oids: &[Oid]) -> (Vec<EntityOps>, super::TranslateStats) {
    let (mut t, cache) = translator();
    let msg = Message::Truncate(Truncate {
        options: Truncate::CASCADE | Truncate::RESTART_IDENTITY,
        relations: oids.to_vec(),
    });
    let mut out = Vec::new();
    t.change(&msg, &cache, &mut out).unwrap();
    (out, t.stats())
}

fn field(f: &str) -> Vec<EntityOps> {
    vec![EntityOps::new(0, vec![Op::truncate(Some(f))])]
}

#[test]
fn a_direct_source_with_on_delete_deletes_every_slot() {
    let (out, stats) = truncate(&[1]);
    assert_eq!(out, vec![EntityOps::new(0, vec![Op::truncate(None)])]);
    assert_eq!((stats.truncates, stats.truncates_not_applied), (1, 0));
    // With join tables in the same statement: a delete leaves join-table values, so their
    // fields are emptied too — but not `toolIds`, which `more_tools` (not truncated) also feeds.
    let (out, stats) = truncate(&[3, 1, 4]);
    assert_eq!(
        out,
        vec![EntityOps::new(
            0,
            vec![Op::truncate(None), Op::truncate(Some("tagIds"))]
        )]
    );
    assert_eq!((stats.truncates, stats.truncates_not_applied), (3, 1));
}

#[test]
fn a_join_source_clears_its_field() {
    let (out, stats) = truncate(&[3]);
    assert_eq!(out, field("tagIds"));
    assert_eq!((stats.truncates, stats.truncates_not_applied), (1, 0));
}

#[test]
fn a_field_another_table_feeds_is_not_cleared_unless_both_are_truncated() {
    let (out, stats) = truncate(&[4]);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!((stats.truncates, stats.truncates_not_applied), (1, 1));
    let (out, stats) = truncate(&[5, 3]);
    assert_eq!(out, field("tagIds"), "tagIds cleared, toolIds kept");
    assert_eq!((stats.truncates, stats.truncates_not_applied), (2, 1));
    // Both feeders truncated together: the field is cleared, once.
    let (out, stats) = truncate(&[4, 5]);
    assert_eq!(out, field("toolIds"));
    assert_eq!((stats.truncates, stats.truncates_not_applied), (2, 0));
    let (out, _) = truncate(&[4, 3, 5]);
    assert_eq!(
        out,
        vec![EntityOps::new(
            0,
            vec![Op::truncate(Some("tagIds")), Op::truncate(Some("toolIds"))]
        )]
    );
}

#[test]
fn sources_whose_delete_emits_nothing_emit_nothing() {
    // A direct source without on_delete, a fan-out source not kept as a join, a table no
    // source reads.
    let (out, stats) = truncate(&[2, 8, 7]);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!((stats.truncates, stats.truncates_not_applied), (2, 0));
}

#[test]
fn a_joined_table_empties_the_fields_it_gives() {
    let (out, _) = truncate(&[6]);
    assert_eq!(
        out,
        vec![EntityOps::new(
            0,
            vec![Op::truncate(Some("pc")), Op::truncate(Some("pd"))]
        )]
    );
    // Truncated with the direct table: every slot goes, and so do the parent rows.
    let (out, _) = truncate(&[6, 1]);
    assert_eq!(
        out,
        vec![EntityOps::new(
            0,
            vec![
                Op::truncate(None),
                Op::truncate(Some("pc")),
                Op::truncate(Some("pd"))
            ]
        )]
    );
}

#[test]
fn translated_ops_carry_the_schema_field_ids() {
    let (mut t, _) = translator();
    let ids = config().index.schema.field_ids();
    let row = |vals: &[&str]| crate::decode::TupleData {
        columns: vals
            .iter()
            .map(|v| crate::decode::Datum::Text(bytes::Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
    };
    let mut out: Vec<EntityOps> = Vec::new();
    t.insert(1, &row(&["7", "1"]), &mut out); // direct
    t.insert(3, &row(&["7", "2"]), &mut out); // join table
    t.insert(6, &row(&["5", "3", "4"]), &mut out); // fan-out, joined
    let mut fields = Vec::new();
    for op in out.iter().flat_map(|e| &e.ops) {
        match op {
            Op::QueryOpSet { ops, .. } => fields.extend(ops.iter().filter_map(Op::field)),
            op => fields.extend(op.field()),
        }
    }
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["a", "tagIds", "pc", "pd"]);
    for f in fields {
        assert_eq!(f.id(), ids.lookup(f), "{f} carries its id");
        assert!(f.id().is_some());
    }
}

#[test]
fn a_date_or_time_expression_feeding_a_sort_field_is_refused_naming_the_fix() {
    const TIMESTAMPTZ: Oid = 1184;
    let text = r#"
[postgres]
url = "postgres://localhost/db"
[index]
sorts = [{ name = "existedAt", bits = 32 }, { name = "epoch", bits = 32 }]
[[sources]]
table = "images"
track_fields = ["GREATEST({a}, {b}) as existedAt", "extract(epoch from {a})::bigint as epoch"]
sets_alive = true
"#;
    let config = Config::from_toml_str(text, std::iter::empty()).unwrap();
    let mut t = Translator::new(&config).unwrap();
    let mut cache = RelationCache::new();
    let column = |name: &str, type_oid| Column {
        flags: 0,
        name: Arc::from(name),
        type_oid,
        type_modifier: -1,
    };
    let change = cache.insert(Relation {
        oid: 1,
        namespace: Arc::from("public"),
        name: Arc::from("images"),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column("id", INT4),
            column("a", TIMESTAMPTZ),
            column("b", TIMESTAMPTZ),
        ],
    });
    let e = t.relation(&change).unwrap_err().to_string();
    assert!(
        e.contains("\"existedAt\"") && e.contains("extract(epoch from") && e.contains("timestamp"),
        "{e}"
    );
}
