# benches/lib.sh — shared by the benchmark scripts (sourced, not run): logging and the
# release binaries they drive. `build_binaries` sets LOAD to the load tool
# (benches/load.rs); with SKIP_BUILD=1 it uses the newest binaries already built.

log() { echo "== $*" >&2; }

build_binaries() {
    if [ "${SKIP_BUILD:-0}" = 1 ]; then
        LOAD=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
    else
        cargo build --release -j 2 --bin presenced >&2
        LOAD=$(cargo bench -j 2 --bench load --no-run 2>&1 |
            sed -n 's/.*Executable benches\/load.rs (\(.*\))/\1/p')
    fi
    [ -x "$LOAD" ] || { log "load tool not found"; exit 1; }
}

# bench_setup NAME: WORK = a new temp dir (removed at exit), PID = "" (the node the script
# starts; stopped at exit, as are SAMPLER, PID_A and PID_B when set), then builds or finds the
# binaries from $ROOT.
bench_setup() {
    WORK=$(mktemp -d "/tmp/presence-$1.XXXXXX")
    PID=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    cd "$ROOT"
    build_binaries
}

bench_stop() { # $1 = pid or ""
    [ -n "${1:-}" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true
}

bench_cleanup() {
    [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
    bench_stop "${PID:-}"
    bench_stop "${PID_B:-}"
    bench_stop "${PID_A:-}"
    rm -rf "$WORK"
}
