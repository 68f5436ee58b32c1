#!/usr/bin/env bash
# PostgreSQL restarted under load: one `chartbridge serve` (release) on a fresh database, signed
# handshakes at full speed with wrk for DURATION seconds, and halfway through the local
# PostgreSQL cluster restarted (`pg_ctlcluster --skip-systemctl-redirect VERSION main restart`).
# Prints what wrk's clients got (2xx, each other status, socket errors), how long the restart
# took, and the instance's log lines about the database.
# Usage: bash benches/pg_restart.sh   (CLIENTS=32 DURATION=20 HANDSHAKES=500000; PG_ADMIN_URL)
# Restarting PostgreSQL ends every session on it: whatever else uses this cluster (another
# engineer's tests) sees its connections closed once.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-20}
HANDSHAKES=${HANDSHAKES:-500000}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_VERSION=${PG_VERSION:-$(ls /etc/postgresql | sort -n | tail -1)}
PORT=18491
need wrk wrk
need psql postgresql-client
need python3 python3
cargo build --release --quiet --bin chartbridge
bench_database cbpgrestart
RUST_LOG=info start_serve "$PG_URL" "$PORT" "$WORK/serve.log"

sign_handshakes "$WORK/handshakes" "$HANDSHAKES"
export SIGNED="$WORK/handshakes" SIGNATURE_HEADER=X-Hint-Signature WRK_SCRIPTS="$PWD/benches/wrk"
wrk -t2 -c"$CLIENTS" -d"${DURATION}s" -s benches/wrk/statuses.lua \
  "http://127.0.0.1:$PORT/hint/handshake" >"$WORK/wrk.out" &
WRK=$!
sleep $((DURATION / 2))
started=$(date +%s.%N)
pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main restart
took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "PostgreSQL $PG_VERSION restarted at $(date -d "@$started" +%T) in $took s, $((DURATION / 2)) s into the run"
wait "$WRK"

print_statuses "$WORK/wrk.out"
# Each 2xx remembered its body (kept ten minutes): fewer bodies than 2xx would be an
# acknowledged handshake lost.
echo "handshake bodies remembered: $(psql "$PG_URL" -qtAc "SELECT COUNT(*) FROM handshake_signatures") (at least the 2xx)"
echo "the instance's log about the database (by message):"
grep -E '"level":"(WARN|ERROR)"' "$WORK/serve.log" |
  python3 -c '
import collections, json, sys
seen = collections.Counter()
for line in sys.stdin:
    try:
        event = json.loads(line)
    except ValueError:
        continue
    seen[event.get("message") or event.get("fields", {}).get("message", "")] += 1
for message, n in seen.most_common():
    print("%6d  %s" % (n, message))
'
