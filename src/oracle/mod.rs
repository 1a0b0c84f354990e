//! The SQL oracle: what the index must hold, computed by Postgres from the source tables, field
//! by field, for a range of slots — and the readable difference between that and an index dump.
//! `pgroar check` runs it against a live index at one LSN; the tests run it too.
//!
//! Per source kind, one query per slot range (the config's expressions run as SQL, `{col}`
//! becoming `"col"`):
//! * direct: the slot column and every tracked expression; a `sets_alive` source's rows are the
//!   live slots;
//! * join table: (slot, value) pairs whose filter holds;
//! * fan-out kept as a join: the parent table whole (key and tracked expressions), then each
//!   slot's targets as SQL's `LEFT JOIN` gives them: on a single-value link the parent's value or
//!   NULL (no parent, NULL link), on a multi-value link the union of the linked parents' non-NULL
//!   values. Joins whose targets are other joins' links are resolved in dependency order.
//!
//! Values go through the same conversions as the stream (Postgres text output → SQL value → op
//! value → the key the field files it under), so a difference is a difference in content.
//! Fields written only by a fan-out source with `join = false` have no SQL meaning (they hold what
//! the changes applied to the matches at the time) and are not compared; [`Oracle::skipped`]
//! names them.
//!
//! Memory: about 4 KiB per live slot of the range being compared (see `CHUNK_SLOTS`) plus the
//! parent rows of every join.

mod diff;
mod live;
mod sql;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::Arc;

use tokio_postgres::Client;

use crate::config::{Config, SourceKind};
use crate::index::{
    CanonicalValue, DumpKey, FieldDump, IndexState, canonical_filter, canonical_sort,
};
use crate::ops::Value;
use crate::schema::{FilterKind, Schema};

pub use diff::{Diff, FieldDiff, Ids, SortDiff, diff};
pub use live::{CHUNK_SLOTS, CheckError, CheckReport, SqlSnapshot, compare};
use sql::{DirectQuery, JoinQuery, ParentQuery};

/// Why the oracle could not compute what the index must hold.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// A query failed.
    #[error("the oracle's query on {table} failed: {sql}")]
    Sql {
        /// The source table.
        table: String,
        /// The query.
        sql: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A value in a result could not be read.
    #[error("the oracle could not read a value of {table}: {detail}")]
    Value {
        /// The source table.
        table: String,
        /// What was wrong.
        detail: String,
    },
}

/// A field the oracle does not compare, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The index field.
    pub field: String,
    /// Why.
    pub why: String,
}

/// Each join's parent rows (`None` for a join no source feeds), read once per check.
pub struct Parents(Vec<Option<BTreeMap<DumpKey, Vec<Value>>>>);

/// The queries of one config.
pub struct Oracle {
    schema: Arc<Schema>,
    direct: Vec<DirectQuery>,
    joins: Vec<JoinQuery>,
    /// Per schema join (schema order): the parent table's query.
    parents: Vec<Option<ParentQuery>>,
    skipped: Vec<Skipped>,
}

impl Oracle {
    /// The oracle of `config`'s sources.
    pub fn new(config: &Config) -> Oracle {
        let schema = config.schema();
        let mut oracle = Oracle {
            direct: Vec::new(),
            joins: Vec::new(),
            parents: vec![None; schema.joins.len()],
            skipped: Vec::new(),
            schema: schema.clone(),
        };
        for s in &config.sources {
            match &s.kind {
                SourceKind::Direct {
                    slot_field,
                    track,
                    sets_alive,
                    ..
                } => oracle
                    .direct
                    .push(DirectQuery::new(&s.table, slot_field, track, *sets_alive)),
                SourceKind::Join {
                    slot_field,
                    field,
                    value_field,
                    filter,
                } => oracle.joins.push(JoinQuery::new(
                    &s.table,
                    slot_field,
                    field,
                    value_field,
                    filter.as_deref(),
                )),
                SourceKind::FanOut { track, .. } => match s.kind.join_link() {
                    Some(link) => {
                        let j = schema.joins.iter().position(|j| &*j.link == link);
                        let key = match &s.kind {
                            SourceKind::FanOut { query, .. } => query.clauses[0].columns[0].clone(),
                            _ => unreachable!("a fan-out source"),
                        };
                        if let Some(j) = j {
                            oracle.parents[j] = Some(ParentQuery::new(&s.table, &key, track));
                        }
                    }
                    None => {
                        for t in track {
                            oracle.skipped.push(Skipped {
                                field: t.target.clone(),
                                why: format!(
                                    "written by the fan-out source on {} with join = false, \
                                     which has no SQL meaning",
                                    s.table
                                ),
                            });
                        }
                    }
                },
            }
        }
        oracle
    }

    /// The fields not compared, and why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The largest slot any direct source's table holds, by SQL on `client`.
    pub async fn max_slot(&self, client: &Client) -> Result<u32, OracleError> {
        let mut max = 0;
        for q in &self.direct {
            max = max.max(q.max_slot(client).await?);
        }
        Ok(max)
    }

    /// The index's schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// What the index must hold for the slots in `slots`, by SQL on `client` (run it inside a
    /// transaction on the snapshot to compare with). The parent rows are read whole each time;
    /// [`Oracle::parents`] + [`Oracle::expected_with`] read them once for many ranges.
    pub async fn expected(
        &self,
        client: &Client,
        slots: RangeInclusive<u32>,
    ) -> Result<IndexState, OracleError> {
        let parents = self.parents(client).await?;
        self.expected_with(client, slots, &parents).await
    }

