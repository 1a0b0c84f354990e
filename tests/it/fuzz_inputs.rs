//! Bounded fuzzing of every parser that reads input from outside the process, run in CI through
//! proptest (the libFuzzer targets in `fuzz/` take the same inputs for longer runs): the filter
//! language (and evaluating what parses), COPY text and binary rows, the checkpoint loader (on
//! files whose CRC is right, so the decoder behind it is reached), and the config loader.
//! Nothing may panic or abort; every refusal is a typed error. `PGROAR_FUZZ_CASES` scales the
//! case counts (CI: the defaults below).

use pgroar::bootstrap::copy_binary::{BinaryRow, header_len};
use pgroar::bootstrap::copy_text::{CopyRow, lines};
use pgroar::config::Config;
use pgroar::filter::Filter;
use pgroar::fixtures::schema;
use pgroar::index::{Index, Snapshot};
use pgroar::ops::{EntityOps, Op};
use pgroar::translate::Tuple;
use proptest::prelude::*;

/// `default` cases, scaled by `PGROAR_FUZZ_CASES` (a multiplier) when set.
fn cases(default: u32) -> ProptestConfig {
    let scale = std::env::var("PGROAR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    ProptestConfig::with_cases(default.saturating_mul(scale.max(1)))
}

/// A small index with every kind of field set, and its snapshot.
fn snapshot() -> Snapshot {
    let mut index = Index::new(schema());
    let batch: Vec<EntityOps> = (1..=200i64)
        .map(|id| {
            EntityOps::alive(
                id,
                vec![
                    Op::set("nsfwLevel", [1i64, 2, 4, 8][(id % 4) as usize]),
                    Op::set("type", if id % 3 == 0 { "video" } else { "image" }),
                    Op::set("existedAt", 1_700_000_000 + id),
                    Op::set("id", id),
                    Op::add("tagIds", id % 7),
                ],
            )
        })
        .collect();
    index.apply_batch(&batch);
    index.snapshot()
}

/// Pieces of the filter grammar, glued at random: mostly well-formed, often not.
fn filter_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("nsfwLevel".to_string()),
        Just("tagIds".to_string()),
        Just("existedAt".to_string()),
        Just("type".to_string()),
        Just("nope".to_string()),
        Just(" eq ".to_string()),
        Just(" ne ".to_string()),
        Just(" gt ".to_string()),
        Just(" lte ".to_string()),
        Just(" in ".to_string()),
        Just(" AND ".to_string()),
        Just(" OR ".to_string()),
        Just("NOT ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just("\"".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "[\\PC]{0,6}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn filters_parse_or_refuse_and_what_parses_evaluates(text in prop_oneof![
        filter_soup(),
        "[\\PC]{0,80}",
        prop::collection::vec(any::<u8>(), 0..120)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        if let Ok(f) = Filter::parse(&text) {
            // Printed back, it parses to the same tree.
            let again = Filter::parse(&f.to_string());
            prop_assert_eq!(again.as_ref().ok(), Some(&f), "{}", f);
        }
        SNAPSHOT.with(|snap| {
            let _ = snap.count(Some(&text));
        });
    }

    #[test]
    fn copy_text_lines_split_or_refuse(fields in prop::collection::vec(
        prop::collection::vec(
            prop_oneof![
                Just(b'\\'), Just(b'N'), Just(b't'), Just(b'n'), Just(b'0'), Just(b'7'),
                Just(b'x'), Just(b'\t'), any::<u8>(),
            ],
            0..8,
        ),
        0..24,
    ), breaks in prop::collection::vec(any::<usize>(), 0..4), columns in 0usize..6) {
        // Fields joined by tabs, with line breaks at random places between them.
        let mut bytes = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                let newline = breaks.iter().any(|b| b % fields.len() == i);
                bytes.push(if newline { b'\n' } else { b'\t' });
            }
            bytes.extend_from_slice(f);
        }
        let mut row = CopyRow::default();
        for range in lines(&bytes) {
            let line = &bytes[range];
            if row.parse(line, columns).is_ok() {
                let tuple = row.tuple(line);
                for c in 0..=columns {
                    let _ = tuple.datum(c);
                }
            }
        }
    }

    #[test]
    fn copy_binary_rows_read_or_refuse(
        rows in prop::collection::vec(
            prop::collection::vec(
                prop::option::of(prop::collection::vec(any::<u8>(), 0..12)),
                0..5,
            ),
            0..8,
        ),
        damage in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        with_header in any::<bool>(),
        columns in 0usize..5,
    ) {
        // Rows as Postgres writes them (mostly of the expected width), then a few bytes changed.
        let mut buf = Vec::new();
        if with_header {
            buf.extend_from_slice(pgroar::bootstrap::copy_binary::SIGNATURE);
            buf.extend_from_slice(&[0; 8]);
        }
        for row in &rows {
            buf.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for v in row {
                match v {
                    None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        buf.extend_from_slice(v);
                    }
                }
            }
        }
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        for (at, b) in &damage {
            let i = at % buf.len();
            buf[i] = *b;
        }
        let mut pos = match header_len(&buf) {
            Ok(Some(n)) => n,
            _ => 0,
        };
        let mut row = BinaryRow::default();
        while let Ok(Some(next)) = row.parse(&buf, pos, columns) {
            prop_assert!(next > pos && next <= buf.len());
            let tuple = row.tuple(&buf);
            for c in 0..=columns {
                let _ = tuple.datum(c);
            }
            pos = next;
        }
    }
}

