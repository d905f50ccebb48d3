//! The QUIC endpoint of a node and the connection handshake: dial an address or accept an
//! incoming connection, open (or accept) the one long-lived bidirectional stream a peer link
//! uses, and exchange [`Hello`] frames on it.
//!
//! Invariants:
//! * a [`Session`] exists only after mutual TLS against the cluster CA *and* a `Hello` each
//!   way: the peer's protocol has our major version, it is not this node, and its certificate
//!   names the node id its `Hello` claims. Otherwise the connection is closed with one of the
//!   [`close`] codes and a human-readable reason (the other side logs it), and an error returned;
//! * the dialer writes its `Hello` first and sends nothing else until the acceptor's `Hello`
//!   arrives; the acceptor answers only after checking the dialer's. Frames that arrive in the
//!   same chunk as the peer's `Hello` are kept in [`Session::early`], never dropped;
//! * every handshake is bounded by `handshake_timeout`; keep-alive and idle timeout come from
//!   [`Timing`], so a silent peer is detected after `idle_timeout` (QUIC has no other signal).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream, VarInt};
use rand::Rng;
use rustls::pki_types::CertificateDer;

use super::tls::{self, TlsMaterial};
use super::wire::{self, encode_frame, Frame, FrameDecoder, Hello};
use crate::ids::NodeId;

/// Application close codes on cluster connections (the reason text says more).
pub mod close {
    /// Orderly shutdown of a node.
    pub const SHUTDOWN: u32 = 0;
    /// The peer speaks another major protocol version.
    pub const VERSION: u32 = 1;
    /// The peer's certificate does not name the node its `Hello` claims.
    pub const IDENTITY: u32 = 2;
    /// The peer is this node (an address of ours in the peer list).
    pub const SELF: u32 = 3;
    /// The peer broke the protocol (undecodable or unexpected frame).
    pub const PROTOCOL: u32 = 4;
    /// A second connection between the same two nodes lost the tie-break.
    pub const DUPLICATE: u32 = 5;
}

/// Timers of the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// QUIC keep-alive interval (keeps an idle link from timing out, and probes liveness).
    pub keep_alive: Duration,
    /// A connection with no packet from the peer for this long is dead.
    pub idle_timeout: Duration,
    /// Bound on connect + TLS + `Hello` exchange.
    pub handshake_timeout: Duration,
    /// First reconnect delay (before jitter).
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Why a handshake did not produce a [`Session`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The connection could not be made or was lost (unreachable, reset, ...).
    #[error("connection failed: {0}")]
    Connect(String),
    /// A QUIC/TLS protocol error: typically a certificate refused by us or by the peer.
    #[error("TLS/QUIC refused: {0}")]
    Transport(String),
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    Timeout,
    /// We refused the peer (code from [`close`]).
    #[error("refused: {reason}")]
    Refused {
        /// The close code sent.
        code: u32,
        /// Why.
        reason: String,
    },
    /// The peer refused us.
    #[error("refused by peer: {reason} (code {code})")]
    RefusedByPeer {
        /// The close code received.
        code: u64,
        /// The peer's reason.
        reason: String,
    },
}

impl HandshakeError {
    /// True when either side refused (TLS, identity, version): worth counting and logging.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            HandshakeError::Transport(_)
                | HandshakeError::Refused { .. }
                | HandshakeError::RefusedByPeer { .. }
        )
    }

    /// True when the address turned out to be this node: stop dialing it.
    pub(crate) fn is_self(&self) -> bool {
        matches!(self, HandshakeError::Refused { code, .. } if *code == close::SELF)
            || matches!(self, HandshakeError::RefusedByPeer { code, .. } if *code == u64::from(close::SELF))
    }
}

/// An established, checked connection to a peer.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) conn: Connection,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    pub(crate) decoder: FrameDecoder,
    /// The peer's `Hello`.
    pub(crate) hello: Hello,
    /// Frames that arrived right behind the peer's `Hello`.
    pub(crate) early: Vec<Frame>,
    /// Which node opened the connection.
    pub(crate) dialer: NodeId,
}

/// What both handshake directions need.
#[derive(Clone, Debug)]
pub(crate) struct Local {
    pub(crate) hello: Hello,
    pub(crate) max_frame: u32,
    pub(crate) timing: Timing,
}

