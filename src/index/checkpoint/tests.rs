//! Checkpoint round trips, corruption and schema changes.

use super::*;
use crate::ops::{EntityOps, Op};

use crate::fixtures::schema;

fn sample() -> Index {
    let mut index = Index::new(schema());
    for i in 0..50u32 {
        let slot = i64::from(i) * 40_503;
        index.apply(&EntityOps::alive(
            slot,
            vec![
                Op::set("type", if i % 3 == 0 { "image" } else { "video" }),
                Op::add("tagIds", i64::from(i % 7)),
                Op::set("hasMeta", i % 2 == 0),
                Op::set("existedAt", 1_700_000_000 + i64::from(i)),
                Op::set("postId", i64::from(i % 5)),
            ],
        ));
    }
    // Parent rows of the postId join: checkpointed with the index.
    for post in 0..3i64 {
        index.apply(&EntityOps::new(
            post,
            vec![Op::QueryOpSet {
                query: Some(format!("postId eq {post}").into()),
                ops: vec![
                    Op::set("publishedAt", 1_800_000_000 + post),
                    Op::set("availability", "Public"),
                ],
            }],
        ));
    }
    index.apply(&EntityOps::alive(
        u32::MAX.into(),
        vec![Op::set("type", crate::ops::Value::Null)],
    ));
    index.set_applied(WalKey::new(Lsn(0x16B3748), 3));
    index
}

/// A checkpoint of [`sample`] in a fresh directory: the directory, the file and its bytes.
fn sample_checkpoint() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    sample().snapshot().write_checkpoint(dir.path()).unwrap();
    let path = dir.path().join(CHECKPOINT_FILE);
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

/// `good` with its body edited by `edit` and its CRC made right again.
fn forged(good: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = good[..good.len() - 4].to_vec();
    edit(&mut body);
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

#[test]
fn round_trip_preserves_everything_and_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        Index::load_checkpoint(dir.path(), schema())
            .unwrap()
            .is_none()
    );
    let mut a = sample();
    a.snapshot().write_checkpoint(dir.path()).unwrap();
    let mut b = Index::load_checkpoint(dir.path(), schema())
        .unwrap()
        .unwrap();
    assert_eq!(a.debug_state(), b.debug_state());
    assert_eq!(b.applied(), WalKey::new(Lsn(0x16B3748), 3));
    // Rebuilt columns: a set moves the slot, a delete wipes it, exactly as on the original.
    for idx in [&mut a, &mut b] {
        idx.apply(&EntityOps::new(
            0,
            vec![Op::set("type", "gif"), Op::set("existedAt", 5)],
        ));
        idx.apply(&EntityOps::new(40_503, vec![Op::Delete]));
    }
    assert_eq!(a.debug_state(), b.debug_state());
    // The parent rows came back too: a slot moved to post 2 takes that post's values.
    for idx in [&mut a, &mut b] {
        idx.apply(&EntityOps::new(40_503 * 3, vec![Op::set("postId", 2)]));
    }
    assert_eq!(a.debug_state(), b.debug_state());
    let state = b.debug_state();
    assert_eq!(state.parents[0].len(), 3, "three posts");
    assert_eq!(state.sorts["publishedAt"][&(40_503 * 3)], 1_800_000_002);
    // Written again over the old one, which becomes the previous one; no temporary file stays
    // behind.
    b.snapshot().write_checkpoint(dir.path()).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE].map(std::ffi::OsString::from)
    );
}

#[test]
fn corruption_and_schema_changes_are_typed_errors() {
    let (dir, path, good) = sample_checkpoint();

    let other =
        Arc::new(Schema::from_pairs(&[("type", FilterKind::Multi)], &[("id", 32)]).unwrap());
    assert!(matches!(
        Index::load_checkpoint(dir.path(), other),
        Err(CheckpointError::SchemaMismatch { .. })
    ));

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    let err = Index::load_checkpoint(dir.path(), schema()).err().unwrap();
    assert!(matches!(err, CheckpointError::Crc { .. }), "{err}");
    assert!(err.to_string().contains("re-bootstrapped"));

    for cut in [0, 3, 20, good.len() - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(
            Index::load_checkpoint(dir.path(), schema()).is_err(),
            "cut at {cut}"
        );
    }

    // A huge length behind a valid CRC is refused without allocating it.
    let at = 8 + 4 + 12; // filter count
    let huge = forged(&good, |b| {
        b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    });
    std::fs::write(&path, &huge).unwrap();
    assert!(matches!(
        Index::load_checkpoint(dir.path(), schema()),
        Err(CheckpointError::SchemaMismatch { .. })
    ));
    let at = 8 + 4 + 12 + 4; // the first filter name's length
    let huge = forged(&good, |b| {
        b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    });
    std::fs::write(&path, &huge).unwrap();
    assert!(matches!(
        Index::load_checkpoint(dir.path(), schema()),
        Err(CheckpointError::Corrupt { .. })
    ));
}

