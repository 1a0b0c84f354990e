//! The rows of the image-feed dataset, as COPY text lines: deterministic for a seed, with the
//! skew of a real feed. No I/O.

use std::fmt::Write as _;

use crate::translate::expr::datetime::{self, TsStyle};

/// 2023-01-01 00:00:00 UTC, the first image's `createdAt`.
const EPOCH_START: i64 = 1_672_531_200;
/// Images are spread over two years.
const SPAN_SECS: i64 = 2 * 365 * 24 * 3600;
/// The `nsfwLevel` values and how often each occurs (out of 100).
const NSFW: [(i32, u64); 6] = [(1, 62), (2, 16), (4, 10), (8, 7), (16, 4), (32, 1)];
/// Base models, most used first.
pub(crate) const BASE_MODELS: [&str; 8] = [
    "SDXL 1.0",
    "SD 1.5",
    "Pony",
    "Flux.1 D",
    "Illustrious",
    "SD 3.5",
    "NoobAI",
    "Other",
];
/// Tools an image may list.
const TOOLS: u32 = 300;

/// A small, fast, deterministic generator (SplitMix64).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for stream `stream` of `seed` (independent streams per table and row).
    pub(crate) fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A Zipf law over `1..=n`: rank `k` is drawn with weight `1 / k^s`.
#[derive(Clone, Debug)]
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: u32, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / f64::from(k).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    /// A rank in `1..=n`.
    pub(crate) fn sample(&self, rng: &mut Rng) -> u32 {
        let u = rng.unit();
        let i = self.cdf.partition_point(|&c| c < u);
        i.min(self.cdf.len() - 1) as u32 + 1
    }
}

/// How many rows each table gets for a number of images.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// `Image` rows.
    pub images: u32,
    /// Distinct users images are drawn from.
    pub users: u32,
    /// Distinct tags.
    pub tags: u32,
    /// `ModelVersion` rows.
    pub model_versions: u32,
}

impl Sizes {
    /// The sizes for `images` images.
    pub fn for_images(images: u32) -> Sizes {
        Sizes {
            images,
            users: (images / 20).max(50),
            tags: (images / 20).max(200),
            model_versions: (images / 50).max(100),
        }
    }
}

/// The random laws shared by every row of a dataset (and by the writer).
#[derive(Clone, Debug)]
pub(crate) struct Laws {
    pub(crate) sizes: Sizes,
    pub(crate) users: Zipf,
    pub(crate) tags: Zipf,
    pub(crate) model_versions: Zipf,
    pub(crate) base_models: Zipf,
}

impl Laws {
    pub(crate) fn new(sizes: Sizes) -> Laws {
        Laws {
            sizes,
            users: Zipf::new(sizes.users, 1.1),
            tags: Zipf::new(sizes.tags, 1.0),
            model_versions: Zipf::new(sizes.model_versions, 1.05),
            base_models: Zipf::new(BASE_MODELS.len() as u32, 1.2),
        }
    }
}

/// Images per post: 1 to 50, most posts small (about 7 on average).
pub(crate) fn post_size(rng: &mut Rng) -> u32 {
    let x = -rng.unit().max(1e-12).ln() * 6.0;
    1 + (x as u32).min(49)
}

/// The posts of a dataset of `images` images, in order: post `i + 1` holds the next `sizes[i]`
/// images.
pub(crate) fn post_sizes(images: u32, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed, 1);
    let mut sizes = Vec::new();
    let mut left = images;
    while left > 0 {
        let n = post_size(&mut rng).min(left);
        sizes.push(n);
        left -= n;
    }
    sizes
}

/// Where image `id` of `images` falls in the two years, in seconds since the Unix epoch.
pub(crate) fn base_created_at(id: u32, images: u32) -> i64 {
    EPOCH_START + i64::from(id) * SPAN_SECS / i64::from(images.max(1))
}

/// `createdAt` of image `id` of `images`: its place in time, within the hour.
pub(crate) fn created_at(id: u32, images: u32, rng: &mut Rng) -> i64 {
    base_created_at(id, images) + rng.below(3600) as i64
}

