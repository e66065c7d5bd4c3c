#!/usr/bin/env bash
# Builds the dashboard (web/) into web/dist, which `herald serve` serves at / (HERALD_WEB_DIR):
#
#   bash scripts/web.sh
#
# 1. installs Node.js and npm from Debian's packages when `npm` is missing (needs root or sudo),
#    and stops with a clear message when Node.js is older than 20.19 (what Vite 8 needs),
# 2. npm ci in web/ (exactly what web/package-lock.json says, from the npm registry),
# 3. npm run build: type check, vite build, and the initial-JavaScript size check (300 KB gzipped).
# Nothing of the Rust build or tests needs this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'web: %s\n' "$*"; }

if ! command -v npm >/dev/null 2>&1; then
    say "installing Node.js and npm (apt-get install -y nodejs npm)"
    sudo_cmd=()
    if [ "$(id -u)" != 0 ]; then
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq nodejs npm
fi

# Vite 8 and jsdom need Node.js 20.19 or newer; Debian 12's own package is 18
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    printf 'web: error: Node.js %s is too old: the dashboard needs 20.19 or newer (Debian 13 packages it;\n' "$(node --version)" >&2
    printf 'web: on Debian 12 install a newer nodejs package, then run this again)\n' >&2
    exit 1
fi

cd web
# npm ci only when the lock file changed since the last install (saves a minute per run)
stamp=node_modules/.herald-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
    say "npm ci"
    npm ci --no-audit --no-fund
    cp package-lock.json "$stamp"
fi
say "npm run build"
npm run build
