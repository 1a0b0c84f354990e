//! Transparent huge pages off while an index is built in bulk: a bootstrap's dump, a checkpoint's
//! load (Linux).
//!
//! The allocator asks the kernel for huge pages over its whole arena. A dump or a load faults in
//! hundreds of MiB of fresh memory (accumulators, merge buffers, the index, the checkpoint's
//! encoding), and with huge pages every first touch clears 2 MiB at once; measured on the
//! benchmark's tables (`docs/benchmarks.md`), that cost a bootstrap 0.3–0.4 s of CPU
//! (1.96 s without, 2.32 s with) and 40 MiB more resident memory, and a checkpoint load 43% of
//! its samples in the kernel's page clearing. The flag is the process's
//! (`PR_SET_THP_DISABLE`, checked by the kernel at each fault), so the guard turns it off for the
//! load and restores it afterwards: memory the load touched keeps small pages, later
//! allocations (streaming, queries) get huge pages again. A flag the process already had set is
//! left alone.

use std::sync::Mutex;
use std::sync::PoisonError;

/// Live guards, and whether the first of them turned huge pages off (so the last turns them back
/// on).
static GUARDS: Mutex<(usize, bool)> = Mutex::new((0, false));

/// Keeps transparent huge pages off for the process while it lives. Guards nest (bootstraps
/// may run side by side in one process): the last one to end restores the flag.
pub struct NoHugePages(());

impl NoHugePages {
    /// Turns transparent huge pages off unless they already are; a kernel that refuses leaves
    /// them as they were.
    pub fn new() -> Self {
        let mut guards = GUARDS.lock().unwrap_or_else(PoisonError::into_inner);
        if guards.0 == 0 {
            guards.1 = set_disabled(true);
        }
        guards.0 += 1;
        NoHugePages(())
    }
}

impl Default for NoHugePages {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoHugePages {
    fn drop(&mut self) {
        let mut guards = GUARDS.lock().unwrap_or_else(PoisonError::into_inner);
        guards.0 -= 1;
        if guards.0 == 0 && guards.1 {
            set_disabled(false);
            guards.1 = false;
        }
    }
}

/// Whether transparent huge pages are off for the process (always `false` off Linux).
fn disabled() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_GET_THP_DISABLE reads a flag of the calling process; no pointers.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Sets the process's flag to `off` if it differs; whether it was changed.
fn set_disabled(off: bool) -> bool {
    #[cfg(target_os = "linux")]
    {
        if disabled() == off {
            return false;
        }
        // SAFETY: PR_SET_THP_DISABLE sets a flag of the calling process; no pointers.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, libc::c_ulong::from(off), 0, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = off;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_guard_turns_huge_pages_off_and_back_on() {
        // The flag is the process's and other tests (checkpoint loads) take guards too: the
        // checks run in a child process running this test alone.
        const CHILD: &str = "PGROAR_HUGE_PAGES_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let exe = std::env::current_exe().unwrap();
            let status = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "index::huge_pages::tests::the_guard_turns_huge_pages_off_and_back_on",
                ])
                .args(["--test-threads", "1", "--nocapture"])
                .env(CHILD, "1")
                .status()
                .unwrap();
            assert!(status.success(), "the checks failed in the child process");
            return;
        }
        // Start from "on", whatever the process was started with, and put that back at the
        // end.
        let was = disabled();
        set_disabled(false);
        assert!(!disabled(), "the kernel refuses PR_SET_THP_DISABLE");
        {
            let _outer = NoHugePages::new();
            assert!(disabled());
            {
                // A second guard (a bootstrap beside the first): the flag stays off until the
                // last one ends.
                let _inner = NoHugePages::new();
                assert!(disabled());
            }
            assert!(disabled());
        }
        assert!(!disabled());
        // Off before any guard (set by whoever started the process): left off.
        assert!(set_disabled(true));
        drop(NoHugePages::new());
        assert!(disabled());
        set_disabled(was);
    }
}
