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
//! A check does not know `C` until its SQL snapshot exists, and under a steady write load the
//! index would pass `C` while the snapshot is being taken. So a check first *holds* the index
//! ([`Pins::hold`]): the apply loop hands over nothing more until the request names `C` (which is
//! then at or after everything it handed over, since the snapshot is taken after the hold), or
//! until [`HOLD_MAX`] passes and the hold lapses. Readers keep the last published snapshot
//! meanwhile; the WAL keeps filling.
//!
//! Without a hold the race with the apply loop is settled by one rule: the loop records the LSN
//! of each entry before it looks for a request, and a requester records its request before it
//! looks at that LSN; whoever then takes the request out of its slot (the loop to answer it, the
//! requester to withdraw it because the loop had already gone past `C`) decides. A request the
//! loop is past fails with [`PinError::Passed`]; the caller takes a newer SQL snapshot and asks
//! again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::Lsn;
use crate::index::Snapshot;

/// Longest an unanswered hold stops the apply loop.
pub const HOLD_MAX: Duration = Duration::from_secs(30);

/// Why a pinned snapshot could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The index had already applied a transaction at or after the LSN.
    #[error("the index is already past LSN {lsn}; take a newer snapshot and ask again")]
    Passed {
        /// The requested LSN.
        lsn: Lsn,
    },
    /// Another pin request or hold is in place.
    #[error("another pinned snapshot is being taken; try again when it is done")]
    Busy,
    /// The pipeline stopped before it reached the LSN.
    #[error("the pipeline stopped before it reached the LSN")]
    Stopped,
}

type Reply = Sender<Result<Snapshot, PinError>>;

#[derive(Debug, Default)]
struct Slot {
    /// Held since, until a request arrives.
    held: Option<Instant>,
    request: Option<(Lsn, Reply)>,
}

/// The slot a pin request waits in, shared by the pipeline's callers and its apply loop.
#[derive(Debug, Default)]
pub struct Pins {
    /// The requested LSN; 0 while held without one; `u64::MAX` when none (the loop's fast check).
    target: AtomicU64,
    /// The LSN of the newest entry the apply loop has started to hand over.
    dispatched: AtomicU64,
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Pins {
    /// An empty slot.
    pub fn new() -> Arc<Pins> {
        Arc::new(Pins {
            target: AtomicU64::new(u64::MAX),
            dispatched: AtomicU64::new(0),
            slot: Mutex::new(Slot::default()),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the apply loop from handing over anything more until [`Pins::request`] names the
    /// LSN (or [`HOLD_MAX`] passes): take the SQL snapshot after this. Fails when another check
    /// holds or waits.
    pub fn hold(&self) -> Result<(), PinError> {
        let mut slot = self.lock();
        if slot.held.is_some() || slot.request.is_some() {
            return Err(PinError::Busy);
        }
        slot.held = Some(Instant::now());
        self.target.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Asks for the snapshot at `lsn`; the answer arrives on the receiver once the apply loop
    /// reaches the LSN (or at once, with an error). Ends a hold.
    pub fn request(&self, lsn: Lsn) -> Receiver<Result<Snapshot, PinError>> {
        let (tx, rx) = bounded(1);
        {
            let mut slot = self.lock();
            if slot.request.is_some() {
                let _ = tx.send(Err(PinError::Busy));
                return rx;
            }
            slot.held = None;
            slot.request = Some((lsn, tx));
            self.target.store(lsn.0, Ordering::SeqCst);
            self.changed.notify_all();
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
        let mut slot = self.lock();
        self.target.store(u64::MAX, Ordering::SeqCst);
        slot.held = None;
        slot.request.take()
    }

    /// For the apply loop, before it hands over an entry at `lsn`: the request this entry
    /// reaches, if any (the caller answers it with the snapshot of what it handed over before).
    /// While a hold waits for its request, this blocks.
    pub(crate) fn due(&self, lsn: Lsn) -> Option<Sender<Result<Snapshot, PinError>>> {
        // Record first, then look (see the module note).
        self.dispatched.fetch_max(lsn.0, Ordering::SeqCst);
        if lsn.0 < self.target.load(Ordering::SeqCst) {
            return None;
        }
        let mut slot = self.lock();
        while let Some(since) = slot.held {
            let left = HOLD_MAX.saturating_sub(since.elapsed());
            if left.is_zero() {
                tracing::warn!("a check's hold on the index lapsed before it named its LSN");
                slot.held = None;
                self.target.store(u64::MAX, Ordering::SeqCst);
                break;
            }
            slot = self
                .changed
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        match slot.request.as_ref() {
            Some((target, _)) if lsn >= *target => {
                let (_, reply) = slot.request.take()?;
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
        self.changed.notify_all();
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

    #[test]
    fn a_hold_stops_the_loop_until_the_request_names_its_lsn() {
        let pins = Pins::new();
        pins.hold().unwrap();
        assert_eq!(pins.hold(), Err(PinError::Busy));
        let loop_pins = Arc::clone(&pins);
        let looped = std::thread::spawn(move || {
            // Entries before the LSN pass once it is named; the one at it answers.
            let first = loop_pins.due(Lsn(100)).is_some();
            let second = loop_pins.due(Lsn(200));
            (first, second)
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!looped.is_finished(), "the loop waits while held");
        let rx = pins.request(Lsn(150));
        let (first, second) = looped.join().unwrap();
        assert!(!first, "an entry before the LSN is handed over");
        second
            .expect("the entry at the LSN takes the request")
            .send(Err(PinError::Stopped))
            .unwrap();
        assert_eq!(rx.recv().unwrap().err(), Some(PinError::Stopped));
        assert!(pins.due(Lsn(300)).is_none(), "no hold left");
    }
}
