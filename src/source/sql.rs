//! Ordinary (non-replication) SQL sessions: `tokio-postgres` over rustls, with the TLS the
//! connection string asks for — the same modes and certificate files, the same rustls stack and
//! crypto provider (ring) as the replication session. (One difference: `verify-full` against an
//! IP address checks the certificate's IP names here, where the replication client refuses an IP
//! address outright.)
//!
//! | `sslmode`         | TLS                            | chain verified | host name verified |
//! |-------------------|--------------------------------|----------------|--------------------|
//! | `disable`         | never                          | —              | —                  |
//! | `allow`, `prefer` | if the server offers it        | no             | no                 |
//! | `require`         | always                         | no             | no                 |
//! | `verify-ca`       | always                         | yes            | no                 |
//! | `verify-full`     | always                         | yes            | yes (names, IPs)   |
//!
//! Over a Unix socket TLS is never used, whatever `sslmode` says (as with libpq, and as for the
//! replication session). Verification uses the CA certificates of `sslrootcert` (PEM), or the
//! Mozilla root set when none is given; `sslcert` + `sslkey` (PEM) authenticate the client.
//! Without verification the server's handshake signature is still checked: the session is
//! encrypted to whoever holds the presented certificate's key, who that is is not checked (as
//! with libpq).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conninfo::{ConnInfo, SslMode};

/// Why an ordinary session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SqlConnectError {
    /// A PEM file named by `sslrootcert`, `sslcert` or `sslkey` cannot be read or parsed.
    #[error("cannot read the {what} {}", path.display())]
    Pem {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// `sslrootcert` holds no usable CA certificate.
    #[error("sslrootcert {} holds no usable CA certificate", path.display())]
    NoRootCertificate {
        /// The file.
        path: PathBuf,
    },
    /// Only one of `sslcert` and `sslkey` was given.
    #[error("sslcert and sslkey must be given together")]
    HalfClientCertificate,
    /// rustls refused the configuration (e.g. a client key that does not match its
    /// certificate).
    #[error("the TLS configuration is not usable")]
    Tls(#[source] TlsError),
    /// The server-certificate verifier could not be built from the CA certificates.
    #[error("cannot build the server-certificate verifier")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
    /// The server asked for a cleartext password on an unencrypted connection.
    #[error(transparent)]
    Cleartext(#[from] super::auth_probe::CleartextRefused),
    /// Connecting, the TLS handshake or authentication failed.
    #[error("cannot connect to {target}")]
    Connect {
        /// `user@host:port/dbname`.
        target: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Opens an ordinary session as `conn` says (TLS per `sslmode`, the pinned session settings),
/// driving the connection on a task of the current tokio runtime; the session ends when the
/// client is dropped.
pub async fn connect_sql(conn: &ConnInfo) -> Result<Client, SqlConnectError> {
    let (client, connection) = connect_sql_parts(conn).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The connection's I/O, to be driven by whoever opened it: it ends when the client is dropped
/// (or the server closes the session).
pub type SqlConnection = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Opens an ordinary session like [`connect_sql`] but hands its I/O back instead of spawning it,
/// so that the caller can drive it on a thread of its choice.
pub async fn connect_sql_parts(
    conn: &ConnInfo,
) -> Result<(Client, SqlConnection), SqlConnectError> {
    let connect_err = |source| SqlConnectError::Connect {
        target: conn.display(),
        source,
    };
    super::auth_probe::refuse_cleartext(conn, false).await?;
    let mut config = conn.sql_config();
    if conn.sslmode == SslMode::Disable || conn.is_unix_socket() {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(connect_err)?;
        Ok((client, drive(connection)))
    } else {
        let tls = MakeRustlsConnect::new(client_config(conn)?);
        let (client, connection) = config.connect(tls).await.map_err(connect_err)?;
        Ok((client, drive(connection)))
    }
}

/// A connection (plain or TLS) as one type; its end, error or not, is the session's end.
fn drive<E: 'static>(
    connection: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> SqlConnection {
    Box::pin(async move {
        let _ = connection.await;
    })
}

/// The rustls client configuration for `conn`'s TLS settings (see the module table).
pub fn client_config(conn: &ConnInfo) -> Result<ClientConfig, SqlConnectError> {
    // The ring provider has no post-quantum key exchange (hence its deprecation in newer
    // rustls): the handshake uses the classical groups every PostgreSQL server offers, and
    // ring needs no extra build tools.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(SqlConnectError::Tls)?;
    let builder = match conn.sslmode {
        SslMode::Disable | SslMode::Allow | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoChainCheck(Arc::clone(&provider)))),
        SslMode::VerifyCa => {
            let roots = Arc::new(root_store(conn.sslrootcert.as_deref())?);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly {
                    roots,
                    provider: Arc::clone(&provider),
                }))
        }
        SslMode::VerifyFull => {
            let roots = Arc::new(root_store(conn.sslrootcert.as_deref())?);
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(SqlConnectError::Verifier)?;
            builder.with_webpki_verifier(verifier)
        }
    };
    match (&conn.sslcert, &conn.sslkey) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(std::iter::Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(pem_err("sslcert", cert))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err("sslkey", key))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(SqlConnectError::Tls)
        }
        _ => Err(SqlConnectError::HalfClientCertificate),
    }
}

fn pem_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(rustls::pki_types::pem::Error) -> SqlConnectError {
    let path = path.to_path_buf();
    move |source| SqlConnectError::Pem { what, path, source }
}

/// The CA certificates of `sslrootcert`, or the Mozilla root set.
fn root_store(sslrootcert: Option<&Path>) -> Result<RootCertStore, SqlConnectError> {
    let mut roots = RootCertStore::empty();
    match sslrootcert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(std::iter::Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(pem_err("sslrootcert", path))?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(SqlConnectError::NoRootCertificate {
                    path: path.to_path_buf(),
                });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// `require` (and a `prefer` that got TLS): any certificate is accepted; the handshake
/// signatures are still verified with the provider's algorithms.
#[derive(Debug)]
struct NoChainCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoChainCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root and be valid now; the name is not
/// checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(extra: &str) -> ConnInfo {
        ConnInfo::parse_with_env(&format!("host=db user=u dbname=d {extra}"), |_| None).unwrap()
    }

    #[test]
    fn modes_without_verification_need_no_files() {
        for mode in ["prefer", "require", "allow"] {
            client_config(&conn(&format!("sslmode={mode}"))).unwrap();
        }
        // Verification without sslrootcert falls back to the Mozilla roots, like the
        // replication session.
        client_config(&conn("sslmode=verify-full")).unwrap();
    }

    #[test]
    fn unreadable_or_empty_certificate_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client_config(&conn(&format!(
            "sslmode=verify-ca sslrootcert={}",
            missing.display()
        )))
        .unwrap_err();
        assert!(
            matches!(
                err,
                SqlConnectError::Pem {
                    what: "sslrootcert",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(&conn(&format!(
            "sslmode=verify-full sslrootcert={}",
            empty.display()
        )))
        .unwrap_err();
        assert!(
            matches!(err, SqlConnectError::NoRootCertificate { .. }),
            "{err:?}"
        );
        let err = client_config(&conn(&format!(
            "sslmode=require sslcert={}",
            empty.display()
        )))
        .unwrap_err();
        assert!(
            matches!(err, SqlConnectError::HalfClientCertificate),
            "{err:?}"
        );
    }
}
