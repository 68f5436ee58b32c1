#!/usr/bin/env bash
# Signed partner deliveries/s beside their ceilings, in one run on loopback (wrk, 2 threads,
# the release demo: the app with sandbox Hint and the sandbox partners):
#   - signed Tiep reports, each for a distinct open visit (a fixture writes the visits);
#   - MediQuo "consultation finished" deliveries, each a new consultation;
#   - pgbench, one-row INSERT per transaction, the same clients (PostgreSQL's commit ceiling);
#   - the demo's /healthz (the framework's ceiling).
# After each run the rows are counted: every 2xx must be a stored result (nothing lost), and
# the time until every result is filed (visit completed or created, write-back queued, trail
# written) is printed; the next run starts only then.
# The deliveries are spread over PRACTICES practices (the demo's own and its bench practices,
# each with every partner connected), as the partners' servers send every practice's: each
# stays within its own budget of signed traffic, with the default configuration.
# Usage: bash benches/webhooks.sh   (CLIENTS=32 DURATION=5 VISITS=300000 ROUNDS=1 PRACTICES=100 DATABASES="postgres sqlite")
# With ROUNDS > 1 each database runs that many rounds (VISITS Tiep visits each) and PostgreSQL's
# ratios end with their median.
# WAL_DETAIL=1 prints, after each run on PostgreSQL, the relations its WAL was written for
# (the server's wal_keep_size must hold the run's WAL: ALTER SYSTEM SET wal_keep_size = '16GB').
# PG_DATABASE=postgres://… or SQLITE_DATABASE=/path runs on that database as it is (filled by
# benches/scale.sh) instead of a new one, and leaves it there.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-5}
VISITS=${VISITS:-300000}
DATABASES=${DATABASES:-postgres sqlite}
ROUNDS=${ROUNDS:-1}
PRACTICES=${PRACTICES:-100}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
. benches/common.sh
for tool in wrk pgbench sqlite3 python3; do
  command -v "$tool" >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk postgresql-client sqlite3 python3 >/dev/null
  }
done
cargo build --release --quiet --bin chartbridge-demo
WORK=$(mktemp -d)
# This run's fixture ids (a database given with PG_DATABASE keeps an earlier run's).
RUN_ID=$$
DB=cbbench_$$
PG_URL="${PG_ADMIN_URL%/*}/$DB"
DEMO=
cleanup() {
  [ -n "$DEMO" ] && kill "$DEMO" 2>/dev/null || true
  [ -n "${PG_DATABASE:-}" ] || psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
TIEP_SECRET=$(grep -o '"tiep-sandbox-hook-secret-[0-9]*"' sandbox/src/tiep.rs | tr -d '"')
export MEDIQUO_SIGNATURE
MEDIQUO_SIGNATURE=$(grep -o '"mediquo-sandbox-signature-[0-9]*"' sandbox/src/mediquo.rs | tr -d '"')

# wrk's figures for one target: "requests req/s p50_ms p99_ms non2xx".
measure() {
  local url=$1 script=${2:-}
  wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --latency ${script:+-s "$script"} "$url" | wrk_figures
}

# pgbench_tps: one-row INSERTs per second with the same clients (PostgreSQL's commit ceiling);
# nothing on SQLite. The previous run's dead rows are vacuumed first: pgbench and the run after
# it both start at rest, neither behind the autovacuum the previous run set off.
pgbench_tps() {
  [ "$KIND" = postgres ] || return 0
  psql "$PG_URL" -qc "VACUUM ANALYZE" >/dev/null
  psql "$PG_URL" -qc "CREATE TABLE pgbench_one (id BIGSERIAL PRIMARY KEY, v TEXT)" >/dev/null
  pgbench -n -c "$CLIENTS" -j 2 -T "$DURATION" -f "$WORK/insert.sql" "$PG_URL" 2>/dev/null | awk '/^tps/ {printf "%d", $3}'
  psql "$PG_URL" -qc "DROP TABLE pgbench_one" >/dev/null
}

# wal_now: PostgreSQL's WAL written so far, as "bytes full-page-images checkpoints" (the
# server's counters: every database on it, which is the benchmark's alone here).
wal_now() {
  [ "$KIND" = postgres ] || return 0
  psql "$PG_URL" -qtAc "SELECT wal_bytes, wal_fpi, (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter), pg_current_wal_lsn(), (SELECT SUM(COALESCE(heap_blks_read, 0) + COALESCE(idx_blks_read, 0)) FROM pg_statio_user_tables) FROM pg_stat_wal" | tr '|' ' '
}

# wal_detail <before> <after>: with WAL_DETAIL=1, the relations that WAL was written for, the
# most first, and how much of it was full-page images (pg_walinspect; each record counted for
# the first block it names).
wal_detail() {
  [ "$KIND" = postgres ] && [ -n "${WAL_DETAIL:-}" ] || return 0
  local from to
  from=$(cut -d' ' -f4 <<<"$1")
  to=$(cut -d' ' -f4 <<<"$2")
  psql "$PG_URL" -qc "CREATE EXTENSION IF NOT EXISTS pg_walinspect" >/dev/null
  psql "$PG_URL" -qc "
    WITH w AS (
      SELECT substring(block_ref from 'rel [0-9]+/[0-9]+/([0-9]+)')::oid AS node,
             record_length + fpi_length AS bytes, fpi_length, (fpi_length > 0)::int AS fpi
      FROM pg_get_wal_records_info('$from', '$to'))
    SELECT COALESCE(c.relname, w.node::text, '(no relation)') AS relation,
           pg_size_pretty(SUM(bytes)) AS wal, ROUND(100.0 * SUM(bytes) / (SELECT SUM(bytes) FROM w), 1) AS pct,
           pg_size_pretty(SUM(fpi_length)) AS in_full_pages, SUM(fpi) AS full_pages
    FROM w LEFT JOIN pg_class c ON c.relfilenode = w.node
    GROUP BY 1 ORDER BY SUM(bytes) DESC LIMIT 15" ||
    echo "(the run's WAL was recycled before it was read: set wal_keep_size above the run's WAL)"
}

# wal_per <before> <after> <deliveries>: what a delivery wrote to the WAL, from wal_now's two.
wal_per() {
  [ "$KIND" = postgres ] || return 0
  awk -v n="$3" -v b="$1" -v a="$2" 'BEGIN {
    split(b, x, " "); split(a, y, " ")
    if (n > 0) printf ", WAL %d bytes and %.2f full-page images a delivery, %d checkpoint(s), %.2f pages read from outside shared buffers a delivery", (y[1] - x[1]) / n, (y[2] - x[2]) / n, y[3] - x[3], (y[5] - x[5]) / n
  }'
}

