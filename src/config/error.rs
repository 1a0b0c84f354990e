//! Configuration errors. Every [`Problem`] names its place: the key, the environment
//! variable, or the source (`sources[i] (table "T")`) and the item within it.

use std::fmt;
use std::path::PathBuf;

use crate::schema::SchemaError;

use super::template::{PlaceholderError, QueryTemplateError, TrackFieldError};

/// Where a configuration came from, for error messages (`in <path>` or `given as text`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin(pub Option<PathBuf>);

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(path) => write!(f, "in {}", path.display()),
            None => f.write_str("given as text"),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, or does not have the configuration's shape (unknown or misspelt
    /// key, wrong type); the TOML error gives the line and the key.
    #[error("cannot parse the configuration {origin}")]
    Parse {
        /// The file.
        origin: Origin,
        /// The parser's error, with line, column and key.
        #[source]
        source: toml::de::Error,
    },
    /// The configuration parsed but breaks rules; every problem found is listed.
    #[error("invalid configuration {origin}:\n  {}", ProblemList(.problems))]
    Invalid {
        /// The file.
        origin: Origin,
        /// Every problem, in file order.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`] (empty for the other variants).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n  ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// One rule a configuration breaks.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// An override variable whose value does not parse as the key's type.
    #[error("{var}={value:?}: {key} must be {expected}")]
    EnvValue {
        /// The variable.
        var: String,
        /// The key it overrides (`wal.segment_bytes`).
        key: String,
        /// Its value.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// An override variable for a key its section does not have.
    #[error("{var}: [{section}] has no key {key:?} (keys settable from the environment: {known})")]
    EnvUnknownKey {
        /// The variable.
        var: String,
        /// The section.
        section: &'static str,
        /// The key (lower-cased).
        key: String,
        /// The section's overridable keys.
        known: &'static str,
    },
    /// An override variable for a key that is not a single value (e.g. `index.filters`).
    #[error("{var}: {key} is a list and cannot be set from the environment")]
    EnvNotScalar {
        /// The variable.
        var: String,
        /// The key.
        key: &'static str,
    },
    /// `postgres.url` is missing or empty.
    #[error("postgres.url is required: set it in [postgres] or with PGROAR_POSTGRES_URL")]
    MissingUrl,
    /// A scalar key with a value outside what it accepts.
    #[error("{key} = {value}: {rule}")]
    BadValue {
        /// The key (`http.listen`).
        key: &'static str,
        /// Its value, as written.
        value: String,
        /// What it must be.
        rule: &'static str,
    },
    /// A problem with the `[index]` fields.
    #[error("[index]: {0}")]
    Schema(SchemaError),
    /// A problem with one `[[sources]]` entry.
    #[error("sources[{index}] (table {table:?}): {problem}")]
    Source {
        /// 0-based position among the `[[sources]]` entries.
        index: usize,
        /// Its `table` (empty when missing).
        table: String,
        /// What is wrong.
        problem: SourceProblem,
    },
}

/// What is wrong with one source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceProblem {
    /// `table` is missing or blank.
    #[error("`table` is missing or empty")]
    MissingTable,
    /// A key that the source's kind does not take.
    #[error("key `{key}` does not belong to a {kind}; it takes {allowed}")]
    KeyNotForKind {
        /// The key.
        key: &'static str,
        /// The kind, as detected (`join table (has \`field\`)`).
        kind: &'static str,
        /// The keys that kind takes.
        allowed: &'static str,
    },
    /// A join table without `slot_field`.
    #[error(
        "a join table (has `field`) needs `slot_field`: the column holding the slot (entity) id"
    )]
    JoinNeedsSlotField,
    /// A column key whose value is not a plain column name.
    #[error("{key} {value:?} is not a plain column name")]
    BadColumn {
        /// `slot_field` or `value_field`.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// A join table's `field` is empty.
    #[error("`field` is empty")]
    EmptyField,
    /// `on_delete` with a value it does not accept.
    #[error("on_delete = {value}: expected \"delete_slot\", true, \"true\" or false")]
    OnDelete {
        /// The value, as TOML.
        value: String,
    },
    /// A malformed `track_fields` item.
    #[error("track_fields[{item}] {text:?}: {error}")]
    TrackField {
        /// 0-based item position.
        item: usize,
        /// The item as written.
        text: String,
        /// What is wrong.
        error: TrackFieldError,
    },
    /// Two `track_fields` items set the same target.
    #[error(
        "track_fields[{item}] {text:?}: target {target:?} is already set by track_fields[{first}]"
    )]
    DuplicateTarget {
        /// 0-based item position.
        item: usize,
        /// The item as written.
        text: String,
        /// The target.
        target: String,
        /// The earlier item.
        first: usize,
    },
    /// A `track_fields` target that is not an index field.
    #[error(
        "track_fields[{item}] {text:?}: target {target:?} is not an index field \
         (declare it in [index].filters or [index].sorts)"
    )]
    UnknownTarget {
        /// 0-based item position.
        item: usize,
        /// The item as written.
        text: String,
        /// The target.
        target: String,
    },
    /// A `track_fields` target that is a multi-value filter field.
    #[error(
        "track_fields[{item}] {text:?}: target {target:?} is a multi-value filter field; \
         multi-value fields are fed by join tables (`field`), or by a fan-out kept as a join \
         (query `<field> eq {{column}}`, join = true)"
    )]
    MultiTarget {
        /// 0-based item position.
        item: usize,
        /// The item as written.
        text: String,
        /// The target.
        target: String,
    },
    /// A join table's `filter` with malformed placeholders.
    #[error("filter {text:?}: {error}")]
    Filter {
        /// The filter as written.
        text: String,
        /// What is wrong.
        error: PlaceholderError,
    },
    /// A join table's `field` that is not a filter field.
    #[error(
        "field {field:?} is not declared in [index].filters; a join table needs a multi-value \
         filter field"
    )]
    JoinFieldUnknown {
        /// The field.
        field: String,
    },
    /// A join table's `field` that is a single or bool filter field.
    #[error(
        "field {field:?} is declared kind {kind:?} in [index].filters; a join table needs a \
         multi-value field"
    )]
    JoinFieldNotMulti {
        /// The field.
        field: String,
        /// Its declared kind (`single`, `bool`).
        kind: &'static str,
    },
    /// A malformed fan-out `query`.
    #[error("query {text:?}: {error}")]
    Query {
        /// The query as written.
        text: String,
        /// What is wrong.
        error: QueryTemplateError,
    },
    /// A fan-out `query` naming a field that is not a filter field.
    #[error("query {text:?}: field {field:?} is not a filter field in [index].filters")]
    QueryFieldUnknown {
        /// The query as written.
        text: String,
        /// The field.
        field: String,
    },
    /// `join = true` on a query that is not one `field eq {column}` clause.
    #[error(
        "query {text:?}: join = true needs a query of one `<field> eq {{column}}` clause; \
         queries with several clauses or `in` lists apply to the slots that match when a change \
         arrives (join = false)"
    )]
    JoinNeedsEq {
        /// The query as written.
        text: String,
    },
    /// A single-valued target of a join whose link is multi-value.
    #[error(
        "track_fields[{item}] {text:?}: target {target:?} is single-valued, but the join's link \
         field {link:?} is multi-value: a slot linked to several rows has no single value in \
         SQL. Declare {target:?} as a multi-value filter field (it then holds the union of the \
         linked rows' values), or set join = false for the trigger pipeline's behaviour (each \
         row's change overwrites the value of the slots that match when it arrives)"
    )]
    JoinSingleOnMulti {
        /// 0-based item position.
        item: usize,
        /// The item as written.
        text: String,
        /// The target.
        target: String,
        /// The link field.
        link: String,
    },
    /// A join target that is the join's own link field.
    #[error("track_fields[{item}] {text:?}: target {target:?} is the link field of the query")]
    JoinTargetIsLink {
        /// 0-based item position.
        item: usize,
        /// The item as written.
        text: String,
        /// The target.
        target: String,
    },
    /// A join target that another source writes too.
    #[error(
        "target {target:?} follows this table's rows through the join on {link:?}, but \
         sources[{other}] (table {other_table:?}) writes it too: a joined field has one source \
         (or set join = false here)"
    )]
    JoinTargetShared {
        /// The target.
        target: String,
        /// The join's link field.
        link: String,
        /// The other source's position.
        other: usize,
        /// The other source's table.
        other_table: String,
    },
    /// Joins that feed each other's links in a circle.
    #[error(
        "the join on {link:?} is part of a cycle: its targets feed, through other joins, its \
         own link field"
    )]
    JoinCycle {
        /// This join's link field.
        link: String,
    },
    /// The same source declared twice.
    #[error("duplicates sources[{first}]: {what}")]
    Duplicate {
        /// The earlier source's position.
        first: usize,
        /// What makes them the same.
        what: &'static str,
    },
}
