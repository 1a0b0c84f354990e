//! The ops WAL against real files: every truncation point, every single-bit flip, rotation and
//! segment removal, and a reader streaming a huge transaction within the durable limit.

use std::path::{Path, PathBuf};

use pgroar::ops::{EntityOps, Op, Value};
use pgroar::wal::{
    CutReason, RecordKind, RecoveryMode, RecoveryReport, Wal, WalEntry, WalError, WalOptions,
    WalPosition, WalReader, decode_record, segment_file_name,
};
use pgroar::{Lsn, WalKey};

/// A temp dir, on tmpfs when there is one (these tests do thousands of small file operations).
fn tmp() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let b = tempfile::Builder::new().prefix("pgroar-wal-").clone();
    if shm.is_dir()
        && let Ok(d) = b.tempdir_in(shm)
    {
        return d;
    }
    b.tempdir().unwrap()
}

/// One unit of a test WAL.
#[derive(Clone, Debug)]
enum Unit {
    Txn(Lsn, Vec<EntityOps>),
    Aborted(Lsn, Vec<EntityOps>),
    Mark(Lsn),
}

impl Unit {
    /// What a reader yields for this unit.
    fn entries(&self) -> Vec<WalEntry> {
        match self {
            Unit::Txn(lsn, ops) => ops
                .iter()
                .enumerate()
                .map(|(i, o)| WalEntry::Ops {
                    key: WalKey::new(*lsn, i as u32),
                    ops: o.clone(),
                })
                .chain([WalEntry::Commit { lsn: *lsn }])
                .collect(),
            Unit::Aborted(..) => vec![],
            Unit::Mark(lsn) => vec![WalEntry::Mark { lsn: *lsn }],
        }
    }

    /// The LSN a reader's durable cursor reaches after this unit, if it moves it.
    fn durable(&self) -> Option<Lsn> {
        match self {
            Unit::Txn(lsn, _) | Unit::Mark(lsn) => Some(*lsn),
            Unit::Aborted(..) => None,
        }
    }
}

fn image_update(id: i64, level: i64) -> EntityOps {
    EntityOps::new(
        id,
        vec![
            Op::remove("nsfwLevel", level),
            Op::set("nsfwLevel", level * 2),
            Op::set("sortAt", 1_700_000_000 + id),
        ],
    )
}

fn varied(id: i64) -> EntityOps {
    match id % 5 {
        0 => EntityOps::alive(
            id,
            vec![
                Op::set("type", "image"),
                Op::set("hasMeta", true),
                Op::set("publishedAt", Value::Null),
                Op::set("score", Value::Float(0.25 * id as f64)),
            ],
        ),
        1 => EntityOps::new(id, vec![Op::add("tagIds", id * 7), Op::remove("tagIds", 3)]),
        2 => EntityOps::new(
            id,
            vec![Op::QueryOpSet {
                query: Some(format!("postId eq {id}").into()),
                ops: vec![
                    Op::remove("baseModel", "SD 1.5"),
                    Op::set("baseModel", "SDXL"),
                ],
            }],
        ),
        3 => EntityOps::new(id, vec![Op::Delete]),
        _ => image_update(id, id % 32),
    }
}

/// A small WAL: committed transactions of varied ops, marks, and an aborted transaction that is
/// then resent with the same LSN.
fn script() -> Vec<Unit> {
    let ops = |from: i64, n: i64| (from..from + n).map(varied).collect::<Vec<_>>();
    vec![
        Unit::Txn(Lsn(0x100), ops(10, 3)),
        Unit::Mark(Lsn(0x150)),
        Unit::Aborted(Lsn(0x200), ops(20, 2)),
        Unit::Txn(Lsn(0x200), ops(20, 3)),
        Unit::Txn(Lsn(0x300), ops(30, 4)),
        Unit::Txn(Lsn(0x310), vec![]),
        Unit::Txn(Lsn(0x320), ops(43, 2)),
        Unit::Mark(Lsn(0x400)),
        Unit::Txn(Lsn(0x500), ops(50, 2)),
    ]
}

