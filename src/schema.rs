//! The index's fields: filter fields (single-value, multi-value, boolean) and sort fields, and
//! the joins through which some of them follow a parent table.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How a filter field holds values for one slot.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterKind {
    /// At most one value per slot; a `set` moves the slot out of its previous value.
    Single,
    /// Any number of values per slot (`add` / `remove`), e.g. tag ids.
    Multi,
    /// `true` / `false` / NULL; behaves like a single-value field.
    Bool,
}

/// One filter field of the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterField {
    /// The field's name, as ops and queries spell it.
    pub name: Arc<str>,
    /// Single, multi or bool.
    pub kind: FilterKind,
}

/// One sort field: an unsigned integer of `bits` bits stored as bit layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortField {
    /// The field's name, as ops and queries spell it.
    pub name: Arc<str>,
    /// Width in bits, 1..=32; larger values are clamped to `2^bits - 1`.
    pub bits: u8,
}

impl SortField {
    /// The largest value the field can hold.
    pub fn max_value(&self) -> u32 {
        if self.bits >= 32 {
            u32::MAX
        } else {
            (1u32 << self.bits) - 1
        }
    }
}

/// A join: the child slots' `targets` hold the values of the parent row whose key equals the
/// slot's `link` value (SQL's `LEFT JOIN parent ON parent.key = child.link`). A fan-out source
/// whose query is `link eq {column}` declares one; its `queryOpSet`s set the parent rows'
/// values, and the index keeps every child in step with its parent (see `index::join`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// The filter field holding each child's parent key (or keys, when multi-value).
    pub link: Arc<str>,
    /// The fields the parent row gives its children, in the source's order. Each belongs to this
    /// join only; on a multi-value link each is a multi-value field holding the union of the
    /// linked parents' values.
    pub targets: Vec<Arc<str>>,
}

/// What kind of field a name refers to (a name may be both a filter and a sort field).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldRef {
    /// Index into [`Schema::filters`].
    pub filter: Option<usize>,
    /// Index into [`Schema::sorts`].
    pub sort: Option<usize>,
}

impl FieldRef {
    /// True when the name is neither a filter nor a sort field.
    pub fn is_unknown(&self) -> bool {
        self.filter.is_none() && self.sort.is_none()
    }
}

/// A schema that breaks a rule, with the offending field named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    /// Two filter fields (or two sort fields) share a name.
    #[error("index field {0:?} is declared twice")]
    Duplicate(String),
    /// A sort field's width is outside 1..=32.
    #[error("sort field {name:?}: bits = {bits} is outside 1..=32")]
    Bits {
        /// The sort field.
        name: String,
        /// The declared width.
        bits: u32,
    },
    /// A field with an empty name.
    #[error("an index field has an empty name")]
    EmptyName,
    /// A join's link is not a filter field.
    #[error("join link {0:?} is not a filter field")]
    JoinLink(String),
    /// A join's target is not an index field.
    #[error("join target {0:?} is not an index field")]
    JoinTarget(String),
    /// A field that two joins (or one join twice) would write, or a join's own link.
    #[error("field {0:?} is the target of more than one join, or of the join it links")]
    JoinTargetTwice(String),
    /// A single-valued target on a multi-value link: a child with several parents has no single
    /// value in SQL.
    #[error(
        "join target {target:?} is not a multi-value filter field, but its link {link:?} is \
         multi-value"
    )]
    JoinSingleOnMulti {
        /// The target.
        target: String,
        /// The link.
        link: String,
    },
    /// Joins whose targets link back to themselves.
    #[error("joins form a cycle through field {0:?}")]
    JoinCycle(String),
}

/// The index's field list. Field positions are stable for the life of an index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// Filter fields in declaration order.
    pub filters: Vec<FilterField>,
    /// Sort fields in declaration order.
    pub sorts: Vec<SortField>,
    /// Joins, in the order of the sources that declare them.
    pub joins: Vec<Join>,
}

impl Schema {
    /// Builds a schema without joins, checking names and widths.
    pub fn new(filters: Vec<FilterField>, sorts: Vec<SortField>) -> Result<Self, SchemaError> {
        let schema = Schema {
            filters,
            sorts,
            joins: Vec::new(),
        };
        schema.validate()?;
        Ok(schema)
    }

    /// This schema with `joins`, checked.
    pub fn with_joins(mut self, joins: Vec<Join>) -> Result<Self, SchemaError> {
        self.joins = joins;
        self.validate()?;
        Ok(self)
    }

    /// Checks for empty or duplicate names, sort widths outside 1..=32, and joins that break
    /// their rules (see [`Join`]).
    pub fn validate(&self) -> Result<(), SchemaError> {
        self.validate_fields()?;
        self.validate_joins()
    }

