#!/usr/bin/env bash
# Load benchmark on loopback against the release binary (SQLite default, 2 cores).
# Prints: start-to-ready and idle memory of `chartbridge serve`, then req/s and latency for
# signed handshakes, a framed page render, and signed Tiep webhooks (from benches/load.rs).
# Usage: bash benches/load.sh   (SECONDS, CONCURRENCY, WEBHOOKS tune the load)
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

# The demo (the app with sandbox Hint and the sandbox partners in one process) under load.
# The per-client budgets are raised: every request here comes from one address, and this
# measures the server, not the limiter.
RUST_LOG=warn target/release/chartbridge-demo --rate-limits "handshake=1000000/100000, webhooks=1000000/100000, install=1000/100" --port 18080 --app-port 18081 --partners-port 18082 --data-dir "$WORK/demo" > "$WORK/demo.log" 2>&1 &
until curl -sf http://127.0.0.1:18081/readyz > /dev/null && grep -q "demo is running" "$WORK/demo.log"; do sleep 0.1; done
APP_URL=http://127.0.0.1:18081 HINT_URL=http://127.0.0.1:18080 DB="$WORK/demo/demo.sqlite" "$LOADGEN"