#[test]
fn a_damaged_or_missing_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let older = sample();
    older.snapshot().write_checkpoint(dir.path()).unwrap();
    let mut newer = sample();
    newer.apply(&EntityOps::alive(7, vec![Op::set("type", "image")]));
    newer.set_applied(WalKey::end_of(Lsn(0x16C0000)));
    newer.snapshot().write_checkpoint(dir.path()).unwrap();
    let load = || {
        Index::load_checkpoint(dir.path(), schema())
            .unwrap()
            .unwrap()
    };
    assert_eq!(load().applied(), newer.applied());

    // Damaged: the previous one is loaded and the damaged file set aside.
    let path = dir.path().join(CHECKPOINT_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(load().applied(), older.applied());
    assert!(dir.path().join(DAMAGED_CHECKPOINT_FILE).exists());
    // Missing (killed between the two renames): the previous one too.
    assert!(!path.exists());
    assert_eq!(load().applied(), older.applied());
    // Both damaged: the newest one's error.
    newer.snapshot().write_checkpoint(dir.path()).unwrap();
    for f in [CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE] {
        let p = dir.path().join(f);
        let mut b = std::fs::read(&p).unwrap();
        b[mid] ^= 0x40;
        std::fs::write(&p, &b).unwrap();
    }
    let err = Index::load_checkpoint(dir.path(), schema()).err().unwrap();
    assert!(
        matches!(err, CheckpointError::Crc { ref path, .. } if path.ends_with(CHECKPOINT_FILE)),
        "{err}"
    );
}

#[test]
fn a_key_written_twice_in_a_field_is_refused() {
    let (dir, path, good) = sample_checkpoint();
    // Int key 1 (tag 0, then the i64) turned into key 0, which precedes it in its field.
    let one: Vec<u8> = std::iter::once(0).chain(1i64.to_le_bytes()).collect();
    let refused = (0..good.len() - one.len())
        .filter(|&at| good[at..at + one.len()] == one[..])
        .any(|at| {
            std::fs::write(&path, forged(&good, |b| b[at + 1] = 0)).unwrap();
            let err = Index::load_checkpoint(dir.path(), schema()).err();
            err.is_some_and(|e| e.to_string().contains("duplicate key"))
        });
    assert!(refused, "no duplicate key refused");
}

#[test]
fn a_lazy_load_serves_at_once_and_rebuilds_the_rest_before_the_first_write() {
    let (dir, _, _) = sample_checkpoint();
    let mut a = sample();
    let mut lazy = Index::load_checkpoint_lazy(dir.path(), schema())
        .unwrap()
        .unwrap();
    // Queryable now: the bitmaps are in, the writer's sort columns are not.
    assert_eq!(lazy.snapshot().debug_state(), a.debug_state());
    assert!(lazy.unfinished && lazy.sort_cols.iter().all(|c| c.get(0) == 0));
    // A write rebuilds them first: a slot's old sort bits and key leave as on the original.
    for idx in [&mut a, &mut lazy] {
        idx.apply(&EntityOps::new(
            0,
            vec![Op::set("existedAt", 5), Op::set("postId", 4)],
        ));
    }
    assert!(!lazy.unfinished);
    assert_eq!(a.debug_state(), lazy.debug_state());
    lazy.finish_load();
    assert_eq!(
        a.debug_state(),
        lazy.debug_state(),
        "a second finish is a no-op"
    );
}

/// The section table's offset, from the last 8 bytes before the CRC.
fn table_at(bytes: &[u8]) -> usize {
    let end = bytes.len() - 4;
    u64::from_le_bytes(bytes[end - 8..end].try_into().unwrap()) as usize
}