/// A bound QUIC endpoint that accepts and dials.
#[derive(Debug)]
pub(crate) struct Transport {
    endpoint: Endpoint,
    client: quinn::ClientConfig,
}

impl Transport {
    /// Binds `listen` (needs a tokio runtime context).
    pub(crate) fn bind(
        listen: SocketAddr,
        tls: &TlsMaterial,
        timing: &Timing,
    ) -> Result<Transport, String> {
        let transport = Arc::new(transport_config(timing)?);
        let mut server =
            quinn::ServerConfig::with_crypto(tls.server_crypto().map_err(|e| e.to_string())?);
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(tls.client_crypto().map_err(|e| e.to_string())?);
        client.transport_config(transport);
        let endpoint = Endpoint::server(server, listen).map_err(|e| format!("{listen}: {e}"))?;
        Ok(Transport { endpoint, client })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// The next incoming connection; `None` once closed.
    pub(crate) async fn accept(&self) -> Option<quinn::Incoming> {
        self.endpoint.accept().await
    }

    /// Closes every connection and stops accepting.
    pub(crate) fn close(&self, reason: &str) {
        self.endpoint
            .close(VarInt::from_u32(close::SHUTDOWN), reason.as_bytes());
    }

    /// Waits (bounded) until the peers have been told of the close.
    pub(crate) async fn wait_idle(&self, bound: Duration) {
        let _ = tokio::time::timeout(bound, self.endpoint.wait_idle()).await;
    }

    /// Dials `addr` and runs the handshake as the dialer.
    pub(crate) async fn dial(
        &self,
        addr: SocketAddr,
        local: &Local,
    ) -> Result<Session, HandshakeError> {
        let work = async {
            let connecting = self
                .endpoint
                .connect_with(self.client.clone(), addr, tls::DIAL_NAME)
                .map_err(|e| HandshakeError::Connect(e.to_string()))?;
            let conn = connecting.await.map_err(conn_error)?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(conn_error)?;
            send.write_all(&encode_frame(&Frame::Hello(local.hello.clone())))
                .await
                .map_err(|e| write_error(&conn, e))?;
            let mut decoder = FrameDecoder::new(local.max_frame);
            let (hello, early) = read_hello(&conn, &mut recv, &mut decoder).await?;
            check_hello(&conn, &hello, local)?;
            Ok(Session {
                dialer: local.hello.node.clone(),
                conn,
                send,
                recv,
                decoder,
                hello,
                early,
            })
        };
        bounded(local.timing.handshake_timeout, work).await
    }
}

/// Runs the handshake on an incoming connection, as the acceptor.
pub(crate) async fn accept(
    incoming: quinn::Incoming,
    local: &Local,
) -> Result<Session, HandshakeError> {
    let work = async {
        let conn = incoming.await.map_err(conn_error)?;
        let (mut send, mut recv) = conn.accept_bi().await.map_err(conn_error)?;
        let mut decoder = FrameDecoder::new(local.max_frame);
        let (hello, early) = read_hello(&conn, &mut recv, &mut decoder).await?;
        check_hello(&conn, &hello, local)?;
        send.write_all(&encode_frame(&Frame::Hello(local.hello.clone())))
            .await
            .map_err(|e| write_error(&conn, e))?;
        Ok(Session {
            dialer: hello.node.clone(),
            conn,
            send,
            recv,
            decoder,
            hello,
            early,
        })
    };
    bounded(local.timing.handshake_timeout, work).await
}

/// Closes `conn` with `code` and `reason`.
pub(crate) fn close_with(conn: &Connection, code: u32, reason: &str) {
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

/// Exponential reconnect backoff with jitter: each delay is uniform in `[d/2, d]`, `d`
/// doubling from `min` up to `max`.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The next delay to wait.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        let half = d / 2;
        let span = (d - half).as_micros() as u64;
        half + Duration::from_micros(rand::rng().random_range(0..=span))
    }

