//! Peer links: the async API the replication actor uses to talk to the other nodes.
//!
//! [`Link::start`] binds the QUIC endpoint, accepts peers and dials every seed (and every
//! address later learned from a peer's `Hello` or given to [`LinkHandle::add_peer`]). Each
//! peer gets one long-lived connection with one bidirectional stream of length-prefixed
//! [`Frame`]s (see [`super::endpoint`] for the handshake and its checks).
//!
//! Guarantees to the user of the handle:
//! * events arrive on the `handler` channel: [`LinkEvent::Up`] when a connection to a peer
//!   becomes the one in use (also after a reconnect, or when a duplicate connection replaces
//!   another — treat every `Up` as "resynchronise with this peer"), [`LinkEvent::Frame`] for
//!   each frame in the order the peer sent it on that connection, and [`LinkEvent::Down`] when
//!   the peer's last connection is gone (closed, refused, or silent for the idle timeout,
//!   3 s by default). `Up`/`Down` are delivered in the order they happened;
//! * [`LinkEvent::Datagram`] carries a QUIC unreliable datagram (the membership protocol's
//!   packets, [`super::members`]) read from a connection that passed the mutual-TLS + `Hello`
//!   handshake, attributed to that peer; [`LinkHandle::send_datagram`] sends one on the peer's
//!   connection in use, and fails at once when there is none (the packet is lost);
//! * [`LinkHandle::send`] and [`LinkHandle::broadcast`] never wait: each peer has a bounded
//!   queue, and a frame that does not fit, or is for a peer that is not up, is dropped and
//!   counted ([`PeerInfo::dropped`]). Frames queued before a `Down` may be lost: anti-entropy
//!   on the next `Up` repairs that;
//! * reconnection is automatic, with exponential backoff and jitter (100 ms → 5 s);
//! * the link runs on tokio tasks of the runtime that called `start` (inside actix, the
//!   arbiter's runtime). It stops when [`LinkHandle::shutdown`] is called or the last handle
//!   is dropped.

mod registry;
mod tasks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use self::registry::Registry;
use super::endpoint::{Local, Timing, Transport};
use super::tls::{TlsError, TlsMaterial};
use super::wire::{self, encode_frame, Frame, Hello};
use crate::clock::Timestamp;
use crate::config::ClusterConfig;
use crate::ids::NodeId;

/// How a link runs.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// The UDP address to bind (`[cluster] listen`; port 0 picks one).
    pub listen: SocketAddr,
    /// The address peers are told to dial; `None` = the bound address.
    pub advertise: Option<SocketAddr>,
    /// Addresses to dial at start (`[cluster] peers`).
    pub seeds: Vec<SocketAddr>,
    /// The CA, certificate and key.
    pub tls: TlsMaterial,
    /// Keep-alive, idle timeout, handshake bound, reconnect backoff.
    pub timing: Timing,
    /// Frames queued per peer before new ones are dropped.
    pub queue_capacity: usize,
    /// Largest frame accepted from (and sent to) a peer, in bytes.
    pub max_frame: u32,
    /// Our protocol version (always [`wire::PROTOCOL`] outside tests).
    pub(crate) protocol: u16,
}

impl LinkConfig {
    /// A configuration with the default timing and limits.
    pub fn new(listen: SocketAddr, tls: TlsMaterial) -> Self {
        LinkConfig {
            listen,
            advertise: None,
            seeds: Vec::new(),
            tls,
            timing: Timing::default(),
            queue_capacity: 1024,
            max_frame: wire::DEFAULT_MAX_FRAME,
            protocol: wire::PROTOCOL,
        }
    }

    /// From the `[cluster]` table: loads the PEM files it names.
    pub fn from_cluster(c: &ClusterConfig) -> Result<Self, LinkError> {
        let missing = |k: &str| LinkError::Config(format!("[cluster] {k} is not set"));
        let tls = TlsMaterial::load(
            c.ca_cert.as_deref().ok_or_else(|| missing("ca_cert"))?,
            c.cert.as_deref().ok_or_else(|| missing("cert"))?,
            c.key.as_deref().ok_or_else(|| missing("key"))?,
        )?;
        let mut cfg = LinkConfig::new(c.listen, tls);
        cfg.advertise = c.advertise;
        cfg.seeds = c.peers.clone();
        Ok(cfg)
    }
}

