#!/usr/bin/env bash
# The practice's archive (GET /hint/export.tar) at 100,000 signed visits, in release: seeding
# time, archive size, time, and the process's memory before and at its peak while it streams.
# Runs the ignored `figures_practice_export` test of the suite; EXPORT_VISITS sets the size,
# TEST_DATABASE_URL=postgres://… runs it on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test api -- --ignored --nocapture --test-threads=1 figures_practice_export 2>&1 |
  grep -E "practice export at|test result|panicked"
