//! Real pgoutput from PostgreSQL, decoded: a workload covering every message kind and tuple
//! variant runs against a throwaway database, the slot's raw messages are read with
//! `pg_logical_slot_peek_binary_changes` (text and binary modes), and every message must
//! decode to exactly what the workload wrote. The same capture seeds the fuzz corpus.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use pgroar::Lsn;
use pgroar::cluster::TestDb;
use pgroar::decode::{
    Column, Datum, Delete, Insert, LogicalMessage, Message, Oid, OldTuple, Origin, PgTimestamp,
    Relation, RelationCache, ReplicaIdentity, Truncate, TupleData, Type, Update, decode_message,
    encode_message,
};

/// Seeds larger than this stay out of the corpus (the TOASTed insert is ~100 kB).
const MAX_SEED_BYTES: usize = 4096;

/// The commit timestamp the replication-origin transaction sets: 2024-01-01 00:00:00 UTC.
const ORIGIN_COMMIT_TIME: PgTimestamp = PgTimestamp(757_382_400_000_000);

const SETUP: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE kinds (
        id int8 PRIMARY KEY, small int2, medium int4, flag bool, label text,
        code varchar(12), tag char(4), feeling mood, amount numeric(10,2),
        ratio float4, score float8, day date, at timestamp, at_tz timestamptz, body text);
    ALTER TABLE kinds ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE full_rows (id int4 PRIMARY KEY, name text, n int4);
    ALTER TABLE full_rows REPLICA IDENTITY FULL;
    CREATE PUBLICATION capture_pub FOR TABLE kinds, full_rows;";

/// What the capture produced, plus the facts needed to predict it.
struct Capture {
    /// Messages in text mode.
    text: Vec<Bytes>,
    /// The same stream with the `binary` option.
    binary: Vec<Bytes>,
    kinds_oid: Oid,
    full_rows_oid: Oid,
    mood_oid: Oid,
    origin: String,
    /// The xid of the first transaction.
    first_xid: u32,
    /// What `pg_logical_emit_message` returned for the transactional and the other message.
    hello_lsn: Lsn,
    bye_lsn: Lsn,
    /// The TOASTed value as stored.
    body: String,
    /// Server clock (Unix µs) before the workload and after it.
    window: (i64, i64),
}

async fn capture() -> Capture {
    let db = TestDb::new("pgoutput_capture");
    let c = db.client().await.unwrap();
    let slot = format!("slot_{}", db.name());
    let origin = format!("origin_{}", db.name());
    c.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    c.batch_execute(SETUP).await.unwrap();
    c.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&slot],
    )
    .await
    .unwrap();
    let oid = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, u32>(0) }
    };
    let kinds_oid = oid("SELECT 'kinds'::regclass::oid").await;
    let full_rows_oid = oid("SELECT 'full_rows'::regclass::oid").await;
    let mood_oid = oid("SELECT 'mood'::regtype::oid").await;
    let clock = "SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::int8";
    let start: i64 = c.query_one(clock, &[]).await.unwrap().get(0);

    // Each batch below is one transaction.
    c.batch_execute(
        "BEGIN;
         INSERT INTO kinds VALUES (1, -7, 42, true, 'héllo', 'code-1', 'ab', 'happy', 12.5,
             1.5, 2.25, '2024-02-29', '2024-02-29 12:34:56.789', '2024-02-29 12:34:56+02',
             (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 3200) i));",
    )
    .await
    .unwrap();
    let first_xid: String = c
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute("COMMIT").await.unwrap();
    for tx in [
        "INSERT INTO kinds (id) VALUES (2)",
        "UPDATE kinds SET medium = 43, label = NULL WHERE id = 1",
        "UPDATE kinds SET id = 20 WHERE id = 2",
        "INSERT INTO full_rows VALUES (1, 'one', 1), (2, 'two', 2)",
        "UPDATE full_rows SET n = 5 WHERE id = 1",
        "DELETE FROM full_rows WHERE id = 2",
        "DELETE FROM kinds WHERE id = 20",
        "TRUNCATE full_rows RESTART IDENTITY CASCADE",
        "ALTER TABLE full_rows ADD COLUMN extra text",
        "INSERT INTO full_rows VALUES (3, 'three', 3, 'x')",
    ] {
        c.batch_execute(tx).await.unwrap();
    }
    let emit = "SELECT pg_logical_emit_message($1, 'pgroar', $2)::text";
    let lsn = |row: tokio_postgres::Row| row.get::<_, String>(0).parse::<Lsn>().unwrap();
    let hello_lsn = lsn(c.query_one(emit, &[&true, &"hello"]).await.unwrap());
    let bye_lsn = lsn(c.query_one(emit, &[&false, &"bye"]).await.unwrap());
    c.batch_execute(&format!(
        "SELECT pg_replication_origin_create('{origin}');
         SELECT pg_replication_origin_session_setup('{origin}');"
    ))
    .await
    .unwrap();
    c.batch_execute(
        "BEGIN;
         SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-01 00:00:00+00');
         INSERT INTO full_rows VALUES (4, 'four', 4, NULL);
         COMMIT;",
    )
    .await
    .unwrap();
    c.batch_execute("SELECT pg_replication_origin_session_reset()")
        .await
        .unwrap();
    let end: i64 = c.query_one(clock, &[]).await.unwrap().get(0);

    // The test is only meaningful if `body` really lives out of line.
    let toast: i64 = c
        .query_one(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'kinds'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(toast >= 100_000, "body was not TOASTed: {toast} bytes");
    let body: String = c
        .query_one("SELECT body FROM kinds WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);

    let peek = |binary: &'static str| {
        let (c, slot) = (&c, &slot);
        async move {
            c.query(
                "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
                     'proto_version', '1', 'publication_names', 'capture_pub',
                     'messages', 'true', 'binary', $2)",
                &[slot, &binary],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|row| Bytes::from(row.get::<_, Vec<u8>>(0)))
            .collect::<Vec<_>>()
        }
    };
    let text = peek("false").await;
    let binary = peek("true").await;
    c.execute("SELECT pg_replication_origin_drop($1)", &[&origin])
        .await
        .unwrap();
    Capture {
        text,
        binary,
        kinds_oid,
        full_rows_oid,
        mood_oid,
        origin,
        first_xid: first_xid.parse().unwrap(),
        hello_lsn,
        bye_lsn,
        body,
        window: (start, end),
    }
}

