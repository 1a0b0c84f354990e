//! A canonical, comparable dump of everything a snapshot makes observable (for tests that compare
//! two indexes, e.g. raw vs. deduped batches, or before vs. after a checkpoint round trip).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::WalKey;

use super::store::keys::Key;
use super::{FilterState, Snapshot};

/// A filter key in a dump: integers as themselves, text resolved from the dictionary (in JSON, a
/// number or a string).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DumpKey {
    /// An integer key.
    Int(i64),
    /// A text key.
    Str(String),
}

/// One filter field: sorted slot lists per value and for NULL (empty values omitted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDump {
    /// Slots whose value is NULL.
    pub null: Vec<u32>,
    /// Slots per value (in JSON, a list of `[value, slots]` pairs).
    #[serde(with = "pairs")]
    pub values: BTreeMap<DumpKey, Vec<u32>>,
}

/// A map with non-string keys as a JSON list of pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::DumpKey;

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<DumpKey, Vec<u32>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<DumpKey, Vec<u32>>, D::Error> {
        let pairs = Vec::<(DumpKey, Vec<u32>)>::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}

/// Everything observable about an index, in canonical form (JSON without the parent rows: what
/// `GET /check/state` sends).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(skip)]
    pub parents: Vec<ParentsDump>,
}

/// One join's parent rows in a dump: key → per target (filter key or `None` for NULL, sort value).
pub type ParentsDump = BTreeMap<DumpKey, Vec<(Option<DumpKey>, u32)>>;

impl Snapshot {
    /// The canonical dump of this snapshot (lazy cleanups already applied).
    pub fn debug_state(&self) -> IndexState {
        let mut out = self.state_in(0..=u32::MAX);
        let cleaned = self.cleaned();
        out.parents = parents_dump(&cleaned);
        out
    }

    /// The dump of the slots in `slots` only, without the joins' parent rows (what `pgroar
    /// check` compares with SQL, range by range: settle the snapshot first, see
    /// [`Snapshot::settled`]). Every value list and sort entry is cut to the range.
    pub fn state_in(&self, slots: RangeInclusive<u32>) -> IndexState {
        let cleaned = self.cleaned();
        let s = &*cleaned;
        let cut = |bits: &super::store::bits::Bits| bits.restrict(slots.clone());
        let mut out = IndexState {
            applied: s.applied,
            alive: cut(&s.alive).iter().collect(),
            ..IndexState::default()
        };
        for (f, fs) in s.schema.filters.iter().zip(&s.filters) {
            let mut d = FieldDump {
                null: cut(&fs.null).iter().collect(),
                values: BTreeMap::new(),
            };
            for (k, bits) in fs.values.iter() {
                let bits = cut(bits);
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
                for slot in cut(layer).iter() {
                    *values.entry(slot).or_insert(0u32) |= 1 << b;
                }
            }
            out.sorts.insert(f.name.to_string(), values);
        }
        out
    }
}

/// Each join's parent rows, in canonical form.
fn parents_dump(s: &super::State) -> Vec<ParentsDump> {
    let mut out = Vec::new();
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
        out.push(rows);
    }
    out
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
