//! The relation cache: the latest Relation message per OID, and what each new one changed.
//!
//! pgoutput describes a relation before its first change and again whenever Postgres
//! invalidated its description (DDL, TRUNCATE, cache flushes), so a Relation message for a
//! known OID may arrive at any time and replaces the entry. [`RelationCache::insert`] reports
//! the difference to the previous entry. Columns are matched by name: pgoutput carries no
//! column numbers, so a renamed column shows as one dropped and one added.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::message::{Column, Message, Oid, Relation, ReplicaIdentity, TupleData};
use crate::hash::KeyHash;

/// The latest [`Relation`] of every relation OID seen in the stream.
#[derive(Clone, Debug, Default)]
pub struct RelationCache {
    relations: HashMap<Oid, Arc<Relation>, KeyHash>,
}

impl RelationCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `relation`, replacing the entry for its OID, and reports what changed.
    pub fn insert(&mut self, relation: Relation) -> RelationChange {
        let current = Arc::new(relation);
        let previous = self.relations.insert(current.oid, Arc::clone(&current));
        RelationChange::between(previous, current)
    }

    /// Every relation held, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Relation>> {
        self.relations.values()
    }

    /// The relation with this OID, if a Relation message described it.
    pub fn get(&self, oid: Oid) -> Option<&Arc<Relation>> {
        self.relations.get(&oid)
    }

    /// The relation a row change (Insert, Update, Delete) applies to, after checking that every
    /// tuple it carries has one value per column. `Ok(None)` for other messages.
    pub fn resolve(&self, msg: &Message) -> Result<Option<&Arc<Relation>>, RelationError> {
        let (oid, tuples): (Oid, [Option<&TupleData>; 2]) = match msg {
            Message::Insert(m) => (m.relation, [Some(&m.new), None]),
            Message::Update(m) => (
                m.relation,
                [
                    m.old.as_ref().map(super::message::OldTuple::tuple),
                    Some(&m.new),
                ],
            ),
            Message::Delete(m) => (m.relation, [Some(m.old.tuple()), None]),
            _ => return Ok(None),
        };
        let relation = self.get(oid).ok_or(RelationError::Unknown {
            oid,
            message: msg.kind(),
        })?;
        for tuple in tuples.into_iter().flatten() {
            if tuple.columns.len() != relation.columns.len() {
                return Err(RelationError::ColumnCountMismatch {
                    table: relation.qualified_name(),
                    message: msg.kind(),
                    expected: relation.columns.len(),
                    got: tuple.columns.len(),
                });
            }
        }
        Ok(Some(relation))
    }

    /// How many relations are cached.
    pub fn len(&self) -> usize {
        self.relations.len()
    }

    /// Whether no relation is cached.
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }

    /// Forgets every relation (a new replication session describes them again).
    pub fn clear(&mut self) {
        self.relations.clear();
    }
}

/// A row change the cache cannot place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationError {
    /// No Relation message described the change's relation.
    #[error("{message} for relation OID {oid}, which no Relation message has described")]
    Unknown {
        /// The change's relation OID.
        oid: Oid,
        /// The message kind.
        message: &'static str,
    },
    /// A tuple's column count differs from its Relation message's.
    #[error("{message} tuple of {table} has {got} columns; its Relation message lists {expected}")]
    ColumnCountMismatch {
        /// `namespace.name`.
        table: String,
        /// The message kind.
        message: &'static str,
        /// Columns in the Relation message.
        expected: usize,
        /// Values in the tuple.
        got: usize,
    },
}

/// A column whose type OID or type modifier changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retyped {
    /// The column as it was.
    pub before: Column,
    /// The column as it is now.
    pub after: Column,
}

/// What a Relation message changed compared with the previous one for the same OID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationChange {
    /// The relation as it is now (also in the cache).
    pub current: Arc<Relation>,
    /// The entry it replaced; `None` when the OID was new.
    pub previous: Option<Arc<Relation>>,
    /// The previous `(namespace, name)` when either changed.
    pub renamed_from: Option<(Arc<str>, Arc<str>)>,
    /// The previous replica identity when it changed.
    pub replica_identity_from: Option<ReplicaIdentity>,
    /// Columns whose name the previous entry did not have, in column order.
    pub added: Vec<Column>,
    /// Columns of the previous entry whose name is gone, in their old order.
    pub dropped: Vec<Column>,
    /// Columns whose type OID or type modifier changed.
    pub retyped: Vec<Retyped>,
    /// Columns (as they are now) that joined or left the replica identity key.
    pub key_changed: Vec<Column>,
}