fn write_unit(wal: &mut Wal, u: &Unit) {
    match u {
        Unit::Txn(lsn, ops) | Unit::Aborted(lsn, ops) => {
            wal.begin(*lsn).unwrap();
            for (i, o) in ops.iter().enumerate() {
                assert_eq!(wal.append(o).unwrap(), WalKey::new(*lsn, i as u32));
            }
            if matches!(u, Unit::Txn(..)) {
                assert_eq!(wal.commit().unwrap(), *lsn);
            } else {
                wal.abort().unwrap();
            }
        }
        Unit::Mark(lsn) => wal.mark(*lsn).unwrap(),
    }
}

/// Writes `units` to a fresh WAL in `dir`; returns each unit's end position.
fn write_wal(dir: &Path, units: &[Unit], opts: WalOptions) -> Vec<WalPosition> {
    let (mut wal, report) = Wal::open(dir, opts).unwrap();
    assert!(report.created_segment);
    let mut ends = Vec::new();
    for u in units {
        write_unit(&mut wal, u);
        ends.push(wal.end());
    }
    let last = units
        .iter()
        .rev()
        .find_map(Unit::durable)
        .unwrap_or(Lsn::ZERO);
    assert_eq!(wal.sync().unwrap(), last);
    assert_eq!(wal.durable_end(), *ends.last().unwrap());
    wal.close().unwrap();
    ends
}

/// Everything a reader yields after `after`, up to the writer's durable end.
fn read_all(wal: &Wal, after: WalKey) -> Vec<WalEntry> {
    let mut r = WalReader::open(wal.dir(), after).unwrap();
    let mut out = Vec::new();
    while let Some(e) = r.next(wal.durable_end()).unwrap() {
        out.push(e);
    }
    out
}

fn entries(units: &[Unit]) -> Vec<WalEntry> {
    units.iter().flat_map(Unit::entries).collect()
}

fn durable_of(units: &[Unit]) -> Lsn {
    units
        .iter()
        .rev()
        .find_map(Unit::durable)
        .unwrap_or(Lsn::ZERO)
}

fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(segment_file_name(n))
}

/// `(start, end, kind)` of every record of a clean segment file.
fn records_of(bytes: &[u8]) -> Vec<(usize, usize, RecordKind)> {
    let mut at = 32;
    let mut out = Vec::new();
    while at < bytes.len() {
        let (rec, n) = decode_record(&bytes[at..]).unwrap().unwrap();
        out.push((at, at + n, rec.kind));
        at += n;
    }
    out
}

/// Appends one more transaction after recovery and checks it reads back after the old ones.
fn append_after_cut(wal: &mut Wal, before: &[WalEntry]) {
    let lsn = Lsn(0x10_000);
    let extra = Unit::Txn(lsn, vec![varied(99), varied(100)]);
    write_unit(wal, &extra);
    assert_eq!(wal.sync().unwrap(), lsn);
    let mut want = before.to_vec();
    want.extend(extra.entries());
    assert_eq!(read_all(wal, WalKey::ZERO), want);
}

