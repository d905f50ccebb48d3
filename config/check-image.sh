#!/usr/bin/env bash
# config/check-image.sh — check what config/Dockerfile produces, without a Docker engine.
#
# For machines with no Docker daemon (or no access to Docker Hub) but with Debian's mirrors:
# it reproduces the Dockerfile as closely as it can and checks the result. Run as root from
# anywhere (it works from the repository root it lives in):
#
#   sudo config/check-image.sh            # KEEP=1 keeps the work directory for inspection
#
# What it does, reading config/Dockerfile and config/docker.toml rather than repeating them:
#  1. Builds the binary as the build stage does (`cargo build --release --locked --bin
#     presenced`, then `presenced --version` and `presenced --check-config
#     config/docker.toml`), with the host's toolchain (JOBS=2 parallel jobs by default).
#  2. Creates a minimal Debian (debootstrap --variant=minbase) of the release the Dockerfile
#     names (ARG DEBIAN), cached under target/check-image/ (a second run copies the cache).
#  3. Runs the runtime stage's RUN steps in a chroot of a copy of it (/bin/sh -c, as root),
#     applies its COPY lines (the build stage's /out is step 1's output) and checks that
#     `ldd` of the binary resolves every library inside that rootfs.
#  4. In new network, mount and PID namespaces (only a loopback, brought up: nothing can
#     reach out, so nothing is fetched at run time), starts ENTRYPOINT + CMD in the chroot as
#     the Dockerfile's USER in its WORKDIR; checks that it answers a SIP OPTIONS on the UDP
#     port of docker.toml with 200, that the HEALTHCHECK command succeeds (as USER, within its
#     --timeout, retried during its --start-period), that the process runs as USER and logs
#     no warning; then stops it with the STOPSIGNAL and checks it exits 0 within 10 s
#     (`docker stop`'s grace).
# Everything started is stopped (the PID namespace dies with the check, which is bounded by
# CHECK_TIMEOUT seconds); the copy of the rootfs is removed unless KEEP=1.
#
# Not covered: `docker build` itself (BuildKit, cache mounts, the rust:1-bookworm image and
# the debian:bookworm-slim image are not used; minbase is close to -slim but not identical),
# port publishing, volumes, and the Docker engine's seccomp/capability defaults.

set -euo pipefail

JOBS=${JOBS:-2}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-120}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

say() { printf '[check-image %4ss] %s\n' "$SECONDS" "$*"; }
die() { printf '[check-image %4ss] FAILED: %s\n' "$SECONDS" "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot and namespaces need it)"
for tool in cargo debootstrap chroot unshare ip python3 timeout findmnt; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap iproute2 …)"
done

# ─── what the Dockerfile and docker.toml say ─────────────────────────────────────────────
# One python3 pass turns them into shell assignments (shlex-quoted), evaluated below.
plan=$(python3 - config/Dockerfile config/docker.toml <<'PY'
import json, re, shlex, sys, tomllib

dockerfile, toml_path = sys.argv[1], sys.argv[2]
lines, cur = [], ""
for raw in open(dockerfile, encoding="utf-8"):
    s = raw.rstrip("\n")
    if s.lstrip().startswith("#"):
        continue                      # comments, also inside continued instructions
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    cur += s
    if cur.strip():
        lines.append(cur.strip())
    cur = ""

args = {}
for l in lines:                       # global ARGs with defaults (before the first FROM)
    if l.startswith("FROM "):
        break
    m = re.match(r"ARG (\w+)=(\S+)", l)
    if m:
        args[m.group(1)] = m.group(2)
stages = [i for i, l in enumerate(lines) if l.startswith("FROM ")]
runtime = lines[stages[-1]:]
image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), runtime[0].split()[1])
suite = image.split(":")[1].removesuffix("-slim")

