//! The composition root: binds the sockets, builds the shared context, starts one Arbiter
//! per core with the registry shards on them, wires the router into the transports, and
//! shuts everything down in order.
//!
//! Every Arbiter runs a receive loop on every UDP socket (a duplicate descriptor each), beside
//! its shards: whichever thread is free reads the next datagram, parses it and routes it, as
//! Kamailio's UDP workers share one socket. With one loop on the first Arbiter that thread
//! did all the receiving and parsing (74 % / 38 % of a core at 14,000 cycles/s); now the two
//! are even (45 % / 44 %), server CPU per cycle is ~10 % lower and p99 latency at that rate
//! fell from 24–320 ms to 6–9 ms. At low load a datagram's arrival wakes both Arbiters (one
//! finds nothing to read): in the noise at 2,000 cycles/s.
//!
//! Start order: refuse unsupported configuration → bind SIP sockets → shards → listeners.
//! Shutdown order: stop the listeners (no new input) → give in-flight transactions a bounded
//! moment to answer → stop the arbiters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::watch;

use crate::actors::context::{NodeCtx, PublishRules};
use crate::actors::persist::Persistence;
use crate::actors::replication::{Leave, ReplicationActor, StartLink};
use crate::actors::router::Router;
use crate::actors::shard::Shard;
use crate::admin::AdminServer;
use crate::api::NodeApi;
use crate::cluster::link::LinkConfig;
use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::presence::expires::{ExpiresRules, MinExpiresAction};
use crate::presence::package::PackageRegistry;
use crate::presence::publication::RetrieveOrder;
use crate::presence::request::IngressRules;
use crate::presence::subscription::SubscriptionRules;
use crate::transaction::Timers;
use crate::transport::{
    size_recv_buffer, spawn_tcp_listener, spawn_udp_listener, Dispatch, RecvBuffer, SipSender,
    TcpConnections, TcpLimits,
};

