//! The pipeline's phase, and the tracker that derives it from the stream's and the apply
//! loop's states.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::Status;

/// What the pipeline is doing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Phase {
    /// Loading the checkpoint, checking the slot; no stream yet.
    Starting = 0,
    /// Dump-then-stream bootstrap: copying tables into the index.
    Bootstrapping = 1,
    /// Replaying the WAL tail after a restart.
    Replaying = 2,
    /// Following the replication stream: the index is live.
    Streaming = 3,
    /// The connection dropped; retrying with backoff. Queries still answer from the last state.
    Reconnecting = 4,
    /// Shutting down.
    Stopping = 5,
}

impl Phase {
    /// Every phase, in declaration order.
    pub const ALL: [Phase; 6] = [
        Phase::Starting,
        Phase::Bootstrapping,
        Phase::Replaying,
        Phase::Streaming,
        Phase::Reconnecting,
        Phase::Stopping,
    ];

    /// The lower-case name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Bootstrapping => "bootstrapping",
            Phase::Replaying => "replaying",
            Phase::Streaming => "streaming",
            Phase::Reconnecting => "reconnecting",
            Phase::Stopping => "stopping",
        }
    }

    pub(super) fn from_u8(v: u8) -> Phase {
        Phase::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(Phase::Starting)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides the published [`Phase`] from whether the stream is up and whether the apply loop is
/// still replaying the WAL tail: ready ("streaming") needs both.
#[derive(Debug, Default)]
pub struct PhaseTracker {
    connected: AtomicBool,
    replaying: AtomicBool,
    stopping: AtomicBool,
}

impl PhaseTracker {
    /// The stream is up (`true`) or down.
    pub fn set_connected(&self, status: &Status, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
        self.publish(status, !connected);
    }

    /// The apply loop is replaying the WAL tail (`true`) or has caught up.
    pub fn set_replaying(&self, status: &Status, replaying: bool) {
        self.replaying.store(replaying, Ordering::SeqCst);
        self.publish(status, false);
    }

    /// Shutdown has begun; the phase stays `stopping`.
    pub fn set_stopping(&self, status: &Status) {
        self.stopping.store(true, Ordering::SeqCst);
        status.set_phase(Phase::Stopping);
    }

    fn publish(&self, status: &Status, lost: bool) {
        let phase = if self.stopping.load(Ordering::SeqCst) {
            Phase::Stopping
        } else if self.replaying.load(Ordering::SeqCst) {
            Phase::Replaying
        } else if self.connected.load(Ordering::SeqCst) {
            Phase::Streaming
        } else if lost {
            Phase::Reconnecting
        } else {
            return;
        };
        status.set_phase(phase);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_stream_and_the_replay() {
        let status = Status::new("s", "p");
        let t = PhaseTracker::default();
        t.set_replaying(&status, true);
        t.set_connected(&status, true);
        assert_eq!(status.phase(), Phase::Replaying);
        t.set_replaying(&status, false);
        assert_eq!(status.phase(), Phase::Streaming);
        t.set_connected(&status, false);
        assert_eq!(status.phase(), Phase::Reconnecting);
        t.set_stopping(&status);
        t.set_connected(&status, true);
        assert_eq!(status.phase(), Phase::Stopping);
    }
}
