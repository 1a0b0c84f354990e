//! Checkpoints: the whole index (bitmaps, dictionaries, applied cursor) in one file.
//!
//! Layout of `index.ckpt`, version 2 (integers little-endian):
//!
//! | part | encoding |
//! |---|---|
//! | magic | 8 bytes `PGROARCK` |
//! | version | u32 = 2 |
//! | applied | u64 commit LSN, u32 seq |
//! | schema | u32 n, n × (str name, u8 kind: 0 single, 1 multi, 2 bool); u32 m, m × (str name, u8 bits); u32 j, j × (str link, u32 t, t × str target) |
//! | alive | bits |
//! | per filter field, schema order | u32 d, d × str (dictionary, id order); bits (NULL); u64 k, k × (key, bits) |
//! | per sort field, schema order | `bits` × bits (layer 0 first) |
//! | per join, schema order | u64 p, p × (key, t × cell): the parent rows, keys in the link field's key space |
//! | crc | u32 CRC32 of every byte before it |
//!
//! `str` = u32 length + UTF-8 bytes; `bits` = u32 chunk count, then per chunk u32 chunk id
//! (slot >> 20), u32 byte length, and the chunk's bitmap in roaring's portable serialization;
//! `key` = u8 tag 0 int / 1 text, then i64 or u32 dictionary id; `cell` = u8 tag 0 NULL / 1 int /
//! 2 text, then i64 or u32 dictionary id (of the target field) unless NULL, then u32 sort value.
//! Version 1 (no joins in the schema, no parent rows) is still read for a schema without joins.
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
const VERSION: u32 = 2;
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
        "checkpoint {path} has format version {found}, this build reads {VERSION}; the index must be re-bootstrapped"
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
        let sections: Vec<Section> = std::iter::once(Section::Bits(&s.alive))
            .chain(s.filters.iter().map(Section::Filter))
            .chain(s.sorts.iter().flat_map(|l| l.iter().map(Section::Bits)))
            .chain(s.joins.iter().map(Section::Parents))
            .collect();
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
                w.put(&part?.0)?;
            }
        }
        Ok(())
    }
}

/// Reads the body, never past the bytes left before the trailing CRC.
struct Reader<'p> {
    inner: BufReader<File>,
    left: u64,
    path: &'p Path,
}

