//! The writer's private per-slot columns: each single/bool filter field's current key (as a
//! code) and each sort field's current value.
//!
//! They answer "what is this slot's value now" when the stream carries no old value (default
//! replica identity) and make a delete O(fields). They are not part of snapshots; a checkpoint
//! load rebuilds them from the bitmaps. Columns are paged (2^16 slots a page, allocated on first
//! write of a non-zero value), so a stray slot near `u32::MAX` costs one page, not 16 GiB. A page
//! stores its values in 1, 2 or 4 bytes each, widening when a larger value arrives: most filter
//! fields have a handful of keys, and a column 4× smaller keeps more of it in cache.

use super::keymap::KeyHashMap;
use super::keys::Key;
use super::prefetch;
use super::size::{map_bytes, vec_bytes};

/// Bits of a slot that select its page.
pub(crate) const PAGE_BITS: u32 = 16;
/// Slots per page.
pub(crate) const PAGE: usize = 1 << PAGE_BITS;

/// One page of a column, as narrow as its largest value allows.
#[derive(Clone, Debug)]
enum Page {
    U8(Box<[u8]>),
    U16(Box<[u16]>),
    U32(Box<[u32]>),
}

impl Page {
    /// A zeroed page wide enough for `v`.
    fn for_value(v: u32) -> Page {
        if v <= u32::from(u8::MAX) {
            Page::U8(vec![0; PAGE].into_boxed_slice())
        } else if v <= u32::from(u16::MAX) {
            Page::U16(vec![0; PAGE].into_boxed_slice())
        } else {
            Page::U32(vec![0; PAGE].into_boxed_slice())
        }
    }

    fn get(&self, o: usize) -> u32 {
        match self {
            Page::U8(p) => u32::from(p[o]),
            Page::U16(p) => u32::from(p[o]),
            Page::U32(p) => p[o],
        }
    }

    fn set(&mut self, o: usize, v: u32) {
        match self {
            Page::U8(p) => match u8::try_from(v) {
                Ok(v) => p[o] = v,
                Err(_) => {
                    *self = self.widen(v);
                    self.set(o, v);
                }
            },
            Page::U16(p) => match u16::try_from(v) {
                Ok(v) => p[o] = v,
                Err(_) => {
                    *self = self.widen(v);
                    self.set(o, v);
                }
            },
            Page::U32(p) => p[o] = v,
        }
    }

    /// A copy of this page wide enough for `v`.
    fn widen(&self, v: u32) -> Page {
        let mut wide = Page::for_value(v);
        for o in 0..PAGE {
            let x = self.get(o);
            if x != 0 {
                wide.set(o, x);
            }
        }
        wide
    }
}

/// A sparse `u32` per slot, 0 by default.
#[derive(Clone, Debug, Default)]
pub(crate) struct Column {
    pages: Vec<Option<Page>>,
}

impl Column {
    /// Heap bytes of the column: its page table and pages, at their widths.
    pub(crate) fn heap_bytes(&self) -> u64 {
        let pages: u64 = self
            .pages
            .iter()
            .flatten()
            .map(|p| match p {
                Page::U8(_) => vec_bytes::<u8>(PAGE),
                Page::U16(_) => vec_bytes::<u16>(PAGE),
                Page::U32(_) => vec_bytes::<u32>(PAGE),
            })
            .sum();
        vec_bytes::<Option<Page>>(self.pages.capacity()) + pages
    }

    /// The slot's value (0 when never written).
    pub(crate) fn get(&self, slot: u32) -> u32 {
        let (p, o) = ((slot >> PAGE_BITS) as usize, slot as usize & (PAGE - 1));
        match self.pages.get(p) {
            Some(Some(page)) => page.get(o),
            _ => 0,
        }
    }

    /// Starts loading the slot's value into cache without waiting for it (a no-op off x86-64).
    #[inline]
    pub(crate) fn prefetch(&self, slot: u32) {
        let (p, o) = ((slot >> PAGE_BITS) as usize, slot as usize & (PAGE - 1));
        if let Some(Some(page)) = self.pages.get(p) {
            match page {
                Page::U8(p) => prefetch::line(p[o..].as_ptr()),
                Page::U16(p) => prefetch::line(p[o..].as_ptr()),
                Page::U32(p) => prefetch::line(p[o..].as_ptr()),
            }
        }
    }

    /// Stores the slot's value.
    pub(crate) fn set(&mut self, slot: u32, v: u32) {
        let (p, o) = ((slot >> PAGE_BITS) as usize, slot as usize & (PAGE - 1));
        if p >= self.pages.len() {
            if v == 0 {
                return;
            }
            self.pages.resize_with(p + 1, || None);
        }
        match &mut self.pages[p] {
            Some(page) => page.set(o, v),
            None if v == 0 => {}
            slot @ None => {
                let mut page = Page::for_value(v);
                page.set(o, v);
                *slot = Some(page);
            }
        }
    }
}