# sql <statement>: runs it on the database under test.
sql() {
  if [ "$KIND" = postgres ]; then psql "$PG_URL" -qtAc "$1"; else sqlite3 -cmd ".timeout 30000" "$SQLITE_FILE" "$1"; fi
}

# until_filed <count query> <expected>: waits (5 minutes at most) until every receipt is filed
# (the receipts' tables empty: a receipt is deleted once its filing has committed), then until
# the query counts the expected rows; prints the milliseconds until the receipts were gone (or,
# if the count was short then, until it was not). The receipts are what is polled: counting
# the results themselves every 0.1 s was a scan of every visit each time, which on a year's
# database read ~100 pages a delivery and took a core from the filing it was timing.
until_filed() {
  local start now done_at
  start=$(date +%s%N)
  while [ "$(sql "SELECT (SELECT COUNT(*) FROM result_receipts) + (SELECT COUNT(*) FROM recording_receipts)")" -gt 0 ]; do
    now=$(date +%s%N)
    [ $(( (now - start) / 1000000000 )) -gt 300 ] && break
    sleep 0.1
  done
  done_at=$(date +%s%N)
  while [ "$(sql "$1")" -lt "$2" ]; do
    now=$(date +%s%N)
    [ $(( (now - start) / 1000000000 )) -gt 300 ] && break
    sleep 0.5
    done_at=$(date +%s%N)
  done
  echo $(( (done_at - start) / 1000000 ))
}

