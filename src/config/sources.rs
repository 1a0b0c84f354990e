//! `[[sources]]`: which tables feed the index and how (direct, join, fan-out).
//!
//! The kind is detected from the keys present: `field` makes a multi-value **join** table,
//! else `query` makes a **fan-out** table, else the table is **direct**. A key that does not
//! belong to the detected kind is an error naming it, never silently ignored.

use std::sync::Arc;

use serde::Deserialize;

use crate::schema::{FilterKind, Join, Schema};

use super::error::{Problem, SourceProblem};
use super::template::{QueryOp, QueryTemplate, TrackField, is_identifier, placeholders};

/// The default `slot_field` of a direct table: its primary key.
pub const DEFAULT_SLOT_FIELD: &str = "id";
/// The default `value_field` of a join table.
pub const DEFAULT_VALUE_FIELD: &str = "id";

/// One table that feeds the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The table's name as Postgres spells it (optionally `schema.table`).
    pub table: String,
    /// How its rows become ops.
    pub kind: SourceKind,
}

/// How a source's row changes become ops (see `docs/configuration.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A row is an entity: `set` for each tracked field, `delete` on DELETE.
    Direct {
        /// The column holding the slot (entity) id.
        slot_field: String,
        /// The fields the row sets.
        track: Vec<TrackField>,
        /// INSERTs create the slot (`creates_slot`).
        sets_alive: bool,
        /// DELETEs delete the slot.
        on_delete: bool,
    },
    /// A row is one value of a multi-value field: `add` on INSERT, `remove` on DELETE.
    Join {
        /// The column holding the slot (entity) id.
        slot_field: String,
        /// The multi-value filter field.
        field: String,
        /// The column holding the value.
        value_field: String,
        /// An SQL condition over `{column}`s; rows for which it does not hold are ignored.
        filter: Option<String>,
    },
    /// A row's changes apply to every slot its query selects (`queryOpSet`).
    FanOut {
        /// Selects the slots, filled from the row.
        query: QueryTemplate,
        /// The fields the row sets on those slots.
        track: Vec<TrackField>,
        /// The slots follow the row as a join (`link eq {column}`): the index keeps every slot
        /// whose link equals the row's key at the row's values, whatever the order of writes.
        /// Off, the ops apply to the slots that match when they arrive (the trigger pipeline's
        /// behaviour).
        join: bool,
    },
}

impl SourceKind {
    /// For a fan-out source kept as a join: the link field (its query's one `eq` clause).
    pub fn join_link(&self) -> Option<&str> {
        match self {
            SourceKind::FanOut {
                query, join: true, ..
            } => query.clauses.first().map(|c| c.field.as_str()),
            _ => None,
        }
    }

    /// The tracked fields (empty for a join table).
    pub fn track(&self) -> &[TrackField] {
        match self {
            SourceKind::Direct { track, .. } | SourceKind::FanOut { track, .. } => track,
            SourceKind::Join { .. } => &[],
        }
    }

    /// Whether the source writes index field `field`.
    pub fn writes(&self, field: &str) -> bool {
        match self {
            SourceKind::Join { field: f, .. } => f == field,
            _ => self.track().iter().any(|t| t.target == field),
        }
    }

    /// `"direct"`, `"join"` or `"fan-out"`.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Direct { .. } => "direct",
            SourceKind::Join { .. } => "join",
            SourceKind::FanOut { .. } => "fan-out",
        }
    }
}

/// A `[[sources]]` entry as written. Every key is optional here so that all problems of an
/// entry are reported together.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceFile {
    table: Option<String>,
    slot_field: Option<String>,
    track_fields: Option<Vec<String>>,
    sets_alive: Option<bool>,
    on_delete: Option<toml::Value>,
    field: Option<String>,
    value_field: Option<String>,
    filter: Option<String>,
    query: Option<String>,
    join: Option<bool>,
}

