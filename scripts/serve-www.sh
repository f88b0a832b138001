#!/usr/bin/env bash
# Serves the demo page: http://127.0.0.1:8000/ (www/ at /, pkg/ at /pkg/).
#
#   ./scripts/serve-www.sh             builds pkg/ first when it is missing
#   ./scripts/serve-www.sh --build     rebuilds pkg/ (scripts/build-wasm.sh) first
#   PORT=9000 ./scripts/serve-www.sh   another port
#
# Needs Node (www/serve.mjs has no dependencies). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=0
for arg in "$@"; do
    case "$arg" in
        --build) build=1 ;;
        -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "serve-www.sh: unknown argument '$arg' (try --build or --help)" >&2; exit 2 ;;
    esac
done
if [ "$build" = 1 ] || [ ! -f pkg/web/aioloop.js ]; then
    ./scripts/build-wasm.sh
fi
exec node www/serve.mjs --port "${PORT:-8000}" --host "${HOST:-127.0.0.1}"
