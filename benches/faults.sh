#!/usr/bin/env bash
# Time to signed in Hint while Hint fails and instances die, with production timings:
# 200 Tiep visits at 30 % Hint 500s (+5 % answers lost after the write), and 20 kills during a
# write-back. Prints p50/p95/max. Runs the ignored `figures_*` tests of the suite in release.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test api -- --ignored --nocapture --test-threads=1 figures_time_to_signed 2>&1 |
  grep -E "time to signed|test result|panicked"