const DIRECT: &str = "direct table";
const DIRECT_KEYS: &str = "table, slot_field, track_fields, sets_alive, on_delete";
const JOIN: &str = "join table (has `field`)";
const JOIN_KEYS: &str = "table, slot_field, field, value_field, filter";
const FAN_OUT: &str = "fan-out table (has `query`)";
const FAN_OUT_KEYS: &str = "table, query, track_fields, join";

impl SourceFile {
    /// Builds the typed source (best effort: malformed parts are left out) and lists the
    /// problems found; `index` is the entry's position in the file.
    pub(super) fn into_source(self, index: usize) -> Converted {
        let table = self.table.clone().unwrap_or_default();
        let mut problems = self.foreign_keys();
        let mut track_items = Vec::new();
        let kind = if let Some(field) = self.field.clone() {
            self.into_join(field, &mut problems)
        } else if let Some(text) = self.query.clone() {
            self.into_fan_out(text, &mut problems, &mut track_items)
        } else {
            self.into_direct(&mut problems, &mut track_items)
        };
        let problems = problems
            .into_iter()
            .map(|problem| Problem::Source {
                index,
                table: table.clone(),
                problem,
            })
            .collect();
        Converted {
            source: Source { table, kind },
            track_items,
            problems,
        }
    }

    /// The keys present that the entry's kind (told by `field`, `query`, or neither) does not
    /// take.
    fn foreign_keys(&self) -> Vec<SourceProblem> {
        let (kind, allowed) = if self.field.is_some() {
            (JOIN, JOIN_KEYS)
        } else if self.query.is_some() {
            (FAN_OUT, FAN_OUT_KEYS)
        } else {
            (DIRECT, DIRECT_KEYS)
        };
        let present = [
            ("slot_field", self.slot_field.is_some()),
            ("track_fields", self.track_fields.is_some()),
            ("sets_alive", self.sets_alive.is_some()),
            ("on_delete", self.on_delete.is_some()),
            ("value_field", self.value_field.is_some()),
            ("filter", self.filter.is_some()),
            ("query", self.query.is_some()),
            ("join", self.join.is_some()),
        ];
        present
            .into_iter()
            .filter(|&(key, is_there)| is_there && !allowed.split(", ").any(|k| k == key))
            .map(|(key, _)| SourceProblem::KeyNotForKind { key, kind, allowed })
            .collect()
    }

    /// A join table feeding multi-value field `field`.
    fn into_join(self, field: String, problems: &mut Vec<SourceProblem>) -> SourceKind {
        let slot_field = match self.slot_field {
            Some(slot) => column(problems, "slot_field", slot),
            None => {
                problems.push(SourceProblem::JoinNeedsSlotField);
                String::new()
            }
        };
        let value_field = self
            .value_field
            .unwrap_or_else(|| DEFAULT_VALUE_FIELD.to_owned());
        let value_field = column(problems, "value_field", value_field);
        if field.trim().is_empty() {
            problems.push(SourceProblem::EmptyField);
        }
        if let Some(filter) = &self.filter
            && let Err(error) = placeholders(filter)
        {
            problems.push(SourceProblem::Filter {
                text: filter.clone(),
                error,
            });
        }
        SourceKind::Join {
            slot_field,
            field,
            value_field,
            filter: self.filter,
        }
    }

    /// A fan-out table whose rows reach the slots query `text` selects (a join when it is one
    /// `eq` clause, unless `join = false`).
    fn into_fan_out(
        self,
        text: String,
        problems: &mut Vec<SourceProblem>,
        track_items: &mut Vec<usize>,
    ) -> SourceKind {
        let track = track_fields(problems, track_items, self.track_fields.unwrap_or_default());
        let query = QueryTemplate::parse(&text).unwrap_or_else(|error| {
            problems.push(SourceProblem::Query {
                text: text.clone(),
                error,
            });
            QueryTemplate {
                text,
                clauses: Vec::new(),
            }
        });
        let one_eq = matches!(&query.clauses[..], [c] if c.op == QueryOp::Eq);
        if self.join == Some(true) && !one_eq && !query.clauses.is_empty() {
            problems.push(SourceProblem::JoinNeedsEq {
                text: query.text.clone(),
            });
        }
        let join = self.join.unwrap_or(true) && one_eq;
        SourceKind::FanOut { query, track, join }
    }

