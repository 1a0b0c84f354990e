//! Connection strings: a libpq URI (`postgresql://user:pw@host:5432/db?sslmode=require`) or a
//! `key=value` string (`host=db user=pgroar sslmode=verify-full`), with the libpq environment
//! variables (`PGHOST`, `PGPASSWORD`, …) as fallbacks, turned into the replication client's
//! configuration and an ordinary client's.
//!
//! An unknown keyword is an error (libpq rejects it too), so a misspelt `sslmode` never silently
//! means "no TLS". Every session pgroar opens pins the settings the text forms of values depend
//! on ([`PINNED_OPTIONS`]), after any `options` the user gave, so the pins win.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Row-change events the replication stream buffers ahead of the source.
pub const STREAM_BUFFER_EVENTS: usize = 1024;

use pgwire_replication::{ReplicationConfig, SslMode as WireSslMode, TlsConfig};

/// Session settings pinned on every connection: the value parser and the expression evaluator
/// assume these text forms (UTC timestamps, ISO dates, shortest-exact floats).
pub const PINNED_OPTIONS: &str =
    "-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres -c extra_float_digits=3";

/// Why a connection string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    /// The string is not a URI or `key=value` list.
    #[error("connection string: {0}")]
    Syntax(String),
    /// A keyword libpq does not know (or pgroar does not support).
    #[error("connection string: unknown keyword {0:?}")]
    UnknownKeyword(String),
    /// A keyword's value is not valid.
    #[error("connection string: invalid {key} {value:?}: {rule}")]
    BadValue {
        /// The keyword.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is expected.
        rule: &'static str,
    },
    /// Several hosts were given (libpq's failover list); pgroar connects to one server.
    #[error("connection string: several hosts ({0}); give exactly one")]
    MultipleHosts(String),
}

impl ConnInfoError {
    /// The error with every occurrence of a secret replaced by `***`.
    fn scrubbed(self, secrets: &[String]) -> ConnInfoError {
        let clean = |mut text: String| {
            for secret in secrets {
                text = text.replace(secret.as_str(), "***");
            }
            text
        };
        match self {
            ConnInfoError::Syntax(t) => ConnInfoError::Syntax(clean(t)),
            ConnInfoError::UnknownKeyword(t) => ConnInfoError::UnknownKeyword(clean(t)),
            ConnInfoError::BadValue { key, value, rule } => ConnInfoError::BadValue {
                key,
                value: clean(value),
                rule,
            },
            ConnInfoError::MultipleHosts(t) => ConnInfoError::MultipleHosts(clean(t)),
        }
    }
}

/// What in `s` may be (part of) a password: the `password` value of a key=value string or a
/// URI query, and in a URI everything between the first `:` after `://` and the last `@` (a
/// password with an unencoded `/`, `?` or `@` moves that boundary), raw and percent-decoded,
/// with each piece of it between URI delimiters. Longest first, so pieces never mask a whole.
fn secrets(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |v: &str| {
        for piece in std::iter::once(v).chain(v.split(['/', '?', '#', '@', ':', '&', '='])) {
            if !piece.is_empty() {
                out.push(piece.to_owned());
                if let Ok(decoded) = percent_decode(piece) {
                    out.push(decoded);
                }
            }
        }
    };
    if let Some((_, rest)) = s.split_once("://")
        && let Some(at) = rest.rfind('@')
        && let Some((_, password)) = rest[..at].split_once(':')
    {
        add(password);
    }
    if let Ok(pairs) = parse_key_values(s) {
        for (k, v) in pairs {
            if k == "password" {
                add(&v);
            }
        }
    }
    for param in s.split(['?', '&', ' ']) {
        if let Some(v) = param.trim().strip_prefix("password=") {
            add(v);
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.len()));
    out.dedup();
    out
}

/// TLS mode, as libpq's `sslmode`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum SslMode {
    /// `disable`: plain TCP.
    Disable,
    /// `allow`: treated as `prefer` (try TLS, fall back to plain).
    Allow,
    /// `prefer` (libpq's default): try TLS, fall back to plain.
    #[default]
    Prefer,
    /// `require`: TLS without certificate checks.
    Require,
    /// `verify-ca`: TLS, certificate chain checked.
    VerifyCa,
    /// `verify-full`: TLS, chain and host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, ConnInfoError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(ConnInfoError::BadValue {
                    key: "sslmode",
                    value: s.to_owned(),
                    rule: "one of disable, allow, prefer, require, verify-ca, verify-full",
                });
            }
        })
    }
}

