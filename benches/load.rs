//! `load`: a UDP load tool for an already running presence server (loopback only):
//! presenced, or Kamailio for the side-by-side comparison (`benches/compare-kamailio.sh`).
//!
//! Scenarios: `publish` (initial PUBLISH → 2xx), `refresh` (initial PUBLISH → 2xx, then a
//! refresh with SIP-If-Match → 2xx), `subscribe` (SUBSCRIBE → 2xx + NOTIFY, NOTIFY answered
//! 200), `cycle` (subscribe as above, then unsubscribe with Expires 0 → 2xx + terminating
//! NOTIFY), `hold` (create N subscriptions, report the server's PSS per subscription),
//! `fanout` (one PUBLISH to N watchers: time until the last NOTIFY), `cluster`
//! (publish at one node → NOTIFY from another: p50/p99), and `echo` / `echo-fanout` (the
//! tool against an in-process trivial responder: the tool's own ceiling for each figure).
//! Rates are found by stepping the offered rate; a step passes when fewer than
//! `--max-fail-pct` of its transactions fail (a timeout or a non-2xx final response is a
//! failure), its p99 latency is within `--max-p99-ms` and the tool sent it on time (a step
//! the tool could not offer measures the tool).
//!
//! Invariants: every run is bounded (`--max-secs` for stepping, `--subs`/`--watchers`/
//! `--tries` and `--timeout`/`--fan-timeout` otherwise); steps never overlap (after a failing
//! step the next waits until the server has gone quiet); one
//! current-thread runtime drives every socket, so the `echo` figure is the ceiling of exactly
//! this tool; every address it sends to is loopback. Output: `name value unit` lines on
//! stdout, then one JSON line; progress goes to stderr. Modules: `load/engine.rs` (sender,
//! receivers, counters), `load/msg.rs` (requests, echo responder), `load/runs.rs` (stepping,
//! hold), `load/fanout.rs` (fanout, cluster), `load/report.rs` (output, /proc readers),
//! `load/scan.rs` (what is read from a datagram, the 200 that answers a NOTIFY).

#[path = "load/engine.rs"]
mod engine;
#[path = "load/fanout.rs"]
mod fanout;
#[path = "load/msg.rs"]
mod msg;
#[path = "load/report.rs"]
mod report;
#[path = "load/runs.rs"]
mod runs;
#[path = "load/scan.rs"]
mod scan;

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

use crate::report::Report;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Publish,
    Refresh,
    Subscribe,
    Cycle,
    Hold,
    Fanout,
    Cluster,
    Echo,
    EchoFanout,
}

