#!/usr/bin/env bash
# Signed handshakes/s beside their ceilings, in one run on loopback (wrk, 2 threads):
#   - Chartbridge (`chartbridge serve`, release) on PostgreSQL and on SQLite;
#   - the node peer doing what Hint's reference partner app does per handshake
#     (../shared/bench/node-peer: HMAC check, one INSERT, pool of 10);
#   - pgbench, one-row INSERT per transaction, the same clients (PostgreSQL's commit ceiling);
#   - Chartbridge's /healthz (the framework's ceiling).
# Usage: bash benches/handshakes.sh   (CLIENTS=32 DURATION=10 ROUNDS=1; PG_ADMIN_URL)
# Needs wrk, pgbench, psql, node/npm (installed with apt-get when missing) and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PEER=../shared/bench/node-peer
. benches/common.sh
need wrk wrk
need pgbench postgresql-client
need node nodejs
need npm npm
need python3 python3
cargo build --release --quiet --bin chartbridge
bench_database cbbench

# Signed handshakes, as many as a run can send.
HANDSHAKES_PER_RUN=${HANDSHAKES_PER_RUN:-400000}
# The node peer takes the shared script's one body (it keeps no memory of bodies).
export HS_BODY HS_SIG
HS_BODY=$(printf '{"timestamp":"%s","user":{"id":"usr-bench","email":"b@example.org","name":"Bench","partner_roles":["clinician"]},"practice":{"id":"pra-bench","name":"Bench Clinic"}}' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)")
HS_SIG="sha256=$(printf '%s' "$HS_BODY" | openssl dgst -sha256 -hmac "$SECRET" | awk '{print $NF}')"

# wrk's figures for one target: "req/s p99_ms non2xx".
measure() {
  local url=$1 script=${2:-}
  wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --latency ${script:+-s "$script"} "$url" | wrk_figures | cut -d' ' -f2,4,5
}
  local out
  if [ -n "$script" ]; then
    out=$(wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --latency -s "$script" "$url")
  else
    out=$(wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --latency "$url")
  fi
  local rps p99 bad
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; printf "%.1f", v}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "$rps $p99 ${bad:-0}"
}

serve() { # database URL, port
  start_serve "$1" "$2" "$WORK/serve-$2.log"
}

(cd "$PEER" && npm ci --silent --no-audit --no-fund >/dev/null 2>&1)
HINT_WEBHOOK_SECRET=$SECRET DATABASE_URL=$PG_URL PORT=18391 node "$PEER/server.js" >"$WORK/peer.log" 2>&1 &
until curl -sf http://127.0.0.1:18391/healthz >/dev/null; do sleep 0.05; done
serve "$PG_URL" 18392
serve "sqlite:$WORK/bench.sqlite" 18393
psql "$PG_URL" -qc "CREATE TABLE IF NOT EXISTS pgbench_one (id BIGSERIAL PRIMARY KEY, v TEXT)" >/dev/null
echo "INSERT INTO pgbench_one (v) VALUES ('x');" >"$WORK/insert.sql"

count_sessions() { psql "$PG_URL" -qtAc "SELECT COUNT(*) FROM hint_sessions"; }

printf '%-44s %10s %10s %8s\n' "" "per second" "p99 ms" "non-2xx"
for round in $(seq 1 "$ROUNDS"); do
  [ "$ROUNDS" -gt 1 ] && echo "round $round"
  sign_handshakes "$WORK/handshakes.$round" "$HANDSHAKES_PER_RUN"
  export SIGNED="$WORK/handshakes.$round" SIGNATURE_HEADER=X-Hint-Signature
  read -r pg_rps pg_p99 pg_bad < <(measure http://127.0.0.1:18392/hint/handshake "$PWD/benches/wrk/signed.lua")
  read -r peer_rps peer_p99 peer_bad < <(measure http://127.0.0.1:18391/hint/handshake "$PWD/../shared/bench/handshake.lua")
  read -r sq_rps sq_p99 sq_bad < <(measure http://127.0.0.1:18393/hint/handshake "$PWD/benches/wrk/signed.lua")
  read -r hz_rps hz_p99 _ < <(measure http://127.0.0.1:18392/healthz)
  tps=$(pgbench -n -c "$CLIENTS" -j 2 -T "$DURATION" -f "$WORK/insert.sql" "$PG_URL" 2>/dev/null |
    awk '/^tps/ {printf "%d", $3}')
  printf '%-44s %10s %10s %8s\n' "Chartbridge handshakes, PostgreSQL" "$pg_rps" "$pg_p99" "$pg_bad"
  printf '%-44s %10s %10s %8s\n' "node peer handshakes, PostgreSQL" "$peer_rps" "$peer_p99" "$peer_bad"
  printf '%-44s %10s\n' "pgbench one-row INSERT tps ($CLIENTS clients)" "$tps"
  printf '%-44s %10s %10s %8s\n' "Chartbridge handshakes, SQLite" "$sq_rps" "$sq_p99" "$sq_bad"
  printf '%-44s %10s %10s\n' "Chartbridge /healthz" "$hz_rps" "$hz_p99"
  awk -v a="$pg_rps" -v t="$tps" -v p="$peer_rps" \
    'BEGIN { printf "PostgreSQL: %.2fx pgbench, %.2fx the node peer\n", a / t, a / p }'
done
echo "sessions stored on PostgreSQL: $(count_sessions) (the per-user cap keeps 20 of one user's)"
