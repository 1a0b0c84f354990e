//! One row change → ops, per source kind (the rules are in the parent module's docs).

use std::sync::Arc;

use tracing::warn;

use crate::config::QueryOp;
use crate::filter::{CmpOp, Filter, Literal};
use crate::ops::{Op, OpQuery, Value};
use crate::translate::expr::BoundExpr;
use crate::translate::value::{SqlValue, decode_binary, parse_binary, parse_text, to_op_value};

use super::sink::{DatumRef, FieldOp, OpSink, Tuple};
use super::{Bound, BoundKind, BoundTrack, Row, TranslateStats};

/// Parses the needed columns of a tuple into `row` (its buffers reused; every needed column is
/// set, to its value or to unknown). An unchanged-TOAST
/// column takes the old row's value when the old row is complete (`REPLICA IDENTITY FULL`),
/// else stays unknown.
pub(super) fn parse_row<T: Tuple + ?Sized>(
    bound: &Bound,
    tuple: &T,
    full_old: Option<&Row>,
    stats: &mut TranslateStats,
    row: &mut Row,
) {
    row.start(bound.type_oids.len());
    for &c in &bound.needed {
        let v = match tuple.datum(c) {
            Some(DatumRef::Null) => Some(SqlValue::Null),
            Some(DatumRef::Text(bytes)) => match std::str::from_utf8(bytes)
                .ok()
                .map(|t| parse_text(bound.type_oids[c], t))
            {
                Some(Ok(v)) => Some(v),
                _ => {
                    stats.unparsable_values += 1;
                    warn!(table = %bound.table, column = c, "a column value does not parse as its type; skipped");
                    None
                }
            },
            Some(DatumRef::Binary(bytes)) => match decode_binary(bound.type_oids[c], bytes) {
                Some(v) => Some(v),
                None => {
                    stats.unparsable_values += 1;
                    if let Err(e) = parse_binary(bound.type_oids[c], bytes) {
                        warn!(table = %bound.table, column = c, error = %e, "a binary column value does not decode as its type; skipped");
                    }
                    None
                }
            },
            Some(DatumRef::Unchanged) => full_old.and_then(|o| o.get(c).cloned()),
            None => None,
        };
        row.set(c, v);
    }
}

fn slot_of(bound: &Bound, row: &Row, col: usize, stats: &mut TranslateStats) -> Option<i64> {
    let id = match row.get(col) {
        Some(SqlValue::Int2(v)) => Some(i64::from(*v)),
        Some(SqlValue::Int4(v)) => Some(i64::from(*v)),
        Some(SqlValue::Int8(v)) => Some(*v),
        Some(other) => match to_op_value(other) {
            Value::Int(i) => Some(i),
            _ => None,
        },
        None => None,
    };
    if id.is_none() {
        stats.bad_slot_ids += 1;
        warn!(table = %bound.table, "a row's slot id is NULL, unknown or not an integer; row skipped");
    }
    id
}

/// Evaluates a tracked field; `None` when a column it reads is unknown or evaluation fails.
fn eval_sql(
    bound: &Bound,
    t: &BoundTrack,
    row: &Row,
    slice: &[SqlValue],
    id: i64,
    stats: &mut TranslateStats,
) -> Option<SqlValue> {
    if !row.known(t.expr.columns()) {
        return None;
    }
    match t.expr.eval(slice) {
        Ok(v) => Some(v),
        Err(e) => {
            stats.eval_errors += 1;
            warn!(table = %bound.table, id, field = %t.target, error = %e, "expression failed on a row; field skipped");
            None
        }
    }
}

/// [`eval_sql`] as the op value a trigger's `to_jsonb` would emit.
fn eval(
    bound: &Bound,
    t: &BoundTrack,
    row: &Row,
    slice: &[SqlValue],
    id: i64,
    stats: &mut TranslateStats,
) -> Option<Value> {
    eval_sql(bound, t, row, slice, id, stats).map(|v| to_op_value(&v))
}

