//! TCP: the listener, one reader task and one writer task per connection, framing by
//! Content-Length (RFC 3261 §18.3), an idle timeout and a connection cap.
//!
//! [`TcpConnections`] is the table of open connections (accepted and opened by us), so that
//! responses go back on the connection a request came on and NOTIFYs reuse an open connection
//! to the watcher. It is a short critical section under a `std::sync::Mutex` (never held
//! across an await).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{handle_bytes, ConnId, Dispatch, Proto, SipSender, Source};
use crate::sip::{frame_length, FrameError};

/// Per-connection limits (`[limits]`, `[sip] max_message_size`).
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    /// Largest message accepted; larger gets 413 and the connection is closed.
    pub max_message_size: usize,
    /// Open connections at most; further accepts are closed at once.
    pub max_connections: usize,
    /// A connection with no complete message for this long is closed.
    pub idle_timeout: Duration,
}

/// The table of open TCP connections.
#[derive(Clone)]
pub struct TcpConnections {
    inner: Arc<Shared>,
}

struct Shared {
    table: Mutex<Table>,
    next_id: AtomicU64,
    limits: TcpLimits,
    dispatch: Mutex<Option<Arc<dyn Dispatch>>>,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<ConnId, (SocketAddr, mpsc::Sender<Bytes>)>,
    by_addr: HashMap<SocketAddr, ConnId>,
}

/// Outgoing frames queued per connection before sends are dropped.
const WRITE_QUEUE: usize = 1024;

impl TcpConnections {
    /// An empty table.
    pub fn new(limits: TcpLimits) -> Self {
        TcpConnections {
            inner: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                next_id: AtomicU64::new(1),
                limits,
                dispatch: Mutex::new(None),
            }),
        }
    }

    /// Sets where messages read from connections go (once, at start).
    pub fn set_dispatch(&self, dispatch: Arc<dyn Dispatch>) {
        *lock(&self.inner.dispatch) = Some(dispatch);
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        lock(&self.inner.table).by_id.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `bytes` on connection `id`; false if it is gone or its queue is full.
    pub fn send_on(&self, id: ConnId, bytes: Bytes) -> bool {
        let tx = lock(&self.inner.table)
            .by_id
            .get(&id)
            .map(|(_, tx)| tx.clone());
        tx.is_some_and(|tx| tx.try_send(bytes).is_ok())
    }

    /// Queues `bytes` on an open connection to `addr`; false if there is none.
    pub fn send_to_addr(&self, addr: SocketAddr, bytes: Bytes) -> bool {
        let tx = {
            let t = lock(&self.inner.table);
            t.by_addr
                .get(&addr)
                .and_then(|id| t.by_id.get(id))
                .map(|(_, tx)| tx.clone())
        };
        tx.is_some_and(|tx| tx.try_send(bytes).is_ok())
    }

    /// Opens a connection to `addr` and sends `bytes` on it (asynchronously).
    pub(crate) fn connect_and_send(&self, addr: SocketAddr, bytes: Bytes, sender: SipSender) {
        let this = self.clone();
        actix_rt::spawn(async move {
            let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr));
            match connect.await {
                Ok(Ok(stream)) => {
                    if let Some(id) = this.register(stream, addr, sender) {
                        this.send_on(id, bytes);
                    }
                }
                _ => tracing::info!(%addr, "TCP connect failed; request dropped"),
            }
        });
    }

    /// Starts reader and writer tasks for `stream`; `None` when the cap is reached.
    fn register(&self, stream: TcpStream, peer: SocketAddr, sender: SipSender) -> Option<ConnId> {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut t = lock(&self.inner.table);
            if t.by_id.len() >= self.inner.limits.max_connections {
                tracing::warn!(%peer, limit = self.inner.limits.max_connections,
                    "TCP connection refused: connection limit reached");
                return None;
            }
            t.by_id.insert(id, (peer, tx));
            t.by_addr.insert(peer, id);
        }
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        actix_rt::spawn(write_loop(write, rx));
        let this = self.clone();
        actix_rt::spawn(async move {
            this.read_loop(
                read,
                Source {
                    proto: Proto::Tcp,
                    addr: peer,
                    conn: Some(id),
                },
                sender,
            )
            .await;
            let mut t = lock(&this.inner.table);
            t.by_id.remove(&id);
            if t.by_addr.get(&peer) == Some(&id) {
                t.by_addr.remove(&peer);
            }
        });
        Some(id)
    }

    async fn read_loop(
        &self,
        mut read: tokio::net::tcp::OwnedReadHalf,
        source: Source,
        sender: SipSender,
    ) {
        let limits = self.inner.limits;
        let Some(dispatch) = lock(&self.inner.dispatch).clone() else {
            return;
        };
        let mut buf = BytesMut::with_capacity(8192);
        loop {
            // Hand over every complete message already buffered.
            loop {
                match frame_length(&buf, limits.max_message_size) {
                    Ok(Some(n)) => {
                        let frame = buf.split_to(n);
                        if frame.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            continue; // keep-alive CRLFs (RFC 5626 §3.5.1)
                        }
                        handle_bytes(&frame, source, dispatch.as_ref(), &sender);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        reject_stream(&buf, e, source, &sender);
                        return;
                    }
                }
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(8192);
            }
            let read_once = tokio::time::timeout(limits.idle_timeout, read.read_buf(&mut buf));
            match read_once.await {
                Ok(Ok(0)) => return,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%source, error = %e, "TCP read error");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%source, "TCP connection idle; closed");
                    return;
                }
            }
        }
    }
}

/// Answers a stream that cannot be framed (413 too large, 400 bad Content-Length) when its
/// head can be parsed well enough to build a response, then the caller closes it.
fn reject_stream(buf: &[u8], e: FrameError, source: Source, sender: &SipSender) {
    let (status, reason) = match e {
        FrameError::TooLarge { .. } => (413, "Request Entity Too Large"),
        _ => (400, "Bad Content-Length"),
    };
    tracing::info!(%source, status, "closing TCP connection: {reason}");
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(0);
    if head_end == 0 {
        return;
    }
    let echo = match crate::sip::parse(&buf[..head_end]) {
        Ok(crate::sip::Message::Request(req)) => {
            let resp = crate::sip::OutResponse::to(&req, status, reason, source.addr);
            sender.send_response(&source, resp.encode(sender.server_header()));
            return;
        }
        Err(crate::sip::ParseError::BadRequest { echo, .. }) => echo,
        _ => return,
    };
    if !echo.vias.is_empty() {
        let resp = crate::sip::OutResponse::from_echo(&echo, status, reason, source.addr);
        sender.send_response(&source, resp.encode(sender.server_header()));
    }
}

async fn write_loop(mut write: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(mut bytes) = rx.recv().await {
        while bytes.has_remaining() {
            match write.write(&bytes).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.advance(n),
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown` turns true.
pub fn spawn_tcp_listener(
    listener: TcpListener,
    conns: TcpConnections,
    sender: SipSender,
    mut shutdown: watch::Receiver<bool>,
) {
    actix_rt::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.changed() => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    conns.register(stream, peer, sender.clone());
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        tracing::debug!("tcp listener stopped");
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the table itself
    // is always consistent between statements, so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
