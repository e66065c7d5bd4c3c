#!/usr/bin/env bash
# Runs Herald locally, from a fresh machine:
#
#   bash scripts/run.sh [herald serve options, e.g. --role api]
#
# 1. makes sure PostgreSQL and NATS run (scripts/services.sh; installs them if needed),
# 2. creates the database `herald` if it is missing,
# 3. builds the release binary (cargo build --release -p herald-api --bin herald) and the
#    dashboard (scripts/web.sh: Node.js and npm from Debian's packages if missing, npm ci, build),
# 4. starts the WuzAPI simulator on 127.0.0.1:8081 in the background (log: target/herald-sim.log);
#    its Cloud API surface becomes HERALD_META_GRAPH_URL unless that is set (docs/cloud-api.md),
# 5. runs `herald serve` in the foreground. Ctrl-C stops it and the simulator.
#
# Your environment and a .env file in the repository root are respected: only variables
# set in neither get this script's defaults (herald reads .env itself).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

# shellcheck source=scripts/services.sh
source scripts/services.sh

say() { printf 'run: %s\n' "$*"; }

# ---------------------------------------------------------------- configuration

# Prints the value of KEY in .env (last assignment wins), without surrounding quotes;
# fails when .env does not set it.
dotenv_value() {
    [ -f .env ] || return 1
    local line
    line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=" .env | tail -n 1) || return 1
    line=${line#*=}
    line=$(printf '%s' "$line" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
    case "$line" in
        \"*\") line=${line#\"}; line=${line%\"} ;;
        \'*\') line=${line#\'}; line=${line%\'} ;;
    esac
    printf '%s\n' "$line"
}

# The value herald will see for KEY: the environment first, then .env, else empty.
effective() {
    if [ -n "${!1+x}" ]; then
        printf '%s\n' "${!1}"
    else
        dotenv_value "$1" || true
    fi
}

# Exports KEY=DEFAULT unless the environment or .env already sets KEY.
default_env() {
    if [ -z "${!1+x}" ] && ! dotenv_value "$1" >/dev/null; then
        export "$1=$2"
    fi
}

default_env DATABASE_URL "postgres://postgres:postgres@127.0.0.1:5432/herald"
default_env HERALD_WUZAPI_URL "http://127.0.0.1:8081"
default_env HERALD_ENV "development"

sim_addr=127.0.0.1:8081
wuzapi_url=$(effective HERALD_WUZAPI_URL)
listen=$(effective HERALD_LISTEN)
listen=${listen:-127.0.0.1:8080}

# ----------------------------------------------------------------- the database

if [ "${HERALD_SKIP_SERVICES:-0}" != 1 ]; then
    if [ "$(PGPASSWORD=postgres psql -X -A -t -q -h 127.0.0.1 -p 5432 -U postgres -d postgres \
        -c "select 1 from pg_database where datname = 'herald'")" != 1 ]; then
        say "creating database herald"
        PGPASSWORD=postgres psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres \
            -c 'CREATE DATABASE herald'
    fi
fi

# -------------------------------------------------------------------- the build

say "building herald (cargo build --release -p herald-api --bin herald)"
cargo build --release -p herald-api --bin herald
target_dir=${CARGO_TARGET_DIR:-$root/target}
herald="$target_dir/release/herald"
say "building the dashboard (bash scripts/web.sh)"
bash scripts/web.sh

# ---------------------------------------------------------------- the simulator

sim_pid=""
sim_log="$target_dir/herald-sim.log"
stop_sim() {
    if [ -n "$sim_pid" ] && kill -0 "$sim_pid" 2>/dev/null; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    sim_pid=""
}
trap stop_sim EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sim_note=""
case "${wuzapi_url%/}" in
    "http://$sim_addr" | "http://localhost:8081") sim_wanted=1 ;;
    *) sim_wanted=0 ;;
esac
if [ "$sim_wanted" != 1 ]; then
    sim_note="simulator not started: HERALD_WUZAPI_URL points elsewhere"
elif _hs_tcp_open 8081; then
    sim_note="simulator not started: something already answers on $sim_addr"
else
    "$herald" sim --listen "$sim_addr" >"$sim_log" 2>&1 &
    sim_pid=$!
    for ((i = 0; i < 30; i++)); do
        _hs_tcp_open 8081 && break
        if ! kill -0 "$sim_pid" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    if ! _hs_tcp_open 8081; then
        printf 'run: error: the simulator did not start; end of %s:\n' "$sim_log" >&2
        tail -n 20 "$sim_log" >&2 || true
        exit 1
    fi
    sim_note="started, log: $sim_log"
fi
if [ "$sim_wanted" = 1 ]; then
    # the simulator's Cloud API surface stands in for Meta's Graph API (docs/cloud-api.md)
    default_env HERALD_META_GRAPH_URL "http://$sim_addr/cloud/v21.0"
fi

# -------------------------------------------------------------------- the server

case "$listen" in
    *:0) base_url="" ;; # a free port: herald logs the real address
    0.0.0.0:* | "[::]:"*) base_url="http://127.0.0.1:${listen##*:}" ;;
    *) base_url="http://$listen" ;;
esac

echo
if [ -n "$base_url" ]; then
    printf '  %-15s %s\n' "Dashboard" "$base_url  (open it, create an account)"
    printf '  %-15s %s\n' "API docs" "$base_url/docs  (interactive; register, then authorize with the access_token)"
    printf '  %-15s %s\n' "OpenAPI" "$base_url/api/v1/openapi.json"
else
    printf '  %-15s %s\n' "Herald" "on a free port: see the 'listening on http://...' line below"
fi
printf '  %-15s %s\n' "Gateway" "$wuzapi_url  ($sim_note)"
graph_url=$(effective HERALD_META_GRAPH_URL)
printf '  %-15s %s\n' "Cloud API" "${graph_url:-https://graph.facebook.com/v21.0}  (docs/cloud-api.md)"
if [ "$sim_wanted" = 1 ]; then
    printf '  %-15s %s\n' "" "the WuzAPI simulator: any token works as a simulator user token"
    printf '  %-15s %s\n' "" "(e.g. as the gateway_token of a new session)"
fi
printf '  %-15s %s\n' "Database" "$(effective DATABASE_URL | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#')"
printf '  %-15s %s\n' "Environment" "HERALD_ENV=$(effective HERALD_ENV)"
echo
if [ -n "$sim_pid" ]; then
    echo "  Ctrl-C stops Herald and the simulator."
else
    echo "  Ctrl-C stops Herald."
fi
echo

# Not exec: the EXIT trap must still stop the simulator when the server ends.
"$herald" serve "$@"
