#!/usr/bin/env bash
# Load benchmark on loopback against the release binary (SQLite default, 2 cores).
# Prints: start-to-ready and idle memory of `chartbridge serve`, then, on SQLite and on
# PostgreSQL beside their ceilings, req/s and latency for signed handshakes, framed pages,
# signed Tiep webhooks and MediQuo deliveries, with the rows counted (benches/load.rs).
# Usage: bash benches/load.sh   (SECONDS, CONCURRENCY, WEBHOOKS tune the load; PG_ADMIN_URL)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin chartbridge --bin chartbridge-demo
LOADGEN=$(cargo bench --bench load --no-run 2>&1 | grep -o 'target/release/deps/load-[0-9a-f]*' | tail -1)
[ -x "$LOADGEN" ] || { echo "building the load generator failed" >&2; exit 1; }
BIN=target/release/chartbridge
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Start to ready, and idle memory, of the plain server on a fresh SQLite file.
export HINT_API_KEY=k HINT_PRODUCT_ID=ppro-x HINT_WEBHOOK_SECRET=0123456789abcdef0123
export CHARTBRIDGE_PUBLIC_URL=http://127.0.0.1:18090 CHARTBRIDGE_SECRET_KEY=$(head -c32 /dev/urandom | base64)
export DATABASE_URL="sqlite:$WORK/serve.sqlite" PORT=18090 CHARTBRIDGE_BIND=127.0.0.1 RUST_LOG=warn
start=$(date +%s%N)
$BIN serve > "$WORK/serve.log" 2>&1 &
SERVE=$!
until curl -sf http://127.0.0.1:18090/readyz > /dev/null; do sleep 0.005; done
ready=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 2
rss=$(awk '/VmRSS/ {print $2}' /proc/$SERVE/status)
echo "start to ready: ${ready} ms; idle RSS: $((rss / 1024)) MiB (${rss} KiB)"
kill $SERVE; wait $SERVE 2>/dev/null || true
unset DATABASE_URL PORT CHARTBRIDGE_BIND

# The demo (the app with sandbox Hint and the sandbox partners in one process) under load, on
# SQLite and then on PostgreSQL, each beside its ceilings: /healthz (the framework) and, for
# PostgreSQL, pgbench's one-row INSERT per transaction with the same clients (the commit rate).
# The per-client budgets are raised: every request here comes from one address, and this
# measures the server, not the limiter.
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
CLIENTS=${CONCURRENCY:-32}
PGDB=cbload_$$
trap 'kill $(jobs -p) 2>/dev/null || true; psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
demo() { # label, database URL for the load generator, demo's extra flags…
  local label=$1 database=$2
  shift 2
  RUST_LOG=warn target/release/chartbridge-demo \
    --port 18080 --app-port 18081 --partners-port 18082 --data-dir "$WORK/demo" "$@" > "$WORK/demo.log" 2>&1 &
  local pid=$!
  until curl -sf http://127.0.0.1:18081/readyz > /dev/null && grep -q "demo is running" "$WORK/demo.log"; do sleep 0.1; done
  local healthz
  healthz=$(wrk -t2 -c"$CLIENTS" -d5s http://127.0.0.1:18081/healthz | awk '/Requests\/sec/ {printf "%d", $2}')
  echo
  echo "== $label: ceiling /healthz $healthz req/s${PGBENCH:+; pgbench one-row INSERT $PGBENCH tps ($CLIENTS clients)}"
  APP_URL=http://127.0.0.1:18081 HINT_URL=http://127.0.0.1:18080 DATABASE="$database" "$LOADGEN"
  kill $pid; wait $pid 2>/dev/null || true
}
command -v wrk >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
demo "SQLite" "sqlite:$WORK/demo/demo.sqlite"
if psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $PGDB" >/dev/null 2>&1; then
  PG_URL="${PG_ADMIN_URL%/*}/$PGDB"
  psql "$PG_URL" -qc "CREATE TABLE pgbench_one (id BIGSERIAL PRIMARY KEY, v TEXT)" >/dev/null
  echo "INSERT INTO pgbench_one (v) VALUES ('x');" > "$WORK/insert.sql"
  PGBENCH=$(pgbench -n -c "$CLIENTS" -j 2 -T 5 -f "$WORK/insert.sql" "$PG_URL" 2>/dev/null | awk '/^tps/ {printf "%d", $3}')
  psql "$PG_URL" -qc "DROP TABLE pgbench_one" >/dev/null
  demo "PostgreSQL" "$PG_URL" --database-url "$PG_URL"
else
  echo "PostgreSQL at $PG_ADMIN_URL is not reachable: its half is skipped"
fi
