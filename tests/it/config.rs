//! Configuration loading: the example loads, every class of mistake is an error naming its
//! place, and environment overrides win over the file.

use std::error::Error as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pgroar::config::{
    Config, ConfigError, DEFAULT_CHECKPOINT_INTERVAL_SECS, DEFAULT_GROUP_COMMIT_MAX_BYTES,
    DEFAULT_GROUP_COMMIT_MAX_MS, DEFAULT_SEGMENT_BYTES, Problem, QueryOp, SourceKind,
    SourceProblem,
};
use pgroar::schema::FilterKind;

/// The issue's text, verbatim: its Post source uses `publishedAt` and `postId`, which its
/// `[index]` does not declare.
const ISSUE_TEXT: &str = r#"
[postgres]
url = "postgresql://pgroar@127.0.0.1:5432/app"   # libpq URI or key=value string
publication = "pgroar"
slot = "pgroar"
[storage]
data_dir = "pgroar-data"
[http]
listen = "127.0.0.1:7070"
[index]
filters = [ { name = "nsfwLevel", kind = "single" }, { name = "tagIds", kind = "multi" }, { name = "hasMeta", kind = "bool" }, { name = "type", kind = "single" } ]
sorts   = [ { name = "existedAt", bits = 32 }, { name = "id", bits = 32 } ]
[[sources]]
table = "Image"
slot_field = "id"
sets_alive = true
on_delete = "delete_slot"
track_fields = ["nsfwLevel", "{type}::text as type", "GREATEST({scannedAt}, {createdAt}) as existedAt", "({flags} & (1 << 13)) != 0 AND ({flags} & (1 << 2)) = 0 as hasMeta"]
[[sources]]
table = "TagsOnImage"
slot_field = "imageId"
field = "tagIds"
value_field = "tagId"
[[sources]]
table = "Post"
query = "postId eq {id}"
track_fields = ["extract(epoch from {publishedAt})::bigint as publishedAt"]
"#;

/// A valid head that the error tests append sources to.
const BASE: &str = r#"
[postgres]
url = "postgresql://pgroar@127.0.0.1/app"
[index]
filters = [
  { name = "nsfwLevel", kind = "single" },
  { name = "tagIds", kind = "multi" },
  { name = "hasMeta", kind = "bool" },
  { name = "postId", kind = "single" },
]
sorts = [{ name = "existedAt", bits = 32 }, { name = "id" }]
"#;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/pgroar.example.toml")
}

fn no_env() -> std::iter::Empty<(String, String)> {
    std::iter::empty()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The problems of a text that must be invalid, as displayed.
fn problems(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, no_env()) {
        Ok(_) => panic!("expected an invalid configuration:\n{text}"),
        Err(e @ ConfigError::Invalid { .. }) => {
            let lines: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
            // The error's own text lists the same problems, one per line.
            let shown = e.to_string();
            assert_eq!(shown.lines().count(), lines.len() + 1, "{shown}");
            lines
        }
        Err(e) => panic!("expected Invalid, got {e:?}"),
    }
}

/// Asserts that exactly one problem line contains every needle.
#[track_caller]
fn assert_problem(text: &str, needles: &[&str]) {
    let all = problems(text);
    let hits: Vec<&String> = all
        .iter()
        .filter(|p| needles.iter().all(|n| p.contains(n)))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "want one problem with {needles:?} in {all:#?}"
    );
}

/// The whole error chain as text (the TOML error is the `source`).
fn chain(e: &ConfigError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!("\n{s}"));
        source = s.source();
    }
    out
}