    /// Back to `min` (after a successful connection).
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

fn transport_config(timing: &Timing) -> Result<quinn::TransportConfig, String> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(timing.keep_alive));
    let idle = quinn::IdleTimeout::try_from(timing.idle_timeout).map_err(|e| e.to_string())?;
    t.max_idle_timeout(Some(idle));
    // One bidirectional stream per connection is all a link uses.
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.max_concurrent_bidi_streams(VarInt::from_u32(1));
    // Unreliable datagrams carry the membership protocol (`super::members`): probes are never
    // queued behind replication batches on the stream.
    t.datagram_receive_buffer_size(Some(256 * 1024));
    t.datagram_send_buffer_size(256 * 1024);
    Ok(t)
}

async fn bounded<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, HandshakeError>>,
) -> Result<T, HandshakeError> {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

/// Reads until the first frame, which must be a `Hello`.
async fn read_hello(
    conn: &Connection,
    recv: &mut RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<(Hello, Vec<Frame>), HandshakeError> {
    loop {
        let chunk = match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Err(HandshakeError::Connect("stream ended before Hello".into())),
            Err(quinn::ReadError::ConnectionLost(e)) => return Err(conn_error(e)),
            Err(e) => return Err(HandshakeError::Connect(e.to_string())),
        };
        let mut frames = match decoder.feed(&chunk.bytes) {
            Ok(frames) => frames,
            Err(e) => {
                let reason = format!("bad Hello ({e}); another protocol version?");
                return Err(refuse(conn, close::PROTOCOL, reason));
            }
        };
        if frames.is_empty() {
            continue;
        }
        return match frames.remove(0) {
            Frame::Hello(hello) => Ok((hello, frames)),
            _ => Err(refuse(
                conn,
                close::PROTOCOL,
                "first frame is not Hello".into(),
            )),
        };
    }
}

/// The checks of the module doc, closing `conn` on failure.
fn check_hello(conn: &Connection, hello: &Hello, local: &Local) -> Result<(), HandshakeError> {
    let ours = local.hello.protocol;
    if !wire::compatible(ours, hello.protocol) {
        let reason = format!(
            "protocol version mismatch: we speak {}.{}, node {:?} speaks {}.{}",
            ours >> 8,
            ours & 0xff,
            hello.node.as_str(),
            hello.protocol >> 8,
            hello.protocol & 0xff
        );
        return Err(refuse(conn, close::VERSION, reason));
    }
    if hello.node == local.hello.node {
        return Err(refuse(conn, close::SELF, "connected to itself".into()));
    }
    let named = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| {
            chain
                .first()
                .map(|c| tls::cert_names_node(c, hello.node.as_str()))
        })
        .unwrap_or(false);
    if !named {
        let reason = format!(
            "certificate does not name node {:?} claimed in Hello",
            hello.node.as_str()
        );
        return Err(refuse(conn, close::IDENTITY, reason));
    }
    Ok(())
}

fn refuse(conn: &Connection, code: u32, reason: String) -> HandshakeError {
    close_with(conn, code, &reason);
    HandshakeError::Refused { code, reason }
}

fn conn_error(e: ConnectionError) -> HandshakeError {
    match e {
        ConnectionError::ApplicationClosed(c) => HandshakeError::RefusedByPeer {
            code: c.error_code.into_inner(),
            reason: String::from_utf8_lossy(&c.reason)
                .chars()
                .take(200)
                .collect(),
        },
        ConnectionError::TimedOut => HandshakeError::Timeout,
        ConnectionError::TransportError(e) => HandshakeError::Transport(e.to_string()),
        ConnectionError::ConnectionClosed(c) => HandshakeError::Transport(c.to_string()),
        other => HandshakeError::Connect(other.to_string()),
    }
}

fn write_error(conn: &Connection, e: quinn::WriteError) -> HandshakeError {
    match conn.close_reason() {
        Some(reason) => conn_error(reason),
        None => HandshakeError::Connect(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(Duration::from_secs(5));
        }
        // Capped at the maximum.
        assert!(b.next_delay() >= Duration::from_millis(2500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn self_refusals_are_recognised() {
        let ours = HandshakeError::Refused {
            code: close::SELF,
            reason: String::new(),
        };
        let theirs = HandshakeError::RefusedByPeer {
            code: u64::from(close::SELF),
            reason: String::new(),
        };
        let other = HandshakeError::RefusedByPeer {
            code: u64::from(close::VERSION),
            reason: String::new(),
        };
        assert!(ours.is_self() && theirs.is_self() && !other.is_self());
    }
}
