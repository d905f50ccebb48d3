//! Tests of the whole tree: SPEC §2 defaults, error messages naming key + value + allowed
//! values, cross-key rules, and every Kamailio parameter name.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;
use crate::ids::UriMatch;

fn err(text: &str) -> String {
    match Config::from_toml_str(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn empty_file_is_default_and_defaults_match_spec() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c, Config::default());

    assert_eq!(c.node.id.as_str(), "node-1");
    assert_eq!(c.node.data_dir, PathBuf::from("data"));
    assert_eq!(c.node.passivate_after, 5);
    let listen: Vec<String> = c.sip.listen.iter().map(ToString::to_string).collect();
    assert_eq!(listen, ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]);
    assert_eq!(c.sip.max_message_size, 65535);
    assert_eq!(c.sip.udp_recv_buffer, 4 << 20);
    assert_eq!(
        (
            c.sip.sender_header.clone(),
            c.sip.watcher_uri_header.clone()
        ),
        (None, None)
    );
    assert_eq!(c.authorization.default_policy, DefaultPolicy::Allow);
    assert!(!c.cluster.enabled && !c.cluster_enabled());
    assert_eq!(c.cluster.listen, addr("127.0.0.1:5070"));
    assert_eq!(c.cluster.advertise_addr(), addr("127.0.0.1:5070"));
    assert!(c.cluster.peers.is_empty());
    assert_eq!(c.cluster.takeover_grace, 30);
    assert_eq!(
        (&c.cluster.ca_cert, &c.cluster.cert, &c.cluster.key),
        (&None, &None, &None)
    );
    assert_eq!(c.admin.listen, Some(addr("127.0.0.1:8080")));
    assert_eq!(c.admin.token, None);
    assert_eq!(
        (c.log.level.as_str(), c.log.format),
        ("info", LogFormat::Text)
    );
    assert_eq!(c.server_address(), "sip:127.0.0.1:5060");

    let l = &c.limits;
    assert_eq!(
        (l.mailbox_size, l.max_subscriptions_per_presentity),
        (256, 10_000)
    );
    assert_eq!(
        (l.max_publications_per_presentity, l.max_body_size),
        (64, 65_536)
    );
    assert_eq!((l.max_tcp_connections, l.tcp_idle_timeout), (1024, 120));
    assert_eq!(
        (l.max_pending_notifies, l.max_server_transactions),
        (100_000, 200_000)
    );
    assert_eq!(l.retry_after, 5);
}

#[test]
fn presence_defaults_match_spec() {
    let p = Config::default().presence;
    assert_eq!(p.db_url, None);
    assert_eq!(
        (
            p.presentity_table.as_str(),
            p.active_watchers_table.as_str(),
            p.watchers_table.as_str()
        ),
        ("presentity", "active_watchers", "watchers")
    );
    assert_eq!(
        (p.clean_period, p.cseq_offset, p.db_update_period),
        (100, 0, 100)
    );
    assert_eq!(
        (p.waitn_time, p.notifier_poll_rate, p.notifier_processes),
        (5, 10, 1)
    );
    assert!(!p.force_delete && p.startup_mode);
    assert_eq!(
        (p.expires_offset, p.max_expires, p.min_expires),
        (0, 3600, 0)
    );
    assert_eq!(p.min_expires_action, MinExpiresAction::Reply423);
    assert_eq!(p.server_address, None);
    assert_eq!(p.subs_db_mode, SubsDbMode::WriteBack);
    assert_eq!(p.publ_cache, PublCache::Index);
    assert_eq!((p.subs_htable_size, p.pres_htable_size), (9, 9));
    assert!(p.send_fast_notify && !p.enable_sphere_check && p.timeout_rm_subs);
    assert_eq!(p.fetch_rows, 500);
    assert_eq!(p.db_table_lock_type, None);
    assert_eq!(p.local_log_level, LocalLogLevel::Info);
    assert_eq!(p.local_log_facility, None);
    assert_eq!(p.subs_remove_match, SubsRemoveMatch::ToTag);
    assert_eq!(p.xavp_cfg, None);
    assert_eq!(p.retrieve_order, RetrieveOrder::ReceivedTime);
    assert_eq!(
        p.retrieve_order_by,
        [OrderKey {
            field: OrderField::Priority,
            direction: SortDirection::Desc
        }]
    );
    assert_eq!(p.sip_uri_match, UriMatch::CaseSensitive);
    assert!(!p.enable_dmq && p.pres_subs_mode && !p.delete_same_subs && p.timer_mode);
}

