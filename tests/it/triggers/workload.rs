//! Random transactions over the image-feed tables for the differential tests: small id ranges so
//! that rows collide (re-inserts of a deleted id, updates of missing rows), NULLs, updates that
//! change nothing, several columns in one statement, slot-id and join-key changes, statements
//! that fail (a duplicate key) and transactions rolled back.

use std::fmt;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use tokio_postgres::Client;

/// One transaction: its statements, committed or rolled back.
#[derive(Clone)]
pub struct Txn {
    pub statements: Vec<String>,
    pub commit: bool,
}

impl Txn {
    /// The transaction as one batch of SQL.
    pub fn sql(&self) -> String {
        let end = if self.commit { "COMMIT" } else { "ROLLBACK" };
        format!("BEGIN; {}; {end}", self.statements.join("; "))
    }
}

impl fmt::Debug for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql())
    }
}

const IMAGES: u32 = 40;
const POSTS: u32 = 12;
const VERSIONS: u32 = 8;

fn nullable<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or("NULL".into(), |v| v.to_string())
}

fn level() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![1u32, 2, 4, 8, 16])
}

fn kind() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["image", "video", "audio"])
}

fn time() -> impl Strategy<Value = Option<String>> {
    prop::option::of((0u32..3, 0u32..86_400).prop_map(|(d, s)| {
        format!(
            "timestamptz '2025-0{}-01 00:00:00+00' + interval '{s} seconds'",
            d + 1
        )
    }))
}

fn image_insert() -> impl Strategy<Value = String> {
    (
        1..=IMAGES,
        level(),
        kind(),
        1u32..5,
        prop::option::of(1..=POSTS),
        0u32..16_384,
        time(),
        prop::option::of(Just("'spam'")),
    )
        .prop_map(|(id, lvl, kind, user, post, flags, scanned, blocked)| {
            format!(
                "INSERT INTO \"Image\" VALUES ({id}, {lvl}, '{kind}', {user}, {}, {flags}, \
                 timestamptz '2025-01-15 12:00:00+00', {}, {}, NULL) ON CONFLICT DO NOTHING",
                nullable(post),
                nullable(scanned),
                nullable(blocked)
            )
        })
}

/// An UPDATE of one to four columns (values often equal to the current ones), or of the id.
fn image_update() -> impl Strategy<Value = String> {
    let column = prop_oneof![
        level().prop_map(|l| format!("\"nsfwLevel\" = {l}")),
        kind().prop_map(|k| format!("type = '{k}'")),
        prop::option::of(1..=POSTS).prop_map(|p| format!("\"postId\" = {}", nullable(p))),
        (0u32..14).prop_map(|b| format!("flags = flags # {}", 1u32 << b)),
        time().prop_map(|t| format!("\"scannedAt\" = {}", nullable(t))),
        prop::option::of(Just("'tos'")).prop_map(|b| format!("\"blockedFor\" = {}", nullable(b))),
        Just("meta = 'edited'".to_string()),
        (1u32..5).prop_map(|u| format!("\"userId\" = {u}")),
    ];
    prop_oneof![
        4 => (prop::collection::vec(column, 1..4), 1..=IMAGES, 0u32..4).prop_map(|(cols, id, wide)| {
            let target = if wide == 0 { format!("id % 5 = {}", id % 5) } else { format!("id = {id}") };
            format!("UPDATE \"Image\" SET {} WHERE {target}", cols.join(", "))
        }),
        1 => (1..=IMAGES, 1..=IMAGES).prop_map(|(from, to)| {
            format!("UPDATE \"Image\" SET id = {to} WHERE id = {from}")
        }),
    ]
}

fn image_delete() -> impl Strategy<Value = String> {
    (1..=IMAGES).prop_map(|id| format!("DELETE FROM \"Image\" WHERE id = {id}"))
}

