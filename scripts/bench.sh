#!/usr/bin/env bash
# Runs Herald's benchmark against its targets (docs/benchmarks.md):
#
#   bash scripts/bench.sh [herald-bench options]
#   bash scripts/bench.sh --recipients 100000 --dispatch 20000 --naive-sample 2000
#   bash scripts/bench.sh --help
#
# 1. makes sure PostgreSQL runs (scripts/services.sh; installs it if needed),
# 2. builds the benchmark in release mode (cargo build --release -p herald-bench --bin herald-bench),
# 3. runs it: it creates its own database herald_bench_<random> on the server of
#    HERALD_BENCH_DATABASE_URL (default postgres://postgres:postgres@127.0.0.1:5432/postgres),
#    starts the simulator and Herald in its own process, measures, prints a table, and drops the
#    database again.
#
# Exit status is herald-bench's: 0 all checks passed, 1 something is wrong (lost or duplicated
# sends, counts that do not add up, a timeout), 2 it could not run, 3 a target was missed
# (only with --enforce-targets). Set RUST_LOG (e.g. info) to see Herald's own logs on stderr.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

# shellcheck source=scripts/services.sh
source scripts/services.sh

say() { printf 'bench: %s\n' "$*"; }

say "building herald-bench (cargo build --release -p herald-bench --bin herald-bench)"
cargo build --release -p herald-bench --bin herald-bench
target_dir=${CARGO_TARGET_DIR:-$root/target}

say "running $target_dir/release/herald-bench $*"
exec "$target_dir/release/herald-bench" "$@"
