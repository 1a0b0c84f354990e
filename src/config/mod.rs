//! The configuration: a TOML file, `PGROAR_<SECTION>_<KEY>` environment overrides, and
//! validation that reports every problem at once, each naming its place.
//!
//! Loading goes: parse the TOML (a misspelt key or a wrong type is an error with its line),
//! apply the environment overrides, build the typed sources (detecting each one's kind), then
//! check everything against the index fields. Nothing is dropped silently: a `track_fields`
//! target that is not an index field is an error, not a no-op. `docs/configuration.md` lists
//! every key, its default and its variable.

mod env;
mod error;
mod forward;
mod replication;
mod sources;
mod template;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::schema::{FilterField, FilterKind, Schema, SchemaError, SortField};

pub use env::{ENV_KEYS, ENV_PREFIX};
pub use error::{ConfigError, Origin, Problem, SourceProblem};
pub use forward::ForwardConfig;
pub use replication::{ReplicationConfig, default_stream};
pub use sources::{DEFAULT_SLOT_FIELD, DEFAULT_VALUE_FIELD, Source, SourceKind};
pub use template::{
    PlaceholderError, QueryClause, QueryOp, QueryTemplate, QueryTemplateError, TrackField,
    TrackFieldError, is_identifier, placeholders, substitute,
};

/// Default publication: the name `migrations/` creates, so a default setup needs no key.
pub const DEFAULT_PUBLICATION: &str = "pgroar";
/// Default replication slot: one pgroar per database is the common case; name it after us.
pub const DEFAULT_SLOT: &str = "pgroar";
/// Default data directory (WAL and checkpoints), relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "pgroar-data";
/// Default HTTP address: loopback only, so nothing is exposed until asked for.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default WAL segment size, 64 MiB: large enough that rotation is rare, small enough that a
/// checkpoint frees disk promptly.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default longest wait before a group commit's fsync starts, 0 ms: it starts as soon as no
/// other fsync is running (fsyncs run in the background while the stream goes on, so a commit
/// waits at most for the running fsync and its own); a larger value batches more per fsync.
pub const DEFAULT_GROUP_COMMIT_MAX_MS: u64 = 0;
/// Default largest group commit, 4 MiB: bounds what one fsync covers (and what is re-sent
/// after a crash before it).
pub const DEFAULT_GROUP_COMMIT_MAX_BYTES: u64 = 4 << 20;
/// Default checkpoint interval, 60 s: bounds the WAL replayed at start-up to about a minute
/// of changes without writing the bitmaps often.
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 60;
/// Default `index.checkpoint_wal_percent`: a checkpoint's writes never exceed the WAL's.
pub const DEFAULT_CHECKPOINT_WAL_PERCENT: u64 = 100;

/// Default `wal.max_backlog_bytes`: 2 GiB of source WAL waiting for the index writer.
pub const DEFAULT_MAX_BACKLOG_BYTES: u64 = 2 << 30;

/// Default `http.ready_max_lag_secs`: `/readyz` fails once the index is this far behind.
pub const DEFAULT_READY_MAX_LAG_SECS: u64 = 60;
/// Default `http.query_timeout_ms`: a query still running after this answers 503.
pub const DEFAULT_QUERY_TIMEOUT_MS: u64 = 10_000;
/// Default `http.max_connections`: HTTP connections open at once; more are closed on accept.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default replication status interval, 1 s: how often the standby status (the flush LSN
/// acknowledged to Postgres) is sent; keeps the slot close behind without chattering.
pub const DEFAULT_STATUS_INTERVAL_MS: u64 = 1000;
/// Largest `postgres.status_interval_ms`: Postgres's default `wal_sender_timeout` is 60 s.
pub const MAX_STATUS_INTERVAL_MS: u64 = 60_000;
/// Smallest `postgres.status_interval_ms`.
pub const MIN_STATUS_INTERVAL_MS: u64 = 10;
/// Default sort field width: 32 bits holds ids, counts and epoch seconds until 2106.
pub const DEFAULT_SORT_BITS: u32 = 32;

