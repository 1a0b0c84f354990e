//! Helpers the integration tests share (no tests here): `feed` runs the `pgroar` binary
//! against a random workload and compares its answers with SQL; `follow` waits for an
//! in-process pipeline to stream and to catch up with the server.

pub mod feed;
pub mod follow;
pub mod proxy;

/// A two-thread runtime for tests that drive async code from a synchronous harness (proptest).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
