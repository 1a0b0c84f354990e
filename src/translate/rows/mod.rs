//! Row changes → ops, for the three source kinds, exactly as the generated triggers would emit
//! them (DESIGN §2) — except that join-table UPDATEs are handled (old row out, new row in).
//!
//! Expressions are parsed once when the [`Translator`] is built and bound to a table's columns
//! when its Relation message arrives (again after every schema change). Values are parsed from
//! their text form (pgoutput, text COPY) or binary form (binary COPY) only for the columns some
//! expression, slot or value reads. Rows come in as a [`Tuple`] and ops go out to an [`OpSink`].
//!
//! Old values: with `REPLICA IDENTITY FULL` an UPDATE carries the old row and a field produces
//! `remove(old)` + `set(new)` only when the two are distinct. Without it, an UPDATE produces
//! `set(new)` for every tracked field it can compute — the index knows the slot's current value
//! and moves it. A column that arrives as "unchanged TOAST" (`u`) makes every field that reads
//! it produce nothing: never a null.
//!
//! Bad data never stops the stream: a slot id that is NULL or not an integer, an expression that
//! fails (integer overflow, division by zero), a value that does not parse — each is counted in
//! [`TranslateStats`], logged with table, id and field, and skipped.
//!
//! TRUNCATE is translated as "delete every row of the table", expressed without the rows, as one
//! entity (id 0) of table-wide [`Op::Truncate`]s (the options RESTART IDENTITY and CASCADE change
//! nothing: Postgres lists every truncated table itself):
//! * a direct source with `on_delete` → `truncate` without a field: every slot is deleted (its own
//!   values; the join tables' multi-value values stay, as their rows do, unless those tables are
//!   truncated too — then also the join sources' `truncate`s below);
//! * a join source → `truncate` of its field: every slot loses every value of it. When another
//!   join table that is not truncated with it also feeds that field, clearing would remove that
//!   table's values too: nothing is emitted, the case is counted
//!   ([`TranslateStats::truncates_not_applied`]) and logged naming both tables (the index keeps
//!   the truncated rows' values until a re-bootstrap);
//! * a fan-out source kept as a join → `truncate` of each of its fields: every parent row goes,
//!   and every slot joined to one holds NULL (with a whole-index `truncate` when the statement
//!   also truncates a direct source);
//! * a direct source without `on_delete`, a fan-out source not kept as a join → nothing (a
//!   TRUNCATE has no rows to build their queries from).
//!
//! Fan-out sources: INSERT → `queryOpSet(query, [set every field])`; UPDATE → `queryOpSet(query,
//! ops)` with the changed fields as above, except that a joined row whose query columns changed
//! gives `queryOpSet(old query, [set every field NULL])` then `queryOpSet(new query, [set every
//! field])`; DELETE → `queryOpSet(old query, [set every field NULL])` (the index treats a parent
//! whose values are all NULL as gone).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::{Config, QueryOp, QueryTemplate, SourceKind, TrackField};
use crate::decode::{Message, Oid, OldTuple, Relation, RelationCache, RelationChange};
use crate::hash::KeyHash;
use crate::ops::Op;
use crate::schema::Field;
use crate::status::Counter;
use crate::translate::expr::{BoundExpr, Expr, ExprError};
use crate::translate::value::SqlValue;

mod bind;
mod change;
mod sink;

#[cfg(test)]
mod tests;

use bind::Binder;
use change::{delete, insert, parse_row, update};
pub use sink::{DatumRef, FieldOp, OpSink, Tuple};

