//! Throwaway PostgreSQL clusters for the tests and `pgroar demo`.
//!
//! [`Cluster::start`] runs `initdb` into a fresh temporary directory and starts a server on a
//! free port of 127.0.0.1, configured for logical replication (`wal_level = logical`, 40 slots
//! and WAL senders, 200 connections), trusting local connections as `postgres`. With
//! [`ClusterOptions::fast`] durability is switched off (`fsync`, `full_page_writes`): fine for
//! a cluster that is thrown away. With [`ClusterOptions::tls`] the server also accepts TLS, with a
//! certificate for `localhost` and `127.0.0.1` signed by a throwaway CA, both made by the
//! `openssl` command ([`Cluster::tls_certificate`]); plain connections keep working. `synchronous_commit` stays on on purpose: without `fsync` a
//! WAL flush is only a `write`, while turning it off would delay by up to `wal_writer_delay`
//! the moment a commit becomes visible to walsenders and `pg_logical_slot_*` functions.
//!
//! Guarantees: the server and its directory disappear when the [`Cluster`] is dropped or
//! stopped; the process-wide [`Cluster::shared`] one disappears when the process exits, also
//! after a panicking test; and a watchdog removes both even when the process is SIGKILLed
//! (within about a second). Crash window: if the machine itself goes down, the directory
//! stays in the temp dir (`pgroar-pg-*`); nothing else refers to it.
//!
//! The binaries are found by [`find_bin_dir`] and must be PostgreSQL 15 or later
//! (`CREATE DATABASE … STRATEGY FILE_COPY`). As root (containers, CI) `initdb` and `pg_ctl`
//! run as the `postgres` OS user, because `initdb` refuses to run as root; the temporary
//! directory is handed to that user. Calls that run SQL block the calling thread; they run on
//! a private runtime on a helper thread, so they also work inside an async test.

mod binaries;
mod cleanup;
mod error;
pub mod nats;
mod test_db;

use std::fmt::Write as _;
use std::future::Future;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::NoTls;

pub use binaries::{PG_BIN_ENV, find_bin_dir};
pub use error::ClusterError;
pub use test_db::TestDb;

use binaries::RunAs;

/// How long to wait for a started server to accept SQL connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Start attempts: each picks a new port, in case another process took the probed one.
const START_ATTEMPTS: usize = 5;
/// Lines of the server log quoted in start-up errors.
const LOG_TAIL_LINES: usize = 30;

/// How a cluster is configured.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Turn off `fsync` and `full_page_writes` and skip `initdb`'s sync (tests): faster, and a
    /// crash of the machine loses the cluster, which is thrown away anyway.
    pub fast: bool,
    /// Extra server settings (`name`, `value`), written after the defaults so they win,
    /// e.g. `("wal_sender_timeout", "2s")`.
    pub settings: Vec<(String, String)>,
    /// Turn on TLS (`ssl = on`) with a fresh certificate from a throwaway CA (needs `openssl`).
    pub tls: bool,
}

impl ClusterOptions {
    /// Options for tests: durability off.
    pub fn fast() -> Self {
        ClusterOptions {
            fast: true,
            settings: Vec::new(),
            tls: false,
        }
    }

    /// Turns on TLS with a fresh certificate (see [`Cluster::tls_certificate`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Adds one server setting (applied after the defaults).
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// A running throwaway PostgreSQL cluster. Stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    /// The CA certificate that signed the server's, when TLS is on.
    tls_cert: Option<PathBuf>,
    /// `Some` while the cluster has not been stopped; taking it is what stops it.
    dir: Mutex<Option<TempDir>>,
}

/// The process-wide cluster behind [`Cluster::shared`].
static SHARED: OnceLock<Result<Cluster, ClusterError>> = OnceLock::new();

