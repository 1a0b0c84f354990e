//! Loading a checkpoint: the reader that checks every length against the bytes left, the CRC,
//! the fallback to the previous checkpoint, and the state read back field by field (the writer's
//! columns are rebuilt in `rebuild`).

use super::*;
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
