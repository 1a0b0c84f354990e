//! What the index holds in memory, field by field: the bitmaps readers query (shared with
//! snapshots, each counted once), the writer's per-slot columns, dictionaries, parent rows and
//! link keys. Heap-byte estimates from capacities (see [`store::size`](super::store::size)); the
//! process's resident memory adds the allocator's overhead, freed pages it keeps, the WAL
//! reader's and the server's buffers and, while a snapshot holds them, copies of the chunks the
//! writer has changed since.

use serde::Serialize;

use super::Index;
use super::store::bits::Bits;
use super::store::columns::KeyColumn;
use super::write::join::LinkKeys;
use crate::schema::FilterKind;

/// One field's (or one join's, or the live set's) share of the index's memory, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FieldMemory {
    /// The field's name; a join is named after its link field (`join:postId`).
    pub name: String,
    /// `alive`, `single`, `bool`, `multi`, `sort` or `join`.
    pub kind: &'static str,
    /// Distinct keys of a filter field, parents of a join, bit layers of a sort field.
    pub keys: u64,
    /// The bitmaps queries read.
    pub bitmaps: u64,
    /// The writer's per-slot columns (a single or bool field's key codes, a sort field's values,
    /// a multi-value join link's keys per slot).
    pub columns: u64,
    /// Dictionaries (text keys) and parent rows.
    pub other: u64,
}

impl FieldMemory {
    /// All of the field's bytes.
    pub fn total(&self) -> u64 {
        self.bitmaps + self.columns + self.other
    }
}

/// The index's memory by field (see the module note).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryReport {
    /// Live slots.
    pub slots: u64,
    /// All fields' bytes.
    pub total: u64,
    /// The live set, then filter fields, sort fields and joins in schema order.
    pub fields: Vec<FieldMemory>,
}

fn kind_name(kind: FilterKind) -> &'static str {
    match kind {
        FilterKind::Single => "single",
        FilterKind::Bool => "bool",
        FilterKind::Multi => "multi",
    }
}

impl Index {
    /// The index's memory by field. Walks every key and chunk: tens of milliseconds at 10^7
    /// slots, on the writer's thread.
    pub fn memory(&self) -> MemoryReport {
        let schema = &self.state.schema;
        let mut fields = vec![FieldMemory {
            name: "alive".into(),
            kind: "alive",
            keys: 1,
            bitmaps: self.state.alive.heap_bytes(),
            ..FieldMemory::default()
        }];
        for (fi, (f, fs)) in schema.filters.iter().zip(&self.state.filters).enumerate() {
            let column = self.key_cols[fi].as_ref().map_or(0, KeyColumn::heap_bytes);
            let links = self.joins.links[fi]
                .as_ref()
                .map_or(0, LinkKeys::heap_bytes);
            fields.push(FieldMemory {
                name: f.name.to_string(),
                kind: kind_name(f.kind),
                keys: fs.values.len() as u64,
                bitmaps: fs.values.heap_bytes() + fs.null.heap_bytes(),
                columns: column + links,
                other: fs.dict.heap_bytes(),
            });
        }
        for ((s, layers), col) in schema
            .sorts
            .iter()
            .zip(&self.state.sorts)
            .zip(&self.sort_cols)
        {
            fields.push(FieldMemory {
                name: s.name.to_string(),
                kind: "sort",
                keys: layers.len() as u64,
                bitmaps: layers.iter().map(Bits::heap_bytes).sum(),
                columns: col.heap_bytes(),
                other: 0,
            });
        }
        for (j, parents) in schema.joins.iter().zip(&self.state.joins) {
            fields.push(FieldMemory {
                name: format!("join:{}", j.link),
                kind: "join",
                keys: parents.len() as u64,
                other: parents.heap_bytes(),
                ..FieldMemory::default()
            });
        }
        MemoryReport {
            slots: self.alive_count(),
            total: fields.iter().map(FieldMemory::total).sum(),
            fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::index::Index;
    use crate::ops::{EntityOps, Op};
    use crate::schema::{FilterKind, Schema};

    fn index() -> Index {
        let schema = Schema::from_pairs(
            &[
                ("type", FilterKind::Single),
                ("tags", FilterKind::Multi),
                ("userId", FilterKind::Single),
            ],
            &[("at", 32)],
        )
        .unwrap();
        Index::new(Arc::new(schema))
    }

    fn field<'a>(r: &'a super::MemoryReport, name: &str) -> &'a super::FieldMemory {
        r.fields.iter().find(|f| f.name == name).unwrap()
    }

    #[test]
    fn each_field_owns_what_its_values_take() {
        let mut ix = index();
        let empty = ix.memory();
        assert_eq!(empty.slots, 0);
        for id in 0..200_000i64 {
            let ops = vec![
                Op::set("type", if id % 2 == 0 { "image" } else { "video" }),
                Op::set("userId", (id * 7919) % 50_000),
                Op::add("tags", id % 10),
                Op::add("tags", 100 + id % 3),
                Op::set("at", id * 1000),
            ];
            ix.apply(&EntityOps::alive(id, ops));
        }
        ix.set_applied(crate::WalKey::ZERO);
        let r = ix.memory();
        assert_eq!(r.slots, 200_000);
        assert_eq!(
            r.total,
            r.fields.iter().map(super::FieldMemory::total).sum::<u64>()
        );
        let (kind, user, tags, at) = (
            field(&r, "type"),
            field(&r, "userId"),
            field(&r, "tags"),
            field(&r, "at"),
        );
        assert_eq!(
            (kind.keys, user.keys, tags.keys, at.keys),
            (2, 50_000, 13, 32)
        );
        // Two dense keys: about a bit per slot each; text keys have a dictionary.
        assert!((40_000..80_000).contains(&kind.bitmaps), "{kind:?}");
        assert!(kind.other > 0 && user.other == 0, "{kind:?} {user:?}");
        // A code per slot (four pages of 2^16): one byte for two keys, two for 50k, plus the
        // code table.
        assert!((262_144..263_000).contains(&kind.columns), "{kind:?}");
        assert!(
            (524_288 + 50_000 * 16..4_000_000).contains(&user.columns),
            "{user:?}"
        );
        // 50k small lists of 4 slots: their room, not a bitset each.
        assert!((1_000_000..4_000_000).contains(&user.bitmaps), "{user:?}");
        // 28 dense layers (values under 2^28): 3.5 bytes per slot, and a 4-byte column.
        assert!((600_000..1_100_000).contains(&at.bitmaps), "{at:?}");
        assert!((786_432..=1_048_576 + 100).contains(&at.columns), "{at:?}");
        assert!(
            tags.columns == 0 && tags.bitmaps > 2 * kind.bitmaps,
            "{tags:?}"
        );
    }
}
