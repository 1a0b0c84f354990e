//! Integration test modules.

mod cli;
mod config;
mod dedup_property;
mod index_model;
mod pg_smoke;
mod pgoutput_capture;
mod sinks;
mod wal_recovery;
mod server;