/// Why translation cannot go on (configuration or schema problems, never bad row data).
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// An expression in the config does not parse.
    #[error("sources[{source_index}] (table {table:?}): {what} {expr:?} does not parse: {error}")]
    Parse {
        /// Position of the source in the config.
        source_index: usize,
        /// The source's table.
        table: String,
        /// "track field" or "filter".
        what: &'static str,
        /// The expression text.
        expr: String,
        /// Where and why.
        #[source]
        error: ExprError,
    },
    /// An expression does not fit the table's columns (unknown column, type mismatch).
    #[error("table {table:?}: {what} {expr:?}: {error}")]
    Bind {
        /// The table (qualified).
        table: String,
        /// What the expression is for.
        what: String,
        /// The expression text.
        expr: String,
        /// Why.
        #[source]
        error: ExprError,
    },
    /// A date or time expression feeds a sort field, which holds unsigned integers: every
    /// value would be skipped.
    #[error(
        "table {table:?}: sort field {target:?} holds unsigned integers, but {expr:?} is {ty}: \
         write \"extract(epoch from <expression>)::bigint as {target}\""
    )]
    SortFieldType {
        /// The table (qualified).
        table: String,
        /// The sort field.
        target: String,
        /// The expression text.
        expr: String,
        /// The expression's type.
        ty: String,
    },
    /// A column the config reads is missing from the table.
    #[error("table {table:?} has no column {column:?} (needed as {role})")]
    MissingColumn {
        /// The table (qualified).
        table: String,
        /// The column.
        column: String,
        /// `slot_field`, `value_field` or a query template.
        role: &'static str,
    },
    /// A tracked column was dropped or changed type while streaming.
    #[error(
        "{0}; the index can no longer be kept in sync: fix the config or the table, then re-bootstrap"
    )]
    TrackedColumnChanged(#[from] crate::decode::TrackedColumnChanged),
    /// A row change arrived for a relation the stream never described.
    #[error(transparent)]
    Relation(#[from] crate::decode::RelationError),
    /// A source table was renamed (or moved to another schema): its changes would no longer
    /// match the config.
    #[error(
        "source table {from:?} was renamed to {to:?}; its changes no longer match the config: rename it back, or change [[sources]] and re-bootstrap (pgroar bootstrap --force)"
    )]
    SourceRenamed {
        /// The name the config knows.
        from: String,
        /// The name it has now.
        to: String,
    },
    /// A source table's replica identity became NOTHING: its DELETEs no longer say which row.
    #[error(
        "source table {table:?} now has REPLICA IDENTITY NOTHING: its DELETEs and UPDATEs no longer identify rows; ALTER TABLE {table} REPLICA IDENTITY FULL (or DEFAULT) and re-bootstrap"
    )]
    IdentityNothing {
        /// The table.
        table: String,
    },
}

/// Counters of bad data skipped while translating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TranslateStats {
    /// Row changes translated.
    pub rows: u64,
    /// Rows skipped because their slot id was NULL, unknown or not an integer.
    pub bad_slot_ids: u64,
    /// Fields skipped because an expression failed on the row.
    pub eval_errors: u64,
    /// Column values that did not parse as their type.
    pub unparsable_values: u64,
    /// Source tables truncated (each table of a TRUNCATE message counts once).
    pub truncates: u64,
    /// Join-table TRUNCATEs not applied to the index because another table also feeds the
    /// field (see the module docs); the index keeps those values until a re-bootstrap.
    pub truncates_not_applied: u64,
}

impl TranslateStats {
    /// Adds `o`'s counts to these (e.g. the counters of several translators).
    pub fn add(&mut self, o: &TranslateStats) {
        self.rows += o.rows;
        self.bad_slot_ids += o.bad_slot_ids;
        self.eval_errors += o.eval_errors;
        self.unparsable_values += o.unparsable_values;
        self.truncates += o.truncates;
        self.truncates_not_applied += o.truncates_not_applied;
    }

    /// The counters as the status table names them.
    pub fn counts(&self) -> [(Counter, u64); 6] {
        [
            (Counter::RowsTranslated, self.rows),
            (Counter::BadSlotIds, self.bad_slot_ids),
            (Counter::EvalErrors, self.eval_errors),
            (Counter::UnparsableValues, self.unparsable_values),
            (Counter::Truncates, self.truncates),
            (Counter::TruncatesNotApplied, self.truncates_not_applied),
        ]
    }
}

struct Track {
    expr: Expr,
    target: Field,
    /// The target is a sort field and no filter: it holds unsigned integers only.
    sort_only: bool,
}

enum Kind {
    Direct {
        slot: String,
        track: Vec<Track>,
        sets_alive: bool,
        on_delete: bool,
    },
    Join {
        slot: String,
        field: Field,
        value: String,
        filter: Option<Expr>,
    },
    FanOut {
        query: QueryTemplate,
        track: Vec<Track>,
        join: bool,
    },
}

struct Source {
    table: String,
    kind: Kind,
}

