//! The two bench schemas. The Image-like one: one `Image` table (id, nsfwLevel, an enum, two
//! timestamptz, flag bits, postId) indexed by the Image source of `docs/pgroar.example.toml`.
//! The second: the image-feed dataset of `pgroar generate` (six tables,
//! Zipf-skewed users and tags, three join tables, two fan-outs, a TOASTed text nobody reads),
//! indexed by `docs/examples/image-feed.toml` with its `existedAt` written as the expression
//! mix users write: `GREATEST(extract(epoch from COALESCE(a, b))::bigint, extract(epoch from
//! b)::bigint)`.

// Each bench uses a part of this.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use pgroar::Lsn;
use pgroar::dataset::{self, DatasetOptions, Identity, LoadProgress};
use pgroar::source::ConnInfo;
use tokio_postgres::Client;

/// Rows per transaction, for loads and backlogs.
pub const CHUNK: i64 = 10_000;

/// Loads `images` images of the dataset (and the publication `pgroar` over its six tables)
/// into the empty database at `url`.
pub fn load_feed(rt: &tokio::runtime::Runtime, url: &str, images: u32, identity: Identity) {
    let options = DatasetOptions {
        images,
        seed: 1,
        identity,
        publication: "pgroar".into(),
    };
    let conn = ConnInfo::parse(url).unwrap();
    rt.block_on(dataset::generate(
        &conn,
        &options,
        Arc::new(LoadProgress::default()),
    ))
    .expect("loading the image-feed dataset");
}

/// The dataset's config pointed at `url`, `slot`, `data_dir` and `127.0.0.1:<port>`, with the
/// expression mix above.
pub fn feed_config(url: &str, slot: &str, data_dir: &Path, port: u16) -> String {
    let text = dataset::config_text(url, slot, data_dir, &format!("127.0.0.1:{port}"));
    let plain = "extract(epoch from GREATEST({scannedAt}, {createdAt}))::bigint as existedAt";
    assert!(text.contains(plain), "the image-feed config changed");
    text.replace(
        plain,
        "GREATEST(extract(epoch from COALESCE({scannedAt}, {createdAt}))::bigint, \
         extract(epoch from {createdAt})::bigint) as existedAt",
    )
}

/// The config of the Image-like schema: the Image source of `docs/pgroar.example.toml`.
pub fn image_config(url: &str, slot: &str, data_dir: &Path, port: u16) -> String {
    format!(
        r#"
[postgres]
url = "{url}"
publication = "pgroar"
slot = "{slot}"

[storage]
data_dir = "{data_dir}"

[http]
listen = "127.0.0.1:{port}"

[index]
filters = [
  {{ name = "nsfwLevel", kind = "single" }},
  {{ name = "hasMeta", kind = "bool" }},
  {{ name = "type", kind = "single" }},
  {{ name = "postId", kind = "single" }},
]
sorts = [
  {{ name = "existedAt", bits = 32 }},
  {{ name = "id", bits = 32 }},
]

[[sources]]
table = "Image"
slot_field = "id"
sets_alive = true
on_delete = "delete_slot"
track_fields = [
  "id",
  "nsfwLevel",
  "postId",
  "{{type}}::text as type",
  "extract(epoch from GREATEST({{scannedAt}}, {{createdAt}}))::bigint as existedAt",
  "({{flags}} & (1 << 13)) != 0 AND ({{flags}} & (1 << 2)) = 0 as hasMeta",
]
"#,
        data_dir = data_dir.display()
    )
}