/// A loaded, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `[postgres]`: where the changes come from.
    pub postgres: PostgresConfig,
    /// `[storage]`: where the WAL and checkpoints live.
    pub storage: StorageConfig,
    /// `[http]`: the query/status/metrics server.
    pub http: HttpConfig,
    /// `[wal]`: the ops WAL's tuning.
    pub wal: WalConfig,
    /// `[forward]` (optional): `Some` when `forward.url` is set.
    pub forward: Option<ForwardConfig>,
    /// `[replication]` (optional): `Some` when `replication.url` is set.
    pub replication: Option<ReplicationConfig>,
    /// `[index]`: the index's fields.
    pub index: IndexConfig,
    /// `[[sources]]`: the tables that feed the index.
    pub sources: Vec<Source>,
}

/// `[postgres]`. Its `Debug` form hides the password in `url`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq URI or `key=value` connection string (TLS via `sslmode`).
    pub url: String,
    /// The publication to subscribe to.
    pub publication: String,
    /// The logical replication slot to use.
    pub slot: String,
    /// Milliseconds between two standby status updates (acknowledgements) sent to Postgres.
    pub status_interval_ms: u64,
    /// Milliseconds of silence on the replication stream after which the connection is
    /// presumed dead and reopened; `None`: twice the server's `wal_sender_timeout`.
    pub receive_timeout_ms: Option<u64>,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_password(&self.url))
            .field("publication", &self.publication)
            .field("slot", &self.slot)
            .field("status_interval_ms", &self.status_interval_ms)
            .field("receive_timeout_ms", &self.receive_timeout_ms)
            .finish()
    }
}

/// A connection string with its password replaced by `***`: the `user:password@` of a URI, the
/// `password` query parameter, or a `password=` key of a `key=value` string.
pub fn redact_password(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let mut out = url[..scheme_end + 3].to_owned();
        match rest[..authority_end].rfind('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&rest[at..authority_end]);
            }
            None => out.push_str(&rest[..authority_end]),
        }
        let tail = &rest[authority_end..];
        match tail.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let params: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some(("password", _)) => "password=***".to_owned(),
                        _ => kv.to_owned(),
                    })
                    .collect();
                out.push_str(&params.join("&"));
            }
            None => out.push_str(tail),
        }
        return out;
    }
    // key=value form: values may be single-quoted with backslash escapes.
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(pos) = rest.find("password") {
        let after = rest[pos + "password".len()..].trim_start();
        let starts_key = rest[..pos]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace);
        if !(starts_key && after.starts_with('=')) {
            out.push_str(&rest[..pos + 1]);
            rest = &rest[pos + 1..];
            continue;
        }
        out.push_str(&rest[..pos]);
        out.push_str("password=***");
        let value = after[1..].trim_start();
        let consumed = if let Some(quoted) = value.strip_prefix('\'') {
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '\'') => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            1 + end.min(quoted.len())
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        rest = &value[consumed.min(value.len())..];
    }
    out.push_str(rest);
    out
}

impl PostgresConfig {
    /// `status_interval_ms` as a duration.
    pub fn status_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.status_interval_ms)
    }
}

/// `[storage]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The directory holding the WAL and checkpoints (relative to the working directory).
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The bearer token `POST /ops` and the admin routes require (`None`: open).
    pub token: Option<Token>,
    /// `/readyz` answers 503 once the index has been behind the server this many seconds.
    pub ready_max_lag_secs: u64,
    /// A query still running after this many milliseconds answers 503 (0: no deadline).
    pub query_timeout_ms: u64,
    /// HTTP connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

/// A bearer token: compared in constant time, never printed (`Debug` and `Display` show
/// `<redacted>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token; `None` for an empty one (an empty `[http].token` means no token).
    pub fn new(text: impl Into<String>) -> Option<Token> {
        let text = text.into();
        (!text.trim().is_empty()).then(|| Token(text.trim().to_owned()))
    }

    /// The secret itself, for an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[wal]` (optional).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// Segment size at which the WAL rotates to a new file.
    pub segment_bytes: u64,
    /// Longest a transaction waits for its group commit's fsync.
    pub group_commit_max_ms: u64,
    /// Bytes after which a group commit is fsynced without waiting longer.
    pub group_commit_max_bytes: u64,
    /// Source WAL (bytes of LSN) durable in our WAL but not yet applied to the index above
    /// which the stream pauses: Postgres keeps the rest in the slot instead of our disk.
    pub max_backlog_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            group_commit_max_ms: DEFAULT_GROUP_COMMIT_MAX_MS,
            group_commit_max_bytes: DEFAULT_GROUP_COMMIT_MAX_BYTES,
            max_backlog_bytes: DEFAULT_MAX_BACKLOG_BYTES,
        }
    }
}

