#!/usr/bin/env bash
# benches/modes.sh — PUBLISH/s and SUBSCRIBE+NOTIFY/s per storage mode (issue 3), one after the
# other in the same run: subs_db_mode 0 / publ_cache 2 (memory), 1 / 1 (write-through),
# 2 / 1 (write-back), 3 / 1 (DB-only). Each run gets a fresh node and data dir.
#
#   bash benches/modes.sh                 # ~4 min on 2 cores
#   SKIP_BUILD=1 bash benches/modes.sh    # use target/release binaries as they are
#
# Loopback only; every process started is stopped by PID; state under one temp dir removed
# at exit. Prints `mode<N>_<scenario>_best_ok_rate <ok/s>` lines (at the highest offered rate with
# < 0.1 % failures, see benches/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/benches/lib.sh"
SIP=5396
ADMIN=8396
MAX_SECS=${MAX_SECS:-40}
bench_setup modes

run() { # $1 subs_db_mode, $2 publ_cache, $3 scenario
    rm -rf "$WORK/data"
    cat >"$WORK/node.toml" <<TOML
[node]
id = "modes-bench"
data_dir = "$WORK/data"
[sip]
listen = ["udp:127.0.0.1:$SIP"]
[admin]
listen = "127.0.0.1:$ADMIN"
[log]
level = "warn"
[presence]
subs_db_mode = $1
publ_cache = $2
notifier_processes = 0
max_expires = 3600
TOML
    "$ROOT/target/release/presenced" --config "$WORK/node.toml" >"$WORK/node.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 200); do
        curl -s --max-time 1 "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1 && break
        sleep 0.05
    done
    log "subs_db_mode $1, publ_cache $2: $3"
    "$LOAD" --scenario "$3" --server "127.0.0.1:$SIP" --start 3000 --step-pct 25 \
        --max-secs "$MAX_SECS" >"$WORK/out.txt" 2>"$WORK/err.txt" || true
    local rate
    rate=$(awk -v s="$3" '$1 == s"_best_ok_rate" {print $2}' "$WORK/out.txt")
    echo "mode$1_$3_best_ok_rate ${rate:-?} ok/s"
    kill -TERM "$PID"
    wait "$PID" || true
    PID=""
}

for m in "0 2" "1 1" "2 1" "3 1"; do
    set -- $m
    run "$1" "$2" publish
    run "$1" "$2" subscribe
done
