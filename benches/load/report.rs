//! Output of the load tool (`name value unit` lines, then one JSON line) and the memory
//! readers of the hold scenario.
//!
//! Invariants: every figure printed as a line is also in the JSON object; a figure with an
//! empty unit goes to the JSON only (step details). Memory is read from /proc only; PSS is
//! summed over a process and all its descendants, so a multi-process server (Kamailio's
//! main, workers and timers sharing one shm segment) is counted once in total.

use std::fmt::Write as _;

use crate::engine::StepStats;

/// Output: (name, JSON value, unit).
#[derive(Default)]
pub(crate) struct Report(Vec<(String, String, &'static str)>);

impl Report {
    pub(crate) fn num(&mut self, name: &str, v: impl ToString, unit: &'static str) {
        self.0.push((name.to_string(), v.to_string(), unit));
    }
    pub(crate) fn print(&self, scenario: &str) {
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

/// One step as a JSON object (error statuses as `{"503":n}`; 0 = send error or a 2xx
/// missing the tag the second leg needs).
pub(crate) fn step_json(s: &mut StepStats) -> String {
    let (p50, p99) = (s.pct_ms(0.5), s.pct_ms(0.99));
    let st: Vec<String> = s
        .statuses
        .iter()
        .map(|(c, n)| format!("\"{c}\":{n}"))
        .collect();
    format!(
        "{{\"rate\":{},\"sent\":{},\"ok\":{},\"timeouts\":{},\"errors\":{},\"statuses\":{{{}}},\"fail_pct\":{:.3},\"send_secs\":{:.2},\"p50_ms\":{p50:.2},\"p99_ms\":{p99:.2},\"server_drops\":{},\"tool_drops\":{}}}",
        s.rate,
        s.sent,
        s.ok,
        s.timeouts,
        s.errors,
        st.join(","),
        s.fail_pct(),
        s.send_secs,
        s.server_drops,
        s.tool_drops
    )
}

/// Datagrams dropped so far (receive buffer full) on the UDP sockets of this network
/// namespace bound to one of `ports` (the `drops` column of /proc/net/udp; 0 if unreadable).
pub(crate) fn udp_drops(ports: &[u16]) -> u64 {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.rsplit_once(':')?.1;
            let port = u16::from_str_radix(port, 16).ok()?;
            let drops: u64 = f.last()?.parse().ok()?;
            ports.contains(&port).then_some(drops)
        })
        .sum()
}

/// A `Key:   N kB` line of a /proc file, in KiB.
fn proc_kib(path: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size of `pid` in KiB (VmRSS of /proc/PID/status).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// `pid` and every live descendant (children by the ppid field of /proc/*/stat).
fn tree(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The comm field may contain spaces: ppid is the 2nd field after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == cur)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// Proportional set size of `pid` and its descendants in KiB (smaps_rollup), and how many
/// processes were summed. `None` if `pid` itself cannot be read.
pub(crate) fn pss_tree_kib(pid: u32) -> Option<(u64, usize)> {
    let procs = tree(pid);
    let own = proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")?;
    let rest: u64 = procs[1..]
        .iter()
        .filter_map(|p| proc_kib(&format!("/proc/{p}/smaps_rollup"), "Pss:"))
        .sum();
    Some((own + rest, procs.len()))
}
