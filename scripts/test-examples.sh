#!/usr/bin/env bash
# Runs the examples (examples/) against a throwaway Herald, so they cannot rot:
#
#   bash scripts/test-examples.sh
#
# 1. makes sure PostgreSQL runs (scripts/services.sh; HERALD_SKIP_SERVICES=1 leaves it alone),
# 2. builds the debug binary (cargo build -p herald-api --bin herald --locked),
# 3. creates a fresh database herald_examples_<random> on the server of HERALD_TEST_DATABASE_URL
#    (default postgres://postgres:postgres@127.0.0.1:5432/postgres),
# 4. starts `herald sim` and `herald serve` on free ports (127.0.0.1:0; each logs its address),
#    from an empty directory and with a clean environment, so no .env or setting of yours applies,
# 5. runs examples/first-campaign.sh, then examples/integrator/integrator.py (when python3 exists),
# 6. stops both and drops the database, however it ends (trap).
#
# Exit status: 0 when every example passed, 1 otherwise (the logs' ends are printed).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

# shellcheck source=scripts/services.sh
source scripts/services.sh

say() { printf 'examples: %s\n' "$*"; }

admin_url=${HERALD_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
for tool in curl jq psql; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        _hs_apt_install "$tool" || { say "error: $tool is needed"; exit 1; }
    fi
done

say "cargo build -p herald-api --bin herald --locked"
cargo build -p herald-api --bin herald --locked
herald="${CARGO_TARGET_DIR:-$root/target}/debug/herald"

work=$(mktemp -d)
db="herald_examples_$(date +%s)_$$"
sim_pid=""
herald_pid=""
cleanup() {
    local status=$?
    for pid in "$herald_pid" "$sim_pid"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ "$status" -ne 0 ]; then
        for log in "$work/sim.log" "$work/herald.log"; do
            [ -f "$log" ] && { say "end of $(basename "$log"):"; tail -n 30 "$log" >&2; }
        done
    fi
    psql -X -q "$admin_url" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "creating database $db"
psql -X -q "$admin_url" -c "CREATE DATABASE \"$db\"" >/dev/null
db_url="${admin_url%/*}/$db"

# Waits for "listening on http://HOST:PORT" in a log; prints the URL.
address_in() {
    local log=$1 pid=$2 url=""
    for ((i = 0; i < 120; i++)); do
        url=$(grep -oE 'listening on http://[0-9.]+:[0-9]+' "$log" 2>/dev/null | head -n 1 | sed 's/^listening on //') || true
        if [ -n "$url" ]; then
            printf '%s\n' "$url"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    say "error: no 'listening on' line in $(basename "$log")" >&2
    return 1
}

# A clean environment: only what these processes need.
clean_env=(env -i "PATH=$PATH" "HOME=${HOME:-/tmp}" "RUST_LOG=info" "NO_COLOR=1")

cd "$work"
"${clean_env[@]}" "$herald" sim --listen 127.0.0.1:0 >"$work/sim.log" 2>&1 &
sim_pid=$!
sim_url=$(address_in "$work/sim.log" "$sim_pid")
say "simulator at $sim_url"

"${clean_env[@]}" DATABASE_URL="$db_url" HERALD_WUZAPI_URL="$sim_url" HERALD_LISTEN=127.0.0.1:0 \
    HERALD_ENV=development "$herald" serve >"$work/herald.log" 2>&1 &
herald_pid=$!
herald_url=$(address_in "$work/herald.log" "$herald_pid")
say "herald at $herald_url"
cd "$root"

say "examples/first-campaign.sh"
HERALD_URL=$herald_url HERALD_SIM_URL=$sim_url bash examples/first-campaign.sh

if command -v python3 >/dev/null 2>&1; then
    say "examples/integrator/integrator.py"
    HERALD_URL=$herald_url python3 examples/integrator/integrator.py \
        --csv examples/integrator/recipients.csv --timeout 60
else
    say "python3 not found: the integrator example is skipped"
fi
say "every example passed"