impl WalConfig {
    /// `group_commit_max_ms` as a duration.
    pub fn group_commit_max_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.group_commit_max_ms)
    }
}

/// `[index]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// The filter and sort fields.
    pub schema: Arc<Schema>,
    /// Seconds between checkpoints.
    pub checkpoint_interval_secs: u64,
    /// A periodic checkpoint is written once the WAL written since the last one reaches this
    /// percentage of the last one's size (0: every interval with changes).
    pub checkpoint_wal_percent: u64,
}

// ---- the file as written ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    postgres: PostgresFile,
    #[serde(default)]
    storage: StorageConfig,
    #[serde(default)]
    http: HttpFile,
    #[serde(default)]
    wal: WalConfig,
    #[serde(default)]
    forward: forward::ForwardFile,
    #[serde(default)]
    replication: replication::ReplicationFile,
    #[serde(default)]
    index: IndexFile,
    #[serde(default)]
    sources: Vec<sources::SourceFile>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PostgresFile {
    url: Option<String>,
    publication: String,
    slot: String,
    status_interval_ms: u64,
    receive_timeout_ms: Option<u64>,
}

impl Default for PostgresFile {
    fn default() -> Self {
        PostgresFile {
            url: None,
            publication: DEFAULT_PUBLICATION.to_owned(),
            slot: DEFAULT_SLOT.to_owned(),
            status_interval_ms: DEFAULT_STATUS_INTERVAL_MS,
            receive_timeout_ms: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HttpFile {
    listen: String,
    token: Option<String>,
    ready_max_lag_secs: u64,
    query_timeout_ms: u64,
    max_connections: u64,
}

impl Default for HttpFile {
    fn default() -> Self {
        HttpFile {
            listen: DEFAULT_LISTEN.to_owned(),
            token: None,
            ready_max_lag_secs: DEFAULT_READY_MAX_LAG_SECS,
            query_timeout_ms: DEFAULT_QUERY_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS as u64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct IndexFile {
    filters: Vec<FilterFile>,
    sorts: Vec<SortFile>,
    checkpoint_interval_secs: u64,
    checkpoint_wal_percent: u64,
}

impl Default for IndexFile {
    fn default() -> Self {
        IndexFile {
            filters: Vec::new(),
            sorts: Vec::new(),
            checkpoint_interval_secs: DEFAULT_CHECKPOINT_INTERVAL_SECS,
            checkpoint_wal_percent: DEFAULT_CHECKPOINT_WAL_PERCENT,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterFile {
    name: String,
    kind: FilterKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SortFile {
    name: String,
    #[serde(default = "default_sort_bits")]
    bits: u32,
}

fn default_sort_bits() -> u32 {
    DEFAULT_SORT_BITS
}

impl Config {
    /// Reads `path` and applies the overrides from the process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_as(path, true)
    }

    /// [`Config::load`] for `pgroar follow`, which never connects to Postgres:
    /// `postgres.url` may be left out.
    pub fn load_for_follower(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_as(path, false)
    }

    fn load_as(path: impl AsRef<Path>, need_url: bool) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut env = Vec::new();
        let mut problems = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => env.push((name.to_owned(), value)),
                Err(value) => problems.push(Problem::EnvValue {
                    var: name.to_owned(),
                    key: name.to_owned(),
                    value: value.to_string_lossy().into_owned(),
                    expected: "valid UTF-8",
                }),
            }
        }
        let has_url = |env: &[(String, String)]| {
            env.iter().any(|(n, _)| n == "PGROAR_POSTGRES_URL")
                || toml::from_str::<toml::Table>(&text)
                    .ok()
                    .is_some_and(|t| t.get("postgres").and_then(|p| p.get("url")).is_some())
        };
        if !need_url && !has_url(&env) {
            env.push((
                "PGROAR_POSTGRES_URL".into(),
                "postgresql://never-connected.invalid/follower".into(),
            ));
        }
        Config::build(&text, env, Origin(Some(path.to_path_buf())), problems)
    }

    /// Parses `text` with the overrides in `env` (pairs of variable name and value; pass
    /// `std::iter::empty()` for none).
    ///
    /// ```
    /// use pgroar::config::{Config, SourceKind};
    ///
    /// let text = r#"
    ///     [postgres]
    ///     url = "postgresql://pgroar@127.0.0.1/app"
    ///     [index]
    ///     filters = [{ name = "tagIds", kind = "multi" }]
    ///     [[sources]]
    ///     table = "TagsOnImage"
    ///     slot_field = "imageId"
    ///     field = "tagIds"
    ///     value_field = "tagId"
    /// "#;
    /// let env = [("PGROAR_POSTGRES_SLOT".to_string(), "replica_b".to_string())];
    /// let config = Config::from_toml_str(text, env).unwrap();
    /// assert_eq!(config.postgres.slot, "replica_b");
    /// assert!(matches!(config.sources[0].kind, SourceKind::Join { .. }));
    ///
    /// // Mistakes are reported together, each naming its place.
    /// let err = Config::from_toml_str(&text.replace("multi", "single"), []).unwrap_err();
    /// assert!(err.to_string().contains(r#"sources[0] (table "TagsOnImage"): field "tagIds""#));
    /// ```
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::build(text, env, Origin(None), Vec::new())
    }

    fn build(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        origin: Origin,
        mut problems: Vec<Problem>,
    ) -> Result<Config, ConfigError> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.clone(),
            source,
        })?;
        problems.extend(env::apply(&mut file, env));

        let url = file.postgres.url.unwrap_or_default();
        let listen = file.http.listen.parse().unwrap_or_else(|_| {
            problems.push(Problem::BadValue {
                key: "http.listen",
                value: format!("{:?}", file.http.listen),
                rule: "not a socket address such as 127.0.0.1:7070 or [::]:7070",
            });
            SocketAddr::from(([127, 0, 0, 1], 7070))
        });
        let filters = file
            .index
            .filters
            .into_iter()
            .map(|f| FilterField {
                name: Arc::from(f.name),
                kind: f.kind,
            })
            .collect();
        let sorts = file
            .index
            .sorts
            .into_iter()
            .map(|s| sort_field(s, &mut problems))
            .collect();
        let converted: Vec<sources::Converted> = file
            .sources
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.into_source(i))
            .collect();
        let replication = file
            .replication
            .into_config(&file.postgres.slot, &mut problems);
        let mut config = Config {
            postgres: PostgresConfig {
                url,
                publication: file.postgres.publication,
                slot: file.postgres.slot,
                status_interval_ms: file.postgres.status_interval_ms,
                receive_timeout_ms: file.postgres.receive_timeout_ms,
            },
            storage: file.storage,
            http: HttpConfig {
                listen,
                token: file.http.token.and_then(Token::new),
                ready_max_lag_secs: file.http.ready_max_lag_secs,
                query_timeout_ms: file.http.query_timeout_ms,
                max_connections: usize::try_from(file.http.max_connections.max(1))
                    .unwrap_or(usize::MAX),
            },
            wal: file.wal,
            forward: file.forward.into_config(&mut problems),
            replication,
            index: IndexConfig {
                schema: Arc::new(Schema {
                    filters,
                    sorts,
                    joins: Vec::new(),
                    join_tables: Vec::new(),
                }),
                checkpoint_interval_secs: file.index.checkpoint_interval_secs,
                checkpoint_wal_percent: file.index.checkpoint_wal_percent,
            },
            sources: Vec::new(),
        };
        let mut per_source = Vec::with_capacity(converted.len());
        for c in converted {
            per_source.push((c.track_items, c.problems));
            config.sources.push(c.source);
        }
        problems.extend(config.problems(Some(per_source)));
        if problems.is_empty() {
            // The checks above cover every rule of the schema's joins, with the sources named.
            let mut schema = (*config.index.schema).clone();
            schema.join_tables = sources::join_table_fields(&config.sources);
            match schema.with_joins(sources::joins(&config.sources)) {
                Ok(schema) => config.index.schema = Arc::new(schema),
                Err(e) => problems.push(Problem::Schema(e)),
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { origin, problems })
        }
    }

    /// Checks the configuration: required keys, value ranges, the index fields, and every
    /// source against the index fields. Every problem is reported, not just the first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems(None);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: Origin(None),
                problems,
            })
        }
    }

    /// The index's fields.
    pub fn schema(&self) -> Arc<Schema> {
        Arc::clone(&self.index.schema)
    }

    /// All problems, in file order. `converted` carries, per source, the file positions of its
    /// track fields and the problems found while building it (when loading from text).
    fn problems(&self, converted: Option<Vec<(Vec<usize>, Vec<Problem>)>>) -> Vec<Problem> {
        let mut problems = Vec::new();
        let pg = &self.postgres;
        if pg.url.trim().is_empty() {
            problems.push(Problem::MissingUrl);
        }
        if pg.publication.trim().is_empty() {
            problems.push(bad(
                "postgres.publication",
                &pg.publication,
                "must not be empty",
            ));
        }
        if pg.slot.is_empty()
            || pg.slot.len() > 63
            || !pg
                .slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            problems.push(bad(
                "postgres.slot",
                &pg.slot,
                "a replication slot name is 1 to 63 lower-case letters, digits and underscores",
            ));
        }
        if !(MIN_STATUS_INTERVAL_MS..=MAX_STATUS_INTERVAL_MS).contains(&pg.status_interval_ms) {
            problems.push(bad(
                "postgres.status_interval_ms",
                &pg.status_interval_ms.to_string(),
                "must be between 10 and 60000 (Postgres's wal_sender_timeout is 60 s by default)",
            ));
        }
        if let Some(ms) = pg.receive_timeout_ms
            && ms < 2 * pg.status_interval_ms.max(500)
        {
            problems.push(bad(
                "postgres.receive_timeout_ms",
                &ms.to_string(),
                "must be at least twice postgres.status_interval_ms and at least 1000",
            ));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            problems.push(bad("storage.data_dir", "", "must not be empty"));
        }
        for (key, value) in [
            ("wal.segment_bytes", self.wal.segment_bytes),
            (
                "wal.group_commit_max_bytes",
                self.wal.group_commit_max_bytes,
            ),
            (
                "index.checkpoint_interval_secs",
                self.index.checkpoint_interval_secs,
            ),
        ] {
            if value == 0 {
                problems.push(bad(key, "0", "must be at least 1"));
            }
        }
        problems.extend(
            schema_problems(&self.index.schema)
                .into_iter()
                .map(Problem::Schema),
        );

        let mut seen: HashMap<(String, &'static str, String), usize> = HashMap::new();
        let mut converted = converted.map(Vec::into_iter);
        for (index, source) in self.sources.iter().enumerate() {
            let (track_items, mut found) = match converted.as_mut().and_then(Iterator::next) {
                Some((items, built)) => (Some(items), built),
                None => (None, Vec::new()),
            };
            found.extend(sources::check_source(
                index,
                source,
                track_items.as_deref(),
                &self.index.schema,
            ));
            let identity = sources::identity(source);
            let what = identity.1;
            if let Some(&first) = seen.get(&identity) {
                found.push(Problem::Source {
                    index,
                    table: source.table.clone(),
                    problem: SourceProblem::Duplicate { first, what },
                });
            } else {
                seen.insert(identity, index);
            }
            problems.extend(found);
        }
        problems.extend(sources::join_problems(&self.sources, &self.index.schema));
        problems
    }
}

