//! pgroar keeps a live, queryable roaring-bitmap index of PostgreSQL tables by consuming
//! logical replication.
//!
//! Pipeline stages, one module each: [`source`] (the replication session: slot checks, the
//! stream into the WAL, acknowledgements), [`decode`] (pgoutput bytes → messages, no I/O),
//! [`translate`] (row changes + config → ops, with a local SQL expression evaluator), [`ops`]
//! (the deltas and their JSON form), [`filter`] (the filter language of queries and `queryOpSet`), [`wal`] (the CRC-checked, LSN-keyed ops log), [`dedup`]
//! (per-batch collapsing), [`sink`] (the coalescing writer and the bulk accumulator), [`index`]
//! (bitmaps, queries, checkpoints), [`pipeline`] (the apply loop and `pgroar run`) and
//! [`server`] (HTTP queries, status, metrics). [`config`] reads the TOML configuration and
//! [`cluster`] starts throwaway Postgres clusters for tests and the demo.
#![warn(missing_docs)]

pub mod bootstrap;
pub mod cluster;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod filter;
pub(crate) mod hash;
pub mod index;
pub mod lsn;
pub mod ops;
pub mod pipeline;
pub mod schema;
pub mod server;
pub mod sink;
pub mod source;
pub mod status;
pub mod translate;
pub mod wal;

pub use lsn::{Lsn, WalKey};

/// The process allocator. Bootstraps and the apply loop allocate and free many small buffers
/// (bitmap containers, per-row values) across threads; mimalloc does that faster than the
/// system allocator (see `docs/benchmarks.md`). Declared here, it serves every binary built on
/// this crate: `pgroar`, the tests and the benchmarks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