/// Every parameter of the Kamailio reference, with a non-default value where one exists.
const ALL_KAMAILIO_PARAMETERS: &str = r#"
[presence]
# db_url is a parameter too, but setting it is an error: see cross_key_db_url.
presentity_table = "pres"
active_watchers_table = "aw"
watchers_table = "w"
clean_period = 0
cseq_offset = 2
db_update_period = -1
waitn_time = 7
notifier_poll_rate = 20
notifier_processes = 2
force_delete = 1
startup_mode = 0
expires_offset = 10
max_expires = 7200
min_expires = 60
min_expires_action = 2
server_address = "sip:10.10.10.10:5060"
subs_db_mode = 3
publ_cache = 0
subs_htable_size = 10
pres_htable_size = 11
send_fast_notify = 0
enable_sphere_check = 1
timeout_rm_subs = 0
fetch_rows = 100
db_table_lock_type = 0
local_log_level = 3
local_log_facility = "LOG_LOCAL3"
subs_remove_match = 1
xavp_cfg = "X-Pres-Attrs"
retrieve_order = 1
retrieve_order_by = "priority, received_time"
sip_uri_match = 1
enable_dmq = 0
pres_subs_mode = 0
delete_same_subs = 1
timer_mode = 1
"#;

#[test]
fn all_kamailio_parameters_are_accepted() {
    let names: Vec<&str> = ALL_KAMAILIO_PARAMETERS
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
        .collect();
    assert_eq!(names.len(), 36, "36 here + db_url = the reference's 37");
    let p = Config::from_toml_str(ALL_KAMAILIO_PARAMETERS)
        .unwrap()
        .presence;
    assert_eq!(p.presentity_table, "pres");
    assert_eq!((p.clean_interval(), p.db_update_interval()), (None, None));
    assert_eq!(
        (p.cseq_offset, p.waitn_time, p.notifier_poll_rate),
        (2, 7, 20)
    );
    assert!(p.force_delete && !p.startup_mode && !p.send_fast_notify && !p.timeout_rm_subs);
    assert_eq!(
        (p.expires_offset, p.max_expires, p.min_expires),
        (10, 7200, 60)
    );
    assert_eq!(p.min_expires_action, MinExpiresAction::Raise);
    assert_eq!(
        (p.subs_db_mode, p.publ_cache),
        (SubsDbMode::DbOnly, PublCache::None)
    );
    assert_eq!((p.subs_shards(), p.pres_shards()), (1024, 2048));
    assert_eq!(p.db_table_lock_type, Some(false));
    assert_eq!(p.local_log_level, LocalLogLevel::Debug);
    assert_eq!(p.subs_remove_match, SubsRemoveMatch::Dialog);
    assert_eq!(p.retrieve_order, RetrieveOrder::OrderBy);
    assert_eq!(p.retrieve_order_by.len(), 2);
    assert_eq!(p.sip_uri_match, UriMatch::CaseInsensitive);
    assert!(p.enable_sphere_check && !p.pres_subs_mode && p.delete_same_subs);

    let c = Config::from_toml_str(ALL_KAMAILIO_PARAMETERS).unwrap();
    assert_eq!(
        c.noop_parameters(),
        ["db_table_lock_type", "local_log_facility"]
    );
    assert!(Config::default().noop_parameters().is_empty());
}