/// A step of the expected stream: transaction boundaries are checked for consistency (their
/// LSNs and times are not predictable); everything else must match exactly.
enum Step {
    Begin,
    Commit,
    Exact(Message),
}

fn t(v: &str) -> Datum {
    Datum::Text(Bytes::copy_from_slice(v.as_bytes()))
}

const N: Datum = Datum::Null;

fn row(columns: Vec<Datum>) -> TupleData {
    TupleData { columns }
}

/// A `kinds` row with only the key set (what a `K` tuple and an all-NULL insert look like).
fn kinds_key_only(id: &str) -> TupleData {
    let mut columns = vec![N; 15];
    columns[0] = t(id);
    row(columns)
}

fn col(flags: u8, name: &str, type_oid: Oid, type_modifier: i32) -> Column {
    Column {
        flags,
        name: name.into(),
        type_oid,
        type_modifier,
    }
}

fn kinds_relation(cap: &Capture) -> Relation {
    Relation {
        oid: cap.kinds_oid,
        namespace: "public".into(),
        name: "kinds".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            col(1, "id", 20, -1),
            col(0, "small", 21, -1),
            col(0, "medium", 23, -1),
            col(0, "flag", 16, -1),
            col(0, "label", 25, -1),
            col(0, "code", 1043, 12 + 4),
            col(0, "tag", 1042, 4 + 4),
            col(0, "feeling", cap.mood_oid, -1),
            col(0, "amount", 1700, ((10 << 16) | 2) + 4),
            col(0, "ratio", 700, -1),
            col(0, "score", 701, -1),
            col(0, "day", 1082, -1),
            col(0, "at", 1114, -1),
            col(0, "at_tz", 1184, -1),
            col(0, "body", 25, -1),
        ],
    }
}

fn full_rows_relation(cap: &Capture, with_extra: bool) -> Relation {
    // Under REPLICA IDENTITY FULL every column is flagged as part of the key.
    let mut columns = vec![
        col(1, "id", 23, -1),
        col(1, "name", 25, -1),
        col(1, "n", 23, -1),
    ];
    if with_extra {
        columns.push(col(1, "extra", 25, -1));
    }
    Relation {
        oid: cap.full_rows_oid,
        namespace: "public".into(),
        name: "full_rows".into(),
        replica_identity: ReplicaIdentity::Full,
        columns,
    }
}

