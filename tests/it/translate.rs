//! Row changes from a real Postgres, decoded and translated, applied to an index: the index
//! equals SQL ground truth over the same tables, under both replica identities.
//!
//! The pgoutput messages are read with `pg_logical_slot_get_binary_changes` (the same bytes the
//! walsender streams), so this exercises decode → translate → index without the network loop.

use std::collections::BTreeMap;

use bytes::Bytes;
use pgroar::cluster::TestDb;
use pgroar::config::Config;
use pgroar::decode::{Message, RelationCache, decode_message};
use pgroar::index::{DumpKey, FieldDump, Index, IndexState};
use pgroar::ops::EntityOps;
use pgroar::translate::Translator;

const SCHEMA: &str = r#"
CREATE TYPE image_type AS ENUM ('image', 'video', 'audio');
CREATE TABLE "Image" (
    id int PRIMARY KEY, "nsfwLevel" int, type image_type, "scannedAt" timestamptz,
    "createdAt" timestamptz, flags int NOT NULL DEFAULT 0, meta text, "postId" int);
ALTER TABLE "Image" ALTER COLUMN meta SET STORAGE EXTERNAL;
CREATE TABLE "TagsOnImage" (
    "imageId" int REFERENCES "Image"(id) ON DELETE CASCADE ON UPDATE CASCADE, "tagId" int,
    attributes int NOT NULL DEFAULT 0, PRIMARY KEY ("imageId", "tagId"));
CREATE TABLE "Post" (id int PRIMARY KEY, "publishedAt" timestamptz);
CREATE TABLE "Unrelated" (id int PRIMARY KEY, v text);
CREATE PUBLICATION pgroar FOR TABLE "Image", "TagsOnImage", "Post", "Unrelated";
"#;

const WORKLOAD: &[&str] = &[
    r#"INSERT INTO "Image" SELECT i, (ARRAY[1,2,4,8,16])[1 + i % 5],
         (ARRAY['image','video','audio']::image_type[])[1 + i % 3],
         CASE WHEN i % 7 = 0 THEN NULL ELSE timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour' END,
         timestamptz '2023-06-01 12:00:00.5+00' + i * interval '37 minutes',
         (i * 2731) % 65536,
         CASE WHEN i % 4 = 0 THEN NULL WHEN i % 4 = 1 THEN 'short' ELSE repeat(md5(i::text), 300) END,
         1 + i % 10
       FROM generate_series(1, 300) i"#,
    r#"INSERT INTO "TagsOnImage" SELECT i, t, CASE WHEN (i + t) % 5 = 0 THEN 1024 ELSE 0 END
       FROM generate_series(1, 300) i, generate_series(1, 1 + i % 4) t"#,
    r#"INSERT INTO "Post" SELECT p, CASE WHEN p % 3 = 0 THEN NULL
         ELSE timestamptz '2024-03-01 00:00:00+00' + p * interval '1 day 1.5 seconds' END
       FROM generate_series(1, 10) p"#,
    r#"BEGIN; UPDATE "Image" SET "nsfwLevel" = 32 WHERE id % 11 = 0;
       UPDATE "Image" SET "nsfwLevel" = NULL WHERE id % 13 = 0; COMMIT"#,
    // hasMeta flips while the TOASTed meta column is left unchanged.
    r#"UPDATE "Image" SET flags = flags # 8192 WHERE id % 6 = 0"#,
    r#"UPDATE "Image" SET "scannedAt" = "scannedAt" + interval '1 year' WHERE id % 9 = 0"#,
    r#"UPDATE "Image" SET meta = NULL WHERE id % 17 = 2"#,
    r#"UPDATE "Image" SET type = 'video' WHERE id % 19 = 0"#,
    r#"INSERT INTO "Unrelated" VALUES (1, 'x')"#,
    r#"DELETE FROM "Image" WHERE id % 23 = 0"#,
    r#"INSERT INTO "Image"(id, "nsfwLevel", type, "createdAt", flags, "postId")
       SELECT id, 4, 'audio', timestamptz '2025-01-01 00:00:00+00', 0, 2 FROM generate_series(23, 300, 46) id"#,
    r#"INSERT INTO "TagsOnImage" VALUES (23, 7, 0), (69, 7, 1024)"#,
    // The join filter's outcome flips; then a key change; then deletes.
    r#"UPDATE "TagsOnImage" SET attributes = attributes # 1024 WHERE ("imageId" + "tagId") % 3 = 0"#,
    r#"UPDATE "TagsOnImage" SET "tagId" = "tagId" + 100 WHERE "imageId" % 10 = 1 AND "tagId" = 1"#,
    r#"DELETE FROM "TagsOnImage" WHERE "imageId" % 8 = 0 AND "tagId" = 2"#,
    r#"UPDATE "Post" SET "publishedAt" = timestamptz '2024-12-24 18:30:00.75+00' WHERE id IN (2, 3)"#,
    r#"UPDATE "Post" SET "publishedAt" = NULL WHERE id = 4"#,
    r#"UPDATE "Image" SET id = 1000 WHERE id = 5"#,
];