thread_local! {
    static SNAPSHOT: Snapshot = snapshot();
    static CHECKPOINT: Vec<u8> = checkpoint_body();
}

/// The body (without its CRC) of a real checkpoint of [`snapshot`].
fn checkpoint_body() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    snapshot().write_checkpoint(dir.path()).unwrap();
    let mut bytes = std::fs::read(dir.path().join("index.ckpt")).unwrap();
    bytes.truncate(bytes.len() - 4);
    bytes
}

/// One change to a checkpoint body: a byte, an extreme little-endian word, a cut, an insertion.
#[derive(Clone, Debug)]
enum Mutation {
    Byte(usize, u8),
    Word(usize, u64),
    Cut(usize),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        Just(1u64 << 40),
        Just(0),
        any::<u64>()
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Byte(p, b)),
        (any::<usize>(), word).prop_map(|(p, w)| Mutation::Word(p, w)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
    ]
}

fn mutate(body: &mut Vec<u8>, m: &Mutation) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
    match m {
        Mutation::Byte(p, b) => {
            let i = at(*p, body.len());
            if let Some(x) = body.get_mut(i) {
                *x = *b;
            }
        }
        Mutation::Word(p, w) => {
            let i = at(*p, body.len());
            for (k, b) in w.to_le_bytes().iter().enumerate() {
                if let Some(x) = body.get_mut(i + k) {
                    *x = *b;
                }
            }
        }
        Mutation::Cut(p) => body.truncate(at(*p, body.len())),
        Mutation::Insert(p, bytes) => {
            let i = at(*p, body.len());
            body.splice(i..i, bytes.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn damaged_checkpoints_with_a_valid_crc_load_or_refuse(
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut body = CHECKPOINT.with(Clone::clone);
        for m in &mutations {
            mutate(&mut body, m);
        }
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.ckpt"), &body).unwrap();
        if let Ok(Some(index)) = Index::load_checkpoint(dir.path(), schema()) {
            // Whatever loads answers queries.
            let _ = index.snapshot().count(Some("nsfwLevel eq 1 OR tagIds in [1, 2]"));
        }
    }
}

/// The image-feed example config, the seed of the config fuzzing.
fn example_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/examples/image-feed.toml"
    ))
    .unwrap()
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn configs_load_or_name_the_problem(
        cut in any::<usize>(),
        splice in "[\\PC]{0,24}",
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        pick in 0u8..3,
    ) {
        let text = match pick {
            0 => String::from_utf8_lossy(&bytes).into_owned(),
            _ => {
                let mut t = example_config();
                let mut at = cut % (t.len() + 1);
                while !t.is_char_boundary(at) {
                    at -= 1;
                }
                if pick == 1 {
                    t.insert_str(at, &splice);
                } else {
                    t.truncate(at);
                }
                t
            }
        };
        if let Err(e) = Config::from_toml_str(&text, []) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn the_checkpoint_seed_loads_unchanged() {
    let mut body = CHECKPOINT.with(Clone::clone);
    body.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.ckpt"), &body).unwrap();
    let index = Index::load_checkpoint(dir.path(), schema())
        .unwrap()
        .unwrap();
    assert_eq!(index.snapshot().alive_count(), 200);
}
