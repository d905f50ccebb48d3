//! The `[presence]` table: Kamailio's presence module parameters, same names, same integer
//! semantics (SPEC §2).
//!
//! Owns the 37 parameter fields, their defaults (one named function each) and the per-value
//! checks. Integer modes are typed enums (`config::modes`), 0/1 flags are `bool`, durations in
//! seconds stay integers with Kamailio's meaning (≤ 0 disables) and have `Option<Duration>`
//! accessors. Cross-key rules live in `config::validate`.

use std::time::Duration;

use serde::Deserialize;

use super::modes::{
    self, LocalLogLevel, MinExpiresAction, OrderField, OrderKey, PublCache, RetrieveOrder,
    SortDirection, SubsDbMode, SubsRemoveMatch,
};
use super::values::{
    self, flag, opt_facility, opt_flag, opt_header_name, opt_non_empty, opt_sip_uri, ranged,
    tree_name,
};
use crate::ids::UriMatch;

/// Upper bound of Kamailio's `int` parameters that are counts or seconds.
const INT_MAX: i64 = i32::MAX as i64;

/// `[presence]`: the presence module parameters.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// Not used: storage is `[node] data_dir`. Setting it is an error at load.
    #[serde(default, deserialize_with = "opt_non_empty")]
    pub db_url: Option<String>,
    /// Name of the sled tree holding publications.
    #[serde(default = "default_presentity_table", deserialize_with = "tree_name")]
    pub presentity_table: String,
    /// Name of the sled tree holding subscription dialogs.
    #[serde(
        default = "default_active_watchers_table",
        deserialize_with = "tree_name"
    )]
    pub active_watchers_table: String,
    /// Name of the sled tree holding watcher authorization states.
    #[serde(default = "default_watchers_table", deserialize_with = "tree_name")]
    pub watchers_table: String,
    /// Seconds between store sweeps of expired records; ≤ 0 disables the sweep.
    #[serde(default = "default_clean_period")]
    pub clean_period: i64,
    /// Tolerated offset between expected and received CSeq of in-dialog SUBSCRIBEs.
    #[serde(default, deserialize_with = "ranged::<_, u32, 0, INT_MAX>")]
    pub cseq_offset: u32,
    /// Seconds between write-back flushes (`subs_db_mode = 2`); ≤ 0 disables periodic flush.
    #[serde(default = "default_db_update_period")]
    pub db_update_period: i64,
    /// Max seconds a NOTIFY may be held back for coalescing by the notifier.
    #[serde(
        default = "default_waitn_time",
        deserialize_with = "ranged::<_, u32, 1, 3600>"
    )]
    pub waitn_time: u32,
    /// How many times per second the notifier checks for held-back NOTIFYs.
    #[serde(
        default = "default_notifier_poll_rate",
        deserialize_with = "ranged::<_, u32, 1, 1000>"
    )]
    pub notifier_poll_rate: u32,
    /// Notifier workers in DB-only mode; 0 = send NOTIFYs immediately.
    #[serde(
        default = "default_notifier_processes",
        deserialize_with = "ranged::<_, u32, 0, 1024>"
    )]
    pub notifier_processes: u32,
    /// Expired publications are deleted without notifying watchers.
    #[serde(default, deserialize_with = "flag")]
    pub force_delete: bool,
    /// `false` (0) keeps Kamailio's old startup compatibility: publications with very low
    /// expires (`expires ≤ now+1`) are kept at restore instead of dropped.
    #[serde(default = "default_true", deserialize_with = "flag")]
    pub startup_mode: bool,
    /// Seconds subtracted from the Expires returned in the 2xx to a PUBLISH.
    #[serde(default, deserialize_with = "ranged::<_, u32, 0, INT_MAX>")]
    pub expires_offset: u32,
    /// Larger requested Expires (PUBLISH and SUBSCRIBE) are lowered to this.
    #[serde(
        default = "default_max_expires",
        deserialize_with = "ranged::<_, u32, 1, INT_MAX>"
    )]
    pub max_expires: u32,
    /// Smaller non-zero Expires trigger `min_expires_action`; 0 = no minimum.
    #[serde(default, deserialize_with = "ranged::<_, u32, 0, INT_MAX>")]
    pub min_expires: u32,
    /// What to do with an Expires below `min_expires`.
    #[serde(default = "default_min_expires_action")]
    pub min_expires_action: MinExpiresAction,
    /// Contact of our 2xx and NOTIFYs; unset = derived from the first `[sip] listen`
    /// (see `Config::server_address`).
    #[serde(default, deserialize_with = "opt_sip_uri")]
    pub server_address: Option<String>,
    /// Subscription storage mode.
    #[serde(default = "default_subs_db_mode")]
    pub subs_db_mode: SubsDbMode,
    /// Publication storage mode.
    #[serde(default = "default_publ_cache")]
    pub publ_cache: PublCache,
    /// log2 of the number of shards of the subscription actor registry.
    #[serde(
        default = "default_htable_size",
        deserialize_with = "ranged::<_, u8, 1, 16>"
    )]
    pub subs_htable_size: u8,
    /// log2 of the number of shards of the presentity actor registry.
    #[serde(
        default = "default_htable_size",
        deserialize_with = "ranged::<_, u8, 1, 16>"
    )]
    pub pres_htable_size: u8,
    /// Send the first NOTIFY right after the 2xx even without state (empty body).
    #[serde(default = "default_true", deserialize_with = "flag")]
    pub send_fast_notify: bool,
    /// Authorization rules may use the RPID `sphere` of the published state.
    #[serde(default, deserialize_with = "flag")]
    pub enable_sphere_check: bool,
    /// A NOTIFY that times out (408 / Timer F) removes the subscription.
    #[serde(default = "default_true", deserialize_with = "flag")]
    pub timeout_rm_subs: bool,
    /// Batch size when restoring state from the store at start.
    #[serde(
        default = "default_fetch_rows",
        deserialize_with = "ranged::<_, u32, 1, 1000000>"
    )]
    pub fetch_rows: u32,
    /// No effect (sled needs no table locks); `Some` when written, so it is logged once.
    #[serde(default, deserialize_with = "opt_flag")]
    pub db_table_lock_type: Option<bool>,
    /// Level of the presence module's own informational log lines.
    #[serde(default = "default_local_log_level")]
    pub local_log_level: LocalLogLevel,
    /// No effect unless syslog output is configured (it cannot be yet); a syslog facility
    /// name such as `LOG_LOCAL3`.
    #[serde(default, deserialize_with = "opt_facility")]
    pub local_log_facility: Option<String>,
    /// How a NOTIFY reply finds the subscription to remove.
    #[serde(default = "default_subs_remove_match")]
    pub subs_remove_match: SubsRemoveMatch,
    /// Request header carrying per-PUBLISH attributes (`priority=N`), replacing the xavp.
    #[serde(default, deserialize_with = "opt_header_name")]
    pub xavp_cfg: Option<String>,
    /// Aggregation order of publications.
    #[serde(default = "default_retrieve_order")]
    pub retrieve_order: RetrieveOrder,
    /// Fields and directions used when `retrieve_order = 1`.
    #[serde(
        default = "default_retrieve_order_by",
        deserialize_with = "modes::order_by"
    )]
    pub retrieve_order_by: Vec<OrderKey>,
    /// How the user part of URIs is compared.
    #[serde(default, deserialize_with = "values::uri_match")]
    pub sip_uri_match: UriMatch,
    /// Alias of `[cluster] enabled`.
    #[serde(default, deserialize_with = "flag")]
    pub enable_dmq: bool,
    /// Keep every subscription's full attribute set for the debug endpoint.
    #[serde(default = "default_true", deserialize_with = "flag")]
    pub pres_subs_mode: bool,
    /// A new subscription with the same presentity URI and Call-ID replaces the old one.
    #[serde(default, deserialize_with = "flag")]
    pub delete_same_subs: bool,
    /// Expiry timers run per actor (`true`); `false` = only the `clean_period` sweep expires.
    #[serde(default = "default_true", deserialize_with = "flag")]
    pub timer_mode: bool,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            db_url: None,
            presentity_table: default_presentity_table(),
            active_watchers_table: default_active_watchers_table(),
            watchers_table: default_watchers_table(),
            clean_period: default_clean_period(),
            cseq_offset: 0,
            db_update_period: default_db_update_period(),
            waitn_time: default_waitn_time(),
            notifier_poll_rate: default_notifier_poll_rate(),
            notifier_processes: default_notifier_processes(),
            force_delete: false,
            startup_mode: default_true(),
            expires_offset: 0,
            max_expires: default_max_expires(),
            min_expires: 0,
            min_expires_action: default_min_expires_action(),
            server_address: None,
            subs_db_mode: default_subs_db_mode(),
            publ_cache: default_publ_cache(),
            subs_htable_size: default_htable_size(),
            pres_htable_size: default_htable_size(),
            send_fast_notify: default_true(),
            enable_sphere_check: false,
            timeout_rm_subs: default_true(),
            fetch_rows: default_fetch_rows(),
            db_table_lock_type: None,
            local_log_level: default_local_log_level(),
            local_log_facility: None,
            subs_remove_match: default_subs_remove_match(),
            xavp_cfg: None,
            retrieve_order: default_retrieve_order(),
            retrieve_order_by: default_retrieve_order_by(),
            sip_uri_match: UriMatch::CaseSensitive,
            enable_dmq: false,
            pres_subs_mode: default_true(),
            delete_same_subs: false,
            timer_mode: default_true(),
        }
    }
}