impl Column {
    /// Whether the page of `slot`s `page << 16 ..` holds no value yet.
    pub(crate) fn page_is_empty(&self, page: u32) -> bool {
        !matches!(self.pages.get(page as usize), Some(Some(_)))
    }

    /// Puts a whole page of values in place of an empty one (as narrow as its values allow).
    pub(crate) fn put_page(&mut self, page: u32, values: &[u32]) {
        debug_assert!(self.page_is_empty(page) && values.len() == PAGE);
        let max = values.iter().copied().max().unwrap_or(0);
        if max == 0 {
            return;
        }
        let p = page as usize;
        if p >= self.pages.len() {
            self.pages.resize_with(p + 1, || None);
        }
        self.pages[p] = Some(if max <= u32::from(u8::MAX) {
            Page::U8(values.iter().map(|&v| v as u8).collect())
        } else if max <= u32::from(u16::MAX) {
            Page::U16(values.iter().map(|&v| v as u16).collect())
        } else {
            Page::U32(values.into())
        });
    }
}

/// A column being built from scratch (a load): whole plain pages, each allocated on its first
/// value (a stray slot near `u32::MAX` costs one page, as in the column itself), put in place
/// at the end as narrow as each page allows. Much faster per slot than [`Column::set`].
#[derive(Default)]
pub(crate) struct ColumnBuilder {
    pages: Vec<Option<Box<[u32]>>>,
}

impl ColumnBuilder {
    /// `slot`'s value, its page allocated if it is the first.
    #[inline]
    pub(crate) fn cell(&mut self, slot: u32) -> &mut u32 {
        let p = (slot >> PAGE_BITS) as usize;
        if p >= self.pages.len() {
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| vec![0; PAGE].into_boxed_slice());
        &mut page[slot as usize & (PAGE - 1)]
    }

    /// The built column.
    pub(crate) fn build(self) -> Column {
        let mut col = Column::default();
        for (p, page) in self.pages.iter().enumerate() {
            if let Some(page) = page {
                col.put_page(p as u32, page);
            }
        }
        col
    }
}

/// Code of "no value" in a filter column.
pub(crate) const NONE: u32 = 0;
/// Code of NULL in a filter column.
pub(crate) const NULL: u32 = 1;

/// Codes from here on stand for integer keys directly: `DIRECT + i` is `Key::Int(i)`.
const DIRECT: u32 = 1 << 31;

/// Keys a code table holds before it codes integer keys directly (its codes then still fit in
/// 16 bits).
const TABLE_MAX: usize = (1 << 16) - 2;

/// The direct code of `k`: non-negative integers below 2^31.
fn direct(k: &Key) -> Option<u32> {
    match *k {
        Key::Int(i) => u32::try_from(i)
            .ok()
            .filter(|&i| i < DIRECT)
            .map(|i| DIRECT + i),
        Key::Str(_) => None,
    }
}

/// The codes of a field's keys (append-only; codes start at 2). The first 2^16 − 2 keys get the
/// next free code, so a field of few keys has narrow codes (a column of 1 or 2 bytes a slot);
/// past that, codes need 4 bytes anyway and integer keys are coded directly, without an entry
/// (an id field of 1.5M keys kept ≈ 56 bytes a key in the table: 84 MiB at 10M images).
#[derive(Clone, Debug, Default)]
pub(crate) struct CodeTable {
    keys: Vec<Key>,
    codes: KeyHashMap<u32>,
}

impl CodeTable {
    /// Heap bytes of the table: its keys and their codes.
    pub(crate) fn heap_bytes(&self) -> u64 {
        vec_bytes::<Key>(self.keys.capacity()) + map_bytes::<Key, u32>(self.codes.capacity())
    }

    /// Whether keys without an entry are coded directly.
    fn full(&self) -> bool {
        self.keys.len() >= TABLE_MAX
    }

    /// The code of `k`, assigning one if new.
    pub(crate) fn intern(&mut self, k: Key) -> u32 {
        if let Some(c) = self.code(&k) {
            return c;
        }
        // Table codes stay below DIRECT: at most 2^16 integer keys and the text keys (their
        // dictionary ids are u32) and integers out of direct range.
        let c = u32::try_from(self.keys.len() + 2)
            .ok()
            .filter(|&c| c < DIRECT)
            .expect("fewer than 2^31 keys without a direct code");
        self.keys.push(k);
        self.codes.insert(k, c);
        c
    }

    /// The code of `k`, if it has one.
    pub(crate) fn code(&self, k: &Key) -> Option<u32> {
        match self.codes.get(k) {
            Some(&c) => Some(c),
            None if self.full() => direct(k),
            None => None,
        }
    }

