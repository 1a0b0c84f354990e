//! Which authentication the server asks for, learnt before any password is sent. pgroar never
//! sends a password in clear text over an unencrypted connection unless the connection string
//! allows it (`require_auth=password`, libpq's spelling of that permission): the replication
//! library and the SQL driver both answer whatever the server asks, so the question is put
//! first on a connection of its own, which ends before a password is sent (Postgres logs
//! nothing for that, as for psql's own first attempt). Only plaintext TCP connections carrying
//! a password are probed; TLS and Unix sockets are not. No state.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conninfo::{ConnInfo, DEFAULT_CONNECT_TIMEOUT, SslMode};

/// The server asked for a cleartext password on an unencrypted connection.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server at {target} asks for the password in clear text over an unencrypted connection, \
     and pgroar will not send it: connect with sslmode=require (or verify-full), have \
     pg_hba.conf use scram-sha-256, or allow it explicitly with require_auth=password"
)]
pub struct CleartextRefused {
    /// The server, as `host:port/dbname` (never the password).
    pub target: String,
}

/// `AuthenticationCleartextPassword`.
const CLEARTEXT: i32 = 3;
/// The code of an `SSLRequest`.
const SSL_REQUEST: i32 = 80_877_103;
/// Protocol 3.0.
const PROTOCOL: i32 = 196_608;

/// Refuses when a plaintext TCP connection for `conn` (a replication one if `replication`)
/// would be asked for a cleartext password. Anything the probe cannot learn is left to the real
/// connection to report.
pub async fn refuse_cleartext(conn: &ConnInfo, replication: bool) -> Result<(), CleartextRefused> {
    if conn.password.is_empty() || conn.is_unix_socket() || conn.allows_cleartext() {
        return Ok(());
    }
    if !matches!(
        conn.sslmode,
        SslMode::Disable | SslMode::Allow | SslMode::Prefer
    ) {
        return Ok(()); // TLS or no connection at all
    }
    let within = conn.net.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let asked = tokio::time::timeout(within, requested_auth(conn, replication)).await;
    match asked {
        Ok(Ok(Some(CLEARTEXT))) => Err(CleartextRefused {
            target: conn.display(),
        }),
        _ => Ok(()),
    }
}

/// The authentication code the server sends first on a plaintext connection (`None`: the
/// connection would be TLS, or the server answered something else, e.g. an error).
async fn requested_auth(conn: &ConnInfo, replication: bool) -> std::io::Result<Option<i32>> {
    let mut stream = TcpStream::connect((conn.host.as_str(), conn.port)).await?;
    if conn.sslmode != SslMode::Disable {
        // `prefer` / `allow` use TLS when the server offers it: then nothing is in clear text.
        let mut request = Vec::with_capacity(8);
        request.extend_from_slice(&8i32.to_be_bytes());
        request.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        stream.write_all(&request).await?;
        if stream.read_u8().await? != b'N' {
            return Ok(None);
        }
    }
    stream.write_all(&startup(conn, replication)).await?;
    let tag = stream.read_u8().await?;
    let len = stream.read_i32().await?;
    if tag != b'R' || len < 8 {
        return Ok(None);
    }
    let code = stream.read_i32().await?;
    let _ = stream.shutdown().await;
    Ok(Some(code))
}

/// A `StartupMessage` for `conn`'s user and database.
fn startup(conn: &ConnInfo, replication: bool) -> Vec<u8> {
    let mut body = PROTOCOL.to_be_bytes().to_vec();
    let mut param = |k: &str, v: &str| {
        for s in [k, v] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
    };
    param("user", &conn.user);
    param("database", &conn.dbname);
    if replication {
        param("replication", "database");
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_startup_message_names_user_database_and_replication() {
        let conn = ConnInfo::parse("postgresql://ann:pw@127.0.0.1:5/feed").unwrap();
        let msg = startup(&conn, true);
        assert_eq!(
            i32::from_be_bytes(msg[..4].try_into().unwrap()) as usize,
            msg.len()
        );
        assert_eq!(&msg[4..8], &PROTOCOL.to_be_bytes());
        let text = String::from_utf8_lossy(&msg[8..]);
        assert_eq!(text, "user\0ann\0database\0feed\0replication\0database\0\0");
        assert!(!String::from_utf8_lossy(&startup(&conn, false)).contains("replication"));
    }
}