impl PresenceConfig {
    /// Interval of the expired-record sweep; `None` when `clean_period ≤ 0`.
    pub fn clean_interval(&self) -> Option<Duration> {
        positive_secs(self.clean_period)
    }

    /// Interval of write-back flushes; `None` when `db_update_period ≤ 0`.
    pub fn db_update_interval(&self) -> Option<Duration> {
        positive_secs(self.db_update_period)
    }

    /// Number of registry shards for subscriptions (`2^subs_htable_size`).
    pub fn subs_shards(&self) -> usize {
        1usize << self.subs_htable_size
    }

    /// Number of registry shards for presentities (`2^pres_htable_size`).
    pub fn pres_shards(&self) -> usize {
        1usize << self.pres_htable_size
    }

    /// Whether held-back NOTIFYs are coalesced by the notifier (Kamailio: only in DB-only
    /// mode with `notifier_processes > 0`).
    pub fn notifier_enabled(&self) -> bool {
        self.subs_db_mode == SubsDbMode::DbOnly && self.notifier_processes > 0
    }
}

fn positive_secs(secs: i64) -> Option<Duration> {
    u64::try_from(secs)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

fn default_presentity_table() -> String {
    String::from("presentity")
}
fn default_active_watchers_table() -> String {
    String::from("active_watchers")
}
fn default_watchers_table() -> String {
    String::from("watchers")
}
fn default_clean_period() -> i64 {
    100
}
fn default_db_update_period() -> i64 {
    100
}
fn default_waitn_time() -> u32 {
    5
}
fn default_notifier_poll_rate() -> u32 {
    10
}
fn default_notifier_processes() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_max_expires() -> u32 {
    3600
}
fn default_min_expires_action() -> MinExpiresAction {
    MinExpiresAction::Reply423
}
fn default_subs_db_mode() -> SubsDbMode {
    SubsDbMode::WriteBack
}
fn default_publ_cache() -> PublCache {
    PublCache::Index
}
fn default_htable_size() -> u8 {
    9
}
fn default_fetch_rows() -> u32 {
    500
}
fn default_local_log_level() -> LocalLogLevel {
    LocalLogLevel::Info
}
fn default_subs_remove_match() -> SubsRemoveMatch {
    SubsRemoveMatch::ToTag
}
fn default_retrieve_order() -> RetrieveOrder {
    RetrieveOrder::ReceivedTime
}
fn default_retrieve_order_by() -> Vec<OrderKey> {
    vec![OrderKey {
        field: OrderField::Priority,
        direction: SortDirection::Desc,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<PresenceConfig, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn empty_table_is_the_default() {
        assert_eq!(parse("").unwrap(), PresenceConfig::default());
    }

    #[test]
    fn flags_accept_integers_and_booleans() {
        let p = parse("force_delete = 1\nsend_fast_notify = false\ntimer_mode = 0").unwrap();
        assert!(p.force_delete);
        assert!(!p.send_fast_notify);
        assert!(!p.timer_mode);
        let e = parse("force_delete = 2").unwrap_err();
        assert!(
            e.message()
                .contains("allowed values are 0 (off) and 1 (on)"),
            "{e}"
        );
    }

    #[test]
    fn durations_keep_kamailio_meaning() {
        let p = parse("clean_period = -1\ndb_update_period = 30").unwrap();
        assert_eq!(p.clean_interval(), None);
        assert_eq!(p.db_update_interval(), Some(Duration::from_secs(30)));
        assert_eq!(parse("clean_period = 0").unwrap().clean_interval(), None);
        assert_eq!(PresenceConfig::default().subs_shards(), 512);
    }

    #[test]
    fn ranges_are_enforced() {
        assert!(parse("max_expires = 0")
            .unwrap_err()
            .message()
            .contains("from 1 to 2147483647"));
        assert!(parse("subs_htable_size = 17")
            .unwrap_err()
            .message()
            .contains("from 1 to 16"));
        assert!(parse("expires_offset = -5").is_err());
        assert_eq!(parse("fetch_rows = 20").unwrap().fetch_rows, 20);
    }

    #[test]
    fn strings_are_checked() {
        assert_eq!(
            parse("server_address = \"sips:pres.example.com:5061\"")
                .unwrap()
                .server_address
                .as_deref(),
            Some("sips:pres.example.com:5061")
        );
        assert!(parse("server_address = \"http://x\"").is_err());
        assert!(parse("server_address = \"sip:\"").is_err());
        assert!(parse("presentity_table = \"a b\"").is_err());
        assert!(parse("local_log_facility = \"LOG_LOCAL9\"")
            .unwrap_err()
            .message()
            .contains("LOG_LOCAL3"));
        assert_eq!(
            parse("xavp_cfg = \"X-Pres\"").unwrap().xavp_cfg.as_deref(),
            Some("X-Pres")
        );
        assert!(parse("xavp_cfg = \"\"").is_err());
        assert_eq!(
            parse("sip_uri_match = 1").unwrap().sip_uri_match,
            UriMatch::CaseInsensitive
        );
        assert!(parse("sip_uri_match = 2")
            .unwrap_err()
            .message()
            .contains("0 (user part"));
    }

    #[test]
    fn notifier_only_in_db_only_mode() {
        assert!(!PresenceConfig::default().notifier_enabled());
        assert!(parse("subs_db_mode = 3").unwrap().notifier_enabled());
        assert!(!parse("subs_db_mode = 3\nnotifier_processes = 0")
            .unwrap()
            .notifier_enabled());
    }
}
