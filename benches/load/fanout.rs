//! The NOTIFY-timing scenarios: `fanout` (one PUBLISH to N watchers of one presentity,
//! time until the last NOTIFY carrying it arrives) and `cluster` (PUBLISH at one node,
//! time until the NOTIFY of a watcher subscribed at another node arrives).
//!
//! Invariants: only dialogs whose SUBSCRIBE completed (2xx + first NOTIFY) are waited for;
//! a NOTIFY counts only if its body carries the marker of the PUBLISH being timed (so a
//! retransmitted initial NOTIFY is never mistaken for the fan-out); every wait is bounded
//! (`--fan-timeout`), and what never arrived is reported as `missing`, not hidden.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::engine::{lock, Ctx, Watch};
use crate::msg::{marked_publish, start_echo};
use crate::report::{step_json, Report};
use crate::{Args, Flow};

/// Subscribes `n` dialogs (ids from 0) at `server` to presentity `user(id)` and returns
/// the context with the ids that completed.
async fn subscribe_all(
    args: &Args,
    server: SocketAddr,
    sockets: usize,
    n: u64,
    user: &dyn Fn(u64) -> u64,
) -> Result<(Ctx, Vec<u64>, u64), String> {
    let mut ctx = Ctx::new(
        server,
        sockets,
        Flow::Subscribe,
        args.timeout,
        args.recv_buffer,
    )
    .await
    .map_err(|e| e.to_string())?;
    let secs = n as f64 / args.hold_rate.max(1) as f64 + 1.0;
    let idx = ctx.step(args.hold_rate, secs, n, user).await;
    // Let retransmissions of the initial NOTIFYs die down before timing anything.
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let mut st = lock(&ctx.st);
    eprintln!("setup {}", step_json(&mut st.steps[idx]));
    let failed = st.steps[idx].failed();
    let ids = st.completed.clone();
    drop(st);
    Ok((ctx, ids, failed))
}

/// Sends a PUBLISH carrying `marker` for presentity `u` to `to` and waits until every
/// dialog in `ids` got a NOTIFY carrying it (or `limit`). Returns (time to the last NOTIFY
/// received, dialogs still missing).
async fn time_notifies(
    ctx: &Ctx,
    to: SocketAddr,
    u: u64,
    marker: String,
    ids: HashSet<u64>,
    limit: Duration,
) -> Result<(Option<Duration>, usize), String> {
    let msg = marked_publish(u, &marker, ctx.ports[0]);
    lock(&ctx.st).watch = Some(Watch {
        marker,
        waiting: ids,
        last: None,
    });
    let t0 = Instant::now();
    ctx.socks[0]
        .send_to(msg.as_bytes(), to)
        .map_err(|e| e.to_string())?;
    while t0.elapsed() < limit
        && lock(&ctx.st)
            .watch
            .as_ref()
            .is_some_and(|w| !w.waiting.is_empty())
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let w = lock(&ctx.st).watch.take().ok_or("watch vanished")?;
    Ok((w.last.map(|l| l.duration_since(t0)), w.waiting.len()))
}

/// `--scenario fanout`: for each N of `--watchers`, N dialogs (over `--fan-sockets`
/// sockets) to one fresh presentity, then one PUBLISH. With `echo`, against the in-process
/// responder (the tool's own fan-out ceiling).
pub(crate) async fn fanout(args: &Args, echo: bool, rep: &mut Report) -> Result<(), String> {
    for &n in &args.watchers {
        let server = if echo {
            start_echo(n as usize, args.recv_buffer).map_err(|e| e.to_string())?
        } else {
            args.server
        };
        let u = (1u64 << 40) + u64::from(rand::random::<u32>());
        let (ctx, ids, failed) = subscribe_all(args, server, args.fan_sockets, n, &|_| u).await?;
        let ok = ids.len();
        let marker = format!("fan{:08x}", rand::random::<u32>());
        let limit = Duration::from_secs_f64(args.fan_timeout);
        let ids: HashSet<u64> = ids.into_iter().collect();
        let (last, missing) = time_notifies(&ctx, server, u, marker, ids, limit).await?;
        let ms = last.map_or("null".into(), |d| {
            format!("{:.1}", d.as_secs_f64() * 1000.0)
        });
        eprintln!("fanout n={n} watchers={ok} setup_failed={failed} last_notify_ms={ms} missing={missing}");
        rep.num(&format!("{n}_watchers"), ok, "count");
        rep.num(&format!("{n}_setup_failed"), failed, "count");
        rep.num(&format!("{n}_time"), ms, "ms");
        rep.num(&format!("{n}_missing"), missing, "count");
    }
    Ok(())
}

/// `--scenario cluster`: `--tries` dialogs at `--peer`, each to its own presentity; then,
/// one at a time, a PUBLISH for each presentity at `--server` and the time until the
/// watcher's NOTIFY (sent by the peer) arrives.
pub(crate) async fn cluster(args: &Args, rep: &mut Report) -> Result<(), String> {
    let peer = args
        .peer
        .ok_or("cluster needs --peer ADDR (the node watchers subscribe at)")?;
    let base = (1u64 << 41) + (u64::from(rand::random::<u16>()) << 20);
    let (ctx, ids, failed) =
        subscribe_all(args, peer, args.sockets, args.tries, &|id| base + id).await?;
    let run = format!("{:08x}", rand::random::<u32>());
    let limit = Duration::from_secs_f64(args.fan_timeout.min(2.0));
    let (mut lat_us, mut missing) = (Vec::new(), 0usize);
    for (i, &id) in ids.iter().enumerate() {
        let one: HashSet<u64> = [id].into_iter().collect();
        let marker = format!("cl{run}x{i}");
        match time_notifies(&ctx, args.server, base + id, marker, one, limit).await? {
            (Some(d), 0) => lat_us.push(d.as_micros() as u64),
            _ => missing += 1,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    lat_us.sort_unstable();
    let pct = |q: f64| {
        let i = (lat_us.len().saturating_sub(1) as f64 * q).round() as usize;
        lat_us
            .get(i)
            .map_or("null".into(), |&us| format!("{:.3}", us as f64 / 1000.0))
    };
    eprintln!(
        "cluster tries={} missing={missing} setup_failed={failed}",
        ids.len()
    );
    rep.num("tries", ids.len(), "count");
    rep.num("setup_failed", failed, "count");
    rep.num("missing", missing, "count");
    rep.num("p50_latency", pct(0.5), "ms");
    rep.num("p90_latency", pct(0.9), "ms");
    rep.num("p99_latency", pct(0.99), "ms");
    rep.num("max_latency", pct(1.0), "ms");
    Ok(())
}
