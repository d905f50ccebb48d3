//! Rules that involve more than one key, parameters with no effect, and the one-line summary
//! printed by `--check-config`.
//!
//! Invariant: every problem message starts with the key it is about (`[table] key = value`)
//! and says what to change. Values that are wrong on their own were already rejected while
//! deserializing (`config::values`, `config::modes`); the single-key checks repeated here
//! cover configs built in code rather than parsed.

use std::net::SocketAddr;

use super::modes::SubsDbMode;
use super::tables::is_valid_node_id;
use super::Config;

/// Every cross-key problem of `cfg`; empty when the config is coherent.
pub(super) fn problems(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let p = &cfg.presence;

    if !is_valid_node_id(cfg.node.id.as_str()) {
        out.push(format!(
            "[node] id = {:?}: allowed: 1 to 64 letters, digits, '-', '_' or '.'",
            cfg.node.id.as_str()
        ));
    }
    if cfg.node.data_dir.as_os_str().is_empty() {
        out.push("[node] data_dir is empty: allowed: a directory path".to_string());
    }
    match cfg.sip.listen.first() {
        None => out.push(
            "[sip] listen is empty: at least one \"udp:IP:PORT\" or \"tcp:IP:PORT\" is required"
                .to_string(),
        ),
        Some(first) if first.addr.ip().is_unspecified() && p.server_address.is_none() => {
            out.push(format!(
                "[presence] server_address is required when the first [sip] listen address \
                 (\"{first}\") is unspecified: it becomes the Contact of our responses and \
                 NOTIFYs, e.g. server_address = \"sip:192.0.2.10:5060\""
            ))
        }
        Some(_) => {}
    }
    if let Some(url) = &p.db_url {
        out.push(format!(
            "[presence] db_url = {url:?}: presenced has no external database; remove db_url \
             and set [node] data_dir to the directory of its embedded database"
        ));
    }
    if p.min_expires > p.max_expires {
        out.push(format!(
            "[presence] min_expires = {} is greater than [presence] max_expires = {}: \
             min_expires must be at most max_expires",
            p.min_expires, p.max_expires
        ));
    }
    if p.expires_offset >= p.max_expires {
        out.push(format!(
            "[presence] expires_offset = {} is not below [presence] max_expires = {}: every \
             PUBLISH would be answered with Expires 0",
            p.expires_offset, p.max_expires
        ));
    }
    if !p.timer_mode && p.clean_interval().is_none() {
        out.push(format!(
            "[presence] timer_mode = 0 with clean_period = {}: nothing would ever expire; \
             set timer_mode = 1 or clean_period > 0",
            p.clean_period
        ));
    }
    if let Some(addr) = cfg.admin.listen {
        if !addr.ip().is_loopback() && cfg.admin.token.is_none() {
            out.push(format!(
                "[admin] listen = \"{addr}\" is not a loopback address: set [admin] token \
                 (clients then send Authorization: Bearer <token>) or listen on 127.0.0.1 or ::1"
            ));
        }
    }
    if cfg.cluster_enabled() {
        cluster_problems(cfg, &mut out);
    }
    out
}

fn cluster_problems(cfg: &Config, out: &mut Vec<String>) {
    let c = &cfg.cluster;
    let why = if c.enabled {
        "[cluster] enabled = true"
    } else {
        "[presence] enable_dmq = 1"
    };
    for (key, value) in [("ca_cert", &c.ca_cert), ("cert", &c.cert), ("key", &c.key)] {
        if value.is_none() {
            out.push(format!(
                "[cluster] {key} is required when {why}: a PEM file path (`presenced cert` \
                 creates the cluster CA and node certificates)"
            ));
        }
    }
    let adv = c.advertise_addr();
    if adv.ip().is_unspecified() || adv.port() == 0 {
        out.push(format!(
            "[cluster] advertise is required when [cluster] listen = \"{}\": other nodes need \
             a concrete IP:PORT to reach this node",
            c.listen
        ));
    }
    if c.peers.contains(&adv) {
        out.push(format!(
            "[cluster] peers contains this node's own address \"{adv}\": list only the other \
             nodes"
        ));
    }
}

/// The `[presence]` parameters that are set but have no effect in presenced.
pub(super) fn noop_parameters(cfg: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg.presence.db_table_lock_type.is_some() {
        out.push("db_table_lock_type");
    }
    // No syslog output exists yet, so the facility never applies.
    if cfg.presence.local_log_facility.is_some() {
        out.push("local_log_facility");
    }
    out
}

/// `node node-1; sip udp:…, tcp:…; admin …; storage …; cluster …`.
pub(super) fn summary(cfg: &Config) -> String {
    let sip: Vec<String> = cfg.sip.listen.iter().map(ToString::to_string).collect();
    let admin = cfg
        .admin
        .listen
        .map_or_else(|| "off".to_string(), |a: SocketAddr| a.to_string());
    let storage = if cfg.presence.subs_db_mode == SubsDbMode::Memory
        && cfg.presence.publ_cache == super::PublCache::Full
    {
        "memory only".to_string()
    } else {
        format!("sled at {}", cfg.node.data_dir.display())
    };
    let cluster = if cfg.cluster_enabled() {
        let peers: Vec<String> = cfg.cluster.peers.iter().map(ToString::to_string).collect();
        format!(
            "on, QUIC {} (advertised {}), peers [{}]",
            cfg.cluster.listen,
            cfg.cluster.advertise_addr(),
            peers.join(", ")
        )
    } else {
        "off".to_string()
    };
    let mut line = format!(
        "node {}; sip {}; admin {}; storage {} (subs_db_mode = {}, publ_cache = {}); \
         authorization {}; cluster {}",
        cfg.node.id,
        sip.join(", "),
        admin,
        storage,
        cfg.presence.subs_db_mode,
        cfg.presence.publ_cache,
        cfg.authorization.default_policy.as_str(),
        cluster
    );
    let noop = noop_parameters(cfg);
    if !noop.is_empty() {
        line.push_str(&format!("; no effect: {}", noop.join(", ")));
    }
    line
}