impl Source {
    fn matches(&self, rel: &Relation) -> bool {
        match self.table.split_once('.') {
            Some((ns, name)) => *rel.namespace == *ns && *rel.name == *name,
            None => *rel.name == *self.table,
        }
    }
}

struct BoundTrack {
    expr: BoundExpr,
    target: Field,
}

enum BoundKind {
    Direct {
        slot: usize,
        track: Vec<BoundTrack>,
        sets_alive: bool,
        on_delete: bool,
    },
    Join {
        slot: usize,
        field: Field,
        value: usize,
        filter: Option<BoundExpr>,
    },
    FanOut {
        clauses: Vec<(Arc<str>, QueryOp, Vec<usize>)>,
        id: Option<usize>,
        track: Vec<BoundTrack>,
        /// The index keeps the slots joined to the row (see `SourceKind::FanOut::join`).
        join: bool,
    },
}

/// The sources of one relation, bound to its columns.
struct Bound {
    table: String,
    type_oids: Vec<Oid>,
    /// Which columns are part of the replica identity (all of them under `FULL`).
    key: Vec<bool>,
    /// Columns any source reads; only these are parsed from a row.
    needed: Vec<usize>,
    sources: Vec<BoundKind>,
    /// Position in the config of each of `sources`.
    source_ids: Vec<usize>,
}

/// Turns row changes into ops according to the config's sources.
pub struct Translator {
    sources: Vec<Source>,
    bound: HashMap<Oid, Bound, KeyHash>,
    stats: TranslateStats,
    /// Buffers of the new and old rows, reused from change to change.
    rows: (Row, Row),
}

/// A row's values: parsed where needed, unknown (unchanged TOAST or absent) where `known` is
/// false (the value is then NULL, so the values are a slice to evaluate over as they are).
/// Columns no source of the relation reads are never read: they keep what an earlier row left.
#[derive(Default)]
struct Row {
    values: Vec<SqlValue>,
    known: Vec<bool>,
}

impl Row {
    /// Readies the row for a tuple of `n` columns (a row of another width starts all unknown);
    /// the caller then sets every column it will read.
    fn start(&mut self, n: usize) {
        if self.values.len() == n {
            return;
        }
        self.values.clear();
        self.values.resize(n, SqlValue::Null);
        self.known.clear();
        self.known.resize(n, false);
    }

    /// Sets column `c` to `v`, or makes it unknown.
    #[inline]
    fn set(&mut self, c: usize, v: Option<SqlValue>) {
        self.known[c] = v.is_some();
        self.values[c] = v.unwrap_or(SqlValue::Null);
    }

    /// Makes column `c` unknown.
    fn forget(&mut self, c: usize) {
        self.values[c] = SqlValue::Null;
        self.known[c] = false;
    }

    fn known(&self, cols: &[usize]) -> bool {
        cols.iter().all(|&c| self.known.get(c) == Some(&true))
    }

    fn get(&self, c: usize) -> Option<&SqlValue> {
        (self.known.get(c) == Some(&true)).then(|| &self.values[c])
    }

    /// The row as a slice for evaluation (unknown columns as NULL; callers check `known` first).
    fn slice(&self) -> &[SqlValue] {
        &self.values
    }
}

