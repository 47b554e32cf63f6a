#!/usr/bin/env bash
# Time from launch to /readyz = 200 on the embedded default (fresh and existing data dir), and the
# resident memory after 10 s idle. Usage: scripts/bench-startup.sh [runs]
# (builds --release first, unless NEXUS_BIN names a binary)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nexus-target}"
if [ -z "${NEXUS_BIN:-}" ]; then cargo build --release --quiet; fi
bin="${NEXUS_BIN:-$CARGO_TARGET_DIR/release/nexus}"
port=18080

start_and_time() { # $1 = data dir; prints milliseconds until /readyz answered 200
  local dir=$1 t0 t1
  t0=$(date +%s%N)
  NEXUS_DATA_DIR="$dir" API_PORT=$port MCP_PORT=$((port + 1)) NEXUS_LOG=warn "$bin" serve >/dev/null 2>&1 &
  echo $! >"$pidfile"
  until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.002; done
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

pidfile=$(mktemp)
stop() { local p; p=$(cat "$pidfile"); kill -TERM "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.01; done; }

stats() { sort -n | awk '{a[NR]=$1} END {printf "min %d ms, median %d ms, max %d ms (n=%d)\n", a[1], a[int((NR+1)/2)], a[NR], NR}'; }

fresh=(); existing=()
for _ in $(seq "$runs"); do
  dir=$(mktemp -d)
  fresh+=("$(start_and_time "$dir")"); stop
  existing+=("$(start_and_time "$dir")"); stop
  rm -rf "$dir"
done
echo "launch -> /readyz 200, fresh data dir:    $(printf '%s\n' "${fresh[@]}" | stats)"
echo "launch -> /readyz 200, existing data dir: $(printf '%s\n' "${existing[@]}" | stats)"

dir=$(mktemp -d)
start_and_time "$dir" >/dev/null
sleep 10
echo "resident memory after 10 s idle: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$(cat "$pidfile")/status")"
stop
rm -rf "$dir"
echo "machine: $(nproc) cores, $(uname -m), $(date -u +%F)"