out = {"SUITE": suite, "IMAGE": image}
runs, copies, envs = [], [], []
for l in runtime[1:]:
    op, _, rest = l.partition(" ")
    if op == "RUN":
        runs.append(rest)
    elif op == "COPY":
        words, frm, mode = rest.split(), "", ""
        while words[0].startswith("--"):
            flag = words.pop(0)
            if flag.startswith("--from="):
                frm = flag[7:]
            elif flag.startswith("--chmod="):
                mode = flag[8:]
            else:
                sys.exit(f"unsupported COPY flag {flag}")
        if len(words) != 2:
            sys.exit(f"unsupported COPY form: {l}")
        copies.append("|".join([frm, mode, words[0], words[1]]))
    elif op == "ENV":
        if "=" not in rest:
            sys.exit(f"unsupported ENV form (use KEY=VALUE): {l}")
        envs.extend(shlex.split(rest))
    elif op in ("USER", "WORKDIR", "STOPSIGNAL"):
        out["IMAGE_" + op] = rest.strip()
    elif op in ("ENTRYPOINT", "CMD"):
        out[op] = json.loads(rest)
    elif op == "HEALTHCHECK":
        opts, _, cmd = rest.partition(" CMD ")
        out["HEALTH_CMD"] = json.loads(cmd)
        for o in opts.split():
            k, _, v = o.lstrip("-").partition("=")
            out["HEALTH_" + k.upper().replace("-", "_")] = v.rstrip("s")
out["RUNS"], out["COPIES"], out["ENVS"] = runs, copies, envs

cfg = tomllib.load(open(toml_path, "rb"))
udp = [a for a in cfg.get("sip", {}).get("listen", []) if a.startswith("udp:")]
if not udp:
    sys.exit("docker.toml has no udp: listen address to send OPTIONS to")
out["SIP_UDP_PORT"] = udp[0].rsplit(":", 1)[1]
out["DATA_DIR"] = cfg.get("node", {}).get("data_dir", "data")

for k, v in out.items():
    if isinstance(v, list):
        print(f"{k}=(" + " ".join(shlex.quote(x) for x in v) + ")")
    else:
        print(f"{k}={shlex.quote(v)}")
PY
) || die "could not read config/Dockerfile or config/docker.toml"
eval "$plan"
say "Dockerfile runtime stage: $IMAGE (Debian $SUITE), ${#RUNS[@]} RUN, ${#COPIES[@]} COPY, ENV ${ENVS[*]}, USER $IMAGE_USER, WORKDIR $IMAGE_WORKDIR"

# ─── 1. the build stage ──────────────────────────────────────────────────────────────────
mkdir -p target/check-image
WORK=$(mktemp -d "$REPO/target/check-image/run.XXXXXX")
ROOTFS=$WORK/rootfs
cleanup() {
    # The namespaces' mounts vanish with them; refuse to delete anything still mounted.
    if findmnt -rno TARGET | grep -qF "$WORK"; then
        echo "check-image: $WORK still has mounts; not removing it" >&2
    elif [[ ${KEEP:-0} == 1 ]]; then
        echo "check-image: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

say "build: cargo build -j $JOBS --release --locked --bin presenced"
cargo build -j "$JOBS" --release --locked --bin presenced
install -D -m 0755 target/release/presenced "$WORK/out/presenced"
say "build: $("$WORK/out/presenced" --version)"
"$WORK/out/presenced" --check-config config/docker.toml || die "--check-config config/docker.toml"

# ─── 2. the base image ───────────────────────────────────────────────────────────────────
CACHE=$REPO/target/check-image/$SUITE-minbase
if [[ ! -f $CACHE/.check-image-complete ]]; then
    say "rootfs: debootstrap --variant=minbase $SUITE (cached in ${CACHE#"$REPO"/})"
    rm -rf "$CACHE.tmp"
    timeout 900 debootstrap --variant=minbase "$SUITE" "$CACHE.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap (log above)"; }
    touch "$CACHE.tmp/.check-image-complete"
    rm -rf "$CACHE"
    mv "$CACHE.tmp" "$CACHE"
else
    say "rootfs: cached ${CACHE#"$REPO"/}"
fi
cp -a "$CACHE" "$ROOTFS"
rm -f "$ROOTFS/.check-image-complete"