/// libpq's `channel_binding`: whether SCRAM must bind the authentication to the TLS channel.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ChannelBinding {
    /// `disable`: never bind.
    Disable,
    /// `prefer` (libpq's default): bind when the server offers it over TLS.
    #[default]
    Prefer,
    /// `require`: refuse any authentication that is not SCRAM bound to the TLS channel.
    Require,
}

/// The TCP and timeout keywords (`connect_timeout`, `keepalives*`, `tcp_user_timeout`).
///
/// Ordinary connections apply them as libpq does. The replication connection has traffic both
/// ways every status interval, so idle keepalive probes are moot there; a silent peer is found
/// by the stream's receive timeout instead, which [`NetOptions::dead_after`] bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetOptions {
    /// Longest a connection (TCP, TLS, authentication, the start-up checks) may take; `None`:
    /// wait indefinitely (`connect_timeout=0`). Unset: [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Option<Duration>,
    /// TCP keepalives on (`keepalives=1`, the default).
    pub keepalives: bool,
    /// Idle time before the first keepalive probe.
    pub keepalives_idle: Option<Duration>,
    /// Time between keepalive probes.
    pub keepalives_interval: Option<Duration>,
    /// Unanswered probes before the connection is dead.
    pub keepalives_count: Option<u32>,
    /// Longest transmitted data may stay unacknowledged (`TCP_USER_TIMEOUT`).
    pub tcp_user_timeout: Option<Duration>,
}

/// The connect timeout when the string names none (libpq would wait forever; a daemon should
/// not).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            keepalives: true,
            keepalives_idle: None,
            keepalives_interval: None,
            keepalives_count: None,
            tcp_user_timeout: None,
        }
    }
}

impl NetOptions {
    /// The longest silence the options allow before a connection counts as dead: the TCP user
    /// timeout, or the full keepalive cycle (idle + interval × count) when all three are given.
    pub fn dead_after(&self) -> Option<Duration> {
        let keepalive = match (
            self.keepalives,
            self.keepalives_idle,
            self.keepalives_interval,
            self.keepalives_count,
        ) {
            (true, Some(idle), Some(interval), Some(count)) => {
                Some(idle.saturating_add(interval.saturating_mul(count)))
            }
            _ => None,
        };
        match (self.tcp_user_timeout, keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A parsed connection string, defaults and environment applied.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Host name, IP address, or a Unix socket directory (starts with `/`).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role.
    pub user: String,
    /// Password (empty: none).
    pub password: String,
    /// Database.
    pub dbname: String,
    /// TLS mode.
    pub sslmode: SslMode,
    /// CA certificates (PEM) for `verify-ca` / `verify-full`.
    pub sslrootcert: Option<PathBuf>,
    /// Client certificate (PEM).
    pub sslcert: Option<PathBuf>,
    /// Client key (PEM).
    pub sslkey: Option<PathBuf>,
    /// The user's `options` (command-line options for the server session).
    pub options: Option<String>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// Timeouts and TCP keepalives.
    pub net: NetOptions,
    /// `channel_binding`.
    pub channel_binding: ChannelBinding,
    /// libpq's `require_auth` (the methods the server may ask for); pgroar reads it only to
    /// allow a cleartext password on an unencrypted connection (`password` listed).
    pub require_auth: Option<String>,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("net", &self.net)
            .field("channel_binding", &self.channel_binding)
            .finish_non_exhaustive()
    }
}

/// Keywords accepted and ignored: they tune libpq behaviour pgroar does not have.
const IGNORED: &[&str] = &[
    "target_session_attrs",
    "gssencmode",
    "client_encoding",
    "sslcompression",
    "sslsni",
    "fallback_application_name",
];

impl ConnInfo {
    /// Parses `s` (URI or `key=value`), falling back to the process's `PG*` variables.
    pub fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
        ConnInfo::parse_with_env(s, |k| std::env::var(k).ok())
    }

