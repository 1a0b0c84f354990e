//! Recovery: validate every segment on open and cut a torn or corrupt tail back to the end of
//! the last whole transaction (or Mark).
//!
//! Recovery runs in two phases. `scan` only reads: it checks each segment header and each
//! record (CRC, payload, framing) and produces a plan. `apply` then changes the directory:
//! segments stranded below a numbering gap are removed (an interrupted
//! `remove_segments_below`), segments after the cut are removed newest first, the directory is
//! fsynced, and only then is the cut segment truncated and fsynced. A crash at any step leaves a
//! directory that the next recovery cuts the same way.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::error::WalError;
use super::format::{DecodeError, RecordKind, RecordRef, SEGMENT_HEADER_LEN};
use super::payload::decode_entity_ops;
use super::report::{Cut, CutReason, FramingError, RecoveryReport, SegmentInfo};
use super::segment::sync_dir;
use super::segment::{HeaderRead, Next, SegmentReader, WalPosition, list_segments};
use crate::lsn::Lsn;

/// The result of a scan: the report and what [`apply`] must do.
pub(crate) struct Scan {
    pub report: RecoveryReport,
    /// Segments kept, oldest first; the last one's `len` is the cut point if it was cut.
    pub kept: Vec<SegmentInfo>,
    /// Number of the first segment of the scanned run (to number a replacement).
    pub first_number: Option<u64>,
    stale: Vec<PathBuf>,
    doomed: Vec<PathBuf>,
    truncate: Option<(PathBuf, u64)>,
}

/// An open transaction during validation.
#[derive(Copy, Clone)]
struct OpenTxn {
    lsn: Lsn,
    count: u32,
    begin: WalPosition,
}

/// The framing rules, one record at a time.
struct Validator {
    last_lsn: Lsn,
    open: Option<OpenTxn>,
}

/// What a valid record did to the framing.
enum Step {
    /// Inside a transaction.
    Continue,
    /// A Commit: a whole transaction.
    Committed,
    /// An Abort: a whole (discarded) transaction.
    Aborted,
    /// A Mark.
    Marked,
}

impl Validator {
    fn step(&mut self, rec: &RecordRef<'_>, at: WalPosition) -> Result<Step, FramingError> {
        match (rec.kind, self.open) {
            (RecordKind::Begin, Some(t)) => {
                Err(FramingError::BeginInsideTransaction { open: t.lsn })
            }
            (RecordKind::Mark, Some(t)) => Err(FramingError::MarkInsideTransaction { open: t.lsn }),
            (RecordKind::Begin | RecordKind::Mark, None) => {
                if rec.lsn <= self.last_lsn {
                    return Err(FramingError::LsnNotIncreasing {
                        lsn: rec.lsn,
                        last: self.last_lsn,
                    });
                }
                if rec.seq != 0 {
                    return Err(FramingError::Seq {
                        kind: rec.kind,
                        expected: 0,
                        found: rec.seq,
                    });
                }
                if rec.kind == RecordKind::Mark {
                    self.last_lsn = rec.lsn;
                    return Ok(Step::Marked);
                }
                self.open = Some(OpenTxn {
                    lsn: rec.lsn,
                    count: 0,
                    begin: at,
                });
                Ok(Step::Continue)
            }
            (kind, None) => Err(FramingError::OutsideTransaction(kind)),
            (kind, Some(t)) => {
                if rec.lsn != t.lsn {
                    return Err(FramingError::LsnMismatch {
                        kind,
                        txn: t.lsn,
                        found: rec.lsn,
                    });
                }
                if rec.seq != t.count {
                    return Err(FramingError::Seq {
                        kind,
                        expected: t.count,
                        found: rec.seq,
                    });
                }
                match kind {
                    RecordKind::Ops => {
                        self.open = Some(OpenTxn {
                            count: t.count.checked_add(1).ok_or(FramingError::Seq {
                                kind,
                                expected: t.count,
                                found: rec.seq,
                            })?,
                            ..t
                        });
                        Ok(Step::Continue)
                    }
                    RecordKind::Commit => {
                        self.open = None;
                        self.last_lsn = t.lsn;
                        Ok(Step::Committed)
                    }
                    _ => {
                        self.open = None;
                        Ok(Step::Aborted)
                    }
                }
            }
        }
    }
}

