//! The measuring engine: outstanding transactions, per-step counters, the paced sender
//! ([`Ctx::step`]), the receivers (one task per client socket) and the timeout sweeper.
//!
//! Invariants: a transaction is counted exactly once (ok, timeout or error) — it leaves
//! `pending` when counted; nothing stays pending longer than the timeout (the sweeper runs
//! every 10 ms); a two-leg flow (`refresh`, `cycle`) is one transaction whose latency runs
//! from the first request to the end of the second leg. Every NOTIFY received is answered
//! 200. A [`Watch`] records when NOTIFYs carrying a marker reach a set of dialogs (fan-out
//! and cluster scenarios).
//!
//! The client sockets are registered with the reactor for readability only ([`Sock`]): a
//! socket registered for writability too gets an edge-triggered write-space event each time
//! the server consumes one of its datagrams, which wakes the tool for nothing and takes CPU
//! from the server it measures. Sends never wait: a datagram the kernel will not take
//! (send buffer full) fails its transaction.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use presenced::transport::ReadableUdp;

use crate::msg::{build, parse_id, second_leg};
use crate::report::udp_drops;
use crate::scan::scan;
use crate::Flow;

/// A non-blocking client socket on 127.0.0.1, registered for readability only.
pub(crate) struct Sock(ReadableUdp);

impl Sock {
    /// Binds a socket with `buffer`-byte kernel receive and send buffers.
    fn bind(buffer: usize) -> std::io::Result<Sock> {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.set_nonblocking(true)?;
        let r = socket2::SockRef::from(&s);
        r.set_recv_buffer_size(buffer)?;
        r.set_send_buffer_size(buffer)?;
        ReadableUdp::register(s).map(Sock)
    }

    pub(crate) fn local_port(&self) -> u16 {
        self.0.get_ref().local_addr().map_or(0, |a| a.port())
    }

    /// Sends one datagram without waiting.
    pub(crate) fn send_to(&self, bytes: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        self.0.get_ref().send_to(bytes, to)
    }
}

/// One outstanding transaction.
struct Pending {
    step: usize,
    sent: Instant,
    user: u64,
    /// 0 = first leg, 1 = second leg (two-leg flows).
    leg: u8,
    got_final: bool,
    got_notify: bool,
    /// SIP-ETag of the first 2xx (refresh) or the notifier's tag (cycle).
    tag: Option<String>,
}

/// Counters of one step.
#[derive(Default)]
pub(crate) struct StepStats {
    pub(crate) rate: u64,
    pub(crate) sent: u64,
    pub(crate) ok: u64,
    pub(crate) timeouts: u64,
    pub(crate) errors: u64,
    pub(crate) statuses: HashMap<u16, u64>,
    pub(crate) lat_us: Vec<u32>,
    pub(crate) send_secs: f64,
    /// Datagrams the kernel dropped during the step on the server's port / the tool's ports.
    pub(crate) server_drops: u64,
    pub(crate) tool_drops: u64,
}

impl StepStats {
    pub(crate) fn outstanding(&self) -> u64 {
        self.sent - self.ok - self.timeouts - self.errors
    }
    pub(crate) fn failed(&self) -> u64 {
        self.timeouts + self.errors
    }
    pub(crate) fn fail_pct(&self) -> f64 {
        100.0 * self.failed() as f64 / self.sent.max(1) as f64
    }
    /// Latency percentile in ms (`q` in 0..=1); sorts the samples.
    pub(crate) fn pct_ms(&mut self, q: f64) -> f64 {
        self.lat_us.sort_unstable();
        let i = (self.lat_us.len().saturating_sub(1) as f64 * q).round() as usize;
        self.lat_us.get(i).map_or(0.0, |&us| f64::from(us) / 1000.0)
    }
}

/// Dialogs waiting for a NOTIFY whose body contains `marker`.
pub(crate) struct Watch {
    pub(crate) marker: String,
    pub(crate) waiting: HashSet<u64>,
    pub(crate) last: Option<Instant>,
}

