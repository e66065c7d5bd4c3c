#!/usr/bin/env bash
# Checks and tests the whole workspace, as CI does (.ci/run runs this):
#
#   bash scripts/test.sh [extra arguments for the test runner]
#
# 1. makes sure PostgreSQL and NATS run (scripts/services.sh; installs them if needed),
# 2. drops leftover per-test databases (herald_test_*),
# 3. cargo fmt --all -- --check
# 4. cargo clippy --workspace --all-targets --locked -- -D warnings
# 5. bash scripts/test-web.sh: the dashboard's build, Vitest and end-to-end tests (docs/dashboard.md),
# 6. bash scripts/test-examples.sh: examples/ against a throwaway Herald (examples/README.md),
# 7. bash scripts/fuzz.sh: schemathesis against a throwaway Herald (docs/running.md),
# 8. cargo nextest run --workspace (or cargo test --workspace without cargo-nextest).
#
# Every step runs even when an earlier one failed, so one run shows every problem; the exit
# status is non-zero when any failed. The test runner's output comes last.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh

say() { printf 'test: %s\n' "$*"; }

if [ "${CI:-}" = true ]; then
    export CARGO_TERM_COLOR=never
fi
export HERALD_TEST_DATABASE_URL="${HERALD_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export HERALD_TEST_NATS_URL="${HERALD_TEST_NATS_URL:-nats://127.0.0.1:4222}"

# Each test creates a throwaway database named herald_test_* and leaves it behind; a
# run drops the ones it made when it ends, and before it starts, those a killed run left behind.
# Only databases nobody is connected to are dropped, and before the run only those older than a
# few minutes (so a test run going on at the same time is left alone). Best effort: never fails
# the run. Hundreds of leftover databases slow the whole server down (autovacuum visits each).
drop_test_databases() {
    local condition=$1
    local sql="
        SELECT format('DROP DATABASE IF EXISTS %I', d.datname)
        FROM pg_database d
        WHERE d.datname LIKE 'herald\\_test\\_%'
          AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)
          AND (pg_stat_file('base/' || d.oid || '/PG_VERSION', true)).modification $condition
        \\gexec"
    printf '%s\n' "$sql" | PGCONNECT_TIMEOUT=5 psql -X -q "$HERALD_TEST_DATABASE_URL" >/dev/null 2>&1 || true
}
drop_stale_test_databases() { drop_test_databases "< now() - interval '5 minutes'"; }
run_started=$(date -u '+%Y-%m-%d %H:%M:%S+00')
drop_stale_test_databases

failed=()

say "cargo fmt --all -- --check"
if ! cargo fmt --all -- --check; then
    failed+=("cargo fmt (run: cargo fmt --all)")
fi

locked=(--locked)
if [ ! -f Cargo.lock ]; then
    locked=()
fi
say "cargo clippy --workspace --all-targets${locked:+ ${locked[*]}} -- -D warnings"
if ! cargo clippy --workspace --all-targets "${locked[@]}" -- -D warnings; then
    failed+=("cargo clippy")
fi

if [ "${#failed[@]}" -gt 0 ]; then
    say "FAILED so far: ${failed[*]}; running the tests anyway, the exit status will be non-zero"
fi

# Against a running herald (each builds the debug binary once, then reuses it); before the test
# runner, so its summary stays the last lines of the log.
say "bash scripts/test-web.sh (the dashboard: build, Vitest, Chromium end to end)"
bash scripts/test-web.sh || failed+=("dashboard (bash scripts/test-web.sh)")
say "bash scripts/test-examples.sh (examples/ against a throwaway Herald)"
bash scripts/test-examples.sh || failed+=("examples (bash scripts/test-examples.sh)")
say "bash scripts/fuzz.sh (schemathesis against a throwaway Herald)"
bash scripts/fuzz.sh || failed+=("fuzz (bash scripts/fuzz.sh)")

if cargo nextest --version >/dev/null 2>&1; then
    say "cargo nextest run --workspace --no-fail-fast${*:+ $*}"
    if ! cargo nextest run --workspace --no-fail-fast "$@"; then
        failed+=("tests")
    fi
else
    say "cargo test --workspace${*:+ $*} (cargo-nextest is not installed)"
    if ! cargo test --workspace "$@"; then
        failed+=("tests")
    fi
fi


# this run's own databases (silently: the runner's summary stays the last lines of the log)
drop_test_databases ">= timestamptz '$run_started' - interval '1 minute'"
[ "${#failed[@]}" -eq 0 ]