/// Where validation stopped, and where to look for committed data past it.
struct Damage {
    at: WalPosition,
    reason: CutReason,
    /// Offset in the damaged segment from which records may still be framed.
    probe_from: Option<u64>,
}

/// Reads and validates the WAL in `dir` without changing anything: the live run of segments,
/// each validated up to the first damage, then the plan that cuts the damage off.
pub(crate) fn scan(dir: &Path) -> Result<Scan, WalError> {
    let all = list_segments(dir).map_err(WalError::io("list", dir))?;
    let (stale, run) = live_run(&all);
    let mut scanner = Scanner {
        v: Validator {
            last_lsn: Lsn::ZERO,
            open: None,
        },
        report: RecoveryReport::default(),
        kept: Vec::new(),
    };
    let mut damage = None;
    for (i, (number, path)) in run.iter().enumerate() {
        if let Some(d) = scanner.segment(i, *number, path, i + 1 == run.len())? {
            damage = Some((d, i));
            break;
        }
    }
    let Scanner { v, report, kept } = scanner;
    let mut scan = Scan {
        report,
        first_number: run.first().map(|(n, _)| *n),
        stale: stale.iter().map(|(_, p)| p.clone()).collect(),
        doomed: Vec::new(),
        truncate: None,
        kept: Vec::new(),
    };
    scan.report.stale_segments_removed = stale.iter().map(|(n, _)| *n).collect();
    scan.report.durable_lsn = v.last_lsn;
    if let Some((d, damage_index)) = damage {
        plan_cut(&mut scan, run, &kept, d, damage_index)?;
    }
    scan.report.segments = kept.len();
    scan.report.end = kept
        .last()
        .map(|s| WalPosition::new(s.number, s.len))
        .unwrap_or_default();
    scan.kept = kept;
    Ok(scan)
}

/// A segment's number and path.
type Numbered = (u64, PathBuf);

/// Splits the segments into those below a numbering gap (stale: an interrupted removal meant
/// them gone) and the live run that ends at the newest segment.
fn live_run(all: &[Numbered]) -> (&[Numbered], &[Numbered]) {
    let run_start = (1..all.len())
        .rev()
        .find(|&i| all[i].0 != all[i - 1].0 + 1)
        .unwrap_or(0);
    all.split_at(run_start)
}

/// Validation state across the segments of the live run.
struct Scanner {
    v: Validator,
    report: RecoveryReport,
    /// Segments validated so far (the damaged one included, up to its last boundary).
    kept: Vec<SegmentInfo>,
}

/// What reading one record found.
enum Found {
    /// The end of the segment's bytes.
    End,
    /// A valid record: what it did to the framing, its LSN and where it ends.
    Record(Step, Lsn, u64),
    /// Damage: torn, corrupt or misframed.
    Damage(Damage),
}

