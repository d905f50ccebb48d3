//! The configuration tree: one TOML file (`--config PATH`), SPEC §2.
//!
//! Owns parsing and checking of every table: `[node]`, `[sip]`, `[presence]` (Kamailio's
//! module parameters, same names and integer semantics), `[authorization]`, `[cluster]`,
//! `[admin]`, `[log]`, `[limits]`. Invariants:
//!
//! * Every key is optional and has a named default; `Config::default()` equals an empty file.
//! * Unknown keys and bad values are rejected at load with a message naming the key, the
//!   value and what is allowed (`[presence] min_expires_action = 3: allowed values are …`).
//! * A loaded `Config` is coherent: cross-key rules (`validate`) have passed. Kamailio
//!   integer modes are typed enums; the rest of the crate never sees magic numbers.
//! * What is configured but not implemented yet is listed by [`Config::unsupported`] (one
//!   function in `unsupported.rs`); the node refuses to start while it is non-empty.
//!
//! Sans-IO apart from [`Config::load`]/[`check`], which read the one file.

mod cluster;
mod limits;
mod locate;
mod modes;
mod presence;
mod tables;
mod unsupported;
mod validate;
pub use validate::ConfigWarning;
mod values;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use cluster::ClusterConfig;
pub use limits::LimitsConfig;
pub use modes::{
    LocalLogLevel, MinExpiresAction, OrderField, OrderKey, PublCache, RetrieveOrder, SortDirection,
    SubsDbMode, SubsRemoveMatch,
};
pub use presence::PresenceConfig;
pub use tables::{
    AdminConfig, AuthorizationConfig, DefaultPolicy, LogConfig, LogFormat, NodeConfig, SipConfig,
};
pub use values::{ListenAddr, Proto};

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`: identity, storage directory, actor passivation.
    #[serde(default)]
    pub node: NodeConfig,
    /// `[sip]`: listen addresses and SIP-level options.
    #[serde(default)]
    pub sip: SipConfig,
    /// `[presence]`: Kamailio's presence module parameters.
    #[serde(default)]
    pub presence: PresenceConfig,
    /// `[authorization]`: watcher authorization policy.
    #[serde(default)]
    pub authorization: AuthorizationConfig,
    /// `[cluster]`: replication between nodes.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// `[admin]`: the debug/admin HTTP endpoint.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[log]`: log filter and format.
    #[serde(default)]
    pub log: LogConfig,
    /// `[limits]`: capacity bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or bad value.
    #[error("{}", match location {
        Some(l) => format!("{l}: {message} (line {line})"),
        None => format!("line {line}, column {column}: {message}"),
    })]
    Parse {
        /// `[table] key = value` when it could be determined.
        location: Option<String>,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Keys that are valid alone but not together; one sentence each, naming the keys.
    #[error("{}", problems.join("; "))]
    Invalid {
        /// The problems, one sentence each.
        problems: Vec<String>,
    },
    /// Configured features this build does not implement ([`Config::unsupported`]).
    #[error("not implemented in this build: {}", features.join("; "))]
    Unsupported {
        /// One sentence per feature, naming its key.
        features: Vec<String>,
    },
    /// An error in a named file.
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error.
        error: Box<ConfigError>,
    },
}

impl Config {
    /// Reads, parses and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text).map_err(|e| ConfigError::InFile {
            path: path.to_path_buf(),
            error: Box::new(e),
        })
    }

    /// Parses and checks TOML text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the cross-key rules (run by [`Config::from_toml_str`]; call it on a config
    /// built in code).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = validate::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    /// Replication is on: `[cluster] enabled` or its alias `[presence] enable_dmq`.
    pub fn cluster_enabled(&self) -> bool {
        self.cluster.enabled || self.presence.enable_dmq
    }

    /// The Contact of our 2xx and NOTIFYs: `[presence] server_address`, or the SIP URI of
    /// the first `[sip] listen` address. With port 0 the node should derive it from the
    /// bound address instead ([`ListenAddr::sip_uri`]).
    pub fn server_address(&self) -> String {
        match (&self.presence.server_address, self.sip.listen.first()) {
            (Some(a), _) => a.clone(),
            (None, Some(l)) => l.sip_uri(),
            // Unreachable for a validated config (listen is non-empty).
            (None, None) => String::from("sip:127.0.0.1:5060"),
        }
    }

    /// The `[presence]` parameters that are set but have no effect in presenced; the node
    /// logs each once at start.
    pub fn noop_parameters(&self) -> Vec<&'static str> {
        validate::noop_parameters(self)
    }

    /// Features configured but not implemented in this build, one sentence each naming the
    /// key. The node refuses to start when this is non-empty.
    pub fn unsupported(&self) -> Vec<String> {
        unsupported::unsupported(self)
    }

    /// One line describing the config: listen addresses, storage mode, cluster.
    pub fn summary(&self) -> String {
        validate::summary(self)
    }
}

/// `presenced --check-config PATH`: loads the file and returns `config OK: <summary>`, or
/// the error the node would fail to start with (including unsupported features).
pub fn check(path: &Path) -> Result<String, ConfigError> {
    let cfg = Config::load(path)?;
    let features = cfg.unsupported();
    if !features.is_empty() {
        return Err(ConfigError::InFile {
            path: path.to_path_buf(),
            error: Box::new(ConfigError::Unsupported { features }),
        });
    }
    Ok(format!("config OK: {}", cfg.summary()))
}

fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let (location, (line, column)) = match e.span() {
        Some(span) => (
            locate::locate(text, span.clone()),
            locate::line_col(text, span.start),
        ),
        None => (None, (1, 1)),
    };
    ConfigError::Parse {
        location,
        line,
        column,
        message: e.message().trim().lines().collect::<Vec<_>>().join("; "),
    }
}

#[cfg(test)]
mod tests;
