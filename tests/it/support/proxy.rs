//! A TCP proxy for network-fault tests, between pgroar and Postgres. It forwards until told
//! otherwise, then can:
//! * **blackhole**: every open connection stops forwarding without closing (what a NAT or
//!   firewall that dropped its state does: the peers see silence, never a FIN or RST), and new
//!   connections are accepted but never forwarded;
//! * **cut**: every open connection is closed, and new ones are closed at once;
//! * **resume**: new connections forward again. Blackholed connections stay silent for good, as
//!   they would behind a NAT that forgot them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mode {
    Forward,
    Blackhole,
    Cut,
}

struct Link {
    /// Turns true when this connection must go silent.
    silence: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Held so that a silenced connection is never closed.
    _held: Vec<TcpStream>,
}

struct Shared {
    mode: Mutex<Mode>,
    links: Mutex<Vec<Link>>,
    accepted: AtomicU64,
}

/// A running proxy; stops (closing everything) on drop.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Forward),
            links: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    /// The port pgroar connects to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Silences every open connection (and every new one) without closing anything.
    pub fn blackhole(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Blackhole;
        for link in self.shared.links.lock().unwrap().iter() {
            let _ = link.silence.send(true);
        }
    }

    /// Closes every open connection; new ones are closed at once.
    pub fn cut(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Cut;
        for link in self.shared.links.lock().unwrap().drain(..) {
            for t in &link.tasks {
                t.abort();
            }
        }
    }

    /// New connections forward again.
    pub fn resume(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Forward;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.shared.links.lock().unwrap().drain(..) {
            for t in &link.tasks {
                t.abort();
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let mode = *shared.mode.lock().unwrap();
        match mode {
            Mode::Cut => drop(client),
            Mode::Blackhole => {
                let (silence, _) = watch::channel(true);
                shared.links.lock().unwrap().push(Link {
                    silence,
                    tasks: Vec::new(),
                    _held: vec![client],
                });
            }
            Mode::Forward => {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (silence, quiet) = watch::channel(false);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let tasks = vec![
                    tokio::spawn(pump(cr, sw, quiet.clone())),
                    tokio::spawn(pump(sr, cw, quiet)),
                ];
                shared.links.lock().unwrap().push(Link {
                    silence,
                    tasks,
                    _held: Vec::new(),
                });
            }
        }
    }
}

/// Copies `from` → `to` until either side closes or the link is silenced (then it holds both
/// halves open and does nothing, forever).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut quiet: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if *quiet.borrow() {
            break;
        }
        tokio::select! {
            _ = quiet.changed() => continue,
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if *quiet.borrow() {
                        break;
                    }
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    // Silenced: keep both halves open, read nothing, write nothing.
    std::future::pending::<()>().await;
    drop((from, to));
}