fn config(url: &str) -> Config {
    let text = format!(
        r#"
[postgres]
url = "{url}"
[index]
filters = [
  {{ name = "nsfwLevel", kind = "single" }}, {{ name = "type", kind = "single" }},
  {{ name = "hasMeta", kind = "bool" }}, {{ name = "hasPrompt", kind = "bool" }},
  {{ name = "postId", kind = "single" }}, {{ name = "tagIds", kind = "multi" }},
]
sorts = [ {{ name = "existedAt", bits = 32 }}, {{ name = "publishedAt", bits = 32 }} ]
[[sources]]
table = "Image"
sets_alive = true
on_delete = "delete_slot"
track_fields = [
  "nsfwLevel", "{{type}}::text as type",
  "GREATEST(extract(epoch from {{scannedAt}})::bigint, extract(epoch from {{createdAt}})::bigint) as existedAt",
  "({{flags}} & (1 << 13)) != 0 AND ({{flags}} & (1 << 2)) = 0 as hasMeta",
  "{{meta}} IS NOT NULL as hasPrompt", "postId",
]
[[sources]]
table = "TagsOnImage"
slot_field = "imageId"
field = "tagIds"
value_field = "tagId"
filter = "({{attributes}} >> 10) & 1 = 0"
[[sources]]
table = "Post"
query = "postId eq {{id}}"
track_fields = ["extract(epoch from {{publishedAt}})::bigint as publishedAt"]
"#
    );
    Config::from_toml_str(&text, std::iter::empty()).expect("test config is valid")
}

