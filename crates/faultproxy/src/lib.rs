//! A TCP proxy for tests that stands between a client and a server and injects the faults a
//! network and a database restart cause: added latency, every connection reset at once, a black
//! hole (connections accepted and kept but never forwarded), a pause that loses nothing, and
//! refusing new connections for a while.
//!
//! ```no_run
//! # async fn demo(upstream: std::net::SocketAddr) -> std::io::Result<()> {
//! use callers_faultproxy::FaultProxy;
//! let proxy = FaultProxy::start(upstream).await?;
//! // point the client at proxy.addr() instead of upstream, then:
//! proxy.set_latency(std::time::Duration::from_millis(200));
//! proxy.reset_all();
//! proxy.set_black_hole(true);
//! # Ok(()) }
//! ```
//!
//! Everything runs on the caller's tokio runtime and stops when the [`FaultProxy`] is dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the proxy does with traffic; changed at any time from the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    /// Added to every chunk in each direction (one-way delay; a round trip pays it twice).
    latency: Duration,
    /// Connections alive or made while this is on are doomed: they are read and discarded
    /// forever, never forwarded, never closed by the proxy, even after the hole ends.
    black_hole: bool,
    /// Nothing is read while paused; on resume everything flows on, nothing lost.
    paused: bool,
    /// While on, the listening socket is closed: connecting is refused.
    refusing: bool,
    /// Bumped by `reset_all`: every connection older than the bump is reset.
    reset_generation: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    live: AtomicUsize,
    reset: AtomicU64,
}

