//! COPY sessions: ordinary sessions on the exported snapshot, each with a thread of its own that
//! drives both its connection and the COPY tasks that read from it.
//!
//! Every COPY row arrives as a message whose bytes share the connection's read buffer (one
//! reference count, touched as each message is split off and again as it is dropped). With the
//! connection on one runtime thread and its reader on another, that count's cache line moved
//! between cores twice per row, and every buffer of messages woke a task across threads. On one
//! thread both are cheap. The session's thread ends when its client is dropped: the connection
//! then closes, and with it the thread's runtime (cancelling any task still queued on it).

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio_postgres::Client;

use super::BootstrapError;
use crate::source::{ConnInfo, connect_sql_parts};

/// An ordinary session whose connection runs on its own thread; spawn the tasks that use it on
/// [`CopySession::runtime`].
pub struct CopySession {
    /// The session.
    pub client: Arc<Client>,
    /// The runtime of the session's thread.
    pub runtime: Handle,
}

impl CopySession {
    /// Connects on a new thread named `name` (TLS and settings as [`crate::source::connect_sql`]).
    pub async fn open(conn: &ConnInfo, name: String) -> Result<CopySession, BootstrapError> {
        let (opened, wait) = tokio::sync::oneshot::channel();
        let conn = conn.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(source) => {
                        let _ = opened.send(Err(BootstrapError::Io {
                            what: "starting a COPY session's runtime",
                            source,
                        }));
                        return;
                    }
                };
                let handle = runtime.handle().clone();
                runtime.block_on(async move {
                    match connect_sql_parts(&conn).await {
                        Ok((client, connection)) => {
                            if opened.send(Ok((client, handle))).is_ok() {
                                connection.await;
                            }
                        }
                        Err(e) => {
                            let _ = opened.send(Err(BootstrapError::Connect(Box::new(e))));
                        }
                    }
                });
            })
            .map_err(|source| BootstrapError::Io {
                what: "starting a COPY session's thread",
                source,
            })?;
        let (client, runtime) = wait
            .await
            .map_err(|_| BootstrapError::Panicked("a COPY session's thread"))??;
        Ok(CopySession {
            client: Arc::new(client),
            runtime,
        })
    }
}