/// The text-mode stream the workload must produce, message by message.
fn expected_text_stream(cap: &Capture) -> Vec<Step> {
    use Step::{Begin, Commit, Exact};
    let kinds = cap.kinds_oid;
    let full = cap.full_rows_oid;
    let row1 = |medium: &str, label: Datum, body: Datum| {
        row(vec![
            t("1"),
            t("-7"),
            t(medium),
            t("t"),
            label,
            t("code-1"),
            t("ab  "),
            t("happy"),
            t("12.50"),
            t("1.5"),
            t("2.25"),
            t("2024-02-29"),
            t("2024-02-29 12:34:56.789"),
            t("2024-02-29 10:34:56+00"),
            body,
        ])
    };
    let full_row = |id: &str, name: &str, n: &str| row(vec![t(id), t(name), t(n)]);
    vec![
        Begin,
        Exact(Message::Type(Type {
            oid: cap.mood_oid,
            namespace: "public".into(),
            name: "mood".into(),
        })),
        Exact(Message::Relation(kinds_relation(cap))),
        Exact(Message::Insert(Insert {
            relation: kinds,
            new: row1("42", t("héllo"), t(&cap.body)),
        })),
        Commit,
        // INSERT with NULLs.
        Begin,
        Exact(Message::Insert(Insert {
            relation: kinds,
            new: kinds_key_only("2"),
        })),
        Commit,
        // Default identity, key unchanged: the new row only; the TOASTed body is `u`.
        Begin,
        Exact(Message::Update(Update {
            relation: kinds,
            old: None,
            new: row1("43", N, Datum::Unchanged),
        })),
        Commit,
        // The key changed: the old key travels as a `K` tuple.
        Begin,
        Exact(Message::Update(Update {
            relation: kinds,
            old: Some(OldTuple::Key(kinds_key_only("2"))),
            new: kinds_key_only("20"),
        })),
        Commit,
        Begin,
        Exact(Message::Relation(full_rows_relation(cap, false))),
        Exact(Message::Insert(Insert {
            relation: full,
            new: full_row("1", "one", "1"),
        })),
        Exact(Message::Insert(Insert {
            relation: full,
            new: full_row("2", "two", "2"),
        })),
        Commit,
        // REPLICA IDENTITY FULL: whole old rows (`O`).
        Begin,
        Exact(Message::Update(Update {
            relation: full,
            old: Some(OldTuple::Full(full_row("1", "one", "1"))),
            new: full_row("1", "one", "5"),
        })),
        Commit,
        Begin,
        Exact(Message::Delete(Delete {
            relation: full,
            old: OldTuple::Full(full_row("2", "two", "2")),
        })),
        Commit,
        // Default identity: the key only (`K`).
        Begin,
        Exact(Message::Delete(Delete {
            relation: kinds,
            old: OldTuple::Key(kinds_key_only("20")),
        })),
        Commit,
        // TRUNCATE invalidates the relation: it is described again (unchanged) first.
        Begin,
        Exact(Message::Relation(full_rows_relation(cap, false))),
        Exact(Message::Truncate(Truncate {
            options: Truncate::CASCADE | Truncate::RESTART_IDENTITY,
            relations: vec![full],
        })),
        Commit,
        // The ALTER TABLE transaction sends nothing; the next change re-describes the table.
        Begin,
        Exact(Message::Relation(full_rows_relation(cap, true))),
        Exact(Message::Insert(Insert {
            relation: full,
            new: row(vec![t("3"), t("three"), t("3"), t("x")]),
        })),
        Commit,
        Begin,
        Exact(Message::Logical(LogicalMessage {
            flags: LogicalMessage::TRANSACTIONAL,
            lsn: cap.hello_lsn,
            prefix: "pgroar".into(),
            content: Bytes::from_static(b"hello"),
        })),
        Commit,
        // A non-transactional message comes alone, outside any Begin/Commit.
        Exact(Message::Logical(LogicalMessage {
            flags: 0,
            lsn: cap.bye_lsn,
            prefix: "pgroar".into(),
            content: Bytes::from_static(b"bye"),
        })),
        Begin,
        Exact(Message::Origin(Origin {
            commit_lsn: "0/ABCDEF".parse().unwrap(),
            name: cap.origin.as_str().into(),
        })),
        Exact(Message::Insert(Insert {
            relation: full,
            new: row(vec![t("4"), t("four"), t("4"), N]),
        })),
        Commit,
    ]
}

fn decode_all(stream: &[Bytes]) -> Vec<Message> {
    stream
        .iter()
        .enumerate()
        .map(|(i, b)| decode_message(b).unwrap_or_else(|e| panic!("message {i}: {e}")))
        .collect()
}

