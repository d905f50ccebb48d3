//! `load`: a UDP load tool for an already running presenced node (loopback only).
//!
//! Scenarios: `publish` (initial PUBLISH → 200), `subscribe` (SUBSCRIBE → 200 + NOTIFY,
//! NOTIFY answered 200), `hold` (create N subscriptions, report the server's RSS per
//! subscription) and `echo` (the tool against an in-process trivial responder, so every
//! figure can be compared with the tool's own ceiling). Rates are found by stepping the
//! offered rate; a step passes when fewer than `--max-fail-pct` of its transactions fail
//! (a timeout or a non-2xx final response is a failure).
//!
//! Invariants: every run is bounded (`--max-secs` for stepping, `--subs` and `--timeout`
//! for hold); steps never overlap (a step's transactions are all answered or timed out
//! before the next step starts); one current-thread runtime drives several sockets, so the
//! `echo` figure is the ceiling of exactly this tool. Output: `name value unit` lines on
//! stdout, then one JSON line; progress goes to stderr.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use presenced::sip::{Message, Method, OutResponse};
use tokio::net::UdpSocket;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Publish,
    Subscribe,
    Hold,
    Echo,
}

/// The shape of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Flow {
    /// PUBLISH → 200.
    Publish,
    /// SUBSCRIBE → 200 and NOTIFY (answered 200).
    Subscribe,
}

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "UDP load tool for a running presenced node (loopback only)")]
struct Args {
    /// Scenario to run.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// The running server (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1:5060")]
    server: SocketAddr,
    /// Client UDP sockets (requests are spread round-robin).
    #[arg(long, default_value_t = 8)]
    sockets: usize,
    /// First offered rate (transactions/s).
    #[arg(long, default_value_t = 1000)]
    start: u64,
    /// Offered-rate increment per step.
    #[arg(long, default_value_t = 1000)]
    step: u64,
    /// Seconds of sending per step.
    #[arg(long, default_value_t = 3.0)]
    step_secs: f64,
    /// Seconds after which an unanswered transaction is a failure.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Time budget of a stepping run in seconds (no step starts that could overrun it).
    #[arg(long, default_value_t = 90.0)]
    max_secs: f64,
    /// A step passes when its failures are below this percentage.
    #[arg(long, default_value_t = 0.1)]
    max_fail_pct: f64,
    /// Stop after this many consecutive failing steps.
    #[arg(long, default_value_t = 2)]
    fail_steps: u32,
    /// hold: subscriptions to create (over subs/10 presentities).
    #[arg(long, default_value_t = 10_000)]
    subs: u64,
    /// hold: creation rate (subscriptions/s).
    #[arg(long, default_value_t = 2000)]
    hold_rate: u64,
    /// hold: seconds to keep answering NOTIFYs before reading RSS after creation.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// hold: the server's process id (RSS is read from /proc/PID/status).
    #[arg(long)]
    pid: Option<u32>,
    /// echo: which transaction shape to drive through the in-process responder.
    #[arg(long, value_enum, default_value = "publish")]
    flow: Flow,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One outstanding transaction.
struct Pending {
    step: usize,
    sent: Instant,
    got_final: bool,
    got_notify: bool,
}

impl Pending {
    fn new(step: usize, sent: Instant) -> Pending {
        let (got_final, got_notify) = (false, false);
        Pending {
            step,
            sent,
            got_final,
            got_notify,
        }
    }
}

/// Counters of one step.
#[derive(Default)]
struct StepStats {
    rate: u64,
    sent: u64,
    ok: u64,
    timeouts: u64,
    errors: u64,
    statuses: HashMap<u16, u64>,
    lat_us: Vec<u32>,
    send_secs: f64,
}

impl StepStats {
    fn outstanding(&self) -> u64 {
        self.sent - self.ok - self.timeouts - self.errors
    }
    fn failed(&self) -> u64 {
        self.timeouts + self.errors
    }
    fn fail_pct(&self) -> f64 {
        100.0 * self.failed() as f64 / self.sent.max(1) as f64
    }
    /// Latency percentile in ms (`q` in 0..=1); sorts the samples.
    fn pct_ms(&mut self, q: f64) -> f64 {
        self.lat_us.sort_unstable();
        let i = (self.lat_us.len().saturating_sub(1) as f64 * q).round() as usize;
        self.lat_us.get(i).map_or(0.0, |&us| f64::from(us) / 1000.0)
    }
}

/// State shared by the sender, the receivers and the timeout sweeper.
#[derive(Default)]
struct State {
    pending: HashMap<u64, Pending>,
    order: VecDeque<(u64, Instant)>,
    steps: Vec<StepStats>,
    notifies: u64,
    late: u64,
    unparsable: u64,
}

impl State {
    fn complete(&mut self, id: u64) {
        if let Some(p) = self.pending.remove(&id) {
            let us = p.sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            let s = &mut self.steps[p.step];
            s.ok += 1;
            s.lat_us.push(us);
        }
    }
    fn on_final(&mut self, id: u64, status: u16, flow: Flow) {
        let Some(p) = self.pending.get_mut(&id) else {
            self.late += 1;
            return;
        };
        if (200..300).contains(&status) {
            p.got_final = true;
            if flow == Flow::Publish || p.got_notify {
                self.complete(id);
            }
        } else if let Some(p) = self.pending.remove(&id) {
            let s = &mut self.steps[p.step];
            s.errors += 1;
            *s.statuses.entry(status).or_default() += 1;
        }
    }
    fn on_notify(&mut self, id: u64) {
        self.notifies += 1;
        if let Some(p) = self.pending.get_mut(&id) {
            p.got_notify = true;
            if p.got_final {
                self.complete(id);
            }
        }
    }
    fn sweep(&mut self, timeout: Duration) {
        let now = Instant::now();
        while let Some(&(id, sent)) = self.order.front() {
            if now.duration_since(sent) < timeout {
                break;
            }
            self.order.pop_front();
            if let Some(p) = self.pending.remove(&id) {
                self.steps[p.step].timeouts += 1;
            }
        }
    }
}

/// Everything a run needs.
struct Ctx {
    socks: Vec<Arc<UdpSocket>>,
    ports: Vec<u16>,
    server: SocketAddr,
    st: Arc<Mutex<State>>,
    run: String,
    flow: Flow,
    timeout: Duration,
    next_id: u64,
}

/// Locks the shared state; a poisoned lock only means another task panicked, and the
/// counters are still meaningful, so it is taken over.
fn lock(st: &Mutex<State>) -> MutexGuard<'_, State> {
    st.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ctx {
    async fn new(server: SocketAddr, n: usize, flow: Flow, timeout: f64) -> std::io::Result<Ctx> {
        let st = Arc::new(Mutex::new(State::default()));
        let run = format!("{:08x}", rand::random::<u32>());
        let (mut socks, mut ports) = (Vec::new(), Vec::new());
        for _ in 0..n.max(1) {
            let s = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            ports.push(s.local_addr()?.port());
            tokio::spawn(receiver(s.clone(), st.clone(), run.clone(), flow));
            socks.push(s);
        }
        let timeout = Duration::from_secs_f64(timeout);
        let sweep_st = st.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                lock(&sweep_st).sweep(timeout);
            }
        });
        Ok(Ctx {
            socks,
            ports,
            server,
            st,
            run,
            flow,
            timeout,
            next_id: 0,
        })
    }

    /// Sends one step at `rate`/s for `secs` seconds (or `count` transactions, whichever
    /// ends first), then waits until every transaction of the step is resolved.
    /// `user` maps a transaction id to the presentity number.
    async fn step(&mut self, rate: u64, secs: f64, count: u64, user: &dyn Fn(u64) -> u64) -> usize {
        let idx = {
            let mut st = lock(&self.st);
            st.steps.push(StepStats {
                rate,
                ..StepStats::default()
            });
            st.steps.len() - 1
        };
        let total = ((rate as f64 * secs) as u64).min(count);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            while sent < due {
                let id = self.next_id;
                self.next_id += 1;
                let k = (id % self.socks.len() as u64) as usize;
                let msg = build(self.flow, &self.run, id, user(id), self.ports[k]);
                {
                    let mut st = lock(&self.st);
                    let now = Instant::now();
                    st.pending.insert(id, Pending::new(idx, now));
                    st.order.push_back((id, now));
                    st.steps[idx].sent += 1;
                }
                let sent_ok = self.socks[k].send_to(msg.as_bytes(), self.server).await;
                if sent_ok.is_err() {
                    let mut st = lock(&self.st);
                    if st.pending.remove(&id).is_some() {
                        st.steps[idx].errors += 1;
                    }
                }
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let send_secs = start.elapsed().as_secs_f64();
        lock(&self.st).steps[idx].send_secs = send_secs;
        // Resolution is bounded by the sweeper: nothing stays pending past `timeout`.
        let limit = Instant::now() + self.timeout + Duration::from_millis(500);
        while lock(&self.st).steps[idx].outstanding() > 0 && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        idx
    }
}

