#!/usr/bin/env bash
# Abuse benchmark on loopback against the release demo (default budgets and caps):
#  1. 500 connections that never finish their headers: how long the server holds them, and
#     whether /healthz from another address is answered meanwhile;
#  2. 420 idle connections from one address with 400 open files allowed;
#  3. 800 clients posting junk Instant On codes for 40 s while Hint installs a practice.
# Usage: bash benches/abuse.sh   (needs python3)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin chartbridge-demo
WORK=$(mktemp -d)
trap 'pkill -f "chartbridge-demo --port 18480" || true; rm -rf "$WORK"' EXIT
start_demo() {
  RUST_LOG=warn target/release/chartbridge-demo --port 18480 --app-port 18481 --partners-port 18482 \
    --data-dir "$WORK/demo" > "$WORK/demo.log" 2>&1 &
  until curl -sf http://127.0.0.1:18481/readyz > /dev/null && grep -q "demo is running" "$WORK/demo.log"; do sleep 0.2; done
}
stop_demo() { pkill -f "chartbridge-demo --port 18480" || true; sleep 1; rm -rf "$WORK/demo"; }

echo "== 1. slow headers (500 connections, 30 s header timeout)"
start_demo
python3 benches/abuse/slow_headers.py 127.0.0.1 18481 500 2,20,32,40
stop_demo

echo "== 2. 420 idle connections from one address, 400 open files"
(ulimit -n 400; start_demo)
python3 - <<'PY'
import socket, time
held = []
for _ in range(420):
    s = socket.socket(); s.bind(("127.0.0.9", 0)); s.connect(("127.0.0.1", 18481)); held.append(s)
t = time.time(); s = socket.socket(); s.bind(("127.0.0.250", 0)); s.settimeout(60)
s.connect(("127.0.0.1", 18481)); s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print("/healthz from another address:", s.recv(15).decode(), "in %.1f ms" % ((time.time() - t) * 1000))
PY
stop_demo

echo "== 3. Instant On flood (800 clients, 40 s)"
start_demo
t=$(date +%s%N); curl -s -o /dev/null -X POST -d as=admin http://127.0.0.1:18480/install
echo "a quiet install: $(( ($(date +%s%N) - t) / 1000000 )) ms"
python3 benches/abuse/instant_on_flood.py http://127.0.0.1:18481 http://127.0.0.1:18480 800 40
