//! The sink: where deduped ops go in steady state.
//!
//! [`coalescing`]: a bounded channel into one writer thread that owns the
//! [`crate::index::Index`], applies batches in arrival order and publishes immutable snapshots
//! for readers. (The dump path's accumulator is the index's own, [`crate::index::bulk`].)

pub mod coalescing;
