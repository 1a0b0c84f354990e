//! After a checkpoint's bitmaps are read: the writer's per-slot columns (each single/bool
//! filter field's code per slot, each sort field's value per slot) and the multi-value links'
//! per-slot keys, rebuilt from them. Each column is filled into plain pages first (a store per
//! bit, through roaring's internal iteration), then put in place page by page; one field per
//! rayon task, the link keys beside the key columns. Does no I/O.

use std::path::Path;

use rayon::prelude::*;

use super::CheckpointError;
use crate::index::store::columns::{Column, ColumnBuilder, KeyColumn, NONE, NULL};
use crate::index::write::join::LinkKeys;
use crate::index::{Index, State};

/// Builds the writer around a loaded state, rebuilding the per-slot columns.
pub(super) fn rebuild(state: State, path: &Path) -> Result<Index, CheckpointError> {
    let mut index = Index::from_state(state);
    // Each column from its bitmaps into plain pages first (a store per bit), then put in place
    // page by page; the fields, and the link keys beside them, in parallel.
    let state = &index.state;
    let links = &mut index.joins.links;
    let key_cols = &mut index.key_cols;
    let sort_cols = &mut index.sort_cols;
    let (columns, ()) = rayon::join(
        || key_columns(state, key_cols, path),
        || {
            links.par_iter_mut().enumerate().for_each(|(fi, l)| {
                if let Some(l) = l {
                    *l = LinkKeys::from_bitmaps(&state.filters[fi].values);
                }
            });
        },
    );
    columns?;
    sort_columns(state, sort_cols);
    Ok(index)
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
