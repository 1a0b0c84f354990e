//! Loading the dataset: the tables, three COPY streams on sessions of their own, then keys,
//! replica identities and the publication.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::Client;

use super::rows::{
    ImageRow, Laws, Rng, Sizes, base_created_at, image_line, image_model_versions, image_tags,
    image_tools, model_version_line, post_line, post_sizes,
};
use super::{DatasetOptions, SCHEMA, TABLES, finish_sql};
use crate::source::{ConnInfo, SqlConnectError, connect_sql};

/// COPY data is sent in pieces of about this many bytes.
const PIECE: usize = 1 << 20;

/// Why the dataset could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// No session could be opened.
    #[error(transparent)]
    Connect(#[from] SqlConnectError),
    /// The database already has tables of the dataset.
    #[error(
        "the database already has table(s) {0}; generate into an empty (throwaway) database, or \
         drop them first"
    )]
    Exists(String),
    /// A statement or COPY failed.
    #[error("{what} failed")]
    Sql {
        /// What was being done.
        what: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

pub(super) fn sql_err(
    what: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> GenerateError {
    let what = what.into();
    move |source| GenerateError::Sql { what, source }
}

/// Rows written so far, per COPY stream, for progress output.
#[derive(Debug, Default)]
pub struct LoadProgress {
    /// Images whose rows each of the three streams has sent.
    pub images_done: [AtomicU64; 3],
}

impl LoadProgress {
    /// The fraction done, in `0..=1`, for a dataset of `images` images.
    pub fn fraction(&self, images: u32) -> f64 {
        let done: u64 = self
            .images_done
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum();
        done as f64 / (3.0 * f64::from(images.max(1)))
    }
}

/// Creates the dataset's tables in the database `conn` names and loads `options.images` images
/// with everything that goes with them; returns the table sizes. Refuses a database that has
/// any of the tables already.
pub async fn generate(
    conn: &ConnInfo,
    options: &DatasetOptions,
    progress: Arc<LoadProgress>,
) -> Result<Sizes, GenerateError> {
    let client = connect_sql(conn).await?;
    let names: Vec<String> = TABLES.iter().map(|t| (*t).to_string()).collect();
    let existing = client
        .query(
            "SELECT relname::text FROM pg_class \
             WHERE relname = ANY($1) AND relnamespace = 'public'::regnamespace ORDER BY 1",
            &[&names],
        )
        .await
        .map_err(sql_err("looking for existing tables"))?;
    if !existing.is_empty() {
        let list: Vec<String> = existing.iter().map(|r| r.get(0)).collect();
        return Err(GenerateError::Exists(list.join(", ")));
    }
    client
        .batch_execute(SCHEMA)
        .await
        .map_err(sql_err("creating the tables"))?;
    let sizes = Sizes::for_images(options.images);
    let laws = Arc::new(Laws::new(sizes));
    let posts = Arc::new(post_sizes(options.images, options.seed));
    let mut streams = Vec::new();
    for stream in 0..3 {
        let (conn, laws, posts, progress) =
            (conn.clone(), laws.clone(), posts.clone(), progress.clone());
        let seed = options.seed;
        streams.push(tokio::spawn(async move {
            let client = connect_sql(&conn).await?;
            let done = &progress.images_done[stream];
            match stream {
                0 => copy_images(&client, &laws, &posts, seed, done).await,
                1 => copy_links(&client, &laws, seed, done).await,
                _ => copy_parents(&client, &laws, &posts, seed, done).await,
            }
        }));
    }
    for s in streams {
        s.await.expect("a COPY stream panicked")?;
    }
    client
        .batch_execute(&finish_sql(options))
        .await
        .map_err(sql_err(
            "adding keys, replica identities and the publication",
        ))?;
    Ok(sizes)
}

/// One table's COPY, fed piece by piece.
struct Copy {
    table: &'static str,
    sink: std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>,
    buf: String,
}

impl Copy {
    async fn start(client: &Client, table: &'static str) -> Result<Copy, GenerateError> {
        let sink = client
            .copy_in(&format!("COPY \"{table}\" FROM STDIN"))
            .await
            .map_err(sql_err(format!("COPY into {table}")))?;
        Ok(Copy {
            table,
            sink: Box::pin(sink),
            buf: String::with_capacity(PIECE + 8192),
        })
    }

    /// Sends the buffer once it holds a piece.
    async fn maybe_send(&mut self) -> Result<(), GenerateError> {
        if self.buf.len() >= PIECE {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), GenerateError> {
        let piece = Bytes::from(std::mem::take(&mut self.buf).into_bytes());
        self.buf.reserve(PIECE + 8192);
        let table = self.table;
        self.sink
            .send(piece)
            .await
            .map_err(sql_err(format!("COPY into {table}")))
    }

    async fn finish(mut self) -> Result<(), GenerateError> {
        self.send().await?;
        let table = self.table;
        self.sink
            .as_mut()
            .finish()
            .await
            .map_err(sql_err(format!("COPY into {table}")))?;
        Ok(())
    }
}

/// The stream a row's random choices come from: one per (table, row), so the three COPY
/// streams and the writer draw independently and the same seed gives the same rows.
fn row_rng(seed: u64, table: u64, id: u32) -> Rng {
    Rng::new(seed, table << 32 | u64::from(id))
}

async fn copy_images(
    client: &Client,
    laws: &Laws,
    posts: &[u32],
    seed: u64,
    done: &AtomicU64,
) -> Result<(), GenerateError> {
    let mut copy = Copy::start(client, "Image").await?;
    let mut id = 0u32;
    for (p, &size) in posts.iter().enumerate() {
        for _ in 0..size {
            id += 1;
            let row = ImageRow::draw(laws, id, &mut row_rng(seed, 2, id));
            image_line(&mut copy.buf, id, p as u32 + 1, &row);
        }
        if copy.buf.len() >= PIECE {
            copy.maybe_send().await?;
            done.store(u64::from(id), Ordering::Relaxed);
        }
    }
    copy.finish().await?;
    done.store(u64::from(id), Ordering::Relaxed);
    Ok(())
}

/// The three join tables, one after the other on one session.
async fn copy_links(
    client: &Client,
    laws: &Laws,
    seed: u64,
    done: &AtomicU64,
) -> Result<(), GenerateError> {
    let images = laws.sizes.images;
    let tables: [(&'static str, u64); 3] = [
        ("TagsOnImage", 3),
        ("ImageTool", 4),
        ("ImageModelVersion", 5),
    ];
    for (i, (table, stream)) in tables.into_iter().enumerate() {
        let mut copy = Copy::start(client, table).await?;
        for id in 1..=images {
            let rng = &mut row_rng(seed, stream, id);
            let values = match stream {
                3 => image_tags(laws, rng),
                4 => image_tools(rng),
                _ => image_model_versions(laws, rng),
            };
            for v in values {
                copy.buf.push_str(&format!("{id}\t{v}\n"));
            }
            if copy.buf.len() >= PIECE {
                copy.maybe_send().await?;
                done.store(
                    (i as u64 * u64::from(images) + u64::from(id)) / 3,
                    Ordering::Relaxed,
                );
            }
        }
        copy.finish().await?;
    }
    done.store(u64::from(images), Ordering::Relaxed);
    Ok(())
}

/// `Post` (one row per post, owned by its first image's time) and `ModelVersion`.
async fn copy_parents(
    client: &Client,
    laws: &Laws,
    posts: &[u32],
    seed: u64,
    done: &AtomicU64,
) -> Result<(), GenerateError> {
    let images = laws.sizes.images;
    let mut copy = Copy::start(client, "Post").await?;
    let mut first = 1u32;
    for (p, &size) in posts.iter().enumerate() {
        let id = p as u32 + 1;
        let created = base_created_at(first, images);
        post_line(&mut copy.buf, id, created, &mut row_rng(seed, 6, id), laws);
        first += size;
        if copy.buf.len() >= PIECE {
            copy.maybe_send().await?;
            done.store(u64::from(first - 1), Ordering::Relaxed);
        }
    }
    copy.finish().await?;
    let mut copy = Copy::start(client, "ModelVersion").await?;
    for id in 1..=laws.sizes.model_versions {
        model_version_line(&mut copy.buf, id, &mut row_rng(seed, 7, id), laws);
    }
    copy.finish().await?;
    done.store(u64::from(images), Ordering::Relaxed);
    Ok(())
}