#[test]
fn the_example_loads() {
    let path = example_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let config = Config::from_toml_str(&text, no_env()).unwrap();
    // `load` reads the same file and the process environment.
    let vars = std::env::vars().filter(|(k, _)| k.starts_with("PGROAR_"));
    assert_eq!(
        Config::load(&path).unwrap(),
        Config::from_toml_str(&text, vars).unwrap()
    );

    assert_eq!(config.postgres.slot, "pgroar");
    assert_eq!(
        config.http.listen,
        "127.0.0.1:7070".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.wal.segment_bytes, DEFAULT_SEGMENT_BYTES);
    let schema = config.schema();
    assert_eq!(schema.filters.len(), 5);
    assert_eq!(
        schema.filters[schema.filter("tagIds").unwrap()].kind,
        FilterKind::Multi
    );
    assert!(schema.sort("publishedAt").is_some());

    let kinds: Vec<&str> = config.sources.iter().map(|s| s.kind.name()).collect();
    assert_eq!(kinds, ["direct", "join", "fan-out"]);
    match &config.sources[0].kind {
        SourceKind::Direct {
            slot_field,
            track,
            sets_alive,
            on_delete,
        } => {
            assert_eq!(slot_field, "id");
            assert!(*sets_alive && *on_delete);
            let targets: Vec<&str> = track.iter().map(|t| t.target.as_str()).collect();
            assert_eq!(
                targets,
                ["id", "nsfwLevel", "postId", "type", "existedAt", "hasMeta"]
            );
            assert_eq!(
                track[4].expr,
                "extract(epoch from GREATEST({scannedAt}, {createdAt}))::bigint"
            );
            assert_eq!(track[4].columns(), ["scannedAt", "createdAt"]);
            assert_eq!(track[5].columns(), ["flags"]);
        }
        other => panic!("Image is {other:?}"),
    }
    assert_eq!(
        config.sources[1].kind,
        SourceKind::Join {
            slot_field: "imageId".into(),
            field: "tagIds".into(),
            value_field: "tagId".into(),
            filter: None,
        }
    );
    match &config.sources[2].kind {
        SourceKind::FanOut { query, track, join } => {
            assert!(join, "one eq clause: kept as a join by default");
            assert_eq!(query.clauses.len(), 1);
            assert_eq!(query.clauses[0].field, "postId");
            assert_eq!(query.clauses[0].op, QueryOp::Eq);
            assert_eq!(query.columns(), ["id"]);
            assert_eq!(track[0].target, "publishedAt");
        }
        other => panic!("Post is {other:?}"),
    }
    config.validate().unwrap();
}

#[test]
fn the_issue_text_fails_naming_post_id_and_published_at() {
    let all = problems(ISSUE_TEXT);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_problem(
        ISSUE_TEXT,
        &[
            r#"sources[2] (table "Post")"#,
            r#"target "publishedAt" is not an index field"#,
        ],
    );
    assert_problem(
        ISSUE_TEXT,
        &[
            r#"sources[2] (table "Post")"#,
            r#"field "postId" is not a filter field"#,
        ],
    );
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let config =
        Config::from_toml_str("[postgres]\nurl = \"host=/tmp dbname=app\"\n", no_env()).unwrap();
    assert_eq!(config.postgres.publication, "pgroar");
    assert_eq!(config.postgres.slot, "pgroar");
    assert_eq!(config.storage.data_dir, PathBuf::from("pgroar-data"));
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:7070");
    assert_eq!(config.wal.group_commit_max_ms, DEFAULT_GROUP_COMMIT_MAX_MS);
    assert_eq!(
        config.wal.group_commit_max_bytes,
        DEFAULT_GROUP_COMMIT_MAX_BYTES
    );
    assert_eq!(
        config.index.checkpoint_interval_secs,
        DEFAULT_CHECKPOINT_INTERVAL_SECS
    );
    assert!(config.sources.is_empty());
}