#[test]
fn every_truncation_recovers_the_whole_transactions_before_it() {
    let units = script();
    let src = tmp();
    let ends = write_wal(src.path(), &units, WalOptions::default());
    assert!(ends.iter().all(|e| e.segment == 1));
    let bytes = std::fs::read(seg_path(src.path(), 1)).unwrap();
    assert_eq!(bytes.len() as u64, ends.last().unwrap().offset);
    assert!(
        bytes.len() < 8 << 10,
        "keep the loop small: {} bytes",
        bytes.len()
    );

    let work = tmp();
    for cut in 0..=bytes.len() {
        let dir = work.path().join(format!("c{cut}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(seg_path(&dir, 1), &bytes[..cut]).unwrap();

        let (mut wal, report) = Wal::open(&dir, WalOptions::default()).unwrap();
        let whole = ends.iter().take_while(|e| e.offset <= cut as u64).count();
        let kept = &units[..whole];
        let boundary = if whole == 0 {
            32
        } else {
            ends[whole - 1].offset
        };
        let ctx = format!("cut at {cut}: {}", report.summary());

        assert_eq!(wal.durable_lsn(), durable_of(kept), "{ctx}");
        assert_eq!(report.durable_lsn, durable_of(kept), "{ctx}");
        let len = std::fs::metadata(seg_path(&dir, 1)).unwrap().len();
        assert_eq!(len, boundary, "{ctx}");
        assert_eq!(wal.durable_end(), WalPosition::new(1, boundary), "{ctx}");
        assert_eq!(report.cut.is_some(), cut as u64 != boundary, "{ctx}");
        if let Some(c) = &report.cut {
            assert!(!c.committed_cut, "{ctx}");
            let removed = if cut < 32 {
                cut as u64
            } else {
                cut as u64 - boundary
            };
            assert_eq!(c.bytes_removed, removed, "{ctx}");
            assert_eq!(report.created_segment, cut < 32, "{ctx}");
        }
        let want = entries(kept);
        assert_eq!(read_all(&wal, WalKey::ZERO), want, "{ctx}");
        append_after_cut(&mut wal, &want);
        drop(wal);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn every_bit_flip_recovers_an_exact_prefix() {
    let units = script();
    let src = tmp();
    let ends = write_wal(src.path(), &units, WalOptions::default());
    let bytes = std::fs::read(seg_path(src.path(), 1)).unwrap();
    let records = records_of(&bytes);
    let commits: Vec<usize> = records
        .iter()
        .filter(|r| matches!(r.2, RecordKind::Commit | RecordKind::Mark))
        .map(|r| r.0)
        .collect();

    let work = tmp();
    let dir = work.path().join("w");
    let mut flipped = bytes.clone();
    for bit in 0..bytes.len() * 8 {
        let byte = bit / 8;
        flipped[byte] ^= 1 << (bit % 8);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(seg_path(&dir, 1), &flipped).unwrap();
        flipped[byte] = bytes[byte];

        let (wal, report) = Wal::open(&dir, WalOptions::default()).unwrap();
        let ctx = format!("bit {bit}: {}", report.summary());
        // Exactly the units that end at or before the damaged byte survive.
        let whole = ends.iter().take_while(|e| e.offset <= byte as u64).count();
        let kept = &units[..whole];
        assert_eq!(read_all(&wal, WalKey::ZERO), entries(kept), "{ctx}");
        assert_eq!(wal.durable_lsn(), durable_of(kept), "{ctx}");
        let cut = report.cut.as_ref().expect("a flipped bit is always found");
        // The damaged record, and where a Commit or Mark after it could be seen.
        let (damaged, in_len_field) = match records.iter().find(|r| r.0 <= byte && byte < r.1) {
            Some(r) => (r.0, byte < r.0 + 4),
            None => (0, false), // the segment header
        };
        assert_eq!(cut.damage.offset as usize, damaged, "{ctx}");
        if byte < 32 {
            assert!(
                matches!(cut.reason, CutReason::BadSegmentHeader(_)),
                "{ctx}"
            );
        }
        // A Commit or Mark after the damage is seen, unless the length field is what broke (then
        // nothing after the damaged record can be framed).
        if !in_len_field {
            let seen = if byte < 32 {
                !commits.is_empty()
            } else {
                commits.iter().any(|&c| c > damaged)
            };
            assert_eq!(cut.committed_cut, seen, "{ctx}");
        }
        drop(wal);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn refusing_mode_keeps_damaged_committed_data_untouched() {
    let units = script();
    let dir = tmp();
    write_wal(dir.path(), &units, WalOptions::default());
    let path = seg_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let first = records_of(&bytes)[1]; // an Ops record of the first transaction
    bytes[first.0 + 20] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    let strict = WalOptions {
        recovery: RecoveryMode::RefuseCommittedCut,
        ..WalOptions::default()
    };
    let report = match Wal::open(dir.path(), strict) {
        Err(WalError::WouldCutCommitted(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(report.cut.as_ref().unwrap().committed_cut);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing may change");
    assert_eq!(Wal::inspect(dir.path()).unwrap(), *report);

    let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(
        report.cut.unwrap().truncated_to,
        Some(WalPosition::new(1, 32))
    );
    assert_eq!(read_all(&wal, WalKey::ZERO), vec![]);
    assert_eq!(wal.durable_lsn(), Lsn::ZERO);
}

#[test]
fn another_format_version_is_refused_not_cut() {
    let dir = tmp();
    write_wal(dir.path(), &script(), WalOptions::default());
    let path = seg_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default()),
        Err(WalError::UnsupportedVersion { version: 3, .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn lsn_and_transaction_rules_are_enforced() {
    let dir = tmp();
    let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    // One writer at a time.
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default()),
        Err(WalError::Locked(_))
    ));
    assert!(matches!(
        wal.append(&varied(1)),
        Err(WalError::NoTransaction)
    ));
    assert!(matches!(wal.commit(), Err(WalError::NoTransaction)));
    assert!(matches!(
        wal.begin(Lsn::ZERO),
        Err(WalError::LsnNotIncreasing { .. })
    ));
    wal.begin(Lsn(10)).unwrap();
    assert!(matches!(
        wal.begin(Lsn(11)),
        Err(WalError::TransactionOpen(Lsn(10)))
    ));
    assert!(matches!(
        wal.mark(Lsn(11)),
        Err(WalError::TransactionOpen(_))
    ));
    wal.append(&varied(1)).unwrap();
    wal.abort().unwrap();
    // An aborted transaction is resent with the same LSN.
    wal.begin(Lsn(10)).unwrap();
    wal.append(&varied(2)).unwrap();
    wal.commit().unwrap();
    assert!(matches!(
        wal.begin(Lsn(10)),
        Err(WalError::LsnNotIncreasing { .. })
    ));
    assert!(matches!(
        wal.mark(Lsn(10)),
        Err(WalError::LsnNotIncreasing { .. })
    ));
    wal.mark(Lsn(20)).unwrap();
    assert_eq!(wal.durable_lsn(), Lsn::ZERO);
    assert_eq!(wal.written_lsn(), Lsn(20));
    assert!(wal.pending_bytes() > 0);
    assert_eq!(wal.sync().unwrap(), Lsn(20));
    assert_eq!(wal.pending_bytes(), 0);
    // Too deep to encode: refused, and nothing of it is written.
    let mut deep = Op::Delete;
    for _ in 0..20 {
        deep = Op::QueryOpSet {
            query: None,
            ops: vec![deep],
        };
    }
    wal.begin(Lsn(30)).unwrap();
    let end = wal.end();
    assert!(matches!(
        wal.append(&EntityOps::new(1, vec![deep])),
        Err(WalError::Encode(_))
    ));
    assert_eq!(wal.end(), end);
    wal.commit().unwrap();
    wal.sync().unwrap();
    assert_eq!(
        read_all(&wal, WalKey::ZERO),
        vec![
            WalEntry::Ops {
                key: WalKey::new(Lsn(10), 0),
                ops: varied(2)
            },
            WalEntry::Commit { lsn: Lsn(10) },
            WalEntry::Mark { lsn: Lsn(20) },
            WalEntry::Commit { lsn: Lsn(30) },
        ]
    );
}

/// `n` transactions of a few hundred bytes each.
fn many(n: u64) -> Vec<Unit> {
    (1..=n)
        .map(|i| {
            if i % 7 == 0 {
                Unit::Mark(Lsn(i * 0x100))
            } else {
                Unit::Txn(
                    Lsn(i * 0x100),
                    (0..3).map(|j| varied((i * 10 + j) as i64)).collect(),
                )
            }
        })
        .collect()
}

#[test]
fn rotation_removal_and_reopen() {
    let dir = tmp();
    let opts = WalOptions {
        segment_bytes: 1024,
        ..WalOptions::default()
    };
    let mut units = many(60);
    // One transaction far larger than a segment: it makes one big segment of its own.
    let big = Unit::Txn(Lsn(40 * 0x100 + 1), (0..100).map(varied).collect());
    units.insert(40, big);
    let ends = write_wal(dir.path(), &units, opts.clone());

    let (mut wal, report) = Wal::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(report.cut, None, "{}", report.summary());
    assert_eq!(report.durable_lsn, durable_of(&units));
    let segs = wal.segments();
    assert!(segs.len() >= 6, "{segs:?}");
    assert_eq!(report.segments, segs.len());
    for (i, s) in segs.iter().enumerate() {
        let len = std::fs::metadata(seg_path(dir.path(), s.number))
            .unwrap()
            .len();
        assert_eq!(len, s.len);
        if i + 1 < segs.len() {
            assert!(len >= 1024, "segment {} sealed early at {len}", s.number);
        }
        assert_eq!(s.number, segs[0].number + i as u64);
    }
    // The big transaction made a segment of its own, past the size.
    let big_end = ends[40];
    assert!(
        segs.iter()
            .any(|s| s.number == big_end.segment && s.len > 8 * 1024)
    );
    assert_eq!(read_all(&wal, WalKey::ZERO), entries(&units));

    // Resume in the middle of a transaction, and after a whole one.
    let mid = WalKey::new(Lsn(20 * 0x100), 1);
    let want: Vec<WalEntry> = entries(&units)
        .into_iter()
        .filter(|e| match e {
            WalEntry::Ops { key, .. } => *key > mid,
            WalEntry::Commit { lsn } | WalEntry::Mark { lsn } => WalKey::end_of(*lsn) > mid,
        })
        .collect();
    assert_eq!(read_all(&wal, mid), want);

    // A checkpoint covering the first 30 units lets the segments wholly below it go.
    let covered = durable_of(&units[..30]);
    let removable = segs[..segs.len() - 1]
        .iter()
        .take_while(|s| s.max_lsn.is_none_or(|m| m <= covered))
        .count();
    assert!(removable >= 2);
    assert_eq!(wal.remove_segments_below(covered).unwrap(), removable);
    assert_eq!(wal.segments().len(), segs.len() - removable);
    assert!(!seg_path(dir.path(), segs[0].number).exists());
    assert!(matches!(
        WalReader::open(dir.path(), WalKey::ZERO),
        Err(WalError::Gap { .. })
    ));
    let after = WalKey::end_of(covered);
    assert_eq!(read_all(&wal, after), entries(&units[30..]));
    drop(wal);

    // Reopen after a clean close: nothing cut, same durable LSN, appends continue.
    let (mut wal, report) = Wal::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(report.cut, None);
    assert_eq!(report.segments, segs.len() - removable);
    assert_eq!(wal.durable_lsn(), durable_of(&units));
    let more = Unit::Txn(Lsn(0x100_000), vec![varied(1), varied(2)]);
    write_unit(&mut wal, &more);
    wal.sync().unwrap();
    let mut want = entries(&units[30..]);
    want.extend(more.entries());
    assert_eq!(read_all(&wal, after), want);
}

#[test]
fn recovery_removes_stale_segments_below_a_gap_and_segments_after_a_cut() {
    let dir = tmp();
    let opts = WalOptions {
        segment_bytes: 1024,
        ..WalOptions::default()
    };
    let units = many(40);
    write_wal(dir.path(), &units, opts.clone());
    let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    let segs = wal.segments();
    drop(wal);
    assert!(segs.len() >= 5);

    // An interrupted removal: segment 2 gone, segment 1 still there.
    std::fs::remove_file(seg_path(dir.path(), 2)).unwrap();
    let (wal, report) = Wal::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(report.stale_segments_removed, vec![1]);
    assert_eq!(report.cut, None);
    assert!(!seg_path(dir.path(), 1).exists());
    let first = segs[2].prev_lsn;
    assert_eq!(
        read_all(&wal, WalKey::end_of(first)),
        entries(&units)
            .into_iter()
            .filter(|e| match e {
                WalEntry::Ops { key, .. } => key.lsn > first,
                WalEntry::Commit { lsn } | WalEntry::Mark { lsn } => *lsn > first,
            })
            .collect::<Vec<_>>()
    );
    drop(wal);

    // Damage in the middle of segment 3 while later segments exist: they are removed, and the
    // report says committed data was cut.
    let p3 = seg_path(dir.path(), 3);
    let mut b3 = std::fs::read(&p3).unwrap();
    let recs = records_of(&b3);
    let victim = recs[recs.len() / 2];
    b3[victim.1 - 1] ^= 1;
    std::fs::write(&p3, &b3).unwrap();
    let (wal, report) = Wal::open(dir.path(), opts).unwrap();
    let cut = report.cut.clone().unwrap();
    assert!(cut.committed_cut);
    assert_eq!(
        cut.segments_removed,
        (4..=segs.last().unwrap().number).collect::<Vec<_>>()
    );
    assert_eq!(wal.segments().len(), 1);
    assert!(!seg_path(dir.path(), 4).exists());
    assert_eq!(wal.end().segment, 3);
    assert!(wal.end().offset <= victim.0 as u64);
    assert_check_consistent(&report);
}

fn assert_check_consistent(report: &RecoveryReport) {
    let cut = report.cut.as_ref().unwrap();
    assert_eq!(cut.truncated_to, Some(report.end));
    assert!(cut.damage >= report.end);
}

#[test]
fn reader_streams_a_huge_transaction_within_the_durable_limit() {
    const N: u32 = 200_000;
    const TAIL: u32 = 5_000;
    let dir = tmp();
    let opts = WalOptions {
        buffer_bytes: 64 << 10,
        ..WalOptions::default()
    };
    let (mut wal, _) = Wal::open(dir.path(), opts).unwrap();
    let op = |i: u32| EntityOps::new(i64::from(i), vec![Op::set("nsfwLevel", i64::from(i % 32))]);
    wal.begin(Lsn(0x1000)).unwrap();
    for i in 0..N / 2 {
        wal.append(&op(i)).unwrap();
    }
    wal.sync().unwrap();
    let mut r = WalReader::open(dir.path(), WalKey::ZERO).unwrap();
    // Half the transaction is durable, its Commit is not: nothing to read yet.
    assert_eq!(r.next(wal.durable_end()).unwrap(), None);
    for i in N / 2..N {
        wal.append(&op(i)).unwrap();
    }
    wal.commit().unwrap();
    wal.mark(Lsn(0x2000)).unwrap();
    // The next transaction's records (over the buffer bound) push the Commit and the Mark into
    // the file, unsynced: the reader must still see nothing.
    wal.begin(Lsn(0x3000)).unwrap();
    for i in 0..TAIL {
        wal.append(&op(i)).unwrap();
    }
    assert!(wal.end() > wal.durable_end());
    assert_eq!(r.next(wal.durable_end()).unwrap(), None);
    assert_eq!(r.next(wal.durable_end()).unwrap(), None);

    // Durable now (the third transaction is still open): all of the first, then the Mark.
    let durable = wal.durable_watch();
    assert_eq!(wal.sync().unwrap(), Lsn(0x2000));
    assert_eq!(durable.get().end, wal.durable_end());
    assert_eq!(durable.get().lsn, Lsn(0x2000));
    let limit = wal.durable_end();
    for i in 0..N {
        match r.next(limit).unwrap() {
            Some(WalEntry::Ops { key, ops }) => {
                assert_eq!(key, WalKey::new(Lsn(0x1000), i));
                assert_eq!(ops, op(i));
            }
            other => panic!("record {i}: {other:?}"),
        }
    }
    assert_eq!(
        r.next(limit).unwrap(),
        Some(WalEntry::Commit { lsn: Lsn(0x1000) })
    );
    assert_eq!(
        r.next(limit).unwrap(),
        Some(WalEntry::Mark { lsn: Lsn(0x2000) })
    );
    assert_eq!(r.next(limit).unwrap(), None);
    assert_eq!(r.next(limit).unwrap(), None);

    // The reader resumes from the open transaction once it commits; a reader resuming after the
    // big transaction yields exactly the same.
    wal.commit().unwrap();
    wal.sync().unwrap();
    let tail: Vec<WalEntry> = (0..TAIL)
        .map(|i| WalEntry::Ops {
            key: WalKey::new(Lsn(0x3000), i),
            ops: op(i),
        })
        .chain([WalEntry::Commit { lsn: Lsn(0x3000) }])
        .collect();
    let mut got = Vec::new();
    while let Some(e) = r.next(wal.durable_end()).unwrap() {
        got.push(e);
    }
    assert_eq!(got, tail);
    assert_eq!(r.position(), wal.durable_end());
    assert_eq!(read_all(&wal, WalKey::end_of(Lsn(0x2000))), tail);
}

/// The fuzz target's seed corpus: real records from a real WAL, and a bare payload.
fn seed_corpus() -> Vec<(&'static str, Vec<u8>)> {
    let dir = tmp();
    let units = script();
    let ends = write_wal(dir.path(), &units, WalOptions::default());
    let seg = std::fs::read(seg_path(dir.path(), 1)).unwrap();
    let records = records_of(&seg);
    let span = |from: usize, to: usize| seg[from..to].to_vec();
    let first_txn = span(32, ends[0].offset as usize);
    let aborted = span(ends[1].offset as usize, ends[2].offset as usize);
    let query = records
        .iter()
        .find(|r| {
            r.2 == RecordKind::Ops
                && decode_entity_ops_of(&seg[r.0..r.1])
                    .ops
                    .iter()
                    .any(|o| matches!(o, Op::QueryOpSet { .. }))
        })
        .unwrap();
    let mark = records.iter().find(|r| r.2 == RecordKind::Mark).unwrap();
    let mut payload = Vec::new();
    let every_kind = EntityOps::alive(
        -7,
        vec![
            Op::set("b", true),
            Op::remove("f", Value::Float(1.5)),
            Op::add("s", "ü"),
            Op::set("n", Value::Null),
            Op::Delete,
            Op::truncate(Some("m")),
            Op::truncate(None),
            Op::QueryOpSet {
                query: None,
                ops: vec![Op::QueryOpSet {
                    query: Some("postId in [1, 2]".into()),
                    ops: vec![Op::set("i", -1)],
                }],
            },
        ],
    );
    pgroar::wal::encode_entity_ops(&every_kind, &mut payload).unwrap();
    vec![
        ("segment.bin", seg.clone()),
        ("transaction.bin", first_txn),
        ("aborted_transaction.bin", aborted),
        ("ops_record_query_op_set.bin", span(query.0, query.1)),
        ("mark_record.bin", span(mark.0, mark.1)),
        ("payload_every_kind.bin", payload),
    ]
}

fn decode_entity_ops_of(record: &[u8]) -> EntityOps {
    let (rec, _) = decode_record(record).unwrap().unwrap();
    pgroar::wal::decode_entity_ops(rec.payload).unwrap()
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wal_record")
}

#[test]
#[ignore = "writes fuzz/corpus/wal_record; run after a format change"]
fn regenerate_fuzz_seed_corpus() {
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes) in seed_corpus() {
        std::fs::write(corpus_dir().join(name), bytes).unwrap();
    }
}

#[test]
fn fuzz_seed_corpus_is_current() {
    for (name, bytes) in seed_corpus() {
        let on_disk = std::fs::read(corpus_dir().join(name)).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "fuzz seed {name} is stale: run the ignored test regenerate_fuzz_seed_corpus"
        );
    }
}

#[test]
fn durable_watch_wakes_a_waiting_reader_after_sync() {
    let dir = tmp();
    let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let watch = wal.durable_watch();
    let seen = watch.get().end;
    assert_eq!(seen, wal.durable_end());
    let waiter =
        std::thread::spawn(move || watch.wait_beyond(seen, std::time::Duration::from_secs(60)));
    wal.begin(Lsn(5)).unwrap();
    wal.append(&varied(1)).unwrap();
    wal.commit().unwrap();
    wal.sync().unwrap();
    let got = waiter.join().unwrap();
    assert_eq!(got.end, wal.durable_end());
    assert_eq!(got.lsn, Lsn(5));
    assert!(got.end > seen);
}

#[test]
fn a_background_sync_proves_only_what_was_written_before_it_and_never_moves_back() {
    let dir = tmp();
    let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let txn = |lsn: u64, id: i64| Unit::Txn(Lsn(lsn), vec![image_update(id, 1), varied(id)]);
    let units = [txn(100, 1), txn(200, 2), txn(300, 3), txn(400, 4)];

    // A sync begun after the first transaction covers it alone, although the second is
    // written (and handed to the OS by the next begin) before it finishes.
    write_unit(&mut wal, &units[0]);
    let first_end = wal.end();
    let pending = wal.begin_sync().unwrap();
    assert_eq!(pending.lsn(), Lsn(100));
    write_unit(&mut wal, &units[1]);
    let outcome = std::thread::spawn(move || pending.run()).join().unwrap();
    assert_eq!(wal.finish_sync(outcome).unwrap(), Lsn(100));
    assert_eq!(wal.durable_end(), first_end);
    assert_eq!(read_all(&wal, WalKey::ZERO), entries(&units[..1]));

    // An older sync finishing after a newer one leaves the durable position where it was.
    write_unit(&mut wal, &units[2]);
    let older = wal.begin_sync().unwrap();
    write_unit(&mut wal, &units[3]);
    assert_eq!(wal.sync().unwrap(), Lsn(400));
    let end = wal.durable_end();
    assert_eq!(wal.finish_sync(older.run()).unwrap(), Lsn(400));
    assert_eq!(wal.durable_end(), end);
    assert_eq!(read_all(&wal, WalKey::ZERO), entries(&units));

    wal.close().unwrap();
    let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert!(report.cut.is_none(), "{report:?}");
    assert_eq!(wal.durable_lsn(), Lsn(400));
    assert_eq!(read_all(&wal, WalKey::ZERO), entries(&units));
}
