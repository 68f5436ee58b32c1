#!/usr/bin/env bash
# The audit trail's CSV export (GET /hint/audit.csv) of a practice holding 1,000,000 entries,
# in release: rows a second and the process's memory before and at its peak while it streams.
# Runs the ignored `figures_audit_csv_export` test of the suite; AUDIT_ENTRIES sets the size,
# TEST_DATABASE_URL=postgres://… runs it on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test api -- --ignored --nocapture --test-threads=1 figures_audit_csv_export 2>&1 |
  grep -E "audit CSV export at|test result|panicked"
