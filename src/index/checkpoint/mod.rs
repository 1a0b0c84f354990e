//! Checkpoints: the whole index (bitmaps, dictionaries, applied cursor) in one file.
//!
//! Layout of `index.ckpt`, version 3 (integers little-endian):
//!
//! | part | encoding |
//! |---|---|
//! | magic | 8 bytes `PGROARCK` |
//! | version | u32 = 3 |
//! | applied | u64 commit LSN, u32 seq |
//! | schema | u32 n, n × (str name, u8 kind: 0 single, 1 multi, 2 bool); u32 m, m × (str name, u8 bits); u32 j, j × (str link, u32 t, t × str target) |
//! | alive | bits |
//! | per filter field, schema order | u32 d, d × str (dictionary, id order); bits (NULL); u64 k, k × (key, bits) |
//! | per sort field, schema order | `bits` × bits (layer 0 first) |
//! | per join, schema order | u64 p, p × (key, t × cell): the parent rows, keys in the link field's key space |
//! | sections | u32 s, s × u64: the file offset of each section above from alive on (alive, each filter field, each sort layer, each join), so that a load reads them in parallel |
//! | sections at | u64: the offset of the section table |
//! | crc | u32 CRC32 of every byte before it |
//!
//! `str` = u32 length + UTF-8 bytes; `bits` = u32 chunk count, then per chunk u32 chunk id
//! (slot >> 20), u32 byte length, and the chunk's bitmap in roaring's portable serialization;
//! `key` = u8 tag 0 int / 1 text, then i64 or u32 dictionary id; `cell` = u8 tag 0 NULL / 1 int /
//! 2 text, then i64 or u32 dictionary id (of the target field) unless NULL, then u32 sort value.
//! Version 2 (the same without the section table) is still read, one section after the other;
//! version 1 (no joins in the schema, no parent rows) too, for a schema without joins.
//!
//! Crash safety: the file is written to a temporary file in the same directory, fsynced, renamed
//! over `index.ckpt`, and the directory fsynced. A crash leaves the old checkpoint or the new one,
//! never a mix; a leftover temporary file is removed at the next load. Loading checks the CRC
//! first, then parses, checking every length and count against the bytes left before allocating.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::schema::{FilterField, FilterKind, Schema};
use crate::{Lsn, WalKey};

use super::store::bits::Bits;

use super::store::keymap::KeyMap;
use super::store::keys::{Dict, Key};
use super::write::join::{Cell, Parents};
use super::{FilterState, Index, Snapshot, State};

/// The checkpoint's file name inside the checkpoint directory.
pub const CHECKPOINT_FILE: &str = "index.ckpt";
/// The checkpoint before the newest, kept so that a damaged newest one falls back to it (and
/// the WAL after it, which the checkpointer keeps) instead of a re-bootstrap.
pub const PREVIOUS_CHECKPOINT_FILE: &str = "index.ckpt.prev";
/// Where a damaged newest checkpoint is moved once the previous one has been loaded instead.
pub const DAMAGED_CHECKPOINT_FILE: &str = "index.ckpt.damaged";
const TMP_PREFIX: &str = "index.ckpt.tmp";
const MAGIC: &[u8; 8] = b"PGROARCK";
const VERSION: u32 = 3;
/// The version before the section table, still read (sequentially).
const VERSION_2: u32 = 2;
/// The version before joins, still read for schemas without them.
const VERSION_1: u32 = 1;

