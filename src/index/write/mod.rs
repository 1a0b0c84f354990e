//! How the index changes: ops applied one by one (`apply`), joins (`join`), table-wide
//! truncates (`truncate`), and the dump path — the bulk accumulator the bootstrap's workers
//! fill (`bulk`) and its merge into the index (`merge`).

pub(crate) mod apply;
pub mod bulk;
pub(crate) mod join;
pub(crate) mod merge;
pub(crate) mod truncate;
