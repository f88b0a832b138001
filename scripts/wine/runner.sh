#!/usr/bin/env bash
# Cargo's runner for x86_64-pc-windows-gnu binaries on Linux: runs one .exe
# under Wine (set as CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER by
# scripts/test.sh, which also prepares the prefix and the stub DLL).
#
#   scripts/wine/runner.sh target/x86_64-pc-windows-gnu/debug/deps/tcp-*.exe [args]
#
# Sets AIOLOOP_UNDER_WINE=1 for the tests.
# Environment: WINEPREFIX (default target/wine/prefix), AIOLOOP_WINE_DLLS (the
# folder holding the stub bcryptprimitives.dll; default target/wine/dll).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export WINEPREFIX="${WINEPREFIX:-$root/target/wine/prefix}"
export WINEDEBUG="${WINEDEBUG:--all}"
# Tests that meet one of Wine's known differences from Windows ask for this
# (tests/util: under_wine) and say which difference they allow.
export AIOLOOP_UNDER_WINE=1
dlls="${AIOLOOP_WINE_DLLS:-$root/target/wine/dll}"
# WINEPATH takes Windows paths; Wine maps the Unix root to drive Z:.
export WINEPATH="Z:${dlls//\//\\}${WINEPATH:+;$WINEPATH}"
exec /usr/lib/wine/wine64 "$@"