/// The shape of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Flow {
    /// PUBLISH → 2xx.
    Publish,
    /// SUBSCRIBE → 2xx and NOTIFY (answered 200).
    Subscribe,
    /// PUBLISH → 2xx, then PUBLISH with SIP-If-Match (refresh, no body) → 2xx.
    Refresh,
    /// SUBSCRIBE → 2xx + NOTIFY, then SUBSCRIBE Expires 0 → 2xx + terminated NOTIFY.
    Cycle,
}

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "UDP load tool for a running presenced node (loopback only)")]
pub(crate) struct Args {
    /// Scenario to run.
    #[arg(long, value_enum)]
    pub(crate) scenario: Scenario,
    /// The running server (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub(crate) server: SocketAddr,
    /// Client UDP sockets (requests are spread round-robin).
    #[arg(long, default_value_t = 8)]
    pub(crate) sockets: usize,
    /// First offered rate (transactions/s).
    #[arg(long, default_value_t = 1000)]
    pub(crate) start: u64,
    /// Offered-rate increment per step.
    #[arg(long, default_value_t = 1000)]
    pub(crate) step: u64,
    /// If > 0: each step offers this many percent more than the last (rounded to 100/s),
    /// instead of adding `--step`; constant relative resolution over a wide range.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) step_pct: f64,
    /// Seconds of sending per step.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) step_secs: f64,
    /// Seconds after which an unanswered transaction is a failure.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) timeout: f64,
    /// Time budget of a stepping run in seconds (no step starts that could overrun it).
    #[arg(long, default_value_t = 90.0)]
    pub(crate) max_secs: f64,
    /// A step passes when its failures are below this percentage.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) max_fail_pct: f64,
    /// A step also fails when its p99 latency exceeds this (ms). 500 = SIP's T1, after which
    /// a real UDP client retransmits: a rate answered only that late is not sustainable, it
    /// is queueing in socket buffers and mailboxes for the length of the step.
    #[arg(long, default_value_t = 500.0)]
    pub(crate) max_p99_ms: f64,
    /// Kernel receive buffer (bytes) of the tool's sockets and of the echo responder's, so
    /// that the echo ceiling is the tool's and not one socket's default buffer; the same as
    /// presenced's `[sip] udp_recv_buffer` and the Kamailio config's `maxbuffer`.
    #[arg(long, default_value_t = 4 << 20)]
    pub(crate) recv_buffer: usize,
    /// After the ladder: this many bisection steps between the best passing rate and the
    /// failing one above it (each halves the uncertainty; rounded to 100/s).
    #[arg(long, default_value_t = 0)]
    pub(crate) refine: u32,
    /// Stop after this many consecutive failing steps.
    #[arg(long, default_value_t = 2)]
    pub(crate) fail_steps: u32,
    /// hold: subscriptions to create (over subs/10 presentities).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) subs: u64,
    /// hold/fanout/cluster: creation rate (subscriptions/s).
    #[arg(long, default_value_t = 2000)]
    pub(crate) hold_rate: u64,
    /// hold/fanout/cluster: seconds to keep answering NOTIFYs before reading RSS after creation.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) settle: f64,
    /// hold: the server's process id (RSS is read from /proc/PID/status).
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// hold: also read memory this many seconds after creation (0 = not), still answering
    /// NOTIFYs: the steady state once quiet dialogs are passivated (`passivate_after`).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) quiet: f64,
    /// echo: which transaction shape to drive through the in-process responder.
    #[arg(long, value_enum, default_value = "publish")]
    pub(crate) flow: Flow,
    /// fanout: watcher counts, one fan-out per value (comma list).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub(crate) watchers: Vec<u64>,
    /// fanout: client sockets the watchers are spread over.
    #[arg(long, default_value_t = 64)]
    pub(crate) fan_sockets: usize,
    /// fanout/cluster: seconds to wait for the NOTIFYs of one PUBLISH.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) fan_timeout: f64,
    /// cluster: the node the watchers subscribe at (loopback); PUBLISHes go to --server.
    #[arg(long)]
    pub(crate) peer: Option<SocketAddr>,
    /// cluster: publish→NOTIFY tries (one watcher and one presentity each).
    #[arg(long, default_value_t = 1000)]
    pub(crate) tries: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub(crate) bench: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let targets = [Some(args.server), args.peer];
    if let Some(bad) = targets.iter().flatten().find(|a| !a.ip().is_loopback()) {
        eprintln!("load: --server/--peer must be loopback, got {bad}");
        return std::process::ExitCode::from(2);
    }
    let mut rep = Report::default();
    let flow_of = |s: Scenario| match s {
        Scenario::Publish => Some(Flow::Publish),
        Scenario::Refresh => Some(Flow::Refresh),
        Scenario::Subscribe => Some(Flow::Subscribe),
        Scenario::Cycle => Some(Flow::Cycle),
        _ => None,
    };
    let result = match args.scenario {
        Scenario::Hold => runs::hold(&args, &mut rep).await,
        Scenario::Fanout => fanout::fanout(&args, false, &mut rep).await,
        Scenario::EchoFanout => fanout::fanout(&args, true, &mut rep).await,
        Scenario::Cluster => fanout::cluster(&args, &mut rep).await,
        Scenario::Echo => match msg::start_echo(10_000, args.recv_buffer) {
            Ok(addr) => runs::stepping(&args, Some(addr), args.flow, &mut rep).await,
            Err(e) => Err(e.to_string()),
        },
        s => match flow_of(s) {
            Some(flow) => runs::stepping(&args, None, flow, &mut rep).await,
            None => Err(format!("unhandled scenario {s:?}")),
        },
    };
    if let Err(e) = result {
        eprintln!("load: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let name = match args.scenario {
        Scenario::Echo => format!("echo-{}", flow_name(args.flow)),
        s => s
            .to_possible_value()
            .map_or("load".into(), |v| v.get_name().to_string()),
    };
    rep.print(&name);
    std::process::ExitCode::SUCCESS
}

/// The command-line name of a flow.
fn flow_name(f: Flow) -> String {
    f.to_possible_value()
        .map_or("?".into(), |v| v.get_name().to_string())
}