#[tokio::test]
async fn real_pgoutput_stream_decodes_to_exactly_what_was_written() {
    let cap = capture().await;
    let got = decode_all(&cap.text);
    let want = expected_text_stream(&cap);
    let kinds = |ms: &[Message]| ms.iter().map(Message::kind).collect::<Vec<_>>();
    assert_eq!(got.len(), want.len(), "stream: {:?}", kinds(&got));

    let mut open: Option<pgroar::decode::Begin> = None;
    let mut last_commit = Lsn::ZERO;
    let mut last_xid = 0;
    let mut transactions = 0;
    for (i, (msg, step)) in got.iter().zip(&want).enumerate() {
        match (step, msg) {
            (Step::Begin, Message::Begin(b)) => {
                assert!(open.is_none(), "message {i}: nested Begin");
                assert!(
                    b.final_lsn > last_commit,
                    "message {i}: commit LSNs increase"
                );
                assert!(b.xid > last_xid, "message {i}: xids increase");
                if transactions == 0 {
                    assert_eq!(b.xid, cap.first_xid);
                }
                last_xid = b.xid;
                open = Some(b.clone());
            }
            (Step::Commit, Message::Commit(c)) => {
                let b = open
                    .take()
                    .unwrap_or_else(|| panic!("message {i}: Commit alone"));
                assert_eq!(c.flags, 0);
                assert_eq!(c.commit_lsn, b.final_lsn, "message {i}");
                assert!(c.end_lsn > c.commit_lsn, "message {i}");
                assert_eq!(c.commit_time, b.commit_time, "message {i}");
                let with_origin = matches!(got[i - 2], Message::Origin(_));
                if with_origin {
                    assert_eq!(c.commit_time, ORIGIN_COMMIT_TIME);
                } else {
                    let at = c.commit_time.unix_micros().unwrap();
                    assert!(
                        (cap.window.0..=cap.window.1).contains(&at),
                        "message {i}: commit time {at} outside {:?}",
                        cap.window
                    );
                }
                last_commit = c.commit_lsn;
                transactions += 1;
            }
            (Step::Exact(want), got) => assert_eq!(got, want, "message {i}"),
            (_, msg) => panic!("message {i}: unexpected {msg:?}; stream: {:?}", kinds(&got)),
        }
    }
    assert!(open.is_none());
    assert_eq!(transactions, 12);

    // Every message is lossless: it re-encodes to the bytes Postgres sent.
    for (bytes, msg) in cap.text.iter().zip(&got) {
        let mut out = BytesMut::new();
        encode_message(msg, &mut out).unwrap();
        assert_eq!(out.freeze(), *bytes, "{msg:?}");
    }
}

#[tokio::test]
async fn relation_cache_follows_the_real_stream() {
    let cap = capture().await;
    let mut cache = RelationCache::new();
    let mut reports = Vec::new();
    let mut changes = 0;
    for msg in decode_all(&cap.text) {
        match msg {
            Message::Relation(r) => {
                let change = cache.insert(r);
                if !change.is_new() && !change.is_unchanged() {
                    assert_eq!(change.added, vec![col(1, "extra", 25, -1)]);
                    assert!(change.dropped.is_empty() && change.retyped.is_empty());
                    assert!(change.renamed_from.is_none());
                    assert!(change.replica_identity_from.is_none());
                    assert!(change.key_changed.is_empty());
                    assert_eq!(change.check_tracked(["id", "name", "n"]), Ok(()));
                }
                reports.push(change.to_string());
            }
            other => {
                if let Some(rel) = cache.resolve(&other).unwrap() {
                    assert_eq!(Some(rel.oid), other.change_relation());
                    changes += 1;
                }
            }
        }
    }
    assert_eq!(
        reports,
        [
            format!("public.kinds (OID {}): new", cap.kinds_oid),
            format!("public.full_rows (OID {}): new", cap.full_rows_oid),
            format!("public.full_rows (OID {}): unchanged", cap.full_rows_oid),
            format!(
                "public.full_rows (OID {}); added [extra]",
                cap.full_rows_oid
            ),
        ]
    );
    assert_eq!(changes, 11, "every Insert/Update/Delete found its relation");
    assert_eq!(
        **cache.get(cap.full_rows_oid).unwrap(),
        full_rows_relation(&cap, true)
    );
    assert_eq!(**cache.get(cap.kinds_oid).unwrap(), kinds_relation(&cap));
}

