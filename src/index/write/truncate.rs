//! The table-wide `truncate` op (a TRUNCATE of a source table).
//!
//! * Without a field, every slot is deleted exactly as `delete` would delete each one: `alive`,
//!   the key and NULL bitmaps of every field a delete empties (all but the join-table multi-value
//!   fields, see `Schema::deleted_with_slot`), every sort layer and the writer's columns are
//!   emptied. A slot created afterwards inherits nothing of its own.
//! * With a field, every slot (live or not) loses every value of that field: a filter field's
//!   key bitmaps and NULL bitmap are emptied and its column reset to "no value"; a sort field's
//!   layers are emptied and its column reset (as if never set). A name that is both a filter and
//!   a sort field is emptied in both roles.
//!
//! Dictionaries and code tables stay: they are append-only, and the ids they hold stay valid.
//!
//! Joins (see `join`): a `truncate` of a field a join follows means its parent table was emptied:
//! every parent row loses the field, and every slot that held a value in it holds NULL (a
//! multi-value target: nothing). A `truncate` of a join's link field empties the link on every
//! slot, and with it the join's targets (a slot whose link holds nothing holds nothing there).
//! A whole-index truncate leaves the parent rows alone: they are another table's.
//!
//! The writer's deferred work is settled first, so none of it lands after the truncate: a
//! snapshot's settled copy is adopted, and for a field truncate the write log is applied and the
//! pending multi-value cleanup run (the values revived slots were given go back before the field
//! is emptied); a whole-index truncate applies the write log (the fields it does not empty keep
//! those writes) and forgets the pending cleanup and the revived values. Snapshots taken before
//! keep their view (every emptied part is replaced, not changed in place).
//!
//! Crash windows: none of its own; the index lives in memory, and after a crash the `truncate`
//! is replayed from the ops WAL like any op the last checkpoint does not reflect.

use std::sync::Arc;

use crate::schema::Field;

use crate::index::Index;
use crate::index::store::bits::Bits;
use crate::index::store::columns::Column;
use crate::index::store::keymap::KeyMap;

impl Index {
    /// Applies `truncate`: empties field `field` on every slot, or deletes every slot.
    pub(in crate::index) fn truncate(&mut self, field: Option<&Field>) {
        let Some(name) = field else {
            self.truncate_all();
            self.stats.applied_ops += 1;
            return;
        };
        let Some(at) = self.fields.get(name) else {
            self.stats.unknown_fields += 1;
            tracing::warn!(
                field = &**name,
                "truncate names a field the index does not have; skipped"
            );
            return;
        };
        if let Some((j, t)) = at.joined {
            // The parent table was emptied: its rows go, the linked slots' values go NULL.
            self.truncate_target(j, t);
            self.stats.applied_ops += 1;
            return;
        }
        if let Some((fi, _)) = at.filter {
            self.empty_filter(fi);
        }
        if let Some(si) = at.sort {
            self.truncate_sort(si);
        }
        self.stats.applied_ops += 1;
    }

    /// Every slot deleted: everything per slot emptied, the deferred work forgotten. Writes still
    /// in the log are applied first: a field a join table feeds is not emptied (its rows are not
    /// the truncated table's), and keeps them.
    fn truncate_all(&mut self) {
        self.settle();
        self.flush_log();
        self.pending.clear();
        self.revived.clear();
        self.resurrected.clear();
        let state = &mut self.state;
        state.alive = Bits::new();
        for (fs, _) in state
            .filters
            .iter_mut()
            .zip(self.wiped.iter())
            .filter(|(_, w)| **w)
        {
            fs.values = KeyMap::default();
            fs.null = Bits::new();
        }
        for (layers, f) in state.sorts.iter_mut().zip(&state.schema.sorts) {
            *layers = Arc::new(vec![Bits::new(); usize::from(f.bits)]);
        }
        for kc in self.key_cols.iter_mut().flatten() {
            kc.col = Column::default();
        }
        for col in &mut self.sort_cols {
            *col = Column::default();
        }
        for (fi, links) in self.joins.links.iter_mut().enumerate() {
            if let Some(links) = links.as_mut().filter(|_| self.wiped[fi]) {
                links.clear();
            }
        }
    }

    /// Filter field `fi` emptied on every slot.
    pub(in crate::index) fn truncate_filter(&mut self, fi: usize) {
        // After this, no logged write, pending cleanup or revived value refers to the field.
        self.flush_pending();
        let fs = &mut self.state.filters[fi];
        fs.values = KeyMap::default();
        fs.null = Bits::new();
        if let Some(kc) = &mut self.key_cols[fi] {
            kc.col = Column::default();
        }
    }