#[test]
fn a_version_2_checkpoint_without_a_section_table_still_loads() {
    let (dir, path, good) = sample_checkpoint();
    // Version 3 is version 2 plus the section table: cut it off and mark the file version 2.
    let v2 = forged(&good, |b| {
        b.truncate(table_at(&good));
        b[8..12].copy_from_slice(&VERSION_2.to_le_bytes());
    });
    std::fs::write(&path, &v2).unwrap();
    let loaded = Index::load_checkpoint(dir.path(), schema())
        .unwrap()
        .unwrap();
    assert_eq!(loaded.debug_state(), sample().debug_state());
    // The same bytes claiming version 3 have no table: refused, not misread.
    let no_table = forged(&v2, |b| b[8..12].copy_from_slice(&VERSION.to_le_bytes()));
    std::fs::write(&path, &no_table).unwrap();
    assert!(matches!(
        Index::load_checkpoint(dir.path(), schema()),
        Err(CheckpointError::Corrupt { .. })
    ));
}

#[test]
fn a_forged_section_table_is_refused() {
    let (dir, path, good) = sample_checkpoint();
    let at = table_at(&good);
    let count = u32::from_le_bytes(good[at..at + 4].try_into().unwrap()) as usize;
    let offset = |i: usize| at + 4 + 8 * i;
    let set =
        |b: &mut Vec<u8>, pos: usize, v: u64| b[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
    let get = |i: usize| u64::from_le_bytes(good[offset(i)..offset(i) + 8].try_into().unwrap());
    let end = good.len() - 12;
    let forgeries: Vec<(&str, Vec<u8>)> = vec![
        (
            "table past the end",
            forged(&good, |b| set(b, end, good.len() as u64)),
        ),
        (
            "table inside the header",
            forged(&good, |b| set(b, end, 10)),
        ),
        (
            "two sections swapped",
            forged(&good, |b| {
                let (x, y) = (get(1), get(2));
                set(b, offset(1), y);
                set(b, offset(2), x);
            }),
        ),
        (
            "a section one byte late",
            forged(&good, |b| set(b, offset(count / 2), get(count / 2) + 1)),
        ),
        (
            "a section one byte early",
            forged(&good, |b| set(b, offset(count - 1), get(count - 1) - 1)),
        ),
        (
            "the first section moved",
            forged(&good, |b| set(b, offset(0), get(0) + 4)),
        ),
        // A stray byte at the end of a section, every later offset moved past it: each section
        // still parses, but one does not end where the table says.
        (
            "a stray byte inside a section",
            forged(&good, |b| {
                let i = count / 2;
                let stray = get(i + 1) as usize;
                for j in i + 1..count {
                    set(b, offset(j), get(j) + 1);
                }
                set(b, end, at as u64 + 1);
                b.insert(stray, 0);
            }),
        ),
        (
            "a section too many",
            forged(&good, |b| {
                b[at..at + 4].copy_from_slice(&(count as u32 + 1).to_le_bytes());
            }),
        ),
    ];
    for (what, bytes) in forgeries {
        std::fs::write(&path, &bytes).unwrap();
        let err = Index::load_checkpoint(dir.path(), schema()).err();
        assert!(
            matches!(err, Some(CheckpointError::Corrupt { .. })),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn a_parent_row_naming_a_missing_dictionary_entry_is_refused() {
    let (dir, path, good) = sample_checkpoint();
    // The last sections hold the joins' parent rows; their text cells (tag 2) name dictionary
    // entries (`availability`'s) by id.
    let at = table_at(&good);
    let count = u32::from_le_bytes(good[at..at + 4].try_into().unwrap()) as usize;
    let last = at + 4 + 8 * (count - schema().joins.len());
    let join_at = u64::from_le_bytes(good[last..last + 8].try_into().unwrap()) as usize;
    let refused = (join_at..at - 5)
        .filter(|&p| good[p] == 2 && u32::from_le_bytes(good[p + 1..p + 5].try_into().unwrap()) < 4)
        .any(|p| {
            std::fs::write(
                &path,
                forged(&good, |b| {
                    b[p + 1..p + 5].copy_from_slice(&999u32.to_le_bytes());
                }),
            )
            .unwrap();
            let err = Index::load_checkpoint(dir.path(), schema()).err();
            err.is_some_and(|e| e.to_string().contains("dictionary id 999"))
        });
    assert!(refused, "no out-of-range dictionary id refused");
}