#[test]
fn bad_enum_values_name_key_value_and_allowed() {
    let cases = [
        ("[presence]\nmin_expires_action = 3", "[presence] min_expires_action = 3: allowed values are 1 (reply 423) and 2 (raise to min_expires)"),
        ("[presence]\nsubs_db_mode = 7", "[presence] subs_db_mode = 7: allowed values are 0 (memory only), 1 (write-through), 2 (write-back) and 3 (DB only)"),
        ("[presence]\npubl_cache = 3", "[presence] publ_cache = 3: allowed values are 0 (no cache), 1 (index in memory) and 2 (all in memory)"),
        ("[presence]\nsubs_remove_match = 2", "[presence] subs_remove_match = 2: allowed values are 0"),
        ("[presence]\nretrieve_order = -1", "[presence] retrieve_order = -1: allowed values are 0"),
        ("[presence]\nlocal_log_level = 9", "[presence] local_log_level = 9: allowed values are -5 to -1"),
        ("[presence]\nsip_uri_match = 5", "[presence] sip_uri_match = 5: allowed values are 0"),
        ("[presence]\nforce_delete = 2", "[presence] force_delete = 2: allowed values are 0 (off) and 1 (on)"),
        ("[presence]\nretrieve_order_by = \"size\"", "[presence] retrieve_order_by = \"size\": allowed: a comma list"),
        ("[authorization]\ndefault_policy = \"deny\"", "[authorization] default_policy = \"deny\": unknown variant `deny`, expected one of `allow`, `pending`, `rules`"),
        ("[log]\nformat = \"xml\"", "[log] format = \"xml\": unknown variant `xml`, expected `text` or `json`"),
        ("[sip]\nlisten = [\n  \"udp:127.0.0.1:5060\",\n  \"sctp:1.2.3.4:5\",\n]", "[sip] listen = [ \"udp:127.0.0.1:5060\", \"sctp:1.2.3.4:5\", ]: \"sctp:1.2.3.4:5\" is not a listen address; allowed: \"udp:IP:PORT\""),
        ("[cluster]\nenabled = \"yes\"", "[cluster] enabled = \"yes\": invalid type: string \"yes\", expected 0 or 1"),
        ("[limits]\nmailbox_size = 0", "[limits] mailbox_size = 0: allowed values are integers from 1 to 1048576"),
        ("[sip]\nudp_recv_buffer = 300000000", "[sip] udp_recv_buffer = 300000000: allowed values are integers from 0 to 268435456"),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
        assert!(got.contains("(line "), "{got}");
    }
}

#[test]
fn unknown_keys_and_tables_are_named() {
    let got = err("[presence]\nmax_expire = 10\n");
    assert!(
        got.starts_with("[presence] max_expire: unknown field `max_expire`"),
        "{got}"
    );
    assert!(got.contains("max_expires"), "lists the allowed keys: {got}");
    let got = err("[presense]\n");
    assert!(
        got.starts_with("[presense]: unknown field `presense`"),
        "{got}"
    );
    let got = err("[node]\nid = \"a\"\nid = \"b\"\n");
    assert!(got.contains("duplicate key"), "{got}");
    let got = err("[node\n");
    assert!(got.starts_with("line 1, column"), "{got}");
}

#[test]
fn cross_key_db_url() {
    let got = err("[presence]\ndb_url = \"mysql://k@localhost/k\"\n");
    assert!(
        got.starts_with("[presence] db_url = \"mysql://k@localhost/k\""),
        "{got}"
    );
    assert!(got.contains("[node] data_dir"), "{got}");
}

#[test]
fn cross_key_admin_token() {
    let got = err("[admin]\nlisten = \"0.0.0.0:8080\"\n");
    assert!(
        got.starts_with("[admin] listen = \"0.0.0.0:8080\" is not a loopback"),
        "{got}"
    );
    assert!(got.contains("[admin] token"), "{got}");
    let c = Config::from_toml_str("[admin]\nlisten = \"0.0.0.0:8080\"\ntoken = \"s3cret\"\n");
    assert_eq!(c.unwrap().admin.token.as_deref(), Some("s3cret"));
    assert!(Config::from_toml_str("[admin]\nlisten = \"[::1]:8080\"\n").is_ok());
    assert_eq!(
        Config::from_toml_str("[admin]\nlisten = \"\"\n")
            .unwrap()
            .admin
            .listen,
        None
    );
}

