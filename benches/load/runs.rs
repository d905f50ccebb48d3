//! The rate scenarios (offered-rate stepping) and the memory scenario (`hold`).
//!
//! Invariants: steps never overlap (each waits until all its transactions are resolved),
//! a stepping run never starts a step that could overrun `--max-secs`, and `best_rate` is
//! the highest step whose failures (timeouts + non-2xx) are below `--max-fail-pct` and whose
//! p99 latency is within `--max-p99-ms`, among the steps the tool managed to send on time
//! (within 5 % of `--step-secs`). The ladder (+`--step-pct` % or +`--step` per step) ends
//! after `--fail-steps` consecutive failing steps; `--refine N` then bisects N times between
//! the best passing rate and the lowest failing one above it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::engine::{lock, Ctx};
use crate::report::{pss_tree_kib, rss_kib, step_json, Report};
use crate::{Args, Flow};

/// Offered-rate stepping of `flow` against `server` (default `--server`).
pub(crate) async fn stepping(
    args: &Args,
    server: Option<SocketAddr>,
    flow: Flow,
    rep: &mut Report,
) -> Result<(), String> {
    let server = server.unwrap_or(args.server);
    let mut ctx = Ctx::new(server, args.sockets, flow, args.timeout, args.recv_buffer)
        .await
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let (mut rate, mut fails, mut best, mut first_fail) = (args.start, 0u32, None, None);
    let mut budget_hit = false;
    // The lowest failing rate above the best passing one: the top of the refinement.
    let mut fail_above: Option<u64> = None;
    loop {
        if !fits(args, t0) {
            budget_hit = true;
            break;
        }
        let (idx, pass) = run_step(args, &mut ctx, rate).await;
        if pass {
            best = Some(idx);
            fails = 0;
            fail_above = None;
        } else {
            first_fail.get_or_insert(rate);
            fail_above.get_or_insert(rate);
            fails += 1;
            if fails >= args.fail_steps {
                break;
            }
        }
        rate = next_rate(rate, args.step, args.step_pct);
    }
    // Bisection between the best passing step and the failing one above it, so the
    // figure is known to within (ladder step) / 2^refine instead of one ladder step.
    let best_rate = |ctx: &Ctx, best: Option<usize>| best.map(|i| lock(&ctx.st).steps[i].rate);
    for _ in 0..args.refine {
        let (Some(lo), Some(hi)) = (best_rate(&ctx, best), fail_above) else {
            break;
        };
        let mid = (lo + hi) / 200 * 100;
        // Out of time, the figure stays the ladder's: `budget_exhausted` keeps meaning that
        // the ladder found no failing rate.
        if mid <= lo || !fits(args, t0) {
            break;
        }
        let (idx, pass) = run_step(args, &mut ctx, mid).await;
        if pass {
            best = Some(idx);
        } else {
            fail_above = Some(mid);
        }
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

/// Whether another step (and the wait for its stragglers) fits in `--max-secs`.
fn fits(args: &Args, t0: Instant) -> bool {
    t0.elapsed().as_secs_f64() + args.step_secs + args.timeout + 1.0 <= args.max_secs
}

/// Runs one step at `rate` and decides whether it passed; then lets the server drain its
/// queues so one step's backlog does not bleed into the next.
async fn run_step(args: &Args, ctx: &mut Ctx, rate: u64) -> (usize, bool) {
    let idx = ctx.step(rate, args.step_secs, u64::MAX, &|id| id).await;
    let pass = {
        let mut st = lock(&ctx.st);
        let s = &mut st.steps[idx];
        eprintln!("step {}", step_json(s));
        // A step the tool could not send on time did not offer its rate: it measures the
        // tool, so it does not pass either.
        let on_time = s.send_secs <= args.step_secs * 1.05;
        s.fail_pct() < args.max_fail_pct && s.pct_ms(0.99) <= args.max_p99_ms && on_time
    };
    if pass {
        tokio::time::sleep(Duration::from_millis(500)).await;
    } else {
        // An overloaded server still holds (or sheds) a backlog: the next step starts once
        // it has gone quiet, so it measures the rate it offers and not the drain.
        let waited = ctx
            .quiet(Duration::from_secs(1), Duration::from_secs(30))
            .await;
        eprintln!("step recovered: nothing from the server for 1 s after {waited:.1} s");
    }
    (idx, pass)
}

/// The offered rate after `rate`: +`pct` % rounded to 100/s (at least +100) when `pct` > 0,
/// else + `step`.
fn next_rate(rate: u64, step: u64, pct: f64) -> u64 {
    if pct > 0.0 {
        let grown = ((rate as f64 * (1.0 + pct / 100.0) / 100.0).round() as u64) * 100;
        grown.max(rate + 100)
    } else {
        rate + step
    }
}

/// Creates `--subs` subscriptions over `--subs`/10 presentities and reports the server's
/// memory growth per subscription: PSS summed over `--pid` and its descendants (the figure
/// compared), and VmRSS of `--pid` alone.
pub(crate) async fn hold(args: &Args, rep: &mut Report) -> Result<(), String> {
    let pid = args.pid.ok_or("hold needs --pid PID of the server")?;
    let read = |what| format!("cannot read {what} of pid {pid}");
    let rss0 = rss_kib(pid).ok_or(read("VmRSS"))?;
    let (pss0, _) = pss_tree_kib(pid).ok_or(read("smaps_rollup"))?;
    let mut ctx = Ctx::new(
        args.server,
        args.sockets,
        Flow::Subscribe,
        args.timeout,
        args.recv_buffer,
    )
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
    let rss1 = rss_kib(pid).ok_or(read("VmRSS"))?;
    let (pss1, procs) = pss_tree_kib(pid).ok_or(read("smaps_rollup"))?;
    let (ok, failed, p99, notifies) = {
        let mut st = lock(&ctx.st);
        let notifies = st.notifies;
        let s = &mut st.steps[idx];
        eprintln!("hold {}", step_json(s));
        (s.ok, s.failed(), s.pct_ms(0.99), notifies)
    };
    rep.num("subscriptions_created", ok, "count");
    rep.num("subscriptions_failed", failed, "count");
    rep.num("presentities", presentities, "count");
    rep.num("creation_time", format!("{created_in:.1}"), "s");
    rep.num("p99_latency", format!("{p99:.2}"), "ms");
    rep.num("processes", procs, "count");
    rep.num("pss_baseline", pss0, "KiB");
    rep.num("pss_after", pss1, "KiB");
    let per = |a: u64, b: u64| {
        format!(
            "{:.0}",
            (b.saturating_sub(a) * 1024) as f64 / ok.max(1) as f64
        )
    };
    rep.num("pss_per_subscription", per(pss0, pss1), "bytes");
    rep.num("rss_baseline", rss0, "KiB");
    rep.num("rss_after", rss1, "KiB");
    rep.num("rss_per_subscription", per(rss0, rss1), "bytes");
    rep.num("notifies_answered", notifies, "count");
    if args.quiet > args.settle {
        tokio::time::sleep(Duration::from_secs_f64(args.quiet - args.settle)).await;
        let (pss2, _) = pss_tree_kib(pid).ok_or(read("smaps_rollup"))?;
        rep.num("pss_quiet", pss2, "KiB");
        rep.num("pss_per_subscription_quiet", per(pss0, pss2), "bytes");
    }
    Ok(())
}
