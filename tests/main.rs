//! The integration suite: one binary, so one throwaway Postgres cluster serves every test.

mod it;
