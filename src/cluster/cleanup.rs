//! Making sure a cluster never outlives the process that started it.
//!
//! Three layers: `Drop` (ordinary scope exit and unwinding), an `atexit` handler for the
//! process-wide shared cluster (statics are never dropped; libtest ends with `process::exit`,
//! which runs `atexit` handlers, also after failing tests), and a detached watchdog shell
//! that outlives a SIGKILLed process and then shuts the server down and removes its directory.

use std::path::Path;
use std::process::{Command, Stdio};

use std::os::unix::process::CommandExt;

/// The watchdog: waits while the parent lives and the cluster directory exists, then sends
/// the postmaster SIGQUIT (Postgres's "immediate" shutdown, what `pg_ctl stop -m immediate`
/// sends), escalates to SIGKILL after 10 s, and removes the directory. The postmaster is
/// only signalled when its working directory is our data directory, so a stale pid file can
/// never make it signal an unrelated process. Arguments: parent pid, directory to remove, the
/// server's working directory, its pid file.
const WATCHDOG: &str = r#"
PATH="${PATH:+$PATH:}/usr/bin:/bin"
parent="$1"; dir="$2"; data="$3"; pidfile="$4"
while kill -0 "$parent" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
if [ -f "$pidfile" ]; then
  pid=$(head -n 1 "$pidfile")
  if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$data" ]; then
    kill -QUIT "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 10 ]; do sleep 1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
  fi
fi
rm -rf "$dir"
"#;

/// Spawns the watchdog for a server living in `dir`, working in `data`, its pid in `pid_file`.
///
/// The watchdog runs as the current user (it must be able to see the parent with `kill -0`;
/// root can signal the postmaster of another user), in its own process group so a Ctrl-C
/// aimed at the test run does not kill it before it has cleaned up, with no standard streams
/// so it never holds a pipe of the caller open. A thread reaps it, so it leaves no zombie.
pub(super) fn spawn_watchdog(dir: &Path, data: &Path, pid_file: &Path) -> std::io::Result<()> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("pgroar-cluster-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(data)
        .arg(pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    std::thread::Builder::new()
        .name("pgroar-cluster-watchdog-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(())
}

/// Registers [`stop_shared_at_exit`] with `atexit`; called once, when the shared cluster starts.
pub(super) fn register_shared_at_exit() {
    // SAFETY: `stop_shared_at_exit` is an `extern "C" fn()` that never unwinds.
    unsafe {
        libc::atexit(stop_shared_at_exit);
    }
}

extern "C" fn stop_shared_at_exit() {
    // Never unwind across the C boundary.
    let _ = std::panic::catch_unwind(super::stop_shared_now);
}