/// What the link tells its user.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkEvent {
    /// A connection to `peer` is now in use (resynchronise with it).
    Up {
        /// The peer.
        peer: NodeId,
        /// The address it advertises.
        addr: Option<SocketAddr>,
    },
    /// `peer` has no connection any more.
    Down {
        /// The peer.
        peer: NodeId,
        /// Why the last connection ended.
        reason: String,
    },
    /// A frame from `peer` (never a `Hello`: the link consumes those).
    Frame {
        /// The sender.
        peer: NodeId,
        /// The frame.
        frame: Frame,
    },
    /// An unreliable datagram from `peer` (a membership packet).
    Datagram {
        /// The sender, as its connection authenticated it.
        peer: NodeId,
        /// The datagram's bytes.
        data: bytes::Bytes,
    },
}

/// A peer's connection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Connected and handshaken.
    Up,
    /// Not connected; a dial is in progress.
    Connecting,
    /// Not connected; waiting to retry (or waiting for the peer to dial).
    Down,
}

/// One peer as shown by `/debug/cluster`.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerInfo {
    /// Its node id; `None` for a seed address that never answered.
    pub id: Option<NodeId>,
    /// Its advertised (or dialed) address.
    pub addr: Option<SocketAddr>,
    /// Up, connecting or down.
    pub state: PeerState,
    /// QUIC's smoothed round-trip estimate, while up.
    pub rtt: Option<Duration>,
    /// Wall time of the last handshake or frame received.
    pub last_contact: Option<Timestamp>,
    /// Frames received from it.
    pub frames_in: u64,
    /// Frames written to it.
    pub frames_out: u64,
    /// Frames for it dropped (queue full or not connected).
    pub dropped: u64,
}

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer is not up (dropped and counted).
    #[error("peer not connected")]
    NotConnected,
    /// The peer's queue is full (dropped and counted).
    #[error("peer queue full")]
    QueueFull,
    /// The encoded frame exceeds the frame limit (not sent to anyone).
    #[error("frame too large")]
    TooLarge,
}

/// Why a link could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Loading the TLS material failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A configuration value is missing or unusable.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// Not called inside a tokio runtime (quinn needs one).
    #[error("the cluster link must start inside a tokio/actix runtime")]
    NoRuntime,
    /// The endpoint could not be bound.
    #[error("cannot bind the cluster endpoint: {0}")]
    Bind(String),
}

/// Starts links.
#[derive(Debug)]
pub struct Link;

impl Link {
    /// Binds `config.listen`, starts accepting and dialing, and returns the handle. Events go
    /// to `handler` (its capacity is the user's choice; a full channel slows the peers' reads,
    /// never drops).
    pub fn start(
        config: LinkConfig,
        node_id: NodeId,
        handler: mpsc::Sender<LinkEvent>,
    ) -> Result<LinkHandle, LinkError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(LinkError::NoRuntime);
        }
        let transport =
            Transport::bind(config.listen, &config.tls, &config.timing).map_err(LinkError::Bind)?;
        let local_addr = transport
            .local_addr()
            .ok_or_else(|| LinkError::Bind("no local address".into()))?;
        let advertise = config.advertise.unwrap_or(local_addr);
        let (shutdown, _) = watch::channel(false);
        let (dial_requests, dial_rx) = mpsc::unbounded_channel();
        let mut registry = Registry::new(node_id.clone());
        registry.mark_self(local_addr);
        registry.mark_self(advertise);
        let shared = Arc::new(Shared {
            local: Local {
                hello: Hello {
                    protocol: config.protocol,
                    node: node_id,
                    advertise: advertise.to_string(),
                },
                max_frame: config.max_frame,
                timing: config.timing,
            },
            transport,
            local_addr,
            registry: Mutex::new(registry),
            gate: tokio::sync::Mutex::new(()),
            events: handler,
            changed: Notify::new(),
            shutdown,
            dial_requests,
            queue_capacity: config.queue_capacity.max(1),
        });
        tokio::spawn(tasks::accept_loop(shared.clone()));
        tokio::spawn(tasks::dial_manager(shared.clone(), dial_rx));
        let handle = LinkHandle {
            guard: Arc::new(Guard(shared.clone())),
            shared,
        };
        for seed in config.seeds {
            handle.add_peer(seed);
        }
        Ok(handle)
    }
}

