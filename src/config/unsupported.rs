//! Features that can be configured but are not implemented in this build.
//!
//! The node refuses to start while [`unsupported`] returns anything, so a config never
//! silently gets less than it asked for. As a feature lands, delete its entry here (and its
//! test below): this file is the one place to shrink.

use super::modes::SubsDbMode;
use super::Config;

/// ===================== NOT YET IMPLEMENTED — shrink as features land =====================
///
/// One human sentence per configured-but-missing feature, each naming its key.
pub(super) fn unsupported(cfg: &Config) -> Vec<String> {
    let p = &cfg.presence;
    let mut out = Vec::new();

    // Lands with the held-back NOTIFY notifier (DB-only mode).
    if p.subs_db_mode == SubsDbMode::DbOnly && p.notifier_processes > 0 {
        out.push(format!(
            "[presence] notifier_processes = {} with subs_db_mode = 3: the NOTIFY notifier \
             workers are not implemented in this build yet; set notifier_processes = 0",
            p.notifier_processes
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(toml_text: &str) -> Vec<String> {
        unsupported(&Config::from_toml_str(toml_text).unwrap())
    }

    const MEMORY: &str = "[presence]\nsubs_db_mode = 0\npubl_cache = 2\n";

    #[test]
    fn memory_only_allow_is_supported() {
        assert_eq!(list(MEMORY), Vec::<String>::new());
    }

    #[test]
    fn spec_defaults_and_persistent_modes_are_supported() {
        assert_eq!(
            list(""),
            Vec::<String>::new(),
            "subs_db_mode = 2, publ_cache = 1"
        );
        for mode in [0, 1, 2, 3] {
            for cache in [0, 1, 2] {
                let l = list(&format!(
                    "[presence]\nsubs_db_mode = {mode}\npubl_cache = {cache}\n\
                     notifier_processes = 0\n"
                ));
                assert_eq!(l, Vec::<String>::new(), "mode {mode} cache {cache}");
            }
        }
        let l = list("[presence]\nsubs_db_mode = 3\nnotifier_processes = 0\n");
        assert!(l.is_empty(), "DB-only mode is implemented: {l:?}");
    }

    #[test]
    fn each_entry_names_its_key() {
        let l = list("[presence]\nsubs_db_mode = 3\npubl_cache = 2\n");
        assert!(
            l.iter()
                .any(|s| s.starts_with("[presence] notifier_processes = 1")),
            "{l:?}"
        );
        let l = list(&format!(
            "{MEMORY}[authorization]\ndefault_policy = \"rules\"\n"
        ));
        assert!(l.is_empty(), "every policy is implemented: {l:?}");
        let certs = "ca_cert = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n.key\"\n";
        let l = list(&format!("{MEMORY}enable_dmq = 1\n[cluster]\n{certs}"));
        assert!(l.is_empty(), "the cluster is implemented: {l:?}");
    }
}
