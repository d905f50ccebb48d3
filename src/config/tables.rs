//! The `[node]`, `[sip]`, `[authorization]`, `[admin]` and `[log]` tables (SPEC §2).
//!
//! Owns these fields, their named defaults and per-value checks. Addresses are parsed into
//! `SocketAddr`/`ListenAddr` here so the rest of the crate never parses config strings.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::values::{
    listen_list, opt_header_name, ranged, socket_addr_or_empty, ListenAddr, Proto,
};
use crate::ids::NodeId;

/// `[node]`: this node's identity and storage.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique in a cluster; stored in the database at first start, a mismatch later is an
    /// error.
    #[serde(default = "default_node_id", deserialize_with = "node_id")]
    pub id: NodeId,
    /// Directory of the sled database (relative paths are relative to the working directory).
    #[serde(default = "default_data_dir", deserialize_with = "non_empty_path")]
    pub data_dir: PathBuf,
    /// Seconds a subscription dialog may stay quiet before its actor is passivated (stopped;
    /// woken from its compact form or the store on its next message); 0 = never passivate.
    /// Short by default: a live actor only saves the wake (a few µs) of a dialog that is quiet
    /// most of its life, and costs several KB while it runs.
    #[serde(
        default = "default_passivate_after",
        deserialize_with = "ranged::<_, u64, 0, 31536000>"
    )]
    pub passivate_after: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: default_node_id(),
            data_dir: default_data_dir(),
            passivate_after: default_passivate_after(),
        }
    }
}

fn default_node_id() -> NodeId {
    NodeId::new("node-1")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_passivate_after() -> u64 {
    5
}

/// True for a valid node id: 1–64 characters of letters, digits, `-`, `_`, `.`.
pub(crate) fn is_valid_node_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn node_id<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
    let s = String::deserialize(d)?;
    if !is_valid_node_id(&s) {
        return Err(de::Error::custom(
            "allowed: 1 to 64 letters, digits, '-', '_' or '.', e.g. \"node-1\"",
        ));
    }
    Ok(NodeId::new(&s))
}

fn non_empty_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("allowed: a non-empty directory path"));
    }
    Ok(PathBuf::from(s))
}

/// `[sip]`: transports and SIP-level options.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Transports and addresses to listen on; at least one.
    #[serde(default = "default_listen", deserialize_with = "listen_list")]
    pub listen: Vec<ListenAddr>,
    /// Larger messages are rejected (413 over TCP, dropped with a log line over UDP).
    #[serde(
        default = "default_max_message_size",
        deserialize_with = "ranged::<_, usize, 512, 16777216>"
    )]
    pub max_message_size: usize,
    /// Receive buffer asked for on each UDP socket (bytes; `SO_RCVBUF`, Kamailio's
    /// `maxbuffer`): how long a burst may wait while the receive loop is not scheduled.
    /// 0 = the kernel's default. The kernel caps it at `net.core.rmem_max`.
    #[serde(
        default = "default_udp_recv_buffer",
        deserialize_with = "ranged::<_, usize, 0, 268435456>"
    )]
    pub udp_recv_buffer: usize,
    /// Header whose URI, if present in a PUBLISH, is not notified of it (Kamailio's
    /// `handle_publish(sender_uri)`); unset = off.
    #[serde(default, deserialize_with = "opt_header_name")]
    pub sender_header: Option<String>,
    /// Header (e.g. `P-Asserted-Identity`) used as watcher URI instead of From (Kamailio's
    /// `handle_subscribe(watcher_uri)`); unset = From.
    #[serde(default, deserialize_with = "opt_header_name")]
    pub watcher_uri_header: Option<String>,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: default_listen(),
            max_message_size: default_max_message_size(),
            udp_recv_buffer: default_udp_recv_buffer(),
            sender_header: None,
            watcher_uri_header: None,
        }
    }
}

fn default_listen() -> Vec<ListenAddr> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 5060));
    vec![
        ListenAddr {
            proto: Proto::Udp,
            addr,
        },
        ListenAddr {
            proto: Proto::Tcp,
            addr,
        },
    ]
}
fn default_max_message_size() -> usize {
    65535
}
fn default_udp_recv_buffer() -> usize {
    4 << 20
}

/// `[authorization] default_policy`: what a watcher without a rule gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// Every watcher is active (Kamailio's `force_active = 1`).
    Allow,
    /// New watchers are pending until a rule or an admin decision.
    Pending,
    /// Per-presentity rule documents decide (SPEC §4).
    Rules,
}

impl DefaultPolicy {
    /// The config spelling (`allow`, `pending`, `rules`).
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultPolicy::Allow => "allow",
            DefaultPolicy::Pending => "pending",
            DefaultPolicy::Rules => "rules",
        }
    }
}

/// `[authorization]`: watcher authorization.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Policy for watchers without a rule.
    #[serde(default = "default_policy")]
    pub default_policy: DefaultPolicy,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            default_policy: default_policy(),
        }
    }
}

fn default_policy() -> DefaultPolicy {
    DefaultPolicy::Allow
}

