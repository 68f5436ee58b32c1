#!/usr/bin/env bash
# A year of a large deployment beside an empty database, in one run (release, loopback):
#   - `chartbridge-seed` writes the year through the app's own code (its migrations, sealing,
#     ids, chain hashing): SCALE=1 is 500 practices, 2,000,000 visits (one practice of 50,000
#     patients holds 200,000), 20,000,000 chained trail entries, a week of sessions, 72 hours
#     of Hint's event ids; SQLite gets SQLITE_SCALE (a tenth);
#   - on the empty and on the full database, the same measures: pages of the largest practice
#     (wrk, CLIENTS connections, p50/p99), signed handshakes/s over 500 practices, the trail's
#     CSV export (rows/s, the server's peak RSS), the job claim, `audit verify`, a migration's
#     locks, and last the purge of the largest practice;
#   - a table: empty | full | ratio.
# Usage: bash benches/scale.sh   (SCALE=1 SQLITE_SCALE=0.1 DATABASES="postgres sqlite"
#        CLIENTS=32 DURATION=8; PG_ADMIN_URL)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-1}
SQLITE_SCALE=${SQLITE_SCALE:-0.1}
EMPTY_SCALE=${EMPTY_SCALE:-0.00005}
DATABASES=${DATABASES:-postgres sqlite}
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-8}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
. benches/common.sh
need wrk wrk
need psql postgresql-client
need sqlite3 sqlite3
need python3 python3
cargo build --release --quiet --bin chartbridge --bin chartbridge-seed --bin chartbridge-demo
export CHARTBRIDGE_SECRET_KEY
bench_database cbscale
EMPTY_DB=${DB}_empty
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $EMPTY_DB" >/dev/null
trap 'bench_cleanup; psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $EMPTY_DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
PORT=18591
URL=http://127.0.0.1:$PORT
export PRACTICE_PREFIX=pra-year-  # sign_handshakes: the seeded practices

# wrk's figures: "req/s p50_ms p99_ms non2xx".
measure() {
  local path=$1
  shift
  wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --latency "$@" "$URL$path" | wrk_figures | cut -d' ' -f2-
}

# A signed handshake for the largest practice's admin and clinician (with a patient: the
# clinical chart's), answering the session key.
session() {
  local patient=${1:-}
  local body sig extra=""
  [ -n "$patient" ] && extra=",\"patient\":{\"id\":\"$patient\"}"
  body=$(printf '{"timestamp":"%s","user":{"id":"usr-y0-0","email":"a@example.org","name":"Year Admin","partner_roles":["admin","clinician"]},"practice":{"id":"pra-year-0","name":"Year Clinic 0"}%s}' \
    "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$extra")
  sig="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$SECRET" | awk '{print $NF}')"
  curl -sf -X POST -H "X-Hint-Signature: $sig" -H 'Content-Type: application/json' --data "$body" "$URL/hint/handshake" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["session_key"])'
}

# Peak resident memory (MiB) of $SERVE_PID while a command runs.
with_peak_rss() {
  local peak=0 rss
  "$@" &
  local job=$!
  while kill -0 "$job" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVE_PID/status")
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.05
  done
  wait "$job"
  echo $((peak / 1024)) >"$WORK/peak"
}

