//! The WAL writer: buffered appends, group-commit sync, rotation and segment removal.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::error::WalError;
use super::format::{RecordKind, SEGMENT_HEADER_LEN, SegmentHeader, encode_marker, encode_record};
use super::payload::encode_entity_ops;
use super::recovery;
use super::report::{RecoveryMode, RecoveryReport, SegmentInfo};
use super::segment::{self, WalPosition, segment_file_name};
use super::sync::{PendingSync, SyncOutcome};
use crate::lsn::{Lsn, WalKey};
use crate::ops::EntityOps;

/// How the WAL is written and recovered.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Rotate to a new segment at the first transaction boundary once the active segment has
    /// reached this many bytes. Default 64 MiB. A transaction never spans segments, so one
    /// larger than this makes one segment that large.
    pub segment_bytes: u64,
    /// Hand buffered bytes to the OS (without fsync) once this many are buffered, so a huge
    /// transaction never has to fit in memory. Default 8 MiB.
    pub buffer_bytes: usize,
    /// What recovery may cut on open.
    pub recovery: RecoveryMode,
}

impl WalOptions {
    /// The default segment size: large enough that rotation and its extra fsync are rare, small
    /// enough that removal after a checkpoint frees space promptly.
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
    /// The default buffer bound: one write of this size per large group commit.
    pub const DEFAULT_BUFFER_BYTES: usize = 8 << 20;
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            buffer_bytes: Self::DEFAULT_BUFFER_BYTES,
            recovery: RecoveryMode::default(),
        }
    }
}

/// The durable state of the WAL, as published after each sync.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// The highest Commit or Mark LSN fsynced.
    pub lsn: Lsn,
    /// Every byte before this position is fsynced: readers may read up to it.
    pub end: WalPosition,
}

/// A handle readers on other threads use to learn (and wait for) the durable position.
#[derive(Clone, Debug, Default)]
pub struct DurableWatch {
    shared: Arc<(Mutex<Durable>, Condvar)>,
}