    /// Sort field `si` reset on every slot.
    pub(in crate::index) fn truncate_sort(&mut self, si: usize) {
        self.settle();
        self.flush_log();
        let bits = usize::from(self.state.schema.sorts[si].bits);
        self.state.sorts[si] = Arc::new(vec![Bits::new(); bits]);
        self.sort_cols[si] = Column::default();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::index::{DumpKey, Index};
    use crate::ops::{EntityOps, Op, Value};
    use crate::schema::{FilterKind, Schema};

    fn index() -> Index {
        Index::new(Arc::new(
            Schema::from_pairs(
                &[
                    ("type", FilterKind::Single),
                    ("tags", FilterKind::Multi),
                    ("flag", FilterKind::Bool),
                    ("both", FilterKind::Single),
                ],
                &[("at", 8), ("both", 4)],
            )
            .unwrap(),
        ))
    }

    fn count(ix: &Index, f: &str) -> u64 {
        ix.snapshot().count(Some(f)).unwrap()
    }

    fn truncate(field: Option<&str>) -> EntityOps {
        EntityOps::new(0, vec![Op::truncate(field)])
    }

    /// Slots 1..=3 alive with a value in every field; slot 9 dead with values.
    fn filled() -> Index {
        let mut ix = index();
        for id in 1..=3 {
            ix.apply(&EntityOps::alive(
                id,
                vec![
                    Op::set("type", if id == 2 { Value::Null } else { "image".into() }),
                    Op::add("tags", id),
                    Op::add("tags", Value::Null),
                    Op::set("flag", id % 2 == 0),
                    Op::set("both", id + 1),
                    Op::set("at", 10 * id),
                ],
            ));
        }
        ix.apply(&EntityOps::new(
            9,
            vec![Op::set("type", "video"), Op::add("tags", 1)],
        ));
        ix
    }

    #[test]
    fn truncating_everything_deletes_every_slot() {
        let mut ix = filled();
        // Deferred work of every kind is outstanding: logged writes, a pending delete, a
        // value revived after it.
        ix.apply(&EntityOps::new(3, vec![Op::Delete]));
        ix.apply(&EntityOps::alive(3, vec![Op::add("tags", 7)]));
        assert!(!ix.log.is_empty() && !ix.pending.is_empty() && !ix.revived.is_empty());
        let before = ix.snapshot();
        let ops = ix.stats().applied_ops;
        ix.apply(&truncate(None));
        assert_eq!(ix.stats().applied_ops, ops + 1);
        let st = ix.debug_state();
        assert!(st.alive.is_empty());
        assert!(
            st.filters
                .values()
                .all(|f| f.null.is_empty() && f.values.is_empty())
        );
        assert!(st.sorts.values().all(std::collections::BTreeMap::is_empty));
        // A slot that comes back inherits nothing, and a value seen before keys as before.
        ix.apply(&EntityOps::alive(1, vec![Op::set("at", 3)]));
        ix.apply(&EntityOps::alive(5, vec![Op::set("type", "image")]));
        let st = ix.debug_state();
        assert_eq!(st.alive, vec![1, 5]);
        assert_eq!(
            st.filters["type"].values[&DumpKey::Str("image".into())],
            vec![5]
        );
        assert!(st.filters["type"].null.is_empty() && st.filters["tags"].null.is_empty());
        assert_eq!(st.sorts["at"].iter().collect::<Vec<_>>(), vec![(&1, &3)]);
        // The columns forgot too: a remove of a pre-truncate value changes nothing.
        ix.apply(&EntityOps::new(2, vec![Op::set("both", 5)]));
        ix.apply(&EntityOps::new(1, vec![Op::remove("at", 10)]));
        assert_eq!(count(&ix, "at eq 3"), 1);
        // The snapshot taken before still sees the old index.
        assert_eq!(before.alive_count(), 3);
        assert_eq!(before.count(Some("tags eq 7")).unwrap(), 1);
    }

    #[test]
    fn truncating_everything_keeps_what_a_join_table_fed_even_if_not_yet_published() {
        let mut schema =
            Schema::from_pairs(&[("p", FilterKind::Single), ("j", FilterKind::Multi)], &[])
                .unwrap();
        schema.join_tables = vec![Arc::from("j")];
        let schema = Arc::new(schema);
        let writes = [
            EntityOps::alive(0, vec![Op::set("p", 1)]),
            EntityOps::new(
                101,
                vec![Op::QueryOpSet {
                    query: Some("p eq 1".into()),
                    ops: vec![Op::add("j", 0)],
                }],
            ),
            EntityOps::new(4, vec![Op::add("j", 5)]),
        ];
        // The same writes and truncate, with and without a snapshot taken before the truncate:
        // the join table's values stay in both (they come back with their slot, as in SQL).
        let states: Vec<_> = [false, true]
            .into_iter()
            .map(|snapshot| {
                let mut ix = Index::new(Arc::clone(&schema));
                for w in &writes {
                    ix.apply(w);
                }
                if snapshot {
                    let _ = ix.snapshot();
                }
                ix.apply(&truncate(None));
                ix.apply(&EntityOps::alive(0, vec![Op::set("p", 2)]));
                ix.debug_state()
            })
            .collect();
        assert_eq!(states[0], states[1]);
        let j = &states[0].filters["j"].values;
        assert_eq!(
            (&j[&DumpKey::Int(0)], &j[&DumpKey::Int(5)]),
            (&vec![0], &vec![4])
        );
    }

    #[test]
    fn truncating_a_multi_field_clears_it_on_every_slot() {
        let mut ix = filled();
        ix.apply(&EntityOps::new(3, vec![Op::Delete]));
        ix.apply(&EntityOps::alive(3, vec![Op::add("tags", 7)]));
        ix.apply(&truncate(Some("tags")));
        let st = ix.debug_state();
        assert!(st.filters["tags"].values.is_empty() && st.filters["tags"].null.is_empty());
        assert_eq!(st.alive, vec![1, 2, 3]);
        assert_eq!(
            count(&ix, "type eq image"),
            1,
            "slot 3 was deleted, slot 1 keeps its type"
        );
        assert_eq!(count(&ix, "at eq 20"), 1, "other fields keep their values");
        // Values added afterwards show up, on live and on re-created slots alike.
        ix.apply(&EntityOps::new(1, vec![Op::add("tags", 2)]));
        ix.apply(&EntityOps::new(3, vec![Op::add("tags", 2)]));
        assert_eq!(
            ix.debug_state().filters["tags"].values[&DumpKey::Int(2)],
            vec![1, 3]
        );
    }

    #[test]
    fn truncating_a_single_field_resets_its_column() {
        let mut ix = filled();
        ix.apply(&EntityOps::new(1, vec![Op::set("type", "video")])); // logged, not applied
        ix.apply(&truncate(Some("type")));
        let st = ix.debug_state();
        assert!(st.filters["type"].values.is_empty() && st.filters["type"].null.is_empty());
        // A set after the truncate leaves no stale bit behind; a remove of the old value is a
        // no-op.
        ix.apply(&EntityOps::new(1, vec![Op::set("type", "image")]));
        ix.apply(&EntityOps::new(2, vec![Op::remove("type", Value::Null)]));
        ix.apply(&EntityOps::new(2, vec![Op::set("type", "video")]));
        ix.apply(&EntityOps::new(1, vec![Op::remove("type", "video")]));
        let st = ix.debug_state();
        assert_eq!(
            st.filters["type"].values[&DumpKey::Str("image".into())],
            vec![1]
        );
        assert_eq!(
            st.filters["type"].values[&DumpKey::Str("video".into())],
            vec![2]
        );
        assert_eq!(
            count(&ix, "flag eq true"),
            1,
            "other fields keep their values"
        );
    }

    #[test]
    fn truncating_a_sort_field_or_a_shared_name_resets_every_role() {
        let mut ix = filled();
        ix.apply(&truncate(Some("at")));
        assert!(ix.debug_state().sorts["at"].is_empty());
        ix.apply(&EntityOps::new(2, vec![Op::set("at", 20)]));
        ix.apply(&EntityOps::new(
            3,
            vec![Op::remove("at", 30), Op::set("at", 1)],
        ));
        assert_eq!(
            ix.debug_state().sorts["at"].iter().collect::<Vec<_>>(),
            vec![(&2, &20), (&3, &1)]
        );
        ix.apply(&truncate(Some("both")));
        let st = ix.debug_state();
        assert!(st.filters["both"].values.is_empty() && st.sorts["both"].is_empty());
        ix.apply(&EntityOps::new(1, vec![Op::set("both", 3)]));
        let st = ix.debug_state();
        assert_eq!(st.filters["both"].values[&DumpKey::Int(3)], vec![1]);
        assert_eq!(st.sorts["both"].iter().collect::<Vec<_>>(), vec![(&1, &3)]);
    }

    #[test]
    fn unknown_nested_and_misplaced_truncates() {
        let mut ix = filled();
        let ops = ix.stats().applied_ops;
        ix.apply(&truncate(Some("nope")));
        assert_eq!(
            (ix.stats().unknown_fields, ix.stats().applied_ops),
            (1, ops)
        );
        // Nested in a queryOpSet: ignored and counted; the other nested ops still apply.
        ix.apply(&EntityOps::new(
            0,
            vec![Op::QueryOpSet {
                query: Some("type eq image".into()),
                ops: vec![Op::truncate(None), Op::set("at", 99)],
            }],
        ));
        assert_eq!(ix.stats().nested_query_op_sets, 1);
        assert_eq!((ix.alive_count(), count(&ix, "at eq 99")), (3, 2));
        // Any entity id carries it, even one that is no slot; the entity's own ops still apply
        // in order around it.
        ix.apply(&EntityOps {
            entity_id: -1,
            ops: vec![Op::truncate(Some("tags"))],
            creates_slot: false,
        });
        assert_eq!(count(&ix, "tags in [1, 2, 3]"), 0);
        assert_eq!(ix.stats().skipped_ids, 0);
        ix.apply(&EntityOps::alive(
            4,
            vec![Op::set("at", 5), Op::truncate(None), Op::set("at", 6)],
        ));
        assert_eq!(ix.debug_state().alive, vec![4]);
        assert_eq!(count(&ix, "at eq 6"), 1);
    }
}