#[tokio::test]
async fn binary_mode_sends_the_send_form_of_each_type() {
    let cap = capture().await;
    let text = decode_all(&cap.text);
    let binary = decode_all(&cap.binary);
    assert_eq!(
        binary.iter().map(Message::kind).collect::<Vec<_>>(),
        text.iter().map(Message::kind).collect::<Vec<_>>()
    );
    let first_insert = binary
        .iter()
        .find_map(|m| match m {
            Message::Insert(i) if i.relation == cap.kinds_oid => Some(i),
            _ => None,
        })
        .unwrap();
    let b = |v: &[u8]| Datum::Binary(Bytes::copy_from_slice(v));
    let cols = &first_insert.new.columns;
    assert_eq!(cols[0], b(&1i64.to_be_bytes()));
    assert_eq!(cols[1], b(&(-7i16).to_be_bytes()));
    assert_eq!(cols[2], b(&42i32.to_be_bytes()));
    assert_eq!(cols[3], b(&[1]));
    assert_eq!(cols[4], b("héllo".as_bytes()));
    assert_eq!(cols[6], b(b"ab  "));
    assert_eq!(cols[7], b(b"happy"));
    assert_eq!(cols[9], b(&1.5f32.to_be_bytes()));
    assert_eq!(cols[10], b(&2.25f64.to_be_bytes()));
    // date: days since 2000-01-01.
    assert_eq!(cols[11], b(&8825i32.to_be_bytes()));
    assert_eq!(cols[14], b(cap.body.as_bytes()));
    // Unchanged TOAST and NULL look the same in both modes.
    let update = binary
        .iter()
        .find_map(|m| match m {
            Message::Update(u) if u.relation == cap.kinds_oid => Some(u),
            _ => None,
        })
        .unwrap();
    assert_eq!(update.new.columns[4], Datum::Null);
    assert_eq!(update.new.columns[14], Datum::Unchanged);
}

// ---- fuzz seeds ----

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pgoutput")
}

#[tokio::test]
#[ignore = "rewrites fuzz/corpus/pgoutput from a fresh capture"]
async fn regenerate_fuzz_seed_corpus() {
    let cap = capture().await;
    let dir = corpus_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for (mode, stream) in [("text", &cap.text), ("binary", &cap.binary)] {
        let mut boundaries = 0;
        for (i, bytes) in stream.iter().enumerate() {
            let msg = decode_message(bytes).unwrap();
            // Begin and Commit differ only in numbers: one pair per mode is enough.
            if matches!(msg, Message::Begin(_) | Message::Commit(_)) {
                boundaries += 1;
                if boundaries > 2 {
                    continue;
                }
            }
            if bytes.len() > MAX_SEED_BYTES {
                continue;
            }
            let kind = msg.kind().to_lowercase();
            std::fs::write(dir.join(format!("{mode}-{i:02}-{kind}")), bytes).unwrap();
        }
    }
}

#[test]
fn fuzz_seed_corpus_holds_every_kind_and_decodes_losslessly() {
    let mut kinds = Vec::new();
    let (mut text, mut binary, mut unchanged) = (false, false, false);
    let entries = std::fs::read_dir(corpus_dir()).expect("fuzz/corpus/pgoutput exists");
    for entry in entries {
        let path = entry.unwrap().path();
        let bytes = Bytes::from(std::fs::read(&path).unwrap());
        assert!(bytes.len() <= MAX_SEED_BYTES, "{}", path.display());
        let msg = decode_message(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut out = BytesMut::new();
        encode_message(&msg, &mut out).unwrap();
        assert_eq!(out.freeze(), bytes, "{}", path.display());
        let tuples: Vec<&TupleData> = match &msg {
            Message::Insert(m) => vec![&m.new],
            Message::Update(m) => m.old.iter().map(OldTuple::tuple).chain([&m.new]).collect(),
            Message::Delete(m) => vec![m.old.tuple()],
            _ => vec![],
        };
        for d in tuples.iter().flat_map(|t| &t.columns) {
            text |= matches!(d, Datum::Text(_));
            binary |= matches!(d, Datum::Binary(_));
            unchanged |= matches!(d, Datum::Unchanged);
        }
        kinds.push(msg.kind());
    }
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "Begin", "Commit", "Delete", "Insert", "Message", "Origin", "Relation", "Truncate",
            "Type", "Update"
        ]
    );
    assert!(text && binary && unchanged);
}