    /// Parses `s` with `env` as the source of `PG*` fallbacks (for tests). An error never
    /// quotes the password, or any piece of it a mistyped URI split off as a host or port.
    pub fn parse_with_env(
        s: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ConnInfo, ConnInfoError> {
        ConnInfo::parse_unscrubbed(s, env).map_err(|e| e.scrubbed(&secrets(s)))
    }

    fn parse_unscrubbed(
        s: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ConnInfo, ConnInfoError> {
        let s = s.trim();
        let pairs = if s.starts_with("postgresql://") || s.starts_with("postgres://") {
            parse_uri(s)?
        } else {
            parse_key_values(s)?
        };
        let mut raw = Raw::default();
        for (k, v) in pairs {
            raw.set(&k, v)?;
        }
        for (field, var) in [
            ("host", "PGHOST"),
            ("port", "PGPORT"),
            ("user", "PGUSER"),
            ("password", "PGPASSWORD"),
            ("dbname", "PGDATABASE"),
            ("sslmode", "PGSSLMODE"),
            ("sslrootcert", "PGSSLROOTCERT"),
            ("sslcert", "PGSSLCERT"),
            ("sslkey", "PGSSLKEY"),
            ("options", "PGOPTIONS"),
            ("application_name", "PGAPPNAME"),
            ("connect_timeout", "PGCONNECT_TIMEOUT"),
            ("channel_binding", "PGCHANNELBINDING"),
            ("tcp_user_timeout", "PGTCPUSERTIMEOUT"),
        ] {
            if raw.get(field).is_none()
                && let Some(v) = env(var).filter(|v| !v.is_empty())
            {
                raw.set(field, v)?;
            }
        }
        raw.finish(&env)
    }

    /// The replication client's configuration for `slot` and `publication` (start position,
    /// acknowledgement and timing are set by the caller).
    pub fn replication_config(&self, slot: &str, publication: &str) -> ReplicationConfig {
        let cfg = if self.is_unix_socket() {
            ReplicationConfig::unix(
                &self.host,
                self.port,
                &self.user,
                &self.password,
                &self.dbname,
                slot,
                publication,
            )
        } else {
            ReplicationConfig::new(
                &self.host,
                &self.user,
                &self.password,
                &self.dbname,
                slot,
                publication,
            )
            .with_port(self.port)
            .with_tls(self.tls_config())
        };
        // Events buffered between the socket and the source: what a paused stream holds in
        // memory is this many row changes (the library's default, 8192, is ~64 MB of 4 KB rows).
        cfg.with_buffer_size(STREAM_BUFFER_EVENTS)
            .with_options(self.session_options())
            .with_application_name(self.application_name.as_deref().unwrap_or("pgroar"))
    }

    /// An ordinary (non-replication) client's configuration, with the same pinned settings.
    /// `tokio_postgres` knows only `disable`, `prefer` and `require`; the stricter modes map to
    /// `require` (the connector the caller passes decides what is verified).
    pub fn sql_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        if self.is_unix_socket() {
            c.host_path(&self.host);
        } else {
            c.host(&self.host);
        }
        c.port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .options(self.session_options())
            .application_name(self.application_name.as_deref().unwrap_or("pgroar"))
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        if !self.password.is_empty() {
            c.password(&self.password);
        }
        let net = &self.net;
        if let Some(t) = net.connect_timeout {
            c.connect_timeout(t);
        }
        c.keepalives(net.keepalives);
        if let Some(t) = net.keepalives_idle {
            c.keepalives_idle(t);
        }
        if let Some(t) = net.keepalives_interval {
            c.keepalives_interval(t);
        }
        if let Some(n) = net.keepalives_count {
            c.keepalives_retries(n);
        }
        if let Some(t) = net.tcp_user_timeout {
            c.tcp_user_timeout(t);
        }
        c.channel_binding(match self.channel_binding {
            ChannelBinding::Disable => tokio_postgres::config::ChannelBinding::Disable,
            ChannelBinding::Prefer => tokio_postgres::config::ChannelBinding::Prefer,
            ChannelBinding::Require => tokio_postgres::config::ChannelBinding::Require,
        });
        c
    }

    /// Whether `require_auth` allows a cleartext password: `password` listed, or a list of
    /// `!method` exclusions that does not exclude it. Unset: not allowed (stricter than libpq).
    pub fn allows_cleartext(&self) -> bool {
        let Some(list) = &self.require_auth else {
            return false;
        };
        let methods: Vec<&str> = list.split(',').map(str::trim).collect();
        if methods.iter().all(|m| m.starts_with('!')) {
            !methods.contains(&"!password")
        } else {
            methods.contains(&"password")
        }
    }

    /// Whether `host` is a Unix socket directory.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// The user's `options` followed by [`PINNED_OPTIONS`].
    pub fn session_options(&self) -> String {
        match self.options.as_deref().map(str::trim) {
            Some(o) if !o.is_empty() => format!("{o} {PINNED_OPTIONS}"),
            _ => PINNED_OPTIONS.to_owned(),
        }
    }

    /// `user@host:port/dbname`, for logs (never the password).
    pub fn display(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    fn tls_config(&self) -> TlsConfig {
        let mode = match self.sslmode {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => WireSslMode::Prefer,
            SslMode::Require => WireSslMode::Require,
            SslMode::VerifyCa => WireSslMode::VerifyCa,
            SslMode::VerifyFull => WireSslMode::VerifyFull,
        };
        let mut tls = TlsConfig {
            mode,
            ca_pem_path: self.sslrootcert.clone(),
            ..TlsConfig::default()
        };
        if let (Some(cert), Some(key)) = (&self.sslcert, &self.sslkey) {
            tls = tls.with_client_cert(cert, key);
        }
        tls
    }
}

/// Keyword values as given, before defaults.
#[derive(Default)]
struct Raw {
    host: Option<String>,
    hostaddr: Option<String>,
    port: Option<String>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    options: Option<String>,
    application_name: Option<String>,
    connect_timeout: Option<String>,
    keepalives: Option<String>,
    keepalives_idle: Option<String>,
    keepalives_interval: Option<String>,
    keepalives_count: Option<String>,
    tcp_user_timeout: Option<String>,
    channel_binding: Option<String>,
    require_auth: Option<String>,
}

impl Raw {
    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        Some(match key {
            "host" => &mut self.host,
            "hostaddr" => &mut self.hostaddr,
            "port" => &mut self.port,
            "user" => &mut self.user,
            "password" => &mut self.password,
            "dbname" => &mut self.dbname,
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            "options" => &mut self.options,
            "application_name" => &mut self.application_name,
            "connect_timeout" => &mut self.connect_timeout,
            "keepalives" => &mut self.keepalives,
            "keepalives_idle" => &mut self.keepalives_idle,
            "keepalives_interval" => &mut self.keepalives_interval,
            "keepalives_count" => &mut self.keepalives_count,
            "tcp_user_timeout" => &mut self.tcp_user_timeout,
            "channel_binding" => &mut self.channel_binding,
            "require_auth" => &mut self.require_auth,
            _ => return None,
        })
    }

    fn get(&mut self, key: &str) -> Option<&String> {
        self.slot(key).and_then(|s| s.as_ref())
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), ConnInfoError> {
        match self.slot(key) {
            Some(slot) => {
                *slot = Some(value);
                Ok(())
            }
            None if IGNORED.contains(&key) => Ok(()),
            None => Err(ConnInfoError::UnknownKeyword(key.to_owned())),
        }
    }

    fn finish(self, env: &impl Fn(&str) -> Option<String>) -> Result<ConnInfo, ConnInfoError> {
        let net = self.net_options()?;
        let port = match self.port.as_deref().filter(|p| !p.is_empty()) {
            None => 5432,
            Some(p) if p.contains(',') => return Err(ConnInfoError::MultipleHosts(p.to_owned())),
            Some(p) => {
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| ConnInfoError::BadValue {
                        key: "port",
                        value: p.to_owned(),
                        rule: "a TCP port number",
                    })?
            }
        };
        let host = self
            .host
            .filter(|h| !h.is_empty())
            .or(self.hostaddr.filter(|h| !h.is_empty()));
        if let Some(h) = &host
            && h.contains(',')
        {
            return Err(ConnInfoError::MultipleHosts(h.clone()));
        }
        let host = host.unwrap_or_else(|| default_host(port));
        let user = self
            .user
            .filter(|u| !u.is_empty())
            .or_else(|| env("USER").filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "postgres".to_owned());
        let dbname = self
            .dbname
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| user.clone());
        let sslmode = match self.sslmode.as_deref() {
            None | Some("") => SslMode::default(),
            Some(m) => SslMode::parse(m)?,
        };
        let path = |p: Option<String>| p.filter(|p| !p.is_empty()).map(PathBuf::from);
        let channel_binding = match self.channel_binding.as_deref() {
            None | Some("") => ChannelBinding::default(),
            Some("disable") => ChannelBinding::Disable,
            Some("prefer") => ChannelBinding::Prefer,
            Some("require") => ChannelBinding::Require,
            Some(v) => {
                return Err(ConnInfoError::BadValue {
                    key: "channel_binding",
                    value: v.to_owned(),
                    rule: "one of disable, prefer, require",
                });
            }
        };
        Ok(ConnInfo {
            host,
            port,
            user,
            password: self.password.unwrap_or_default(),
            dbname,
            sslmode,
            sslrootcert: path(self.sslrootcert),
            sslcert: path(self.sslcert),
            sslkey: path(self.sslkey),
            options: self.options.filter(|o| !o.trim().is_empty()),
            application_name: self.application_name.filter(|a| !a.is_empty()),
            net,
            channel_binding,
            require_auth: self.require_auth.filter(|r| !r.trim().is_empty()),
        })
    }

    /// The timeout and keepalive keywords, with libpq's units (seconds; milliseconds for
    /// `tcp_user_timeout`) and rules (`connect_timeout` 0 waits forever, 1 means 2).
    fn net_options(&self) -> Result<NetOptions, ConnInfoError> {
        let mut net = NetOptions::default();
        if let Some(secs) = number(&self.connect_timeout, "connect_timeout")? {
            net.connect_timeout = match secs {
                0 => None,
                s => Some(Duration::from_secs(s.max(2))),
            };
        }
        if let Some(on) = number(&self.keepalives, "keepalives")? {
            net.keepalives = on != 0;
        }
        let secs = |v: Option<u64>| v.filter(|&s| s > 0).map(Duration::from_secs);
        net.keepalives_idle = secs(number(&self.keepalives_idle, "keepalives_idle")?);
        net.keepalives_interval = secs(number(&self.keepalives_interval, "keepalives_interval")?);
        net.keepalives_count = number(&self.keepalives_count, "keepalives_count")?
            .filter(|&n| n > 0)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        net.tcp_user_timeout = number(&self.tcp_user_timeout, "tcp_user_timeout")?
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis);
        Ok(net)
    }
}