    fn validate_joins(&self) -> Result<(), SchemaError> {
        let mut targets = std::collections::HashSet::new();
        for j in &self.joins {
            let Some(link) = self.filter(&j.link) else {
                return Err(SchemaError::JoinLink(j.link.to_string()));
            };
            let multi_link = self.filters[link].kind == FilterKind::Multi;
            for t in &j.targets {
                let at = self.field(t);
                if at.is_unknown() {
                    return Err(SchemaError::JoinTarget(t.to_string()));
                }
                if *t == j.link || !targets.insert(t.clone()) {
                    return Err(SchemaError::JoinTargetTwice(t.to_string()));
                }
                let multi_target = at.sort.is_none()
                    && at.filter.map(|f| self.filters[f].kind) == Some(FilterKind::Multi);
                if multi_link && !multi_target {
                    return Err(SchemaError::JoinSingleOnMulti {
                        target: t.to_string(),
                        link: j.link.to_string(),
                    });
                }
            }
        }
        match self.join_order() {
            Ok(_) => Ok(()),
            Err(field) => Err(SchemaError::JoinCycle(field)),
        }
    }

    /// The joins in an order where a join comes after every join whose target is its link (a
    /// parent's values can themselves be links); `Err` names a field on a cycle.
    pub fn join_order(&self) -> Result<Vec<usize>, String> {
        let n = self.joins.len();
        let feeds = |a: usize, b: usize| self.joins[a].targets.contains(&self.joins[b].link);
        let mut order = Vec::with_capacity(n);
        let mut placed = vec![false; n];
        while order.len() < n {
            let next = (0..n).find(|&b| !placed[b] && (0..n).all(|a| placed[a] || !feeds(a, b)));
            match next {
                Some(b) => {
                    placed[b] = true;
                    order.push(b);
                }
                None => {
                    let stuck = (0..n).find(|&b| !placed[b]).expect("some join is unplaced");
                    return Err(self.joins[stuck].link.to_string());
                }
            }
        }
        Ok(order)
    }

    fn validate_fields(&self) -> Result<(), SchemaError> {
        let mut seen = std::collections::HashSet::new();
        for f in &self.filters {
            if f.name.is_empty() {
                return Err(SchemaError::EmptyName);
            }
            if !seen.insert(&f.name) {
                return Err(SchemaError::Duplicate(f.name.to_string()));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.sorts {
            if s.name.is_empty() {
                return Err(SchemaError::EmptyName);
            }
            if !seen.insert(&s.name) {
                return Err(SchemaError::Duplicate(s.name.to_string()));
            }
            if !(1..=32).contains(&s.bits) {
                return Err(SchemaError::Bits {
                    name: s.name.to_string(),
                    bits: u32::from(s.bits),
                });
            }
        }
        Ok(())
    }

    /// Position of the filter field called `name`.
    pub fn filter(&self, name: &str) -> Option<usize> {
        self.filters.iter().position(|f| &*f.name == name)
    }

    /// Position of the sort field called `name`.
    pub fn sort(&self, name: &str) -> Option<usize> {
        self.sorts.iter().position(|s| &*s.name == name)
    }

    /// Resolves a field name to the filter and/or sort field it names.
    pub fn field(&self, name: &str) -> FieldRef {
        FieldRef {
            filter: self.filter(name),
            sort: self.sort(name),
        }
    }

    /// Convenience constructor for tests and examples: `("name", kind)` filters, `("name", bits)` sorts.
    pub fn from_pairs(
        filters: &[(&str, FilterKind)],
        sorts: &[(&str, u8)],
    ) -> Result<Self, SchemaError> {
        Schema::new(
            filters
                .iter()
                .map(|(n, k)| FilterField {
                    name: Arc::from(*n),
                    kind: *k,
                })
                .collect(),
            sorts
                .iter()
                .map(|(n, b)| SortField {
                    name: Arc::from(*n),
                    bits: *b,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicates_and_bad_widths() {
        assert!(Schema::from_pairs(&[("a", FilterKind::Single)], &[("s", 32)]).is_ok());
        assert_eq!(
            Schema::from_pairs(&[("a", FilterKind::Single), ("a", FilterKind::Multi)], &[]),
            Err(SchemaError::Duplicate("a".into()))
        );
        assert_eq!(
            Schema::from_pairs(&[], &[("s", 33)]),
            Err(SchemaError::Bits {
                name: "s".into(),
                bits: 33
            })
        );
        assert!(Schema::from_pairs(&[], &[("s", 0)]).is_err());
        // A name may be both a filter and a sort field.
        let s = Schema::from_pairs(&[("id", FilterKind::Single)], &[("id", 32)]).unwrap();
        assert_eq!(
            s.field("id"),
            FieldRef {
                filter: Some(0),
                sort: Some(0)
            }
        );
        assert!(s.field("nope").is_unknown());
        assert_eq!(s.sorts[0].max_value(), u32::MAX);
    }
}