/// The ops an UPDATE produces for one tracked field: with the old row, `remove(old)` + `set(new)`
/// only when the two are `IS DISTINCT FROM` each other (as the triggers test); without it, `set(new)`.
#[allow(clippy::too_many_arguments)]
fn update_field(
    bound: &Bound,
    t: &BoundTrack,
    new: &Row,
    new_slice: &[SqlValue],
    old: Option<(&Row, &[SqlValue])>,
    id: i64,
    ops: &mut Vec<Op>,
    stats: &mut TranslateStats,
) {
    let Some(new_v) = eval_sql(bound, t, new, new_slice, id, stats) else {
        return;
    };
    let old_v = old.and_then(|(o, os)| eval_sql(bound, t, o, os, id, stats));
    match old_v {
        Some(old_v) if !old_v.is_distinct_from(&new_v) => {}
        Some(old_v) => {
            ops.push(Op::Remove {
                field: t.target.clone(),
                value: to_op_value(&old_v),
            });
            ops.push(Op::Set {
                field: t.target.clone(),
                value: to_op_value(&new_v),
            });
        }
        None => ops.push(Op::Set {
            field: t.target.clone(),
            value: to_op_value(&new_v),
        }),
    }
}

/// A filter's outcome: `Some(true/false)`, or `None` when it cannot be evaluated on this row.
fn filter_holds(
    bound: &Bound,
    f: &BoundExpr,
    row: &Row,
    slice: &[SqlValue],
    stats: &mut TranslateStats,
) -> Option<bool> {
    if !row.known(f.columns()) {
        return None;
    }
    match f.eval(slice) {
        Ok(SqlValue::Bool(b)) => Some(b),
        Ok(_) => Some(false),
        Err(e) => {
            stats.eval_errors += 1;
            warn!(table = %bound.table, error = %e, "join filter failed on a row; treated as false");
            Some(false)
        }
    }
}

fn join_value(row: &Row, col: usize) -> Option<Value> {
    row.get(col).map(to_op_value)
}

/// `add` (or `remove`) of a join row's value on its slot, without looking at the filter.
fn join_op<S: OpSink + ?Sized>(
    bound: &Bound,
    source: &BoundKind,
    row: &Row,
    add: bool,
    out: &mut S,
    stats: &mut TranslateStats,
) {
    let BoundKind::Join {
        slot, field, value, ..
    } = source
    else {
        return;
    };
    let (Some(id), Some(v)) = (slot_of(bound, row, *slot, stats), join_value(row, *value)) else {
        return;
    };
    out.entity(id, false);
    out.field_op(if add { FieldOp::Add } else { FieldOp::Remove }, field, v);
}

/// The fan-out query filled from a row; `None` when a value is NULL or unknown (a no-op). The
/// text is the wire form the triggers write; the filter is built alongside it (what parsing the
/// text gives), so nothing downstream parses it again.
fn fan_query(clauses: &[(Arc<str>, QueryOp, Vec<usize>)], row: &Row) -> Option<OpQuery> {
    let mut text = String::new();
    let mut filter: Option<Filter> = None;
    for (i, (field, op, cols)) in clauses.iter().enumerate() {
        if i > 0 {
            text.push_str(" AND ");
        }
        let mut vals = Vec::with_capacity(cols.len());
        let mut lits = Vec::with_capacity(cols.len());
        for &c in cols {
            let v = row.get(c)?;
            if v.is_null() {
                return None;
            }
            let (word, lit) = query_literal(&to_op_value(v));
            vals.push(word);
            lits.push(lit);
        }
        let clause = match op {
            QueryOp::Eq => {
                text.push_str(&format!("{field} eq {}", vals.first()?));
                Filter::Cmp {
                    field: field.to_string(),
                    op: CmpOp::Eq,
                    value: lits.into_iter().next()?,
                }
            }
            QueryOp::In => {
                text.push_str(&format!("{field} in [{}]", vals.join(", ")));
                Filter::In {
                    field: field.to_string(),
                    values: lits,
                }
            }
        };
        filter = Some(match filter {
            None => clause,
            Some(left) => Filter::And(Box::new(left), Box::new(clause)),
        });
    }
    Some(OpQuery::from_parts(Arc::from(text), filter?))
}

/// A value as the query text spells it, and the literal parsing that text gives.
fn query_literal(v: &Value) -> (String, Literal) {
    match v {
        Value::Int(i) => (i.to_string(), Literal::int(*i)),
        Value::Bool(b) => (b.to_string(), Literal::Bool(*b)),
        Value::Float(x) => {
            let word = x.to_string();
            let lit = Literal::classify(&word);
            (word, lit)
        }
        Value::Null => ("null".into(), Literal::Null),
        Value::Str(s) => (
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
            Literal::Text(s.to_string()),
        ),
    }
}

