//! The integration suite: one binary, so one throwaway Postgres cluster serves every test.

// A benchmark or test may unwrap: a failure is the run's answer.
#![allow(clippy::unwrap_used)]

mod it;
