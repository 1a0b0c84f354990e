//! Environment overrides: `PGROAR_<SECTION>_<KEY>` sets a scalar key of a table section and
//! wins over the file. Variables of unknown sections (e.g. `PGROAR_PG_BIN`, `PGROAR_LOG`) are
//! not ours and are ignored; an unknown key of a known section is an error naming the
//! variable, so a misspelt override never goes unnoticed.

use std::path::PathBuf;
use std::str::FromStr;

use super::ConfigFile;
use super::error::Problem;

/// The prefix of every override variable.
pub const ENV_PREFIX: &str = "PGROAR_";

/// Every key settable from the environment, as `(section, key)`.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("postgres", "url"),
    ("postgres", "publication"),
    ("postgres", "slot"),
    ("postgres", "status_interval_ms"),
    ("postgres", "receive_timeout_ms"),
    ("storage", "data_dir"),
    ("http", "listen"),
    ("http", "token"),
    ("http", "ready_max_lag_secs"),
    ("http", "query_timeout_ms"),
    ("http", "max_connections"),
    ("forward", "url"),
    ("forward", "token"),
    ("replication", "url"),
    ("replication", "stream"),
    ("replication", "credentials"),
    ("replication", "lease_ttl_ms"),
    ("wal", "segment_bytes"),
    ("wal", "group_commit_max_ms"),
    ("wal", "group_commit_max_bytes"),
    ("wal", "max_backlog_bytes"),
    ("index", "checkpoint_interval_secs"),
    ("index", "checkpoint_wal_percent"),
];

/// The sections and the keys each takes from the environment (for error messages).
const SECTIONS: &[(&str, &str)] = &[
    (
        "postgres",
        "url, publication, slot, status_interval_ms, receive_timeout_ms",
    ),
    ("storage", "data_dir"),
    (
        "http",
        "listen, token, ready_max_lag_secs, query_timeout_ms, max_connections",
    ),
    ("forward", "url, token"),
    ("replication", "url, stream, credentials, lease_ttl_ms"),
    (
        "wal",
        "segment_bytes, group_commit_max_ms, group_commit_max_bytes, max_backlog_bytes",
    ),
    ("index", "checkpoint_interval_secs, checkpoint_wal_percent"),
];

/// Applies the overrides in `env` (in variable-name order) and lists the problems.
pub(super) fn apply(
    file: &mut ConfigFile,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<Problem> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    let mut problems = Vec::new();
    for (var, value) in vars {
        let rest = &var[ENV_PREFIX.len()..];
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        let Some(&(section, known)) = SECTIONS.iter().find(|(s, _)| *s == section) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        if let Err(problem) = set(file, section, &key, &var, value) {
            problems.push(problem.unwrap_or(Problem::EnvUnknownKey {
                var: var.clone(),
                section,
                key,
                known,
            }));
        }
    }
    problems
}

/// Sets one key; `Err(None)` when the section has no such key.
fn set(
    file: &mut ConfigFile,
    section: &'static str,
    key: &str,
    var: &str,
    value: String,
) -> Result<(), Option<Problem>> {
    let parsed = |slot: &mut u64, name: &str| parse_into(slot, var, name, &value);
    match (section, key) {
        ("postgres", "url") => file.postgres.url = Some(value),
        ("postgres", "publication") => file.postgres.publication = value,
        ("postgres", "slot") => file.postgres.slot = value,
        ("postgres", "status_interval_ms") => parsed(
            &mut file.postgres.status_interval_ms,
            "postgres.status_interval_ms",
        )?,
        ("postgres", "receive_timeout_ms") => {
            let mut ms = 0u64;
            parsed(&mut ms, "postgres.receive_timeout_ms")?;
            file.postgres.receive_timeout_ms = Some(ms);
        }
        ("storage", "data_dir") => file.storage.data_dir = PathBuf::from(value),
        ("http", "listen") => file.http.listen = value,
        ("http", "token") => file.http.token = Some(value),
        ("http", "ready_max_lag_secs") => {
            parsed(&mut file.http.ready_max_lag_secs, "http.ready_max_lag_secs")?;
        }
        ("http", "query_timeout_ms") => {
            parsed(&mut file.http.query_timeout_ms, "http.query_timeout_ms")?;
        }
        ("http", "max_connections") => {
            parsed(&mut file.http.max_connections, "http.max_connections")?;
        }
        ("forward", "url") => file.forward.url = Some(value),
        ("forward", "token") => file.forward.token = Some(value),
        ("replication", "url") => file.replication.url = Some(value),
        ("replication", "stream") => file.replication.stream = Some(value),
        ("replication", "credentials") => {
            file.replication.credentials = Some(PathBuf::from(value));
        }
        ("replication", "lease_ttl_ms") => {
            let mut ttl = 0u64;
            parsed(&mut ttl, "replication.lease_ttl_ms")?;
            file.replication.lease_ttl_ms = Some(ttl);
        }
        ("wal", "segment_bytes") => parsed(&mut file.wal.segment_bytes, "wal.segment_bytes")?,
        ("wal", "group_commit_max_ms") => {
            parsed(&mut file.wal.group_commit_max_ms, "wal.group_commit_max_ms")?;
        }
        ("wal", "group_commit_max_bytes") => parsed(
            &mut file.wal.group_commit_max_bytes,
            "wal.group_commit_max_bytes",
        )?,
        ("wal", "max_backlog_bytes") => {
            parsed(&mut file.wal.max_backlog_bytes, "wal.max_backlog_bytes")?;
        }
        ("index", "checkpoint_interval_secs") => parsed(
            &mut file.index.checkpoint_interval_secs,
            "index.checkpoint_interval_secs",
        )?,
        ("index", "checkpoint_wal_percent") => parsed(
            &mut file.index.checkpoint_wal_percent,
            "index.checkpoint_wal_percent",
        )?,
        ("index", "filters") => return Err(Some(not_scalar(var, "index.filters"))),
        ("index", "sorts") => return Err(Some(not_scalar(var, "index.sorts"))),
        _ => return Err(None),
    }
    Ok(())
}

fn not_scalar(var: &str, key: &'static str) -> Problem {
    Problem::EnvNotScalar {
        var: var.to_owned(),
        key,
    }
}

/// Parses `value` as the slot's type, naming the variable when it does not parse.
fn parse_into<T: FromStr + TypeName>(
    slot: &mut T,
    var: &str,
    key: &str,
    value: &str,
) -> Result<(), Option<Problem>> {
    *slot = value.trim().parse().map_err(|_| {
        Some(Problem::EnvValue {
            var: var.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            expected: T::EXPECTED,
        })
    })?;
    Ok(())
}

/// How a key's type is described in errors.
trait TypeName {
    const EXPECTED: &'static str;
}

impl TypeName for u64 {
    const EXPECTED: &'static str = "an unsigned integer";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_key_is_settable() {
        for (section, key) in ENV_KEYS {
            let mut file = ConfigFile::default();
            let var = format!("PGROAR_{}_{}", section.to_uppercase(), key.to_uppercase());
            assert_eq!(
                apply(&mut file, [(var.clone(), "7".to_owned())]),
                [],
                "{var}"
            );
            let known = SECTIONS.iter().find(|(s, _)| s == section).unwrap().1;
            assert!(
                known.split(", ").any(|k| k == *key),
                "{var} not in SECTIONS"
            );
        }
    }
}
