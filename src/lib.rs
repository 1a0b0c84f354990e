//! pgroar keeps a live, queryable roaring-bitmap index of PostgreSQL tables by consuming
//! logical replication.
//!
//! Pipeline stages, one module each: [`ops`] (the deltas and their JSON form), [`dedup`]
//! (per-batch collapsing), [`wal`] (the CRC-checked, LSN-keyed ops log), [`index`] (bitmaps,
//! queries, checkpoints) and [`sink`] (the coalescing writer and the bulk accumulator).
//! [`config`] reads the TOML configuration and [`cluster`] starts throwaway Postgres clusters
//! for tests and the demo.
#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod index;
pub mod lsn;
pub mod ops;
pub mod pipeline;
pub mod schema;
pub mod server;
pub mod sink;
pub mod source;
pub mod translate;
pub mod wal;

pub use lsn::{Lsn, WalKey};