# The measures on one database ($1: empty|full): lines "name|value" in $WORK/$KIND.$1.
measure_database() {
  local which=$1 url=$2 out="$WORK/$KIND.$1"
  : >"$out"
  local started
  started=$(date +%s%N)
  local log="$WORK/serve.$KIND.$which.log"
  RUST_LOG=warn,chartbridge::hint::directory=info start_serve "$url" "$PORT" "$log"
  echo "start to ready|$(( ($(date +%s%N) - started) / 1000000 )) ms" >>"$out"
  local key chart_key patient deep
  key=$(session)
  # The largest practice's patient index read into this instance (the core page starts it;
  # each instance does it once per practice after its start): the line it logs.
  curl -sf -o /dev/null -H "X-Hint-Session-Key: $key" "$URL/hint/core_page"
  local loaded=""
  for _ in $(seq 600); do
    loaded=$(grep '"patient index loaded"' "$log" | grep '"pra-year-0"' | head -1) && [ -n "$loaded" ] && break
    sleep 0.1
  done
  echo "patient index loaded|$(python3 -c 'import json, sys; l = json.loads(sys.argv[1]) if sys.argv[1] else {}; print("%s patients in %s ms" % (l.get("patients", "?"), l.get("ms", "not loaded in 60 s")))' "$loaded")" >>"$out"
  patient=pat-y0-1
  chart_key=$(session "$patient")
  # The visit list 90% of the way down the largest practice's visits.
  deep=$(sql "$url" "SELECT created_at || '.' || id FROM visits WHERE practice_id = 'pra-year-0' ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET (SELECT COUNT(*) * 9 / 10 FROM visits WHERE practice_id = 'pra-year-0')")
  [ -n "$deep" ] || deep="0.vis_none"
  local day
  day=$(date -u -d '-100 days' +%Y-%m-%d)
  local name path r
  while IFS='|' read -r name path; do
    r=$(measure "$path" -H "X-Hint-Session-Key: $key")
    echo "$name|$r" >>"$out"
  done <<EOF
core page|/hint/core_page
visit list, newest page|/hint/visits
visit list, 90% down|/hint/visits?after=$deep
audit page, by patient|/hint/audit?patient=$patient
audit page, by user|/hint/audit?user=usr-y0-3
audit page, one day|/hint/audit?from=$day&to=$day
EOF
  r=$(measure /hint/clinical_chart -H "X-Hint-Session-Key: $chart_key")
  echo "patient chart|$r" >>"$out"

  # Signed handshakes over 500 practices (the seeded ones on the full database).
  sign_handshakes "$WORK/handshakes" 400000
  r=$(SIGNED="$WORK/handshakes" SIGNATURE_HEADER=X-Hint-Signature measure /hint/handshake -s "$PWD/benches/wrk/signed.lua")
  echo "signed handshakes|$r" >>"$out"

  # The largest practice's whole trail as CSV.
  local rows seconds before_rss
  before_rss=$(awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$SERVE_PID/status")
  started=$(date +%s%N)
  with_peak_rss sh -c "curl -sf -H 'X-Hint-Session-Key: $key' '$URL/hint/audit.csv' | wc -l >'$WORK/csv.lines'"
  seconds=$(awk -v s="$started" -v e="$(date +%s%N)" 'BEGIN {printf "%.2f", (e - s) / 1e9}')
  rows=$(($(cat "$WORK/csv.lines") - 1))
  echo "audit CSV export|$rows rows in $seconds s, $(awk -v r="$rows" -v s="$seconds" 'BEGIN {printf "%d", r / s}') rows/s, peak RSS $(cat "$WORK/peak") MiB (the instance held $before_rss MiB before it)" >>"$out"
  kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true

  # Partners' results on this database: benches/webhooks.sh on it as it is (its demo practices
  # beside the seeded ones, its fixture of open Tiep visits added to the year's).
  if [ "$KIND" = postgres ]; then
    DATABASES=postgres PG_DATABASE=$url bash benches/webhooks.sh >"$WORK/webhooks.log" 2>&1 || true
  else
    DATABASES=sqlite SQLITE_DATABASE=${url#sqlite:} bash benches/webhooks.sh >"$WORK/webhooks.log" 2>&1 || true
  fi
  for name in "signed Tiep reports" "MediQuo deliveries"; do
    # "name  requests non-2xx per-second p50 p99 …": rps, p50, p99, non-2xx.
    r=$(grep "^$name" "$WORK/webhooks.log" | head -1 | sed "s/^$name//" | awk '{printf "%d %.1f %.1f %d", $3, $4, $5, $2}')
    echo "$name|${r:-failed: $(tail -1 "$WORK/webhooks.log")}" >>"$out"
  done
  grep -E "^(Tiep|MediQuo):" "$WORK/webhooks.log" | sed 's/^\([A-Za-z]*\):/\1 filed|/' >>"$out" || true

  # The job claim, as the runner asks it (a due job, oldest first), planned and run.
  local now_ms
  now_ms=$(($(date +%s) * 1000))
  if [ "$KIND" = postgres ]; then
    r=$(psql "$url" -qtAc "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $now_ms AND (locked_until IS NULL OR locked_until < $now_ms) ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED" |
      python3 -c 'import json, sys; p = json.load(sys.stdin)[0]; print("%.3f ms" % (p["Planning Time"] + p["Execution Time"]))')
  else
    # A thousand claims' reads in one session: the time of one.
    for _ in $(seq 1000); do
      echo "SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $now_ms AND (locked_until IS NULL OR locked_until < $now_ms) ORDER BY run_at LIMIT 1;"
    done >"$WORK/claims.sql"
    r=$(timed sqlite3 "${url#sqlite:}" <"$WORK/claims.sql" | awk '{printf "%.3f ms", $1}')
  fi
  echo "job claim|$r" >>"$out"

  # The whole trail verified.
  local entries
  entries=$(sql "$url" "SELECT COUNT(*) FROM audit_events")
  started=$(date +%s%N)
  run_app "$url" audit verify >"$WORK/verify.log" 2>&1 || { echo "audit verify failed:"; tail -5 "$WORK/verify.log"; } >&2
  seconds=$(awk -v s="$started" -v e="$(date +%s%N)" 'BEGIN {printf "%.2f", (e - s) / 1e9}')
  echo "audit verify|$entries entries in $seconds s, $(awk -v n="$entries" -v s="$seconds" 'BEGIN {printf "%d", n / s}') entries/s" >>"$out"

  # A migration's locks: a column added to the largest tables as our migrations add them (a
  # constant default: no rewrite, a moment's lock), and an index on the trail built as a
  # migration in a transaction builds it (writes to the trail wait for all of it) and as
  # PostgreSQL builds one without stopping writes (CONCURRENTLY, outside a transaction).
  if [ "$KIND" = postgres ]; then
    local t1 t2 t3
    t1=$(timed psql "$url" -qc "BEGIN; ALTER TABLE visits ADD COLUMN scale_probe BIGINT NOT NULL DEFAULT 0; ALTER TABLE audit_events ADD COLUMN scale_probe BIGINT NOT NULL DEFAULT 0; ROLLBACK")
    t2=$(timed psql "$url" -qc "BEGIN; CREATE INDEX scale_probe ON audit_events (practice_id, action); ROLLBACK")
    t3=$(timed psql "$url" -qc "CREATE INDEX CONCURRENTLY scale_probe ON audit_events (practice_id, action)")
    psql "$url" -qc "DROP INDEX scale_probe" >/dev/null
    echo "migration locks|columns added: ${t1} s locked; trail index: ${t2} s with writes stopped, CONCURRENTLY ${t3} s without" >>"$out"
  fi

  # Last, the largest practice purged (its trail stays).
  started=$(date +%s%N)
  run_app "$url" practice purge --practice pra-year-0 --even-if-installed >"$WORK/purge.log" 2>&1 || { echo "purge failed:"; tail -5 "$WORK/purge.log"; } >&2
  seconds=$(awk -v s="$started" -v e="$(date +%s%N)" 'BEGIN {printf "%.2f", (e - s) / 1e9}')
  echo "purge of the largest practice|$seconds s" >>"$out"
}

timed() { # command…: its seconds
  local started
  started=$(date +%s%N)
  "$@" >/dev/null
  awk -v s="$started" -v e="$(date +%s%N)" 'BEGIN {printf "%.2f", (e - s) / 1e9}'
}

run_app() { # database URL, command…
  local url=$1
  shift
  env HINT_API_KEY=k HINT_PRODUCT_ID=ppro-bench HINT_WEBHOOK_SECRET=$SECRET CHARTBRIDGE_SECRET_KEY=$CHARTBRIDGE_SECRET_KEY \
    DATABASE_URL=$url RUST_LOG=warn $BIN "$@"
}

sql() { # database URL, statement
  if [[ $1 == postgres* ]]; then psql "$1" -qtAc "$2"; else sqlite3 -cmd ".timeout 30000" "${1#sqlite:}" "$2"; fi
}

report() {
  echo
  echo "== $KIND (scale $1): $(cat "$WORK/$KIND.seeded")"
  printf '%-30s %30s %30s %6s\n' "" "empty" "full" "ratio"
  paste -d'|' "$WORK/$KIND.empty" "$WORK/$KIND.full" | while IFS='|' read -r name empty _ full; do
    local ratio=""
    if [[ $empty =~ ^[0-9]+\ [0-9.]+\ [0-9.]+\ [0-9]+$ ]]; then
      read -r e_rps e_p50 e_p99 e_bad <<<"$empty"
      read -r f_rps f_p50 f_p99 f_bad <<<"$full"
      ratio=$(awk -v a="$f_rps" -v b="$e_rps" 'BEGIN {printf "%.2fx", (b ? a / b : 0)}')
      empty="$e_rps/s p50 $e_p50 p99 $e_p99"
      full="$f_rps/s p50 $f_p50 p99 $f_p99"
      if [ "$e_bad" != 0 ]; then empty="$empty non-2xx $e_bad"; fi
      if [ "$f_bad" != 0 ]; then full="$full non-2xx $f_bad"; fi
      printf '%-30s %30s %30s %6s\n' "$name" "$empty" "$full" "$ratio"
    else
      printf '%-34s\n    empty: %s\n    full:  %s\n' "$name" "$empty" "$full"
    fi
  done
}

for KIND in $DATABASES; do
  if [ "$KIND" = postgres ]; then
    scale=$SCALE empty="${PG_ADMIN_URL%/*}/$EMPTY_DB" full=$PG_URL
  else
    scale=$SQLITE_SCALE empty="sqlite:$WORK/empty.sqlite" full="sqlite:$WORK/full.sqlite"
  fi
  # "Empty": the same practice holding ten visits and a thousand entries (what the pages show
  # is then alike), nothing else.
  target/release/chartbridge-seed --database-url "$empty" --scale "$EMPTY_SCALE" >/dev/null 2>&1
  target/release/chartbridge-seed --database-url "$full" --scale "$scale" >"$WORK/$KIND.seed.out" 2>"$WORK/$KIND.seed.log"
  {
    tr '\n' ' ' <"$WORK/$KIND.seed.out"
    if [ "$KIND" = sqlite ]; then
      for table in visits audit_events; do
        sqlite3 "${full#sqlite:}" "SELECT '$table: ' || ((SELECT SUM(pgsize) FROM dbstat WHERE name = '$table' OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = '$table' AND type = 'index')) / (SELECT COUNT(*) FROM $table)) || ' bytes a row with its indexes'" | tr '\n' ' '
      done
    fi
  } >"$WORK/$KIND.seeded"
  measure_database empty "$empty"
  measure_database full "$full"
  report "$scale"
done
