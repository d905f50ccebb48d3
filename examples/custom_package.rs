//! Embedding presenced with an event package of your own — Kamailio's `add_event` in Rust.
//!
//! The package here is `as-feature-event` (Broadsoft device feature key sync), a package
//! Kamailio ships as presence_dfks: a plain-text body, the newest publication wins. The
//! program starts a node on ephemeral loopback ports, publishes a feature state over UDP,
//! subscribes to it, prints the NOTIFY and exits.
//!
//! ```sh
//! cargo run --example custom_package
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use presenced::config::Config;
use presenced::ids::PresentityUri;
use presenced::presence::package::{EventPackage, PackageRegistry};

/// A package: name, accepted content types, default expiry, body check, composition.
struct FeatureEvent;

impl EventPackage for FeatureEvent {
    fn name(&self) -> &str {
        "as-feature-event"
    }

    fn content_types(&self) -> &[&str] {
        &["application/x-as-feature-event+xml"]
    }

    fn default_expires(&self) -> u32 {
        3600
    }

    fn validate_publish(&self, body: &[u8]) -> Result<(), String> {
        match std::str::from_utf8(body) {
            Ok(t) if t.contains("<DoNotDisturbEvent") || t.contains("<CallForwarding") => Ok(()),
            _ => Err("not a feature event document".into()),
        }
    }

    /// Kamailio's `evs_subs_handl`: feature keys are private to the line's own devices.
    fn check_subscribe(
        &self,
        watcher: &PresentityUri,
        presentity: &PresentityUri,
    ) -> Result<(), (u16, String)> {
        if watcher == presentity {
            Ok(())
        } else {
            Err((403, "Forbidden".into()))
        }
    }

    /// Newest publication wins (the first document is the newest).
    fn aggregate(&self, _presentity: &PresentityUri, docs: &[&[u8]]) -> Option<Bytes> {
        docs.first().map(|d| Bytes::copy_from_slice(d))
    }
}

/// Starts a node with the package, publishes, subscribes; returns the NOTIFY text and the
/// status line answering a SUBSCRIBE from another user.
pub fn demo() -> (String, String) {
    let toml = "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n[admin]\nlisten = \"\"\n\
                [presence]\nsubs_db_mode = 0\npubl_cache = 2\n";
    let cfg = Config::from_toml_str(toml).expect("config");
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let node_thread = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let mut packages = PackageRegistry::with_builtin();
            packages
                .add(Arc::new(FeatureEvent))
                .expect("a new package name");
            let node = presenced::node::start_with(&cfg, packages)
                .await
                .expect("node starts");
            tx.send(node.udp_addr.expect("udp")).expect("report");
            while stop_rx.try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            node.shutdown(Duration::from_millis(10)).await;
        })
    });
    let server: SocketAddr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("node address");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let body = "<DoNotDisturbEvent xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\"><doNotDisturbOn>true</doNotDisturbOn></DoNotDisturbEvent>";
    let publish = format!(
        "PUBLISH sip:1000@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKfe1;rport\r\n\
         From: <sip:1000@example.com>;tag=p\r\nTo: <sip:1000@example.com>\r\nCall-ID: fe-pub\r\n\
         CSeq: 1 PUBLISH\r\nEvent: as-feature-event\r\nContent-Type: application/x-as-feature-event+xml\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let subscribe = format!(
        "SUBSCRIBE sip:1000@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKfe2;rport\r\n\
         From: <sip:1000@example.com>;tag=s\r\nTo: <sip:1000@example.com>\r\nCall-ID: fe-sub\r\n\
         CSeq: 1 SUBSCRIBE\r\nEvent: as-feature-event\r\nExpires: 0\r\nContact: <sip:phone@127.0.0.1:{port}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let mut buf = [0u8; 65535];
    sock.send_to(publish.as_bytes(), server).expect("send");
    let (n, _) = sock.recv_from(&mut buf).expect("PUBLISH answered");
    println!(
        "<<< {}",
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
    );
    sock.send_to(subscribe.as_bytes(), server).expect("send");
    let mut notify = String::new();
    for _ in 0..4 {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("NOTIFY ") {
            notify = text;
            break;
        }
        println!("<<< {}", text.lines().next().unwrap_or(""));
    }
    let foreign = subscribe
        .replace(
            "From: <sip:1000@example.com>",
            "From: <sip:eve@example.com>",
        )
        .replace("fe-sub", "fe-eve")
        .replace("z9hG4bKfe2", "z9hG4bKfe3");
    sock.send_to(foreign.as_bytes(), server).expect("send");
    let mut refused = String::new();
    for _ in 0..4 {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains("Call-ID: fe-eve") {
            refused = text.lines().next().unwrap_or("").to_string();
            break;
        }
    }
    let _ = stop_tx.send(());
    let _ = node_thread.join();
    (notify, refused)
}

#[allow(dead_code)] // unused when a test includes this file for `demo`
fn main() {
    let (notify, refused) = demo();
    println!("<<< the NOTIFY:\n{notify}");
    println!("<<< another user's SUBSCRIBE: {refused}");
}
