//! Real QUIC on 127.0.0.1 between links in one process: handshake, ordered delivery both
//! ways, refusals (foreign CA, no client certificate, wrong identity, other major version),
//! failure detection and reconnection. Every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;
use crate::cluster::certs;

const WAIT: Duration = Duration::from_secs(10);

fn cert_dir(ids: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    certs::create_ca(dir.path()).expect("CA");
    for id in ids {
        certs::create_node(dir.path(), id).expect("node cert");
    }
    dir
}

fn material(dir: &Path, id: &str) -> TlsMaterial {
    TlsMaterial::load(
        &dir.join("ca.crt"),
        &dir.join(format!("{id}.crt")),
        &dir.join(format!("{id}.key")),
    )
    .expect("TLS material")
}

fn config(dir: &Path, cert_id: &str, listen: SocketAddr, seeds: &[SocketAddr]) -> LinkConfig {
    let mut c = LinkConfig::new(listen, material(dir, cert_id));
    c.seeds = seeds.to_vec();
    c
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

fn start(cfg: LinkConfig, id: &str) -> (LinkHandle, mpsc::Receiver<LinkEvent>) {
    let (tx, rx) = mpsc::channel(4096);
    let handle = Link::start(cfg, NodeId::new(id), tx).expect("link starts");
    (handle, rx)
}

/// Waits for `Up` from `peer`, skipping other events.
async fn expect_up(rx: &mut mpsc::Receiver<LinkEvent>, peer: &str) {
    let wait = async {
        while let Some(ev) = rx.recv().await {
            if matches!(&ev, LinkEvent::Up { peer: p, .. } if p.as_str() == peer) {
                return;
            }
        }
        panic!("event channel closed");
    };
    timeout(WAIT, wait).await.expect("peer up in time");
}

/// Waits for `Down` of `peer`, skipping other events; returns the reason.
async fn expect_down(rx: &mut mpsc::Receiver<LinkEvent>, peer: &str, within: Duration) -> String {
    let wait = async {
        while let Some(ev) = rx.recv().await {
            if let LinkEvent::Down { peer: p, reason } = ev {
                if p.as_str() == peer {
                    return reason;
                }
            }
        }
        panic!("event channel closed");
    };
    timeout(within, wait).await.expect("peer down in time")
}

/// Asserts that nothing at all arrives for `quiet`.
async fn expect_nothing(rx: &mut mpsc::Receiver<LinkEvent>, quiet: Duration) {
    if let Ok(Some(ev)) = timeout(quiet, rx.recv()).await {
        panic!("unexpected event {ev:?}");
    }
}

/// The `Ping` nonces received from `peer`, `n` of them.
async fn pings_from(rx: &mut mpsc::Receiver<LinkEvent>, peer: &str, n: usize) -> Vec<u64> {
    let wait = async {
        let mut got = Vec::new();
        while got.len() < n {
            match rx.recv().await.expect("event channel open") {
                LinkEvent::Frame {
                    peer: p,
                    frame: Frame::Ping { nonce },
                } if p.as_str() == peer => got.push(nonce),
                other => panic!("unexpected event {other:?}"),
            }
        }
        got
    };
    timeout(WAIT, wait).await.expect("frames in time")
}

/// Captures this thread's log lines (the tests run on a current-thread runtime).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log sink").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}

fn logs(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().expect("log sink")).into_owned()
}

