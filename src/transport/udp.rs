//! The UDP listener: one receive loop per socket. Oversized datagrams are dropped with a log
//! line (SPEC §2 `max_message_size`) and counted (`presenced_limit_hits_total{limit=
//! "message_size"}`); everything else goes through [`super::handle_bytes`].

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{handle_bytes, Dispatch, Proto, SipSender, Source};
use crate::metrics::{Limit, Metrics};

/// Spawns the receive loop of `socket` on the current arbiter. It ends when `shutdown` turns
/// true or the socket fails. Oversized datagrams are counted in `metrics`.
pub fn spawn_udp_listener(
    socket: UdpSocket,
    max_message_size: usize,
    dispatch: Arc<dyn Dispatch>,
    sender: SipSender,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    actix_rt::spawn(async move {
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
