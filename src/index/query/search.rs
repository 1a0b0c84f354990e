//! Queries on snapshots: filter, sort, limit, and cursor paging.
//!
//! Without a sort, results come in ascending slot order. With one, they are ordered by
//! `(value, slot)` in the requested direction (ties broken by slot id in the same direction).
//! Top-k is a bit-sliced selection over the sort layers; only the ≤ k selected slots have their
//! values read back and sorted. A cursor is an opaque string naming the sort and the last
//! `(value, slot)` returned; the next page holds what comes strictly after it, so pages neither
//! skip nor repeat rows that do not change in between.

use serde::{Deserialize, Serialize};

use crate::WalKey;

use super::{eval, slices};
use crate::filter::{Filter, FilterError};
use crate::index::Snapshot;
use crate::index::store::bits::Bits;

/// The largest page a query may ask for.
pub const MAX_LIMIT: usize = 1_000_000;

pub use super::slices::Order;

/// Which sort field orders the results, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sort {
    /// A sort field's name.
    pub field: String,
    /// Direction.
    pub order: Order,
}

/// A query on a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// A filter in the filter grammar; `None` selects every live slot.
    #[serde(default)]
    pub filter: Option<String>,
    /// Sort; `None` means ascending slot ids.
    #[serde(default)]
    pub sort: Option<Sort>,
    /// Page size, at most [`MAX_LIMIT`]; 0 returns only the total.
    pub limit: usize,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One page of results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResult {
    /// Slot ids of this page, in result order.
    pub ids: Vec<u32>,
    /// Live slots matching the filter (ignoring cursor and limit).
    pub total: u64,
    /// Cursor of the next page; `None` when there is none.
    pub next_cursor: Option<String>,
    /// The cursor of the last WAL record the snapshot reflects.
    pub applied: WalKey,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The filter does not parse, names an unknown field, or compares a field with a value it
    /// cannot hold.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The sort names no sort field.
    #[error("unknown sort field {0:?}")]
    UnknownSortField(String),
    /// `limit` is above [`MAX_LIMIT`].
    #[error("limit {limit} is above the maximum of {max}")]
    LimitTooLarge {
        /// Asked for.
        limit: usize,
        /// Allowed.
        max: usize,
    },
    /// The cursor cannot be used.
    #[error("invalid cursor")]
    Cursor(#[from] CursorError),
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor this index wrote (bad encoding, checksum or version).
    #[error("malformed cursor")]
    Malformed,
    /// A cursor of a query with another sort (or none).
    #[error("cursor belongs to a query sorted by {cursor}, this query is sorted by {query}")]
    OtherSort {
        /// The cursor's sort.
        cursor: String,
        /// The query's sort.
        query: String,
    },
}

const CURSOR_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    /// `None` for an unsorted query.
    sort: Option<(String, Order)>,
    value: u32,
    slot: u32,
}

fn describe(sort: &Option<(String, Order)>) -> String {
    match sort {
        None => "slot id".into(),
        Some((f, o)) => format!("{f} {}", if *o == Order::Asc { "asc" } else { "desc" }),
    }
}