/// The index state SQL says the tables imply, for live slots.
async fn ground_truth(client: &tokio_postgres::Client) -> IndexState {
    let mut state = IndexState::default();
    let rows = client
        .query(
            r#"SELECT i.id, i."nsfwLevel", i.type::text,
                      GREATEST(extract(epoch from i."scannedAt")::bigint, extract(epoch from i."createdAt")::bigint),
                      (i.flags & (1 << 13)) != 0 AND (i.flags & (1 << 2)) = 0,
                      i.meta IS NOT NULL, i."postId",
                      extract(epoch from p."publishedAt")::bigint
               FROM "Image" i LEFT JOIN "Post" p ON p.id = i."postId" ORDER BY i.id"#,
            &[],
        )
        .await
        .unwrap();
    let mut filters: BTreeMap<String, FieldDump> = BTreeMap::new();
    let mut put = |field: &str, slot: u32, key: Option<DumpKey>| {
        let f = filters.entry(field.to_string()).or_default();
        match key {
            None => f.null.push(slot),
            Some(k) => f.values.entry(k).or_default().push(slot),
        }
    };
    let mut existed = BTreeMap::new();
    let mut published = BTreeMap::new();
    for r in &rows {
        let id: i32 = r.get(0);
        let slot = id as u32;
        state.alive.push(slot);
        put(
            "nsfwLevel",
            slot,
            r.get::<_, Option<i32>>(1).map(|v| DumpKey::Int(v.into())),
        );
        put(
            "type",
            slot,
            r.get::<_, Option<String>>(2).map(DumpKey::Str),
        );
        put(
            "hasMeta",
            slot,
            r.get::<_, Option<bool>>(4).map(|b| DumpKey::Int(b.into())),
        );
        put(
            "hasPrompt",
            slot,
            r.get::<_, Option<bool>>(5).map(|b| DumpKey::Int(b.into())),
        );
        put(
            "postId",
            slot,
            r.get::<_, Option<i32>>(6).map(|v| DumpKey::Int(v.into())),
        );
        if let Some(v) = r.get::<_, Option<i64>>(3).filter(|&v| v != 0) {
            existed.insert(slot, v.clamp(0, u32::MAX.into()) as u32);
        }
        if let Some(v) = r.get::<_, Option<i64>>(7).filter(|&v| v != 0) {
            published.insert(slot, v.clamp(0, u32::MAX.into()) as u32);
        }
    }
    let tags = client
        .query(
            r#"SELECT "imageId", "tagId" FROM "TagsOnImage" WHERE ("attributes" >> 10) & 1 = 0 ORDER BY 1, 2"#,
            &[],
        )
        .await
        .unwrap();
    for r in &tags {
        put(
            "tagIds",
            r.get::<_, i32>(0) as u32,
            Some(DumpKey::Int(r.get::<_, i32>(1).into())),
        );
    }
    for f in filters.values_mut() {
        for slots in f.values.values_mut() {
            slots.sort_unstable();
        }
    }
    filters.entry("tagIds".into()).or_default();
    state.filters = filters;
    state.sorts.insert("existedAt".into(), existed);
    state.sorts.insert("publishedAt".into(), published);
    state
}

/// The index's state restricted to live slots (dead slots may keep bits a query never sees).
fn live_state(index: &Index) -> IndexState {
    let mut s = index.debug_state();
    let alive: std::collections::BTreeSet<u32> = s.alive.iter().copied().collect();
    s.applied = Default::default();
    for f in s.filters.values_mut() {
        f.null.retain(|x| alive.contains(x));
        for slots in f.values.values_mut() {
            slots.retain(|x| alive.contains(x));
        }
        f.values.retain(|_, slots| !slots.is_empty());
    }
    for m in s.sorts.values_mut() {
        m.retain(|slot, _| alive.contains(slot));
    }
    s
}

