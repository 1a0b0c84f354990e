//! The difference between what SQL says and what the index holds: per field and value, the ids
//! missing and the ids extra (the first ten of each, and how many), over the live slots.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::Skipped;
use crate::index::{DumpKey, IndexState};

/// Ids listed per difference.
const SHOWN: usize = 10;

/// Ids that differ, the first few of them and how many.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ids {
    /// The first [`SHOWN`] ids.
    pub first: Vec<u32>,
    /// How many in all.
    pub count: u64,
}

impl Ids {
    fn push(&mut self, id: u32) {
        if self.first.len() < SHOWN {
            self.first.push(id);
        }
        self.count += 1;
    }

    fn merge(&mut self, other: Ids) {
        for id in other.first {
            if self.first.len() < SHOWN {
                self.first.push(id);
            }
        }
        self.count += other.count;
    }
}

impl fmt::Display for Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.count, self.first)?;
        if self.count > self.first.len() as u64 {
            f.write_str(" …")?;
        }
        Ok(())
    }
}

/// One filter value whose slots differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDiff {
    /// The field.
    pub field: String,
    /// The value (`None`: NULL).
    pub value: Option<DumpKey>,
    /// Live slots SQL puts under the value and the index does not.
    pub missing: Ids,
    /// Live slots the index puts under the value and SQL does not.
    pub extra: Ids,
}

/// One sort field whose values differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortDiff {
    /// The field.
    pub field: String,
    /// The first few differing slots: (slot, SQL's value, the index's value).
    pub first: Vec<(u32, u32, u32)>,
    /// How many slots differ.
    pub count: u64,
}

/// Everything that differs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Slots SQL says are live and the index does not have.
    pub alive_missing: Ids,
    /// Slots live in the index that SQL does not have.
    pub alive_extra: Ids,
    /// Filter values.
    pub fields: Vec<FieldDiff>,
    /// Sort values.
    pub sorts: Vec<SortDiff>,
}

impl Diff {
    /// True when the index equals SQL.
    pub fn is_empty(&self) -> bool {
        self.alive_missing.count == 0
            && self.alive_extra.count == 0
            && self.fields.is_empty()
            && self.sorts.is_empty()
    }

    /// Adds the differences of another slot range.
    pub fn merge(&mut self, other: Diff) {
        self.alive_missing.merge(other.alive_missing);
        self.alive_extra.merge(other.alive_extra);
        for d in other.fields {
            match self
                .fields
                .iter_mut()
                .find(|x| x.field == d.field && x.value == d.value)
            {
                Some(x) => {
                    x.missing.merge(d.missing);
                    x.extra.merge(d.extra);
                }
                None => self.fields.push(d),
            }
        }
        for d in other.sorts {
            match self.sorts.iter_mut().find(|x| x.field == d.field) {
                Some(x) => {
                    for s in d.first {
                        if x.first.len() < SHOWN {
                            x.first.push(s);
                        }
                    }
                    x.count += d.count;
                }
                None => self.sorts.push(d),
            }
        }
    }

    /// Differing (field, value) pairs and sort fields, in all.
    pub fn len(&self) -> usize {
        usize::from(self.alive_missing.count > 0)
            + usize::from(self.alive_extra.count > 0)
            + self.fields.len()
            + self.sorts.len()
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.alive_missing.count > 0 {
            writeln!(f, "alive: missing {}", self.alive_missing)?;
        }
        if self.alive_extra.count > 0 {
            writeln!(f, "alive: extra {}", self.alive_extra)?;
        }
        for d in &self.fields {
            let value = match &d.value {
                None => "NULL".to_string(),
                Some(DumpKey::Int(i)) => i.to_string(),
                Some(DumpKey::Str(s)) => format!("{s:?}"),
            };
            write!(f, "{} = {value}:", d.field)?;
            if d.missing.count > 0 {
                write!(f, " missing {}", d.missing)?;
            }
            if d.extra.count > 0 {
                write!(f, " extra {}", d.extra)?;
            }
            writeln!(f)?;
        }
        for d in &self.sorts {
            write!(f, "{} (sort): {} slots differ:", d.field, d.count)?;
            for (slot, want, got) in &d.first {
                write!(f, " {slot} (SQL {want}, index {got})")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The difference between `expected` (SQL) and `actual` (the index) over the slots live in
/// both (a slot live in only one is reported once, under alive); fields in `skipped` are not
/// compared.
pub fn diff(expected: &IndexState, actual: &IndexState, skipped: &[Skipped]) -> Diff {
    let want: BTreeSet<u32> = expected.alive.iter().copied().collect();
    let have: BTreeSet<u32> = actual.alive.iter().copied().collect();
    let mut out = Diff::default();
    for s in want.difference(&have) {
        out.alive_missing.push(*s);
    }
    for s in have.difference(&want) {
        out.alive_extra.push(*s);
    }
    let both: BTreeSet<u32> = want.intersection(&have).copied().collect();
    let compared = |name: &str| !skipped.iter().any(|s| s.field == name);
    let empty = crate::index::FieldDump::default();
    for (name, e) in &expected.filters {
        if !compared(name) {
            continue;
        }
        let a = actual.filters.get(name).unwrap_or(&empty);
        let mut values: BTreeMap<Option<&DumpKey>, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
        values.insert(None, (e.null.clone(), a.null.clone()));
        for (k, slots) in &e.values {
            values.entry(Some(k)).or_default().0 = slots.clone();
        }
        for (k, slots) in &a.values {
            values.entry(Some(k)).or_default().1 = slots.clone();
        }
        for (value, (want, have)) in values {
            let (want, have): (BTreeSet<u32>, BTreeSet<u32>) = (
                want.into_iter().filter(|s| both.contains(s)).collect(),
                have.into_iter().filter(|s| both.contains(s)).collect(),
            );
            if want == have {
                continue;
            }
            let mut d = FieldDiff {
                field: name.clone(),
                value: value.cloned(),
                missing: Ids::default(),
                extra: Ids::default(),
            };
            want.difference(&have).for_each(|s| d.missing.push(*s));
            have.difference(&want).for_each(|s| d.extra.push(*s));
            out.fields.push(d);
        }
    }
    let none = BTreeMap::new();
    for (name, e) in &expected.sorts {
        if !compared(name) {
            continue;
        }
        let a = actual.sorts.get(name).unwrap_or(&none);
        let mut d = SortDiff {
            field: name.clone(),
            first: Vec::new(),
            count: 0,
        };
        for slot in &both {
            let (want, got) = (
                e.get(slot).copied().unwrap_or(0),
                a.get(slot).copied().unwrap_or(0),
            );
            if want != got {
                if d.first.len() < SHOWN {
                    d.first.push((*slot, want, got));
                }
                d.count += 1;
            }
        }
        if d.count > 0 {
            out.sorts.push(d);
        }
    }
    out
}