/// State shared by the sender, the receivers and the timeout sweeper.
#[derive(Default)]
pub(crate) struct State {
    pending: HashMap<u64, Pending>,
    order: VecDeque<(u64, Instant)>,
    pub(crate) steps: Vec<StepStats>,
    /// Ids of completed transactions, in completion order.
    pub(crate) completed: Vec<u64>,
    pub(crate) notifies: u64,
    pub(crate) late: u64,
    pub(crate) unparsable: u64,
    /// When the last datagram of any kind arrived from the server.
    pub(crate) last_rx: Option<Instant>,
    pub(crate) watch: Option<Watch>,
}

/// A second leg to send: (transaction id, presentity number, tag).
type FollowUp = (u64, u64, String);

impl State {
    fn complete(&mut self, id: u64) {
        if let Some(p) = self.pending.remove(&id) {
            let us = p.sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            let s = &mut self.steps[p.step];
            s.ok += 1;
            s.lat_us.push(us);
            self.completed.push(id);
        }
    }
    fn fail(&mut self, id: u64, status: u16) {
        if let Some(p) = self.pending.remove(&id) {
            let s = &mut self.steps[p.step];
            s.errors += 1;
            *s.statuses.entry(status).or_default() += 1;
        }
    }
    /// Ends the current leg if it is complete: the transaction, or the start of leg 2.
    fn advance(&mut self, id: u64, flow: Flow) -> Option<FollowUp> {
        let p = self.pending.get_mut(&id)?;
        let needs_notify = matches!(flow, Flow::Subscribe | Flow::Cycle);
        if !p.got_final || (needs_notify && !p.got_notify) {
            return None;
        }
        if p.leg == 1 || matches!(flow, Flow::Publish | Flow::Subscribe) {
            self.complete(id);
            return None;
        }
        let Some(tag) = p.tag.clone() else {
            self.fail(id, 0); // a 2xx without SIP-ETag / a NOTIFY without From tag
            return None;
        };
        (p.leg, p.got_final, p.got_notify) = (1, false, false);
        Some((id, p.user, tag))
    }
    fn on_final(
        &mut self,
        id: u64,
        cseq: u32,
        status: u16,
        etag: Option<&str>,
        flow: Flow,
    ) -> Option<FollowUp> {
        let Some(p) = self.pending.get_mut(&id) else {
            self.late += 1;
            return None;
        };
        if u32::from(p.leg) + 1 != cseq {
            return None; // a retransmitted answer to the first leg
        }
        if !(200..300).contains(&status) {
            self.fail(id, status);
            return None;
        }
        p.got_final = true;
        if flow == Flow::Refresh && p.leg == 0 {
            p.tag = etag.map(str::to_string);
        }
        self.advance(id, flow)
    }
    fn on_notify(
        &mut self,
        id: u64,
        terminated: bool,
        from_tag: Option<&str>,
        flow: Flow,
    ) -> Option<FollowUp> {
        self.notifies += 1;
        let p = self.pending.get_mut(&id)?;
        if p.leg == 1 && !terminated {
            return None;
        }
        p.got_notify = true;
        if p.leg == 0 && flow == Flow::Cycle {
            p.tag = from_tag.map(str::to_string);
        }
        self.advance(id, flow)
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

/// Locks the shared state; a poisoned lock only means another task panicked, and the
/// counters are still meaningful, so it is taken over.
pub(crate) fn lock(st: &Mutex<State>) -> MutexGuard<'_, State> {
    st.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything a run needs.
pub(crate) struct Ctx {
    pub(crate) socks: Vec<Arc<Sock>>,
    pub(crate) ports: Vec<u16>,
    server: SocketAddr,
    pub(crate) st: Arc<Mutex<State>>,
    run: String,
    flow: Flow,
    timeout: Duration,
    next_id: u64,
}

impl Ctx {
    /// `n` client sockets on 127.0.0.1 sending to `server`, each with its receiver task and
    /// a `recv_buffer`-byte kernel receive buffer.
    pub(crate) async fn new(
        server: SocketAddr,
        n: usize,
        flow: Flow,
        timeout: f64,
        recv_buffer: usize,
    ) -> std::io::Result<Ctx> {
        let st = Arc::new(Mutex::new(State::default()));
        let run = format!("{:08x}", rand::random::<u32>());
        let (mut socks, mut ports) = (Vec::new(), Vec::new());
        for _ in 0..n.max(1) {
            let s = Arc::new(Sock::bind(recv_buffer)?);
            ports.push(s.local_port());
            tokio::spawn(receiver(s.clone(), st.clone(), run.clone(), flow, server));
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
    pub(crate) async fn step(
        &mut self,
        rate: u64,
        secs: f64,
        count: u64,
        user: &dyn Fn(u64) -> u64,
    ) -> usize {
        let idx = {
            let mut st = lock(&self.st);
            st.steps.push(StepStats {
                rate,
                ..StepStats::default()
            });
            st.steps.len() - 1
        };
        let server_port = [self.server.port()];
        let drops0 = (udp_drops(&server_port), udp_drops(&self.ports));
        let total = ((rate as f64 * secs) as u64).min(count);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            while sent < due {
                let id = self.next_id;
                self.next_id += 1;
                let k = (id % self.socks.len() as u64) as usize;
                let u = user(id);
                let msg = build(self.flow, &self.run, id, u, self.ports[k]);
                {
                    let mut st = lock(&self.st);
                    let now = Instant::now();
                    let p = Pending {
                        step: idx,
                        sent: now,
                        user: u,
                        leg: 0,
                        got_final: false,
                        got_notify: false,
                        tag: None,
                    };
                    st.pending.insert(id, p);
                    st.order.push_back((id, now));
                    st.steps[idx].sent += 1;
                }
                if self.socks[k].send_to(msg.as_bytes(), self.server).is_err() {
                    lock(&self.st).fail(id, 0);
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
        let mut st = lock(&self.st);
        st.steps[idx].server_drops = udp_drops(&server_port).saturating_sub(drops0.0);
        st.steps[idx].tool_drops = udp_drops(&self.ports).saturating_sub(drops0.1);
        idx
    }

    /// Waits until nothing has arrived from the server for `gap` (it answered or shed what
    /// an overloaded step left queued in it), at most `limit`; returns the seconds waited.
    /// Without it the step after an overloaded one would measure the server draining the
    /// backlog, not the rate it is offered.
    pub(crate) async fn quiet(&self, gap: Duration, limit: Duration) -> f64 {
        let start = Instant::now();
        loop {
            let last = lock(&self.st).last_rx.unwrap_or(start);
            let now = Instant::now();
            if now.duration_since(last.max(start)) >= gap || now.duration_since(start) >= limit {
                return start.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Receives on one socket: responses resolve transactions (or start their second leg),
/// NOTIFYs are answered 200 and fed to the transaction and to the [`Watch`].
async fn receiver(
    sock: Arc<Sock>,
    st: Arc<Mutex<State>>,
    run: String,
    flow: Flow,
    server: SocketAddr,
) {
    let mut buf = vec![0u8; 65_536];
    let port = sock.local_port();
    loop {
        let Ok((n, from)) = sock.0.recv_from(&mut buf).await else {
            tokio::task::yield_now().await;
            continue;
        };
        let now = Instant::now();
        let Some(m) = scan(&buf[..n]) else {
            let mut st = lock(&st);
            st.last_rx = Some(now);
            st.unparsable += 1;
            continue;
        };
        if m.status.is_none() {
            let _ = sock.send_to(&m.ok(), from);
        }
        let id = parse_id(m.call_id, &run);
        let mut g = lock(&st);
        g.last_rx = Some(now);
        let follow = match (m.status, id) {
            (Some(status), Some(id)) if status >= 200 => {
                g.on_final(id, m.cseq, status, m.etag, flow)
            }
            (None, Some(id)) if m.method == "NOTIFY" => {
                let terminated = m.sub_state.is_some_and(|v| v.starts_with("terminated"));
                if let Some(w) = g.watch.as_mut() {
                    let marker = w.marker.as_bytes();
                    if memchr::memmem::find(m.body, marker).is_some() && w.waiting.remove(&id) {
                        w.last = Some(now);
                    }
                }
                g.on_notify(id, terminated, m.from_tag, flow)
            }
            _ => None,
        };
        drop(g);
        if let Some((id, u, tag)) = follow {
            if let Some(msg) = second_leg(flow, &run, id, u, port, &tag) {
                if sock.send_to(msg.as_bytes(), server).is_err() {
                    lock(&st).fail(id, 0);
                }
            }
        }
    }
}
