//! The image-feed dataset: its tables, a deterministic generator that loads them with COPY, and
//! a writer that keeps changing them at a given rate. `pgroar demo` and `pgroar generate` run
//! them; the tests and benchmarks use them for workloads that look like production.
//!
//! Six tables (see [`SCHEMA`]): `Image` (the slots), `TagsOnImage`, `ImageTool` and
//! `ImageModelVersion` (join tables), `Post` (a parent through the single-value link `postId`)
//! and `ModelVersion` (a parent through the multi-value link `modelVersionIds`).
//! `docs/examples/image-feed.toml` indexes them with every source kind.
//!
//! Distributions are skewed as in a real feed: users and tags follow a Zipf law (a few users own
//! very many images, a few tags are on most of them), posts hold 1 to 50 images (most hold a
//! few), one image in twenty carries a `meta` text large and random enough to be TOASTed out of
//! line. The same options and seed always give the same rows.
//!
//! Guarantees: [`generate`] refuses a database that already has any of the tables, and creates
//! the primary keys, replica identities and publication only after the data is in (bulk load
//! first, indexes after). Crash window: a generate that fails half-way leaves the tables it made;
//! drop them (or the throwaway database) and run it again.

mod load;
mod rows;
mod writer;

use std::time::Duration;

pub use load::{GenerateError, LoadProgress, generate};
pub use rows::Sizes;
pub use writer::{WriteKind, Writer, WriterStats};

/// The text of `docs/examples/image-feed.toml`: the configuration that indexes the dataset.
pub const CONFIG_TOML: &str = include_str!("../../docs/examples/image-feed.toml");

/// [`CONFIG_TOML`] pointed at a database (`url`), a replication slot, a data directory and an
/// HTTP listen address: what the demo and the tests run.
pub fn config_text(url: &str, slot: &str, data_dir: &std::path::Path, listen: &str) -> String {
    CONFIG_TOML
        .replace("postgresql://pgroar@127.0.0.1:5432/feed", url)
        .replace("slot = \"pgroar\"", &format!("slot = \"{slot}\""))
        .replace(
            "data_dir = \"pgroar-data\"",
            &format!("data_dir = \"{}\"", data_dir.display()),
        )
        .replace("127.0.0.1:7070", listen)
}

/// The enum types and tables, without keys (they are added after the load).
pub const SCHEMA: &str = r#"
CREATE TYPE "ImageType" AS ENUM ('image', 'video', 'audio');
CREATE TYPE "Availability" AS ENUM ('Public', 'Private', 'Unsearchable');
CREATE TABLE "Image" (
    id integer NOT NULL,
    "nsfwLevel" integer NOT NULL,
    type "ImageType" NOT NULL,
    "userId" integer NOT NULL,
    "postId" integer,
    flags integer NOT NULL DEFAULT 0,
    "createdAt" timestamptz NOT NULL,
    "scannedAt" timestamptz,
    "blockedFor" text,
    meta text
);
CREATE TABLE "TagsOnImage" ("imageId" integer NOT NULL, "tagId" integer NOT NULL);
CREATE TABLE "ImageTool" ("imageId" integer NOT NULL, "toolId" integer NOT NULL);
CREATE TABLE "ImageModelVersion" (
    "imageId" integer NOT NULL, "modelVersionId" integer NOT NULL);
CREATE TABLE "Post" (
    id integer NOT NULL,
    "userId" integer NOT NULL,
    "publishedAt" timestamptz,
    availability "Availability" NOT NULL
);
CREATE TABLE "ModelVersion" (id integer NOT NULL, "baseModel" text NOT NULL);
"#;

/// The keys, added once the rows are in.
pub const KEYS: &str = r#"
ALTER TABLE "Image" ADD PRIMARY KEY (id);
ALTER TABLE "TagsOnImage" ADD PRIMARY KEY ("imageId", "tagId");
ALTER TABLE "ImageTool" ADD PRIMARY KEY ("imageId", "toolId");
ALTER TABLE "ImageModelVersion" ADD PRIMARY KEY ("imageId", "modelVersionId");
ALTER TABLE "Post" ADD PRIMARY KEY (id);
ALTER TABLE "ModelVersion" ADD PRIMARY KEY (id);
"#;

/// The dataset's tables, parents last.
pub const TABLES: [&str; 6] = [
    "Image",
    "TagsOnImage",
    "ImageTool",
    "ImageModelVersion",
    "Post",
    "ModelVersion",
];

/// The replica identity the tables get.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Identity {
    /// `REPLICA IDENTITY DEFAULT` (the primary key): the least WAL; updates carry no old values.
    #[default]
    Default,
    /// `REPLICA IDENTITY FULL`: every update and delete carries the whole old row.
    Full,
}

impl std::str::FromStr for Identity {
    type Err = String;
    fn from_str(s: &str) -> Result<Identity, String> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Ok(Identity::Default),
            "full" => Ok(Identity::Full),
            _ => Err(format!("replica identity {s:?}: expected default or full")),
        }
    }
}

impl Identity {
    fn sql(self) -> &'static str {
        match self {
            Identity::Default => "DEFAULT",
            Identity::Full => "FULL",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct DatasetOptions {
    /// Number of images (the other tables scale with it, see [`Sizes`]).
    pub images: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Replica identity of every table.
    pub identity: Identity,
    /// The publication created over the six tables (none when empty).
    pub publication: String,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        DatasetOptions {
            images: 200_000,
            seed: 1,
            identity: Identity::Default,
            publication: "pgroar".into(),
        }
    }
}

/// The SQL that follows the load: keys, replica identities, the publication, statistics.
fn finish_sql(options: &DatasetOptions) -> String {
    let mut sql = String::from(KEYS);
    for t in TABLES {
        sql.push_str(&format!(
            "ALTER TABLE \"{t}\" REPLICA IDENTITY {};\n",
            options.identity.sql()
        ));
    }
    if !options.publication.is_empty() {
        let tables: Vec<String> = TABLES.iter().map(|t| format!("\"{t}\"")).collect();
        sql.push_str(&format!(
            "CREATE PUBLICATION \"{}\" FOR TABLE {};\n",
            options.publication,
            tables.join(", ")
        ));
    }
    for t in TABLES {
        sql.push_str(&format!("ANALYZE \"{t}\";\n"));
    }
    sql
}

/// How long a writer at `rate` transactions per second waits between two.
pub fn pace(rate: f64) -> Duration {
    if rate <= 0.0 {
        Duration::MAX
    } else {
        Duration::from_secs_f64(1.0 / rate)
    }
}
