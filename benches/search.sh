#!/usr/bin/env bash
# Patient search in a practice of 50,000 patients, in release: the first fill of the index from
# sandbox Hint (paced to the practice's budget), the first search, then per-keystroke latency
# over HTTP (p50/p99/max). Runs the ignored `figures_patient_search` test of the suite.
# TEST_DATABASE_URL=postgres://… runs it on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test api -- --ignored --nocapture --test-threads=1 figures_patient_search 2>&1 |
  grep -E "patient search at|test result|panicked"