impl Cursor {
    fn encode(&self) -> String {
        let mut b = vec![CURSOR_VERSION];
        let (order, field) = match &self.sort {
            None => (0u8, ""),
            Some((f, Order::Asc)) => (1, f.as_str()),
            Some((f, Order::Desc)) => (2, f.as_str()),
        };
        b.push(order);
        b.extend_from_slice(&self.value.to_le_bytes());
        b.extend_from_slice(&self.slot.to_le_bytes());
        b.extend_from_slice(field.as_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn decode(s: &str) -> Result<Cursor, CursorError> {
        if !s.len().is_multiple_of(2) || s.len() > 2 * 1024 || !s.is_ascii() {
            return Err(CursorError::Malformed);
        }
        let b: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| CursorError::Malformed)?;
        if b.len() < 14 {
            return Err(CursorError::Malformed);
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc || body[0] != CURSOR_VERSION {
            return Err(CursorError::Malformed);
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let field = std::str::from_utf8(&body[10..]).map_err(|_| CursorError::Malformed)?;
        let sort = match body[1] {
            0 if field.is_empty() => None,
            1 => Some((field.to_string(), Order::Asc)),
            2 => Some((field.to_string(), Order::Desc)),
            _ => return Err(CursorError::Malformed),
        };
        Ok(Cursor {
            sort,
            value: u32_at(2),
            slot: u32_at(6),
        })
    }
}

impl Snapshot {
    /// Runs a query: filter, optional sort, a page of `limit` ids after `cursor`.
    pub fn query(&self, q: &Query) -> Result<QueryResult, QueryError> {
        self.query_until(q, None)
    }

    /// [`Snapshot::query`], abandoned with [`FilterError::Deadline`] once `deadline` passes.
    pub fn query_until(
        &self,
        q: &Query,
        deadline: Option<std::time::Instant>,
    ) -> Result<QueryResult, QueryError> {
        if q.limit > MAX_LIMIT {
            return Err(QueryError::LimitTooLarge {
                limit: q.limit,
                max: MAX_LIMIT,
            });
        }
        let state = &*self.state;
        let sort = match &q.sort {
            None => None,
            Some(s) => {
                let si = state
                    .schema
                    .sort(&s.field)
                    .ok_or_else(|| QueryError::UnknownSortField(s.field.clone()))?;
                Some((si, s.order))
            }
        };
        let cursor = match &q.cursor {
            None => None,
            Some(text) => {
                let c = Cursor::decode(text)?;
                let want = q.sort.as_ref().map(|s| (s.field.clone(), s.order));
                if c.sort != want {
                    return Err(CursorError::OtherSort {
                        cursor: describe(&c.sort),
                        query: describe(&want),
                    }
                    .into());
                }
                if let Some((si, _)) = sort
                    && c.value > state.schema.sorts[si].max_value()
                {
                    return Err(CursorError::Malformed.into());
                }
                Some(c)
            }
        };
        let matched = self.matching_until(q.filter.as_deref(), deadline)?;
        let total = matched.len();
        let mut result = QueryResult {
            ids: Vec::new(),
            total,
            next_cursor: None,
            applied: state.applied,
        };
        if q.limit == 0 {
            return Ok(result);
        }
        match sort {
            None => {
                let rest = match &cursor {
                    None => matched,
                    Some(c) if c.slot == u32::MAX => Bits::new(),
                    Some(c) => matched.restrict(c.slot + 1..=u32::MAX),
                };
                result.ids = rest.iter().take(q.limit).collect();
                if rest.len() > q.limit as u64 {
                    let slot = *result.ids.last().expect("limit > 0 and more rows remain");
                    result.next_cursor = Some(
                        Cursor {
                            sort: None,
                            value: 0,
                            slot,
                        }
                        .encode(),
                    );
                }
            }
            Some((si, order)) => {
                let layers = &state.sorts[si];
                let rest = match &cursor {
                    None => matched,
                    Some(c) => slices::after(layers, &matched, c.value, c.slot, order),
                };
                let slots = slices::top_k(layers, &rest, q.limit, order);
                let values = slices::values_of(layers, &slots);
                let mut rows: Vec<(u32, u32)> = values.into_iter().zip(slots).collect();
                rows.sort_unstable();
                if order == Order::Desc {
                    rows.reverse();
                }
                result.ids = rows.iter().map(|&(_, s)| s).collect();
                if rest.len() > q.limit as u64 {
                    let &(value, slot) = rows.last().expect("limit > 0 and more rows remain");
                    let field = state.schema.sorts[si].name.to_string();
                    result.next_cursor = Some(
                        Cursor {
                            sort: Some((field, order)),
                            value,
                            slot,
                        }
                        .encode(),
                    );
                }
            }
        }
        Ok(result)
    }

    /// Number of live slots matching `filter` (all live slots when `None`).
    pub fn count(&self, filter: Option<&str>) -> Result<u64, QueryError> {
        Ok(self.matching(filter)?.len())
    }

    /// The live slots matching `filter` (all live slots when `None`).
    pub(crate) fn matching(&self, filter: Option<&str>) -> Result<Bits, QueryError> {
        self.matching_until(filter, None)
    }

    fn matching_until(
        &self,
        filter: Option<&str>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Bits, QueryError> {
        Ok(match filter {
            None => self.state.alive.clone(),
            Some(text) => {
                let f = Filter::parse(text).map_err(FilterError::from)?;
                eval::evaluate(&self.state, &f, deadline)?
            }
        })
    }

    /// Every slot, live or not, whose filter field `fi` holds the value `value` stands for (a
    /// join's children; the state has no pending deleted slots while a dump loads).
    pub(crate) fn linked(&self, fi: usize, value: &crate::filter::Literal) -> Bits {
        let kind = self.state.schema.filters[fi].kind;
        let fs = &self.state.filters[fi];
        let key =
            match crate::index::store::keys::filter_key(kind, &crate::ops::literal_value(value)) {
                Ok(crate::index::store::keys::RawKey::Int(i)) => {
                    Some(crate::index::store::keys::Key::Int(i))
                }
                Ok(crate::index::store::keys::RawKey::Str(t)) => {
                    fs.dict.get(&t).map(crate::index::store::keys::Key::Str)
                }
                Ok(crate::index::store::keys::RawKey::Null) | Err(_) => None,
            };
        key.and_then(|k| fs.values.get(&k).cloned())
            .unwrap_or_default()
    }

    /// The live slots matching a parsed filter.
    pub(crate) fn matching_filter(&self, f: &Filter) -> Result<Bits, FilterError> {
        eval::evaluate(&self.state, f, None)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::index::Index;
    use crate::ops::{EntityOps, Op};
    use crate::schema::{FilterKind, Schema};

    fn snapshot() -> Snapshot {
        let schema =
            Schema::from_pairs(&[("type", FilterKind::Single)], &[("at", 16), ("id", 32)]).unwrap();
        let mut ix = Index::new(Arc::new(schema));
        for slot in 0..100i64 {
            let t = if slot % 4 == 0 { "video" } else { "image" };
            ix.apply(&EntityOps::alive(
                slot,
                vec![
                    Op::set("type", t),
                    Op::set("at", slot % 10),
                    Op::set("id", slot),
                ],
            ));
        }
        ix.snapshot()
    }

    fn q(
        filter: Option<&str>,
        sort: Option<(&str, Order)>,
        limit: usize,
        cursor: Option<String>,
    ) -> Query {
        Query {
            filter: filter.map(String::from),
            sort: sort.map(|(f, order)| Sort {
                field: f.into(),
                order,
            }),
            limit,
            cursor,
        }
    }

    #[test]
    fn sorted_pages_walk_the_whole_order_once() {
        let snap = snapshot();
        for order in [Order::Asc, Order::Desc] {
            let mut want: Vec<(i64, u32)> = (0..100u32)
                .filter(|s| s % 4 != 0)
                .map(|s| (i64::from(s % 10), s))
                .collect();
            want.sort();
            if order == Order::Desc {
                want.reverse();
            }
            let want: Vec<u32> = want.into_iter().map(|(_, s)| s).collect();
            let (mut got, mut cursor, mut pages) = (Vec::new(), None, 0);
            loop {
                let r = snap
                    .query(&q(
                        Some("type eq image"),
                        Some(("at", order)),
                        7,
                        cursor.take(),
                    ))
                    .unwrap();
                assert_eq!(r.total, 75);
                got.extend(r.ids);
                pages += 1;
                match r.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(got, want);
            assert_eq!(pages, 11);
        }
        let r = snap.query(&q(None, None, 3, None)).unwrap();
        assert_eq!(r.ids, vec![0, 1, 2]);
        let r = snap.query(&q(None, None, 200, r.next_cursor)).unwrap();
        assert_eq!(r.ids, (3..100).collect::<Vec<_>>());
        assert_eq!(r.next_cursor, None);
        let r = snap
            .query(&q(Some("at gte 8"), Some(("id", Order::Desc)), 0, None))
            .unwrap();
        assert_eq!((r.ids.len(), r.total, r.next_cursor), (0, 20, None));
    }

    #[test]
    fn bad_queries_are_typed_errors() {
        let snap = snapshot();
        assert!(matches!(
            snap.query(&q(None, None, MAX_LIMIT + 1, None)),
            Err(QueryError::LimitTooLarge { .. })
        ));
        assert_eq!(
            snap.query(&q(None, Some(("type", Order::Asc)), 1, None)),
            Err(QueryError::UnknownSortField("type".into()))
        );
        assert!(matches!(
            snap.query(&q(Some("zz eq 1"), None, 1, None)),
            Err(QueryError::Filter(FilterError::UnknownField(f))) if f == "zz"
        ));
        assert!(matches!(
            snap.query(&q(Some("type eq"), None, 1, None)),
            Err(QueryError::Filter(FilterError::Parse(_)))
        ));
        assert!(matches!(
            snap.count(Some("at gt 'x'")),
            Err(QueryError::Filter(FilterError::BadValue { .. }))
        ));
        let page = snap
            .query(&q(None, Some(("at", Order::Asc)), 1, None))
            .unwrap();
        assert!(matches!(
            snap.query(&q(
                None,
                Some(("at", Order::Desc)),
                1,
                page.next_cursor.clone()
            )),
            Err(QueryError::Cursor(CursorError::OtherSort { .. }))
        ));
        assert!(matches!(
            snap.query(&q(None, None, 1, page.next_cursor)),
            Err(QueryError::Cursor(CursorError::OtherSort { .. }))
        ));
        assert_eq!(
            snap.query(&q(None, None, 1, Some("nonsense".into()))),
            Err(QueryError::Cursor(CursorError::Malformed))
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_tampering() {
        let c = Cursor {
            sort: Some(("existedAt".into(), Order::Desc)),
            value: 1_700_000_000,
            slot: 42,
        };
        let text = c.encode();
        assert_eq!(Cursor::decode(&text), Ok(c));
        let unsorted = Cursor {
            sort: None,
            value: 0,
            slot: 9,
        };
        assert_eq!(Cursor::decode(&unsorted.encode()), Ok(unsorted));
        let mut bad = text.clone().into_bytes();
        bad[6] = if bad[6] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            Cursor::decode(std::str::from_utf8(&bad).unwrap()),
            Err(CursorError::Malformed)
        );
        for junk in ["", "zz", "abc", "00", &"0".repeat(40), "é1"] {
            assert_eq!(Cursor::decode(junk), Err(CursorError::Malformed), "{junk}");
        }
    }
}
