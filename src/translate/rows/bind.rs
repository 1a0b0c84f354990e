//! Binding a relation's sources to its columns: the columns each source names, and its
//! expressions type-checked against the relation.

use std::sync::Arc;

use super::{BoundKind, BoundTrack, Kind, Track, TranslateError};
use crate::decode::Relation;
use crate::translate::expr::types::Category;
use crate::translate::expr::{BoundExpr, ColumnSlot, Expr};

/// Binds one relation's sources to its columns.
pub(super) struct Binder<'a> {
    pub rel: &'a Relation,
    /// The relation's qualified name, for errors.
    pub table: &'a str,
}

impl Binder<'_> {
    /// A column by name, if the relation has it.
    fn resolve(&self, name: &str) -> Option<ColumnSlot> {
        self.rel.column_index(name).map(|index| ColumnSlot {
            index,
            type_oid: self.rel.columns[index].type_oid,
        })
    }

    /// The position of column `name`, which the source needs as its `role`.
    fn column(&self, name: &str, role: &'static str) -> Result<usize, TranslateError> {
        self.rel
            .column_index(name)
            .ok_or_else(|| TranslateError::MissingColumn {
                table: self.table.to_string(),
                column: name.to_string(),
                role,
            })
    }

    /// An expression bound to the relation's columns; `what` names it in errors.
    fn expr(&self, expr: &Expr, what: String) -> Result<BoundExpr, TranslateError> {
        expr.bind(&|name| self.resolve(name))
            .map_err(|error| TranslateError::Bind {
                table: self.table.to_string(),
                what,
                expr: expr.text().to_string(),
                error,
            })
    }

    fn track(&self, track: &[Track]) -> Result<Vec<BoundTrack>, TranslateError> {
        track
            .iter()
            .map(|t| {
                let expr = self.expr(&t.expr, format!("track field for {}", t.target))?;
                let ty = expr.result_type();
                if t.sort_only && ty.category() == Category::DateTime {
                    return Err(TranslateError::SortFieldType {
                        table: self.table.to_string(),
                        target: t.target.to_string(),
                        expr: t.expr.text().to_string(),
                        ty: ty.name(),
                    });
                }
                Ok(BoundTrack {
                    expr,
                    target: t.target.clone(),
                })
            })
            .collect()
    }

    /// One source, bound.
    pub fn source(&self, kind: &Kind) -> Result<BoundKind, TranslateError> {
        Ok(match kind {
            Kind::Direct {
                slot,
                track,
                sets_alive,
                on_delete,
            } => BoundKind::Direct {
                slot: self.column(slot, "slot_field")?,
                track: self.track(track)?,
                sets_alive: *sets_alive,
                on_delete: *on_delete,
            },
            Kind::Join {
                slot,
                field,
                value,
                filter,
            } => BoundKind::Join {
                slot: self.column(slot, "slot_field")?,
                field: field.clone(),
                value: self.column(value, "value_field")?,
                filter: filter
                    .as_ref()
                    .map(|f| self.expr(f, "filter".into()))
                    .transpose()?,
            },
            Kind::FanOut { query, track, join } => {
                let mut clauses = Vec::new();
                for c in &query.clauses {
                    let cols = c
                        .columns
                        .iter()
                        .map(|n| self.column(n, "query template"))
                        .collect::<Result<_, _>>()?;
                    clauses.push((Arc::from(c.field.as_str()), c.op, cols));
                }
                BoundKind::FanOut {
                    clauses,
                    id: self.rel.column_index("id"),
                    track: self.track(track)?,
                    join: *join,
                }
            }
        })
    }
}