run() { # postgres | sqlite
  KIND=$1
  local flags=()
  rm -rf "$WORK/demo"
  SQLITE_FILE=$WORK/demo/demo.sqlite
  if [ "$KIND" = postgres ] && [ -n "${PG_DATABASE:-}" ]; then
    PG_URL=$PG_DATABASE
    flags=(--database-url "$PG_URL")
  elif [ "$KIND" = postgres ]; then
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null
    flags=(--database-url "$PG_URL")
  elif [ -n "${SQLITE_DATABASE:-}" ]; then
    SQLITE_FILE=$SQLITE_DATABASE
    flags=(--database-url "sqlite:$SQLITE_FILE")
  fi
  local demo_started=$(($(date +%s) * 1000 - 1000))
  RUST_LOG=warn target/release/chartbridge-demo \
    --port 18480 --app-port 18481 --partners-port 18482 --data-dir "$WORK/demo" "${flags[@]}" \
    --bench-practices $((PRACTICES - 1)) \
    >"$WORK/demo.log" 2>&1 &
  DEMO=$!
  until curl -sf http://127.0.0.1:18481/readyz >/dev/null && grep -q "demo is running" "$WORK/demo.log"; do sleep 0.1; done
  # The practices, numbered from 0, and one patient of each (its list loaded by a search).
  # (This demo's own: a database kept between runs holds earlier demos' practices too.)
  sql "SELECT practice_id FROM partner_connections WHERE partner = 'tiep' AND updated_at >= $demo_started ORDER BY practice_id" >"$WORK/practices"
  local n_practices
  n_practices=$(wc -l <"$WORK/practices")
  sql "DROP TABLE IF EXISTS bench_practices; CREATE TABLE bench_practices (n INTEGER PRIMARY KEY, id TEXT NOT NULL)"
  awk -v q="'" '{printf "INSERT INTO bench_practices VALUES (%d, %s%s%s);\n", NR - 1, q, $1, q}' "$WORK/practices" >"$WORK/practices.sql"
  if [ "$KIND" = postgres ]; then psql "$PG_URL" -q -f "$WORK/practices.sql"; else sqlite3 -cmd ".timeout 30000" "$SQLITE_FILE" <"$WORK/practices.sql"; fi
  sql "SELECT practice_id, MIN(patient_id) FROM patient_index WHERE practice_id IN (SELECT id FROM bench_practices) GROUP BY practice_id ORDER BY practice_id" |
    tr '|' ' ' >"$WORK/mediquo.targets"
  [ "$(wc -l <"$WORK/mediquo.targets")" -eq "$n_practices" ] || { echo "a practice has no patient list" >&2; exit 1; }
  # The fixture: open Tiep visits, each with its pending poll (as a launch leaves them), a
  # distinct set for each round, practice by practice in turn.
  local later=$(( ($(date +%s) + 3600) * 1000 ))
  local series="generate_series(1, $VISITS) g"
  local g=g round
  if [ "$KIND" = sqlite ]; then series="generate_series(1, $VISITS)"; g=value; fi
  local practice_of="(SELECT id FROM bench_practices WHERE n = $g % $n_practices)"
  for round in $(seq 1 "$ROUNDS"); do
    sql "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, launch, created_at, updated_at)
         SELECT 'vis_wrk_${RUN_ID}_${round}_' || $g, $practice_of, 'pat-bench', 'Bench Patient', 'user-bench', 'Bench', 'tiep', 'in_progress', '{}', 0, 0 FROM $series;
         INSERT INTO jobs (id, practice_id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at, rerun, created_at, updated_at)
         SELECT 'job_wrk_${RUN_ID}_${round}_' || $g, $practice_of, 'poll_partner', 'poll_partner:vis_wrk_${RUN_ID}_${round}_' || $g, '{\"visit_id\":\"vis_wrk_${RUN_ID}_${round}_' || $g || '\"}', 'queued', 0, 8, $later, 0, 0, 0 FROM $series;" >/dev/null
    TIEP_SECRET=$TIEP_SECRET VISITS=$VISITS ROUND=${RUN_ID}_$round PRACTICES_FILE="$WORK/practices" python3 - >"$WORK/reports.$round" <<'PY'
import hashlib, hmac, json, os
secret = os.environ["TIEP_SECRET"].encode()
practices = open(os.environ["PRACTICES_FILE"]).read().split()
for i in range(1, int(os.environ["VISITS"]) + 1):
    body = json.dumps({"context": {"visit_id": f"vis_wrk_{os.environ['ROUND']}_{i}"}, "payload": {"reason": "load test", "pain-level": 3}}, separators=(",", ":"))
    path = "/webhooks/tiep/" + practices[i % len(practices)]
    print("sha256=" + hmac.new(secret, body.encode(), hashlib.sha256).hexdigest(), path, body)
PY
  done
  [ "$KIND" = postgres ] && psql "$PG_URL" -qc "VACUUM ANALYZE" >/dev/null
  local hz
  read -r _ hz _ _ _ < <(measure http://127.0.0.1:18481/healthz)
  echo
  echo "== $KIND: ceiling /healthz $hz req/s"
  printf '%-26s %10s %8s %10s %8s %8s %s\n' "" "requests" "non-2xx" "per second" "p50 ms" "p99 ms" \
    "$([ "$KIND" = postgres ] && echo "pgbench just before ($CLIENTS clients), ratio")"
  [ "$KIND" = postgres ] && echo "INSERT INTO pgbench_one (v) VALUES ('x');" >"$WORK/insert.sql"
  for round in $(seq 1 "$ROUNDS"); do
    # Each run starts at rest (the previous run's results all filed), right after its own
    # pgbench run: the machine's pace drifts, so each ratio compares neighbours.
    local m_tps m_n m_rps m_p50 m_p99 m_bad
    m_tps=$(pgbench_tps)
    local wal_before wal_after
    wal_before=$(wal_now)
    read -r m_n m_rps m_p50 m_p99 m_bad < <(RUN_TAG=wrk$$r$round PREPARED=$((DURATION * 20000)) MEDIQUO_TARGETS="$WORK/mediquo.targets" measure "http://127.0.0.1:18481/" "$PWD/benches/wrk/mediquo.lua")
    local m_ok=$((m_n - m_bad)) stored_mq m_filed_ms
    m_filed_ms=$(until_filed "SELECT COUNT(*) FROM visits WHERE partner = 'mediquo' AND partner_ref LIKE 'consultation:wrk$$r$round-%'" "$m_ok")
    stored_mq=$(sql "SELECT COUNT(*) FROM visits WHERE partner = 'mediquo' AND partner_ref LIKE 'consultation:wrk$$r$round-%'")
    wal_after=$(wal_now)
    local m_wal
    m_wal=$(wal_per "$wal_before" "$wal_after" "$m_ok")
    wal_detail "$wal_before" "$wal_after" >"$WORK/wal.mediquo"

    local t_tps t_n t_rps t_p50 t_p99 t_bad
    t_tps=$(pgbench_tps)
    wal_before=$(wal_now)
    read -r t_n t_rps t_p50 t_p99 t_bad < <(SIGNED="$WORK/reports.$round" SIGNATURE_HEADER=X-Signature-256 measure "http://127.0.0.1:18481/" "$PWD/benches/wrk/signed.lua")
    local t_ok=$((t_n - t_bad)) completed queued t_filed_ms
    t_filed_ms=$(until_filed "SELECT COUNT(*) FROM visits WHERE id LIKE 'vis_wrk_${RUN_ID}_${round}_%' AND state = 'completed'" "$t_ok")
    completed=$(sql "SELECT COUNT(*) FROM visits WHERE id LIKE 'vis_wrk_${RUN_ID}_${round}_%' AND state = 'completed'")
    queued=$(sql "SELECT COUNT(*) FROM jobs WHERE dedupe_key LIKE 'sync_interaction:vis_wrk_${RUN_ID}_${round}_%'")
    wal_after=$(wal_now)
    local t_wal
    t_wal=$(wal_per "$wal_before" "$wal_after" "$t_ok")
    wal_detail "$wal_before" "$wal_after" >"$WORK/wal.tiep"

    [ "$ROUNDS" -gt 1 ] && echo "round $round"
    for row in "signed Tiep reports:$t_n:$t_bad:$t_rps:$t_p50:$t_p99:$t_tps" "MediQuo deliveries:$m_n:$m_bad:$m_rps:$m_p50:$m_p99:$m_tps"; do
      IFS=: read -r name n bad rps p50 p99 tps <<<"$row"
      printf '%-26s %10s %8s %10s %8s %8s %s\n' "$name" "$n" "$bad" "$rps" "$p50" "$p99" \
        "$([ -n "$tps" ] && awk -v a="$rps" -v t="$tps" 'BEGIN {printf "%d tps, %.2fx", t, a / t}')"
      [ -n "$tps" ] && awk -v a="$rps" -v t="$tps" 'BEGIN {printf "%.4f\n", a / t}' >>"$WORK/ratios.${name%% *}"
    done
    [ "$t_n" -le "$VISITS" ] || echo "warning: more Tiep reports sent ($t_n) than visits ($VISITS): some were repeats"

    # Nothing lost: every 2xx is a stored result, filed (a visit completed or created, its
    # write-back queued) within the time printed.
    echo "Tiep: $t_ok answered 2xx, $completed visits completed, $queued write-backs queued, all filed ${t_filed_ms} ms after the run$t_wal"
    echo "MediQuo: $m_ok answered 2xx, $stored_mq consultations stored, all filed ${m_filed_ms} ms after the run$m_wal"
    cat "$WORK/wal.tiep" "$WORK/wal.mediquo"
    if [ "$completed" -lt "$t_ok" ] || [ "$stored_mq" -lt "$m_ok" ]; then
      echo "LOST: a 2xx was answered for a delivery that was not stored" >&2
      exit 1
    fi
  done
  if [ "$KIND" = postgres ] && [ "$ROUNDS" -gt 1 ]; then
    for name in signed MediQuo; do
      sort -n "$WORK/ratios.$name" | awk -v name="$name" '{r[NR] = $1} END {
        printf "%s: median %.2fx pgbench over %d rounds (%.2f-%.2fx)\n",
          (name == "signed" ? "signed Tiep reports" : "MediQuo deliveries"), (NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2), NR, r[1], r[NR]}'
    done
  fi
  kill "$DEMO"; wait "$DEMO" 2>/dev/null || true; DEMO=
}

for database in $DATABASES; do run "$database"; done
