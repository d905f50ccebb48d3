//! Rules that involve more than one key, start-up warnings (parameters with no effect and
//! accepted configurations that will surprise an operator), and the one-line summary printed
//! by `--check-config`.
//!
//! Invariant: every problem and warning message starts with the key it is about
//! (`[table] key = value`) and says what to change. Values that are wrong on their own were
//! already rejected while deserializing (`config::values`, `config::modes`); the single-key
//! checks repeated here cover configs built in code rather than parsed. A problem refuses the
//! config; a warning ([`Config::warnings`]) is only logged, once, when the node starts.

use std::net::SocketAddr;

use super::modes::{MinExpiresAction, RetrieveOrder, SubsDbMode};
use super::tables::{is_valid_node_id, DefaultPolicy};
use super::{ClusterConfig, Config, LimitsConfig, NodeConfig, PresenceConfig};

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

/// A configuration the node accepts but that will not do what its operator expects: logged
/// once at start (`WARN`, with the keys as a field). See [`Config::warnings`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The keys involved, `[table] key`; the first is the one the message suggests changing.
    pub keys: Vec<&'static str>,
    /// One line, starting with the key and its value: what goes wrong and what to do.
    pub message: String,
}

impl ConfigWarning {
    fn new(keys: &[&'static str], message: String) -> Self {
        ConfigWarning {
            keys: keys.to_vec(),
            message,
        }
    }
}

impl Config {
    /// Every start-up warning of this (valid) config, one per misconfiguration: `[presence]`
    /// parameters with no effect, then keys that contradict or neutralize each other. Pure;
    /// the node logs each once at start. Empty for the shipped configuration files.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut out: Vec<ConfigWarning> = noop_parameters(self)
            .into_iter()
            .map(|p| {
                let key = match p {
                    "db_table_lock_type" => "[presence] db_table_lock_type",
                    _ => "[presence] local_log_facility",
                };
                ConfigWarning::new(
                    &[key],
                    format!("{key} has no effect in presenced; remove it from the config"),
                )
            })
            .collect();
        presence_warnings(self, &mut out);
        listen_warnings(self, &mut out);
        cluster_warnings(self, &mut out);
        limit_warnings(self, &mut out);
        out
    }
}

/// `[presence]` values that do nothing with the other keys as set, and `[node]
/// passivate_after` against the dialog lifetime.
fn presence_warnings(cfg: &Config, out: &mut Vec<ConfigWarning>) {
    let p = &cfg.presence;
    let d = PresenceConfig::default();
    // The held-back NOTIFY notifier is refused at load (`unsupported`), so its tuning never
    // applies: NOTIFYs leave at once, coalesced per dialog.
    for (key, value, default) in [
        ("[presence] waitn_time", p.waitn_time, d.waitn_time),
        (
            "[presence] notifier_poll_rate",
            p.notifier_poll_rate,
            d.notifier_poll_rate,
        ),
    ] {
        if value != default {
            out.push(ConfigWarning::new(
                &[key],
                format!(
                    "{key} = {value} has no effect: this build has no held-back NOTIFY \
                     notifier (NOTIFYs are sent at once, coalesced per dialog); remove it"
                ),
            ));
        }
    }
    if p.min_expires_action == MinExpiresAction::Raise && p.min_expires == 0 {
        out.push(ConfigWarning::new(
            &["[presence] min_expires_action", "[presence] min_expires"],
            "[presence] min_expires_action = 2 has no effect with [presence] min_expires = 0 \
             (no minimum): set min_expires to the smallest Expires to raise to"
                .to_string(),
        ));
    }
    if p.retrieve_order == RetrieveOrder::ReceivedTime && p.retrieve_order_by != d.retrieve_order_by
    {
        out.push(ConfigWarning::new(
            &["[presence] retrieve_order_by", "[presence] retrieve_order"],
            "[presence] retrieve_order_by has no effect with [presence] retrieve_order = 0 \
             (newest publication first): set retrieve_order = 1 to use it"
                .to_string(),
        ));
    }
    let after = cfg.node.passivate_after;
    if p.subs_db_mode == SubsDbMode::DbOnly {
        if after != NodeConfig::default().passivate_after {
            out.push(ConfigWarning::new(
                &["[node] passivate_after", "[presence] subs_db_mode"],
                format!(
                    "[node] passivate_after = {after} has no effect with [presence] \
                     subs_db_mode = 3: a DB-only dialog's actor stops as soon as it is quiet; \
                     remove it"
                ),
            ));
        }
    } else if after > 0 && after >= u64::from(p.max_expires) {
        out.push(ConfigWarning::new(
            &["[node] passivate_after", "[presence] max_expires"],
            format!(
                "[node] passivate_after = {after} is not below [presence] max_expires = {}: a \
                 dialog is refreshed or expires sooner, so none is ever passivated and memory \
                 grows with every dialog; lower passivate_after (0 = never, on purpose)",
                p.max_expires
            ),
        ));
    }
}