/// How one column changed, see [`RelationChange::column_change`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnChange<'a> {
    /// The column is gone (dropped, or renamed).
    Dropped(&'a Column),
    /// The column's type changed.
    Retyped(&'a Retyped),
}

impl RelationChange {
    fn between(previous: Option<Arc<Relation>>, current: Arc<Relation>) -> RelationChange {
        let mut change = RelationChange {
            current,
            previous: None,
            renamed_from: None,
            replica_identity_from: None,
            added: Vec::new(),
            dropped: Vec::new(),
            retyped: Vec::new(),
            key_changed: Vec::new(),
        };
        let Some(prev) = previous else {
            return change;
        };
        let cur = &change.current;
        if prev.namespace != cur.namespace || prev.name != cur.name {
            change.renamed_from = Some((Arc::clone(&prev.namespace), Arc::clone(&prev.name)));
        }
        if prev.replica_identity != cur.replica_identity {
            change.replica_identity_from = Some(prev.replica_identity);
        }
        let before: HashMap<&str, &Column> = prev.columns.iter().map(|c| (&*c.name, c)).collect();
        let after: HashMap<&str, &Column> = cur.columns.iter().map(|c| (&*c.name, c)).collect();
        for col in &cur.columns {
            match before.get(&*col.name) {
                None => change.added.push(col.clone()),
                Some(old) => {
                    if (old.type_oid, old.type_modifier) != (col.type_oid, col.type_modifier) {
                        change.retyped.push(Retyped {
                            before: (*old).clone(),
                            after: col.clone(),
                        });
                    }
                    if old.is_key() != col.is_key() {
                        change.key_changed.push(col.clone());
                    }
                }
            }
        }
        change.dropped = prev
            .columns
            .iter()
            .filter(|c| !after.contains_key(&*c.name))
            .cloned()
            .collect();
        change.previous = Some(prev);
        change
    }

    /// Whether the OID had no entry before.
    pub fn is_new(&self) -> bool {
        self.previous.is_none()
    }

    /// Whether the message repeated the previous entry exactly (nothing to react to).
    pub fn is_unchanged(&self) -> bool {
        self.previous.as_deref() == Some(&*self.current)
    }

    /// How the column called `name` (in the previous entry) changed, when it was dropped or
    /// retyped; `None` when it survived with its type, or was not there before.
    pub fn column_change(&self, name: &str) -> Option<ColumnChange<'_>> {
        if let Some(c) = self.dropped.iter().find(|c| &*c.name == name) {
            return Some(ColumnChange::Dropped(c));
        }
        self.retyped
            .iter()
            .find(|r| &*r.before.name == name)
            .map(ColumnChange::Retyped)
    }

    /// Errors on the first of `tracked` columns that was dropped or retyped; changes to other
    /// columns are not the caller's concern.
    pub fn check_tracked<'a>(
        &self,
        tracked: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), TrackedColumnChanged> {
        let table = || match &self.previous {
            Some(prev) => prev.qualified_name(),
            None => self.current.qualified_name(),
        };
        for name in tracked {
            match self.column_change(name) {
                None => {}
                Some(ColumnChange::Dropped(c)) => {
                    return Err(TrackedColumnChanged::Dropped {
                        table: table(),
                        column: c.name.to_string(),
                    });
                }
                Some(ColumnChange::Retyped(r)) => {
                    return Err(TrackedColumnChanged::Retyped {
                        table: table(),
                        column: r.before.name.to_string(),
                        before: (r.before.type_oid, r.before.type_modifier),
                        after: (r.after.type_oid, r.after.type_modifier),
                    });
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for RelationChange {
    /// One line for logs: `public.t (OID 16384): added [x]; dropped [y]; …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (OID {})",
            self.current.qualified_name(),
            self.current.oid
        )?;
        if self.is_new() {
            return f.write_str(": new");
        }
        if self.is_unchanged() {
            return f.write_str(": unchanged");
        }
        let names = |cols: &[Column]| {
            cols.iter()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some((ns, name)) = &self.renamed_from {
            write!(f, "; renamed from {ns}.{name}")?;
        }
        if let Some(from) = self.replica_identity_from {
            write!(
                f,
                "; replica identity {from} -> {}",
                self.current.replica_identity
            )?;
        }
        if !self.added.is_empty() {
            write!(f, "; added [{}]", names(&self.added))?;
        }
        if !self.dropped.is_empty() {
            write!(f, "; dropped [{}]", names(&self.dropped))?;
        }
        for r in &self.retyped {
            write!(
                f,
                "; {} retyped from type {} ({}) to {} ({})",
                r.after.name,
                r.before.type_oid,
                r.before.type_modifier,
                r.after.type_oid,
                r.after.type_modifier
            )?;
        }
        if !self.key_changed.is_empty() {
            write!(f, "; key membership changed [{}]", names(&self.key_changed))?;
        }
        let described = self.renamed_from.is_some()
            || self.replica_identity_from.is_some()
            || !self.added.is_empty()
            || !self.dropped.is_empty()
            || !self.retyped.is_empty()
            || !self.key_changed.is_empty();
        if !described {
            f.write_str(": column order or flags changed")?;
        }
        Ok(())
    }
}

/// A tracked column that a Relation message dropped or retyped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackedColumnChanged {
    /// The column is gone (dropped or renamed).
    #[error("tracked column {table}.{column} was dropped or renamed")]
    Dropped {
        /// `namespace.name` of the table.
        table: String,
        /// The column.
        column: String,
    },
    /// The column's type changed.
    #[error(
        "tracked column {table}.{column} changed type from OID {} (typmod {}) to OID {} (typmod {})",
        before.0, before.1, after.0, after.1
    )]
    Retyped {
        /// `namespace.name` of the table.
        table: String,
        /// The column.
        column: String,
        /// Type OID and modifier before.
        before: (Oid, i32),
        /// Type OID and modifier now.
        after: (Oid, i32),
    },
}