    /// The key of a code ≥ 2.
    pub(crate) fn key(&self, code: u32) -> Option<Key> {
        if code >= DIRECT {
            return Some(Key::Int(i64::from(code - DIRECT)));
        }
        code.checked_sub(2)
            .and_then(|i| self.keys.get(i as usize))
            .copied()
    }
}

/// A single/bool field's column with its code table.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyColumn {
    /// Code per slot: [`NONE`], [`NULL`] or a code of `table`.
    pub col: Column,
    /// Key ↔ code.
    pub table: CodeTable,
}

impl KeyColumn {
    /// Heap bytes of the column and its code table.
    pub(crate) fn heap_bytes(&self) -> u64 {
        self.col.heap_bytes() + self.table.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_widen_and_keep_their_values() {
        let mut c = Column::default();
        c.set(5, 200);
        c.set(6, 1);
        assert!(matches!(c.pages[0], Some(Page::U8(_))));
        c.set(7, 70_000);
        assert!(matches!(c.pages[0], Some(Page::U32(_))));
        c.set(PAGE as u32, 300);
        assert!(matches!(c.pages[1], Some(Page::U16(_))));
        c.set(6, 0);
        assert_eq!(
            (c.get(5), c.get(6), c.get(7), c.get(8), c.get(PAGE as u32)),
            (200, 0, 70_000, 0, 300)
        );
    }

    #[test]
    fn columns_are_sparse_and_default_to_zero() {
        let mut c = Column::default();
        assert_eq!(c.get(u32::MAX), 0);
        c.set(u32::MAX, 0);
        assert!(c.pages.is_empty(), "writing zero allocates nothing");
        c.set(u32::MAX, 9);
        c.set(3, 4);
        assert_eq!((c.get(u32::MAX), c.get(3), c.get(4)), (9, 4, 0));
        assert_eq!(c.pages.iter().filter(|p| p.is_some()).count(), 2);
    }

    #[test]
    fn whole_pages_go_in_narrow() {
        let mut c = Column::default();
        let mut values = vec![0u32; PAGE];
        values[3] = 7;
        c.put_page(2, &values);
        assert!(matches!(c.pages[2], Some(Page::U8(_))));
        assert!(!c.page_is_empty(2) && c.page_is_empty(1) && c.page_is_empty(9));
        values[4] = 70_000;
        c.put_page(5, &values);
        assert!(matches!(c.pages[5], Some(Page::U32(_))));
        c.put_page(6, &vec![0; PAGE]);
        assert!(c.page_is_empty(6), "a page of zeros stays unallocated");
        let at = |p: u32, o: u32| c.get(p << PAGE_BITS | o);
        assert_eq!((at(2, 3), at(2, 4), at(5, 4), at(5, 3)), (7, 0, 70_000, 7));
    }

    #[test]
    fn past_2_16_keys_integers_are_coded_directly() {
        let mut t = CodeTable::default();
        let codes: Vec<u32> = (0..100_000).map(|i| t.intern(Key::Int(i * 3))).collect();
        assert!(codes[..TABLE_MAX].iter().all(|&c| c < DIRECT));
        assert!(codes[TABLE_MAX..].iter().all(|&c| c >= DIRECT));
        assert_eq!(codes[TABLE_MAX], DIRECT + 3 * TABLE_MAX as u32);
        for (i, &c) in codes.iter().enumerate() {
            assert_eq!(t.key(c), Some(Key::Int(i as i64 * 3)));
            assert_eq!(t.intern(Key::Int(i as i64 * 3)), c, "codes are stable");
        }
        // An integer never seen has its direct code already; the others still get entries.
        assert_eq!(t.code(&Key::Int(1)), Some(DIRECT + 1));
        let (neg, text) = (t.intern(Key::Int(-5)), t.intern(Key::Str(7)));
        assert!(neg < DIRECT && text < DIRECT && neg != text);
        assert_eq!(
            (t.key(neg), t.key(text)),
            (Some(Key::Int(-5)), Some(Key::Str(7)))
        );
        assert_eq!(t.intern(Key::Int(i64::from(DIRECT))), TABLE_MAX as u32 + 4);
        assert_eq!(
            t.keys.len(),
            TABLE_MAX + 3,
            "the table stops growing with integers"
        );
    }

    #[test]
    fn code_tables_skip_the_sentinels() {
        let mut t = CodeTable::default();
        let a = t.intern(Key::Int(5));
        assert!(a >= 2);
        assert_eq!(t.intern(Key::Int(5)), a);
        assert_eq!(t.key(a), Some(Key::Int(5)));
        assert_eq!(t.key(NULL), None);
        assert_eq!(t.code(&Key::Str(0)), None);
    }
}