/// The Contact of NOTIFYs against the addresses SIP listens on, and the admin endpoint.
fn listen_warnings(cfg: &Config, out: &mut Vec<ConfigWarning>) {
    let listen = &cfg.sip.listen;
    if let (None, Some(first)) = (&cfg.presence.server_address, listen.first()) {
        let reachable = listen.iter().find(|l| !l.addr.ip().is_loopback());
        if let (true, Some(other)) = (first.addr.ip().is_loopback(), reachable) {
            out.push(ConfigWarning::new(
                &["[presence] server_address", "[sip] listen"],
                format!(
                    "[presence] server_address is unset, so the Contact of responses and \
                     NOTIFYs is the first [sip] listen address \"{first}\", a loopback \
                     address: watchers reaching \"{other}\" cannot send their refreshes \
                     back; set server_address to an address they can reach"
                ),
            ));
        }
    }
    let policy = cfg.authorization.default_policy;
    if cfg.admin.listen.is_none() && policy != DefaultPolicy::Allow {
        out.push(ConfigWarning::new(
            &["[authorization] default_policy", "[admin] listen"],
            format!(
                "[authorization] default_policy = \"{}\" with [admin] listen = \"\": rule \
                 documents are set over the admin endpoint (presence.rules_set), so no rule \
                 can be added or changed and new watchers without one stay pending; enable \
                 the admin endpoint",
                policy.as_str()
            ),
        ));
    }
    if cfg.admin.listen.is_none() && cfg.admin.token.is_some() {
        out.push(ConfigWarning::new(
            &["[admin] token", "[admin] listen"],
            "[admin] token has no effect with [admin] listen = \"\" (endpoint disabled); \
             remove it, or set listen to enable the endpoint"
                .to_string(),
        ));
    }
}

/// `[cluster]` keys that do nothing while the cluster is off, and cluster settings that
/// defeat the takeover of a lost node's dialogs.
fn cluster_warnings(cfg: &Config, out: &mut Vec<ConfigWarning>) {
    let c = &cfg.cluster;
    if !cfg.cluster_enabled() {
        let d = ClusterConfig::default();
        let set: Vec<&'static str> = [
            ("[cluster] listen", c.listen != d.listen),
            ("[cluster] advertise", c.advertise.is_some()),
            ("[cluster] peers", !c.peers.is_empty()),
            (
                "[cluster] takeover_grace",
                c.takeover_grace != d.takeover_grace,
            ),
            ("[cluster] ca_cert", c.ca_cert.is_some()),
            ("[cluster] cert", c.cert.is_some()),
            ("[cluster] key", c.key.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, is_set)| is_set.then_some(k))
        .collect();
        if !set.is_empty() {
            out.push(ConfigWarning {
                message: format!(
                    "{} set but the cluster is off ([cluster] enabled = false): this node \
                     runs alone; set [cluster] enabled = true, or remove them",
                    set.join(", ")
                ),
                keys: set,
            });
        }
        return;
    }
    let p = &cfg.presence;
    if p.subs_db_mode == SubsDbMode::Memory {
        out.push(ConfigWarning::new(
            &["[presence] subs_db_mode", "[cluster] enabled"],
            format!(
                "[presence] subs_db_mode = 0 with the cluster on: a restarted node comes back \
                 without its subscription dialogs, and peers take them over only when it \
                 stayed down at least takeover_grace ({} s); otherwise their watchers get no \
                 NOTIFY until they subscribe again; set subs_db_mode = 1 or 2 to keep them",
                c.takeover_grace
            ),
        ));
    }
    if c.takeover_grace >= u64::from(p.max_expires) {
        out.push(ConfigWarning::new(
            &["[cluster] takeover_grace", "[presence] max_expires"],
            format!(
                "[cluster] takeover_grace = {} is not below [presence] max_expires = {}: the \
                 dialogs of a node that is down have all expired before a peer may take them \
                 over; lower takeover_grace",
                c.takeover_grace, p.max_expires
            ),
        ));
    }
}

/// `[limits]` values that another limit makes unreachable or that the sharding overrides.
fn limit_warnings(cfg: &Config, out: &mut Vec<ConfigWarning>) {
    let l = &cfg.limits;
    let message_size = cfg.sip.max_message_size;
    if l.max_body_size > message_size && l.max_body_size != LimitsConfig::default().max_body_size {
        out.push(ConfigWarning::new(
            &["[limits] max_body_size", "[sip] max_message_size"],
            format!(
                "[limits] max_body_size = {} is above [sip] max_message_size = {message_size}: \
                 a PUBLISH whose body is larger than the message limit is refused as a whole \
                 (413 over TCP, dropped over UDP) before max_body_size applies; raise \
                 max_message_size too",
                l.max_body_size
            ),
        ));
    }
    // Each presentity shard keeps max_server_transactions / shards, at least 64 (node.rs).
    let shards = cfg.presence.pres_shards();
    let floor = 64 * shards;
    if l.max_server_transactions < floor {
        out.push(ConfigWarning::new(
            &[
                "[limits] max_server_transactions",
                "[presence] pres_htable_size",
            ],
            format!(
                "[limits] max_server_transactions = {} is below 64 per presentity shard \
                 ({shards} shards with pres_htable_size = {}): each shard keeps at least 64, \
                 so the node holds up to {floor}; lower pres_htable_size to make the limit \
                 apply",
                l.max_server_transactions, cfg.presence.pres_htable_size
            ),
        ));
    }
}

/// `node node-1; sip udp:…, tcp:…; admin …; storage …; cluster …`, then the parameters
/// with no effect and every other start-up warning.
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
    // The other start-up warnings in full (`warnings` lists the no-effect ones first).
    for w in cfg.warnings().into_iter().skip(noop.len()) {
        line.push_str("; warning: ");
        line.push_str(&w.message);
    }
    line
}