/// Why a checkpoint could not be written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("checkpoint I/O on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An fsync of the checkpoint file or its directory failed: what reached the disk is
    /// unknown, so the pipeline stops rather than retry it.
    #[error(
        "fsync of checkpoint {path} failed: check the disk and restart (nothing is lost: the \
         previous checkpoint and the WAL after it are kept)"
    )]
    Sync {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file's CRC does not match its contents.
    #[error(
        "checkpoint {path} is corrupt (CRC {stored:#010x} stored, {computed:#010x} computed); the index must be re-bootstrapped"
    )]
    Crc {
        /// The file.
        path: PathBuf,
        /// CRC in the file.
        stored: u32,
        /// CRC of the contents.
        computed: u32,
    },
    /// Not a checkpoint, or structurally invalid although its CRC matches.
    #[error("checkpoint {path} is invalid ({detail}); the index must be re-bootstrapped")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A format version this build does not read.
    #[error(
        "checkpoint {path} has format version {found}, this build reads versions 1 to {VERSION}; the index must be re-bootstrapped"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The checkpoint was written for other index fields.
    #[error(
        "checkpoint {path} was written for a different index schema ({detail}); the index must be re-bootstrapped"
    )]
    SchemaMismatch {
        /// The file.
        path: PathBuf,
        /// The first difference.
        detail: String,
    },
}

fn kind_code(k: FilterKind) -> u8 {
    match k {
        FilterKind::Single => 0,
        FilterKind::Multi => 1,
        FilterKind::Bool => 2,
    }
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.crc.update(b);
        self.inner.write_all(b)
    }
}

/// A part of the checkpoint body, encoded into memory (parts encode in parallel).
#[derive(Default)]
struct Part(Vec<u8>);

impl Part {
    fn put(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    fn len(&mut self, n: usize) -> io::Result<()> {
        self.put(&len32(n)?.to_le_bytes());
        Ok(())
    }

    fn str(&mut self, s: &str) -> io::Result<()> {
        self.len(s.len())?;
        self.put(s.as_bytes());
        Ok(())
    }

    fn bits(&mut self, b: &Bits) -> io::Result<()> {
        let chunks: Vec<_> = b.chunks().collect();
        self.len(chunks.len())?;
        let mut buf = Vec::new();
        for (id, bm) in chunks {
            buf.clear();
            bm.serialize_into(&mut buf)?;
            self.put(&id.to_le_bytes());
            self.len(buf.len())?;
            self.put(&buf);
        }
        Ok(())
    }

    fn key(&mut self, k: Key) {
        match k {
            Key::Int(i) => {
                self.put(&[0]);
                self.put(&i.to_le_bytes());
            }
            Key::Str(id) => {
                self.put(&[1]);
                self.put(&id.to_le_bytes());
            }
        }
    }

    /// A join's parent rows (keys ascending, so equal states write equal bytes).
    fn parents(&mut self, parents: &Parents) {
        let mut rows: Vec<(&Key, &super::write::join::Row)> = parents.iter().collect();
        rows.sort_by_key(|(k, _)| **k);
        self.put(&(rows.len() as u64).to_le_bytes());
        for (k, row) in rows {
            self.key(*k);
            for c in row.iter() {
                match c.key {
                    None => self.put(&[0]),
                    Some(Key::Int(i)) => {
                        self.put(&[1]);
                        self.put(&i.to_le_bytes());
                    }
                    Some(Key::Str(id)) => {
                        self.put(&[2]);
                        self.put(&id.to_le_bytes());
                    }
                }
                self.put(&c.sort.to_le_bytes());
            }
        }
    }

    /// A filter field: its dictionary, NULL bitmap and key bitmaps (keys ascending).
    fn filter(&mut self, fs: &FilterState) -> io::Result<()> {
        self.len(fs.dict.len())?;
        for t in fs.dict.texts() {
            self.str(t)?;
        }
        self.bits(&fs.null)?;
        let mut entries: Vec<(&Key, &Bits)> =
            fs.values.iter().filter(|(_, b)| !b.is_empty()).collect();
        entries.sort_by_key(|(k, _)| **k);
        self.put(&(entries.len() as u64).to_le_bytes());
        for (k, b) in entries {
            self.key(*k);
            self.bits(b)?;
        }
        Ok(())
    }
}

/// What a [`Part`] holds.
enum Section<'a> {
    Bits(&'a Bits),
    Filter(&'a FilterState),
    Parents(&'a Parents),
}

fn len32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length above u32"))
}

impl Snapshot {
    /// Writes this snapshot as the checkpoint in `dir`, atomically replacing the previous one.
    pub fn write_checkpoint(&self, dir: &Path) -> Result<(), CheckpointError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { path, source }
        };
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(dir)
            .map_err(io_err(dir))?;
        let tmp_path = tmp.path().to_path_buf();
        {
            let mut w = CrcWriter {
                inner: BufWriter::with_capacity(1 << 20, tmp.as_file()),
                crc: crc32fast::Hasher::new(),
            };
            self.encode(&mut w).map_err(io_err(&tmp_path))?;
            let crc = w.crc.clone().finalize();
            w.inner
                .write_all(&crc.to_le_bytes())
                .map_err(io_err(&tmp_path))?;
            w.inner.flush().map_err(io_err(&tmp_path))?;
        }
        let sync_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Sync { path, source }
        };
        match crate::failpoint::io_error("checkpoint-fsync") {
            Some(e) => Err(e),
            None => tmp.as_file().sync_all(),
        }
        .map_err(sync_err(&tmp_path))?;
        let path = dir.join(CHECKPOINT_FILE);
        // The newest becomes the previous. Killed between the two renames, there is no newest
        // and the previous is loaded: the WAL after it is still there.
        let previous = dir.join(PREVIOUS_CHECKPOINT_FILE);
        match std::fs::rename(&path, &previous) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        tmp.persist(&path).map_err(|e| CheckpointError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(sync_err(dir))
    }

