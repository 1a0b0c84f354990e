//! The replication slot as the server sees it, read every few seconds while streaming.

use serde::{Deserialize, Serialize};

/// A row of `pg_replication_slots` for pgroar's slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotState {
    /// A session streams from it.
    pub active: bool,
    /// `reserved`, `extended`, `unreserved` or `lost` (lost: the WAL it needed is gone).
    pub wal_status: String,
    /// WAL the slot keeps on the server, in bytes (from its `restart_lsn` to the current WAL end).
    pub retained_bytes: u64,
    /// Bytes that can still be written before the slot is at risk of `lost`
    /// (`max_slot_wal_keep_size` set), else `None`.
    pub safe_wal_bytes: Option<i64>,
    /// Seconds since the row was read.
    #[serde(default)]
    pub age_seconds: f64,
}
