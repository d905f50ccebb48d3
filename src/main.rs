//! The `presenced` binary: parses the command line, sets up logging, runs a node in an actix
//! System until SIGTERM/SIGINT. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use presenced::config::{self, Config, LogFormat};

/// A clustered SIP presence server (Kamailio's presence module as a standalone node).
#[derive(Parser, Debug)]
#[command(name = "presenced", version, about)]
struct Cli {
    /// Run with this configuration file (every key optional; see config/presenced.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Only check this configuration file and print a summary.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Call a JSON-RPC method of a running node's admin endpoint, like kamcmd
    /// (e.g. `presenced ctl presence.presentity_list full`).
    Ctl {
        /// The admin endpoint.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The [admin] token (default: $PRESENCED_ADMIN_TOKEN, which keeps it out of `ps`).
        #[arg(long)]
        token: Option<String>,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The method, e.g. presence.presentity_list (system.listMethods lists them).
        method: String,
        /// Its parameters, in Kamailio's order.
        args: Vec<String>,
    },
    /// Create the certificates of the cluster's mutual TLS.
    Cert {
        #[command(subcommand)]
        action: CertCmd,
    },
}

#[derive(clap::Subcommand, Debug)]
enum CertCmd {
    /// Create the cluster CA: DIR/ca.crt and DIR/ca.key (never overwrites).
    CreateCa {
        /// Where to write the files.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Create DIR/ID.crt and DIR/ID.key for node ID, signed by DIR/ca.crt + DIR/ca.key.
    CreateNode {
        /// Where the CA is and the files go.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The node id (`[node] id`), which the certificate names.
        #[arg(long)]
        id: String,
    },
}

/// jemalloc instead of glibc's malloc (feature `jemalloc`, on by default). Measured with
/// `benches/compare-kamailio.sh`-style runs on 2 cores: PUBLISH rate +70 %, subscribe +
/// unsubscribe +20 %, and memory of passivated dialogs returned to the kernel (glibc kept
/// it: freed actor memory sat on pages shared with long-lived records).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start-up: purging runs on jemalloc's own background
/// thread (never in a request's path), and unused dirty pages are returned after 5 s.
/// `_RJEM_MALLOC_CONF` in the environment overrides them (this build's symbols carry the
/// `_rjem_` prefix, so a plain `MALLOC_CONF` is not read).
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cli = match cli.command {
        Some(Command::Cert { action }) => {
            let made = match action {
                CertCmd::CreateCa { dir } => presenced::cluster::certs::create_ca(&dir),
                CertCmd::CreateNode { dir, id } => {
                    presenced::cluster::certs::create_node(&dir, &id)
                }
            };
            return match made {
                Ok(f) => {
                    println!("wrote {} and {}", f.cert.display(), f.key.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("presenced cert: {e}");
                    ExitCode::from(1)
                }
            };
        }
        _ => cli,
    };
    if let Some(Command::Ctl {
        url,
        token,
        json,
        method,
        args,
    }) = cli.command
    {
        let token = token.or_else(|| std::env::var("PRESENCED_ADMIN_TOKEN").ok());
        return match presenced::ctl::run(&url, token.as_deref(), &method, &args, json) {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("presenced ctl: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(path) = cli.check_config {
        return match config::check(&path) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("presenced: {e}");
                ExitCode::from(2)
            }
        };
    }
    let cfg = match cli.config {
        Some(path) => match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("presenced: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    init_logging(&cfg);
    let system = actix::System::new();
    let result = system.block_on(async {
        let node = presenced::node::start(&cfg).await?;
        wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown(Duration::from_millis(500)).await;
        Ok::<(), presenced::node::StartError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("presenced: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cfg: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: journald and `docker logs` get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
