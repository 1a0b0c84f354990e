//! Throwaway NATS servers with JetStream, for the scale-out tests.
//!
//! [`NatsServer::start`] runs `nats-server` (`$PGROAR_NATS_BIN`, else `nats-server` on `PATH` or
//! `/usr/sbin/nats-server`, where the Debian package puts it) on a free port of 127.0.0.1 with
//! JetStream on and its store in a fresh temporary directory, and waits until it accepts
//! connections. [`NatsServer::restart`] stops it and starts it again on the same port and store,
//! as a server restart test needs.
//!
//! Guarantees: the server and its directory disappear when the [`NatsServer`] is dropped; a
//! watchdog stops the server and removes the directory when the process that started it is
//! SIGKILLed (within about a second). Crash window: if the machine itself goes down, the
//! directory stays in the temp dir (`pgroar-nats-*`); nothing else refers to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The environment variable naming the `nats-server` binary to run.
pub const NATS_BIN_ENV: &str = "PGROAR_NATS_BIN";

/// How long a started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a NATS server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No `nats-server` binary was found.
    #[error(
        "no nats-server binary found (install the `nats-server` package or set {NATS_BIN_ENV}); \
         tried: {tried}"
    )]
    NotFound {
        /// The candidates tried.
        tried: String,
    },
    /// A file-system or process operation failed.
    #[error("{what} ({})", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file, directory or program involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server did not accept connections in time.
    #[error(
        "nats-server on port {port} did not accept connections within {READY_TIMEOUT:?}; its log:\n{log}"
    )]
    NotReady {
        /// The port.
        port: u16,
        /// The end of its log.
        log: String,
    },
}

/// A running throwaway NATS server with JetStream. Stopped and removed on drop.
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
    _dir: TempDir,
}

impl NatsServer {
    /// Starts a server on a free port, JetStream on, and waits until it accepts connections.
    pub fn start() -> Result<NatsServer, NatsError> {
        let bin = find_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("pgroar-nats-")
            .tempdir()
            .map_err(|source| NatsError::Io {
                what: "creating the server directory",
                path: std::env::temp_dir(),
                source,
            })?;
        let root = std::fs::canonicalize(dir.path()).map_err(|source| NatsError::Io {
            what: "resolving the server directory",
            path: dir.path().to_path_buf(),
            source,
        })?;
        super::cleanup::spawn_watchdog(&root, &root, &root.join("nats.pid")).map_err(|source| {
            NatsError::Io {
                what: "spawning the server watchdog",
                path: PathBuf::from("/bin/sh"),
                source,
            }
        })?;
        let port = super::free_port().map_err(|source| NatsError::Io {
            what: "finding a free port",
            path: root.clone(),
            source,
        })?;
        let server = NatsServer {
            bin,
            root,
            port,
            child: Mutex::new(None),
            _dir: dir,
        };
        server.launch()?;
        Ok(server)
    }

    /// The URL clients connect with.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (store, log, pid file), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        super::log_tail(&self.root.join("nats.log"), lines)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s); its store stays for a restart.
    pub fn stop(&self) {
        let child = self.child().take();
        if let Some(mut child) = child {
            let pid = child.id() as libc::pid_t;
            // SAFETY: kill takes a pid and a signal number, no pointers.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same port and store.
    pub fn restart(&self) -> Result<(), NatsError> {
        self.stop();
        self.launch()
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn launch(&self) -> Result<(), NatsError> {
        let log = self.root.join("nats.log");
        let child = Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.root.join("store"))
            .arg("--pid")
            .arg(self.root.join("nats.pid"))
            .arg("-l")
            .arg(&log)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| NatsError::Io {
                what: "starting nats-server",
                path: self.bin.clone(),
                source,
            })?;
        *self.child() = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let ready = std::fs::read_to_string(&log).unwrap_or_default();
            if ready.contains("Server is ready")
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(NatsError::NotReady {
            port: self.port,
            log: self.log_tail(30),
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `nats-server` binary: `$PGROAR_NATS_BIN`, else on `PATH`, else the Debian package's.
fn find_bin() -> Result<PathBuf, NatsError> {
    if let Some(bin) = std::env::var_os(NATS_BIN_ENV) {
        return Ok(PathBuf::from(bin));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    let debian = Path::new("/usr/sbin/nats-server");
    on_path
        .or_else(|| debian.is_file().then(|| debian.to_path_buf()))
        .ok_or_else(|| NatsError::NotFound {
            tried: format!("${NATS_BIN_ENV} (not set), PATH, {}", debian.display()),
        })
}
