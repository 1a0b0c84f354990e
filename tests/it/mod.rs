//! Integration test modules.

mod config;
mod pg_smoke;
mod wal_recovery;
mod index_model;
mod dedup_property;
mod sinks;
