#!/usr/bin/env bash
# benches/catchup.sh — time for a node started empty to catch up with N publications held by
# its peer (issue 6, "Done when").
#
#   bash benches/catchup.sh                 # 100,000 publications (~1 min on 2 cores + build)
#   SUBS=10000 bash benches/catchup.sh      # smaller
#   RATE=5000                               # PUBLISH/s while filling node A (default 5000)
#   SKIP_BUILD=1 bash benches/catchup.sh    # use target/release binaries as they are
#
# Makes a cluster CA and two node certificates with `presenced cert`, starts node A (release,
# cluster enabled, memory mode: subs_db_mode 0, publ_cache 2, no seeds: first of its cluster),
# puts SUBS publications into it with the load tool (`publish` scenario at a constant RATE: one
# initial PUBLISH per presentity sip:user{N}@example.com, Expires 3600), then starts node B
# with an empty data dir and A as its only seed, and times from B's start until
#   * B sees A up (QUIC + TLS + Hello: `b_peer_up_seconds`),
#   * B's replicated view (`/debug/cluster` "publications") holds every live publication of A
#     (`catchup_replica_seconds`), and
#   * B's presentity actors (`/ready` "presentities") hold them all, i.e. a watcher at B would
#     get every document (`catchup_<N>_seconds`, e.g. `catchup_100k_seconds`).
# Loopback only; both processes are stopped by PID on exit; every file under one temp dir,
# removed at exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/benches/lib.sh"
SUBS=${SUBS:-100000}
RATE=${RATE:-5000}
A_SIP=5421; A_QUIC=5431; A_ADMIN=8421
B_SIP=5422; B_QUIC=5432; B_ADMIN=8422
PID_A=""
PID_B=""
bench_setup catchup
BIN="$ROOT/target/release/presenced"

"$BIN" cert create-ca --dir "$WORK/certs" >/dev/null
for id in node-a node-b; do
    "$BIN" cert create-node --dir "$WORK/certs" --id "$id" >/dev/null
done

config() { # $1 id, $2 sip, $3 quic, $4 admin, $5 peers (TOML list body)
    cat >"$WORK/$1.toml" <<TOML
[node]
id = "$1"
data_dir = "$WORK/$1"
[sip]
listen = ["udp:127.0.0.1:$2"]
[admin]
listen = "127.0.0.1:$4"
[log]
level = "warn"
[presence]
subs_db_mode = 0
publ_cache = 2
max_expires = 3600
[cluster]
enabled = true
listen = "127.0.0.1:$3"
peers = [$5]
ca_cert = "$WORK/certs/ca.crt"
cert = "$WORK/certs/$1.crt"
key = "$WORK/certs/$1.key"
TOML
}
config node-a "$A_SIP" "$A_QUIC" "$A_ADMIN" ""
config node-b "$B_SIP" "$B_QUIC" "$B_ADMIN" "\"127.0.0.1:$A_QUIC\""

# A JSON number field of an admin route ("" when the node does not answer).
field() { # $1 admin port, $2 path, $3 field
    { curl -s --max-time 2 "http://127.0.0.1:$1$2" 2>/dev/null || true; } |
        sed -n "s/.*\"$3\":\([0-9]*\).*/\1/p"
}
wait_ready() { # $1 admin port
    for _ in $(seq 1 400); do
        [ -n "$(field "$1" /ready presentities)" ] && return 0
        sleep 0.05
    done
    log "node on admin port $1 never became ready"
    return 1
}
settled_a() { # A's live publications once two reads 0.5 s apart agree
    local a b
    b=$(field "$A_ADMIN" /debug/cluster publications)
    for _ in $(seq 1 40); do
        sleep 0.5
        a=$b
        b=$(field "$A_ADMIN" /debug/cluster publications)
        [ "$a" = "$b" ] && break
    done
    echo "$b"
}
secs_since() { # $1 = start (ns)
    printf "%.2f" "$(echo "scale=3; ($(date +%s%N) - $1) / 1000000000" | bc)"
}

