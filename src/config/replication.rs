//! `[replication]` (optional): scale-out over NATS JetStream. With it, `pgroar run` is the
//! leader (or a standby waiting for the leader's lease) and publishes every durable
//! transaction's ops to a stream and its checkpoints to an object store bucket; `pgroar follow`
//! serves queries from that stream without touching Postgres.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::Problem;

/// Default lease time-to-live: a standby takes over this long after the leader's last renewal.
pub const DEFAULT_LEASE_TTL_MS: u64 = 4_000;

/// Default number of checkpoints kept in the object store (the stream keeps what follows the
/// oldest of them).
pub const DEFAULT_KEEP_CHECKPOINTS: u32 = 2;

/// `[replication]` when `url` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// The NATS server(s), comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The stream's name; the bucket names derive from it.
    pub stream: String,
    /// A NATS credentials file (`.creds`), if the server asks for one.
    pub credentials: Option<PathBuf>,
    /// A CA certificate to trust for TLS (`tls://` URLs or `tls_required`).
    pub tls_ca: Option<PathBuf>,
    /// Require TLS.
    pub tls_required: bool,
    /// How many replicas the stream and buckets are created with (a NATS cluster's size).
    pub replicas: usize,
    /// The leader's lease time-to-live (renewed every quarter of it).
    pub lease_ttl_ms: u64,
    /// Checkpoints kept in the object store.
    pub keep_checkpoints: u32,
}

/// `[replication]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ReplicationFile {
    pub url: Option<String>,
    pub stream: Option<String>,
    pub credentials: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_required: Option<bool>,
    pub replicas: Option<u64>,
    pub lease_ttl_ms: Option<u64>,
    pub keep_checkpoints: Option<u32>,
}

impl ReplicationFile {
    /// The section's config (`None` without a `url`), its problems added to `problems`. The
    /// stream's default name comes from the slot's.
    pub(super) fn into_config(
        self,
        slot: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<ReplicationConfig> {
        let url = self.url.filter(|u| !u.trim().is_empty())?;
        let stream = self.stream.unwrap_or_else(|| default_stream(slot));
        if stream.is_empty()
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            problems.push(Problem::BadValue {
                key: "replication.stream",
                value: format!("{stream:?}"),
                rule: "letters, digits, '_' and '-' only",
            });
        }
        let replicas = self.replicas.unwrap_or(1);
        if !(1..=5).contains(&replicas) {
            problems.push(Problem::BadValue {
                key: "replication.replicas",
                value: replicas.to_string(),
                rule: "JetStream keeps 1 to 5 replicas",
            });
        }
        let lease_ttl_ms = self.lease_ttl_ms.unwrap_or(DEFAULT_LEASE_TTL_MS);
        if lease_ttl_ms < 1_000 {
            problems.push(Problem::BadValue {
                key: "replication.lease_ttl_ms",
                value: lease_ttl_ms.to_string(),
                rule: "must be at least 1000 (the key-value store expires keys by the second)",
            });
        }
        let keep_checkpoints = self.keep_checkpoints.unwrap_or(DEFAULT_KEEP_CHECKPOINTS);
        if keep_checkpoints == 0 {
            problems.push(Problem::BadValue {
                key: "replication.keep_checkpoints",
                value: "0".into(),
                rule: "must be at least 1 (a follower starts from one)",
            });
        }
        Some(ReplicationConfig {
            url,
            stream,
            credentials: self.credentials,
            tls_ca: self.tls_ca,
            tls_required: self.tls_required.unwrap_or(false),
            replicas: replicas.clamp(1, 5) as usize,
            lease_ttl_ms: lease_ttl_ms.max(1_000),
            keep_checkpoints: keep_checkpoints.max(1),
        })
    }
}

/// `PGROAR_<slot>`, with what a stream name cannot hold replaced by `_`.
pub fn default_stream(slot: &str) -> String {
    let cleaned: String = slot
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("PGROAR_{cleaned}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_defaults_to_the_slot_and_bad_values_are_named() {
        let mut problems = Vec::new();
        let c = ReplicationFile {
            url: Some("nats://127.0.0.1:4222".into()),
            ..Default::default()
        }
        .into_config("pgroar.slot", &mut problems)
        .unwrap();
        assert_eq!(c.stream, "PGROAR_pgroar_slot");
        assert_eq!(c.lease_ttl_ms, DEFAULT_LEASE_TTL_MS);
        assert!(problems.is_empty());
        let none = ReplicationFile::default().into_config("s", &mut problems);
        assert!(none.is_none());
        ReplicationFile {
            url: Some("nats://x".into()),
            stream: Some("a.b".into()),
            lease_ttl_ms: Some(10),
            keep_checkpoints: Some(0),
            replicas: Some(7),
            ..Default::default()
        }
        .into_config("s", &mut problems);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{text:?}");
        assert!(text[0].contains("replication.stream"));
    }
}
