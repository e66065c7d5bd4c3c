#!/usr/bin/env bash
# Fuzzes Herald's HTTP API with schemathesis against a throwaway Herald (docs/running.md,
# decision 0045):
#
#   bash scripts/fuzz.sh            # from the repository root; scripts/test.sh runs it too
#
# 1. makes a Python virtualenv in target/fuzz-venv with a pinned schemathesis (once),
# 2. builds the debug `herald` binary (same target dir as the tests),
# 3. creates a throwaway database and starts `herald sim` and `herald serve` on free ports,
# 4. registers a tenant and runs schemathesis on /api/v1/openapi.json with its token, failing on
#    any 5xx, any status the document does not declare, and any answer that does not match the
#    schema or content type the document gives,
# 5. stops both processes and drops the database, whatever happened.
#
# Environment: HERALD_TEST_DATABASE_URL (admin URL of PostgreSQL, as for the tests),
# HERALD_FUZZ_EXAMPLES (test cases per operation and phase, default 40), HERALD_FUZZ_SEED
# (schemathesis' seed, default random; a failure prints the one to replay it), HERALD_FUZZ_ARGS
# (more schemathesis options, e.g. `--include-path-regex /contacts`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

say() { printf 'fuzz: %s\n' "$*"; }
die() {
    printf 'fuzz: error: %s\n' "$*" >&2
    grep -hE 'ERROR|panicked' "${work:-/nonexistent}"/*.log 2>/dev/null | tail -n 20 >&2 || true
    exit 1
}

schemathesis_version=4.32.5
venv=target/fuzz-venv
examples=${HERALD_FUZZ_EXAMPLES:-40}
admin_url=${HERALD_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
work=$(mktemp -d "${TMPDIR:-/tmp}/herald-fuzz.XXXXXX")
database="herald_fuzz_$(date +%s)_$$"
pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PGCONNECT_TIMEOUT=5 psql -X -q "$admin_url" \
        -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------- schemathesis

if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $schemathesis_version" ]; then
    if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
        # Debian splits venv out of python3
        say "installing python3-venv"
        if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo); fi
        "${as_root[@]}" apt-get update -qq >/dev/null
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv --clear "$venv"
    fi
    say "installing schemathesis $schemathesis_version into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

# ------------------------------------------------------------------ the binary

say "cargo build -p herald-api --bin herald --locked"
cargo build --quiet -p herald-api --bin herald --locked
herald="${CARGO_TARGET_DIR:-$root/target}/debug/herald"

# ------------------------------------------------------- a throwaway Herald

PGCONNECT_TIMEOUT=5 psql -X -q "$admin_url" -c "CREATE DATABASE \"$database\"" >/dev/null
database_url=$(printf '%s' "$admin_url" | sed -E "s#/[^/?]*(\\?|\$)#/$database\\1#")

# Waits until LOG contains "listening on http://..." and prints that URL.
listening_url() {
    local log=$1 pid=$2 url=
    for _ in $(seq 1 300); do
        url=$(grep -o 'listening on http://[0-9.:]*' "$log" 2>/dev/null | head -n 1 | sed 's/^listening on //') || true
        if [ -n "$url" ]; then
            printf '%s\n' "$url"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log" >&2
    return 1
}

gateway_admin=fuzz-gateway-admin
operator_token=fuzz-operator-token

HERALD_WUZAPI_ADMIN_TOKEN=$gateway_admin "$herald" sim --listen 127.0.0.1:0 >"$work/sim.log" 2>&1 &
pids+=($!)
sim_url=$(listening_url "$work/sim.log" "${pids[-1]}") || die "the simulator did not start"

# Settings: every plan limit lifted, so generated requests reach the handlers instead of the
# quota; a gateway admin token, so sessions can be created without a gateway token; an operator
# token and the Cloud API's verify token and app secret, so the admin and Meta endpoints answer
# (their handlers, not the 404 of a feature that is off).
env -u NATS_URL \
    DATABASE_URL="$database_url" \
    HERALD_ENV=development \
    HERALD_LISTEN=127.0.0.1:0 \
    HERALD_WUZAPI_URL="$sim_url" \
    HERALD_WUZAPI_ADMIN_TOKEN=$gateway_admin \
    HERALD_ADMIN_TOKEN=$operator_token \
    HERALD_META_VERIFY_TOKEN=fuzz-verify-token \
    HERALD_META_APP_SECRET=fuzz-app-secret \
    HERALD_DEFAULT_PLAN=unlimited \
    HERALD_DISPATCH_WORKERS=1 \
    HERALD_DB_POOL=8 \
    "$herald" serve >"$work/herald.log" 2>&1 &
pids+=($!)
base=$(listening_url "$work/herald.log" "${pids[-1]}") || die "herald did not start"
say "herald on $base (gateway simulator on $sim_url)"

registered=$(curl -sS --fail-with-body -H 'content-type: application/json' \
    -d '{"email": "fuzz@example.com", "password": "fuzz-password-1234", "name": "Fuzz"}' \
    "$base/api/v1/auth/register") || die "registering failed: $registered"
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
token=$(printf '%s' "$registered" | field access_token)
tenant=$(printf '%s' "$registered" | field tenant_id)

# POST PATH BODY: the created object's FIELD (default id), or the script stops. Tried twice: on a
# loaded machine a read model can lag past the API's wait (a 500 that is not the fuzz's finding).
create() {
    local path=$1 body=$2 key=${3:-id} answer attempt
    for attempt in 1 2; do
        if answer=$(curl -sS --fail-with-body -H "Authorization: Bearer $token" \
            -H 'content-type: application/json' -d "$body" "$base/api/v1/$path"); then
            printf '%s' "$answer" | field "$key"
            return 0
        fi
        [ "$attempt" = 2 ] || sleep 2
    done
    die "seeding POST /api/v1/$path failed: $answer"
}

# Seed objects, so that operations on one object reach their handlers instead of 404: each
# `{id}` is the seeded object's id 80% of the time and a generated one otherwise. DELETEs get
# their own objects, so the rest keep theirs.
session=$(create sessions '{"name": "fuzz"}')
doomed_session=$(create sessions '{"name": "fuzz, deleted"}')
template=$(create templates '{"name": "fuzz", "type": "text", "body": "Hi {{ name }}"}')
doomed_template=$(create templates '{"name": "fuzz, deleted", "type": "text", "body": "Bye"}')
create contacts '{"phone": "+6281234567890", "name": "Budi"}' phone >/dev/null
create contacts '{"phone": "+6281234567891", "name": "Sari"}' phone >/dev/null
campaign=$(create campaigns "{\"name\": \"fuzz\", \"template_id\": \"$template\",
    \"session_id\": \"$session\", \"recipients\": [\"6281234567892\"]}")
message=$(create messages "{\"session_id\": \"$session\", \"to\": \"6281234567893\",
    \"type\": \"text\", \"body\": \"hello\"}")
api_key=$(create api-keys '{"name": "fuzz, deleted"}')
chat=$(curl -sS -H "Authorization: Bearer $token" "$base/api/v1/chats" |
    python3 -c 'import json, sys; items = json.load(sys.stdin)["items"]; print(items[0]["id"] if items else "")')

# bind PARAMETER OPERATIONS DICTIONARY: one [[operations]] entry of the config; OPERATIONS is a
# regex of "METHOD /path" (one filter: schemathesis ORs separate include filters)
bind() {
    printf '\n[[operations]]\ninclude-name-regex = %s\n' "'$2'"
    printf 'parameters = { "path.%s" = { dictionary = "%s", probability = 0.8 } }\n' "$1" "$3"
}
config="$work/schemathesis.toml"
{
    # schemathesis keeps state between runs in the working directory unless told otherwise
    printf '[cache]\nenabled = false\n\n'
    printf '[dictionaries]\n'
    printf 'session = { values = ["%s"] }\n' "$session"
    printf 'doomed_session = { values = ["%s"] }\n' "$doomed_session"
    printf 'template = { values = ["%s"] }\n' "$template"
    printf 'doomed_template = { values = ["%s"] }\n' "$doomed_template"
    printf 'campaign = { values = ["%s"] }\n' "$campaign"
    printf 'message = { values = ["%s"] }\n' "$message"
    printf 'api_key = { values = ["%s"] }\n' "$api_key"
    printf 'tenant = { values = ["%s"] }\n' "$tenant"
    printf 'phone = { values = ["6281234567890", "+62 812-3456-7891"] }\n'
    printf 'doomed_phone = { values = ["6281234567891"] }\n'
    printf 'chat = { values = ["%s"] }\n' "${chat:-$campaign}"
    bind id '^(GET|POST|PATCH) /api/v1/sessions/' session
    bind id '^DELETE /api/v1/sessions/' doomed_session
    bind session_id ' /api/v1/webhooks/wuzapi/' session
    bind id '^(GET|PATCH) /api/v1/templates/' template
    bind id '^DELETE /api/v1/templates/' doomed_template
    bind id ' /api/v1/campaigns/' campaign
    bind id ' /api/v1/messages/' message
    bind id ' /api/v1/api-keys/' api_key
    bind id ' /api/v1/admin/tenants/' tenant
    bind phone '^(GET|PATCH) /api/v1/contacts/' phone
    bind phone '^DELETE /api/v1/contacts/' doomed_phone
    bind id ' /api/v1/chats/' chat
} >"$config"

# ------------------------------------------------------------------ the fuzz

seed=()
if [ -n "${HERALD_FUZZ_SEED:-}" ]; then
    seed=(--seed "$HERALD_FUZZ_SEED")
fi
say "schemathesis $schemathesis_version, $examples examples per operation"
status=0
# From $work, so nothing schemathesis or hypothesis leaves behind lands in the repository.
# Not fuzzed: GET /api/v1/events is a Server-Sent Events stream that never ends, so every
# generated request would wait for the request timeout; tests/api/events.rs covers it. Nor the
# operator's DELETE /api/v1/admin/users/{id}: the stateful phase finds the fuzz's own user id in
# answers and removes it, which ends the fuzz's token and turns the rest of the run into 401s;
# tests/api/account_protection.rs covers it.
(cd "$work" && "$root/$venv/bin/schemathesis" --config-file "$config" run "$base/api/v1/openapi.json" \
    --url "$base" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --header "Authorization: Bearer $token" \
    --header "X-Admin-Token: $operator_token" \
    --exclude-path /api/v1/events \
    --exclude-path '/api/v1/admin/users/{id}' \
    --max-examples "$examples" \
    --request-timeout 30 \
    --workers 2 \
    --generation-database none \
    --no-color \
    "${seed[@]}" ${HERALD_FUZZ_ARGS:-}) || status=$?

# A fuzz whose own credentials stopped working part-way tested little after that point: say so.
if ! curl -sS -o /dev/null --fail -H "Authorization: Bearer $token" "$base/api/v1/me"; then
    say "the fuzz's own access token no longer works after the run (revoked, or the account removed)"
    status=1
fi

if [ "$status" -ne 0 ]; then
    say "schemathesis failed; herald's log (errors):"
    grep -E 'ERROR|panicked' "$work/herald.log" | tail -n 40 >&2 || true
fi
exit "$status"
