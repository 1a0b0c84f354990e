//! Why a throwaway cluster could not be started or used.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::PG_BIN_ENV;

/// Why a cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No directory holds `initdb`, `pg_ctl` and `postgres`.
    #[error(
        "no PostgreSQL server binaries found (need initdb, pg_ctl and postgres; install the \
         `postgresql` package or set {PG_BIN_ENV}); tried:\n  {}",
        tried.join("\n  ")
    )]
    BinariesNotFound {
        /// Each candidate and why it was rejected.
        tried: Vec<String>,
    },
    /// Running as root, and there is no `postgres` user to run the server as.
    #[error(
        "running as root, but there is no `postgres` OS user to run initdb and pg_ctl as \
         (initdb refuses to run as root)"
    )]
    NoPostgresUser,
    /// A file-system or process operation failed.
    #[error("{what} ({})", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file, directory or program involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `initdb` or `pg_ctl` exited unsuccessfully.
    #[error("{program} failed ({status}):\n{output}")]
    Command {
        /// The program and its first argument.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// The server did not start.
    #[error(
        "the PostgreSQL server did not start ({attempts} attempt(s)); last lines of {}:\n{tail}",
        log.display()
    )]
    Start {
        /// How many ports were tried.
        attempts: usize,
        /// The server log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The server started but did not accept connections in time.
    #[error(
        "the PostgreSQL server on port {port} did not accept connections within {waited:?}; \
         last lines of {}:\n{tail}",
        log.display()
    )]
    NotReady {
        /// The server's port.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The server log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
        /// The last connection error.
        #[source]
        source: Option<tokio_postgres::Error>,
    },
    /// A SQL statement failed.
    #[error("SQL on database {db:?} failed")]
    Sql {
        /// The database the statement ran in.
        db: String,
        /// The driver's error (carries the server's message).
        #[source]
        source: tokio_postgres::Error,
    },
    /// The cluster has already been stopped.
    #[error("the cluster has been stopped")]
    Stopped,
}