    /// A direct table: one row per slot.
    fn into_direct(
        self,
        problems: &mut Vec<SourceProblem>,
        track_items: &mut Vec<usize>,
    ) -> SourceKind {
        let slot_field = self
            .slot_field
            .unwrap_or_else(|| DEFAULT_SLOT_FIELD.to_owned());
        let slot_field = column(problems, "slot_field", slot_field);
        let track = track_fields(problems, track_items, self.track_fields.unwrap_or_default());
        let on_delete = match self.on_delete {
            None | Some(toml::Value::Boolean(false)) => false,
            Some(toml::Value::Boolean(true)) => true,
            Some(toml::Value::String(s)) if s == "delete_slot" || s == "true" => true,
            Some(other) => {
                problems.push(SourceProblem::OnDelete {
                    value: other.to_string(),
                });
                false
            }
        };
        SourceKind::Direct {
            slot_field,
            track,
            sets_alive: self.sets_alive.unwrap_or(false),
            on_delete,
        }
    }
}

/// A source built from its file entry, with what was wrong in it.
pub(super) struct Converted {
    /// The source, without the parts that were malformed.
    pub source: Source,
    /// For each of `source`'s track fields, its position in the file's `track_fields`.
    pub track_items: Vec<usize>,
    /// Problems found while building it.
    pub problems: Vec<Problem>,
}

/// Checks that a column key holds a plain column name; returns the value either way.
fn column(problems: &mut Vec<SourceProblem>, key: &'static str, value: String) -> String {
    if !is_identifier(&value) {
        problems.push(SourceProblem::BadColumn {
            key,
            value: value.clone(),
        });
    }
    value
}

fn track_fields(
    problems: &mut Vec<SourceProblem>,
    item_of: &mut Vec<usize>,
    items: Vec<String>,
) -> Vec<TrackField> {
    let mut track: Vec<TrackField> = Vec::with_capacity(items.len());
    for (item, text) in items.into_iter().enumerate() {
        match TrackField::parse(&text) {
            Ok(field) => {
                if let Some(pos) = track.iter().position(|t| t.target == field.target) {
                    problems.push(SourceProblem::DuplicateTarget {
                        item,
                        text,
                        target: field.target,
                        first: item_of[pos],
                    });
                } else {
                    track.push(field);
                    item_of.push(item);
                }
            }
            Err(error) => problems.push(SourceProblem::TrackField { item, text, error }),
        }
    }
    track
}

/// Checks a source against the index fields; `index` is its position in the file and
/// `track_items[i]` the file position of its i-th track field (when some were left out).
pub(super) fn check_source(
    index: usize,
    source: &Source,
    track_items: Option<&[usize]>,
    schema: &Schema,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut push = |problem| {
        problems.push(Problem::Source {
            index,
            table: source.table.clone(),
            problem,
        });
    };
    if source.table.trim().is_empty() {
        push(SourceProblem::MissingTable);
    }
    for (i, field) in source.kind.track().iter().enumerate() {
        let item = track_items.and_then(|t| t.get(i).copied()).unwrap_or(i);
        let text = if field.expr == format!("{{{}}}", field.target) {
            field.target.clone()
        } else {
            format!("{} as {}", field.expr, field.target)
        };
        let found = schema.field(&field.target);
        let target = field.target.clone();
        let multi_target = found.sort.is_none()
            && found.filter.map(|f| schema.filters[f].kind) == Some(FilterKind::Multi);
        let link = source.kind.join_link();
        let multi_link = link
            .and_then(|l| schema.filter(l))
            .is_some_and(|f| schema.filters[f].kind == FilterKind::Multi);
        if found.is_unknown() {
            push(SourceProblem::UnknownTarget { item, text, target });
        } else if multi_target && link.is_none() {
            push(SourceProblem::MultiTarget { item, text, target });
        } else if multi_link && !multi_target {
            push(SourceProblem::JoinSingleOnMulti {
                item,
                text,
                target,
                link: link.unwrap_or_default().to_owned(),
            });
        } else if link == Some(target.as_str()) {
            push(SourceProblem::JoinTargetIsLink { item, text, target });
        }
    }
    match &source.kind {
        SourceKind::Join { field, .. } => match schema.filter(field) {
            None => push(SourceProblem::JoinFieldUnknown {
                field: field.clone(),
            }),
            Some(f) => match schema.filters[f].kind {
                FilterKind::Multi => {}
                FilterKind::Single => push(SourceProblem::JoinFieldNotMulti {
                    field: field.clone(),
                    kind: "single",
                }),
                FilterKind::Bool => push(SourceProblem::JoinFieldNotMulti {
                    field: field.clone(),
                    kind: "bool",
                }),
            },
        },
        SourceKind::FanOut { query, .. } => {
            for clause in &query.clauses {
                if schema.filter(&clause.field).is_none() {
                    push(SourceProblem::QueryFieldUnknown {
                        text: query.text.clone(),
                        field: clause.field.clone(),
                    });
                }
            }
        }
        SourceKind::Direct { .. } => {}
    }
    problems
}

