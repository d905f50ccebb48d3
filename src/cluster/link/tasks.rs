//! The tasks of a link: the accept loop, one dialer per known address, and a reader and a
//! writer per connection.
//!
//! Invariants:
//! * a dialer dials only while its address's peer is not up, and waits a jittered,
//!   exponentially growing delay after each failure; it stops for good when the address turns
//!   out to be this node or the link shuts down;
//! * a session is registered (and its `Up` sent) before its reader starts, so a peer's frames
//!   never precede its `Up`; `Up`/`Down` are produced and sent under the link's gate, so they
//!   reach the handler in the order the registry changed;
//! * each session has a datagram reader, started with its frame reader (after the handshake
//!   and the `Up`), that hands every datagram to the handler attributed to the session's
//!   peer, until the connection ends;
//! * a writer drains its queue after the slot is retired, then finishes its stream and waits
//!   (bounded) for the peer to acknowledge it before closing the connection, so frames queued
//!   on a replaced connection are still delivered.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use quinn::{Connection, ConnectionError, ReadError, RecvStream, SendStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{LinkEvent, Shared};
use crate::cluster::endpoint::{self, close, close_with, Backoff, Session};
use crate::cluster::wire::{Frame, FrameDecoder};
use crate::ids::NodeId;

/// Largest chunk read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Accepts connections until the endpoint closes.
pub(super) async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.transport.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match endpoint::accept(incoming, &shared.local).await {
                Ok(session) => start_session(&shared, session, None).await,
                Err(e) => {
                    if e.is_refusal() {
                        shared.registry().count_refused();
                    }
                    warn!(%remote, error = %e, "cluster: refused incoming connection");
                }
            }
        });
    }
}

