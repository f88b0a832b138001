#!/usr/bin/env bash
# Cross-builds aioloop's test suite for x86_64-pc-windows-gnu and runs it
# under Wine, once per Windows backend (scripts/test.sh calls it; it can also
# run alone):
#
#   scripts/wine/test.sh                      every Windows backend
#   scripts/wine/test.sh selector             one of them
#
# Each run sets AIOLOOP_BACKEND, so every loop the tests make without naming
# a backend uses that one, and it prints the backend the loops really used.
# Unit, integration and doc tests all run (doc tests through the same cargo
# runner). Needs rustup's x86_64-pc-windows-gnu target; setup.sh installs
# the rest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target=x86_64-pc-windows-gnu
backends=("$@")
if [ ${#backends[@]} -eq 0 ]; then
    backends=(selector)
fi

bash scripts/wine/setup.sh
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$root/scripts/wine/runner.sh"
export WINEPREFIX="$root/target/wine/prefix"

for backend in "${backends[@]}"; do
    echo "wine/test.sh: the test suite on Windows (Wine), AIOLOOP_BACKEND=$backend"
    t0=$SECONDS
    AIOLOOP_BACKEND="$backend" cargo test -p aioloop --target "$target" --no-fail-fast
    # Which backend the loops used (a test that prints it).
    used=$(AIOLOOP_BACKEND="$backend" cargo test -q -p aioloop --target "$target" \
        --test policy -- --exact backend_in_use --nocapture 2>&1 |
        sed -n 's/^aioloop backend in use: //p')
    if [ "$used" != "$backend" ]; then
        echo "wine/test.sh: AIOLOOP_BACKEND=$backend, but the loops used '${used:-?}'" >&2
        exit 1
    fi
    echo "wine/test.sh: backend $used: all tests passed under Wine in $((SECONDS - t0))s"
done