/// The proxy; dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: watch::Sender<State>,
    counters: Arc<Counters>,
    listener_task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, _) = watch::channel(State {
            latency: Duration::ZERO,
            black_hole: false,
            paused: false,
            refusing: false,
            reset_generation: 0,
        });
        let counters = Arc::new(Counters::default());
        let listener_task = tokio::spawn(accept_loop(
            listener,
            addr,
            upstream,
            state.subscribe(),
            counters.clone(),
        ));
        Ok(FaultProxy {
            addr,
            upstream,
            state,
            counters,
            listener_task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// One-way delay added to every chunk in both directions; `ZERO` turns it off.
    pub fn set_latency(&self, latency: Duration) {
        self.state.send_modify(|s| s.latency = latency);
    }

    /// Resets (TCP RST) every connection open now; new ones are accepted as before.
    pub fn reset_all(&self) {
        self.state.send_modify(|s| s.reset_generation += 1);
    }

    /// On: every open and new connection is kept open but nothing is forwarded any more, in
    /// either direction, as in a network partition. Off: new connections work again; the ones
    /// caught in the hole stay dead until the client closes them or [`FaultProxy::reset_all`].
    pub fn set_black_hole(&self, on: bool) {
        self.state.send_modify(|s| s.black_hole = on);
    }

    /// Stops forwarding without losing anything; [`FaultProxy::resume`] delivers what waited.
    pub fn pause(&self) {
        self.state.send_modify(|s| s.paused = true);
    }

    pub fn resume(&self) {
        self.state.send_modify(|s| s.paused = false);
    }

    /// On: the listening socket is closed, so connecting is refused (as while a server is
    /// down); open connections are left alone. Off: listens on the same port again.
    pub fn set_refusing(&self, on: bool) {
        self.state.send_modify(|s| s.refusing = on);
    }

    /// A server restart as clients see it: every connection is reset and connecting is refused
    /// until [`FaultProxy::set_refusing`]`(false)`.
    pub fn go_down(&self) {
        self.state.send_modify(|s| {
            s.refusing = true;
            s.reset_generation += 1;
        });
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now (including those caught in a black hole).
    pub fn live(&self) -> usize {
        self.counters.live.load(Ordering::Relaxed)
    }

    /// Connections ended by [`FaultProxy::reset_all`] or [`FaultProxy::go_down`].
    pub fn resets(&self) -> u64 {
        self.counters.reset.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.listener_task.abort();
        // Connection tasks end on the reset; the closed channel ends them too.
        self.state.send_modify(|s| s.reset_generation += 1);
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut state: watch::Receiver<State>,
    counters: Arc<Counters>,
) {
    let mut listener = Some(listener);
    loop {
        let refusing = state.borrow_and_update().refusing;
        match (&listener, refusing) {
            (Some(_), true) => listener = None,
            (None, false) => match bind_again(addr).await {
                Some(l) => listener = Some(l),
                None => return,
            },
            _ => {}
        }
        let Some(l) = &listener else {
            if state.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                tokio::spawn(connection(client, upstream, state.clone(), counters.clone()));
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Binds the proxy's own port again after a refusal, retrying briefly if the kernel still
/// holds it.
async fn bind_again(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

struct LiveGuard(Arc<Counters>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    counters: Arc<Counters>,
) {
    counters.live.fetch_add(1, Ordering::Relaxed);
    let _live = LiveGuard(counters.clone());
    let generation = state.borrow().reset_generation;
    let doomed = Arc::new(AtomicBool::new(state.borrow().black_hole));
    let mut reset_watch = state.clone();
    let reset = async move {
        let _ = reset_watch
            .wait_for(|s| s.reset_generation != generation)
            .await;
    };
    tokio::pin!(reset);

    let mut server = if doomed.load(Ordering::Relaxed) {
        None
    } else {
        tokio::select! {
            s = TcpStream::connect(upstream) => match s {
                Ok(s) => Some(s),
                Err(_) => return, // upstream down: the client sees its connection closed
            },
            _ = &mut reset => {
                abort(&client, &counters);
                return;
            }
        }
    };
    if let Some(s) = &server {
        let _ = s.set_nodelay(true);
    }

    let ended = match &mut server {
        None => {
            // Accepted inside the hole: swallow whatever comes until the client gives up.
            let (mut cr, _cw) = client.split();
            tokio::select! {
                _ = discard(&mut cr) => false,
                _ = &mut reset => true,
            }
        }
        Some(server) => {
            let (cr, cw) = client.split();
            let (sr, sw) = server.split();
            let up = pipe(cr, sw, state.clone(), doomed.clone(), false);
            let down = pipe(sr, cw, state.clone(), doomed.clone(), true);
            tokio::select! {
                _ = up => false,
                _ = down => false,
                _ = &mut reset => true,
            }
        }
    };
    if ended {
        abort(&client, &counters);
    }
}

/// Ends the client's connection with a TCP RST, as a crashed peer or a middlebox would.
fn abort(client: &TcpStream, counters: &Counters) {
    counters.reset.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_zero_linger();
}

async fn discard(r: &mut (impl AsyncRead + Unpin)) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Copies one direction, delaying each chunk by the latency of the moment it was read, holding
/// while paused and discarding for good once the connection fell into a black hole.
/// `to_client`: the server→client direction, which never passes an end of stream on to a
/// doomed client (a partition does not close anything).
async fn pipe(
    mut r: impl AsyncRead + Unpin,
    mut w: impl AsyncWrite + Unpin,
    mut state: watch::Receiver<State>,
    doomed: Arc<AtomicBool>,
    to_client: bool,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read_doomed = doomed.clone();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let s = *state.borrow_and_update();
            if s.black_hole {
                read_doomed.store(true, Ordering::Relaxed);
            }
            if s.paused && !read_doomed.load(Ordering::Relaxed) {
                if state.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let n = tokio::select! {
                // A read error ends this direction like an end of stream.
                n = r.read(&mut buf) => n.unwrap_or_default(),
                changed = state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if n == 0 {
                return; // dropping `tx` lets the writer finish
            }
            if read_doomed.load(Ordering::Relaxed) || state.borrow().black_hole {
                read_doomed.store(true, Ordering::Relaxed);
                continue;
            }
            let due = Instant::now() + state.borrow().latency;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if doomed.load(Ordering::Relaxed) {
                continue;
            }
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
        if doomed.load(Ordering::Relaxed) && to_client {
            std::future::pending::<()>().await;
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(read, write);
}
