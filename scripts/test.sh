#!/usr/bin/env bash
# The one test command for aioloop (README: `./scripts/test.sh`; CI: `.ci/run`).
#
#   ./scripts/test.sh          everything: fmt, clippy (native + windows-gnu),
#                              rustdoc, unit/integration/example/doc tests,
#                              the test suite for Windows under Wine (per
#                              Windows backend), a release run of the tour
#                              example, and the benchmark program in its
#                              --smoke mode
#   ./scripts/test.sh --quick  skips windows-gnu (clippy, Wine), the tour and the bench
#                              (wasm32: see the block near the end)
#
# Needs only rustup's toolchain (cargo, rustc, clippy, rustfmt); it installs the
# rustup target it uses, and (scripts/wine/setup.sh) mingw-w64 and wine64 with
# apt-get when they are missing. Safe to run again and again: besides those
# installs it writes only to target/.
set -euo pipefail

quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h | --help)
            sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "test.sh: unknown argument '$arg' (try --quick or --help)" >&2
            exit 2
            ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

WINDOWS_TARGET=x86_64-pc-windows-gnu
started=$SECONDS
passed=()
current=""

on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -n "$current" ]; then
        echo
        echo "test.sh: FAILED at step '$current' (exit $rc) after $((SECONDS - started))s;" \
            "passed before it: ${passed[*]:-none}" >&2
    fi
}
trap on_exit EXIT

# step NAME COMMAND... : announce, run, time.
step() {
    local name=$1
    shift
    current=$name
    echo
    echo "==> [$name] $*"
    local t0=$SECONDS
    "$@"
    echo "<== [$name] ok ($((SECONDS - t0))s)"
    passed+=("$name")
    current=""
}

echo "test.sh: testing aioloop in $(pwd) ($([ "$quick" = 1 ] && echo quick || echo full) run)"
echo "test.sh: $(cargo --version); $(rustc --version)"

if [ "$quick" = 0 ]; then
    if ! command -v rustup >/dev/null 2>&1; then
        echo "test.sh: rustup is needed to add the $WINDOWS_TARGET target (or run with --quick)" >&2
        exit 1
    fi
    step rustup-target rustup target add "$WINDOWS_TARGET"
fi

step fmt cargo fmt --all -- --check --color never
step clippy cargo clippy --workspace --all-targets -- -D warnings
if [ "$quick" = 0 ]; then
    # Windows (x86_64-pc-windows-gnu): lint everything, tests included.
    step clippy-windows cargo clippy -p aioloop --target "$WINDOWS_TARGET" --all-targets -- -D warnings
fi
step rustdoc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
step test cargo test --workspace --all-targets
# --- io_uring: the whole native suite again on each Linux backend ----------
# The run above uses Backend::Auto (io_uring on Linux when the kernel allows
# it). Each forced run prints the backend it used (tests/backend.rs).
if [ "$(uname -s)" = Linux ]; then
    cargo test -q --test backend prints_the_backend_of_this_run -- --nocapture 2>/dev/null |
        grep 'aioloop backend of this run' | sed 's/^/[test] /'
    for backend in selector proactor; do
        step "test-$backend" env AIOLOOP_BACKEND=$backend \
            cargo test --workspace --all-targets
        AIOLOOP_BACKEND=$backend cargo test -q --test backend prints_the_backend_of_this_run \
            -- --nocapture 2>/dev/null | grep 'aioloop backend of this run' | sed "s/^/[test-$backend] /"
    done
fi
# --- end io_uring ------------------------------------------------------------
step doctest cargo test --doc
if [ "$quick" = 0 ]; then
    # Windows: the whole suite, cross-built and run under Wine once per
    # Windows backend (installs mingw-w64 and wine64 when missing).
    step windows-wine bash scripts/wine/test.sh
fi
if [ "$quick" = 0 ]; then
    # Smoke test: the README's demo command must build and exit 0.
    step tour bash -c 'cargo run --release --example tour >/dev/null'
    # The benchmark program against tokio and smol, tiny sizes, one round:
    # proves it builds and runs; the figures come from a full run (README).
    step bench-smoke cargo run --release -p aioloop-bench -- --smoke
fi

# --- wasm32 (issue 6): the wasm backend, the JS API, wasm-tests, the package ---
# Full run: installs what it needs (the wasm32 target, the wasm-bindgen CLI
# pinned in Cargo.toml, Debian's chromium + chromium-driver), then clippy and
# rustdoc for wasm32, wasm-tests in Node and in headless Chromium, the npm
# package build (scripts/build-wasm.sh) and its JS tests (wasm-tests/js/).
# --quick installs nothing and runs the wasm clippy and the Node suites only
# when the tools are already there.
WASM_TARGET=wasm32-unknown-unknown
WBG_VERSION=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' Cargo.toml | head -1)
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}