/// A timestamp as Postgres reads it: `YYYY-MM-DD HH:MM:SS+00` (`timestamptz_out` in UTC).
pub(crate) fn timestamp(out: &mut String, secs: i64) {
    let usecs = secs * 1_000_000 - datetime::UNIX_TO_PG_USECS;
    out.push_str(&datetime::format_timestamp(usecs, TsStyle::Zoned));
}

/// One image's own columns.
pub(crate) struct ImageRow {
    pub(crate) nsfw_level: i32,
    pub(crate) kind: &'static str,
    pub(crate) user_id: u32,
    pub(crate) flags: i32,
    pub(crate) created_at: i64,
    /// Seconds after `created_at`, or not scanned.
    pub(crate) scanned_after: Option<i64>,
    pub(crate) blocked_for: Option<&'static str>,
    pub(crate) meta: Meta,
}

/// The `meta` column: absent, a short JSON text, or a large random one (TOASTed out of line).
pub(crate) enum Meta {
    None,
    Small(u64),
    Large(u64),
}

impl ImageRow {
    /// Draws image `id`'s columns.
    pub(crate) fn draw(laws: &Laws, id: u32, rng: &mut Rng) -> ImageRow {
        let mut pick = rng.below(100);
        let mut nsfw_level = 1;
        for (level, weight) in NSFW {
            if pick < weight {
                nsfw_level = level;
                break;
            }
            pick -= weight;
        }
        let kind = match rng.below(100) {
            0..=84 => "image",
            85..=97 => "video",
            _ => "audio",
        };
        let mut flags = 0;
        if rng.chance(0.4) {
            flags |= 1; // made on site
        }
        if rng.chance(0.1) {
            flags |= 1 << 2; // meta hidden
        }
        if rng.chance(0.6) {
            flags |= 1 << 13; // has meta
        }
        let created_at = created_at(id, laws.sizes.images, rng);
        ImageRow {
            nsfw_level,
            kind,
            user_id: laws.users.sample(rng),
            flags,
            created_at,
            scanned_after: (!rng.chance(0.05)).then(|| rng.below(7200) as i64),
            blocked_for: if rng.chance(0.02) {
                Some(["tos", "moderated", "csam"][rng.below(3) as usize])
            } else {
                None
            },
            meta: match rng.below(100) {
                0..=19 => Meta::None,
                20..=94 => Meta::Small(rng.next()),
                _ => Meta::Large(rng.next()),
            },
        }
    }
}

/// Appends `meta`'s text (COPY-safe: no tab, newline or backslash).
pub(crate) fn meta_text(out: &mut String, meta: &Meta) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    match *meta {
        Meta::None => out.push_str("\\N"),
        Meta::Small(x) => {
            let _ = write!(
                out,
                r#"{{"prompt":"a picture {x:x}","steps":{},"cfgScale":{}}}"#,
                20 + x % 30,
                3 + x % 9
            );
        }
        Meta::Large(x) => {
            let mut rng = Rng::new(x, 7);
            out.reserve(3072);
            for _ in 0..3072 / 8 {
                let mut v = rng.next();
                for _ in 0..8 {
                    out.push(ALPHABET[(v & 63) as usize] as char);
                    v >>= 6;
                }
            }
        }
    }
}

/// Appends image `id`'s COPY line (columns in [`super::SCHEMA`] order).
pub(crate) fn image_line(out: &mut String, id: u32, post: u32, row: &ImageRow) {
    let _ = write!(
        out,
        "{id}\t{}\t{}\t{}\t{post}\t{}\t",
        row.nsfw_level, row.kind, row.user_id, row.flags
    );
    timestamp(out, row.created_at);
    out.push('\t');
    match row.scanned_after {
        Some(after) => timestamp(out, row.created_at + after),
        None => out.push_str("\\N"),
    }
    out.push('\t');
    out.push_str(row.blocked_for.unwrap_or("\\N"));
    out.push('\t');
    meta_text(out, &row.meta);
    out.push('\n');
}

