//! The `[cluster]` table: replication between nodes over QUIC (SPEC §2, §8).
//!
//! Owns the cluster fields and their defaults. Addresses are parsed here; whether the
//! certificates are present when the cluster is on is a cross-key rule (`config::validate`).
//! Certificate paths are not opened at load: relative paths are relative to the working
//! directory, and the files are read when the cluster starts.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use super::values::{flag, opt_socket_addr, ranged, socket_addr, socket_addr_list};

/// `[cluster]`: replication between nodes.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Replication on/off (`[presence] enable_dmq = 1` is an alias; see
    /// `Config::cluster_enabled`).
    #[serde(default, deserialize_with = "flag")]
    pub enabled: bool,
    /// QUIC (UDP) address for peers.
    #[serde(default = "default_cluster_listen", deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// The address other nodes are told to use for this node; unset = `listen`
    /// (see [`ClusterConfig::advertise_addr`]).
    #[serde(default, deserialize_with = "opt_socket_addr")]
    pub advertise: Option<SocketAddr>,
    /// Seed addresses of other nodes; membership then spreads by gossip.
    #[serde(default, deserialize_with = "socket_addr_list")]
    pub peers: Vec<SocketAddr>,
    /// Seconds a subscription's owner must be unreachable before another node takes the
    /// dialog over.
    #[serde(
        default = "default_takeover_grace",
        deserialize_with = "ranged::<_, u64, 1, 86400>"
    )]
    pub takeover_grace: u64,
    /// PEM file of the cluster CA; peers must present a certificate it signed.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// PEM file of this node's certificate.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM file of this node's private key.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            listen: default_cluster_listen(),
            advertise: None,
            peers: Vec::new(),
            takeover_grace: default_takeover_grace(),
            ca_cert: None,
            cert: None,
            key: None,
        }
    }
}

impl ClusterConfig {
    /// The address gossiped to other nodes: `advertise`, or `listen` when unset.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }
}

fn default_cluster_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 5070))
}
fn default_takeover_grace() -> u64 {
    30
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_defaults_to_listen() {
        let c: ClusterConfig = toml::from_str("listen = \"127.0.0.1:6000\"").unwrap();
        assert_eq!(
            c.advertise_addr(),
            "127.0.0.1:6000".parse::<SocketAddr>().unwrap()
        );
        let c: ClusterConfig =
            toml::from_str("listen = \"0.0.0.0:6000\"\nadvertise = \"10.0.0.5:6000\"").unwrap();
        assert_eq!(
            c.advertise_addr(),
            "10.0.0.5:6000".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn peers_are_socket_addresses() {
        let c: ClusterConfig =
            toml::from_str("enabled = 1\npeers = [\"127.0.0.1:5072\", \"[::1]:5073\"]").unwrap();
        assert!(c.enabled);
        assert_eq!(c.peers.len(), 2);
        let e = toml::from_str::<ClusterConfig>("peers = [\"node-2:5072\"]").unwrap_err();
        assert!(e.message().contains("IP:PORT"), "{e}");
        assert!(toml::from_str::<ClusterConfig>("takeover_grace = 0").is_err());
    }
}