pub(super) fn insert<S: OpSink + ?Sized>(
    bound: &Bound,
    source: &BoundKind,
    row: &Row,
    out: &mut S,
    stats: &mut TranslateStats,
) {
    let slice = row.slice();
    match source {
        BoundKind::Direct {
            slot,
            track,
            sets_alive,
            ..
        } => {
            let Some(id) = slot_of(bound, row, *slot, stats) else {
                return;
            };
            out.entity(id, *sets_alive);
            for t in track {
                if let Some(v) = eval(bound, t, row, slice, id, stats) {
                    out.field_op(FieldOp::Set, &t.target, v);
                }
            }
        }
        BoundKind::Join { filter, .. } => {
            if let Some(f) = filter
                && filter_holds(bound, f, row, slice, stats) != Some(true)
            {
                return;
            }
            join_op(bound, source, row, true, out, stats);
        }
        BoundKind::FanOut {
            clauses, id, track, ..
        } => {
            let source_id = fan_source_id(*id, row);
            out.entity(source_id, false);
            out.op(Op::QueryOpSet {
                query: fan_query(clauses, row),
                ops: fan_sets(bound, track, row, source_id, stats),
            });
        }
    }
}

/// A fan-out row's values: `set` of every tracked field (what an INSERT gives its slots).
fn fan_sets(
    bound: &Bound,
    track: &[BoundTrack],
    row: &Row,
    source_id: i64,
    stats: &mut TranslateStats,
) -> Vec<Op> {
    track
        .iter()
        .filter_map(|t| {
            Some(Op::Set {
                field: t.target.clone(),
                value: eval(bound, t, row, row.slice(), source_id, stats)?,
            })
        })
        .collect()
}

/// A fan-out row's removal: `set` NULL of every tracked field, on the slots its old values
/// select (a parent DELETE: the slots joined to it hold NULL, as a LEFT JOIN without a match).
fn fan_clear(track: &[BoundTrack]) -> Vec<Op> {
    track
        .iter()
        .map(|t| Op::Set {
            field: t.target.clone(),
            value: Value::Null,
        })
        .collect()
}

pub(super) fn delete<S: OpSink + ?Sized>(
    bound: &Bound,
    source: &BoundKind,
    old: &Row,
    out: &mut S,
    stats: &mut TranslateStats,
) {
    match source {
        BoundKind::Direct {
            slot, on_delete, ..
        } => {
            if !on_delete {
                return;
            }
            if let Some(id) = slot_of(bound, old, *slot, stats) {
                out.entity(id, false);
                out.op(Op::Delete);
            }
        }
        BoundKind::Join { filter, .. } => {
            let slice = old.slice();
            // A filter the old row cannot evaluate (not in the replica identity): remove anyway;
            // removing a value the slot does not have changes nothing.
            if let Some(f) = filter
                && filter_holds(bound, f, old, slice, stats) == Some(false)
            {
                return;
            }
            join_op(bound, source, old, false, out, stats);
        }
        BoundKind::FanOut {
            clauses, id, track, ..
        } => {
            // The old row may carry only its key (default replica identity): the query needs
            // only the columns it reads, which the start-up check requires there.
            if let Some(query) = fan_query(clauses, old) {
                out.entity(fan_source_id(*id, old), false);
                out.op(Op::QueryOpSet {
                    query: Some(query),
                    ops: fan_clear(track),
                });
            }
        }
    }
}

pub(super) fn update<S: OpSink + ?Sized>(
    bound: &Bound,
    source: &BoundKind,
    new: &Row,
    old: Option<&Row>,
    old_full: bool,
    out: &mut S,
    stats: &mut TranslateStats,
) {
    match source {
        BoundKind::Direct {
            slot,
            track,
            on_delete,
            ..
        } => {
            let Some(id) = slot_of(bound, new, *slot, stats) else {
                return;
            };
            let old_id = old
                .filter(|o| o.get(*slot).is_some())
                .and_then(|o| slot_of(bound, o, *slot, stats));
            if let Some(old_id) = old_id.filter(|&o| o != id) {
                // The slot id itself changed: the old entity goes, the new one arrives whole.
                if *on_delete {
                    out.entity(old_id, false);
                    out.op(Op::Delete);
                }
                insert(bound, source, new, out, stats);
                return;
            }
            let ops = changed_fields(bound, track, new, old.filter(|_| old_full), id, stats);
            if !ops.is_empty() {
                out.entity(id, false);
                for op in ops {
                    out.op(op);
                }
            }
        }
        BoundKind::Join {
            slot,
            value,
            filter,
            ..
        } => {
            let new_slice = new.slice();
            let new_in = filter.as_ref().map_or(Some(true), |f| {
                filter_holds(bound, f, new, new_slice, stats)
            });
            let same_key = match old {
                Some(o) => {
                    o.get(*slot).is_none()
                        || (o.get(*slot) == new.get(*slot) && o.get(*value) == new.get(*value))
                }
                None => true,
            };
            if let Some(o) = old.filter(|_| !same_key) {
                delete(bound, source, o, out, stats);
                if new_in == Some(true) {
                    insert(bound, source, new, out, stats);
                }
                return;
            }
            // Same (slot, value): only the filter's outcome can have changed. Add or remove by
            // the new outcome (both are idempotent on the index).
            if let Some(holds) = new_in {
                join_op(bound, source, new, holds, out, stats);
            }
        }
        BoundKind::FanOut {
            clauses,
            id,
            track,
            join,
        } => {
            let source_id = fan_source_id(*id, new);
            // A joined row whose key changed: the slots of the old key lose it, those of the new
            // key get every value.
            if *join
                && let Some(old_query) = old.and_then(|o| fan_query(clauses, o))
                && Some(&old_query) != fan_query(clauses, new).as_ref()
            {
                out.entity(source_id, false);
                out.op(Op::QueryOpSet {
                    query: Some(old_query),
                    ops: fan_clear(track),
                });
                out.op(Op::QueryOpSet {
                    query: fan_query(clauses, new),
                    ops: fan_sets(bound, track, new, source_id, stats),
                });
                return;
            }
            let old_full_row = old.filter(|_| old_full);
            let ops = changed_fields(bound, track, new, old_full_row, source_id, stats);
            if !ops.is_empty() {
                out.entity(source_id, false);
                out.op(Op::QueryOpSet {
                    query: fan_query(clauses, new),
                    ops,
                });
            }
        }
    }
}

