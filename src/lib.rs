//! pgroar keeps a live, queryable roaring-bitmap index of PostgreSQL tables by consuming
//! logical replication.
//!
//! Pipeline stages, one module each: [`source`] (the replication session: slot checks, the
//! stream into the WAL, acknowledgements, catalog reads), [`decode`] (pgoutput bytes → messages,
//! no I/O), [`translate`] (row changes + config → ops, with a local SQL expression evaluator),
//! [`ops`] (the deltas and their JSON form), [`filter`] (the filter language of queries and
//! `queryOpSet`), [`wal`] (the CRC-checked, LSN-keyed ops log), [`dedup`] (per-batch
//! collapsing), [`sink`] (the coalescing writer), [`index`] (bitmaps, queries, joins, the bulk
//! accumulator, checkpoints), [`pipeline`] (the running pipeline), [`bootstrap`] (the
//! snapshot-consistent dump) and [`server`] (`pgroar run`: HTTP queries, status, metrics).
//! [`status`] holds what the stages report; [`config`] reads the TOML configuration; `cluster`
//! (feature `test-utils`) starts throwaway Postgres clusters for tests, and `fixtures` (same
//! feature) holds the image-feed schema tests and benchmarks share. `docs/architecture.md`
//! shows the modules by layer.
#![warn(missing_docs)]

pub mod bootstrap;
#[cfg(any(feature = "test-utils", feature = "demo"))]
pub mod cluster;
pub mod config;
pub mod dataset;
pub mod decode;
pub mod dedup;
pub mod failpoint;
pub mod filter;
#[cfg(any(test, feature = "test-utils"))]
pub mod fixtures;
pub mod forward;
pub(crate) mod hash;
pub mod index;
pub mod lsn;
pub mod ops;
pub mod oracle;
pub mod pipeline;
pub mod replicate;
pub mod schema;
pub mod server;
pub mod sink;
pub mod source;
pub mod status;
pub mod translate;
pub mod triggers;
pub mod wal;

pub use lsn::{Lsn, WalKey};

/// The process allocator. Bootstraps and the apply loop allocate and free many small buffers
/// (bitmap containers, per-row values) across threads; mimalloc does that faster than the
/// system allocator (see `docs/benchmarks.md`). Declared here, it serves every binary built on
/// this crate: `pgroar`, the tests and the benchmarks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
