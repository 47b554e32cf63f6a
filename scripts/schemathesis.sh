#!/usr/bin/env bash
# Schema-driven fuzzing of the REST API: starts the built binary on a temporary data dir, creates
# the first user, logs in, and runs schemathesis against /api/openapi.json with the token.
# Checks: no 5xx (not_a_server_error) and every answer matches the document
# (response_schema_conformance). Usage: scripts/schemathesis.sh [path/to/nexus] [max examples]
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/nexus}"
MAX_EXAMPLES="${2:-${SCHEMATHESIS_MAX_EXAMPLES:-30}}"
[ -x "$BIN" ] || { echo "no nexus binary at $BIN; run cargo build first" >&2; exit 1; }
command -v schemathesis >/dev/null || { echo "schemathesis missing: pip install schemathesis" >&2; exit 1; }

DATA="$(mktemp -d)"
LOG="$DATA/nexus.log"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT

# Port 0: the daemon picks a free port and prints it on its "listening" line.
env -i PATH="$PATH" HOME="$HOME" NEXUS_DATA_DIR="$DATA" API_PORT=0 MCP_PORT=0 NEXUS_LOG=warn \
  LIV_API_KEY="schemathesis-key-0123456789" "$BIN" serve >"$DATA/stdout" 2>"$LOG" &
PID=$!
BASE=""
for _ in $(seq 100); do
  BASE="$(grep -o 'http://[^ ]*' "$DATA/stdout" 2>/dev/null | head -1 | sed 's#/$##')" && [ -n "$BASE" ] && break
  kill -0 "$PID" 2>/dev/null || { echo "nexus exited:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.2
done
[ -n "$BASE" ] || { echo "nexus did not start" >&2; cat "$LOG" >&2; exit 1; }

PASSWORD="schemathesis pass phrase"
curl -fsS -X POST "$BASE/api/auth/setup" -H 'content-type: application/json' \
  -d "{\"username\":\"fuzz\",\"password\":\"$PASSWORD\"}" >/dev/null
TOKEN="$(curl -fsS -X POST "$BASE/api/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"fuzz\",\"password\":\"$PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"

# Logout and password change would end the fuzzer's own session mid-run: they are covered by the
# integration tests (tests/it/auth.rs) and left out here.
# Run from the temp dir so schemathesis' example cache does not land in the repository.
cd "$DATA"
schemathesis run "$BASE/api/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance \
  --exclude-path /api/auth/logout --exclude-path /api/auth/password \
  --max-examples "$MAX_EXAMPLES" \
  --seed 1 \
  --generation-with-security-parameters false \
  --no-color
status=$?
if grep -q "panicked" "$LOG"; then echo "the daemon panicked:" >&2; cat "$LOG" >&2; exit 1; fi
exit $status