#[test]
fn cross_key_cluster_certificates() {
    let got = err("[cluster]\nenabled = true\ncert = \"n.pem\"\n");
    assert!(
        got.contains("[cluster] ca_cert is required when [cluster] enabled = true"),
        "{got}"
    );
    assert!(got.contains("[cluster] key is required"), "{got}");
    assert!(!got.contains("[cluster] cert is required"), "{got}");
    let got = err("[presence]\nenable_dmq = 1\n");
    assert!(
        got.contains("[cluster] cert is required when [presence] enable_dmq = 1"),
        "{got}"
    );
    let certs = "ca_cert = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n.key\"\n";
    let got = err(&format!(
        "[cluster]\nenabled = 1\nlisten = \"0.0.0.0:5070\"\n{certs}"
    ));
    assert!(got.starts_with("[cluster] advertise is required"), "{got}");
    let got = err(&format!(
        "[cluster]\nenabled = 1\npeers = [\"127.0.0.1:5070\"]\n{certs}"
    ));
    assert!(
        got.contains("[cluster] peers contains this node's own address"),
        "{got}"
    );
    let c = Config::from_toml_str(&format!("[presence]\nenable_dmq = 1\n[cluster]\n{certs}"));
    assert!(c.unwrap().cluster_enabled());
}

#[test]
fn cross_key_expires() {
    let got = err("[presence]\nmin_expires = 4000\n");
    assert!(
        got.starts_with(
            "[presence] min_expires = 4000 is greater than [presence] max_expires = 3600"
        ),
        "{got}"
    );
    let got = err("[presence]\nmax_expires = 60\nexpires_offset = 60\n");
    assert!(
        got.starts_with("[presence] expires_offset = 60 is not below"),
        "{got}"
    );
    let got = err("[presence]\ntimer_mode = 0\nclean_period = 0\n");
    assert!(
        got.starts_with("[presence] timer_mode = 0 with clean_period = 0"),
        "{got}"
    );
    assert!(Config::from_toml_str("[presence]\nmin_expires = 3600\n").is_ok());
}

#[test]
fn cross_key_listen_and_server_address() {
    assert!(err("[sip]\nlisten = []\n").starts_with("[sip] listen = []: at least one"));
    let got = err("[sip]\nlisten = [\"udp:0.0.0.0:5060\"]\n");
    assert!(
        got.starts_with("[presence] server_address is required"),
        "{got}"
    );
    let c = Config::from_toml_str(
        "[sip]\nlisten = [\"tcp:0.0.0.0:5060\"]\n[presence]\nserver_address = \"sip:pres.example.com\"\n",
    )
    .unwrap();
    assert_eq!(c.server_address(), "sip:pres.example.com");
    let c = Config::from_toml_str("[sip]\nlisten = [\"tcp:127.0.0.1:0\"]\n").unwrap();
    assert_eq!(c.server_address(), "sip:127.0.0.1:0;transport=tcp");
    let got = err("[presence]\nserver_address = \"10.0.0.1:5060\"\n");
    assert!(
        got.starts_with("[presence] server_address = \"10.0.0.1:5060\": allowed: a sip:"),
        "{got}"
    );
}

#[test]
fn validate_catches_configs_built_in_code() {
    let mut c = Config::default();
    assert!(c.validate().is_ok());
    c.node.id = crate::ids::NodeId::new("");
    c.sip.listen.clear();
    let got = c.validate().unwrap_err().to_string();
    assert!(got.contains("[node] id = \"\""), "{got}");
    assert!(got.contains("[sip] listen is empty"), "{got}");
}