/// The Image-like table, `rows` rows, its replica identity and the publication.
pub fn load_image(rt: &tokio::runtime::Runtime, client: &Client, rows: i64, identity: &str) {
    rt.block_on(client.batch_execute(&format!(
        r#"
        CREATE TYPE "ImageType" AS ENUM ('image', 'video', 'audio');
        CREATE TABLE "Image" (
            id integer PRIMARY KEY,
            "nsfwLevel" integer NOT NULL,
            type "ImageType" NOT NULL,
            "scannedAt" timestamptz,
            "createdAt" timestamptz NOT NULL,
            flags integer NOT NULL,
            "postId" integer
        );
        ALTER TABLE "Image" REPLICA IDENTITY {identity};
        CREATE PUBLICATION pgroar FOR TABLE "Image";
        "#
    )))
    .unwrap();
    rt.block_on(chunked(client, rows, |a, b| {
        format!(
            r#"INSERT INTO "Image" SELECT i, i % 6, (ARRAY['image','video','image','audio'])[i % 4 + 1]::"ImageType",
                 now() - (i % 1000) * interval '1 minute', now() - (i % 5000) * interval '1 hour',
                 (i::bigint * 7919) % 65536, i / 20 FROM generate_series({a}, {b}) i"#
        )
    }));
}

/// Runs `stmt(a, b)` for ids 1..=rows in `CHUNK`-row transactions; returns the WAL insert
/// position read inside the last one, just before its `COMMIT`.
pub async fn chunked(client: &Client, rows: i64, stmt: impl Fn(i64, i64) -> String) -> Lsn {
    let mut a = 1;
    while a + CHUNK <= rows {
        client.batch_execute(&stmt(a, a + CHUNK - 1)).await.unwrap();
        a += CHUNK;
    }
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute(&stmt(a, rows)).await.unwrap();
    commit_at(client).await
}

/// Commits the open transaction; returns the WAL insert position read just before the `COMMIT`
/// (at or before its commit record, so a reader past it has the whole transaction).
pub async fn commit_at(client: &Client) -> Lsn {
    let row = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    row.get::<_, String>(0).parse().unwrap()
}

/// An ordinary session to `url`, its connection driven on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A private throwaway cluster with one database `name`, its URL, and a two-thread runtime.
pub fn cluster(name: &str) -> (pgroar::cluster::Cluster, String, tokio::runtime::Runtime) {
    let cluster = pgroar::cluster::Cluster::start(pgroar::cluster::ClusterOptions::fast())
        .expect("starting a cluster");
    let db = cluster.create_database(name).unwrap();
    let url = cluster.url(&db);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    (cluster, url, rt)
}

/// Rows each rate writer transaction changes.
pub const PER_TX: i64 = 10;

/// Sets the probe row `id` to `marker` in a transaction of its own; returns the WAL insert
/// position read just before its `COMMIT` (at or before the commit record).
pub async fn probe_commit(client: &Client, marker: i64, id: i64) -> Lsn {
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            r#"UPDATE "Image" SET "nsfwLevel" = $1 WHERE id = $2"#,
            &[&(marker as i32), &(id as i32)],
        )
        .await
        .unwrap();
    commit_at(client).await
}

/// Writer `w` of `writers`: updates `nsfwLevel` of `PER_TX` consecutive rows per transaction
/// (one statement) among ids `1..=rows`, at `rate` changes per second (`None`: as fast as it
/// goes) until `stop`.
pub async fn rate_writer(
    url: &str,
    (w, writers): (usize, usize),
    rows: i64,
    rate: Option<f64>,
    stop: &std::sync::atomic::AtomicBool,
    changes: &std::sync::atomic::AtomicU64,
) {
    use std::sync::atomic::Ordering;
    let client = connect(url).await;
    let statement = client
        .prepare(
            r#"UPDATE "Image" SET "nsfwLevel" = ("nsfwLevel" + 1) % 6 WHERE id BETWEEN $1 AND $2"#,
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut done = 0u64;
    let mut next = 1 + (w as i64 * rows / writers as i64);
    while !stop.load(Ordering::Relaxed) {
        if let Some(rate) = rate {
            let due = started + std::time::Duration::from_secs_f64(done as f64 / rate);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        if next + PER_TX > rows {
            next = 1;
        }
        let (a, b) = (next as i32, (next + PER_TX - 1) as i32);
        client.execute(&statement, &[&a, &b]).await.unwrap();
        next += PER_TX;
        done += PER_TX as u64;
        changes.fetch_add(PER_TX as u64, Ordering::Relaxed);
    }
}
