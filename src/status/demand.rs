//! Read-your-writes demand: the `min_lsn` positions queries are waiting for right now.
//!
//! A query whose `min_lsn` the index does not cover yet registers it for as long as it waits
//! ([`ReadDemand::register`]). The replication source asks whether writing a position Mark would
//! end some wait ([`ReadDemand::wanted_in`]) and is woken when a query starts waiting
//! ([`ReadDemand::changed`]), so a Mark costs an fsync only when someone waits for it.
//!
//! Cost: nothing while no query waits (one atomic load on the source's side); while queries
//! wait, a short mutex over a map of their positions, taken by each waiting query twice and by
//! the source at its idle points.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::Lsn;

/// The positions waited for, with a wake-up for the source.
#[derive(Debug, Default)]
pub struct ReadDemand {
    /// Queries waiting now (the fast check).
    waiting: AtomicU64,
    /// `min_lsn` → queries waiting for it.
    targets: Mutex<BTreeMap<Lsn, usize>>,
    /// Woken when a query starts waiting.
    notify: Notify,
}

impl ReadDemand {
    /// A query waits until the index covers `lsn`; the wait counts until the guard drops.
    pub fn register(&self, lsn: Lsn) -> ReadWait<'_> {
        *self.targets().entry(lsn).or_default() += 1;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_one();
        ReadWait { demand: self, lsn }
    }

    /// Whether any query waits.
    pub fn any(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Whether a query waits for a position `p` with `above < p <= upto`.
    pub fn wanted_in(&self, above: Lsn, upto: Lsn) -> bool {
        above < upto
            && self.any()
            && self
                .targets()
                .range(Lsn(above.0 + 1)..=upto)
                .next()
                .is_some()
    }

    /// Completes when a query has started waiting since the last completion (a wake-up given
    /// while nobody listened is kept for the next call).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    fn targets(&self) -> MutexGuard<'_, BTreeMap<Lsn, usize>> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A registered wait (see [`ReadDemand::register`]); dropping it ends the wait.
#[derive(Debug)]
pub struct ReadWait<'a> {
    demand: &'a ReadDemand,
    lsn: Lsn,
}

impl Drop for ReadWait<'_> {
    fn drop(&mut self) {
        let mut targets = self.demand.targets();
        if let Some(n) = targets.get_mut(&self.lsn) {
            *n -= 1;
            if *n == 0 {
                targets.remove(&self.lsn);
            }
        }
        self.demand.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_lasts_while_a_query_waits_and_names_its_position() {
        let d = ReadDemand::default();
        assert!(!d.any());
        assert!(!d.wanted_in(Lsn(0), Lsn(1000)));
        let a = d.register(Lsn(300));
        let b = d.register(Lsn(200));
        let c = d.register(Lsn(200));
        assert!(d.any());
        // (above, upto]: 200 and 300 are wanted, nothing else.
        assert!(d.wanted_in(Lsn(199), Lsn(200)));
        assert!(!d.wanted_in(Lsn(200), Lsn(299)));
        assert!(d.wanted_in(Lsn(200), Lsn(300)));
        assert!(!d.wanted_in(Lsn(300), Lsn(9000)));
        assert!(!d.wanted_in(Lsn(250), Lsn(250)));
        drop(a);
        assert!(!d.wanted_in(Lsn(200), Lsn(9000)));
        drop(b);
        assert!(d.wanted_in(Lsn(0), Lsn(200)));
        drop(c);
        assert!(!d.any() && !d.wanted_in(Lsn(0), Lsn(9000)));
        // The wake-up given while nobody listened is kept.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), d.changed())
                .await
                .expect("the stored wake-up completes at once");
        });
    }
}