impl DurableWatch {
    /// The latest durable state.
    pub fn get(&self) -> Durable {
        *self.shared.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the durable end moves past `seen`, or `timeout` passes; returns the latest
    /// durable state either way.
    pub fn wait_beyond(&self, seen: WalPosition, timeout: Duration) -> Durable {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.shared;
        let mut d = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while d.end <= seen {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            d = cond
                .wait_timeout(d, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *d
    }

    fn publish(&self, d: Durable) {
        let (lock, cond) = &*self.shared;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = d;
        cond.notify_all();
    }
}

/// The open transaction.
#[derive(Copy, Clone, Debug)]
struct Txn {
    lsn: Lsn,
    count: u32,
}

/// The ops WAL writer. Single-threaded (`&mut self`); readers use [`super::WalReader`] with the
/// position from [`Wal::durable_end`] or a [`DurableWatch`].
///
/// Call order: `begin(lsn)`, `append(ops)`…, `commit()` (or `abort()`), any number of times, and
/// `mark(lsn)` between transactions; then `sync()` once for all of them (group commit).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// The active segment, positioned at `written`.
    file: File,
    /// Number of the active segment.
    active: u64,
    /// Bytes of the active segment handed to the OS.
    written: u64,
    /// Bytes of the active segment fsynced.
    synced: u64,
    /// Bytes appended but not yet handed to the OS; they belong at `written` in `active`.
    buf: Vec<u8>,
    /// Segments closed by rotation since the last sync, not yet fsynced, with their unsynced
    /// byte counts.
    sealed: Vec<(File, u64)>,
    /// A segment file was created since the last directory fsync.
    dir_dirty: bool,
    /// Every segment, oldest first; the last is the active one.
    segments: Vec<SegmentInfo>,
    txn: Option<Txn>,
    /// The last Commit or Mark LSN appended.
    last_lsn: Lsn,
    durable: Durable,
    watch: DurableWatch,
    failed: bool,
    /// The open directory, holding an exclusive advisory lock so that only one writer (and its
    /// recovery) works on the WAL at a time; released on drop.
    _lock: File,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`: locks the directory against other writers,
    /// runs recovery, then positions the writer after the last whole transaction. The report says
    /// what recovery found and cut.
    pub fn open(
        dir: impl AsRef<Path>,
        opts: WalOptions,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(WalError::io("create", &dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock = lock_dir(&dir)?;
        let scan = recovery::scan(&dir)?;
        if opts.recovery == RecoveryMode::RefuseCommittedCut
            && scan.report.cut.as_ref().is_some_and(|c| c.committed_cut)
        {
            return Err(WalError::WouldCutCommitted(Box::new(scan.report)));
        }
        recovery::apply(&dir, &scan)?;
        let mut report = scan.report;
        let mut segments = scan.kept;
        let (file, active, len) = match segments.last() {
            Some(s) => {
                let path = dir.join(segment_file_name(s.number));
                let mut file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(WalError::io("open", &path))?;
                file.seek(SeekFrom::Start(s.len))
                    .map_err(WalError::io("seek", &path))?;
                (file, s.number, s.len)
            }
            None => {
                let number = scan.first_number.unwrap_or(1);
                let prev_lsn = report.durable_lsn;
                let file = create_segment(&dir, number, prev_lsn)?;
                segments.push(SegmentInfo {
                    number,
                    prev_lsn,
                    max_lsn: None,
                    len: SEGMENT_HEADER_LEN as u64,
                });
                report.created_segment = true;
                report.segments = 1;
                report.end = WalPosition::new(number, SEGMENT_HEADER_LEN as u64);
                (file, number, SEGMENT_HEADER_LEN as u64)
            }
        };
        let durable = Durable {
            lsn: report.durable_lsn,
            end: WalPosition::new(active, len),
        };
        let watch = DurableWatch::default();
        watch.publish(durable);
        let wal = Wal {
            dir,
            opts,
            file,
            active,
            written: len,
            synced: len,
            buf: Vec::new(),
            sealed: Vec::new(),
            dir_dirty: false,
            segments,
            txn: None,
            last_lsn: report.durable_lsn,
            durable,
            watch,
            failed: false,
            _lock: lock,
        };
        Ok((wal, report))
    }

    /// Validates the WAL in `dir` and reports what recovery would do (what it would cut and
    /// remove), changing nothing. Takes no lock: run on a WAL being written, it may report the
    /// writer's unsynced tail as torn.
    pub fn inspect(dir: impl AsRef<Path>) -> Result<RecoveryReport, WalError> {
        Ok(recovery::scan(dir.as_ref())?.report)
    }

    /// Starts a transaction whose commit LSN is `commit_lsn` (known at BEGIN in pgoutput). It
    /// must be above every Commit/Mark LSN so far; an aborted transaction may be begun again.
    pub fn begin(&mut self, commit_lsn: Lsn) -> Result<(), WalError> {
        self.check_idle(commit_lsn)?;
        self.maybe_rotate()?;
        encode_marker(&mut self.buf, RecordKind::Begin, commit_lsn, 0);
        self.txn = Some(Txn {
            lsn: commit_lsn,
            count: 0,
        });
        self.note_lsn(commit_lsn);
        Ok(())
    }

    /// Appends one entity's ops to the open transaction; returns the record's key.
    pub fn append(&mut self, ops: &EntityOps) -> Result<WalKey, WalError> {
        self.check()?;
        let txn = self.txn.ok_or(WalError::NoTransaction)?;
        // seq u32::MAX is reserved for `WalKey::end_of`.
        if txn.count == u32::MAX - 1 {
            return Err(WalError::TooManyRecords(txn.lsn));
        }
        encode_record(&mut self.buf, RecordKind::Ops, txn.lsn, txn.count, |out| {
            encode_entity_ops(ops, out)
        })?;
        self.txn = Some(Txn {
            count: txn.count + 1,
            ..txn
        });
        self.maybe_write_out()?;
        Ok(WalKey::new(txn.lsn, txn.count))
    }

    /// Ends the open transaction; it becomes durable at the next [`Wal::sync`]. Returns its LSN.
    pub fn commit(&mut self) -> Result<Lsn, WalError> {
        self.check()?;
        let txn = self.txn.take().ok_or(WalError::NoTransaction)?;
        encode_marker(&mut self.buf, RecordKind::Commit, txn.lsn, txn.count);
        self.last_lsn = txn.lsn;
        self.maybe_write_out()?;
        Ok(txn.lsn)
    }

    /// Discards the open transaction (the replication connection dropped inside it; Postgres
    /// will send it again, with the same LSN). Readers and recovery skip it.
    pub fn abort(&mut self) -> Result<(), WalError> {
        self.check()?;
        let txn = self.txn.take().ok_or(WalError::NoTransaction)?;
        encode_marker(&mut self.buf, RecordKind::Abort, txn.lsn, txn.count);
        self.maybe_write_out()
    }

    /// Records `lsn` as a durable position with no ops (a keepalive's `wal_end` acknowledged
    /// while idle), so the durable LSN after a restart is never behind what Postgres was told.
    pub fn mark(&mut self, lsn: Lsn) -> Result<(), WalError> {
        self.check_idle(lsn)?;
        self.maybe_rotate()?;
        encode_marker(&mut self.buf, RecordKind::Mark, lsn, 0);
        self.last_lsn = lsn;
        self.note_lsn(lsn);
        self.maybe_write_out()
    }

    /// The group-commit point: writes every buffered byte, fdatasyncs each segment written since
    /// the last sync (and the directory if a segment was created), then publishes the new durable
    /// position. Returns the durable LSN: every Commit/Mark at or below it is on disk. Postgres
    /// may be told "flushed up to" this LSN, never more.
    pub fn sync(&mut self) -> Result<Lsn, WalError> {
        let pending = self.begin_sync()?;
        let outcome = pending.run();
        self.finish_sync(outcome)
    }

    /// [`Wal::sync`] in three steps, so that the fsync runs without the writer's lock while
    /// appends go on (see [`super::sync`]): hands every buffered byte to the OS and returns what
    /// the fsync must cover. Run it with [`PendingSync::run`], then give the outcome to
    /// [`Wal::finish_sync`].
    pub fn begin_sync(&mut self) -> Result<PendingSync, WalError> {
        self.check()?;
        self.write_out()?;
        let active = if self.written > self.synced {
            let r = self.file.try_clone();
            Some(self.io(r, "fsync", None)?)
        } else {
            None
        };
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        Ok(PendingSync {
            sealed: std::mem::take(&mut self.sealed),
            active,
            dir,
            target: Durable {
                lsn: self.last_lsn,
                end: WalPosition::new(self.active, self.written),
            },
            segment: (self.active, self.written),
        })
    }

    /// Publishes the durable position a [`PendingSync`] proved (never moving it back), or fails
    /// the WAL if its fsync failed. Returns the durable LSN.
    pub fn finish_sync(&mut self, outcome: SyncOutcome) -> Result<Lsn, WalError> {
        if let Err((op, path, source)) = outcome.result {
            return self.io(Err(source), op, path);
        }
        self.check()?;
        let (segment, bytes) = outcome.segment;
        if segment == self.active {
            self.synced = self.synced.max(bytes);
        }
        if outcome.target.end > self.durable.end || outcome.target.lsn > self.durable.lsn {
            self.durable = Durable {
                lsn: self.durable.lsn.max(outcome.target.lsn),
                end: self.durable.end.max(outcome.target.end),
            };
            self.watch.publish(self.durable);
        }
        Ok(self.durable.lsn)
    }

    /// Syncs and closes the WAL; returns the durable LSN.
    pub fn close(mut self) -> Result<Lsn, WalError> {
        self.sync()
    }

    /// The highest Commit or Mark LSN fsynced.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable.lsn
    }

    /// The highest Commit or Mark LSN appended (durable at the next sync).
    pub fn written_lsn(&self) -> Lsn {
        self.last_lsn
    }

    /// The position readers may read up to: every byte before it is fsynced.
    pub fn durable_end(&self) -> WalPosition {
        self.durable.end
    }

    /// The position after the last appended byte (buffered bytes included).
    pub fn end(&self) -> WalPosition {
        WalPosition::new(self.active, self.written + self.buf.len() as u64)
    }

    /// Bytes appended after `pos` (buffered bytes included): the rest of its segment and every
    /// later one.
    pub fn bytes_after(&self, pos: WalPosition) -> u64 {
        self.segments()
            .iter()
            .filter(|s| s.number >= pos.segment)
            .map(|s| {
                let from = if s.number == pos.segment {
                    pos.offset
                } else {
                    0
                };
                s.len.saturating_sub(from)
            })
            .sum()
    }

    /// The position where the oldest segment starts (every byte of the WAL is after it).
    pub fn start(&self) -> WalPosition {
        WalPosition::new(self.segments.first().map_or(self.active, |s| s.number), 0)
    }

    /// Bytes appended but not yet fsynced.
    pub fn pending_bytes(&self) -> u64 {
        let sealed: u64 = self.sealed.iter().map(|(_, n)| n).sum();
        sealed + (self.written - self.synced) + self.buf.len() as u64
    }

    /// The open transaction's commit LSN, if any.
    pub fn open_transaction(&self) -> Option<Lsn> {
        self.txn.map(|t| t.lsn)
    }

    /// A handle other threads use to follow the durable position.
    pub fn durable_watch(&self) -> DurableWatch {
        self.watch.clone()
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every segment, oldest first; the last is the active one.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let mut v = self.segments.clone();
        if let Some(last) = v.last_mut() {
            last.len = self.written + self.buf.len() as u64;
        }
        v
    }

    /// Removes the oldest segments whose every record has an LSN at or below `lsn` (clamped to
    /// the durable LSN), keeping the active segment. Call it with the LSN of the last transaction
    /// a durable index checkpoint fully covers. Returns how many segments were removed.
    pub fn remove_segments_below(&mut self, lsn: Lsn) -> Result<usize, WalError> {
        self.check()?;
        let lsn = lsn.min(self.durable.lsn);
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[0].max_lsn.is_none_or(|m| m <= lsn) {
            let path = self.dir.join(segment_file_name(self.segments[0].number));
            // Oldest first, so a crash leaves at worst a gap below the live run, which recovery
            // recognises and finishes removing.
            std::fs::remove_file(&path).map_err(WalError::io("remove", &path))?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    fn check(&self) -> Result<(), WalError> {
        if self.failed {
            Err(WalError::Failed)
        } else {
            Ok(())
        }
    }

    fn check_idle(&self, lsn: Lsn) -> Result<(), WalError> {
        self.check()?;
        if let Some(t) = self.txn {
            return Err(WalError::TransactionOpen(t.lsn));
        }
        if lsn <= self.last_lsn {
            return Err(WalError::LsnNotIncreasing {
                lsn,
                last: self.last_lsn,
            });
        }
        Ok(())
    }

    fn note_lsn(&mut self, lsn: Lsn) {
        if let Some(s) = self.segments.last_mut() {
            s.max_lsn = s.max_lsn.max(Some(lsn));
        }
    }

    /// Marks the WAL failed on an I/O error: after a failed write or fsync, what reached the
    /// disk is unknown, so only a reopen (recovery) may continue.
    fn io<T>(
        &mut self,
        r: io::Result<T>,
        op: &'static str,
        path: Option<PathBuf>,
    ) -> Result<T, WalError> {
        r.map_err(|source| {
            self.failed = true;
            WalError::WriteFailed {
                durable: self.durable.lsn,
                op,
                path: path.unwrap_or_else(|| self.dir.join(segment_file_name(self.active))),
                source,
            }
        })
    }

    fn write_out(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = match crate::failpoint::io_error("wal-write") {
            Some(e) => Err(e),
            None => self.file.write_all(&self.buf),
        };
        self.io(r, "write", None)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn maybe_write_out(&mut self) -> Result<(), WalError> {
        if self.buf.len() >= self.opts.buffer_bytes {
            self.write_out()?;
        }
        Ok(())
    }

    /// At a transaction boundary: if the active segment is full, hand its bytes to the OS, seal
    /// it (it is fsynced at the next sync) and start a new segment whose header goes first into
    /// the buffer.
    fn maybe_rotate(&mut self) -> Result<(), WalError> {
        let len = self.written + self.buf.len() as u64;
        if len < self.opts.segment_bytes || len <= SEGMENT_HEADER_LEN as u64 {
            return Ok(());
        }
        self.write_out()?;
        let number = self.active + 1;
        let path = self.dir.join(segment_file_name(number));
        let r = OpenOptions::new().write(true).create_new(true).open(&path);
        let file = self.io(r, "create", Some(path))?;
        let old = std::mem::replace(&mut self.file, file);
        if self.written > self.synced {
            self.sealed.push((old, self.written - self.synced));
        }
        if let Some(s) = self.segments.last_mut() {
            s.len = self.written;
        }
        self.active = number;
        self.written = 0;
        self.synced = 0;
        self.dir_dirty = true;
        let header = SegmentHeader {
            number,
            prev_lsn: self.last_lsn,
        };
        self.buf.extend_from_slice(&header.encode());
        self.segments.push(SegmentInfo {
            number,
            prev_lsn: self.last_lsn,
            max_lsn: None,
            len: 0,
        });
        Ok(())
    }
}

/// Creates segment `number` with its header, fsyncs it and the directory.
fn create_segment(dir: &Path, number: u64, prev_lsn: Lsn) -> Result<File, WalError> {
    let path = dir.join(segment_file_name(number));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(WalError::io("create", &path))?;
    let header = SegmentHeader { number, prev_lsn }.encode();
    file.write_all(&header)
        .map_err(WalError::io("write", &path))?;
    file.sync_data().map_err(WalError::io("fsync", &path))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Opens `dir` and takes an exclusive, non-blocking advisory lock on it.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).map_err(WalError::io("open", dir))?;
    // SAFETY: flock takes a file descriptor that `d` keeps open for the call, and no pointers.
    let rc = unsafe { libc::flock(d.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(d);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Err(WalError::Locked(dir.to_path_buf()))
    } else {
        Err(WalError::io("lock", dir)(err))
    }
}

/// Fsyncs a directory, making file creations and removals in it durable.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    segment::sync_dir(dir).map_err(WalError::io("fsync directory", dir))
}