/// Receives on one socket: responses resolve transactions, NOTIFYs are answered 200.
async fn receiver(sock: Arc<UdpSocket>, st: Arc<Mutex<State>>, run: String, flow: Flow) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            tokio::task::yield_now().await;
            continue;
        };
        match presenced::sip::parse(&buf[..n]) {
            Ok(Message::Response(r)) if r.status >= 200 => {
                if let Some(id) = parse_id(&r.call_id, &run) {
                    lock(&st).on_final(id, r.status, flow);
                }
            }
            Ok(Message::Response(_)) => {}
            Ok(Message::Request(req)) => {
                let ok = OutResponse::to(&req, 200, "OK", from).encode("");
                let _ = sock.send_to(&ok, from).await;
                if req.method == Method::Notify {
                    if let Some(id) = parse_id(&req.call_id, &run) {
                        lock(&st).on_notify(id);
                    }
                }
            }
            Err(_) => lock(&st).unparsable += 1,
        }
    }
}

fn parse_id(call_id: &str, run: &str) -> Option<u64> {
    let rest = call_id.strip_prefix("lt")?.strip_prefix(run)?;
    rest.strip_prefix('-')?.parse().ok()
}

/// The request of transaction `id` to presentity `user{u}`.
fn build(flow: Flow, run: &str, id: u64, u: u64, port: u16) -> String {
    let uri = format!("sip:user{u}@example.com");
    let (method, from, extra, body) = match flow {
        Flow::Publish => (
            "PUBLISH",
            uri.clone(),
            "Content-Type: application/pidf+xml\r\n".to_string(),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{uri}\">\r\n<tuple id=\"t{id}\"><status><basic>open</basic></status></tuple>\r\n</presence>\r\n"
            ),
        ),
        Flow::Subscribe => (
            "SUBSCRIBE",
            format!("sip:watcher{id}@example.com"),
            format!("Contact: <sip:watcher@127.0.0.1:{port}>\r\n"),
            String::new(),
        ),
    };
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKlt{run}x{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=f{run}x{id}\r\n\
         To: <{uri}>\r\n\
         Call-ID: lt{run}-{id}\r\n\
         CSeq: 1 {method}\r\n\
         Event: presence\r\n\
         Expires: 3600\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The trivial responder of `--scenario echo`, on its own thread: every request gets a 200
/// copying its headers (body dropped); a SUBSCRIBE also gets a NOTIFY to its Contact port.
fn start_echo() -> std::io::Result<SocketAddr> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let addr = sock.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            let head = text.split("\r\n\r\n").next().unwrap_or("");
            let mut lines = head.split("\r\n");
            let first = lines.next().unwrap_or("");
            if first.starts_with("SIP/2.0") {
                continue; // a response (to our NOTIFY)
            }
            let mut resp = String::from("SIP/2.0 200 OK\r\n");
            let (mut hdr_from, mut hdr_to, mut call_id) = ("", "", "");
            for l in lines {
                let (name, value) = l.split_once(':').unwrap_or((l, ""));
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" | "content-type" => continue,
                    "from" => hdr_from = value.trim(),
                    "to" => hdr_to = value.trim(),
                    "call-id" => call_id = value.trim(),
                    _ => {}
                }
                resp.push_str(l);
                resp.push_str("\r\n");
            }
            resp.push_str("Content-Length: 0\r\n\r\n");
            let _ = sock.send_to(resp.as_bytes(), from);
            if first.starts_with("SUBSCRIBE ") {
                let notify = format!(
                    "NOTIFY sip:watcher@{from} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKe{call_id}\r\n\
                     Max-Forwards: 70\r\nFrom: {hdr_to};tag=echo\r\nTo: {hdr_from}\r\nCall-ID: {call_id}\r\n\
                     CSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=3600\r\n\
                     Content-Length: 0\r\n\r\n"
                );
                let _ = sock.send_to(notify.as_bytes(), from);
            }
        }
    });
    Ok(addr)
}

