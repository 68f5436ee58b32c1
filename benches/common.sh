# Pieces the benchmarks share (sourced, from the repository's root): tools installed when
# missing, signed handshakes for wrk, and `chartbridge serve` started on a port.

SECRET=${SECRET:-0123456789abcdef0123456789abcdef}
# One key for every instance a script starts (they share a database, so they seal alike).
CHARTBRIDGE_SECRET_KEY=${CHARTBRIDGE_SECRET_KEY:-$(head -c32 /dev/urandom | base64)}
BIN=target/release/chartbridge

# `wrk_figures`: wrk's `--latency` report (on stdin) as "requests req/s p50_ms p99_ms non2xx".
wrk_figures() {
  awk '
    function ms(v) { if (v ~ /us$/) {sub(/us/, "", v); return v / 1000} if (v ~ /ms$/) {sub(/ms/, "", v); return v} sub(/s/, "", v); return v * 1000 }
    / requests in / {n = $1}
    /Requests\/sec/ {rps = $2}
    $1 == "50%" {p50 = ms($2)}
    $1 == "99%" {p99 = ms($2)}
    /Non-2xx/ {bad = $NF}
    END {printf "%d %d %.1f %.1f %d\n", n, rps, p50, p99, bad}'
}

# `need TOOL PACKAGE`: installs PACKAGE with apt-get when TOOL is not on the PATH.
need() {
  command -v "$1" >/dev/null && return
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# Signed handshakes, each body once (a body is accepted once: a replay is 401), timestamped
# now, spread over PRACTICES practices (500; one user each), as Hint's servers send every
# practice's: each practice stays within its own budget of signed traffic, as real ones do.
# `sign_handshakes FILE COUNT` writes "<signature> <body>" lines for benches/wrk/signed.lua;
# the practices are PRACTICE_PREFIX0… (pra-bench-0…).
PRACTICES=${PRACTICES:-500}
sign_handshakes() {
  SECRET=$SECRET COUNT=$2 PRACTICES=$PRACTICES PREFIX=${PRACTICE_PREFIX:-pra-bench-} python3 - >"$1" <<'PY'
import datetime, hashlib, hmac, os
secret = os.environ["SECRET"].encode()
prefix = os.environ["PREFIX"]
practices = int(os.environ["PRACTICES"])
stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
for i in range(int(os.environ["COUNT"])):
    p = i % practices
    body = ('{"timestamp":"%s.%09dZ","user":{"id":"usr-bench-%d","email":"b@example.org","name":"Bench",'
            '"partner_roles":["clinician"]},"practice":{"id":"%s%d","name":"Bench Clinic"}}') % (stamp, i, p, prefix, p)
    mac = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
    print("sha256=%s %s" % (mac, body))
PY
}

# `start_serve DATABASE_URL PORT LOG [VAR=value…]`: `chartbridge serve` in the background (its
# pid in $SERVE_PID), waited for until /readyz answers 200.
start_serve() {
  local url=$1 port=$2 log=$3
  shift 3
  env HINT_API_KEY=k HINT_PRODUCT_ID=ppro-bench HINT_WEBHOOK_SECRET=$SECRET \
    CHARTBRIDGE_SECRET_KEY=$CHARTBRIDGE_SECRET_KEY \
    CHARTBRIDGE_PUBLIC_URL=http://127.0.0.1:$port DATABASE_URL=$url PORT=$port CHARTBRIDGE_BIND=127.0.0.1 \
    RUST_LOG=${RUST_LOG:-warn} "$@" \
    $BIN serve >>"$log" 2>&1 &
  SERVE_PID=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
}

# `print_statuses WRK_OUTPUT`: what benches/wrk/statuses.lua counted — 2xx, each other status,
# wrk's socket errors and its rate.
print_statuses() {
  awk '$1 == "status" && $2 >= 200 && $2 < 300 { n += $3 } END { printf "2xx: %d\n", n }' "$1"
  awk '$1 == "status" && ($2 < 200 || $2 >= 300) { printf "status %s: %s\n", $2, $3; bad += $3 }
       END { if (!bad) print "non-2xx: 0" }' "$1"
  grep -o 'Socket errors:.*' "$1" || echo "socket errors: 0"
  grep -E 'Requests/sec' "$1" || true
}

# `bench_database PREFIX`: a work folder ($WORK) and a new PostgreSQL database ($DB, $PG_URL on
# $PG_ADMIN_URL), both removed on exit with every background job this script started.
bench_database() {
  WORK=$(mktemp -d)
  DB=${1}_$$
  PG_URL="${PG_ADMIN_URL%/*}/$DB"
  trap bench_cleanup EXIT
  psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null
}
bench_cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
