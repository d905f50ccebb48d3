//! The UDP listener: a receive loop per socket and Arbiter, each reading its own duplicate of
//! the socket's descriptor (see [`crate::node`] for why every Arbiter reads). Oversized
//! datagrams are dropped with a log line (SPEC §2 `max_message_size`) and counted
//! (`presenced_limit_hits_total{limit="message_size"}`); everything else goes through
//! [`super::handle_bytes`]. Also sizes the socket's kernel receive buffer (`[sip]
//! udp_recv_buffer`).
//!
//! The socket is registered with the reactor for readability only. A socket registered for
//! writability too (as `tokio::net::UdpSocket` is) gets an edge-triggered `EPOLLOUT` each
//! time a peer consumes one of the datagrams it sent (the kernel signals write space when
//! the datagram's buffer is freed), which wakes a sleeping Arbiter for nothing: about one
//! spurious wake-up per answer under load. Sends never wait (UDP, `send_to` on a
//! non-blocking socket), so nothing needs write readiness.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

use super::{handle_bytes, Dispatch, Proto, SipSender, Source};
use crate::metrics::{Limit, Metrics};

/// The kernel receive buffer of a UDP socket after asking for `want` bytes (`SO_RCVBUF`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvBuffer {
    /// Bytes asked for; 0 = the kernel's default was kept.
    pub asked: usize,
    /// What the kernel reports (Linux reports twice the bookkeeping size it grants).
    pub granted: usize,
}

impl RecvBuffer {
    /// The kernel granted less than asked (on Linux: capped by `net.core.rmem_max`).
    pub fn capped(&self) -> bool {
        self.granted < self.asked
    }
}

/// Asks the kernel for a receive buffer of `want` bytes on `socket` (0 = keep its default)
/// and reads back what it granted. Linux caps the request at `net.core.rmem_max` silently.
pub fn size_recv_buffer(socket: &std::net::UdpSocket, want: usize) -> std::io::Result<RecvBuffer> {
    let sock = socket2::SockRef::from(socket);
    if want > 0 {
        sock.set_recv_buffer_size(want)?;
    }
    Ok(RecvBuffer {
        asked: want,
        granted: sock.recv_buffer_size()?,
    })
}

/// Spawns the receive loop of the non-blocking `socket` on the current arbiter (which must
/// run a Tokio reactor). It ends when `shutdown` turns true or the socket cannot be
/// registered. Oversized datagrams are counted in `metrics`.
pub fn spawn_udp_listener(
    socket: UdpSocket,
    max_message_size: usize,
    dispatch: Arc<dyn Dispatch>,
    sender: SipSender,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    actix_rt::spawn(async move {
        let local = socket.local_addr().ok();
        let socket = match ReadableUdp::register(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(addr = ?local, error = %e, "UDP listener not started");
                return;
            }
        };
        // One byte more than allowed, so an oversized datagram is recognised as such.
        let mut buf = vec![0u8; max_message_size + 1];
        loop {
            let received = tokio::select! {
                r = socket.recv_from(&mut buf) => r,
                _ = shutdown.changed() => break,
            };
            let (n, addr) = match received {
                Ok(x) => x,
                Err(e) => {
                    // ICMP port unreachable from an earlier send shows up here on some
                    // platforms; it is not fatal for the socket.
                    tracing::debug!(error = %e, "udp recv error");
                    continue;
                }
            };
            let source = Source {
                proto: Proto::Udp,
                addr,
                conn: None,
            };
            if n > max_message_size {
                metrics.limit_hit(Limit::MessageSize);
                tracing::info!(%source, limit = max_message_size, "dropped oversized UDP datagram");
                continue;
            }
            handle_bytes(&buf[..n], source, dispatch.as_ref(), &sender);
        }
        tracing::debug!("udp listener stopped");
    });
}

/// A non-blocking UDP socket registered with the current Tokio reactor for readability only
/// (see the module comment for why not for writability). Used by the listener and by the
/// load tool, which shares the machine with the server it measures.
pub struct ReadableUdp(AsyncFd<UdpSocket>);

impl ReadableUdp {
    /// Registers the non-blocking `socket`; must be called inside a Tokio runtime.
    pub fn register(socket: UdpSocket) -> std::io::Result<ReadableUdp> {
        // SAFETY: the `AsyncFd` owns the socket, so its descriptor stays open and the same
        // for the whole life of the registration (what `register_with_interest` requires).
        let registered = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) };
        registered.map(ReadableUdp).map_err(|e| e.into_parts().1)
    }

    /// The socket itself (for `send_to`, which never waits on UDP, and `local_addr`).
    pub fn get_ref(&self) -> &UdpSocket {
        self.0.get_ref()
    }

    /// The next datagram, waiting for readability when none is queued.
    pub async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        loop {
            let mut ready = self.0.readable().await?;
            match ready.try_io(|s| s.get_ref().recv_from(buf)) {
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => continue,
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_recv_buffer;

    fn rmem_max() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(212_992)
    }

    fn socket() -> std::net::UdpSocket {
        std::net::UdpSocket::bind("127.0.0.1:0").expect("bind")
    }

    #[test]
    fn a_buffer_within_the_kernel_limit_is_granted() {
        let before = size_recv_buffer(&socket(), 0).expect("read");
        assert!(!before.capped());
        let want = rmem_max().min(1 << 20);
        let got = size_recv_buffer(&socket(), want).expect("set");
        assert!(!got.capped(), "{got:?}");
        assert!(got.granted >= want, "{got:?}");
    }

    #[test]
    fn a_buffer_above_the_kernel_limit_is_reported_as_capped() {
        let got = size_recv_buffer(&socket(), rmem_max() * 4).expect("set");
        assert!(got.capped(), "{got:?}");
    }
}
