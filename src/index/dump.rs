//! A canonical, comparable dump of everything a snapshot makes observable (for tests that compare
//! two indexes, e.g. raw vs. deduped batches, or before vs. after a checkpoint round trip).

use std::collections::BTreeMap;

use crate::WalKey;

use super::store::keys::Key;
use super::{FilterState, Snapshot};

/// A filter key in a dump: integers as themselves, text resolved from the dictionary.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DumpKey {
    /// An integer key.
    Int(i64),
    /// A text key.
    Str(String),
}

/// One filter field: sorted slot lists per value and for NULL (empty values omitted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldDump {
    /// Slots whose value is NULL.
    pub null: Vec<u32>,
    /// Slots per value.
    pub values: BTreeMap<DumpKey, Vec<u32>>,
}

/// Everything observable about an index, in canonical form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexState {
    /// The applied cursor.
    pub applied: WalKey,
    /// Live slots.
    pub alive: Vec<u32>,
    /// Per filter field name.
    pub filters: BTreeMap<String, FieldDump>,
    /// Per sort field name: slot → value, for slots with a non-zero value.
    pub sorts: BTreeMap<String, BTreeMap<u32, u32>>,
    /// Per join (schema order): each parent key → its value per target (filter key, or `None`
    /// for NULL; and sort value), for parents with a value.
    pub parents: Vec<ParentsDump>,
}

/// One join's parent rows in a dump: key → per target (filter key or `None` for NULL, sort value).
pub type ParentsDump = BTreeMap<DumpKey, Vec<(Option<DumpKey>, u32)>>;

impl Snapshot {
    /// The canonical dump of this snapshot (lazy cleanups already applied).
    pub fn debug_state(&self) -> IndexState {
        let cleaned = self.cleaned();
        let s = &*cleaned;
        let mut out = IndexState {
            applied: s.applied,
            alive: s.alive.iter().collect(),
            ..IndexState::default()
        };
        for (f, fs) in s.schema.filters.iter().zip(&s.filters) {
            let mut d = FieldDump {
                null: fs.null.iter().collect(),
                values: BTreeMap::new(),
            };
            for (k, bits) in fs.values.iter() {
                if bits.is_empty() {
                    continue;
                }
                d.values.insert(dump_key(fs, *k), bits.iter().collect());
            }
            out.filters.insert(f.name.to_string(), d);
        }
        for (f, layers) in s.schema.sorts.iter().zip(&s.sorts) {
            let mut values = BTreeMap::new();
            for (b, layer) in layers.iter().enumerate() {
                for slot in layer.iter() {
                    *values.entry(slot).or_insert(0u32) |= 1 << b;
                }
            }
            out.sorts.insert(f.name.to_string(), values);
        }
        for (j, parents) in s.schema.joins.iter().zip(&s.joins) {
            let link = s
                .schema
                .filter(&j.link)
                .expect("a join's link is a filter field");
            let target_fields: Vec<Option<usize>> =
                j.targets.iter().map(|t| s.schema.filter(t)).collect();
            let mut rows = BTreeMap::new();
            for (k, row) in parents.iter() {
                let cells = row
                    .iter()
                    .zip(&target_fields)
                    .map(|(c, fi)| {
                        let key = match (c.key, fi) {
                            (Some(k), Some(fi)) => Some(dump_key(&s.filters[*fi], k)),
                            _ => None,
                        };
                        (key, c.sort)
                    })
                    .collect();
                rows.insert(dump_key(&s.filters[link], *k), cells);
            }
            out.parents.push(rows);
        }
        out
    }
}

fn dump_key(fs: &FilterState, k: Key) -> DumpKey {
    match k {
        Key::Int(i) => DumpKey::Int(i),
        Key::Str(id) => DumpKey::Str(fs.dict.text(id).map_or_else(
            || format!("<missing dictionary id {id}>"),
            std::string::ToString::to_string,
        )),
    }
}
