#!/usr/bin/env bash
# benches/overload.sh — 60 s at 3× the measured capacity (issue #8): does the node keep
# answering, how high does its RSS go, and how fast does it serve normally again?
#
#   bash benches/overload.sh                  # ~2.5 min
#   SKIP_BUILD=1 SECS=30 bash benches/overload.sh
#
# The node runs on CPU 0 and the load tool on CPU 1 (taskset), so the tool can offer 3× what
# the node can serve. Steps: capacity = PUBLISH ok/s at the highest step with < 0.1 %
# failures (fresh node); then a fresh node gets 3× that for SECS seconds (RSS sampled every
# 0.5 s); then 5 s at half the capacity must pass with < 0.1 % failures. Loopback only;
# processes stopped by PID; temp dir removed at exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/benches/lib.sh"
SECS=${SECS:-60}
SIP=5398
ADMIN=8398
SAMPLER=""
bench_setup overload
cat >"$WORK/node.toml" <<TOML
[node]
id = "overload-bench"
data_dir = "$WORK/data"
[sip]
listen = ["udp:127.0.0.1:$SIP"]
[admin]
listen = "127.0.0.1:$ADMIN"
[log]
level = "error"
[presence]
subs_db_mode = 0
publ_cache = 2
max_expires = 3600
TOML

start_node() {
    taskset -c 0 "$ROOT/target/release/presenced" --config "$WORK/node.toml" >"$WORK/node.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 200); do
        curl -s --max-time 1 "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    log "node did not start"; cat "$WORK/node.log" >&2; return 1
}
stop_node() { kill -TERM "$PID"; wait "$PID" || true; PID=""; }
load() { taskset -c 1 "$LOAD" --server "127.0.0.1:$SIP" "$@"; }
value() { awk -v k="$1" '$1 == k {print $2}' "$2"; }

log "capacity (fresh node on CPU 0)"
start_node
load --scenario publish --start 2000 --step-pct 20 --max-secs 45 >"$WORK/cap.txt" 2>/dev/null || true
CAP=$(value publish_best_ok_rate "$WORK/cap.txt")
stop_node
[ -n "$CAP" ] && [ "$CAP" -gt 0 ] || { log "no capacity measured"; exit 1; }
OFFER=$(( CAP * 3 ))
log "capacity $CAP ok/s; offering $OFFER/s for $SECS s"

start_node
RSS0=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")
( while kill -0 "$PID" 2>/dev/null; do
      awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null || true
      sleep 0.5
  done ) >"$WORK/rss.txt" &
SAMPLER=$!
load --scenario publish --start "$OFFER" --step 0 --step-secs "$SECS" \
    --max-secs $(( SECS + 15 )) --fail-steps 1 >"$WORK/over.txt" 2>"$WORK/over.err" || true
OKRATE=$(grep -o '"ok":[0-9]*' "$WORK/over.err" | head -1 | cut -d: -f2)
FAILPCT=$(grep -o '"fail_pct":[0-9.]*' "$WORK/over.err" | head -1 | cut -d: -f2)
RSSMAX=$(sort -n "$WORK/rss.txt" | tail -1)
sleep 1
RSS1=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")
# Every accepted PUBLISH of this scenario creates a presentity (Expires 3600): the state is
# what RSS grows with, so report it next to RSS.
HELD=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN/ready" | sed -n 's/.*"presentities":\([0-9]*\).*/\1/p')
SHED=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" | awk '/^presenced_limit_hits_total\{limit="queue_delay"\}/ {print $2}')
T0=$(date +%s%N)
load --scenario publish --start $(( CAP / 2 )) --step 0 --step-secs 5 --max-secs 12 \
    --fail-steps 1 >"$WORK/after.txt" 2>"$WORK/after.err" || true
AFTER_FAIL=$(grep -o '"fail_pct":[0-9.]*' "$WORK/after.err" | head -1 | cut -d: -f2)
kill "$SAMPLER" 2>/dev/null || true; SAMPLER=""
stop_node

echo "capacity ${CAP} ok/s"
echo "offered ${OFFER} req/s for ${SECS} s"
echo "served_during_overload ${OKRATE:-?} transactions (fail ${FAILPCT:-?} %)"
echo "rss_before ${RSS0} KiB"
echo "rss_max_during ${RSSMAX} KiB"
echo "rss_after ${RSS1} KiB"
echo "presentities_held ${HELD:-?} count"
echo "rss_per_presentity_held $(( (RSS1 - RSS0) * 1024 / (${HELD:-0} > 0 ? ${HELD:-1} : 1) )) bytes"
echo "shed_for_queue_delay ${SHED:-?} requests"
echo "after_overload_half_capacity_fail ${AFTER_FAIL:-?} %"
