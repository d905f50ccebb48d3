#!/usr/bin/env bash
# benches/restart.sh — restart time and memory with many stored subscriptions (issues 3, 7).
#
#   bash benches/restart.sh                 # 100,000 subscriptions (~2 min on 2 cores)
#   SUBS=10000 bash benches/restart.sh      # smaller
#   MODE=2 bash benches/restart.sh          # write-back instead of write-through
#   SKIP_BUILD=1 bash benches/restart.sh    # use target/release binaries as they are
#
# Starts a release node with sled in a temp dir (subs_db_mode MODE, default 1 = write-through,
# publ_cache 1), creates SUBS subscriptions over SUBS/10 presentities with the load tool
# (`hold` scenario: every NOTIFY answered), stops the node with SIGTERM, restarts it and times
# how long until /ready answers with every subscription back. Prints RSS with all dialogs
# live (before) and all restored passivated (after), bytes on disk per subscription, and the
# restart time. Loopback only; every process it starts is stopped by PID; state under one temp
# dir removed at exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/benches/lib.sh"
SUBS=${SUBS:-100000}
MODE=${MODE:-1}
RATE=${RATE:-5000}
SIP=5395
ADMIN=8395
bench_setup restart

cat >"$WORK/node.toml" <<TOML
[node]
id = "restart-bench"
data_dir = "$WORK/data"
[sip]
listen = ["udp:127.0.0.1:$SIP"]
[admin]
listen = "127.0.0.1:$ADMIN"
[log]
level = "warn"
[presence]
subs_db_mode = $MODE
publ_cache = 1
max_expires = 3600
TOML

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
ready_subs() {
    curl -s --max-time 2 "http://127.0.0.1:$ADMIN/ready" 2>/dev/null |
        sed -n 's/.*"subscriptions":\([0-9]*\).*/\1/p'
}
start_node() {
    "$ROOT/target/release/presenced" --config "$WORK/node.toml" >"$WORK/node.log" 2>&1 &
    PID=$!
}
wait_ready() { # $1 = subscriptions wanted; prints seconds since $2 (ns)
    local want=$1 t0=$2 n
    for _ in $(seq 1 6000); do
        n=$(ready_subs || true)
        if [ -n "$n" ] && [ "$n" -ge "$want" ]; then
            echo "scale=2; ($(date +%s%N) - $t0) / 1000000000" | bc
            return 0
        fi
        sleep 0.05
    done
    log "node never reported $want subscriptions (last: ${n:-none})"
    tail -20 "$WORK/node.log" >&2
    return 1
}

log "creating $SUBS subscriptions (subs_db_mode $MODE)"
start_node
wait_ready 0 "$(date +%s%N)" >/dev/null
"$LOAD" --scenario hold --server "127.0.0.1:$SIP" --subs "$SUBS" --hold-rate "$RATE" \
    --settle 3 --pid "$PID" >"$WORK/hold.txt"
CREATED=$(awk '$1 == "hold_subscriptions_created" {print $2}' "$WORK/hold.txt")
RSS_LIVE=$(rss_kib "$PID")
log "created $CREATED; RSS $RSS_LIVE KiB; stopping with SIGTERM"
kill -TERM "$PID"
wait "$PID" || true
PID=""
DISK=$(du -sk "$WORK/data" | cut -f1)

log "restarting"
T0=$(date +%s%N)
start_node
RESTART=$(wait_ready "$CREATED" "$T0")
RSS_IDLE=$(rss_kib "$PID")

echo "subscriptions $CREATED count"
echo "subs_db_mode $MODE"
echo "restart_to_ready $RESTART s"
echo "rss_all_live $RSS_LIVE KiB"
echo "rss_after_restart_all_passivated $RSS_IDLE KiB"
echo "disk $DISK KiB"
echo "disk_per_subscription $(( DISK * 1024 / (CREATED > 0 ? CREATED : 1) )) bytes"
grep -E "^hold_(rss_baseline|rss_per_subscription|pss_per_subscription) " "$WORK/hold.txt" || true
