//! [`SipSender`]: the one way out. Clonable, usable from any arbiter, never blocks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use super::{Proto, Source, TcpConnections};

/// Where a request goes: transport, host and port of the next hop (first Route, or the
/// remote target when the route set is empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Transport to use.
    pub proto: Proto,
    /// Host: an IP literal or a name (resolved asynchronously).
    pub host: String,
    /// Port (5060 when the URI has none).
    pub port: u16,
}

impl Target {
    /// The next hop named by a SIP URI (`sip:bob@127.0.0.1:5090;transport=tcp`): its host,
    /// port (default 5060) and `transport` parameter (default `default`). `None` for an
    /// unusable URI or an unsupported scheme/transport (sips, tls, ws).
    pub fn from_uri(uri: &str, default: Proto) -> Option<Target> {
        let uri = uri.trim().trim_start_matches('<');
        let uri = uri.split('>').next().unwrap_or(uri);
        let (scheme, rest) = uri.split_once(':')?;
        if !scheme.eq_ignore_ascii_case("sip") {
            return None;
        }
        let (addr_part, params) = match rest.find([';', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let hostport = addr_part
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(addr_part);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return None;
        }
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => 5060,
        };
        let mut proto = default;
        for p in params.split(';').skip(1) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.trim().eq_ignore_ascii_case("transport") {
                proto = match v.trim().to_ascii_lowercase().as_str() {
                    "udp" => Proto::Udp,
                    "tcp" => Proto::Tcp,
                    _ => return None,
                };
            }
        }
        Some(Target { proto, host, port })
    }
}

/// Sends SIP messages on the node's sockets.
#[derive(Clone)]
pub struct SipSender {
    inner: Arc<Inner>,
}

struct Inner {
    /// A non-blocking clone of the UDP listener socket: `send_to` on it never blocks the
    /// calling actor; a full buffer returns `WouldBlock` and the datagram is dropped.
    udp: Option<std::net::UdpSocket>,
    tcp: TcpConnections,
    server: String,
    udp_local: Option<SocketAddr>,
    tcp_local: Option<SocketAddr>,
    /// The IP text of `udp_local` and `tcp_local`, written once (every NOTIFY's Via).
    udp_host: String,
    tcp_host: String,
}

impl SipSender {
    /// A sender over the given sockets. `server` is the Server/User-Agent header value.
    pub fn new(
        udp: Option<std::net::UdpSocket>,
        tcp: TcpConnections,
        server: String,
        tcp_local: Option<SocketAddr>,
    ) -> Self {
        let udp_local = udp.as_ref().and_then(|s| s.local_addr().ok());
        let host = |a: Option<SocketAddr>| a.map(|a| a.ip().to_string()).unwrap_or_default();
        SipSender {
            inner: Arc::new(Inner {
                udp,
                tcp,
                server,
                udp_local,
                tcp_local,
                udp_host: host(udp_local),
                tcp_host: host(tcp_local.or(udp_local)),
            }),
        }
    }

    /// The Server / User-Agent header value.
    pub fn server_header(&self) -> &str {
        &self.inner.server
    }

    /// Our address for `proto` (the Via sent-by of requests we send).
    pub fn local_addr(&self, proto: Proto) -> Option<SocketAddr> {
        match proto {
            Proto::Udp => self.inner.udp_local,
            Proto::Tcp => self.inner.tcp_local.or(self.inner.udp_local),
        }
    }

    /// Our Via sent-by for `proto`: the IP as text and the port of [`Self::local_addr`].
    pub fn sent_by(&self, proto: Proto) -> Option<(&str, u16)> {
        let addr = self.local_addr(proto)?;
        let host = match proto {
            Proto::Udp => &self.inner.udp_host,
            Proto::Tcp => &self.inner.tcp_host,
        };
        Some((host, addr.port()))
    }

    /// Whether a listener of `proto` exists.
    pub fn supports(&self, proto: Proto) -> bool {
        match proto {
            Proto::Udp => self.inner.udp.is_some(),
            Proto::Tcp => self.inner.tcp_local.is_some(),
        }
    }

    /// Sends a response to where the request came from (`dest` already holds the RFC 3261
    /// §18.2.2 / RFC 3581 address for UDP; for TCP the connection it came on).
    pub fn send_response(&self, dest: &Source, bytes: Bytes) {
        match dest.proto {
            Proto::Udp => self.send_udp(dest.addr, &bytes),
            Proto::Tcp => {
                let sent = match dest.conn {
                    Some(id) => self.inner.tcp.send_on(id, bytes.clone()),
                    None => false,
                };
                if !sent && !self.inner.tcp.send_to_addr(dest.addr, bytes) {
                    tracing::debug!(%dest, "response dropped: TCP connection is gone");
                }
            }
        }
    }

    /// Sends a request to `target`, resolving a host name first if needed. On TCP an open
    /// connection to the address is reused, otherwise one is opened.
    pub fn send_request(&self, target: &Target, bytes: Bytes) {
        let host = target.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.send_request_to(target.proto, SocketAddr::new(ip, target.port), bytes);
            return;
        }
        let this = self.clone();
        let proto = target.proto;
        let name = format!("{}:{}", host, target.port);
        actix_rt::spawn(async move {
            match tokio::net::lookup_host(name.as_str())
                .await
                .map(|mut a| a.next())
            {
                Ok(Some(addr)) => this.send_request_to(proto, addr, bytes),
                Ok(None) | Err(_) => {
                    tracing::info!(host = %name, "request dropped: cannot resolve")
                }
            }
        });
    }

    /// Sends a request to a resolved address.
    pub fn send_request_to(&self, proto: Proto, addr: SocketAddr, bytes: Bytes) {
        match proto {
            Proto::Udp => self.send_udp(addr, &bytes),
            Proto::Tcp => {
                if !self.inner.tcp.send_to_addr(addr, bytes.clone()) {
                    self.inner.tcp.connect_and_send(addr, bytes, self.clone());
                }
            }
        }
    }

    fn send_udp(&self, addr: SocketAddr, bytes: &[u8]) {
        let Some(sock) = self.inner.udp.as_ref() else {
            tracing::debug!(%addr, "UDP send skipped: no UDP listener");
            return;
        };
        if let Err(e) = sock.send_to(bytes, addr) {
            tracing::debug!(%addr, error = %e, "UDP send failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_from_uri_reads_host_port_and_transport() {
        let t = Target::from_uri("sip:bob@127.0.0.1:5090;transport=TCP", Proto::Udp).unwrap();
        assert_eq!(
            t,
            Target {
                proto: Proto::Tcp,
                host: "127.0.0.1".into(),
                port: 5090
            }
        );
        let t = Target::from_uri("<sip:proxy.example.com;lr>", Proto::Udp).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.proto),
            ("proxy.example.com", 5060, Proto::Udp)
        );
        let t = Target::from_uri("sip:[::1]:5070", Proto::Tcp).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.proto),
            ("::1", 5070, Proto::Tcp)
        );
        assert!(Target::from_uri("sips:bob@h", Proto::Udp).is_none());
        assert!(Target::from_uri("sip:bob@h;transport=ws", Proto::Udp).is_none());
        assert!(Target::from_uri("sip:bob@h:notaport", Proto::Udp).is_none());
    }
}