impl Scanner {
    /// Validates segment `number` (the `i`th of the run; `last` if the newest): its header,
    /// then its records. Returns the damage that ends validation, if any.
    fn segment(
        &mut self,
        i: usize,
        number: u64,
        path: &Path,
        last: bool,
    ) -> Result<Option<Damage>, WalError> {
        let mut r = SegmentReader::open(path).map_err(WalError::io("open", path))?;
        let len = r.file_len().map_err(WalError::io("stat", path))?;
        let mut seg = match self.header(&mut r, i, number, len, path)? {
            Ok(seg) => seg,
            Err(d) => return Ok(Some(d)),
        };
        // Counters since the last boundary (end of a whole transaction or Mark).
        let mut pending_records = 0u64;
        let mut pending_max: Option<Lsn> = None;
        loop {
            let (step, lsn, end) = match self.read_one(&mut r, number, len, path)? {
                Found::End => break,
                Found::Damage(d) => {
                    self.kept.push(seg);
                    return Ok(Some(d));
                }
                Found::Record(step, lsn, end) => (step, lsn, end),
            };
            pending_records += 1;
            pending_max = pending_max.max(Some(lsn));
            match step {
                Step::Continue => continue,
                Step::Committed => self.report.transactions += 1,
                Step::Aborted => self.report.aborted += 1,
                Step::Marked => self.report.marks += 1,
            }
            self.report.records += pending_records;
            pending_records = 0;
            seg.max_lsn = seg.max_lsn.max(pending_max);
            seg.len = end;
        }
        self.kept.push(seg);
        // A transaction still open at a segment's end: torn at the newest, misframed before it.
        Ok(self.v.open.map(|t| Damage {
            at: if last {
                t.begin
            } else {
                WalPosition::new(number, len)
            },
            reason: if last {
                CutReason::OpenTransaction
            } else {
                CutReason::Framing(FramingError::TransactionSpansSegments(t.lsn))
            },
            probe_from: None,
        }))
    }

    /// Reads and checks segment `number`'s header (the `i`th of the run): the segment as known
    /// so far, or the damage that ends validation.
    fn header(
        &mut self,
        r: &mut SegmentReader,
        i: usize,
        number: u64,
        len: u64,
        path: &Path,
    ) -> Result<Result<SegmentInfo, Damage>, WalError> {
        let bad_header = |reason| Damage {
            at: WalPosition::new(number, 0),
            reason,
            probe_from: Some(SEGMENT_HEADER_LEN as u64),
        };
        let header = match r.read_header(len).map_err(WalError::io("read", path))? {
            HeaderRead::Ok(h) => h,
            HeaderRead::Torn => {
                return Ok(Err(Damage {
                    probe_from: None,
                    ..bad_header(CutReason::TornSegmentHeader)
                }));
            }
            HeaderRead::Bad(DecodeError::UnsupportedVersion(version)) => {
                return Err(WalError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    version,
                });
            }
            HeaderRead::Bad(e) => return Ok(Err(bad_header(CutReason::BadSegmentHeader(e)))),
        };
        if header.number != number {
            return Ok(Err(bad_header(CutReason::Framing(
                FramingError::SegmentNumber {
                    expected: number,
                    found: header.number,
                },
            ))));
        }
        if i > 0 && header.prev_lsn != self.v.last_lsn {
            return Ok(Err(bad_header(CutReason::Framing(FramingError::PrevLsn {
                expected: self.v.last_lsn,
                found: header.prev_lsn,
            }))));
        }
        if i == 0 {
            self.v.last_lsn = header.prev_lsn;
        }
        Ok(Ok(SegmentInfo {
            number,
            prev_lsn: header.prev_lsn,
            max_lsn: None,
            len: SEGMENT_HEADER_LEN as u64,
        }))
    }

    /// Reads the next record of segment `number` and validates it: its CRC, its payload and
    /// its place in the framing.
    fn read_one(
        &mut self,
        r: &mut SegmentReader,
        number: u64,
        len: u64,
        path: &Path,
    ) -> Result<Found, WalError> {
        let damage = |reason, start, probe_from| {
            Found::Damage(Damage {
                at: WalPosition::new(number, start),
                reason,
                probe_from,
            })
        };
        let start = r.pos();
        Ok(
            match r.next_record(len).map_err(WalError::io("read", path))? {
                Next::End => Found::End,
                Next::Short => damage(CutReason::TornRecord, start, None),
                Next::Bad {
                    start,
                    err,
                    skip_to,
                } => damage(CutReason::BadRecord(err), start, skip_to),
                Next::Record { start, rec } => {
                    let end = start + 4 + (rec.payload.len() + 17) as u64;
                    let payload = match rec.kind {
                        RecordKind::Ops => decode_entity_ops(rec.payload).map(drop),
                        _ => Ok(()),
                    };
                    match payload {
                        Err(e) => damage(CutReason::BadRecord(e), start, Some(end)),
                        Ok(()) => match self.v.step(&rec, WalPosition::new(number, start)) {
                            Err(f) => damage(CutReason::Framing(f), start, Some(start)),
                            Ok(step) => Found::Record(step, rec.lsn, end),
                        },
                    }
                }
            },
        )
    }
}