/// The ops of an UPDATE's tracked fields, for entity `id`: each field whose value changed (with
/// the old value taken away first where the old row came whole, `old_full`).
fn changed_fields(
    bound: &Bound,
    track: &[BoundTrack],
    new: &Row,
    old_full: Option<&Row>,
    id: i64,
    stats: &mut TranslateStats,
) -> Vec<Op> {
    let new_slice = new.slice();
    let old_pair = old_full.map(|o| (o, o.slice()));
    let mut ops = Vec::new();
    for t in track {
        update_field(bound, t, new, new_slice, old_pair, id, &mut ops, stats);
    }
    ops
}

/// The id a fan-out row's ops are grouped under: its `id` column when that is an integer, else 0.
fn fan_source_id(id_column: Option<usize>, row: &Row) -> i64 {
    match id_column.and_then(|c| row.get(c)).map(to_op_value) {
        Some(Value::Int(i)) => i,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter built next to the text is exactly what parsing the text gives, for every
    /// kind of value a query can be filled with.
    #[test]
    fn fan_queries_build_what_their_text_parses_to() {
        let values = [
            SqlValue::Int4(7),
            SqlValue::Int8(-12),
            SqlValue::Bool(true),
            SqlValue::Float8(2.5),
            SqlValue::Float8(3.0),
            SqlValue::Float8(f64::NAN),
            SqlValue::Text("SDXL 1.0".into()),
            SqlValue::Text(r#"a "quoted" \ word"#.into()),
            SqlValue::Text("42".into()),
            SqlValue::Text("null".into()),
        ];
        let mut row = Row::default();
        row.start(values.len());
        for (c, v) in values.iter().enumerate() {
            row.set(c, Some(v.clone()));
        }
        let clause = |field: &str, op, cols: Vec<usize>| (Arc::from(field), op, cols);
        for c in 0..values.len() {
            let q = fan_query(&[clause("f", QueryOp::Eq, vec![c])], &row).unwrap();
            assert_eq!(
                q.filter().ok(),
                OpQuery::parse(q.text().clone()).filter().ok(),
                "{q}"
            );
        }
        let q = fan_query(
            &[
                clause("a", QueryOp::Eq, vec![0]),
                clause("b", QueryOp::In, vec![1, 3, 6, 7]),
                clause("c", QueryOp::Eq, vec![2]),
            ],
            &row,
        )
        .unwrap();
        assert_eq!(
            &**q.text(),
            r#"a eq 7 AND b in [-12, 2.5, "SDXL 1.0", "a \"quoted\" \\ word"] AND c eq true"#
        );
        assert_eq!(
            q.filter().ok(),
            OpQuery::parse(q.text().clone()).filter().ok()
        );
        // A NULL or unknown value makes no query.
        row.set(0, Some(SqlValue::Null));
        assert!(fan_query(&[clause("a", QueryOp::Eq, vec![0])], &row).is_none());
        row.set(0, None);
        assert!(fan_query(&[clause("a", QueryOp::Eq, vec![0])], &row).is_none());
    }
}