    /// Every join's parent rows (schema order), by SQL on `client`.
    pub async fn parents(&self, client: &Client) -> Result<Parents, OracleError> {
        let mut out = Vec::with_capacity(self.parents.len());
        for (j, q) in self.parents.iter().enumerate() {
            out.push(match q {
                Some(q) => Some(
                    q.rows(client, self.kind(&self.schema.joins[j].link))
                        .await?,
                ),
                None => None,
            });
        }
        Ok(Parents(out))
    }

    /// [`Oracle::expected`] with the parent rows read before (on the same snapshot).
    pub async fn expected_with(
        &self,
        client: &Client,
        slots: RangeInclusive<u32>,
        parents: &Parents,
    ) -> Result<IndexState, OracleError> {
        let mut state = Expected::new(&self.schema);
        for q in &self.direct {
            for (slot, values) in q.rows(client, &slots).await? {
                if q.sets_alive {
                    state.alive.insert(slot);
                }
                for (target, value) in q.targets().zip(values) {
                    state.set(target, slot, &value);
                }
            }
        }
        for q in &self.joins {
            for (slot, value) in q.rows(client, &slots).await? {
                state.set(&q.field, slot, &value);
            }
        }
        let order = self.schema.join_order().unwrap_or_default();
        for j in order {
            if let Some(Some(rows)) = parents.0.get(j) {
                state.follow(&self.schema, j, rows);
            }
        }
        Ok(state.finish())
    }

    fn kind(&self, field: &str) -> FilterKind {
        self.schema
            .filter(field)
            .map_or(FilterKind::Single, |f| self.schema.filters[f].kind)
    }
}

/// The expected state as it is built: per field, per slot.
struct Expected<'s> {
    schema: &'s Schema,
    alive: BTreeSet<u32>,
    /// Per filter field: slot → its keys (`None`: NULL).
    filters: BTreeMap<String, BTreeMap<u32, BTreeSet<Option<DumpKey>>>>,
    /// Per sort field: slot → value.
    sorts: BTreeMap<String, BTreeMap<u32, u32>>,
}

impl<'s> Expected<'s> {
    fn new(schema: &'s Schema) -> Expected<'s> {
        Expected {
            schema,
            alive: BTreeSet::new(),
            filters: BTreeMap::new(),
            sorts: BTreeMap::new(),
        }
    }

    /// Files `value` for `slot` in field `name` as the index would (a value the field rejects
    /// is skipped, as the index skips it).
    fn set(&mut self, name: &str, slot: u32, value: &Value) {
        if let Some(fi) = self.schema.filter(name) {
            let kind = self.schema.filters[fi].kind;
            if let Some(key) = canonical_filter(kind, value).map(dump_key) {
                let keys = self
                    .filters
                    .entry(name.to_string())
                    .or_default()
                    .entry(slot)
                    .or_default();
                if kind != FilterKind::Multi {
                    keys.clear();
                }
                keys.insert(key);
            }
        }
        if let Some(si) = self.schema.sort(name)
            && let Some(CanonicalValue::Sort(v)) = canonical_sort(&self.schema.sorts[si], value)
        {
            self.sorts
                .entry(name.to_string())
                .or_default()
                .insert(slot, v);
        }
    }

    /// Gives every slot the targets of join `j` from `parents` (key → one value per target).
    fn follow(&mut self, schema: &Schema, j: usize, parents: &BTreeMap<DumpKey, Vec<Value>>) {
        let join = &schema.joins[j];
        let links = self.filters.get(&*join.link).cloned().unwrap_or_default();
        let multi = schema
            .filter(&join.link)
            .is_some_and(|f| schema.filters[f].kind == FilterKind::Multi);
        for (slot, keys) in links {
            if multi {
                for key in keys.iter().flatten() {
                    if let Some(row) = parents.get(key) {
                        for (t, value) in join.targets.iter().zip(row) {
                            if !value.is_null() {
                                self.set(t, slot, value);
                            }
                        }
                    }
                }
                continue;
            }
            let row = keys
                .iter()
                .next()
                .cloned()
                .flatten()
                .and_then(|k| parents.get(&k));
            for (t, target) in join.targets.iter().enumerate() {
                let value = row.map_or(Value::Null, |r| r[t].clone());
                self.set(target, slot, &value);
            }
        }
    }

    fn finish(self) -> IndexState {
        let mut out = IndexState {
            alive: self.alive.into_iter().collect(),
            ..IndexState::default()
        };
        for f in &self.schema.filters {
            let mut dump = FieldDump::default();
            if let Some(slots) = self.filters.get(&*f.name) {
                for (slot, keys) in slots {
                    for key in keys {
                        match key {
                            None => dump.null.push(*slot),
                            Some(k) => dump.values.entry(k.clone()).or_default().push(*slot),
                        }
                    }
                }
            }
            out.filters.insert(f.name.to_string(), dump);
        }
        for f in &self.schema.sorts {
            let values = self
                .sorts
                .get(&*f.name)
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| **v != 0)
                        .map(|(s, v)| (*s, *v))
                        .collect()
                })
                .unwrap_or_default();
            out.sorts.insert(f.name.to_string(), values);
        }
        out
    }
}

/// A filter key as a dump names it (`None`: NULL).
fn dump_key(c: CanonicalValue) -> Option<DumpKey> {
    match c {
        CanonicalValue::Null | CanonicalValue::Sort(_) => None,
        CanonicalValue::Int(i) => Some(DumpKey::Int(i)),
        CanonicalValue::Str(s) => Some(DumpKey::Str(s.to_string())),
    }
}
