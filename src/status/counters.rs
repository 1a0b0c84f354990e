//! The declared table of the pipeline's counters: one row per counter, from which `/status`
//! (its `*_total` keys and its `bad_data` object) and `/metrics` are generated.
//!
//! Adding a counter: a [`Counter`] variant, its row in [`COUNTERS`], and the line in its
//! owner's `counts()` (`IndexStats`, `TranslateStats`) or the `Status::add` call that counts it.
//! Nothing else names it.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One counter of [`COUNTERS`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Ops handed to the sink.
    OpsApplied,
    /// Source transactions applied.
    Transactions,
    /// Row changes translated.
    RowsTranslated,
    /// Source tables truncated.
    Truncates,
    /// Join-table TRUNCATEs not applied (another table feeds the field).
    TruncatesNotApplied,
    /// Replication connections re-established.
    Reconnects,
    /// Batches of `POST /ops` received through the stream and written to the WAL.
    OpsBatches,
    /// Batches the forwarding sink's remote acknowledged.
    ForwardedBatches,
    /// Forwarding attempts that failed and were retried.
    ForwardRetries,
    /// Times the stream paused because the index fell behind by `wal.max_backlog_bytes`.
    BacklogPauses,
    /// Rows whose slot id was NULL, unknown or not an integer.
    BadSlotIds,
    /// Fields whose expression failed on the row.
    EvalErrors,
    /// Column values that did not parse as their type.
    UnparsableValues,
    /// Entity ids outside `0..=u32::MAX`.
    SkippedIds,
    /// Sort values clamped into range.
    ClampedValues,
    /// Values a field cannot hold.
    BadValues,
    /// Ops naming an unknown field.
    UnknownFields,
    /// `queryOpSet` queries that did not parse or named an unknown field.
    BadQueries,
    /// `queryOpSet`s and `truncate`s nested in a `queryOpSet`.
    NestedQueryOpSets,
    /// Writes to a joined field other than through its join.
    JoinedFieldWrites,
    /// Ops messages (our prefix) in the stream that did not decode.
    BadOpsMessages,
}

/// How a counter is exported.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Group {
    /// A top-level `/status` key and a metric of its own.
    Total,
    /// A key of `/status`'s `bad_data` and a `kind` of `pgroar_bad_data_total`.
    BadData,
}

/// One row of the table.
#[derive(Copy, Clone, Debug)]
pub struct CounterSpec {
    /// The counter.
    pub counter: Counter,
    /// How it is exported.
    pub group: Group,
    /// Its key in `/status` (top level for totals, in `bad_data` otherwise).
    pub key: &'static str,
    /// Its Prometheus metric (`pgroar_bad_data_total` for every bad-data kind).
    pub metric: &'static str,
    /// Its `kind` label in `pgroar_bad_data_total`; `None` for totals.
    pub kind: Option<&'static str>,
    /// What it counts, in one line (the metric's help for totals).
    pub help: &'static str,
}

const fn total(
    counter: Counter,
    key: &'static str,
    metric: &'static str,
    help: &'static str,
) -> CounterSpec {
    CounterSpec {
        counter,
        group: Group::Total,
        key,
        metric,
        kind: None,
        help,
    }
}

const fn bad(
    counter: Counter,
    key: &'static str,
    kind: &'static str,
    help: &'static str,
) -> CounterSpec {
    CounterSpec {
        counter,
        group: Group::BadData,
        key,
        metric: BAD_DATA_METRIC,
        kind: Some(kind),
        help,
    }
}

/// The metric every bad-data kind is a `kind` of.
pub const BAD_DATA_METRIC: &str = "pgroar_bad_data_total";

/// Help of [`BAD_DATA_METRIC`].
pub const BAD_DATA_HELP: &str =
    "Bad data skipped or clamped (by the translator or the index writer), by kind";