#[tokio::test]
async fn two_links_deliver_frames_both_ways_in_order() {
    let dir = cert_dir(&["node-1", "node-2"]);
    let (a, mut a_rx) = start(config(dir.path(), "node-1", any_port(), &[]), "node-1");
    let seeds = [a.local_addr()];
    let (b, mut b_rx) = start(config(dir.path(), "node-2", any_port(), &seeds), "node-2");
    expect_up(&mut a_rx, "node-2").await;
    expect_up(&mut b_rx, "node-1").await;
    let (n1, n2) = (NodeId::new("node-1"), NodeId::new("node-2"));
    for nonce in 0..200 {
        a.send(&n2, &Frame::Ping { nonce }).expect("queued");
        b.send(
            &n1,
            &Frame::Ping {
                nonce: 1000 + nonce,
            },
        )
        .expect("queued");
    }
    assert_eq!(
        pings_from(&mut b_rx, "node-1", 200).await,
        (0..200).collect::<Vec<_>>()
    );
    assert_eq!(
        pings_from(&mut a_rx, "node-2", 200).await,
        (1000..1200).collect::<Vec<_>>()
    );
    assert_eq!(b.broadcast(&Frame::Ping { nonce: 7 }), 1);
    assert_eq!(pings_from(&mut a_rx, "node-2", 1).await, vec![7]);
    let info = a.peers();
    assert_eq!(info.len(), 1, "{info:?}");
    let p = &info[0];
    assert_eq!((p.id.as_ref(), p.state), (Some(&n2), PeerState::Up));
    assert_eq!((p.frames_in, p.frames_out, p.dropped), (201, 200, 0));
    assert_eq!(p.addr, Some(b.local_addr()));
    assert!(p.rtt.is_some() && p.last_contact.is_some());
    // Unknown peers are dropped and counted, never block.
    assert_eq!(
        a.send(&NodeId::new("node-9"), &Frame::Ping { nonce: 0 }),
        Err(SendError::NotConnected)
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn simultaneous_dials_settle_on_one_connection() {
    let dir = cert_dir(&["node-1", "node-2"]);
    // Reserve two ports, then let each node dial the other at once.
    let (pa, pb) = {
        let s1 = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let s2 = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        (
            s1.local_addr().expect("addr"),
            s2.local_addr().expect("addr"),
        )
    };
    let (a, mut a_rx) = start(config(dir.path(), "node-1", pa, &[pb]), "node-1");
    let (b, mut b_rx) = start(config(dir.path(), "node-2", pb, &[pa]), "node-2");
    expect_up(&mut a_rx, "node-2").await;
    expect_up(&mut b_rx, "node-1").await;
    // Give a duplicate time to be retired, then check the link still carries frames in
    // order and neither side reported the peer down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for nonce in 0..50 {
        a.send(&NodeId::new("node-2"), &Frame::Ping { nonce })
            .expect("queued");
    }
    let got = timeout(WAIT, async {
        let mut got = Vec::new();
        while got.len() < 50 {
            match b_rx.recv().await.expect("open") {
                LinkEvent::Frame {
                    frame: Frame::Ping { nonce },
                    ..
                } => got.push(nonce),
                LinkEvent::Up { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    })
    .await
    .expect("frames in time");
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    assert!(a_rx
        .try_recv()
        .map_or(true, |e| !matches!(e, LinkEvent::Down { .. })));
    assert_eq!(
        a.peers()
            .iter()
            .filter(|p| p.state == PeerState::Up)
            .count(),
        1
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn foreign_ca_is_refused_and_logged_and_nothing_is_delivered() {
    let (logs_buf, _guard) = capture_logs();
    let dir = cert_dir(&["node-1"]);
    let rogue_dir = cert_dir(&["node-2"]);
    let (a, mut a_rx) = start(config(dir.path(), "node-1", any_port(), &[]), "node-1");
    // A rogue link with a certificate from another CA dials node-1 ...
    let cfg = config(rogue_dir.path(), "node-2", any_port(), &[a.local_addr()]);
    let (rogue, mut rogue_rx) = start(cfg, "node-2");
    // ... and a raw client with such a certificate sends a Hello and a frame anyway.
    let raw = raw_client(&material(rogue_dir.path(), "node-2"), true);
    let sent = raw_send(&raw, a.local_addr(), "node-2").await;
    assert!(sent.is_err(), "the rogue's stream must fail: {sent:?}");
    expect_nothing(&mut a_rx, Duration::from_millis(1500)).await;
    expect_nothing(&mut rogue_rx, Duration::from_millis(10)).await;
    assert!(a.refused() >= 2, "refusals counted: {}", a.refused());
    assert!(rogue.peers().iter().all(|p| p.state != PeerState::Up));
    let text = logs(&logs_buf);
    assert!(text.contains("refused incoming connection"), "{text}");
    // Both CAs are named alike, so the verifier finds "the" issuer and its signature fails.
    assert!(
        text.contains("invalid peer certificate: BadSignature"),
        "{text}"
    );
    rogue.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let (logs_buf, _guard) = capture_logs();
    let dir = cert_dir(&["node-1", "node-2"]);
    let (a, mut a_rx) = start(config(dir.path(), "node-1", any_port(), &[]), "node-1");
    let raw = raw_client(&material(dir.path(), "node-2"), false);
    let sent = raw_send(&raw, a.local_addr(), "node-2").await;
    assert!(
        sent.is_err(),
        "a client without certificate must be refused: {sent:?}"
    );
    expect_nothing(&mut a_rx, Duration::from_millis(1000)).await;
    assert_eq!(a.refused(), 1);
    let text = logs(&logs_buf);
    assert!(text.contains("refused incoming connection"), "{text}");
    assert!(text.contains("no certificates"), "{text}");
    a.shutdown().await;
}

#[tokio::test]
async fn hello_must_match_the_certificate() {
    let dir = cert_dir(&["node-1", "node-2"]);
    let (a, mut a_rx) = start(config(dir.path(), "node-1", any_port(), &[]), "node-1");
    // node-2's valid certificate, claiming to be node-3.
    let cfg = config(dir.path(), "node-2", any_port(), &[a.local_addr()]);
    let (liar, mut liar_rx) = start(cfg, "node-3");
    expect_nothing(&mut a_rx, Duration::from_millis(1500)).await;
    expect_nothing(&mut liar_rx, Duration::from_millis(10)).await;
    assert!(a.refused() >= 1 && liar.refused() >= 1);
    liar.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn other_major_version_is_refused_with_a_clear_log_line() {
    let (logs_buf, _guard) = capture_logs();
    let dir = cert_dir(&["node-1", "node-2"]);
    let (a, mut a_rx) = start(config(dir.path(), "node-1", any_port(), &[]), "node-1");
    let mut cfg = config(dir.path(), "node-2", any_port(), &[a.local_addr()]);
    cfg.protocol = wire::PROTOCOL + (1 << 8);
    let (newer, mut newer_rx) = start(cfg, "node-2");
    expect_nothing(&mut a_rx, Duration::from_millis(1500)).await;
    expect_nothing(&mut newer_rx, Duration::from_millis(10)).await;
    assert!(a.refused() >= 1 && newer.refused() >= 1);
    let text = logs(&logs_buf);
    assert!(
        text.contains("protocol version mismatch: we speak 2.0, node \"node-2\" speaks 3.0"),
        "{text}"
    );
    // A minor difference is fine.
    let mut cfg = config(dir.path(), "node-2", any_port(), &[a.local_addr()]);
    cfg.protocol = wire::PROTOCOL + 1;
    newer.shutdown().await;
    let (minor, mut minor_rx) = start(cfg, "node-2");
    expect_up(&mut minor_rx, "node-1").await;
    minor.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn peer_restart_is_seen_down_then_up_again() {
    let dir = cert_dir(&["node-1", "node-2"]);
    let (a, mut a_rx) = start(config(dir.path(), "node-1", any_port(), &[]), "node-1");
    let seeds = [a.local_addr()];
    let (b, mut b_rx) = start(config(dir.path(), "node-2", any_port(), &seeds), "node-2");
    let b_addr = b.local_addr();
    expect_up(&mut a_rx, "node-2").await;
    expect_up(&mut b_rx, "node-1").await;
    b.shutdown().await;
    let reason = expect_down(&mut a_rx, "node-2", Duration::from_secs(2)).await;
    assert!(reason.contains("shutdown"), "{reason}");
    // Restart on the same port, this time without seeds: node-1 must dial it back.
    let b2 = async {
        loop {
            let (tx, rx) = mpsc::channel(64);
            match Link::start(
                config(dir.path(), "node-2", b_addr, &[]),
                NodeId::new("node-2"),
                tx,
            ) {
                Ok(h) => return (h, rx),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    let (b2, mut b2_rx) = timeout(WAIT, b2).await.expect("rebind in time");
    expect_up(&mut a_rx, "node-2").await;
    expect_up(&mut b2_rx, "node-1").await;
    a.send(&NodeId::new("node-2"), &Frame::Ping { nonce: 42 })
        .expect("queued");
    assert_eq!(pings_from(&mut b2_rx, "node-1", 1).await, vec![42]);
    b2.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn silent_peer_is_reported_down_within_four_seconds_then_reconnects() {
    let dir = cert_dir(&["node-1", "node-2"]);
    let (b, mut b_rx) = start(config(dir.path(), "node-2", any_port(), &[]), "node-2");
    let relay = Relay::start(b.local_addr()).await;
    // node-1 reaches node-2 only through the relay; cutting it silences node-2 abruptly.
    let (a, mut a_rx) = start(
        config(dir.path(), "node-1", any_port(), &[relay.addr]),
        "node-1",
    );
    expect_up(&mut a_rx, "node-2").await;
    expect_up(&mut b_rx, "node-1").await;
    relay.cut.store(true, Ordering::SeqCst);
    let cut_at = Instant::now();
    let reason = expect_down(&mut a_rx, "node-2", Duration::from_secs(5)).await;
    let detected = cut_at.elapsed();
    eprintln!("silent peer detected down after {detected:?}");
    assert!(
        detected <= Duration::from_secs(4),
        "down after {detected:?}"
    );
    assert!(
        detected >= Duration::from_secs(2),
        "down too early: {detected:?} ({reason})"
    );
    assert!(reason.contains("idle timeout"), "{reason}");
    // node-2 learned node-1's address from its Hello and dials it directly.
    expect_up(&mut a_rx, "node-2").await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A QUIC client endpoint using `tls`'s CA, with or without its client certificate.
fn raw_client(tls: &TlsMaterial, with_cert: bool) -> (quinn::Endpoint, quinn::ClientConfig) {
    let identity = with_cert.then(|| tls.identity());
    let crypto = tls.client_crypto_with(identity).expect("client crypto");
    let endpoint = quinn::Endpoint::client(any_port()).expect("client endpoint");
    (endpoint, quinn::ClientConfig::new(crypto))
}

/// Connects, sends a `Hello` and a `Ping`, and waits for the answer `Hello`.
async fn raw_send(
    (endpoint, cfg): &(quinn::Endpoint, quinn::ClientConfig),
    to: SocketAddr,
    id: &str,
) -> Result<(), String> {
    let work = async {
        let conn = endpoint
            .connect_with(cfg.clone(), to, crate::cluster::tls::DIAL_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let hello = Frame::Hello(wire::Hello {
            protocol: wire::PROTOCOL,
            node: NodeId::new(id),
            advertise: "127.0.0.1:9".into(),
        });
        let mut bytes = encode_frame(&hello);
        bytes.extend(encode_frame(&Frame::Ping { nonce: 666 }));
        send.write_all(&bytes).await.map_err(|e| e.to_string())?;
        let got = recv
            .read_chunk(1024, true)
            .await
            .map_err(|e| e.to_string())?;
        got.map(|_| ()).ok_or_else(|| "stream ended".to_string())
    };
    timeout(WAIT, work).await.unwrap_or(Err("timed out".into()))
}

/// A UDP relay from one client to `target` that can be cut (packets dropped both ways).
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let front = UdpSocket::bind(any_port()).await.expect("relay front");
        let back = UdpSocket::bind(any_port()).await.expect("relay back");
        back.connect(target).await.expect("relay connect");
        let cut = Arc::new(AtomicBool::new(false));
        let relay = Relay {
            addr: front.local_addr().expect("relay addr"),
            cut: cut.clone(),
        };
        tokio::spawn(async move {
            let (mut a, mut b) = ([0u8; 2048], [0u8; 2048]);
            let mut client = None;
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { return };
                        client = Some(from);
                        if !cut.load(Ordering::SeqCst) {
                            let _ = back.send(&a[..n]).await;
                        }
                    }
                    r = back.recv(&mut b) => {
                        let Ok(n) = r else { return };
                        if let (Some(c), false) = (client, cut.load(Ordering::SeqCst)) {
                            let _ = front.send_to(&b[..n], c).await;
                        }
                    }
                }
            }
        });
        relay
    }
}
