#!/usr/bin/env bash
# Prepares this Linux machine to run aioloop's Windows test binaries under
# Wine (called by scripts/wine/test.sh; safe to run again and again):
#
#   1. installs mingw-w64's gcc (the linker of x86_64-pc-windows-gnu) and
#      wine64 with apt-get when either is missing;
#   2. builds the stub bcryptprimitives.dll (scripts/wine/bcryptprimitives.c)
#      into target/wine/dll/, which runner.sh puts on WINEPATH;
#   3. starts a wineserver that stays up between test binaries, and creates
#      the Wine prefix target/wine/prefix (wineboot --init, ~10 s the first
#      time).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
wine_dir="$root/target/wine"
export WINEPREFIX="${WINEPREFIX:-$wine_dir/prefix}"
export WINEDEBUG="${WINEDEBUG:--all}"

if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || [ ! -x /usr/lib/wine/wine64 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "wine/setup.sh: need x86_64-w64-mingw32-gcc and /usr/lib/wine/wine64;" \
            "install mingw-w64 and wine64 (no apt-get here), or run test.sh --quick" >&2
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo="sudo"
    fi
    echo "wine/setup.sh: installing gcc-mingw-w64-x86-64 and wine64 with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        gcc-mingw-w64-x86-64 wine64 >/dev/null
fi

mkdir -p "$wine_dir/dll"
dll="$wine_dir/dll/bcryptprimitives.dll"
src="$root/scripts/wine/bcryptprimitives.c"
if [ ! -f "$dll" ] || [ "$src" -nt "$dll" ]; then
    x86_64-w64-mingw32-gcc -O2 -Wall -Werror -shared -o "$dll" "$src"
fi

mkdir -p "$WINEPREFIX"
# A server that outlives each test binary (one start instead of one per
# binary) and exits by itself 60 s after the last one; its output goes
# nowhere, so it holds no pipe of the caller open. It fails when a server
# for this prefix already runs, which is as good.
/usr/lib/wine/wineserver -p60 </dev/null >/dev/null 2>&1 || true
# The prefix is made once wineboot has populated C:\windows (the registry
# files appear only when the persistent wineserver saves them, later).
made="$WINEPREFIX/drive_c/windows/system32"
if [ ! -d "$made" ]; then
    echo "wine/setup.sh: creating the Wine prefix $WINEPREFIX"
    # wineboot complains that there is no 32-bit Wine (no syswow64): harmless.
    /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1 || true
    if [ ! -d "$made" ]; then
        echo "wine/setup.sh: wineboot did not create $made" >&2
        exit 1
    fi
fi
echo "wine/setup.sh: ready ($(/usr/lib/wine/wine64 --version), prefix $WINEPREFIX)"