# ─── 3. the runtime stage: RUN and COPY ──────────────────────────────────────────────────
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
for cmd in "${RUNS[@]}"; do
    say "RUN $cmd"
    in_root /bin/sh -c "$cmd" || die "RUN step failed"
done
for c in "${COPIES[@]}"; do
    IFS='|' read -r from mode src dst <<<"$c"
    case $from in
        build) path=$WORK${src} ;;   # the build stage's /out is step 1's output
        "") path=$REPO/$src ;;
        *) die "COPY --from=$from: unknown stage" ;;
    esac
    [[ -f $path ]] || die "COPY source $src not found ($path)"
    install -D -o 0 -g 0 -m "${mode:-$(stat -c %a "$path")}" "$path" "$ROOTFS$dst"
    say "COPY ${from:+--from=$from }$src -> $dst ($(stat -c '%a %U:%G' "$ROOTFS$dst"))"
done

BIN=${ENTRYPOINT[0]}
ldd_out=$(in_root ldd "$BIN") || die "ldd $BIN in the rootfs"
say "ldd $BIN (inside the rootfs):"
printf '%s\n' "$ldd_out" | sed 's/^\s*/    /'
if grep -q "not found" <<<"$ldd_out"; then
    die "a library (or symbol version) the binary needs is missing from the $SUITE rootfs"
fi
while read -r lib; do
    [[ -e $ROOTFS$lib ]] || die "$lib is not in the rootfs"
done < <(grep -o '/[^ ]*' <<<"$ldd_out")

