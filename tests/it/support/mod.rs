//! Helpers the integration tests share (no tests here): `feed` runs the `pgroar` binary
//! against a random workload and compares its answers with SQL; `follow` waits for an
//! in-process pipeline to stream and to catch up with the server.

pub mod feed;
pub mod follow;