    fn encode<W: Write>(&self, w: &mut CrcWriter<W>) -> io::Result<()> {
        let cleaned = self.cleaned();
        let s = &*cleaned;
        let mut head = Part::default();
        head.put(MAGIC);
        head.put(&VERSION.to_le_bytes());
        head.put(&s.applied.lsn.0.to_le_bytes());
        head.put(&s.applied.seq.to_le_bytes());
        head.len(s.schema.filters.len())?;
        for f in &s.schema.filters {
            head.str(&f.name)?;
            head.put(&[kind_code(f.kind)]);
        }
        head.len(s.schema.sorts.len())?;
        for f in &s.schema.sorts {
            head.str(&f.name)?;
            head.put(&[f.bits]);
        }
        head.len(s.schema.joins.len())?;
        for j in &s.schema.joins {
            head.str(&j.link)?;
            head.len(j.targets.len())?;
            for t in &j.targets {
                head.str(t)?;
            }
        }
        w.put(&head.0)?;
        let mut at = head.0.len() as u64;
        let sections: Vec<Section> = std::iter::once(Section::Bits(&s.alive))
            .chain(s.filters.iter().map(Section::Filter))
            .chain(s.sorts.iter().flat_map(|l| l.iter().map(Section::Bits)))
            .chain(s.joins.iter().map(Section::Parents))
            .collect();
        let mut offsets = Vec::with_capacity(sections.len());
        // A few parts per thread at a time: memory holds a window, not the whole checkpoint.
        for window in sections.chunks(2 * rayon::current_num_threads()) {
            let parts: Vec<io::Result<Part>> = window
                .par_iter()
                .map(|section| {
                    let mut part = Part::default();
                    match section {
                        Section::Bits(b) => part.bits(b)?,
                        Section::Filter(fs) => part.filter(fs)?,
                        Section::Parents(p) => part.parents(p),
                    }
                    Ok(part)
                })
                .collect();
            for part in parts {
                let part = part?;
                offsets.push(at);
                at += part.0.len() as u64;
                w.put(&part.0)?;
            }
        }
        let mut table = Part::default();
        table.len(offsets.len())?;
        for o in offsets {
            table.put(&o.to_le_bytes());
        }
        table.put(&at.to_le_bytes());
        w.put(&table.0)
    }
}

mod read;
mod rebuild;
#[cfg(test)]
mod tests;
