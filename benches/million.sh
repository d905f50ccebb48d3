#!/usr/bin/env bash
# benches/million.sh — one node holding 1,000,000 subscriptions: peak and steady RSS (issue 7).
#
#   bash benches/million.sh                     # 1,000,000 subscriptions (~5 min on 2 cores)
#   SUBS=100000 bash benches/million.sh         # smaller
#   MODE=0 bash benches/million.sh              # subs_db_mode (default 2, the default)
#   PASSIVATE=300 bash benches/million.sh       # [node] passivate_after (default: the default)
#   SKIP_BUILD=1 bash benches/million.sh        # use target/release binaries as they are
#
# Starts a release node with its default settings (sled in a temp dir) but for MODE and
# PASSIVATE when given, creates SUBS subscriptions over SUBS/10 presentities with the load tool
# (`hold` scenario, RATE per second, every NOTIFY answered), then waits until the node reports
# them passivated (at most WAIT_PASSIVE seconds). Prints the peak RSS over the whole run
# (VmHWM), the RSS once the dialogs are quiet, per-subscription figures and whether the node
# stayed within 4 GiB. Loopback only; the node is stopped by PID; its temp dir removed at exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/benches/lib.sh"
SUBS=${SUBS:-1000000}
MODE=${MODE:-2}
RATE=${RATE:-5000}
WAIT_PASSIVE=${WAIT_PASSIVE:-900}
SIP=5399
ADMIN=8399
bench_setup million

PASSIVATE_LINE=""
[ -n "${PASSIVATE:-}" ] && PASSIVATE_LINE="passivate_after = $PASSIVATE"
cat >"$WORK/node.toml" <<TOML
[node]
id = "million-bench"
data_dir = "$WORK/data"
$PASSIVATE_LINE
[sip]
listen = ["udp:127.0.0.1:$SIP"]
[admin]
listen = "127.0.0.1:$ADMIN"
[log]
level = "warn"
[presence]
subs_db_mode = $MODE
max_expires = 3600
TOML

status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
metric() { # $1 = exact series name with labels
    curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" 2>/dev/null |
        awk -v m="$1" '$1 == m {print $2}' | head -1
}

"$ROOT/target/release/presenced" --config "$WORK/node.toml" >"$WORK/node.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do
    curl -s --max-time 1 "http://127.0.0.1:$ADMIN/ready" | grep -q '"ready":true' && break
    sleep 0.05
done
BASE=$(status_kib "$PID" VmRSS)
log "creating $SUBS subscriptions at $RATE/s (subs_db_mode $MODE${PASSIVATE:+, passivate_after $PASSIVATE})"
"$LOAD" --scenario hold --server "127.0.0.1:$SIP" --subs "$SUBS" --hold-rate "$RATE" \
    --settle 3 --pid "$PID" >"$WORK/hold.txt"
CREATED=$(awk '$1 == "hold_subscriptions_created" {print $2}' "$WORK/hold.txt")
RSS_CREATED=$(status_kib "$PID" VmRSS)
log "created $CREATED; RSS $RSS_CREATED KiB; waiting for the dialogs to be passivated"
T0=$(date +%s)
PASSIVE=0
while [ $(( $(date +%s) - T0 )) -lt "$WAIT_PASSIVE" ]; do
    PASSIVE=$(metric 'presenced_actors{kind="subscription_passivated"}')
    PASSIVE=${PASSIVE%.*}
    [ -n "$PASSIVE" ] && [ "$PASSIVE" -ge $(( CREATED * 99 / 100 )) ] && break
    sleep 5
done
sleep 5
RSS_QUIET=$(status_kib "$PID" VmRSS)
PEAK=$(status_kib "$PID" VmHWM)
per() { echo $(( ($1 - BASE) * 1024 / (CREATED > 0 ? CREATED : 1) )); }
echo "subscriptions $CREATED count"
echo "subs_db_mode $MODE"
echo "passivated ${PASSIVE:-0} count"
grep -E "^hold_creation_time " "$WORK/hold.txt" || true
echo "rss_baseline $BASE KiB"
echo "rss_peak $PEAK KiB"
echo "rss_after_creation $RSS_CREATED KiB"
echo "rss_quiet $RSS_QUIET KiB"
echo "rss_per_subscription_peak $(per "$PEAK") bytes"
echo "rss_per_subscription_quiet $(per "$RSS_QUIET") bytes"
if [ "$PEAK" -le $(( 4 * 1024 * 1024 )) ]; then
    echo "within_4_gib yes"
else
    echo "within_4_gib no"
fi
