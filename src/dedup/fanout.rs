//! Runs of `queryOpSet` entries: nested ops merge per (entity, query) and field, unless a
//! later entry of the run could change what they match (see the parent module's rules).

use std::collections::{HashMap, HashSet};

use crate::ops::{EntityOps, Op, OpQuery};
use crate::schema::Field;

use super::{Collapsed, Deduper};

/// One (entity, query) within a run of `queryOpSet` entries.
#[derive(Debug)]
struct FanoutGroup {
    entity_id: i64,
    query: OpQuery,
    /// Field names the query reads.
    reads: HashSet<String>,
    /// Nothing may merge into or across this group: its ops delete slots or change what its
    /// own query matches, so applying them twice differs from applying them merged.
    sealed: bool,
    ops: Collapsed,
}

impl FanoutGroup {
    fn writes_any(&self, fields: &HashSet<Field>) -> bool {
        self.ops.written_fields().any(|f| fields.contains(f))
    }
}

/// A run of entries that hold only `queryOpSet` ops.
#[derive(Debug, Default)]
pub(super) struct FanoutRun {
    groups: Vec<FanoutGroup>,
    /// The newest group for each (entity, query).
    latest: HashMap<(i64, OpQuery), usize>,
}

impl FanoutRun {
    pub(super) fn push(&mut self, d: &Deduper, e: EntityOps) {
        for op in e.ops {
            let Op::QueryOpSet {
                query: Some(query),
                ops,
            } = op
            else {
                continue;
            };
            let writes: HashSet<Field> = ops.iter().filter_map(Op::field).cloned().collect();
            let reads = query_reads(&query);
            let sealed = ops
                .iter()
                .any(|op| matches!(op, Op::Delete | Op::QueryOpSet { .. } | Op::Truncate { .. }))
                || writes.iter().any(|w| reads.contains(&**w));
            let key = (e.entity_id, query.clone());
            let mergeable = self.latest.get(&key).copied().filter(|&i| {
                let reads = &self.groups[i].reads;
                !sealed
                    && !self.groups[i].sealed
                    && self.groups[i + 1..].iter().all(|later| {
                        !later.sealed
                            && !later.writes_any(&writes)
                            && !writes.iter().any(|w| later.reads.contains(&**w))
                            && !later.ops.written_fields().any(|w| reads.contains(&**w))
                    })
            });
            let idx = match mergeable {
                Some(i) => i,
                None => {
                    let join = query.join_key().and_then(|(link, _)| d.join_of_link(link));
                    self.groups.push(FanoutGroup {
                        entity_id: e.entity_id,
                        reads,
                        sealed,
                        query,
                        ops: Collapsed {
                            join,
                            ..Collapsed::default()
                        },
                    });
                    self.latest.insert(key, self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            for op in ops {
                self.groups[idx].ops.push(d, op);
            }
        }
    }

    pub(super) fn flush(&mut self, _d: &Deduper, out: &mut Vec<EntityOps>) {
        self.latest.clear();
        for g in self.groups.drain(..) {
            let ops = g.ops.emit();
            out.push(EntityOps::new(
                g.entity_id,
                vec![Op::QueryOpSet {
                    query: Some(g.query),
                    ops,
                }],
            ));
        }
    }
}

/// The fields a query reads (none when it does not parse: the index skips such a query).
fn query_reads(query: &OpQuery) -> HashSet<String> {
    match query.filter() {
        Ok(f) => f.fields().into_iter().map(str::to_string).collect(),
        Err(_) => HashSet::new(),
    }
}
