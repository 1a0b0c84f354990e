//! Cache prefetch hints: asking the CPU to start loading memory the writer will touch soon, so
//! the cache misses of independent lookups overlap instead of following one another.

/// Asks the CPU to bring the cache line holding `at` into cache, without waiting for it. Any
/// address is fine (a prefetch never faults); a no-op off x86-64.
#[inline]
pub(crate) fn line<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of the x86-64 baseline, and a prefetch is only a hint: it never
        // faults, whatever the address, and changes nothing the program can observe.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}
