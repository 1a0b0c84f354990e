//! A TCP listener that caps the HTTP connections open at once: past the cap a new connection is
//! closed as soon as it is accepted (with a warning at most once a second), so a flood of idle
//! connections cannot use up the process's file descriptors and starve everyone else. A
//! connection's slot is freed when the server drops it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// A [`TcpListener`] accepting at most `max` open connections.
pub(super) struct CappedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    max: usize,
    last_warning: Option<Instant>,
    refused: u64,
}

impl CappedListener {
    pub(super) fn new(inner: TcpListener, max: usize) -> CappedListener {
        let max = max.max(1);
        CappedListener {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            max,
            last_warning: None,
            refused: 0,
        }
    }

    fn refuse(&mut self, addr: SocketAddr) {
        self.refused += 1;
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.last_warning = Some(Instant::now());
            warn!(
                peer = %addr,
                max = self.max,
                refused = self.refused,
                "HTTP connection closed: http.max_connections are open"
            );
        }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CappedStream, SocketAddr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => return (CappedStream { io, _slot: slot }, addr),
                Err(_) => {
                    self.refuse(addr);
                    drop(io);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection holding one of the listener's slots until it is dropped.
pub(super) struct CappedStream {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for CappedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
