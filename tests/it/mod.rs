//! Integration test modules.

mod bootstrap;
mod cli;
mod config;
mod copy_formats;
mod crash;
mod dataset;
mod dedup_property;
mod demo;
mod expr_oracle;
mod faults;
mod fuzz_inputs;
mod index_model;
mod join_model;
mod joins;
mod layers;
mod migrations;
mod pg_smoke;
mod pgoutput_capture;
mod server;
mod sinks;
mod stream;
mod support;
mod translate;
mod triggers;
mod truncate;
mod wal_recovery;