/// Numbers databases made by [`Cluster::create_database`] (process-wide).
static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cluster {
    /// `initdb`s and starts a new cluster, waiting until it accepts connections.
    pub fn start(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin_dir = find_bin_dir()?;
        let run_as = binaries::run_as()?;
        let tmp = tempfile::Builder::new()
            .prefix("pgroar-pg-")
            .tempdir()
            .map_err(|source| ClusterError::Io {
                what: "creating the cluster directory",
                path: std::env::temp_dir(),
                source,
            })?;
        // The watchdog compares this path with the postmaster's working directory.
        let root = std::fs::canonicalize(tmp.path()).map_err(|source| ClusterError::Io {
            what: "resolving the cluster directory",
            path: tmp.path().to_path_buf(),
            source,
        })?;
        let mut cluster = Cluster {
            bin_dir,
            run_as,
            data_dir: root.join("data"),
            socket_dir: root.join("socket"),
            log_file: root.join("postgres.log"),
            root,
            port: 0,
            tls_cert: None,
            dir: Mutex::new(Some(tmp)),
        };
        // From here on, returning early drops `cluster`, which stops whatever was started.
        let pid_file = cluster.data_dir.join("postmaster.pid");
        cleanup::spawn_watchdog(&cluster.root, &cluster.data_dir, &pid_file).map_err(|source| {
            ClusterError::Io {
                what: "spawning the cluster watchdog",
                path: PathBuf::from("/bin/sh"),
                source,
            }
        })?;
        cluster.initdb(&options)?;
        if options.tls {
            cluster.make_certificate()?;
        }
        cluster.start_server(&options)?;
        cluster.wait_ready()?;
        tracing::debug!(port = cluster.port, dir = %cluster.root.display(), "throwaway cluster started");
        Ok(cluster)
    }

    /// The process-wide cluster with [`ClusterOptions::fast`], started on first use and
    /// stopped (its directory removed) when the process exits, also after panicking tests.
    ///
    /// # Panics
    /// When the cluster cannot be started (the message is the [`ClusterError`]); every later
    /// call panics with the same message rather than trying again.
    ///
    /// ```no_run
    /// use pgroar::cluster::Cluster;
    ///
    /// let cluster = Cluster::shared();
    /// let db = cluster.create_database("example").unwrap();
    /// cluster.execute(&db, "CREATE TABLE t (id bigint PRIMARY KEY)").unwrap();
    /// println!("connect with {}", cluster.url(&db));
    /// ```
    #[track_caller]
    pub fn shared() -> &'static Cluster {
        match Cluster::try_shared() {
            Ok(cluster) => cluster,
            Err(e) => panic!("cannot start the shared PostgreSQL cluster: {e}"),
        }
    }

    /// [`Cluster::shared`] without the panic.
    pub fn try_shared() -> Result<&'static Cluster, &'static ClusterError> {
        SHARED
            .get_or_init(|| {
                let started = Cluster::start(ClusterOptions::fast());
                if started.is_ok() {
                    cleanup::register_shared_at_exit();
                }
                started
            })
            .as_ref()
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The certificate (PEM) of the throwaway CA that signed the server's certificate (which is
    /// valid for `localhost` and `127.0.0.1`), to be given as `sslrootcert`; `None` unless
    /// started with [`ClusterOptions::tls`].
    pub fn tls_certificate(&self) -> Option<&Path> {
        self.tls_cert.as_deref()
    }

    /// The server log.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The directory the server binaries were taken from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A libpq URI for database `db` as the superuser `postgres` (no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@{}:{}/{db}", self.host(), self.port)
    }

    /// The last `lines` lines of the server log (empty if there is none).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_file, lines)
    }

    /// Creates a fresh database named `<prefix>_<pid>_<n>` (the prefix lower-cased, characters
    /// other than `[a-z0-9_]` replaced by `_`), unique within the process, and returns its name.
    pub fn create_database(&self, prefix: &str) -> Result<String, ClusterError> {
        let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("_{}_{n}", std::process::id());
        let mut name: String = prefix
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '_') => c,
                _ => '_',
            })
            .take(63 - suffix.len())
            .collect();
        if name.is_empty() {
            name.push_str("db");
        }
        name.push_str(&suffix);
        // FILE_COPY: the template is copied on disk instead of being WAL-logged page by page,
        // so creating many databases does not feed every logical slot megabytes of WAL.
        self.execute(
            "postgres",
            &format!("CREATE DATABASE {} STRATEGY FILE_COPY", quote_ident(&name)),
        )?;
        Ok(name)
    }

    /// Runs `sql` (one or more statements, no parameters) in database `db`.
    pub fn execute(&self, db: &str, sql: &str) -> Result<(), ClusterError> {
        self.ensure_running()?;
        let url = self.url(db);
        let sql = sql.to_owned();
        let db = db.to_owned();
        block_on(async move {
            let client = connect(&url).await.map_err(|source| ClusterError::Sql {
                db: db.clone(),
                source,
            })?;
            client
                .batch_execute(&sql)
                .await
                .map_err(|source| ClusterError::Sql { db, source })
        })
    }

    /// Restarts the server (`pg_ctl restart -m fast`) on the same port and directory, and
    /// waits until it accepts connections again. Open connections are cut.
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.ensure_running()?;
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60"], true)?;
        self.wait_ready()
    }

    /// Restarts the server with `pg_ctl restart -m immediate`: every process exits at once, as in
    /// a crash, and the server recovers from its WAL. Waits until it accepts connections again.
    pub fn restart_immediate(&self) -> Result<(), ClusterError> {
        self.ensure_running()?;
        self.pg_ctl(&["restart", "-m", "immediate", "-w", "-t", "60"], true)?;
        self.wait_ready()
    }

    /// Stops the server (`pg_ctl stop -m fast`, then `-m immediate` if that fails) and removes
    /// the cluster's directory. Stopping twice is a no-op.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        self.shutdown(StopMode::Fast)
    }

    fn ensure_running(&self) -> Result<(), ClusterError> {
        if lock(&self.dir).is_some() {
            Ok(())
        } else {
            Err(ClusterError::Stopped)
        }
    }

    fn shutdown(&self, mode: StopMode) -> Result<(), ClusterError> {
        let Some(tmp) = lock(&self.dir).take() else {
            return Ok(());
        };
        let mut result = Ok(());
        if self.data_dir.join("postmaster.pid").exists() {
            let fast = match mode {
                StopMode::Fast => self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "30"], false),
                StopMode::Immediate => Err(ClusterError::Stopped),
            };
            if fast.is_err() {
                result = self
                    .pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"], false)
                    .map(drop);
            }
        }
        let removed = tmp.close().map_err(|source| ClusterError::Io {
            what: "removing the cluster directory",
            path: self.root.clone(),
            source,
        });
        result.and(removed)
    }

    fn initdb(&self, options: &ClusterOptions) -> Result<(), ClusterError> {
        if let Some(user) = self.run_as {
            std::fs::create_dir(&self.socket_dir)
                .and_then(|()| chown(&self.root, user))
                .and_then(|()| chown(&self.socket_dir, user))
                .map_err(|source| ClusterError::Io {
                    what: "handing the cluster directory to the postgres user",
                    path: self.root.clone(),
                    source,
                })?;
        } else {
            std::fs::create_dir(&self.socket_dir).map_err(|source| ClusterError::Io {
                what: "creating the socket directory",
                path: self.socket_dir.clone(),
                source,
            })?;
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        if options.fast {
            cmd.arg("--no-sync");
        }
        run(cmd, "initdb")?;

        let conf = self.data_dir.join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| io::Write::write_all(&mut f, b"\ninclude 'pgroar.conf'\n"))
            .map_err(|source| ClusterError::Io {
                what: "extending postgresql.conf",
                path: conf,
                source,
            })
    }

    /// Makes a throwaway CA and a server certificate it signs (P-256, two days, for `localhost`
    /// and `127.0.0.1`) in `<root>/tls`; the server's key is readable by the server's user only.
    fn make_certificate(&mut self) -> Result<(), ClusterError> {
        let dir = self.root.join("tls");
        let path = |name: &str| dir.join(name);
        let (ca, ca_key) = (path("ca.crt"), path("ca.key"));
        let (cert, key) = (path("server.crt"), path("server.key"));
        std::fs::create_dir(&dir).map_err(|source| ClusterError::Io {
            what: "creating the TLS directory",
            path: dir.clone(),
            source,
        })?;
        let openssl = |subject: &str| {
            let mut cmd = Command::new("openssl");
            cmd.args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .arg("ec_paramgen_curve:prime256v1")
                .args(["-nodes", "-days", "2", "-subj", subject])
                .stdin(Stdio::null());
            cmd
        };
        let mut make_ca = openssl("/CN=pgroar throwaway CA");
        make_ca.arg("-keyout").arg(&ca_key).arg("-out").arg(&ca);
        run(make_ca, "openssl req (CA)")?;
        let mut make_server = openssl("/CN=localhost");
        make_server
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert);
        run(make_server, "openssl req (server)")?;
        let restrict = || -> io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
            if let Some(user) = self.run_as {
                chown(&dir, user)?;
                chown(&cert, user)?;
                chown(&key, user)?;
            }
            Ok(())
        };
        restrict().map_err(|source| ClusterError::Io {
            what: "handing the TLS key to the server's user",
            path: key.clone(),
            source,
        })?;
        self.tls_cert = Some(ca);
        Ok(())
    }

    /// Writes `pgroar.conf` for a freshly probed port and starts the server, retrying with a
    /// new port when the probed one was taken in between.
    fn start_server(&mut self, options: &ClusterOptions) -> Result<(), ClusterError> {
        for attempt in 1..=START_ATTEMPTS {
            self.port = free_port().map_err(|source| ClusterError::Io {
                what: "probing for a free port",
                path: PathBuf::from("127.0.0.1:0"),
                source,
            })?;
            let conf = self.data_dir.join("pgroar.conf");
            std::fs::write(&conf, self.settings(options)).map_err(|source| ClusterError::Io {
                what: "writing the server settings",
                path: conf,
                source,
            })?;
            match self.pg_ctl(&["start", "-w", "-t", "60"], true) {
                Ok(_) => return Ok(()),
                Err(ClusterError::Command { .. }) => {
                    let tail = self.log_tail(LOG_TAIL_LINES);
                    let port_taken =
                        tail.contains("could not bind") || tail.contains("already in use");
                    if !port_taken || attempt == START_ATTEMPTS {
                        return Err(ClusterError::Start {
                            attempts: attempt,
                            log: self.log_file.clone(),
                            tail,
                        });
                    }
                    tracing::debug!(port = self.port, "port taken; retrying with another");
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    fn settings(&self, options: &ClusterOptions) -> String {
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addresses", "127.0.0.1".into()),
            ("port", self.port.to_string()),
            (
                "unix_socket_directories",
                self.socket_dir.display().to_string(),
            ),
            ("wal_level", "logical".into()),
            ("max_replication_slots", "40".into()),
            ("max_wal_senders", "40".into()),
            ("max_connections", "200".into()),
            ("logging_collector", "off".into()),
        ];
        if options.fast {
            settings.extend([("fsync", "off".into()), ("full_page_writes", "off".into())]);
        }
        if self.tls_cert.is_some() {
            let dir = self.root.join("tls");
            settings.extend([
                ("ssl", "on".into()),
                (
                    "ssl_cert_file",
                    dir.join("server.crt").display().to_string(),
                ),
                ("ssl_key_file", dir.join("server.key").display().to_string()),
            ]);
        }
        let mut out = String::from("# written by pgroar's throwaway cluster\n");
        let extra = options
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()));
        for (name, value) in settings.into_iter().chain(extra) {
            let _ = writeln!(out, "{name} = '{}'", value.replace('\'', "''"));
        }
        out
    }

    fn wait_ready(&self) -> Result<(), ClusterError> {
        let url = self.url("postgres");
        let started = Instant::now();
        let outcome = block_on(async move {
            let mut last = None;
            while started.elapsed() < READY_TIMEOUT {
                let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                    let client = connect(&url).await?;
                    client.simple_query("SELECT 1").await.map(drop)
                })
                .await;
                match attempt {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => last = Some(e),
                    Err(_elapsed) => {}
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(last)
        });
        outcome.map_err(|source| ClusterError::NotReady {
            port: self.port,
            waited: started.elapsed(),
            log: self.log_file.clone(),
            tail: self.log_tail(LOG_TAIL_LINES),
            source,
        })
    }

    /// Runs `pg_ctl <args> -D <data>`; `with_log` adds `-l <log>` (needed whenever pg_ctl
    /// starts a server, so the server never inherits our pipes).
    fn pg_ctl(&self, args: &[&str], with_log: bool) -> Result<String, ClusterError> {
        let mut cmd = self.command("pg_ctl");
        cmd.args(args).arg("-D").arg(&self.data_dir);
        if with_log {
            cmd.arg("-l").arg(&self.log_file);
        }
        run(cmd, &format!("pg_ctl {}", args[0]))
    }

    /// A command for one of the server programs, run as the right user, in the cluster dir.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.current_dir(&self.root).stdin(Stdio::null());
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown(StopMode::Fast) {
            tracing::warn!(error = %e, dir = %self.root.display(), "stopping a throwaway cluster");
        }
    }
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum StopMode {
    Fast,
    Immediate,
}