#[test]
fn load_and_check_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let mut f = std::fs::File::create(&good).unwrap();
    writeln!(
        f,
        "[presence]\nsubs_db_mode = 0\npubl_cache = 2\ndb_table_lock_type = 1"
    )
    .unwrap();
    let line = check(&good).unwrap();
    assert_eq!(
        line,
        "config OK: node node-1; sip udp:127.0.0.1:5060, tcp:127.0.0.1:5060; admin \
         127.0.0.1:8080; storage memory only (subs_db_mode = 0 (memory only), publ_cache = 2 \
         (all in memory)); authorization allow; cluster off; no effect: db_table_lock_type"
    );

    // Something this build cannot do is named with the file (held-back NOTIFY workers).
    let notifier = dir.path().join("notifier.toml");
    std::fs::write(
        &notifier,
        "[presence]\nsubs_db_mode = 3\nnotifier_processes = 2\n",
    )
    .unwrap();
    let got = check(&notifier).unwrap_err().to_string();
    assert!(
        got.starts_with(&format!("{}: not implemented", notifier.display())),
        "{got}"
    );
    assert!(got.contains("notifier_processes"), "{got}");
    assert!(Config::load(&notifier).is_ok());

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[presence]\nmin_expires_action = 3\n").unwrap();
    let got = Config::load(&bad).unwrap_err().to_string();
    assert!(
        got.starts_with(&format!(
            "{}: [presence] min_expires_action = 3:",
            bad.display()
        )),
        "{got}"
    );

    let missing = dir.path().join("missing.toml");
    let got = Config::load(&missing).unwrap_err();
    assert!(matches!(got, ConfigError::Read { .. }), "{got}");
    assert!(got.to_string().contains("missing.toml"), "{got}");
}

/// The `[table] key` lists of the start-up warnings of `text` (which must load).
fn warned(text: &str) -> Vec<Vec<&'static str>> {
    let c = Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    c.warnings().into_iter().map(|w| w.keys).collect()
}

const CERTS: &str = "ca_cert = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n.key\"\n";

#[test]
fn each_warning_fires_and_its_fix_silences_it() {
    let cluster = format!("[cluster]\nenabled = 1\n{CERTS}");
    // (first key, a config that triggers the warning, the same config fixed)
    let cases: Vec<(&str, String, String)> = vec![
        ("[presence] db_table_lock_type", "[presence]\ndb_table_lock_type = 1\n".into(), "[presence]\n".into()),
        ("[presence] local_log_facility", "[presence]\nlocal_log_facility = \"LOG_LOCAL3\"\n".into(), "".into()),
        ("[presence] waitn_time", "[presence]\nwaitn_time = 7\n".into(), "[presence]\nwaitn_time = 5\n".into()),
        ("[presence] notifier_poll_rate", "[presence]\nnotifier_poll_rate = 20\n".into(), "".into()),
        ("[presence] min_expires_action", "[presence]\nmin_expires_action = 2\n".into(), "[presence]\nmin_expires_action = 2\nmin_expires = 60\n".into()),
        ("[presence] retrieve_order_by", "[presence]\nretrieve_order_by = \"received_time\"\n".into(), "[presence]\nretrieve_order_by = \"received_time\"\nretrieve_order = 1\n".into()),
        ("[node] passivate_after", "[node]\npassivate_after = 3600\n".into(), "[node]\npassivate_after = 3599\n".into()),
        ("[node] passivate_after", "[node]\npassivate_after = 30\n[presence]\nsubs_db_mode = 3\nnotifier_processes = 0\n".into(), "[presence]\nsubs_db_mode = 3\nnotifier_processes = 0\n".into()),
        ("[presence] server_address", "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:0.0.0.0:5062\"]\n".into(), "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:0.0.0.0:5062\"]\n[presence]\nserver_address = \"sip:192.0.2.1:5062\"\n".into()),
        ("[authorization] default_policy", "[authorization]\ndefault_policy = \"pending\"\n[admin]\nlisten = \"\"\n".into(), "[authorization]\ndefault_policy = \"pending\"\n".into()),
        ("[admin] token", "[admin]\nlisten = \"\"\ntoken = \"s3cret\"\n".into(), "[admin]\ntoken = \"s3cret\"\n".into()),
        ("[cluster] peers", "[cluster]\npeers = [\"127.0.0.1:5072\"]\n".into(), "[cluster]\nenabled = 1\npeers = [\"127.0.0.1:5072\"]\n".to_string() + CERTS),
        ("[presence] subs_db_mode", format!("[presence]\nsubs_db_mode = 0\n{cluster}"), format!("[presence]\nsubs_db_mode = 1\n{cluster}")),
        ("[cluster] takeover_grace", format!("{cluster}takeover_grace = 3600\n"), format!("{cluster}takeover_grace = 3599\n")),
        ("[limits] max_body_size", "[limits]\nmax_body_size = 1000000\n".into(), "[sip]\nmax_message_size = 1100000\n[limits]\nmax_body_size = 1000000\n".into()),
        ("[limits] max_server_transactions", "[limits]\nmax_server_transactions = 1000\n".into(), "[limits]\nmax_server_transactions = 1000\n[presence]\npres_htable_size = 3\n".into()),
    ];
    for (key, bad, fixed) in &cases {
        let got = warned(bad);
        assert_eq!(got.len(), 1, "{key}: one warning for\n{bad}\ngot {got:?}");
        assert_eq!(got[0][0], *key, "{bad}");
        assert_eq!(
            warned(fixed),
            Vec::<Vec<&str>>::new(),
            "{key} fixed:\n{fixed}"
        );
    }
}