log "node A: $SUBS publications at $RATE/s"
"$BIN" --config "$WORK/node-a.toml" >"$WORK/a.log" 2>&1 &
PID_A=$!
wait_ready "$A_ADMIN"
STEP_SECS=$(echo "scale=3; $SUBS / $RATE" | bc)
# One step only: the tool starts a step when elapsed + step + timeout + 1 <= max-secs.
MAX_SECS=$(echo "$STEP_SECS + 3 + 2" | bc)
"$LOAD" --scenario publish --server "127.0.0.1:$A_SIP" --start "$RATE" --step 0 \
    --step-secs "$STEP_SECS" --max-secs "$MAX_SECS" --timeout 3 >"$WORK/load.txt" 2>"$WORK/load.err" || {
    log "load tool failed"; cat "$WORK/load.err" >&2; exit 1; }
HELD_A=$(settled_a)
FIRST_A=$HELD_A
# A few PUBLISHes can be lost on loopback UDP at this rate (the tool does not retransmit):
# top up slowly with new publications (to sip:user0.., which then hold two) until A holds SUBS.
for _ in 1 2 3; do
    missing=$(( SUBS - ${HELD_A:-0} ))
    [ "$missing" -gt 0 ] || break
    log "A holds $HELD_A; publishing $missing more at 500/s"
    "$LOAD" --scenario publish --server "127.0.0.1:$A_SIP" --start 500 --step 0 \
        --step-secs "$(echo "scale=3; $missing / 500" | bc)" --max-secs "$(echo "scale=3; $missing / 500 + 5" | bc)" \
        --timeout 3 >/dev/null 2>>"$WORK/load.err" || true
    HELD_A=$(settled_a)
done
ACTORS_A=$(field "$A_ADMIN" /ready presentities)
log "A holds $HELD_A publications ($ACTORS_A presentities)"
[ "${HELD_A:-0}" -gt 0 ] || { log "node A holds nothing"; tail -20 "$WORK/a.log" >&2; exit 1; }

log "node B: started empty, seed A"
T0=$(date +%s%N)
"$BIN" --config "$WORK/node-b.toml" >"$WORK/b.log" 2>&1 &
PID_B=$!
UP=""
REPLICA=""
ACTORS=""
for _ in $(seq 1 6000); do # 50 ms polls, 5 min bound
    if [ -z "$UP" ]; then
        view=$(curl -s --max-time 2 "http://127.0.0.1:$B_ADMIN/debug/cluster" 2>/dev/null || true)
        case "$view" in *'"state":"up"'*) UP=$(secs_since "$T0") ;; esac
    fi
    if [ -n "$UP" ] && [ -z "$REPLICA" ]; then
        n=$(field "$B_ADMIN" /debug/cluster publications)
        [ -n "$n" ] && [ "$n" -ge "$HELD_A" ] && REPLICA=$(secs_since "$T0")
    fi
    if [ -n "$REPLICA" ]; then
        n=$(field "$B_ADMIN" /ready presentities)
        [ -n "$n" ] && [ "$n" -ge "$ACTORS_A" ] && ACTORS=$(secs_since "$T0") && break
    fi
    sleep 0.05
done
if [ -z "$ACTORS" ]; then
    log "B never caught up: view $(field "$B_ADMIN" /debug/cluster publications), presentities $(field "$B_ADMIN" /ready presentities)"
    tail -20 "$WORK/b.log" >&2
    exit 1
fi

LABEL=$SUBS
[ $((SUBS % 1000)) = 0 ] && LABEL="$((SUBS / 1000))k"
echo "publications_at_a $HELD_A count"
echo "publications_topped_up $(( HELD_A - FIRST_A )) count"
echo "b_peer_up_seconds $UP s"
echo "catchup_replica_seconds $REPLICA s"
echo "catchup_${LABEL}_seconds $ACTORS s"
curl -s --max-time 2 "http://127.0.0.1:$B_ADMIN/debug/cluster" | head -c 600 >&2
echo >&2
