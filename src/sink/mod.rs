//! Sinks: where deduped ops go.
//!
//! * [`coalescing`]: the steady-state path. A bounded channel into one writer thread that owns
//!   the [`crate::index::Index`], applies batches in arrival order and publishes immutable
//!   snapshots for readers.
//! * [`bulk`]: the snapshot-dump path. Per-thread accumulators sharing their columns, merged
//!   into the index; never through the WAL.

pub mod bulk;
pub mod coalescing;