# ─── 4. run it as the container would, with no network but loopback ──────────────────────
uid=$(in_root id -u "${IMAGE_USER%%:*}") || die "user ${IMAGE_USER%%:*} is not in the rootfs"
gid=$(in_root getent group "${IMAGE_USER##*:}" | cut -d: -f3)
[[ -n $gid ]] || die "group ${IMAGE_USER##*:} is not in the rootfs"
home=$(in_root getent passwd "$uid" | cut -d: -f6)
export ROOTFS IMAGE_WORKDIR uid gid home SIP_UDP_PORT DATA_DIR IMAGE_STOPSIGNAL
export HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-30} HEALTH_START_PERIOD=${HEALTH_START_PERIOD:-0}
export ARGV_Q HEALTH_Q IMAGE_ENV_Q
IMAGE_ENV_Q=""
((${#ENVS[@]} == 0)) || IMAGE_ENV_Q=$(printf '%q ' "${ENVS[@]}")
ARGV_Q=$(printf '%q ' "${ENTRYPOINT[@]}" "${CMD[@]}")
HEALTH_Q=$(printf '%q ' "${HEALTH_CMD[@]}")
cat >"$WORK/options.py" <<'PY'
"""Sends SIP OPTIONS to 127.0.0.1:PORT over UDP until a response or the deadline."""
import socket, sys, time, uuid

port, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(0.25)
me = s.getsockname()[1]
msg = (
    f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
    f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:check-image@127.0.0.1>;tag=ci1\r\n"
    f"To: <sip:127.0.0.1:{port}>\r\n"
    f"Call-ID: {uuid.uuid4().hex}@check-image\r\n"
    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
).encode()
while time.monotonic() < deadline:
    s.sendto(msg, ("127.0.0.1", port))  # a retransmission of the same request
    try:
        first = s.recv(65535).split(b"\r\n", 1)[0].decode()
    except OSError:  # timeout, or ICMP port unreachable while the node starts
        continue
    print(first)
    sys.exit(0 if first.startswith("SIP/2.0 200") else 1)
print("no response")
sys.exit(2)
PY
export OPTIONS_PY=$WORK/options.py

# Like the container's process and `docker exec`: USER, WORKDIR, the image's ENV only.
cat >"$WORK/as-user.sh" <<'SH'
eval "envs=($IMAGE_ENV_Q)"
exec chroot --userspec="$uid:$gid" --groups="$gid" "$ROOTFS" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$home" "${envs[@]}" \
    /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$IMAGE_WORKDIR" "$@"
SH
export AS_USER=$WORK/as-user.sh

cat >"$WORK/inside.sh" <<'SH'
# Runs as PID 1 of new network + mount + PID namespaces (unshare below).
set -euo pipefail
say() { printf '[check-image  ns ] %s\n' "$*"; }
ip link set lo up
links=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
[[ $links == "lo " ]] || { say "unexpected interfaces: $links"; exit 1; }
say "network: only lo ($(ip -o -4 addr show lo | awk '{print $4}')), no route out: $(ip route show | wc -l) routes"
# A proc of this PID namespace, in the rootfs (as in a container); the host's /proc is not
# read below, so no process outside this namespace is ever looked at or signalled.
mount -t proc proc "$ROOTFS/proc"
eval "argv=($ARGV_Q)"
eval "health=($HEALTH_Q)"
say "start (uid $uid gid $gid, cwd $IMAGE_WORKDIR): ${argv[*]}"
bash "$AS_USER" "${argv[@]}" >"$LOG" 2>&1 &
pid=$!   # chroot, env and sh exec: this is presenced itself
started=$SECONDS

reply=$(python3 "$OPTIONS_PY" "$SIP_UDP_PORT" 15) || { say "OPTIONS: $reply"; cat "$LOG"; exit 1; }
say "OPTIONS sip:127.0.0.1:$SIP_UDP_PORT over UDP -> $reply ($((SECONDS - started)) s after start)"

# HEALTHCHECK: each attempt bounded by --timeout, retried until --start-period has passed.
until out=$(timeout "$HEALTH_TIMEOUT" bash "$AS_USER" "${health[@]}" 2>&1); do
    if ((SECONDS - started > HEALTH_START_PERIOD)); then
        say "HEALTHCHECK failed: $out"; cat "$LOG"; exit 1
    fi
    sleep 0.5   # poll interval between attempts
done
say "HEALTHCHECK ${health[*]} -> ok ($(wc -l <<<"$out") lines of output)"

comm=$(cat "$ROOTFS/proc/$pid/comm" 2>/dev/null) || { say "presenced is not running"; cat "$LOG"; exit 1; }
runs_as=$(awk '/^Uid:/{print $2}' "$ROOTFS/proc/$pid/status")
[[ $comm == presenced && $runs_as == "$uid" ]] || { say "pid $pid is $comm as uid $runs_as"; exit 1; }
say "pid $pid ($comm) runs as uid $runs_as; $DATA_DIR is $(stat -c 'uid %u gid %g mode %a' "$ROOTFS$DATA_DIR")"

kill -s "${IMAGE_STOPSIGNAL#SIG}" "$pid"
stop_at=$SECONDS
code=0
# Bounded: docker stop's default grace is 10 s, then SIGKILL.
if ! timeout 10 tail --pid="$pid" -f /dev/null; then
    say "did not stop within 10 s of $IMAGE_STOPSIGNAL"; kill -KILL "$pid"; code=1
fi
status=0
wait "$pid" || status=$?
((status == 0)) || { say "exit status $status"; code=1; }
say "exited with status $status $((SECONDS - stop_at)) s after $IMAGE_STOPSIGNAL"
if grep -E 'WARN|ERROR' "$LOG"; then
    say "the node logged warnings or errors (above)"; code=1
fi
if grep -q $'\e\[' "$LOG"; then
    say "the log has ANSI colour codes (docker logs would show them)"; code=1
fi
say "log of the run:"
sed 's/^/    /' "$LOG"
exit "$code"
SH
export LOG=$WORK/presenced.log

say "run: unshare --net --mount --pid, chroot as $IMAGE_USER (bounded by ${CHECK_TIMEOUT} s)"
timeout --kill-after=5 "$CHECK_TIMEOUT" \
    unshare --net --mount --pid --fork --kill-child --propagation private bash "$WORK/inside.sh" ||
    die "the image did not run as expected (see above)"
say "PASS: $IMAGE-like rootfs runs presenced as $IMAGE_USER with only a loopback network"