/// One start-up line per UDP socket on its kernel receive buffer; a warning with the sysctl
/// to raise when the kernel granted less than `[sip] udp_recv_buffer` asked for.
fn log_recv_buffer(addr: SocketAddr, r: std::io::Result<RecvBuffer>) {
    match r {
        Ok(b) if b.capped() => tracing::warn!(
            %addr,
            asked = b.asked,
            granted = b.granted,
            "udp receive buffer capped by the kernel: bursts may be dropped; raise \
             net.core.rmem_max (sysctl) to at least [sip] udp_recv_buffer"
        ),
        Ok(b) => tracing::info!(%addr, asked = b.asked, granted = b.granted, "udp receive buffer"),
        Err(e) => tracing::warn!(%addr, error = %e, "udp receive buffer not set"),
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration asks for something this build does not do yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// A SIP socket could not be bound.
    #[error("cannot bind SIP {proto} listener on {addr}: {source}")]
    Bind {
        /// udp / tcp.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The admin endpoint could not be bound or started (or a non-loopback address has no
    /// token).
    #[error("cannot start the admin endpoint on {addr}: {source}")]
    Admin {
        /// `[admin] listen`.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No listener configured.
    #[error("no usable [sip] listen address")]
    NoListener,
    /// The cluster could not be joined (certificates, QUIC bind).
    #[error("cluster: {0}")]
    Cluster(String),
    /// The store cannot be opened.
    #[error("{0}")]
    Store(#[from] crate::store::sled::OpenError),
    /// The store cannot be read back.
    #[error("restoring state from the store failed: {0}")]
    Restore(#[from] crate::store::StoreError),
}

/// A running node: its bound addresses, and the way to stop it.
pub struct NodeHandle {
    /// The bound UDP address of the first UDP listener.
    pub udp_addr: Option<SocketAddr>,
    /// The bound TCP address of the first TCP listener.
    pub tcp_addr: Option<SocketAddr>,
    /// Query and control handle (admin endpoint, embedders).
    pub api: NodeApi,
    /// The bound address of the admin endpoint (`None` when `[admin] listen = ""`).
    pub admin_addr: Option<SocketAddr>,
    /// The node's metrics (embedders may register their own counters' values here).
    pub metrics: Arc<Metrics>,
    admin: Option<AdminServer>,
    replication: Option<Addr<ReplicationActor>>,
    shutdown: watch::Sender<bool>,
    arbiters: Vec<Arbiter>,
    persist: Persistence,
}

impl NodeHandle {
    /// Stops intake, waits up to `grace` for in-flight answers, stops the worker arbiters.
    pub async fn shutdown(self, grace: Duration) {
        if let Some(a) = self.admin {
            a.stop().await;
        }
        if let Some(r) = &self.replication {
            // Leave politely: peers see the connection close at once, not after a timeout.
            let _ = r.send(Leave).await;
        }
        let _ = self.shutdown.send(true);
        tokio::time::sleep(grace.min(Duration::from_secs(5))).await;
        match self.persist.flush().await {
            Ok(()) => tracing::info!("store flushed"),
            Err(e) => tracing::error!(error = %e, "store flush at shutdown failed"),
        }
        for a in &self.arbiters {
            a.stop();
        }
        tracing::info!("node stopped");
    }
}

/// Starts a node inside the current actix System with the built-in packages.
pub async fn start(cfg: &Config) -> Result<NodeHandle, StartError> {
    start_with(cfg, PackageRegistry::with_builtin()).await
}

/// Starts a node with the given package registry (built-ins plus an embedder's own).
pub async fn start_with(cfg: &Config, packages: PackageRegistry) -> Result<NodeHandle, StartError> {
    start_with_hooks(cfg, packages, Hooks::default()).await
}

/// What an embedder can plug into a node besides packages.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called for every NOTIFY reply (`presence:notify-reply`); `true` ends the subscription.
    pub notify_reply: Option<crate::events::NotifyReplyHook>,
}

/// Starts a node with packages and hooks.
pub async fn start_with_hooks(
    cfg: &Config,
    packages: PackageRegistry,
    hooks: Hooks,
) -> Result<NodeHandle, StartError> {
    let events = crate::events::EventBus::default();
    let unsupported = cfg.unsupported();
    if !unsupported.is_empty() {
        return Err(StartError::Unsupported(unsupported.join("; ")));
    }
    // One warning per misconfiguration an operator can act on (`Config::warnings`).
    for w in cfg.warnings() {
        let (key, related) = w.keys.split_first().unwrap_or((&"", &[]));
        tracing::warn!(key = *key, related = ?related, "{}", w.message);
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let persist = crate::restore::open(cfg)?;

    // Sockets first, so that a bind error stops the start before anything runs.
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    for l in &cfg.sip.listen {
        match l.proto {
            config::Proto::Udp => {
                let s = std::net::UdpSocket::bind(l.addr)
                    .and_then(|s| s.set_nonblocking(true).map(|_| s))
                    .map_err(|source| StartError::Bind {
                        proto: "udp",
                        addr: l.addr,
                        source,
                    })?;
                log_recv_buffer(l.addr, size_recv_buffer(&s, cfg.sip.udp_recv_buffer));
                udp_sockets.push(s);
            }
            config::Proto::Tcp => {
                let s = tokio::net::TcpListener::bind(l.addr)
                    .await
                    .map_err(|source| StartError::Bind {
                        proto: "tcp",
                        addr: l.addr,
                        source,
                    })?;
                tcp_listeners.push(s);
            }
        }
    }
    let admin_listener = match cfg.admin.listen {
        Some(addr) => Some(
            crate::admin::bind(addr, cfg.admin.token.as_deref())
                .map_err(|source| StartError::Admin { addr, source })?,
        ),
        None => None,
    };
    if udp_sockets.is_empty() && tcp_listeners.is_empty() {
        return Err(StartError::NoListener);
    }
    let udp_addr = udp_sockets.first().and_then(|s| s.local_addr().ok());
    let tcp_addr = tcp_listeners.first().and_then(|s| s.local_addr().ok());
    let udp_send = match udp_sockets.first() {
        Some(s) => Some(s.try_clone().map_err(|source| StartError::Bind {
            proto: "udp",
            addr: udp_addr.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            source,
        })?),
        None => None,
    };
    let p = &cfg.presence;
    let limits = &cfg.limits;
    let metrics = Arc::new(Metrics::new());
    let tcp = TcpConnections::new(
        TcpLimits {
            max_message_size: cfg.sip.max_message_size,
            max_connections: limits.max_tcp_connections,
            idle_timeout: Duration::from_secs(limits.tcp_idle_timeout.max(1)),
            message_timeout: Duration::from_secs(limits.tcp_message_timeout.max(1)),
        },
        metrics.clone(),
    );
    let server = format!("presenced/{}", env!("CARGO_PKG_VERSION"));
    let sender = SipSender::new(udp_send, tcp.clone(), server, tcp_addr);
    let server_address = p.server_address.clone().unwrap_or_else(|| {
        // Derived from the first listen address, with the port actually bound.
        let first = cfg.sip.listen[0];
        let bound = match first.proto {
            config::Proto::Udp => udp_addr,
            config::Proto::Tcp => tcp_addr,
        };
        config::ListenAddr {
            proto: first.proto,
            addr: bound.unwrap_or(first.addr),
        }
        .sip_uri()
    });

    let timers = Timers::default();
    // The cluster: certificates are loaded now so a bad file stops the start early; the
    // link itself starts once the shards exist.
    let cluster = match cfg.cluster_enabled() {
        true => {
            crate::cluster::tls::install_crypto_provider();
            let link = LinkConfig::from_cluster(&cfg.cluster)
                .map_err(|e| StartError::Cluster(e.to_string()))?;
            let hold = Duration::from_secs(u64::from(p.max_expires));
            let grace = Duration::from_secs(cfg.cluster.takeover_grace);
            let (settled, gate) = tokio::sync::watch::channel(false);
            let actor = ReplicationActor::new(cfg.node.id.clone(), hold, grace, settled).start();
            Some((actor, link, gate))
        }
        false => None,
    };
    let ctx = Arc::new(NodeCtx {
        node_id: cfg.node.id.clone(),
        packages,
        ingress: IngressRules {
            expires: ExpiresRules {
                max: p.max_expires,
                min: p.min_expires,
                action: match p.min_expires_action {
                    config::MinExpiresAction::Reply423 => MinExpiresAction::Reply423,
                    config::MinExpiresAction::Raise => MinExpiresAction::Raise,
                },
            },
            uri_match: p.sip_uri_match,
            max_body: limits.max_body_size,
            sender_header: cfg.sip.sender_header.clone(),
            watcher_uri_header: cfg.sip.watcher_uri_header.clone(),
            priority_header: p.xavp_cfg.clone(),
        },
        publish: PublishRules {
            expires_offset: p.expires_offset,
            force_delete: p.force_delete,
            max_publications: limits.max_publications_per_presentity,
            order: retrieve_order(p),
        },
        subscription: SubscriptionRules {
            cseq_offset: p.cseq_offset,
            timeout_rm_subs: p.timeout_rm_subs,
            send_fast_notify: p.send_fast_notify,
            timers,
        },
        remove_match_full: p.subs_remove_match == config::SubsRemoveMatch::Dialog,
        delete_same_subs: p.delete_same_subs,
        max_subscriptions: limits.max_subscriptions_per_presentity,
        max_subscriptions_per_watcher: limits.max_subscriptions_per_watcher,
        watcher_subs: Default::default(),
        max_pending_notifies: limits.max_pending_notifies,
        max_presentities: limits.max_presentities,
        presentities: Default::default(),
        pending_notifies: Default::default(),
        mailbox_size: limits.mailbox_size,
        max_transactions: (limits.max_server_transactions / p.pres_shards()).max(64),
        retry_after: limits.retry_after,
        max_queue_delay: std::time::Duration::from_millis(limits.max_queue_delay_ms),
        server_address,
        timers,
        sender: sender.clone(),
        persist: persist.clone(),
        cseq_may_lag: p.subs_db_mode == config::SubsDbMode::WriteBack,
        policy: cfg.authorization.default_policy.into(),
        sphere_check: p.enable_sphere_check,
        events: events.clone(),
        notify_reply_hook: hooks.notify_reply.clone(),
        replication: cluster.as_ref().map(|(a, _, _)| a.clone()),
        cluster_settled: cluster.as_ref().map(|(_, _, g)| g.clone()),
        // DB-only: a dialog's actor stops as soon as the dialog is quiet.
        passivate_after: if persist.db_only() {
            Some(std::time::Duration::ZERO)
        } else {
            (cfg.node.passivate_after > 0)
                .then(|| std::time::Duration::from_secs(cfg.node.passivate_after))
        },
        metrics: metrics.clone(),
    });

    // One Arbiter per core; shards spread over them round-robin.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();
    let shards: Vec<Addr<Shard>> = (0..p.pres_shards())
        .map(|i| {
            let c = ctx.clone();
            Shard::start_in_arbiter(&arbiters[i % cores].handle(), move |_| Shard::new(i, c))
        })
        .collect();
    let api_shards = shards.clone();
    let api = NodeApi::new(
        shards.clone(),
        p.sip_uri_match,
        cfg.node.id.clone(),
        ctx.packages.clone(),
        cluster.as_ref().map(|(a, _, _)| a.clone()),
        events.clone(),
    )
    .with_transport(
        tcp.clone(),
        cfg.sip
            .listen
            .iter()
            .filter(|l| l.proto == crate::config::Proto::Udp)
            .count(),
    );
    let router: Arc<dyn Dispatch> = Arc::new(Router::new(
        shards,
        p.sip_uri_match,
        sender.clone(),
        limits.retry_after,
        metrics.clone(),
    ));
    tcp.set_dispatch(router.clone());
    crate::restore::restore(cfg, &persist, &api_shards)?;
    let replication = match cluster {
        Some((actor, config, _)) => {
            let start = StartLink {
                shards: api_shards.clone(),
                config,
                server_address: ctx.server_address.clone(),
            };
            let bound = actor
                .send(start)
                .await
                .map_err(|e| StartError::Cluster(e.to_string()))?
                .map_err(StartError::Cluster)?;
            tracing::info!(quic = %bound, peers = ?cfg.cluster.peers, "cluster replication started");
            Some(actor)
        }
        None => None,
    };
    spawn_store_timers(cfg, &persist, &metrics, shutdown_rx.clone());
    let admin = match admin_listener {
        Some(l) => {
            let addr = l.local_addr().ok();
            let server =
                crate::admin::serve(l, cfg.admin.token.clone(), api.clone(), metrics.clone())
                    .map_err(|source| StartError::Admin {
                        addr: addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
                        source,
                    })?;
            Some(server)
        }
        None => None,
    };

    // A receive loop per socket and Arbiter (why: the module doc).
    for s in udp_sockets {
        for arbiter in &arbiters {
            let s = s.try_clone().map_err(|source| StartError::Bind {
                proto: "udp",
                addr: s
                    .local_addr()
                    .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into()),
                source,
            })?;
            let (max, router, sender, metrics, shutdown_rx) = (
                cfg.sip.max_message_size,
                router.clone(),
                sender.clone(),
                metrics.clone(),
                shutdown_rx.clone(),
            );
            arbiter.spawn(async move {
                spawn_udp_listener(s, max, router, sender, metrics, shutdown_rx);
            });
        }
    }
    for l in tcp_listeners {
        spawn_tcp_listener(l, tcp.clone(), sender.clone(), shutdown_rx.clone());
    }
    tracing::info!(
        node = %cfg.node.id,
        udp = ?udp_addr,
        tcp = ?tcp_addr,
        server_address = %ctx.server_address,
        shards = p.pres_shards(),
        arbiters = cores,
        subs_db_mode = %p.subs_db_mode,
        publ_cache = %p.publ_cache,
        data_dir = %cfg.node.data_dir.display(),
        "presenced listening"
    );
    Ok(NodeHandle {
        udp_addr,
        tcp_addr,
        api,
        admin_addr: admin.as_ref().map(AdminServer::addr),
        metrics,
        admin,
        replication,
        shutdown,
        arbiters,
        persist,
    })
}

fn retrieve_order(p: &config::PresenceConfig) -> RetrieveOrder {
    if p.retrieve_order == config::RetrieveOrder::ReceivedTime {
        return RetrieveOrder::NewestFirst;
    }
    RetrieveOrder::By(
        p.retrieve_order_by
            .iter()
            .map(|k| (k.field, k.direction))
            .collect(),
    )
}

/// The write-back flush every `db_update_period` (whenever something is stored) and the
/// `clean_period` sweep of expired records no live actor holds.
fn spawn_store_timers(
    cfg: &Config,
    persist: &Persistence,
    metrics: &Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    if persist.store().is_none() {
        return;
    }
    if let Some(every) = cfg.presence.db_update_interval() {
        let persist = persist.clone();
        let metrics = metrics.clone();
        let mut stop = shutdown.clone();
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let started = std::time::Instant::now();
                let flushed = persist.flush().await;
                metrics.store_flush(started.elapsed());
                match flushed {
                    Ok(()) => tracing::debug!(
                        ms = started.elapsed().as_millis() as u64,
                        "periodic store flush"
                    ),
                    Err(e) => tracing::error!(error = %e, "periodic store flush failed"),
                }
            }
        });
    }
    if let Some(every) = cfg.presence.clean_interval() {
        let persist = persist.clone();
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => break,
                }
                let p = persist.clone();
                let swept = tokio::task::spawn_blocking(move || {
                    crate::restore::sweep(&p, crate::clock::now())
                })
                .await;
                match swept {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => {
                        tracing::info!(removed = n, "clean_period sweep removed expired records")
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "clean_period sweep failed"),
                    Err(e) => tracing::error!(error = %e, "clean_period sweep panicked"),
                }
            }
        });
    }
}
