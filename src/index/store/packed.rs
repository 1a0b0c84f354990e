//! A bitmap write packed in one integer (slot, position in its log, set or clear), so that a
//! plain integer sort orders writes by slot and then by op order. Shared by the write log and
//! the bitmaps that apply its writes.

/// A bitmap write: `slot << 32 | seq << 1 | set`, where `seq` is the write's position in its
/// log, so a plain integer sort orders writes by slot and then by op order.
pub(crate) type Write = u64;

pub(crate) fn pack(slot: u32, seq: usize, set: bool) -> Write {
    // `seq` < the log's length, which the writer keeps below LIMIT + a few dozen, far below 2^31.
    u64::from(slot) << 32 | (seq as u64) << 1 | u64::from(set)
}

/// The slot of a logged write.
pub(crate) fn slot_of(w: Write) -> u32 {
    (w >> 32) as u32
}

/// Whether a logged write sets its bit.
pub(crate) fn sets(w: Write) -> bool {
    w & 1 == 1
}

/// Of writes sorted by slot then op order, the last write of each slot.
pub(crate) fn winners(writes: &[Write]) -> impl Iterator<Item = Write> + '_ {
    writes.iter().enumerate().filter_map(|(i, &w)| {
        let last = writes
            .get(i + 1)
            .is_none_or(|&next| slot_of(next) != slot_of(w));
        last.then_some(w)
    })
}
