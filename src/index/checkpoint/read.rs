//! Loading a checkpoint: the reader that checks every length against the bytes left, the CRC,
//! the fallback to the previous checkpoint, and the state read back field by field (the writer's
//! columns are rebuilt in `rebuild`).

use super::*;
/// A file read from a position of its own (`pread`): readers in parallel share the one handle
/// whose CRC was checked.
struct FileAt<'f> {
    file: &'f File,
    pos: u64,
}

impl Read for FileAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads a range of the file, never past its end (at most the bytes before the trailing CRC).
struct Reader<'p> {
    inner: BufReader<FileAt<'p>>,
    left: u64,
    path: &'p Path,
}

impl<'p> Reader<'p> {
    /// A reader of the bytes `start..end` of `file` (at `path`).
    fn at(file: &'p File, path: &'p Path, start: u64, end: u64) -> Self {
        let left = end.saturating_sub(start);
        Reader {
            inner: BufReader::with_capacity(
                left.clamp(64, 1 << 20) as usize,
                FileAt { file, pos: start },
            ),
            left,
            path,
        }
    }

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
        let mut r = Reader::at(&file, &path, 0, len.checked_sub(4)?);
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
        let mut r = Reader::at(&file, &path, 0, len - 4);
        let (version, applied) = read_header(&mut r)?;
        let jobs = read_schema(&mut r, &schema, version)?;
        let parsed = if version == VERSION {
            let ranges = read_table(&file, &r, len - 4 - r.left, len, jobs.len())?;
            jobs.par_iter()
                .zip(ranges)
                .map(|(job, (start, end))| {
                    let mut r = Reader::at(&file, &path, start, end);
                    let parsed = read_section(&mut r, &schema, job)?;
                    match r.left {
                        0 => Ok(parsed),
                        n => Err(r.corrupt(format!("{n} bytes left after a section"))),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let parsed = jobs
                .iter()
                .map(|job| read_section(&mut r, &schema, job))
                .collect::<Result<Vec<_>, _>>()?;
            if r.left != 0 {
                return Err(r.corrupt(format!("{} bytes after the last bitmap", r.left)));
            }
            parsed
        };
        let state = assemble(&path, schema, applied, parsed)?;
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

/// One section of the body, in file order.
enum Job<'s> {
    Alive,
    Filter(&'s FilterField),
    Layer,
    Join(&'s crate::schema::Join),
}

/// A section read back. A join's parent rows come with, per filter field, one past the largest
/// dictionary id they use (checked once every dictionary is in).
enum Parsed {
    Bits(Bits),
    Filter(FilterState),
    Parents(Parents, Vec<u32>),
}

/// Sections come back in the order of their jobs, so each is the kind its place says.
const IN_JOB_ORDER: &str = "sections come in the order of their jobs";

impl Parsed {
    fn bits(self) -> Bits {
        let Parsed::Bits(b) = self else {
            unreachable!("{IN_JOB_ORDER}")
        };
        b
    }

    fn filter(self) -> FilterState {
        let Parsed::Filter(f) = self else {
            unreachable!("{IN_JOB_ORDER}")
        };
        f
    }

    fn parents(self) -> (Parents, Vec<u32>) {
        let Parsed::Parents(p, ids) = self else {
            unreachable!("{IN_JOB_ORDER}")
        };
        (p, ids)
    }
}

/// Checks the schema part against `schema`; the sections that follow it.
fn read_schema<'s>(
    r: &mut Reader<'_>,
    schema: &'s Schema,
    version: u32,
) -> Result<Vec<Job<'s>>, CheckpointError> {
    read_fields(r, schema)?;
    if version == VERSION_1 {
        if !schema.joins.is_empty() {
            return Err(r.mismatch(
                "it was written before joins were kept (format version 1), and the config \
                 declares joins"
                    .into(),
            ));
        }
    } else {
        read_joins(r, schema)?;
    }
    let layers = schema.sorts.iter().map(|f| usize::from(f.bits)).sum();
    Ok(std::iter::once(Job::Alive)
        .chain(schema.filters.iter().map(Job::Filter))
        .chain(std::iter::repeat_with(|| Job::Layer).take(layers))
        .chain(schema.joins.iter().map(Job::Join))
        .collect())
}

/// The section table of a version 3 file (`body_at`: where the first section starts): each
/// section's byte range, checked to tile the body up to the table.
fn read_table(
    file: &File,
    r: &Reader<'_>,
    body_at: u64,
    len: u64,
    sections: usize,
) -> Result<Vec<(u64, u64)>, CheckpointError> {
    let corrupt = |detail: &str| r.corrupt(format!("section table: {detail}"));
    let table_end = len.checked_sub(12).ok_or_else(|| corrupt("no room"))?;
    let table_at = Reader::at(file, r.path, table_end, len - 4).u64("section table offset")?;
    if table_at < body_at || table_at > table_end {
        return Err(corrupt("its offset is outside the body"));
    }
    let mut t = Reader::at(file, r.path, table_at, table_end);
    let n = t.u32("section count")? as usize;
    if n != sections {
        return Err(corrupt(&format!(
            "{n} sections where {sections} were expected"
        )));
    }
    if t.left != 8 * n as u64 {
        return Err(corrupt(&format!("{} bytes for {n} offsets", t.left)));
    }
    let mut starts = Vec::with_capacity(n);
    for _ in 0..n {
        starts.push(t.u64("section offset")?);
    }
    let ends = starts.iter().skip(1).copied().chain([table_at]);
    let ranges: Vec<(u64, u64)> = starts.iter().copied().zip(ends).collect();
    if starts.first().is_some_and(|&s| s != body_at) || ranges.iter().any(|(s, e)| s > e) {
        return Err(corrupt("sections out of order"));
    }
    Ok(ranges)
}

fn read_section(
    r: &mut Reader<'_>,
    schema: &Schema,
    job: &Job<'_>,
) -> Result<Parsed, CheckpointError> {
    Ok(match job {
        Job::Alive => Parsed::Bits(r.bits("alive")?),
        Job::Layer => Parsed::Bits(r.bits("sort layer")?),
        Job::Filter(f) => Parsed::Filter(read_filter(r, f)?),
        Job::Join(j) => {
            let (parents, ids) = read_parents(r, schema, j)?;
            Parsed::Parents(parents, ids)
        }
    })
}

/// The state from its sections in file order, checking the parent rows' dictionary ids.
fn assemble(
    path: &Path,
    schema: Arc<Schema>,
    applied: WalKey,
    parsed: Vec<Parsed>,
) -> Result<State, CheckpointError> {
    let mut parsed = parsed.into_iter();
    let alive = parsed.next().expect(IN_JOB_ORDER).bits();
    let filters: Vec<FilterState> = parsed
        .by_ref()
        .take(schema.filters.len())
        .map(Parsed::filter)
        .collect();
    let sorts = schema
        .sorts
        .iter()
        .map(|f| {
            let layers = parsed.by_ref().take(usize::from(f.bits));
            Arc::new(layers.map(Parsed::bits).collect::<Vec<_>>())
        })
        .collect();
    let mut joins = Vec::with_capacity(schema.joins.len());
    for (p, j) in parsed.zip(&schema.joins) {
        let (parents, ids) = p.parents();
        if let Some((fi, id)) = ids
            .iter()
            .enumerate()
            .find(|&(fi, &n)| n as usize > filters[fi].dict.len())
        {
            return Err(CheckpointError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "join on {:?}: dictionary id {} of {:?} out of range",
                    j.link,
                    id.saturating_sub(1),
                    schema.filters[fi].name
                ),
            });
        }
        joins.push(parents);
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
    if ![VERSION, VERSION_2, VERSION_1].contains(&version) {
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

/// Reads one join's parent rows, and per filter field one past the largest dictionary id they
/// use (0: none), for the caller to check against the dictionaries.
fn read_parents(
    r: &mut Reader<'_>,
    schema: &Schema,
    join: &crate::schema::Join,
) -> Result<(Parents, Vec<u32>), CheckpointError> {
    let link = schema
        .filter(&join.link)
        .expect("the schema checked its joins");
    let mut ids = vec![0u32; schema.filters.len()];
    let mut text = |fi: usize, id: u32| {
        ids[fi] = ids[fi].max(id.saturating_add(1));
        Key::Str(id)
    };
    let mut parents = Parents::default();
    for _ in 0..r.u64("parent count")? {
        let key = match r.u8("parent key tag")? {
            0 => Key::Int(i64::from_le_bytes(r.array("parent key")?)),
            1 => text(link, r.u32("parent key")?),
            t => return Err(r.corrupt(format!("join on {:?}: key tag {t}", join.link))),
        };
        let mut row = Vec::with_capacity(join.targets.len());
        for target in &join.targets {
            let fi = schema.filter(target);
            let cell_key = match (r.u8("cell tag")?, fi) {
                (0, _) => None,
                (1, _) => Some(Key::Int(i64::from_le_bytes(r.array("cell key")?))),
                (2, Some(fi)) => Some(text(fi, r.u32("cell key")?)),
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
    Ok((parents, ids))
}
