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