wasm_tools_ready() {
    command -v rustup >/dev/null 2>&1 &&
        rustup target list --installed | grep -qx "$WASM_TARGET" &&
        [ "$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}')" = "$WBG_VERSION" ]
}

install_wasm_tools() {
    rustup target add "$WASM_TARGET"
    if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WBG_VERSION" ]; then
        # About 3 minutes, once; `--locked` does not build this version.
        cargo install wasm-bindgen-cli --version "$WBG_VERSION"
    fi
}

install_chromium() {
    if command -v chromium >/dev/null 2>&1 && [ -x "$CHROMEDRIVER" ]; then
        echo "chromium and chromedriver already installed"
        return
    fi
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver
}

clippy_wasm() {
    # The library with and without the JS API, and the wasm test suites.
    cargo clippy --target "$WASM_TARGET" -p aioloop --lib --features js -- -D warnings
    cargo clippy --target "$WASM_TARGET" -p aioloop --lib -- -D warnings
    cargo clippy --target "$WASM_TARGET" -p aioloop-wasm-tests --all-targets -- -D warnings
}

# The suites (wasm-tests/) and the library's own wasm32 unit tests. The
# runner (wasm-bindgen-test-runner) comes from .cargo/config.toml.
wasm_tests() {
    cargo test --target "$WASM_TARGET" -p aioloop-wasm-tests
    cargo test --target "$WASM_TARGET" -p aioloop --lib
}

wasm_tests_chromium() {
    CHROMEDRIVER="$CHROMEDRIVER" WASM_BINDGEN_USE_BROWSER=1 \
        WASM_BINDGEN_TEST_WEBDRIVER_JSON="$(pwd)/wasm-tests/webdriver.json" \
        wasm_tests
}

if [ "$quick" = 0 ]; then
    step wasm-tools install_wasm_tools
    step chromium install_chromium
fi
if [ "$quick" = 0 ] || wasm_tools_ready; then
    step clippy-wasm clippy_wasm
    step rustdoc-wasm env RUSTDOCFLAGS="-D warnings" \
        cargo doc --target "$WASM_TARGET" -p aioloop --features js --no-deps
    step wasm-test-node wasm_tests
else
    echo
    echo "test.sh: --quick: skipping the wasm32 steps (no $WASM_TARGET target or wasm-bindgen-test-runner $WBG_VERSION; a full run installs them)"
fi
if [ "$quick" = 0 ]; then
    step wasm-test-chromium wasm_tests_chromium
    step wasm-package ./scripts/build-wasm.sh
    # The package as JS sees it (node's test runner over pkg/node).
    step wasm-package-js node --test wasm-tests/js/
fi
# --- end wasm32 ---

# --- www/ demo, e2e in Chromium, wasm bench (issue 6 items 6-8) ---
# Full run only. Uses the package that the wasm32 block's `wasm-package` step
# built (or builds it with scripts/build-wasm.sh, which also installs the
# wasm32 target and the pinned wasm-bindgen CLI); installs Debian's chromium
# only when /usr/bin/chromium is absent, and www/e2e's npm packages (npm ci).
# Steps: the Node example, the demo page driven in headless Chromium
# (screenshot: target/e2e/demo.png), the wasm benchmark at --smoke size.
www_pkg() {
    if printf '%s\n' "${passed[@]}" | grep -qx wasm-package; then
        echo "pkg/ was built by the wasm-package step"
    else
        ./scripts/build-wasm.sh
    fi
}

www_e2e_deps() {
    if [ ! -x /usr/bin/chromium ]; then
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
    fi
    (cd www/e2e && npm ci --no-audit --no-fund)
}

if [ "$quick" = 0 ]; then
    step www-pkg www_pkg
    step www-e2e-deps www_e2e_deps
    step www-node-demo node www/node-demo.mjs
    step www-e2e node www/e2e/demo.test.mjs
    step bench-wasm-fmt cargo fmt --manifest-path bench-wasm/Cargo.toml -- --check --color never
    step bench-wasm-clippy env CARGO_TARGET_DIR="$PWD/target/bench-wasm" \
        cargo clippy --manifest-path bench-wasm/Cargo.toml --target wasm32-unknown-unknown -- -D warnings
    step bench-wasm-smoke ./scripts/bench-wasm.sh --smoke
fi
# --- end www ---

echo
echo "test.sh: all ${#passed[@]} steps passed (${passed[*]}) in $((SECONDS - started))s" \
    "[$([ "$quick" = 1 ] && echo "quick: skipped windows-gnu clippy and Wine run, release tour and bench smoke" || echo full)]"
