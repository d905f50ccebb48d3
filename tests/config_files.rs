//! Every shipped configuration file under `config/` parses (SPEC §2), and the single-node
//! file starts without unsupported features.

use std::path::{Path, PathBuf};

use presenced::config::{check, Config, PublCache, SubsDbMode};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "toml") {
            out.push(path);
        }
    }
}

#[test]
fn every_file_under_config_loads() {
    let mut files = Vec::new();
    toml_files(&config_dir(), &mut files);
    files.sort();
    assert!(
        files.len() >= 4,
        "expected presenced.toml and 3 cluster files, found {files:?}"
    );
    for f in &files {
        if let Err(e) = Config::load(f) {
            panic!("{e}");
        }
    }
}

#[test]
fn shipped_single_node_config_is_runnable() {
    let path = config_dir().join("presenced.toml");
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg.unsupported(), Vec::<String>::new());
    assert!(
        cfg.noop_parameters().is_empty(),
        "{:?}",
        cfg.noop_parameters()
    );
    let listen: Vec<String> = cfg.sip.listen.iter().map(ToString::to_string).collect();
    assert_eq!(listen, ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]);
    assert_eq!(cfg.admin.listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(cfg.node.data_dir, PathBuf::from("data"));
    assert_eq!(cfg.presence.subs_db_mode, SubsDbMode::WriteBack);
    assert_eq!(cfg.presence.publ_cache, PublCache::Index);
    let line = check(&path).unwrap();
    assert!(
        line.starts_with("config OK: node node-1; sip udp:127.0.0.1:5060"),
        "{line}"
    );

    // The shipped file spells out the defaults.
    assert_eq!(cfg, Config::default());
}

#[test]
fn cluster_configs_form_one_cluster() {
    let dir = config_dir().join("cluster");
    let nodes: Vec<Config> = (1..=3)
        .map(|n| Config::load(&dir.join(format!("node-{n}.toml"))).unwrap())
        .collect();
    for (i, cfg) in nodes.iter().enumerate() {
        assert!(cfg.cluster_enabled());
        assert_eq!(cfg.node.id.as_str(), format!("node-{}", i + 1));
        assert_eq!(cfg.sip.listen[0].addr.port(), 5061 + i as u16);
        assert_eq!(cfg.admin.listen.map(|a| a.port()), Some(8081 + i as u16));
        let mut peers = cfg.cluster.peers.clone();
        let others: Vec<_> = nodes
            .iter()
            .filter(|o| o.node.id != cfg.node.id)
            .map(|o| o.cluster.advertise_addr())
            .collect();
        peers.sort();
        assert_eq!(peers, others);
        assert!(cfg.cluster_enabled());
        assert_eq!(cfg.unsupported(), Vec::<String>::new());
    }
}