/// Every counter, in [`Counter`] order.
pub const COUNTERS: [CounterSpec; 21] = [
    total(
        Counter::OpsApplied,
        "ops_applied_total",
        "pgroar_ops_applied_total",
        "Ops applied to the index",
    ),
    total(
        Counter::Transactions,
        "transactions_total",
        "pgroar_transactions_total",
        "Source transactions applied to the index",
    ),
    total(
        Counter::RowsTranslated,
        "rows_translated_total",
        "pgroar_rows_translated_total",
        "Row changes of source tables translated into ops",
    ),
    total(
        Counter::Truncates,
        "truncates_total",
        "pgroar_truncates_total",
        "TRUNCATEs of source tables received",
    ),
    total(
        Counter::TruncatesNotApplied,
        "truncates_not_applied_total",
        "pgroar_truncates_not_applied_total",
        "Join-table TRUNCATEs not applied because another table also feeds the field (a re-bootstrap restores exactness)",
    ),
    total(
        Counter::Reconnects,
        "reconnects_total",
        "pgroar_reconnects_total",
        "Replication connections re-established",
    ),
    total(
        Counter::OpsBatches,
        "ops_batches_total",
        "pgroar_ops_batches_total",
        "Batches of POST /ops received through the stream and written to the WAL",
    ),
    total(
        Counter::ForwardedBatches,
        "forwarded_batches_total",
        "pgroar_forwarded_batches_total",
        "Batches the forwarding sink's remote acknowledged",
    ),
    total(
        Counter::ForwardRetries,
        "forward_retries_total",
        "pgroar_forward_retries_total",
        "Forwarding attempts that failed and were retried",
    ),
    total(
        Counter::BacklogPauses,
        "backlog_pauses_total",
        "pgroar_backlog_pauses_total",
        "Times the stream paused because the index fell behind the WAL by wal.max_backlog_bytes",
    ),
    bad(
        Counter::BadSlotIds,
        "bad_slot_ids",
        "bad_slot_id",
        "Rows skipped because their slot id was NULL, unknown or not an integer",
    ),
    bad(
        Counter::EvalErrors,
        "eval_errors",
        "eval_error",
        "Fields skipped because a track_fields expression or join filter failed on the row",
    ),
    bad(
        Counter::UnparsableValues,
        "unparsable_values",
        "unparsable_value",
        "Column values that did not parse as their column's type",
    ),
    bad(
        Counter::SkippedIds,
        "skipped_ids",
        "skipped_id",
        "Entity ids that do not fit a slot (outside 0..=4294967295)",
    ),
    bad(
        Counter::ClampedValues,
        "clamped_values",
        "clamped_value",
        "Sort values clamped into range",
    ),
    bad(
        Counter::BadValues,
        "bad_values",
        "bad_value",
        "Values a field cannot hold",
    ),
    bad(
        Counter::UnknownFields,
        "unknown_fields",
        "unknown_field",
        "Ops naming an unknown field",
    ),
    bad(
        Counter::BadQueries,
        "bad_queries",
        "bad_query",
        "queryOpSet queries that did not parse or named an unknown field",
    ),
    bad(
        Counter::NestedQueryOpSets,
        "nested_query_op_sets",
        "nested_query_op_set",
        "Nested queryOpSets and truncates ignored",
    ),
    bad(
        Counter::JoinedFieldWrites,
        "joined_field_writes",
        "joined_field_write",
        "Ops that wrote a field following a join other than through it, skipped",
    ),
    bad(
        Counter::BadOpsMessages,
        "bad_ops_messages",
        "bad_ops_message",
        "Ops messages in the stream (POST /ops) that did not decode, skipped",
    ),
];

impl Counter {
    /// Its row of [`COUNTERS`].
    pub fn spec(self) -> &'static CounterSpec {
        &COUNTERS[self as usize]
    }
}

/// A value per counter (a reading of [`super::Status`], or a report's).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts([u64; COUNTERS.len()]);

impl Counts {
    /// The value of `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// Sets the value of `c`.
    pub fn set(&mut self, c: Counter, v: u64) {
        self.0[c as usize] = v;
    }

    /// Every counter of `group` with its value, in table order.
    pub fn of(&self, group: Group) -> impl Iterator<Item = (&'static CounterSpec, u64)> + '_ {
        COUNTERS
            .iter()
            .filter(move |s| s.group == group)
            .map(|s| (s, self.get(s.counter)))
    }
}

/// Totals as top-level keys, bad data as one `bad_data` object (flattened into a report).
impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (spec, v) in self.of(Group::Total) {
            map.serialize_entry(spec.key, &v)?;
        }
        let bad: BTreeMap<&str, u64> = self.of(Group::BadData).map(|(s, v)| (s.key, v)).collect();
        map.serialize_entry("bad_data", &bad)?;
        map.end()
    }
}

/// Reads what [`Serialize`] writes; keys it does not know are ignored, missing ones are 0.
impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: BTreeMap<String, serde_json::Value> = BTreeMap::deserialize(deserializer)?;
        let mut counts = Counts::default();
        let number = |v: &serde_json::Value, key: &str| {
            v.as_u64()
                .ok_or_else(|| D::Error::custom(format!("{key}: not a count")))
        };
        let bad = raw.get("bad_data");
        for spec in &COUNTERS {
            let v = match spec.group {
                Group::Total => raw.get(spec.key),
                Group::BadData => bad.and_then(|b| b.get(spec.key)),
            };
            if let Some(v) = v {
                counts.set(spec.counter, number(v, spec.key)?);
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_counter_order_with_unique_names() {
        let mut keys = std::collections::HashSet::new();
        for (i, spec) in COUNTERS.iter().enumerate() {
            assert_eq!(spec.counter as usize, i, "{spec:?}");
            assert!(keys.insert(spec.key), "{} twice", spec.key);
            assert_eq!(spec.kind.is_some(), spec.group == Group::BadData);
        }
    }

    #[test]
    fn the_operations_guide_lists_every_counter() {
        let guide = include_str!("../../docs/operations.md");
        for spec in &COUNTERS {
            let row = match spec.kind {
                None => format!("| `{}` | `{}` |", spec.key, spec.metric),
                Some(kind) => format!(
                    "| `bad_data.{}` | `{}{{kind=\"{kind}\"}}` |",
                    spec.key, spec.metric
                ),
            };
            assert!(guide.contains(&row), "docs/operations.md has no row {row}");
        }
    }

    #[test]
    fn counts_round_trip_through_json() {
        let mut c = Counts::default();
        for (i, spec) in COUNTERS.iter().enumerate() {
            c.set(spec.counter, i as u64 + 1);
        }
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(json["ops_applied_total"], 1);
        assert_eq!(json["bad_data"]["unparsable_values"], 13);
        assert_eq!(serde_json::from_value::<Counts>(json).unwrap(), c);
    }
}