/// `[admin]`: the debug/admin HTTP endpoint. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the endpoint; `None` (written `""`) disables it.
    #[serde(
        default = "default_admin_listen",
        deserialize_with = "socket_addr_or_empty"
    )]
    pub listen: Option<SocketAddr>,
    /// If set, every request needs `Authorization: Bearer <token>`; required when `listen`
    /// is not a loopback address.
    #[serde(default, deserialize_with = "secret_token")]
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `[admin] token`: a non-empty string. Its errors never quote the value, whatever its type
/// (serde's own "invalid type: integer `12345`" would): it is a secret.
fn secret_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Other(de::IgnoredAny),
    }
    match Raw::deserialize(d)? {
        Raw::Text(s) if !s.is_empty() => Ok(Some(s)),
        Raw::Text(_) | Raw::Other(_) => Err(de::Error::custom(
            "allowed: a non-empty string (the value is not shown: it is a secret)",
        )),
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            token: None,
        }
    }
}

fn default_admin_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)))
}

/// `[log] format`: how log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: logging.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `presenced=debug,info`); `RUST_LOG` overrides it.
    #[serde(default = "default_log_level", deserialize_with = "log_filter")]
    pub level: String,
    /// Output format.
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: default_log_format(),
        }
    }
}

fn default_log_level() -> String {
    String::from("info")
}
fn default_log_format() -> LogFormat {
    LogFormat::Text
}

fn log_filter<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() || tracing_subscriber::EnvFilter::builder().parse(&s).is_err() {
        return Err(de::Error::custom(
            "allowed: a tracing filter such as \"info\", \"warn\" or \"presenced=debug,info\" \
             (levels: off, error, warn, info, debug, trace)",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_checked() {
        let n: NodeConfig = toml::from_str("id = \"edge.a-1\"").unwrap();
        assert_eq!(n.id.as_str(), "edge.a-1");
        for bad in ["id = \"\"", "id = \"a b\"", "id = \"é\""] {
            let e = toml::from_str::<NodeConfig>(bad).unwrap_err();
            assert!(e.message().contains("allowed: 1 to 64"), "{bad}: {e}");
        }
        assert!(toml::from_str::<NodeConfig>("data_dir = \"\"").is_err());
    }

    #[test]
    fn sip_listen_needs_one_distinct_entry() {
        let s: SipConfig = toml::from_str("listen = [\"tcp:0.0.0.0:0\"]").unwrap();
        assert_eq!(s.listen.len(), 1);
        assert_eq!(s.listen[0].proto, Proto::Tcp);
        let e = toml::from_str::<SipConfig>("listen = []").unwrap_err();
        assert!(e.message().contains("at least one"), "{e}");
        let e = toml::from_str::<SipConfig>("listen = [\"udp:127.0.0.1:1\", \"udp:127.0.0.1:1\"]")
            .unwrap_err();
        assert!(e.message().contains("listed twice"), "{e}");
        assert!(toml::from_str::<SipConfig>("sender_header = \"Send er\"").is_err());
    }

    #[test]
    fn admin_listen_empty_disables() {
        let a: AdminConfig = toml::from_str("listen = \"\"").unwrap();
        assert_eq!(a.listen, None);
        let a: AdminConfig = toml::from_str("listen = \"[::1]:9000\"").unwrap();
        assert_eq!(a.listen.map(|s| s.port()), Some(9000));
        assert!(toml::from_str::<AdminConfig>("listen = \"localhost:80\"").is_err());
        assert!(toml::from_str::<AdminConfig>("token = \"\"").is_err());
    }

    #[test]
    fn admin_token_errors_never_quote_the_value() {
        for bad in [
            "token = 12345",
            "token = 12345.5",
            "token = true",
            "token = [\"s3cr3t\"]",
            "token = { v = \"s3cr3t\" }",
            "token = 1979-05-27",
            "admin.token = 12345",
            "admin = { token = 12345 }",
        ] {
            // Dotted and inline forms sit at the top level, before any table header.
            let text = if bad.starts_with("admin") {
                format!("{bad}\n[node]\nid = \"n1\"\n")
            } else {
                format!("[node]\nid = \"n1\"\n[admin]\n{bad}\n")
            };
            let e = crate::config::Config::from_toml_str(&text)
                .unwrap_err()
                .to_string();
            assert!(
                !e.contains("12345")
                    && !e.contains("s3cr3t")
                    && !e.contains("true")
                    && !e.contains("1979"),
                "{bad}: {e}"
            );
            assert!(e.contains("token"), "the error names the key: {e}");
        }
        let ok: AdminConfig = toml::from_str("token = \"s3cr3t\"").unwrap();
        assert_eq!(ok.token.as_deref(), Some("s3cr3t"));
    }

    #[test]
    fn admin_debug_redacts_the_token() {
        let a: AdminConfig = toml::from_str("token = \"s3cr3t\"").unwrap();
        let shown = format!(
            "{a:?} {:?}",
            crate::config::Config {
                admin: a.clone(),
                ..Default::default()
            }
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("token: Some(\"<redacted>\")"), "{shown}");
        assert!(shown.contains("listen: Some(127.0.0.1:8080)"), "{shown}");
        let none = format!("{:?}", AdminConfig::default());
        assert!(none.contains("token: None"), "{none}");
    }

    #[test]
    fn log_and_policy_values() {
        let l: LogConfig =
            toml::from_str("level = \"presenced=debug,info\"\nformat = \"json\"").unwrap();
        assert_eq!(l.format, LogFormat::Json);
        assert!(toml::from_str::<LogConfig>("level = \"info=loud\"").is_err());
        let e = toml::from_str::<LogConfig>("format = \"xml\"").unwrap_err();
        assert!(e.message().contains("expected `text` or `json`"), "{e}");
        let e = toml::from_str::<AuthorizationConfig>("default_policy = \"deny\"").unwrap_err();
        assert!(e.message().contains("`allow`, `pending`, `rules`"), "{e}");
    }
}
