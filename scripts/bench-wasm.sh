#!/usr/bin/env bash
# The wasm benchmark in Node: aioloop's wasm backend against
# wasm-bindgen-futures' spawn_local (bench-wasm/).
#
#   ./scripts/bench-wasm.sh              full sizes, 5 rounds -> bench/results/wasm.md
#   ./scripts/bench-wasm.sh --smoke      tiny sizes, 1 round  -> target/bench-wasm/wasm-smoke.md
#   ./scripts/bench-wasm.sh --rounds N   another number of rounds
#
# Needs the wasm32-unknown-unknown target and the pinned wasm-bindgen CLI
# (scripts/build-wasm.sh installs both), and Node.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

smoke=0
run_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1; run_args+=(--smoke) ;;
        --rounds) run_args+=(--rounds "$2"); shift ;;
        -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-wasm.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

want=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' bench-wasm/Cargo.toml)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
    echo "bench-wasm.sh: needs wasm-bindgen CLI $want (found '${have:-none}');" \
        "run ./scripts/build-wasm.sh, which installs it" >&2
    exit 1
fi

export CARGO_TARGET_DIR="$PWD/target/bench-wasm"
(cd bench-wasm && cargo build --release --target wasm32-unknown-unknown)
wasm-bindgen --target nodejs --out-dir target/bench-wasm/pkg \
    target/bench-wasm/wasm32-unknown-unknown/release/aioloop_bench_wasm.wasm

if [ "$smoke" = 1 ]; then
    out=target/bench-wasm/wasm-smoke.md
else
    out=bench/results/wasm.md
fi
node --expose-gc bench-wasm/run.mjs "${run_args[@]}" --out "$out" target/bench-wasm/pkg