async fn run(identity_full: bool) {
    let db = TestDb::new(if identity_full {
        "translate_full"
    } else {
        "translate_default"
    });
    db.execute(SCHEMA).unwrap();
    if identity_full {
        db.execute(r#"ALTER TABLE "Image" REPLICA IDENTITY FULL; ALTER TABLE "TagsOnImage" REPLICA IDENTITY FULL;
                      ALTER TABLE "Post" REPLICA IDENTITY FULL;"#)
            .unwrap();
    }
    let client = db.client().await.unwrap();
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'")
        .await
        .unwrap();
    let slot = db.name().to_string();
    client
        .query(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();
    for sql in WORKLOAD {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let expected = ground_truth(&client).await;
    // The same changes in both forms the stream asks for: values as text, and in binary (what
    // the source asks for when every column read has a binary form decoded here).
    for binary in [false, true] {
        let changes = client
            .query(
                "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, \
                 'proto_version', '1', 'publication_names', 'pgroar', 'binary', $2)",
                &[&slot, &binary.to_string()],
            )
            .await
            .unwrap();
        replay(&db, &changes, binary, &expected);
    }
}

/// Decodes and translates `changes` into an index, which must equal `expected`.
fn replay(db: &TestDb, changes: &[tokio_postgres::Row], binary: bool, expected: &IndexState) {
    let config = config(&db.url());
    let mut translator = Translator::new(&config).unwrap();
    let mut relations = RelationCache::new();
    let mut index = Index::new(config.schema());
    let mut saw_unchanged_toast = false;
    let mut saw_binary = false;
    for row in changes {
        let data = Bytes::from(row.get::<_, Vec<u8>>(0));
        let msg = decode_message(&data).unwrap();
        if let Message::Update(u) = &msg {
            saw_unchanged_toast |= u
                .new
                .columns
                .iter()
                .any(|d| matches!(d, pgroar::decode::Datum::Unchanged));
        }
        if let Message::Insert(i) = &msg {
            saw_binary |= i
                .new
                .columns
                .iter()
                .any(|d| matches!(d, pgroar::decode::Datum::Binary(_)));
        }
        if let Message::Relation(rel) = msg {
            let change = relations.insert(rel);
            translator.relation(&change).unwrap();
            continue;
        }
        let mut out: Vec<EntityOps> = Vec::new();
        translator.change(&msg, &relations, &mut out).unwrap();
        for e in &out {
            index.apply(e);
        }
    }
    assert_eq!(saw_binary, binary, "values in binary form");
    assert!(
        saw_unchanged_toast,
        "the workload must exercise unchanged TOAST columns"
    );
    let stats = translator.stats();
    assert_eq!(
        (
            stats.bad_slot_ids,
            stats.eval_errors,
            stats.unparsable_values
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    let actual = live_state(&index);
    assert_eq!(actual.alive, expected.alive, "binary: {binary}");
    for (field, dump) in &expected.filters {
        assert_eq!(
            actual.filters.get(field),
            Some(dump),
            "filter field {field}, binary: {binary}"
        );
    }
    assert_eq!(actual.sorts, expected.sorts, "binary: {binary}");
}

#[tokio::test]
async fn translated_changes_equal_sql_ground_truth_with_replica_identity_full() {
    run(true).await;
}

#[tokio::test]
async fn translated_changes_equal_sql_ground_truth_with_the_default_replica_identity() {
    run(false).await;
}

#[tokio::test]
async fn the_replica_identity_check_names_tables_that_cannot_work_and_the_fix() {
    let db = TestDb::new("identity");
    db.execute(
        r#"CREATE TYPE image_type AS ENUM ('image');
           CREATE TABLE "Image" (id int PRIMARY KEY, "nsfwLevel" int, type image_type, "scannedAt" timestamptz,
               "createdAt" timestamptz, flags int, meta text, "postId" int);
           CREATE TABLE "TagsOnImage" (id serial PRIMARY KEY, "imageId" int, "tagId" int, attributes int);
           CREATE TABLE "Post" (id int PRIMARY KEY, "publishedAt" timestamptz);"#,
    )
    .unwrap();
    let client = db.client().await.unwrap();
    let config = config(&db.url());
    let err = pgroar::source::catalog::check_replica_identity(&client, &config)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"TagsOnImage\" (join)"), "{err}");
    assert!(err.contains("\"imageId\" and \"tagId\""), "{err}");
    assert!(
        err.contains("ALTER TABLE \"TagsOnImage\" REPLICA IDENTITY FULL"),
        "{err}"
    );
    assert!(!err.contains("\"Image\" (direct"), "{err}");

    db.execute(r#"ALTER TABLE "TagsOnImage" REPLICA IDENTITY FULL"#)
        .unwrap();
    let reports = pgroar::source::catalog::check_replica_identity(&client, &config)
        .await
        .unwrap();
    let by_table = |t: &str| reports.iter().find(|r| r.table == t).unwrap();
    assert_eq!(by_table("Image").identity, "default");
    assert_eq!(by_table("Image").columns, vec!["id".to_string()]);
    assert_eq!(by_table("TagsOnImage").identity, "full");
    assert!(by_table("Image").notes[0].contains("set(new)"));

    db.execute(r#"ALTER TABLE "Image" REPLICA IDENTITY NOTHING"#)
        .unwrap();
    let err = pgroar::source::catalog::check_replica_identity(&client, &config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"Image\" (direct, on_delete): a DELETE would not carry slot_field \"id\""),
        "{err}"
    );
}
