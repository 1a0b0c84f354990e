//! How the index answers: filter evaluation (`eval`), sorted pages and cursors (`search`), and
//! the sort-layer walks they share (`slices`).

pub(crate) mod eval;
pub mod search;
pub(crate) mod slices;
