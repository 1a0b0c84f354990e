//! After a checkpoint's bitmaps are read: the writer's per-slot columns rebuilt from them (each
//! single/bool filter field's code per slot, each sort field's value per slot). Each column is
//! filled into plain pages first (a store per bit, through roaring's internal iteration), then
//! put in place page by page, one field per rayon task. Does no I/O.

use std::path::Path;

use rayon::prelude::*;

use super::CheckpointError;
use crate::index::store::columns::{Column, NONE, NULL, PAGE, PAGE_BITS};
use crate::index::{Index, State};

/// Builds the writer around a loaded state, rebuilding the per-slot columns.
pub(super) fn rebuild(state: State, path: &Path) -> Result<Index, CheckpointError> {
    let mut index = Index::from_state(state);
    // Each column from its bitmaps into plain pages first (a store per bit), then put in place
    // page by page; the fields in parallel.
    let state = &index.state;
    index
        .key_cols
        .par_iter_mut()
        .enumerate()
        .try_for_each(|(fi, kc)| {
            let Some(kc) = kc else { return Ok(()) };
            let fs = &state.filters[fi];
            let mut codes = FlatPages::new();
            let mut place = |slot: u32, code: u32| {
                let cell = flat_cell(&mut codes, slot);
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
            put_pages(&mut kc.col, &codes);
            result
        })?;
    index
        .sort_cols
        .par_iter_mut()
        .enumerate()
        .for_each(|(si, col)| {
            let mut values = FlatPages::new();
            for (b, layer) in state.sorts[si].iter().enumerate() {
                layer.for_each_slot(|slot| *flat_cell(&mut values, slot) |= 1 << b);
            }
            put_pages(col, &values);
        });
    Ok(index)
}

/// Per-slot values being rebuilt: whole column pages, each allocated on its first value (a
/// stray slot near `u32::MAX` costs one page, as in the column itself).
type FlatPages = Vec<Option<Box<[u32]>>>;

/// `slot`'s cell, its page allocated if it is the first.
#[inline]
fn flat_cell(pages: &mut FlatPages, slot: u32) -> &mut u32 {
    let p = (slot >> PAGE_BITS) as usize;
    if p >= pages.len() {
        pages.resize_with(p + 1, || None);
    }
    let page = pages[p].get_or_insert_with(|| vec![0; PAGE].into_boxed_slice());
    &mut page[slot as usize & (PAGE - 1)]
}

/// Puts the rebuilt pages into a fresh column.
fn put_pages(col: &mut Column, pages: &FlatPages) {
    for (p, page) in pages.iter().enumerate() {
        if let Some(page) = page {
            col.put_page(p as u32, page);
        }
    }
}
