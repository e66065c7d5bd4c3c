#!/usr/bin/env bash
# The README's first campaign as a script: registers an account, links a simulator number, creates
# a template, sends a campaign to two recipients, waits until it completes and prints its counts,
# every recipient, the CSV export and what the simulated phone received.
#
#   bash scripts/run.sh                  # in one terminal: Herald on :8080, the simulator on :8081
#   bash examples/first-campaign.sh      # in another
#
# Environment:
#   HERALD_URL       Herald's base URL (default http://127.0.0.1:8080)
#   HERALD_SIM_URL   the WuzAPI simulator's base URL (default http://127.0.0.1:8081); the last step
#                    reads its /sim/messages
#   WAIT_SECS        how long to wait for the campaign to complete (default 60)
#
# Needs curl and jq. Exits 0 when the campaign completed with both recipients sent, 1 when a step
# failed (the step and Herald's answer are printed), 2 when a tool is missing.
set -euo pipefail

base=${HERALD_URL:-http://127.0.0.1:8080}
base=${base%/}
sim=${HERALD_SIM_URL:-http://127.0.0.1:8081}
sim=${sim%/}
wait_secs=${WAIT_SECS:-60}
H=$base/api/v1

for tool in curl jq; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "first-campaign: $tool is needed (Debian/Ubuntu: sudo apt-get install $tool)" >&2
        exit 2
    fi
done

step() { printf '\n== %s\n' "$*"; }
fail() {
    echo "first-campaign: FAILED: $*" >&2
    exit 1
}

# call METHOD PATH [JSON BODY]: prints the answer's body; fails the script on a non-2xx answer.
call() {
    local method=$1 path=$2 body=${3:-}
    local args=(-sS -X "$method" -w '\n%{http_code}' -H 'content-type: application/json')
    if [ -n "${TOKEN:-}" ]; then
        args+=(-H "authorization: Bearer $TOKEN")
    fi
    if [ -n "$body" ]; then
        args+=(-d "$body")
    fi
    local out status
    out=$(curl "${args[@]}" "$H$path") || fail "$method $path: Herald does not answer at $base (is scripts/run.sh running?)"
    status=${out##*$'\n'}
    out=${out%$'\n'*}
    case "$status" in
        2??) printf '%s\n' "$out" ;;
        *) fail "$method $path answered $status: $out" ;;
    esac
}

# A fresh account and simulator user each run, so the script can run again against the same Herald.
run_id="$(date +%s)-$$"

step "register an account"
TOKEN=$(call POST /auth/register "{\"email\":\"first-campaign-$run_id@example.com\",\"password\":\"a long password\"}" |
    jq -r .access_token)
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || fail "no access_token in the registration's answer"
echo "access token: ${TOKEN:0:12}..."

step "link a number (a simulator user token), unpaced"
SESSION=$(call POST /sessions "{\"name\":\"Main number\",\"gateway_token\":\"first-campaign-$run_id\",
    \"pacing\":{\"min_interval_ms\":0,\"max_interval_ms\":0}}" | jq -r .id)
echo "session: $SESSION"

step "create a text template"
TEMPLATE=$(call POST /templates '{"name":"Promo","type":"text","body":"Hi {{ name }}, your code is {{ code }}"}' |
    jq -r .id)
echo "template: $TEMPLATE"

step "send a campaign to two recipients"
CAMPAIGN=$(call POST /campaigns "{
  \"name\":\"November promo\",\"template_id\":\"$TEMPLATE\",\"session_id\":\"$SESSION\",
  \"recipients\":[\"+62 812-3456-7890\",{\"phone\":\"0812 0000 1111\",\"vars\":{\"name\":\"Sari\",\"code\":\"X1\"}}]}" |
    jq -r .id)
echo "campaign: $CAMPAIGN"

step "wait until it completes (at most ${wait_secs}s)"
deadline=$((SECONDS + wait_secs))
while :; do
    campaign=$(call GET "/campaigns/$CAMPAIGN")
    status=$(jq -r .status <<<"$campaign")
    echo "status: $status, counts: $(jq -c .counts <<<"$campaign")"
    case "$status" in
        completed) break ;;
        cancelled) fail "the campaign was cancelled" ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || fail "the campaign did not complete within ${wait_secs}s"
    sleep 1
done
sent=$(jq '.counts.sent + .counts.delivered + .counts.read' <<<"$campaign")
[ "$sent" = 2 ] || fail "expected both recipients sent, counts: $(jq -c .counts <<<"$campaign")"

step "every recipient"
call GET "/campaigns/$CAMPAIGN/recipients" | jq -c '.items[] | {phone, status}'

step "the CSV export"
curl -sS -f "$H/campaigns/$CAMPAIGN/recipients.csv" -H "authorization: Bearer $TOKEN" ||
    fail "the CSV export failed"

step "what the phone got (the simulator's ledger)"
if ! curl -sS -f "$sim/sim/messages?token=first-campaign-$run_id" | jq -c '.items[]'; then
    echo "(the simulator does not answer at $sim: set HERALD_SIM_URL, or Herald uses a real WuzAPI)"
fi

printf '\nfirst-campaign: done: campaign %s completed, counts %s\n' "$CAMPAIGN" "$(jq -c .counts <<<"$campaign")"
