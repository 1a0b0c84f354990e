//! Fixtures shared by the unit tests, the integration tests and the benchmarks (feature
//! `test-utils`): the image-feed configuration shipped as `docs/examples/image-feed.toml`, and its
//! index schema. Tests that need a field the feed does not have (a narrow sort width to clamp, a
//! name that is both a filter and a sort field) build a schema of their own and say why.

use std::sync::Arc;

use crate::config::Config;
use crate::schema::Schema;

/// The text of `docs/examples/image-feed.toml`.
pub const IMAGE_FEED_TOML: &str = include_str!("../docs/examples/image-feed.toml");

/// The image-feed configuration (no environment overrides).
pub fn config() -> Config {
    Config::from_toml_str(IMAGE_FEED_TOML, std::iter::empty())
        .expect("docs/examples/image-feed.toml is a valid configuration")
}

/// The image-feed index schema, joins included: filters `nsfwLevel`, `type`, `userId`,
/// `postId`, `hasMeta`, `onSite`, `blocked`, `tagIds`, `toolIds`, `modelVersionIds`,
/// `availability` (joined through `postId`), `baseModels` (joined through `modelVersionIds`);
/// sorts `id`, `existedAt`, `publishedAt` (joined through `postId`), all 32 bits.
pub fn schema() -> Arc<Schema> {
    config().schema()
}

/// [`schema`] without its joins (fan-out sources declared `join = false`).
pub fn schema_without_joins() -> Arc<Schema> {
    Arc::new(Schema {
        joins: Vec::new(),
        ..(*schema()).clone()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_image_feed_schema_has_the_fields_its_docs_name() {
        let s = super::schema();
        let filters: Vec<&str> = s.filters.iter().map(|f| &*f.name).collect();
        assert_eq!(
            filters,
            [
                "nsfwLevel",
                "type",
                "userId",
                "postId",
                "hasMeta",
                "onSite",
                "blocked",
                "tagIds",
                "toolIds",
                "modelVersionIds",
                "availability",
                "baseModels"
            ]
        );
        let sorts: Vec<&str> = s.sorts.iter().map(|f| &*f.name).collect();
        assert_eq!(sorts, ["id", "existedAt", "publishedAt"]);
        let links: Vec<&str> = s.joins.iter().map(|j| &*j.link).collect();
        assert_eq!(links, ["postId", "modelVersionIds"]);
        assert!(super::schema_without_joins().joins.is_empty());
    }
}