/// The joins the sources declare: one per fan-out source kept as a join, in source order.
/// The multi-value fields the join sources feed, each once.
pub(super) fn join_table_fields(sources: &[Source]) -> Vec<Arc<str>> {
    let mut out: Vec<Arc<str>> = Vec::new();
    for s in sources {
        if let SourceKind::Join { field, .. } = &s.kind
            && !out.iter().any(|f| **f == **field)
        {
            out.push(Arc::from(field.as_str()));
        }
    }
    out
}

pub(super) fn joins(sources: &[Source]) -> Vec<Join> {
    sources
        .iter()
        .filter_map(|s| {
            let link = s.kind.join_link()?;
            Some(Join {
                link: Arc::from(link),
                targets: s
                    .kind
                    .track()
                    .iter()
                    .map(|t| Arc::from(t.target.as_str()))
                    .collect(),
            })
        })
        .collect()
}

/// Problems between sources that only joins have: a joined field that another source writes
/// too, and joins whose targets feed their own links in a circle.
pub(super) fn join_problems(sources: &[Source], schema: &Schema) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let Some(link) = s.kind.join_link() else {
            continue;
        };
        for t in s.kind.track() {
            for (j, other) in sources.iter().enumerate() {
                if j != i && other.kind.writes(&t.target) {
                    problems.push(Problem::Source {
                        index: i,
                        table: s.table.clone(),
                        problem: SourceProblem::JoinTargetShared {
                            target: t.target.clone(),
                            link: link.to_owned(),
                            other: j,
                            other_table: other.table.clone(),
                        },
                    });
                }
            }
        }
    }
    let with_joins = Schema {
        joins: joins(sources),
        ..schema.clone()
    };
    if let Err(link) = with_joins.join_order()
        && let Some((i, s)) = sources
            .iter()
            .enumerate()
            .find(|(_, s)| s.kind.join_link() == Some(link.as_str()))
    {
        problems.push(Problem::Source {
            index: i,
            table: s.table.clone(),
            problem: SourceProblem::JoinCycle { link },
        });
    }
    problems
}

/// What identifies a source: a second source with the same identity is a duplicate.
///
/// Direct tables are identified by table (declare each once, with all its track fields); join
/// tables by table and field (one table may feed several multi-value fields); fan-out tables by
/// table and query (one parent may fan out to several queries).
pub(super) fn identity(source: &Source) -> (String, &'static str, String) {
    let (what, detail) = match &source.kind {
        SourceKind::Direct { .. } => ("a direct source for the same table", String::new()),
        SourceKind::Join { field, .. } => {
            ("a join source for the same table and field", field.clone())
        }
        SourceKind::FanOut { query, .. } => (
            "a fan-out source for the same table and query",
            query.text.split_whitespace().collect::<Vec<_>>().join(" "),
        ),
    };
    (source.table.clone(), what, detail)
}
