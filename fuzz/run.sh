#!/usr/bin/env bash
# Runs every fuzz target for a while (not in CI): `bash fuzz/run.sh [seconds per target]`
# (default 60). Installs cargo-fuzz if needed; on a stable toolchain it lets rustc take the
# nightly flags libFuzzer needs (RUSTC_BOOTSTRAP=1). Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
if ! rustc --version | grep -q nightly; then export RUSTC_BOOTSTRAP=1; fi
targets=(signed_handshake tiep_webhook mediquo_webhook haidy_upload outbound_address)
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "== $target (${SECONDS_EACH}s)"
  cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss|==.*ERROR|SUMMARY|Done)" || true
  if compgen -G "artifacts/$target/crash-*" >/dev/null; then
    echo "CRASH in $target: $(ls artifacts/$target/crash-*)"
  fi
done