fn bad(key: &'static str, value: &str, rule: &'static str) -> Problem {
    Problem::BadValue {
        key,
        value: format!("{value:?}"),
        rule,
    }
}

/// Every empty name, duplicate name and bad width (where `Schema::validate` stops at the first).
fn schema_problems(schema: &Schema) -> Vec<SchemaError> {
    let mut out = Vec::new();
    let mut check_names = |names: Vec<&str>| {
        let mut seen = std::collections::HashSet::new();
        for name in names {
            if name.is_empty() {
                out.push(SchemaError::EmptyName);
            } else if !seen.insert(name) {
                out.push(SchemaError::Duplicate(name.to_owned()));
            }
        }
    };
    check_names(schema.filters.iter().map(|f| &*f.name).collect());
    check_names(schema.sorts.iter().map(|s| &*s.name).collect());
    for s in &schema.sorts {
        if !(1..=32).contains(&s.bits) {
            out.push(SchemaError::Bits {
                name: s.name.to_string(),
                bits: u32::from(s.bits),
            });
        }
    }
    // Anything else `Schema::validate` knows about.
    if out.is_empty()
        && let Err(e) = schema.validate()
    {
        out.push(e);
    }
    out
}

/// A sort field as written: the schema stores widths as u8; widths that do not fit are reported
/// (with the value as written) and clamped so later checks stay quiet.
fn sort_field(s: SortFile, problems: &mut Vec<Problem>) -> SortField {
    let bits = u8::try_from(s.bits)
        .ok()
        .filter(|b| (1..=32).contains(b))
        .unwrap_or_else(|| {
            problems.push(Problem::Schema(SchemaError::Bits {
                name: s.name.clone(),
                bits: s.bits,
            }));
            32
        });
    SortField {
        name: Arc::from(s.name),
        bits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[postgres]\nurl = \"postgresql://u@h/db\"\n";

    #[test]
    fn debug_output_hides_the_password() {
        for (url, want) in [
            (
                "postgresql://app:s3cr%40t@db:5432/app?sslmode=require",
                "postgresql://app:***@db:5432/app?sslmode=require",
            ),
            (
                "postgres://db/app?user=app&password=hunter2&sslmode=require",
                "postgres://db/app?user=app&password=***&sslmode=require",
            ),
            ("postgresql://app@db/app", "postgresql://app@db/app"),
            (
                "host=db password=hunter2 dbname=app",
                "host=db password=*** dbname=app",
            ),
            (
                r"host=db password = 'a b\' c' user=app",
                "host=db password=*** user=app",
            ),
            ("host=db passwordless=1", "host=db passwordless=1"),
        ] {
            assert_eq!(redact_password(url), want, "{url}");
        }
        let c = PostgresConfig {
            url: "postgresql://app:hunter2@db/app".into(),
            publication: "p".into(),
            slot: "s".into(),
            status_interval_ms: 1000,
            receive_timeout_ms: None,
        };
        let text = format!("{c:?}");
        assert!(
            !text.contains("hunter2") && text.contains("app:***@db"),
            "{text}"
        );
    }

    #[test]
    fn the_status_interval_defaults_reads_the_file_and_the_environment() {
        let c = Config::from_toml_str(MINIMAL, []).unwrap();
        assert_eq!(c.postgres.status_interval_ms, DEFAULT_STATUS_INTERVAL_MS);
        let text = format!("{MINIMAL}status_interval_ms = 250\n");
        let c = Config::from_toml_str(&text, []).unwrap();
        assert_eq!(
            c.postgres.status_interval(),
            std::time::Duration::from_millis(250)
        );
        let env = [(
            "PGROAR_POSTGRES_STATUS_INTERVAL_MS".to_owned(),
            "5000".to_owned(),
        )];
        let c = Config::from_toml_str(&text, env).unwrap();
        assert_eq!(c.postgres.status_interval_ms, 5000);
    }

    #[test]
    fn a_status_interval_out_of_range_is_reported() {
        for v in [0, 9, 60_001] {
            let text = format!("{MINIMAL}status_interval_ms = {v}\n");
            let err = Config::from_toml_str(&text, []).unwrap_err().to_string();
            assert!(
                err.contains(&format!("postgres.status_interval_ms = \"{v}\"")),
                "{err}"
            );
        }
        let env = [(
            "PGROAR_POSTGRES_STATUS_INTERVAL_MS".to_owned(),
            "soon".to_owned(),
        )];
        let err = Config::from_toml_str(MINIMAL, env).unwrap_err().to_string();
        assert!(err.contains("PGROAR_POSTGRES_STATUS_INTERVAL_MS"), "{err}");
    }
}
