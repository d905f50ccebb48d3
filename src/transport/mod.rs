//! Sockets: UDP datagrams and TCP streams framed by Content-Length. No SIP semantics beyond
//! framing and parsing; every parsed message is handed to the [`Dispatch`] (which picks the
//! shard actor that owns it).
//!
//! Outbound traffic goes through [`SipSender`], a cheap clonable handle that any actor may use
//! from any thread: UDP sends never block (a full socket buffer drops the datagram with a log
//! line; retransmission timers cover it), TCP sends go to the connection's bounded writer
//! queue.

mod sender;
mod tcp;
mod udp;

use std::fmt;
use std::net::SocketAddr;

pub use sender::{SipSender, Target};
pub use tcp::{spawn_tcp_listener, TcpConnections, TcpLimits};
pub use udp::{size_recv_buffer, spawn_udp_listener, ReadableUdp, RecvBuffer};

use crate::sip::Message;

/// Transport protocol of a listener or a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// Unreliable datagrams (retransmission timers apply).
    Udp,
    /// Reliable stream.
    Tcp,
}

impl Proto {
    /// Upper-case name as used in Via (`UDP`, `TCP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }

    /// Lower-case name (`udp`, `tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }

    /// Whether the transport is reliable (no retransmissions).
    pub fn reliable(self) -> bool {
        self == Proto::Tcp
    }
}

/// Identifies one accepted or opened TCP connection.
pub type ConnId = u64;

/// Where a message came from, and so where its responses go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// Transport it arrived on.
    pub proto: Proto,
    /// Peer address (packet source).
    pub addr: SocketAddr,
    /// The TCP connection, if any.
    pub conn: Option<ConnId>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto.as_str(), self.addr)
    }
}

/// A parsed message and where it came from.
#[derive(Debug)]
pub struct Inbound {
    /// The message.
    pub msg: Message,
    /// Its source.
    pub source: Source,
    /// When it was read from the socket (the shard refuses requests that waited too long).
    pub received: std::time::Instant,
}

/// Receives every parsed inbound message (implemented by the actor layer's router).
pub trait Dispatch: Send + Sync + 'static {
    /// Hands one message over. Must not block.
    fn dispatch(&self, inbound: Inbound);
}

/// Parses one message and hands it to `dispatch`; answers what cannot be parsed but can be
/// answered (400, 505) and drops the rest with a debug line. Shared by UDP and TCP.
pub(crate) fn handle_bytes(
    buf: &[u8],
    source: Source,
    dispatch: &dyn Dispatch,
    sender: &SipSender,
) {
    match crate::sip::parse(buf) {
        Ok(msg) => dispatch.dispatch(Inbound {
            msg,
            source,
            received: std::time::Instant::now(),
        }),
        Err(crate::sip::ParseError::NotSip) => {
            tracing::debug!(%source, len = buf.len(), "dropped: not a SIP message");
        }
        Err(crate::sip::ParseError::BadResponse) => {
            tracing::debug!(%source, "dropped: malformed response");
        }
        Err(crate::sip::ParseError::BadRequest { reason, echo }) => {
            if echo.vias.is_empty() {
                tracing::debug!(%source, %reason, "dropped: malformed request without Via");
                return;
            }
            let status = if reason.starts_with("Unsupported SIP version") {
                505
            } else {
                400
            };
            tracing::debug!(%source, %reason, status, "rejected malformed request");
            let resp = crate::sip::OutResponse::from_echo(&echo, status, &reason, source.addr);
            sender.send_response(&source, resp.encode(sender.server_header()));
        }
    }
}