/// The state the link's tasks share.
#[derive(Debug)]
struct Shared {
    local: Local,
    transport: Transport,
    local_addr: SocketAddr,
    registry: Mutex<Registry>,
    /// Serialises registry changes that produce `Up`/`Down`, with their sending.
    gate: tokio::sync::Mutex<()>,
    events: mpsc::Sender<LinkEvent>,
    /// Signalled when a peer goes down (wakes dialers of covered addresses).
    changed: Notify,
    shutdown: watch::Sender<bool>,
    /// Addresses to start a dialer for (served by `tasks::dial_manager`).
    dial_requests: mpsc::UnboundedSender<SocketAddr>,
    queue_capacity: usize,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock would be a bug in `Registry` (it does no I/O);
        // the data is counters and senders, still usable, so take it back.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn me(&self) -> &NodeId {
        &self.local.hello.node
    }

    fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.registry().close();
        self.transport.close("shutdown");
        self.changed.notify_waiters();
    }
}

/// Stops the link when the last [`LinkHandle`] goes.
#[derive(Debug)]
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.begin_shutdown();
    }
}

/// A handle on a running link; cheap to clone.
#[derive(Clone, Debug)]
pub struct LinkHandle {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
}

impl LinkHandle {
    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        self.shared.me()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Queues `frame` for `peer`; never waits (see [`SendError`]).
    pub fn send(&self, peer: &NodeId, frame: &Frame) -> Result<(), SendError> {
        let bytes = self.encode(frame)?;
        self.shared.registry().send(peer, bytes)
    }

    /// Queues `frame` for every peer that is up; returns how many accepted it.
    pub fn broadcast(&self, frame: &Frame) -> usize {
        let Ok(bytes) = self.encode(frame) else {
            return 0;
        };
        let mut reg = self.shared.registry();
        let peers = reg.up_peers();
        peers
            .iter()
            .filter(|p| reg.send(p, bytes.clone()).is_ok())
            .count()
    }

    /// Sends an unreliable datagram to `peer` on its connection in use; never waits. Lost
    /// when the peer is not up (or the network drops it).
    pub fn send_datagram(&self, peer: &NodeId, data: bytes::Bytes) -> Result<(), SendError> {
        let conn = self
            .shared
            .registry()
            .connection(peer)
            .ok_or(SendError::NotConnected)?;
        conn.send_datagram(data).map_err(|e| match e {
            quinn::SendDatagramError::TooLarge => SendError::TooLarge,
            _ => SendError::NotConnected,
        })
    }

    /// The address peers are told to dial (`[cluster] advertise`, else the bound address).
    pub fn advertised(&self) -> SocketAddr {
        self.shared
            .local
            .hello
            .advertise
            .parse()
            .unwrap_or(self.shared.local_addr)
    }

    /// Every known peer (and seed address not yet answered), for `/debug/cluster`.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.registry().info()
    }

    /// TLS or handshake refusals so far (both directions), for metrics.
    pub fn refused(&self) -> u64 {
        self.shared.registry().refused()
    }

    /// Dials `addr` (and keeps reconnecting to it) unless it is known already: for members
    /// learned by gossip.
    pub fn add_peer(&self, addr: SocketAddr) {
        if self.shared.registry().add_addr(addr) {
            let _ = self.shared.dial_requests.send(addr);
        }
    }

    /// Closes every connection (peers see an orderly close at once) and stops the tasks.
    pub async fn shutdown(self) {
        self.shared.begin_shutdown();
        self.shared
            .transport
            .wait_idle(Duration::from_secs(1))
            .await;
        drop(self.guard);
    }

    fn encode(&self, frame: &Frame) -> Result<Vec<u8>, SendError> {
        let bytes = encode_frame(frame);
        if bytes.len() > self.shared.local.max_frame as usize + 4 {
            return Err(SendError::TooLarge);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests;