/// Starts a dialer for every address requested, until shutdown.
pub(super) async fn dial_manager(
    shared: Arc<Shared>,
    mut requests: mpsc::UnboundedReceiver<SocketAddr>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            addr = requests.recv() => match addr {
                Some(addr) => {
                    tokio::spawn(dial_loop(shared.clone(), addr));
                }
                None => return,
            },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Keeps `addr` connected: see the module doc.
pub(super) async fn dial_loop(shared: Arc<Shared>, addr: SocketAddr) {
    let t = shared.local.timing;
    let mut backoff = Backoff::new(t.backoff_min, t.backoff_max);
    let mut shutdown = shared.shutdown.subscribe();
    let mut last_error = String::new();
    loop {
        // Wait while the address's peer is up.
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let reg = shared.registry();
                if reg.retired(addr) {
                    return;
                }
                if !reg.covered(addr) {
                    break;
                }
            }
            tokio::select! {
                _ = changed => {}
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(t.idle_timeout) => {}
            }
        }
        shared.registry().set_connecting(addr, true);
        let result = shared.transport.dial(addr, &shared.local).await;
        shared.registry().set_connecting(addr, false);
        match result {
            Ok(session) => {
                backoff.reset();
                last_error.clear();
                start_session(&shared, session, Some(addr)).await;
            }
            Err(e) if e.is_self() => {
                debug!(%addr, "cluster: address is this node; not dialing it");
                shared.registry().mark_self(addr);
                return;
            }
            Err(e) => {
                if e.is_refusal() {
                    shared.registry().count_refused();
                }
                let text = e.to_string();
                if text != last_error {
                    warn!(%addr, error = %text, "cluster: cannot connect to peer");
                } else {
                    debug!(%addr, error = %text, "cluster: cannot connect to peer");
                }
                last_error = text;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Registers a checked session, reports `Up` if it is now the peer's connection, and starts
/// its reader and writer.
async fn start_session(shared: &Arc<Shared>, session: Session, dialed: Option<SocketAddr>) {
    let Session {
        conn,
        send,
        recv,
        decoder,
        hello,
        early,
        dialer,
    } = session;
    let peer = hello.node.clone();
    let advertise = hello.advertise.parse::<SocketAddr>().ok();
    let (tx, rx) = mpsc::channel(shared.queue_capacity);
    let gate = shared.gate.lock().await;
    let registered =
        shared
            .registry()
            .register(&peer, &dialer, dialed, advertise, tx, Some(conn.clone()));
    let Some(registered) = registered else {
        close_with(&conn, close::SHUTDOWN, "shutdown");
        return;
    };
    if registered.up {
        info!(peer = %peer, remote = %conn.remote_address(), dialer = %dialer, "cluster: peer up");
        let up = LinkEvent::Up {
            peer: peer.clone(),
            addr: advertise,
        };
        let _ = shared.events.send(up).await;
    } else {
        debug!(peer = %peer, "cluster: duplicate connection retired");
    }
    drop(gate);
    if let Some(addr) = registered.new_addr {
        // Through the dialer manager: spawning `dial_loop` here would make the futures
        // recursive (and their `Send` unprovable).
        let _ = shared.dial_requests.send(addr);
    }
    tokio::spawn(writer(shared.clone(), peer.clone(), send, rx, conn.clone()));
    tokio::spawn(datagrams(shared.clone(), peer.clone(), conn.clone()));
    tokio::spawn(reader(
        shared.clone(),
        peer,
        registered.slot,
        conn,
        recv,
        decoder,
        early,
    ));
}

/// Delivers a connection's frames until it ends, then unregisters it.
async fn reader(
    shared: Arc<Shared>,
    peer: NodeId,
    slot: u64,
    conn: Connection,
    mut recv: RecvStream,
    mut decoder: FrameDecoder,
    early: Vec<Frame>,
) {
    for frame in early {
        deliver(&shared, &peer, frame).await;
    }
    let reason = loop {
        let chunk: Bytes = match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => break "the peer retired this connection".to_string(),
            Err(ReadError::ConnectionLost(e)) => break describe(&e),
            Err(e) => break e.to_string(),
        };
        match decoder.feed(&chunk) {
            Ok(frames) => {
                let mut bad = None;
                for frame in frames {
                    if matches!(frame, Frame::Hello(_)) {
                        bad = Some("a second Hello".to_string());
                        break;
                    }
                    deliver(&shared, &peer, frame).await;
                }
                if let Some(reason) = bad {
                    close_with(&conn, close::PROTOCOL, &reason);
                    break reason;
                }
            }
            Err(e) => {
                let reason = format!("bad frame: {e}");
                close_with(&conn, close::PROTOCOL, &reason);
                break reason;
            }
        }
    };
    let gate = shared.gate.lock().await;
    let down = shared.registry().remove(&peer, slot);
    shared.changed.notify_waiters();
    if down {
        info!(peer = %peer, reason = %reason, "cluster: peer down");
        let event = LinkEvent::Down {
            peer: peer.clone(),
            reason,
        };
        let _ = shared.events.send(event).await;
    } else {
        debug!(peer = %peer, reason = %reason, "cluster: connection ended");
    }
    drop(gate);
}

/// Delivers a connection's datagrams until it ends.
async fn datagrams(shared: Arc<Shared>, peer: NodeId, conn: Connection) {
    while let Ok(data) = conn.read_datagram().await {
        let event = LinkEvent::Datagram {
            peer: peer.clone(),
            data,
        };
        if shared.events.send(event).await.is_err() {
            return;
        }
    }
}

/// Writes queued frames; when the queue closes, finishes the stream and closes.
async fn writer(
    shared: Arc<Shared>,
    peer: NodeId,
    mut send: SendStream,
    mut rx: mpsc::Receiver<Vec<u8>>,
    conn: Connection,
) {
    while let Some(bytes) = rx.recv().await {
        if send.write_all(&bytes).await.is_err() {
            return;
        }
        let mut n = 1;
        // Frames already queued: write them before taking the lock for the counter.
        while let Ok(bytes) = rx.try_recv() {
            if send.write_all(&bytes).await.is_err() {
                return;
            }
            n += 1;
        }
        shared.registry().frames_out(&peer, n);
    }
    let _ = send.finish();
    let bound = shared.local.timing.idle_timeout;
    let _ = tokio::time::timeout(bound, send.stopped()).await;
    close_with(&conn, close::DUPLICATE, "connection retired");
}

async fn deliver(shared: &Shared, peer: &NodeId, frame: Frame) {
    shared.registry().frame_in(peer);
    let event = LinkEvent::Frame {
        peer: peer.clone(),
        frame,
    };
    // A closed handler channel means the user is gone: frames have nowhere to go.
    let _ = shared.events.send(event).await;
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ApplicationClosed(c) => format!(
            "closed by peer: {} (code {})",
            String::from_utf8_lossy(&c.reason),
            c.error_code
        ),
        ConnectionError::TimedOut => "no packet within the idle timeout".into(),
        ConnectionError::LocallyClosed => "closed locally".into(),
        other => other.to_string(),
    }
}
