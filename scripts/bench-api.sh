#!/usr/bin/env bash
# Load figures of the REST API on loopback: authenticated GET /api/subagents (throughput and p99,
# with wrk) and the cost of one login (one argon2id verify, timed over sequential logins).
# Usage: scripts/bench-api.sh [path/to/nexus (a release build)] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/nexus}"
SECS="${2:-15}"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no nexus binary at $BIN" >&2; exit 1; }

DATA="$(mktemp -d)"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT
env -i PATH="$PATH" HOME="$HOME" NEXUS_DATA_DIR="$DATA" API_PORT=0 MCP_PORT=0 NEXUS_LOG=warn \
  ${DATABASE_URL:+DATABASE_URL="$DATABASE_URL"} "$BIN" serve >"$DATA/stdout" 2>"$DATA/log" &
PID=$!
BASE=""
for _ in $(seq 100); do
  BASE="$(grep -o 'http://[^ ]*' "$DATA/stdout" 2>/dev/null | head -1 | sed 's#/$##')" && [ -n "$BASE" ] && break
  sleep 0.2
done
[ -n "$BASE" ] || { echo "nexus did not start" >&2; cat "$DATA/log" >&2; exit 1; }

PASSWORD="load test pass phrase"
json() { printf '{"username":"bench","password":"%s"}' "$PASSWORD"; }
curl -fsS -X POST "$BASE/api/auth/setup" -H 'content-type: application/json' -d "$(json)" >/dev/null
TOKEN="$(curl -fsS -X POST "$BASE/api/auth/login" -H 'content-type: application/json' -d "$(json)" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
for i in $(seq 20); do
  curl -fsS -X POST "$BASE/api/subagents" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"id\":\"agent-$i\",\"name\":\"Agent $i\",\"skills\":[\"server-health\"],\"schedule\":\"0 9 * * *\",\"scheduled_task\":\"report\"}" >/dev/null
done

echo "== login cost: 8 sequential logins (each one argon2id verify, m=19456 KiB t=2 p=1)"
# Different forwarded addresses so the per-address limiter does not step in; the per-user
# burst is 5, so the 8 logins use 8 throwaway users.
for i in $(seq 8); do
  printf '{"username":"u%s","password":"%s"}' "$i" "$PASSWORD" >"$DATA/login$i.json"
done
python3 - "$BASE" "$DATA" <<'PY'
import json, sys, time, urllib.request
base, data = sys.argv[1], sys.argv[2]
times = []
for i in range(1, 9):
    body = open(f"{data}/login{i}.json", "rb").read()
    req = urllib.request.Request(f"{base}/api/auth/login", data=body, method="POST",
        headers={"content-type": "application/json", "x-forwarded-for": f"10.9.0.{i}"})
    t = time.perf_counter()
    try:
        urllib.request.urlopen(req)
    except urllib.error.HTTPError as e:
        assert e.code == 401, e.code  # unknown user: the dummy hash is verified, same cost
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"login (unknown user, dummy argon2 verify): median {times[len(times)//2]:.1f} ms, min {times[0]:.1f} ms, max {times[-1]:.1f} ms")
PY

echo "== GET /api/subagents (20 subagents), bearer token, wrk -t2 -c32 -d${SECS}s"
wrk -t2 -c32 -d"${SECS}s" --latency -H "Authorization: Bearer $TOKEN" "$BASE/api/subagents" | sed -n '1,20p'
