//! Snapshots pinned at an LSN: the index exactly as it is after every transaction that commits
//! before a given LSN, and none after — what `pgroar check` compares with a SQL snapshot taken
//! at that LSN (a replication slot's consistent point).
//!
//! A request names the LSN `C`. The apply loop, before it hands the sink any entry at or beyond
//! `C` (a record of a transaction committing at or after it, or a Mark there), flushes what it
//! has, waits for the sink to apply it, and answers with that snapshot. Everything it has handed
//! over by then ends at a transaction boundary before `C`, since the WAL reader yields whole
//! transactions in commit order.
//!
//! The race with the apply loop is settled by one rule: the loop records the LSN of each entry
//! before it looks for a request, and a requester records its request before it looks at that
//! LSN; whoever then takes the request out of its slot (the loop to answer it, the requester to
//! withdraw it because the loop had already gone past `C`) decides. A request the loop is past
//! fails with [`PinError::Passed`]; the caller takes a newer SQL snapshot and asks again.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::Lsn;
use crate::index::Snapshot;

/// Why a pinned snapshot could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The index had already applied a transaction at or after the LSN.
    #[error("the index is already past LSN {lsn}; take a newer snapshot and ask again")]
    Passed {
        /// The requested LSN.
        lsn: Lsn,
    },
    /// Another pin request is waiting.
    #[error("another pinned snapshot is being taken; try again when it is done")]
    Busy,
    /// The pipeline stopped before it reached the LSN.
    #[error("the pipeline stopped before it reached the LSN")]
    Stopped,
}

type Reply = Sender<Result<Snapshot, PinError>>;

/// The slot a pin request waits in, shared by the pipeline's callers and its apply loop.
#[derive(Debug, Default)]
pub struct Pins {
    /// The requested LSN, `u64::MAX` when none (the loop's fast check).
    target: AtomicU64,
    /// The LSN of the newest entry the apply loop has started to hand over.
    dispatched: AtomicU64,
    request: Mutex<Option<(Lsn, Reply)>>,
}

impl Pins {
    /// An empty slot.
    pub fn new() -> Arc<Pins> {
        Arc::new(Pins {
            target: AtomicU64::new(u64::MAX),
            dispatched: AtomicU64::new(0),
            request: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Lsn, Reply)>> {
        self.request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks for the snapshot at `lsn`; the answer arrives on the receiver once the apply loop
    /// reaches the LSN (or at once, with an error).
    pub fn request(&self, lsn: Lsn) -> Receiver<Result<Snapshot, PinError>> {
        let (tx, rx) = bounded(1);
        {
            let mut slot = self.lock();
            if slot.is_some() {
                let _ = tx.send(Err(PinError::Busy));
                return rx;
            }
            *slot = Some((lsn, tx));
            self.target.store(lsn.0, Ordering::SeqCst);
        }
        if self.dispatched.load(Ordering::SeqCst) >= lsn.0 {
            // The loop may already have handed over an entry at or past `lsn`: withdraw the
            // request, unless the loop took it first (then it answers).
            if let Some((_, reply)) = self.take() {
                let _ = reply.send(Err(PinError::Passed { lsn }));
            }
        }
        rx
    }

    fn take(&self) -> Option<(Lsn, Reply)> {
        let taken = self.lock().take();
        self.target.store(u64::MAX, Ordering::SeqCst);
        taken
    }

    /// For the apply loop, before it hands over an entry at `lsn`: the request this entry
    /// reaches, if any (the caller answers it with the snapshot of what it handed over before).
    pub(crate) fn due(&self, lsn: Lsn) -> Option<Sender<Result<Snapshot, PinError>>> {
        self.dispatched.fetch_max(lsn.0, Ordering::SeqCst);
        if lsn.0 < self.target.load(Ordering::SeqCst) {
            return None;
        }
        let mut slot = self.lock();
        match slot.as_ref() {
            Some((target, _)) if lsn >= *target => {
                let (_, reply) = slot.take()?;
                self.target.store(u64::MAX, Ordering::SeqCst);
                Some(reply)
            }
            _ => None,
        }
    }

    /// For the apply loop as it ends: a waiting request will not be answered.
    pub(crate) fn stopped(&self) {
        if let Some((_, reply)) = self.take() {
            let _ = reply.send(Err(PinError::Stopped));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_answered_by_the_first_entry_at_its_lsn_or_refused_when_passed() {
        let pins = Pins::new();
        assert!(pins.due(Lsn(10)).is_none(), "no request");
        let rx = pins.request(Lsn(20));
        assert!(pins.due(Lsn(15)).is_none(), "before the LSN");
        let reply = pins
            .due(Lsn(20))
            .expect("the entry at the LSN takes the request");
        reply.send(Err(PinError::Stopped)).unwrap();
        assert_eq!(rx.recv().unwrap().err(), Some(PinError::Stopped));
        assert!(pins.due(Lsn(30)).is_none(), "answered once");
        // The loop has handed over LSN 30: a request for 25 is too late.
        let rx = pins.request(Lsn(25));
        assert_eq!(
            rx.recv().unwrap().err(),
            Some(PinError::Passed { lsn: Lsn(25) })
        );
        // One request at a time.
        let _first = pins.request(Lsn(40));
        assert_eq!(
            pins.request(Lsn(50)).recv().unwrap().err(),
            Some(PinError::Busy)
        );
        pins.stopped();
        assert_eq!(_first.recv().unwrap().err(), Some(PinError::Stopped));
    }
}