/// Image `id`'s tag ids: 0 to 12 distinct ones, Zipf-distributed.
pub(crate) fn image_tags(laws: &Laws, rng: &mut Rng) -> Vec<u32> {
    let n = rng.below(13).min(rng.below(13)); // most images have few tags
    distinct(n as usize, || laws.tags.sample(rng))
}

/// An image's tools: none for three in four, else one or two.
pub(crate) fn image_tools(rng: &mut Rng) -> Vec<u32> {
    if rng.chance(0.75) {
        return Vec::new();
    }
    let n = 1 + rng.below(2) as usize;
    distinct(n, || 1 + rng.below(u64::from(TOOLS)) as u32)
}

/// An image's model versions: one to three, Zipf-distributed.
pub(crate) fn image_model_versions(laws: &Laws, rng: &mut Rng) -> Vec<u32> {
    let n = 1 + rng.below(3).min(rng.below(3)) as usize;
    distinct(n, || laws.model_versions.sample(rng))
}

/// Up to `n` distinct values from `draw` (gives up on a value after a few repeats).
fn distinct(n: usize, mut draw: impl FnMut() -> u32) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(n);
    for _ in 0..n * 3 {
        if out.len() == n {
            break;
        }
        let v = draw();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// A post's COPY line: its owner, `publishedAt` (nine in ten are published) and availability.
pub(crate) fn post_line(out: &mut String, id: u32, first_created: i64, rng: &mut Rng, laws: &Laws) {
    let _ = write!(out, "{id}\t{}\t", laws.users.sample(rng));
    if rng.chance(0.9) {
        timestamp(out, first_created + rng.below(86_400) as i64);
    } else {
        out.push_str("\\N");
    }
    let availability = match rng.below(10) {
        0..=7 => "Public",
        8 => "Private",
        _ => "Unsearchable",
    };
    let _ = writeln!(out, "\t{availability}");
}

/// A model version's COPY line.
pub(crate) fn model_version_line(out: &mut String, id: u32, rng: &mut Rng, laws: &Laws) {
    let base = BASE_MODELS[laws.base_models.sample(rng) as usize - 1];
    let _ = writeln!(out, "{id}\t{base}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_dates() {
        let mut s = String::new();
        timestamp(&mut s, 0);
        s.push(' ');
        timestamp(&mut s, EPOCH_START + 59 * 86_400 + 3661);
        s.push(' ');
        timestamp(&mut s, 951_782_400); // 2000-02-29
        assert_eq!(
            s,
            "1970-01-01 00:00:00+00 2023-03-01 01:01:01+00 2000-02-29 00:00:00+00"
        );
    }

    #[test]
    fn posts_hold_one_to_fifty_images_and_cover_every_image() {
        let sizes = post_sizes(100_000, 3);
        assert_eq!(sizes.iter().sum::<u32>(), 100_000);
        assert!(sizes.iter().all(|&n| (1..=50).contains(&n)));
        assert!(sizes.contains(&50) && sizes.contains(&1));
        let mean = 100_000.0 / sizes.len() as f64;
        assert!((4.0..10.0).contains(&mean), "{mean}");
        assert_eq!(sizes, post_sizes(100_000, 3), "deterministic");
    }

    #[test]
    fn zipf_is_skewed() {
        let z = Zipf::new(10_000, 1.1);
        let mut rng = Rng::new(5, 0);
        let mut top = 0;
        for _ in 0..100_000 {
            let k = z.sample(&mut rng);
            assert!((1..=10_000).contains(&k));
            if k <= 10 {
                top += 1;
            }
        }
        // The top 0.1% of ranks draw a large share.
        assert!(top > 25_000, "{top}");
    }

    #[test]
    fn image_lines_have_every_column_and_large_metas() {
        let laws = Laws::new(Sizes::for_images(1000));
        let mut large = 0;
        for id in 1..=1000 {
            let mut rng = Rng::new(9, u64::from(id));
            let row = ImageRow::draw(&laws, id, &mut rng);
            let mut line = String::new();
            image_line(&mut line, id, 1, &row);
            assert_eq!(line.matches('\t').count(), 9, "{line}");
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            if line.len() > 3000 {
                large += 1;
            }
        }
        assert!((20..=90).contains(&large), "{large}");
    }
}
