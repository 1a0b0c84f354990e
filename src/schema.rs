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

/// A field's number among its schema's field names (see [`FieldIds`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(u32);

impl FieldId {
    /// The id as a position into per-field tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// An index field's name as an op carries it. Made by a schema's [`FieldIds`] (the translator,
/// the WAL reader and `POST /ops` resolve names there once) it also carries the field's
/// [`FieldId`], so that dedup and the index find the field without comparing text; made from a
/// bare name it is unresolved, and those stages look it up by name. One pointer to clone;
/// equality and hashing go by the name.
#[derive(Clone)]
pub struct Field(Arc<FieldInner>);

struct FieldInner {
    id: Option<FieldId>,
    name: Box<str>,
}

impl Field {
    /// An unresolved field called `name`.
    pub fn new(name: &str) -> Field {
        Field(Arc::new(FieldInner {
            id: None,
            name: name.into(),
        }))
    }

    /// The name, as ops and queries spell it.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The id the field was resolved to, if it was (see [`FieldIds::id`] for trusting it).
    pub fn id(&self) -> Option<FieldId> {
        self.0.id
    }
}

impl std::ops::Deref for Field {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0.name
    }
}

impl PartialEq for Field {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.name == other.0.name
    }
}

impl Eq for Field {}

impl std::hash::Hash for Field {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.name.hash(h);
    }
}

impl PartialEq<str> for Field {
    fn eq(&self, other: &str) -> bool {
        *self.0.name == *other
    }
}

impl PartialEq<Arc<str>> for Field {
    fn eq(&self, other: &Arc<str>) -> bool {
        *self.0.name == **other
    }
}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0.name, f)
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.name)
    }
}

impl From<&str> for Field {
    fn from(name: &str) -> Field {
        Field::new(name)
    }
}

impl Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.name)
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        std::borrow::Cow::<'de, str>::deserialize(d).map(|name| Field::new(&name))
    }
}

/// A schema's field names, numbered once: filter names in declaration order, then the sort
/// names that are not also filter names. Every stage builds its tables by these ids; the
/// [`Field`]s handed out here carry them.
#[derive(Clone, Debug, Default)]
pub struct FieldIds {
    fields: Vec<Field>,
    roles: Vec<FieldRef>,
}

impl FieldIds {
    /// The ids of `schema`'s fields.
    pub fn new(schema: &Schema) -> FieldIds {
        let mut ids = FieldIds::default();
        let names = schema.filters.iter().map(|f| &f.name);
        for name in names.chain(schema.sorts.iter().map(|s| &s.name)) {
            if ids.lookup(name).is_none() {
                let id = FieldId(u32::try_from(ids.fields.len()).expect("fewer than 2^32 fields"));
                ids.fields.push(Field(Arc::new(FieldInner {
                    id: Some(id),
                    name: (**name).into(),
                })));
                ids.roles.push(schema.field(name));
            }
        }
        ids
    }

    /// The field called `name`: this table's resolved [`Field`], or an unresolved one for a name
    /// the schema does not have.
    pub fn resolve(&self, name: &str) -> Field {
        match self.lookup(name) {
            Some(id) => self.fields[id.index()].clone(),
            None => Field::new(name),
        }
    }

    /// The id of `field` here. A field resolved by this table (or by one built from the same
    /// schema) is found by its id, with one check that the id names it; any other by its name.
    pub fn id(&self, field: &Field) -> Option<FieldId> {
        if let Some(id) = field.id()
            && let Some(mine) = self.fields.get(id.index())
            && mine == field
        {
            return Some(id);
        }
        self.lookup(field.name())
    }

    /// The id of the field called `name`.
    pub fn lookup(&self, name: &str) -> Option<FieldId> {
        self.fields
            .iter()
            .position(|f| f.name() == name)
            .map(|i| FieldId(i as u32))
    }

    /// The field with id `id`.
    pub fn field(&self, id: FieldId) -> &Field {
        &self.fields[id.index()]
    }

    /// Which filter and/or sort field id `id` is.
    pub fn roles(&self, id: FieldId) -> FieldRef {
        self.roles[id.index()]
    }

