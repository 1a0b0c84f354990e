//! Named fault-injection points for the fault tests, switched on by `FAILPOINTS=name=action`
//! (the `fail` crate). Without the `failpoints` feature every point compiles to nothing.
//!
//! Points: `wal-write`, `wal-fsync`, `checkpoint-fsync` (an injected I/O error: `return` gives
//! EIO, `return(28)` errno 28), `apply-send` (`sleep(ms)` slows the index writer),
//! `checkpoint-load` (`sleep(ms)` slows loading the checkpoint at start-up), `checkpoint-finish`
//! (`sleep(ms)` slows the index writer's deferred rebuild), `bootstrap-checkpoint` (`sleep(ms)`
//! slows writing a bootstrap's checkpoint), `publish-send` (`sleep(ms)` slows the leader's
//! publishing to the stream),
//! `bootstrap-before-marker`, `checkpoint-before-truncate` (`return` kills the process there).

/// The I/O error injected at `name`, if that point is on.
#[inline]
pub fn io_error(name: &str) -> Option<std::io::Error> {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |arg| {
            let errno = arg.and_then(|a| a.parse().ok()).unwrap_or(libc::EIO);
            std::io::Error::from_raw_os_error(errno)
        })
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        None
    }
}

/// Evaluates the point `name` for its side effects (`sleep`, `pause`, `panic`).
#[inline]
pub fn hit(name: &str) {
    #[cfg(feature = "failpoints")]
    fail::eval(name, |_| ());
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Kills the process with SIGKILL at `name` when that point returns: a crash between two steps
/// that must each be durable on their own.
#[inline]
pub fn crash(name: &str) {
    #[cfg(feature = "failpoints")]
    if fail::eval(name, |_| ()).is_some() {
        eprintln!("failpoint {name}: killing the process");
        // SAFETY: kill takes a pid and a signal number, no pointers.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
