//! The writer: one transaction at a time, at a given rate, in the mix of a live image feed —
//! new posts with their images, tag edits, nsfw re-scores, post publishes, image moves and
//! deletes, flag flips, base-model changes and the odd post deletion (which leaves its images
//! without a parent: the LEFT JOIN's NULL).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;

use super::load::{GenerateError, sql_err};
use super::rows::{BASE_MODELS, ImageRow, Laws, Meta, Rng, Sizes, meta_text, post_size};
use crate::source::{ConnInfo, connect_sql};

/// The kinds of transaction the writer runs, with their weights (out of 100).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// A post with 1 to 10 new images, their tags, tools and model versions.
    NewPost,
    /// A tag added to an image.
    TagAdd,
    /// A tag taken off an image.
    TagRemove,
    /// An image's `nsfwLevel` re-scored (and `scannedAt` set).
    Rescore,
    /// A post published (`publishedAt`, `availability = 'Public'`).
    Publish,
    /// An image deleted with its join rows.
    Delete,
    /// An image moved to another post.
    Move,
    /// An image's flags flipped, or it is blocked.
    Flags,
    /// A model version's base model changed (every image using it follows).
    BaseModel,
    /// A post deleted: its images keep their `postId` and lose the post's fields.
    PostDelete,
}

impl WriteKind {
    /// Every kind, in the order of [`WriterStats::counts`].
    pub const ALL: [WriteKind; 10] = [
        WriteKind::NewPost,
        WriteKind::TagAdd,
        WriteKind::TagRemove,
        WriteKind::Rescore,
        WriteKind::Publish,
        WriteKind::Delete,
        WriteKind::Move,
        WriteKind::Flags,
        WriteKind::BaseModel,
        WriteKind::PostDelete,
    ];
    const WEIGHTS: [u64; 10] = [15, 15, 10, 25, 10, 7, 5, 8, 3, 2];

    /// A short name for displays.
    pub fn name(self) -> &'static str {
        match self {
            WriteKind::NewPost => "new post",
            WriteKind::TagAdd => "tag add",
            WriteKind::TagRemove => "tag remove",
            WriteKind::Rescore => "re-score",
            WriteKind::Publish => "publish",
            WriteKind::Delete => "delete",
            WriteKind::Move => "move",
            WriteKind::Flags => "flags",
            WriteKind::BaseModel => "base model",
            WriteKind::PostDelete => "post delete",
        }
    }

    fn draw(rng: &mut Rng) -> WriteKind {
        let mut pick = rng.below(Self::WEIGHTS.iter().sum());
        for (kind, w) in Self::ALL.into_iter().zip(Self::WEIGHTS) {
            if pick < w {
                return kind;
            }
            pick -= w;
        }
        WriteKind::Rescore
    }
}

/// Transactions committed, per kind.
#[derive(Debug, Default)]
pub struct WriterStats {
    counts: [AtomicU64; 10],
}

impl WriterStats {
    /// Committed transactions per kind, in [`WriteKind::ALL`] order.
    pub fn counts(&self) -> [u64; 10] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    /// Committed transactions in all.
    pub fn total(&self) -> u64 {
        self.counts().iter().sum()
    }
}

/// Changes the dataset, one transaction per [`Writer::step`].
pub struct Writer {
    client: Client,
    laws: Laws,
    rng: Rng,
    /// The next new image's id (ids above every existing one).
    next_image: u32,
    next_post: u32,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// A writer of the dataset in `conn`'s database, drawing from `seed`.
    pub async fn connect(
        conn: &ConnInfo,
        seed: u64,
        stats: Arc<WriterStats>,
    ) -> Result<Writer, GenerateError> {
        let client = connect_sql(conn).await?;
        let max = |table: &str| format!("SELECT coalesce(max(id), 0) FROM \"{table}\"");
        let images: i32 = client
            .query_one(&max("Image"), &[])
            .await
            .map_err(sql_err("reading the largest image id"))?
            .get(0);
        let posts: i32 = client
            .query_one(&max("Post"), &[])
            .await
            .map_err(sql_err("reading the largest post id"))?
            .get(0);
        Ok(Writer {
            client,
            laws: Laws::new(Sizes::for_images(images.max(1) as u32)),
            rng: Rng::new(seed, 99),
            next_image: images as u32 + 1,
            next_post: posts as u32 + 1,
            stats,
        })
    }

    /// Runs one transaction of a randomly drawn kind; returns the kind.
    pub async fn step(&mut self) -> Result<WriteKind, GenerateError> {
        let kind = WriteKind::draw(&mut self.rng);
        let sql = self.statement(kind);
        self.client
            .batch_execute(&sql)
            .await
            .map_err(sql_err(format!("the writer's {} transaction", kind.name())))?;
        let i = WriteKind::ALL.iter().position(|&k| k == kind).unwrap_or(0);
        self.stats.counts[i].fetch_add(1, Ordering::Relaxed);
        Ok(kind)
    }