/// Resident set size of `pid` in KiB (VmRSS of /proc/PID/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Output: (name, JSON value, unit); a figure with an empty unit only goes to the JSON line.
#[derive(Default)]
struct Report(Vec<(String, String, &'static str)>);

impl Report {
    fn num(&mut self, name: &str, v: impl ToString, unit: &'static str) {
        self.0.push((name.to_string(), v.to_string(), unit));
    }
    fn print(&self, scenario: &str) {
        let mut j = format!("{{\"scenario\":\"{scenario}\"");
        for (n, v, u) in &self.0 {
            if !u.is_empty() {
                println!("{scenario}_{n} {v} {u}");
            }
            let _ = write!(j, ",\"{n}\":{v}");
        }
        j.push('}');
        println!("{j}");
    }
}

/// One step as a JSON object (error statuses as `{"503":n}`).
fn step_json(s: &mut StepStats) -> String {
    let (p50, p99) = (s.pct_ms(0.5), s.pct_ms(0.99));
    let st: Vec<String> = s
        .statuses
        .iter()
        .map(|(c, n)| format!("\"{c}\":{n}"))
        .collect();
    format!(
        "{{\"rate\":{},\"sent\":{},\"ok\":{},\"timeouts\":{},\"errors\":{},\"statuses\":{{{}}},\"fail_pct\":{:.3},\"send_secs\":{:.2},\"p50_ms\":{p50:.2},\"p99_ms\":{p99:.2}}}",
        s.rate, s.sent, s.ok, s.timeouts, s.errors, st.join(","), s.fail_pct(), s.send_secs
    )
}

/// `--scenario echo`: stepping against the in-process responder.
async fn echo(args: &Args, rep: &mut Report) -> Result<(), String> {
    let addr = start_echo().map_err(|e| e.to_string())?;
    stepping(args, Some(addr), args.flow, rep).await
}

/// Offered-rate stepping: the highest step with fewer than `max_fail_pct` failures.
/// `server` overrides `--server` (for echo).
async fn stepping(
    args: &Args,
    server: Option<SocketAddr>,
    flow: Flow,
    rep: &mut Report,
) -> Result<(), String> {
    let server = server.unwrap_or(args.server);
    let mut ctx = Ctx::new(server, args.sockets, flow, args.timeout)
        .await
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let (mut rate, mut fails, mut best, mut first_fail) = (args.start, 0u32, None, None);
    let mut budget_hit = false;
    loop {
        if t0.elapsed().as_secs_f64() + args.step_secs + args.timeout + 1.0 > args.max_secs {
            budget_hit = true;
            break;
        }
        let idx = ctx.step(rate, args.step_secs, u64::MAX, &|id| id).await;
        let pass = {
            let mut st = lock(&ctx.st);
            let s = &mut st.steps[idx];
            eprintln!("step {}", step_json(s));
            s.fail_pct() < args.max_fail_pct
        };
        if pass {
            best = Some(idx);
            fails = 0;
        } else {
            first_fail.get_or_insert(rate);
            fails += 1;
            if fails >= args.fail_steps {
                break;
            }
        }
        rate += args.step;
        // Let the server drain its queues so one step's backlog does not bleed into the next.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut st = lock(&ctx.st);
    if let Some(i) = best {
        let s = &mut st.steps[i];
        rep.num("best_rate", s.rate, "req/s");
        let ok_rate = format!("{:.0}", s.ok as f64 / s.send_secs);
        rep.num("best_ok_rate", ok_rate, "ok/s");
        rep.num("best_fail_pct", format!("{:.3}", s.fail_pct()), "%");
        rep.num("best_p50_latency", format!("{:.2}", s.pct_ms(0.5)), "ms");
        rep.num("best_p99_latency", format!("{:.2}", s.pct_ms(0.99)), "ms");
    } else {
        rep.num("best_rate", 0, "req/s");
    }
    let first_fail = first_fail.map_or("null".into(), |r: u64| r.to_string());
    rep.num("first_failing_rate", first_fail, "req/s");
    rep.num("budget_exhausted", budget_hit, "bool");
    rep.num("steps", st.steps.len(), "count");
    rep.num("notifies_answered", st.notifies, "count");
    rep.num("late_answers", st.late, "count");
    rep.num("unparsable", st.unparsable, "count");
    rep.num("elapsed", format!("{:.1}", t0.elapsed().as_secs_f64()), "s");
    let steps: Vec<String> = st.steps.iter_mut().map(step_json).collect();
    rep.num("steps_detail", format!("[{}]", steps.join(",")), "");
    Ok(())
}

/// Creates `--subs` subscriptions over `--subs`/10 presentities and reports RSS growth.
async fn hold(args: &Args, rep: &mut Report) -> Result<(), String> {
    let pid = args.pid.ok_or("hold needs --pid PID of the server")?;
    let before = rss_kib(pid).ok_or(format!("cannot read VmRSS of pid {pid}"))?;
    let mut ctx = Ctx::new(args.server, args.sockets, Flow::Subscribe, args.timeout)
        .await
        .map_err(|e| e.to_string())?;
    let presentities = (args.subs / 10).max(1);
    let t0 = Instant::now();
    let secs = args.subs as f64 / args.hold_rate.max(1) as f64 + 1.0;
    let idx = ctx
        .step(args.hold_rate, secs, args.subs, &|id| id % presentities)
        .await;
    let created_in = t0.elapsed().as_secs_f64();
    // Keep answering (retransmitted) NOTIFYs while the server settles.
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let after = rss_kib(pid).ok_or(format!("cannot read VmRSS of pid {pid}"))?;
    let mut st = lock(&ctx.st);
    let s = &mut st.steps[idx];
    eprintln!("hold {}", step_json(s));
    let ok = s.ok;
    rep.num("subscriptions_created", ok, "count");
    rep.num("subscriptions_failed", s.failed(), "count");
    rep.num("presentities", presentities, "count");
    rep.num("creation_time", format!("{created_in:.1}"), "s");
    rep.num("p99_latency", format!("{:.2}", s.pct_ms(0.99)), "ms");
    rep.num("rss_baseline", before, "KiB");
    rep.num("rss_after", after, "KiB");
    let per = (after.saturating_sub(before) * 1024) as f64 / ok.max(1) as f64;
    rep.num("rss_per_subscription", format!("{per:.0}"), "bytes");
    rep.num("notifies_answered", st.notifies, "count");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !args.server.ip().is_loopback() {
        eprintln!("load: --server must be loopback, got {}", args.server);
        return std::process::ExitCode::from(2);
    }
    let mut rep = Report::default();
    let (name, result) = match (args.scenario, args.flow) {
        (Scenario::Hold, _) => ("hold", hold(&args, &mut rep).await),
        (Scenario::Publish, _) => (
            "publish",
            stepping(&args, None, Flow::Publish, &mut rep).await,
        ),
        (Scenario::Subscribe, _) => (
            "subscribe",
            stepping(&args, None, Flow::Subscribe, &mut rep).await,
        ),
        (Scenario::Echo, Flow::Publish) => ("echo-publish", echo(&args, &mut rep).await),
        (Scenario::Echo, Flow::Subscribe) => ("echo-subscribe", echo(&args, &mut rep).await),
    };
    if let Err(e) = result {
        eprintln!("load: {e}");
        return std::process::ExitCode::FAILURE;
    }
    rep.print(name);
    std::process::ExitCode::SUCCESS
}
