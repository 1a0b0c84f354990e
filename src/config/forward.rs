//! `[forward]` (optional): the sink that POSTs the index's deduplicated batches, in the trigger
//! pipeline's format, to a remote index server (another pgroar's `POST /ops`, or a server of the
//! trigger pipeline at `/api/indexes/{name}/ops`).

use serde::Deserialize;

use super::Token;
use super::error::Problem;

/// Default largest batch, in entities.
pub const DEFAULT_BATCH_ENTITIES: u64 = 5_000;

/// Default backlog (bytes of source WAL behind the remote) past which forwarding stops: 10 GiB.
pub const DEFAULT_MAX_BACKLOG_BYTES: u64 = 10 << 30;

/// `[forward]` when `url` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Where batches are POSTed, e.g. `http://bitdex:3000/api/indexes/images/ops`.
    pub url: String,
    /// The remote's bearer token.
    pub token: Option<Token>,
    /// Largest batch, in entities (whole transactions; one larger transaction goes alone).
    pub batch_entities: u64,
    /// How far (bytes of source WAL) the remote may fall behind before forwarding stops.
    pub max_backlog_bytes: u64,
}

/// `[forward]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ForwardFile {
    pub url: Option<String>,
    pub token: Option<String>,
    pub batch_entities: Option<u64>,
    pub max_backlog_bytes: Option<u64>,
}

impl ForwardFile {
    /// The section's config (`None` without a `url`), its problems added to `problems`.
    pub(super) fn into_config(self, problems: &mut Vec<Problem>) -> Option<ForwardConfig> {
        let url = self.url.filter(|u| !u.trim().is_empty())?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problems.push(Problem::BadValue {
                key: "forward.url",
                value: format!("{url:?}"),
                rule: "not an http:// or https:// URL",
            });
        }
        let batch_entities = self.batch_entities.unwrap_or(DEFAULT_BATCH_ENTITIES);
        if batch_entities == 0 {
            problems.push(Problem::BadValue {
                key: "forward.batch_entities",
                value: "0".into(),
                rule: "must be at least 1",
            });
        }
        Some(ForwardConfig {
            url,
            token: self.token.and_then(Token::new),
            batch_entities: batch_entities.max(1),
            max_backlog_bytes: self.max_backlog_bytes.unwrap_or(DEFAULT_MAX_BACKLOG_BYTES),
        })
    }
}
