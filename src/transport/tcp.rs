//! TCP: the listener, one reader task and one writer task per connection, framing by
//! Content-Length (RFC 3261 §18.3), an idle timeout, a whole-message deadline and a
//! connection cap.
//!
//! Invariants: a connection holds at most one partial message (≤ `max_message_size`), and
//! that message is complete within `message_timeout` of its first byte or the connection is
//! closed — so a client trickling bytes (slowloris) cannot hold a connection longer than
//! that, whatever the idle timeout. Every refusal and timeout is counted in
//! `presenced_limit_hits_total`.
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

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{handle_bytes, ConnId, Dispatch, Proto, SipSender, Source};
use crate::metrics::{Limit, Metrics};
use crate::sip::{frame_length, FrameError};

/// Per-connection limits (`[limits]`, `[sip] max_message_size`).
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    /// Largest message accepted; larger gets 413 and the connection is closed.
    pub max_message_size: usize,
    /// Open connections at most; further accepts are closed at once.
    pub max_connections: usize,
    /// A connection that reads nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A message not complete this long after its first byte closes the connection.
    pub message_timeout: Duration,
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
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<ConnId, (SocketAddr, mpsc::Sender<Bytes>)>,
    by_addr: HashMap<SocketAddr, ConnId>,
}

/// Outgoing frames queued per connection before sends are dropped.
const WRITE_QUEUE: usize = 1024;

impl TcpConnections {
    /// An empty table; limit hits are counted in `metrics`.
    pub fn new(limits: TcpLimits, metrics: Arc<Metrics>) -> Self {
        TcpConnections {
            inner: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                next_id: AtomicU64::new(1),
                limits,
                dispatch: Mutex::new(None),
                metrics,
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
                self.inner.metrics.limit_hit(Limit::TcpConnections);
                tracing::warn!(%peer, limit = self.inner.limits.max_connections,
                    "TCP connection refused: connection limit reached");
                return None;
            }
            t.by_id.insert(id, (peer, tx));
            t.by_addr.insert(peer, id);
        }
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        // The writer ends when the reader has ended and the queue is written, or when one
        // write makes no progress for the idle timeout (a peer that stopped reading): a
        // blocked writer never outlives its connection by more than that.
        actix_rt::spawn(write_loop(write, rx, self.inner.limits.idle_timeout));
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
        let mut clock = MessageClock::default();
        loop {
            // Hand over every complete message already buffered.
            let mut consumed = false;
            loop {
                match frame_length(&buf, limits.max_message_size) {
                    Ok(Some(n)) => {
                        consumed = true;
                        let frame = buf.split_to(n);
                        if frame.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            continue; // keep-alive CRLFs (RFC 5626 §3.5.1)
                        }
                        handle_bytes(&frame, source, dispatch.as_ref(), &sender);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if matches!(e, FrameError::TooLarge { .. }) {
                            self.inner.metrics.limit_hit(Limit::MessageSize);
                        }
                        reject_stream(&buf, e, source, &sender);
                        return;
                    }
                }
            }
            let now = Instant::now();
            clock.after_framing(consumed, !buf.is_empty(), now);
            let wait = clock.wait(now, limits.idle_timeout, limits.message_timeout);
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(8192);
            }
            let read_once = tokio::time::timeout(wait, read.read_buf(&mut buf));
            match read_once.await {
                Ok(Ok(0)) => return,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%source, error = %e, "TCP read error");
                    return;
                }
                Err(_) => {
                    if clock.overdue(Instant::now(), limits.message_timeout) {
                        self.inner.metrics.limit_hit(Limit::TcpSlow);
                        tracing::debug!(%source, len = buf.len(),
                            "TCP message incomplete after tcp_message_timeout; closed");
                    } else {
                        self.inner.metrics.limit_hit(Limit::TcpIdle);
                        tracing::debug!(%source, "TCP connection idle; closed");
                    }
                    return;
                }
            }
        }
    }
}

/// The slow-read deadline of one connection: when the first byte of the message now being
/// received arrived. Pure (the caller passes `now`).
#[derive(Debug, Default)]
struct MessageClock {
    started: Option<Instant>,
}

impl MessageClock {
    /// After framing: `consumed` when complete messages were taken off the buffer, `pending`
    /// when bytes remain (the start of the next message, which began `now` at the latest).
    fn after_framing(&mut self, consumed: bool, pending: bool, now: Instant) {
        if !pending {
            self.started = None;
        } else if consumed || self.started.is_none() {
            self.started = Some(now);
        }
    }

    /// How long the next read may wait: the idle timeout, cut short by the message deadline.
    fn wait(&self, now: Instant, idle: Duration, message: Duration) -> Duration {
        match self.started {
            Some(t) => idle.min((t + message).saturating_duration_since(now)),
            None => idle,
        }
    }

    /// Whether the message being received is past its deadline.
    fn overdue(&self, now: Instant, message: Duration) -> bool {
        self.started
            .is_some_and(|t| now.saturating_duration_since(t) >= message)
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

async fn write_loop(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    stall: Duration,
) {
    // `None` once the connection left the table (reader ended) and the queue is empty.
    while let Some(mut bytes) = rx.recv().await {
        while bytes.has_remaining() {
            match tokio::time::timeout(stall, write.write(&bytes)).await {
                Ok(Ok(n)) if n > 0 => bytes.advance(n),
                Ok(_) => return,
                Err(_) => {
                    tracing::debug!("TCP write stalled for the idle timeout; connection closed");
                    return;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(120);
    const MSG: Duration = Duration::from_secs(10);

    #[test]
    fn message_clock_starts_at_first_byte_and_survives_trickling() {
        let t0 = Instant::now();
        let mut c = MessageClock::default();
        assert_eq!(
            c.wait(t0, IDLE, MSG),
            IDLE,
            "empty buffer: idle timeout only"
        );
        c.after_framing(false, true, t0);
        // One more byte each second: the deadline stays where the first byte put it.
        for s in 1..10 {
            let now = t0 + Duration::from_secs(s);
            c.after_framing(false, true, now);
            assert_eq!(c.wait(now, IDLE, MSG), MSG - Duration::from_secs(s));
            assert!(!c.overdue(now, MSG));
        }
        let late = t0 + MSG;
        assert_eq!(c.wait(late, IDLE, MSG), Duration::ZERO);
        assert!(c.overdue(late, MSG));
    }

    #[test]
    fn message_clock_restarts_per_message() {
        let t0 = Instant::now();
        let mut c = MessageClock::default();
        c.after_framing(false, true, t0);
        // A complete message consumed with the next one's first bytes left over.
        let t1 = t0 + Duration::from_secs(8);
        c.after_framing(true, true, t1);
        assert!(!c.overdue(t0 + MSG, MSG));
        assert_eq!(c.wait(t1, IDLE, MSG), MSG);
        // Everything consumed: no deadline at all.
        c.after_framing(true, false, t1);
        assert!(!c.overdue(t1 + IDLE, MSG));
        assert_eq!(
            c.wait(t1, Duration::from_secs(3), MSG),
            Duration::from_secs(3)
        );
    }
}
