use super::*;
use crate::fixtures;

#[test]
fn names_are_stable_short_and_follow_the_function_text() {
    let config = fixtures::config();
    let specs = specs(&config, &Options::default());
    assert_eq!(specs.len(), config.sources.len());
    for s in &specs {
        assert!(s.name.len() <= 63, "{}", s.name);
        assert!(s.name.starts_with("pgroar_"), "{}", s.name);
    }
    // Pinned: the same config gives the same names on every build and toolchain.
    assert_eq!(specs[0].name, PINNED_IMAGE_NAME, "{}", specs[0].function);
    let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), specs.len(), "two sources share a trigger name");
    // Another schema changes the text, hence the name.
    let other = specs_for_schema(&config, "feed");
    assert_ne!(other[0].name, specs[0].name);
}

const PINNED_IMAGE_NAME: &str = "pgroar_image_32bd3919";

fn specs_for_schema(config: &Config, schema: &str) -> Vec<TriggerSpec> {
    specs(
        config,
        &Options {
            schema: schema.into(),
        },
    )
}

#[test]
fn expressions_read_the_row_and_literals_are_left_alone() {
    let config = fixtures::config();
    let sql = install_sql(&config, &Options::default());
    assert!(sql.contains(r#"(NEW."type"::text)"#), "{sql}");
    assert!(sql.contains(r#"GREATEST(OLD."scannedAt", OLD."createdAt")"#));
    assert!(!sql.contains("{flags}"));
    assert!(sql.contains("'postId eq ' || \"public\".pgroar_query_word(to_jsonb(NEW.\"id\"))"));
    assert!(sql.contains("ENABLE ALWAYS TRIGGER"));
    assert!(sql.starts_with("-- pgroar triggers") && sql.trim_end().ends_with("COMMIT;"));
    let drop = drop_sql(&config, &Options::default());
    assert!(
        drop.contains("DROP TRIGGER") && !drop.contains("CREATE "),
        "{drop}"
    );
}

#[test]
fn quoting_survives_hostile_names() {
    assert_eq!(ident(r#"a"b"#), r#""a""b""#);
    assert_eq!(literal("it's"), "'it''s'");
    assert_eq!(table_sql("feed.Image"), r#""feed"."Image""#);
    let long = "x".repeat(80);
    assert!(trigger_name(&long, "body").len() <= 63);
    assert_eq!(
        trigger_name("My Table", "f"),
        format!("pgroar_my_table_{:08x}", crc32fast::hash(b"f"))
    );
}