#[test]
fn warning_messages_name_the_key_value_and_the_fix() {
    let c =
        Config::from_toml_str("[cluster]\nlisten = \"127.0.0.1:6000\"\nkey = \"n.key\"\n").unwrap();
    let w = c.warnings();
    assert_eq!(w.len(), 1, "one warning for the whole table: {w:?}");
    assert_eq!(w[0].keys, ["[cluster] listen", "[cluster] key"]);
    assert!(
        w[0].message
            .starts_with("[cluster] listen, [cluster] key set but the cluster is off"),
        "{}",
        w[0].message
    );
    let c = Config::from_toml_str("[node]\npassivate_after = 7200\n").unwrap();
    let m = &c.warnings()[0].message;
    assert!(
        m.starts_with("[node] passivate_after = 7200 is not below [presence] max_expires = 3600"),
        "{m}"
    );
    assert!(m.contains("lower passivate_after"), "{m}");
    let c = Config::from_toml_str("[presence]\ndb_table_lock_type = 0\n").unwrap();
    assert_eq!(
        c.warnings()[0].message,
        "[presence] db_table_lock_type has no effect in presenced; remove it from the config"
    );
    for w in Config::from_toml_str(ALL_KAMAILIO_PARAMETERS)
        .unwrap()
        .warnings()
    {
        assert!(w.message.starts_with(w.keys[0]), "{w:?}");
        assert!(!w.message.contains('\n'), "one line: {w:?}");
    }
    // Passivation off; dialogs shorter than takeover_grace without a cluster: no warning.
    assert!(warned("[node]\npassivate_after = 0\n").is_empty());
    assert!(warned("[node]\npassivate_after = 0\n[presence]\nmax_expires = 10\n").is_empty());
}

#[test]
fn shipped_config_files_give_no_warning() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = vec![dir.join("presenced.toml"), dir.join("docker.toml")];
    files.extend((1..=3).map(|n| dir.join("cluster").join(format!("node-{n}.toml"))));
    for f in files {
        let c = Config::load(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.warnings(), Vec::new(), "{}", f.display());
    }
    assert_eq!(Config::default().warnings(), Vec::new());
}

#[test]
fn check_config_prints_the_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.toml");
    std::fs::write(
        &file,
        "[node]\npassivate_after = 7200\n[presence]\ndb_table_lock_type = 1\n",
    )
    .unwrap();
    let line = check(&file).unwrap();
    assert!(
        line.ends_with(
            "; no effect: db_table_lock_type; warning: [node] passivate_after = 7200 is not \
             below [presence] max_expires = 3600: a dialog is refreshed or expires sooner, so \
             none is ever passivated and memory grows with every dialog; lower \
             passivate_after (0 = never, on purpose)"
        ),
        "{line}"
    );
    assert!(
        !line.contains("warning: [presence] db_table_lock_type"),
        "{line}"
    );
}