impl Translator {
    /// Parses every expression of the config's sources, and resolves their index fields to the
    /// schema's ids once; errors name the source and position.
    pub fn new(config: &Config) -> Result<Translator, TranslateError> {
        let ids = config.index.schema.field_ids();
        let mut sources = Vec::with_capacity(config.sources.len());
        for (i, s) in config.sources.iter().enumerate() {
            let parse = |what: &'static str, text: &str| {
                Expr::parse(text).map_err(|error| TranslateError::Parse {
                    source_index: i,
                    table: s.table.clone(),
                    what,
                    expr: text.to_string(),
                    error,
                })
            };
            let track = |fields: &[TrackField]| -> Result<Vec<Track>, TranslateError> {
                fields
                    .iter()
                    .map(|t| {
                        Ok(Track {
                            expr: parse("track field", &t.expr)?,
                            target: ids.resolve(&t.target),
                            sort_only: config.index.schema.sort(&t.target).is_some()
                                && config.index.schema.filter(&t.target).is_none(),
                        })
                    })
                    .collect()
            };
            let kind = match &s.kind {
                SourceKind::Direct {
                    slot_field,
                    track: t,
                    sets_alive,
                    on_delete,
                } => Kind::Direct {
                    slot: slot_field.clone(),
                    track: track(t)?,
                    sets_alive: *sets_alive,
                    on_delete: *on_delete,
                },
                SourceKind::Join {
                    slot_field,
                    field,
                    value_field,
                    filter,
                } => Kind::Join {
                    slot: slot_field.clone(),
                    field: ids.resolve(field),
                    value: value_field.clone(),
                    filter: filter.as_deref().map(|f| parse("filter", f)).transpose()?,
                },
                SourceKind::FanOut {
                    query,
                    track: t,
                    join,
                } => Kind::FanOut {
                    query: query.clone(),
                    track: track(t)?,
                    join: *join,
                },
            };
            sources.push(Source {
                table: s.table.clone(),
                kind,
            });
        }
        Ok(Translator {
            sources,
            bound: HashMap::default(),
            stats: TranslateStats::default(),
            rows: Default::default(),
        })
    }

    /// Counters of skipped bad data.
    pub fn stats(&self) -> TranslateStats {
        self.stats
    }

    /// Whether some source reads table `rel`.
    pub fn is_source(&self, rel: &Relation) -> bool {
        self.sources.iter().any(|s| s.matches(rel))
    }

    /// The columns the sources of table `namespace.name` read, each once, in first-use order
    /// (what a dump of the table needs to copy).
    pub fn columns_read(&self, namespace: &str, name: &str) -> Vec<String> {
        let rel = Relation {
            oid: 0,
            namespace: Arc::from(namespace),
            name: Arc::from(name),
            replica_identity: crate::decode::ReplicaIdentity::Default,
            columns: Vec::new(),
        };
        let mut out: Vec<String> = Vec::new();
        for s in self.sources.iter().filter(|s| s.matches(&rel)) {
            for c in s.columns() {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// A Relation message arrived: (re)binds the sources of that table. A tracked column that
    /// was dropped or retyped is an error naming `table.column`; other column changes are fine.
    ///
    /// A source table renamed away from the config's name, or whose replica identity became
    /// NOTHING, is an error too: streaming on would silently lose its changes.
    pub fn relation(&mut self, change: &RelationChange) -> Result<(), TranslateError> {
        let rel = &change.current;
        if !self.is_source(rel) {
            if let Some(prev) = change.previous.as_deref().filter(|p| self.is_source(p)) {
                return Err(TranslateError::SourceRenamed {
                    from: prev.qualified_name(),
                    to: rel.qualified_name(),
                });
            }
            self.bound.remove(&rel.oid);
            return Ok(());
        }
        if rel.replica_identity == crate::decode::ReplicaIdentity::Nothing {
            return Err(TranslateError::IdentityNothing {
                table: rel.qualified_name(),
            });
        }
        if !change.is_new() {
            let mut read = Vec::new();
            for s in self.sources.iter().filter(|s| s.matches(rel)) {
                read.extend(s.columns());
            }
            change.check_tracked(read.iter().map(String::as_str))?;
        }
        let bound = self.bind(rel)?;
        self.bound.insert(rel.oid, bound);
        Ok(())
    }

    /// Whether every column the sources of relation `oid` read arrives in a binary form this
    /// translator decodes (`enum_types`: the server's enum type OIDs, whose binary form is their
    /// label). A relation that is not a source reads nothing: `true`.
    pub fn reads_binary(&self, oid: Oid, enum_types: &HashSet<u32>) -> bool {
        self.bound.get(&oid).is_none_or(|b| {
            b.needed.iter().all(|&c| {
                let t = b.type_oids[c];
                crate::translate::reads_binary(t, enum_types.contains(&t))
            })
        })
    }

    /// The sources of relation `rel`, bound to its columns.
    fn bind(&self, rel: &Relation) -> Result<Bound, TranslateError> {
        let table = rel.qualified_name();
        let type_oids: Vec<Oid> = rel.columns.iter().map(|c| c.type_oid).collect();
        let key = rel
            .columns
            .iter()
            .map(crate::decode::Column::is_key)
            .collect();
        let binder = Binder { rel, table: &table };
        let mut sources = Vec::new();
        let mut source_ids = Vec::new();
        let mut needed = Vec::new();
        for (i, s) in self
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.matches(rel))
        {
            source_ids.push(i);
            let bound = binder.source(&s.kind)?;
            needed.extend(bound.columns());
            sources.push(bound);
        }
        needed.sort_unstable();
        needed.dedup();
        Ok(Bound {
            table,
            type_oids,
            key,
            needed,
            sources,
            source_ids,
        })
    }

    /// Translates one message; row changes of source tables send ops to `out`.
    pub fn change<S: OpSink + ?Sized>(
        &mut self,
        msg: &Message,
        relations: &RelationCache,
        out: &mut S,
    ) -> Result<(), TranslateError> {
        let (oid, new, old) = match msg {
            Message::Insert(m) => {
                relations.resolve(msg)?;
                self.insert(m.relation, &m.new, out);
                return Ok(());
            }
            Message::Update(m) => (m.relation, Some(&m.new), m.old.as_ref()),
            Message::Delete(m) => (m.relation, None, Some(&m.old)),
            Message::Truncate(t) => {
                self.truncate(&t.relations, out);
                return Ok(());
            }
            _ => return Ok(()),
        };
        relations.resolve(msg)?;
        let Some(bound) = self.bound.get(&oid) else {
            return Ok(());
        };
        self.stats.rows += 1;
        let stats = &mut self.stats;
        let (new_buf, old_buf) = &mut self.rows;
        let old_row = old.map(|o| {
            parse_row(bound, o.tuple(), None, stats, old_buf);
            if matches!(o, OldTuple::Key(_)) {
                // A key tuple carries the non-key columns as NULLs: they are unknown, not NULL.
                let n = old_buf.values.len();
                for (c, is_key) in bound.key.iter().enumerate().take(n) {
                    if !is_key {
                        old_buf.forget(c);
                    }
                }
            }
            &*old_buf
        });
        let old_full = matches!(old, Some(OldTuple::Full(_)));
        let new_row = new.map(|n| {
            parse_row(bound, n, old_row.filter(|_| old_full), stats, new_buf);
            &*new_buf
        });
        for source in &bound.sources {
            match (new_row, old_row) {
                (Some(n), o) => update(bound, source, n, o, old_full, out, stats),
                (None, Some(o)) => delete(bound, source, o, out, stats),
                (None, None) => {}
            }
        }
        Ok(())
    }
}

impl Translator {
    /// Translates an INSERT of `tuple` into relation `oid` (whose Relation message was seen;
    /// rows of other relations are ignored): what [`Translator::change`] does with an insert
    /// message, for a row that comes without one (a line of a COPY dump).
    pub fn insert<T: Tuple + ?Sized, S: OpSink + ?Sized>(
        &mut self,
        oid: Oid,
        tuple: &T,
        out: &mut S,
    ) {
        let Some(bound) = self.bound.get(&oid) else {
            return;
        };
        self.stats.rows += 1;
        let row = &mut self.rows.0;
        parse_row(bound, tuple, None, &mut self.stats, row);
        for source in &bound.sources {
            insert(bound, source, row, out, &mut self.stats);
        }
    }

    /// A TRUNCATE of `relations` → table-wide ops (see the module docs).
    fn truncate<S: OpSink + ?Sized>(&mut self, relations: &[Oid], out: &mut S) {
        // The config positions of the truncated tables' sources.
        let mut truncated: Vec<usize> = Vec::new();
        for oid in relations {
            if let Some(b) = self.bound.get(oid) {
                self.stats.truncates += 1;
                truncated.extend(&b.source_ids);
            }
        }
        truncated.sort_unstable();
        truncated.dedup();
        let deletes_slots = |s: &Source| {
            matches!(
                s.kind,
                Kind::Direct {
                    on_delete: true,
                    ..
                }
            )
        };
        let mut ops = Vec::new();
        if let Some(&i) = truncated.iter().find(|&&i| deletes_slots(&self.sources[i])) {
            // Every slot goes. The join tables' values are not the slots' own: they go only
            // with their own tables.
            info!(table = %self.sources[i].table, "TRUNCATE of a direct source: every slot is deleted");
            ops.push(Op::Truncate { field: None });
        }
        self.truncate_join_fields(&truncated, &mut ops);
        // A joined parent table emptied: its rows go, the slots joined to them hold NULL.
        for &i in &truncated {
            if let Kind::FanOut {
                track, join: true, ..
            } = &self.sources[i].kind
            {
                info!(table = %self.sources[i].table, "TRUNCATE of a joined table: the fields it gives are NULL on every slot");
                for t in track {
                    ops.push(Op::Truncate {
                        field: Some(t.target.clone()),
                    });
                }
            }
        }
        if !ops.is_empty() {
            out.entity(0, false);
            for op in ops {
                out.op(op);
            }
        }
    }

    /// The `truncate` of each multi-value field a truncated join table feeds, unless another
    /// table feeds it too (see the module docs).
    fn truncate_join_fields(&mut self, truncated: &[usize], ops: &mut Vec<Op>) {
        let mut done: Vec<&Field> = Vec::new();
        for &i in truncated {
            let Kind::Join { field, .. } = &self.sources[i].kind else {
                continue; // a DELETE of its rows emits nothing
            };
            if done.contains(&field) {
                continue;
            }
            done.push(field);
            // Every other feeder of the field must lose all its values too: only a truncated
            // join source does (a DELETE of its row removes the value it added). The config lets
            // only join sources feed a multi-value field; other kinds would block as well.
            let mut others: Vec<&str> = self
                .sources
                .iter()
                .enumerate()
                .filter(|(j, s)| {
                    s.feeds(field)
                        && !(truncated.contains(j) && matches!(s.kind, Kind::Join { .. }))
                })
                .map(|(_, s)| s.table.as_str())
                .collect();
            others.sort_unstable();
            others.dedup();
            let table = &self.sources[i].table;
            if others.is_empty() {
                info!(%table, %field, "TRUNCATE of a join source: the field is cleared on every slot");
                ops.push(Op::Truncate {
                    field: Some(field.clone()),
                });
            } else {
                self.stats.truncates_not_applied += 1;
                let others = others.join(", ");
                warn!(
                    %table, %field, other_tables = %others,
                    "TRUNCATE of {table} not applied to the index: field {field} is also fed by \
                     {others}, whose values clearing it would remove; the index keeps the \
                     truncated rows' values until a re-bootstrap restores exactness"
                );
            }
        }
    }
}

impl Source {
    /// Whether the source writes index field `field`.
    fn feeds(&self, field: &str) -> bool {
        match &self.kind {
            Kind::Direct { track, .. } | Kind::FanOut { track, .. } => {
                track.iter().any(|t| *t.target == *field)
            }
            Kind::Join { field: f, .. } => **f == *field,
        }
    }

    /// Every column the source reads.
    fn columns(&self) -> Vec<String> {
        let track_cols = |t: &[Track]| -> Vec<String> {
            t.iter()
                .flat_map(|t| crate::config::placeholders(t.expr.text()).unwrap_or_default())
                .collect()
        };
        match &self.kind {
            Kind::Direct { slot, track, .. } => {
                let mut c = track_cols(track);
                c.push(slot.clone());
                c
            }
            Kind::Join {
                slot,
                value,
                filter,
                ..
            } => {
                let mut c = vec![slot.clone(), value.clone()];
                if let Some(f) = filter {
                    c.extend(crate::config::placeholders(f.text()).unwrap_or_default());
                }
                c
            }
            Kind::FanOut { query, track, .. } => {
                let mut c = track_cols(track);
                c.extend(
                    query
                        .clauses
                        .iter()
                        .flat_map(|cl| cl.columns.iter().cloned()),
                );
                c
            }
        }
    }
}

impl BoundKind {
    fn columns(&self) -> Vec<usize> {
        let track = |t: &[BoundTrack]| {
            t.iter()
                .flat_map(|t| t.expr.columns().to_vec())
                .collect::<Vec<_>>()
        };
        match self {
            BoundKind::Direct { slot, track: t, .. } => {
                let mut c = track(t);
                c.push(*slot);
                c
            }
            BoundKind::Join {
                slot,
                value,
                filter,
                ..
            } => {
                let mut c = vec![*slot, *value];
                if let Some(f) = filter {
                    c.extend_from_slice(f.columns());
                }
                c
            }
            BoundKind::FanOut {
                clauses,
                id,
                track: t,
                ..
            } => {
                let mut c = track(t);
                c.extend(clauses.iter().flat_map(|(_, _, cols)| cols.iter().copied()));
                c.extend(id.iter().copied());
                c
            }
        }
    }
}