    /// Steps at `rate` transactions per second until `stop` turns true.
    pub async fn run(
        mut self,
        rate: f64,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), GenerateError> {
        let mut tick = tokio::time::interval(super::pace(rate).min(Duration::from_secs(3600)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !*stop.borrow_and_update() {
            tokio::select! {
                _ = tick.tick() => { self.step().await?; }
                changed = stop.changed() => if changed.is_err() { break },
            }
        }
        Ok(())
    }

    /// An existing image id (or one deleted since: the statement then changes nothing).
    fn some_image(&mut self) -> u32 {
        1 + self.rng.below(u64::from(self.next_image - 1).max(1)) as u32
    }

    /// A post, recent ones more often.
    fn some_post(&mut self) -> u32 {
        let last = u64::from(self.next_post - 1).max(1);
        if self.rng.chance(0.7) {
            (last - self.rng.below(last.min(50))) as u32
        } else {
            1 + self.rng.below(last) as u32
        }
    }

    /// The SQL of one transaction of `kind`.
    fn statement(&mut self, kind: WriteKind) -> String {
        let id = self.some_image();
        let post = self.some_post();
        let rng = &mut self.rng;
        match kind {
            WriteKind::NewPost => self.new_post(),
            WriteKind::TagAdd => format!(
                "INSERT INTO \"TagsOnImage\" SELECT id, {} FROM \"Image\" WHERE id = {id} \
                 ON CONFLICT DO NOTHING",
                self.laws.tags.sample(rng)
            ),
            WriteKind::TagRemove => format!(
                "DELETE FROM \"TagsOnImage\" WHERE ctid IN (SELECT ctid FROM \"TagsOnImage\" \
                 WHERE \"imageId\" = {id} LIMIT 1)"
            ),
            WriteKind::Rescore => format!(
                "UPDATE \"Image\" SET \"nsfwLevel\" = {}, \"scannedAt\" = now() WHERE id = {id}",
                [1, 2, 4, 8, 16, 32][rng.below(6) as usize]
            ),
            WriteKind::Publish => format!(
                "UPDATE \"Post\" SET \"publishedAt\" = now(), availability = 'Public' \
                 WHERE id = {post}"
            ),
            WriteKind::Delete => format!(
                "BEGIN; DELETE FROM \"TagsOnImage\" WHERE \"imageId\" = {id}; \
                 DELETE FROM \"ImageTool\" WHERE \"imageId\" = {id}; \
                 DELETE FROM \"ImageModelVersion\" WHERE \"imageId\" = {id}; \
                 DELETE FROM \"Image\" WHERE id = {id}; COMMIT"
            ),
            WriteKind::Move => format!("UPDATE \"Image\" SET \"postId\" = {post} WHERE id = {id}"),
            WriteKind::Flags => {
                let bit = [0, 2, 13][rng.below(3) as usize];
                let blocked = if rng.chance(0.1) {
                    "'moderated'"
                } else {
                    "NULL"
                };
                format!(
                    "UPDATE \"Image\" SET flags = flags # {}, \"blockedFor\" = {blocked} \
                     WHERE id = {id}",
                    1 << bit
                )
            }
            WriteKind::BaseModel => format!(
                "UPDATE \"ModelVersion\" SET \"baseModel\" = '{}' WHERE id = {}",
                BASE_MODELS[rng.below(BASE_MODELS.len() as u64) as usize],
                self.laws.model_versions.sample(rng)
            ),
            WriteKind::PostDelete => format!("DELETE FROM \"Post\" WHERE id = {post}"),
        }
    }

    /// A new (unpublished) post with 1 to 10 new images and their join rows.
    fn new_post(&mut self) -> String {
        let post = self.next_post;
        self.next_post += 1;
        let rng = &mut self.rng;
        let user = self.laws.users.sample(rng);
        let mut sql =
            format!("BEGIN; INSERT INTO \"Post\" VALUES ({post}, {user}, NULL, 'Private');");
        for _ in 0..post_size(rng).min(10) {
            let id = self.next_image;
            self.next_image += 1;
            let row = ImageRow::draw(&self.laws, id, rng);
            let mut meta = String::new();
            meta_text(&mut meta, &row.meta);
            let meta = if matches!(row.meta, Meta::None) {
                "NULL".to_string()
            } else {
                format!("'{meta}'")
            };
            sql.push_str(&format!(
                " INSERT INTO \"Image\" VALUES ({id}, {}, '{}', {user}, {post}, {}, now(), NULL, \
                 NULL, {meta});",
                row.nsfw_level, row.kind, row.flags
            ));
            for tag in super::rows::image_tags(&self.laws, rng) {
                sql.push_str(&format!(
                    " INSERT INTO \"TagsOnImage\" VALUES ({id}, {tag});"
                ));
            }
            for tool in super::rows::image_tools(rng) {
                sql.push_str(&format!(
                    " INSERT INTO \"ImageTool\" VALUES ({id}, {tool});"
                ));
            }
            for mv in super::rows::image_model_versions(&self.laws, rng) {
                sql.push_str(&format!(
                    " INSERT INTO \"ImageModelVersion\" VALUES ({id}, {mv});"
                ));
            }
        }
        sql.push_str(" COMMIT");
        sql
    }
}
