#!/usr/bin/env bash
# Tests the dashboard (scripts/test.sh runs this as one step):
#
#   bash scripts/test-web.sh
#
# 1. scripts/web.sh: Node.js and npm if missing, npm ci, npm run build (with the size check),
# 2. Vitest component tests (web/src/**/*.test.tsx),
# 3. end-to-end tests (web/e2e/run.mjs) in Debian's headless Chromium (apt-get install -y
#    chromium when /usr/bin/chromium is missing; no browser is ever downloaded), against a debug
#    `herald` (cargo build, reusing the target directory) with the simulator on free ports and a
#    throwaway database. Screenshots: target/screenshots/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'test-web: %s\n' "$*"; }

bash scripts/web.sh

say "vitest"
(cd web && npx vitest run)

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    say "installing chromium (apt-get install -y chromium)"
    sudo_cmd=()
    if [ "$(id -u)" != 0 ]; then
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq chromium
fi

say "cargo build -p herald-api --bin herald (debug)"
cargo build -p herald-api --bin herald
say "end-to-end tests"
(cd web && node e2e/run.mjs)