/// A non-negative integer keyword value (`None` when unset or empty).
fn number(value: &Option<String>, key: &'static str) -> Result<Option<u64>, ConnInfoError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ConnInfoError::BadValue {
                key,
                value: v.to_owned(),
                rule: "a whole number",
            }),
    }
}

/// libpq's default: the Unix socket in the usual directories, else localhost.
fn default_host(port: u16) -> String {
    for dir in ["/var/run/postgresql", "/tmp"] {
        if Path::new(dir).join(format!(".s.PGSQL.{port}")).exists() {
            return dir.to_owned();
        }
    }
    "localhost".to_owned()
}

/// `postgresql://[user[:password]@][host][:port][/dbname][?key=value&…]`.
fn parse_uri(s: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let rest = s
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| ConnInfoError::Syntax("missing ://".into()))?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let mut out = Vec::new();
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.push(("user".to_owned(), percent_decode(user)?));
            }
            if let Some(p) = password {
                out.push(("password".to_owned(), percent_decode(p)?));
            }
            hostport
        }
        None => authority,
    };
    if hostport.contains(',') {
        return Err(ConnInfoError::MultipleHosts(hostport.to_owned()));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| ConnInfoError::Syntax("unterminated [IPv6] host".into()))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| ConnInfoError::Syntax(format!("unexpected {p:?} after host")))?,
            ),
        };
        (h, port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if !host.is_empty() {
        out.push(("host".to_owned(), percent_decode(host)?));
    }
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        out.push(("port".to_owned(), percent_decode(p)?));
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.push(("dbname".to_owned(), percent_decode(db)?));
    }
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        if param.is_empty() {
            continue;
        }
        let (k, v) = param
            .split_once('=')
            .ok_or_else(|| ConnInfoError::Syntax(format!("parameter {param:?} has no value")))?;
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

/// `%XX` escapes (and nothing else: `+` stays `+`, as in libpq).
fn percent_decode(s: &str) -> Result<String, ConnInfoError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConnInfoError::Syntax(format!("bad percent escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ConnInfoError::Syntax(format!("{s:?} decodes to invalid UTF-8")))
}

/// `key = value` pairs separated by whitespace; values may be single-quoted with `\'` and `\\`.
fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnInfoError::Syntax(format!(
                "expected \"=\" after {key:?} (a URI starts with postgresql://)"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(ConnInfoError::Syntax(format!(
                            "unterminated quoted value of {key:?}"
                        )));
                    }
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(ConnInfoError::Syntax(format!(
                                "unterminated quoted value of {key:?}"
                            )));
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests;
