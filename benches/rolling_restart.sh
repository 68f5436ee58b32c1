#!/usr/bin/env bash
# Rolling restart under load: three `chartbridge serve` (release, the same secrets) on one
# fresh PostgreSQL database behind nginx (docs/nginx.conf as it stands, on this script's ports:
# passive checks, upstream keep-alive, proxy_next_upstream), signed handshakes at full speed
# with wrk through nginx for DURATION seconds; meanwhile each instance in turn is sent SIGTERM
# and started again once it has exited, the next only once its /readyz answers 200.
# Prints what wrk's clients got (2xx, each other status, socket errors), how each instance
# stopped, and nginx's error-log lines about its upstreams.
# With BALANCER=haproxy, the same behind a readiness-driven balancer (docs/haproxy.cfg: HAProxy
# polls /readyz every second and takes an instance out on its first 503).
# Usage: bash benches/rolling_restart.sh   (CLIENTS=32 DURATION=40 HANDSHAKES=900000 BALANCER=nginx; PG_ADMIN_URL)
# Needs PostgreSQL; installs nginx (or haproxy), wrk, psql and python3 with apt-get when
# missing. The balancer runs in the foreground of this script with a configuration in a
# temporary folder (no service).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-40}
HANDSHAKES=${HANDSHAKES:-900000}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PORTS=(18481 18482 18483)
PROXY_PORT=18480
BALANCER=${BALANCER:-nginx}
if [ "$BALANCER" = haproxy ]; then need haproxy haproxy; else need nginx nginx; fi
need wrk wrk
need psql postgresql-client
need python3 python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet --bin chartbridge
bench_database cbrolling
chmod 755 "$WORK"
declare -A PIDS

instance() { # index
  local port=${PORTS[$1]}
  start_serve "$PG_URL" "$port" "$WORK/serve-$port.log" CHARTBRIDGE_TRUSTED_PROXIES=127.0.0.1
  PIDS[$1]=$SERVE_PID
}
for i in 0 1 2; do instance "$i"; done

if [ "$BALANCER" = haproxy ]; then
  # docs/haproxy.cfg on this script's ports.
  mkdir -p "$WORK/haproxy"
  sed -e "s/127.0.0.1:8081/127.0.0.1:${PORTS[0]}/; s/127.0.0.1:8082/127.0.0.1:${PORTS[1]}/" \
    -e "s/127.0.0.1:8083/127.0.0.1:${PORTS[2]}/; s/bind :8080/bind 127.0.0.1:$PROXY_PORT/" \
    docs/haproxy.cfg >"$WORK/haproxy.cfg"
  printf 'global\n    log stderr format short local0 info\n    maxconn 4096\n' >"$WORK/global.cfg"
  # Logged: servers taken out or back, and any request that did not end normally.
  sed -i 's/^defaults$/defaults\n    log global\n    option httplog\n    option dontlog-normal/' "$WORK/haproxy.cfg"
  haproxy -c -q -f "$WORK/global.cfg" -f "$WORK/haproxy.cfg"
  haproxy -db -f "$WORK/global.cfg" -f "$WORK/haproxy.cfg" 2>"$WORK/haproxy/error.log" &
else
  # docs/nginx.conf on this script's ports, inside a configuration of its own.
  sed -e "s/127.0.0.1:8081/127.0.0.1:${PORTS[0]}/; s/127.0.0.1:8082/127.0.0.1:${PORTS[1]}/" \
    -e "s/127.0.0.1:8083/127.0.0.1:${PORTS[2]}/; s/listen 8080;/listen 127.0.0.1:$PROXY_PORT;/" \
    docs/nginx.conf >"$WORK/chartbridge.conf"
  mkdir -p "$WORK/nginx"
  {
    [ "$(id -u)" = 0 ] && echo "user root;"
    cat <<CONF
  worker_processes 1;
  daemon off;
  pid $WORK/nginx/nginx.pid;
  error_log $WORK/nginx/error.log warn;
  events { worker_connections 4096; }
  http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    include $WORK/chartbridge.conf;
  }
CONF
  } >"$WORK/nginx.conf"
  "$NGINX" -t -q -c "$WORK/nginx.conf" -p "$WORK/nginx"
  "$NGINX" -c "$WORK/nginx.conf" -p "$WORK/nginx" &
fi
until curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/healthz"; do sleep 0.05; done

sign_handshakes "$WORK/handshakes" "$HANDSHAKES"
export SIGNED="$WORK/handshakes" SIGNATURE_HEADER=X-Hint-Signature WRK_SCRIPTS="$PWD/benches/wrk"
wrk -t2 -c"$CLIENTS" -d"${DURATION}s" -s benches/wrk/statuses.lua \
  "http://127.0.0.1:$PROXY_PORT/hint/handshake" >"$WORK/wrk.out" &
WRK=$!

# Each instance in turn: SIGTERM, its exit waited for, started again, ready again.
sleep 5
for i in 0 1 2; do
  port=${PORTS[$i]}
  pid=${PIDS[$i]}
  started=$(date +%s.%N)
  kill -TERM "$pid"
  set +e
  wait "$pid"
  status=$?
  set -e
  stopped=$(date +%s.%N)
  instance "$i"
  ready=$(date +%s.%N)
  awk -v p="$port" -v s="$status" -v a="$started" -v b="$stopped" -v c="$ready" -v t="$(date -d "@$started" +%T)" \
    'BEGIN { printf "instance :%s: SIGTERM at %s, exit %s %.2f s after it, ready again %.2f s later\n", p, t, s, b - a, c - b }'
  sleep 5
done
wait "$WRK"

print_statuses "$WORK/wrk.out"
echo "handshake bodies remembered: $(psql "$PG_URL" -qtAc "SELECT COUNT(*) FROM handshake_signatures") (at least the 2xx)"
if [ "$BALANCER" = haproxy ]; then
  # What HAProxy said of its servers (taken out, back), and the requests that did not end
  # normally (none, when nothing failed).
  grep -oE 'Server [^ ]+ is (DOWN|UP)' "$WORK/haproxy/error.log" | sort | uniq -c || true
  echo "HAProxy requests that did not end normally: $(grep ' instances/' "$WORK/haproxy/error.log" | grep -vcE 'is (DOWN|UP)' || true)"
  grep ' instances/' "$WORK/haproxy/error.log" | grep -v -E 'is (DOWN|UP)' | head -10 || true
else
  echo "nginx error-log lines about upstreams: $(grep -c upstream "$WORK/nginx/error.log" || true)"
  # Each kind once, with its count (times, connection numbers and clients stripped).
  grep upstream "$WORK/nginx/error.log" |
    sed -E 's/^[0-9\/]+ [0-9:]+ \[([a-z]+)\] [0-9#]+: \*[0-9]+ /[\1] /; s/, client: .*//' |
    sort | uniq -c | sort -rn || true
  # The failed ones in full (when, which instance).
  grep -E 'upstream' "$WORK/nginx/error.log" | grep -v -e 'temporarily disabled' -e 'Connection refused' |
    sed -E 's/, client: [^,]*, server: [^,]*,/,/' | head -20 || true
fi
