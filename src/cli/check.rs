//! `pgroar check`: load and validate a config, print what it defines.

use std::path::Path;

use anyhow::Context;
use pgroar::config::{Config, SourceKind};

pub fn run(path: &Path) -> anyhow::Result<()> {
    let config =
        Config::load(path).with_context(|| format!("config {} is not valid", path.display()))?;
    let schema = config.schema();
    println!("config {} is valid", path.display());
    println!("index fields:");
    for f in &schema.filters {
        println!("  filter {:<24} {:?}", f.name, f.kind);
    }
    for s in &schema.sorts {
        println!("  sort   {:<24} {} bits", s.name, s.bits);
    }
    println!("sources:");
    for s in &config.sources {
        match &s.kind {
            SourceKind::Direct {
                slot_field,
                track,
                sets_alive,
                on_delete,
            } => println!(
                "  {:<24} direct  slot={slot_field} tracks {} fields, sets_alive={sets_alive}, on_delete={on_delete}",
                s.table,
                track.len()
            ),
            SourceKind::Join {
                slot_field,
                field,
                value_field,
                filter,
            } => println!(
                "  {:<24} join    slot={slot_field} {field} <- {value_field}{}",
                s.table,
                filter
                    .as_deref()
                    .map(|f| format!(" where {f}"))
                    .unwrap_or_default()
            ),
            SourceKind::FanOut { query, track, join } => {
                let how = if *join {
                    "joined (LEFT JOIN semantics)"
                } else {
                    "applied to the matching slots"
                };
                println!(
                    "  {:<24} fan-out {} tracks {} fields, {how}",
                    s.table,
                    query.text,
                    track.len()
                );
            }
        }
    }
    Ok(())
}
