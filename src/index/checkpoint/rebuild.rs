//! After a checkpoint's bitmaps are read: the writer's per-slot columns (each single/bool
//! filter field's code per slot, each sort field's value per slot) and the multi-value links'
//! per-slot keys, rebuilt from them. Each column is filled into plain pages first (a store per
//! bit, through roaring's internal iteration), then put in place page by page; one field per
//! rayon task. Does no I/O.
//!
//! In two steps: the load rebuilds the single/bool columns (which also find a corrupt
//! checkpoint: a slot in two keys of one field, so the previous checkpoint can be loaded
//! instead); the sort columns and link keys — half of a load's time, and needed only to write —
//! wait for [`Index::finish_load`], which the index writer runs once it starts while readers are
//! already served, and which every write runs first if nobody did. Readers never see the writer's
//! columns, so nothing they see depends on when the second step runs.

use std::path::Path;

use rayon::prelude::*;

use super::CheckpointError;
use crate::index::store::columns::{Column, ColumnBuilder, KeyColumn, NONE, NULL};
use crate::index::write::join::LinkKeys;
use crate::index::{Index, State};

/// Builds the writer around a loaded state, rebuilding the single/bool columns; the rest waits
/// for [`Index::finish_load`].
pub(super) fn rebuild(state: State, path: &Path) -> Result<Index, CheckpointError> {
    let mut index = Index::from_state(state);
    key_columns(&index.state, &mut index.key_cols, path)?;
    index.unfinished = true;
    Ok(index)
}

impl Index {
    /// Rebuilds what a checkpoint load left for later (see [`Index::load_checkpoint_lazy`]): the
    /// sort columns and the link keys, the fields in parallel. A no-op on any other index; every
    /// write runs it first.
    pub fn finish_load(&mut self) {
        if !std::mem::take(&mut self.unfinished) {
            return;
        }
        crate::failpoint::hit("checkpoint-finish");
        let started = std::time::Instant::now();
        let _small_pages = crate::index::huge_pages::NoHugePages::new();
        let state = &self.state;
        let links = &mut self.joins.links;
        let sort_cols = &mut self.sort_cols;
        rayon::join(
            || {
                links.par_iter_mut().enumerate().for_each(|(fi, l)| {
                    if let Some(l) = l {
                        *l = LinkKeys::from_bitmaps(&state.filters[fi].values);
                    }
                });
            },
            || sort_columns(state, sort_cols),
        );
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "the index writer's sort columns and link keys are rebuilt"
        );
    }
}

/// Each single/bool field's column from its bitmaps (a slot in two keys is corrupt).
fn key_columns(
    state: &State,
    key_cols: &mut [Option<KeyColumn>],
    path: &Path,
) -> Result<(), CheckpointError> {
    key_cols
        .par_iter_mut()
        .enumerate()
        .try_for_each(|(fi, kc)| {
            let Some(kc) = kc else { return Ok(()) };
            let fs = &state.filters[fi];
            let mut codes = ColumnBuilder::default();
            let mut place = |slot: u32, code: u32| {
                let cell = codes.cell(slot);
                if *cell != NONE {
                    return Err(CheckpointError::Corrupt {
                        path: path.to_path_buf(),
                        detail: format!(
                            "slot {slot} has two values in single-value field {:?}",
                            state.schema.filters[fi].name
                        ),
                    });
                }
                *cell = code;
                Ok(())
            };
            let mut result = Ok(());
            fs.null.for_each_slot(|slot| {
                if result.is_ok() {
                    result = place(slot, NULL);
                }
            });
            for (k, bits) in fs.values.iter() {
                let code = kc.table.intern(*k);
                bits.for_each_slot(|slot| {
                    if result.is_ok() {
                        result = place(slot, code);
                    }
                });
            }
            kc.col = codes.build();
            result
        })
}

/// Each sort field's column from its bit layers.
fn sort_columns(state: &State, sort_cols: &mut [Column]) {
    sort_cols.par_iter_mut().enumerate().for_each(|(si, col)| {
        let mut values = ColumnBuilder::default();
        for (b, layer) in state.sorts[si].iter().enumerate() {
            layer.for_each_slot(|slot| *values.cell(slot) |= 1 << b);
        }
        *col = values.build();
    });
}