/// Stops the shared cluster at once; called from the `atexit` handler.
fn stop_shared_now() {
    if let Some(Ok(cluster)) = SHARED.get() {
        let _ = cluster.shutdown(StopMode::Immediate);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn chown(path: &Path, user: RunAs) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
}

/// Runs a command to completion, turning a failure into [`ClusterError::Command`].
fn run(mut cmd: Command, label: &str) -> Result<String, ClusterError> {
    let out = cmd.output().map_err(|source| ClusterError::Io {
        what: "running an external program",
        path: PathBuf::from(cmd.get_program()),
        source,
    })?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(output)
    } else {
        Err(ClusterError::Command {
            program: label.to_owned(),
            status: out.status,
            output,
        })
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// The last `lines` lines of a log file, reading at most its last 64 KiB.
fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Double-quotes an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connects without TLS and drives the connection on the current runtime.
async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Runs a future to completion on a private current-thread runtime on a helper thread, so
/// it works both from plain code and from inside another runtime.
fn block_on<F, T>(future: F) -> T
where
    F: Future<Output = T> + Send,
    T: Send,
{
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a current-thread tokio runtime")
                .block_on(future)
        });
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn log_tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&path, 2), "b\nc");
        assert_eq!(log_tail(&path, 10), "a\nb\nc");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
    }
}
