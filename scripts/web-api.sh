#!/usr/bin/env bash
# Regenerates the dashboard's typed API client from Herald's own OpenAPI document:
#
#   bash scripts/web-api.sh
#
# 1. builds herald (debug) and writes `herald openapi` to web/openapi.json,
# 2. generates web/src/api/schema.d.ts from it with openapi-typescript (npm ci first if needed).
# Commit both. A Rust test (api/tests/api/dashboard.rs) fails while web/openapi.json differs
# from what Herald serves.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
cargo build -p herald-api --bin herald
"${CARGO_TARGET_DIR:-$root/target}/debug/herald" openapi >web/openapi.json
cd web
[ -d node_modules ] || npm ci --no-audit --no-fund
npx openapi-typescript openapi.json -o src/api/schema.d.ts
echo "web-api: wrote web/openapi.json and web/src/api/schema.d.ts"