impl Reader<'_> {
    fn corrupt(&self, detail: impl Into<String>) -> CheckpointError {
        CheckpointError::Corrupt {
            path: self.path.to_path_buf(),
            detail: detail.into(),
        }
    }

    fn mismatch(&self, detail: String) -> CheckpointError {
        CheckpointError::SchemaMismatch {
            path: self.path.to_path_buf(),
            detail,
        }
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, CheckpointError> {
        if n > self.left {
            return Err(self.corrupt(format!("{what}: {n} bytes claimed, {} left", self.left)));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|source| CheckpointError::Io {
                path: self.path.to_path_buf(),
                source,
            })?;
        self.left -= n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], CheckpointError> {
        let b = self.bytes(N as u64, what)?;
        Ok(b.try_into().expect("read exactly N bytes"))
    }

    fn u8(&mut self, what: &str) -> Result<u8, CheckpointError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn str(&mut self, what: &str) -> Result<String, CheckpointError> {
        let n = self.u32(what)?;
        let b = self.bytes(u64::from(n), what)?;
        String::from_utf8(b).map_err(|_| self.corrupt(format!("{what}: not UTF-8")))
    }

    fn bits(&mut self, what: &str) -> Result<Bits, CheckpointError> {
        let n = self.u32(what)?;
        let mut chunks = Vec::new();
        for _ in 0..n {
            let id = self.u32(what)?;
            let len = self.u32(what)?;
            let buf = self.bytes(u64::from(len), what)?;
            let mut slice = &buf[..];
            let bm = RoaringBitmap::deserialize_from(&mut slice)
                .map_err(|e| self.corrupt(format!("{what}: bitmap does not decode: {e}")))?;
            if !slice.is_empty() {
                return Err(self.corrupt(format!("{what}: bytes left after a bitmap")));
            }
            chunks.push((id, bm));
        }
        Bits::from_chunks(chunks)
            .ok_or_else(|| self.corrupt(format!("{what}: chunks out of order or out of range")))
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks the trailing CRC of the whole file in one streaming pass.
fn check_crc(path: &Path, file: &File, len: u64) -> Result<(), CheckpointError> {
    if len < 4 {
        return Err(CheckpointError::Corrupt {
            path: path.to_path_buf(),
            detail: "shorter than a CRC".into(),
        });
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut left = len - 4;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        r.read_exact(&mut buf[..n]).map_err(io_at(path))?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    let mut crc = [0u8; 4];
    r.read_exact(&mut crc).map_err(io_at(path))?;
    let (stored, computed) = (u32::from_le_bytes(crc), h.finalize());
    if stored != computed {
        return Err(CheckpointError::Crc {
            path: path.to_path_buf(),
            stored,
            computed,
        });
    }
    Ok(())
}

impl Index {
    /// Loads the checkpoint in `dir` for `schema`; `None` when there is none. The writer's
    /// columns are rebuilt from the bitmaps.
    pub fn load_checkpoint(
        dir: &Path,
        schema: Arc<Schema>,
    ) -> Result<Option<Index>, CheckpointError> {
        let mut index = Index::load_checkpoint_lazy(dir, schema)?;
        if let Some(index) = index.as_mut() {
            index.finish_load();
        }
        Ok(index)
    }

    /// [`Index::load_checkpoint`], but returns as soon as the index can be queried: the sort
    /// columns and link keys the writer needs are rebuilt by [`Index::finish_load`] (or the first
    /// write).
    ///
    /// A newest checkpoint that is missing (killed between two renames) or damaged (CRC,
    /// structure, a read error) gives way to the previous one: the damaged file is moved to
    /// [`DAMAGED_CHECKPOINT_FILE`] and the WAL replay starts from the previous checkpoint. A
    /// checkpoint of another version or schema is an error either way.
    pub fn load_checkpoint_lazy(
        dir: &Path,
        schema: Arc<Schema>,
    ) -> Result<Option<Index>, CheckpointError> {
        remove_leftovers(dir);
        crate::failpoint::hit("checkpoint-load");
        // Small pages while the index is built (see [`crate::index::huge_pages`]).
        let _small_pages = crate::index::huge_pages::NoHugePages::new();
        let newest = Index::load_file(&dir.join(CHECKPOINT_FILE), Arc::clone(&schema));
        let damage = match newest {
            Ok(Some(index)) => return Ok(Some(index)),
            Ok(None) => None,
            Err(e @ (CheckpointError::Version { .. } | CheckpointError::SchemaMismatch { .. })) => {
                return Err(e);
            }
            Err(e) => Some(e),
        };
        let previous = Index::load_file(&dir.join(PREVIOUS_CHECKPOINT_FILE), schema);
        match (damage, previous) {
            (None, previous) => previous,
            (Some(damage), Ok(Some(index))) => {
                tracing::warn!(
                    error = %damage,
                    "the newest checkpoint is damaged; loading the previous one and replaying the WAL after it"
                );
                let from = dir.join(CHECKPOINT_FILE);
                let to = dir.join(DAMAGED_CHECKPOINT_FILE);
                std::fs::rename(&from, &to).map_err(io_at(&from))?;
                Ok(Some(index))
            }
            (Some(damage), _) => Err(damage),
        }
    }

    /// The applied cursor in the header of the newest checkpoint in `dir`, read without loading
    /// it; `None` when there is none or its header does not read (loading then decides). Not
    /// checked against the CRC: a hint for what to do while the checkpoint loads.
    pub fn peek_checkpoint(dir: &Path) -> Option<WalKey> {
        let path = dir.join(CHECKPOINT_FILE);
        let file = File::open(&path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut r = Reader {
            inner: BufReader::with_capacity(64, file),
            left: len.checked_sub(4)?,
            path: &path,
        };
        read_header(&mut r).ok().map(|(_, applied)| applied)
    }

    /// Loads one checkpoint file; `None` when it does not exist.
    fn load_file(path: &Path, schema: Arc<Schema>) -> Result<Option<Index>, CheckpointError> {
        let path = path.to_path_buf();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let len = file.metadata().map_err(io_at(&path))?.len();
        check_crc(&path, &file, len)?;
        let mut body = file;
        io::Seek::rewind(&mut body).map_err(io_at(&path))?;
        let mut r = Reader {
            inner: BufReader::with_capacity(1 << 20, body),
            left: len - 4,
            path: &path,
        };
        let state = read_state(&mut r, schema)?;
        if r.left != 0 {
            return Err(r.corrupt(format!("{} bytes after the last bitmap", r.left)));
        }
        rebuild::rebuild(state, &path).map(Some)
    }
}

fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn read_state(r: &mut Reader<'_>, schema: Arc<Schema>) -> Result<State, CheckpointError> {
    let (version, applied) = read_header(r)?;
    read_fields(r, &schema)?;
    if version == VERSION_1 {
        if !schema.joins.is_empty() {
            return Err(r.mismatch(
                "it was written before joins were kept (format version 1), and the config \
                 declares joins"
                    .into(),
            ));
        }
    } else {
        read_joins(r, &schema)?;
    }
    let alive = r.bits("alive")?;
    let filters = schema
        .filters
        .iter()
        .map(|f| read_filter(r, f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sorts = Vec::with_capacity(schema.sorts.len());
    for f in &schema.sorts {
        let mut layers = Vec::with_capacity(usize::from(f.bits));
        for _ in 0..f.bits {
            layers.push(r.bits("sort layer")?);
        }
        sorts.push(Arc::new(layers));
    }
    let mut joins = Vec::with_capacity(schema.joins.len());
    if version != VERSION_1 {
        for j in &schema.joins {
            joins.push(read_parents(r, &schema, j, &filters)?);
        }
    }
    Ok(State {
        schema,
        alive,
        filters,
        sorts,
        joins,
        applied,
    })
}

/// The magic, the format version (one this build reads) and the applied cursor.
fn read_header(r: &mut Reader<'_>) -> Result<(u32, WalKey), CheckpointError> {
    if &r.array::<8>("magic")? != MAGIC {
        return Err(r.corrupt("not a pgroar checkpoint (bad magic)"));
    }
    let version = r.u32("version")?;
    if version != VERSION && version != VERSION_1 {
        return Err(CheckpointError::Version {
            path: r.path.to_path_buf(),
            found: version,
        });
    }
    let applied = WalKey::new(Lsn(r.u64("applied LSN")?), r.u32("applied seq")?);
    Ok((version, applied))
}

/// Checks the checkpoint's filter and sort fields against the configured ones.
fn read_fields(r: &mut Reader<'_>, schema: &Schema) -> Result<(), CheckpointError> {
    let n = r.u32("filter count")?;
    if n as usize != schema.filters.len() {
        return Err(r.mismatch(format!(
            "{n} filter fields in the checkpoint, {} configured",
            schema.filters.len()
        )));
    }
    for f in &schema.filters {
        let (name, kind) = (r.str("filter name")?, r.u8("filter kind")?);
        if name != *f.name || kind != kind_code(f.kind) {
            return Err(r.mismatch(format!(
                "checkpoint filter field {name:?} (kind {kind}) where {:?} ({:?}) is configured",
                f.name, f.kind
            )));
        }
    }
    let m = r.u32("sort count")?;
    if m as usize != schema.sorts.len() {
        return Err(r.mismatch(format!(
            "{m} sort fields in the checkpoint, {} configured",
            schema.sorts.len()
        )));
    }
    for f in &schema.sorts {
        let (name, bits) = (r.str("sort name")?, r.u8("sort bits")?);
        if name != *f.name || bits != f.bits {
            return Err(r.mismatch(format!(
                "checkpoint sort field {name:?} ({bits} bits) where {:?} ({} bits) is configured",
                f.name, f.bits
            )));
        }
    }
    Ok(())
}

/// One filter field's dictionary, NULL bitmap and value bitmaps.
fn read_filter(r: &mut Reader<'_>, f: &FilterField) -> Result<FilterState, CheckpointError> {
    let mut dict = Dict::default();
    for _ in 0..r.u32("dictionary size")? {
        let t = r.str("dictionary entry")?;
        if dict.push(Arc::from(t)).is_none() {
            return Err(r.corrupt(format!("field {:?}: duplicate dictionary entry", f.name)));
        }
    }
    let null = r.bits("NULL bitmap")?;
    // Gathered, then built in one go: a key at a time rebuilds its shard each time.
    let mut entries: Vec<(Key, Bits)> = Vec::new();
    for _ in 0..r.u64("key count")? {
        let key = match r.u8("key tag")? {
            0 => Key::Int(i64::from_le_bytes(r.array("int key")?)),
            1 => {
                let id = r.u32("text key")?;
                if id as usize >= dict.len() {
                    return Err(r.corrupt(format!(
                        "field {:?}: dictionary id {id} out of range",
                        f.name
                    )));
                }
                Key::Str(id)
            }
            t => return Err(r.corrupt(format!("field {:?}: key tag {t}", f.name))),
        };
        let bits = r.bits("value bitmap")?;
        if !bits.is_empty() {
            entries.push((key, bits));
        }
    }
    entries.sort_unstable_by_key(|(k, _)| *k);
    if entries.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(r.corrupt(format!("field {:?}: duplicate key", f.name)));
    }
    let mut values = KeyMap::default();
    values.or_many(entries);
    Ok(FilterState {
        values,
        null,
        dict: Arc::new(dict),
    })
}

/// Checks the checkpoint's joins against the configured ones.
fn read_joins(r: &mut Reader<'_>, schema: &Schema) -> Result<(), CheckpointError> {
    let n = r.u32("join count")?;
    if n as usize != schema.joins.len() {
        return Err(r.mismatch(format!(
            "{n} joins in the checkpoint, {} configured",
            schema.joins.len()
        )));
    }
    for j in &schema.joins {
        let link = r.str("join link")?;
        let t = r.u32("join target count")?;
        let mut targets = Vec::new();
        for _ in 0..t.min(1024) {
            targets.push(r.str("join target")?);
        }
        let same = link == *j.link
            && targets.len() == j.targets.len()
            && targets.iter().zip(&j.targets).all(|(a, b)| **a == **b);
        if !same || t as usize != targets.len() {
            return Err(r.mismatch(format!(
                "checkpoint join on {link:?} giving {targets:?} where the join on {:?} giving \
                     {:?} is configured",
                j.link, j.targets
            )));
        }
    }
    Ok(())
}

/// Reads one join's parent rows (checking every key and dictionary id).
fn read_parents(
    r: &mut Reader<'_>,
    schema: &Schema,
    join: &crate::schema::Join,
    filters: &[FilterState],
) -> Result<Parents, CheckpointError> {
    let link = schema
        .filter(&join.link)
        .expect("the schema checked its joins");
    let dict_len = |fi: usize| filters[fi].dict.len();
    let text = |r: &Reader<'_>, fi: usize, id: u32| {
        if (id as usize) < dict_len(fi) {
            Ok(Key::Str(id))
        } else {
            Err(r.corrupt(format!(
                "join on {:?}: dictionary id {id} out of range",
                join.link
            )))
        }
    };
    let mut parents = Parents::default();
    for _ in 0..r.u64("parent count")? {
        let key = match r.u8("parent key tag")? {
            0 => Key::Int(i64::from_le_bytes(r.array("parent key")?)),
            1 => {
                let id = r.u32("parent key")?;
                text(r, link, id)?
            }
            t => return Err(r.corrupt(format!("join on {:?}: key tag {t}", join.link))),
        };
        let mut row = Vec::with_capacity(join.targets.len());
        for target in &join.targets {
            let fi = schema.filter(target);
            let cell_key = match (r.u8("cell tag")?, fi) {
                (0, _) => None,
                (1, _) => Some(Key::Int(i64::from_le_bytes(r.array("cell key")?))),
                (2, Some(fi)) => {
                    let id = r.u32("cell key")?;
                    Some(text(r, fi, id)?)
                }
                (t, _) => return Err(r.corrupt(format!("join target {target:?}: cell tag {t}"))),
            };
            row.push(Cell {
                key: cell_key,
                sort: r.u32("cell sort value")?,
            });
        }
        if parents.get(&key).is_some() {
            return Err(r.corrupt(format!("join on {:?}: duplicate parent", join.link)));
        }
        parents.set(key, Some(row.into()));
    }
    Ok(parents)
}

mod rebuild;
#[cfg(test)]
mod tests;
