//! What the whole-process benches share: the release `pgroar` binary run as a user runs it
//! (spawned, polled over HTTP, stopped with SIGTERM), the Postgres client binaries they time
//! it against, and what `/proc` says about a process (CPU by thread, peak memory).

// Each bench uses a part of this.
#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgroar::Lsn;

/// How often `/status` or `/query` is polled while waiting.
pub const POLL: Duration = Duration::from_millis(20);
/// Give up on any single wait after this long.
pub const WAIT_LIMIT: Duration = Duration::from_secs(3600);

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The pgroar binary a bench runs: `PGROAR_BENCH_BIN` if set, else the one cargo built.
pub fn pgroar_bin() -> PathBuf {
    std::env::var_os("PGROAR_BENCH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_pgroar")),
        PathBuf::from,
    )
}

/// One pgroar process: its config, log and HTTP address.
pub struct Pgroar {
    pub name: String,
    pub config: PathBuf,
    pub log: PathBuf,
    pub base: String,
    /// How often a wait polls (default [`POLL`]).
    pub poll: Duration,
    /// One agent for every request: connections are kept alive, not opened per poll.
    agent: ureq::Agent,
}

impl Pgroar {
    /// Writes `config_text` (whose `[http].listen` must be `127.0.0.1:<port>`) under `dir`.
    pub fn new(dir: &Path, name: &str, port: u16, config_text: &str) -> Pgroar {
        let config = dir.join(format!("pgroar-{name}.toml"));
        fs::write(&config, config_text).unwrap();
        Pgroar {
            name: name.to_owned(),
            config,
            log: dir.join(format!("pgroar-{name}.log")),
            base: format!("http://127.0.0.1:{port}"),
            poll: POLL,
            agent: ureq::Agent::new_with_defaults(),
        }
    }

    /// Spawns `<bin> <args…> --config <config>` with its stderr appended to the log.
    pub fn spawn(&self, bin: &Path, args: &[&str], rust_log: &str) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Command::new(bin)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning pgroar")
    }

    /// Polls `/status` until `done` holds; returns that status. Panics (with the log) if the
    /// process exits or the wait takes too long.
    pub fn wait_status(
        &self,
        child: &mut Child,
        mut done: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let url = format!("{}/status", self.base);
        self.poll(child, || {
            let mut resp = self.agent.get(&url).call().ok()?;
            let status = resp.body_mut().read_json::<serde_json::Value>().ok()?;
            done(&status).then_some(status)
        })
    }

    /// Posts `body` to `/query` until it is answered with 200; returns the answer.
    pub fn wait_query(&self, child: &mut Child, body: &str) -> serde_json::Value {
        self.poll(child, || self.query(body))
    }

    /// One `/query`: the answer, or `None` when it is not a 200.
    pub fn query(&self, body: &str) -> Option<serde_json::Value> {
        let url = format!("{}/query", self.base);
        let mut resp = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
            .ok()?;
        resp.body_mut().read_json::<serde_json::Value>().ok()
    }

    fn poll<T>(&self, child: &mut Child, mut attempt: impl FnMut() -> Option<T>) -> T {
        let t = Instant::now();
        loop {
            if let Some(exit) = child.try_wait().unwrap() {
                panic!(
                    "pgroar {} exited ({exit}):\n{}",
                    self.name,
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Some(v) = attempt() {
                return v;
            }
            assert!(t.elapsed() < WAIT_LIMIT, "pgroar {} timed out", self.name);
            std::thread::sleep(self.poll);
        }
    }
}

/// A stage's LSN (`received`, `durable`, `applied`) in a `/status` answer.
pub fn stage(status: &serde_json::Value, name: &str) -> Lsn {
    status["lsn"][name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Lsn(0))
}

/// SIGTERM, then wait for the clean stop.
pub fn stop(mut child: Child) {
    // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "pgroar did not stop cleanly: {status}");
}

/// A Postgres client program (`psql`, `pg_recvlogical`): next to `initdb` if given, else on
/// `PATH` or under `/usr/lib/postgresql/*/bin`.
pub fn pg_program(name: &str, bin_dir: Option<&Path>) -> PathBuf {
    let mut dirs: Vec<PathBuf> = bin_dir.into_iter().map(Path::to_path_buf).collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        dirs.extend(entries.flatten().map(|e| e.path().join("bin")));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} on PATH or under /usr/lib/postgresql/*/bin"))
}

/// User plus system CPU seconds used so far by process `pid` (0 if unreadable).
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU seconds from a `/proc/…/stat` file (0 if unreadable).
fn cpu_seconds_of(path: &str) -> f64 {
    let Ok(stat) = fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// CPU seconds per thread name of process `pid`, busiest first.
pub fn thread_cpu(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        // Numbered pools (`pgroar-copy-1`, …) count as one.
        let name = name.trim().trim_end_matches(|c: char| c.is_ascii_digit());
        let name = name.trim_end_matches('-').to_string();
        let secs = cpu_seconds_of(&format!("/proc/{pid}/task/{tid}/stat"));
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += secs,
            None => by_name.push((name, secs)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name.retain(|(_, secs)| *secs >= 0.01);
    by_name
}

/// `name 1.23 s, …` of [`thread_cpu`].
pub fn thread_cpu_text(pid: u32) -> String {
    thread_cpu(pid)
        .iter()
        .map(|(name, secs)| format!("{name} {secs:.2} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Peak resident memory of process `pid` in MiB (`VmHWM`; 0 if unreadable).
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// Resident memory of process `pid` now, in MiB (`VmRSS`; 0 if unreadable).
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// A `kB` line of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// `p`-th percentile (0–100) of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}