#[test]
fn environment_overrides_win_over_the_file() {
    let text = format!("{BASE}\n[wal]\nsegment_bytes = 1000\n");
    let config = Config::from_toml_str(
        &text,
        env(&[
            ("PGROAR_POSTGRES_URL", "postgresql://other@db.internal/app"),
            ("PGROAR_POSTGRES_SLOT", "replica_b"),
            ("PGROAR_STORAGE_DATA_DIR", "/var/lib/pgroar"),
            ("PGROAR_HTTP_LISTEN", "0.0.0.0:9000"),
            ("PGROAR_WAL_SEGMENT_BYTES", "2048"),
            ("PGROAR_INDEX_CHECKPOINT_INTERVAL_SECS", "5"),
            // Not ours: other sections and unrelated variables are ignored.
            ("PGROAR_PG_BIN", "/nowhere"),
            ("PGROAR_LOG", "debug"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(config.postgres.url, "postgresql://other@db.internal/app");
    assert_eq!(config.postgres.slot, "replica_b");
    assert_eq!(config.storage.data_dir, PathBuf::from("/var/lib/pgroar"));
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(config.wal.segment_bytes, 2048);
    assert_eq!(config.index.checkpoint_interval_secs, 5);

    // The URL may come from the environment alone.
    let config =
        Config::from_toml_str("", env(&[("PGROAR_POSTGRES_URL", "postgresql:///x")])).unwrap();
    assert_eq!(config.postgres.url, "postgresql:///x");
}

#[test]
fn bad_environment_values_name_the_variable() {
    let err = Config::from_toml_str(
        BASE,
        env(&[
            ("PGROAR_WAL_SEGMENT_BYTES", "lots"),
            ("PGROAR_POSTGRES_SLTO", "x"),
            ("PGROAR_INDEX_FILTERS", "[]"),
        ]),
    )
    .unwrap_err();
    let all: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(matches!(
        &err.problems()[0],
        Problem::EnvNotScalar { var, .. } if var == "PGROAR_INDEX_FILTERS"
    ));
    assert!(
        all[1].starts_with("PGROAR_POSTGRES_SLTO:") && all[1].contains("\"slto\""),
        "{}",
        all[1]
    );
    assert!(
        all[2].starts_with("PGROAR_WAL_SEGMENT_BYTES=\"lots\"")
            && all[2].contains("unsigned integer"),
        "{}",
        all[2]
    );
}

#[test]
fn a_misspelt_key_is_a_parse_error_naming_it() {
    let err =
        Config::from_toml_str("[postgres]\nurl = \"x\"\nslto = \"y\"\n", no_env()).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(chain(&err).contains("slto"), "{}", chain(&err));

    let text = format!("{BASE}\n[[sources]]\ntabel = \"Image\"\n");
    let err = Config::from_toml_str(&text, no_env()).unwrap_err();
    assert!(chain(&err).contains("tabel"), "{}", chain(&err));

    let err = Config::from_toml_str(
        "[index]\nfilters = [{ name = \"a\", kind = \"several\" }]\n",
        no_env(),
    )
    .unwrap_err();
    assert!(chain(&err).contains("several"), "{}", chain(&err));
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(err.to_string().contains("missing.toml"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[postgres]\nurl = \"x\"\n[[sources]]\ntable = \"T\"\nfield = \"f\"\n",
    )
    .unwrap();
    let err = Config::load(&bad).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad.toml"), "{text}");
    assert!(text.contains(r#"sources[0] (table "T")"#), "{text}");
}

#[test]
fn scalar_values_are_checked() {
    let all = problems(
        "[postgres]\nurl = \"\"\nslot = \"Bad-Slot\"\npublication = \"\"\n[http]\nlisten = \"localhost\"\n[wal]\nsegment_bytes = 0\n",
    );
    assert_eq!(all.len(), 5, "{all:#?}");
    assert!(all.iter().any(|p| p.contains("postgres.url is required")));
    assert!(
        all.iter()
            .any(|p| p.starts_with("postgres.slot = \"Bad-Slot\""))
    );
    assert!(all.iter().any(|p| p.starts_with("postgres.publication")));
    assert!(
        all.iter()
            .any(|p| p.starts_with("http.listen = \"localhost\""))
    );
    assert!(all.iter().any(|p| p.starts_with("wal.segment_bytes")));
}

#[test]
fn index_field_mistakes_are_all_reported() {
    let text = r#"
[postgres]
url = "x"
[index]
filters = [{ name = "a", kind = "single" }, { name = "a", kind = "multi" }, { name = "", kind = "bool" }]
sorts = [{ name = "s", bits = 0 }, { name = "t", bits = 33 }, { name = "u", bits = 300 }, { name = "s" }]
"#;
    let all = problems(text);
    assert_eq!(all.len(), 6, "{all:#?}");
    for needle in [
        r#"[index]: index field "a" is declared twice"#,
        r#"[index]: index field "s" is declared twice"#,
        "[index]: an index field has an empty name",
        r#"sort field "s": bits = 0"#,
        r#"sort field "t": bits = 33"#,
        r#"sort field "u": bits = 300"#,
    ] {
        assert!(
            all.iter().any(|p| p.contains(needle)),
            "{needle} not in {all:#?}"
        );
    }
}

#[test]
fn a_join_table_needs_a_declared_multi_value_field() {
    let single = format!(
        "{BASE}\n[[sources]]\ntable = \"Image\"\n\n[[sources]]\ntable = \"TagsOnImage\"\nslot_field = \"imageId\"\nfield = \"nsfwLevel\"\nvalue_field = \"tagId\"\n"
    );
    assert_problem(
        &single,
        &[
            r#"sources[1] (table "TagsOnImage"): field "nsfwLevel" is declared kind "single" in [index].filters; a join table needs a multi-value field"#,
        ],
    );
    let unknown = format!(
        "{BASE}\n[[sources]]\ntable = \"ToolsOnImage\"\nslot_field = \"imageId\"\nfield = \"toolIds\"\n"
    );
    assert_problem(
        &unknown,
        &[
            r#"sources[0] (table "ToolsOnImage")"#,
            r#"field "toolIds" is not declared"#,
        ],
    );
    let no_slot = format!("{BASE}\n[[sources]]\ntable = \"TagsOnImage\"\nfield = \"tagIds\"\n");
    assert_problem(
        &no_slot,
        &[r#"sources[0] (table "TagsOnImage")"#, "needs `slot_field`"],
    );
}

#[test]
fn track_field_targets_must_be_index_fields() {
    let text = format!(
        "{BASE}\n[[sources]]\ntable = \"Image\"\ntrack_fields = [\"nsfwLevel\", \"{{a}} + 1 as score\", \"tagIds\"]\n"
    );
    let all = problems(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_problem(
        &text,
        &[
            r#"sources[0] (table "Image"): track_fields[1] "{a} + 1 as score": target "score" is not an index field"#,
        ],
    );
    assert_problem(
        &text,
        &[r#"track_fields[2] "tagIds""#, "multi-value filter field"],
    );
}

#[test]
fn malformed_track_fields_name_source_expression_and_position() {
    let text = format!(
        "{BASE}\n[[sources]]\ntable = \"Image\"\ntrack_fields = [\"GREATEST({{scannedAt, {{createdAt}}) as existedAt\", \"a + 1\", \"{{x}} as not-a-name\", \"nsfwLevel\", \"{{nsfwLevel}} as nsfwLevel\"]\n"
    );
    let all = problems(&text);
    assert_eq!(all.len(), 4, "{all:#?}");
    assert_problem(
        &text,
        &[
            r#"sources[0] (table "Image"): track_fields[0] "GREATEST({scannedAt, {createdAt}) as existedAt""#,
            "position 10",
        ],
    );
    assert_problem(
        &text,
        &[r#"track_fields[1] "a + 1""#, "neither a column name"],
    );
    assert_problem(&text, &[r#"track_fields[2]"#, r#"target "not-a-name""#]);
    assert_problem(
        &text,
        &[r#"track_fields[4]"#, "already set by track_fields[3]"],
    );
}

#[test]
fn keys_that_do_not_belong_to_the_kind_are_errors() {
    let join_with_track = format!(
        "{BASE}\n[[sources]]\ntable = \"TagsOnImage\"\nslot_field = \"imageId\"\nfield = \"tagIds\"\ntrack_fields = [\"tagIds\"]\nquery = \"postId eq {{id}}\"\n"
    );
    let all = problems(&join_with_track);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_problem(
        &join_with_track,
        &["key `track_fields` does not belong to a join table"],
    );
    assert_problem(
        &join_with_track,
        &["key `query` does not belong to a join table"],
    );

    let fan_out_alive = format!(
        "{BASE}\n[[sources]]\ntable = \"Post\"\nquery = \"postId eq {{id}}\"\nsets_alive = true\nslot_field = \"id\"\n"
    );
    assert_problem(
        &fan_out_alive,
        &[
            r#"sources[0] (table "Post")"#,
            "key `sets_alive` does not belong to a fan-out table",
        ],
    );
    assert_problem(
        &fan_out_alive,
        &["key `slot_field` does not belong to a fan-out table"],
    );

    let direct_with_value =
        format!("{BASE}\n[[sources]]\ntable = \"Image\"\nvalue_field = \"x\"\n");
    assert_problem(
        &direct_with_value,
        &["key `value_field` does not belong to a direct table"],
    );
}

#[test]
fn on_delete_accepts_only_its_spellings() {
    for ok in ["\"delete_slot\"", "true", "\"true\"", "false"] {
        let text = format!("{BASE}\n[[sources]]\ntable = \"Image\"\non_delete = {ok}\n");
        let config = Config::from_toml_str(&text, no_env()).unwrap();
        let SourceKind::Direct { on_delete, .. } = config.sources[0].kind else {
            panic!()
        };
        assert_eq!(on_delete, ok != "false", "{ok}");
    }
    for bad in ["\"yes\"", "1", "\"false\""] {
        let text = format!("{BASE}\n[[sources]]\ntable = \"Image\"\non_delete = {bad}\n");
        assert_problem(
            &text,
            &[
                r#"sources[0] (table "Image"): on_delete = "#,
                "expected \"delete_slot\"",
            ],
        );
    }
}

#[test]
fn fan_out_queries_are_parsed_and_checked() {
    let bad = format!("{BASE}\n[[sources]]\ntable = \"Post\"\nquery = \"postId = {{id}}\"\n");
    assert_problem(
        &bad,
        &[
            r#"sources[0] (table "Post"): query "postId = {id}""#,
            "clause 1",
        ],
    );
    let unknown = format!(
        "{BASE}\n[[sources]]\ntable = \"Post\"\nquery = \"postId eq {{id}} AND userId in [{{userId}}]\"\n"
    );
    assert_problem(&unknown, &[r#"field "userId" is not a filter field"#]);
    let sort_only =
        format!("{BASE}\n[[sources]]\ntable = \"Post\"\nquery = \"existedAt eq {{id}}\"\n");
    assert_problem(&sort_only, &[r#"field "existedAt" is not a filter field"#]);
}

#[test]
fn sources_need_a_table_and_are_declared_once() {
    let text = format!(
        "{BASE}
[[sources]]
table = \"Image\"
[[sources]]
slot_field = \"id\"
[[sources]]
table = \"TagsOnImage\"
slot_field = \"imageId\"
field = \"tagIds\"
[[sources]]
table = \"TagsOnImage\"
slot_field = \"imageId\"
field = \"tagIds\"
[[sources]]
table = \"Image\"
[[sources]]
table = \"Post\"
query = \"postId eq {{id}}\"
[[sources]]
table = \"Post\"
query = \"postId  eq  {{id}}\"
"
    );
    let all = problems(&text);
    assert_eq!(all.len(), 4, "{all:#?}");
    assert_problem(&text, &[r#"sources[1] (table ""): `table` is missing"#]);
    assert_problem(
        &text,
        &[r#"sources[3] (table "TagsOnImage"): duplicates sources[2]"#],
    );
    assert_problem(
        &text,
        &[r#"sources[4] (table "Image"): duplicates sources[0]"#],
    );
    assert_problem(
        &text,
        &[r#"sources[6] (table "Post"): duplicates sources[5]"#],
    );

    // One table may feed two multi-value fields, and fan out through two queries.
    let ok = format!(
        "{BASE}
[[sources]]
table = \"TagsOnImage\"
slot_field = \"imageId\"
field = \"tagIds\"
[[sources]]
table = \"TagsOnImage\"
slot_field = \"imageId\"
field = \"tagIds2\"
filter = \"({{attributes}} >> 10) & 1 = 0\"
"
    )
    .replace(
        "{ name = \"postId\"",
        "{ name = \"tagIds2\", kind = \"multi\" },\n  { name = \"postId\"",
    );
    Config::from_toml_str(&ok, no_env()).unwrap();
}

#[test]
fn validate_checks_a_config_built_in_code() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let mut config = Config::from_toml_str(&text, no_env()).unwrap();
    config.sources.push(config.sources[1].clone());
    config.postgres.url.clear();
    let err = config.validate().unwrap_err();
    let all = err.problems();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0], Problem::MissingUrl);
    assert!(matches!(
        &all[1],
        Problem::Source {
            index: 3,
            problem: SourceProblem::Duplicate { first: 1, .. },
            ..
        }
    ));
}
