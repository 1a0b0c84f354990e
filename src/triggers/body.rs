//! The PL/pgSQL of each source kind's trigger: the translator's rules (`translate::rows`), one
//! for one, so that with `REPLICA IDENTITY FULL` both write the same ops for every row change.
//!
//! * direct: INSERT → `set` of every tracked field (`creates_slot` when `sets_alive`); UPDATE →
//!   `remove(old)` + `set(new)` per field whose values are `IS DISTINCT FROM` each other, or,
//!   when the slot id itself changed, `delete` of the old slot (with `on_delete`) and the new row
//!   as an INSERT; DELETE → `delete` (with `on_delete`). A NULL slot id writes nothing.
//! * join: INSERT → `add` when the filter holds; DELETE → `remove` when it held; UPDATE that keeps
//!   slot and value → `add` or `remove` by the new filter outcome, otherwise the old row's DELETE
//!   then the new row's INSERT. A filter that is NULL does not hold.
//! * fan-out: `queryOpSet` under the query filled from the row (NULL when a value is NULL),
//!   grouped under the row's integer `id` (else 0): INSERT → `set` of every field; UPDATE →
//!   changed fields as for direct, or, for a source kept as a join whose query changed, the old
//!   query's fields set NULL then the new query's `set`s; DELETE → the old query's fields set
//!   NULL.

use std::fmt::Write;

use super::{ident, literal};
use crate::config::{QueryOp, QueryTemplate, SourceKind, TrackField, substitute};