    /// How many fields there are (ids are `0..len`).
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True for a schema without fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Every field with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (FieldId, &Field)> {
        self.fields.iter().map(|f| (f.id().expect("resolved"), f))
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
    /// Multi-value fields that join tables feed (their rows outlive an entity's row): a `delete`
    /// of the entity leaves them (see [`Schema::deleted_with_slot`]).
    pub join_tables: Vec<Arc<str>>,
}

impl Schema {
    /// Builds a schema without joins, checking names and widths.
    pub fn new(filters: Vec<FilterField>, sorts: Vec<SortField>) -> Result<Self, SchemaError> {
        let schema = Schema {
            join_tables: Vec::new(),
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

    /// Per filter field, whether an entity's `delete` takes its slot out of the field: every
    /// field but the multi-value ones that join tables feed ([`Schema::join_tables`]) and the
    /// multi-value targets of joins linked through those (they follow the kept link). A join
    /// table's rows outlive the entity's row, and SQL joins them to a row re-inserted under the
    /// same id; everything else is the entity row's own.
    pub fn deleted_with_slot(&self) -> Vec<bool> {
        let mut kept: Vec<bool> = self
            .filters
            .iter()
            .map(|f| f.kind == FilterKind::Multi && self.join_tables.contains(&f.name))
            .collect();
        loop {
            let mut changed = false;
            for j in &self.joins {
                if !self.filter(&j.link).is_some_and(|l| kept[l]) {
                    continue;
                }
                for t in j.targets.iter().filter_map(|t| self.filter(t)) {
                    if self.filters[t].kind == FilterKind::Multi && !kept[t] {
                        kept[t] = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                return kept.into_iter().map(|k| !k).collect();
            }
        }
    }

    /// Numbers this schema's field names (see [`FieldIds`]).
    pub fn field_ids(&self) -> FieldIds {
        FieldIds::new(self)
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

    #[test]
    fn a_delete_leaves_join_table_fields_and_what_follows_them() {
        let mut s = Schema::from_pairs(
            &[
                ("postId", FilterKind::Single),
                ("mvIds", FilterKind::Multi),
                ("bases", FilterKind::Multi),
                ("labels", FilterKind::Multi),
                ("flag", FilterKind::Bool),
            ],
            &[],
        )
        .unwrap();
        s.join_tables = vec![Arc::from("mvIds")];
        let s = s
            .with_joins(vec![
                Join {
                    link: Arc::from("mvIds"),
                    targets: vec![Arc::from("bases")],
                },
                Join {
                    link: Arc::from("postId"),
                    targets: vec![Arc::from("labels")],
                },
            ])
            .unwrap();
        // postId and flag are the row's; mvIds a join table's, bases follows it; labels follows
        // the row's own link.
        assert_eq!(s.deleted_with_slot(), vec![true, false, false, true, true]);
    }
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

    #[test]
    fn field_ids_number_each_name_once_and_trust_only_their_own() {
        let s = Schema::from_pairs(
            &[("a", FilterKind::Single), ("id", FilterKind::Single)],
            &[("id", 32), ("s", 8)],
        )
        .unwrap();
        let ids = s.field_ids();
        let names: Vec<&str> = ids.iter().map(|(_, f)| f.name()).collect();
        assert_eq!(names, ["a", "id", "s"]);
        let id = ids.lookup("id").unwrap();
        assert_eq!(ids.resolve("id").id(), Some(id));
        assert_eq!(
            ids.roles(id),
            FieldRef {
                filter: Some(1),
                sort: Some(0)
            }
        );
        assert_eq!(ids.roles(ids.lookup("s").unwrap()).sort, Some(1));
        assert_eq!(ids.resolve("nope").id(), None);
        assert_eq!(ids.id(&Field::new("s")), ids.lookup("s"));
        // Another schema's field carries an id that names a different field here: found by name.
        let other = Schema::from_pairs(&[("s", FilterKind::Single)], &[]).unwrap();
        let foreign = other.field_ids().resolve("s");
        assert_eq!(foreign.id(), other.field_ids().lookup("s"));
        assert_ne!(foreign.id(), ids.lookup("s"));
        assert_eq!(ids.id(&foreign), ids.lookup("s"));
        // A table built again from the same schema agrees with the first.
        assert_eq!(s.field_ids().id(&ids.resolve("s")), ids.lookup("s"));
        // Fields compare and hash by name, and travel as plain strings.
        assert_eq!(foreign, Field::new("s"));
        let json = serde_json::to_string(&ids.resolve("a")).unwrap();
        assert_eq!(json, "\"a\"");
        let back: Field = serde_json::from_str(&json).unwrap();
        assert_eq!((back.name(), back.id()), ("a", None));
    }
}