/// The cut policy: keep everything up to the last boundary before the damage (the end of the
/// last kept segment), truncate the damaged segment there, remove every later segment, and
/// report whether committed data lay past the damage.
fn plan_cut(
    scan: &mut Scan,
    run: &[(u64, PathBuf)],
    kept: &[SegmentInfo],
    d: Damage,
    damage_index: usize,
) -> Result<(), WalError> {
    let truncated_to = kept.last().map(|s| WalPosition::new(s.number, s.len));
    let mut bytes_removed = 0;
    let mut segments_removed = Vec::new();
    for (number, path) in run {
        let len = std::fs::metadata(path)
            .map_err(WalError::io("stat", path))?
            .len();
        match truncated_to {
            Some(t) if *number < t.segment => {}
            Some(t) if *number == t.segment => {
                if len > t.offset {
                    bytes_removed += len - t.offset;
                    scan.truncate = Some((path.clone(), t.offset));
                }
            }
            _ => {
                bytes_removed += len;
                segments_removed.push(*number);
                scan.doomed.push(path.clone());
            }
        }
    }
    let committed_cut = probe_committed(&run[damage_index..], d.probe_from)?;
    scan.report.cut = Some(Cut {
        damage: d.at,
        reason: d.reason,
        truncated_to,
        bytes_removed,
        segments_removed,
        committed_cut,
    });
    Ok(())
}

/// Looks for a CRC-valid Commit or Mark record at or after the damage: in the damaged segment
/// from `probe_from` (where records may still be framed), then in every later segment.
fn probe_committed(segments: &[(u64, PathBuf)], probe_from: Option<u64>) -> Result<bool, WalError> {
    for (i, (_, path)) in segments.iter().enumerate() {
        let from = if i == 0 {
            match probe_from {
                Some(p) => p,
                None => continue,
            }
        } else {
            SEGMENT_HEADER_LEN as u64
        };
        let mut r = SegmentReader::open(path).map_err(WalError::io("open", path))?;
        let len = r.file_len().map_err(WalError::io("stat", path))?;
        if len < from {
            continue;
        }
        r.seek(from).map_err(WalError::io("seek", path))?;
        loop {
            match r.next_record(len).map_err(WalError::io("read", path))? {
                Next::Record { rec, .. } => {
                    if matches!(rec.kind, RecordKind::Commit | RecordKind::Mark) {
                        return Ok(true);
                    }
                }
                Next::Bad {
                    skip_to: Some(next),
                    ..
                } => r.seek(next).map_err(WalError::io("seek", path))?,
                Next::Bad { skip_to: None, .. } | Next::Short | Next::End => break,
            }
        }
    }
    Ok(false)
}

/// Carries out a scan's plan: removes stale segments, removes the segments after the cut
/// (newest first), fsyncs the directory, then truncates and fsyncs the cut segment.
pub(crate) fn apply(dir: &Path, scan: &Scan) -> Result<(), WalError> {
    let mut removed = false;
    for path in &scan.stale {
        std::fs::remove_file(path).map_err(WalError::io("remove", path))?;
        removed = true;
    }
    for path in scan.doomed.iter().rev() {
        std::fs::remove_file(path).map_err(WalError::io("remove", path))?;
        removed = true;
    }
    if removed {
        sync_dir(dir).map_err(WalError::io("fsync directory", dir))?;
    }
    if let Some((path, len)) = &scan.truncate {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(WalError::io("open", path))?;
        f.set_len(*len).map_err(WalError::io("truncate", path))?;
        f.sync_all().map_err(WalError::io("fsync", path))?;
    }
    Ok(())
}