/// The helper functions every trigger calls: a value as a `queryOpSet` query spells it, and a
/// row's grouping id.
pub(super) fn helpers_sql(schema: &str) -> String {
    format!(
        r#"CREATE OR REPLACE FUNCTION {schema}.pgroar_query_word(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $pgroar$
    SELECT CASE jsonb_typeof(v)
        WHEN 'string' THEN '"' || replace(replace(v #>> '{{}}', '\', '\\'), '"', '\"') || '"'
        WHEN 'number' THEN CASE WHEN v::text ~ '^-?[0-9]+$' THEN v::text
                                ELSE trim_scale(v::text::numeric)::text END
        WHEN 'null' THEN NULL
        ELSE v::text END
$pgroar$;
CREATE OR REPLACE FUNCTION {schema}.pgroar_source_id(r jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $pgroar$
    SELECT CASE WHEN jsonb_typeof(r -> 'id') = 'number' AND (r ->> 'id') ~ '^-?[0-9]+$'
                THEN (r ->> 'id')::bigint ELSE 0 END
$pgroar$;
"#
    )
}

/// The text between `AS $pgroar$` and `$pgroar$` of a source's trigger function.
pub(super) fn function_body(kind: &SourceKind, ops_table: &str, helpers: &str) -> String {
    let w = Writer {
        ops_table,
        helpers,
        out: String::new(),
    };
    match kind {
        SourceKind::Direct {
            slot_field,
            track,
            sets_alive,
            on_delete,
        } => w.direct(slot_field, track, *sets_alive, *on_delete),
        SourceKind::Join {
            slot_field,
            field,
            value_field,
            filter,
        } => w.join(slot_field, field, value_field, filter.as_deref()),
        SourceKind::FanOut { query, track, join } => w.fan_out(query, track, *join),
    }
}

/// `(expr)` over row `NEW` or `OLD`.
fn over(row: &str, expr: &str) -> String {
    format!("({})", substitute(expr, |c| format!("{row}.{}", ident(c))))
}

fn column(row: &str, name: &str) -> String {
    format!("{row}.{}", ident(name))
}

/// A `set`/`remove`/`add` op object with value `value` (SQL, turned to JSON by `to_jsonb`).
fn field_op(op: &str, field: &str, value: &str) -> String {
    format!(
        "jsonb_build_object('op', '{op}', 'field', {}, 'value', to_jsonb({value}))",
        literal(field)
    )
}

/// `set` of each tracked field, evaluated over `row`.
fn sets(track: &[TrackField], row: &str) -> String {
    let ops: Vec<String> = track
        .iter()
        .map(|t| field_op("set", &t.target, &over(row, &t.expr)))
        .collect();
    format!("jsonb_build_array({})", ops.join(",\n            "))
}

/// `set` NULL of each tracked field.
fn clears(track: &[TrackField]) -> String {
    let ops: Vec<String> = track
        .iter()
        .map(|t| {
            format!(
                "jsonb_build_object('op', 'set', 'field', {}, 'value', NULL::jsonb)",
                literal(&t.target)
            )
        })
        .collect();
    format!("jsonb_build_array({})", ops.join(", "))
}

/// `jsonb_build_array(queryOpSet(query, ops))`.
fn query_op_set(query: &str, ops: &str) -> String {
    format!("jsonb_build_object('op', 'queryOpSet', 'query', {query}, 'ops', {ops})")
}

struct Writer<'a> {
    ops_table: &'a str,
    helpers: &'a str,
    out: String,
}

impl Writer<'_> {
    fn line(&mut self, indent: usize, text: &str) {
        let _ = writeln!(self.out, "{:indent$}{text}", "", indent = indent * 4);
    }

    /// `INSERT INTO ops …` of one entity.
    fn emit(&mut self, indent: usize, entity: &str, ops: &str, creates_slot: bool) {
        let text = format!(
            "INSERT INTO {} (entity_id, ops, creates_slot) VALUES ({entity}, {ops}, {creates_slot});",
            self.ops_table
        );
        self.line(indent, &text);
    }

    /// `ops := ops || [remove(old), set(new)]` for each field whose value changed.
    fn changed(&mut self, indent: usize, track: &[TrackField]) {
        for t in track {
            let (old, new) = (over("OLD", &t.expr), over("NEW", &t.expr));
            self.line(indent, &format!("IF {old} IS DISTINCT FROM {new} THEN"));
            self.line(
                indent + 1,
                &format!(
                    "ops := ops || jsonb_build_array({},\n{:w$}{});",
                    field_op("remove", &t.target, &old),
                    "",
                    field_op("set", &t.target, &new),
                    w = (indent + 2) * 4
                ),
            );
            self.line(indent, "END IF;");
        }
    }

    fn direct(
        mut self,
        slot: &str,
        track: &[TrackField],
        sets_alive: bool,
        on_delete: bool,
    ) -> String {
        let (new_id, old_id) = (column("NEW", slot), column("OLD", slot));
        let delete = r#"'[{"op": "delete"}]'::jsonb"#;
        self.line(0, "DECLARE\n    ops jsonb := '[]';\nBEGIN");
        self.line(1, "IF TG_OP = 'DELETE' THEN");
        if on_delete {
            self.line(2, &format!("IF {old_id} IS NOT NULL THEN"));
            self.emit(3, &format!("({old_id})::bigint"), delete, false);
            self.line(2, "END IF;");
        }
        self.line(2, "RETURN NULL;");
        self.line(1, "END IF;");
        self.line(
            1,
            &format!("IF {new_id} IS NULL THEN\n        RETURN NULL;\n    END IF;"),
        );
        self.line(1, "IF TG_OP = 'INSERT' THEN");
        self.emit(
            2,
            &format!("({new_id})::bigint"),
            &sets(track, "NEW"),
            sets_alive,
        );
        self.line(2, "RETURN NULL;");
        self.line(1, "END IF;");
        // An UPDATE from here on. The slot id itself changed: the old entity goes, the new one
        // arrives whole.
        self.line(
            1,
            &format!("IF {old_id} IS NOT NULL AND {old_id} IS DISTINCT FROM {new_id} THEN"),
        );
        if on_delete {
            self.emit(2, &format!("({old_id})::bigint"), delete, false);
        }
        self.emit(
            2,
            &format!("({new_id})::bigint"),
            &sets(track, "NEW"),
            sets_alive,
        );
        self.line(2, "RETURN NULL;");
        self.line(1, "END IF;");
        self.changed(1, track);
        self.line(1, "IF ops <> '[]' THEN");
        self.emit(2, &format!("({new_id})::bigint"), "ops", false);
        self.line(1, "END IF;");
        self.line(1, "RETURN NULL;\nEND;");
        self.out
    }

    fn join(mut self, slot: &str, field: &str, value: &str, filter: Option<&str>) -> String {
        let holds = |row: &str| {
            filter.map_or("true".to_string(), |f| {
                format!("COALESCE({}, false)", over(row, f))
            })
        };
        let op = |kind: &str, row: &str| {
            format!(
                "jsonb_build_array({})",
                field_op(kind, field, &column(row, value))
            )
        };
        let entity = |row: &str| format!("({})::bigint", column(row, slot));
        self.line(0, "BEGIN");
        self.line(1, "IF TG_OP = 'UPDATE' THEN");
        self.line(
            2,
            &format!(
                "IF {} IS NOT DISTINCT FROM {} AND {} IS NOT DISTINCT FROM {} THEN",
                column("OLD", slot),
                column("NEW", slot),
                column("OLD", value),
                column("NEW", value)
            ),
        );
        // Same slot and value: only the filter's outcome may have changed.
        self.line(3, &format!("IF {} IS NOT NULL THEN", column("NEW", slot)));
        self.line(4, &format!("IF {} THEN", holds("NEW")));
        self.emit(5, &entity("NEW"), &op("add", "NEW"), false);
        self.line(4, "ELSE");
        self.emit(5, &entity("NEW"), &op("remove", "NEW"), false);
        self.line(4, "END IF;");
        self.line(3, "END IF;");
        self.line(3, "RETURN NULL;");
        self.line(2, "END IF;");
        self.line(1, "END IF;");
        // Otherwise the old row goes out and the new one comes in.
        for (ops, row, kind) in [
            ("('UPDATE', 'DELETE')", "OLD", "remove"),
            ("('INSERT', 'UPDATE')", "NEW", "add"),
        ] {
            self.line(1, &format!("IF TG_OP IN {ops} THEN"));
            let guard = format!("{} IS NOT NULL AND {}", column(row, slot), holds(row));
            self.line(2, &format!("IF {guard} THEN"));
            self.emit(3, &entity(row), &op(kind, row), false);
            self.line(2, "END IF;");
            self.line(1, "END IF;");
        }
        self.line(1, "RETURN NULL;\nEND;");
        self.out
    }

    /// The query text filled from `row`, as SQL (NULL when a value is NULL).
    fn query(&self, query: &QueryTemplate, row: &str) -> String {
        let word = |c: &str| {
            format!(
                "{}.pgroar_query_word(to_jsonb({}))",
                self.helpers,
                column(row, c)
            )
        };
        let clauses: Vec<String> = query
            .clauses
            .iter()
            .map(|c| match c.op {
                QueryOp::Eq => format!(
                    "{} || {}",
                    literal(&format!("{} eq ", c.field)),
                    word(&c.columns[0])
                ),
                QueryOp::In => {
                    let words: Vec<String> = c.columns.iter().map(|col| word(col)).collect();
                    format!(
                        "{} || {} || ']'",
                        literal(&format!("{} in [", c.field)),
                        words.join(" || ', ' || ")
                    )
                }
            })
            .collect();
        clauses.join(" || ' AND ' || ")
    }

    fn fan_out(mut self, query: &QueryTemplate, track: &[TrackField], join: bool) -> String {
        let id = |row: &str| format!("{}.pgroar_source_id(to_jsonb({row}))", self.helpers);
        let (q_new, q_old) = (self.query(query, "NEW"), self.query(query, "OLD"));
        let (id_new, id_old) = (id("NEW"), id("OLD"));
        self.line(
            0,
            "DECLARE\n    ops jsonb := '[]';\n    q_new text;\n    q_old text;\nBEGIN",
        );
        self.line(1, "IF TG_OP <> 'DELETE' THEN");
        self.line(2, &format!("q_new := {q_new};"));
        self.line(1, "END IF;");
        self.line(1, "IF TG_OP <> 'INSERT' THEN");
        self.line(2, &format!("q_old := {q_old};"));
        self.line(1, "END IF;");
        self.line(1, "IF TG_OP = 'DELETE' THEN");
        self.line(2, "IF q_old IS NOT NULL THEN");
        let cleared = format!(
            "jsonb_build_array({})",
            query_op_set("q_old", &clears(track))
        );
        self.emit(3, &id_old, &cleared, false);
        self.line(2, "END IF;");
        self.line(2, "RETURN NULL;");
        self.line(1, "END IF;");
        let filled = query_op_set("q_new", &sets(track, "NEW"));
        self.line(1, "IF TG_OP = 'INSERT' THEN");
        self.emit(2, &id_new, &format!("jsonb_build_array({filled})"), false);
        self.line(2, "RETURN NULL;");
        self.line(1, "END IF;");
        if join {
            // A joined row whose key changed: the old key's slots lose it, the new key's get it.
            self.line(
                1,
                "IF q_old IS NOT NULL AND q_old IS DISTINCT FROM q_new THEN",
            );
            let both = format!(
                "jsonb_build_array({},\n            {filled})",
                query_op_set("q_old", &clears(track))
            );
            self.emit(2, &id_new, &both, false);
            self.line(2, "RETURN NULL;");
            self.line(1, "END IF;");
        }
        self.changed(1, track);
        self.line(1, "IF ops <> '[]' THEN");
        self.emit(
            2,
            &id_new,
            &format!("jsonb_build_array({})", query_op_set("q_new", "ops")),
            false,
        );
        self.line(1, "END IF;");
        self.line(1, "RETURN NULL;\nEND;");
        self.out
    }
}