/// INSERT, DELETE or UPDATE (of the image or of the value: a key change) of a join-table row.
fn join_row() -> impl Strategy<Value = String> {
    let table = prop::sample::select(vec![
        ("TagsOnImage", "tagId", 6u32),
        ("ImageTool", "toolId", 4),
        ("ImageModelVersion", "modelVersionId", VERSIONS),
    ]);
    (table, 1..=IMAGES, 1u32..=8, 0u32..4, 1..=IMAGES, 1u32..=8).prop_map(
        |((t, col, n), img, v, what, img2, v2)| {
            let v = 1 + v % n;
            let v2 = 1 + v2 % n;
            match what {
                0 | 1 => format!("INSERT INTO \"{t}\" VALUES ({img}, {v}) ON CONFLICT DO NOTHING"),
                2 => format!("DELETE FROM \"{t}\" WHERE \"imageId\" = {img} AND \"{col}\" = {v}"),
                _ => format!(
                    "UPDATE \"{t}\" SET \"imageId\" = {img2}, \"{col}\" = {v2} \
                     WHERE \"imageId\" = {img} AND \"{col}\" = {v}"
                ),
            }
        },
    )
}

fn post() -> impl Strategy<Value = String> {
    let availability = prop::sample::select(vec!["Public", "Private", "Unsearchable"]);
    (1..=POSTS, time(), availability, 0u32..6, 1..=POSTS).prop_map(|(id, at, av, what, other)| {
        match what {
            0 | 1 => format!(
                "INSERT INTO \"Post\" VALUES ({id}, 1, {}, '{av}') ON CONFLICT DO NOTHING",
                nullable(at)
            ),
            2 => format!(
                "UPDATE \"Post\" SET \"publishedAt\" = {}, availability = '{av}' WHERE id = {id}",
                nullable(at)
            ),
            3 => format!("UPDATE \"Post\" SET availability = '{av}' WHERE id = {id}"),
            4 => format!("UPDATE \"Post\" SET id = {other} WHERE id = {id}"),
            _ => format!("DELETE FROM \"Post\" WHERE id = {id}"),
        }
    })
}

fn model_version() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec!["SD 1.5", "SDXL", "Flux", "it's \"quoted\""]);
    (1..=VERSIONS, base, 0u32..5, 1..=VERSIONS).prop_map(|(id, base, what, other)| {
        let base = base.replace('\'', "''");
        match what {
            0 | 1 => format!(
                "INSERT INTO \"ModelVersion\" VALUES ({id}, '{base}') ON CONFLICT DO NOTHING"
            ),
            2 => format!("UPDATE \"ModelVersion\" SET \"baseModel\" = '{base}' WHERE id = {id}"),
            3 => format!("UPDATE \"ModelVersion\" SET id = {other} WHERE id = {id}"),
            _ => format!("DELETE FROM \"ModelVersion\" WHERE id = {id}"),
        }
    })
}

/// One statement of any kind.
pub fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => image_insert(),
        4 => image_update(),
        1 => image_delete(),
        4 => join_row(),
        2 => post(),
        2 => model_version(),
    ]
}

/// A transaction of one to five statements; one in ten is rolled back.
pub fn transaction() -> impl Strategy<Value = Txn> {
    (
        prop::collection::vec(statement(), 1..=5),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(statements, commit)| Txn { statements, commit })
}

/// A list of transactions; its `Debug` is only its size (a failing test prints the smallest
/// workload that reproduces the failure itself, as SQL).
#[derive(Clone)]
pub struct Workload(pub Vec<Txn>);

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a workload of {} transactions", self.0.len())
    }
}

/// A workload of `n` transactions.
pub fn workload(n: usize) -> impl Strategy<Value = Workload> {
    prop::collection::vec(transaction(), n..=n).prop_map(Workload)
}

/// The same `n` transactions on every run (for tests that are not property tests).
pub fn fixed(n: usize) -> Vec<Txn> {
    workload(n)
        .new_tree(&mut TestRunner::deterministic())
        .expect("a workload")
        .current()
        .0
}

/// Runs `txns` one by one; a failed one (a duplicate key) is rolled back. The number that failed.
pub async fn run(client: &Client, txns: &[Txn]) -> usize {
    let mut failed = 0;
    for t in txns {
        if client.batch_execute(&t.sql()).await.is_err() {
            client.batch_execute("ROLLBACK").await.expect("rollback");
            failed += 1;
        }
    }
    failed
}
